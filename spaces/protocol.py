"""The wire protocol `hearth.v1`: one decode per client message, one shape per server message.

docs/protocol.md is the contract; this module is its executable form. Every
client frame is a JSON object with a `type`; `decode` turns it into a frozen
message object or raises `ProtocolError` carrying a stable code and a human
sentence. Nothing here knows about sockets or time.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import msgspec

from hearth.spaces.server_messages import Error, ServerMessage

SUBPROTOCOL: Final = "hearth.v1"
VERSION: Final = 1

# Stable error codes -> what they mean. docs/protocol.md lists the same table;
# tests/unit/test_protocol_doc.py keeps the two in step.
ERRORS: Final[Mapping[str, str]] = {
    "bad_json": "The frame is not a JSON object.",
    "bad_message": "A field is missing, of the wrong type, or out of range.",
    "unknown_type": "The message type is not part of hearth.v1.",
    "binary_not_allowed": "Binary frames carry voice only, after joining a room.",
    "voice_invalid": "The binary frame is not a hearth.v1 voice frame (size or header).",
    "muted": "A facilitator has muted you; your voice is not being sent to anyone.",
    "not_joined": "Join a room (or resume) before sending this message.",
    "already_joined": "This connection is already a member of a room.",
    "room_not_found": "There is no room with that id.",
    "room_full": "The room is at capacity.",
    "session_expired": "The session token is unknown or its grace period has passed.",
    "pseudonym_invalid": "The pseudonym is too short, too long, or uses characters not allowed.",
    "pseudonym_reserved": "The pseudonym could be mistaken for a facilitator or staff badge.",
    "pseudonym_taken": "Someone in this room already uses that pseudonym.",
    "avatar_invalid": "The avatar colour or shape is not one of the offered choices.",
    "position_invalid": "The position is outside the room or inside the hearth.",
    "seat_not_found": "There is no seat with that number.",
    "seat_taken": "Someone else is sitting there.",
    "seat_too_far": "Walk closer to the seat before sitting.",
    "envelope_too_large": "The envelope body is longer than the configured limit.",
    "recipient_not_found": "The recipient is not a member of this room right now.",
    "rate_limited": "Too many messages; slow down.",
    "forbidden": "Your role does not allow this operation.",
    "report_invalid": "The report does not prove that the named member sent that text.",
    "member_not_found": "There is no such member in this room.",
    "banned": "You cannot join this room for a while.",
    "room_locked": "The room is closed to newcomers right now.",
    "waiting": "You are waiting in the lobby; a facilitator will let you in.",
    "slow_mode": "Slow mode is on; wait a little before your next message.",
    "stick_off": "The talking stick is off: turn it on before giving it or taking it back.",
    "corner_not_found": "There is no quiet corner with that id.",
    "corner_private": "That corner is private right now.",
    "not_in_zone": "You are not in that corner.",
    "incident_invalid": "Unknown trigger, category or severity.",
    "incident_not_found": "There is no such incident (or no open request for help).",
    "incident_unreachable": "The node running this incident did not answer; try again.",
    "incident_state": "The incident is not in a state that allows that step.",
    "incident_outcome": "Resolving an incident needs an outcome code.",
    "incident_basis": "Requesting external help needs its basis: consent or imminent_risk.",
    "room_moving": "The room is moving to another node; nothing was done: send it again in a "
                   "moment.",
    "webtransport_unavailable": "Voice over UDP is not offered here; voice goes over this "
                                "WebSocket.",
}

MAX_REF = 64
MAX_ID = 64  # a client message id (envelope, help): unique per member, for resends
MAX_TOKEN = 128
MAX_TICKET = 512  # a role ticket carries its signed claims (spaces/venue.py)
_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}\Z")
_B64_32 = re.compile(r"^[A-Za-z0-9+/]{43}=\Z")
_B64_64 = re.compile(r"^[A-Za-z0-9+/]{86}==\Z")
_MEMBER_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}\Z")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
_ROOM_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}\Z")
_WORD = re.compile(r"^[a-z_]{1,32}\Z")
_PACK = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
# What a member may tell the room about themselves (`status`).
STATUSES: Final = ("here", "listening", "away")
_STATUS = re.compile(rf"^({'|'.join(STATUSES)})\Z")


class ProtocolError(Exception):
    """A refusal with a stable code; `ref` echoes the client's correlation id."""

    def __init__(self, code: str, message: str | None = None, ref: str | None = None) -> None:
        assert code in ERRORS, code
        super().__init__(message or ERRORS[code])
        self.code = code
        self.message = message or ERRORS[code]
        self.ref = ref

    def as_message(self) -> Error:
        """The `error` message that tells the client."""
        return Error(code=self.code, message=self.message, ref=self.ref)


