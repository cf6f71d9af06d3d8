"""Facilitator controls and the authorization matrix, on the sans-IO core with a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from hearth.spaces import protocol as p
from hearth.spaces.addresses import ClientAddress
from hearth.spaces.effects import Attach, Audit, Broadcast, Detach, Effect, Enter, Reply, Send, Voice
from hearth.spaces.layout import Point
from hearth.spaces.venue import DENIED, REMOVED, SESSION_ENDED
from hearth.spaces.voice import build_frame
from tests.support.world import COMMIT, World, broadcasts, error_code, reply, wire

SEED = b"s" * 32


class ModWorld(World):
    def facilitator(self, role: str = "facilitator", **fields: Any) -> tuple[Any, dict[str, Any]]:
        ticket = self.venue.issue_ticket(role, self.clock.seconds(), account="ana")  # type: ignore[arg-type]
        return self.join(ticket=ticket, **fields)

    def join_from(self, address: str, room: str = "circle", **fields: Any) -> list[Any]:
        conn = self.connect()
        conn.address = ClientAddress(SEED, address)
        effects = self.send(conn, {"type": "join", "room": room, **fields})
        self.last = conn
        return effects


# One valid-shaped example of every client message; `{member}` is filled in.
EXAMPLES: dict[str, dict[str, Any]] = {
    "move": {"x": 2.1, "y": 8.5}, "sit": {"seat": 0}, "stand": {},
    "rename": {"pseudonym": "Brave Lark"}, "keys": {"dh": COMMIT, "sig": COMMIT},
    "envelope": {"body": "AAAA", "commitment": COMMIT}, "direct": {"to": "{member}", "body": "AA"},
    "report": {"seq": 1, "from": "{member}", "ts": 1, "text": "x", "franking_key": COMMIT,
               "commitment": COMMIT, "tag": COMMIT},
    "list_reports": {}, "remove": {"member": "{member}"}, "mute": {"member": "{member}"},
    "ask_unmute": {"member": "{member}"}, "stick": {"on": True}, "give_stick": {"member": None},
    "raise_hand": {"up": True}, "ban": {"member": "{member}", "minutes": 5},
    "lobby": {"on": False}, "admit": {"member": "{member}"}, "deny": {"member": "{member}"},
    "lock": {"on": False}, "capacity": {"value": 8}, "hide": {"seq": 1},
    "slow_mode": {"seconds": 0}, "private_corner": {"corner": "corner-west", "member": "{member}"},
    "release_corner": {"corner": "corner-west"}, "end_session": {}, "leave": {},
    "join": {"room": "circle"}, "resume": {"token": "x"},
    "help": {}, "flag": {"category": "intent", "severity": "high", "pack": "en:3"},
    "worried": {"member": "{member}"}, "im_ok": {},
    "incident": {"incident": "abc", "action": "ack"}, "alert_seen": {"incident": "abc"},
    "duty": {"on": True},
    "list_incidents": {}, "voice_transport": {}, "status": {"status": "listening"},
}


# Who may send what, written out here rather than read from the code: a type the code
# forgot to guard, or guarded by mistake, fails the matrix below.
FACILITATORS_ONLY = frozenset({
    "list_reports", "remove", "mute", "ask_unmute", "stick", "give_stick", "ban", "lobby",
    "admit", "deny", "lock", "capacity", "hide", "slow_mode", "private_corner", "release_corner",
    "end_session", "incident", "alert_seen", "duty", "list_incidents"})
EVERYONE = frozenset({
    "join", "resume", "move", "sit", "stand", "rename", "keys", "envelope", "direct", "report",
    "raise_hand", "help", "flag", "worried", "im_ok", "leave", "voice_transport",
    "status"})


def test_every_message_type_has_an_example_and_a_place_in_the_matrix() -> None:
    assert set(EXAMPLES) == set(p.CLIENT_TYPES)
    assert set(p.CLIENT_TYPES) == FACILITATORS_ONLY | EVERYONE
    assert not FACILITATORS_ONLY & EVERYONE


@pytest.mark.parametrize("role", ["participant", "facilitator", "operator"])
@pytest.mark.parametrize("kind", sorted(p.CLIENT_TYPES))
def test_authorization_matrix(role: str, kind: str) -> None:
    w = ModWorld()
    if role == "participant":
        actor, _ = w.join()
    else:
        actor, _ = w.facilitator(role)
    _, target = w.join()
    fields = {k: (v.replace("{member}", target["member"]) if isinstance(v, str) else v)
              for k, v in EXAMPLES[kind].items()}
    effects = w.send(actor, {"type": kind, **fields})
    errors = [m for m in (wire(e.message) for e in effects if isinstance(e, Reply))
              if m["type"] == "error"]
    audits = [e for e in effects if isinstance(e, Audit)]
    if kind in FACILITATORS_ONLY and role == "participant":
        assert [e["code"] for e in errors] == ["forbidden"]
        assert [(a.action, a.outcome) for a in audits] == [(kind, "refused:forbidden")]
        assert not [e for e in effects if isinstance(e, Broadcast | Send | Detach)]
    else:
        assert "forbidden" not in [e["code"] for e in errors]
        if kind in FACILITATORS_ONLY and kind != "list_reports" and not errors:
            assert [(a.actor, a.action, a.outcome) for a in audits] == [("ana", kind, "ok")]


def test_forged_role_fields_and_replayed_tickets_give_no_role() -> None:
    w = ModWorld()
    _, welcome = w.join(role="facilitator", roles=["operator"])  # unknown fields are ignored
    assert welcome["room"]["members"][-1]["role"] == "participant"
    ticket = w.venue.issue_ticket("facilitator", w.clock.seconds())
    w.join(ticket=ticket)
    assert error_code(w.send(w.connect(), {"type": "join", "room": "circle", "ticket": ticket})) \
        == "forbidden"
    assert error_code(w.send(w.connect(), {"type": "join", "room": "circle",
                                           "ticket": ticket + "x"})) == "forbidden"


def test_lobby_admit_and_deny() -> None:
    w = ModWorld()
    fac, _ = w.facilitator()
    newcomer, effects = w.in_lobby(fac, "Shy Finch")
    waiting = reply(effects, "waiting")
    assert "token" not in waiting
    assert Attach("circle", waiting["member"], waiting=True) in effects
    [lobby] = [e for e in effects if isinstance(e, Send) and wire(e.message)["type"] == "lobby"]
    assert wire(lobby.message)["waiting"][0]["pseudonym"] == "Shy Finch"
    assert not broadcasts(effects, "member_joined")  # the room does not see the lobby
    assert error_code(w.send(newcomer, {"type": "envelope", "body": "AA", "commitment": COMMIT})) \
        == "waiting"
    effects = w.send(fac, {"type": "admit", "member": waiting["member"]})
    assert Enter("circle", waiting["member"]) in effects
    [welcome] = [e for e in effects if isinstance(e, Send) and wire(e.message)["type"] == "welcome"]
    assert welcome.member == waiting["member"] and wire(welcome.message)["token"]
    assert broadcasts(effects, "member_joined")
    # now a second one is denied
    other = w.connect()
    second = reply(w.send(other, {"type": "join", "room": "circle"}), "waiting")
    effects = w.send(fac, {"type": "deny", "member": second["member"]})
    assert Detach(second["member"], DENIED, "not admitted this time") in effects
    assert w.venue.rooms["circle"].waiting == {}


def test_a_ban_survives_rejoining_from_the_same_address_until_it_ends() -> None:
    w = ModWorld()
    fac, _ = w.facilitator()
    reply(w.join_from("198.51.100.7"), "welcome")
    banned = w.last.seat.member
    effects = w.send(fac, {"type": "ban", "member": banned, "minutes": 30})
    assert Detach(banned, REMOVED, "banned by a facilitator") in effects
    assert error_code(w.join_from("198.51.100.7")) == "banned"
    reply(w.join_from("198.51.100.8"), "welcome")  # another address is not affected
    w.clock.advance(29 * 60)
    assert error_code(w.join_from("198.51.100.7")) == "banned"
    w.clock.advance(2 * 60)  # the ban is over
    reply(w.join_from("198.51.100.7"), "welcome")
    w.tick()
    assert w.venue.bans.bans == []  # nothing of the address is kept after the ban ends


def test_a_ban_across_midnight_still_holds() -> None:
    w = ModWorld()
    midnight = 86400 * (int(w.clock.seconds()) // 86400 + 1)
    w.clock.advance(midnight - w.clock.seconds() - 60)  # one minute before UTC midnight
    fac, _ = w.facilitator()
    reply(w.join_from("203.0.113.9"), "welcome")
    w.send(fac, {"type": "ban", "member": w.last.seat.member, "minutes": 60})
    w.clock.advance(120)  # a new day, a new salt
    assert error_code(w.join_from("203.0.113.9")) == "banned"


def test_a_ban_goes_with_its_room_to_the_node_that_runs_it_next() -> None:
    import json
    w = ModWorld()
    fac, _ = w.facilitator()
    reply(w.join_from("198.51.100.7"), "welcome")
    w.send(fac, {"type": "ban", "member": w.last.seat.member, "minutes": 30})
    state = json.loads(json.dumps(w.venue.export_room("circle")))  # as saved in Redis
    assert "198.51.100.7" not in json.dumps(state)
    other = ModWorld()  # another node (same secrets), taking the room over
    other.venue.import_room("circle", state, other.clock.seconds())
    other.venue.import_room("circle", state, other.clock.seconds())  # twice: no duplicate
    assert len(other.venue.bans.bans) == 1
    assert error_code(other.join_from("198.51.100.7")) == "banned"
    reply(other.join_from("198.51.100.8"), "welcome")
    other.clock.advance(31 * 60)
    other.tick()
    assert other.venue.bans.bans == []  # and it ends there too


def reachable(root: object) -> Iterator[object]:
    """Every object reachable from `root` through attributes, containers and slots."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, type | ModuleType) or callable(item):
            continue
        seen.add(id(item))
        yield item
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple | set | frozenset):
            stack += list(item)
        elif not isinstance(item, str | bytes | int | float | bool):
            stack += list(getattr(item, "__dict__", {}).values())
            stack += [getattr(item, s) for s in getattr(type(item), "__slots__", ())
                      if hasattr(item, s)]


