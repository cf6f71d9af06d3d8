"""`python -m bench.profile SCENARIO [--load N] [--seconds S]`: where the server's time goes.

Runs `hearth serve` (or `--baseline`) under cProfile, drives one fixed step of
the chat or voice load at it, and prints the functions with the most time of
their own. A fixed load, not a ladder: a profile is only comparable with
another at the same load. cProfile's overhead is per call, so it inflates
small functions; `--py-spy` samples the unmodified server instead (needs
`pip install py-spy`) and prints own and inclusive shares of the samples.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import scenarios, servers


async def drive(served: servers.Served, scenario: str, load: float, seconds: float,
                lockstep: bool = False, around: Callable[[str], None] | None = None,
                rooms: int | None = None) -> dict[str, Any]:
    """One fixed step; prints the server's CPU per delivered message (the A/B figure).
    `around("start")` and `around("end")` are called just before the load and once it
    has drained; `rooms` limits chat to fewer rooms (the callgrind runs)."""
    settings = dataclasses.replace(scenarios.Settings.full(), voice_lockstep=lockstep)
    if rooms is not None:
        settings = dataclasses.replace(settings, chat_rooms=rooms)
    mark = around or (lambda what: None)
    if scenario == "join":
        await scenarios.join(served, settings)
        return {}
    if scenario == "chat":
        chat = await scenarios.join_chat(served.port, settings, served.kind == "hearth",
                                         settle=0.5 if around is None else 5.0)
        peers = chat.peers
        chat.step = step = scenarios.Step(load)
        mark("start")
        meter = scenarios.CpuMeter(served.pid)
        await scenarios.pace(load, seconds, chat.send)
        await scenarios.until(lambda: step.received >= step.expected, 3.0 if around is None else 60)
        cpu = meter.read()  # through the drain: a server that fell behind still pays for it
        mark("end")
        scenarios.close_all(peers)
    else:
        voice = scenarios.VoiceLoad(served, settings)
        await voice.ensure_rooms(int(load))
        voice.activate(int(load))
        if around is not None:
            await asyncio.sleep(5.0)
        voice.step = step = scenarios.Step(load)
        mark("start")
        meter = scenarios.CpuMeter(served.pid)
        await voice.pace(seconds)
        await scenarios.until(lambda: step.received >= step.expected, 3.0 if around is None else 60)
        cpu = meter.read()
        mark("end")
        voice.close()
    result = step.result(seconds, 1e9, cpu, "per_s")
    print(f"{served.kind} {scenario} at {load:g}: {result['per_s']:.0f} msgs/s delivered, "
          f"server {result['server_us_per_msg']} us/msg ({cpu['server_cpu_pct']} % CPU), "
          f"p99 {result['p99_ms']} ms, generator {cpu['loadgen_cpu_pct']} %, "
          f"others {cpu['foreign_cpu_pct']} %", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(prog="python -m bench.profile")
    args.add_argument("scenario", choices=("chat", "voice", "join"))
    args.add_argument("--load", type=float, default=None,
                      help="chat: envelopes/s (default 1000); voice: rooms (default 8)")
    args.add_argument("--seconds", type=float, default=8.0)
    args.add_argument("--baseline", nargs="?", const="autobahn", default=None,
                      choices=("autobahn", "node_ws"),
                      help="measure a baseline relay instead of Hearth (default autobahn)")
    args.add_argument("--top", type=int, default=35)
    args.add_argument("--py-spy", action="store_true", help="sample with py-spy, not cProfile")
    args.add_argument("--cost", action="store_true",
                      help="no profiler: just the server's CPU per delivered message")
    args.add_argument("--stages", action="store_true",
                      help="no profiler: where each frame's time goes inside the server "
                           "(read, route, wait for the flush, flush; web/wsfast.py Stages)")
    args.add_argument("--lockstep", action="store_true",
                      help="voice: every speaker's frame in the same instant (the old generator)")
    args.add_argument("--callgrind", action="store_true",
                      help="run the server under valgrind's callgrind and print the instructions "
                           "it executed per delivered message (repeatable on a busy machine; "
                           "use light loads: the server runs ~50x slower)")
    args.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                      help="extra environment for the server (A/B of a switch), repeatable")
    options = args.parse_args(argv)
    load = options.load or (1000.0 if options.scenario == "chat" else 8.0)
    servers.raise_fd_limit()
    servers.pin_self()
    kind = options.baseline or "hearth"
    out = Path(tempfile.mkdtemp(prefix="hearth-profile-")) / "server.prof"
    if options.py_spy:
        return sample(kind, options.scenario, load, options.seconds, out.with_suffix(".txt"),
                      options.top)
    env = dict(item.split("=", 1) for item in options.env)
    if options.callgrind:
        return instructions(kind, options.scenario, load, options.seconds, env, out.parent,
                            options.lockstep)
    if options.stages:
        return stages(kind, options.scenario, load, options.seconds, env,
                      out.with_suffix(".stages.jsonl"), options.lockstep)
    served = servers.start(kind, rooms=160, capacity=16, profile=None if options.cost else out,
                           env_extra=env)
    if options.cost:
        try:
            asyncio.run(drive(served, options.scenario, load, options.seconds, options.lockstep))
        finally:
            servers.cleanup(served)
        return 0
    try:
        asyncio.run(drive(served, options.scenario, load, options.seconds, options.lockstep))
    finally:
        served.stop(interrupt=True)
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(options.top)
    print(f"profile: {out}", file=sys.stderr)
    return 0


def stages(kind: str, scenario: str, load: float, seconds: float, env: dict[str, str],
           out: Path, lockstep: bool) -> int:
    """The server writes each second's stage percentiles (HEARTH_WS_STAGES); print their
    medians over the run, beside the generator's end-to-end latency."""
    env = {**env, "HEARTH_WS_STAGES": str(out)}
    if scenario == "voice":  # the generator's send time, at byte 10 of every voice frame
        env["HEARTH_WS_STAGES_STAMP"] = str(scenarios.VOICE_HEAD.size)
    elif scenario == "chat":  # the send time opens every envelope's "body"
        env["HEARTH_WS_STAGES_STAMP"] = "body"
    served = servers.start(kind, rooms=160, capacity=16, env_extra=env)
    try:
        asyncio.run(drive(served, scenario, load, seconds, lockstep))
    finally:
        servers.cleanup(served)
    seconds_lines = [json.loads(line) for line in out.read_text().splitlines()]
    busy = [s for s in seconds_lines if s["route"]["n"] > 0]
    steady = busy[1:-1] or busy  # the first and last seconds are joins and drain
    print(f"{len(steady)} steady seconds; median over them of each second's figures (us)\n"
          f"{'stage':8} {'n/s':>8} {'p50':>8} {'p99':>8} {'max':>8}")
    for stage in ("queue", "route", "wait", "flush", "gc", "gc2", "timers"):
        rows = [s[stage] for s in steady]
        print(f"{stage:8} {statistics.median(r['n'] for r in rows):8.0f} "
              f"{statistics.median(r['p50_us'] for r in rows):8.1f} "
              f"{statistics.median(r['p99_us'] for r in rows):8.1f} "
              f"{statistics.median(r['max_us'] for r in rows):8.1f}")
    print(f"flushes/s {statistics.median(s['flushes'] for s in steady):.0f}, connections per "
          f"flush {statistics.median(s['connections_per_flush'] for s in steady):.1f}")
    print(f"per second: {out}", file=sys.stderr)
    return 0