# --- client -> server -------------------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class Join:
    """{"type":"join","room":"demo","pseudonym"?:str,"avatar"?:{"color","shape"},"locale"?:"en"|"es","ticket"?:str}"""
    room: str
    pseudonym: str | None = None
    avatar: Mapping[str, str] | None = None
    locale: str = "en"
    ticket: str | None = None
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Resume:
    """{"type":"resume","token":str,"seq"?:int,"dseq"?:int} — `seq`: the last room seq the
    client saw; the room envelopes after it come right after the welcome. `dseq`: the
    number of the last `direct` it received; the directed envelopes after it come first."""
    token: str
    seq: int | None = None
    dseq: int | None = None
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Move:
    """{"type":"move","x":float,"y":float} — metres; the server clamps to walk speed."""
    x: float
    y: float
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Sit:
    """{"type":"sit","seat":int}"""
    seat: int
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Stand:
    """{"type":"stand"}"""
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Rename:
    """{"type":"rename","pseudonym":str,"avatar"?:{"color","shape"}}"""
    pseudonym: str
    avatar: Mapping[str, str] | None = None
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Keys:
    """{"type":"keys","dh":b64(32),"sig":b64(32),"ek"?:b64(32),"ek_epoch"?:int,"ek_sig"?:b64(64)}
    — E2EE identity public keys for the roster, and the member's signed key for one epoch
    (the three ek fields come together). Clients judge the keys; the server checks the shape."""
    dh: str
    sig: str
    ek: str | None = None
    ek_epoch: int | None = None
    ek_sig: str | None = None
    ref: str | None = None

    def roster_entry(self) -> dict[str, Any]:
        """What the member wire's `keys` shows: the identity keys, and the epoch key if any."""
        entry: dict[str, Any] = {"dh": self.dh, "sig": self.sig}
        if self.ek is not None:
            entry |= {"ek": self.ek, "ek_epoch": self.ek_epoch, "ek_sig": self.ek_sig}
        return entry


