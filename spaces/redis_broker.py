"""RedisBroker: the broker seam over Redis (one server, Sentinel-fronted, or a Cluster).

What lives in Redis (docs/scaling.md lists the same):

    hearth:node:{node}           "1", TTL 4 s — heartbeat: the node is alive
    hearth:owner:{room}          node id, TTL 5 s — the node that runs the room
    hearth:state:{room}          JSON, TTL 1 day — the room's saved state (pseudonyms,
                                 seats, keys' public halves, sequence, epoch; never content)
    hearth:session:{sha256 hex}  room id, TTL grace + 1 h — which room a token belongs to
    hearth:log:{stream}          stream, no TTL — a shared log (audit, incidents, outbox):
                                 one field "record"; at most ~1 M entries, trimmed by age
    hearth:lease:{name}          node id, TTL as asked — the node doing a job alone
    hearth:inbox:{node}          pub/sub channel (sharded pub/sub on a Cluster)
    hearth:all                   pub/sub channel to every node (sharded on a Cluster)

Every key is independent (no multi-key command), so keys spread over Cluster
slots freely. Messages to one node go out in order: one writer task publishes
from a queue, so two frames of one client cannot overtake each other on
different pool connections. Pub/sub is at-most-once: while Redis is down,
messages between nodes are dropped (and counted), rooms whose members are all
on their owner keep working, and the subscriber reconnects with backoff.

Runs on Twisted's asyncio reactor; redis-py's coroutines are awaited directly
from Twisted coroutines (Deferred.fromFuture where a Deferred is needed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from hearth.spaces.broker import Deliver, Subscription, _Cancel

QUEUE_LIMIT = 10_000
BACKOFF_MAX = 5.0
STATE_TTL_MS = 86_400_000
LOG_MAXLEN = 1_000_000  # a memory bound on each log (approximate: Redis trims whole nodes)
ALL = "hearth:all"

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
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
        self._queue: asyncio.Queue[tuple[str, bytes]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pubsub: Any = None
        self._subscribed: set[str] = set()
        self.dropped = 0
        self.connected = False

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
        self._queue = asyncio.Queue(QUEUE_LIMIT)
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

    def _publish(self, channel: str, payload: bytes) -> None:
        """Queued for the one writer task, so messages leave in the order they were sent."""
        if self._queue is None:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait((channel, payload))
        except asyncio.QueueFull:
            self.dropped += 1

    def _listen(self, channel: str, deliver: Deliver) -> Subscription:
        self._inboxes[channel] = deliver

        def cancel() -> None:
            if self._inboxes.get(channel) is deliver:
                del self._inboxes[channel]
        return _Cancel(cancel)

    async def _writer(self) -> None:
        assert self._queue is not None
        delay = 0.1
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 512:
                batch.append(self._queue.get_nowait())
            try:
                if self.cluster:
                    for channel, payload in batch:  # in order, one at a time per channel slot
                        await self._client.spublish(channel, payload)
                else:
                    pipe = self._client.pipeline(transaction=False)
                    for channel, payload in batch:
                        pipe.publish(channel, payload)
                    await pipe.execute()
                delay = 0.1
            except Exception as err:  # Redis away: drop, count, back off
                self.dropped += len(batch)
                self.log.warn("redis publish failed ({why}); {count} messages dropped",
                              why=type(err).__name__, count=len(batch))
                await asyncio.sleep(delay)
                delay = min(BACKOFF_MAX, delay * 2)

    async def _reader(self) -> None:
        delay = 0.1
        while True:
            try:
                self._pubsub = self._client.pubsub()
                self._subscribed = set()
                await self._sync_subscriptions()
                self.connected = True
                delay = 0.1
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
                                await asyncio.sleep(0.002)
                            continue
                        idle = 0
                    else:
                        message = await self._pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=0.5)
                    if message is None:
                        continue
                    channel = message["channel"]
                    if isinstance(channel, bytes):
                        channel = channel.decode()
                    deliver = self._inboxes.get(channel)
                    if deliver is not None:
                        deliver(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self.connected = False
                self.log.warn("redis subscription lost ({why}); retrying in {delay:.1f}s",
                              why=type(err).__name__, delay=delay)
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()
                await asyncio.sleep(delay)
                delay = min(BACKOFF_MAX, delay * 2)

    async def _sync_subscriptions(self) -> None:
        wanted = set(self._inboxes)
        new = wanted - self._subscribed
        if new:
            if self.cluster:
                await self._pubsub.ssubscribe(*new)
            else:
                await self._pubsub.subscribe(*new)
            self._subscribed |= new

    # --- the directory ------------------------------------------------------------------

    async def _call(self, default: Any, op: Callable[[], Any]) -> Any:
        """A call that survives Redis being away (the default answers instead)."""
        try:
            return await _in_task(op())
        except Exception as err:
            self.log.warn("redis call failed ({why})", why=type(err).__name__)
            return default

    async def heartbeat(self, node: str, ttl: float) -> None:
        await self._call(None, lambda: self._client.set(f"hearth:node:{node}", b"1",
                                                         px=int(ttl * 1000)))

    async def alive(self, node: str) -> bool:
        # Redis away: assume alive rather than tear rooms apart on a blip
        found = await self._call(1, lambda: self._client.exists(f"hearth:node:{node}"))
        return bool(found)

    async def claim_room(self, room: str, node: str, ttl: float) -> str:
        key = f"hearth:owner:{room}"

        async def claim() -> str:
            if await self._client.set(key, node.encode(), nx=True, px=int(ttl * 1000)):
                return node
            owner = await self._client.get(key)
            if owner is None:
                return await claim()
            owner_id = owner.decode()
            # the owner died without releasing: take over if it is still that owner
            if (owner_id != node and not await self._client.exists(f"hearth:node:{owner_id}")
                    and await self._client.eval(_RELEASE, 1, key, owner_id)):
                return await claim()
            return str(owner_id)
        return str(await self._call(node, claim))  # Redis away: run the room here

    async def owner(self, room: str) -> str | None:
        found = await self._call(None, lambda: self._client.get(f"hearth:owner:{room}"))
        return found.decode() if found is not None else None

    async def renew_room(self, room: str, node: str, ttl: float) -> bool:
        result = await self._call(1, lambda: self._client.eval(
            _RENEW, 1, f"hearth:owner:{room}", node, int(ttl * 1000)))
        return bool(result)

    async def release_room(self, room: str, node: str) -> None:
        await self._call(None, lambda: self._client.eval(_RELEASE, 1, f"hearth:owner:{room}",
                                                          node))

    async def save_room(self, room: str, state: bytes) -> None:
        await self._call(None, lambda: self._client.set(f"hearth:state:{room}", state,
                                                         px=STATE_TTL_MS))

    async def load_room(self, room: str) -> bytes | None:
        found = await self._call(None, lambda: self._client.get(f"hearth:state:{room}"))
        return bytes(found) if found is not None else None

    async def drop_room(self, room: str) -> None:
        await self._call(None, lambda: self._client.delete(f"hearth:state:{room}"))

    async def bind_session(self, digest: str, room: str, ttl: float) -> None:
        await self._call(None, lambda: self._client.set(f"hearth:session:{digest}",
                                                         room.encode(), px=int(ttl * 1000)))

    async def session_room(self, digest: str) -> str | None:
        found = await self._call(None, lambda: self._client.get(f"hearth:session:{digest}"))
        return found.decode() if found is not None else None

    async def forget_session(self, digest: str) -> None:
        await self._call(None, lambda: self._client.delete(f"hearth:session:{digest}"))

    # --- shared logs ----------------------------------------------------------------------

    async def append(self, stream: str, record: bytes) -> str | None:
        found = await self._call(None, lambda: self._client.xadd(
            f"hearth:log:{stream}", {"record": record}, maxlen=LOG_MAXLEN, approximate=True))
        return found.decode() if found is not None else None

    async def read(self, stream: str, after: str | None = None,
                   count: int = 1000) -> list[tuple[str, bytes]] | None:
        found = await self._call(None, lambda: self._client.xrange(
            f"hearth:log:{stream}", min="-" if after is None else f"({after}", count=count))
        if found is None:
            return None
        return [(entry_id.decode(), bytes(fields[b"record"])) for entry_id, fields in found]

    async def remove(self, stream: str, ids: list[str]) -> bool:
        if not ids:  # XDEL needs at least one id
            return True
        done = await self._call(False, lambda: self._client.xdel(f"hearth:log:{stream}", *ids))
        return done is not False

    async def trim(self, stream: str, before_ms: int) -> int:
        # approximate=False: redis-py's xtrim trims approximately ("~") unless told not to
        gone = await self._call(0, lambda: self._client.xtrim(
            f"hearth:log:{stream}", minid=f"{before_ms}", approximate=False))
        return int(gone)

    # --- leases ---------------------------------------------------------------------------

    async def lease(self, name: str, node: str, ttl: float) -> bool:
        key, ms = f"hearth:lease:{name}", int(ttl * 1000)

        async def take() -> bool:
            if await self._client.set(key, node.encode(), nx=True, px=ms):
                return True
            return bool(await self._client.eval(_RENEW, 1, key, node, ms))  # ours: extend
        return bool(await self._call(False, take))

    async def release_lease(self, name: str, node: str) -> None:
        await self._call(None, lambda: self._client.eval(_RELEASE, 1, f"hearth:lease:{name}",
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
