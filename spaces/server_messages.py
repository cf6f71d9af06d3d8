"""The server's messages of hearth.v1: one frozen, keyword-only class per shape, one `to_wire`.

The twin of the client messages in spaces/protocol.py. The core (room, venue,
the crisis desk) builds these and wraps them in effects (spaces/effects.py);
the shell encodes each once (`protocol.encode`, which calls `to_wire`),
however many members receive it. Nothing changes a message once it is made: a
room broadcast is built with its sequence number, a room envelope with its
franking tag.

`to_wire()` gives the JSON object of docs/protocol.md ("Server → client"),
whose table tests/unit/test_protocol_doc.py keeps in step with `SERVER_TYPES`.
Fields are declared in the order they go on the wire (a room broadcast's `seq`
last). A field whose default is None is left out while it is None (`ref`, `zone`,
`epoch`...); every other field is always there, null included. An attribute
named differently from its wire key says so in `WIRE_NAMES` (`sender` is
"from"). Nested values (a member, a room snapshot, an incident) are the
`to_wire()` of their own objects, plain JSON data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

Wire = dict[str, Any]


class ServerMessage:
    """A message to a client: `TYPE` is its "type" on the wire."""

    __slots__ = ()
    TYPE: ClassVar[str]
    WIRE_NAMES: ClassVar[Mapping[str, str]] = {}

    def to_wire(self) -> Wire:
        out: Wire = {"type": self.TYPE}
        for attr, key, optional in _shape(type(self)):
            value = getattr(self, attr)
            if value is not None or not optional:
                out[key] = value
        return out


_SHAPES: dict[type, tuple[tuple[str, str, bool], ...]] = {}


def _shape(cls: type[ServerMessage]) -> tuple[tuple[str, str, bool], ...]:
    """(attribute, wire key, left out when None) for each field, worked out once per class."""
    shape = _SHAPES.get(cls)
    if shape is None:
        shape = _SHAPES[cls] = tuple(
            (f.name, cls.WIRE_NAMES.get(f.name, f.name), f.default is None)
            for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    return shape


# --- joining and the room -------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class Welcome(ServerMessage):
    """{"type":"welcome","protocol":1,"member","token","resumed","grace","movement","voice",
    "room"} — to the member who joined, resumed or was admitted: its session token and the
    room as it is (Room.snapshot)."""
    TYPE = "welcome"
    protocol: int
    member: str
    token: str
    resumed: bool
    grace: float
    movement: Mapping[str, Any]
    voice: Mapping[str, Any]
    room: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class Waiting(ServerMessage):
    """{"type":"waiting","member","room","title","pseudonym"} — a newcomer, in the lobby."""
    TYPE = "waiting"
    member: str
    room: str
    title: str
    pseudonym: str


@dataclass(frozen=True, kw_only=True, slots=True)
class LobbyWaiting(ServerMessage):
    """{"type":"lobby","waiting":[{"id","pseudonym","avatar"}]} — to the room's facilitators."""
    TYPE = "lobby"
    waiting: Sequence[Mapping[str, Any]]


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberJoined(ServerMessage):
    """{"type":"member_joined","seq","member","epoch"}"""
    TYPE = "member_joined"
    member: Mapping[str, Any]
    epoch: int
    seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberUpdated(ServerMessage):
    """{"type":"member_updated","seq","member","epoch"?} — `epoch` when new identity keys
    advanced it."""
    TYPE = "member_updated"
    member: Mapping[str, Any]
    epoch: int | None = None
    seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberResumed(ServerMessage):
    """{"type":"member_resumed","seq","member","epoch"}"""
    TYPE = "member_resumed"
    member: Mapping[str, Any]
    epoch: int
    seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberLeft(ServerMessage):
    """{"type":"member_left","seq","member":id,"reason":"left"|"timeout"|"removed","epoch"}"""
    TYPE = "member_left"
    member: str
    reason: str
    epoch: int
    seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Positions(ServerMessage):
    """{"type":"positions","seq","moves":[[id, x, y, zone], ...]}"""
    TYPE = "positions"
    moves: Sequence[Sequence[Any]]
    seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class RoomSettings(ServerMessage):
    """{"type":"room_settings","seq","locked","lobby","capacity","slow_mode"}"""
    TYPE = "room_settings"
    locked: bool
    lobby: bool
    capacity: int
    slow_mode: float
    seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class StickState(ServerMessage):
    """{"type":"stick","seq","on","holder":id|null,"hands":[ids]}"""
    TYPE = "stick"
    on: bool
    holder: str | None
    hands: Sequence[str]
    seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Corners(ServerMessage):
    """{"type":"corners","seq","private":{corner:[ids]},"epoch"?} — `epoch` when a corner
    was opened."""
    TYPE = "corners"
    private: Mapping[str, Sequence[str]]
    epoch: int | None = None
    seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Hidden(ServerMessage):
    """{"type":"hidden","seq"?,"target","zone"?,"by"} — a room message hidden (a broadcast,
    with `seq`), or a corner's (to its members, with `zone`)."""
    TYPE = "hidden"
    target: int
    zone: str | None = None
    by: str
    seq: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class UnmuteRequested(ServerMessage):
    """{"type":"unmute_requested","by":facilitator id}"""
    TYPE = "unmute_requested"
    by: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionEnded(ServerMessage):
    """{"type":"session_ended","seq"}"""
    TYPE = "session_ended"
    seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class GoingAway(ServerMessage):
    """{"type":"going_away","message","reconnect":true} — before the server closes with 1001."""
    TYPE = "going_away"
    message: str
    reconnect: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class Moving(ServerMessage):
    """{"type":"moving","room"} — the room moves to another node; before the close 4010."""
    TYPE = "moving"
    room: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class VoiceTransportOffer(ServerMessage):
    """{"type":"voice_transport","url","token","ttl","hashes","max_bytes","ref"?} — voice over
    WebTransport: where, with which one-time token, and the server certificate's hashes."""
    TYPE = "voice_transport"
    url: str
    token: str
    ttl: float
    hashes: Sequence[str]
    max_bytes: int
    ref: str | None = None


