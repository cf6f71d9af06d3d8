"""The server's messages of hearth.v1: one frozen, keyword-only class per shape.

The twin of the client messages in spaces/protocol.py. The core (room, venue,
the crisis desk, the host) builds these and wraps them in effects
(spaces/effects.py); the shell encodes each once (`protocol.encode`), however
many members receive it. Nothing changes a message once it is made: a room
broadcast is built with its sequence number, a room envelope with its franking
tag.

Each is a msgspec Struct (made and encoded in C: the chat messages are the
server's hottest objects) whose JSON is the object of docs/protocol.md ("Server
→ client"), whose table tests/unit/test_protocol_doc.py keeps in step with
`SERVER_TYPES`: "type" first (the class's `tag`, also its `TYPE`), then the
fields in the order they are declared (a room broadcast's `seq` last). A field
whose default is None is left out while it is None (`ref`, `zone`, `epoch`...);
every other field is always there, null included. An attribute named
differently from its wire key says so in `rename` (`sender` is "from"). Nested
values (a member, a room snapshot, an incident) are the `to_wire()` of their own
objects, plain JSON data. `to_wire()` gives a message as that JSON data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

import msgspec

Wire = dict[str, Any]


class ServerMessage(msgspec.Struct, frozen=True, kw_only=True, tag_field="type",
                    omit_defaults=True, gc=False):
    """A message to a client: `TYPE` is its "type" on the wire. Untracked by the garbage
    collector (`gc=False`: one allocation less to scan per chat message): a message holds
    JSON data only, which never refers back to it, so it is never part of a cycle."""

    TYPE: ClassVar[str]

    def to_wire(self) -> Wire:
        wire: Wire = msgspec.to_builtins(self)
        return wire


# --- joining and the room -------------------------------------------------------------------

class Welcome(ServerMessage, tag="welcome", frozen=True, kw_only=True):
    """{"type":"welcome","protocol":1,"member","token","resumed","grace","movement","voice",
    "room"} — to the member who joined, resumed or was admitted: its session token and the
    room as it is (Room.snapshot)."""
    protocol: int
    member: str
    token: str
    resumed: bool
    grace: float
    movement: Mapping[str, Any]
    voice: Mapping[str, Any]
    room: Mapping[str, Any]


class Waiting(ServerMessage, tag="waiting", frozen=True, kw_only=True):
    """{"type":"waiting","member","room","title","pseudonym"} — a newcomer, in the lobby."""
    member: str
    room: str
    title: str
    pseudonym: str


class LobbyWaiting(ServerMessage, tag="lobby", frozen=True, kw_only=True):
    """{"type":"lobby","waiting":[{"id","pseudonym","avatar"}]} — to the room's facilitators."""
    waiting: Sequence[Mapping[str, Any]]


class MemberJoined(ServerMessage, tag="member_joined", frozen=True, kw_only=True):
    """{"type":"member_joined","seq","member","epoch"}"""
    member: Mapping[str, Any]
    epoch: int
    seq: int


class MemberUpdated(ServerMessage, tag="member_updated", frozen=True, kw_only=True):
    """{"type":"member_updated","seq","member","epoch"?} — `epoch` when new identity keys
    advanced it."""
    member: Mapping[str, Any]
    epoch: int | None = None
    seq: int


class MemberResumed(ServerMessage, tag="member_resumed", frozen=True, kw_only=True):
    """{"type":"member_resumed","seq","member","epoch"}"""
    member: Mapping[str, Any]
    epoch: int
    seq: int


class MemberLeft(ServerMessage, tag="member_left", frozen=True, kw_only=True):
    """{"type":"member_left","seq","member":id,"reason":"left"|"timeout"|"removed","epoch"}"""
    member: str
    reason: str
    epoch: int
    seq: int


class Positions(ServerMessage, tag="positions", frozen=True, kw_only=True):
    """{"type":"positions","seq","moves":[[id, x, y, zone], ...]}"""
    moves: Sequence[Sequence[Any]]
    seq: int


class RoomSettings(ServerMessage, tag="room_settings", frozen=True, kw_only=True):
    """{"type":"room_settings","seq","locked","lobby","capacity","slow_mode"}"""
    locked: bool
    lobby: bool
    capacity: int
    slow_mode: float
    seq: int


class StickState(ServerMessage, tag="stick", frozen=True, kw_only=True):
    """{"type":"stick","seq","on","holder":id|null,"hands":[ids]}"""
    on: bool
    holder: str | None
    hands: Sequence[str]
    seq: int