def test_the_ban_works_and_keeps_no_address() -> None:
    w = ModWorld()
    fac, _ = w.facilitator()
    reply(w.join_from("192.0.2.55"), "welcome")
    w.send(fac, {"type": "ban", "member": w.last.seat.member, "minutes": 5})
    # The ban holds: that address is refused, another is not...
    assert error_code(w.join_from("192.0.2.55")) == "banned"
    reply(w.join_from("192.0.2.56"), "welcome")
    # ...and nothing the venue keeps (nor the room state it hands to another node) holds the
    # address, as text or as bytes: only its keyed hash.
    state = w.venue.export_room("circle")
    [ban] = w.venue.bans.bans
    assert ban.address_hash in list(reachable(w.venue))  # (the walk does reach the bans)
    for kept in (*reachable(w.venue), *reachable(state)):
        if isinstance(kept, str | bytes):
            assert (b"192.0.2.55" if isinstance(kept, bytes) else "192.0.2.55") not in kept
    # ClientAddress is the connection's own object, never kept by the venue.
    assert not any(isinstance(kept, ClientAddress) for kept in reachable(w.venue))
    assert repr(w.last.address) == "<ClientAddress>"


def test_a_participant_repeating_a_refused_control_is_audited_once_a_minute() -> None:
    """Every refusal is answered; the audit log (fsync'd, and shared through Redis) gets one
    line a minute per member, not one per frame."""
    w = ModWorld()
    talker, _ = w.join()
    audited = []
    for kind in ["lock"] * 30 + ["end_session"] * 30:
        effects = w.send(talker, {"type": kind, **EXAMPLES[kind]})
        assert error_code(effects) == "forbidden"
        audited += [e for e in effects if isinstance(e, Audit)]
        w.clock.advance(0.5)
    assert [(a.action, a.outcome) for a in audited] == [("lock", "refused:forbidden")]
    w.clock.advance(30)
    effects = w.send(talker, {"type": "end_session", **EXAMPLES["end_session"]})
    assert [(a.action, a.outcome) for a in effects if isinstance(a, Audit)] == [
        ("end_session", "refused:forbidden")]