# --- chat -----------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class RoomEnvelope(ServerMessage):
    """{"type":"envelope","from","ts","body","commitment","seq","tag","id"?} — ciphertext,
    stamped by the room (sequence, time, franking tag), to the room; a corner's, to its
    members, starts {"type":"envelope","zone","seq",...} (its own sequence). `id`: the
    sender's client message id."""
    TYPE = "envelope"
    WIRE_NAMES = {"sender": "from"}
    zone: str | None = None
    sender: str
    ts: int
    body: str
    commitment: str
    seq: int
    tag: str
    id: str | None = None

    def to_wire(self) -> Wire:  # the message most sent: written out, not looked up
        if self.zone is None:
            out: Wire = {"type": "envelope", "from": self.sender, "ts": self.ts,
                         "body": self.body, "commitment": self.commitment, "seq": self.seq,
                         "tag": self.tag}
        else:
            out = {"type": "envelope", "zone": self.zone, "seq": self.seq, "from": self.sender,
                   "ts": self.ts, "body": self.body, "commitment": self.commitment,
                   "tag": self.tag}
        if self.id is not None:
            out["id"] = self.id
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class Sent(ServerMessage):
    """{"type":"sent","zone"?,"seq","ts","tag","epoch","id"?,"ref"?} — to the sender of an
    envelope; `epoch`: the room's when it was sequenced; `id`: the envelope's client id."""
    TYPE = "sent"
    zone: str | None = None
    seq: int
    ts: int
    tag: str
    epoch: int
    id: str | None = None
    ref: str | None = None

    def to_wire(self) -> Wire:  # once per chat message too
        out: Wire = ({"type": "sent", "seq": self.seq} if self.zone is None else
                     {"type": "sent", "zone": self.zone, "seq": self.seq})
        out["ts"] = self.ts
        out["tag"] = self.tag
        out["epoch"] = self.epoch
        if self.id is not None:
            out["id"] = self.id
        if self.ref is not None:
            out["ref"] = self.ref
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class DirectEnvelope(ServerMessage):
    """{"type":"direct","from","body","zone"?} — ciphertext for one member (sender keys)."""
    TYPE = "direct"
    WIRE_NAMES = {"sender": "from"}
    sender: str
    body: str
    zone: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportReceived(ServerMessage):
    """{"type":"report_received","id","ref"?}"""
    TYPE = "report_received"
    id: int
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportForFacilitators(ServerMessage):
    """{"type":"report","report":{...}} — a verified report, to the room's facilitators."""
    TYPE = "report"
    report: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportList(ServerMessage):
    """{"type":"reports","reports":[{...}]}"""
    TYPE = "reports"
    reports: Sequence[Mapping[str, Any]]


