"""The broker seam: how nodes reach each other, and what they agree on.

Two things cross nodes. Messages, node to node, in order per sender and
receiver (an edge forwards a client's frames to the room's owner; the owner
sends back what the edge must deliver: spaces/relay.py); a message nobody
receives is reported back, never dropped in silence. And a small directory:
which node is alive (its heartbeat, and whether anyone listens on its
inbox), which node owns which room, and each room's saved state. Deciding
what to do with these answers is spaces/host.py's job. Besides: shared logs
(append-only streams any node reads: audit, incidents, an outbox), leases (one
node at a time does a job) and messages to every node. `MemoryBroker` is the
embedded default (one process, or several nodes in one test process);
`RedisBroker` (web/redis_broker.py) shares it through Redis.
tests/multinode/test_broker_contract.py runs one suite over both.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

Deliver = Callable[[bytes], None]
MEMORY_LOG_MAX = 10_000  # records kept per shared log in memory (the newest)


class Subscription(Protocol):
    def cancel(self) -> None: ...


class Unreachable(Exception):
    """The shared store cannot be reached right now (a directory call failed or timed out).
    The caller decides what that means; nothing was learnt."""


class Broker(Protocol):
    name: str
    # the subscriptions are up and calls are answered (False while any of the store is away)
    connected: bool
    # the directory (owners, saved rooms) lives in this process and goes only with it: a
    # room it holds nothing for runs nowhere, and nobody is about to put it back
    directory_in_process: bool

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    def send_node(self, node: str, payload: bytes) -> None:
        """Fire and forget; in order per (sender, receiver). A message nobody is subscribed
        to receive is reported to `watch`'s callbacks (it is never silently lost)."""

    def subscribe_node(self, node: str, deliver: Deliver) -> Subscription: ...

    def watch(self, unheard: Callable[[str], None],
              undelivered: Callable[[str, bytes], None]) -> None:
        """`unheard(node)`: a message to `node` found nobody subscribed (it may be gone: at
        once, at most once a second per node). `undelivered(node, payload)`: a message to
        `node` given up on (nobody listened for a while, or the store stayed away)."""

    # --- the directory: every call raises Unreachable when the shared store is away
    async def heartbeat(self, node: str, ttl: float) -> None: ...
    async def alive(self, node: str) -> bool:
        """The node's heartbeat has not expired."""
    async def listening(self, node: str) -> bool:
        """Someone is subscribed to the node's inbox (a killed process stops at once)."""
    async def claim_room(self, room: str, node: str, ttl: float) -> str:
        """Become the room's owner if nobody owns it; returns the owner after."""
    async def take_room(self, room: str, node: str, previous: str, ttl: float) -> bool:
        """Become the owner if `previous` still owns the room (it went away)."""
    async def owner(self, room: str) -> str | None: ...
    async def renew_room(self, room: str, node: str, ttl: float) -> bool:
        """Extend ownership; False if `node` does not own the room (any more)."""
    async def release_room(self, room: str, node: str) -> None: ...
    async def save_room(self, room: str, state: bytes) -> None: ...
    async def load_room(self, room: str) -> bytes | None: ...
    async def drop_room(self, room: str) -> None: ...

    # --- shared logs: append-only streams every node can read (audit, incidents, outbox)
    async def append(self, stream: str, record: bytes) -> str | None:
        """Add one record; returns its id, or None when the shared store cannot be reached
        (the caller keeps its own copy and retries). Ids increase within a stream and have the
        Redis stream form "<ms>-<n>" (ms = wall-clock milliseconds when added)."""
    async def read(self, stream: str, after: str | None = None,
                   count: int = 1000) -> list[tuple[str, bytes]] | None:
        """Records with id > `after` (all when None), oldest first, at most `count`; None when
        unreachable."""
    async def remove(self, stream: str, ids: list[str]) -> bool:
        """Delete records by id (missing ids are fine); False when unreachable."""
    async def trim(self, stream: str, before_ms: int) -> int:
        """Delete every record older than `before_ms` (epoch ms); how many went (0 when
        unreachable)."""

    # --- leases: one node at a time does a job (e.g. delivering a dead node's alerts)
    async def lease(self, name: str, node: str, ttl: float) -> bool:
        """Take the lease if free or already ours (then extend it to ttl); True if `node` holds
        it now. When the store is unreachable: False (never two holders by accident)."""
    async def release_lease(self, name: str, node: str) -> None:
        """Give it up, only if `node` holds it."""
    async def take_lease(self, name: str, node: str, previous: str, ttl: float) -> bool:
        """Take the lease from `previous` (it went away) if it still holds it; False when
        unreachable."""

    # --- messages to every node
    def send_all(self, payload: bytes) -> None:
        """Fire and forget to every node subscribed with subscribe_all (the sender's own
        included)."""
    def subscribe_all(self, deliver: Deliver) -> Subscription: ...


