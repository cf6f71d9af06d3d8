"""One room: its members, seats, positions, sequence numbers and epoch.

Rules, in one place:
- A room holds at most `capacity` members, counting members who are away
  (disconnected, still inside their resume grace period).
- Every message broadcast to the room carries the next room sequence number,
  so a client sees gaps and order; directed messages and replies carry none.
- Positions are server-authoritative: a move goes no further than walk speed
  allows since the last accepted move (the excess is clipped); a target outside
  the room, or a step ending in the hearth, is refused; moving stands the
  member up. Changed positions
  go out once per tick, batched, and only if something moved.
- A seat is taken by one member at a time, from within `SEAT_REACH` metres.
- A member whose connection drops is away (others are told) until it resumes
  or its grace period runs out. A page that says it is closing (`leave` with
  `closing`) is away for the much shorter closing grace (a reload comes back
  within it), then leaves.
- The talking-stick mode changes only by `set_stick`: giving or taking the
  stick back needs the mode on and never turns it on or off.
- The epoch advances whenever the membership changes: a member enters, or
  leaves for good (left, timed out, removed); and whenever a member resumes
  (its page may have reloaded and lost its sender chain, which nobody may
  install twice), publishes new identity keys (whoever held the old ones holds
  chains), or a facilitator opens a private corner (the corner's keys start in
  an epoch of their own). E2EE clients rotate their sender keys on it, so a
  newcomer holds no key of what was said (or spoken) before it came, and a
  leaver none of what follows.
- A private corner is private: opening one moves everyone else out of its
  zone, nobody else may walk in, and its envelopes, sender keys, hidden-message
  notices and voice reach its members only.
- A resuming member gets the room envelopes it missed: those after the last
  `seq` it saw (or, if it does not say, those since it went away), from the
  room's last RECENT envelopes, kept in memory only while anyone is in the
  room. Before them come the directed envelopes (sender keys) it missed: each
  is numbered for its recipient (`dseq`) and the last KEPT_DIRECTS are kept
  whether it was away or not (a link can die unnoticed and lose what was
  written to it), so it gets those after the last `dseq` it says it received
  (or, if it does not say, those that came while it was away). What waits for
  an away member is never pushed out: past the limits a `direct` to it is refused.
- An envelope with a client id is sequenced once: a resend of the same id is
  answered with the same `sent` (the last REPLIES_KEPT ids of each member).
- No I/O and no clock: `now` (seconds) comes in with every call.
"""

from __future__ import annotations

import binascii
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from msgspec import structs

from hearth.spaces.config import LimitsConfig, MovementConfig, RoomConfig, VoiceConfig
from hearth.spaces.e2ee.franking import server_tag
from hearth.spaces.effects import Broadcast, Effect, Reply, Send, Voice
from hearth.spaces.layout import Corner, Point
from hearth.spaces.protocol import Envelope, ProtocolError
from hearth.spaces.pseudonyms import PseudonymRefused, check_avatar, normalise, same_name
from hearth.spaces.ratelimit import TokenBucket
from hearth.spaces.server_messages import (
    CornerEnvelope,
    Corners,
    DirectEnvelope,
    Hidden,
    LobbyWaiting,
    MemberJoined,
    MemberLeft,
    MemberResumed,
    MemberUpdated,
    Positions,
    Remembered,
    RoomEnvelope,
    RoomSettings,
    Sent,
    SessionEnded,
    StickState,
    UnmuteRequested,
    remembered,
)
from hearth.spaces.voice import VoiceRoute, VoiceRules, parse_header, stamp_slot
from hearth.spaces.wording import counted

Role = Literal["participant", "facilitator", "operator"]
LeaveReason = Literal["left", "timeout", "removed"]

SEAT_REACH = 1.5  # metres from a seat within which a member may sit on it
MOVE_SLACK = 0.25  # metres forgiven per move for client/server timing jitter
MAX_MOVE_WINDOW = 1.0  # seconds of walking one move may claim at most
KEPT_DIRECTS = 256  # directed envelopes kept per member (the newest) for its resume
KEPT_DIRECT_CHARS = 1 << 18  # ... and at most this many characters of their bodies
DSEQ_MARGIN = 1000  # a restored room numbers directs on past what its old node may have used
RECENT = 256  # room envelopes kept (in memory) for members who resume (beyond: a seq gap)
REPLIES_KEPT = 16  # client message ids remembered per member (with the reply they got)
MUTED_NOTICE_EVERY = 5.0  # seconds between "you are muted" errors to a muted speaker
CORNER_MARGIN = 0.3  # metres outside a corner's edge where a bystander is put when it closes


