"""Slowloris and connection floods: the server keeps serving the members it has."""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from hearth.client.websocket import ClientClosed, HearthClient
from tests.support.config import make_config
from tests.support.live import start_server

COMMIT = "A" * 43 + "="


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def members_still_talk(a: HearthClient, b: HearthClient, body: str) -> None:
    a.envelope(body, COMMIT)
    got = await b.next(lambda m: m["type"] == "envelope" and m["body"] == body, timeout=5)
    assert got["from"] == a.member


@pytest_twisted.ensureDeferred
async def test_slowloris_connections_are_cut_and_members_keep_talking() -> None:
    live = await start_server(make_config(limits={"header_timeout_seconds": 1.5}))
    slow: list[socket.socket] = []
    try:
        a, b = await live.client(), await live.client()
        await a.join("circle")
        await b.join("circle")
        for _ in range(150):  # each sends a partial request head and then trickles
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", live.port))
            slow.append(s)
        await sleep(0.2)
        for s in slow:
            with contextlib.suppress(OSError):
                s.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for i in range(4):  # keep trickling while members talk
            await members_still_talk(a, b, f"QUFB{i}A==")
            for s in slow:
                with contextlib.suppress(OSError):
                    s.send(b"X-Slow: 1\r\n")
            await sleep(0.5)
        await sleep(1.0)
        closed = 0
        for s in slow:
            try:
                s.send(b"X-Slow: 1\r\n")
                data = s.recv(1)
                closed += data == b""
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                closed += 1
        assert closed >= len(slow) * 0.9, f"only {closed} of {len(slow)} slow connections were cut"
        await members_still_talk(b, a, "QkJCQg==")
        await a.close()
        await b.close()
    finally:
        for s in slow:
            s.close()
        await live.hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_connection_flood_from_one_address_is_capped_and_others_are_served() -> None:
    live = await start_server(make_config(limits={"connections_per_address": 10}))
    flood: list[HearthClient] = []
    try:
        a = await live.client(source_address="127.0.0.1")
        b = await live.client(source_address="127.0.0.2")
        await a.join("circle")
        await b.join("circle")
        refused = 0
        started = time.monotonic()
        for _ in range(25):
            try:
                flood.append(await live.client(source_address="127.0.0.9"))
            except ClientClosed:
                refused += 1
        assert len(flood) == 10 and refused == 15
        assert time.monotonic() - started < 30
        await members_still_talk(a, b, "Q0NDQw==")
        newcomer = await live.client(source_address="127.0.0.7")  # another address: welcome
        await newcomer.join("circle")
        for client in flood[:3]:  # closing gives places back
            await client.close()
        flood = flood[3:]
        flood.append(await live.client(source_address="127.0.0.9"))
        for client in (a, b, newcomer):
            await client.close()
    finally:
        for client in flood:
            client.drop()
        await live.hearth.service.stopService()


def test_the_cap_counts_keyed_hashes_not_addresses() -> None:
    import random

    from hearth.moderation.wiring import moderated_venue
    from hearth.web.node import Node
    venue = moderated_venue(make_config(limits={"connections_per_address": 2}),
                            franking_key=b"k" * 32, rng=random.Random(1))
    from hearth.spaces.broker import MemoryBroker
    node = Node(venue, MemoryBroker(time.time), lambda p, b: p, time.time, address_seed=b"s" * 32)
    keys = [node.admit_address("203.0.113.5") for _ in range(3)]
    assert keys[0] and keys[1] and keys[2] is None
    assert "203.0.113.5" not in repr(node._per_address)
    node.release_address(keys[0])  # type: ignore[arg-type]
    assert node.admit_address("203.0.113.5") is not None





@pytest_twisted.ensureDeferred
async def test_a_member_that_stops_reading_is_cut_before_its_backlog_grows_without_bound() -> None:
    """Chat is never dropped for a slow reader, so what it has not read waits in the server's
    memory; past limits.max_unsent_bytes the connection is cut (1013): the member is away
    and may resume, and the room goes on."""
    limit = 262144
    live = await start_server(make_config(limits={"max_unsent_bytes": limit}))
    try:
        a, b, stuck = await live.client(), await live.client(), await live.client()
        for client in (a, b, stuck):
            await client.join("circle")
        stuck.stop_reading()
        body = "QUFB" * 5000  # 20 kB of base64

        def is_away(m: dict[str, Any]) -> bool:
            return bool(m["type"] == "member_updated" and m["member"]["id"] == stuck.member
                        and m["member"].get("away"))
        for i in range(1500):  # up to 30 MB, far past what the kernels' buffers hold
            a.envelope(body, COMMIT)
            if i % 20 == 19:
                await sleep(0.1)
                if any(is_away(m) for m in b.inbox):
                    break
        await b.next(is_away, timeout=15)
        assert all(link.peer.pending_bytes() <= 2 * limit for link in
                   live.hearth.node.host.links.values() if not link.closed)
        await members_still_talk(a, b, "RERERA==")
        await a.close()
        await b.close()
        stuck.drop()
    finally:
        await live.hearth.service.stopService()
