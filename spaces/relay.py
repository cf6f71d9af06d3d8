"""Messages between nodes: how an edge node, a room's owner and every other node talk.

A client connects to any node (its edge). Each room is owned by one node at a
time, which runs its state machine; the edge forwards the client's frames to
the owner and delivers what the owner sends back (spaces/host.py decides
who sends what). Every kind is a frozen message with one `pack` and one
`unpack`; one wire shape for all of them:

    kind (1 byte) ‖ header length (u16, network order) ‖ JSON header ‖ payload bytes

The payload is a client frame or a server frame as it goes on the WebSocket
(opaque here), or a JSON document where a kind says so. The header's keys
are the wire names given in each docstring (`from` is the sending node); a
message for the receiver's clients may carry three more (Counted), and one for every node
two or three (CountedAll).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

_PREFIX = struct.Struct("!BH")


class RelayError(ValueError):
    """Not a relay message this version understands (unknown kind, bad header)."""


def _string(text: str) -> bytes:
    return json.dumps(text).encode()


def _frame(kind: int, header: Mapping[str, Any], payload: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return _PREFIX.pack(kind, len(head)) + head + payload


def _with_count(data: bytes, sender: str, run: str, n: int, add_sender: bool) -> bytes:
    """A packed message with {run, n} (and `from`, unless its header has it) added to its
    header, without a second JSON encoding: the message is read as before by a node that
    does not count (Counted, CountedAll)."""
    kind, length = _PREFIX.unpack_from(data)
    end = _PREFIX.size + length
    head = b"".join((data[_PREFIX.size:end - 1],  # every counted kind has keys: a comma
                     b',"from":' + _string(sender) if add_sender else b"",
                     b',"run":', _string(run), b',"n":%d}' % n))
    return _PREFIX.pack(kind, len(head)) + head + data[end:]


# --- edge -> owner -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Open:
    """{link, room, hashes: {day: hex}}: a client link bound to `room`, which the receiver
    owns, with the keyed hashes of its address for the days a ban may date from (never the
    address)."""
    KIND: ClassVar[int] = 1
    link: str
    room: str
    hashes: Mapping[str, str]

    def pack(self) -> bytes:
        return _frame(self.KIND, {"link": self.link, "room": self.room,
                                  "hashes": dict(self.hashes)})

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> Open:
        return cls(str(h["link"]), str(h["room"]),
                   {str(d): str(x) for d, x in h["hashes"].items()})


@dataclass(frozen=True, slots=True)
class Frame:
    """{link, binary, n} + the client's frame, as received; `n` counts the link's frames
    from 1 (after its Open), so that the owner notices one lost or repeated on the way
    (0: not counted, from a node that does not count)."""
    KIND: ClassVar[int] = 2
    link: str
    binary: bool
    payload: bytes
    n: int = 0

    def pack(self) -> bytes:
        return _frame(self.KIND, {"link": self.link, "binary": self.binary, "n": self.n},
                      self.payload)

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> Frame:
        return cls(str(h["link"]), bool(h["binary"]), payload, int(h.get("n", 0)))


@dataclass(frozen=True, slots=True)
class Lost:
    """{link}: the client's transport went away."""
    KIND: ClassVar[int] = 3
    link: str

    def pack(self) -> bytes:
        return _frame(self.KIND, {"link": self.link})

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> Lost:
        return cls(str(h["link"]))


# --- owner -> edge -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Reply:
    """{link} + a text frame for that client."""
    KIND: ClassVar[int] = 10
    link: str
    payload: bytes

    def pack(self) -> bytes:
        return _frame(self.KIND, {"link": self.link}, self.payload)

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> Reply:
        return cls(str(h["link"]), payload)


@dataclass(frozen=True, slots=True)
class Attach:
    """{link, room, member, waiting, held}: from now on the link is `member` of `room` (in its
    lobby while `waiting`). `held`: the edge keeps everything for this link until `Release`
    (the owner is making the member's new session durable before its welcome goes out)."""
    KIND: ClassVar[int] = 11
    link: str
    room: str
    member: str
    waiting: bool
    held: bool = False

    def pack(self) -> bytes:
        return _frame(self.KIND, {"link": self.link, "room": self.room, "member": self.member,
                                  "waiting": self.waiting, "held": self.held})

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> Attach:
        return cls(str(h["link"]), str(h["room"]), str(h["member"]), bool(h["waiting"]),
                   bool(h.get("held", False)))


@dataclass(frozen=True, slots=True)
class Enter:
    """{room, member, held}: a waiting member was admitted; it gets the room's broadcasts
    now (`held`: kept by the edge until `Release`, as for Attach)."""
    KIND: ClassVar[int] = 12
    room: str
    member: str
    held: bool = False

    def pack(self) -> bytes:
        return _frame(self.KIND, {"room": self.room, "member": self.member, "held": self.held})

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> Enter:
        return cls(str(h["room"]), str(h["member"]), bool(h.get("held", False)))