@dataclass(kw_only=True, slots=True)
class Member:
    id: str
    pseudonym: str
    avatar: dict[str, str]
    role: Role
    locale: str
    pos: Point
    last_move: float
    moves: TokenBucket
    seat: int | None = None
    keys: dict[str, str] | None = None
    away_since: float | None = None
    leave_at: float | None = None  # the page closed: it leaves then unless it resumes first
    status: str = "here"  # protocol.STATUSES: the member's own word (here, listening, away)
    attachment: int = 0  # bumped on every (re)attach; a stale connection's loss is ignored
    slot: int = 0  # the member's number in voice frame headers, unique in the room
    muted: bool = False  # by a facilitator; enforced by dropping voice frames
    hand_up: bool = False
    account: str | None = None  # a facilitator's account name, for the audit log only
    # A facilitator's sign-in: the session its role ticket came from and the account's
    # generation then; the role is withdrawn when either ends (Venue.signin_ended,
    # Venue.account_changed). None for participants and in-process tickets.
    signin: str | None = None
    generation: int | None = None
    address: tuple[str, bytes] | None = None  # (day, keyed hash) for a ban; never the address
    last_envelope: float = float("-inf")  # for slow mode
    # The newest directed envelopes (sender keys) sent to the member, numbered by `dseq`,
    # whether it was away or attached: a resume hands over those it did not receive.
    directs: deque[DirectEnvelope] = field(default_factory=deque)
    direct_chars: int = 0  # the length of their bodies
    dseq: int = 0  # the number of the last directed envelope to the member
    away_dseq: int = 0  # `dseq` when it went away: those after it waited for its resume
    muted_notice: float = float("-inf")
    # When a refused facilitator control of this member's was last audited (a participant
    # repeating one must not grow the audit log at its message rate: moderation/controls.py).
    refusal_audited: float = float("-inf")
    # client message id -> the reply it got, without its ref (a resend is answered the
    # same, with its own ref, never redone)
    replies: dict[str, Remembered] = field(default_factory=dict)

    def keep_direct(self, message: DirectEnvelope) -> None:
        """Number `message` for this member and keep it, the oldest going past the limits."""
        self.dseq = message.dseq
        self.directs.append(message)
        self.direct_chars += len(message.body)
        while len(self.directs) > KEPT_DIRECTS or self.direct_chars > KEPT_DIRECT_CHARS:
            self.direct_chars -= len(self.directs.popleft().body)

    def directs_after(self, dseq: int) -> list[DirectEnvelope]:
        """The kept directed envelopes numbered after `dseq`, in order."""
        return [m for m in self.directs if m.dseq > dseq]

    def went_away(self, now: float) -> None:
        self.away_since = now
        self.away_dseq = self.dseq

    def remember(self, client_id: str, reply: Remembered) -> None:
        self.replies[client_id] = reply if reply.ref is None else structs.replace(reply, ref=None)
        if len(self.replies) > REPLIES_KEPT:
            del self.replies[next(iter(self.replies))]

    @property
    def actor(self) -> str:
        """Who did it, for the audit log: a facilitator's account, else the pseudonym."""
        return self.account or self.pseudonym

    def answered(self, client_id: str | None, ref: str | None) -> Remembered | None:
        """The reply a message with this client id already got, for its resend (with the
        resend's own ref): a resend is answered the same, never done again."""
        if client_id is None:
            return None
        again = self.replies.get(client_id)
        if again is None or ref is None:
            return again
        return structs.replace(again, ref=ref)

    def to_wire(self, zone: str) -> dict[str, Any]:
        return {"id": self.id, "pseudonym": self.pseudonym, "avatar": self.avatar,
                "role": self.role, "seat": self.seat, "x": self.pos.x, "y": self.pos.y,
                "zone": zone, "keys": self.keys, "away": self.away_since is not None,
                "slot": self.slot, "muted": self.muted, "hand": self.hand_up,
                "status": self.status}


