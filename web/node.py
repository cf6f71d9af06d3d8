"""This process's side of the rooms: its connections, and the one place effects become bytes.

The core decides; the node applies. Each effect's message is encoded once;
a room broadcast is prepared once (autobahn PreparedMessage, compression off —
ciphertext does not compress) and sent to every local member of the room.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from twisted.logger import Logger

from moderation.bans import ClientAddress
from spaces.broker import Broker, Subscription
from spaces.connection import Connection
from spaces.effects import (
    Attach,
    Audit,
    Broadcast,
    Close,
    Detach,
    Dispatch,
    Effect,
    Enter,
    Record,
    Reply,
    Send,
    Voice,
)
from spaces.protocol import encode
from spaces.venue import Venue


class Peer(Protocol):
    """What the node needs of a WebSocket connection (HearthServerProtocol, or a fake)."""

    def send_bytes(self, payload: bytes) -> None: ...
    def send_binary(self, payload: bytes) -> None: ...
    def send_prepared(self, prepared: Any) -> None: ...
    def pending_bytes(self) -> int: ...
    def close(self, code: int, reason: str) -> None: ...


class AuditSink(Protocol):
    def record(self, actor: str, action: str, target: str | None, room: str | None,
               outcome: str, now: float) -> Any: ...


class AlertSink(Protocol):
    def dispatch(self, channel: str, payload: dict[str, Any]) -> None: ...
    def record(self, incident: dict[str, Any]) -> None: ...


class Node:
    log = Logger()

    def __init__(self, venue: Venue, broker: Broker, prepare: Callable[[bytes, bool], Any],
                 clock: Callable[[], float], audit: AuditSink | None = None,
                 address_seed: bytes = b"", alerts: AlertSink | None = None) -> None:
        self.venue = venue
        self.audit = audit
        self.alerts = alerts
        self.address_seed = address_seed
        self.broker = broker
        self.prepare = prepare
        self.clock = clock
        self._members: dict[str, Peer] = {}
        self._member_subs: dict[str, Subscription] = {}
        self._rooms: dict[str, dict[str, Peer]] = {}
        self._room_subs: dict[str, Subscription] = {}
        self._member_room: dict[str, str] = {}
        self.slow_listener_bytes = venue.config.voice.slow_listener_bytes
        self.voice_forwarded = 0
        self.voice_dropped_slow = 0

    def connection(self, address: str | None = None) -> Connection:
        """A new connection; its address is kept only inside a ClientAddress (keyed hashes)."""
        client = ClientAddress(self.address_seed, address) if address is not None else None
        return Connection(self.venue, self.venue.config.limits, self.clock(), client)

    @property
    def member_count(self) -> int:
        return len(self._members)

    # --- from transports ---------------------------------------------------------

    def received(self, peer: Peer, conn: Connection, frame: bytes, is_binary: bool) -> None:
        self.apply(peer, conn.receive(frame, is_binary, self.clock()))

    def lost(self, peer: Peer, conn: Connection) -> None:
        seat = conn.seat
        if seat is not None and self._members.get(seat.member) is peer:
            self._unregister(seat.room, seat.member)
        self.apply(None, conn.lost(self.clock()))

    def tick(self) -> None:
        self.apply(None, self.venue.tick(self.clock()))

    def delivery_failing(self, channel: str, incident: str) -> None:
        """Every on-duty console hears that an on-call channel is not getting through."""
        message = {"type": "delivery_failing", "channel": channel, "incident": incident}
        self.apply(None, [Send(m, message) for m in self.venue.crisis.on_duty])

    # --- effects -------------------------------------------------------------------

    def apply(self, peer: Peer | None, effects: Iterable[Effect]) -> None:
        for effect in effects:
            match effect:
                case Reply(message=message):
                    if peer is not None:
                        peer.send_bytes(encode(message))
                case Broadcast(room=room, message=message, exclude=exclude):
                    self.broker.publish(room, encode(message), exclude)
                case Send(member=member, message=message):
                    self.broker.send(member, encode(message))
                case Attach(room=room, member=member, waiting=waiting):
                    if peer is not None:
                        self._register(room, member, peer, in_room=not waiting)
                case Enter(room=room, member=member):
                    entering = self._members.get(member)
                    if entering is not None:
                        self._join_fan_out(room, member, entering)
                case Audit(actor=actor, action=action, target=target, room=room, outcome=outcome):
                    if self.audit is not None:
                        self.audit.record(actor, action, target, room, outcome, self.clock())
                case Detach(member=member, code=code, reason=reason):
                    old = self._members.get(member)
                    if old is not None:
                        self._unregister(self._member_room[member], member)
                        old.close(code, reason)
                case Close(code=code, reason=reason):
                    if peer is not None:
                        peer.close(code, reason)
                case Voice(room=room, frame=frame, listeners=listeners):
                    self._voice(room, frame, listeners)
                case Dispatch(channel=channel, payload=payload):
                    if self.alerts is not None:
                        self.alerts.dispatch(channel, dict(payload))
                case Record(incident=incident):
                    if self.alerts is not None:
                        self.alerts.record(dict(incident))

    def _voice(self, room: str, frame: bytes, listeners: tuple[str, ...]) -> None:
        """Prepared once; skipped for a listener whose socket is backed up (voice is droppable)."""
        local = self._rooms.get(room, {})
        prepared = None
        for member in listeners:
            peer = local.get(member)
            if peer is None:
                self.broker.send(member, frame, binary=True)
            elif peer.pending_bytes() > self.slow_listener_bytes:
                self.voice_dropped_slow += 1
            else:
                if prepared is None:
                    prepared = self.prepare(frame, True)
                peer.send_prepared(prepared)
                self.voice_forwarded += 1

    def _register(self, room: str, member: str, peer: Peer, in_room: bool = True) -> None:
        self._members[member] = peer
        self._member_room[member] = room
        self._member_subs[member] = self.broker.subscribe_member(
            member, lambda payload, binary: (peer.send_binary if binary else peer.send_bytes)(payload))
        if in_room:
            self._join_fan_out(room, member, peer)

    def _join_fan_out(self, room: str, member: str, peer: Peer) -> None:
        local = self._rooms.setdefault(room, {})
        local[member] = peer
        if room not in self._room_subs:
            self._room_subs[room] = self.broker.subscribe_room(room, self._fan_out(room))

    def _unregister(self, room: str, member: str) -> None:
        self._members.pop(member, None)
        self._member_room.pop(member, None)
        sub = self._member_subs.pop(member, None)
        if sub is not None:
            sub.cancel()
        local = self._rooms.get(room)
        if local is not None:
            local.pop(member, None)
            if not local:
                del self._rooms[room]
                self._room_subs.pop(room).cancel()

    def _fan_out(self, room: str) -> Callable[[bytes, str | None], None]:
        def deliver(payload: bytes, exclude: str | None) -> None:
            local = self._rooms.get(room)
            if not local:
                return
            prepared = self.prepare(payload, False)
            for member, peer in local.items():
                if member != exclude:
                    peer.send_prepared(prepared)
        return deliver