@dataclass(frozen=True, slots=True)
class Broadcast:
    """{room, exclude} + a text frame for the node's members of the room."""
    KIND: ClassVar[int] = 13
    room: str
    exclude: str | None
    payload: bytes

    def pack(self) -> bytes:
        return _frame(self.KIND, {"room": self.room, "exclude": self.exclude}, self.payload)

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> Broadcast:
        exclude = h.get("exclude")
        return cls(str(h["room"]), None if exclude is None else str(exclude), payload)


@dataclass(frozen=True, slots=True)
class ToMember:
    """{member, binary} + a frame for one member."""
    KIND: ClassVar[int] = 14
    member: str
    binary: bool
    payload: bytes

    def pack(self) -> bytes:
        return _frame(self.KIND, {"member": self.member, "binary": self.binary}, self.payload)

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> ToMember:
        return cls(str(h["member"]), bool(h["binary"]), payload)


@dataclass(frozen=True, slots=True)
class Voice:
    """{members} + one voice frame for those members (droppable)."""
    KIND: ClassVar[int] = 15
    members: tuple[str, ...]
    payload: bytes

    def pack(self) -> bytes:
        return _frame(self.KIND, {"members": list(self.members)}, self.payload)

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> Voice:
        return cls(tuple(str(m) for m in h["members"]), payload)


@dataclass(frozen=True, slots=True)
class CloseLink:
    """{link, code, reason}: close that client's connection."""
    KIND: ClassVar[int] = 16
    link: str
    code: int
    reason: str

    def pack(self) -> bytes:
        return _frame(self.KIND, {"link": self.link, "code": self.code, "reason": self.reason})

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> CloseLink:
        return cls(str(h["link"]), int(h["code"]), str(h["reason"]))


@dataclass(frozen=True, slots=True)
class CloseMember:
    """{member, code, reason}: close the connection that holds that member."""
    KIND: ClassVar[int] = 17
    member: str
    code: int
    reason: str

    def pack(self) -> bytes:
        return _frame(self.KIND, {"member": self.member, "code": self.code,
                                  "reason": self.reason})

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> CloseMember:
        return cls(str(h["member"]), int(h["code"]), str(h["reason"]))


@dataclass(frozen=True, slots=True)
class Release:
    """{link}: the member's session is durable; the edge lets out what it kept (Attach held)."""
    KIND: ClassVar[int] = 19
    link: str

    def pack(self) -> bytes:
        return _frame(self.KIND, {"link": self.link})

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> Release:
        return cls(str(h["link"]))


# --- node -> every node (Broker.send_all) -------------------------------------------------

@dataclass(frozen=True, slots=True)
class Moved:
    """{room, owner}: `owner` runs the room now (it took it over); links bound to another
    node for that room must resume."""
    KIND: ClassVar[int] = 18
    room: str
    owner: str

    def pack(self) -> bytes:
        return _frame(self.KIND, {"room": self.room, "owner": self.owner})

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> Moved:
        return cls(str(h["room"]), str(h["owner"]))


@dataclass(frozen=True, slots=True)
class DutyBroadcast:
    """{from, exclude} + a text frame for the node's on-duty facilitators."""
    KIND: ClassVar[int] = 20
    sender: str
    exclude: tuple[str, ...]
    payload: bytes

    def pack(self) -> bytes:
        return _frame(self.KIND, {"from": self.sender, "exclude": list(self.exclude)},
                      self.payload)

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> DutyBroadcast:
        return cls(str(h["from"]), tuple(str(m) for m in h["exclude"]), payload)


@dataclass(frozen=True, slots=True)
class IncidentState:
    """{from} + JSON: an incident's new state (metadata only)."""
    KIND: ClassVar[int] = 21
    sender: str
    incident: Mapping[str, Any]

    def pack(self) -> bytes:
        return _frame(self.KIND, {"from": self.sender}, json.dumps(self.incident).encode())

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> IncidentState:
        incident = json.loads(payload)
        if not isinstance(incident, dict):
            raise RelayError("an incident is a JSON object")
        return cls(str(h["from"]), incident)


@dataclass(frozen=True, slots=True)
class DutyRoster:
    """{from, count, run, n}: how many facilitators are on duty at that node
    (moderation/crisis.py), said every 2 s; and, as MarkAll says it, how many CountedAll
    messages it has posted in its `run` (`run` "": not said): every node knows where each
    node's count stands within 2 s of starting, before its first message to every node."""
    KIND: ClassVar[int] = 25
    sender: str
    count: int
    run: str = ""
    n: int = 0

    def pack(self) -> bytes:
        return _frame(self.KIND, {"from": self.sender, "count": self.count, "run": self.run,
                                  "n": self.n})

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> DutyRoster:
        return cls(str(h["from"]), int(h["count"]), str(h.get("run", "")), int(h.get("n", 0)))


