"""The venue: every room this deployment hosts, and the session tokens that lead back in.

A session token is the only credential an anonymous member has. It is kept
here only as a SHA-256 digest (a memory dump or a stolen store yields no usable
token) and is replaced on every resume; the one the member resumed with stays
good until its resumed connection says anything (so a welcome lost on the way,
the room moving at that moment, cannot lock the member out). A token starts
with the id of its room (`<room>.<secret>`), so any node can route a resume
without a directory of sessions. Role tickets — one-time, short-lived
strings a facilitator's logged-in page exchanges for a role — are kept the same
way. The crisis desk, the facilitator controls, the ban list and the report
queue are plugged in (spaces/ports.py; moderation/wiring.py builds a venue
with moderation's own).
Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import random
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, get_args

from hearth.spaces import protocol as p
from hearth.spaces.addresses import AddressKey, utc_day
from hearth.spaces.config import HearthConfig
from hearth.spaces.e2ee.errors import E2EEError
from hearth.spaces.e2ee.franking import verify_report
from hearth.spaces.effects import Attach, Audit, Detach, Effect, Enter, Reply, Send
from hearth.spaces.ports import Bans, Controls, Crisis, Reports
from hearth.spaces.protocol import ProtocolError
from hearth.spaces.pseudonyms import LOCALES, generate, generate_avatar
from hearth.spaces.room import Member, Role, Room
from hearth.spaces.server_messages import ReportForFacilitators, ReportReceived, Waiting, Welcome
from hearth.spaces.stats import Stats

RESUMED_ELSEWHERE = 4001  # close code for a connection whose member resumed on another
REMOVED = 4003  # close code for a member a facilitator removed (or banned)
DENIED = 4004  # close code for someone a facilitator did not admit from the lobby
SESSION_ENDED = 4005  # close code for everyone when a facilitator ends the session
ROLE_WITHDRAWN = 4006  # close code for a facilitator whose sign-in or account ended
TICKET_TTL = 60.0
ROLES = get_args(Role)
SEQ_MARGIN_ON_TAKEOVER = 1000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def new_token() -> str:
    """192 bits from `secrets`: the member's only credential."""
    return secrets.token_urlsafe(24)


def new_member_id() -> str:
    """Public, short, unguessable enough that ids do not reveal join order."""
    return secrets.token_urlsafe(9)


@dataclass(frozen=True, slots=True)
class Seat:
    """Where a connection sits in the venue after join or resume."""
    room: str
    member: str
    attachment: int