@dataclass(kw_only=True)
class Room:
    config: RoomConfig
    limits: LimitsConfig
    movement: MovementConfig
    grace: float
    rng: random.Random
    franking_key: bytes  # the server's key for franking tags (reports prove what was said)
    members: dict[str, Member] = field(default_factory=dict)
    voice_config: VoiceConfig = field(default_factory=VoiceConfig)
    seq: int = 0
    epoch: int = 1
    capacity: int = field(init=False)
    lobby_on: bool = field(init=False)
    waiting: dict[str, Member] = field(default_factory=dict)  # the lobby, first come first
    # the last room envelopes (ciphertext, in memory only), for members who resume
    recent: deque[RoomEnvelope] = field(default_factory=lambda: deque(maxlen=RECENT))
    locked: bool = False
    slow_mode: float = 0.0  # seconds between a participant's messages; 0 is off
    private: dict[str, frozenset[str]] = field(default_factory=dict)  # corner -> its members
    corner_seq: dict[str, int] = field(default_factory=dict)
    stick_on: bool = False
    stick_holder: str | None = None
    hands: list[str] = field(default_factory=list)  # raised hands, first come first
    _moved: set[str] = field(default_factory=set)
    voice: VoiceRoute = field(init=False)

    def __post_init__(self) -> None:
        self.capacity = self.config.capacity
        self.lobby_on = self.config.lobby
        vc = self.voice_config
        self.voice = VoiceRoute(
            VoiceRules(hearing_range=vc.hearing_range, max_speakers=vc.max_speakers,
                       frames_per_second=vc.frames_per_second, burst=vc.frame_burst),
            self.config.layout)

    @property
    def id(self) -> str:
        return self.config.id

    def is_full(self) -> bool:
        return len(self.members) + len(self.waiting) >= self.capacity

    def attached(self, member_id: str, attachment: int, lobby: bool = False) -> Member | None:
        """The member a connection holds (in the lobby too if `lobby`): None once it left,
        or another connection resumed it."""
        member = self.members.get(member_id)
        if member is None and lobby:
            member = self.waiting.get(member_id)
        return member if member is not None and member.attachment == attachment else None

    def target(self, member_id: str, ref: str | None) -> Member:
        """The member a message is aimed at; `member_not_found` if it is not in the room."""
        found = self.members.get(member_id)
        if found is None:
            raise ProtocolError("member_not_found", ref=ref)
        return found

    def facilitators(self) -> list[Member]:
        return [m for m in self.members.values() if m.role != "participant"]

    def wire_member(self, member: Member) -> dict[str, Any]:
        return member.to_wire(self.config.layout.zone_of(member.pos))

    def _next_seq(self) -> int:
        """The sequence number of the room's next broadcast (one per broadcast, no gaps)."""
        self.seq += 1
        return self.seq

    def snapshot(self) -> dict[str, Any]:
        """The room as a joining or resuming member needs it."""
        return {"id": self.id, "title": self.config.title, "titles": dict(self.config.titles),
                "capacity": self.capacity,
                "language": self.config.language,
                "locked": self.locked, "lobby": self.lobby_on, "slow_mode": self.slow_mode,
                "stick": {"on": self.stick_on, "holder": self.stick_holder, "hands": list(self.hands)},
                "private": {c: sorted(ms) for c, ms in self.private.items()},
                "layout": self.config.layout.to_wire(), "seq": self.seq, "epoch": self.epoch,
                "members": [self.wire_member(m) for m in self.members.values()]}

    # --- membership ---------------------------------------------------------

    def check_pseudonym(self, raw: str, member_id: str | None = None) -> str:
        try:
            name = normalise(raw, self.limits.pseudonym_max_length)
        except PseudonymRefused as refused:
            raise ProtocolError(refused.code, refused.message) from None
        for other in self.members.values():
            if other.id != member_id and same_name(other.pseudonym, name):
                raise ProtocolError("pseudonym_taken")
        return name

    def free_pseudonym(self, make: Any) -> str:
        """A generated pseudonym nobody in the room uses yet."""
        name = str(make())
        for _ in range(20):
            if not any(same_name(m.pseudonym, name) for m in self.members.values()):
                return name
            name = str(make())
        return f"{name} {self.rng.randint(2, 99)}"

    def add(self, *, member_id: str, pseudonym: str, avatar: Mapping[str, str], role: Role,
            locale: str, now: float, waiting: bool = False) -> tuple[Member, list[Effect]]:
        if self.is_full():
            raise ProtocolError("room_full")
        checked = check_avatar(avatar)
        if checked is None:
            raise ProtocolError("avatar_invalid")
        member = Member(id=member_id, pseudonym=pseudonym, avatar=checked, role=role,
                        locale=locale, pos=self._spawn_point(), last_move=now,
                        moves=TokenBucket(self.limits.moves_per_second,
                                          self.limits.moves_per_second, now),
                        slot=self._free_slot())
        if waiting:
            self.waiting[member_id] = member
            return member, self.lobby_update()
        return member, self.enter(member)

    def enter(self, member: Member) -> list[Effect]:
        self.members[member.id] = member
        self.epoch += 1  # so a newcomer never holds a key of what was said before it came
        return [Broadcast(self.id, MemberJoined(member=self.wire_member(member), epoch=self.epoch,
                                                seq=self._next_seq()), member.id)]

    def lobby_update(self) -> list[Effect]:
        """Tell the room's facilitators who is waiting (pseudonyms only)."""
        message = LobbyWaiting(waiting=[
            {"id": m.id, "pseudonym": m.pseudonym, "avatar": m.avatar} for m in self.waiting.values()])
        return [Send(f.id, message) for f in self.facilitators()]

    def _free_slot(self) -> int:
        used = {m.slot for m in self.members.values()} | {m.slot for m in self.waiting.values()}
        return next(i for i in range(1, len(used) + 2) if i not in used)

    def _spawn_point(self) -> Point:
        layout = self.config.layout
        spawn = [p for p in layout.spawn if layout.zone_of(p) not in self.private] or list(
            layout.spawn)
        taken = [m.pos for m in self.members.values()]
        for p in spawn:  # first spawn point nobody stands on, never in a private corner
            if all(p.distance(q) > 0.5 for q in taken):
                return p
        return spawn[self.rng.randrange(len(spawn))]

    def remove(self, member_id: str, reason: LeaveReason) -> list[Effect]:
        if self.waiting.pop(member_id, None) is not None:
            return self.lobby_update()
        member = self.members.pop(member_id, None)
        self._moved.discard(member_id)
        if member is None:
            return []
        if not self.members:  # nobody left who could ask for them
            self.recent.clear()
        self.voice.forget(member_id)
        self.epoch += 1
        effects: list[Effect] = [Broadcast(self.id, MemberLeft(
            member=member_id, reason=reason, epoch=self.epoch, seq=self._next_seq()))]
        for corner, inside in list(self.private.items()):
            if member_id in inside:
                del self.private[corner]
                effects.append(self._corners())
        if member_id in self.hands:
            self.hands.remove(member_id)
        if self.stick_holder == member_id:
            self.stick_holder = None
            effects.append(self._stick_state())
        return effects

    def mark_away(self, member_id: str, attachment: int, now: float) -> list[Effect]:
        """The member's connection dropped: away, and the room is told (`member_updated`)."""
        member = self.members.get(member_id)
        if member is None or member.attachment != attachment or member.away_since is not None:
            return []
        member.went_away(now)
        return [self._updated(member)]

    def closing(self, member: Member, now: float, within: float) -> list[Effect]:
        """The member's page is closing: away now, gone at `now + within` unless it resumes
        first (a reload does). A dropped connection's long grace is not for a closed tab."""
        member.leave_at = now + within
        if member.away_since is not None:
            return []
        member.went_away(now)
        return [self._updated(member)]

    def reattach(self, member: Member) -> int:
        member.away_since = None
        member.leave_at = None
        member.attachment += 1
        return member.attachment

    # --- what members do -----------------------------------------------------

    def move(self, member: Member, x: float, y: float, now: float) -> list[Effect]:
        if not member.moves.allow(now):
            raise ProtocolError("rate_limited", "Too many moves; the last one was ignored.")
        layout = self.config.layout
        target = Point(x, y)
        if not layout.in_bounds(target):
            raise ProtocolError("position_invalid")
        budget = self.movement.walk_speed * min(MAX_MOVE_WINDOW, now - member.last_move) + MOVE_SLACK
        distance = member.pos.distance(target)
        if distance > budget:  # clip the walk to what the speed limit allows
            t = budget / distance
            target = Point(member.pos.x + (x - member.pos.x) * t,
                           member.pos.y + (y - member.pos.y) * t)
        target = target.rounded()
        if not layout.walkable(target):
            raise ProtocolError("position_invalid")
        zone = layout.zone_of(target)
        if zone in self.private and member.id not in self.private[zone]:
            raise ProtocolError("corner_private")
        member.last_move = now
        effects: list[Effect] = []
        if member.seat is not None:
            effects += self._set_seat(member, None)
        if target != member.pos:
            member.pos = target
            self._moved.add(member.id)
        return effects

    def sit(self, member: Member, seat: int) -> list[Effect]:
        seats = self.config.layout.seats
        if not 0 <= seat < len(seats):
            raise ProtocolError("seat_not_found")
        if any(m.seat == seat and m.id != member.id for m in self.members.values()):
            raise ProtocolError("seat_taken")
        if member.pos.distance(seats[seat]) > SEAT_REACH:
            raise ProtocolError("seat_too_far")
        zone = self.config.layout.zone_of(seats[seat])
        if zone in self.private and member.id not in self.private[zone]:
            raise ProtocolError("corner_private")  # a seat inside a private corner
        member.pos = seats[seat]
        self._moved.discard(member.id)
        return self._set_seat(member, seat)

    def stand(self, member: Member) -> list[Effect]:
        return self._set_seat(member, None) if member.seat is not None else []

    def _set_seat(self, member: Member, seat: int | None) -> list[Effect]:
        member.seat = seat
        return [self._updated(member)]

    def _updated(self, member: Member) -> Broadcast:
        return Broadcast(self.id, MemberUpdated(member=self.wire_member(member),
                                                seq=self._next_seq()))

    def rename(self, member: Member, pseudonym: str,
               avatar: Mapping[str, str] | None) -> list[Effect]:
        name = self.check_pseudonym(pseudonym, member.id)
        if avatar is not None:
            checked = check_avatar(avatar)
            if checked is None:
                raise ProtocolError("avatar_invalid")
            member.avatar = checked
        member.pseudonym = name
        return [self._updated(member)]

    def set_status(self, member: Member, status: str) -> list[Effect]:
        """`status` was checked by protocol.decode (one of STATUSES)."""
        if status == member.status:
            return []
        member.status = status
        return [self._updated(member)]

    def publish_keys(self, member: Member, keys: dict[str, Any]) -> list[Effect]:
        """The member's E2EE keys (identity, and its key for an epoch) for the roster."""
        old = member.keys
        member.keys = keys
        epoch = None
        if old is not None and (old["dh"], old["sig"]) != (keys["dh"], keys["sig"]):
            self.epoch += 1  # a new identity: the old one may hold chains, everyone rotates
            epoch = self.epoch
        return [Broadcast(self.id, MemberUpdated(member=self.wire_member(member), epoch=epoch,
                                                 seq=self._next_seq()))]

    def resumed(self, member: Member) -> list[Effect]:
        """A member came back (a dropped connection, or a reload): the epoch advances."""
        self.epoch += 1
        return [Broadcast(self.id, MemberResumed(member=self.wire_member(member),
                                                 epoch=self.epoch, seq=self._next_seq()),
                          member.id)]

    def envelope(self, member: Member, msg: Envelope, now: float) -> list[Effect]:
        """Stamp sender, sequence, time and the franking tag (the server's half of the proof
        a report carries), and send it to the room (or a corner's members)."""
        body, commitment, ref, zone, client_id = msg.body, msg.commitment, msg.ref, msg.zone, \
            msg.id
        again = member.answered(client_id, ref)
        if again is not None:  # a resend: already sent
            return [Reply(again)]
        if len(body) > self.limits.max_envelope_chars:
            raise ProtocolError("envelope_too_large",
                                f"The envelope body is longer than "
                                f"{self.limits.max_envelope_chars} characters.", ref)
        if self.slow_mode and member.role == "participant":
            wait = member.last_envelope + self.slow_mode - now
            if wait > 0:
                raise ProtocolError("slow_mode", f"Slow mode is on: you can write again in "
                                                 f"{counted(max(1, round(wait)), 'second')}.", ref)
        member.last_envelope = now
        ts = int(now * 1000)
        tag = self._tagger(member.id, commitment)
        if zone is not None:
            return self._corner_envelope(member, body, commitment, ref, ts, tag, zone,
                                         client_id)
        seq = self._next_seq()
        stamp = tag(self.id, seq, ts)  # the tag covers the seq: made before the message
        message = RoomEnvelope(sender=member.id, ts=ts, body=body, commitment=commitment,
                               seq=seq, tag=stamp, id=client_id)
        self.recent.append(message)
        sent = Sent(seq=seq, ts=ts, tag=stamp, epoch=self.epoch, id=client_id, ref=ref)
        if client_id is not None:
            member.remember(client_id, sent)
        return [Broadcast(self.id, message, member.id), Reply(sent)]

    def _tagger(self, sender: str, commitment: str) -> Callable[[str, int, int], str]:
        def tag(scope: str, seq: int, ts: int) -> str:
            # base64.b64decode / b64encode without their wrappers (once per room message);
            # the commitment was checked as base64 of 32 bytes (ASCII) by protocol.decode
            raw = server_tag(self.franking_key, binascii.a2b_base64(commitment), scope, sender,
                             seq, ts)
            return binascii.b2a_base64(raw, newline=False).decode("ascii")
        return tag

    def missed(self, member: Member, seen: int | None, away_since: float | None
               ) -> list[RoomEnvelope]:
        """The room envelopes a resuming member did not get: after `seen` (the last seq it
        says it saw), or since it went away."""
        if seen is not None:
            return [m for m in self.recent if m.seq > seen and m.sender != member.id]
        if away_since is None:
            return []
        since = int(away_since * 1000)
        return [m for m in self.recent if m.ts >= since and m.sender != member.id]

    def _in_corner(self, zone: str) -> list[Member]:
        """Who a corner's conversation reaches: a private corner's members, wherever they
        stand; in a quiet corner nobody made private, whoever stands in it."""
        inside = self.private.get(zone)
        if inside is not None:
            return [m for m in self.members.values() if m.id in inside]
        zone_of = self.config.layout.zone_of
        return [m for m in self.members.values() if zone_of(m.pos) == zone]

    def _corner_envelope(self, member: Member, body: str, commitment: str, ref: str | None,
                         ts: int, tag: Callable[[str, int, int], str], zone: str,
                         client_id: str | None) -> list[Effect]:
        """A corner's own conversation: its own scope and sequence, seen by nobody else."""
        layout = self.config.layout
        inside = self.private.get(zone)
        if layout.zone_of(member.pos) != zone or (inside is not None and member.id not in inside):
            raise ProtocolError("not_in_zone", ref=ref)
        seq = self.corner_seq[zone] = self.corner_seq.get(zone, 0) + 1
        scope = f"{self.id}#{zone}"
        stamp = tag(scope, seq, ts)
        message = CornerEnvelope(zone=zone, seq=seq, sender=member.id, ts=ts, body=body,
                                 commitment=commitment, tag=stamp, id=client_id)
        sent = Sent(zone=zone, seq=seq, ts=ts, tag=stamp, epoch=self.epoch, id=client_id,
                    ref=ref)
        if client_id is not None:
            member.remember(client_id, sent)
        return [*(Send(m.id, message) for m in self._in_corner(zone)
                  if m.id != member.id and m.away_since is None),
                Reply(sent)]

    def direct(self, member: Member, to: str, body: str, ref: str | None,
               zone: str | None = None) -> list[Effect]:
        recipient = self.members.get(to)
        if recipient is None or to == member.id:
            raise ProtocolError("recipient_not_found", ref=ref)
        if len(body) > self.limits.max_envelope_chars:
            raise ProtocolError("envelope_too_large", ref=ref)
        if zone is not None:  # a private corner's sender key: between its members only
            inside = self.private.get(zone, frozenset())
            if member.id not in inside or to not in inside:
                raise ProtocolError("not_in_zone", ref=ref)
        message = DirectEnvelope(sender=member.id, body=body, zone=zone, dseq=recipient.dseq + 1)
        away = recipient.away_since is not None
        if away:  # what waits for its resume is never pushed out of what is kept
            waiting = recipient.directs_after(recipient.away_dseq)
            if len(waiting) >= KEPT_DIRECTS or \
                    sum(len(m.body) for m in waiting) + len(body) > KEPT_DIRECT_CHARS:
                raise ProtocolError("recipient_not_found", "The recipient is away and has too "
                                                           "much waiting already.", ref)
        recipient.keep_direct(message)
        return [] if away else [Send(to, message)]

    # --- voice -------------------------------------------------------------------

    def voice_frame(self, member: Member, frame: bytes, now: float) -> list[Effect]:
        header = parse_header(frame, self.voice_config.max_frame_bytes)
        if member.muted:
            self.voice.dropped_muted += 1
            if now - member.muted_notice >= MUTED_NOTICE_EVERY:
                member.muted_notice = now
                raise ProtocolError("muted")
            return []
        holder = self.stick_holder if self.stick_on else None
        listeners = self.voice.listeners(member, header, self.members, self.stick_on, holder, now)
        if listeners and self.private:
            inside = self.private.get(self.config.layout.zone_of(member.pos))
            if inside is not None:  # a private corner: its members only, whoever stood near
                listeners = tuple(m for m in listeners if m in inside) if member.id in inside else ()
        if not listeners:
            return []
        return [Voice(self.id, stamp_slot(frame, member.slot), listeners)]

    def mute(self, target: Member) -> list[Effect]:
        if target.muted:
            return []
        target.muted = True
        return [self._updated(target)]

    def ask_unmute(self, target: Member, by: Member) -> list[Effect]:
        """Lift the facilitator's mute and ask; the participant's microphone stays theirs."""
        effects: list[Effect] = []
        if target.muted:
            target.muted = False
            effects.append(self._updated(target))
        effects.append(Send(target.id, UnmuteRequested(by=by.id)))
        return effects

    def _stick_state(self) -> Broadcast:
        return Broadcast(self.id, StickState(on=self.stick_on, holder=self.stick_holder,
                                             hands=list(self.hands), seq=self._next_seq()))

    def set_stick(self, on: bool) -> list[Effect]:
        """The one way the talking-stick mode changes (a facilitator's toggle)."""
        self.stick_on = on
        if not on:
            self.stick_holder = None
        return [self._stick_state()]

    def give_stick(self, target: Member | None, ref: str | None = None) -> list[Effect]:
        """Pass the stick (None: take it back). The mode stays as the facilitator set it."""
        if not self.stick_on:
            raise ProtocolError("stick_off", ref=ref)
        self.stick_holder = target.id if target is not None else None
        effects: list[Effect] = []
        if target is not None and target.id in self.hands:
            self.hands.remove(target.id)
            target.hand_up = False
            effects.append(self._updated(target))
        return [*effects, self._stick_state()]

    def raise_hand(self, member: Member, up: bool) -> list[Effect]:
        if up == member.hand_up:
            return []
        member.hand_up = up
        if up:
            self.hands.append(member.id)
        elif member.id in self.hands:
            self.hands.remove(member.id)
        return [self._updated(member), self._stick_state()]

    # --- room settings and facilitator controls -----------------------------------

    def settings(self) -> Broadcast:
        return Broadcast(self.id, RoomSettings(locked=self.locked, lobby=self.lobby_on,
                                               capacity=self.capacity, slow_mode=self.slow_mode,
                                               seq=self._next_seq()))

    def set_lock(self, on: bool) -> list[Effect]:
        self.locked = on
        return [self.settings()]

    def set_lobby(self, on: bool) -> list[Effect]:
        self.lobby_on = on
        return [self.settings()]

    def set_capacity(self, value: int) -> list[Effect]:
        self.capacity = value
        return [self.settings()]

    def set_slow_mode(self, seconds: float) -> list[Effect]:
        self.slow_mode = seconds
        return [self.settings()]

    def hide(self, seq: int, by: Member, zone: str | None = None) -> list[Effect]:
        if zone is None:
            return [Broadcast(self.id, Hidden(target=seq, by=by.id, seq=self._next_seq()))]
        message = Hidden(target=seq, zone=zone, by=by.id)
        return [Send(m.id, message) for m in self._in_corner(zone)]

    def private_corner(self, corner: str, facilitator: Member, member: Member) -> list[Effect]:
        """The two alone in the corner: everyone else is moved out, and it opens a new epoch,
        so the corner's keys (clients keep a session of its own) start fresh."""
        found = next((c for c in self.config.layout.corners if c.id == corner), None)
        if found is None:
            raise ProtocolError("corner_not_found")
        inside = frozenset({facilitator.id, member.id})
        self.private[corner] = inside
        effects: list[Effect] = []
        for other in list(self.members.values()) + list(self.waiting.values()):
            if other.id not in inside and found.contains(other.pos):
                other.seat = None
                other.pos = self._outside(found, other.pos)
                self._moved.discard(other.id)
                if other.id in self.members:
                    effects.append(self._updated(other))
        centre = Point(found.x + found.width / 2, found.y + found.height / 2)
        for who, dx in ((facilitator, -0.4), (member, 0.4)):
            who.seat = None
            who.pos = Point(centre.x + dx, centre.y).rounded()
            self._moved.discard(who.id)
            effects.append(self._updated(who))
        self.epoch += 1
        return [*effects, self._corners(epoch=True)]

    def _outside(self, corner: Corner, p: Point) -> Point:
        """The nearest walkable point just outside `corner` and every other corner."""
        layout = self.config.layout
        margin = CORNER_MARGIN
        x = min(max(p.x, corner.x), corner.x + corner.width)
        y = min(max(p.y, corner.y), corner.y + corner.height)
        candidates = [Point(corner.x - margin, y), Point(corner.x + corner.width + margin, y),
                      Point(x, corner.y - margin), Point(x, corner.y + corner.height + margin),
                      *layout.spawn]
        free = [c.rounded() for c in candidates
                if layout.walkable(c) and layout.zone_of(c) not in self.private
                and not corner.contains(c)]
        return min(free, key=p.distance) if free else layout.spawn[0]

    def release_corner(self, corner: str) -> list[Effect]:
        if self.private.pop(corner, None) is None:
            raise ProtocolError("corner_not_found", "That corner is not private.")
        return [self._corners()]

    def _corners(self, epoch: bool = False) -> Broadcast:
        return Broadcast(self.id, Corners(
            private={c: sorted(ms) for c, ms in self.private.items()},
            epoch=self.epoch if epoch else None, seq=self._next_seq()))

    def end_notice(self) -> Broadcast:
        return Broadcast(self.id, SessionEnded(seq=self._next_seq()))

    def clear(self) -> None:
        """After the session ends: nobody inside, a fresh epoch, default settings."""
        for member in [*self.members, *self.waiting]:
            self.voice.forget(member)
        self.members.clear()
        self.waiting.clear()
        self.recent.clear()
        self.hands.clear()
        self.private.clear()
        self._moved.clear()
        self.stick_on, self.stick_holder = False, None
        self.locked, self.slow_mode = False, 0.0
        self.capacity, self.lobby_on = self.config.capacity, self.config.lobby
        self.epoch += 1

    # --- saved state (a room moving to another node) ----------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "epoch": self.epoch, "capacity": self.capacity,
            "lobby": self.lobby_on, "locked": self.locked, "slow_mode": self.slow_mode,
            "private": {c: sorted(ms) for c, ms in self.private.items()},
            "corner_seq": dict(self.corner_seq), "stick_on": self.stick_on,
            "stick_holder": self.stick_holder, "hands": list(self.hands),
            "members": [{
                "id": m.id, "pseudonym": m.pseudonym, "avatar": m.avatar, "role": m.role,
                "locale": m.locale, "x": m.pos.x, "y": m.pos.y, "seat": m.seat, "keys": m.keys,
                "slot": m.slot, "muted": m.muted, "hand": m.hand_up, "account": m.account,
                "signin": m.signin, "generation": m.generation,
                "status": m.status,
                "address": [m.address[0], m.address[1].hex()] if m.address else None,
                "replies": {cid: reply.to_wire() for cid, reply in m.replies.items()},
                "away_since": m.away_since, "dseq": m.dseq,
            } for m in self.members.values()],
        }

    def restore(self, state: dict[str, Any], now: float, seq_margin: int = 0) -> None:
        self.seq = int(state["seq"]) + seq_margin
        self.epoch = int(state["epoch"]) + 1  # keys may have leaked with the old node: rotate
        self.capacity = int(state["capacity"])
        self.lobby_on, self.locked = bool(state["lobby"]), bool(state["locked"])
        self.slow_mode = float(state["slow_mode"])
        self.private = {c: frozenset(ms) for c, ms in state["private"].items()}
        self.corner_seq = {c: int(n) for c, n in state["corner_seq"].items()}
        self.stick_on, self.stick_holder = bool(state["stick_on"]), state["stick_holder"]
        self.hands = list(state["hands"])
        self.members.clear()
        self.recent.clear()
        for m in state["members"]:
            member = Member(
                id=m["id"], pseudonym=m["pseudonym"], avatar=m["avatar"], role=m["role"],
                locale=m["locale"], pos=Point(m["x"], m["y"]), last_move=now,
                moves=TokenBucket(self.limits.moves_per_second, self.limits.moves_per_second,
                                  now),
                seat=m["seat"], keys=m["keys"], slot=m["slot"], muted=m["muted"],
                hand_up=m["hand"], account=m["account"],
                # away since then if away when saved (its grace runs on), else from now
                away_since=min(float(m["away_since"]), now)
                if isinstance(m.get("away_since"), int | float) else now,
                signin=m.get("signin"), generation=m.get("generation"),
                status=m.get("status", "here"),
                address=(m["address"][0], bytes.fromhex(m["address"][1]))
                if m["address"] else None,
                replies={str(k): remembered(v) for k, v in m.get("replies", {}).items()})
            # what it was sent lately stayed with the old node: number on past any it used
            member.dseq = member.away_dseq = int(m.get("dseq", 0)) + DSEQ_MARGIN
            self.members[member.id] = member

    # --- time -----------------------------------------------------------------

    def _gone(self, member: Member, now: float) -> LeaveReason | None:
        """Why an away member leaves now: its page closed, or its grace period ran out."""
        if member.leave_at is not None and now >= member.leave_at:
            return "left"
        if member.away_since is not None and now - member.away_since >= self.grace:
            return "timeout"
        return None

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for member in list(self.members.values()):
            reason = self._gone(member, now)
            if reason is not None:
                effects += self.remove(member.id, reason)
        if self._moved:
            moves = [[mid, self.members[mid].pos.x, self.members[mid].pos.y,
                      self.config.layout.zone_of(self.members[mid].pos)]
                     for mid in sorted(self._moved)]
            self._moved.clear()
            effects.append(Broadcast(self.id, Positions(moves=moves, seq=self._next_seq())))
        return effects

    def expired(self, now: float) -> list[str]:
        """Members whose grace period has run out or whose page closed (the venue forgets
        their tokens)."""
        return [m.id for m in self.members.values() if self._gone(m, now) is not None]
