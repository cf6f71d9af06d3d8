"""Facilitator controls: who may use them, what each does, and what the audit log keeps.

A facilitator's message (protocol.FACILITATOR_TYPES) comes here from the venue,
which takes this as its `controls` (spaces/ports.py Controls). Rules, in one
place:

- One role check for every control: a participant is refused (`forbidden`)
  and the refusal is audited — once a minute per member at most
  (REFUSAL_AUDIT_SECONDS): each refusal is answered and counted in the metrics,
  but a client repeating one at its message rate would otherwise grow the audit
  log (an fsync'd file, and a Redis stream) by hundreds of lines a second.
- Every control is audited with its outcome (who did what to whom, never what
  was said), but for a console's receipt of an alert and the report listing
  (the receipt is in the incident); an incident run on another node is audited
  there, here only as `forwarded`.
- What a control does to the room is the room's own state change
  (spaces/room.py: mute, lobby, lock, capacity, slow mode, hiding, corners,
  the talking stick); to members' sessions the venue's (remove, admit, end the
  session); bans, reports and incidents are moderation's.

No I/O and no clock: `now` comes in with every call.
"""

from __future__ import annotations

from hearth.spaces import protocol as p
from hearth.spaces.effects import ActElsewhere, Audit, Detach, Effect, Reply
from hearth.spaces.protocol import ProtocolError
from hearth.spaces.room import Member, Room
from hearth.spaces.server_messages import ReportList
from hearth.spaces.venue import DENIED, Venue

UNAUDITED = ("list_reports", "alert_seen")
REFUSAL_AUDIT_SECONDS = 60.0


def facilitate(venue: Venue, room: Room, actor: Member, msg: p.ClientMessage,
               now: float) -> list[Effect]:
    """A facilitator control from `actor`, checked and audited."""
    kind = p.wire_type(msg)
    target = _target_name(room, msg)
    if actor.role == "participant":  # the one role check for every facilitator control
        refused = ProtocolError("forbidden", "Only facilitators can do that.", msg.ref)
        venue.stats.refused["forbidden"] += 1
        if now - actor.refusal_audited < REFUSAL_AUDIT_SECONDS:
            return [Reply(refused.as_message())]
        actor.refusal_audited = now
        return [Reply(refused.as_message()),
                Audit(actor.actor, kind, target, room.id, "refused:forbidden")]
    effects = _control(venue, room, actor, msg, now)
    if kind not in UNAUDITED:
        elsewhere = any(isinstance(e, ActElsewhere) for e in effects)
        effects.append(Audit(actor.actor, kind, target, room.id,
                             "forwarded" if elsewhere else "ok"))
    return effects


def _control(venue: Venue, room: Room, actor: Member, msg: p.ClientMessage,
             now: float) -> list[Effect]:
    match msg:
        case p.ListReports():
            return [Reply(ReportList(
                reports=[r.to_wire() for r in venue.reports.for_room(room.id)]))]
        case p.Remove(member=target, ref=ref):
            return venue.remove(room, actor, room.target(target, ref), "removed")
        case p.Ban(member=target, minutes=minutes, ref=ref):
            banned = room.target(target, ref)
            effects = venue.remove(room, actor, banned, "banned")
            venue.bans.ban(room.id, banned, now + 60 * minutes)
            return effects
        case p.Mute(member=target, ref=ref):
            return room.mute(room.target(target, ref))
        case p.AskUnmute(member=target, ref=ref):
            return room.ask_unmute(room.target(target, ref), actor)
        case p.Stick(on=on):
            return room.set_stick(on)
        case p.GiveStick(member=None, ref=ref):
            return room.give_stick(None, ref)
        case p.GiveStick(member=str(target), ref=ref):
            return room.give_stick(room.target(target, ref), ref)
        case p.Lobby(on=on):
            return room.set_lobby(on)
        case p.Admit(member=target, ref=ref):
            return venue.admit(room, target, ref)
        case p.Deny(member=target, ref=ref):
            if target not in room.waiting:
                raise ProtocolError("member_not_found", ref=ref)
            return [Detach(target, DENIED, "not admitted this time"),
                    *room.remove(target, "removed")]
        case p.Lock(on=on):
            return room.set_lock(on)
        case p.Capacity(value=value):
            return room.set_capacity(value)
        case p.Hide(seq=seq, zone=zone):
            return room.hide(seq, actor, zone)
        case p.SlowMode(seconds=seconds):
            return room.set_slow_mode(seconds)
        case p.PrivateCorner(corner=corner, member=target, ref=ref):
            return room.private_corner(corner, actor, room.target(target, ref))
        case p.ReleaseCorner(corner=corner):
            return room.release_corner(corner)
        case p.EndSession():
            return venue.end_session(room)
        case p.Incident():
            return venue.crisis.incident(venue.rooms, actor.actor, msg, now)
        case p.AlertSeen(incident=incident, ref=ref):
            return venue.crisis.act(venue.rooms, actor.actor, incident, "seen", None, now, ref)
        case p.Duty(on=on):
            return venue.crisis.set_duty(actor, on, now)
        case p.ListIncidents():
            return venue.crisis.listing(room)
    raise ProtocolError("unknown_type")  # pragma: no cover - FACILITATOR_TYPES are all here


def _target_name(room: Room, msg: p.ClientMessage) -> str | None:
    """The pseudonym a control is aimed at, for the audit log."""
    target = getattr(msg, "member", None)
    if not isinstance(target, str):
        return None
    found = room.members.get(target) or room.waiting.get(target)
    return found.pseudonym if found else None