class Venue:
    def __init__(self, config: HearthConfig, *, franking_key: bytes, crisis: Crisis,
                 bans: Bans, reports: Reports, controls: Controls,
                 rng: random.Random | None = None,
                 make_token: Callable[[], str] = new_token,
                 make_member_id: Callable[[], str] = new_member_id,
                 ticket_key: bytes | None = None) -> None:
        self.config = config
        self.rng = rng or random.SystemRandom()
        self._make_token = make_token
        self._make_member_id = make_member_id
        self._franking_key = franking_key
        self.rooms: dict[str, Room] = {
            rc.id: Room(config=rc, limits=config.limits, movement=config.movement,
                        voice_config=config.voice, grace=config.session.resume_grace_seconds,
                        rng=self.rng, franking_key=franking_key)
            for rc in config.rooms}
        self._sessions: dict[bytes, tuple[str, str]] = {}  # token digest -> (room, member)
        self._token_of: dict[str, bytes] = {}  # member -> token digest
        # member -> the digest of the token it last resumed with, until it speaks again
        self._previous: dict[str, bytes] = {}
        self._ticket_key = ticket_key if ticket_key is not None else secrets.token_bytes(32)
        self._used_tickets: dict[str, float] = {}  # nonce -> until when it would be valid
        # Facilitator accounts as the shell last told (account_changed): name -> (role,
        # generation), and the names it said are gone. A ticket bound to a sign-in is
        # refused if its account is known to have changed or gone (one not heard of yet,
        # minutes old, is checked when it is: a role it gave is withdrawn then).
        self.accounts: dict[str, tuple[str, int]] = {}
        self._removed_accounts: set[str] = set()
        # Sign-in sessions that ended (signin_ended): id -> until when it is remembered.
        self._ended_signins: dict[str, float] = {}
        self.crisis = crisis
        self.bans = bans
        self.reports = reports
        self.controls = controls  # facilitators' messages: checked, done and audited there
        self.stats = Stats()  # counts by message type and error code, for /metrics

    # --- tickets --------------------------------------------------------------

    def issue_ticket(self, role: Role, now: float, account: str | None = None,
                     signin: str | None = None, generation: int | None = None) -> str:
        """A one-time ticket the WebSocket exchanges for `role` within TICKET_TTL seconds.

        The logged-in console asks for one (web/auth.py) right before it opens
        the WebSocket; a cookie alone never grants a role on the socket. The
        ticket carries its claims under an HMAC (the deployment's ticket key,
        the same on every node), so whichever node runs the room can redeem it.
        A console's ticket is bound to its sign-in session (`signin`) and the
        account's `generation`: refused once the session has ended or the account
        changed, and the role it gave is withdrawn then (`signin_ended`,
        `account_changed`). Tickets made in-process (the drill) have no sign-in.
        """
        claims: dict[str, Any] = {"r": role, "a": account, "e": round(now + TICKET_TTL, 3),
                                  "n": secrets.token_hex(8)}
        if signin is not None:
            claims["s"], claims["g"] = signin, generation
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{body}.{_b64(self._ticket_mac(body))}"

    def _ticket_mac(self, body: str) -> bytes:
        return hmac.new(self._ticket_key, body.encode("ascii"), hashlib.sha256).digest()[:16]

    def _redeem(self, ticket: str, now: float) -> tuple[Role, str | None, str | None,
                                                        int | None]:
        refused = ProtocolError("forbidden", "The role ticket is unknown, used or expired.")
        body, _, tag = ticket.partition(".")
        try:
            if not hmac.compare_digest(_b64(self._ticket_mac(body)), tag):
                raise refused
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            role, account, expires, nonce = claims["r"], claims["a"], claims["e"], claims["n"]
            signin, generation = claims.get("s"), claims.get("g")
        except (ValueError, KeyError, TypeError, UnicodeEncodeError, AttributeError):
            raise refused from None
        if role not in ROLES or expires < now or nonce in self._used_tickets:
            raise refused
        if signin is not None and not self._signed_in(account, role, signin, generation):
            raise ProtocolError("forbidden", "The sign-in this ticket came from has ended; "
                                             "sign in again.")
        self._used_tickets[nonce] = float(expires)  # once (on this node: docs/scaling.md)
        return role, account, signin, generation

    def _signed_in(self, account: Any, role: Any, signin: Any, generation: Any) -> bool:
        """Whether a sign-in still stands: not ended, its account not changed nor gone."""
        if signin in self._ended_signins:
            return False
        state = self.accounts.get(account)
        if state is None:
            return account not in self._removed_accounts
        return state == (role, generation)

    def _entitled(self, member: Member) -> bool:
        """Whether a facilitator's or operator's role still stands (participants: always)."""
        if member.role == "participant" or member.signin is None:
            return True
        return self._signed_in(member.account, member.role, member.signin, member.generation)

    # --- roles withdrawn: events the shell delivers --------------------------------

    def signin_ended(self, signin: str, now: float, rooms: Iterable[str]) -> list[Effect]:
        """A facilitator's sign-in session ended (signed out, or ended for its account),
        on any node: tickets from it are refused from now on, and every member who joined
        with one — in `rooms` (those this node runs) — loses the role."""
        self._ended_signins[signin] = now + self.config.login.session_max_seconds
        return self._withdraw(rooms, lambda m: m.signin == signin, "signed_out")

    def account_changed(self, account: str, state: tuple[str, int] | None, now: float,
                        rooms: Iterable[str]) -> list[Effect]:
        """A facilitator account is now `state` (role, generation), or gone (None): a
        new password or second factor, a new role, or removed. Members it gave a role
        to under another state lose it (in `rooms`)."""
        if state is None:
            self.accounts.pop(account, None)
            self._removed_accounts.add(account)
        else:
            self.accounts[account] = state
            self._removed_accounts.discard(account)
        why = "account_removed" if state is None else "account_changed"
        return self._withdraw(rooms, lambda m: m.account == account and (
            state is None or (m.generation is not None
                              and (m.role, m.generation) != state)), why)

    def _withdraw(self, rooms: Iterable[str], whose: Callable[[Member], bool],
                  why: str) -> list[Effect]:
        """Roles withdrawn: the member's connection closes (ROLE_WITHDRAWN), it leaves the
        room for good (its token is forgotten), and the audit log says why."""
        effects: list[Effect] = []
        for room_id in rooms:
            room = self.rooms.get(room_id)
            if room is None:
                continue
            for member in [m for m in room.members.values()
                           if m.role != "participant" and whose(m)]:
                self._forget(member.id)
                effects += [Audit(member.actor, "role_withdrawn", member.pseudonym, room.id,
                                  why),
                            Detach(member.id, ROLE_WITHDRAWN,
                                   "your facilitator sign-in has ended; sign in again"),
                            *room.remove(member.id, "left")]
        return effects

    # --- join and resume --------------------------------------------------------

    def _issue_session(self, room: str, member: str, presented: bytes | None = None) -> str:
        """A new token for `member`; `presented` (the digest it resumed with) stays good until
        the member's resumed connection speaks (`confirm`)."""
        old = self._token_of.pop(member, None)
        if old is not None:
            self._sessions.pop(old, None)
        self._drop_previous(member)
        if presented is not None:
            self._previous[member] = presented
        token = f"{room}.{self._make_token()}"
        digest = _digest(token)
        self._sessions[digest] = (room, member)
        self._token_of[member] = digest
        return token

    def _drop_previous(self, member: str) -> None:
        self._previous.pop(member, None)

    def confirm(self, seat: Seat) -> None:
        """The resumed connection spoke: it has its new token; the one it resumed with is
        spent."""
        self._drop_previous(seat.member)

    @staticmethod
    def token_room(token: str) -> str | None:
        """The room a session token belongs to (its first part), or None if it names none."""
        room, dot, secret = token.partition(".")
        return room if dot and room and secret else None

    def _session(self, token: str) -> tuple[str, str] | None:
        digest = _digest(token)
        found = self._sessions.get(digest)
        if found is not None:
            return found
        for member, previous in self._previous.items():
            if previous == digest and member in self._token_of:
                return self._sessions[self._token_of[member]][0], member
        return None

    # --- moving a room between nodes ------------------------------------------------------

    def export_room(self, room_id: str) -> dict[str, Any]:
        """Everything needed to carry on the room elsewhere (no tokens: only their digests)."""
        room = self.rooms[room_id]
        return {"room": room.to_state(),
                "sessions": {m: self._token_of[m].hex() for m in room.members
                             if m in self._token_of},
                "previous": {m: self._previous[m].hex() for m in room.members
                             if m in self._previous},
                "incidents": self.crisis.export(room_id),
                "bans": self.bans.export(room_id)}

    def import_room(self, room_id: str, state: dict[str, Any], now: float) -> None:
        """Take over a room from a node that went away: everyone is away until they resume.

        The sequence jumps ahead so that no number the old owner may have used
        after its last save is used again: clients see a gap, never a repeat.
        """
        room = self.rooms[room_id]
        room.restore(state["room"], now, seq_margin=SEQ_MARGIN_ON_TAKEOVER)
        saved_at = state.get("saved_at")  # a graceful stop's save: nobody was here after it
        if isinstance(saved_at, int | float) and not isinstance(saved_at, bool):
            for m in room.members.values():
                m.away_since = min(m.away_since if m.away_since is not None else now,
                                   float(saved_at))
        for member in room.expired(now):  # their grace ended before the room came back
            room.remove(member, "timeout")
        for member, digest_hex in state.get("sessions", {}).items():
            if member in room.members:
                digest = bytes.fromhex(digest_hex)
                self._sessions[digest] = (room_id, member)
                self._token_of[member] = digest
        for member, digest_hex in state.get("previous", {}).items():
            if member in room.members:
                self._previous[member] = bytes.fromhex(digest_hex)
        self.crisis.adopt(list(state.get("incidents", [])))
        self.bans.adopt(room_id, list(state.get("bans", [])))

    def _welcome(self, room: Room, member: Member, token: str, resumed: bool) -> Welcome:
        return Welcome(protocol=p.VERSION, member=member.id, token=token, resumed=resumed,
                       grace=self.config.session.resume_grace_seconds,
                       movement={"walk_speed": self.config.movement.walk_speed,
                                 "tick_hz": self.config.movement.tick_hz},
                       voice={"hearing_range": self.config.voice.hearing_range},
                       room=room.snapshot())

    def join(self, msg: p.Join, now: float,
             address: AddressKey | None = None) -> tuple[Seat, list[Effect]]:
        room = self.rooms.get(msg.room)
        if room is None:
            raise ProtocolError("room_not_found", f"There is no room {msg.room!r}.")
        if room.is_full():
            raise ProtocolError("room_full")
        role, account, signin, generation = (self._redeem(msg.ticket, now) if msg.ticket
                                             else ("participant", None, None, None))
        if role == "participant":
            if address is not None and self.bans.refuses(room.id, address, now):
                raise ProtocolError("banned")
            if room.locked:
                raise ProtocolError("room_locked")
        locale = msg.locale if msg.locale in LOCALES else "en"
        if msg.pseudonym is not None:
            pseudonym = room.check_pseudonym(msg.pseudonym)
        else:
            pseudonym = room.free_pseudonym(lambda: generate(self.rng, locale))
        avatar = msg.avatar if msg.avatar is not None else generate_avatar(self.rng)
        waiting = room.lobby_on and role == "participant"
        member, effects = room.add(member_id=self._make_member_id(), pseudonym=pseudonym,
                                   avatar=avatar, role=role, locale=locale, now=now,
                                   waiting=waiting)
        member.account, member.signin, member.generation = account, signin, generation
        if address is not None:
            day = utc_day(now)
            member.address = (day, address.hash_for(day))
        attachment = room.reattach(member)
        seat = Seat(room.id, member.id, attachment)
        if waiting:  # no token until admitted: a dropped wait simply ends
            return seat, [Attach(room.id, member.id, waiting=True),
                          Reply(Waiting(member=member.id, room=room.id,
                                        title=room.config.title_in(locale),
                                        pseudonym=member.pseudonym)),
                          *effects]
        token = self._issue_session(room.id, member.id)
        if role != "participant" and room.waiting:  # who is already waiting, at once
            effects += [e for e in room.lobby_update() if isinstance(e, Send)
                        and e.member == member.id]
        return seat, [Attach(room.id, member.id), Reply(self._welcome(room, member, token, False)),
                      *effects]

    def resume(self, msg: p.Resume, now: float) -> tuple[Seat, list[Effect]]:
        found = self._session(msg.token)
        room = self.rooms.get(found[0]) if found else None
        member = room.members.get(found[1]) if room and found else None
        if room is None or member is None:
            raise ProtocolError("session_expired")
        if not self._entitled(member):  # its sign-in ended while it was away
            raise ProtocolError("forbidden", "Your facilitator sign-in has ended; sign in "
                                             "again and join afresh.")
        effects: list[Effect] = []
        if member.away_since is None:  # the old connection is still open: it loses the member
            effects.append(Detach(member.id, RESUMED_ELSEWHERE, "resumed on another connection"))
        missed = room.missed(member, msg.seq, member.away_since)
        # the sender keys it did not receive (a dead link loses them unnoticed), or, if it
        # does not say, those that came while it was away
        held = member.directs_after(msg.dseq) if msg.dseq is not None else \
            member.directs_after(member.away_dseq) if member.away_since is not None else []
        attachment = room.reattach(member)
        token = self._issue_session(room.id, member.id, _digest(msg.token))
        effects += room.resumed(member)  # a new epoch: the welcome below already shows it
        return Seat(room.id, member.id, attachment), [
            *effects, Attach(room.id, member.id), Reply(self._welcome(room, member, token, True)),
            *(Send(member.id, message) for message in [*held, *missed]),
            *self.crisis.standing(room.id, member.id)]  # what was lost with the connection

    # --- members' messages --------------------------------------------------------

    def handle(self, seat: Seat, msg: p.ClientMessage, now: float) -> list[Effect]:
        """A seated member's message, but for what its connection hands straight to the room
        (an envelope) or to the crisis desk (help, "I'm okay")."""
        room = self.rooms[seat.room]
        member = room.attached(seat.member, seat.attachment)
        if member is None:
            if seat.member in room.waiting:
                raise ProtocolError("waiting", ref=msg.ref)
            raise ProtocolError("not_joined", "You are no longer in this room.")
        if p.wire_type(msg) in p.FACILITATOR_TYPES:
            return self.controls(self, room, member, msg, now)
        match msg:
            case p.Move(x=x, y=y):
                return room.move(member, x, y, now)
            case p.Sit(seat=number):
                return room.sit(member, number)
            case p.Stand():
                return room.stand(member)
            case p.Rename(pseudonym=name, avatar=avatar):
                return room.rename(member, name, avatar)
            case p.Keys():
                return room.publish_keys(member, msg.roster_entry())
            case p.Direct(to=to, body=body, zone=zone, ref=ref):
                return room.direct(member, to, body, ref, zone)
            case p.Report():
                return self._report(room, member, msg, now)
            case p.RaiseHand(up=up):
                return room.raise_hand(member, up)
            case p.Flag():
                return self.crisis.flagged(room, member, msg, now)
            case p.Worried(member=target, ref=ref):
                return self.crisis.worried(room, member, room.target(target, ref), now, ref)
            case p.Status(status=status):
                return room.set_status(member, status)
            case p.Leave(closing=True) if self.config.session.closing_grace_seconds > 0:
                # A closing page (tab closed or reloaded): a reload resumes within moments.
                return room.closing(member, now, self.config.session.closing_grace_seconds)
            case p.Leave():
                return self.leave(seat)
            case p.Join() | p.Resume():
                raise ProtocolError("already_joined")
            case p.VoiceTransport(ref=ref):  # not answered by the connection's node
                raise ProtocolError("webtransport_unavailable", ref=ref)
        raise ProtocolError("unknown_type")  # pragma: no cover - decode admits no other types

    # --- what facilitator controls do to sessions --------------------------------------

    def admit(self, room: Room, target: str, ref: str | None) -> list[Effect]:
        """Someone waiting in the lobby comes in, with a session token."""
        member = room.waiting.pop(target, None)
        if member is None:
            raise ProtocolError("member_not_found", ref=ref)
        token = self._issue_session(room.id, member.id)
        entered = room.enter(member)
        return [Enter(room.id, member.id),
                Send(member.id, self._welcome(room, member, token, False)),
                *entered, *room.lobby_update()]

    def end_session(self, room: Room) -> list[Effect]:
        """Everyone leaves at once; the room starts afresh (a new epoch, no tokens)."""
        effects: list[Effect] = [room.end_notice()]
        for member in [*room.members, *room.waiting]:
            self._forget(member)
            effects.append(Detach(member, SESSION_ENDED, "the session has ended"))
        room.clear()
        return effects

    def _report(self, room: Room, reporter: Member, msg: p.Report, now: float) -> list[Effect]:
        scope = room.id if msg.zone is None else f"{room.id}#{msg.zone}"
        try:
            verify_report(self._franking_key, plaintext=msg.text,
                          franking_key=base64.b64decode(msg.franking_key),
                          commitment=base64.b64decode(msg.commitment),
                          tag=base64.b64decode(msg.tag), room_id=scope, sender_id=msg.sender,
                          seq=msg.seq, ts=msg.ts)
        except (E2EEError, binascii.Error):
            raise ProtocolError("report_invalid", ref=msg.ref) from None
        known = self.reports.find(room=room.id, seq=msg.seq, sender=msg.sender,
                                  reporter_pseudonym=reporter.pseudonym)
        if known is not None:
            return [Reply(ReportReceived(id=known.id, ref=msg.ref))]
        if self.reports.full(room=room.id, reporter_pseudonym=reporter.pseudonym):
            raise ProtocolError("rate_limited", "You have made many reports in this room "
                                "already; the facilitators have them.", msg.ref)
        sender = room.members.get(msg.sender)
        report = self.reports.add(
            room=room.id, seq=msg.seq, sent_at=msg.ts, reported_at=int(now * 1000),
            sender=msg.sender, sender_pseudonym=sender.pseudonym if sender else "(left the room)",
            reporter_pseudonym=reporter.pseudonym, text=msg.text, reason=msg.reason)
        notice = ReportForFacilitators(report=report.to_wire())
        return [Reply(ReportReceived(id=report.id, ref=msg.ref)),
                *(Send(f.id, notice) for f in room.facilitators())]

    def remove(self, room: Room, actor: Member, target: Member, why: str) -> list[Effect]:
        """A facilitator removes (or bans) `target`: its connection closes and its token is
        forgotten."""
        if target.id == actor.id:
            raise ProtocolError("member_not_found", "You cannot remove yourself; leave instead.")
        self._forget(target.id)
        return [Detach(target.id, REMOVED, f"{why} by a facilitator"),
                *room.remove(target.id, "removed")]

    def leave(self, seat: Seat) -> list[Effect]:
        self._forget(seat.member)
        return self.rooms[seat.room].remove(seat.member, "left")

    def _forget(self, member: str) -> None:
        self.crisis.forget_member(member)
        self._drop_previous(member)
        digest = self._token_of.pop(member, None)
        if digest is not None:
            self._sessions.pop(digest, None)

    def connection_lost(self, seat: Seat, now: float) -> list[Effect]:
        """The member stays, away, for the grace period; a stale attachment changes nothing."""
        room = self.rooms[seat.room]
        if seat.member in room.waiting:
            return room.remove(seat.member, "left")
        if self.config.session.resume_grace_seconds <= 0:
            member = room.members.get(seat.member)
            if member is not None and member.attachment == seat.attachment:
                return self.leave(seat)
            return []
        return room.mark_away(seat.member, seat.attachment, now)

    # --- time ---------------------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for room in self.rooms.values():
            for member in room.expired(now):
                self._forget(member)
            effects += room.tick(now)
        for nonce in [n for n, expires in self._used_tickets.items() if expires < now]:
            del self._used_tickets[nonce]
        for signin in [s for s, until in self._ended_signins.items() if until < now]:
            del self._ended_signins[signin]
        self.bans.purge(now)
        effects += self.crisis.tick(self.rooms, now)
        return effects