class Corners(ServerMessage, tag="corners", frozen=True, kw_only=True):
    """{"type":"corners","seq","private":{corner:[ids]},"epoch"?} — `epoch` when a corner
    was opened."""
    private: Mapping[str, Sequence[str]]
    epoch: int | None = None
    seq: int


class Hidden(ServerMessage, tag="hidden", frozen=True, kw_only=True):
    """{"type":"hidden","seq"?,"target","zone"?,"by"} — a room message hidden (a broadcast,
    with `seq`), or a corner's (to its members, with `zone`)."""
    target: int
    zone: str | None = None
    by: str
    seq: int | None = None


class UnmuteRequested(ServerMessage, tag="unmute_requested", frozen=True, kw_only=True):
    """{"type":"unmute_requested","by":facilitator id}"""
    by: str


class SessionEnded(ServerMessage, tag="session_ended", frozen=True, kw_only=True):
    """{"type":"session_ended","seq"}"""
    seq: int


class GoingAway(ServerMessage, tag="going_away", frozen=True, kw_only=True, omit_defaults=False):
    """{"type":"going_away","message","reconnect":true} — before the server closes with 1001."""
    message: str
    reconnect: bool = True


class Moving(ServerMessage, tag="moving", frozen=True, kw_only=True):
    """{"type":"moving","room"} — the room moves to another node; before the close 4010."""
    room: str | None


class VoiceTransportOffer(ServerMessage, tag="voice_transport", frozen=True, kw_only=True):
    """{"type":"voice_transport","url","token","ttl","hashes","max_bytes","ref"?} — voice over
    WebTransport: where, with which one-time token, and the server certificate's hashes."""
    url: str
    token: str
    ttl: float
    hashes: Sequence[str]
    max_bytes: int
    ref: str | None = None


# --- chat -----------------------------------------------------------------------------------

class RoomEnvelope(ServerMessage, tag="envelope", frozen=True, kw_only=True, rename={"sender": "from"}):
    """{"type":"envelope","from","ts","body","commitment","seq","tag","id"?} — ciphertext,
    stamped by the room (sender, time, sequence, franking tag), to the room but its sender.
    `id`: the sender's client message id. The message most sent."""
    sender: str
    ts: int
    body: str
    commitment: str
    seq: int
    tag: str
    id: str | None = None


class CornerEnvelope(ServerMessage, tag="envelope", frozen=True, kw_only=True, rename={"sender": "from"}):
    """{"type":"envelope","zone","seq","from","ts","body","commitment","tag","id"?} — a quiet
    corner's, to its members: its own sequence, franking scope `room#corner`."""
    zone: str
    seq: int
    sender: str
    ts: int
    body: str
    commitment: str
    tag: str
    id: str | None = None


class Sent(ServerMessage, tag="sent", frozen=True, kw_only=True):
    """{"type":"sent","zone"?,"seq","ts","tag","epoch","id"?,"ref"?} — to the sender of an
    envelope (`zone`: a corner's); `epoch`: the room's when it was sequenced; `id`: the
    envelope's client id."""
    zone: str | None = None
    seq: int
    ts: int
    tag: str
    epoch: int
    id: str | None = None
    ref: str | None = None


class DirectEnvelope(ServerMessage, tag="direct", frozen=True, kw_only=True, rename={"sender": "from"}):
    """{"type":"direct","from","body","dseq","zone"?} — ciphertext for one member (sender
    keys); `dseq` numbers the directs to that member (1, 2, …; a resume says the last)."""
    sender: str
    body: str
    dseq: int
    zone: str | None = None


class ReportReceived(ServerMessage, tag="report_received", frozen=True, kw_only=True):
    """{"type":"report_received","id","ref"?}"""
    id: int
    ref: str | None = None


class ReportForFacilitators(ServerMessage, tag="report", frozen=True, kw_only=True):
    """{"type":"report","report":{...}} — a verified report, to the room's facilitators."""
    report: Mapping[str, Any]


class ReportList(ServerMessage, tag="reports", frozen=True, kw_only=True):
    """{"type":"reports","reports":[{...}]}"""
    reports: Sequence[Mapping[str, Any]]


# --- crisis ---------------------------------------------------------------------------------

class HelpReceived(ServerMessage, tag="help_received", frozen=True, kw_only=True):
    """{"type":"help_received","incident","ref"?}"""
    incident: str
    ref: str | None = None


