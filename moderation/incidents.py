"""Crisis incidents: an explicit state machine with escalation tiers on timers.

States and transitions (the one table; anything else is refused):

    open ──ack──► acknowledged ──engage──► engaged ──external──► external_help_requested
      │                 │                     │                        │ await
      │                 └──────external───────┘                        ▼
      │                                                     awaiting_confirmation
      └──── any state but resolved ──lost──► lost_contact (a follow-up is due)
      └──── any state but resolved ──resolve(outcome)──► resolved

Escalation: each trigger kind has tiers; a tier fires `after` seconds from the
opening unless the incident has by then reached its `stop_when` state
(acknowledged, or engaged). A tier fires once. Ticking at any rate gives the
same result: a tier is due when now >= opened + after, never before.

What is recorded is metadata only (see ../shared/reference/crisis.md): id,
room, pseudonym, trigger, rule pack and category, severity, timestamps of
each change, responders, outcome. Never message text, matched phrases,
audio, addresses or tokens. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

State = Literal["open", "acknowledged", "engaged", "external_help_requested",
                "awaiting_confirmation", "lost_contact", "resolved"]
Trigger = Literal["help_button", "self_detector", "facilitator_detector", "facilitator_flag",
                  "peer_concern", "drill"]
Outcome = Literal["de_escalated", "external_help_confirmed", "unreachable", "not_a_concern",
                  "test", "handed_off"]
Notify = Literal["room_facilitators", "on_duty_facilitators", "on_call_webhook",
                 "secondary_on_call", "admin", "participant_prompt"]

STATES: Final = ("open", "acknowledged", "engaged", "external_help_requested",
                  "awaiting_confirmation", "lost_contact", "resolved")
TRIGGERS: Final = ("help_button", "self_detector", "facilitator_detector", "facilitator_flag",
                   "peer_concern", "drill")
OUTCOMES: Final = ("de_escalated", "external_help_confirmed", "unreachable", "not_a_concern",
                   "test", "handed_off")
SEVERITIES: Final = ("low", "medium", "high")
CATEGORIES: Final = ("means_method", "intent", "timeframe", "farewell", "harm_from_others",
                     "help_request", "concern")

# event -> (states it may come from, state it leads to)
TRANSITIONS: Final[Mapping[str, tuple[frozenset[str], str]]] = {
    "ack": (frozenset({"open", "lost_contact"}), "acknowledged"),
    "engage": (frozenset({"open", "acknowledged", "lost_contact"}), "engaged"),
    "external": (frozenset({"acknowledged", "engaged"}), "external_help_requested"),
    "await": (frozenset({"external_help_requested"}), "awaiting_confirmation"),
    "lost": (frozenset({"open", "acknowledged", "engaged", "external_help_requested",
                        "awaiting_confirmation"}), "lost_contact"),
    "resolve": (frozenset({"open", "acknowledged", "engaged", "external_help_requested",
                           "awaiting_confirmation", "lost_contact"}), "resolved"),
}
REACHED: Final[Mapping[str, frozenset[str]]] = {  # states at or past a milestone
    "acknowledged": frozenset({"acknowledged", "engaged", "external_help_requested",
                               "awaiting_confirmation", "resolved"}),
    "engaged": frozenset({"engaged", "external_help_requested", "awaiting_confirmation",
                          "resolved"}),
}


class IncidentRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, kw_only=True)
class Tier:
    after: float  # seconds after the incident opened
    notify: tuple[Notify, ...]
    stop_when: Literal["acknowledged", "engaged"] = "acknowledged"
    sound: bool = False  # consoles re-alert with sound


# A drill walks every hop at once, so an operator sees the whole chain in seconds.
DRILL_TIERS: Final = (Tier(after=0, notify=("room_facilitators", "on_duty_facilitators",
                                            "on_call_webhook", "secondary_on_call", "admin")),)


@dataclass(frozen=True, kw_only=True)
class Escalation:
    """Tiers per trigger kind; triggers without their own list use `default`."""
    help_button: tuple[Tier, ...]
    default: tuple[Tier, ...]

    @classmethod
    def from_policy(cls, policy: Any) -> Escalation:
        """From config/crisis/escalation.toml (moderation.crisis_config.EscalationPolicy)."""
        def convert(tiers: Any) -> tuple[Tier, ...]:
            return tuple(Tier(
                after=float(t.after),
                notify=(*t.notify, *(("participant_prompt",)
                                     if t.participant_prompt == "call_helpline_now" else ())),
                stop_when=t.if_not or "acknowledged", sound=bool(t.sound)) for t in tiers)
        return cls(help_button=convert(policy.help_button),
                   default=convert(policy.detector_or_flag))

    def tiers(self, trigger: str) -> tuple[Tier, ...]:
        if trigger == "drill":
            return DRILL_TIERS
        return self.help_button if trigger == "help_button" else self.default


# The reference's suggested timers (../shared/reference/crisis.md); config overrides them.
DEFAULT_ESCALATION: Final = Escalation(
    help_button=(
        Tier(after=0, notify=("room_facilitators", "on_call_webhook")),
        Tier(after=30, notify=("on_duty_facilitators",)),
        Tier(after=120, notify=("secondary_on_call",)),
        Tier(after=300, notify=("admin", "participant_prompt"), stop_when="engaged"),
    ),
    default=(
        Tier(after=0, notify=("room_facilitators",)),
        Tier(after=60, notify=("on_duty_facilitators",)),
        Tier(after=120, notify=("on_call_webhook",)),
        Tier(after=300, notify=("admin", "participant_prompt"), stop_when="engaged"),
    ),
)


@dataclass(frozen=True, kw_only=True)
class Incident:
    id: str
    room: str
    member: str  # the person at risk: member id (ephemeral, not kept after export)
    pseudonym: str
    trigger: Trigger
    severity: str
    category: str
    rule_pack: str | None
    opened_at: float
    state: State = "open"
    fired: tuple[int, ...] = ()  # indexes of tiers that have fired
    history: tuple[tuple[float, str, str | None], ...] = ()  # (time, event, actor)
    responders: tuple[str, ...] = ()
    outcome: Outcome | None = None
    follow_up: bool = False
    test: bool = False

    def to_wire(self) -> dict[str, Any]:
        """For facilitators' consoles, the incident log and the room's saved state:
        metadata only, and enough to run the incident on (from_wire)."""
        return {"id": self.id, "room": self.room, "member": self.member,
                "pseudonym": self.pseudonym, "trigger": self.trigger, "severity": self.severity,
                "category": self.category, "rule_pack": self.rule_pack,
                "opened_at": int(self.opened_at * 1000), "state": self.state,
                "fired": list(self.fired),
                "history": [[int(t * 1000), e, a] for t, e, a in self.history],
                "responders": list(self.responders), "outcome": self.outcome,
                "follow_up": self.follow_up, "test": self.test}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Incident:
        """Back from to_wire (times in ms); ValueError, KeyError or TypeError if it is not one."""
        if wire.get("trigger") not in TRIGGERS or wire.get("state") not in STATES:
            raise ValueError("not an incident")
        return cls(id=str(wire["id"]), room=str(wire["room"]), member=str(wire["member"]),
                   pseudonym=str(wire["pseudonym"]), trigger=wire["trigger"],
                   severity=str(wire["severity"]), category=str(wire["category"]),
                   rule_pack=wire.get("rule_pack"), opened_at=int(wire["opened_at"]) / 1000,
                   state=wire["state"], fired=tuple(int(i) for i in wire.get("fired", ())),
                   history=tuple((int(t) / 1000, str(e), a) for t, e, a in wire["history"]),
                   responders=tuple(str(r) for r in wire.get("responders", ())),
                   outcome=wire.get("outcome"), follow_up=bool(wire.get("follow_up")),
                   test=bool(wire.get("test")))


def latest_incidents(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each incident's last state from incident-log records ({"ts", "incident": wire}), in
    the order incidents first appear."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        wire = record.get("incident")
        if isinstance(wire, dict) and isinstance(wire.get("id"), str):
            latest[wire["id"]] = wire
    return latest


@dataclass(frozen=True, slots=True)
class Alert:
    """A tier fired: tell `notify` about the incident."""
    incident: Incident
    notify: Notify
    tier: int
    sound: bool = False


@dataclass
class IncidentDesk:
    escalation: Escalation = DEFAULT_ESCALATION
    incidents: dict[str, Incident] = field(default_factory=dict)

    def open(self, *, incident_id: str, room: str, member: str, pseudonym: str, trigger: str,
             severity: str, category: str, rule_pack: str | None, now: float,
             test: bool = False) -> tuple[Incident, list[Alert]]:
        if trigger not in TRIGGERS:
            raise IncidentRefused("incident_invalid", f"Unknown trigger {trigger!r}.")
        if severity not in SEVERITIES:
            raise IncidentRefused("incident_invalid", f"Unknown severity {severity!r}.")
        for existing in self.incidents.values():  # one live incident per person is enough
            if existing.member == member and existing.room == room \
                    and existing.state != "resolved" and not test:
                return existing, []
        incident = Incident(id=incident_id, room=room, member=member, pseudonym=pseudonym,
                            trigger=trigger, severity=severity,  # type: ignore[arg-type]
                            category=category, rule_pack=rule_pack, opened_at=now,
                            history=((now, "open", None),), test=test)
        self.incidents[incident.id] = incident
        return incident, self._due(incident.id, now)

    def get(self, incident_id: str) -> Incident:
        found = self.incidents.get(incident_id)
        if found is None:
            raise IncidentRefused("incident_not_found", "There is no such incident.")
        return found

    def apply(self, incident_id: str, event: str, actor: str | None, now: float, *,
              outcome: str | None = None) -> Incident:
        incident = self.get(incident_id)
        rule = TRANSITIONS.get(event)
        if rule is None:
            raise IncidentRefused("incident_invalid", f"Unknown incident event {event!r}.")
        sources, target = rule
        if incident.state not in sources:
            raise IncidentRefused("incident_state",
                                  f"An incident that is {incident.state} cannot take {event!r}.")
        changes: dict[str, Any] = {"state": target,
                                   "history": (*incident.history, (now, event, actor))}
        if event == "resolve":
            if outcome not in OUTCOMES:
                raise IncidentRefused("incident_outcome",
                                      "Resolving needs an outcome: " + ", ".join(OUTCOMES) + ".")
            changes["outcome"] = outcome
        if event == "lost":
            changes["follow_up"] = True
        if actor is not None and actor not in incident.responders:
            changes["responders"] = (*incident.responders, actor)
        updated = replace(incident, **changes)
        self.incidents[incident_id] = updated
        return updated

    def note(self, incident_id: str, event: str, actor: str | None, now: float) -> Incident:
        """An event that changes no state (the participant said "I'm OK", a re-alert)."""
        incident = self.get(incident_id)
        updated = replace(incident, history=(*incident.history, (now, event, actor)))
        self.incidents[incident_id] = updated
        return updated

    def tick(self, now: float) -> list[Alert]:
        alerts: list[Alert] = []
        for incident_id in list(self.incidents):
            alerts += self._due(incident_id, now)
        return alerts

    def _due(self, incident_id: str, now: float) -> list[Alert]:
        incident = self.incidents[incident_id]
        if incident.state == "resolved":
            return []
        alerts: list[Alert] = []
        fired = list(incident.fired)
        for index, tier in enumerate(self.escalation.tiers(incident.trigger)):
            if index in fired or now < incident.opened_at + tier.after:
                continue
            if incident.state in REACHED[tier.stop_when]:
                continue
            fired.append(index)
            alerts += [Alert(incident, notify, index, tier.sound) for notify in tier.notify]
        if len(fired) != len(incident.fired):
            self.incidents[incident_id] = replace(incident, fired=tuple(fired))
            alerts = [Alert(self.incidents[incident_id], a.notify, a.tier, a.sound)
                      for a in alerts]
        return alerts

    def export(self, room: str) -> list[dict[str, Any]]:
        """The room's live incidents, to go with the room when another node takes it over."""
        return [i.to_wire() for i in self.incidents.values()
                if i.room == room and i.state != "resolved"]

    def adopt(self, states: list[Any]) -> int:
        """Take over incidents run by a node that went away; their tiers go on from where
        they were (a tier that fired there does not fire again). Of two copies of one
        incident the one with more history wins. Returns how many were taken."""
        taken = 0
        for state in states:
            try:
                incident = Incident.from_wire(state)
            except (KeyError, TypeError, ValueError):
                continue
            known = self.incidents.get(incident.id)
            if known is None or len(incident.history) > len(known.history):
                self.incidents[incident.id] = incident
                taken += 1
        return taken

    def forget_resolved(self, before: float) -> int:
        """Retention for the in-memory desk: resolved incidents older than `before` go."""
        old = [i for i, inc in self.incidents.items()
               if inc.state == "resolved" and inc.history[-1][0] < before]
        for incident_id in old:
            del self.incidents[incident_id]
        return len(old)
