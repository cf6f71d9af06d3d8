"""Crisis incidents: an explicit state machine with escalation tiers on timers.

States and transitions (TRANSITIONS below is the one table; anything else is refused):

    open ──ack──► acknowledged ──engage──► engaged ──external──► external_help_requested
      │                 │                     │                        │ await
      │                 └──────external───────┘                        ▼
      │                                                     awaiting_confirmation
      └──── any state but resolved ──lost──► lost_contact (a follow-up is due)
      └──── any state but resolved ──resolve(outcome)──► resolved

Another trigger about a person whose incident is live joins that incident (it
never opens a second one): the trigger and severity only ever go up. A help
press on an acknowledged incident re-opens it, so that someone claims it again;
every other join, a console's receipt ("seen") and "I'm OK" keep the state. When
every facilitator who claimed it (acknowledged or engaged) from the room has left the
room, it is open again ("responder_left"), so that someone claims it again.

Escalation runs on clocks. An incident starts one clock: the help button's
tiers for a press, and for any high-severity trigger (intent with a plan, means,
a timeframe); the detector-or-flag tiers otherwise. A help press (or a rise to
high severity) starts the faster clock from that moment if it is not running
yet; a clock that runs keeps running, so no step comes later than it would
have, and a step one clock has taken (a tier as late, for the same recipient)
is not taken again by another. A tier fires `after` seconds from its clock's
start unless the incident has by then reached its `stop_when` state
(acknowledged, or engaged), and once per clock. Ticking at any rate gives the
same result: a tier is due when now >= started + after, never before.

After "external help requested" (on the recorded basis: the person's consent,
or imminent risk) the incident waits for a facilitator to confirm that the
person was reached; every `confirm_within` seconds without it, on-call and the
facilitators are alerted again.

What is recorded is metadata only: id, room, pseudonym, trigger, rule pack and
category, severity, timestamps of each change, responders, outcome. Never
message text, matched phrases, audio, addresses or tokens. Nothing here does
I/O or reads a clock.
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
Basis = Literal["consent", "imminent_risk"]
# Why an alert goes out: a tier of a clock, a help press (at once), an external request
# nobody has confirmed yet, a press inside the re-alert interval (the room's consoles only),
# no console to tell (crisis.py sends it to on-call instead), or the facilitator who had
# it left the room (it is open again).
Cause = Literal["tier", "press", "unconfirmed", "press_noted", "no_facilitator",
                "responder_left"]

STATES: Final = ("open", "acknowledged", "engaged", "external_help_requested",
                  "awaiting_confirmation", "lost_contact", "resolved")
TRIGGERS: Final = ("help_button", "self_detector", "facilitator_detector", "facilitator_flag",
                   "peer_concern", "drill")
OUTCOMES: Final = ("de_escalated", "external_help_confirmed", "unreachable", "not_a_concern",
                   "test", "handed_off")
SEVERITIES: Final = ("low", "medium", "high")
CATEGORIES: Final = ("means_method", "intent", "timeframe", "farewell", "harm_from_others",
                     "help_request", "concern")
BASES: Final = ("consent", "imminent_risk")
SCHEDULES: Final = ("help_button", "detector_or_flag", "drill")
# A person's own request outranks what others noticed: the trigger of an incident is the
# strongest that joined it (the person hears how their request goes from self_detector on).
TRIGGER_RANK: Final[Mapping[str, int]] = {
    "drill": 0, "peer_concern": 1, "facilitator_detector": 2, "facilitator_flag": 3,
    "self_detector": 4, "help_button": 5}
# A detector's category says more than "help request", which says more than "concern".
_CATEGORY_RANK: Final[Mapping[str, int]] = {"concern": 0, "help_request": 1}

_LIVE: Final = ("open", "acknowledged", "engaged", "external_help_requested",
                "awaiting_confirmation", "lost_contact")


def _stay(states: Iterable[str]) -> dict[str, str]:
    return {state: state for state in states}


# event -> {state it may come from: state it leads to}; any other pair is refused.
# tests/unit/test_incidents.py checks the desk against its own copy, written out as a table.
TRANSITIONS: Final[Mapping[str, Mapping[str, str]]] = {
    # a responder's steps
    "ack": {"open": "acknowledged", "lost_contact": "acknowledged"},
    "engage": {"open": "engaged", "acknowledged": "engaged", "lost_contact": "engaged"},
    "external": {"acknowledged": "external_help_requested", "engaged": "external_help_requested"},
    "await": {"external_help_requested": "awaiting_confirmation"},
    "lost": {s: "lost_contact" for s in _LIVE if s != "lost_contact"},
    "resolve": {s: "resolved" for s in _LIVE},
    # notes: a console received the alert; the person says they are OK
    "seen": _stay(_LIVE),
    "participant_ok": _stay(_LIVE),
    # every facilitator who claimed it from the room has left it: someone must claim it again
    "responder_left": {**_stay(_LIVE), "acknowledged": "open", "engaged": "open"},
    # another trigger about the same person joins the live incident
    "help_button": {**_stay(_LIVE), "acknowledged": "open"},
    "self_detector": _stay(_LIVE),
    "facilitator_detector": _stay(_LIVE),
    "facilitator_flag": _stay(_LIVE),
    "peer_concern": _stay(_LIVE),
}
ACTIONS: Final = ("ack", "engage", "external", "await", "lost", "resolve")  # a responder's
REACHED: Final[Mapping[str, frozenset[str]]] = {  # states at or past a milestone
    "acknowledged": frozenset({"acknowledged", "engaged", "external_help_requested",
                               "awaiting_confirmation", "resolved"}),
    "engaged": frozenset({"engaged", "external_help_requested", "awaiting_confirmation",
                          "resolved"}),
}
WAITING_FOR_CONFIRMATION: Final = frozenset({"external_help_requested", "awaiting_confirmation"})
TOLD: Final = frozenset({"seen", "ack", "engage"})  # events that mean a person has it in hand
CLAIMS: Final = frozenset({"ack", "engage"})  # a responder's steps that claim it
# States in which nobody holds a claim: open again, or contact lost (the next step is new)
UNCLAIMED: Final = frozenset({"open", "lost_contact", "resolved"})


class IncidentRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, kw_only=True)
class Tier:
    after: float  # seconds after its clock started
    notify: tuple[Notify, ...]
    stop_when: Literal["acknowledged", "engaged"] = "acknowledged"
    sound: bool = False  # consoles re-alert with sound


# A drill walks every hop at once, so an operator sees the whole chain in seconds.
DRILL_TIERS: Final = (Tier(after=0, notify=("room_facilitators", "on_duty_facilitators",
                                            "on_call_webhook", "secondary_on_call", "admin")),)


@dataclass(frozen=True, kw_only=True)
class Escalation:
    """Tiers per schedule, and the other timings of config/crisis/escalation.toml (read by
    moderation/crisis_config.py)."""
    help_button: tuple[Tier, ...]
    default: tuple[Tier, ...]  # detector_or_flag
    high_severity: str = "help_button"  # the schedule a high-severity incident starts on
    confirm_within: float = 600.0  # seconds for a facilitator to confirm external help
    confirm_notify: tuple[Notify, ...] = ("on_call_webhook", "room_facilitators",
                                          "on_duty_facilitators")
    press_window: float = 600.0  # presses from one address this close join one incident
    realert_every: float = 30.0  # presses page on-duty and on-call at most this often
    concerns_per_window: int = 3  # incidents one address may open by "I'm worried"

    def tiers(self, schedule: str) -> tuple[Tier, ...]:
        if schedule == "drill":
            return DRILL_TIERS
        return self.help_button if schedule == "help_button" else self.default

    def schedule(self, trigger: str, severity: str) -> str:
        """Which tiers an incident starts on: severity drives timing."""
        if trigger in ("drill", "help_button"):
            return trigger
        return self.high_severity if severity == "high" else "detector_or_flag"


# The suggested timers (docs/crisis.md, "escalation.toml"); that file overrides them.
DEFAULT_ESCALATION: Final = Escalation(
    help_button=(
        Tier(after=0, notify=("room_facilitators", "on_call_webhook")),
        Tier(after=30, notify=("room_facilitators", "on_duty_facilitators"), sound=True),
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
class TierClock:
    """One run of a schedule's tiers, from `started`; `fired` are the tier indexes done."""
    schedule: str
    started: float
    fired: tuple[int, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "started": int(self.started * 1000),
                "fired": list(self.fired)}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> TierClock:
        if wire.get("schedule") not in SCHEDULES:
            raise ValueError("not a clock")
        return cls(schedule=wire["schedule"], started=int(wire["started"]) / 1000,
                    fired=tuple(int(i) for i in wire.get("fired", ())))


