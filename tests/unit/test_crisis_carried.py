"""What the crisis path carries across a dropped link and a room moving node, on a fake
clock: the detector's "talk privately" (a flag with a client id) is answered once however
often the page sends it; the claim on an incident (who acknowledged or engaged it from the
room) moves with the room, so that the claim still lapses when they leave and the person
still reads the truth; and a private corner stays private, in chat and voice."""

from __future__ import annotations

import json
from typing import Any

from hearth.spaces.effects import Effect, Record, Send, Voice
from hearth.spaces.host import NODE_TTL
from hearth.spaces.layout import Point
from hearth.spaces.voice import build_frame
from tests.support.crisis import CrisisWorld, duty, replies, sent
from tests.support.hosts import Nodes
from tests.support.world import COMMIT, reply

SELF_FLAG = {"type": "flag", "category": "intent", "severity": "medium", "pack": "hearth-en:3.4.0"}


def statuses(effects: list[Effect], member: str) -> list[str]:
    return [m["status"] for m in sent(effects, member, "help_status")]


def moved(w: CrisisWorld) -> CrisisWorld:
    """The room, as saved (through JSON), taken over by another node: a new venue."""
    there = CrisisWorld()
    there.clock.advance(w.clock.seconds() - there.clock.seconds())
    state = json.loads(json.dumps(w.venue.export_room("circle")))
    there.venue.import_room("circle", state, there.clock.seconds())
    w.venue.crisis.hand_over("circle")
    return there


def resume(w: CrisisWorld, token: str) -> tuple[Any, list[Effect]]:
    conn = w.connect()
    return conn, w.send(conn, {"type": "resume", "token": token})


# --- the detector's "talk privately", sent again after a drop -----------------------------


def test_a_flag_sent_again_with_its_id_is_one_flag_and_is_told_where_it_stands() -> None:
    w = CrisisWorld()
    fac, fac_id = w.facilitator()
    person, otter = w.person("Quiet Otter")
    first = w.send(person, {**SELF_FLAG, "id": "care-1", "ref": "flag-1"})
    [received] = replies(first, "flag_received")
    incident = received["incident"]
    assert received == {"type": "flag_received", "incident": incident, "ref": "flag-1"}
    assert [m["reason"] for m in sent(first, fac_id, "incident")] == ["alert"]
    w.send(fac, {"type": "alert_seen", "incident": incident})

    # the page never had the answer (the link dropped): it sends the same flag again
    again = w.send(person, {**SELF_FLAG, "id": "care-1", "ref": "flag-2"})
    assert replies(again, "flag_received") == [{"type": "flag_received", "incident": incident,
                                                "ref": "flag-2"}]
    assert statuses(again, otter) == ["delivered"]  # a status sent meanwhile may be lost
    assert sent(again, fac_id, "incident") == [] and duty(again) == []
    assert not [e for e in again if isinstance(e, Record)]
    history = w.venue.crisis.desk.incidents[incident].history
    assert [e for _, e, _ in history] == ["open", "seen"]  # counted once

    # a new "yes" (another id) is another flag: it joins the same incident
    other = w.send(person, {**SELF_FLAG, "id": "care-2"})
    assert replies(other, "flag_received")[0]["incident"] == incident
    assert [e for _, e, _ in w.venue.crisis.desk.incidents[incident].history][-1] == \
        "self_detector"


def test_a_flag_s_answer_moves_with_the_room_and_its_resend_there_is_not_a_second_flag() -> None:
    w = CrisisWorld()
    w.person("Quiet Otter")  # someone else in the room, untouched
    conn = w.connect()
    welcome = reply(w.send(conn, {"type": "join", "room": "circle", "pseudonym": "Still Heron"}),
                    "welcome")
    flagged = w.send(conn, {**SELF_FLAG, "id": "care-1"})
    incident = replies(flagged, "flag_received")[0]["incident"]

    there = moved(w)
    conn2, _ = resume(there, welcome["token"])
    again = there.send(conn2, {**SELF_FLAG, "id": "care-1", "ref": "flag-9"})
    assert replies(again, "flag_received") == [{"type": "flag_received", "incident": incident,
                                                "ref": "flag-9"}]
    assert duty(again) == [] and not [e for e in again if isinstance(e, Record)]
    assert [e for _, e, _ in there.venue.crisis.desk.incidents[incident].history] == ["open"]


