"""The routing host: which node runs each room, and how every client's frames get there.

Sans-IO, like Connection: events and the clock in, effects out. web/node.py applies
the effects (bytes to sockets, messages to other nodes) and runs the procedures
(`Run`: a generator that yields broker calls and gets their answers back), and
decides nothing. One host per node. Rules, in one place:

- Ownership. A room is run by one node at a time, its owner in the broker's
  directory (claimed by the first node that needs it, renewed every second). A
  node takes a room from another only when that node is gone: nobody listens on
  its inbox (a killed process stops listening at once), or its heartbeat has been
  missing for SUSPECT_FOR seconds. While the bus is away, and for SETTLE seconds
  after it comes back (a Redis restart may have emptied the directory), nobody is
  judged gone and no room is claimed but by the node that runs it: a live owner
  gets its rooms back before anyone else looks.
- Edges. A client's link binds to the room named by its first frame: a join, or
  the room a resume token names. Then this node runs the room, or every frame goes
  to the owner (relay.Frame, counted) and the owner sends back what this node
  delivers. A frame lost on the way is never overtaken: the owner handles frames
  in their count's order, drops one that comes twice, and on a gap closes the link
  (4010) so that its client resumes and sends again, in order, what is unanswered.
  The other way, what a node sends another for its clients is counted per pair of
  nodes (relay.Counted; a node's count starts at 1 in each run, and the first word
  from a node sets where its count stands): the receiver drops a copy and, on a gap,
  delivers nothing more but tells its clients of that node's rooms `moving` (4010):
  their resume brings what they missed. Once a second a node tells each node it sent
  anything to meanwhile its count (relay.Mark): a lost last message is noticed too.
- Told after sent. The owner's answer to a client connected to it (`sent`) goes
  through its own inbox when the same batch sent something to other nodes: behind
  those messages, so a member is never told a message arrived that the owner's
  death kept from the others (it is not acknowledged, and its client sends it again).
- Durable before told. A welcome (a new session token) goes out once the room's
  state holding that session is saved in the directory; a help press is answered
  `help_received` once the room's state holding the incident is saved and its
  alerts are journaled and copied into the shared outbox (web/alerts.py), in that
  order. Until then what the member would receive is kept, in order, at most
  HOLD_AT_MOST seconds (then it goes anyway, and facilitators hear that the alert
  is on this node only). Open incidents are saved at once, not at the next tick.
- Moving. When a room's owner is gone or another node took the room over, the
  edge tells each client of the room `moving` and closes with 4010: it resumes
  (any node) and sends again what was not acknowledged. A join or resume that
  cannot be routed now is answered `room_moving` (retryable), never left
  waiting: within ANSWER_WITHIN seconds at most. Before anything moves because a
  node is gone, what it sent before it went and this node's inbox holds unread is
  handled (a relay.Sync to ourselves comes back behind it): nobody resumes past a
  message its sender was told was sent.
"""

from __future__ import annotations

import json
import secrets
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import count
from pathlib import PurePath
from typing import Any, Protocol

from hearth.spaces import protocol as p
from hearth.spaces import relay
from hearth.spaces.addresses import AddressKey
from hearth.spaces.broker import Broker, Unreachable, log_records
from hearth.spaces.connection import Connection
from hearth.spaces.effects import (
    ActElsewhere,
    Attach,
    Audit,
    Broadcast,
    Close,
    Detach,
    Dispatch,
    DutyBroadcast,
    DutyRoster,
    Effect,
    Enter,
    Record,
    Reply,
    Send,
    Voice,
)
from hearth.spaces.protocol import ProtocolError, encode
from hearth.spaces.server_messages import (
    AlertNotShared,
    GoingAway,
    Moving,
    Sent,
)
from hearth.spaces.venue import Venue

OWNER_TTL = 5.0  # seconds a room's ownership lasts without renewal
NODE_TTL = 4.0  # seconds a node counts as alive after its last heartbeat
ROOM_MOVED = 4010  # close code: the room moved (or is moving); resume, on any node
TRY_AGAIN = 1013  # close code: the room cannot be reached right now
MAX_PENDING = 64  # frames held while a link is being bound to its room
ASK_TIMEOUT = 5.0  # seconds an incident action waits for the node that runs the incident
ANSWER_WITHIN = 0.9  # seconds an edge waits for the owner to answer a join or resume
HOLD_AT_MOST = 0.8  # seconds a welcome or help_received waits for its durable write
EDGE_HOLD = 2.0  # seconds an edge keeps a link's messages if the owner's Release is lost
SETTLE = 3.0  # seconds after the bus came back during which only owners claim rooms
SUSPECT_FOR = 1.5  # seconds a listening node's heartbeat may be missing before it is gone
SYNC_WITHIN = 1.0  # seconds a procedure waits for its Sync to come back through the inbox
GONE_FOR = 10.0  # seconds a verdict "gone" is trusted without asking again
RESAVE_EVERY = 5.0  # seconds between saves of an unchanged room (a lost key comes back)
STATE_MISSING_GRACE = 10.0  # seconds a resume waits for a room's lost state to come back
SIGN_INS = "sessions"  # the shared log of facilitator sign-in sessions
OUTBOX_LEASE_TTL = 10.0  # seconds a node's crisis alerts stay its own after its last renewal
# What a node posted to every node is kept for a node that missed some (relay.Replay): a
# loss is noticed within a second and asked for at once, and a subscriber is back within a
# second of Redis (the writer holds messages 10 s meanwhile), so a minute is ample; an alert
# older than that is better shown in a fresh listing than sounded late. At most ALL_KEPT
# (all-messages are rare: a few per incident change, sign-in and room move; ~2 KB each).
ALL_KEPT_FOR = 60.0
ALL_KEPT = 2000
REPLAY_WITHIN = 1.0  # seconds a node waits for a Replay's answer before it re-reads the log
LEARNED_KEPT = 10_000  # incidents whose last heard progress is remembered (older ones ignored)


def outbox_lease(node: str) -> str:
    """The lease a node holds on its own crisis alerts in the shared outbox (shared_outbox.py)."""
    return f"outbox:{node}"


# --- effects for the shell ---------------------------------------------------------------
# Not frozen: several are made for every frame, and a frozen dataclass costs three times as
# much to make. Nothing changes one after it is made.

@dataclass(slots=True)
class Write:
    """One text frame to one client connection at this node."""
    peer: Any
    payload: bytes


@dataclass(slots=True)
class Fan:
    """One text frame to several connections at this node (but `skip`): framed once."""
    peers: tuple[Any, ...] | list[Any]
    payload: bytes
    skip: Any = None


@dataclass(slots=True)
class VoiceFan:
    """One voice frame to several connections, framed once; a connection whose socket is
    backed up does not get it (voice is droppable, late audio is worse than none)."""
    peers: list[Any]
    frame: bytes


@dataclass(slots=True)
class Shut:
    """Close one client connection."""
    peer: Any
    code: int
    reason: str


@dataclass(slots=True)
class Post:
    """One message to another node."""
    node: str
    message: relay.RelayMessage


@dataclass(slots=True)
class PostAll:
    """One message to every node (this one included)."""
    message: relay.RelayMessage


@dataclass(slots=True)
class SignedIn:
    """Another node changed a facilitator sign-in session (moderation/login.py applies it)."""
    event: Mapping[str, Any]


@dataclass(slots=True)
class Watch:
    """Run the node's watchers now (web/auth.py: the shared facilitator accounts): at the
    end of each housekeeping, and at once when another node says accounts changed."""


@dataclass(slots=True)
class Log:
    """A line for the node's log: named fields, never content, an address or a token."""
    level: str  # "info", "warn", "error"
    text: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Call:
    """A procedure step: ask the broker `method(*args)` (spaces/broker.py). The answer, or
    the Unreachable it raised, is sent back into the procedure."""
    method: str
    args: tuple[Any, ...]


def ask(method: str, *args: Any) -> Call:
    assert callable(getattr(Broker, method, None)), method
    return Call(method, args)


@dataclass(frozen=True, slots=True)
class Share:
    """A procedure step: journal one alert on this node's disk (fsync'd), copy it into the
    shared outbox and deliver it, with `key` as its idempotency key. The answer: True once
    the copy is in the shared outbox, False if it could not be made (it is retried)."""
    key: str
    channel: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Sync:
    """A procedure step: post relay.Sync to this node's own inbox and go on once it comes back
    (`Synced`), or SYNC_WITHIN seconds later: what the inbox got before has been handled."""
    token: str


@dataclass(slots=True)
class Synced:
    """This node's relay.Sync came back: the procedure waiting on it goes on."""
    token: str


Step = Call | Share | Sync | list[Any]  # a list: effects to apply now
Procedure = Generator[Step, Any, None]


@dataclass(frozen=True, slots=True)
class Run:
    """Run a procedure: broker calls and effects, each step depending on the last answer."""
    what: str
    steps: Procedure


NodeEffect = (Write | Fan | VoiceFan | Shut | Post | PostAll | SignedIn | Watch | Log | Run | Audit
              | Record | Synced)


# --- what the shell gives the host ---------------------------------------------------------

class ClientConnection(Protocol):
    """A client's connection as the shell holds it (web/ws.py HearthServerProtocol)."""

    def send_bytes(self, payload: bytes) -> None: ...
    def send_binary(self, payload: bytes) -> None: ...
    def send_prepared(self, prepared: Any) -> None: ...
    def pending_bytes(self) -> int: ...
    def close(self, code: int, reason: str) -> None: ...


