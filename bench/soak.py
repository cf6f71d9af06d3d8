"""`python -m bench.soak [--minutes 20] [--fraction 0.7] [chat|voice]`: a long run at a steady
fraction of the knee; is memory flat and is nothing lost? (issue 20; a bench command, not CI).

First the scenario's ladder finds the knee on this machine (or `--load` gives the load
directly: voice rooms, or chat envelopes/s), then `hearth serve` carries `--fraction`
of it for `--minutes`, in windows of `--window` seconds back to back. Every window
reports throughput, p50/p99, lost/reordered/missing, and the server's RSS. The verdict:

- `rss_growth_pct`: the largest RSS after the warm-up (the first two windows) over
  the RSS at the end of the warm-up, minus one; flat means within 10 %;
- nothing lost, missing or reordered in any window (each window also has the
  server's own counts of voice it chose not to send: `voice_dropped_*_total`).

Prints one JSON line (windows included) and writes it to --out/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from bench import scenarios, servers

FLAT_PCT = 10.0
WARMUP_WINDOWS = 2


async def find_knee(scenario: str, settings: scenarios.Settings) -> float:
    served = servers.start("hearth", rooms=160, capacity=16)
    try:
        if scenario == "voice":
            result = await scenarios.voice(served, settings)
            return float(result["rooms_at_knee"] or settings.voice_start_rooms)
        result = await scenarios.chat(served, settings)
        best = result.get("at_knee")
        return float(best["load"]) if best else settings.chat_start_rate
    finally:
        servers.cleanup(served)


async def soak(scenario: str, load: float, minutes: float, window: float,
               settings: scenarios.Settings) -> dict[str, Any]:
    served = servers.start("hearth", rooms=160, capacity=16)
    windows: list[dict[str, Any]] = []
    end = time.monotonic() + 60 * minutes
    try:
        if scenario == "voice":
            voice = scenarios.VoiceLoad(served, settings)
            rooms = max(1, int(load))
            while time.monotonic() < end:
                seconds = min(window, max(1.0, end - time.monotonic()))
                step, cpu = await voice.run(rooms, seconds, settings.drain_seconds)
                windows.append(_window(step, cpu, served, seconds, "frames_per_s"))
            voice.close()
        else:
            chat = await scenarios.join_chat(served.port, settings, True)
            while time.monotonic() < end:
                seconds = min(window, max(1.0, end - time.monotonic()))
                chat.step = step = scenarios.Step(load)
                meter = scenarios.CpuMeter(served.pid)
                await scenarios.pace(load, seconds, chat.send)
                cpu = meter.read()
                await scenarios.until(lambda s=step: s.received >= s.expected,  # type: ignore[misc]
                                      settings.drain_seconds)
                windows.append(_window(step, cpu, served, seconds, "delivered_per_s"))
            scenarios.close_all(chat.peers)
    finally:
        alive = served.alive()
        servers.cleanup(served)
    warm = windows[WARMUP_WINDOWS - 1]["rss_mb"] if len(windows) >= WARMUP_WINDOWS else None
    later = [w["rss_mb"] for w in windows[WARMUP_WINDOWS:]]
    growth = round(100 * (max(later) / warm - 1), 2) if warm and later else None
    lost = sum(w["lost"] + w["missing"] for w in windows)
    reordered = sum(w["reordered"] for w in windows)
    return {"scenario": f"soak_{scenario}", "load": load, "minutes": minutes,
            "windows_n": len(windows), "rss_warm_mb": warm,
            "rss_max_mb": max(later) if later else None, "rss_growth_pct": growth,
            "lost": lost, "reordered": reordered,
            "errors": sum(w["errors"] for w in windows),
            "p99_ms_max_window": max((w["p99_ms"] for w in windows), default=None),
            "server_alive": alive,
            "met": bool(growth is not None and growth <= FLAT_PCT and not lost and not reordered
                        and alive),
            "goal": f"RSS flat within {FLAT_PCT:g} % after warm-up, nothing lost or reordered",
            "windows": windows}


def _window(step: scenarios.Step, cpu: dict[str, float], served: servers.Served,
            seconds: float, key: str) -> dict[str, Any]:
    result = step.result(seconds, math.inf, cpu, key)
    row = {k: result[k] for k in (key, "p50_ms", "p99_ms", "lost", "missing", "reordered",
                                  "errors", "server_cpu_pct", "loadgen_cpu_pct",
                                  "foreign_cpu_pct")}
    row["rss_mb"] = round(servers.rss_bytes(served.pid) / 2**20, 1)
    # voice the server chose not to send (backed-up listener, a member over its rate):
    # counters since start, so a window's losses can be told apart from a fault
    scraped = servers.metrics(served.port)
    for reason in ("slow_listener", "rate"):
        row[f"voice_dropped_{reason}_total"] = scraped.get(
            f'hearth_voice_frames_dropped_total{{reason="{reason}"}}')
    print(f"  [soak] {row}", file=sys.stderr, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    args.add_argument("scenario", nargs="?", choices=("voice", "chat"), default="voice")
    args.add_argument("--minutes", type=float, default=20.0)
    args.add_argument("--fraction", type=float, default=0.7, help="of the knee (default 0.7)")
    args.add_argument("--load", type=float, default=None,
                      help="skip the ladder: voice rooms, or chat envelopes/s, to soak at")
    args.add_argument("--window", type=float, default=30.0, help="seconds per window")
    args.add_argument("--quick", action="store_true", help="smoke-test sizes")
    args.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    options = args.parse_args(argv)
    settings = scenarios.Settings.quick_settings() if options.quick else scenarios.Settings.full()
    servers.raise_fd_limit()
    servers.pin_self()
    started = time.monotonic()

    async def go() -> dict[str, Any]:
        knee = None
        load = options.load
        if load is None:
            knee = await find_knee(options.scenario, settings)
            load = knee * options.fraction
            if options.scenario == "voice":
                load = max(1, math.floor(load))
        print(f"soak {options.scenario} at {load:g} (knee {knee}) for {options.minutes:g} min",
              file=sys.stderr, flush=True)
        result = await soak(options.scenario, load, options.minutes, options.window, settings)
        return {**result, "knee": knee, "fraction": options.fraction if knee else None}

    result = asyncio.run(go())
    result["elapsed_s"] = round(time.monotonic() - started)
    print(json.dumps({k: v for k, v in result.items() if k != "windows"}, separators=(",", ":")))
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / f"soak_{options.scenario}.json").write_text(json.dumps(result, indent=1))
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
