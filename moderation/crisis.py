"""The crisis desk: turns help requests, flags and facilitators' answers into incidents,
and incidents' alerts into effects (console messages, durable dispatches).

Only the person at risk and facilitators ever hear of an incident: every
message here is a directed Send, never a room broadcast. What reaches the
server from a detector is a category, a severity and a rule-pack version —
never text. Nothing here does I/O or reads a clock.

Nothing is promised before it is true. A person who asked hears "received"
at once, "on a facilitator's screen" (`help_status` `delivered`) only when a
facilitator's console says it received the alert (`alert_seen`, a machine's
receipt) or someone acknowledged it, and "a facilitator has been told"
(`acknowledged`) only when a person acknowledged it. An alert that would reach no console (no facilitator
in the room, nobody on duty on any node) goes to on-call at once.

Presses are counted per address (its keyed hash, in memory, for the press
window only) and per room: a press from an address whose earlier incident's
person has gone (left, or rejoined) joins that incident, so join → help →
leave in a loop pages once, not once per loop; "I'm worried" opens at most a
few incidents per address and window. The first press is never refused.

The room core drives the desk through spaces/ports.py Crisis (a member's
connection hands it help and "I'm okay" directly; the venue the rest);
moderation/wiring.py plugs it into a venue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from msgspec import structs

from hearth.moderation.incidents import (
    ACTIONS,
    BASES,
    CATEGORIES,
    OUTCOMES,
    SEVERITIES,
    Alert,
    IncidentDesk,
    IncidentRecord,
    IncidentRefused,
    latest_incidents,
)
from hearth.spaces import protocol as p
from hearth.spaces.effects import (
    ActElsewhere,
    Audit,
    Dispatch,
    DutyBroadcast,
    DutyRoster,
    Effect,
    Record,
    Reply,
    Send,
)
from hearth.spaces.protocol import ProtocolError
from hearth.spaces.room import Member, Room
from hearth.spaces.server_messages import (
    ConcernReceived,
    DeliveryFailing,
    DeliveryRestored,
    DutyState,
    FlagReceived,
    HelpPrompt,
    HelpReceived,
    HelpStatus,
    IncidentAlert,
    IncidentList,
    IncidentUpdate,
    OkReceived,
    ServerMessage,
)

PARTICIPANT_STATUS = {"ack": "acknowledged", "engage": "engaged", "resolve": "resolved"}
# What a person who asked is told of an incident in each state, when told again (a resume);
# an open one (or one whose contact was lost) is "delivered" once a console received it.
STANDING = {"acknowledged": "acknowledged", "engaged": "engaged",
            "external_help_requested": "engaged", "awaiting_confirmation": "engaged",
            "resolved": "resolved"}
# Only a person who asked (the button, or their own detector after they agreed) hears how
# their request goes; someone a peer or a facilitator worried about is not told.
ASKED = ("help_button", "self_detector")
CONSOLES = ("room_facilitators", "on_duty_facilitators")
ROSTER_EVERY = 2.0  # seconds between announcements of how many are on duty here
ROSTER_TTL = 3 * ROSTER_EVERY  # another node's count is forgotten after this long
PRESSES_KEPT = 128  # per address and room: the latest presses (more than any limit counts)
SWEEP_EVERY = 1.0  # seconds between sweeps of presses older than the window

Key = tuple[str, str]  # (room, address key)


def _refused(err: IncidentRefused, ref: str | None) -> ProtocolError:
    return ProtocolError(err.code, err.message, ref)


def _status(incident: IncidentRecord, status: str) -> HelpStatus:
    return HelpStatus(incident=incident.id, status=status)


@dataclass
class CrisisDesk:
    desk: IncidentDesk
    new_id: Callable[[], str]
    public_url: str = ""
    on_duty: dict[str, Member] = field(default_factory=dict)  # member id -> facilitator
    # incidents other nodes run (their rooms are owned there), as last heard: id -> wire
    elsewhere: dict[str, dict[str, Any]] = field(default_factory=dict)
    # node -> (its on-duty facilitators, when it said so)
    duty_elsewhere: dict[str, tuple[int, float]] = field(default_factory=dict)
    # (room, address) -> [(incident, last press into it)], within the press window
    presses: dict[Key, list[tuple[str, float]]] = field(default_factory=dict)
    # (room, address) -> [(incident, when)] opened or joined by "I'm worried"
    concerns: dict[Key, list[tuple[str, float]]] = field(default_factory=dict)
    # incident -> peers who were worried, to be told when a facilitator has it
    waiting: dict[str, set[str]] = field(default_factory=dict)
    # (incident, member) whose leaving the room its responders were told of
    told_gone: set[tuple[str, str]] = field(default_factory=set)
    _roster: tuple[int, float] | None = None  # (count, when) last announced
    _swept: float = float("-inf")

    # --- triggers ----------------------------------------------------------------

    def open(self, room: Room, person: Member, *, trigger: str, severity: str, category: str,
             rule_pack: str | None, now: float, ref: str | None,
             test: bool = False) -> list[Effect]:
        return self._trigger(room, person, trigger=trigger, severity=severity,
                             category=category, rule_pack=rule_pack, now=now, ref=ref,
                             test=test)[1]

    def _trigger(self, room: Room, person: Member, *, trigger: str, severity: str,
                 category: str, rule_pack: str | None, now: float, ref: str | None,
                 test: bool = False, into: str | None = None,
                 actor: str | None = None) -> tuple[IncidentRecord, list[Effect]]:
        if severity not in SEVERITIES or category not in CATEGORIES:
            raise ProtocolError("incident_invalid", "Unknown severity or category.", ref)
        try:
            incident, alerts = self.desk.open(
                incident_id=self.new_id(), room=room.id, member=person.id,
                pseudonym=person.pseudonym, trigger=trigger, severity=severity,
                category=category, rule_pack=rule_pack, now=now, test=test, into=into,
                actor=actor)
        except IncidentRefused as err:
            raise _refused(err, ref) from None
        rooms = {room.id: room}
        effects = self.alerts(alerts, rooms, now)
        if not alerts:  # (alerts() records the incident with the tiers that fired)
            effects.append(Record(incident.to_wire()))
        if incident.history[-1][1] != "open" and not any(
                a.notify in CONSOLES for a in alerts):  # joined: the consoles see it grow
            effects += self._to_responders(
                incident, IncidentUpdate(incident=incident.to_wire(), reason="joined"), rooms)
        return incident, effects

    def help(self, room: Room, person: Member, now: float, ref: str | None,
             client_id: str | None = None) -> list[Effect]:
        """A press with a client id is answered once: a resend (after a reconnection, or the
        room moving) gets the same answer and raises nothing again."""
        again = person.answered(client_id, ref)
        if again is not None:  # and where it stands: a status sent meanwhile may be lost
            return [Reply(again), *self.standing(room.id, person.id)]
        key = self._address(room.id, person)
        incident, effects = self._trigger(
            room, person, trigger="help_button", severity="high", category="help_request",
            rule_pack=None, now=now, ref=ref, into=self._rejoined(key, room, person, now))
        self._remember(self.presses, key, incident.id, now)
        received = HelpReceived(incident=incident.id, ref=ref)
        if client_id is not None:
            person.remember(client_id, received)
        return [Reply(received), *effects]

    def flag(self, room: Room, person: Member, *, trigger: str, severity: str, category: str,
             rule_pack: str | None, now: float, ref: str | None,
             actor: str | None = None) -> list[Effect]:
        """A detector fired (category, severity, pack: never text), or a manual flag."""
        incident, effects = self._trigger(room, person, trigger=trigger, severity=severity,
                                          category=category, rule_pack=rule_pack, now=now,
                                          ref=ref, actor=actor)
        # the person's own request: they hear how it goes
        mine = incident.id if trigger == "self_detector" else None
        return [Reply(FlagReceived(incident=mine, ref=ref)), *effects]

    def flagged(self, room: Room, member: Member, msg: p.Flag, now: float) -> list[Effect]:
        """A `flag` from `member`: its own detector fired (never text: category, severity,
        rule pack), or a facilitator flags someone (a participant may not: "worried" is
        theirs). A flag with a client id is answered once, as a help press is: the person
        who said yes to "do you want a facilitator?" as the link dropped is not forgotten,
        and their page's resend is not a second flag."""
        again = member.answered(msg.id, msg.ref)
        if again is not None:  # and where their own request stands (a status may be lost)
            return [Reply(again), *self.standing(room.id, member.id)]
        if msg.member is None or msg.member == member.id:
            if msg.manual:
                raise ProtocolError("bad_message", "flag.manual: a flag about yourself is a "
                                                   "request for help; use \"help\".", msg.ref)
            person, trigger = member, "self_detector"
        else:
            if member.role == "participant":
                refused = ProtocolError("forbidden", "Only facilitators can flag someone else; "
                                                     "use \"worried\".", msg.ref)
                return [Reply(refused.as_message()),
                        Audit(member.actor, "flag", None, room.id, "refused:forbidden")]
            person = room.target(msg.member, msg.ref)
            trigger = "facilitator_flag" if msg.manual else "facilitator_detector"
        effects = self.flag(room, person, trigger=trigger, severity=msg.severity,
                            category=msg.category, rule_pack=msg.pack, now=now, ref=msg.ref,
                            actor=None if trigger == "self_detector" else member.actor)
        received = effects[0]
        if msg.id is not None and isinstance(received, Reply) \
                and isinstance(received.message, FlagReceived):
            member.remember(msg.id, received.message)
        return effects

    def worried(self, room: Room, reporter: Member, person: Member, now: float,
                ref: str | None) -> list[Effect]:
        """A peer's concern; the reporter is not recorded, only told (here, in memory) when a
        facilitator has it."""
        key = self._address(room.id, reporter)
        recent = {i for i, at in self.concerns.get(key, ())
                  if now - at <= self.desk.escalation.press_window}
        live = self.desk.live_for(room.id, person.id)
        if live is None and len(recent) >= self.desk.escalation.concerns_per_window:
            raise ProtocolError("rate_limited", "You have already told the facilitators about "
                                "several people in the last few minutes; please wait a little "
                                "before telling them about someone else.", ref)
        incident, effects = self._trigger(room, person, trigger="peer_concern",
                                          severity="medium", category="concern", rule_pack=None,
                                          now=now, ref=ref)
        self._remember(self.concerns, key, incident.id, now)
        reply = Reply(ConcernReceived(incident=incident.id, ref=ref))
        if incident.told():  # facilitators have this person in hand already
            return [reply, *effects, Send(reporter.id, _status(incident, "delivered"))]
        self.waiting.setdefault(incident.id, set()).add(reporter.id)
        return [reply, *effects]

    def im_ok(self, rooms: Mapping[str, Room], person: Member, now: float,
              ref: str | None) -> list[Effect]:
        live = [i for i in self.desk.incidents.values()
                if i.member == person.id and i.state != "resolved"]
        if not live:
            raise ProtocolError("incident_not_found", "There is no open request for help.", ref)
        incident = self.desk.apply(live[0].id, "participant_ok", None, now)
        return [Reply(OkReceived(incident=incident.id, ref=ref)),
                Record(incident.to_wire()),
                *self._to_responders(incident, IncidentUpdate(incident=incident.to_wire(),
                                                              reason="participant_ok"), rooms)]

    def standing(self, room: str, person: str) -> list[Effect]:
        """Where the person's own latest request stands, for a resume: `help_status` goes to
        their connection, and one sent while it was down was lost with it."""
        mine = [i for i in self.desk.incidents.values() if i.room == room
                and i.member == person and i.trigger in ASKED and not i.test]
        if not mine:
            return []
        incident = max(mine, key=lambda i: i.opened_at)
        status = STANDING.get(incident.state)
        if status == "engaged" and not incident.last(("engage",)):
            status = "acknowledged"  # external help asked for without a private corner
        if status is None and incident.told():
            status = "delivered"
        elif status is None and incident.state == "open" \
                and incident.last(("responder_left",)) == incident.asked_at():
            status = "reopened"  # whoever had it left: never "a facilitator is with you"
        effects: list[Effect] = [] if status is None else [Send(person, _status(incident,
                                                                                status))]
        if incident.state in ("open", "acknowledged", "lost_contact") and self.desk.prompted(
                incident):  # "please call a helpline now" was said while they were away
            effects.append(Send(person, HelpPrompt(incident=incident.id)))
        return effects

    # --- presses per address -------------------------------------------------------------

    @staticmethod
    def _address(room: str, member: Member) -> Key:
        """Who pressed, as far as presses are counted: the keyed hash of the address (today's
        salt), or the member where there is none."""
        if member.address is not None:
            day, digest = member.address
            return room, f"{day}:{digest.hex()}"
        return room, f"member:{member.id}"

    def _rejoined(self, key: Key, room: Room, person: Member, now: float) -> str | None:
        """The live incident an earlier press from this address opened, if its person is this
        one or gone (left, or away): the same person pressing again, maybe after a rejoin.
        Someone else still here at the same address gets their own."""
        for incident_id, at in reversed(self.presses.get(key, [])):
            incident = self.desk.incidents.get(incident_id)
            if now - at > self.desk.escalation.press_window or incident is None \
                    or incident.state == "resolved":
                continue
            there = room.members.get(incident.member) or room.waiting.get(incident.member)
            if incident.member == person.id or there is None or there.away_since is not None:
                return incident_id
        return None

    @staticmethod
    def _remember(book: dict[Key, list[tuple[str, float]]], key: Key, incident: str,
                  now: float) -> None:
        entries = [(i, at) for i, at in book.get(key, []) if i != incident]
        book[key] = [*entries[-(PRESSES_KEPT - 1):], (incident, now)]

    def _forget_old(self, now: float) -> None:
        if now - self._swept < SWEEP_EVERY:
            return
        self._swept = now
        window = self.desk.escalation.press_window
        for book in (self.presses, self.concerns):
            for key in list(book):
                kept = [(i, at) for i, at in book[key] if now - at <= window]
                if kept:
                    book[key] = kept
                else:
                    del book[key]
        for incident_id in [i for i in self.waiting if i not in self.desk.incidents
                            or self.desk.incidents[i].state == "resolved"]:
            del self.waiting[incident_id]
        self.told_gone = {(i, m) for i, m in self.told_gone if i in self.desk.incidents
                          and self.desk.incidents[i].state != "resolved"}

    # --- facilitators ------------------------------------------------------------------

    def incident(self, rooms: Mapping[str, Room], actor: str, msg: p.Incident,
                 now: float) -> list[Effect]:
        """A facilitator's `incident` message (a console's receipt is `alert_seen`)."""
        if msg.action not in ACTIONS:
            raise ProtocolError("bad_message", f"incident.action: expected one of {ACTIONS}.",
                                msg.ref)
        return self.act(rooms, actor, msg.incident, msg.action, msg.outcome, now, msg.ref,
                        msg.basis)

    def act(self, rooms: Mapping[str, Room], actor: str, incident_id: str, action: str,
            outcome: str | None, now: float, ref: str | None,
            basis: str | None = None) -> list[Effect]:
        """A responder moves the incident on, or (`seen`) says their console received its
        alert; `actor` is an account name (never a person's)."""
        if action not in (*ACTIONS, "seen"):
            raise ProtocolError("bad_message", f"incident.action: expected one of {ACTIONS}.", ref)
        if action == "resolve" and outcome not in OUTCOMES:
            raise ProtocolError("incident_outcome",
                                "Resolving needs an outcome: " + ", ".join(OUTCOMES) + ".", ref)
        if action == "external" and basis not in BASES:
            raise ProtocolError("incident_basis", ref=ref)
        if incident_id not in self.desk.incidents and incident_id in self.elsewhere:
            return [ActElsewhere(str(self.elsewhere[incident_id]["room"]), incident_id, action,
                                 outcome, actor, ref, basis)]
        before = self.desk.incidents.get(incident_id)
        room = rooms.get(before.room) if before is not None else None
        in_room = room is not None and any(f.account == actor for f in room.facilitators())
        try:
            incident = self.desk.apply(incident_id, action, actor, now, outcome=outcome,
                                       basis=basis, in_room=in_room)
        except IncidentRefused as err:
            raise _refused(err, ref) from None
        if incident is before:  # a receipt this console already gave
            return []
        update = IncidentUpdate(incident=incident.to_wire(), reason=action)
        effects: list[Effect] = [Record(incident.to_wire()),
                                 *self._to_responders(incident, update, rooms)]
        asked = not incident.test and incident.trigger in ASKED
        status = PARTICIPANT_STATUS.get(action)
        if status is not None and asked:
            effects.append(Send(incident.member, _status(incident, status)))
        if before is not None and not before.told() and incident.told():
            if action == "seen" and asked:
                effects.append(Send(incident.member, _status(incident, "delivered")))
            effects += [Send(m, _status(incident, "delivered"))
                        for m in sorted(self.waiting.pop(incident_id, ())) if m != incident.member]
        if action == "resolve":
            self.waiting.pop(incident_id, None)
        if action != "seen":
            effects += self._dispatch_all(incident, f"incident.{action}", None, False)
        return effects

    def acknowledge_by_link(self, rooms: Mapping[str, Room], incident_id: str,
                            now: float) -> tuple[str, list[Effect]]:
        """On-call followed an alert's acknowledgement link (web/ack_link.py checked it): an
        open incident, or one whose contact was lost, is acknowledged by "on-call"; in any
        other state nothing changes. Returns the state the incident is in afterwards."""
        incident = self.desk.incidents.get(incident_id)
        if incident is None:
            raise ProtocolError("incident_not_found")
        if incident.state not in ("open", "lost_contact"):
            return incident.state, []
        effects = self.act(rooms, "on-call", incident_id, "ack", None, now, None)
        return self.desk.incidents[incident_id].state, effects

    def set_duty(self, member: Member, on: bool, now: float) -> list[Effect]:
        if on:
            self.on_duty[member.id] = member
        else:
            self.on_duty.pop(member.id, None)
        return [Reply(DutyState(on=on, open=self._open_incidents())),
                *self._announce(now, force=True)]

    def _open_incidents(self) -> list[dict[str, Any]]:
        """Every open incident: those run here, and those other nodes run as last heard."""
        live = {i.id: i.to_wire() for i in self.desk.incidents.values() if i.state != "resolved"}
        for incident_id, wire in self.elsewhere.items():
            live.setdefault(incident_id, wire)
        return list(live.values())

    def relist(self) -> list[Effect]:
        """Every on-duty console here is handed the open incidents again (`duty`): this node
        may have missed another node's word of some (a message between nodes lost)."""
        if not self.on_duty:
            return []
        state = DutyState(on=True, open=self._open_incidents())
        return [Send(member, state) for member in self.on_duty]

    def heard_duty(self, node: str, count: int, now: float) -> None:
        """Another node says how many facilitators are on duty there (every ROSTER_EVERY)."""
        self.duty_elsewhere[node] = (count, now)

    def duty_count(self) -> int:
        """On-duty facilitators here whose console is connected."""
        return sum(1 for m in self.on_duty.values() if m.away_since is None)

    def anyone_on_duty(self, now: float) -> bool:
        return self.duty_count() > 0 or any(
            count > 0 and now - heard <= ROSTER_TTL for count, heard in self.duty_elsewhere.values())

    def _announce(self, now: float, force: bool = False) -> list[Effect]:
        count = self.duty_count()
        if not force and self._roster is not None and self._roster[0] == count \
                and now - self._roster[1] < ROSTER_EVERY:
            return []
        self._roster = (count, now)
        return [DutyRoster(count)]

    @staticmethod
    def latest(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """Each incident's latest state in a log's records (a node's journal, the shared
        incident log), by incident id."""
        return latest_incidents(records)

    def learn(self, wire: dict[str, Any]) -> None:
        """Another node recorded an incident's new state: on-duty facilitators here can see
        it and act on it (the action goes to that node)."""
        incident_id = str(wire.get("id"))
        if incident_id in self.desk.incidents:
            return
        if wire.get("state") == "resolved":
            self.elsewhere.pop(incident_id, None)
        else:
            self.elsewhere[incident_id] = wire

    def room_of(self, incident_id: str) -> str | None:
        """The room of an incident run here (None if this node does not run it)."""
        found = self.desk.incidents.get(incident_id)
        return found.room if found is not None else None

    def runs_in(self, room: str) -> bool:
        """An incident of this room is live here: the node must keep the room (and its
        timers) until it is resolved, even with nobody in it."""
        return any(i.room == room and i.state != "resolved" for i in self.desk.incidents.values())

    def hand_over(self, room: str) -> None:
        """Another node runs the room now, and its incidents with it (from the saved state)."""
        for incident in [i for i in self.desk.incidents.values() if i.room == room]:
            del self.desk.incidents[incident.id]
            if incident.state != "resolved":
                self.elsewhere[incident.id] = incident.to_wire()

    def export(self, room: str) -> list[dict[str, Any]]:
        """The room's incidents, to go with the room to the node that runs it next."""
        return self.desk.export(room)

    def adopt(self, states: list[Any]) -> int:
        """This node took over a room: its live incidents (and their timers) run here now."""
        taken = self.desk.adopt(states)
        for incident_id in self.desk.incidents:
            self.elsewhere.pop(incident_id, None)
        return taken

    def forget_member(self, member: str) -> None:
        self.on_duty.pop(member, None)

    def listing(self, room: Room) -> list[Effect]:
        return [Reply(IncidentList(incidents=[
            i.to_wire() for i in self.desk.incidents.values() if i.room == room.id]))]

    # --- escalation ---------------------------------------------------------------------

    def failing(self, rooms: Mapping[str, Room], channel: str, incident_id: str,
                attempts: int, delivered: bool = False) -> list[Effect]:
        """An on-call alert of the incident did not get through (`attempts` failed tries so
        far): its room's facilitators and everyone on duty hear it — on-call may not know.
        With `delivered`, one that had failed got through at last: the same consoles hear
        that on-call has it now. The person hears neither: nothing about on-call is theirs."""
        kind = DeliveryRestored if delivered else DeliveryFailing
        message = kind(channel=channel, incident=incident_id, attempts=attempts)
        incident = self.desk.incidents.get(incident_id)
        if incident is None:  # (another node's, adopted from its outbox)
            return [DutyBroadcast(message)]
        return self._to_responders(incident, message, rooms)

    def tick(self, rooms: Mapping[str, Room], now: float) -> list[Effect]:
        self._forget_old(now)
        return [*self._responders_gone(rooms, now), *self._people_gone(rooms),
                *self.alerts(self.desk.tick(now), rooms, now), *self._announce(now)]

    def _people_gone(self, rooms: Mapping[str, Room]) -> list[Effect]:
        """The person of a live incident has left its room: every responder hears it once
        (on-duty consoles elsewhere would not see them go). The incident stays as it is:
        a person decides ("lost contact")."""
        effects: list[Effect] = []
        for incident in list(self.desk.incidents.values()):
            room = rooms.get(incident.room)
            key = (incident.id, incident.member)
            if incident.state == "resolved" or incident.test or room is None \
                    or key in self.told_gone or incident.member in room.members \
                    or incident.member in room.waiting:
                continue
            self.told_gone.add(key)
            effects += self._to_responders(
                incident, IncidentUpdate(incident=incident.to_wire(), reason="person_left"), rooms)
        return effects

    def _responders_gone(self, rooms: Mapping[str, Room], now: float) -> list[Effect]:
        """An incident claimed from the room whose every claimant has left the room (left,
        removed, or their console's grace ran out) is open again: the consoles hear at once,
        and the person no longer reads that a facilitator is coming."""
        effects: list[Effect] = []
        for incident in list(self.desk.incidents.values()):
            # (external help asked for: its reminders run on whoever had it)
            if incident.state not in ("acknowledged", "engaged") or not incident.claimed_by:
                continue
            room = rooms.get(incident.room)
            if room is None or any(f.account in incident.claimed_by for f in room.facilitators()):
                continue
            incident, alerts = self.desk.reopen(incident.id, now)
            effects += self.alerts(alerts, rooms, now)
            if not incident.test and incident.trigger in ASKED:
                effects.append(Send(incident.member, _status(incident, "reopened")))
        return effects

    def alerts(self, alerts: list[Alert], rooms: Mapping[str, Room],
               now: float) -> list[Effect]:
        """What the fired tiers ask for; first a Record of each incident, since which tiers
        fired is part of its state (a node that runs it on must not fire them again)."""
        fired = {alert.incident.id: alert.incident for alert in alerts}
        effects: list[Effect] = [Record(incident.to_wire()) for incident in fired.values()]
        for incident_id in fired:
            batch = self._reach([a for a in alerts if a.incident.id == incident_id], rooms, now)
            for alert in batch:
                effects += self._alert(alert, rooms)
        return effects

    def _reach(self, batch: list[Alert], rooms: Mapping[str, Room], now: float) -> list[Alert]:
        """Consoles first, never nobody: an alert for the room's facilitators when none is
        connected goes to everyone on duty as well; one that reaches no console at all goes
        to on-call at once. A press only noted (on-call was paged for the last one, moments
        ago) goes to everyone on duty when nobody is in the room."""
        incident = batch[0].incident
        room = rooms.get(incident.room)
        in_room = room is not None and any(f.away_since is None for f in room.facilitators())
        paging = [a for a in batch if a.cause != "press_noted"]
        wanted = {a.notify for a in paging}
        if not paging:
            if in_room or incident.test or any(a.notify != "room_facilitators" for a in batch):
                return batch
            return [*batch, replace(batch[0], notify="on_duty_facilitators")]
        if not wanted & set(CONSOLES) or incident.test:
            return batch
        on_duty = self.anyone_on_duty(now)
        base = next(a for a in paging if a.notify in CONSOLES)
        extra: list[Alert] = []
        if "room_facilitators" in wanted and not in_room and "on_duty_facilitators" not in wanted:
            extra.append(replace(base, notify="on_duty_facilitators"))
            wanted.add("on_duty_facilitators")
        heard = ("room_facilitators" in wanted and in_room) or (
            "on_duty_facilitators" in wanted and on_duty)
        if not heard and "on_call_webhook" not in wanted:
            extra.append(replace(base, notify="on_call_webhook", cause="no_facilitator"))
        return [*batch, *extra]

    def _alert(self, alert: Alert, rooms: Mapping[str, Room]) -> list[Effect]:
        incident = alert.incident
        message = IncidentAlert(incident=incident.to_wire(), reason="alert", tier=alert.tier,
                                notify=alert.notify, sound=alert.sound, cause=alert.cause)
        room = rooms.get(incident.room)
        match alert.notify:
            case "room_facilitators":
                return [Send(f.id, message) for f in room.facilitators()] if room else []
            case "on_duty_facilitators":
                return [DutyBroadcast(message)]
            case "on_call_webhook" | "secondary_on_call":
                return self._dispatch_all(incident, "incident.alert", alert.tier,
                                          alert.notify == "secondary_on_call", alert.cause)
            case "admin":
                return [Dispatch("email:admin", self.payload(incident, "incident.admin",
                                                             alert.tier, alert.cause)),
                        DutyBroadcast(structs.replace(message, reason="admin"))]
            case "participant_prompt" if not incident.test and incident.trigger in ASKED:
                return [Send(incident.member, HelpPrompt(incident=incident.id))]
        return []

    def _dispatch_all(self, incident: IncidentRecord, event: str, tier: int | None,
                      secondary: bool, cause: str | None = None) -> list[Effect]:
        payload = self.payload(incident, event, tier, cause)
        channel = "secondary" if secondary else "primary"
        return [Dispatch(f"webhook:{channel}", payload), Dispatch(f"email:{channel}", payload)]

    def payload(self, incident: IncidentRecord, event: str, tier: int | None,
                cause: str | None = None) -> dict[str, Any]:
        """The minimal payload: no identity, no content; a link that needs a login."""
        payload = {"event": event, "incident": incident.id, "severity": incident.severity,
                   "trigger": incident.trigger, "state": incident.state, "tier": tier,
                   "opened_at": int(incident.opened_at * 1000), "test": incident.test,
                   "link": f"{self.public_url}/console#incident-{incident.id}"}
        if cause is not None:
            payload["cause"] = cause
        if incident.external_basis is not None:
            payload["external_basis"] = incident.external_basis
        return payload

    def _to_responders(self, incident: IncidentRecord, message: ServerMessage,
                       rooms: Mapping[str, Room]) -> list[Effect]:
        """The incident's room facilitators and everyone on duty (on any node), once each."""
        room = rooms.get(incident.room)
        here = tuple(f.id for f in room.facilitators()) if room is not None else ()
        return [*(Send(m, message) for m in here), DutyBroadcast(message, exclude=here)]