@dataclass(frozen=True, kw_only=True, slots=True)
class Envelope:
    """{"type":"envelope","body":b64,"commitment":b64(32),"zone"?:corner,"id"?:str,"ref"?:str} —
    opaque ciphertext for the room, or only for the members in the sender's quiet corner. `id`:
    the client's id for it; a resend with the same id is answered, never delivered twice."""
    body: str
    commitment: str
    zone: str | None = None
    id: str | None = None
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Direct:
    """{"type":"direct","to":member_id,"body":b64,"zone"?:corner,"ref"?:str} — opaque
    ciphertext for one member (with `zone`: a private corner's sender key, between its members)."""
    to: str
    body: str
    zone: str | None = None
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Report:
    """{"type":"report","seq":int,"from":member_id,"ts":int,"text":str,"franking_key":b64(32),
    "commitment":b64(32),"tag":b64(32),"reason"?:str,"ref"?:str} — reveals one message to facilitators."""
    seq: int
    sender: str
    ts: int
    text: str
    franking_key: str
    commitment: str
    tag: str
    reason: str = ""
    zone: str | None = None
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ListReports:
    """{"type":"list_reports"} — facilitators only."""
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Remove:
    """{"type":"remove","member":member_id,"ref"?:str} — facilitators only; the room's epoch advances."""
    member: str
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Mute:
    """{"type":"mute","member":member_id} — facilitators only; the server drops the member's voice."""
    member: str
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AskUnmute:
    """{"type":"ask_unmute","member":member_id} — facilitators only; lifts the mute and asks."""
    member: str
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Stick:
    """{"type":"stick","on":bool} — facilitators only: the talking stick on or off."""
    on: bool
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class GiveStick:
    """{"type":"give_stick","member":member_id|null} — facilitators only."""
    member: str | None
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RaiseHand:
    """{"type":"raise_hand","up":bool}"""
    up: bool
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Ban:
    """{"type":"ban","member":member_id,"minutes":int} — facilitators only: remove, and refuse
    rejoining from the same address for that long (1 minute to 7 days)."""
    member: str
    minutes: int
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Lobby:
    """{"type":"lobby","on":bool} — facilitators only: newcomers wait to be admitted."""
    on: bool
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Admit:
    """{"type":"admit","member":member_id} — facilitators only."""
    member: str
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Deny:
    """{"type":"deny","member":member_id} — facilitators only."""
    member: str
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Lock:
    """{"type":"lock","on":bool} — facilitators only: no new participants while locked."""
    on: bool
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Capacity:
    """{"type":"capacity","value":int} — facilitators only (1 to 500)."""
    value: int
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Hide:
    """{"type":"hide","seq":int,"zone"?:corner} — facilitators only: every client hides that
    message (a corner message: `zone`, told to the corner's members)."""
    seq: int
    zone: str | None = None
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SlowMode:
    """{"type":"slow_mode","seconds":number} — facilitators only; 0 turns it off."""
    seconds: float
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class PrivateCorner:
    """{"type":"private_corner","corner":id,"member":member_id} — facilitators only: the
    facilitator and the member move into the corner, which closes to everyone else."""
    corner: str
    member: str
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ReleaseCorner:
    """{"type":"release_corner","corner":id} — facilitators only."""
    corner: str
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class EndSession:
    """{"type":"end_session"} — facilitators only: everyone leaves; the room starts afresh."""
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Help:
    """{"type":"help","id"?:str} — "I need help now": only facilitators and on-call staff are
    told. `id`: as for an envelope, a resend after a reconnection is not a second press."""
    id: str | None = None
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Flag:
    """{"type":"flag","category":str,"severity":"low"|"medium"|"high","pack"?:str,
    "member"?:member_id,"manual"?:bool,"id"?:str} — a detector fired (on the sender's own
    text, after the person agreed; or a facilitator's, about `member`), or a facilitator's
    manual flag. Never text: category, severity and the rule pack's id and version only.
    `id`: as for a help press, a resend after a reconnection is not a second flag."""
    category: str
    severity: str
    pack: str | None = None
    member: str | None = None
    manual: bool = False
    id: str | None = None
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Worried:
    """{"type":"worried","member":member_id} — a peer's concern; the reporter is not recorded."""
    member: str
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ImOk:
    """{"type":"im_ok"} — the person who asked for help says they are OK (noted, not closed)."""
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Incident:
    """{"type":"incident","incident":id,"action":"ack"|"engage"|"external"|"await"|"lost"|"resolve",
    "outcome"?:str,"basis"?:"consent"|"imminent_risk"} — facilitators only."""
    incident: str
    action: str
    outcome: str | None = None
    basis: str | None = None
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertSeen:
    """{"type":"alert_seen","incident":id} — facilitators only: this console received the
    incident's alert (the person then hears that a facilitator has been told)."""
    incident: str
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Duty:
    """{"type":"duty","on":bool} — facilitators only: on duty, alerted for every room."""
    on: bool
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ListIncidents:
    """{"type":"list_incidents"} — facilitators only."""
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Status:
    """{"type":"status","status":"here"|"listening"|"away"} — what the member tells the room."""
    status: str
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Leave:
    """{"type":"leave","closing"?:bool} — with `closing`, the page is going away (closed or
    reloaded): the member leaves unless this tab resumes within the closing grace."""
    closing: bool = False
    ref: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class VoiceTransport:
    """{"type":"voice_transport"} — a one-time token for voice over WebTransport. The node
    the WebSocket is connected to answers it (web/webtransport.py); one that reaches the
    room core was not answered there: WebTransport is off, or the request was too long."""
    ref: str | None = None