def _severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


@dataclass(frozen=True, kw_only=True)
class IncidentRecord:
    """One incident as the desk keeps it (metadata only, never text); the client message
    that acts on one is `spaces.protocol.Incident`."""
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
    clocks: tuple[TierClock, ...] = ()
    history: tuple[tuple[float, str, str | None], ...] = ()  # (time, event, actor)
    responders: tuple[str, ...] = ()
    outcome: Outcome | None = None
    follow_up: bool = False
    test: bool = False
    external_basis: Basis | None = None
    external_at: float | None = None
    reminders: int = 0  # "external help not confirmed yet" alerts sent
    pressed_at: float | None = None  # the last help press that paged beyond the room
    # The accounts that claimed it (acknowledged or engaged) from inside its room since it
    # was last open: when none of them is in the room any more it is open again. Part of
    # the record, so it moves with the room to another node.
    claimed_by: tuple[str, ...] = ()

    def last(self, events: Iterable[str]) -> float | None:
        """When one of `events` last happened (None: never)."""
        wanted = set(events)
        return next((t for t, e, _ in reversed(self.history) if e in wanted), None)

    def asked_at(self) -> float:
        """When it last needed someone anew: the opening, the last help press, or the last
        time everyone who had claimed it left."""
        return self.last(("open", "help_button", "responder_left")) or self.opened_at

    def told(self) -> bool:
        """Someone has it in hand: a console received it (or it was acknowledged or engaged)
        since the last help press (or the opening, or the last responder leaving)."""
        asked = self.asked_at()
        return any(e in TOLD and t >= asked for t, e, _ in self.history)

    def to_wire(self) -> dict[str, Any]:
        """For facilitators' consoles, the incident log and the room's saved state:
        metadata only, and enough to run the incident on (from_wire)."""
        return {"id": self.id, "room": self.room, "member": self.member,
                "pseudonym": self.pseudonym, "trigger": self.trigger, "severity": self.severity,
                "category": self.category, "rule_pack": self.rule_pack,
                "opened_at": int(self.opened_at * 1000), "state": self.state,
                "fired": list(self.clocks[0].fired) if self.clocks else [],
                "clocks": [c.to_wire() for c in self.clocks],
                "history": [[int(t * 1000), e, a] for t, e, a in self.history],
                "responders": list(self.responders), "outcome": self.outcome,
                "follow_up": self.follow_up, "test": self.test,
                "external_basis": self.external_basis,
                "external_at": None if self.external_at is None else int(self.external_at * 1000),
                "reminders": self.reminders,
                "pressed_at": None if self.pressed_at is None else int(self.pressed_at * 1000),
                "claimed_by": list(self.claimed_by)}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> IncidentRecord:
        """Back from to_wire (times in ms); ValueError, KeyError or TypeError if it is not one.
        A record written before incidents had clocks runs on its trigger's schedule."""
        if wire.get("trigger") not in TRIGGERS or wire.get("state") not in STATES:
            raise ValueError("not an incident")
        if wire.get("external_basis") not in (None, *BASES):
            raise ValueError("not an incident")
        opened_at = int(wire["opened_at"]) / 1000
        if "clocks" in wire:
            clocks = tuple(TierClock.from_wire(c) for c in wire["clocks"])
        else:
            schedule = wire["trigger"] if wire["trigger"] in SCHEDULES else "detector_or_flag"
            clocks = (TierClock(schedule=schedule, started=opened_at,
                                fired=tuple(int(i) for i in wire.get("fired", ()))),)

        def ms(name: str) -> float | None:
            value = wire.get(name)
            return None if value is None else int(value) / 1000
        return cls(id=str(wire["id"]), room=str(wire["room"]), member=str(wire["member"]),
                   pseudonym=str(wire["pseudonym"]), trigger=wire["trigger"],
                   severity=str(wire["severity"]), category=str(wire["category"]),
                   rule_pack=wire.get("rule_pack"), opened_at=opened_at,
                   state=wire["state"], clocks=clocks,
                   history=tuple((int(t) / 1000, str(e), a) for t, e, a in wire["history"]),
                   responders=tuple(str(r) for r in wire.get("responders", ())),
                   outcome=wire.get("outcome"), follow_up=bool(wire.get("follow_up")),
                   test=bool(wire.get("test")), external_basis=wire.get("external_basis"),
                   external_at=ms("external_at"), reminders=int(wire.get("reminders", 0)),
                   pressed_at=ms("pressed_at"),
                   claimed_by=tuple(str(a) for a in wire.get("claimed_by", ())))


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
    """Tell `notify` about the incident: a tier fired (`tier` is its index in its clock's
    schedule), or a press or an unconfirmed external request (`tier` is None)."""
    incident: IncidentRecord
    notify: Notify
    tier: int | None
    sound: bool = False
    cause: Cause = "tier"


