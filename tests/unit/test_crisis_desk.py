"""The crisis desk through the venue, on a fake clock: every press counts, nothing is
promised before it is true, presses are limited per address, and an alert nobody would hear
goes to on-call at once (issue 14, points 1, 2, 6 and 9)."""

from __future__ import annotations

from typing import Any

import pytest

from hearth.spaces.effects import DutyRoster, Record
from tests.support.crisis import CrisisWorld, dispatches, duty, replies, sent


def help_status(effects: list[Any], member: str) -> list[str]:
    return [m["status"] for m in sent(effects, member, "help_status")]


def alerts_to(effects: list[Any], member: str) -> list[dict[str, Any]]:
    return [m for m in sent(effects, member, "incident") if m["reason"] == "alert"]


# --- 1. every help press does something new -------------------------------------------------


def test_peer_concern_then_the_button_webhook_at_once_re_alert_at_30_s_prompt_at_300_s() -> None:
    w = CrisisWorld()
    _fac, fac_id = w.facilitator()
    person, otter = w.person("Quiet Otter", "10.0.0.7")
    peer, _ = w.person("Calm Heron", "10.0.0.8")
    worried = w.send(peer, {"type": "worried", "member": otter})
    incident = replies(worried, "concern_received")[0]["incident"]
    assert dispatches(worried) == []  # a concern: the room's facilitators first
    assert [a["incident"]["trigger"] for a in alerts_to(worried, fac_id)] == ["peer_concern"]
    w.later(10)

    pressed = w.send(person, {"type": "help", "ref": "h"})
    assert replies(pressed, "help_received") == [{"type": "help_received", "incident": incident,
                                                  "ref": "h"}]
    [hook] = dispatches(pressed)  # on-call at 0 s
    assert (hook["incident"], hook["event"], hook["cause"]) == (incident, "incident.alert", "press")
    assert hook["severity"] == "high" and hook["trigger"] == "help_button"
    [console] = alerts_to(pressed, fac_id)
    assert console["sound"] is True and console["incident"]["severity"] == "high"
    assert [d["notify"] for d in duty(pressed)] == ["on_duty_facilitators"]

    before = w.later(29)
    assert alerts_to(before, fac_id) == []
    at_30 = w.later(1)  # 30 s after the press
    assert [(a["sound"], a["tier"]) for a in alerts_to(at_30, fac_id)] == [(True, 1)]
    # "call the helpline now": 300 s after the first sign (the concern) — the press never
    # makes a step come later — and once, though two clocks run
    assert sent(w.later(259), otter, "help_prompt") == []
    assert sent(w.later(1), otter, "help_prompt") == [{"type": "help_prompt",
                                                      "incident": incident}]
    assert sent(w.later(400), otter, "help_prompt") == []


def test_pressing_again_pages_again_once_the_re_alert_interval_has_passed() -> None:
    w = CrisisWorld()
    _, fac_id = w.facilitator()
    person, _ = w.person("Quiet Otter")
    first = w.send(person, {"type": "help"})
    assert len(dispatches(first)) == 1
    w.later(5)
    soon = w.send(person, {"type": "help"})
    assert dispatches(soon) == [] and duty(soon) == []  # noted: the room's consoles only
    assert [a["cause"] for a in alerts_to(soon, fac_id)] == ["press_noted"]
    w.later(30)
    again = w.send(person, {"type": "help"})
    assert [d["cause"] for d in dispatches(again)] == ["press"]
    incidents = {r["incident"] for e in (first, soon, again) for r in replies(e, "help_received")}
    assert len(incidents) == 1


# --- 2. nothing promised before it is true ----------------------------------------------------


def test_the_person_hears_a_facilitator_was_told_only_when_a_console_says_it_received_it() -> None:
    w = CrisisWorld()
    fac, _fac_id = w.facilitator("ana")
    other, _ = w.facilitator("ben")
    person, otter = w.person("Quiet Otter")
    pressed = w.send(person, {"type": "help"})
    incident = replies(pressed, "help_received")[0]["incident"]
    assert help_status(pressed, otter) == []  # "received, reaching a facilitator"
    assert help_status(w.later(20), otter) == []  # time alone proves nothing
    seen = w.send(fac, {"type": "alert_seen", "incident": incident})
    assert help_status(seen, otter) == ["delivered"]
    assert any(isinstance(e, Record) for e in seen)
    history = w.venue.crisis.desk.incidents[incident].history
    assert [(e, a) for _, e, a in history] == [("open", None), ("seen", "ana")]
    assert w.send(fac, {"type": "alert_seen", "incident": incident}) == []  # once
    assert help_status(w.send(other, {"type": "alert_seen", "incident": incident}), otter) == []
    # acknowledged: the person is told a facilitator answered
    acked = w.send(fac, {"type": "incident", "incident": incident, "action": "ack"})
    assert help_status(acked, otter) == ["acknowledged"]


