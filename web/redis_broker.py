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

On a Cluster, subscribing (SSUBSCRIBE) and publishing (SPUBLISH) use
connections the broker holds itself, one pool per master, never the Cluster
client's: that client disconnects all of its connections whenever one command
meets CLUSTERDOWN (a master failing over, the Cluster restarting), which closed
subscriptions to healthy masters with messages in them already counted as
received (lost), and resent publishes it had cut off itself (received twice).

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

from redis.asyncio.client import PubSub
from twisted.logger import Logger

from hearth.spaces.broker import Cancel, Deliver, Subscription, Unreachable

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


def _own_pool(node: Any, **settings: Any) -> Any:
    """A connection pool to one Cluster master that the Cluster client never touches (it
    disconnects all of its own pools at once whenever a command meets CLUSTERDOWN or a
    slot refresh fails, taking commands in flight on healthy masters with them), and that
    never retries inside redis-py: a failure comes back to the broker, which decides."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    return aioredis.ConnectionPool(connection_class=node.connection_class,
                                   **{**node.connection_kwargs, **settings,
                                      "retry": Retry(NoBackoff(), 0)})


class _Shard:
    """The sharded subscriptions a node holds on one Cluster master: a connection of their
    own, read by a task of their own.

    Not redis-py's ClusterPubSub: that borrows its connection to each master from the
    Cluster client's pools, and the client disconnects every pool at once whenever a
    command meets CLUSTERDOWN (any master failing over, a Cluster restarting) or a slot
    refresh fails. That closed subscribed sockets to healthy masters with messages in them
    that SPUBLISH had already counted as received: never read, never retried. Here only a
    failure of this connection touches it; redis-py's PubSub then connects again and
    subscribes to its channels again (one SSUBSCRIBE each: two slots of one master cannot
    share a command)."""

    def __init__(self, node: Any, deliver: Callable[[dict[str, Any]], None],
                 failed: Callable[[], None], back: Callable[[], None], log: Logger) -> None:
        self.pool = _own_pool(node, health_check_interval=5)
        self.pubsub = _ShardPubSub(self.pool)
        self.channels: set[str] = set()
        self.failing = False  # the connection failed and has not answered since
        self._deliver, self._failed, self._back, self._log = deliver, failed, back, log
        self._task: asyncio.Task[None] | None = None

    async def add(self, channel: str) -> None:
        await self.pubsub.ssubscribe(channel)
        self.channels.add(channel)
        if self._task is None:
            self._task = asyncio.ensure_future(self._read())

    async def drop(self, channel: str) -> None:
        self.channels.discard(channel)
        # not subscribed again when the connection comes back
        self.pubsub.shard_channels.pop(self.pubsub.encoder.encode(channel), None)
        if self.channels and not self.failing:
            with contextlib.suppress(Exception):
                await self.pubsub.sunsubscribe(channel)

    async def _read(self) -> None:
        from redis.exceptions import ResponseError
        backoff, unsure = 0.1, False
        while True:
            try:
                if unsure:  # a subscription was refused (CLUSTERDOWN, MOVED): ask again
                    for channel in list(self.channels):
                        await self.pubsub.ssubscribe(channel)
                    unsure = False
                # a second at most, so that the health check's PING goes out
                message = await self.pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                unsure = unsure or isinstance(err, ResponseError)
                if not self.failing:
                    self._log.warn("redis shard subscription failed ({why})",
                                   why=type(err).__name__)
                self.failing = True
                self._failed()
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            if self.failing:  # connected and subscribed again
                self.failing, backoff = False, 0.1
                self._back()
            if message is not None and message["type"] == "smessage":
                self._deliver(message)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        pubsub: Any = self.pubsub  # (its aclose has no type hints)
        for closing in (pubsub.aclose(), self.pool.disconnect()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closing, 2)


class _ShardPubSub(PubSub):
    async def _resubscribe_shard_channels(self) -> None:
        for channel in list(self.shard_channels):
            await self.ssubscribe(channel)


class RedisBroker:
    log = Logger(namespace="hearth.redis")

    def __init__(self, url: str) -> None:
        self.cluster = url.startswith("redis+cluster://")
        self.url = url.replace("redis+cluster://", "redis://", 1)
        self.name = "redis-cluster" if self.cluster else "redis"
        self.directory_in_process = False  # a Redis restart may empty it while nodes live
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
        # a Cluster's subscriptions: master's name -> its _Shard; channel -> master's name
        self._shards: dict[str, _Shard] = {}
        self._where: dict[str, str] = {}
        self._slots_stale = False  # a shard failed: ask the Cluster for the slot map again
        self._wake: asyncio.Event | None = None  # the Cluster's subscriptions may change
        self._publishers: dict[str, Any] = {}  # master's name -> a client of its own

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
        self._wake = asyncio.Event()
        self._tasks = [asyncio.ensure_future(self._writer()),
                       asyncio.ensure_future(self._shard_reader() if self.cluster
                                             else self._reader())]

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
        for shard in self._shards.values():
            await shard.close()
        self._shards.clear()
        for client in self._publishers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.connection_pool.disconnect(), 2)
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
        self._changed()

        def cancel() -> None:
            if self._inboxes.get(channel) is deliver:
                del self._inboxes[channel]
                self._changed()
        return Cancel(cancel)

    def _changed(self) -> None:
        if self._wake is not None:
            self._wake.set()

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
        error, what was not published goes back to the head of the queue and is sent again
        (twice, if the connection broke after Redis took it and before it answered: the
        owner drops a node's repeated frame, a client a repeated message). On a Cluster,
        once a message to a node was not heard, what follows it for that node in the batch
        is not sent: the receiver may subscribe again in the middle of the batch, and would
        get the later messages before the unheard one."""
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
                heard.append(await self._spublish(channel, payload))
                if not heard[-1] and self._node_of(channel) is not None:
                    unheard.add(channel)
        except BaseException:
            self._queue.extendleft(reversed(batch[len(heard):]))
            if heard:
                self._sort_heard(batch[:len(heard)], heard)
            raise
        return heard

    async def _spublish(self, channel: str, payload: bytes) -> int:
        """SPUBLISH on the master that serves the channel's slot, on a connection of the
        broker's own (_own_pool): the Cluster client's retries could send it twice after
        disconnecting it themselves. A refusal (MOVED, CLUSTERDOWN) or a failure raises,
        and the slot map is asked for again."""
        import redis.asyncio as aioredis
        try:
            node = self._client.get_node_from_key(channel)
            client = self._publishers.get(node.name)
            if client is None:
                client = self._publishers[node.name] = aioredis.Redis(
                    connection_pool=_own_pool(node))
            return int(await client.spublish(channel, payload))
        except Exception:
            self._failed()
            raise

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
                # UNHEARD_HOLD counts from now: the time it waited for Redis is not the
                # receiver's (a failover's seconds would leave it none to subscribe again)
                self._blocked[channel] = deque([(channel, message[1], time.monotonic())])
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
                    else await self._spublish(channel, head[1])
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
        """One server: one PubSub; after a failure, a new one subscribes everything again."""
        while True:
            try:
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
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()

    async def _read(self) -> None:
        while True:
            await self._sync_subscriptions()
            if not self._subscribed:  # nothing to listen to yet
                await asyncio.sleep(0.05)
                continue
            message = await self._pubsub.get_message(ignore_subscribe_messages=True,
                                                     timeout=0.5)
            self._backoff = 0.1
            if message is not None:
                self._deliver(message)

    def _deliver(self, message: dict[str, Any]) -> None:
        channel = message["channel"]
        if isinstance(channel, bytes):
            channel = channel.decode()
        deliver = self._inboxes.get(channel)
        if deliver is not None:
            try:
                deliver(message["data"])
            except Exception:  # one message's failure must not close what holds the next
                self.log.failure("a message between nodes could not be handled")

    async def _sync_subscriptions(self) -> None:
        wanted = set(self._inboxes)
        new = wanted - self._subscribed
        if new:
            await self._pubsub.subscribe(*new)
            self._subscribed |= new
        gone = self._subscribed - wanted  # a cancelled subscription stops listening
        if gone:
            await self._pubsub.unsubscribe(*gone)
            self._subscribed -= gone

    # --- a Cluster's shards -------------------------------------------------------------

    async def _shard_reader(self) -> None:
        """Cluster: each master that serves a wanted channel's slot gets a _Shard, read by a
        task of its own; this keeps them matching the wanted channels and the slot map. When
        a shard's connection fails, the slot map is asked for again at once (redis-py
        relearns it only when a command fails, never when a subscription does) and only the
        channels whose master changed move; the other shards are left alone."""
        while True:
            try:
                if self._slots_stale:
                    await asyncio.wait_for(self._client.nodes_manager.initialize(),
                                           CALL_TIMEOUT)
                    self._slots_stale = False
                    masters = {node.name for node in self._client.get_primaries()}
                    for name in [n for n in self._publishers if n not in masters]:
                        # idle connections only: the writer may be using one right now
                        await self._publishers.pop(name).connection_pool.disconnect(
                            inuse_connections=False)
                await self._sync_shards()
                self._listening = not any(s.failing for s in self._shards.values())
                if self._listening:
                    self._backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._listening = False
                self._slots_stale = True
                self.log.warn("redis subscription lost ({why}); retrying in {delay:.1f}s",
                              why=type(err).__name__, delay=self._backoff)
                await asyncio.sleep(self._backoff)
                self._backoff = min(BACKOFF_MAX, self._backoff * 2)
                continue
            assert self._wake is not None
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.05 if self._listening
                                       else self._backoff)

    async def _sync_shards(self) -> None:
        """Each wanted channel subscribed on the master that serves its slot now, nothing
        else subscribed, no shard left without a channel."""
        wanted = set(self._inboxes)
        for channel in [c for c in self._where if c not in wanted]:
            await self._shards[self._where.pop(channel)].drop(channel)
        for channel in wanted:
            node = self._client.get_node_from_key(channel)  # raises while a slot is uncovered
            where = self._where.get(channel)
            if where == node.name:
                continue
            if where is not None:  # its master changed (a failover): it moves
                await self._shards[self._where.pop(channel)].drop(channel)
            shard = self._shards.get(node.name)
            if shard is None:
                shard = self._shards[node.name] = _Shard(node, self._deliver, self._failed,
                                                         self._changed, self.log)
            await shard.add(channel)
            self._where[channel] = node.name
        for name, shard in list(self._shards.items()):
            if not shard.channels:
                del self._shards[name]
                await shard.close()

    def _failed(self) -> None:
        """A shard's connection failed: ask for the slot map again, now."""
        self._slots_stale = True
        self._changed()

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
