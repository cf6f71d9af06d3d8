"""This process's side of the rooms: its client links, the rooms it owns, and the one
place effects become bytes.

Every room is owned by one node at a time (the broker's directory says which);
the owner runs the room's state machine, so sequence numbers and epochs have
one author however many nodes the members are spread over. A client may
connect to any node — its *edge*. The edge binds the client's link to the
room named by its first `join` (or found from its `resume` token), then
either runs it here (this node owns the room) or forwards every frame to the
owner (spaces/relay.py), delivering whatever the owner sends back.

The core decides; the node applies. Each effect's message is encoded once; a
room broadcast is prepared once (autobahn PreparedMessage, compression off)
for this node's members and sent once to each other node that has members
of the room.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger

from hearth.moderation.bans import ClientAddress, HashedAddress, utc_day
from hearth.moderation.incidents import latest_incidents
from hearth.spaces import protocol as p
from hearth.spaces import relay
from hearth.spaces.broker import Broker, Subscription
from hearth.spaces.connection import Connection
from hearth.spaces.effects import (
    ActElsewhere,
    Attach,
    Audit,
    Broadcast,
    Close,
    Detach,
    Dispatch,
    Duty,
    DutyRoster,
    Effect,
    Enter,
    Record,
    Reply,
    Send,
    Voice,
)
from hearth.spaces.protocol import ProtocolError, encode
from hearth.spaces.venue import Venue
from hearth.web.proxy import AddressCap
from hearth.web.shared_logs import LogShipper

OWNER_TTL = 5.0  # seconds a room's ownership lasts without renewal
NODE_TTL = 4.0  # seconds a node counts as alive after its last heartbeat
ROOM_MOVED = 4010  # close code: the room's node went away; resume (on any node)
TRY_AGAIN = 1013  # close code: the room cannot be reached right now
MAX_PENDING = 64  # frames held while a link is being bound to its room
ASK_TIMEOUT = 5.0  # seconds an incident action waits for the node that runs the incident


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


@dataclass(eq=False)
class Link:
    """One client connection at this node (its edge)."""
    id: str
    peer: Peer
    address: ClientAddress | None
    owner: str | None = None  # the node that runs the link's room; None until bound
    room: str | None = None
    conn: Connection | None = None  # when this node owns the room
    pending: list[tuple[bytes, bool]] = field(default_factory=list)
    binding: bool = False
    closed: bool = False
    members: set[str] = field(default_factory=set)  # members attached through this link

    # A link is the Peer its room's owner writes to when that owner is this node.
    def send_bytes(self, payload: bytes) -> None:
        self.peer.send_bytes(payload)

    def send_binary(self, payload: bytes) -> None:
        self.peer.send_binary(payload)

    def send_prepared(self, prepared: Any) -> None:
        self.peer.send_prepared(prepared)

    def pending_bytes(self) -> int:
        return self.peer.pending_bytes()

    def close(self, code: int, reason: str) -> None:
        self.closed = True
        self.peer.close(code, reason)


@dataclass(eq=False)
class RemoteLink:
    """A client of another node, in a room this node owns: a Peer that writes through the bus."""
    node: str
    id: str
    conn: Connection
    bus: Broker

    def send_bytes(self, payload: bytes) -> None:
        self.bus.send_node(self.node, relay.pack(relay.REPLY, {"link": self.id}, payload))

    def send_binary(self, payload: bytes) -> None:  # pragma: no cover - replies are text
        raise AssertionError("replies are text")

    def send_prepared(self, prepared: Any) -> None:  # pragma: no cover - fan-out is per node
        raise AssertionError("remote members get broadcasts per node")

    def pending_bytes(self) -> int:
        return 0  # the edge applies the slow-listener rule itself

    def close(self, code: int, reason: str) -> None:
        self.bus.send_node(self.node, relay.pack(relay.CLOSE_LINK, {
            "link": self.id, "code": code, "reason": reason}))


@dataclass(eq=False)
class Holder:
    """Where a member of an owned room is connected: this node's link or another node's."""
    node: str
    peer: Link | RemoteLink


@dataclass(frozen=True, slots=True)
class Ask:
    """An incident action sent to the node that runs the incident, waiting for its answer."""
    peer: Link | RemoteLink | None
    ref: str | None
    at: float


class Node:
    log = Logger(namespace="hearth.node")

    def __init__(self, venue: Venue, broker: Broker, prepare: Callable[[bytes, bool], Any],
                 clock: Callable[[], float], audit: AuditSink | None = None,
                 address_seed: bytes = b"", alerts: AlertSink | None = None,
                 node_id: str = "solo", shared_logs: LogShipper | None = None) -> None:
        self.venue = venue
        self.broker = broker
        self.prepare = prepare
        self.clock = clock
        self.audit = audit
        self.alerts = alerts
        self.address_seed = address_seed
        self.id = node_id
        self.shared_logs = shared_logs
        # facilitator sign-in sessions shared between nodes (moderation/login.py SessionTable)
        self.on_session: Callable[[dict[str, Any]], None] | None = None
        self.shared_records_refused = 0  # records in the broker not sealed with our key
        # Run at the end of each housekeeping (web/auth.py: accounts shared and watched).
        self.watchers: list[Callable[[], Awaitable[None]]] = []
        self._sessions_read: str | None = None  # the last id read of the shared sign-in log
        self.slow_listener_bytes = venue.config.voice.slow_listener_bytes
        self.voice_forwarded = 0
        self.voice_dropped_slow = 0
        self.effects_failed = 0  # effects skipped because applying them raised
        self._ids = count(1)
        self._links: dict[str, Link] = {}
        # delivery at this node: members connected here, whoever owns their room
        self._local: dict[str, Link] = {}
        self._room_local: dict[str, dict[str, Link]] = {}
        # ownership: rooms run here, where their members are, which nodes to tell
        self.owned: set[str] = set()
        self._holders: dict[str, Holder] = {}
        self._remote: dict[str, RemoteLink] = {}
        self._held_remotely: dict[str, set[str]] = {}  # remote link id -> members it held
        self._saved: dict[str, str] = {}
        self._inbox: Subscription | None = None
        self._everyone: Subscription | None = None
        self._asks: dict[str, Ask] = {}  # incident actions sent to another node, by request
        self._per_address = AddressCap(address_seed,
                                       venue.config.limits.connections_per_address, clock)

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._inbox = self.broker.subscribe_node(self.id, self._from_bus)
        self._everyone = self.broker.subscribe_all(self._from_bus)

    def stop(self) -> None:
        for subscription in (self._inbox, self._everyone):
            if subscription is not None:
                subscription.cancel()
        self._inbox = self._everyone = None

    @property
    def member_count(self) -> int:
        return len(self._local)

    @property
    def link_count(self) -> int:
        """Client connections open at this node (joined or not yet)."""
        return len(self._links)

    def going_away(self, message: str, code: int = 1001) -> None:
        """This node is stopping: every client connected here is told why (`going_away`,
        then close 1001) and its link stops taking frames. Members of rooms owned here
        keep their seat, away, for the grace period: they resume with their token."""
        payload = encode({"type": "going_away", "message": message, "reconnect": True})
        for link in list(self._links.values()):
            if not link.closed:
                link.peer.send_bytes(payload)
                link.close(code, "the server is restarting")

    def move_remote_members(self) -> None:
        """Members of rooms owned here who are connected through other nodes: resume (4010),
        once the rooms have been saved and released for another node to take over."""
        for member, holder in list(self._holders.items()):
            if isinstance(holder.peer, RemoteLink):
                self._holders.pop(member, None)
                holder.peer.close(ROOM_MOVED, "the room moved; resume")

    # --- from transports (this node as the edge) -------------------------------------

    def admit_address(self, address: str | None) -> bytes | None:
        """Count a new WebSocket against its address's cap (web/proxy.py AddressCap: keyed
        hashes only, while open); None means refuse. `release_address` gives it back."""
        return self._per_address.admit(address)

    def release_address(self, key: bytes) -> None:
        self._per_address.release(key)

    def open(self, peer: Peer, address: str | None = None) -> Link:
        """A new client link; its address is kept only inside a ClientAddress (keyed hashes)."""
        client = ClientAddress(self.address_seed, address) if address is not None else None
        link = Link(f"{self.id}/{next(self._ids)}", peer, client)
        self._links[link.id] = link
        return link

    def received(self, link: Link, frame: bytes, is_binary: bool) -> None:
        if link.closed:
            return
        if link.owner is None:
            if len(link.pending) >= MAX_PENDING:
                link.closed = True
                link.peer.close(1008, "too many messages before joining")
                return
            link.pending.append((frame, is_binary))
            if not link.binding:
                link.binding = True
                defer.ensureDeferred(self._bind(link)).addErrback(self._bind_failed, link)
            return
        if link.owner == self.id:
            assert link.conn is not None
            self.apply(link, link.conn.receive(frame, is_binary, self.clock()))
        else:
            self.broker.send_node(link.owner, relay.pack(
                relay.FRAME, {"link": link.id, "binary": is_binary}, frame))

    def lost(self, link: Link) -> None:
        link.closed = True
        self._links.pop(link.id, None)
        for member in list(link.members):  # only what this link held: no scan of everyone
            if self._local.get(member) is link:
                self._drop_local(member)
            holder = self._holders.get(member)
            if holder is not None and holder.peer is link:
                self._holders.pop(member)
        link.members.clear()
        if link.owner == self.id and link.conn is not None:
            self.apply(None, link.conn.lost(self.clock()))
        elif link.owner is not None:
            self.broker.send_node(link.owner, relay.pack(relay.LOST, {"link": link.id}))

    async def _bind(self, link: Link) -> None:
        """Find the room the link's first frame is about, and the node that runs it."""
        frame, is_binary = link.pending[0]
        room = await self._room_of(frame, is_binary)
        if room is None:  # not a join or resume we can route: answer it here, stay unbound
            link.pending.pop(0)
            stray = Connection(self.venue, self.venue.config.limits, self.clock(), link.address)
            self.apply(link.peer, stray.receive(frame, is_binary, self.clock()))
            link.binding = False
            if link.pending:
                link.binding = True
                await self._bind(link)
            return
        owner = await self.broker.owner(room)
        if owner is None or (owner != self.id and not await self.broker.alive(owner)):
            owner = await self.broker.claim_room(room, self.id, OWNER_TTL)
        if owner == self.id and room not in self.owned:
            await self._take(room)
        if link.closed:
            return
        link.room, link.owner, link.binding = room, owner, False
        if owner == self.id:
            link.conn = Connection(self.venue, self.venue.config.limits, self.clock(),
                                   link.address)
        else:
            hashes = self._address_hashes(link.address)
            self.broker.send_node(owner, relay.pack(relay.OPEN, {"link": link.id,
                                                                 "hashes": hashes}))
        pending, link.pending = link.pending, []
        for frame, is_binary in pending:
            self.received(link, frame, is_binary)

    def _bind_failed(self, failure: Any, link: Link) -> None:
        self.log.failure("could not bind a link to its room", failure)
        link.closed = True
        link.peer.close(TRY_AGAIN, "the room cannot be reached right now; try again")

    async def _room_of(self, frame: bytes, is_binary: bool) -> str | None:
        if is_binary:
            return None
        try:
            msg = p.decode(frame)
        except ProtocolError:
            return None
        if isinstance(msg, p.Join):
            return msg.room if msg.room in self.venue.rooms else None
        if isinstance(msg, p.Resume):
            return await self.broker.session_room(Venue.token_digest(msg.token))
        return None

    def _address_hashes(self, address: ClientAddress | None) -> dict[str, str]:
        """The keyed hashes of an address for the days a ban may date from (never the address)."""
        if address is None:
            return {}
        now = self.clock()
        days = {utc_day(now - 86400 * d) for d in range(9)}
        return {day: address.hash_for(day).hex() for day in days}

    # --- owning rooms ------------------------------------------------------------------

    async def _take(self, room: str) -> None:
        saved = await self.broker.load_room(room)
        if saved is not None and room not in self.owned:
            self.venue.import_room(room, json.loads(saved), self.clock())
            self.log.info("took over room {room} from a node that went away", room=room)
        self.owned.add(room)

    async def housekeeping(self) -> None:
        """Once a second: heartbeat, keep owned rooms, save their state, watch owners."""
        await self.broker.heartbeat(self.id, NODE_TTL)
        for room in list(self.owned):
            state = self.venue.rooms[room]
            if not state.members and not state.waiting and not self.venue.crisis.runs_in(room):
                self.owned.discard(room)
                self._saved.pop(room, None)
                await self.broker.release_room(room, self.id)
                await self.broker.drop_room(room)
                continue
            if not await self.broker.renew_room(room, self.id, OWNER_TTL):
                # Gone from the directory (Redis restarted empty) or taken by another node?
                if await self.broker.claim_room(room, self.id, OWNER_TTL) != self.id:
                    self._lose(room)
                    continue
                await self._resync(room)
            await self._save(room)
        for room in {link.room for link in self._links.values()
                     if link.owner not in (None, self.id) and link.room is not None}:
            owner = next(lk.owner for lk in self._links.values() if lk.room == room)
            if owner is not None and not await self.broker.alive(owner):
                self._moved(room)
        self._expire_asks()
        await self._adopt_orphaned_incidents()
        await self.tail_sessions()
        await self.run_watchers()

    async def run_watchers(self) -> None:
        """Each housekeeping watcher once (and at once when another node hints: ACCOUNTS)."""
        for watcher in self.watchers:
            try:
                await watcher()
            except Exception:
                self.log.failure("a housekeeping watcher failed")

    # --- roles withdrawn (spaces/venue.py decides, for the rooms this node runs) ----

    def signin_ended(self, signin: str) -> None:
        """A facilitator's sign-in session ended (here or on another node)."""
        self.apply(None, self.venue.signin_ended(signin, self.clock(), sorted(self.owned)))

    def account_changed(self, account: str, state: tuple[str, int] | None) -> None:
        """A facilitator account is now (role, generation), or gone."""
        self.apply(None, self.venue.account_changed(account, state, self.clock(),
                                                    sorted(self.owned)))

    async def _resync(self, room: str) -> None:
        """After the directory lost our keys (a Redis restart): tell it again what we hold."""
        self._saved.pop(room, None)
        ttl = self.venue.config.session.resume_grace_seconds + 3600
        for digest in self.venue.export_room(room)["sessions"].values():
            await self.broker.bind_session(digest, room, ttl)
        self.log.info("room {room} re-registered after the directory lost it", room=room)

    async def _save(self, room: str) -> None:
        state = json.dumps(self.venue.export_room(room), separators=(",", ":"))
        if self._saved.get(room) != state:
            await self.broker.save_room(room, state.encode())
            self._saved[room] = state

    def _lose(self, room: str) -> None:
        """Another node owns the room now: our clients must resume there (and its
        incidents run there: it took them with the room's saved state)."""
        self.owned.discard(room)
        self.venue.crisis.hand_over(room)
        for member, holder in list(self._holders.items()):
            if member in self.venue.rooms[room].members or member in self.venue.rooms[room].waiting:
                holder.peer.close(ROOM_MOVED, "the room moved; resume")
                self._holders.pop(member, None)
        self._moved(room)

    def _moved(self, room: str) -> None:
        """The room's owner is gone: close our links to it so their clients resume."""
        for link in [lk for lk in self._links.values() if lk.room == room]:
            for member, held in list(self._local.items()):
                if held is link:
                    self._drop_local(member)
            link.close(ROOM_MOVED, "the room moved to another node; resume")

    def sync_sessions(self) -> None:
        """Tell the directory which room each live token belongs to (digests only)."""
        changes, self.venue.session_changes = self.venue.session_changes, []
        ttl = self.venue.config.session.resume_grace_seconds + 3600
        for digest, room in changes:
            if room is None:
                defer.ensureDeferred(self.broker.forget_session(digest))
            else:
                defer.ensureDeferred(self.broker.bind_session(digest, room, ttl))

    def tick(self) -> None:
        self.apply(None, self.venue.tick(self.clock()))

    def delivery_failing(self, channel: str, incident: str) -> None:
        """Every on-duty console hears that an on-call channel is not getting through."""
        message = {"type": "delivery_failing", "channel": channel, "incident": incident}
        self.apply(None, [Duty(message)])

    def learn_incidents(self, records: Iterable[dict[str, Any]]) -> None:
        """Incidents other nodes run, from the shared incident log (at start): on-duty
        facilitators here see them and can act on them."""
        for wire in latest_incidents(records).values():
            if "room" in wire:
                self.venue.crisis.learn(wire)

    def share_session(self, event: dict[str, Any]) -> None:
        """A sign-in session changed here: every node hears it now, and a node that starts
        later reads it from the shared log."""
        self.broker.send_all(relay.pack(relay.SESSION, {"from": self.id},
                                        json.dumps(event).encode()))
        if self.shared_logs is not None:
            self.shared_logs.ship("sessions", event)

    async def tail_sessions(self) -> None:
        """Read the shared sign-in log on from where this node stopped: what a node that
        just started missed, and what other nodes said while Redis was away (the live
        path, `hearth:all`, drops it then). Applying an event twice changes nothing."""
        while True:
            batch = await self.broker.read("sessions", self._sessions_read, 1000)
            if not batch:
                return
            self._sessions_read = batch[-1][0]
            for _, data in batch:
                try:
                    event = json.loads(data)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("node") != self.id \
                        and self.on_session is not None:
                    self.on_session(event)
            if len(batch) < 1000:
                return

    async def _adopt_orphaned_incidents(self) -> None:
        """An incident's timers must run on even if nobody comes back to its room: a room
        with live incidents whose node went away is taken over by the first node that
        notices (its saved state carries the incidents)."""
        rooms = {str(w.get("room")) for w in self.venue.crisis.elsewhere.values()}
        for room in sorted(rooms - self.owned):
            if room not in self.venue.rooms:
                continue
            owner = await self.broker.owner(room)
            if owner is not None and await self.broker.alive(owner):
                continue
            if await self.broker.load_room(room) is None:  # nothing to run it from (yet)
                continue
            if await self.broker.claim_room(room, self.id, OWNER_TTL) == self.id:
                await self._take(room)
                self.log.warn("took over room {room} to run its open incidents", room=room)

    # --- effects (this node as a room's owner) ------------------------------------------

    def apply(self, peer: Link | RemoteLink | None, effects: Iterable[Effect]) -> None:
        """Apply the core's effects in order. A failure is contained to its one effect: the
        rest still apply and the connection stays (a stored value that cannot be sent must
        never drop someone else); it is logged once, by kind and place, with no content."""
        for effect in effects:
            try:
                self._apply_one(peer, effect)
            except Exception as failure:
                self.effect_failed(effect, failure)
        if self.venue.session_changes:
            self.sync_sessions()

    def effect_failed(self, effect: Effect, failure: Exception) -> None:
        """One log line for an effect that could not be applied: its kind, the exception's
        kind and where it was raised — never the exception's text (it may quote content)."""
        self.effects_failed += 1
        frame = traceback.extract_tb(failure.__traceback__)[-1:]
        where = f"{Path(frame[0].filename).name}:{frame[0].lineno}" if frame else "?"
        self.log.error("an effect could not be applied and was skipped: {effect} "
                       "({error} at {where})", effect=type(effect).__name__,
                       error=type(failure).__name__, where=where)

    def _apply_one(self, peer: Link | RemoteLink | None, effect: Effect) -> None:
        match effect:
            case Reply(message=message):
                if peer is not None:
                    peer.send_bytes(encode(message))
            case Broadcast(room=room, message=message, exclude=exclude):
                self._broadcast(room, encode(message), exclude)
            case Send(member=member, message=message):
                self._to_member(member, encode(message), False)
            case Attach(room=room, member=member, waiting=waiting):
                if peer is not None:
                    self._attach(room, member, peer, waiting)
            case Enter(room=room, member=member):
                self._enter(room, member)
            case Detach(member=member, code=code, reason=reason):
                holder = self._holders.pop(member, None)
                if holder is not None:
                    if isinstance(holder.peer, RemoteLink):
                        self.broker.send_node(holder.node, relay.pack(relay.CLOSE_MEMBER, {
                            "member": member, "code": code, "reason": reason}))
                    else:
                        self._drop_local(member)
                        holder.peer.close(code, reason)
            case Close(code=code, reason=reason):
                if peer is not None:
                    peer.close(code, reason)
            case Voice(room=room, frame=frame, listeners=listeners):
                self._voice(frame, listeners)
            case Audit(actor=actor, action=action, target=target, room=room, outcome=outcome):
                if self.audit is not None:
                    self.audit.record(actor, action, target, room, outcome, self.clock())
            case Dispatch(channel=channel, payload=payload):
                if self.alerts is not None:
                    self.alerts.dispatch(channel, dict(payload))
            case Record(incident=incident):
                if self.alerts is not None:
                    self.alerts.record(dict(incident))
                self.broker.send_all(relay.pack(relay.INCIDENT, {"from": self.id},
                                                json.dumps(incident).encode()))
            case Duty(message=message, exclude=exclude):
                payload = encode(message)
                self._to_duty(payload, exclude)
                self.broker.send_all(relay.pack(relay.DUTY, {
                    "from": self.id, "exclude": list(exclude)}, payload))
            case ActElsewhere() as act:
                d = defer.ensureDeferred(self._act_elsewhere(peer, act))
                d.addErrback(self._not_carried, peer, act.ref)
            case DutyRoster(count=count):
                self.broker.send_all(relay.pack(relay.DUTY_ROSTER, {
                    "from": self.id, "count": count}))

    def _attach(self, room: str, member: str, peer: Link | RemoteLink, waiting: bool) -> None:
        if isinstance(peer, RemoteLink):
            self._holders[member] = Holder(peer.node, peer)
            self._held_remotely.setdefault(peer.id, set()).add(member)
            self.broker.send_node(peer.node, relay.pack(relay.ATTACH, {
                "link": peer.id, "room": room, "member": member, "waiting": waiting}))
        else:
            self._holders[member] = Holder(self.id, peer)
            self._local_attach(peer, room, member, waiting)

    def _enter(self, room: str, member: str) -> None:
        holder = self._holders.get(member)
        if holder is None:
            return
        if isinstance(holder.peer, RemoteLink):
            self.broker.send_node(holder.node, relay.pack(relay.ENTER, {"room": room,
                                                                        "member": member}))
        else:
            self._local_enter(room, member)

    def _broadcast(self, room: str, payload: bytes, exclude: str | None) -> None:
        self._fan_out(room, payload, exclude)
        if not self._remote:  # nobody of another node is in any room here (one node: always)
            return
        holders = self._holders
        nodes = {h.node for m in self.venue.rooms[room].members
                 if (h := holders.get(m)) is not None and h.node != self.id}
        for node in nodes:
            self.broker.send_node(node, relay.pack(relay.BROADCAST, {
                "room": room, "exclude": exclude}, payload))

    def _to_member(self, member: str, payload: bytes, binary: bool) -> None:
        holder = self._holders.get(member)
        if holder is None:
            return
        if isinstance(holder.peer, RemoteLink):
            self.broker.send_node(holder.node, relay.pack(relay.TO_MEMBER, {
                "member": member, "binary": binary}, payload))
        elif binary:
            holder.peer.send_binary(payload)
        else:
            holder.peer.send_bytes(payload)

    def _voice(self, frame: bytes, listeners: tuple[str, ...]) -> None:
        """One pass: listeners here get the frame as it goes (as `_voice_local` would send
        it); those of other nodes are gathered, one bus message per node. A listener with a
        WebTransport session bound gets it as a datagram (web/webtransport.py)."""
        remote: dict[str, list[str]] | None = None
        holders, local = self._holders, self._local
        limit = self.slow_listener_bytes
        prepared = None
        sent = dropped = 0
        everyone_here = not self._remote  # no client of another node in any room here
        for member in listeners:
            if everyone_here:
                if member not in holders:
                    continue
            else:
                holder = holders.get(member)
                if holder is None:
                    continue
                if type(holder.peer) is RemoteLink:
                    if remote is None:
                        remote = {}
                    remote.setdefault(holder.node, []).append(member)
                    continue
            link = local.get(member)
            if link is None:
                continue
            peer = link.peer
            channel = getattr(peer, "voice_channel", None)
            if channel is not None and channel.send(frame):
                sent += 1
                continue
            if peer.pending_bytes() > limit:
                dropped += 1
                continue
            if prepared is None:
                prepared = self.prepare(frame, True)
            peer.send_prepared(prepared)
            sent += 1
        self.voice_forwarded += sent
        self.voice_dropped_slow += dropped
        if remote is not None:
            for node, members in remote.items():
                self.broker.send_node(node, relay.pack(relay.VOICE, {"members": members}, frame))

    def _to_duty(self, payload: bytes, exclude: Iterable[str]) -> None:
        """This node's on-duty facilitators (members of rooms it owns)."""
        for member in self.venue.crisis.on_duty:
            if member not in exclude:
                self._to_member(member, payload, False)

    async def _act_elsewhere(self, peer: Link | RemoteLink | None, act: ActElsewhere) -> None:
        """Carry a facilitator's incident action to the node that runs the incident's room;
        if no live node does, take the room (and its incidents) here."""
        owner = await self.broker.owner(act.room)
        if owner is None or (owner != self.id and not await self.broker.alive(owner)):
            owner = await self.broker.claim_room(act.room, self.id, OWNER_TTL)
        if owner == self.id:
            if act.room not in self.owned:
                await self._take(act.room)
            self._act_here(peer, act)
            return
        ask = f"{self.id}/{next(self._ids)}"
        self._asks[ask] = Ask(peer, act.ref, self.clock())
        self.broker.send_node(owner, relay.pack(relay.INCIDENT_ACT, {
            "req": ask, "from": self.id, "room": act.room, "incident": act.incident,
            "action": act.action, "outcome": act.outcome, "actor": act.actor, "ref": act.ref,
            "basis": act.basis}))

    def _not_carried(self, failure: Any, peer: Link | RemoteLink | None,
                     ref: str | None) -> None:
        self.log.failure("an incident action could not be carried to its node", failure)
        self._unreachable(peer, ref)

    @staticmethod
    def _unreachable(peer: Link | RemoteLink | None, ref: str | None) -> None:
        """The facilitator is told, never left waiting: the action may be sent again."""
        if peer is not None:
            peer.send_bytes(encode(ProtocolError("incident_unreachable", ref=ref).to_wire()))

    def _expire_asks(self) -> None:
        """Actions whose node never answered (it died on the way): refused, not lost."""
        now = self.clock()
        for ask, asked in list(self._asks.items()):
            if now - asked.at >= ASK_TIMEOUT:
                del self._asks[ask]
                self._unreachable(asked.peer, asked.ref)

    def _act_here(self, peer: Link | RemoteLink | None, act: ActElsewhere) -> bytes:
        """An action on an incident this node runs, sent from another node: b"" when done,
        else the refusal's frame (also sent to `peer` when there is one)."""
        crisis = self.venue.crisis
        try:
            if act.incident not in crisis.desk.incidents:
                raise ProtocolError("incident_not_found", "There is no such incident.", act.ref)
            effects = crisis.act(self.venue.rooms, act.actor, act.incident, act.action,
                                 act.outcome, self.clock(), act.ref, act.basis)
        except ProtocolError as refused:
            frame = encode(refused.to_wire())
            if peer is not None:
                peer.send_bytes(frame)
            return frame
        receipt = act.action == "seen"  # a console's receipt is in the incident, not the audit
        self.apply(None, [*effects, *([] if receipt else [
            Audit(act.actor, "incident", None, act.room, "ok")])])
        return b""

    # --- delivery at this node ----------------------------------------------------------

    def _local_attach(self, link: Link, room: str, member: str, waiting: bool) -> None:
        self._local[member] = link
        link.members.add(member)
        if not waiting:
            self._local_enter(room, member)

    def _local_enter(self, room: str, member: str) -> None:
        link = self._local.get(member)
        if link is not None:
            self._room_local.setdefault(room, {})[member] = link

    def _drop_local(self, member: str) -> None:
        self._local.pop(member, None)
        for room, members in list(self._room_local.items()):
            if members.pop(member, None) is not None and not members:
                del self._room_local[room]

    def _fan_out(self, room: str, payload: bytes, exclude: str | None) -> None:
        local = self._room_local.get(room)
        if not local:
            return
        prepared = self.prepare(payload, False)
        for member, link in local.items():
            if member != exclude:
                link.peer.send_prepared(prepared)

    def _voice_local(self, frame: bytes, members: Iterable[str]) -> None:
        """Prepared once; skipped for a listener whose socket is backed up (voice is droppable)."""
        prepared = None
        local, limit = self._local, self.slow_listener_bytes
        for member in members:
            link = local.get(member)
            if link is None:
                continue
            peer = link.peer
            channel = getattr(peer, "voice_channel", None)
            if channel is not None and channel.send(frame):
                self.voice_forwarded += 1
                continue
            if peer.pending_bytes() > limit:
                self.voice_dropped_slow += 1
                continue
            if prepared is None:
                prepared = self.prepare(frame, True)
            peer.send_prepared(prepared)
            self.voice_forwarded += 1

    # --- the bus -------------------------------------------------------------------------

    def _from_bus(self, data: bytes) -> None:
        try:
            message = relay.unpack(data)
            self._relayed(message)
        except Exception:  # one bad message must not stop the inbox
            self.log.failure("a relayed message could not be handled")

    def _relayed(self, m: relay.Relayed) -> None:
        h, now = m.header, self.clock()
        match m.kind:
            case relay.DUTY:
                if h["from"] != self.id:
                    self._to_duty(m.payload, h["exclude"])
            case relay.INCIDENT:
                if h["from"] != self.id:
                    self.venue.crisis.learn(json.loads(m.payload))
            case relay.DUTY_ROSTER:
                if h["from"] != self.id:
                    self.venue.crisis.heard_duty(h["from"], int(h["count"]), now)
            case relay.SESSION:
                if h["from"] != self.id and self.on_session is not None:
                    self.on_session(json.loads(m.payload))
            case relay.ACCOUNTS:
                if h["from"] != self.id:
                    d = defer.ensureDeferred(self.run_watchers())
                    d.addErrback(lambda f: self.log.failure("housekeeping watchers failed", f))
            case relay.INCIDENT_ACT:
                act = ActElsewhere(h["room"], h["incident"], h["action"], h["outcome"],
                                   h["actor"], h["ref"], h.get("basis"))
                self.broker.send_node(h["from"], relay.pack(
                    relay.INCIDENT_DONE, {"req": h["req"]}, self._act_here(None, act)))
            case relay.INCIDENT_DONE:
                asked = self._asks.pop(h["req"], None)
                if asked is not None and asked.peer is not None and m.payload:
                    asked.peer.send_bytes(m.payload)
            case relay.OPEN:
                node = h["link"].split("/", 1)[0]
                address = HashedAddress({d: bytes.fromhex(x) for d, x in h["hashes"].items()})
                conn = Connection(self.venue, self.venue.config.limits, now, address)
                self._remote[h["link"]] = RemoteLink(node, h["link"], conn, self.broker)
            case relay.FRAME:
                remote = self._remote.get(h["link"])
                if remote is not None:
                    self.apply(remote, remote.conn.receive(m.payload, h["binary"], now))
            case relay.LOST:
                remote = self._remote.pop(h["link"], None)
                held = self._held_remotely.pop(h["link"], set())
                if remote is not None:
                    for member in held:  # only what this link held: no scan of everyone
                        holder = self._holders.get(member)
                        if holder is not None and holder.peer is remote:
                            del self._holders[member]
                    self.apply(None, remote.conn.lost(now))
            case relay.REPLY:
                link = self._links.get(h["link"])
                if link is not None:
                    link.peer.send_bytes(m.payload)
            case relay.ATTACH:
                link = self._links.get(h["link"])
                if link is not None:
                    self._local_attach(link, h["room"], h["member"], h["waiting"])
            case relay.ENTER:
                self._local_enter(h["room"], h["member"])
            case relay.BROADCAST:
                self._fan_out(h["room"], m.payload, h["exclude"])
            case relay.TO_MEMBER:
                link = self._local.get(h["member"])
                if link is not None:
                    (link.peer.send_binary if h["binary"] else link.peer.send_bytes)(m.payload)
            case relay.VOICE:
                self._voice_local(m.payload, h["members"])
            case relay.CLOSE_LINK:
                link = self._links.get(h["link"])
                if link is not None:
                    link.closed = True
                    link.peer.close(h["code"], h["reason"])
            case relay.CLOSE_MEMBER:
                link = self._local.get(h["member"])
                self._drop_local(h["member"])
                if link is not None:
                    link.peer.close(h["code"], h["reason"])