ClientMessage = (Join | Resume | Move | Sit | Stand | Rename | Keys | Envelope | Direct
                 | Report | ListReports | Remove | Mute | AskUnmute | Stick | GiveStick | RaiseHand
                 | Ban | Lobby | Admit | Deny | Lock | Capacity | Hide | SlowMode | PrivateCorner
                 | ReleaseCorner | EndSession | Help | Flag | Worried | ImOk | Incident | AlertSeen
                 | Duty | ListIncidents | Status | Leave | VoiceTransport)

# Operations only facilitators and operators may perform (tests/unit/test_moderation_core.py).
FACILITATOR_TYPES: Final = frozenset({
    "list_reports", "remove", "mute", "ask_unmute", "stick", "give_stick", "ban", "lobby",
    "admit", "deny", "lock", "capacity", "hide", "slow_mode", "private_corner", "release_corner",
    "end_session", "incident", "alert_seen", "duty", "list_incidents"})


class _Fields:
    """Typed access to one frame's fields; every failure names the field."""

    def __init__(self, kind: str, data: Mapping[str, Any]) -> None:
        self.kind = kind
        self.data = data
        self.ref: str | None = data.get("ref")  # checked by `decode` before any field

    def bad(self, name: str, expected: str) -> ProtocolError:
        return ProtocolError("bad_message", f"{self.kind}.{name}: expected {expected}.", self.ref)

    def string(self, name: str, *, max_len: int, optional: bool = False,
               pattern: re.Pattern[str] | None = None, what: str = "a string") -> Any:
        value = self.data.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str) or len(value) > max_len or (
                pattern is not None and not pattern.match(value)):
            raise self.bad(name, f"{what} of at most {max_len} characters")
        return value

    def number(self, name: str, lo: float, hi: float) -> float:
        value = self.data.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value) or not lo <= value <= hi:
            raise self.bad(name, f"a number from {lo:g} to {hi:g}")
        return float(value)

    def integer(self, name: str, lo: int, hi: int) -> int:
        value = self.data.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.bad(name, f"a whole number from {lo} to {hi}")
        return value

    def boolean(self, name: str) -> bool:
        value = self.data.get(name)
        if not isinstance(value, bool):
            raise self.bad(name, "true or false")
        return value

    def avatar(self, name: str) -> Mapping[str, str] | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.bad(name, 'an object {"color": str, "shape": str}')
        # other keys are a newer client's, ignored like any unknown field
        known = {key: value[key] for key in ("color", "shape") if key in value}
        if not all(isinstance(v, str) and len(v) <= 16 for v in known.values()):
            raise self.bad(name, 'an object {"color": str, "shape": str}')
        return known


def _join(f: _Fields) -> Join:
    locale = f.string("locale", max_len=5, optional=True) or "en"
    return Join(room=f.string("room", max_len=40, pattern=_ROOM_ID, what="a room id"),
                pseudonym=f.string("pseudonym", max_len=200, optional=True),
                avatar=f.avatar("avatar"), locale=locale,
                ticket=f.string("ticket", max_len=MAX_TICKET, optional=True))


def _member(f: _Fields, optional: bool = False) -> Any:
    return f.string("member", max_len=32, pattern=_MEMBER_ID, what="a member id",
                    optional=optional)