def test_lock_capacity_and_slow_mode() -> None:
    w = ModWorld()
    fac, _ = w.facilitator()
    talker, _ = w.join()
    [settings] = broadcasts(w.send(fac, {"type": "lock", "on": True}), "room_settings")
    assert wire(settings.message)["locked"] is True
    assert error_code(w.send(w.connect(), {"type": "join", "room": "circle"})) == "room_locked"
    w.facilitator()  # facilitators still come in
    w.send(fac, {"type": "lock", "on": False})
    w.send(fac, {"type": "capacity", "value": 4})
    w.join()
    assert error_code(w.send(w.connect(), {"type": "join", "room": "circle"})) == "room_full"
    w.send(fac, {"type": "slow_mode", "seconds": 10})
    envelope = {"type": "envelope", "body": "AAAA", "commitment": COMMIT}
    assert broadcasts(w.send(talker, envelope), "envelope")
    assert error_code(w.send(talker, envelope)) == "slow_mode"
    assert broadcasts(w.send(fac, envelope), "envelope")  # facilitators are not slowed
    w.clock.advance(9.4)
    assert reply(w.send(talker, envelope), "error")["message"].endswith(
        "you can write again in 1 second.")
    w.clock.advance(0.6)
    assert broadcasts(w.send(talker, envelope), "envelope")