def _stream_id(text: str) -> tuple[int, int]:
    """A stream id "<ms>-<n>" as a tuple that sorts like Redis orders ids."""
    ms, _, n = text.partition("-")
    return int(ms), int(n or 0)


class Cancel:
    """A subscription's end: runs its action on the first cancel() only."""

    __slots__ = ("_action",)

    def __init__(self, action: Callable[[], None]) -> None:
        self._action: Callable[[], None] | None = action

    def cancel(self) -> None:
        action = self._action
        self._action = None
        if action is not None:
            action()


@dataclass
class MemoryBroker:
    """Everything in this process. `schedule` decides when a message is delivered:
    at once (one node), or on the next reactor turn (several nodes in one test)."""

    clock: Callable[[], float]
    schedule: Callable[[Callable[[], None]], Any] = lambda call: call()
    name: str = "memory"
    connected: bool = True
    directory_in_process: bool = True
    _inboxes: dict[str, Deliver] = field(default_factory=dict)
    _expiring: dict[str, tuple[str, float]] = field(default_factory=dict)  # key -> (value, until)
    _values: dict[str, bytes] = field(default_factory=dict)
    _streams: dict[str, list[tuple[tuple[int, int], bytes]]] = field(default_factory=dict)
    _last_ids: dict[str, tuple[int, int]] = field(default_factory=dict)  # survive removal
    _everyone: dict[object, Deliver] = field(default_factory=dict)
    # several nodes may share this broker (tests): each hears what was not delivered, and
    # acts only on what is its own
    _watchers: list[tuple[Callable[[str], None], Callable[[str, bytes], None]]] = field(
        default_factory=list)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def send_node(self, node: str, payload: bytes) -> None:
        deliver = self._inboxes.get(node)
        if deliver is not None:
            self.schedule(lambda: deliver(payload))
            return
        for unheard, undelivered in list(self._watchers):
            self.schedule(partial(unheard, node))
            self.schedule(partial(undelivered, node, payload))

    def watch(self, unheard: Callable[[str], None],
              undelivered: Callable[[str, bytes], None]) -> None:
        self._watchers.append((unheard, undelivered))

    def subscribe_node(self, node: str, deliver: Deliver) -> Subscription:
        self._inboxes[node] = deliver

        def cancel() -> None:
            if self._inboxes.get(node) is deliver:
                del self._inboxes[node]
        return Cancel(cancel)

    def _get(self, key: str) -> str | None:
        entry = self._expiring.get(key)
        if entry is None or entry[1] <= self.clock():
            self._expiring.pop(key, None)
            return None
        return entry[0]

    async def heartbeat(self, node: str, ttl: float) -> None:
        self._expiring[f"node:{node}"] = ("1", self.clock() + ttl)

    async def alive(self, node: str) -> bool:
        return self._get(f"node:{node}") is not None

    async def listening(self, node: str) -> bool:
        return node in self._inboxes

    async def claim_room(self, room: str, node: str, ttl: float) -> str:
        owner = self._get(f"owner:{room}")
        if owner is None:
            self._expiring[f"owner:{room}"] = (node, self.clock() + ttl)
            return node
        return owner

    async def take_room(self, room: str, node: str, previous: str, ttl: float) -> bool:
        if self._get(f"owner:{room}") != previous:
            return False
        self._expiring[f"owner:{room}"] = (node, self.clock() + ttl)
        return True

    async def owner(self, room: str) -> str | None:
        return self._get(f"owner:{room}")

    async def renew_room(self, room: str, node: str, ttl: float) -> bool:
        if self._get(f"owner:{room}") != node:
            return False
        self._expiring[f"owner:{room}"] = (node, self.clock() + ttl)
        return True

    async def release_room(self, room: str, node: str) -> None:
        self._release(f"owner:{room}", node)

    def _release(self, key: str, node: str) -> None:
        if self._get(key) == node:
            del self._expiring[key]

    async def save_room(self, room: str, state: bytes) -> None:
        self._values[f"state:{room}"] = state

    async def load_room(self, room: str) -> bytes | None:
        return self._values.get(f"state:{room}")

    async def drop_room(self, room: str) -> None:
        self._values.pop(f"state:{room}", None)

    async def append(self, stream: str, record: bytes) -> str | None:
        ms, n = int(self.clock() * 1000), 0
        last = self._last_ids.get(stream)
        if last is not None and ms <= last[0]:  # the clock did not advance (or went back)
            ms, n = last[0], last[1] + 1
        self._last_ids[stream] = (ms, n)
        records = self._streams.setdefault(stream, [])
        records.append(((ms, n), record))
        if len(records) > MEMORY_LOG_MAX:  # one process: the node's journals are the record
            del records[:len(records) - MEMORY_LOG_MAX]
        return f"{ms}-{n}"

    async def read(self, stream: str, after: str | None = None,
                   count: int = 1000) -> list[tuple[str, bytes]] | None:
        records = self._streams.get(stream, [])
        start = 0 if after is None else bisect_right(records, _stream_id(after),
                                                     key=lambda r: r[0])
        return [(f"{ms}-{n}", record) for (ms, n), record in records[start:start + count]]

    async def remove(self, stream: str, ids: list[str]) -> bool:
        gone = {_stream_id(i) for i in ids}
        if stream in self._streams:
            self._streams[stream] = [r for r in self._streams[stream] if r[0] not in gone]
        return True

    async def trim(self, stream: str, before_ms: int) -> int:
        records = self._streams.get(stream, [])
        start = bisect_right(records, (before_ms, -1), key=lambda r: r[0])
        del records[:start]
        return start

    async def lease(self, name: str, node: str, ttl: float) -> bool:
        if self._get(f"lease:{name}") not in (None, node):
            return False
        self._expiring[f"lease:{name}"] = (node, self.clock() + ttl)
        return True

    async def release_lease(self, name: str, node: str) -> None:
        self._release(f"lease:{name}", node)

    async def take_lease(self, name: str, node: str, previous: str, ttl: float) -> bool:
        if self._get(f"lease:{name}") != previous:
            return False
        self._expiring[f"lease:{name}"] = (node, self.clock() + ttl)
        return True

    def send_all(self, payload: bytes) -> None:
        for deliver in list(self._everyone.values()):
            self.schedule(partial(deliver, payload))

    def subscribe_all(self, deliver: Deliver) -> Subscription:
        token = object()  # one per subscription: several nodes may share this broker
        self._everyone[token] = deliver

        def cancel() -> None:
            del self._everyone[token]
        return Cancel(cancel)


def log_records(batch: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """The records of a batch read from a shared log: each entry's JSON object, in order.
    An entry that is not a JSON object (a torn or foreign write) is skipped, never fatal."""
    records: list[dict[str, Any]] = []
    for _, data in batch:
        try:
            record = json.loads(data)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