def _report(f: _Fields) -> Report:
    return Report(
        seq=f.integer("seq", 1, 2**53), sender=f.string("from", max_len=32, pattern=_MEMBER_ID,
                                                        what="a member id"),
        ts=f.integer("ts", 0, 2**53), text=f.string("text", max_len=8000),
        franking_key=f.string("franking_key", max_len=44, pattern=_B64_32, what="base64 of 32 bytes"),
        commitment=f.string("commitment", max_len=44, pattern=_B64_32, what="base64 of 32 bytes"),
        tag=f.string("tag", max_len=44, pattern=_B64_32, what="base64 of 32 bytes"),
        reason=f.string("reason", max_len=500, optional=True) or "",
        zone=f.string("zone", max_len=40, optional=True, pattern=_ROOM_ID, what="a corner id"),
        ref=f.ref)


def _envelope(f: _Fields) -> Envelope:
    """The message members send most: the checks of `_Fields.string`, inline; any failure
    goes through `string` itself, which raises the usual error."""
    data = f.data
    body, commitment, zone = data.get("body"), data.get("commitment"), data.get("zone")
    if not (type(body) is str and len(body) <= 1 << 24 and _B64.match(body)):
        body = f.string("body", max_len=1 << 24, pattern=_B64, what="base64 text")
    if not (type(commitment) is str and len(commitment) <= 44 and _B64_32.match(commitment)):
        commitment = f.string("commitment", max_len=44, pattern=_B64_32,
                              what="base64 of 32 bytes")
    if zone is not None:
        zone = f.string("zone", max_len=40, optional=True, pattern=_ROOM_ID, what="a corner id")
    client_id = data.get("id")
    if client_id is not None:
        client_id = _client_id(f)
    return Envelope(body=body, commitment=commitment, zone=zone, id=client_id, ref=f.ref)


def _client_id(f: _Fields) -> Any:
    return f.string("id", max_len=MAX_ID, optional=True, pattern=_CLIENT_ID,
                    what="a client message id (letters, digits, _ . : -)")


def _keys(f: _Fields) -> Keys:
    dh = f.string("dh", max_len=44, pattern=_B64_32, what="base64 of 32 bytes")
    sig = f.string("sig", max_len=44, pattern=_B64_32, what="base64 of 32 bytes")
    if all(f.data.get(n) is None for n in ("ek", "ek_epoch", "ek_sig")):
        return Keys(dh=dh, sig=sig, ref=f.ref)
    return Keys(dh=dh, sig=sig, ref=f.ref,
                ek=f.string("ek", max_len=44, pattern=_B64_32, what="base64 of 32 bytes"),
                ek_epoch=f.integer("ek_epoch", 1, 2**32 - 1),
                ek_sig=f.string("ek_sig", max_len=88, pattern=_B64_64, what="base64 of 64 bytes"))