def test_a_flag_with_a_bad_id_is_refused_naming_it() -> None:
    w = CrisisWorld()
    person, _ = w.person("Quiet Otter")
    [error] = replies(w.send(person, {**SELF_FLAG, "id": "no spaces here"}), "error")
    assert error["code"] == "bad_message" and "flag.id" in error["message"]
    assert w.venue.crisis.desk.incidents == {}


# --- the claim on an incident moves with its room -------------------------------------------


def claimed_then_moved(action: str) -> tuple[CrisisWorld, str, str, str, str]:
    """A facilitator in the room claims a press (`ack`, or `ack` then `engage`); the room
    then moves to another node, where both resume: (the new node, the incident, the
    person's and the facilitator's tokens there, the person's member id)."""
    w = CrisisWorld()
    fac_conn = w.connect()
    ticket = w.venue.issue_ticket("facilitator", w.clock.seconds(), account="ana")
    fac_welcome = reply(w.send(fac_conn, {"type": "join", "room": "circle", "ticket": ticket,
                                          "pseudonym": "Ana Host"}), "welcome")
    person = w.connect()
    welcome = reply(w.send(person, {"type": "join", "room": "circle",
                                    "pseudonym": "Quiet Otter"}), "welcome")
    incident = replies(w.send(person, {"type": "help", "id": "p1"}), "help_received")[0][
        "incident"]
    w.send(fac_conn, {"type": "alert_seen", "incident": incident})
    w.send(fac_conn, {"type": "incident", "incident": incident, "action": "ack"})
    if action == "engage":
        w.send(fac_conn, {"type": "incident", "incident": incident, "action": "engage"})
    assert w.venue.crisis.desk.incidents[incident].claimed_by == ("ana",)
    w.later(5)
    return moved(w), incident, welcome["token"], fac_welcome["token"], welcome["member"]


def test_after_a_move_the_claim_still_lapses_when_the_claimant_leaves() -> None:
    there, incident, person_token, fac_token, otter = claimed_then_moved("ack")
    assert there.venue.crisis.desk.incidents[incident].claimed_by == ("ana",)
    _, told = resume(there, person_token)
    assert statuses(told, otter) == ["acknowledged"]  # the truth, on the new node
    person_token = reply(told, "welcome")["token"]  # (every resume replaces it)
    fac, _ = resume(there, fac_token)
    there.later(3)
    assert there.venue.crisis.desk.incidents[incident].state == "acknowledged"

    there.send(fac, {"type": "leave"})
    after = there.later(1)
    record = there.venue.crisis.desk.incidents[incident]
    assert record.state == "open" and record.claimed_by == ()
    assert record.history[-1][1] == "responder_left"
    assert statuses(after, otter) == ["reopened"]
    # the person, back after a drop, reads that it is open again — never "told"
    _, back = resume(there, person_token)
    assert statuses(back, otter) == ["reopened"]


def test_after_a_move_an_engaged_incident_whose_facilitator_never_came_back_is_open_again(
) -> None:
    there, incident, person_token, _, otter = claimed_then_moved("engage")
    _, told = resume(there, person_token)
    assert statuses(told, otter) == ["engaged"]
    grace = int(there.venue.config.session.resume_grace_seconds)
    after = there.later(grace + 2)  # the facilitator's console never resumed on this node
    assert there.venue.crisis.desk.incidents[incident].state == "open"
    assert statuses(after, otter) == ["reopened"]