def test_a_press_after_the_alert_was_seen_waits_for_a_new_receipt() -> None:
    w = CrisisWorld()
    fac, _ = w.facilitator()
    person, otter = w.person("Quiet Otter")
    incident = replies(w.send(person, {"type": "help"}), "help_received")[0]["incident"]
    w.send(fac, {"type": "alert_seen", "incident": incident})
    w.later(40)
    assert help_status(w.send(person, {"type": "help"}), otter) == []
    assert help_status(w.send(fac, {"type": "alert_seen", "incident": incident}), otter) == [
        "delivered"]


def test_the_detector_path_the_same() -> None:
    w = CrisisWorld()
    fac, _fac_id = w.facilitator()
    person, otter = w.person("Quiet Otter")
    flagged = w.send(person, {"type": "flag", "category": "intent", "severity": "medium",
                              "pack": "hearth-en:1.0.0", "ref": "f"})
    incident = replies(flagged, "flag_received")[0]["incident"]
    assert help_status(flagged, otter) == []
    assert help_status(w.send(fac, {"type": "alert_seen", "incident": incident}), otter) == [
        "delivered"]


def test_the_worried_path_tells_the_reporter_and_not_the_person() -> None:
    w = CrisisWorld()
    fac, _ = w.facilitator()
    _, otter = w.person("Quiet Otter", "10.0.0.7")
    peer, heron = w.person("Calm Heron", "10.0.0.8")
    concern = w.send(peer, {"type": "worried", "member": otter})
    incident = replies(concern, "concern_received")[0]["incident"]
    assert help_status(concern, heron) == []
    seen = w.send(fac, {"type": "alert_seen", "incident": incident})
    assert help_status(seen, heron) == ["delivered"]
    assert help_status(seen, otter) == []  # someone else's concern is not theirs to be told
    history = w.venue.crisis.desk.incidents[incident].to_wire()
    assert "Calm Heron" not in str(history) and heron not in str(history)  # the reporter


def test_on_call_acknowledging_counts_as_told() -> None:
    w = CrisisWorld()
    person, otter = w.person("Quiet Otter", "10.0.0.7")
    peer, heron = w.person("Calm Heron", "10.0.0.8")
    incident = replies(w.send(person, {"type": "help"}), "help_received")[0]["incident"]
    w.send(peer, {"type": "worried", "member": otter})
    acked = w.venue.crisis.act(w.venue.rooms, "on-call", incident, "ack", None,
                               w.clock.seconds(), None)
    assert help_status(acked, otter) == ["acknowledged"]
    assert help_status(acked, heron) == ["delivered"]


@pytest.mark.parametrize("path", ["button", "detector", "worried"])
def test_with_nobody_in_the_room_and_nobody_on_duty_on_call_hears_at_once(path: str) -> None:
    w = CrisisWorld()
    person, otter = w.person("Quiet Otter", "10.0.0.7")
    peer, _ = w.person("Calm Heron", "10.0.0.8")
    message = {"button": {"type": "help"},
               "detector": {"type": "flag", "category": "intent", "severity": "medium"},
               "worried": {"type": "worried", "member": otter}}[path]
    effects = w.send(peer if path == "worried" else person, message)
    hooks = dispatches(effects)
    assert len(hooks) == 1 and hooks[0]["tier"] == 0
    assert hooks[0]["cause"] == ("tier" if path == "button" else "no_facilitator")
    assert [d["notify"] for d in duty(effects)] == ["on_duty_facilitators"]  # if one comes


@pytest.mark.parametrize("path", ["detector", "worried"])
def test_someone_on_duty_on_any_node_is_told_first(path: str) -> None:
    w = CrisisWorld()
    person, otter = w.person("Quiet Otter", "10.0.0.7")
    peer, _ = w.person("Calm Heron", "10.0.0.8")
    w.venue.crisis.heard_duty("node-b", 1, w.clock.seconds())  # someone on duty elsewhere
    message = {"detector": {"type": "flag", "category": "intent", "severity": "medium"},
               "worried": {"type": "worried", "member": otter}}[path]
    effects = w.send(peer if path == "worried" else person, message)
    assert dispatches(effects) == []
    assert [d["notify"] for d in duty(effects)] == ["on_duty_facilitators"]
    # what another node said goes stale: then nobody is known to be on duty
    w.clock.advance(30)
    peer2, _ = w.person("Brave Lark", "10.0.0.9")
    later = w.send(peer2, {"type": "worried", "member": w.person("Soft Wren", "10.0.0.10")[1]})
    assert [h["cause"] for h in dispatches(later)] == ["no_facilitator"]


