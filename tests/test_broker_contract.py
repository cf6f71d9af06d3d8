"""One contract, every broker: MemoryBroker, RedisBroker on one redis-server, and on a Cluster."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from spaces.broker import MemoryBroker
from tests.redis_servers import RedisServer, redis_cluster, redis_server  # noqa: F401 - fixtures


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await sleep(0.02)



@pytest.fixture(params=["memory", "redis", "cluster"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_twisted.async_yield_fixture
async def brokers(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, Any]]:
    """Two brokers as two nodes would hold them (the memory kind is one shared object)."""
    if kind == "memory":
        shared = MemoryBroker(reactor.seconds, schedule=lambda c: reactor.callLater(0, c))
        yield shared, shared
        return
    from spaces.redis_broker import RedisBroker
    url = request.getfixturevalue("redis_server" if kind == "redis" else "redis_cluster").url
    a, b = RedisBroker(url), RedisBroker(url)
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


def unique(name: str) -> str:
    return f"{name}-{time.monotonic_ns()}"


@pytest_twisted.ensureDeferred
async def test_messages_arrive_in_order_and_only_at_their_node(brokers: Any) -> None:
    a, b = brokers
    node_b, node_c = unique("b"), unique("c")
    got_b: list[bytes] = []
    got_c: list[bytes] = []
    b.subscribe_node(node_b, got_b.append)
    b.subscribe_node(node_c, got_c.append)
    await sleep(0.3)  # subscriptions settle (Redis subscribes asynchronously)
    for i in range(200):
        a.send_node(node_b, b"m%d" % i)
    await until(lambda: len(got_b) == 200)
    assert got_b == [b"m%d" % i for i in range(200)] and got_c == []


@pytest_twisted.ensureDeferred
async def test_a_cancelled_subscription_receives_nothing(brokers: Any) -> None:
    a, b = brokers
    node = unique("n")
    got: list[bytes] = []
    sub = b.subscribe_node(node, got.append)
    await sleep(0.3)
    a.send_node(node, b"one")
    await until(lambda: got == [b"one"])
    sub.cancel()
    a.send_node(node, b"two")
    await sleep(0.3)
    assert got == [b"one"]


@pytest_twisted.ensureDeferred
async def test_heartbeats_expire(brokers: Any) -> None:
    a, b = brokers
    node = unique("n")
    assert not await b.alive(node)
    await a.heartbeat(node, 0.4)
    assert await b.alive(node)
    await sleep(0.6)
    assert not await b.alive(node)


@pytest_twisted.ensureDeferred
async def test_room_ownership_is_exclusive_renewable_and_passes_on_when_the_owner_dies(
        brokers: Any) -> None:
    a, b = brokers
    room, one, two = unique("room"), unique("one"), unique("two")
    await a.heartbeat(one, 5)
    await b.heartbeat(two, 5)
    assert await a.claim_room(room, one, 5) == one
    assert await b.claim_room(room, two, 5) == one  # a live owner keeps it
    assert await b.owner(room) == one
    assert await a.renew_room(room, one, 5) and not await b.renew_room(room, two, 5)
    await b.release_room(room, two)  # not its to release
    assert await a.owner(room) == one
    await a.heartbeat(one, 0.2)  # node one stops beating
    await sleep(0.4)
    assert await b.claim_room(room, two, 5) == two  # taken over from a dead owner
    assert not await a.renew_room(room, one, 5)
    await b.release_room(room, two)
    assert await a.owner(room) is None


@pytest_twisted.ensureDeferred
async def test_room_state_and_sessions(brokers: Any) -> None:
    a, b = brokers
    room, digest = unique("room"), unique("d" * 64)
    assert await b.load_room(room) is None
    await a.save_room(room, b'{"seq": 7}')
    assert await b.load_room(room) == b'{"seq": 7}'
    await a.drop_room(room)
    assert await b.load_room(room) is None
    await a.bind_session(digest, room, 0.5)
    assert await b.session_room(digest) == room
    await a.forget_session(digest)
    assert await b.session_room(digest) is None
    await a.bind_session(digest, room, 0.3)
    await sleep(0.5)
    assert await b.session_room(digest) is None


def test_fixtures_use_loopback_only(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    assert server.url.startswith("redis://127.0.0.1:")