def test_hide_a_message_for_everyone() -> None:
    w = ModWorld()
    fac, _ = w.facilitator()
    talker, _ = w.join()
    [sent] = broadcasts(w.send(talker, {"type": "envelope", "body": "AAAA", "commitment": COMMIT}),
                        "envelope")
    [hidden] = broadcasts(w.send(fac, {"type": "hide", "seq": wire(sent.message)["seq"]}), "hidden")
    assert wire(hidden.message)["target"] == wire(sent.message)["seq"] and hidden.exclude is None


def test_private_corner_isolates_audio_and_chat() -> None:
    w = ModWorld()
    fac, wf = w.facilitator()
    person, wp = w.join()
    outsider, wo = w.join()
    effects = w.send(fac, {"type": "private_corner", "corner": "corner-west",
                           "member": wp["member"]})
    [corners] = broadcasts(effects, "corners")
    assert wire(corners.message)["private"] == {"corner-west": sorted([wf["member"], wp["member"]])}
    room = w.venue.rooms["circle"]
    assert room.config.layout.zone_of(room.members[wp["member"]].pos) == "corner-west"
    room.members[wo["member"]].pos = Point(3.3, 3.3)
    w.clock.advance(1)
    assert error_code(w.send(outsider, {"type": "move", "x": 2.9, "y": 2.9})) == "corner_private"
    effects = w.send(person, {"type": "envelope", "body": "AAAA", "commitment": COMMIT,
                              "zone": "corner-west"})
    sends = [e for e in effects if isinstance(e, Send)]
    assert [s.member for s in sends] == [wf["member"]] and not broadcasts(effects, "envelope")
    assert wire(sends[0].message)["zone"] == "corner-west" and wire(sends[0].message)["seq"] == 1
    assert error_code(w.send(outsider, {"type": "envelope", "body": "AAAA", "commitment": COMMIT,
                                        "zone": "corner-west"})) == "not_in_zone"
    w.send(fac, {"type": "release_corner", "corner": "corner-west"})
    w.clock.advance(1)
    assert not [e for e in w.send(outsider, {"type": "move", "x": 2.9, "y": 2.9})
                if isinstance(e, Reply)]