class HelpStatus(ServerMessage, tag="help_status", frozen=True, kw_only=True):
    """{"type":"help_status","incident","status":"delivered"|"acknowledged"|"engaged"|
    "resolved"}"""
    incident: str
    status: str


class HelpPrompt(ServerMessage, tag="help_prompt", frozen=True, kw_only=True):
    """{"type":"help_prompt","incident"} — nobody engaged: call the helpline now."""
    incident: str


class OkReceived(ServerMessage, tag="ok_received", frozen=True, kw_only=True):
    """{"type":"ok_received","incident","ref"?}"""
    incident: str
    ref: str | None = None


class FlagReceived(ServerMessage, tag="flag_received", frozen=True, kw_only=True):
    """{"type":"flag_received","incident"?,"ref"?} — `incident` for the sender's own flag."""
    incident: str | None = None
    ref: str | None = None


class ConcernReceived(ServerMessage, tag="concern_received", frozen=True, kw_only=True):
    """{"type":"concern_received","incident","ref"?}"""
    incident: str
    ref: str | None = None


class IncidentUpdate(ServerMessage, tag="incident", frozen=True, kw_only=True):
    """{"type":"incident","incident":{...},"reason"} — an incident changed (`reason`: an
    action, "seen", "joined", "participant_ok", "person_left"), to its responders."""
    incident: Mapping[str, Any]
    reason: str


class IncidentAlert(ServerMessage, tag="incident", frozen=True, kw_only=True):
    """{"type":"incident","incident":{...},"reason":"alert"|"admin","tier":int|null,"notify",
    "sound","cause"} — a tier fired, or a press: the console alerts."""
    incident: Mapping[str, Any]
    reason: str
    tier: int | None
    notify: str
    sound: bool
    cause: str


class IncidentList(ServerMessage, tag="incidents", frozen=True, kw_only=True):
    """{"type":"incidents","incidents":[{...}]} — the room's incidents."""
    incidents: Sequence[Mapping[str, Any]]


class DutyState(ServerMessage, tag="duty", frozen=True, kw_only=True):
    """{"type":"duty","on","open":[{...}]} — on or off duty, and the open incidents."""
    on: bool
    open: Sequence[Mapping[str, Any]]


class DeliveryFailing(ServerMessage, tag="delivery_failing", frozen=True, kw_only=True):
    """{"type":"delivery_failing","channel","incident","attempts"} — an on-call alert did not
    get through: at its first failed try (`attempts` 1), and when it keeps failing."""
    channel: str
    incident: str
    attempts: int


class DeliveryRestored(ServerMessage, tag="delivery_restored", frozen=True, kw_only=True):
    """{"type":"delivery_restored","channel","incident","attempts"} — an on-call alert that
    had failed (`attempts` failed tries, told as delivery_failing) got through at last."""
    channel: str
    incident: str
    attempts: int


class AlertNotShared(ServerMessage, tag="alert_not_shared", frozen=True, kw_only=True):
    """{"type":"alert_not_shared","incident"} — an alert of that incident is on the raising
    node's disk only for now (the shared store did not answer in time)."""
    incident: str


# --- refusals -------------------------------------------------------------------------------

class Error(ServerMessage, tag="error", frozen=True, kw_only=True):
    """{"type":"error","code","message","ref"?} — a refusal (spaces.protocol.ProtocolError)."""
    code: str
    message: str
    ref: str | None = None


SERVER_MESSAGES: Final = tuple(
    kind for kind in list(globals().values())
    if isinstance(kind, type) and issubclass(kind, ServerMessage) and kind is not ServerMessage)
for _kind in SERVER_MESSAGES:
    _kind.TYPE = str(_kind.__struct_config__.tag)
SERVER_TYPES: Final = frozenset(cls.TYPE for cls in SERVER_MESSAGES)

# The answers a member's resend gets again (spaces/room.py Member.replies), kept in the
# room's saved state by their wire form.
Remembered = Sent | HelpReceived | FlagReceived


def remembered(data: Mapping[str, Any]) -> Remembered:
    """A remembered answer back from its wire form (ValueError if it is not one)."""
    name = data.get("type") if isinstance(data, Mapping) else None
    kind: type[Remembered]
    if name == "sent":
        kind = Sent
    elif name == "help_received":
        kind = HelpReceived
    elif name == "flag_received":
        kind = FlagReceived
    else:
        raise ValueError("not a remembered answer (sent, help_received or flag_received)")
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as invalid:
        raise ValueError(str(invalid)) from None