@dataclass(frozen=True, slots=True)
class SignIn:
    """{from} + JSON: a facilitator sign-in session's change (digests, never a cookie)."""
    KIND: ClassVar[int] = 24
    sender: str
    event: Mapping[str, Any]

    def pack(self) -> bytes:
        return _frame(self.KIND, {"from": self.sender}, json.dumps(self.event).encode())

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> SignIn:
        event = json.loads(payload)
        if not isinstance(event, dict):
            raise RelayError("a sign-in event is a JSON object")
        return cls(str(h["from"]), event)


@dataclass(frozen=True, slots=True)
class Accounts:
    """{from}: facilitator accounts changed; read the shared log now (web/shared_accounts.py)."""
    KIND: ClassVar[int] = 26
    sender: str

    def pack(self) -> bytes:
        return _frame(self.KIND, {"from": self.sender})

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> Accounts:
        return cls(str(h["from"]))


# --- node -> the node that runs an incident, and back ---------------------------------------

@dataclass(frozen=True, slots=True)
class IncidentAct:
    """{req, from, room, incident, action, outcome, actor, ref, basis}: a facilitator's action
    on an incident that the receiving node runs (`basis`: for "external")."""
    KIND: ClassVar[int] = 22
    req: str
    sender: str
    room: str
    incident: str
    action: str
    outcome: str | None
    actor: str
    ref: str | None
    basis: str | None = None

    def pack(self) -> bytes:
        return _frame(self.KIND, {"req": self.req, "from": self.sender, "room": self.room,
                                  "incident": self.incident, "action": self.action,
                                  "outcome": self.outcome, "actor": self.actor, "ref": self.ref,
                                  "basis": self.basis})

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> IncidentAct:
        def optional(key: str) -> str | None:
            value = h.get(key)
            return None if value is None else str(value)
        return cls(str(h["req"]), str(h["from"]), str(h["room"]), str(h["incident"]),
                   str(h["action"]), optional("outcome"), str(h["actor"]), optional("ref"),
                   optional("basis"))


@dataclass(frozen=True, slots=True)
class IncidentDone:
    """{req} + nothing when the action was applied, else the text frame of the refusal."""
    KIND: ClassVar[int] = 23
    req: str
    payload: bytes = b""

    def pack(self) -> bytes:
        return _frame(self.KIND, {"req": self.req}, self.payload)

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> IncidentDone:
        return cls(str(h["req"]), payload)


@dataclass(frozen=True, slots=True)
class Sync:
    """{token}: a node's message to itself. When it comes back, everything its inbox got
    before it has been handled (what a node that died had sent, before its clients move)."""
    KIND: ClassVar[int] = 27
    token: str

    def pack(self) -> bytes:
        return _frame(self.KIND, {"token": self.token})

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> Sync:
        return cls(str(h["token"]))


# --- a node's messages for another node's clients, counted --------------------------------

ForClients = Reply | Attach | Enter | Broadcast | ToMember | CloseLink | CloseMember | Release
"""What a node sends another node for that node's clients: counted (Counted) so that a message
lost on the way is noticed. Voice is not: a lost voice frame is better dropped than resent."""

FOR_CLIENTS: Final = (Reply, Attach, Enter, Broadcast, ToMember, CloseLink, CloseMember, Release)


@dataclass(frozen=True, slots=True)
class Counted:
    """A ForClients message with {from, run, n} added to its header: the `n`th message
    `from` (in its `run`, a token new at each start of that node) has sent to the receiving
    node. The receiver drops one it has handled (n not above the last) and, when one before
    it was lost (n above the last + 1), has its clients of the sender's rooms resume. A node
    that does not count reads the message and ignores the three keys."""
    sender: str
    run: str
    n: int
    message: ForClients

    def pack(self) -> bytes:
        return _with_count(self.message.pack(), self.sender, self.run, self.n, True)


@dataclass(frozen=True, slots=True)
class Mark:
    """{from, run, n}: `from` has sent n Counted messages to the receiving node in its `run`
    (said once a second, to the nodes it sent any to meanwhile): the last one's loss is
    noticed too."""
    KIND: ClassVar[int] = 29
    sender: str
    run: str
    n: int

    def pack(self) -> bytes:
        return _frame(self.KIND, {"from": self.sender, "run": self.run, "n": self.n})

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> Mark:
        return cls(str(h["from"]), str(h["run"]), int(h["n"]))


# --- a node's messages to every node, counted ----------------------------------------------

