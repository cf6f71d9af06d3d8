"""What the crisis path carries across a dropped link and a room moving node, on a fake
clock: the detector's "talk privately" (a flag with a client id) is answered once however
often the page sends it, and the claim on an incident (who acknowledged or engaged it from
the room) moves with the room, so that the claim still lapses when they leave and the
person still reads the truth."""

from __future__ import annotations

import json
from typing import Any

from hearth.spaces.effects import Effect, Record
from tests.support.crisis import CrisisWorld, duty, replies, sent
from tests.support.world import reply

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