def test_a_private_corner_moves_a_bystander_out_and_nothing_of_it_reaches_them() -> None:
    """Issue 14: someone standing in the corner when it became private stayed there and got
    the corner's envelopes and voice. Now they are moved out, kept out, and get nothing."""
    w = ModWorld()
    fac, wf = w.facilitator()
    person, wp = w.join()
    bystander, wb = w.join()
    room = w.venue.rooms["circle"]
    room.members[wb["member"]].pos = Point(1.0, 1.0)  # standing in corner-west (0,0)-(3,3)
    epoch = room.epoch
    effects = w.send(fac, {"type": "private_corner", "corner": "corner-west",
                           "member": wp["member"]})
    moved = [wire(b.message)["member"] for b in broadcasts(effects, "member_updated")
             if wire(b.message)["member"]["id"] == wb["member"]]
    assert moved and moved[0]["zone"] == "room"
    assert room.config.layout.zone_of(room.members[wb["member"]].pos) == "room"
    assert room.config.layout.walkable(room.members[wb["member"]].pos)
    [corners] = broadcasts(effects, "corners")
    assert wire(corners.message)["epoch"] == room.epoch == epoch + 1  # the corner's keys start fresh
    w.clock.advance(1)
    assert error_code(w.send(bystander, {"type": "move", "x": 2.9, "y": 2.9})) == "corner_private"
    # Even placed back inside by force (a stale node, a bug), the bystander gets nothing.
    room.members[wb["member"]].pos = Point(1.5, 1.5)
    everything: list[Effect] = []
    everything += w.send(person, {"type": "envelope", "body": "AAAA", "commitment": COMMIT,
                                  "zone": "corner-west"})
    everything += w.send(person, {"type": "direct", "to": wf["member"], "body": "AA",
                                  "zone": "corner-west"})
    everything += w.send(fac, {"type": "hide", "seq": 1, "zone": "corner-west"})
    voice = person.receive(build_frame(b"\xaa" * 40, seq=1, level=20), True, w.clock.seconds())
    everything += voice
    reached = {e.member for e in everything if isinstance(e, Send)}
    reached |= {m for e in everything if isinstance(e, Voice) for m in e.listeners}
    assert reached == {wf["member"], wp["member"]}  # the hidden notice goes to both members
    assert not [e for e in everything if isinstance(e, Broadcast)]
    [direct] = [e for e in everything if isinstance(e, Send) and wire(e.message)["type"] == "direct"]
    assert wire(direct.message)["zone"] == "corner-west"
    # The bystander may not speak in the corner, nor hand a corner key to a member of it.
    assert error_code(w.send(bystander, {"type": "envelope", "body": "AAAA", "commitment": COMMIT,
                                         "zone": "corner-west"})) == "not_in_zone"
    assert error_code(w.send(bystander, {"type": "direct", "to": wp["member"], "body": "AA",
                                         "zone": "corner-west"})) == "not_in_zone"
    assert error_code(w.send(person, {"type": "direct", "to": wb["member"], "body": "AA",
                                      "zone": "corner-west"})) == "not_in_zone"
    heard = bystander.receive(build_frame(b"\xbb" * 40, seq=1, level=20), True, w.clock.seconds())
    assert not [e for e in heard if isinstance(e, Voice)]
    # Nobody new spawns into it either.
    _, late = w.join()
    assert room.config.layout.zone_of(room.members[late["member"]].pos) == "room"