_DECODERS: Final[Mapping[str, Callable[[_Fields], ClientMessage]]] = {
    "join": _join,
    "resume": lambda f: Resume(token=f.string("token", max_len=MAX_TOKEN),
                               seq=f.integer("seq", 0, 2**53) if "seq" in f.data else None,
                               dseq=f.integer("dseq", 0, 2**53) if "dseq" in f.data else None),
    "move": lambda f: Move(x=f.number("x", -1e6, 1e6), y=f.number("y", -1e6, 1e6)),
    "sit": lambda f: Sit(seat=f.integer("seat", 0, 1000)),
    "stand": lambda f: Stand(),
    "rename": lambda f: Rename(pseudonym=f.string("pseudonym", max_len=200),
                               avatar=f.avatar("avatar")),
    "keys": lambda f: _keys(f),
    "envelope": lambda f: _envelope(f),
    "direct": lambda f: Direct(
        to=f.string("to", max_len=32, pattern=_MEMBER_ID, what="a member id"),
        body=f.string("body", max_len=1 << 24, pattern=_B64, what="base64 text"),
        zone=f.string("zone", max_len=40, optional=True, pattern=_ROOM_ID, what="a corner id"),
        ref=f.ref),
    "report": _report,
    "list_reports": lambda f: ListReports(),
    "remove": lambda f: Remove(member=_member(f)),
    "mute": lambda f: Mute(member=_member(f)),
    "ask_unmute": lambda f: AskUnmute(member=_member(f)),
    "stick": lambda f: Stick(on=f.boolean("on")),
    "give_stick": lambda f: GiveStick(member=_member(f, optional=True)),
    "raise_hand": lambda f: RaiseHand(up=f.boolean("up")),
    "ban": lambda f: Ban(member=_member(f), minutes=f.integer("minutes", 1, 7 * 24 * 60)),
    "lobby": lambda f: Lobby(on=f.boolean("on")),
    "admit": lambda f: Admit(member=_member(f)),
    "deny": lambda f: Deny(member=_member(f)),
    "lock": lambda f: Lock(on=f.boolean("on")),
    "capacity": lambda f: Capacity(value=f.integer("value", 1, 500)),
    "hide": lambda f: Hide(seq=f.integer("seq", 1, 2**53), zone=f.string(
        "zone", max_len=40, optional=True, pattern=_ROOM_ID, what="a corner id")),
    "slow_mode": lambda f: SlowMode(seconds=f.number("seconds", 0, 600)),
    "private_corner": lambda f: PrivateCorner(
        corner=f.string("corner", max_len=40, pattern=_ROOM_ID, what="a corner id"),
        member=_member(f)),
    "release_corner": lambda f: ReleaseCorner(
        corner=f.string("corner", max_len=40, pattern=_ROOM_ID, what="a corner id")),
    "end_session": lambda f: EndSession(),
    "help": lambda f: Help(id=_client_id(f)),
    "flag": lambda f: Flag(
        category=f.string("category", max_len=32, pattern=_WORD, what="a category"),
        severity=f.string("severity", max_len=8, pattern=_WORD, what="low, medium or high"),
        pack=f.string("pack", max_len=64, optional=True, pattern=_PACK, what="a rule pack id"),
        member=_member(f, optional=True),
        manual=f.boolean("manual") if "manual" in f.data else False, id=_client_id(f)),
    "worried": lambda f: Worried(member=_member(f)),
    "im_ok": lambda f: ImOk(),
    "incident": lambda f: Incident(
        incident=f.string("incident", max_len=32, pattern=_MEMBER_ID, what="an incident id"),
        action=f.string("action", max_len=16, pattern=_WORD, what="an action"),
        outcome=f.string("outcome", max_len=32, optional=True, pattern=_WORD, what="an outcome"),
        basis=f.string("basis", max_len=32, optional=True, pattern=_WORD, what="a basis")),
    "alert_seen": lambda f: AlertSeen(
        incident=f.string("incident", max_len=32, pattern=_MEMBER_ID, what="an incident id")),
    "duty": lambda f: Duty(on=f.boolean("on")),
    "list_incidents": lambda f: ListIncidents(),
    "status": lambda f: Status(status=f.string("status", max_len=16, pattern=_STATUS,
                                               what="here, listening or away")),
    "leave": lambda f: Leave(closing=f.boolean("closing") if "closing" in f.data else False),
    "voice_transport": lambda f: VoiceTransport(),
}

CLIENT_TYPES: Final = frozenset(_DECODERS)


