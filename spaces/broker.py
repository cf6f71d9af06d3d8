"""The broker seam: how room events reach every node that has members of the room.

The core's Broadcast and Send effects are encoded once and handed to a broker.
A node subscribes to a room while it holds members of it, and to each member it
holds; the broker calls those subscriptions with the encoded bytes.
`MemoryBroker` is the embedded default (one process). A Redis broker implements
the same interface, and tests/test_broker_contract.py runs one suite over both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

RoomDelivery = Callable[[bytes, "str | None"], None]  # payload, member to exclude
MemberDelivery = Callable[[bytes, bool], None]  # payload, is it a binary (voice) frame


class Subscription(Protocol):
    def cancel(self) -> None: ...


class Broker(Protocol):
    def publish(self, room: str, payload: bytes, exclude: str | None = None) -> None:
        """Deliver to every subscriber of `room` (each then skips `exclude`)."""

    def send(self, member: str, payload: bytes, binary: bool = False) -> None:
        """Deliver to the one subscriber holding `member`, if any."""

    def subscribe_room(self, room: str, deliver: RoomDelivery) -> Subscription: ...

    def subscribe_member(self, member: str, deliver: MemberDelivery) -> Subscription: ...


class _Cancel:
    __slots__ = ("_action",)

    def __init__(self, action: Callable[[], None]) -> None:
        self._action: Callable[[], None] | None = action

    def cancel(self) -> None:
        action = self._action
        self._action = None
        if action is not None:
            action()


class MemoryBroker:
    """One process: delivery is a direct call, in publish order."""

    def __init__(self) -> None:
        self._rooms: defaultdict[str, list[RoomDelivery]] = defaultdict(list)
        self._members: dict[str, MemberDelivery] = {}

    def publish(self, room: str, payload: bytes, exclude: str | None = None) -> None:
        for deliver in tuple(self._rooms.get(room, ())):
            deliver(payload, exclude)

    def send(self, member: str, payload: bytes, binary: bool = False) -> None:
        deliver = self._members.get(member)
        if deliver is not None:
            deliver(payload, binary)

    def subscribe_room(self, room: str, deliver: RoomDelivery) -> Subscription:
        self._rooms[room].append(deliver)

        def cancel() -> None:
            subscribers = self._rooms.get(room, [])
            if deliver in subscribers:
                subscribers.remove(deliver)
            if not subscribers:
                self._rooms.pop(room, None)
        return _Cancel(cancel)

    def subscribe_member(self, member: str, deliver: MemberDelivery) -> Subscription:
        self._members[member] = deliver

        def cancel() -> None:
            if self._members.get(member) is deliver:
                del self._members[member]
        return _Cancel(cancel)
