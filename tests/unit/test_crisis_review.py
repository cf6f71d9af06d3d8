"""A help press is never swallowed, on a fake clock: the cases a fresh review of the crisis
path found (a second press soon after the first, while nobody is in the room; a press that
re-opens an incident someone on duty had claimed)."""

from __future__ import annotations

from typing import Any

from hearth.spaces.effects import Effect
from tests.support.crisis import CrisisWorld, dispatches, duty, replies, sent


def alerts_to(effects: list[Effect], member: str) -> list[dict[str, Any]]:
    return [m for m in sent(effects, member, "incident") if m["reason"] == "alert"]


def someone_on_duty_elsewhere(w: CrisisWorld) -> None:
    """Another node says a facilitator is on duty there (it says so every 2 s)."""
    w.venue.crisis.heard_duty("node-b", 1, w.clock.seconds())


def test_a_second_press_soon_after_with_nobody_in_the_room_reaches_the_on_duty_consoles() -> None:
    w = CrisisWorld()
    person, _ = w.person("Quiet Otter")
    someone_on_duty_elsewhere(w)
    first = w.send(person, {"type": "help"})
    assert [d["cause"] for d in duty(first)] == ["tier"]
    w.later(5)
    someone_on_duty_elsewhere(w)
    soon = w.send(person, {"type": "help"})
    # within the re-alert interval: noted, not paged again — but noted on a console that is
    # there (nobody is in the room), never on none
    assert [(d["notify"], d["cause"]) for d in duty(soon)] == [
        ("on_duty_facilitators", "press_noted")]
    assert dispatches(soon) == []


def test_a_press_that_re_opens_a_claimed_incident_is_seen_by_whoever_claimed_it() -> None:
    """Someone on duty (not in the room) acknowledged; the person presses again at once: the
    incident is open again, and the on-duty consoles hear so at once — not at the next tier."""
    w = CrisisWorld()
    person, otter = w.person("Quiet Otter")
    someone_on_duty_elsewhere(w)
    incident = replies(w.send(person, {"type": "help"}), "help_received")[0]["incident"]
    w.later(3)
    acked = w.venue.crisis.act(w.venue.rooms, "ana", incident, "ack", None, w.clock.seconds(),
                               None)
    assert [m["status"] for m in sent(acked, otter, "help_status")] == ["acknowledged"]
    w.later(2)
    someone_on_duty_elsewhere(w)
    again = w.send(person, {"type": "help"})
    assert w.venue.crisis.desk.incidents[incident].state == "open"
    [alert] = duty(again)
    assert (alert["notify"], alert["cause"], alert["sound"]) == (
        "on_duty_facilitators", "press_noted", True)
    assert alert["incident"]["state"] == "open"


def test_a_press_that_re_opens_a_claimed_incident_reaches_on_duty_with_a_facilitator_here() -> None:
    w = CrisisWorld()
    _, fac_id = w.facilitator()
    person, _ = w.person("Quiet Otter")
    incident = replies(w.send(person, {"type": "help"}), "help_received")[0]["incident"]
    w.venue.crisis.act(w.venue.rooms, "ben", incident, "ack", None, w.clock.seconds(), None)
    w.later(2)
    again = w.send(person, {"type": "help"})
    assert [a["cause"] for a in alerts_to(again, fac_id)] == ["press_noted"]
    assert [(d["notify"], d["cause"]) for d in duty(again)] == [
        ("on_duty_facilitators", "press_noted")]
    assert dispatches(again) == []  # paged 2 s ago: on-call is not paged again yet
