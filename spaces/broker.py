"""The broker seam: how nodes reach each other, and what they agree on.

Two things cross nodes. Messages, node to node, in order per sender and
receiver (an edge forwards a client's frames to the room's owner; the owner
sends back what the edge must deliver: spaces/relay.py). And a small
directory: which node is alive, which node owns which room, each room's
saved state and which room a session token belongs to. `MemoryBroker` is the
embedded default (one process, or several nodes in one test process);
`RedisBroker` (spaces/redis_broker.py) shares it through Redis.
tests/test_broker_contract.py runs one suite over both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

Deliver = Callable[[bytes], None]


class Subscription(Protocol):
    def cancel(self) -> None: ...


class Broker(Protocol):
    name: str

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    def send_node(self, node: str, payload: bytes) -> None:
        """Fire and forget; in order per (sender, receiver); dropped if the receiver is gone."""

    def subscribe_node(self, node: str, deliver: Deliver) -> Subscription: ...

    async def heartbeat(self, node: str, ttl: float) -> None: ...
    async def alive(self, node: str) -> bool: ...
    async def claim_room(self, room: str, node: str, ttl: float) -> str:
        """Become the room's owner unless a live owner exists; returns the owner after."""
    async def owner(self, room: str) -> str | None: ...
    async def renew_room(self, room: str, node: str, ttl: float) -> bool:
        """Extend ownership; False if another node owns the room now."""
    async def release_room(self, room: str, node: str) -> None: ...
    async def save_room(self, room: str, state: bytes) -> None: ...
    async def load_room(self, room: str) -> bytes | None: ...
    async def drop_room(self, room: str) -> None: ...
    async def bind_session(self, digest: str, room: str, ttl: float) -> None: ...
    async def session_room(self, digest: str) -> str | None: ...
    async def forget_session(self, digest: str) -> None: ...


class _Cancel:
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
    _inboxes: dict[str, Deliver] = field(default_factory=dict)
    _expiring: dict[str, tuple[str, float]] = field(default_factory=dict)  # key -> (value, until)
    _values: dict[str, bytes] = field(default_factory=dict)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def send_node(self, node: str, payload: bytes) -> None:
        deliver = self._inboxes.get(node)
        if deliver is not None:
            self.schedule(lambda: deliver(payload))

    def subscribe_node(self, node: str, deliver: Deliver) -> Subscription:
        self._inboxes[node] = deliver

        def cancel() -> None:
            if self._inboxes.get(node) is deliver:
                del self._inboxes[node]
        return _Cancel(cancel)

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

    async def claim_room(self, room: str, node: str, ttl: float) -> str:
        owner = self._get(f"owner:{room}")
        if owner is None or not await self.alive(owner):
            self._expiring[f"owner:{room}"] = (node, self.clock() + ttl)
            return node
        return owner

    async def owner(self, room: str) -> str | None:
        return self._get(f"owner:{room}")

    async def renew_room(self, room: str, node: str, ttl: float) -> bool:
        if self._get(f"owner:{room}") != node:
            return False
        self._expiring[f"owner:{room}"] = (node, self.clock() + ttl)
        return True

    async def release_room(self, room: str, node: str) -> None:
        if self._get(f"owner:{room}") == node:
            del self._expiring[f"owner:{room}"]

    async def save_room(self, room: str, state: bytes) -> None:
        self._values[f"state:{room}"] = state

    async def load_room(self, room: str) -> bytes | None:
        return self._values.get(f"state:{room}")

    async def drop_room(self, room: str) -> None:
        self._values.pop(f"state:{room}", None)

    async def bind_session(self, digest: str, room: str, ttl: float) -> None:
        self._expiring[f"session:{digest}"] = (room, self.clock() + ttl)

    async def session_room(self, digest: str) -> str | None:
        return self._get(f"session:{digest}")

    async def forget_session(self, digest: str) -> None:
        self._expiring.pop(f"session:{digest}", None)
