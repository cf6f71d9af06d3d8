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


# --- what the person missed while their connection was down ---------------------------------


def pressed_then_away(w: CrisisWorld) -> tuple[str, str, str]:
    """Someone joins, presses help, and their connection drops: (member, token, incident)."""
    conn = w.connect()
    welcome = replies(w.send(conn, {"type": "join", "room": "circle",
                                    "pseudonym": "Quiet Otter"}), "welcome")[0]
    incident = replies(w.send(conn, {"type": "help"}), "help_received")[0]["incident"]
    w.venue.connection_lost(conn.seat, w.clock.seconds())  # type: ignore[arg-type]
    return welcome["member"], welcome["token"], incident


def resumed(w: CrisisWorld, token: str) -> list[Effect]:
    return w.send(w.connect(), {"type": "resume", "token": token})


def test_an_acknowledgement_made_while_the_person_was_away_is_told_on_resume() -> None:
    """help_status goes to the person's connection; one sent while it was down is lost with
    it. The resume tells them where their request stands (here: a facilitator answered),
    or they would read "we are reaching a facilitator" — and their detector stay quiet —
    for ever."""
    w = CrisisWorld()
    fac, _ = w.facilitator()
    member, token, incident = pressed_then_away(w)
    w.send(fac, {"type": "incident", "incident": incident, "action": "ack"})
    w.later(3)
    assert [m["status"] for m in sent(resumed(w, token), member, "help_status")] == [
        "acknowledged"]


def test_on_resume_a_received_alert_is_on_a_screen_and_a_closed_request_closed() -> None:
    w = CrisisWorld()
    fac, _ = w.facilitator()
    member, token, incident = pressed_then_away(w)
    assert sent(resumed(w, token), member, "help_status") == []  # nothing to tell yet
    w.send(fac, {"type": "alert_seen", "incident": incident})
    again = resumed(w, token)
    assert [m["status"] for m in sent(again, member, "help_status")] == ["delivered"]
    w.send(fac, {"type": "incident", "incident": incident, "action": "resolve",
                 "outcome": "de_escalated"})
    assert [m["status"] for m in sent(resumed(w, token), member, "help_status")] == ["resolved"]


def test_someone_a_peer_worried_about_is_told_nothing_on_resume() -> None:
    w = CrisisWorld()
    fac, _ = w.facilitator()
    conn = w.connect()
    welcome = replies(w.send(conn, {"type": "join", "room": "circle",
                                    "pseudonym": "Quiet Otter"}), "welcome")[0]
    peer, _ = w.person("Calm Heron", "10.0.0.8")
    incident = replies(w.send(peer, {"type": "worried", "member": welcome["member"]}),
                       "concern_received")[0]["incident"]
    w.send(fac, {"type": "incident", "incident": incident, "action": "ack"})
    w.venue.connection_lost(conn.seat, w.clock.seconds())  # type: ignore[arg-type]
    assert sent(resumed(w, welcome["token"]), welcome["member"], "help_status") == []


def test_on_resume_external_help_asked_without_a_private_corner_is_not_with_you() -> None:
    w = CrisisWorld()
    fac, _ = w.facilitator()
    member, token, incident = pressed_then_away(w)
    w.send(fac, {"type": "incident", "incident": incident, "action": "ack"})
    w.send(fac, {"type": "incident", "incident": incident, "action": "external",
                 "basis": "consent"})
    assert [m["status"] for m in sent(resumed(w, token), member, "help_status")] == [
        "acknowledged"]  # not "a facilitator is with you now"
    w.send(fac, {"type": "incident", "incident": incident, "action": "resolve",
                 "outcome": "external_help_confirmed"})
    assert [m["status"] for m in sent(resumed(w, token), member, "help_status")] == ["resolved"]


# --- a facilitator who had it leaves ---------------------------------------------------------


def claimed(w: CrisisWorld, action: str) -> tuple[Any, str, str, str]:
    """A facilitator in the room; someone presses; the facilitator acknowledges (and, for
    "engage", takes it private): (the facilitator's connection, the person, the incident,
    the facilitator's member id)."""
    fac, fac_id = w.facilitator("ana")
    person, otter = w.person("Quiet Otter")
    incident = replies(w.send(person, {"type": "help"}), "help_received")[0]["incident"]
    w.send(fac, {"type": "alert_seen", "incident": incident})
    w.send(fac, {"type": "incident", "incident": incident, "action": "ack"})
    if action == "engage":
        w.send(fac, {"type": "incident", "incident": incident, "action": "engage"})
    return fac, otter, incident, fac_id


def test_when_the_facilitator_who_acknowledged_leaves_the_incident_is_open_again() -> None:
    w = CrisisWorld()
    fac, otter, incident, _ = claimed(w, "ack")
    ben, ben_id = w.facilitator("ben")  # another facilitator, who had not claimed it
    w.later(130)  # claimed: the 30 s re-alert and the 120 s secondary on-call were skipped
    someone_on_duty_elsewhere(w)
    w.send(fac, {"type": "leave"})
    after = w.later(1)
    desk = w.venue.crisis.desk
    assert desk.incidents[incident].state == "open"
    assert desk.incidents[incident].history[-1][1:] == ("responder_left", None)
    # the person no longer reads "a facilitator will be with you soon"
    assert [m["status"] for m in sent(after, otter, "help_status")] == ["reopened"]
    # every console that could claim it hears at once, with sound, once
    assert [(a["cause"], a["sound"]) for a in alerts_to(after, ben_id)] == [
        ("responder_left", True)]
    assert [(d["notify"], d["cause"]) for d in duty(after)] == [
        ("on_duty_facilitators", "responder_left")]
    # and the steps skipped while it was claimed come now
    assert [h["tier"] for h in dispatches(after, "webhook:secondary")] == [2]
    # a console's receipt since is what says "on a facilitator's screen" again
    seen = w.send(ben, {"type": "alert_seen", "incident": incident})
    assert [m["status"] for m in sent(seen, otter, "help_status")] == ["delivered"]


