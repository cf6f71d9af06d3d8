"""`python -m bench [SCENARIO ...] [--quick] [--runs N]`: Hearth against two baseline relays.

For each run and each scenario: start `hearth serve` (fresh config and data
dir, pinned to core 0), drive it from this process (pinned to core 1), stop
it; then the same for the autobahn relay (bench/baseline.py) and the Node.js
ws relay (bench/node_relay.js; ws and bufferutil are installed from npm, pinned,
into bench/.node the first time). Prints one JSON line per scenario (medians
over the runs) and a table of every figure against both; writes results.json
and the latency plot to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from bench import report, scenarios, servers, voice_udp

SCENARIOS = ("chat", "voice", "idle", "join", "crisis", "voice_udp")
KINDS = report.SIDES
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    top.add_argument("scenario", nargs="*", choices=[*SCENARIOS, "all", []], default=[],
                     metavar="SCENARIO", help=f"any of {', '.join(SCENARIOS)}, or all (default)")
    top.add_argument("--quick", action="store_true",
                     help="smoke-test sizes: a few seconds per scenario, figures not meaningful")
    top.add_argument("--runs", type=int, default=None,
                     help="repeat and report medians (default 3, or 1 with --quick)")
    top.add_argument("--out", type=Path, default=DEFAULT_OUT,
                     help=f"where results.json and latency.png go (default {DEFAULT_OUT})")
    top.add_argument("--voice-lockstep", action="store_true",
                     help="voice speakers all send in the same instant every 20 ms (the old "
                          "generator) instead of each at its own phase")
    top.add_argument("--sides", default=",".join(KINDS),
                     help=f"comma-separated servers to measure (default {','.join(KINDS)})")
    return top


def rooms_needed(scenario: str, settings: scenarios.Settings) -> int:
    """Rooms in the server's config: enough for the scenario's members in rooms of 12."""
    if scenario == "chat":
        return settings.chat_rooms
    if scenario == "idle":
        return scenarios.rooms_for(settings.idle_members) + 2
    if scenario == "join":
        return 30 + scenarios.rooms_for(settings.join_members)
    # voice and crisis: every room the voice ladder can reach (x1.5 per step, rounded up)
    rooms = top = settings.voice_start_rooms
    for _ in range(settings.max_steps):
        top = math.ceil(top * 1.5)
        rooms = max(rooms, top)
    return max(160, rooms)


async def one(scenario: str, kind: str, settings: scenarios.Settings,
              context: dict[str, Any]) -> dict[str, Any]:
    if scenario == "voice_udp":  # bench/voice_udp.py: its own server, voice over UDP on
        return await voice_udp.bench(kind, settings)
    served = servers.start(kind, rooms=rooms_needed(scenario, settings), capacity=16,
                           facilitator=scenario == "crisis" and kind == "hearth")
    try:
        work: Coroutine[Any, Any, dict[str, Any]]
        if scenario == "chat":
            work = scenarios.chat(served, settings)
        elif scenario == "voice":
            work = scenarios.voice(served, settings)
        elif scenario == "idle":
            work = scenarios.idle(served, settings)
        elif scenario == "join":
            work = scenarios.join(served, settings)
        else:
            work = scenarios.crisis(served, settings, context.get(("voice_rooms", kind)))
        result = await asyncio.wait_for(work, timeout=900)
        if scenario == "voice":
            context[("voice_rooms", kind)] = result.get("rooms_at_knee") or None
        if not served.alive():
            result["server_exited"] = served.proc.returncode
        return result
    finally:
        servers.cleanup(served)


async def run_all(chosen: list[str], kinds: tuple[str, ...], settings: scenarios.Settings,
                  runs: int) -> dict[str, list[dict[str, dict[str, Any]]]]:
    results: dict[str, list[dict[str, dict[str, Any]]]] = {s: [] for s in chosen}
    for n in range(runs):
        context: dict[Any, Any] = {}
        for scenario in chosen:
            entry: dict[str, dict[str, Any]] = {}
            for kind in kinds:
                print(f"run {n + 1}/{runs}: {scenario} on {kind}", file=sys.stderr, flush=True)
                entry[kind] = await one(scenario, kind, settings, context)
            results[scenario].append(entry)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.scenario or "all" in args.scenario
              or s in args.scenario]
    settings = scenarios.Settings.quick_settings() if args.quick else scenarios.Settings.full()
    if args.voice_lockstep:
        settings = dataclasses.replace(settings, voice_lockstep=True)
    runs = max(1, args.runs if args.runs is not None else 1 if args.quick else 3)
    kinds = tuple(k for k in KINDS if k in args.sides.split(","))
    if not kinds or set(args.sides.split(",")) - set(KINDS):
        parser().error(f"--sides: any of {', '.join(KINDS)}")
    if "node_ws" in kinds:
        servers.ensure_node_ws()  # npm install (pinned) before anything is measured
    servers.raise_fd_limit()
    priority = servers.pin_self()
    started = time.monotonic()
    try:
        import uvloop
        results = uvloop.run(run_all(chosen, kinds, settings, runs))
    except ImportError:
        results = asyncio.run(run_all(chosen, kinds, settings, runs))
    lines = [report.combine(s, results[s]) for s in chosen]
    for line in lines:
        print(report.json_line(line), flush=True)
    print()
    print(report.table(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"settings": vars(settings), "pinned": servers.pinning(), "priority": priority,
         "lines": lines, "runs": results},
        indent=1))
    picture = report.plot(results, args.out / "latency.png")
    if picture:
        where = f"; plot {picture}"
    elif {"chat", "voice"} & set(chosen):
        where = "; no plot: matplotlib is missing (pip install -e '.[bench]')"
    else:
        where = ""
    print(f"\n{len(chosen)} scenario(s), {runs} run(s) in "
          f"{time.monotonic() - started:.0f} s; results in {args.out / 'results.json'}{where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
