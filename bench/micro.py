"""`python -m bench.micro [chat|voice] [--n N] [--profile]`: the node's own hot path, in process.

No sockets, no reactor: the bench's rooms (spaces.config from bench.servers'
config) behind a `web.node.Node` whose peers only count what they are given.
It measures the Python work per message between a frame arriving and its
bytes being handed to each recipient's connection (decode, limits, the
room's rules, franking, encoding, fan-out), which `python -m bench.profile
--cost` cannot separate from syscalls and the machine's other load. Good for
A/B of code changes in that path; not a throughput figure.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import servers
from hearth.moderation.wiring import moderated_venue
from hearth.spaces.broker import MemoryBroker
from hearth.spaces.config import parse_config
from hearth.spaces.voice import build_frame
from hearth.web.node import Link, Node


class CountingPeer:
    """A connection that keeps nothing: the node's side of the cost only."""

    __slots__ = ("frames",)

    def __init__(self) -> None:
        self.frames = 0

    def send_bytes(self, payload: bytes) -> None:
        self.frames += 1

    def send_binary(self, payload: bytes) -> None:
        self.frames += 1

    def send_prepared(self, prepared: Any) -> None:
        self.frames += 1

    def pending_bytes(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        pass


def build(rooms: int, members: int) -> tuple[Node, list[list[Link]], list[CountingPeer]]:
    data = servers.hearth_config(Path(tempfile.mkdtemp(prefix="hearth-micro-")), rooms, 16)
    config = parse_config(data, "micro.toml")
    now = [1000.0]
    venue = moderated_venue(config, franking_key=os.urandom(32))
    node = Node(venue, MemoryBroker(lambda: now[0]), lambda payload, binary: (payload, binary),
                lambda: now[0])
    node.start()
    links: list[list[Link]] = []
    peers: list[CountingPeer] = []
    for r in range(rooms):
        room_links = []
        for _ in range(members):
            peer = CountingPeer()
            link = node.open(peer, "127.0.0.1")
            node.received(link, json.dumps({"type": "join", "room": f"r{r}"}).encode(), False)
            room_links.append(link)
            peers.append(peer)
        links.append(room_links)
    return node, links, peers


def chat(n: int) -> tuple[float, int]:
    node, links, peers = build(50, 10)
    commitment = base64.b64encode(os.urandom(32))
    frames = [b'{"type":"envelope","body":"' + base64.b64encode(os.urandom(300))
              + b'","commitment":"' + commitment + b'"}' for _ in range(64)]
    flat = [link for room in links for link in room]
    before = sum(p.frames for p in peers)
    received = node.received
    started = time.perf_counter()
    for i in range(n):
        received(flat[i % len(flat)], frames[i & 63], False)
    spent = time.perf_counter() - started
    return spent, sum(p.frames for p in peers) - before


def voice(n: int) -> tuple[float, int]:
    node, links, peers = build(20, 12)
    clock = [1000.0]
    node.clock = lambda: clock[0]
    speakers = [link for room in links for link in room[:3]]
    frames = [build_frame(os.urandom(70), seq=s, level=20 + s % 50) for s in range(64)]
    before = sum(p.frames for p in peers)
    received = node.received
    started = time.perf_counter()
    for i in range(n):
        if i % len(speakers) == 0:
            clock[0] += 0.02  # every speaker once per 20 ms, as the bench's generator sends
        received(speakers[i % len(speakers)], frames[i & 63], True)
    spent = time.perf_counter() - started
    return spent, sum(p.frames for p in peers) - before


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(prog="python -m bench.micro")
    args.add_argument("scenario", choices=("chat", "voice"))
    args.add_argument("--n", type=int, default=0, help="messages (default 20,000 / 60,000)")
    args.add_argument("--repeat", type=int, default=5)
    args.add_argument("--profile", action="store_true")
    options = args.parse_args(argv)
    run = chat if options.scenario == "chat" else voice
    n = options.n or (20_000 if options.scenario == "chat" else 60_000)
    if options.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run(n)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return 0
    best = []
    for _ in range(options.repeat):
        spent, delivered = run(n)
        best.append(1e6 * spent / delivered)
    best.sort()
    print(f"{options.scenario}: {best[0]:.3f} us per delivery (best of {options.repeat}; "
          f"median {best[len(best) // 2]:.3f}), {delivered / n:.1f} deliveries per message",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