CALLGRIND_CHAT_ROOMS = 10


def instructions(kind: str, scenario: str, load: float, seconds: float, env: dict[str, str],
                 out: Path, lockstep: bool) -> int:
    """Instructions the server executes per delivered message, counted by callgrind between
    the start of the load and its drain (joins and start-up excluded), less what the
    server does anyway in that much wall time (its timers: the room tick, housekeeping),
    counted right after in an idle window of the same length: on a busy machine the
    load takes longer, and the timers' share with it. Unlike CPU time, the net figure
    does not move with the machine's other work."""
    # only the rooms the load uses: the room tick's idle work grows with the configured rooms
    rooms = CALLGRIND_CHAT_ROOMS if scenario == "chat" else int(load) + 1
    served = servers.start(kind, rooms=rooms, capacity=16, env_extra=env, wrap=[
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.%p"],
        ready_timeout=300)
    walls: dict[str, float] = {}

    def control(command: str) -> None:
        subprocess.run(["callgrind_control", command, str(served.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def around(what: str) -> None:
        walls[what] = time.monotonic()
        control("--zero" if what == "start" else "--dump")

    def total() -> int:
        last = max(out.glob("callgrind.*"), key=lambda f: f.stat().st_mtime)
        for line in last.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        return 0
    try:
        result = asyncio.run(drive(served, scenario, load, seconds, lockstep, around,
                                   rooms=CALLGRIND_CHAT_ROOMS if scenario == "chat" else None))
        loaded = total()
        wall = walls["end"] - walls["start"]
        time.sleep(2.0)  # the connections' closes
        control("--zero")
        idle_started = time.monotonic()
        time.sleep(wall)
        control("--dump")
        idle = total() * wall / max(1e-6, time.monotonic() - idle_started)
    finally:
        servers.cleanup(served)
    received = max(1, int(result.get("received", 0)))
    print(f"{kind} {scenario} at {load:g}: {loaded:,} instructions in {wall:.1f} s for "
          f"{received:,} deliveries, {idle:,.0f} of them what the server does idle in that "
          f"time: {(loaded - idle) / received:,.0f} per delivery (net; "
          f"{loaded / received:,.0f} gross)")
    return 0


def sample(kind: str, scenario: str, load: float, seconds: float, out: Path, top: int) -> int:
    """py-spy on the running server while the load runs; a table of where samples fall."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    served = servers.start(kind, rooms=160, capacity=16)
    try:
        recorder = subprocess.Popen([spy, "record", "-p", str(served.pid), "-f", "raw", "-r", "250",
                                     "-d", str(max(1, int(seconds) - 1)), "-o", str(out)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        asyncio.run(drive(served, scenario, load, seconds))
        recorder.wait(timeout=60)
    finally:
        served.stop()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if any("threading.py" in f for f in frames):
            continue  # Twisted's thread pool (argon2 sign-ins), idle under this load
        total += n
        own[_short(frames[-1])] += n
        for name in {_short(f) for f in frames}:
            inclusive[name] += n
    print(f"{total} samples of the reactor thread (idle: the epoll wait)\n\n"
          "  own %   incl %  function")
    for name, n in own.most_common(top):
        print(f"{100 * n / total:7.1f}  {100 * inclusive[name] / total:7.1f}  {name}")
    print("\n  incl %  function (the largest inclusive shares)")
    for name, n in inclusive.most_common(top):
        print(f"{100 * n / total:7.1f}  {name}")
    print(f"\nraw stacks: {out}", file=sys.stderr)
    return 0


def _short(frame: str) -> str:
    """`func (path:line)` -> `func (path)`: one row per function, not per line."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].replace(str(servers.ROOT) + "/", "")
    return f"{name} ({path.split('site-packages/')[-1]})"


if __name__ == "__main__":
    sys.exit(main())