def test_when_the_facilitator_with_the_person_leaves_the_engaged_incident_escalates_again() -> None:
    w = CrisisWorld()
    fac, otter, incident, _ = claimed(w, "engage")
    w.later(200)  # engaged: nothing escalates
    w.send(fac, {"type": "leave"})
    after = w.later(1)
    assert w.venue.crisis.desk.incidents[incident].state == "open"
    assert [m["status"] for m in sent(after, otter, "help_status")] == ["reopened"]
    # nobody left in the room, nobody on duty: on-call hears at once
    assert "no_facilitator" in [h.get("cause") for h in dispatches(after)]


def test_a_facilitator_whose_console_dropped_is_waited_for_until_their_grace_runs_out() -> None:
    w = CrisisWorld()
    fac, otter, incident, _ = claimed(w, "engage")
    w.venue.connection_lost(fac.seat, w.clock.seconds())  # type: ignore[arg-type]
    w.later(30)
    assert w.venue.crisis.desk.incidents[incident].state == "engaged"  # may come back
    grace = int(w.venue.config.session.resume_grace_seconds)
    gone = w.later(grace)
    assert w.venue.crisis.desk.incidents[incident].state == "open"
    assert [m["status"] for m in sent(gone, otter, "help_status")] == ["reopened"]


def test_nothing_changes_while_another_responder_is_still_in_the_room() -> None:
    w = CrisisWorld()
    fac, otter, incident, _ = claimed(w, "ack")
    ben, _ = w.facilitator("ben")
    w.send(ben, {"type": "incident", "incident": incident, "action": "engage"})
    w.send(fac, {"type": "leave"})
    after = w.later(2)
    assert w.venue.crisis.desk.incidents[incident].state == "engaged"
    assert sent(after, otter, "help_status") == []


def test_a_resent_press_is_answered_with_where_it_stands() -> None:
    """The page sends a press again after its connection dropped (its help_received lost);
    the resume's status came before the page knew the incident, so the answer to the
    resend carries it again, after help_received."""
    w = CrisisWorld()
    fac, _ = w.facilitator()
    person, otter = w.person("Quiet Otter")
    first = w.send(person, {"type": "help", "id": "press-1"})
    incident = replies(first, "help_received")[0]["incident"]
    w.send(fac, {"type": "alert_seen", "incident": incident})
    again = w.send(person, {"type": "help", "id": "press-1", "ref": "help-2"})
    assert replies(again, "help_received") == [{"type": "help_received", "incident": incident,
                                                "ref": "help-2"}]
    assert [m["status"] for m in sent(again, otter, "help_status")] == ["delivered"]
    assert dispatches(again) == [] and duty(again) == []  # still not another press


def test_a_console_that_comes_back_as_a_new_member_keeps_its_claim() -> None:
    """A reloaded console joins again (a new member, the same account) before its old
    member's grace ran out: the claim holds, nothing re-opens."""
    w = CrisisWorld()
    fac, otter, incident, _ = claimed(w, "ack")
    w.venue.connection_lost(fac.seat, w.clock.seconds())  # type: ignore[arg-type]
    w.later(5)
    ticket = w.venue.issue_ticket("facilitator", w.clock.seconds(), account="ana")
    w.join(ticket=ticket, pseudonym="Ana Again")  # the same account, back
    after = w.later(int(w.venue.config.session.resume_grace_seconds) + 5)
    assert w.venue.crisis.desk.incidents[incident].state == "acknowledged"
    assert sent(after, otter, "help_status") == []


# --- the person leaves -------------------------------------------------------------------------


def updates(effects: list[Effect], reason: str) -> list[dict[str, Any]]:
    return [d for d in duty(effects) if d["reason"] == reason]


def test_every_responder_hears_once_that_the_person_left_and_escalation_goes_on() -> None:
    """Facilitators in the room see them leave; on-duty ones elsewhere would not: every
    responder is told once. The incident stays open (a person decides: "lost contact")."""
    w = CrisisWorld()
    _, fac_id = w.facilitator()
    person, otter = w.person("Quiet Otter")
    incident = replies(w.send(person, {"type": "help"}), "help_received")[0]["incident"]
    w.later(2)
    w.send(person, {"type": "leave"})
    after = w.later(1)
    assert [m["reason"] for m in sent(after, fac_id, "incident")] == ["person_left"]
    [update] = updates(after, "person_left")
    assert update["incident"]["id"] == incident and update["incident"]["state"] == "open"
    assert updates(w.later(5), "person_left") == []  # once
    assert w.venue.crisis.desk.incidents[incident].state == "open"
    assert [a["tier"] for a in alerts_to(w.later(30), fac_id)] == [1]  # escalation goes on
    assert sent(after, otter, "help_status") == []


def test_the_call_a_helpline_prompt_missed_while_away_comes_on_resume() -> None:
    w = CrisisWorld()
    member, token, incident = pressed_then_away(w)
    back = w.connect()
    assert sent(w.send(back, {"type": "resume", "token": token}), member, "help_prompt") == []
    w.later(290)
    w.venue.connection_lost(back.seat, w.clock.seconds())  # type: ignore[arg-type]
    w.later(15)  # nobody engaged within the last tier: "please call a helpline now"
    assert sent(resumed(w, token), member, "help_prompt") == [
        {"type": "help_prompt", "incident": incident}]