def test_the_claimants_are_in_the_shared_log_and_a_claim_from_outside_the_room_never_lapses(
) -> None:
    w = CrisisWorld()
    person, _ = w.person("Quiet Otter")
    incident = replies(w.send(person, {"type": "help"}), "help_received")[0]["incident"]
    outside = w.venue.crisis.act(w.venue.rooms, "on-call", incident, "ack", None,
                                 w.clock.seconds(), None)
    [record] = [e.incident for e in outside if isinstance(e, Record)]
    assert record["claimed_by"] == [] and record["responders"] == ["on-call"]
    w.later(120)
    assert w.venue.crisis.desk.incidents[incident].state == "acknowledged"
    fac, _ = w.facilitator("ben")
    engaged = w.send(fac, {"type": "incident", "incident": incident, "action": "engage"})
    [record] = [e.incident for e in engaged if isinstance(e, Record)]
    assert record["claimed_by"] == ["ben"]  # (what another node learns from the log)


# --- a private corner, after the room moves node -------------------------------------------


def test_a_private_corner_stays_private_in_chat_and_voice_after_the_room_moves_node() -> None:
    w = CrisisWorld()
    fac = w.connect()
    ticket = w.venue.issue_ticket("facilitator", w.clock.seconds(), account="ana")
    wf = reply(w.send(fac, {"type": "join", "room": "circle", "ticket": ticket,
                            "pseudonym": "Ana Host"}), "welcome")
    person, outsider = w.connect(), w.connect()
    wp = reply(w.send(person, {"type": "join", "room": "circle", "pseudonym": "Quiet Otter"}),
               "welcome")
    wo = reply(w.send(outsider, {"type": "join", "room": "circle", "pseudonym": "Still Heron"}),
               "welcome")
    w.send(fac, {"type": "private_corner", "corner": "corner-west", "member": wp["member"]})
    said = w.send(person, {"type": "envelope", "body": "AAAA", "commitment": COMMIT,
                           "zone": "corner-west"})
    assert replies(said, "sent")[0]["seq"] == 1

    there = moved(w)
    conns = {}
    for name, welcome in (("fac", wf), ("person", wp), ("outsider", wo)):
        conn, effects = resume(there, welcome["token"])
        assert reply(effects, "welcome")["room"]["private"] == {
            "corner-west": sorted([wf["member"], wp["member"]])}
        conns[name] = conn
    there.clock.advance(1)
    room = there.venue.rooms["circle"]
    assert room.config.layout.zone_of(room.members[wp["member"]].pos) == "corner-west"
    # chat: the corner's two only, its own seq going on
    said = there.send(conns["person"], {"type": "envelope", "body": "AAAA", "commitment": COMMIT,
                                        "zone": "corner-west"})
    assert [e.member for e in said if isinstance(e, Send)] == [wf["member"]]
    assert replies(said, "sent")[0]["seq"] == 2
    assert reply(there.send(conns["outsider"], {"type": "envelope", "body": "AAAA",
                                                "commitment": COMMIT, "zone": "corner-west"}),
                 "error")["code"] == "not_in_zone"
    # the outsider still cannot walk in
    room.members[wo["member"]].pos = Point(3.3, 3.3)
    assert reply(there.send(conns["outsider"], {"type": "move", "x": 2.9, "y": 2.9}),
                 "error")["code"] == "corner_private"
    # voice: the person's frames reach the facilitator only
    heard = there.venue.rooms["circle"].voice_frame(
        room.members[wp["member"]], build_frame(b"\x00" * 20, seq=1, level=10),
        there.clock.seconds())
    assert [v.listeners for v in heard if isinstance(v, Voice)] == [(wf["member"],)]


# --- the same person in two tabs; two consoles at once ------------------------------------