def test_end_session_closes_everyone_and_starts_afresh() -> None:
    w = ModWorld()
    fac, wf = w.facilitator()
    _, wp = w.join()
    epoch = w.venue.rooms["circle"].epoch
    effects = w.send(fac, {"type": "end_session"})
    assert broadcasts(effects, "session_ended")
    closed = {e.member for e in effects if isinstance(e, Detach) and e.code == SESSION_ENDED}
    assert closed == {wf["member"], wp["member"]}
    room = w.venue.rooms["circle"]
    assert room.members == {} and room.epoch > epoch
    assert error_code(w.send(w.connect(), {"type": "resume", "token": wp["token"]})) \
        == "session_expired"


def said_and_reportable(w: ModWorld, text: str,
                        reporter: str = "Kind Wren") -> tuple[Any, dict[str, Any]]:
    """A member says `text` to the room; another member (`reporter`, returned) and the report
    proving it."""
    import base64

    from hearth.spaces.e2ee.franking import commit
    harasser, wh = w.join()
    target, _ = w.join(pseudonym=reporter)
    key = b"f" * 32
    commitment = base64.b64encode(commit(key, text)).decode()
    [out] = broadcasts(w.send(harasser, {"type": "envelope", "body": "AAAA",
                                         "commitment": commitment}), "envelope")
    m = wire(out.message)
    return target, {"type": "report", "seq": m["seq"], "from": wh["member"], "ts": m["ts"],
                    "text": text, "tag": m["tag"],
                    "franking_key": base64.b64encode(key).decode(), "commitment": commitment}


def test_reports_reach_the_rooms_facilitators_at_once() -> None:
    w = ModWorld()
    _, wf = w.facilitator()
    target, report = said_and_reportable(w, "go away")
    effects = w.send(target, report)
    [push] = [e for e in effects if isinstance(e, Send) and wire(e.message)["type"] == "report"]
    assert push.member == wf["member"] and wire(push.message)["report"]["text"] == "go away"


def test_a_message_reported_again_and_again_is_kept_and_told_once() -> None:
    """Reports are kept in memory for reports_days: the same report sent at the message rate
    used to add a copy (and push it to every facilitator) each time, without bound."""
    w = ModWorld()
    w.facilitator()
    target, report = said_and_reportable(w, "go away")
    answers, pushed = [], 0
    for _ in range(200):
        effects = w.send(target, report)
        answers.append(reply(effects, "report_received")["id"])
        pushed += len([e for e in effects if isinstance(e, Send)
                       and wire(e.message)["type"] == "report"])
    assert len(set(answers)) == 1 and pushed == 1
    assert len(w.venue.reports.reports) == 1


def test_one_reporter_keeps_at_most_a_hundred_reports_in_a_room() -> None:
    from hearth.moderation.reports import MAX_REPORTS_PER_REPORTER
    w = ModWorld()
    target, report = said_and_reportable(w, "go away")
    queue = w.venue.reports
    for seq in range(MAX_REPORTS_PER_REPORTER):
        queue.add(room="circle", seq=1000 + seq, sent_at=0, reported_at=0, sender="m",
                  sender_pseudonym="Someone", reporter_pseudonym="Kind Wren",
                  text="x", reason="")
    effects = w.send(target, report)
    assert error_code(effects) == "rate_limited"
    assert len(queue.reports) == MAX_REPORTS_PER_REPORTER
    assert not queue.full(room="other", reporter_pseudonym="Kind Wren")


