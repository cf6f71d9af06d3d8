"""The incident state machine and its escalation clocks, with a fake clock."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from hearth.moderation.incidents import (
    DEFAULT_ESCALATION,
    STATES,
    TRANSITIONS,
    Escalation,
    IncidentDesk,
    IncidentRecord,
    IncidentRefused,
    Tier,
)

START = 1000.0
Log = list[tuple[float, str, int | None, str]]  # (seconds since START, notify, tier, cause)


def opened(trigger: str = "help_button", escalation: Escalation = DEFAULT_ESCALATION,
           severity: str = "high") -> tuple[IncidentDesk, Clock, Log]:
    clock = Clock()
    clock.advance(START)
    desk = IncidentDesk(escalation)
    _, alerts = desk.open(incident_id="i1", room="circle", member="m1", pseudonym="Quiet Otter",
                          trigger=trigger, severity=severity, category="help_request",
                          rule_pack=None, now=clock.seconds())
    return desk, clock, [(0.0, a.notify, a.tier, a.cause) for a in alerts]


def run(desk: IncidentDesk, clock: Clock, until: float, log: Log, step: float = 0.5) -> None:
    while clock.seconds() - START < until:
        clock.advance(step)
        log += [(clock.seconds() - START, a.notify, a.tier, a.cause)
                for a in desk.tick(clock.seconds())]


def press(desk: IncidentDesk, clock: Clock, log: Log, member: str = "m1") -> IncidentRecord:
    incident, alerts = desk.open(incident_id="i2", room="circle", member=member,
                                 pseudonym="Quiet Otter", trigger="help_button", severity="high",
                                 category="help_request", rule_pack=None, now=clock.seconds(),
                                 into="i1")
    log += [(clock.seconds() - START, a.notify, a.tier, a.cause) for a in alerts]
    return incident


def pairs(log: Log) -> list[tuple[float, str]]:
    return [(t, n) for t, n, _, _ in log]


# --- tiers --------------------------------------------------------------------------------


def test_help_button_tiers_fire_at_their_second_and_not_before() -> None:
    desk, clock, log = opened()
    run(desk, clock, 400, log, step=0.25)
    assert pairs(log) == [(0.0, "room_facilitators"), (0.0, "on_call_webhook"),
                          (30.0, "room_facilitators"), (30.0, "on_duty_facilitators"),
                          (120.0, "secondary_on_call"), (300.0, "admin"),
                          (300.0, "participant_prompt")]


def test_a_medium_detection_runs_on_the_detector_tiers() -> None:
    desk, clock, log = opened("self_detector", severity="medium")
    run(desk, clock, 400, log)
    assert pairs(log) == [(0.0, "room_facilitators"), (60.0, "on_duty_facilitators"),
                          (120.0, "on_call_webhook"), (300.0, "admin"),
                          (300.0, "participant_prompt")]


@pytest.mark.parametrize("trigger", ["self_detector", "facilitator_detector", "facilitator_flag"])
def test_severity_drives_timing_a_high_detection_starts_on_the_fastest_tiers(trigger: str) -> None:
    """Intent with a plan, means or a timeframe: on-call at once, like the button."""
    desk, clock, log = opened(trigger, severity="high")
    assert pairs(log) == [(0.0, "room_facilitators"), (0.0, "on_call_webhook")]
    assert desk.get("i1").clocks[0].schedule == "help_button"
    run(desk, clock, 31, log)
    assert (30.0, "on_duty_facilitators") in pairs(log)


def test_high_severity_can_be_configured_to_the_detector_tiers() -> None:
    slow = Escalation(help_button=DEFAULT_ESCALATION.help_button,
                      default=DEFAULT_ESCALATION.default, high_severity="detector_or_flag")
    _, _, log = opened("self_detector", escalation=slow, severity="high")
    assert pairs(log) == [(0.0, "room_facilitators")]


def test_a_rise_to_high_severity_starts_the_fast_clock_from_that_moment() -> None:
    desk, clock, _ = opened("facilitator_detector", severity="medium")
    clock.advance(20)
    incident, alerts = desk.open(incident_id="i9", room="circle", member="m1",
                                 pseudonym="Quiet Otter", trigger="facilitator_detector",
                                 severity="high", category="means_method", rule_pack="en:1",
                                 now=clock.seconds())
    assert incident.id == "i1" and incident.severity == "high"
    assert incident.category == "means_method" and incident.rule_pack == "en:1"
    assert [a.notify for a in alerts] == ["room_facilitators", "on_call_webhook"]
    assert [c.schedule for c in incident.clocks] == ["detector_or_flag", "help_button"]
    # a weaker signal later changes nothing of that
    again, quiet = desk.open(incident_id="i9", room="circle", member="m1", pseudonym="Quiet Otter",
                             trigger="peer_concern", severity="low", category="concern",
                             rule_pack=None, now=clock.seconds())
    assert quiet == [] and (again.severity, again.category) == ("high", "means_method")
    assert again.trigger == "facilitator_detector"


def test_a_press_at_the_same_second_as_a_tier_alerts_each_recipient_once() -> None:
    desk, clock, log = opened()
    clock.advance(30)
    press(desk, clock, log)  # no tick in between: the 30 s tier and the press together
    assert [(n, c) for t, n, _, c in log if t == 30.0] == [
        ("room_facilitators", "press"), ("on_duty_facilitators", "press"),
        ("on_call_webhook", "press")]


def test_a_tick_just_before_a_tier_fires_nothing() -> None:
    desk, clock, _ = opened()
    clock.advance(29.999)
    assert desk.tick(clock.seconds()) == []
    clock.advance(0.001)
    assert [a.notify for a in desk.tick(clock.seconds())] == ["room_facilitators",
                                                             "on_duty_facilitators"]
    assert desk.tick(clock.seconds()) == []  # once only


def test_acknowledged_incidents_stop_escalating_until_engagement_tiers() -> None:
    desk, clock, log = opened()
    clock.advance(10)
    desk.apply("i1", "ack", "ana", clock.seconds())
    run(desk, clock, 400, log)
    # on-duty (30 s) and secondary (120 s) stop at acknowledgement; the 300 s tier
    # stops only at engagement, which has not happened
    assert [n for _, n in pairs(log)] == ["room_facilitators", "on_call_webhook", "admin",
                                          "participant_prompt"]


def test_engaged_incidents_stop_all_escalation() -> None:
    desk, clock, log = opened()
    clock.advance(5)
    desk.apply("i1", "engage", "ana", clock.seconds())
    run(desk, clock, 400, log)
    assert [n for _, n in pairs(log)] == ["room_facilitators", "on_call_webhook"]


def test_a_lost_contact_incident_keeps_escalating_and_needs_follow_up() -> None:
    desk, clock, log = opened()
    clock.advance(5)
    incident = desk.apply("i1", "lost", None, clock.seconds())
    assert incident.follow_up and incident.state == "lost_contact"
    run(desk, clock, 40, log)
    assert "on_duty_facilitators" in [n for _, n in pairs(log)]


def test_configured_tiers() -> None:
    fast = Escalation(help_button=(Tier(after=2, notify=("admin",)),), default=())
    desk, clock, log = opened(escalation=fast)
    run(desk, clock, 5, log, step=0.5)
    assert pairs(log) == [(2.0, "admin")]


# --- issue 14.1: every help press does something new -----------------------------------------


def test_a_press_on_a_peer_concern_pages_at_once_re_alerts_at_30_s_and_prompts_at_300_s() -> None:
    """Someone was worried about Quiet Otter (a medium concern, on the detector tiers); ten
    seconds later Otter presses the button: on-call's webhook at once, the re-alert with
    sound 30 s after the press, the "call now" prompt 300 s after the press."""
    desk, clock, log = opened("peer_concern", severity="medium")
    assert pairs(log) == [(0.0, "room_facilitators")]
    clock.advance(10)
    incident = press(desk, clock, log)
    assert incident.id == "i1"  # the same incident, raised
    assert (incident.trigger, incident.severity, incident.category) == (
        "help_button", "high", "help_request")
    at_press = [(n, cause) for t, n, _, cause in log if t == 10.0]
    assert at_press == [("room_facilitators", "press"), ("on_duty_facilitators", "press"),
                        ("on_call_webhook", "press")]
    run(desk, clock, 400, log, step=0.25)
    after = [(round(t - 10, 2), n) for t, n, _, _ in log if t > 10]
    assert (30.0, "room_facilitators") in after and (30.0, "on_duty_facilitators") in after
    assert (120.0, "secondary_on_call") in after  # the button's 120 s tier
    # the detector clock still runs: no step comes later than it would have (the prompt
    # 300 s after the concern), and no step is taken twice
    assert (50.0, "on_duty_facilitators") in after and (110.0, "on_call_webhook") in after
    assert [t for t, n in after if n == "participant_prompt"] == [290.0]
    assert [t for t, n in after if n == "admin"] == [290.0]


def test_a_press_long_after_a_concern_gets_the_whole_button_schedule_from_the_press() -> None:
    desk, clock, log = opened("peer_concern", severity="medium")
    desk.apply("i1", "engage", "ana", clock.seconds())  # the concern was taken care of
    desk.apply("i1", "lost", "ana", clock.seconds())  # ... until contact was lost
    run(desk, clock, 400, log)
    clock.advance(100)
    press(desk, clock, log)
    run(desk, clock, 900, log)
    after = [(t - 500, n) for t, n in pairs(log) if t >= 500]
    assert (0.0, "on_call_webhook") in after and (30.0, "on_duty_facilitators") in after
    assert (120.0, "secondary_on_call") in after
    assert [t for t, n in after if n == "participant_prompt"] == [300.0]  # its own


def test_press_alerts_carry_sound() -> None:
    desk, clock, _ = opened("peer_concern", severity="medium")
    clock.advance(3)
    _, alerts = desk.open(incident_id="x", room="circle", member="m1", pseudonym="Quiet Otter",
                          trigger="help_button", severity="high", category="help_request",
                          rule_pack=None, now=clock.seconds())
    assert alerts and all(a.sound for a in alerts)


def test_a_second_press_pages_again_at_most_every_realert_interval() -> None:
    desk, clock, log = opened()
    clock.advance(10)
    press(desk, clock, log)  # 10 s after the first press: the room's consoles only
    assert [(n, c) for t, n, _, c in log if t == 10.0] == [("room_facilitators", "press_noted")]
    assert not desk.get("i1").told()
    clock.advance(25)  # 35 s after the last page (the 30 s tier fired meanwhile)
    log += [(clock.seconds() - START, a.notify, a.tier, a.cause) for a in desk.tick(clock.seconds())]
    press(desk, clock, log)
    assert [(n, c) for t, n, _, c in log if t == 35.0] == [
        ("room_facilitators", "tier"), ("on_duty_facilitators", "tier"),
        ("room_facilitators", "press"), ("on_duty_facilitators", "press"),
        ("on_call_webhook", "press")]
    assert [c.schedule for c in desk.get("i1").clocks] == ["help_button"]  # not restarted
    assert [e for _, e, _ in desk.get("i1").history] == ["open", "help_button", "help_button"]


def test_a_press_on_an_acknowledged_incident_reopens_it_for_someone_to_claim_again() -> None:
    desk, clock, log = opened("self_detector", severity="medium")
    clock.advance(5)
    desk.apply("i1", "ack", "ana", clock.seconds())
    clock.advance(5)
    assert press(desk, clock, log).state == "open"
    run(desk, clock, 41, log)  # the button's 30 s tier fires: nobody has claimed it since
    assert (40.0, "on_duty_facilitators") in pairs(log)
    assert desk.apply("i1", "ack", "ben", clock.seconds()).state == "acknowledged"


def test_a_press_keeps_an_engaged_incident_engaged() -> None:
    desk, clock, log = opened("peer_concern", severity="medium")
    desk.apply("i1", "engage", "ana", clock.seconds())
    clock.advance(5)
    incident = press(desk, clock, log)
    assert incident.state == "engaged" and [n for t, n in pairs(log) if t == 5.0] == [
        "room_facilitators", "on_duty_facilitators", "on_call_webhook"]


def test_a_press_into_another_incident_of_the_same_address_repoints_it() -> None:
    desk, clock, log = opened()
    clock.advance(40)
    incident = press(desk, clock, log, member="m7")  # the same person, rejoined
    assert (incident.id, incident.member) == ("i1", "m7")


def test_a_resolved_incident_is_not_joined() -> None:
    desk, clock, log = opened()
    desk.apply("i1", "resolve", "ana", clock.seconds(), outcome="de_escalated")
    assert press(desk, clock, log).id == "i2"


# --- issue 14.6: external help stays open until someone confirms it --------------------------


def test_external_help_needs_a_basis_and_records_it() -> None:
    desk, clock, _ = opened()
    desk.apply("i1", "ack", "ana", clock.seconds())
    with pytest.raises(IncidentRefused) as refused:
        desk.apply("i1", "external", "ana", clock.seconds())
    assert refused.value.code == "incident_basis"
    incident = desk.apply("i1", "external", "ana", clock.seconds(), basis="imminent_risk")
    assert (incident.state, incident.external_basis) == ("external_help_requested", "imminent_risk")
    assert incident.to_wire()["external_basis"] == "imminent_risk"


def test_unconfirmed_external_help_alerts_on_call_again_every_period_until_confirmed() -> None:
    desk, clock, log = opened()
    desk.apply("i1", "engage", "ana", clock.seconds())
    clock.advance(100)
    desk.apply("i1", "external", "ana", clock.seconds(), basis="consent")
    clock.advance(300)
    desk.apply("i1", "await", "ana", clock.seconds())  # still waiting: the timer runs on
    run(desk, clock, 100 + 600 - 1, log, step=1)
    assert [x for x in log if x[3] == "unconfirmed"] == []
    run(desk, clock, 100 + 600, log, step=1)
    assert [(t, n) for t, n, _, c in log if c == "unconfirmed"] == [
        (700.0, "on_call_webhook"), (700.0, "room_facilitators"), (700.0, "on_duty_facilitators")]
    run(desk, clock, 100 + 1200, log, step=7)  # ticks far apart: once per period all the same
    assert [t for t, n, _, c in log if c == "unconfirmed" and n == "on_call_webhook"] == [
        700.0, 1302.0]
    clock.advance(10)
    desk.apply("i1", "resolve", "ana", clock.seconds(), outcome="external_help_confirmed")
    before = len(log)
    run(desk, clock, 3000, log, step=50)
    assert len(log) == before  # confirmed: the watch ends


def test_a_long_pause_in_ticking_gives_one_unconfirmed_alert_not_a_burst() -> None:
    desk, clock, _ = opened()
    desk.apply("i1", "ack", "ana", clock.seconds())
    desk.apply("i1", "external", "ana", clock.seconds(), basis="consent")
    clock.advance(3000)
    assert [a.notify for a in desk.tick(clock.seconds())].count("on_call_webhook") == 1
    assert desk.tick(clock.seconds()) == []


# --- the transition table, written out independently of the code's --------------------------

# What every event leads to from every state ("-": refused). States, in this order:
# O open, A acknowledged, E engaged, X external_help_requested, W awaiting_confirmation,
# L lost_contact, R resolved.
EXPECTED = """
event                 O  A  E  X  W  L  R
ack                   A  -  -  -  -  A  -
engage                E  E  -  -  -  E  -
external              -  X  X  -  -  -  -
await                 -  -  -  W  -  -  -
lost                  L  L  L  L  L  -  -
resolve               R  R  R  R  R  R  -
seen                  O  A  E  X  W  L  -
participant_ok        O  A  E  X  W  L  -
responder_left        O  O  O  X  W  L  -
help_button           O  O  E  X  W  L  -
self_detector         O  A  E  X  W  L  -
facilitator_detector  O  A  E  X  W  L  -
facilitator_flag      O  A  E  X  W  L  -
peer_concern          O  A  E  X  W  L  -
"""
LETTERS = {"O": "open", "A": "acknowledged", "E": "engaged", "X": "external_help_requested",
           "W": "awaiting_confirmation", "L": "lost_contact", "R": "resolved"}


def expected_table() -> dict[tuple[str, str], str | None]:
    header, *rows = [line.split() for line in EXPECTED.strip().splitlines()]
    table = {}
    for row in rows:
        for state, target in zip(header[1:], row[1:], strict=True):
            table[(LETTERS[state], row[0])] = LETTERS.get(target)
    return table


REACH = {"open": [], "acknowledged": ["ack"], "engaged": ["engage"],
         "external_help_requested": ["ack", "external"],
         "awaiting_confirmation": ["ack", "external", "await"], "lost_contact": ["lost"],
         "resolved": ["resolve"]}


def in_state(state: str) -> tuple[IncidentDesk, float]:
    desk, clock, _ = opened("peer_concern", severity="medium")
    for step in REACH[state]:
        desk.apply("i1", step, "ana", clock.seconds(), outcome="de_escalated", basis="consent")
    assert desk.get("i1").state == state
    return desk, clock.seconds() + 1


def test_the_written_table_covers_every_state_and_event_of_the_code() -> None:
    table = expected_table()
    assert {s for s, _ in table} == set(STATES)
    assert {e for _, e in table} == set(TRANSITIONS)


@pytest.mark.parametrize("state,event", sorted(expected_table()))
def test_every_event_from_every_state_does_what_the_table_says(state: str, event: str) -> None:
    """The desk itself, driven through its public calls, against the table above."""
    target = expected_table()[(state, event)]
    desk, now = in_state(state)
    triggers = ("help_button", "self_detector", "facilitator_detector", "facilitator_flag",
                "peer_concern")

    def do() -> IncidentRecord:
        if event in triggers:
            incident, _ = desk.open(incident_id="new", room="circle", member="m1",
                                    pseudonym="Quiet Otter", trigger=event, severity="low",
                                    category="concern", rule_pack=None, now=now, into="i1")
            return incident
        return desk.apply("i1", event, "ben", now, outcome="not_a_concern", basis="consent")

    if target is None:
        if event in triggers:  # a resolved incident is never joined: a new one opens
            assert do().id == "new"
            return
        with pytest.raises(IncidentRefused) as refused:
            do()
        assert refused.value.code == "incident_state"
    else:
        incident = do()
        assert (incident.id, incident.state) == ("i1", target)
        assert incident.history[-1][1] == event


@pytest.mark.parametrize("path,final", [
    (["ack"], "acknowledged"), (["engage"], "engaged"), (["ack", "engage"], "engaged"),
    (["ack", "external"], "external_help_requested"),
    (["ack", "engage", "external", "await"], "awaiting_confirmation"),
    (["ack", "lost"], "lost_contact"), (["lost", "ack"], "acknowledged"),
    (["lost", "engage"], "engaged"),
])
def test_allowed_paths(path: list[str], final: str) -> None:
    desk, clock, _ = opened()
    for event in path:
        clock.advance(1)
        incident = desk.apply("i1", event, "ana", clock.seconds(), basis="consent")
    assert incident.state == final
    assert [e for _, e, _ in incident.history] == ["open", *path]
    assert incident.responders == ("ana",)


def test_a_console_receipt_is_noted_once_per_facilitator_per_press() -> None:
    desk, clock, log = opened()
    assert not desk.get("i1").told()
    seen = desk.apply("i1", "seen", "ana", clock.seconds())
    assert seen.told() and seen.responders == ()  # a receipt is not a response
    assert desk.apply("i1", "seen", "ana", clock.seconds()) is seen
    clock.advance(40)
    pressed = press(desk, clock, log)
    assert not pressed.told()  # the new press has not reached anyone yet
    assert desk.apply("i1", "seen", "ana", clock.seconds()).told()


def test_resolved_needs_an_outcome_and_then_is_final() -> None:
    desk, clock, log = opened()
    with pytest.raises(IncidentRefused) as refused:
        desk.apply("i1", "resolve", "ana", clock.seconds())
    assert refused.value.code == "incident_outcome"
    with pytest.raises(IncidentRefused):
        desk.apply("i1", "resolve", "ana", clock.seconds(), outcome="it was fine")
    incident = desk.apply("i1", "resolve", "ana", clock.seconds(), outcome="de_escalated")
    assert incident.outcome == "de_escalated"
    run(desk, clock, 400, log)
    assert len(log) == 2  # nothing after resolution


def test_unknown_events_are_refused() -> None:
    desk, clock, _ = opened()
    for event in ("explode", "help_button", "open"):
        with pytest.raises(IncidentRefused) as refused:
            desk.apply("i1", event, "ana", clock.seconds())
        assert refused.value.code == "incident_invalid"


def test_wire_form_has_no_content_fields_and_round_trips() -> None:
    desk, clock, log = opened("peer_concern", severity="medium")
    clock.advance(10)
    press(desk, clock, log)
    incident = desk.get("i1")
    wire = incident.to_wire()
    assert set(wire) == {"id", "room", "member", "pseudonym", "trigger", "severity", "category",
                         "rule_pack", "opened_at", "state", "history", "responders", "outcome",
                         "follow_up", "test", "fired", "clocks", "external_basis", "external_at",
                         "reminders", "pressed_at", "claimed_by"}
    assert IncidentRecord.from_wire(wire) == incident


def test_a_record_from_before_clocks_runs_on_its_trigger_s_tiers() -> None:
    old = {"id": "i1", "room": "circle", "member": "m1", "pseudonym": "Quiet Otter",
           "trigger": "peer_concern", "severity": "medium", "category": "concern",
           "rule_pack": None, "opened_at": 1_000_000, "state": "open", "fired": [0],
           "history": [[1_000_000, "open", None]], "responders": [], "outcome": None,
           "follow_up": False, "test": False}
    desk = IncidentDesk(DEFAULT_ESCALATION)
    assert desk.adopt([old]) == 1
    assert [a.notify for a in desk.tick(1060.0)] == ["on_duty_facilitators"]