class AuditSink(Protocol):  # moderation/audit.py AuditLog: where the Audit effect goes
    def record(self, actor: str, action: str, target: str | None, room: str | None,
               outcome: str, now: float) -> Any: ...


class AlertSink(Protocol):  # web/alerts.py Alerts: where Share and Record go
    def dispatch(self, channel: str, payload: dict[str, Any],
                 key: str | None = None) -> Awaitable[bool]: ...
    def record(self, incident: dict[str, Any]) -> None: ...


class Addresses(Protocol):
    """Client addresses as keyed hashes, never in the clear (spaces/addresses.py AddressBook)."""

    def client(self, address: str) -> AddressKey: ...
    def hashed(self, hashes: Mapping[str, str]) -> AddressKey: ...
    def hashes(self, address: AddressKey, now: float) -> dict[str, str]: ...


# --- what the host keeps -------------------------------------------------------------------

@dataclass(eq=False)
class Link:
    """One client connection at this node (its edge)."""
    id: str
    peer: Any
    address: AddressKey | None
    owner: str | None = None  # the node that runs the link's room; None until bound
    room: str | None = None
    conn: Connection | None = None  # when this node runs the room
    # answers what comes before a routable join or resume, with the link's one rate limit
    stray: Connection | None = None
    pending: list[tuple[bytes, bool]] = field(default_factory=list)
    binding: bool = False
    closed: bool = False
    members: set[str] = field(default_factory=set)  # members attached through this link
    first: bytes | None = None  # the join or resume sent to the owner, until it is attached
    asked: tuple[float, str | None] | None = None  # (when, ref) of that join/resume
    held: list[bytes] | None = None  # kept until the member's session is durable
    frames: int = 0  # frames sent to the owner since the link's Open (relay.Frame `n`)


@dataclass(eq=False)
class RemoteLink:
    """A client of another node, in a room this node runs."""
    node: str
    id: str
    conn: Connection
    frames: int = 0  # the last relay.Frame `n` handled


@dataclass(eq=False)
class Stream:
    """What this node has handled of another node's messages to every node (one run)."""
    run: str
    last: int  # the count of the last one handled
    known: int  # the highest count known to have been posted
    held: dict[int, relay.RelayMessage] = field(default_factory=dict)  # behind a gap
    asked: float | None = None  # when the missing ones were asked for (relay.Replay)
    asked_last: int = 0  # `last` then


@dataclass(eq=False)
class Ask:
    """An incident action sent to the node that runs the incident, waiting for its answer."""
    peer: Link | RemoteLink | None
    ref: str | None
    at: float


@dataclass(eq=False)
class Gate:
    """What a help press (or an escalation tier) tells people, kept until its alerts are
    durable: the room's state saved, the alerts in the shared outbox."""
    held: list[NodeEffect]
    until: float
    incidents: tuple[str, ...]
    rooms: set[str]
    parts: int = 0
    shared: bool = True
    open: bool = False


Peer = Link | RemoteLink


def _node_of(link_id: str) -> str:
    return link_id.rsplit("/", 1)[0]


