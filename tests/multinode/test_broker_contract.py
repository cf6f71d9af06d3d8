"""One contract, every broker: MemoryBroker, RedisBroker on one redis-server, and on a Cluster."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from hearth.spaces.broker import MemoryBroker
from tests.support.redis_servers import RedisCluster, RedisServer


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
    from hearth.web.redis_broker import RedisBroker
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
async def test_room_ownership_is_exclusive_renewable_and_taken_only_from_its_owner(
        brokers: Any) -> None:
    a, b = brokers
    room, one, two, three = unique("room"), unique("one"), unique("two"), unique("three")
    assert await a.claim_room(room, one, 5) == one
    assert await b.claim_room(room, two, 5) == one  # an owner keeps it (liveness: the host's)
    assert await b.owner(room) == one
    assert await a.renew_room(room, one, 5) and not await b.renew_room(room, two, 5)
    await b.release_room(room, two)  # not its to release
    assert await a.owner(room) == one
    assert not await b.take_room(room, two, three, 5)  # only from the owner it names
    assert await b.take_room(room, two, one, 5)  # one went away: two takes it over
    assert await a.owner(room) == two and not await a.renew_room(room, one, 5)
    await b.release_room(room, two)
    assert await a.owner(room) is None
    assert await a.claim_room(room, one, 0.2) == one
    await sleep(0.4)  # not renewed: free again
    assert await b.claim_room(room, two, 5) == two


@pytest_twisted.ensureDeferred
async def test_a_node_is_alive_while_it_beats_and_listening_while_subscribed(
        brokers: Any) -> None:
    a, b = brokers
    node = unique("n")
    assert not await a.listening(node)
    subscription = b.subscribe_node(node, lambda payload: None)
    await until_async(lambda: a.listening(node))
    subscription.cancel()
    await until_async(lambda: _not(a.listening(node)))
    await a.heartbeat(node, 0.3)
    assert await b.alive(node)
    await sleep(0.5)
    assert not await b.alive(node)


async def _not(answer: Any) -> bool:
    return not await answer


async def until_async(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await sleep(0.02)


@pytest_twisted.ensureDeferred
async def test_a_message_nobody_receives_is_reported_never_lost_in_silence(
        brokers: Any) -> None:
    a, b = brokers
    nobody, later = unique("nobody"), unique("later")
    unheard: list[str] = []
    undelivered: list[tuple[str, bytes]] = []
    a.watch(unheard.append, lambda node, payload: undelivered.append((node, payload)))
    a.send_node(nobody, b"one")
    a.send_node(nobody, b"two")
    await until(lambda: len(undelivered) == 2, timeout=10)
    assert unheard[0] == nobody and undelivered == [(nobody, b"one"), (nobody, b"two")]
    # a receiver that subscribes a moment late (its subscription coming back after a
    # Redis restart) still gets everything, in order — the memory broker delivers or not
    if a is not b:
        got: list[bytes] = []
        for i in range(5):
            a.send_node(later, b"m%d" % i)
        await sleep(0.3)
        b.subscribe_node(later, got.append)
        await until(lambda: len(got) == 5, timeout=10)
        assert got == [b"m%d" % i for i in range(5)]


@pytest_twisted.ensureDeferred
async def test_a_receiver_that_subscribes_in_the_middle_of_a_burst_gets_it_in_order(
        brokers: Any) -> None:
    """Its subscription comes back (after a failover) while messages to it are going out:
    each arrives once, in order, none overtaking one that was not heard yet."""
    a, b = brokers
    if a is b:  # the memory broker delivers or not
        return
    node = unique("burst")
    got: list[bytes] = []
    for i in range(3000):
        a.send_node(node, b"m%d" % i)
    await sleep(0.01)  # the writer is publishing the first batches
    b.subscribe_node(node, got.append)
    await until(lambda: len(got) >= 3000, timeout=15)
    await sleep(0.2)
    assert got == [b"m%d" % i for i in range(3000)]


@pytest_twisted.ensureDeferred
async def test_a_cluster_client_reset_costs_no_message_and_repeats_none(
        redis_cluster: RedisCluster) -> None:
    """redis-py's Cluster client disconnects all of its connections whenever a command meets
    CLUSTERDOWN (any master failing over, the Cluster restarting). Subscriptions and
    publishes are not among them: reset over and over while a burst goes out, every
    message arrives once, in order."""
    import asyncio

    from twisted.internet.defer import Deferred

    from hearth.web.redis_broker import RedisBroker
    a, b = RedisBroker(redis_cluster.url), RedisBroker(redis_cluster.url)
    await a.start()
    await b.start()
    resetting = [True]

    async def reset() -> None:  # what redis-py does on CLUSTERDOWN, every few milliseconds
        while resetting[0]:
            for broker in (a, b):
                await broker._client.aclose()
            await asyncio.sleep(0.003)
    resets = asyncio.ensure_future(reset())
    try:
        node = unique("reset")
        got: list[bytes] = []
        b.subscribe_node(node, got.append)
        await sleep(0.3)  # subscriptions settle (Redis subscribes asynchronously)
        for i in range(3000):
            a.send_node(node, b"m%d" % i)
            if i % 100 == 0:
                await sleep(0.01)  # spread over the resets
        await until(lambda: len(got) >= 3000, timeout=20)
        await sleep(0.2)
        assert got == [b"m%d" % i for i in range(3000)]
    finally:
        resetting[0] = False
        await Deferred.fromFuture(resets)
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_room_state(brokers: Any) -> None:
    a, b = brokers
    room = unique("room")
    assert await b.load_room(room) is None
    await a.save_room(room, b'{"seq": 7}')
    assert await b.load_room(room) == b'{"seq": 7}'
    await a.drop_room(room)
    assert await b.load_room(room) is None


def id_key(record_id: str) -> tuple[int, int]:
    ms, n = record_id.split("-")
    return int(ms), int(n)


@pytest_twisted.ensureDeferred
async def test_shared_logs_append_read_remove_and_trim(brokers: Any) -> None:
    a, b = brokers
    stream = unique("audit")
    assert await b.read(stream) == []
    records = [b"r%d\x00\xff" % i for i in range(5)]
    ids = [await a.append(stream, record) for record in records]
    assert all(isinstance(i, str) and id_key(i) for i in ids)
    assert sorted(ids, key=id_key) == ids and len(set(ids)) == 5  # increasing, same ms or not
    assert abs(id_key(ids[0])[0] - time.time() * 1000) < 5000  # wall-clock milliseconds
    assert await b.read(stream) == list(zip(ids, records, strict=True))
    assert await b.read(stream, after=ids[1], count=2) == [(ids[2], records[2]),
                                                           (ids[3], records[3])]
    assert await b.read(stream, after=ids[4]) == []
    assert await a.remove(stream, [ids[1], ids[4], "1-0"])  # a missing id is fine
    assert await a.remove(stream, [])
    assert [i for i, _ in await b.read(stream)] == [ids[0], ids[2], ids[3]]
    again = await a.append(stream, b"again")
    assert id_key(again) > id_key(ids[4])  # ids keep increasing after the newest is removed
    await sleep(0.05)
    later = await a.append(stream, b"later")
    assert await a.trim(stream, id_key(later)[0]) == 4  # everything older than `later`
    assert await b.read(stream) == [(later, b"later")]
    assert await a.trim(stream, id_key(later)[0]) == 0
    assert await b.read(unique("other")) == []  # streams are independent


@pytest_twisted.ensureDeferred
async def test_a_lease_has_one_holder_is_extended_by_it_and_expires(brokers: Any) -> None:
    a, b = brokers
    name, one, two = unique("lease"), unique("one"), unique("two")
    assert await a.lease(name, one, 5)
    assert not await b.lease(name, two, 5)
    assert await a.lease(name, one, 0.3)  # already ours: its ttl is now 0.3 s
    await b.release_lease(name, two)  # not its to release
    assert not await b.lease(name, two, 5)
    await sleep(0.5)
    assert await b.lease(name, two, 5)  # expired: free for another node
    assert not await a.lease(name, one, 5)
    await a.release_lease(name, one)
    assert not await a.lease(name, one, 5)
    await b.release_lease(name, two)
    assert await a.lease(name, one, 5)
    # a node found gone: its lease is taken from it at once, and only from it
    assert not await b.take_lease(name, two, unique("other"), 5)
    assert await b.take_lease(name, two, one, 5)
    assert not await a.lease(name, one, 5)


@pytest_twisted.ensureDeferred
async def test_messages_to_every_node_arrive_in_order_at_each_subscriber(brokers: Any) -> None:
    a, b = brokers
    node = unique("n")
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    got_node: list[bytes] = []
    a.subscribe_all(got_a.append)
    sub_b = b.subscribe_all(got_b.append)
    b.subscribe_node(node, got_node.append)
    await sleep(0.3)
    want = [b"all%d" % i for i in range(100)]
    for payload in want:
        a.send_all(payload)
    await until(lambda: len(got_a) == len(got_b) == 100)
    assert got_a == want and got_b == want  # the sender's own subscriber included
    sub_b.cancel()
    a.send_all(b"after")
    await until(lambda: got_a[-1:] == [b"after"])
    await sleep(0.3)
    assert got_b == want and got_node == []


@pytest.mark.parametrize("store", ["redis", "cluster"])
@pytest_twisted.ensureDeferred
async def test_while_redis_is_stopped_logs_and_leases_answer_unreachable(
        store: str, tmp_path: Path) -> None:
    """Own servers (killed here): the caller keeps its copy, nobody holds a lease, the
    directory says it cannot answer, nothing hangs; messages wait for Redis, in order."""
    from hearth.spaces.broker import Unreachable
    from hearth.web.redis_broker import RedisBroker
    redis = (RedisServer(tmp_path) if store == "redis" else RedisCluster(tmp_path)).start()
    broker = RedisBroker(redis.url)
    try:
        await broker.start()
        stream, name, node = unique("outbox"), unique("lease"), unique("n")
        first = await broker.append(stream, b"before")
        assert first is not None
        broker.subscribe_all(lambda payload: None)
        await until(lambda: broker.connected, timeout=30)  # a Cluster subscribes on every shard
        redis.kill()
        started = time.monotonic()
        assert await broker.append(stream, b"during") is None
        assert await broker.read(stream) is None
        assert await broker.remove(stream, [first]) is False
        assert await broker.trim(stream, int(time.time() * 1000)) == 0
        assert await broker.lease(name, node, 5) is False
        await broker.release_lease(name, node)
        for call in (broker.owner(unique("room")), broker.alive(node), broker.listening(node),
                     broker.claim_room(unique("room"), node, 5), broker.heartbeat(node, 5)):
            with pytest.raises(Unreachable):
                await call
        assert time.monotonic() - started < 8  # failing fast, not retrying for long
        got: list[bytes] = []
        broker.subscribe_node(node, got.append)
        for i in range(3):  # kept while Redis is away, published when it is back
            broker.send_node(node, b"w%d" % i)
        redis.restart()  # back, empty: the lease is free, appends work again
        deadline = time.monotonic() + 20
        while await broker.append(stream, b"after") is None:
            assert time.monotonic() < deadline, "no append after the restart"
            await sleep(0.2)
        assert [r for _, r in await broker.read(stream)] == [b"after"]
        assert await broker.lease(name, node, 5)
        with contextlib.suppress(AssertionError):  # (said below, with what arrived)
            await until(lambda: len(got) == 3, timeout=15)
        assert got == [b"w0", b"w1", b"w2"], (got, broker.dropped, broker.connected)
    finally:
        await broker.stop()
        redis.kill()


def test_fixtures_use_loopback_only(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    assert server.url.startswith("redis://127.0.0.1:")