def test_a_facilitator_in_the_room_hears_a_concern_and_on_call_does_not_yet() -> None:
    w = CrisisWorld()
    _, fac_id = w.facilitator()
    _, otter = w.person("Quiet Otter", "10.0.0.7")
    peer, _ = w.person("Calm Heron", "10.0.0.8")
    effects = w.send(peer, {"type": "worried", "member": otter})
    assert dispatches(effects) == [] and duty(effects) == []
    assert len(alerts_to(effects, fac_id)) == 1


def test_a_tier_nobody_would_hear_goes_to_on_call() -> None:
    """The detector's 60 s tier tells on-duty facilitators; with nobody on duty it pages."""
    w = CrisisWorld()
    _, _fac_id = w.facilitator()
    person, _ = w.person("Quiet Otter")
    w.send(person, {"type": "flag", "category": "intent", "severity": "medium"})
    at_60 = w.later(60)
    assert [(h["tier"], h["cause"]) for h in dispatches(at_60)] == [(1, "no_facilitator")]


def test_on_duty_counts_are_announced_to_other_nodes() -> None:
    w = CrisisWorld()
    fac, _fac_id = w.facilitator()
    on = w.send(fac, {"type": "duty", "on": True})
    assert [e.count for e in on if isinstance(e, DutyRoster)] == [1]
    assert [e.count for e in w.later(4) if isinstance(e, DutyRoster)] == [1, 1]  # every 2 s
    w.venue.connection_lost(fac.seat, w.clock.seconds())  # type: ignore[arg-type]
    assert [e.count for e in w.later(1) if isinstance(e, DutyRoster)] == [0]  # at once


# --- 6. external help stays open until confirmed -----------------------------------------------


def test_external_help_needs_its_basis_and_then_on_call_is_told_again_until_confirmed() -> None:
    w = CrisisWorld()
    fac, _ = w.facilitator()
    person, _ = w.person("Quiet Otter")
    incident = replies(w.send(person, {"type": "help"}), "help_received")[0]["incident"]
    w.send(fac, {"type": "incident", "incident": incident, "action": "ack"})
    refused = w.send(fac, {"type": "incident", "incident": incident, "action": "external",
                           "ref": "x"})
    assert replies(refused, "error")[0]["code"] == "incident_basis"
    asked = w.send(fac, {"type": "incident", "incident": incident, "action": "external",
                         "basis": "consent"})
    [hook] = dispatches(asked)
    assert (hook["event"], hook["external_basis"]) == ("incident.external", "consent")
    assert dispatches(w.later(599)) == []
    [again] = dispatches(w.later(1))
    assert (again["cause"], again["event"]) == ("unconfirmed", "incident.alert")
    w.send(fac, {"type": "incident", "incident": incident, "action": "resolve",
                 "outcome": "external_help_confirmed"})
    assert dispatches(w.later(1200)) == []


def test_seen_is_not_an_action_of_the_incident_message() -> None:
    w = CrisisWorld()
    fac, _ = w.facilitator()
    person, _ = w.person("Quiet Otter")
    incident = replies(w.send(person, {"type": "help"}), "help_received")[0]["incident"]
    refused = w.send(fac, {"type": "incident", "incident": incident, "action": "seen"})
    assert replies(refused, "error")[0]["code"] == "bad_message"


# --- 9. presses per address -------------------------------------------------------------------


def test_join_help_leave_in_a_loop_makes_one_incident_and_pages_once() -> None:
    w = CrisisWorld()
    ids, hooks = set(), 0
    for n in range(12):
        conn, _member = w.person(f"Loop Person {n}", "10.0.0.66")
        effects = w.send(conn, {"type": "help"})
        ids |= {r["incident"] for r in replies(effects, "help_received")}
        hooks += len(dispatches(effects))
        w.send(conn, {"type": "leave"})
        w.clock.advance(1)
    assert len(ids) == 1 and hooks == 1
    [incident] = w.venue.crisis.desk.incidents.values()
    assert incident.pseudonym == "Loop Person 11"  # the latest press: whoever is there now
    assert [e for _, e, _ in incident.history].count("help_button") == 11