class RoutingHost:
    def __init__(self, venue: Venue, node_id: str, clock: Callable[[], float], *,
                 addresses: Addresses, new_id: Callable[[], str] | None = None,
                 run: str | None = None, directory_in_process: bool = False) -> None:
        self.venue = venue
        self.id = node_id
        self.run = run or secrets.token_hex(8)  # new at each start: other nodes count afresh
        self.clock = clock
        self.addresses = addresses
        self.effects_failed = 0  # core effects skipped because routing them raised
        self._ids = count(1)
        self._new_id = new_id or (lambda: f"{node_id}-{next(self._ids)}")
        self.links: dict[str, Link] = {}
        # delivery at this node: members connected here, whoever runs their room
        self.local: dict[str, Link] = {}
        self.room_local: dict[str, dict[str, Any]] = {}  # room -> member -> its connection
        # rooms run here: where their members are connected
        self.owned: set[str] = set()
        self.holders: dict[str, Link | RemoteLink] = {}
        self.remote: dict[str, RemoteLink] = {}
        self.held_remotely: dict[str, set[str]] = {}  # remote link id -> members it held
        self._holding: dict[str, tuple[Link | RemoteLink, float]] = {}  # link id -> until
        self._gates: list[Gate] = []
        self._asking: set[Link] = set()
        self._asks: dict[str, Ask] = {}
        # saving rooms: generations wanted and done, one save at a time per room
        self._save_want: dict[str, int] = {}
        self._save_done: dict[str, int] = {}
        self._save_waiters: dict[str, list[tuple[int, Callable[[bool], list[NodeEffect]]]]] = {}
        self._saving: set[str] = set()
        self._saved: dict[str, str] = {}
        self._saved_at: dict[str, float] = {}
        # alerts of a room not yet known to be in the shared outbox (in its saved state)
        self._alerts: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {}
        # other nodes
        self._bus_up: bool | None = None
        self._bus_was_up = False
        self._settle_until = 0.0
        self._gone: dict[str, float] = {}
        self._suspect: dict[str, float] = {}
        self._judging: set[str] = set()
        self._missing: dict[str, float] = {}
        self._housekeeping = False
        # the embedded broker's directory goes only with this process: once this node has
        # kept house (its saved rooms are restored by then), a room with no saved state
        # runs nowhere and a resume for it is told so at once
        self._directory_in_process = directory_in_process
        self._kept_house = False
        self._sign_ins_read: str | None = None
        # messages for other nodes' clients, counted (relay.Counted): sent to each node,
        # nodes not yet told how many (relay.Mark), and (run, last n) handled from each node
        self._sent: dict[str, int] = {}
        self._unmarked: set[str] = set()
        self._heard: dict[str, tuple[str, int]] = {}
        self._uncounted = False  # while what a gate holds is made: counted when it goes
        # messages to every node, counted (relay.CountedAll): how many posted in this run,
        # the recent ones kept for a Replay (when, message), whether a MarkAll is due, and
        # what was handled of each other node's; incidents' last heard progress
        self._all_sent = 0
        self._all_kept: deque[tuple[float, relay.CountedAll]] = deque()
        self._all_unmarked = False
        self._streams: dict[str, Stream] = {}
        self._learned: dict[str, tuple[int, ...]] = {}
        self._relisting = False
        self._relist_again = False

    # --- counts --------------------------------------------------------------------------

    @property
    def member_count(self) -> int:
        return len(self.local)

    @property
    def link_count(self) -> int:
        """Client connections open at this node (joined or not yet)."""
        return len(self.links)

    # --- client connections (this node as the edge) -----------------------------------------

    def open(self, peer: Any, address: str | None = None) -> Link:
        """A new client link; its address is kept only as keyed hashes (`addresses`)."""
        client = self.addresses.client(address) if address is not None else None
        link = Link(f"{self.id}/{next(self._ids)}", peer, client)
        self.links[link.id] = link
        return link

    def received(self, link: Link, frame: bytes, is_binary: bool) -> list[NodeEffect]:
        if link.closed:
            return []
        conn = link.conn
        if conn is not None:
            return self.route(link, conn.receive(frame, is_binary, self.clock()))
        owner = link.owner
        if owner is not None:
            link.frames += 1
            return [Post(owner, relay.Frame(link.id, is_binary, frame, link.frames))]
        if len(link.pending) >= MAX_PENDING:
            link.closed = True
            return [Shut(link.peer, 1008, "too many messages before joining")]
        link.pending.append((frame, is_binary))
        if link.binding:
            return []
        link.binding = True
        return [Run("bind a link to its room", self._bind(link))]

    def lost(self, link: Link) -> list[NodeEffect]:
        link.closed = True
        self.links.pop(link.id, None)
        self._asking.discard(link)
        self._holding.pop(link.id, None)
        for member in list(link.members):  # only what this link held: no scan of everyone
            if self.local.get(member) is link:
                self._drop_local(member)
            if self.holders.get(member) is link:
                del self.holders[member]
        link.members.clear()
        if link.conn is not None:
            return self.route(None, link.conn.lost(self.clock()))
        if link.owner not in (None, self.id):
            return [Post(link.owner, relay.Lost(link.id))]
        return []

    def going_away(self, message: str, code: int = 1001) -> list[NodeEffect]:
        """This node is stopping: every client connected here is told why (`going_away`,
        then a close) and its link stops taking frames. Members of rooms run here keep
        their seat, away, for the grace period: they resume with their token."""
        payload = encode(GoingAway(message=message))
        out: list[NodeEffect] = []
        for link in list(self.links.values()):
            if not link.closed:
                link.closed = True
                out += [Write(link.peer, payload), Shut(link.peer, code, "the server is restarting")]
        return out

    def move_remote_members(self) -> list[NodeEffect]:
        """Members of rooms run here who are connected through other nodes: resume (4010),
        once the rooms have been saved and released for another node to take over."""
        out: list[NodeEffect] = []
        for member, holder in list(self.holders.items()):
            if isinstance(holder, RemoteLink):
                del self.holders[member]
                out.append(self._post(holder.node, relay.CloseLink(holder.id, ROOM_MOVED,
                                                                   "the room moved; resume")))
        return out

    # --- binding a link to its room ----------------------------------------------------------

    def _bind(self, link: Link) -> Procedure:
        """Find the room the link's first frame is about, and the node that runs it."""
        try:
            while link.pending and not link.closed and link.owner is None:
                frame, is_binary = link.pending[0]
                target = self._target(frame, is_binary)
                if target is None:  # not a join or resume we can route: answered here
                    link.pending.pop(0)
                    yield self.route(link, self._stray(link).receive(frame, is_binary,
                                                                     self.clock()))
                    continue
                room, ref, resume = target
                owner = yield from self._owner_for(room, resume)
                if link.closed:
                    return
                if owner is None:  # not now: the client sends it again
                    link.pending.clear()
                    yield [self._moving_error(link.peer, ref)]
                    return
                yield self._bound(link, room, owner, frame, ref)
        except Exception:
            link.closed = True
            yield [Shut(link.peer, TRY_AGAIN, "the room cannot be reached right now; try again")]
            raise
        finally:
            link.binding = False

    def _bound(self, link: Link, room: str, owner: str, first: bytes,
               ref: str | None) -> list[NodeEffect]:
        link.room, link.owner = room, owner
        pending, link.pending = link.pending, []
        out: list[NodeEffect] = []
        if owner == self.id:
            link.conn = self._stray(link)  # the same rate limit and flood count, joined
        else:
            out.append(Post(owner, relay.Open(link.id, room, self._address_hashes(link.address))))
            link.frames = 0
            link.first, link.asked = first, (self.clock(), ref)
            self._asking.add(link)
        for frame, is_binary in pending:
            out += self.received(link, frame, is_binary)
        return out

    def _stray(self, link: Link) -> Connection:
        """The link's connection core before it is bound: one per link, so what a client
        sends before joining counts against one rate limit and one flood count."""
        if link.stray is None:
            link.stray = Connection(self.venue, self.venue.config.limits, self.clock(),
                                    link.address)
        return link.stray

    def _target(self, frame: bytes, is_binary: bool) -> tuple[str, str | None, bool] | None:
        """(room, ref, is a resume) of a join or resume this node can route."""
        if is_binary:
            return None
        try:
            msg = p.decode(frame)
        except ProtocolError:
            return None
        if isinstance(msg, p.Join):
            return (msg.room, msg.ref, False) if msg.room in self.venue.rooms else None
        if isinstance(msg, p.Resume):
            room = Venue.token_room(msg.token)
            return (room, msg.ref, True) if room in self.venue.rooms else None
        return None

    def _owner_for(self, room: str, resume: bool) -> Generator[Step, Any, str | None]:
        """The node that runs `room` (claimed here, or taken from a node that went away);
        None when that cannot be known now (the client is told to try again)."""
        if room in self.owned:
            return self.id
        if self._settling():
            return None
        for _ in range(3):
            owner = yield ask("claim_room", room, self.id, OWNER_TTL)
            if isinstance(owner, Unreachable):
                return None
            if owner == self.id:
                taken = yield from self._take(room, resume)
                return self.id if taken else None
            verdict = yield from self._judge(str(owner))
            if verdict is not False:
                return str(owner)  # alive, or not known yet: the edge answers for it in time
            took = yield ask("take_room", room, self.id, str(owner), OWNER_TTL)
            if isinstance(took, Unreachable):
                return None
            if took:
                taken = yield from self._take(room, resume)
                return self.id if taken else None
        return None

    def _take(self, room: str, resume: bool) -> Generator[Step, Any, bool]:
        """This node owns `room` in the directory now: run it from its saved state."""
        saved = yield ask("load_room", room)
        if room in self.owned:
            return True
        if isinstance(saved, Unreachable):
            yield ask("release_room", room, self.id)
            return False
        now = self.clock()
        # A resume names a room nobody runs and nothing was saved for: the directory may
        # have lost it (a Redis restart) while its node puts it back; a while later, the
        # room starts afresh and the venue answers session_expired. A directory in this
        # process is lost with it only: the answer is the truth at once.
        if saved is None and resume and not (self._directory_in_process and self._kept_house) \
                and now - self._missing.setdefault(room, now) < STATE_MISSING_GRACE:
            yield ask("release_room", room, self.id)
            return False
        self._missing.pop(room, None)
        yield self._run_from(room, None if saved is None else json.loads(saved))
        return True

    def _run_from(self, room: str, state: dict[str, Any] | None) -> list[NodeEffect]:
        """Run `room` here from its saved state (or afresh): everyone is away until they
        resume; alerts that were not yet known to be shared are shared again (same keys)."""
        out: list[NodeEffect] = []
        if state is not None:
            self.venue.import_room(room, state, self.clock())
            alerts = {str(a["key"]): (str(a["channel"]), dict(a["payload"]))
                      for a in state.get("alerts", []) if isinstance(a, dict)}
            if alerts:
                self._alerts.setdefault(room, {}).update(alerts)
                out.append(Run("share a room's alerts", self._share(None, room, alerts, True)))
            out += [Log("info", "took over room {room}", {"room": room}),
                    self._post_all(relay.Moved(room, self.id))]
        self.owned.add(room)
        out += self._move_links(room, keep=self.id)
        return out

    def restored(self, room: str, state: dict[str, Any], saved_at: float) -> list[NodeEffect]:
        """A room saved by this node's last graceful stop (web/lifecycle.py), claimed again:
        the grace period runs from the stop; members gone before it stay gone."""
        return self._run_from(room, {**state, "saved_at": saved_at})

    def _judge(self, node: str) -> Generator[Step, Any, bool | None]:
        """Is `node` there? True, False (gone), or None (cannot tell now). The first time it is
        found gone, what it ran moves and its alerts are taken over (`_node_gone`)."""
        if node == self.id:
            return True
        now = self.clock()
        if now - self._gone.get(node, float("-inf")) < GONE_FOR:
            return False
        if self._settling():
            return None
        beating = yield ask("alive", node)
        listening = yield ask("listening", node)
        if isinstance(beating, Unreachable) or isinstance(listening, Unreachable):
            return None
        now = self.clock()
        if beating and listening:
            self._suspect.pop(node, None)
            return True
        if listening and now - self._suspect.setdefault(node, now) < SUSPECT_FOR:
            return None  # its heartbeat may just be late (a restarted directory)
        # What it sent before it went may still be on its way through our inbox (Redis handed
        # it over; our reader has not got to it): it is handled before anything moves.
        yield Sync(f"{self.id}/{next(self._ids)}")
        now = self.clock()
        if now - self._gone.get(node, float("-inf")) >= GONE_FOR:  # (not judged meanwhile)
            self._gone[node] = now
            self._suspect.pop(node, None)
            yield self._node_gone(node)
        return False

    def _settling(self) -> bool:
        """Away, or just back after an outage: the directory may not hold every live room
        (nor every live node's heartbeat and subscription) yet."""
        return (self._bus_up is False and self._bus_was_up) or self.clock() < self._settle_until

    def _address_hashes(self, address: AddressKey | None) -> dict[str, str]:
        """The keyed hashes of an address for the days a ban may date from (never the address)."""
        return {} if address is None else self.addresses.hashes(address, self.clock())

    @staticmethod
    def _moving_error(peer: Any, ref: str | None) -> Write:
        return Write(peer, encode(ProtocolError("room_moving", ref=ref).as_message()))

    # --- when a room moves -------------------------------------------------------------------

    def _move_links(self, room: str, keep: str) -> list[NodeEffect]:
        """Links bound to `room` at another node than `keep`: a link still waiting for its
        welcome is bound again (its join or resume goes to the new owner); the others are
        told `moving` and closed with 4010 (they resume)."""
        out: list[NodeEffect] = []
        for link in [lk for lk in self.links.values()
                     if lk.room == room and lk.owner not in (None, keep) and not lk.closed]:
            out += self._move(link)
        return out

    def _move(self, link: Link) -> list[NodeEffect]:
        if link.first is not None and not link.members:  # not attached yet: bind it again
            self._asking.discard(link)
            link.pending = [(link.first, False), *link.pending]
            link.owner = link.room = link.first = link.asked = None
            if link.binding:
                return []
            link.binding = True
            return [Run("bind a link to its room", self._bind(link))]
        return self._moved_out(link)

    def _moved_out(self, link: Link) -> list[NodeEffect]:
        """The client is told `moving` and closed with 4010: it resumes (on any node)."""
        for member in list(link.members):
            if self.local.get(member) is link:
                self._drop_local(member)
        link.closed = True
        self._asking.discard(link)
        return [Write(link.peer, encode(Moving(room=link.room))),
                Shut(link.peer, ROOM_MOVED, "the room moved to another node; resume")]

    def _node_gone(self, node: str) -> list[NodeEffect]:
        """`node` is gone: the rooms it ran move (our clients there resume), and the members
        it held of rooms run here are away (what they miss is kept for their resume)."""
        out: list[NodeEffect] = [Log("warn", "node {node} went away", {"node": node})]
        for room in sorted({lk.room for lk in self.links.values()
                            if lk.owner == node and lk.room is not None}):
            out += self._move_links(room, keep="")
        for remote in [r for r in self.remote.values() if r.node == node]:
            out += self._relayed(relay.Lost(remote.id))
        # its undelivered alerts are delivered from here at once, not when its lease runs out
        out.append(Run("take over a gone node's alerts", self._take_alerts(node)))
        return out

    def _take_alerts(self, node: str) -> Procedure:
        yield ask("take_lease", outbox_lease(node), self.id, node, OUTBOX_LEASE_TTL)

    def _lose(self, room: str) -> list[NodeEffect]:
        """Another node owns the room now: our clients must resume there (and its
        incidents run there: it took them with the room's saved state)."""
        self.owned.discard(room)
        self._saved.pop(room, None)
        self.venue.crisis.hand_over(room)
        out: list[NodeEffect] = [Log("warn", "room {room} is run by another node now",
                                     {"room": room})]
        members = self.venue.rooms[room]
        for member, holder in list(self.holders.items()):
            if member in members.members or member in members.waiting:
                del self.holders[member]
                self._close(out, holder, ROOM_MOVED, "the room moved; resume")
        for link in [lk for lk in self.links.values() if lk.room == room and not lk.closed]:
            link.conn = None
            out += self._move(link)
        return out

    # --- from the bus ------------------------------------------------------------------------

    def relayed(self, data: bytes) -> list[NodeEffect]:
        try:
            message = relay.unpack(data)
        except relay.RelayError as err:
            return [Log("warn", "a relayed message could not be read ({why})", {"why": str(err)})]
        return self._relayed(message)

    def _relayed(self, m: relay.RelayMessage) -> list[NodeEffect]:
        out: list[NodeEffect] = []
        match m:
            case relay.Counted(sender=sender, run=run, n=n, message=message):
                step = self._count(sender, run, n)
                if step is None:
                    return self._behind(sender)  # not handled: its clients resume before it
                return self._relayed(message) if step else []
            case relay.Mark(sender=sender, run=run, n=n):
                known = self._heard.get(sender)
                if known is None or known[0] != run or n > known[1]:
                    self._heard[sender] = (run, n)
                    if known is not None:  # it sent us more than we got (the last ones)
                        return self._behind(sender)
            case relay.Frame(link=link_id, binary=binary, payload=payload, n=n):
                remote = self.remote.get(link_id)
                if remote is not None:
                    if n and n != remote.frames + 1:
                        return self._out_of_step(remote, n)
                    remote.frames = n
                    return self.route(remote, remote.conn.receive(payload, binary, self.clock()))
                out.append(self._post(_node_of(link_id), relay.CloseLink(
                    link_id, ROOM_MOVED, "the room moved; resume")))
            case relay.Open(link=link_id, room=room, hashes=hashes):
                node = _node_of(link_id)
                if room not in self.owned:  # the directory still names us: let it go
                    out += [self._post(node, relay.CloseLink(link_id, ROOM_MOVED,
                                                             "the room moved; resume")),
                            Run("release a room not run here", self._release_stale(room))]
                else:
                    address = self.addresses.hashed(hashes)
                    conn = Connection(self.venue, self.venue.config.limits, self.clock(), address)
                    self.remote[link_id] = RemoteLink(node, link_id, conn)
            case relay.Lost(link=link_id):
                remote = self.remote.pop(link_id, None)
                held = self.held_remotely.pop(link_id, set())
                self._holding.pop(link_id, None)
                if remote is not None:
                    for member in held:  # only what this link held: no scan of everyone
                        if self.holders.get(member) is remote:
                            del self.holders[member]
                    return self.route(None, remote.conn.lost(self.clock()))
            case relay.Reply(link=link_id, payload=payload):
                link = self.links.get(link_id)
                if link is not None:
                    self._answered(link)
                    self._write(out, link, payload)
            case relay.Attach(link=link_id, room=room, member=member, waiting=waiting, held=held):
                link = self.links.get(link_id)
                if link is not None:
                    self._answered(link)
                    link.first = None
                    self._local_attach(link, room, member, waiting)
                    if held and link.held is None:
                        link.held = []
                        self._holding[link.id] = (link, self.clock() + EDGE_HOLD)
            case relay.Release(link=link_id):
                out += self._let_out(link_id)
            case relay.Enter(room=room, member=member, held=held):
                self._local_enter(room, member)
                link = self.local.get(member)
                if held and link is not None and link.held is None:
                    link.held = []
                    self._holding[link.id] = (link, self.clock() + EDGE_HOLD)
            case relay.Broadcast(room=room, exclude=exclude, payload=payload):
                self._fan_out(out, room, payload, exclude)
            case relay.ToMember(member=member, binary=binary, payload=payload):
                link = self.local.get(member)
                if link is not None:
                    if binary:
                        if link.held is None:
                            out.append(VoiceFan([link.peer], payload))
                    else:
                        self._write(out, link, payload)
            case relay.Voice(members=members, payload=payload):
                self._voice_local(out, payload, members)
            case relay.CloseLink(link=link_id, code=code, reason=reason):
                link = self.links.get(link_id)
                if link is not None and not link.closed:
                    link.closed = True
                    out.append(Shut(link.peer, code, reason))
            case relay.CloseMember(member=member, code=code, reason=reason):
                link = self.local.get(member)
                self._drop_local(member)
                if link is not None:
                    out.append(Shut(link.peer, code, reason))
            case relay.Moved(room=room, owner=owner):
                if owner != self.id:
                    out += self._move_links(room, keep=owner)
                    if room in self.owned:  # two owners: the directory says who it is
                        out.append(Run("renew a room", self._renew(room)))
            case relay.DutyBroadcast(sender=sender, exclude=exclude, payload=payload):
                if sender != self.id:
                    self._to_duty(out, payload, exclude)
            case relay.DutyRoster(sender=sender, count=count, run=run, n=n):
                if sender != self.id:
                    self.venue.crisis.heard_duty(sender, count, self.clock())
                    if run:  # it says its count too (a MarkAll, every 2 s)
                        return self._mark_all(sender, run, n)
            case relay.IncidentState(sender=sender, incident=incident):
                if sender != self.id:
                    self._learn(incident)
            case relay.SignIn(sender=sender, event=event):
                if sender != self.id:
                    out.append(SignedIn(event))
            case relay.Accounts(sender=sender):
                if sender != self.id:
                    out.append(Watch())
            case relay.IncidentAct() as act:
                refusal = self._act_here(out, None, ActElsewhere(
                    act.room, act.incident, act.action, act.outcome, act.actor, act.ref,
                    act.basis))
                out.append(Post(act.sender, relay.IncidentDone(act.req, refusal)))
            case relay.Sync(token=token):
                out.append(Synced(token))
            case relay.IncidentDone(req=req, payload=payload):
                asked = self._asks.pop(req, None)
                if asked is not None and asked.peer is not None and payload:
                    self._reply(out, asked.peer, payload)
            # (rare: after the hot kinds)
            case relay.CountedAll(sender=sender, run=run, n=n, message=message):
                return self._counted_all(sender, run, n, message)
            case relay.MarkAll(sender=sender, run=run, n=n):
                return self._mark_all(sender, run, n)
            case relay.Replay(sender=sender, run=run, after=after):
                return self._replay(sender, run, after)
            case relay.Lapsed(sender=sender, run=run, first=first):
                stream = self._streams.get(sender)
                if stream is not None and stream.run == run \
                        and (first == 0 or first > stream.last + 1):
                    return self._give_up(sender, stream, first - 1 if first else None)
        return out

    def _post(self, node: str, message: relay.RelayMessage) -> Post:
        """A message for another node: counted (relay.Counted) when it is for that node's
        clients, so that one lost on the way is noticed there; never to ourselves."""
        if node == self.id or self._uncounted or not isinstance(message, relay.FOR_CLIENTS):
            return Post(node, message)
        n = self._sent[node] = self._sent.get(node, 0) + 1
        self._unmarked.add(node)
        return Post(node, relay.Counted(self.id, self.run, n, message))

    def _marks(self) -> list[NodeEffect]:
        """Each node sent counted messages since the last time is told how many (relay.Mark),
        and every node how many were posted to all (relay.MarkAll): the loss of the last one
        is noticed there within a second. Nothing when nothing was sent."""
        marks: list[NodeEffect] = [Post(node, relay.Mark(self.id, self.run, self._sent[node]))
                                   for node in sorted(self._unmarked)]
        self._unmarked.clear()
        if self._all_unmarked:
            self._all_unmarked = False
            marks.append(PostAll(relay.MarkAll(self.id, self.run, self._all_sent)))
        return marks

    def _count(self, sender: str, run: str, n: int) -> bool | None:
        """A counted message from `sender`: True to handle it, False if it was handled
        already, None if one before it was lost. The first word from a node since this one
        started sets where its count is; a node that started again counts from 1 (its new
        run)."""
        known = self._heard.get(sender)
        if known is not None and known[0] == run:
            last = known[1]
            if n <= last:
                return False
            self._heard[sender] = (run, n)
            return n == last + 1 or None
        self._heard[sender] = (run, n)
        return known is None or n == 1 or None

    def _behind(self, node: str) -> list[NodeEffect]:
        """Something `node` sent for clients here was lost on the way (Redis counted it
        delivered, then failed over or restarted before passing it on): the clients here in
        rooms it runs are told `moving` and resume, and their resume brings what they missed
        from the room's history (nothing after the loss was delivered to them)."""
        out: list[NodeEffect] = [Log("warn", "a message from node {node} was lost on the way; "
                                             "its rooms' clients here resume", {"node": node})]
        for link in [lk for lk in self.links.values() if lk.owner == node and not lk.closed]:
            out += self._moved_out(link)
        return out

    def _out_of_step(self, remote: RemoteLink, n: int) -> list[NodeEffect]:
        """A client frame came twice (dropped), or one before it was lost on the way (a Redis
        failover): handling it would put it before the lost one, so the link is closed and
        its client resumes, sending again, in order, what was not acknowledged."""
        if n <= remote.frames:
            return []
        return [*self._relayed(relay.Lost(remote.id)),
                self._post(remote.node, relay.CloseLink(remote.id, ROOM_MOVED,
                                                        "something was lost on the way; resume"))]

    # --- what a node posts to every node, counted ----------------------------------------------

    def _post_all(self, message: relay.RelayMessage) -> PostAll:
        """A message for every node: counted (relay.CountedAll) and kept a while, so that a
        node that missed it gets it again (relay.Replay); a DutyRoster is not (the next one
        makes good a lost one)."""
        if self._uncounted or not isinstance(message, relay.FOR_ALL):
            return PostAll(message)
        n = self._all_sent = self._all_sent + 1
        counted = relay.CountedAll(self.id, self.run, n, message)
        self._all_kept.append((self.clock(), counted))
        if len(self._all_kept) > ALL_KEPT:
            self._all_kept.popleft()
        self._all_unmarked = True
        return PostAll(counted)

    def _replay(self, node: str, run: str, after: int) -> list[NodeEffect]:
        """`node` missed some of what this node posted to every node: what is still kept goes
        to it alone, in order; first a Lapsed if some of it is no longer kept."""
        if run != self.run:
            return [Post(node, relay.Lapsed(self.id, run, 0))]
        kept, stale = self._all_kept, self.clock() - ALL_KEPT_FOR
        while kept and kept[0][0] < stale:
            kept.popleft()
        first = kept[0][1].n if kept else self._all_sent + 1
        out: list[NodeEffect] = []
        if first > after + 1:
            out.append(Post(node, relay.Lapsed(self.id, run, first)))
        out += [Post(node, counted) for _, counted in kept if counted.n > after]
        return out

    def _counted_all(self, sender: str, run: str, n: int,
                     message: relay.RelayMessage) -> list[NodeEffect]:
        """The `n`th message `sender` posted to every node in its `run`: handled in the
        count's order, a copy dropped. Behind a gap it waits while the missing ones are
        asked for (relay.Replay). The first word from a node sets where its count is; a new
        run of it counts from 1."""
        if sender == self.id:
            return self._relayed(message)
        stream, out = self._stream(sender, run, n - 1)
        if n <= stream.last or n in stream.held:
            return out
        stream.known = max(stream.known, n)
        stream.held[n] = message
        if n == stream.last + 1:
            return out + self._drain(stream)
        if stream.asked is None:
            out.append(self._ask_replay(sender, stream))
        return out

    def _mark_all(self, sender: str, run: str, n: int) -> list[NodeEffect]:
        """`sender` says it posted n messages to every node: any not handled here are asked
        for."""
        if sender == self.id:
            return []
        stream, out = self._stream(sender, run, n)
        if n < stream.last:
            # A count never goes back: what went past it was not that node's (forged by
            # someone who can write to Redis), and must not silence its own messages.
            stream.last = stream.known = n
            stream.held.clear()
            stream.asked = None
            return [*out, Log("warn", "node {node} says a count below what this node took "
                                      "for its own; counting on from its word",
                              {"node": sender}), *self._relist()]
        stream.known = max(stream.known, n)
        if n > stream.last and stream.asked is None:
            out.append(self._ask_replay(sender, stream))
        return out

    def _stream(self, sender: str, run: str, first: int) -> tuple[Stream, list[NodeEffect]]:
        """Where `sender`'s count stands here: set at `first` by the first word from it; at 0
        for a new run of it (what its last run left missing is given up)."""
        stream = self._streams.get(sender)
        if stream is not None and stream.run == run:
            return stream, []
        out: list[NodeEffect] = []
        if stream is not None and stream.asked is not None:
            out = self._give_up(sender, stream, None)
        start = first if stream is None else 0
        stream = self._streams[sender] = Stream(run, start, start)
        return stream, out

    def _ask_replay(self, sender: str, stream: Stream) -> Post:
        stream.asked, stream.asked_last = self.clock(), stream.last
        return Post(sender, relay.Replay(self.id, stream.run, stream.last))

    def _drain(self, stream: Stream) -> list[NodeEffect]:
        """What is held and next in the count is handled, in order."""
        out: list[NodeEffect] = []
        held = stream.held
        while stream.last + 1 in held:
            stream.last += 1
            out += self._relayed(held.pop(stream.last))
        if stream.last >= stream.known:
            stream.asked = None
        return out

    def _overdue(self, now: float) -> list[NodeEffect]:
        """A Replay not answered in time: asked once more if some came meanwhile, else given
        up (the sender is gone, or the answer was lost too)."""
        out: list[NodeEffect] = []
        for sender, stream in list(self._streams.items()):
            if stream.asked is None or now - stream.asked < REPLAY_WITHIN:
                continue
            if stream.last > stream.asked_last:
                out.append(self._ask_replay(sender, stream))
            else:
                out += self._give_up(sender, stream, None)
        return out

    def _give_up(self, sender: str, stream: Stream, upto: int | None) -> list[NodeEffect]:
        """Some of what `sender` posted to every node (up to `upto`, or all that is missing)
        will not come: what is held is handled in order, and the shared incident log is
        read again, so that every on-duty console here is handed every open incident."""
        upto = stream.known if upto is None else upto
        out: list[NodeEffect] = [Log("warn", "messages node {node} sent to every node were "
                                             "lost and are no longer kept; the incident log "
                                             "is read again", {"node": sender})]
        for n in sorted(k for k in stream.held if k <= upto):
            out += self._relayed(stream.held.pop(n))
        stream.last = max(stream.last, upto)
        out += self._drain(stream)
        out += self._relist()
        return out

    def _relist(self) -> list[NodeEffect]:
        if self._relisting:
            self._relist_again = True
            return []
        self._relisting = True
        return [Run("read the incident log again", self._reread_incidents())]

    def _reread_incidents(self) -> Procedure:
        """Every incident's latest state from the shared log (a later one heard here wins),
        then every on-duty console here gets the open incidents (`duty`)."""
        try:
            again = True
            while again:
                self._relist_again = False
                if (yield from self._learn_shared()) is None:
                    yield [Log("warn", "the shared incident log cannot be read now; on-duty "
                                       "consoles get the open incidents this node knows")]
                again = self._relist_again
            yield self.route(None, self.venue.crisis.relist())
        finally:
            self._relisting = False

    def _learn_shared(self) -> Generator[Step, Any, dict[str, dict[str, Any]] | None]:
        """Each incident's latest state in the shared incident log, learned (those other
        nodes run); None when the log cannot be read now."""
        shared = yield from self._read_all("incidents")
        if shared is None:
            return None
        latest = self.venue.crisis.latest(shared)
        for wire in latest.values():
            if "room" in wire:
                self._learn(wire)
        return latest

    def _learn(self, wire: Mapping[str, Any]) -> None:
        """Another node's word of an incident it runs, unless a later one was heard here (a
        state read again from the shared log may be older than one heard live)."""
        incident, step = str(wire.get("id")), _progress(wire)
        known = self._learned.pop(incident, None)
        if known is not None and known != step \
                and all(k >= s for k, s in zip(known, step, strict=True)):
            self._learned[incident] = known
            return
        self._learned[incident] = step
        if len(self._learned) > LEARNED_KEPT:
            del self._learned[next(iter(self._learned))]
        self.venue.crisis.learn(dict(wire))

    def _answered(self, link: Link) -> None:
        link.asked = None
        self._asking.discard(link)

    def _release_stale(self, room: str) -> Procedure:
        yield ask("release_room", room, self.id)

    def unheard(self, node: str) -> list[NodeEffect]:
        """A message to `node` found nobody listening: is it gone?"""
        if node == self.id or node in self._judging:
            return []
        if not any(lk.owner == node for lk in self.links.values()) \
                and not any(r.node == node for r in self.remote.values()):
            return []
        self._judging.add(node)
        return [Run("judge a node", self._judge_and_move(node))]

    def _judge_and_move(self, node: str) -> Procedure:
        try:
            yield from self._judge(node)
        finally:
            self._judging.discard(node)

    def undelivered(self, node: str, data: bytes) -> list[NodeEffect]:
        """A message to `node` was given up on: the client whose frame it was is told; if it
        was for clients of `node` in rooms run here, they resume (and get what they missed)."""
        try:
            message = relay.unpack(data)
        except relay.RelayError:
            return []
        if isinstance(message, relay.Counted):
            message = message.message
        if node == self.id and isinstance(message, relay.Reply | relay.Sync):
            return self._relayed(message)  # to ourselves, after what went before it
        if isinstance(message, relay.Broadcast | relay.ToMember | relay.Reply | relay.Attach
                      | relay.Enter | relay.Release):
            return self._resync(node)
        if isinstance(message, relay.Frame | relay.Open):
            link = self.links.get(message.link)
            if link is None or link.closed or link.owner != node:
                return []
            if isinstance(message, relay.Open):
                return self._move(link)
            if not message.binary:
                return [self._moving_error(link.peer, _ref_of(message.payload))]
        return []

    def _resync(self, node: str) -> list[NodeEffect]:
        """Something for `node`'s clients was lost on the way: they are away here from now on,
        and told to resume (a resume brings what they missed). A client the close does not
        reach resumes at its next frame (a frame for a link not known here is answered so)."""
        out: list[NodeEffect] = []
        for remote in [r for r in self.remote.values() if r.node == node]:
            out += self._relayed(relay.Lost(remote.id))
            out.append(self._post(node, relay.CloseLink(remote.id, ROOM_MOVED,
                                                        "something was lost on the way; resume")))
        return out

    # --- time ----------------------------------------------------------------------------------

    def tick(self, bus_up: bool = True) -> list[NodeEffect]:
        """The room tick (movement.tick_hz): rooms' timers, and every promise of an answer."""
        now = self.clock()
        out = self.route(None, self.venue.tick(now))
        out += self.bus(bus_up)
        if self._holding:
            for link_id, (_, until) in list(self._holding.items()):
                if now >= until:
                    out += self._let_out(link_id)
        if self._gates:
            for gate in [g for g in self._gates if now >= g.until]:
                out += self._open_gate(gate)
        if self._streams:
            out += self._overdue(now)
        if self._asking:
            for link in [lk for lk in self._asking if now - (lk.asked or (now, None))[0]
                         >= ANSWER_WITHIN]:
                ref = link.asked[1] if link.asked is not None else None
                out.append(self._moving_error(link.peer, ref))
                out += self._move_after_silence(link)
        return out

    def _move_after_silence(self, link: Link) -> list[NodeEffect]:
        """The owner did not answer a join or resume in time: the client resumes again."""
        self._answered(link)
        link.first = None
        link.closed = True
        return [Shut(link.peer, ROOM_MOVED, "the room is moving; resume")]

    def bus(self, up: bool) -> list[NodeEffect]:
        """Whether this node's subscriptions are up (told at every tick, and before anything
        the bus reports)."""
        if up is self._bus_up:
            return []
        self._bus_up = up
        if not up:
            return []
        if not self._bus_was_up:  # the first connection, not a return
            self._bus_was_up = True
            return []
        # back after an outage: the directory may have been emptied (a Redis restart); for a
        # while only the nodes that run rooms claim them, and they do so now
        self._settle_until = self.clock() + SETTLE
        self._all_unmarked = self._all_sent > 0  # what went to all meanwhile may be lost
        return [Log("info", "the bus is back; rooms run here are claimed again"),
                *self.housekeeping()]

    def housekeeping(self) -> list[NodeEffect]:
        """Once a second: other nodes hear how many counted messages they were sent,
        heartbeat, keep and save the rooms run here, watch their owners."""
        marks = self._marks() if self._unmarked or self._all_unmarked else []
        if self._housekeeping:
            return marks
        self._housekeeping = self._kept_house = True
        return [*marks, Run("housekeeping", self._housekeep())]

    def _housekeep(self) -> Procedure:
        try:
            yield ask("heartbeat", self.id, NODE_TTL)
            for room in sorted(self.owned):
                yield from self._keep(room)
            owners = sorted({lk.owner for lk in self.links.values()
                             if lk.owner not in (None, self.id)} - self._judging)
            for node in owners:
                if node is not None:
                    yield from self._judge(node)
            yield self._expire_asks()
            yield from self._adopt_orphaned_incidents()
            yield from self._tail_sign_ins()
            yield [Watch()]
        finally:
            self._housekeeping = False

    def _keep(self, room: str) -> Procedure:
        state = self.venue.rooms[room]
        if (not state.members and not state.waiting and not self.venue.crisis.runs_in(room)
                and not self._alerts.get(room) and room not in self._saving):
            self.owned.discard(room)
            self._saved.pop(room, None)
            yield ask("release_room", room, self.id)
            yield ask("drop_room", room)
            return
        yield from self._renew(room)
        if room not in self.owned:
            return
        saved = self._saved.get(room)
        if saved is None or saved != self._state(room) \
                or self.clock() - self._saved_at.get(room, 0.0) >= RESAVE_EVERY:
            yield self._want_save(room)

    def _renew(self, room: str) -> Procedure:
        renewed = yield ask("renew_room", room, self.id, OWNER_TTL)
        if renewed is not False:  # renewed, or the store is away: carry on
            return
        # Gone from the directory (Redis restarted empty) or taken by another node?
        owner = yield ask("claim_room", room, self.id, OWNER_TTL)
        if isinstance(owner, Unreachable):
            return
        if owner != self.id:
            yield self._lose(room)
            return
        self._saved.pop(room, None)  # save it again at once
        yield [Log("info", "room {room} claimed again after the directory lost it",
                   {"room": room})]

    # --- saving a room's state -------------------------------------------------------------------

    def state_of(self, room: str) -> dict[str, Any]:
        """What a takeover needs (Venue.export_room), and the room's alerts not yet known to
        be in the shared outbox."""
        alerts = [{"key": k, "channel": c, "payload": payload}
                  for k, (c, payload) in self._alerts.get(room, {}).items()]
        return {**self.venue.export_room(room), "alerts": alerts}

    def _state(self, room: str) -> str:
        return json.dumps(self.state_of(room), separators=(",", ":"))

    def _want_save(self, room: str,
                   then: Callable[[bool], list[NodeEffect]] | None = None) -> list[NodeEffect]:
        """Save the room's state as it is now (or later); `then(saved)` when it is."""
        gen = self._save_want[room] = self._save_want.get(room, 0) + 1
        if then is not None:
            self._save_waiters.setdefault(room, []).append((gen, then))
        if room in self._saving:
            return []
        self._saving.add(room)
        return [Run("save a room", self._saver(room))]

    def _saver(self, room: str) -> Procedure:
        """One save at a time per room, so an older state never lands after a newer one."""
        try:
            while self._save_done.get(room, 0) < self._save_want.get(room, 0):
                gen = self._save_want[room]
                saved = False
                if room in self.owned:
                    state = self._state(room)
                    answer = yield ask("save_room", room, state.encode())
                    saved = not isinstance(answer, Unreachable)
                    if saved:
                        self._saved[room], self._saved_at[room] = state, self.clock()
                self._save_done[room] = gen
                waiting = self._save_waiters.get(room, [])
                ready = [then for g, then in waiting if g <= gen]
                self._save_waiters[room] = [(g, then) for g, then in waiting if g > gen]
                out: list[NodeEffect] = []
                for then in ready:
                    out += then(saved)
                if out:
                    yield out
        finally:
            self._saving.discard(room)

    # --- routing what the core asks for ------------------------------------------------------

    def route(self, peer: Peer | None, effects: Iterable[Effect]) -> list[NodeEffect]:
        """The core's effects for the connection `peer` (if any), as this node's effects."""
        if type(effects) is not list:
            effects = list(effects)
        for effect in effects:
            if type(effect) is Dispatch:
                return self._route_alerting(peer, effects)
        out: list[NodeEffect] = []
        for effect in effects:
            try:
                if isinstance(effect, Broadcast):  # the hot path first: a room message
                    payload = encode(effect.message)
                    local = self.room_local.get(effect.room)
                    if local:
                        exclude = effect.exclude
                        if self._holding:  # someone's welcome is not out yet: its share waits
                            self._fan_out_held(out, local, payload, exclude)
                        else:
                            out.append(Fan(tuple(local.values()), payload,
                                           None if exclude is None else local.get(exclude)))
                    if self.remote:
                        self._broadcast_remote(out, effect.room, payload, effect.exclude)
                elif isinstance(effect, Reply):
                    if type(peer) is Link and self.remote and _is_ack(effect.message) \
                            and any(type(e) is Post for e in out):
                        # after what this batch sends other nodes: through our own inbox,
                        # in order behind it (an acknowledgement never outruns its copies)
                        out.append(Post(self.id, relay.Reply(peer.id, encode(effect.message))))
                    elif type(peer) is Link and peer.held is None:
                        out.append(Write(peer.peer, encode(effect.message)))
                    elif peer is not None:
                        self._reply(out, peer, encode(effect.message))
                elif isinstance(effect, Voice):
                    self._voice(out, effect.frame, effect.listeners)
                else:
                    self._route_one(out, peer, effect)
            except Exception as failure:  # contained to its one effect: the rest still go
                out.append(self.effect_failed(effect, failure))
        return out

    def effect_failed(self, effect: object, failure: Exception) -> Log:
        """One log line for an effect that could not be carried out (a stored value that
        cannot be sent must never drop anyone): its kind, the exception's kind and where it
        was raised, never the exception's text (it may quote content)."""
        self.effects_failed += 1
        frame = traceback.extract_tb(failure.__traceback__)[-1:]
        where = f"{PurePath(frame[0].filename).name}:{frame[0].lineno}" if frame else "?"
        return Log("error", "an effect could not be applied and was skipped: {effect} "
                            "({error} at {where})",
                   {"effect": type(effect).__name__, "error": type(failure).__name__,
                    "where": where})

    def _route_one(self, out: list[NodeEffect], peer: Peer | None, effect: Effect) -> None:
        match effect:
            case Send(member=member, message=message):
                self._send(out, member, encode(message))
            case Attach(room=room, member=member, waiting=waiting):
                if peer is not None:
                    self._attach(out, room, member, peer, waiting)
            case Enter(room=room, member=member):
                self._enter(out, room, member)
            case Detach(member=member, code=code, reason=reason):
                holder = self.holders.pop(member, None)
                if isinstance(holder, RemoteLink):
                    out.append(self._post(holder.node, relay.CloseMember(member, code, reason)))
                elif holder is not None:
                    self._drop_local(member)
                    self._close(out, holder, code, reason)
            case Close(code=code, reason=reason):
                if peer is not None:
                    self._close(out, peer, code, reason)
            case Audit():
                out.append(effect)
            case Record(incident=incident):
                out += [effect, self._post_all(relay.IncidentState(self.id, incident))]
                room = str(incident.get("room"))
                if room in self.owned:  # open incidents reach the saved state at once
                    out += self._want_save(room)
            case DutyBroadcast(message=message, exclude=exclude):
                payload = encode(message)
                self._to_duty(out, payload, exclude)
                out.append(self._post_all(relay.DutyBroadcast(self.id, exclude, payload)))
            case ActElsewhere() as act:
                out.append(Run("carry an incident action", self._act_elsewhere(peer, act)))
            case DutyRoster(count=count):
                out.append(self._post_all(relay.DutyRoster(self.id, count, self.run,
                                                           self._all_sent)))

    def _reply(self, out: list[NodeEffect], peer: Peer, payload: bytes) -> None:
        if type(peer) is Link:
            held = peer.held
            if held is None:
                out.append(Write(peer.peer, payload))
            else:
                held.append(payload)
        else:
            out.append(self._post(peer.node, relay.Reply(peer.id, payload)))  # type: ignore[union-attr]

    def _write(self, out: list[NodeEffect], link: Link, payload: bytes) -> None:
        if link.held is None:
            out.append(Write(link.peer, payload))
        else:
            link.held.append(payload)

    def _close(self, out: list[NodeEffect], peer: Peer, code: int, reason: str) -> None:
        if isinstance(peer, Link):
            peer.closed = True
            out.append(Shut(peer.peer, code, reason))
        else:
            out.append(self._post(peer.node, relay.CloseLink(peer.id, code, reason)))

    def _attach(self, out: list[NodeEffect], room: str, member: str, peer: Peer,
                waiting: bool) -> None:
        held = not waiting  # a new session token: its welcome waits until it is durable
        if isinstance(peer, RemoteLink):
            self.holders[member] = peer
            self.held_remotely.setdefault(peer.id, set()).add(member)
            out.append(self._post(peer.node, relay.Attach(peer.id, room, member, waiting, held)))
        else:
            self.holders[member] = peer
            self._local_attach(peer, room, member, waiting)
            if held and peer.held is None:
                peer.held = []
        if held:
            self._hold(out, room, peer)

    def _enter(self, out: list[NodeEffect], room: str, member: str) -> None:
        """An admitted member: it gets a token (its welcome waits until it is durable)."""
        holder = self.holders.get(member)
        if holder is None:
            return
        if isinstance(holder, RemoteLink):
            out.append(self._post(holder.node, relay.Enter(room, member, True)))
        else:
            self._local_enter(room, member)
            if holder.held is None:
                holder.held = []
        self._hold(out, room, holder)

    def _hold(self, out: list[NodeEffect], room: str, peer: Peer) -> None:
        """`peer` gets nothing until the room's state with its new session is saved (its
        node keeps it all, in order: relay.Attach/Enter `held`, then Release)."""
        self._holding[peer.id] = (peer, self.clock() + HOLD_AT_MOST)
        link_id = peer.id
        out += self._want_save(room, lambda saved: self._let_out(link_id, saved))

    def _let_out(self, link_id: str, saved: bool = True) -> list[NodeEffect]:
        """A held link's messages go now (its session is durable, or it waited long enough)."""
        entry = self._holding.pop(link_id, None)
        if entry is None:
            return []
        peer = entry[0]
        out: list[NodeEffect] = []
        if not saved:
            out.append(Log("warn", "a session could not be saved before its welcome"))
        if isinstance(peer, RemoteLink):
            out.append(self._post(peer.node, relay.Release(peer.id)))
            return out
        held, peer.held = peer.held, None
        if held:
            out += [Write(peer.peer, payload) for payload in held]
        return out

    def _broadcast_remote(self, out: list[NodeEffect], room: str, payload: bytes,
                          exclude: str | None) -> None:
        """Once to each other node that holds members of the room."""
        holders = self.holders
        nodes = {h.node for m in self.venue.rooms[room].members
                 if type(h := holders.get(m)) is RemoteLink}
        for node in nodes:
            out.append(self._post(node, relay.Broadcast(room, exclude, payload)))

    def _fan_out(self, out: list[NodeEffect], room: str, payload: bytes,
                 exclude: str | None) -> None:
        """To this node's members of the room (relay.Broadcast at an edge)."""
        local = self.room_local.get(room)
        if not local:
            return
        if self._holding:
            self._fan_out_held(out, local, payload, exclude)
        else:
            out.append(Fan(tuple(local.values()), payload,
                           None if exclude is None else local.get(exclude)))

    def _fan_out_held(self, out: list[NodeEffect], local: dict[str, Any], payload: bytes,
                      exclude: str | None) -> None:
        """A held connection keeps its share, in order, until its welcome goes out."""
        peers = []
        for member, peer in local.items():
            link = self.local.get(member)
            if member == exclude or link is None:
                continue
            if link.held is None:
                peers.append(peer)
            else:
                link.held.append(payload)
        if peers:
            out.append(Fan(peers, payload))

    def _send(self, out: list[NodeEffect], member: str, payload: bytes) -> None:
        holder = self.holders.get(member)
        if holder is None:
            return
        if type(holder) is RemoteLink:
            out.append(self._post(holder.node, relay.ToMember(member, False, payload)))
        else:
            self._write(out, holder, payload)  # type: ignore[arg-type]

    def _voice(self, out: list[NodeEffect], frame: bytes, listeners: tuple[str, ...]) -> None:
        """Listeners here get one framed copy; those of other nodes one message per node."""
        if not self.remote:  # no client of another node in any room here
            self._voice_local(out, frame, listeners)
            return
        holders = self.holders
        peers = []
        remote: dict[str, list[str]] = {}
        for member in listeners:
            holder = holders.get(member)
            if holder is None:
                continue
            if type(holder) is RemoteLink:
                remote.setdefault(holder.node, []).append(member)
            elif holder.held is None:  # type: ignore[union-attr]
                peers.append(holder.peer)  # type: ignore[union-attr]
        if peers:
            out.append(VoiceFan(peers, frame))
        for node, members in remote.items():
            out.append(Post(node, relay.Voice(tuple(members), frame)))

    def _voice_local(self, out: list[NodeEffect], frame: bytes, members: Iterable[str]) -> None:
        local = self.local
        if self._holding:
            peers = [link.peer for m in members
                     if (link := local.get(m)) is not None and link.held is None]
        else:
            peers = [link.peer for m in members if (link := local.get(m)) is not None]
        if peers:
            out.append(VoiceFan(peers, frame))

    def _to_duty(self, out: list[NodeEffect], payload: bytes, exclude: Iterable[str]) -> None:
        """This node's on-duty facilitators (members of rooms it runs)."""
        for member in self.venue.crisis.on_duty:
            if member not in exclude:
                self._send(out, member, payload)

    def _local_attach(self, link: Link, room: str, member: str, waiting: bool) -> None:
        self.local[member] = link
        link.members.add(member)
        if not waiting:
            self._local_enter(room, member)

    def _local_enter(self, room: str, member: str) -> None:
        link = self.local.get(member)
        if link is not None:
            self.room_local.setdefault(room, {})[member] = link.peer

    def _drop_local(self, member: str) -> None:
        link = self.local.pop(member, None)
        room = link.room if link is not None else None
        rooms = [room] if room is not None and room in self.room_local else list(self.room_local)
        for name in rooms:
            members = self.room_local[name]
            if members.pop(member, None) is not None and not members:
                del self.room_local[name]

    # --- alerts: durable before anyone is told ----------------------------------------------

    def _route_alerting(self, peer: Peer | None, effects: list[Effect]) -> list[NodeEffect]:
        """A batch that raises alerts: the room's state (with the incident and the alerts) is
        saved, then the alerts are journaled and shared, then what people are told goes out."""
        alerts: dict[str | None, dict[str, tuple[str, dict[str, Any]]]] = {}
        told: list[Effect] = []
        others: list[Effect] = []
        for effect in effects:
            if isinstance(effect, Dispatch):
                room = self._room_of_incident(effect.payload.get("incident"))
                alerts.setdefault(room, {})[self._new_id()] = (effect.channel,
                                                               dict(effect.payload))
            elif isinstance(effect, Reply | Send | DutyBroadcast):
                told.append(effect)
            else:
                others.append(effect)
        out = self.route(peer, others)
        incidents = tuple(sorted({str(a[1].get("incident")) for per_room in alerts.values()
                                  for a in per_room.values()}))
        self._uncounted = True  # counted when they go, in the order they are sent in
        try:
            held = self.route(peer, told)
        finally:
            self._uncounted = False
        gate = Gate(held, self.clock() + HOLD_AT_MOST, incidents,
                    {room for room in alerts if room is not None})
        self._gates.append(gate)
        gate.parts = len(alerts)
        for room, keyed in alerts.items():
            if room is not None and room in self.owned:
                self._alerts.setdefault(room, {}).update(keyed)
                out += self._want_save(room, self._then_share(gate, room, keyed))
            else:
                out.append(Run("share alerts", self._share(gate, None, keyed, False)))
        return out

    def _then_share(self, gate: Gate, room: str, alerts: Mapping[str, tuple[str, dict[str, Any]]]
                    ) -> Callable[[bool], list[NodeEffect]]:
        return lambda saved: [Run("share alerts", self._share(gate, room, alerts, saved))]

    def _room_of_incident(self, incident: Any) -> str | None:
        return self.venue.crisis.room_of(str(incident))

    def _share(self, gate: Gate | None, room: str | None,
               alerts: Mapping[str, tuple[str, dict[str, Any]]], saved: bool) -> Procedure:
        shared = saved or room is None
        for key, (channel, payload) in alerts.items():
            copied = yield Share(key, channel, payload)
            if copied is True and room is not None:
                self._alerts.get(room, {}).pop(key, None)
            shared = shared and copied is True
        if gate is not None:
            gate.parts -= 1
            gate.shared = gate.shared and shared
            if gate.parts <= 0:
                yield self._open_gate(gate)
        if room is not None and room in self.owned:
            yield self._want_save(room)  # shared alerts leave the saved state

    def _open_gate(self, gate: Gate) -> list[NodeEffect]:
        if gate.open:
            return []
        gate.open = True
        self._gates.remove(gate)
        out = [self._post(e.node, e.message) if type(e) is Post
               else self._post_all(e.message) if type(e) is PostAll else e for e in gate.held]
        if not gate.shared or gate.parts > 0:
            for incident in gate.incidents:  # never a silent single copy
                out.append(Log("warn", "crisis alert for incident {incident} is on this node "
                               "only for now; retrying", {"incident": incident}))
                message = AlertNotShared(incident=incident)
                room = self.venue.rooms.get(self._room_of_incident(incident) or "")
                here = tuple(f.id for f in room.facilitators()) if room is not None else ()
                out += self.route(None, [*(Send(m, message) for m in here),
                                         DutyBroadcast(message, exclude=here)])
        return out

    # --- incidents run on another node -------------------------------------------------------

    def _act_elsewhere(self, peer: Peer | None, act: ActElsewhere) -> Procedure:
        """Carry a facilitator's incident action to the node that runs the incident's room;
        if no live node does, take the room (and its incidents) here."""
        owner = yield from self._owner_for(act.room, False)
        if owner is None:
            yield self._unreachable(peer, act.ref)
            return
        if owner == self.id:
            out: list[NodeEffect] = []
            self._act_here(out, peer, act)
            yield out
            return
        ask = f"{self.id}/{next(self._ids)}"
        self._asks[ask] = Ask(peer, act.ref, self.clock())
        yield [Post(owner, relay.IncidentAct(ask, self.id, act.room, act.incident, act.action,
                                             act.outcome, act.actor, act.ref, act.basis))]

    def _unreachable(self, peer: Peer | None, ref: str | None) -> list[NodeEffect]:
        """The facilitator is told, never left waiting: the action may be sent again."""
        out: list[NodeEffect] = []
        if peer is not None:
            self._reply(out, peer, encode(ProtocolError("incident_unreachable",
                                                        ref=ref).as_message()))
        return out

    def _expire_asks(self) -> list[NodeEffect]:
        """Actions whose node never answered (it died on the way): refused, not lost."""
        now, out = self.clock(), []
        for ask, asked in list(self._asks.items()):
            if now - asked.at >= ASK_TIMEOUT:
                del self._asks[ask]
                out += self._unreachable(asked.peer, asked.ref)
        return out

    def _act_here(self, out: list[NodeEffect], peer: Peer | None, act: ActElsewhere) -> bytes:
        """An action on an incident this node runs, sent from another node: b"" when done,
        else the refusal's frame (also sent to `peer` when there is one)."""
        crisis = self.venue.crisis
        try:
            if crisis.room_of(act.incident) is None:
                raise ProtocolError("incident_not_found", "There is no such incident.", act.ref)
            effects = crisis.act(self.venue.rooms, act.actor, act.incident, act.action,
                                 act.outcome, self.clock(), act.ref, act.basis)
        except ProtocolError as refused:
            frame = encode(refused.as_message())
            if peer is not None:
                self._reply(out, peer, frame)
            return frame
        receipt = act.action == "seen"  # a console's receipt is in the incident, not the audit
        out += self.route(None, [*effects, *([] if receipt else [
            Audit(act.actor, "incident", None, act.room, "ok")])])
        return b""

    def _adopt_orphaned_incidents(self) -> Procedure:
        """An incident's timers must run on even if nobody comes back to its room: a room
        with live incidents whose node went away is taken over by the first node that
        notices (its saved state carries the incidents)."""
        rooms = {str(w.get("room")) for w in self.venue.crisis.elsewhere.values()}
        for room in sorted(rooms - self.owned):
            if room not in self.venue.rooms or self._settling():
                continue
            owner = yield ask("owner", room)
            if isinstance(owner, Unreachable):
                return
            if owner is not None and (yield from self._judge(str(owner))) is not False:
                continue
            saved = yield ask("load_room", room)
            if saved is None or isinstance(saved, Unreachable):
                continue  # nothing to run it from (yet)
            if owner is None:
                got = yield ask("claim_room", room, self.id, OWNER_TTL)
                took = got == self.id
            else:
                took = (yield ask("take_room", room, self.id, str(owner), OWNER_TTL)) is True
            if took and room not in self.owned:
                yield self._run_from(room, json.loads(saved))
                yield [Log("warn", "took over room {room} to run its open incidents",
                           {"room": room})]

    # --- at start, and facilitators' sign-in sessions ---------------------------------------

    def start(self, journal: Iterable[Mapping[str, Any]] = ()) -> list[NodeEffect]:
        """Catch up: which incidents other nodes run (the shared incident log), sign-ins made
        elsewhere, and the incidents this node's own journal left open whose room no live
        node runs (after a crash): run again here, their tiers going on from where they
        were."""
        return [Run("catch up at start", self._catch_up(list(journal)))]

    def _catch_up(self, journal: list[Mapping[str, Any]]) -> Procedure:
        shared = yield from self._learn_shared()
        latest = self.venue.crisis.latest(journal)
        if shared is None:
            yield [Log("warn", "the shared logs cannot be read yet; this node learns of other "
                               "nodes' incidents and sign-ins as they change")]
        else:
            for wire in shared.values():  # a later word from elsewhere wins
                if "room" in wire and wire.get("id") in latest:
                    mine = latest[wire["id"]]
                    if len(wire.get("history", ())) >= len(mine.get("history", ())):
                        latest[wire["id"]] = wire
        live = [w for w in latest.values() if w.get("state") != "resolved" and "room" in w]
        by_room: dict[str, list[dict[str, Any]]] = {}
        for wire in live:
            by_room.setdefault(str(wire["room"]), []).append(dict(wire))
        count = 0
        for room, wires in sorted(by_room.items()):
            if room not in self.venue.rooms:
                continue
            if room not in self.owned:
                owner = yield from self._owner_for(room, False)
                if owner != self.id:
                    continue  # a live node runs it: the incidents went with the room
            count += self.venue.crisis.adopt(wires)
        if count:
            yield [Log("warn", "{count} open incidents run again after a restart",
                       {"count": count})]
        yield from self._tail_sign_ins()

    def _read_all(self, stream: str) -> Generator[Step, Any, list[dict[str, Any]] | None]:
        records: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            batch = yield ask("read", stream, after, 1000)
            if batch is None or isinstance(batch, Unreachable):
                return None
            if not batch:
                return records
            records += log_records(batch)
            after = batch[-1][0]

    # --- roles withdrawn (spaces/venue.py decides, for the rooms run here) -------------------

    def signin_ended(self, signin: str) -> list[NodeEffect]:
        """A facilitator's sign-in session ended (here or on another node)."""
        return self.route(None, self.venue.signin_ended(signin, self.clock(),
                                                        sorted(self.owned)))

    def account_changed(self, account: str, state: tuple[str, int] | None) -> list[NodeEffect]:
        """A facilitator account is now (role, generation), or gone."""
        return self.route(None, self.venue.account_changed(account, state, self.clock(),
                                                           sorted(self.owned)))

    def share_session(self, event: Mapping[str, Any]) -> list[NodeEffect]:
        """A sign-in session changed here: every node hears it now (a node that starts later
        reads it from the shared log)."""
        return [self._post_all(relay.SignIn(self.id, event))]

    def _tail_sign_ins(self) -> Procedure:
        """Read the shared sign-in log on from where this node stopped: what a node that
        just started missed, and what other nodes said while Redis was away (the live path,
        `hearth:all`, drops it then). Applying an event twice changes nothing."""
        while True:
            batch = yield ask("read", SIGN_INS, self._sign_ins_read, 1000)
            if not batch or isinstance(batch, Unreachable):
                return
            self._sign_ins_read = batch[-1][0]
            out: list[NodeEffect] = []
            for _, data in batch:
                try:
                    event = json.loads(data)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("node") != self.id:
                    out.append(SignedIn(event))
            yield out
            if len(batch) < 1000:
                return

    def delivery_failing(self, channel: str, incident: str, attempts: int,
                         delivered: bool = False) -> list[NodeEffect]:
        """The incident's room facilitators and every on-duty console hear that an on-call
        alert is not getting through (or, `delivered`, that one which failed got through)."""
        return self.route(None, self.venue.crisis.failing(self.venue.rooms, channel, incident,
                                                          attempts, delivered))


def _progress(wire: Mapping[str, Any]) -> tuple[int, ...]:
    """How far an incident has come; each part only grows over its life (its history, the
    tiers fired, its responders, reminders sent)."""
    def length(value: Any) -> int:
        return len(value) if isinstance(value, list) else 0
    clocks = wire.get("clocks")
    fired = sum(length(c.get("fired")) for c in clocks if isinstance(c, dict)) \
        if isinstance(clocks, list) else length(wire.get("fired"))
    reminders = wire.get("reminders")
    return (length(wire.get("history")), fired, length(wire.get("responders")),
            reminders if isinstance(reminders, int) else 0)


def _is_ack(message: object) -> bool:
    """An envelope's acknowledgement (`sent`)."""
    return type(message) is Sent


def _ref_of(frame: bytes) -> str | None:
    """The `ref` of a client frame, for an answer about it (only on the rare refusal path)."""
    try:
        message = json.loads(frame)
    except ValueError:
        return None
    ref = message.get("ref") if isinstance(message, dict) else None
    return ref if isinstance(ref, str) and len(ref) <= p.MAX_REF else None
