"""The incident state machine and its escalation tiers, with a fake clock."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from hearth.moderation.incidents import (
    DEFAULT_ESCALATION,
    TRANSITIONS,
    Escalation,
    IncidentDesk,
    IncidentRefused,
    Tier,
)


def opened(trigger: str = "help_button", escalation: Escalation = DEFAULT_ESCALATION,
           ) -> tuple[IncidentDesk, Clock, list[tuple[float, str, int]]]:
    clock = Clock()
    clock.advance(1000)
    desk = IncidentDesk(escalation)
    _, alerts = desk.open(incident_id="i1", room="circle", member="m1", pseudonym="Quiet Otter",
                          trigger=trigger, severity="high", category="help_request",
                          rule_pack=None, now=clock.seconds())
    log = [(0.0, a.notify, a.tier) for a in alerts]
    return desk, clock, log


def run(desk: IncidentDesk, clock: Clock, until: float, log: list[tuple[float, str, int]],
        step: float = 0.5) -> None:
    start = 1000.0
    while clock.seconds() - start < until:
        clock.advance(step)
        log += [(clock.seconds() - start, a.notify, a.tier) for a in desk.tick(clock.seconds())]


def test_help_button_tiers_fire_at_their_second_and_not_before() -> None:
    desk, clock, log = opened()
    run(desk, clock, 400, log, step=0.25)
    assert log == [(0.0, "room_facilitators", 0), (0.0, "on_call_webhook", 0),
                   (30.0, "on_duty_facilitators", 1), (120.0, "secondary_on_call", 2),
                   (300.0, "admin", 3), (300.0, "participant_prompt", 3)]


def test_detector_tiers() -> None:
    desk, clock, log = opened("self_detector")
    run(desk, clock, 400, log)
    assert [(t, n) for t, n, _ in log] == [
        (0.0, "room_facilitators"), (60.0, "on_duty_facilitators"), (120.0, "on_call_webhook"),
        (300.0, "admin"), (300.0, "participant_prompt")]


def test_a_tick_just_before_a_tier_fires_nothing() -> None:
    desk, clock, _ = opened()
    clock.advance(29.999)
    assert desk.tick(clock.seconds()) == []
    clock.advance(0.001)
    assert [a.notify for a in desk.tick(clock.seconds())] == ["on_duty_facilitators"]
    assert desk.tick(clock.seconds()) == []  # once only


def test_acknowledged_incidents_stop_escalating_until_engagement_tiers() -> None:
    desk, clock, log = opened()
    clock.advance(10)
    desk.apply("i1", "ack", "ana", clock.seconds())
    run(desk, clock, 400, log)
    # on-duty (30 s) and secondary (120 s) stop at acknowledgement; the 300 s tier
    # stops only at engagement, which has not happened
    assert [n for _, n, _ in log] == ["room_facilitators", "on_call_webhook", "admin",
                                      "participant_prompt"]


def test_engaged_incidents_stop_all_escalation() -> None:
    desk, clock, log = opened()
    clock.advance(5)
    desk.apply("i1", "engage", "ana", clock.seconds())
    run(desk, clock, 400, log)
    assert [n for _, n, _ in log] == ["room_facilitators", "on_call_webhook"]


def test_a_lost_contact_incident_keeps_escalating_and_needs_follow_up() -> None:
    desk, clock, log = opened()
    clock.advance(5)
    incident = desk.apply("i1", "lost", None, clock.seconds())
    assert incident.follow_up and incident.state == "lost_contact"
    run(desk, clock, 40, log)
    assert "on_duty_facilitators" in [n for _, n, _ in log]


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
        incident = desk.apply("i1", event, "ana", clock.seconds())
    assert incident.state == final
    assert [e for _, e, _ in incident.history] == ["open", *path]
    assert incident.responders == ("ana",)


def test_every_transition_from_every_state() -> None:
    """The table is the whole truth: each event is allowed exactly from its sources."""
    states = ["open", "acknowledged", "engaged", "external_help_requested",
              "awaiting_confirmation", "lost_contact", "resolved"]
    reach = {"open": [], "acknowledged": ["ack"], "engaged": ["engage"],
             "external_help_requested": ["ack", "external"],
             "awaiting_confirmation": ["ack", "external", "await"], "lost_contact": ["lost"],
             "resolved": ["resolve"]}
    for state in states:
        for event, (sources, target) in TRANSITIONS.items():
            desk, clock, _ = opened()
            for step in reach[state]:
                desk.apply("i1", step, "ana", clock.seconds(), outcome="de_escalated")
            assert desk.get("i1").state == state
            if state in sources:
                assert desk.apply("i1", event, "ana", clock.seconds(),
                                  outcome="not_a_concern").state == target
            else:
                with pytest.raises(IncidentRefused) as refused:
                    desk.apply("i1", event, "ana", clock.seconds(), outcome="not_a_concern")
                assert refused.value.code == "incident_state"


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


def test_one_live_incident_per_person() -> None:
    desk, clock, _ = opened()
    again, alerts = desk.open(incident_id="i2", room="circle", member="m1", pseudonym="Quiet Otter",
                              trigger="help_button", severity="high", category="help_request",
                              rule_pack=None, now=clock.seconds())
    assert again.id == "i1" and alerts == []


def test_configured_tiers() -> None:
    fast = Escalation(help_button=(Tier(after=2, notify=("admin",)),), default=())
    desk, clock, log = opened(escalation=fast)
    run(desk, clock, 5, log, step=0.5)
    assert log == [(2.0, "admin", 0)]


def test_wire_form_has_no_content_fields() -> None:
    desk, _, _ = opened()
    wire = desk.get("i1").to_wire()
    assert set(wire) == {"id", "room", "member", "pseudonym", "trigger", "severity", "category",
                         "rule_pack", "opened_at", "state", "history", "responders", "outcome",
                         "follow_up", "test", "fired"}