# --- crisis ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class HelpReceived(ServerMessage):
    """{"type":"help_received","incident","ref"?}"""
    TYPE = "help_received"
    incident: str
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class HelpStatus(ServerMessage):
    """{"type":"help_status","incident","status":"delivered"|"acknowledged"|"engaged"|
    "resolved"}"""
    TYPE = "help_status"
    incident: str
    status: str


@dataclass(frozen=True, kw_only=True, slots=True)
class HelpPrompt(ServerMessage):
    """{"type":"help_prompt","incident"} — nobody engaged: call the helpline now."""
    TYPE = "help_prompt"
    incident: str


@dataclass(frozen=True, kw_only=True, slots=True)
class OkReceived(ServerMessage):
    """{"type":"ok_received","incident","ref"?}"""
    TYPE = "ok_received"
    incident: str
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class FlagReceived(ServerMessage):
    """{"type":"flag_received","incident"?,"ref"?} — `incident` for the sender's own flag."""
    TYPE = "flag_received"
    incident: str | None = None
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ConcernReceived(ServerMessage):
    """{"type":"concern_received","incident","ref"?}"""
    TYPE = "concern_received"
    incident: str
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class IncidentUpdate(ServerMessage):
    """{"type":"incident","incident":{...},"reason"} — an incident changed (`reason`: an
    action, "seen", "joined", "participant_ok"), to its responders."""
    TYPE = "incident"
    incident: Mapping[str, Any]
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class IncidentAlert(ServerMessage):
    """{"type":"incident","incident":{...},"reason":"alert"|"admin","tier":int|null,"notify",
    "sound","cause"} — a tier fired, or a press: the console alerts."""
    TYPE = "incident"
    incident: Mapping[str, Any]
    reason: str
    tier: int | None
    notify: str
    sound: bool
    cause: str


@dataclass(frozen=True, kw_only=True, slots=True)
class IncidentList(ServerMessage):
    """{"type":"incidents","incidents":[{...}]} — the room's incidents."""
    TYPE = "incidents"
    incidents: Sequence[Mapping[str, Any]]


@dataclass(frozen=True, kw_only=True, slots=True)
class DutyState(ServerMessage):
    """{"type":"duty","on","open":[{...}]} — on or off duty, and the open incidents."""
    TYPE = "duty"
    on: bool
    open: Sequence[Mapping[str, Any]]


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryFailing(ServerMessage):
    """{"type":"delivery_failing","channel","incident"} — an on-call alert keeps failing."""
    TYPE = "delivery_failing"
    channel: str
    incident: str


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertNotShared(ServerMessage):
    """{"type":"alert_not_shared","incident"} — an alert of that incident is on the raising
    node's disk only for now (the shared store did not answer in time)."""
    TYPE = "alert_not_shared"
    incident: str


# --- refusals -------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class Error(ServerMessage):
    """{"type":"error","code","message","ref"?} — a refusal (spaces.protocol.ProtocolError)."""
    TYPE = "error"
    code: str
    message: str
    ref: str | None = None


SERVER_MESSAGES: Final = tuple(
    kind for kind in list(globals().values())
    if isinstance(kind, type) and issubclass(kind, ServerMessage) and kind is not ServerMessage)
SERVER_TYPES: Final = frozenset(cls.TYPE for cls in SERVER_MESSAGES)

# The answers a member's resend gets again (spaces/room.py Member.replies), kept in the
# room's saved state by their wire form.
Remembered = Sent | HelpReceived
_REMEMBERED: Final[Mapping[str, type[Sent] | type[HelpReceived]]] = {
    Sent.TYPE: Sent, HelpReceived.TYPE: HelpReceived}


def remembered(data: Mapping[str, Any]) -> Remembered:
    """A remembered answer back from its wire form (ValueError if it is not one)."""
    name = data.get("type") if isinstance(data, Mapping) else None
    kind = _REMEMBERED.get(name) if isinstance(name, str) else None
    if kind is None:
        raise ValueError("not a remembered answer (sent or help_received)")
    fields = {attr: data[key] for attr, key, _ in _shape(kind) if key in data}
    try:
        return kind(**fields)
    except TypeError as missing:
        raise ValueError(str(missing)) from None