def test_a_rejoined_person_s_press_raises_their_earlier_incident() -> None:
    w = CrisisWorld()
    fac, _fac_id = w.facilitator()
    peer, _ = w.person("Calm Heron", "10.0.0.8")
    first, otter = w.person("Quiet Otter", "10.0.0.7")
    incident = replies(w.send(peer, {"type": "worried", "member": otter}),
                       "concern_received")[0]["incident"]
    w.send(first, {"type": "help"})
    w.send(first, {"type": "leave"})
    w.later(60)
    again, otter2 = w.person("Quiet Otter", "10.0.0.7")
    pressed = w.send(again, {"type": "help"})
    assert replies(pressed, "help_received")[0]["incident"] == incident
    assert w.venue.crisis.desk.incidents[incident].member == otter2
    assert dispatches(pressed)  # 60 s later: it pages again
    seen = w.send(fac, {"type": "alert_seen", "incident": incident})
    assert help_status(seen, otter2) == ["delivered"]


def test_someone_else_at_the_same_address_gets_their_own_incident_at_once() -> None:
    """A shared address (a household, a school) never swallows another person's first press."""
    w = CrisisWorld()
    a, _ = w.person("Quiet Otter", "10.0.0.7")
    b, _ = w.person("Calm Heron", "10.0.0.7")
    first = w.send(a, {"type": "help"})
    second = w.send(b, {"type": "help"})
    assert replies(first, "help_received")[0]["incident"] != \
        replies(second, "help_received")[0]["incident"]
    assert len(dispatches(second)) == 1  # not refused, not delayed


def test_the_first_press_of_an_address_is_never_limited_by_another_s() -> None:
    w = CrisisWorld()
    for n in range(5):
        conn, _ = w.person(f"Loop Person {n}", "10.0.0.66")
        w.send(conn, {"type": "help"})
        w.send(conn, {"type": "leave"})
    fresh, _ = w.person("Quiet Otter", "10.0.0.7")
    assert len(dispatches(w.send(fresh, {"type": "help"}))) == 1


def test_worried_is_limited_per_address_and_the_first_is_never_refused() -> None:
    w = CrisisWorld()
    _, first = w.person("Quiet Otter", "10.0.0.7")
    people = [first] + [w.person(f"Person {n}", f"10.0.1.{n}")[1] for n in range(3)]
    reporter, _ = w.person("Calm Heron", "10.0.0.8")
    assert replies(w.send(reporter, {"type": "worried", "member": people[0]}), "concern_received")
    for person in people[1:3]:
        assert replies(w.send(reporter, {"type": "worried", "member": person}), "concern_received")
    refused = w.send(reporter, {"type": "worried", "member": people[3], "ref": "w"})
    assert replies(refused, "error")[0]["code"] == "rate_limited"
    # about someone already reported: joins, never refused
    assert replies(w.send(reporter, {"type": "worried", "member": people[0]}), "concern_received")
    # the same reporter after rejoining is the same address
    w.send(reporter, {"type": "leave"})
    back, _ = w.person("Calm Heron", "10.0.0.8")
    assert replies(w.send(back, {"type": "worried", "member": people[3]}), "error")
    # another address's first concern is not refused
    other, _ = w.person("Brave Lark", "10.0.0.9")
    assert replies(w.send(other, {"type": "worried", "member": people[3]}), "concern_received")
    # and after the window, the reporter may again
    w.later(601)
    assert replies(w.send(back, {"type": "worried", "member": people[1]}), "concern_received")


def test_someone_waiting_in_the_lobby_can_ask_for_help_and_say_they_are_okay() -> None:
    w = CrisisWorld()
    fac, fac_id = w.facilitator()
    waiting, waited = w.in_lobby(fac, "Shy Finch")
    member = replies(waited, "waiting")[0]["member"]
    assert replies(w.send(waiting, {"type": "envelope", "body": "AAAA", "commitment": "A" * 43
                                    + "="}), "error")[0]["code"] == "waiting"  # not in yet
    pressed = w.send(waiting, {"type": "help", "id": "h-1", "ref": "r1"})
    [received] = replies(pressed, "help_received")
    assert received["ref"] == "r1"
    assert [a["incident"]["member"] for a in alerts_to(pressed, fac_id)] == [member]
    assert len(dispatches(pressed)) == 1
    again = w.send(waiting, {"type": "help", "id": "h-1", "ref": "r2"})  # a resend: same answer
    assert replies(again, "help_received") == [{**received, "ref": "r2"}]
    assert dispatches(again) == [] and alerts_to(again, fac_id) == []
    okay = w.send(waiting, {"type": "im_ok"})
    assert replies(okay, "ok_received")[0]["incident"] == received["incident"]
    w.send(fac, {"type": "deny", "member": member})  # gone from the lobby: no longer heard
    assert replies(w.send(waiting, {"type": "help"}), "error")[0]["code"] == "not_joined"
