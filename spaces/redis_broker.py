"""RedisBroker: the broker seam over Redis (one server, Sentinel-fronted, or a Cluster).

What lives in Redis (docs/scaling.md lists the same):

    hearth:node:{node}           "1", TTL 4 s — heartbeat: the node is alive
    hearth:owner:{room}          node id, TTL 5 s — the node that runs the room
    hearth:state:{room}          JSON, TTL 1 day — the room's saved state (pseudonyms,
                                 seats, keys' public halves, sequence, epoch, digests of
                                 session tokens, open incidents; never content)
    hearth:log:{stream}          stream, no TTL — a shared log (audit, incidents, outbox):
                                 one field "record"; at most ~1 M entries, trimmed by age
    hearth:lease:{name}          node id, TTL as asked — the node doing a job alone
    hearth:inbox:{node}          pub/sub channel (sharded pub/sub on a Cluster)
    hearth:all                   pub/sub channel to every node (sharded on a Cluster)

Every key is independent (no multi-key command), so keys spread over Cluster
slots freely. Messages to one node go out in order: one writer task publishes
from a queue, so two frames of one client cannot overtake each other on
different pool connections. Pub/sub alone is at-most-once; the writer makes up
for it. While Redis is away it keeps what it could not publish, in order, and
publishes it when Redis is back (at most HOLD seconds old). A publish that
nobody received (PUBLISH answers how many did) is reported at once as
`unheard` (the receiver may be gone) and tried again, in order with what
follows for that node, until the receiver subscribes again (its subscription
comes back after a Redis restart) or UNHEARD_HOLD seconds have passed; then it
is reported `undelivered`. Messages to every node (`hearth:all`) are not
kept: what they carry is also in the shared logs. The subscriber reconnects
with backoff (at most a second); on a Cluster it first asks for the slot map
again and moves only the subscriptions of a master that failed over.

Directory calls time out after CALL_TIMEOUT and raise `Unreachable` when Redis
cannot answer: the caller decides, nothing is guessed here. Publishing never
times out: a paused Redis holds the messages and delivers them when it
resumes, so a publish is never sent twice.

Runs on Twisted's asyncio reactor; redis-py's coroutines are awaited directly
from Twisted coroutines (Deferred.fromFuture where a Deferred is needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from hearth.spaces.broker import Deliver, Subscription, Unreachable, _Cancel

QUEUE_LIMIT = 10_000  # messages kept for publishing; beyond, the newest are given up
BACKOFF_MAX = 1.0  # seconds between reconnection attempts, at most
CALL_TIMEOUT = 1.0  # seconds a directory call may take before it counts as unreachable
HOLD = 10.0  # seconds a message may wait for Redis to come back
UNHEARD_HOLD = 5.0  # seconds a message may wait for its receiver to subscribe (again)
RETRY_UNHEARD = 0.1  # seconds between tries of a message nobody received
BATCH = 512
STATE_TTL_MS = 86_400_000
LOG_MAXLEN = 1_000_000  # a memory bound on each log (approximate: Redis trims whole nodes)
ALL = "hearth:all"

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_TAKE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) and 1 or 0
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


async def _in_task(coro: Any) -> Any:
    """redis-py needs an asyncio Task around it (its timeouts do); Twisted coroutines are not
    one (`ensureDeferred` on a redis coroutine fails with "no running event loop"), so each
    call runs in its own Task and is awaited as a Deferred (Deferred.fromFuture)."""
    from twisted.internet.defer import Deferred
    return await Deferred.fromFuture(asyncio.ensure_future(coro))


class RedisBroker:
    log = Logger(namespace="hearth.redis")

    def __init__(self, url: str) -> None:
        self.cluster = url.startswith("redis+cluster://")
        self.url = url.replace("redis+cluster://", "redis://", 1)
        self.name = "redis-cluster" if self.cluster else "redis"
        self._client: Any = None
        self._inboxes: dict[str, Deliver] = {}
        # what waits to be published, oldest first: (channel, payload, since when)
        self._queue: deque[tuple[str, bytes, float]] = deque()
        self._ready: asyncio.Event | None = None
        # channels whose receiver did not hear the last try: their messages wait, in order
        self._blocked: dict[str, deque[tuple[str, bytes, float]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._pubsub: Any = None
        self._subscribed: set[str] = set()
        self._unheard: Callable[[str], None] | None = None
        self._undelivered: Callable[[str, bytes], None] | None = None
        self._told: dict[str, float] = {}  # node -> when it was last reported unheard
        self._retry_at = 0.0
        self.dropped = 0  # messages given up on
        self._listening = False  # the subscriptions are up
        self._backoff = 0.1  # seconds before the subscriber tries again (doubling)
        self._answering = True  # the last call (or publish) got its answer

    @property
    def connected(self) -> bool:
        """Subscribed, and the last call or publish answered: False while any part of Redis is
        away (a restart, a Cluster master failing over, a pause that times calls out)."""
        return self._listening and self._answering

    def _channel(self, node: str) -> str:
        return f"hearth:inbox:{node}"

    async def start(self) -> None:
        await _in_task(self._start())

    async def _start(self) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.cluster import RedisCluster
        if self.cluster:
            self._client = RedisCluster.from_url(self.url)
            try:
                await self._client.initialize()  # learn the slot map before the first command
            except Exception as err:
                self.log.warn("redis cluster not reachable yet ({why})", why=type(err).__name__)
        else:
            self._client = aioredis.Redis.from_url(self.url, health_check_interval=5)
        self._ready = asyncio.Event()
        if self._queue:
            self._ready.set()
        self._tasks = [asyncio.ensure_future(self._writer()),
                       asyncio.ensure_future(self._reader())]

    async def stop(self) -> None:
        await _in_task(self._stop())

    async def _stop(self) -> None:
        """Bounded: a stopping node must not hang on a Redis that went away."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 2)
        self._tasks = []
        for closing in (self._pubsub, self._client):
            if closing is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(closing.aclose(), 2)

    # --- messages -------------------------------------------------------------------

    def send_node(self, node: str, payload: bytes) -> None:
        self._publish(self._channel(node), payload)

    def subscribe_node(self, node: str, deliver: Deliver) -> Subscription:
        return self._listen(self._channel(node), deliver)

    def send_all(self, payload: bytes) -> None:
        self._publish(ALL, payload)

    def subscribe_all(self, deliver: Deliver) -> Subscription:
        return self._listen(ALL, deliver)

    def _listen(self, channel: str, deliver: Deliver) -> Subscription:
        self._inboxes[channel] = deliver

        def cancel() -> None:
            if self._inboxes.get(channel) is deliver:
                del self._inboxes[channel]
        return _Cancel(cancel)

    def watch(self, unheard: Callable[[str], None],
              undelivered: Callable[[str, bytes], None]) -> None:
        self._unheard, self._undelivered = unheard, undelivered

    def _publish(self, channel: str, payload: bytes) -> None:
        """Queued for the one writer task, so messages leave in the order they were sent."""
        if len(self._queue) >= QUEUE_LIMIT:
            self._give_up([(channel, payload, 0.0)])
            return
        self._queue.append((channel, payload, time.monotonic()))
        if self._ready is not None:
            self._ready.set()

    def _node_of(self, channel: str) -> str | None:
        prefix = "hearth:inbox:"
        return channel[len(prefix):] if channel.startswith(prefix) else None

    def _give_up(self, messages: list[tuple[str, bytes, float]]) -> None:
        self.dropped += len(messages)
        for channel, payload, _ in messages:
            node = self._node_of(channel)
            if node is not None and self._undelivered is not None:
                self._undelivered(node, payload)

    def _not_heard(self, channel: str) -> None:
        node = self._node_of(channel)
        now = time.monotonic()
        if node is not None and self._unheard is not None and now - self._told.get(node, -9) >= 1:
            self._told[node] = now
            self._unheard(node)

    async def _send(self, batch: list[tuple[str, bytes, float]]) -> list[int]:
        """Publish in order; how many subscribers received each message (-1: not sent). On an
        error, what was not published goes back to the head of the queue (nothing is sent
        twice). On a Cluster, once a message to a node was not heard, what follows it for
        that node in the batch is not sent: the receiver may subscribe again in the middle
        of the batch, and would get the later messages before the unheard one."""
        if not self.cluster:
            pipe = self._client.pipeline(transaction=False)
            for channel, payload, _ in batch:
                pipe.publish(channel, payload)
            try:
                return [int(n) for n in await pipe.execute()]
            except BaseException:
                self._queue.extendleft(reversed(batch))
                raise
        heard: list[int] = []  # one at a time: each channel's slot may live on another shard
        unheard: set[str] = set()
        try:
            for channel, payload, _ in batch:
                if channel in unheard:  # not sent: it waits behind its channel's unheard one
                    heard.append(-1)
                    continue
                heard.append(int(await self._client.spublish(channel, payload)))
                if not heard[-1] and self._node_of(channel) is not None:
                    unheard.add(channel)
        except BaseException:
            self._queue.extendleft(reversed(batch[len(heard):]))
            if heard:
                self._sort_heard(batch[:len(heard)], heard)
            raise
        return heard

    async def _writer(self) -> None:
        assert self._ready is not None
        delay = 0.1
        while True:
            if not self._queue and not self._blocked:
                self._ready.clear()
                await self._ready.wait()
            try:
                await self._retry_blocked()
                batch: list[tuple[str, bytes, float]] = []
                while self._queue and len(batch) < BATCH:
                    message = self._queue.popleft()
                    waiting = self._blocked.get(message[0])
                    if waiting is not None:
                        waiting.append(message)  # behind its channel's unheard message
                    else:
                        batch.append(message)
                if batch:
                    self._sort_heard(batch, await self._send(batch))
                    self._answering = True
                    delay = 0.1
                elif self._blocked:
                    await asyncio.sleep(RETRY_UNHEARD)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # Redis away: keep the messages, retry with backoff
                self._answering = False
                self.log.warn("redis publish failed ({why}); {count} messages wait",
                              why=type(err).__name__, count=len(self._queue))
                self._expire(self._queue, HOLD)
                await asyncio.sleep(delay)
                delay = min(BACKOFF_MAX, delay * 2)

    def _sort_heard(self, batch: list[tuple[str, bytes, float]], heard: list[int]) -> None:
        for message, receivers in zip(batch, heard, strict=True):
            channel = message[0]
            if channel in self._blocked:
                self._blocked[channel].append(message)
            elif receivers == 0 and self._node_of(channel) is not None:
                self._blocked[channel] = deque([message])
                self._not_heard(channel)

    async def _retry_blocked(self) -> None:
        """Try again the head of each channel nobody heard; what follows it goes out once it
        is heard. Given up after UNHEARD_HOLD seconds (the receiver is gone)."""
        now = time.monotonic()
        if not self._blocked or now < self._retry_at:
            return
        self._retry_at = now + RETRY_UNHEARD
        for channel in list(self._blocked):
            waiting = self._blocked.pop(channel)
            self._expire(waiting, UNHEARD_HOLD)
            if not waiting:
                continue
            head = waiting.popleft()
            try:
                heard = await self._client.publish(channel, head[1]) if not self.cluster \
                    else await self._client.spublish(channel, head[1])
            except BaseException:
                waiting.appendleft(head)
                self._blocked[channel] = waiting
                raise
            if not heard:
                waiting.appendleft(head)
                self._blocked[channel] = waiting
                self._not_heard(channel)
                continue
            if waiting:  # in order: back to the head of the queue, before anything newer
                self._queue.extendleft(reversed(waiting))

    def _expire(self, messages: deque[tuple[str, bytes, float]], hold: float) -> None:
        now = time.monotonic()
        old = []
        while messages and now - messages[0][2] > hold:
            old.append(messages.popleft())
        if old:
            self.log.warn("{count} messages between nodes given up", count=len(old))
            self._give_up(old)

    async def _reader(self) -> None:
        fresh = True
        while True:
            try:
                if fresh:
                    self._pubsub = self._client.pubsub()
                    self._subscribed = set()
                await self._sync_subscriptions()
                self._listening = True
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._listening = False
                self.log.warn("redis subscription lost ({why}); retrying in {delay:.1f}s",
                              why=type(err).__name__, delay=self._backoff)
                await asyncio.sleep(self._backoff)
                self._backoff = min(BACKOFF_MAX, self._backoff * 2)
                # On a Cluster the shards that did not fail keep their connections, and what
                # they received but was not read yet: only a failed master's channels move.
                fresh = not (self.cluster and await self._follow_slots())
                if fresh:
                    with contextlib.suppress(Exception):
                        await self._pubsub.aclose()

    async def _read(self) -> None:
        idle = 0
        while True:
            await self._sync_subscriptions()
            if not self._subscribed:  # nothing to listen to yet
                await asyncio.sleep(0.05)
                continue
            if self.cluster:
                # redis-py polls one shard per call, waiting out the timeout on an
                # idle one: poll every shard without waiting, then pause briefly.
                message = await self._pubsub.get_sharded_message(
                    ignore_subscribe_messages=True, timeout=0.0)
                if message is None:
                    idle += 1
                    if idle >= max(1, len(self._pubsub.node_pubsub_mapping)):
                        idle = 0
                        self._backoff = 0.1  # every shard answered
                        await asyncio.sleep(0.002)
                    continue
                idle = 0
            else:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=0.5)
                self._backoff = 0.1
            if message is None:
                continue
            channel = message["channel"]
            if isinstance(channel, bytes):
                channel = channel.decode()
            self._backoff = 0.1
            deliver = self._inboxes.get(channel)
            if deliver is not None:
                deliver(message["data"])

    async def _follow_slots(self) -> bool:
        """Ask the Cluster again which master serves each slot, and move the subscriptions of
        channels whose master changed (a failover) to the new one. redis-py relearns the slots
        only when a command fails, never when a subscription does: a node that sends nothing
        to a failed master's slots would otherwise subscribe to the dead master again and
        again, and hear nothing published to its inbox on the new one. False if the Cluster
        could not be asked, or a subscription is left on a node that serves no slot now (the
        subscriptions are then made afresh)."""
        try:
            await asyncio.wait_for(self._client.nodes_manager.initialize(), CALL_TIMEOUT)
            await asyncio.wait_for(self._pubsub.reinitialize_shard_subscriptions(), CALL_TIMEOUT)
        except Exception as err:  # still failing over: the next try asks again
            self.log.warn("redis cluster slots not followed yet ({why})",
                          why=type(err).__name__)
            return False
        masters = {node.name for node in self._client.get_primaries()}
        return set(self._pubsub.node_pubsub_mapping) <= masters  # none left on a replaced one

    async def _sync_subscriptions(self) -> None:
        wanted = set(self._inboxes)
        new = wanted - self._subscribed
        if new:
            if self.cluster:
                await self._pubsub.ssubscribe(*new)
            else:
                await self._pubsub.subscribe(*new)
            self._subscribed |= new
        gone = self._subscribed - wanted  # a cancelled subscription stops listening
        if gone:
            if self.cluster:
                await self._pubsub.sunsubscribe(*gone)
            else:
                await self._pubsub.unsubscribe(*gone)
            self._subscribed -= gone

    # --- the directory ------------------------------------------------------------------

    async def _call(self, op: Callable[[], Any]) -> Any:
        """A directory call: its answer, or Unreachable (Redis away or too slow)."""
        try:
            answer = await _in_task(asyncio.wait_for(op(), CALL_TIMEOUT))
        except Exception as err:
            self._answering = False
            self.log.warn("redis call failed ({why})", why=type(err).__name__)
            raise Unreachable(type(err).__name__) from None
        self._answering = True
        return answer

    async def _try(self, default: Any, op: Callable[[], Any]) -> Any:
        """A shared-log or lease call: its answer, or `default` when Redis is away."""
        try:
            return await self._call(op)
        except Unreachable:
            return default

    async def heartbeat(self, node: str, ttl: float) -> None:
        await self._call(lambda: self._client.set(f"hearth:node:{node}", b"1",
                                                  px=int(ttl * 1000)))

    async def alive(self, node: str) -> bool:
        return bool(await self._call(lambda: self._client.exists(f"hearth:node:{node}")))

    async def listening(self, node: str) -> bool:
        channel = self._channel(node)
        if self.cluster:  # a sharded channel's subscribers are on the shard of its slot
            found = await self._call(lambda: self._client.execute_command(
                "PUBSUB SHARDNUMSUB", channel,
                target_nodes=self._client.get_node_from_key(channel)))
        else:
            found = await self._call(lambda: self._client.pubsub_numsub(channel))
        return any(int(n) > 0 for _, n in found)

    async def claim_room(self, room: str, node: str, ttl: float) -> str:
        key = f"hearth:owner:{room}"

        async def claim() -> str:
            for _ in range(3):  # the key may expire between SET NX and GET
                if await self._client.set(key, node.encode(), nx=True, px=int(ttl * 1000)):
                    return node
                owner = await self._client.get(key)
                if owner is not None:
                    return str(owner.decode())
            raise RuntimeError("the owner key kept changing")
        return str(await self._call(claim))

    async def take_room(self, room: str, node: str, previous: str, ttl: float) -> bool:
        return bool(await self._call(lambda: self._client.eval(
            _TAKE, 1, f"hearth:owner:{room}", previous, node, int(ttl * 1000))))

    async def owner(self, room: str) -> str | None:
        found = await self._call(lambda: self._client.get(f"hearth:owner:{room}"))
        return found.decode() if found is not None else None

    async def renew_room(self, room: str, node: str, ttl: float) -> bool:
        return bool(await self._call(lambda: self._client.eval(
            _RENEW, 1, f"hearth:owner:{room}", node, int(ttl * 1000))))

    async def release_room(self, room: str, node: str) -> None:
        await self._call(lambda: self._client.eval(_RELEASE, 1, f"hearth:owner:{room}", node))

    async def save_room(self, room: str, state: bytes) -> None:
        await self._call(lambda: self._client.set(f"hearth:state:{room}", state,
                                                  px=STATE_TTL_MS))

    async def load_room(self, room: str) -> bytes | None:
        found = await self._call(lambda: self._client.get(f"hearth:state:{room}"))
        return bytes(found) if found is not None else None

    async def drop_room(self, room: str) -> None:
        await self._call(lambda: self._client.delete(f"hearth:state:{room}"))

    # --- shared logs ----------------------------------------------------------------------

    async def append(self, stream: str, record: bytes) -> str | None:
        found = await self._try(None, lambda: self._client.xadd(
            f"hearth:log:{stream}", {"record": record}, maxlen=LOG_MAXLEN, approximate=True))
        return found.decode() if found is not None else None

    async def read(self, stream: str, after: str | None = None,
                   count: int = 1000) -> list[tuple[str, bytes]] | None:
        found = await self._try(None, lambda: self._client.xrange(
            f"hearth:log:{stream}", min="-" if after is None else f"({after}", count=count))
        if found is None:
            return None
        return [(entry_id.decode(), bytes(fields[b"record"])) for entry_id, fields in found]

    async def remove(self, stream: str, ids: list[str]) -> bool:
        if not ids:  # XDEL needs at least one id
            return True
        done = await self._try(False, lambda: self._client.xdel(f"hearth:log:{stream}", *ids))
        return done is not False

    async def trim(self, stream: str, before_ms: int) -> int:
        # approximate=False: redis-py's xtrim trims approximately ("~") unless told not to
        gone = await self._try(0, lambda: self._client.xtrim(
            f"hearth:log:{stream}", minid=f"{before_ms}", approximate=False))
        return int(gone)

    # --- leases ---------------------------------------------------------------------------

    async def lease(self, name: str, node: str, ttl: float) -> bool:
        key, ms = f"hearth:lease:{name}", int(ttl * 1000)

        async def take() -> bool:
            if await self._client.set(key, node.encode(), nx=True, px=ms):
                return True
            return bool(await self._client.eval(_RENEW, 1, key, node, ms))  # ours: extend
        return bool(await self._try(False, take))

    async def take_lease(self, name: str, node: str, previous: str, ttl: float) -> bool:
        return bool(await self._try(False, lambda: self._client.eval(
            _TAKE, 1, f"hearth:lease:{name}", previous, node, int(ttl * 1000))))

    async def release_lease(self, name: str, node: str) -> None:
        await self._try(None, lambda: self._client.eval(_RELEASE, 1, f"hearth:lease:{name}",
                                                         node))

    # --- the privacy report -------------------------------------------------------------

    async def inventory(self) -> list[dict[str, Any]]:
        """Every key Hearth keeps here (`hearth:*`, on every master of a Cluster): its name,
        type, time to live in ms (-1: none), memory, and for a stream its length and first
        entry id. Never a value. Raises if Redis does not answer (`hearth privacy report`)."""
        client = self._client

        async def one(key: Any) -> dict[str, Any]:
            name = key.decode() if isinstance(key, bytes) else str(key)
            kind = await client.type(key)
            item: dict[str, Any] = {"key": name, "type": kind.decode() if isinstance(kind, bytes)
                                    else str(kind), "ttl_ms": int(await client.pttl(key))}
            try:
                item["bytes"] = int(await client.memory_usage(key) or 0)
            except Exception:  # MEMORY USAGE turned off (some hosted Redis): sizes unknown
                item["bytes"] = 0
            if item["type"] == "stream":
                item["length"] = int(await client.xlen(key))
                first = await client.xrange(key, count=1)
                item["first_id"] = first[0][0].decode() if first else None
            return item

        async def scan() -> list[dict[str, Any]]:
            return [await one(key) async for key in client.scan_iter(match="hearth:*", count=500)]
        found: list[dict[str, Any]] = await _in_task(scan())
        return found