ForAll = Moved | DutyBroadcast | IncidentState | SignIn | Accounts
"""What a node posts to every node and counts (CountedAll), so that one lost on the way is
made good. DutyRoster is not: it is said again every 2 s and forgotten after 6 s, so the
next one makes good a lost one (counting it would add a count announcement every 2 s from
every node of an idle deployment)."""

FOR_ALL: Final = (Moved, DutyBroadcast, IncidentState, SignIn, Accounts)


@dataclass(frozen=True, slots=True)
class CountedAll:
    """A ForAll message with {run, n} (and `from` for a kind without it) added to its
    header: the `n`th message `from` has posted to every node in its `run` (one count for
    everyone: every node gets the same stream). The receiver drops one it has handled and,
    when one before it is missing, keeps it (and what follows) until the missing ones come
    (Replay), then handles them all in their count's order. A node that does not count
    reads the message and ignores the keys."""
    sender: str
    run: str
    n: int
    message: ForAll

    def pack(self) -> bytes:
        return _with_count(self.message.pack(), self.sender, self.run, self.n,
                           type(self.message) is Moved)


@dataclass(frozen=True, slots=True)
class MarkAll:
    """{from, run, n}: `from` has posted n CountedAll messages to every node in its `run`
    (said on the every-node channel once a second when it posted any meanwhile, and when
    the bus comes back after an outage): a lost last one is noticed too."""
    KIND: ClassVar[int] = 30
    sender: str
    run: str
    n: int

    def pack(self) -> bytes:
        return _frame(self.KIND, {"from": self.sender, "run": self.run, "n": self.n})

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> MarkAll:
        return cls(str(h["from"]), str(h["run"]), int(h["n"]))


@dataclass(frozen=True, slots=True)
class Replay:
    """{from, run, after}: to the node that posted them: `from` missed some of what the
    receiver posted to every node in its `run`; send it, to `from` alone, everything after
    number `after` that is still kept (in order, as the CountedAll messages they were)."""
    KIND: ClassVar[int] = 31
    sender: str
    run: str
    after: int

    def pack(self) -> bytes:
        return _frame(self.KIND, {"from": self.sender, "run": self.run, "after": self.after})

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> Replay:
        return cls(str(h["from"]), str(h["run"]), int(h["after"]))


@dataclass(frozen=True, slots=True)
class Lapsed:
    """{from, run, first}: the answer to a Replay that cannot be made whole: of `run`,
    `from` keeps nothing before number `first` any more (0: nothing of that run, it has
    started again since); what it still keeps follows. The asker re-reads the shared
    incident log instead."""
    KIND: ClassVar[int] = 32
    sender: str
    run: str
    first: int

    def pack(self) -> bytes:
        return _frame(self.KIND, {"from": self.sender, "run": self.run, "first": self.first})

    @classmethod
    def unpack(cls, h: dict[str, Any], payload: bytes) -> Lapsed:
        return cls(str(h["from"]), str(h["run"]), int(h["first"]))


RelayMessage = (Open | Frame | Lost | Reply | Attach | Enter | Broadcast | ToMember | Voice
                | CloseLink | CloseMember | Release | Moved | DutyBroadcast | DutyRoster
                | IncidentState | SignIn | Accounts | IncidentAct | IncidentDone | Sync | Counted
                | Mark | CountedAll | MarkAll | Replay | Lapsed)

_KINDS: Final[dict[int, Callable[[dict[str, Any], bytes], RelayMessage]]] = {
    kind.KIND: kind.unpack for kind in (
        Open, Frame, Lost, Reply, Attach, Enter, Broadcast, ToMember, Voice, CloseLink,
        CloseMember, Release, Moved, DutyBroadcast, DutyRoster, IncidentState, SignIn,
        Accounts, IncidentAct, IncidentDone, Sync, Mark, MarkAll, Replay, Lapsed)}


def unpack(data: bytes) -> RelayMessage:
    """One relay message from its bytes; RelayError if it is not one."""
    try:
        kind, length = _PREFIX.unpack_from(data)
        unpack_kind = _KINDS.get(kind)
        if unpack_kind is None:
            raise RelayError(f"unknown relay kind {kind}")
        start = _PREFIX.size
        header = json.loads(data[start:start + length])
        if not isinstance(header, dict):
            raise RelayError("the header is a JSON object")
        message = unpack_kind(header, bytes(data[start + length:]))
        if "run" in header:
            if isinstance(message, FOR_CLIENTS):
                return Counted(str(header["from"]), str(header["run"]), int(header["n"]),
                               message)
            if isinstance(message, FOR_ALL):
                return CountedAll(str(header["from"]), str(header["run"]), int(header["n"]),
                                  message)
        return message
    except RelayError:
        raise
    except (struct.error, ValueError, KeyError, TypeError, AttributeError) as err:
        raise RelayError(f"not a relay message ({type(err).__name__})") from None
