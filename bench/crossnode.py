"""`python -m bench.crossnode [--quick]`: what a delivery costs when a room's members are
spread over three nodes sharing Redis, against the same load on one node (issue 20).

The same chat and voice loads as `python -m bench` at fixed levels (a CPU measure,
not a knee: the server CPU per delivery is what moves least with the machine), run
twice: once on one `hearth serve --redis`, once on three (`--node-id n1..n3`, one
Redis), with member m of every room connected to node m mod 3, so every room has
members on all three and most deliveries cross the bus. Reported per scenario:

- server CPU per delivery, the three nodes summed, against one node (`cost_ratio`);
- Redis's own CPU per delivery;
- Redis operations per message sent (INFO commandstats: every command, so the
  heartbeats, renewals and saves are counted too) and per delivery;
- p50/p99 latency and nothing lost or reordered (the room's `seq` is checked at
  every member, whichever node it is connected to).

Every process runs on the server core (0) and the generator on core 1, as in the
main bench, so the three nodes share one core: the figures are CPU per delivery,
not throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from bench import scenarios, servers

NODES = 3


class Nodes:
    """One or more `hearth serve --redis` nodes, one Redis."""

    env: dict[str, str] = {}  # for every node (main: --env)

    def __init__(self, count: int, rooms: int) -> None:
        self.redis = servers.start_redis()
        self.nodes: list[servers.Served] = []
        try:
            for n in range(count):
                self.nodes.append(servers.start(
                    "hearth", rooms=rooms, capacity=16, env_extra=self.env,
                    args=["--redis", self.redis.url, "--node-id", f"n{n + 1}"]))
        except BaseException:
            self.stop()
            raise

    @property
    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes]

    def port_of(self, index: int) -> int:
        """Member m of a room (index = room * 100 + m, or room * members + m) on node m mod N."""
        return self.nodes[index % len(self.nodes)].port

    def stop(self) -> None:
        for node in self.nodes:
            servers.cleanup(node)
        self.redis.stop()


def _redis_figures(nodes: Nodes, before: dict[str, int], redis_cpu: float, sent: int,
                   step: dict[str, Any]) -> dict[str, Any]:
    after = nodes.redis.ops()
    ops = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    ops = {k: v for k, v in ops.items() if v > 0 and k != "info"}
    total = sum(ops.values())
    received = max(1, step["received"])
    return {"redis_ops": total, "redis_ops_per_message": round(total / max(1, sent), 3),
            "redis_ops_per_delivery": round(total / received, 4),
            "redis_us_per_delivery": round(1e6 * redis_cpu / received, 2),
            "redis_ops_by_command": dict(sorted(ops.items(), key=lambda kv: -kv[1])[:8])}


async def chat(count: int, settings: scenarios.Settings, rate: float) -> dict[str, Any]:
    nodes = Nodes(count, settings.chat_rooms)
    try:
        # index r * members + m on node index mod N: every room spread over the nodes
        load = await scenarios.join_chat(nodes.port_of, settings, True, settle=1.0)
        peers = load.peers
        load.step = step = scenarios.Step(rate)
        before = nodes.redis.ops()
        redis_before = servers.cpu_seconds(nodes.redis.proc.pid)
        meter = scenarios.CpuMeter(nodes.pids)
        sent_before = sum(load.counts.values())
        await scenarios.pace(rate, settings.step_seconds, load.send)
        sent = sum(load.counts.values()) - sent_before
        await scenarios.until(lambda: step.received >= step.expected, settings.drain_seconds)
        cpu = meter.read()  # through the drain: what the nodes did late counts too
        redis_cpu = servers.cpu_seconds(nodes.redis.proc.pid) - redis_before
        result = step.result(settings.step_seconds, scenarios.CHAT_BOUND_MS, cpu,
                             "delivered_per_s")
        scenarios.close_all(peers)
        return {**result, "nodes": count, "sent": sent,
                **_redis_figures(nodes, before, redis_cpu, sent, result)}
    finally:
        nodes.stop()


async def voice(count: int, settings: scenarios.Settings, rooms: int) -> dict[str, Any]:
    nodes = Nodes(count, 160)
    try:
        load = scenarios.VoiceLoad(nodes.nodes[0], settings, port_of=nodes.port_of,
                                   pids=nodes.pids)
        await load.ensure_rooms(rooms)
        await asyncio.sleep(1.0)
        before = nodes.redis.ops()
        redis_before = servers.cpu_seconds(nodes.redis.proc.pid)
        sent_before = sum(load.counts.values())
        load.activate(rooms)
        load.step = step = scenarios.Step(rooms)
        meter = scenarios.CpuMeter(nodes.pids)
        await load.pace(settings.step_seconds)
        sent = sum(load.counts.values()) - sent_before
        await scenarios.until(lambda: step.received >= step.expected, settings.drain_seconds)
        cpu = meter.read()
        redis_cpu = servers.cpu_seconds(nodes.redis.proc.pid) - redis_before
        result = step.result(settings.step_seconds, scenarios.VOICE_BOUND_MS, cpu, "frames_per_s")
        load.close()
        return {**result, "nodes": count, "rooms": rooms, "sent": sent,
                **_redis_figures(nodes, before, redis_cpu, sent, result)}
    finally:
        nodes.stop()


def _summary(scenario: str, one: dict[str, Any], many: dict[str, Any]) -> dict[str, Any]:
    keep = ("load", "delivered_per_s", "frames_per_s", "p50_ms", "p99_ms", "server_cpu_pct",
            "server_us_per_msg", "loadgen_cpu_pct", "foreign_cpu_pct", "lost", "missing",
            "reordered", "errors", "clean", "sent", "redis_ops_per_message",
            "redis_ops_per_delivery", "redis_us_per_delivery", "redis_ops_by_command")
    ratio = (round(many["server_us_per_msg"] / one["server_us_per_msg"], 3)
             if one.get("server_us_per_msg") else None)
    return {"scenario": f"crossnode_{scenario}",
            "one_node": {k: one[k] for k in keep if k in one},
            f"{NODES}_nodes": {k: many[k] for k in keep if k in many},
            "cost_ratio": ratio,
            "cost_ratio_of": f"server CPU per delivery, {NODES} nodes summed / one node"}


async def run(settings: scenarios.Settings, chat_rate: float, voice_rooms: int,
              chosen: list[str]) -> list[dict[str, Any]]:
    lines = []
    for scenario in chosen:
        level = f"{chat_rate:g} envelopes/s" if scenario == "chat" else f"{voice_rooms} rooms"
        print(f"crossnode {scenario} at {level}: 1 node, then {NODES}", file=sys.stderr,
              flush=True)
        results = []
        for count in (1, NODES):
            results.append(await (chat(count, settings, chat_rate) if scenario == "chat"
                                  else voice(count, settings, voice_rooms)))
        lines.append(_summary(scenario, *results))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(prog="python -m bench.crossnode", description=__doc__)
    args.add_argument("scenario", nargs="*", choices=["chat", "voice", []], default=[])
    args.add_argument("--quick", action="store_true", help="smoke-test sizes (seconds)")
    args.add_argument("--chat-rate", type=float, default=None,
                      help="envelopes/s, all rooms together (default 2000; quick 200)")
    args.add_argument("--voice-rooms", type=int, default=None, help="default 10; quick 2")
    args.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                      help="extra environment for every node (A/B of a switch, e.g. "
                           "HEARTH_BENCH_NO_HIREDIS=1), repeatable")
    options = args.parse_args(argv)
    Nodes.env = dict(item.split("=", 1) for item in options.env)
    settings = scenarios.Settings.quick_settings() if options.quick else scenarios.Settings.full()
    chat_rate = options.chat_rate or (200.0 if options.quick else 2000.0)
    voice_rooms = options.voice_rooms or (2 if options.quick else 10)
    servers.raise_fd_limit()
    servers.pin_self()
    started = time.monotonic()
    lines = asyncio.run(run(settings, chat_rate, voice_rooms, options.scenario or ["chat", "voice"]))
    for line in lines:
        print(json.dumps(line, separators=(",", ":")), flush=True)
    print(f"\n{len(lines)} scenario(s) in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
