"""The sans-IO room core, driven directly with a fake clock: no sockets, no reactor."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from hearth.spaces import protocol as p
from hearth.spaces.effects import Attach, Broadcast, Close, Detach, Effect, Reply, Send
from hearth.spaces.room import DSEQ_MARGIN, KEPT_DIRECT_CHARS, KEPT_DIRECTS
from hearth.spaces.server_messages import DirectEnvelope
from hearth.spaces.venue import RESUMED_ELSEWHERE
from tests.support.world import COMMIT, World, broadcasts, error_code, reply, wire


def test_entering_and_resuming_advance_the_epoch() -> None:
    w = World()
    _, first = w.join()
    conn, second = w.join()
    assert second["room"]["epoch"] == first["room"]["epoch"] + 1
    conn.lost(w.clock.seconds())
    effects = w.send(w.connect(), {"type": "resume", "token": second["token"]})
    resumed = reply(effects, "welcome")
    # A resumed page may have reloaded and lost its sender chain: everyone rotates.
    assert resumed["room"]["epoch"] == second["room"]["epoch"] + 1
    [back] = broadcasts(effects, "member_resumed")
    assert back.exclude == second["member"] and wire(back.message)["epoch"] == resumed["room"]["epoch"]
    assert wire(back.message)["member"]["id"] == second["member"] and not wire(back.message)["member"]["away"]


def keys(n: int, epoch: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "keys", "dh": base64.b64encode(bytes([n]) * 32).decode(),
                           "sig": base64.b64encode(bytes([n + 1]) * 32).decode()}
    if epoch is not None:
        out |= {"ek": base64.b64encode(bytes([n + 2]) * 32).decode(), "ek_epoch": epoch,
                "ek_sig": base64.b64encode(bytes([n + 3]) * 64).decode()}
    return out


def test_keys_carry_an_epoch_key_and_a_new_identity_advances_the_epoch() -> None:
    w = World()
    conn, welcome = w.join()
    epoch = welcome["room"]["epoch"]
    [updated] = broadcasts(w.send(conn, keys(1)), "member_updated")
    first = wire(updated.message)
    assert set(first["member"]["keys"]) == {"dh", "sig"} and "epoch" not in first
    [updated] = broadcasts(w.send(conn, keys(1, epoch)), "member_updated")
    assert wire(updated.message)["member"]["keys"]["ek_epoch"] == epoch
    assert "epoch" not in wire(updated.message)  # the same identity with its epoch key: no change
    [updated] = broadcasts(w.send(conn, keys(5, epoch)), "member_updated")
    assert wire(updated.message)["epoch"] == epoch + 1  # new identity keys: everyone rotates
    for bad in ({"ek_epoch": 3}, {**keys(1, 2), "ek_sig": "AAAA"}, {**keys(1, 2), "ek_epoch": 0},
                {**keys(1, 2), "ek": None}):
        assert error_code(w.send(conn, {**keys(1), **bad})) == "bad_message", bad


def test_join_gives_token_pseudonym_avatar_and_tells_the_room() -> None:
    w = World()
    _, first = w.join()
    conn = w.connect()
    effects = w.send(conn, {"type": "join", "room": "circle", "pseudonym": "Blue Kettle"})
    welcome = reply(effects, "welcome")
    assert len(welcome["token"]) >= 32 and welcome["token"] != first["token"]
    assert welcome["room"]["id"] == "circle" and welcome["resumed"] is False
    me = next(m for m in welcome["room"]["members"] if m["id"] == welcome["member"])
    assert me["pseudonym"] == "Blue Kettle" and me["role"] == "participant"
    assert set(me["avatar"]) == {"color", "shape"}
    assert Attach("circle", welcome["member"]) in effects
    [joined] = broadcasts(effects, "member_joined")
    assert joined.exclude == welcome["member"] and wire(joined.message)["member"]["id"] == welcome["member"]
    first_pseudonym = next(m["pseudonym"] for m in welcome["room"]["members"]
                           if m["id"] == first["member"])
    assert len(first_pseudonym.split()) == 2  # generated: adjective + animal


def test_spanish_pseudonyms_and_generated_names_are_unique_in_the_room() -> None:
    w = World()
    names = set()
    for _ in range(8):
        _, welcome = w.join(locale="es")
        names.add(next(m["pseudonym"] for m in welcome["room"]["members"]
                       if m["id"] == welcome["member"]))
    assert len(names) == 8
    from hearth.spaces.pseudonyms import ANIMALS
    assert all(name.split()[0] in ANIMALS["es"] for name in names)


@pytest.mark.parametrize("name,code", [
    ("x", "pseudonym_invalid"), ("a" * 25, "pseudonym_invalid"), ("<script>", "pseudonym_invalid"),
    ("Facilitator Ann", "pseudonym_reserved"), ("f.a-c i l i t a t o r", "pseudonym_reserved"),
    ("FACILITADORA", "pseudonym_reserved"), ("Staff", "pseudonym_reserved"), ("12345", "pseudonym_invalid"),
])
def test_bad_pseudonyms_are_refused_with_their_code(name: str, code: str) -> None:
    w = World()
    effects = w.send(w.connect(), {"type": "join", "room": "circle", "pseudonym": name})
    assert error_code(effects) == code


def test_pseudonym_taken_is_case_insensitive() -> None:
    w = World()
    w.join(pseudonym="Quiet Otter")
    effects = w.send(w.connect(), {"type": "join", "room": "circle", "pseudonym": "quiet  OTTER"})
    assert error_code(effects) == "pseudonym_taken"


def test_capacity_counts_members_who_are_away() -> None:
    w = World()
    conns = [w.join("other")[0] for _ in range(3)]
    assert error_code(w.send(w.connect(), {"type": "join", "room": "other"})) == "room_full"
    conns[0].lost(w.clock.seconds())  # away, still holds the place
    assert error_code(w.send(w.connect(), {"type": "join", "room": "other"})) == "room_full"
    w.clock.advance(61)
    w.tick()
    reply(w.send(w.connect(), {"type": "join", "room": "other"}), "welcome")


def test_unknown_room_and_messages_before_join() -> None:
    w = World()
    assert error_code(w.send(w.connect(), {"type": "join", "room": "nope"})) == "room_not_found"
    assert error_code(w.send(w.connect(), {"type": "move", "x": 1, "y": 1})) == "not_joined"
    conn, _ = w.join()
    assert error_code(w.send(conn, {"type": "join", "room": "circle"})) == "already_joined"


def test_resume_within_grace_keeps_member_pseudonym_and_seat_and_others_see_away() -> None:
    w = World()
    conn, welcome = w.join(pseudonym="Calm Heron")
    seat0 = w.venue.config.room("circle").layout.seats[0]  # type: ignore[union-attr]
    w.venue.rooms["circle"].members[welcome["member"]].pos = seat0
    w.send(conn, {"type": "sit", "seat": 0})
    [away] = conn.lost(w.clock.seconds())  # others see it away, not gone
    assert isinstance(away, Broadcast) and wire(away.message)["type"] == "member_updated"
    assert wire(away.message)["member"]["away"] is True and wire(away.message)["member"]["seat"] == 0
    w.clock.advance(59)
    assert broadcasts(w.tick(), "member_left") == []
    again = w.connect()
    effects = w.send(again, {"type": "resume", "token": welcome["token"]})
    resumed = reply(effects, "welcome")
    assert resumed["resumed"] is True and resumed["member"] == welcome["member"]
    assert resumed["token"] != welcome["token"]  # rotated on every resume
    me = next(m for m in resumed["room"]["members"] if m["id"] == welcome["member"])
    assert me["pseudonym"] == "Calm Heron" and me["seat"] == 0 and me["away"] is False
    # the others are told only that the member is back, no longer away (and the epoch
    # moved): no leave, no join
    [back] = [e for e in effects if isinstance(e, Broadcast)]
    assert wire(back.message)["type"] == "member_resumed" and back.exclude == welcome["member"]
    assert wire(back.message)["member"]["away"] is False
    # the old token is spent as soon as the resumed connection says anything
    w.send(again, {"type": "stand"})
    assert error_code(w.send(w.connect(), {"type": "resume", "token": welcome["token"]})) \
        == "session_expired"


def test_a_welcome_lost_on_the_way_does_not_lock_the_member_out() -> None:
    """The resumed connection never got its welcome (the room moved at that moment): the
    token it resumed with still works, once; the token it never saw is replaced again."""
    w = World()
    conn, welcome = w.join(pseudonym="Calm Heron")
    conn.lost(w.clock.seconds())
    lost = w.connect()
    unseen = reply(w.send(lost, {"type": "resume", "token": welcome["token"]}), "welcome")
    lost.lost(w.clock.seconds())  # the welcome never reached the client
    again = w.connect()
    back = reply(w.send(again, {"type": "resume", "token": welcome["token"]}), "welcome")
    assert back["member"] == welcome["member"] and back["token"] not in (unseen["token"],
                                                                          welcome["token"])
    assert back["token"].startswith("circle.")  # a token names its room: any node routes it
    assert w.venue.token_room(back["token"]) == "circle"
    w.send(again, {"type": "stand"})
    for spent in (welcome["token"], unseen["token"]):
        assert error_code(w.send(w.connect(), {"type": "resume", "token": spent})) \
            == "session_expired"


def test_after_grace_the_member_leaves_and_the_epoch_advances() -> None:
    w = World()
    conn, welcome = w.join()
    epoch = welcome["room"]["epoch"]
    conn.lost(w.clock.seconds())
    w.clock.advance(60)
    [left] = broadcasts(w.tick(), "member_left")
    assert wire(left.message)["member"] == welcome["member"] and wire(left.message)["reason"] == "timeout"
    assert wire(left.message)["epoch"] == epoch + 1
    assert error_code(w.send(w.connect(), {"type": "resume", "token": welcome["token"]})) \
        == "session_expired"


def test_resume_while_still_connected_detaches_the_old_connection() -> None:
    w = World()
    old, welcome = w.join()
    effects = w.send(w.connect(), {"type": "resume", "token": welcome["token"]})
    assert Detach(welcome["member"], RESUMED_ELSEWHERE, "resumed on another connection") in effects
    assert error_code(w.send(old, {"type": "move", "x": 1, "y": 1})) == "not_joined"
    # the old connection's loss must not mark the resumed member away
    old.lost(w.clock.seconds())
    assert w.venue.rooms["circle"].members[welcome["member"]].away_since is None


def test_seats_one_member_each_and_only_within_reach() -> None:
    w = World()
    a, wa = w.join()
    b, wb = w.join()
    room = w.venue.rooms["circle"]
    assert error_code(w.send(a, {"type": "sit", "seat": 0})) == "seat_too_far"
    assert error_code(w.send(a, {"type": "sit", "seat": 99})) == "seat_not_found"
    seat = room.config.layout.seats[0]
    room.members[wa["member"]].pos = seat
    room.members[wb["member"]].pos = seat
    [update] = broadcasts(w.send(a, {"type": "sit", "seat": 0}), "member_updated")
    assert wire(update.message)["member"]["seat"] == 0
    assert error_code(w.send(b, {"type": "sit", "seat": 0})) == "seat_taken"
    w.clock.advance(1)
    [stood] = broadcasts(w.send(a, {"type": "move", "x": seat.x, "y": seat.y + 1}), "member_updated")
    assert wire(stood.message)["member"]["seat"] is None  # walking away frees the seat
    [taken] = broadcasts(w.send(b, {"type": "sit", "seat": 0}), "member_updated")
    assert wire(taken.message)["member"]["id"] == wb["member"] and wire(taken.message)["member"]["seat"] == 0


def test_movement_is_clipped_to_walk_speed_and_kept_in_bounds() -> None:
    w = World(movement={"walk_speed": 2.0})
    conn, welcome = w.join()
    room = w.venue.rooms["circle"]
    me = room.members[welcome["member"]]
    start = me.pos  # spawn (2.0, 8.5)
    w.clock.advance(0.5)
    w.send(conn, {"type": "move", "x": 12.0, "y": 8.5})  # 10 m away, 0.5 s later
    assert me.pos.x == pytest.approx(start.x + 2.0 * 0.5 + 0.25, abs=0.01)
    assert me.pos.y == start.y
    w.clock.advance(0.5)
    assert error_code(w.send(conn, {"type": "move", "x": -1.0, "y": 8.5})) == "position_invalid"
    assert error_code(w.send(conn, {"type": "move", "x": 3.0, "y": 11.0})) == "position_invalid"
    # the hearth is not walkable
    me.pos = type(me.pos)(7.0, 6.2)
    w.clock.advance(1)
    assert error_code(w.send(conn, {"type": "move", "x": 7.0, "y": 5.0})) == "position_invalid"


def test_positions_are_batched_per_tick_and_only_when_something_moved() -> None:
    w = World()
    a, wa = w.join()
    b, wb = w.join()
    w.tick()
    for i in range(3):
        w.clock.advance(0.1)
        w.send(a, {"type": "move", "x": 2.0 + 0.1 * (i + 1), "y": 8.5})
        w.send(b, {"type": "move", "x": 12.0 - 0.1 * (i + 1), "y": 8.5})
    [batch] = broadcasts(w.tick(), "positions")
    assert wire(batch.message)["moves"] == sorted([[wa["member"], 2.3, 8.5, "room"],
                                             [wb["member"], 11.7, 8.5, "room"]])
    assert broadcasts(w.tick(), "positions") == []


def test_move_rate_limit() -> None:
    w = World(limits={"moves_per_second": 5})
    conn, _ = w.join()
    codes = [error_code(e) if any(isinstance(x, Reply) for x in e) else None
             for e in (w.send(conn, {"type": "move", "x": 2.0, "y": 8.4}) for _ in range(8))]
    assert codes[:5] == [None] * 5 and "rate_limited" in codes[5:]


def test_quiet_corner_is_a_zone() -> None:
    w = World()
    conn, welcome = w.join()
    room = w.venue.rooms["circle"]
    room.members[welcome["member"]].pos = type(room.members[welcome["member"]].pos)(2.0, 3.1)
    w.clock.advance(1)
    w.send(conn, {"type": "move", "x": 2.0, "y": 2.5})
    [batch] = broadcasts(w.tick(), "positions")
    assert wire(batch.message)["moves"][0][3] == "corner-west"


def test_sequence_numbers_increase_by_one_on_every_room_broadcast() -> None:
    w = World()
    a, _ = w.join()
    b, wb = w.join()
    effects = [*w.send(a, {"type": "envelope", "body": "AAAA", "commitment": COMMIT}),
               *w.send(b, {"type": "rename", "pseudonym": "Warm Lark"}),
               *w.send(a, {"type": "envelope", "body": "BBBB", "commitment": COMMIT})]
    seqs = [wire(e.message)["seq"] for e in effects if isinstance(e, Broadcast)]
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    assert seqs[0] == wb["room"]["seq"] + 1
    sent = [wire(e.message) for e in effects if isinstance(e, Reply)]
    sent = [s for s in sent if s["type"] == "sent"]
    assert [s["seq"] for s in sent] == [seqs[0], seqs[2]]


def test_envelope_is_stamped_and_relayed_unchanged_except_to_sender() -> None:
    w = World()
    a, wa = w.join()
    w.clock.advance(2.5)
    effects = w.send(a, {"type": "envelope", "body": "c2VjcmV0", "commitment": COMMIT, "ref": "r1"})
    [out] = broadcasts(effects, "envelope")
    assert out.exclude == wa["member"]
    m = wire(out.message)
    assert m["from"] == wa["member"] and m["body"] == "c2VjcmV0" and m["commitment"] == COMMIT
    assert m["ts"] == int(w.clock.seconds() * 1000) and len(m["tag"]) == 44
    assert reply(effects, "sent")["ref"] == "r1"


def test_envelope_size_limit() -> None:
    w = World(limits={"max_envelope_chars": 1000})
    a, _ = w.join()
    assert error_code(w.send(a, {"type": "envelope", "body": "A" * 1004, "commitment": COMMIT})) \
        == "envelope_too_large"


def test_directed_envelope_goes_to_one_member_of_the_same_room() -> None:
    w = World()
    a, wa = w.join()
    _, wb = w.join()
    _, wc = w.join("other")
    effects = w.send(a, {"type": "direct", "to": wb["member"], "body": "a2V5"})
    assert effects == [Send(wb["member"], DirectEnvelope(sender=wa["member"], body="a2V5",
                                                         dseq=1))]
    assert error_code(w.send(a, {"type": "direct", "to": wc["member"], "body": "a2V5"})) \
        == "recipient_not_found"


def test_leave_closes_and_advances_epoch() -> None:
    w = World()
    a, wa = w.join()
    assert wa["room"]["epoch"] == 2  # entering advanced it too
    effects = w.send(a, {"type": "leave"})
    [left] = broadcasts(effects, "member_left")
    assert wire(left.message)["reason"] == "left" and wire(left.message)["epoch"] == 3
    assert Close(1000, "left the room") in effects
    assert wa["member"] not in w.venue.rooms["circle"].members


def test_flood_gets_one_error_a_second_then_a_close() -> None:
    w = World(limits={"messages_per_second": 5, "message_burst": 5, "flood_strikes": 20})
    conn, _ = w.join()
    replies: list[Effect] = []
    for _ in range(30):
        replies += w.send(conn, {"type": "stand"})
    errors = [e for e in replies if isinstance(e, Reply) and wire(e.message).get("code") == "rate_limited"]
    assert len(errors) == 1
    assert Close(1008, "too many messages") in replies
    assert w.send(conn, {"type": "stand"}) == []


def test_role_ticket_is_one_time_and_expires() -> None:
    w = World()
    ticket = w.venue.issue_ticket("facilitator", w.clock.seconds())
    _, welcome = w.join(ticket=ticket)
    me = next(m for m in welcome["room"]["members"] if m["id"] == welcome["member"])
    assert me["role"] == "facilitator"
    assert error_code(w.send(w.connect(), {"type": "join", "room": "circle", "ticket": ticket})) \
        == "forbidden"
    late = w.venue.issue_ticket("facilitator", w.clock.seconds())
    w.clock.advance(61)
    assert error_code(w.send(w.connect(), {"type": "join", "room": "circle", "ticket": late})) \
        == "forbidden"


def test_refusals_echo_the_ref_of_the_frame_they_refuse() -> None:
    w = World()
    conn, _ = w.join()
    assert reply(w.send(conn, {"type": "list_reports", "ref": "q1"}), "error")["ref"] == "q1"
    assert reply(w.send(conn, {"type": "sit", "seat": 99, "ref": "q2"}), "error")["ref"] == "q2"


def test_directs_to_an_away_member_wait_for_its_resume() -> None:
    w = World()
    a, wa = w.join()
    b, wb = w.join()
    b.lost(w.clock.seconds())
    assert w.send(a, {"type": "direct", "to": wb["member"], "body": "a2V5"}) == []
    effects = w.send(w.connect(), {"type": "resume", "token": wb["token"]})
    kinds = [wire(e.message)["type"] for e in effects if isinstance(e, Reply | Send)]
    assert kinds == ["welcome", "direct"]
    assert reply(effects, "welcome")["movement"]["walk_speed"] > 0
    [held] = [e for e in effects if isinstance(e, Send)]
    assert held == Send(wb["member"], DirectEnvelope(sender=wa["member"], body="a2V5", dseq=1))


def sends(effects: list[Effect], kind: str) -> list[dict[str, Any]]:
    return [wire(e.message) for e in effects if isinstance(e, Send) and wire(e.message)["type"] == kind]


def test_a_resume_brings_the_directs_after_the_last_one_received_even_from_a_link_that_looked_alive() -> None:
    """A link can die unnoticed: what was written to it is lost. Every direct is numbered
    for its recipient and kept; the resume says the last it received and gets the rest, in
    order, before the room envelopes it missed (the keys to open them), and nothing twice."""
    w = World()
    a, _ = w.join()
    _, wb = w.join()
    to_b = [w.send(a, {"type": "direct", "to": wb["member"], "body": f"a2V{n}"}) for n in "5678"]
    assert [sends(e, "direct")[0]["dseq"] for e in to_b] == [1, 2, 3, 4]
    w.send(a, {"type": "envelope", "body": "c2VjcmV0", "commitment": COMMIT})
    # b received up to dseq 2 and room seq of its own welcome; its old link still looks open
    effects = w.send(w.connect(), {"type": "resume", "token": wb["token"], "dseq": 2,
                                   "seq": wb["room"]["seq"]})
    assert Detach(wb["member"], RESUMED_ELSEWHERE, "resumed on another connection") in effects
    kinds = [wire(e.message)["type"] for e in effects if isinstance(e, Reply | Send)]
    assert kinds[kinds.index("welcome"):] == ["welcome", "direct", "direct", "envelope"]
    assert [(d["body"], d["dseq"]) for d in sends(effects, "direct")] == [("a2V7", 3), ("a2V8", 4)]
    # all of them received: nothing again; the numbering goes on from there
    again = w.send(w.connect(), {"type": "resume", "token": reply(effects, "welcome")["token"],
                                 "dseq": 4})
    assert sends(again, "direct") == []
    assert sends(w.send(a, {"type": "direct", "to": wb["member"], "body": "a2V5"}),
                 "direct")[0]["dseq"] == 5


def test_a_resume_without_dseq_gets_what_came_while_away_and_the_kept_directs_are_bounded() -> None:
    w = World()
    a, _ = w.join()
    b, wb = w.join()
    room = w.venue.rooms["circle"]
    for _ in range(KEPT_DIRECTS + 10):  # attached: the oldest go, the newest are kept
        w.send(a, {"type": "direct", "to": wb["member"], "body": "a2V5"})
    assert [m.dseq for m in room.members[wb["member"]].directs] == \
        list(range(11, KEPT_DIRECTS + 11))
    b.lost(w.clock.seconds())
    effects = w.send(a, {"type": "direct", "to": wb["member"], "body": "d2FpdA=="})
    assert effects == []  # kept for the resume
    resumed = w.send(w.connect(), {"type": "resume", "token": wb["token"]})
    assert [(d["body"], d["dseq"]) for d in sends(resumed, "direct")] == \
        [("d2FpdA==", KEPT_DIRECTS + 11)]


def test_what_waits_for_an_away_member_is_never_pushed_out() -> None:
    w = World(limits={"max_envelope_chars": 24000})
    a, _ = w.join()
    b, wb = w.join()
    b.lost(w.clock.seconds())
    big = "A" * 20000
    fits = KEPT_DIRECT_CHARS // len(big)
    for _ in range(fits):
        assert w.send(a, {"type": "direct", "to": wb["member"], "body": big}) == []
    assert error_code(w.send(a, {"type": "direct", "to": wb["member"], "body": big})) \
        == "recipient_not_found"
    resumed = w.send(w.connect(), {"type": "resume", "token": wb["token"], "dseq": 0})
    assert [d["dseq"] for d in sends(resumed, "direct")] == list(range(1, fits + 1))


def test_a_restored_room_numbers_directs_past_what_its_old_node_used() -> None:
    w = World()
    a, _ = w.join()
    _, wb = w.join()
    w.send(a, {"type": "direct", "to": wb["member"], "body": "a2V5"})
    room = w.venue.rooms["circle"]
    state = room.to_state()
    room.restore(state, w.clock.seconds())
    member = room.members[wb["member"]]
    assert member.dseq == member.away_dseq == 1 + DSEQ_MARGIN and not member.directs


def test_a_closing_page_is_away_briefly_then_leaves_unless_it_resumes() -> None:
    """A closed tab leaves within the closing grace (5 s), not the minute a dropped
    connection gets; a reload resumes within it as the same member."""
    w = World()
    conn, welcome = w.join(pseudonym="Calm Heron")
    effects = w.send(conn, {"type": "leave", "closing": True})
    [away] = broadcasts(effects, "member_updated")
    assert wire(away.message)["member"]["away"] is True
    assert Close(1000, "left the room") in effects
    assert conn.lost(w.clock.seconds()) == []  # the socket closing changes nothing more
    w.clock.advance(4.9)
    assert broadcasts(w.tick(), "member_left") == []
    w.clock.advance(0.1)
    [left] = broadcasts(w.tick(), "member_left")
    assert wire(left.message)["member"] == welcome["member"] and wire(left.message)["reason"] == "left"
    assert error_code(w.send(w.connect(), {"type": "resume", "token": welcome["token"]})) \
        == "session_expired"
    # A reload: the same tab resumes within the closing grace.
    conn, welcome = w.join(pseudonym="Kind Wren")
    w.send(conn, {"type": "leave", "closing": True})
    w.clock.advance(1.5)
    effects = w.send(w.connect(), {"type": "resume", "token": welcome["token"]})
    assert reply(effects, "welcome")["member"] == welcome["member"]
    w.clock.advance(60)
    assert broadcasts(w.tick(), "member_left") == []
    assert welcome["member"] in w.venue.rooms["circle"].members


def test_a_closing_page_leaves_at_once_without_a_closing_grace() -> None:
    w = World(session={"closing_grace_seconds": 0})
    conn, _ = w.join()
    [left] = broadcasts(w.send(conn, {"type": "leave", "closing": True}), "member_left")
    assert wire(left.message)["reason"] == "left"


def test_status_is_the_members_own_and_the_room_sees_it() -> None:
    w = World()
    conn, welcome = w.join()
    assert welcome["room"]["members"][-1]["status"] == "here"
    [updated] = broadcasts(w.send(conn, {"type": "status", "status": "listening"}), "member_updated")
    assert wire(updated.message)["member"]["status"] == "listening"
    assert w.send(conn, {"type": "status", "status": "listening"}) == []  # no change, no noise
    assert error_code(w.send(conn, {"type": "status", "status": "busy"})) == "bad_message"
    assert error_code(w.send(conn, {"type": "leave", "closing": "yes"})) == "bad_message"
    state = w.venue.rooms["circle"].to_state()
    assert state["members"][0]["status"] == "listening"


def test_a_resend_is_answered_the_same_after_the_room_moved_to_another_node() -> None:
    """The answers remembered by client id travel with the room's saved state (a takeover):
    a resend there gets the same `sent`, with its own ref, and is not relayed again."""
    w = World()
    a, wa = w.join()
    w.join()
    first = reply(w.send(a, {"type": "envelope", "body": "AAAA", "commitment": COMMIT,
                             "id": "c1", "ref": "r1"}), "sent")
    elsewhere = World()
    saved = json.loads(json.dumps(w.venue.export_room("circle")))  # as the broker keeps it
    elsewhere.venue.import_room("circle", saved, elsewhere.clock.seconds())
    room = elsewhere.venue.rooms["circle"]
    member = room.members[wa["member"]]
    again = room.envelope(member, p.Envelope(body="AAAA", commitment=COMMIT, id="c1", ref="r2"),
                          elsewhere.clock.seconds())
    assert [wire(e.message) for e in again] == [{**first, "ref": "r2"}]  # no broadcast
    assert [wire(e.message) for e in room.envelope(
        member, p.Envelope(body="AAAA", commitment=COMMIT, id="c1"), 0.0)] == [
        {k: v for k, v in first.items() if k != "ref"}]


def test_flood_strikes_close_at_the_limit_and_start_again_after_10_s_without_one() -> None:
    """docs/protocol.md, limits: frames over the rate are dropped (`rate_limited` once a
    second); the connection closes (1008) at `flood_strikes` of them, a count that starts
    again after 10 s without one."""
    w = World(limits={"messages_per_second": 1, "message_burst": 1, "flood_strikes": 3})
    conn, _ = w.join()
    w.clock.advance(1.1)  # the join's token is back
    told = [w.send(conn, {"type": "stand"}) for _ in range(3)]  # 1 allowed, 2 strikes
    assert error_code(told[1]) == "rate_limited" and told[2] == []  # told once a second
    w.clock.advance(10.5)  # no strike for 10 s: forgotten
    w.send(conn, {"type": "stand"})
    for _ in range(2):
        assert not any(isinstance(e, Close) for e in w.send(conn, {"type": "stand"}))
    closed = [e for e in w.send(conn, {"type": "stand"}) if isinstance(e, Close)]
    assert [c.code for c in closed] == [1008]