def test_a_ticket_from_one_node_is_redeemed_once_by_the_node_that_runs_the_room() -> None:
    key = b"t" * 32
    signing, running = ModWorld(), ModWorld()
    for world in (signing, running):
        world.venue._ticket_key = key  # the same secrets on every node
    ticket = signing.venue.issue_ticket("facilitator", signing.clock.seconds(), account="ana")
    _, welcome = running.join(ticket=ticket)
    assert welcome["room"]["members"][-1]["role"] == "facilitator"
    assert error_code(running.send(running.connect(), {"type": "join", "room": "circle",
                                                       "ticket": ticket})) == "forbidden"
    stranger = ModWorld()  # another deployment's key
    assert error_code(stranger.send(stranger.connect(), {
        "type": "join", "room": "circle",
        "ticket": signing.venue.issue_ticket("operator", signing.clock.seconds())})) \
        == "forbidden"
    late = signing.venue.issue_ticket("facilitator", signing.clock.seconds())
    running.clock.advance(61)
    assert error_code(running.send(running.connect(), {"type": "join", "room": "circle",
                                                       "ticket": late})) == "forbidden"
    running.tick()
    assert running.venue._used_tickets == {}  # used nonces are kept only while they could count


def test_only_the_facilitators_toggle_changes_the_talking_stick_mode() -> None:
    """Giving the stick, then taking it back, leaves the mode as the facilitator set it."""
    w = ModWorld()
    fac, _ = w.facilitator()
    _, person = w.join()
    room = w.venue.rooms["circle"]
    # Off: giving or taking it back is refused and changes nothing.
    for member in (person["member"], None):
        effects = w.send(fac, {"type": "give_stick", "member": member, "ref": "g-1"})
        assert reply(effects, "error") == {"type": "error", "code": "stick_off", "ref": "g-1",
                                           "message": p.ERRORS["stick_off"]}
        assert not broadcasts(effects, "stick")
        assert (room.stick_on, room.stick_holder) == (False, None)
    # On: give, take back; the mode stays on until the facilitator turns it off.
    [on] = broadcasts(w.send(fac, {"type": "stick", "on": True}), "stick")
    assert (wire(on.message)["on"], wire(on.message)["holder"]) == (True, None)
    [given] = broadcasts(w.send(fac, {"type": "give_stick", "member": person["member"]}), "stick")
    assert (wire(given.message)["on"], wire(given.message)["holder"]) == (True, person["member"])
    [taken] = broadcasts(w.send(fac, {"type": "give_stick", "member": None}), "stick")
    assert (wire(taken.message)["on"], wire(taken.message)["holder"]) == (True, None)
    assert room.stick_on is True
    [off] = broadcasts(w.send(fac, {"type": "stick", "on": False}), "stick")
    assert (wire(off.message)["on"], wire(off.message)["holder"]) == (False, None)
    assert room.stick_on is False


def test_a_seat_inside_a_private_corner_is_closed_to_others() -> None:
    import copy
    import random
    import tempfile

    from hearth.moderation.wiring import moderated_venue
    from hearth.spaces.config import parse_config
    from tests.support.config import BASE
    data = copy.deepcopy(BASE)
    data["server"]["data_dir"] = tempfile.mkdtemp(prefix="hearth-test-")
    seat0 = {"id": "corner-top", "x": 6.0, "y": 1.8, "width": 2.0, "height": 1.2}  # seat 0 at (7, 2.4)
    data["rooms"][0]["layout"]["corners"].append(seat0)
    w = ModWorld()
    counter = iter(range(1, 100))
    w.venue = moderated_venue(parse_config(data, "test.toml"), franking_key=b"k" * 32,
                              rng=random.Random(7), make_member_id=lambda: f"m{next(counter)}")
    fac, _ = w.facilitator()
    _, wp = w.join()
    other, wo = w.join()
    room = w.venue.rooms["circle"]
    room.members[wo["member"]].pos = Point(7.0, 3.5)  # within reach of seat 0, outside the corner
    w.send(fac, {"type": "private_corner", "corner": "corner-top", "member": wp["member"]})
    assert error_code(w.send(other, {"type": "sit", "seat": 0})) == "corner_private"