def test_two_tabs_of_one_person_pressing_are_each_answered_and_alerted() -> None:
    """Two tabs are two members from one address: neither press is merged into the other's
    incident while both are in the room (a household shares an address too), so each is
    answered and alerted; the same tab pressing again joins its own incident."""
    w = CrisisWorld()
    _, fac_id = w.facilitator()
    tab1, _ = w.person("Quiet Otter")
    tab2, _ = w.person("Quiet Otter Two")
    first = w.send(tab1, {"type": "help", "id": "a"})
    second = w.send(tab2, {"type": "help", "id": "b"})
    ids = [replies(e, "help_received")[0]["incident"] for e in (first, second)]
    assert ids[0] != ids[1]
    for effects, incident in zip((first, second), ids, strict=True):
        assert [m["incident"]["id"] for m in sent(effects, fac_id, "incident")] == [incident]
    again = w.send(tab1, {"type": "help", "id": "c"})
    assert replies(again, "help_received")[0]["incident"] == ids[0]
    assert len(w.venue.crisis.desk.incidents) == 2


def test_two_consoles_acknowledging_at_once_make_one_claim_and_the_second_is_told_why() -> None:
    w = CrisisWorld()
    ana, ana_id = w.facilitator("ana")
    ben, ben_id = w.facilitator("ben")
    person, otter = w.person("Quiet Otter")
    incident = replies(w.send(person, {"type": "help"}), "help_received")[0]["incident"]
    first = w.send(ana, {"type": "incident", "incident": incident, "action": "ack", "ref": "a1"})
    second = w.send(ben, {"type": "incident", "incident": incident, "action": "ack", "ref": "b1"})
    record = w.venue.crisis.desk.incidents[incident]
    assert record.state == "acknowledged" and record.claimed_by == ("ana",)
    assert [e for _, e, _ in record.history].count("ack") == 1
    assert statuses(first, otter) == ["acknowledged"] and statuses(second, otter) == []
    [error] = replies(second, "error")
    assert error["code"] == "incident_state" and error["ref"] == "b1"
    assert "already acknowledged" in error["message"] and "ana" in error["message"]
    # both consoles saw the one acknowledgement
    for member in (ana_id, ben_id):
        assert [m["reason"] for m in sent(first, member, "incident")] == ["ack"]
    assert sent(second, ana_id, "incident") == []


def test_after_its_node_dies_a_claim_whose_facilitator_never_comes_back_lapses_there() -> None:
    """Routing hosts on one bus: the room runs on node1, where the facilitator acknowledged
    a press of someone connected through node2. node1 dies; node2 takes the room over from
    its saved state. The facilitator's console died with node1 and never resumes: once its
    grace is over the incident is open again on node2 and the person reads it."""
    nodes = Nodes(2)
    ticket = nodes.hosts["node1"].venue.issue_ticket("facilitator", nodes.clock.seconds(),
                                                     "ana")
    facilitator = nodes.join("node1", ticket=ticket)
    person = nodes.join("node2", pseudonym="Quiet Otter")
    nodes.send(person, {"type": "help", "id": "p1"})
    incident = person.last("help_received")["incident"]
    nodes.send(facilitator, {"type": "incident", "incident": incident, "action": "ack"})
    assert person.last("help_status")["status"] == "acknowledged"
    nodes.advance(2)  # saved with the room
    nodes.kill("node1")
    nodes.advance(NODE_TTL + 2)
    assert person.last("moving")["room"] == "circle"
    back = nodes.connect("node2")
    nodes.send(back, {"type": "resume", "token": person.last("welcome")["token"]})
    assert back.last("welcome")["resumed"]
    assert [m["status"] for m in back.of("help_status")] == ["acknowledged"]
    desk = nodes.hosts["node2"].venue.crisis.desk
    assert desk.incidents[incident].claimed_by == ("ana",)
    nodes.advance(nodes.config.session.resume_grace_seconds + 3)
    assert desk.incidents[incident].state == "open"
    assert back.last("help_status")["status"] == "reopened"
