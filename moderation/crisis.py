"""The crisis desk: turns help requests, flags and facilitators' answers into incidents,
and incidents' alerts into effects (console messages, durable dispatches).

Only the person at risk and facilitators ever hear of an incident: every
message here is a directed Send, never a room broadcast. What reaches the
server from a detector is a category, a severity and a rule-pack version —
never text. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hearth.moderation.incidents import (
    CATEGORIES,
    OUTCOMES,
    SEVERITIES,
    Alert,
    Incident,
    IncidentDesk,
    IncidentRefused,
)
from hearth.spaces.effects import ActElsewhere, Dispatch, Duty, Effect, Record, Reply, Send
from hearth.spaces.protocol import ProtocolError
from hearth.spaces.room import Member, Room

ACTIONS = ("ack", "engage", "external", "await", "lost", "resolve")
PARTICIPANT_STATUS = {"ack": "acknowledged", "engage": "engaged", "resolve": "resolved"}
# Only a person who asked (the button, or their own detector after they agreed) hears how
# their request goes; someone a peer or a facilitator worried about is not told.
ASKED = ("help_button", "self_detector")


def _refused(err: IncidentRefused, ref: str | None) -> ProtocolError:
    return ProtocolError(err.code, err.message, ref)


@dataclass
class CrisisDesk:
    desk: IncidentDesk
    new_id: Callable[[], str]
    public_url: str = ""
    on_duty: dict[str, Member] = field(default_factory=dict)  # member id -> facilitator
    # incidents other nodes run (their rooms are owned there), as last heard: id -> wire
    elsewhere: dict[str, dict[str, Any]] = field(default_factory=dict)

    # --- triggers ----------------------------------------------------------------

    def open(self, room: Room, person: Member, *, trigger: str, severity: str, category: str,
             rule_pack: str | None, now: float, ref: str | None,
             test: bool = False) -> list[Effect]:
        if severity not in SEVERITIES or category not in CATEGORIES:
            raise ProtocolError("incident_invalid", "Unknown severity or category.", ref)
        try:
            incident, alerts = self.desk.open(
                incident_id=self.new_id(), room=room.id, member=person.id,
                pseudonym=person.pseudonym, trigger=trigger, severity=severity,
                category=category, rule_pack=rule_pack, now=now, test=test)
        except IncidentRefused as err:
            raise _refused(err, ref) from None
        if not alerts:  # (alerts() records the incident with the tiers that fired)
            return [Record(incident.to_wire())]
        return self.alerts(alerts, {room.id: room})

    def help(self, room: Room, person: Member, now: float, ref: str | None) -> list[Effect]:
        effects = self.open(room, person, trigger="help_button", severity="high",
                            category="help_request", rule_pack=None, now=now, ref=ref)
        incident = next(i for i in self.desk.incidents.values()
                        if i.member == person.id and i.state != "resolved")
        reply: dict[str, Any] = {"type": "help_received", "incident": incident.id}
        if ref is not None:
            reply["ref"] = ref
        return [Reply(reply), *effects]

    def im_ok(self, rooms: dict[str, Room], person: Member, now: float,
              ref: str | None) -> list[Effect]:
        live = [i for i in self.desk.incidents.values()
                if i.member == person.id and i.state != "resolved"]
        if not live:
            raise ProtocolError("incident_not_found", "There is no open request for help.", ref)
        incident = self.desk.note(live[0].id, "participant_ok", None, now)
        reply: dict[str, Any] = {"type": "ok_received", "incident": incident.id}
        if ref is not None:
            reply["ref"] = ref
        return [Reply(reply), Record(incident.to_wire()),
                *self._to_responders(incident, {"type": "incident", "incident": incident.to_wire(),
                                                "reason": "participant_ok"}, rooms)]

    # --- facilitators ------------------------------------------------------------------

    def act(self, rooms: dict[str, Room], actor: str, incident_id: str, action: str,
            outcome: str | None, now: float, ref: str | None) -> list[Effect]:
        """A responder moves the incident on; `actor` is an account name (never a person's)."""
        if action not in ACTIONS:
            raise ProtocolError("bad_message", f"incident.action: expected one of {ACTIONS}.", ref)
        if action == "resolve" and outcome not in OUTCOMES:
            raise ProtocolError("incident_outcome",
                                "Resolving needs an outcome: " + ", ".join(OUTCOMES) + ".", ref)
        if incident_id not in self.desk.incidents and incident_id in self.elsewhere:
            return [ActElsewhere(str(self.elsewhere[incident_id]["room"]), incident_id, action,
                                 outcome, actor, ref)]
        try:
            incident = self.desk.apply(incident_id, action, actor, now, outcome=outcome)
        except IncidentRefused as err:
            raise _refused(err, ref) from None
        update = {"type": "incident", "incident": incident.to_wire(), "reason": action}
        effects: list[Effect] = [Record(incident.to_wire()),
                                 *self._to_responders(incident, update, rooms)]
        status = PARTICIPANT_STATUS.get(action)
        if status is not None and not incident.test and incident.trigger in ASKED:
            effects.append(Send(incident.member, {"type": "help_status", "incident": incident.id,
                                                  "status": status}))
        effects += self._dispatch_all(incident, f"incident.{action}", tier=None, secondary=False)
        return effects

    def set_duty(self, member: Member, on: bool) -> list[Effect]:
        if on:
            self.on_duty[member.id] = member
        else:
            self.on_duty.pop(member.id, None)
        live = {i.id: i.to_wire() for i in self.desk.incidents.values() if i.state != "resolved"}
        for incident_id, wire in self.elsewhere.items():
            live.setdefault(incident_id, wire)
        return [Reply({"type": "duty", "on": on, "open": list(live.values())})]

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

    def adopt(self, states: list[Any]) -> int:
        """This node took over a room: its live incidents (and their timers) run here now."""
        taken = self.desk.adopt(states)
        for incident_id in self.desk.incidents:
            self.elsewhere.pop(incident_id, None)
        return taken

    def forget_member(self, member: str) -> None:
        self.on_duty.pop(member, None)

    def listing(self, room: Room) -> list[Effect]:
        return [Reply({"type": "incidents", "incidents": [
            i.to_wire() for i in self.desk.incidents.values() if i.room == room.id]})]

    # --- escalation ---------------------------------------------------------------------

    def tick(self, rooms: dict[str, Room], now: float) -> list[Effect]:
        return self.alerts(self.desk.tick(now), rooms)

    def alerts(self, alerts: list[Alert], rooms: dict[str, Room]) -> list[Effect]:
        """What the fired tiers ask for; first a Record of each incident, since which tiers
        fired is part of its state (a node that runs it on must not fire them again)."""
        fired = {alert.incident.id: alert.incident for alert in alerts}
        effects: list[Effect] = [Record(incident.to_wire()) for incident in fired.values()]
        for alert in alerts:
            incident = alert.incident
            message = {"type": "incident", "incident": incident.to_wire(), "reason": "alert",
                       "tier": alert.tier, "notify": alert.notify, "sound": alert.sound}
            room = rooms.get(incident.room)
            if alert.notify == "room_facilitators" and room is not None:
                effects += [Send(f.id, message) for f in room.facilitators()]
            elif alert.notify == "on_duty_facilitators":
                effects.append(Duty(message))
            elif alert.notify == "on_call_webhook":
                effects += self._dispatch_all(incident, "incident.alert", alert.tier, False)
            elif alert.notify == "secondary_on_call":
                effects += self._dispatch_all(incident, "incident.alert", alert.tier, True)
            elif alert.notify == "admin":
                effects.append(Dispatch("email:admin", self.payload(incident, "incident.admin",
                                                                     alert.tier)))
                effects.append(Duty({**message, "reason": "admin"}))
            elif (alert.notify == "participant_prompt" and not incident.test
                  and incident.trigger in ASKED):
                effects.append(Send(incident.member, {"type": "help_prompt",
                                                      "incident": incident.id}))
        return effects

    def _dispatch_all(self, incident: Incident, event: str, tier: int | None,
                      secondary: bool) -> list[Effect]:
        payload = self.payload(incident, event, tier)
        channel = "secondary" if secondary else "primary"
        return [Dispatch(f"webhook:{channel}", payload), Dispatch(f"email:{channel}", payload)]

    def payload(self, incident: Incident, event: str, tier: int | None) -> dict[str, Any]:
        """The minimal payload: no identity, no content; a link that needs a login."""
        return {"event": event, "incident": incident.id, "severity": incident.severity,
                "trigger": incident.trigger, "state": incident.state, "tier": tier,
                "opened_at": int(incident.opened_at * 1000), "test": incident.test,
                "link": f"{self.public_url}/console#incident-{incident.id}"}

    def _to_responders(self, incident: Incident, message: dict[str, Any],
                       rooms: dict[str, Room]) -> list[Effect]:
        """The incident's room facilitators and everyone on duty (on any node), once each."""
        room = rooms.get(incident.room)
        here = tuple(f.id for f in room.facilitators()) if room is not None else ()
        return [*(Send(m, message) for m in here), Duty(message, exclude=here)]