def _refusal(incident: IncidentRecord, event: str) -> str:
    """Why a step is refused, for people: a second console's acknowledgement (two at once)
    hears who has it already."""
    done = {"ack": ("ack", "acknowledged"), "engage": ("engage", "engaged")}.get(event)
    if done is not None and incident.state in REACHED[done[1]] - {"resolved"}:
        by = next((a for _, e, a in reversed(incident.history) if e == done[0]), None)
        who = f" by {by}" if by else ""
        return f"This incident was already {done[1]}{who}; it is {incident.state} now."
    return f"An incident that is {incident.state} cannot take {event!r}."


def _unique(items: Iterable[Notify]) -> tuple[Notify, ...]:
    return tuple(dict.fromkeys(items))


def _once(alerts: list[Alert]) -> list[Alert]:
    """One alert per recipient at one moment (two clocks, or a press and a tier, may ask
    for the same one): the first asked wins."""
    kept: dict[str, Alert] = {}
    for alert in alerts:
        kept.setdefault(alert.notify, alert)
    return list(kept.values())


@dataclass
class IncidentDesk:
    escalation: Escalation = DEFAULT_ESCALATION
    incidents: dict[str, IncidentRecord] = field(default_factory=dict)

    def live_for(self, room: str, member: str) -> IncidentRecord | None:
        """The person's live incident in that room, if any (at most one; tests aside)."""
        return next((i for i in self.incidents.values() if i.member == member and i.room == room
                     and i.state != "resolved" and not i.test), None)

    def open(self, *, incident_id: str, room: str, member: str, pseudonym: str, trigger: str,
             severity: str, category: str, rule_pack: str | None, now: float,
             test: bool = False, into: str | None = None,
             actor: str | None = None) -> tuple[IncidentRecord, list[Alert]]:
        """A trigger about a person: a new incident, or — when the person has a live one, or
        `into` names one (the same address pressing again) — that one, joined."""
        if trigger not in TRIGGERS:
            raise IncidentRefused("incident_invalid", f"Unknown trigger {trigger!r}.")
        if severity not in SEVERITIES:
            raise IncidentRefused("incident_invalid", f"Unknown severity {severity!r}.")
        if not test and trigger != "drill":
            joined = self.incidents.get(into) if into is not None else None
            if joined is None or joined.state == "resolved":
                joined = self.live_for(room, member)
            if joined is not None:
                return self.join(joined.id, trigger=trigger, severity=severity,
                                 category=category, rule_pack=rule_pack, member=member,
                                 pseudonym=pseudonym, now=now, actor=actor)
        schedule = self.escalation.schedule(trigger, severity)
        incident = IncidentRecord(id=incident_id, room=room, member=member, pseudonym=pseudonym,
                            trigger=trigger, severity=severity,  # type: ignore[arg-type]
                            category=category, rule_pack=rule_pack, opened_at=now,
                            clocks=(TierClock(schedule=schedule, started=now),),
                            history=((now, "open", actor),), test=test,
                            pressed_at=now if trigger == "help_button" else None)
        self.incidents[incident.id] = incident
        return incident, self._due(incident.id, now)

    def join(self, incident_id: str, *, trigger: str, severity: str, category: str,
             rule_pack: str | None, member: str, pseudonym: str, now: float,
             actor: str | None = None) -> tuple[IncidentRecord, list[Alert]]:
        """Another trigger about the person of a live incident: raise it to at least that
        trigger and severity. A help press alerts again at once (the room's consoles always;
        on-duty facilitators and the first tier's on-call at most every `realert_every`
        seconds; a press inside that interval is noted on the room's consoles, and on every
        on-duty console when it re-opens a claimed incident) and starts the help button's
        clock if it is not running; a rise to high severity starts the faster schedule's
        clock."""
        incident = self.get(incident_id)
        target = TRANSITIONS[trigger].get(incident.state)
        if target is None:
            raise IncidentRefused("incident_state",
                                  f"An incident that is {incident.state} cannot take {trigger!r}.")
        severity = max(incident.severity, severity, key=_severity_rank)
        new_rank, old_rank = (_CATEGORY_RANK.get(c, 2) for c in (category, incident.category))
        if new_rank > old_rank or (new_rank == old_rank == 2 and severity != incident.severity):
            kept_category = category
        else:
            kept_category = incident.category
        clocks = incident.clocks
        running = {c.schedule for c in clocks}
        changes: dict[str, Any] = {
            "state": target, "history": (*incident.history, (now, trigger, actor)),
            "trigger": max(incident.trigger, trigger, key=lambda t: TRIGGER_RANK[t]),
            "severity": severity, "category": kept_category,
            "rule_pack": rule_pack or incident.rule_pack, "member": member,
            "pseudonym": pseudonym}
        pressed: list[tuple[Notify, Cause, int | None]] = []
        if trigger == "help_button":
            first = self.escalation.tiers("help_button")[0]
            started = "help_button" not in running
            if started:  # its first tier fires here, with the re-alert
                clocks = (*clocks, TierClock(schedule="help_button", started=now, fired=(0,)))
            if started or incident.pressed_at is None or \
                    now - incident.pressed_at >= self.escalation.realert_every:
                changes["pressed_at"] = now
                pressed = [(n, "press", 0 if started else None) for n in _unique(
                    ("room_facilitators", "on_duty_facilitators", *first.notify))]
            else:  # noted on the room's consoles; one that re-opens a claimed incident on
                # every on-duty console too: whoever claimed it may be elsewhere
                pressed = [("room_facilitators", "press_noted", None)]
                if target != incident.state:
                    pressed.append(("on_duty_facilitators", "press_noted", None))
        elif severity == "high" and self.escalation.high_severity not in running:
            clocks = (*clocks, TierClock(schedule=self.escalation.high_severity, started=now))
        if target in UNCLAIMED:
            changes["claimed_by"] = ()
        updated = replace(incident, clocks=clocks, **changes)
        self.incidents[incident_id] = updated
        alerts = [Alert(updated, n, tier, True, cause) for n, cause, tier in pressed]
        alerts += self._due(incident_id, now)
        final = self.incidents[incident_id]
        return final, [replace(a, incident=final) for a in _once(alerts)]

    def prompted(self, incident: IncidentRecord) -> bool:
        """A tier that asks the person to call a helpline now has fired."""
        return any("participant_prompt" in self.escalation.tiers(c.schedule)[i].notify
                   for c in incident.clocks for i in c.fired)

    def get(self, incident_id: str) -> IncidentRecord:
        found = self.incidents.get(incident_id)
        if found is None:
            raise IncidentRefused("incident_not_found", "There is no such incident.")
        return found

    def apply(self, incident_id: str, event: str, actor: str | None, now: float, *,
              outcome: str | None = None, basis: str | None = None,
              in_room: bool = False) -> IncidentRecord:
        """A responder's step or a note (TRANSITIONS); a console's second receipt since the
        last press changes nothing. `in_room`: the actor is a facilitator in the incident's
        room, so an acknowledgement or engagement of theirs is a claim that lasts while they
        are there (`claimed_by`)."""
        incident = self.get(incident_id)
        rule = TRANSITIONS.get(event)
        if rule is None or event in TRIGGERS:
            raise IncidentRefused("incident_invalid", f"Unknown incident event {event!r}.")
        target = rule.get(incident.state)
        if target is None:
            raise IncidentRefused("incident_state", _refusal(incident, event))
        if event == "seen" and actor is not None:
            since = incident.asked_at()
            if any(e == "seen" and a == actor and t >= since for t, e, a in incident.history):
                return incident
        changes: dict[str, Any] = {"state": target,
                                   "history": (*incident.history, (now, event, actor))}
        if event == "resolve":
            if outcome not in OUTCOMES:
                raise IncidentRefused("incident_outcome",
                                      "Resolving needs an outcome: " + ", ".join(OUTCOMES) + ".")
            changes["outcome"] = outcome
        if event == "external":
            if basis not in BASES:
                raise IncidentRefused("incident_basis", "Requesting external help needs its "
                                      "basis: consent, or imminent_risk.")
            changes.update(external_basis=basis, external_at=now, reminders=0)
        if event == "lost":
            changes["follow_up"] = True
        if event in ACTIONS and actor is not None and actor not in incident.responders:
            changes["responders"] = (*incident.responders, actor)
        if target in UNCLAIMED:
            changes["claimed_by"] = ()
        elif event in CLAIMS and in_room and actor is not None \
                and actor not in incident.claimed_by:
            changes["claimed_by"] = (*incident.claimed_by, actor)
        updated = replace(incident, **changes)
        self.incidents[incident_id] = updated
        return updated

    def reopen(self, incident_id: str, now: float) -> tuple[IncidentRecord, list[Alert]]:
        """Everyone who claimed it from the room has left: acknowledged or engaged, it is
        open again. The room's and the on-duty consoles hear at once (with sound), and the
        steps skipped while it was claimed come when due — now, if they are past."""
        incident = self.apply(incident_id, "responder_left", None, now)
        alerts = [Alert(incident, notify, None, True, "responder_left")
                  for notify in ("room_facilitators", "on_duty_facilitators")]
        alerts += self._due(incident_id, now)
        final = self.incidents[incident_id]
        return final, [replace(a, incident=final) for a in _once(alerts)]

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
        clocks = list(incident.clocks)
        for n, clock in enumerate(clocks):
            fired = list(clock.fired)
            for index, tier in enumerate(self.escalation.tiers(clock.schedule)):
                if index in fired or now < clock.started + tier.after:
                    continue
                if incident.state in REACHED[tier.stop_when]:
                    continue
                fired.append(index)
                clocks[n] = replace(clock, fired=tuple(fired))
                alerts += [Alert(incident, notify, index, tier.sound) for notify in tier.notify
                           if not self._taken(clocks, n, notify, tier.after)]
        reminders = incident.reminders
        if incident.state in WAITING_FOR_CONFIRMATION and incident.external_at is not None:
            due = int((now - incident.external_at) // self.escalation.confirm_within)
            if due > reminders:  # once, however long the ticks were apart
                reminders = due
                alerts += [Alert(incident, notify, None, True, "unconfirmed")
                           for notify in self.escalation.confirm_notify]
        if tuple(clocks) != incident.clocks or reminders != incident.reminders:
            updated = replace(incident, clocks=tuple(clocks), reminders=reminders)
            self.incidents[incident_id] = updated
            alerts = [replace(a, incident=updated) for a in _once(alerts)]
        return alerts

    def _taken(self, clocks: list[TierClock], mine: int, notify: str, after: float) -> bool:
        """Another clock has already taken this step for this recipient while this clock
        ran: a tier as late as this one (or later) told them. Two clocks never repeat a step,
        they only hasten it."""
        started = clocks[mine].started
        return any(notify in tier.notify and tier.after >= after
                   and clock.started + tier.after >= started
                   for n, clock in enumerate(clocks) if n != mine
                   for i, tier in enumerate(self.escalation.tiers(clock.schedule))
                   if i in clock.fired)

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
                incident = IncidentRecord.from_wire(state)
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