def decode(frame: str | bytes) -> ClientMessage:
    """Parse one text frame into a client message, or raise ProtocolError.

    JSON is parsed by msgspec, strictly (RFC 8259): NaN and Infinity, invalid UTF-8
    (surrogates encoded in it too), a byte-order mark, anything after the object but
    whitespace, nesting deeper than the parser allows and anything but an object are
    `bad_json`; a number too large for a double (1e400) is `bad_message`.

    Before any field is read: every string in the frame (names and values, at any depth)
    must be text that can be written out again as UTF-8 — JSON's `\\uD800` escapes can
    make a lone surrogate, which no encoder accepts; and `ref`, on every message, must be
    a string of at most MAX_REF characters. Either is `bad_message`.
    """
    unwritable: str | None = None
    try:
        data: Any = _PARSE(frame)
    except msgspec.ValidationError:  # valid JSON syntax, but a number past what a double holds
        raise ProtocolError("bad_message", "A number is out of range.") from None
    except (msgspec.DecodeError, RecursionError, UnicodeError):
        data, unwritable = _refused(frame)
    if not isinstance(data, dict):
        raise ProtocolError("bad_json", "The frame must be a JSON object with a \"type\".")
    kind = data.get("type")
    name = kind if type(kind) is str and kind in _DECODERS else "message"
    ref = data.get("ref")
    if (ref is not None and not (type(ref) is str and len(ref) <= MAX_REF)) or unwritable == "ref":
        raise ProtocolError("bad_message", f"{name}.ref: expected a string of at most {MAX_REF} "
                                           "characters (it is echoed in the reply).")
    if unwritable is not None:
        raise ProtocolError("bad_message", f"{name}.{unwritable[:40]}: expected text (a lone "
                                           "surrogate, \\uD800 to \\uDFFF, is not a character).",
                            ref)
    if not isinstance(kind, str):
        raise ProtocolError("bad_message", 'Every message needs a string "type".', ref)
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise ProtocolError("unknown_type", f"Unknown message type {kind[:40]!r}.", ref)
    fields = _Fields(kind, data)
    message = decoder(fields)
    if fields.ref is not None and message.ref is None:
        message = replace(message, ref=fields.ref)
    return message


def _refused(frame: str | bytes) -> tuple[dict[str, Any], str]:
    """msgspec refused the frame: `bad_json`, except for JSON whose only fault is a `\\u`
    escape making a lone surrogate, which msgspec refuses too but which is `bad_message`
    naming its field. Read again for that case only, with the standard library's parser
    (UTF-8 decoded strictly, NaN and Infinity still refused)."""
    if type(frame) is bytes and b"\\u" not in frame:
        raise ProtocolError("bad_json", "The frame is not valid JSON.")
    try:
        text = frame.decode("utf-8") if type(frame) is bytes else frame
        data = json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_json", "The frame is not valid JSON.") from None
    unwritable = _unwritable_field(data) if isinstance(data, dict) else None
    if unwritable is None:
        raise ProtocolError("bad_json", "The frame is not valid JSON.")
    return data, unwritable


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


_SURROGATE = re.compile("[\ud800-\udfff]")


def writable(text: str) -> bool:
    """Whether `text` can be encoded as UTF-8 (has no lone surrogate)."""
    return text.isascii() or _SURROGATE.search(text) is None


def _writable_value(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return writable(value)
    if kind is dict:
        return all(writable(k) and _writable_value(v) for k, v in value.items())
    if kind is list:
        return all(_writable_value(v) for v in value)
    return True


def _unwritable_field(data: dict[str, Any]) -> str | None:
    """The first field of a frame holding text that cannot be encoded again, if any."""
    for key, value in data.items():
        if not writable(key):
            return "(a field name)"
        if not _writable_value(value):
            return key
    return None


# One parser and one serialiser for every frame (msgspec: a maintained C library; no
# per-call set-up, no interpreter internals).
_PARSE: Final = msgspec.json.Decoder().decode
_SERIALISE: Final = msgspec.json.Encoder().encode

_WIRE_TYPES: dict[type, str] = {}


def wire_type(message: ClientMessage) -> str:
    """The `type` a decoded message had on the wire (AskUnmute -> "ask_unmute").

    Asked for every message a member sends: worked out once per class, then looked up.
    """
    kind = type(message)
    name = _WIRE_TYPES.get(kind)
    if name is None:
        name = _WIRE_TYPES[kind] = re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__).lower()
    return name


def encode(message: ServerMessage) -> bytes:
    """Serialise a server message (spaces/server_messages.py) once (compact UTF-8 JSON); the
    adapter fans the same bytes out.

    Always valid JSON: a float that is not finite is written as null (never NaN or
    Infinity, which browsers' JSON.parse refuses); a lone surrogate raises
    UnicodeEncodeError, anything that is not JSON data TypeError, a circular
    reference RecursionError (tests/unit/test_perf_encode.py).
    """
    return _SERIALISE(message)
