"""docs/protocol.md read as a contract, checked against a live server: what a client built
from the document alone relies on (fields, ordering, resume, de-duplication, limits)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted

from hearth.client.websocket import HearthClient
from hearth.spaces.voice import build_frame
from tests.support.config import make_config
from tests.support.live import LiveServer, caught_up, sleep, start_server, until

COMMIT = "C" * 43 + "="

MEMBER_FIELDS = {"id", "pseudonym", "avatar", "role", "seat", "x", "y", "zone", "keys", "away",
                 "slot", "muted", "hand", "status"}


async def joined(server: LiveServer, **fields: Any) -> tuple[HearthClient, dict[str, Any]]:
    client = await server.client()
    welcome = await client.join("circle", **fields)
    return client, welcome


@pytest_twisted.ensureDeferred
async def test_the_welcome_has_every_documented_field(server: LiveServer) -> None:
    client, welcome = await joined(server)
    assert welcome["protocol"] == 1 and welcome["resumed"] is False
    assert isinstance(welcome["grace"], (int, float))
    assert set(welcome["movement"]) >= {"walk_speed", "tick_hz"}
    assert set(welcome["voice"]) >= {"hearing_range"}
    room = welcome["room"]
    assert set(room) >= {"id", "title", "titles", "capacity", "language", "locked", "lobby",
                         "slow_mode", "stick", "private", "layout", "seq", "epoch", "members"}
    assert set(room["stick"]) >= {"on", "holder", "hands"}
    assert set(room["layout"]) >= {"width", "height", "hearth", "seats", "corners"}
    for corner in room["layout"]["corners"]:
        assert set(corner) >= {"id", "title", "titles", "x", "y", "width", "height"}
    for member in room["members"]:
        assert set(member) >= MEMBER_FIELDS, set(MEMBER_FIELDS) - set(member)
    await client.close()


async def broadcasts(client: HearthClient) -> list[dict[str, Any]]:
    await caught_up(client)
    return [m for m in client.inbox if "seq" in m and "zone" not in m]


@pytest_twisted.ensureDeferred
async def test_room_seq_increases_by_exactly_one_per_room_broadcast(server: LiveServer) -> None:
    watcher, welcome = await joined(server)
    actor, mine = await joined(server)
    actor.send({"type": "raise_hand", "up": True})
    actor.send({"type": "status", "status": "listening"})
    actor.envelope("AAAA", COMMIT)
    actor.move(3.0, 8.0)
    await sleep(0.3)
    actor.send({"type": "rename", "pseudonym": "Calm Heron"})
    # the sender: its `sent` stands for the envelope it gets no copy of, so no gap
    own = [m["seq"] for m in await broadcasts(actor)]
    assert own == list(range(mine["room"]["seq"] + 1, mine["room"]["seq"] + 1 + len(own))), own
    actor.send({"type": "leave"})
    await actor.until_closed()
    seen = await broadcasts(watcher)
    seqs = [m["seq"] for m in seen]
    assert seqs == list(range(welcome["room"]["seq"] + 1, welcome["room"]["seq"] + 1 + len(seqs))), \
        [(m["type"], m["seq"]) for m in seen]
    await watcher.close()


@pytest_twisted.ensureDeferred
async def test_replies_and_directed_messages_carry_no_seq(server: LiveServer) -> None:
    a, _ = await joined(server)
    b, _ = await joined(server)
    a.send({"type": "direct", "to": b.member, "body": "AAAA"})
    direct = await b.expect("direct")
    assert "seq" not in direct
    a.send({"type": "teleport", "ref": "r1"})
    error = await a.expect("error")
    assert "seq" not in error and error["ref"] == "r1"
    await a.close()
    await b.close()


@pytest_twisted.ensureDeferred
async def test_sent_has_every_documented_field_and_echoes_ref(server: LiveServer) -> None:
    a, welcome = await joined(server)
    a.envelope("AAAA", COMMIT, ref="mine", client_id="m-1")
    sent = await a.expect("sent")
    assert set(sent) >= {"seq", "ts", "tag", "epoch", "id", "ref"}
    assert sent["ref"] == "mine" and sent["id"] == "m-1"
    assert sent["epoch"] == welcome["room"]["epoch"]
    await a.close()


@pytest_twisted.ensureDeferred
async def test_a_resent_envelope_id_gets_the_first_sent_and_is_not_relayed(
        server: LiveServer) -> None:
    a, _ = await joined(server)
    b, _ = await joined(server)
    a.envelope("AAAA", COMMIT, ref="one", client_id="m-1")
    first = await a.expect("sent")
    a.envelope("AAAA", COMMIT, ref="two", client_id="m-1")
    again = await a.expect("sent")
    assert {k: again[k] for k in ("seq", "ts", "tag", "epoch", "id")} == \
        {k: first[k] for k in ("seq", "ts", "tag", "epoch", "id")}
    assert again["ref"] == "two"
    await caught_up(a, b)
    assert len([m for m in b.inbox if m["type"] == "envelope"]) == 1
    await a.close()
    await b.close()


@pytest_twisted.ensureDeferred
async def test_resume_with_seq_replays_the_missed_envelopes_in_order_right_after_welcome(
        server: LiveServer) -> None:
    a, wa = await joined(server)
    b, _ = await joined(server)
    await a.expect("member_joined")
    b.envelope("AQ==", COMMIT)
    await a.expect("envelope")
    last = a.seq
    a.drop()
    await a.until_closed()
    for i in range(3):
        b.envelope(f"Ag{i}=", COMMIT, client_id=f"b-{i}")
        await b.expect("sent")
    b.send({"type": "direct", "to": wa["member"], "body": "BBBB"})
    again = await server.client()
    frames: list[dict[str, Any]] = []
    again.on_message = frames.append
    welcome = await again.resume(wa["token"], seq=last)
    await caught_up(again)
    kinds = [m["type"] for m in frames]
    assert kinds[0] == "welcome", kinds
    after = frames[1:]
    assert after[0]["type"] == "direct", kinds
    envelopes = [m for m in after if m["type"] == "envelope"]
    assert [m["id"] for m in envelopes] == ["b-0", "b-1", "b-2"]
    assert kinds[1:5] == ["direct", "envelope", "envelope", "envelope"], kinds
    assert all(m["seq"] < welcome["room"]["seq"] for m in envelopes)
    await again.close()
    await b.close()


@pytest.mark.parametrize("speaks", ["a refused frame", "a voice frame", "a message"])
@pytest_twisted.ensureDeferred
async def test_the_old_token_stays_good_until_the_resumed_connection_sends_anything(
        server: LiveServer, speaks: str) -> None:
    """"The token a member resumed with stays good until its resumed connection sends
    anything": a member who only talks (voice frames) or whose first frame is refused has
    its new token too, and the old one must not open the session again."""
    a, wa = await joined(server)
    a.drop()
    await a.until_closed()
    first = await server.client()
    w1 = await first.resume(wa["token"])
    assert w1["token"] != wa["token"]
    first.drop()  # as if the welcome was lost on the way: nothing sent on it
    await first.until_closed()
    second = await server.client()
    w2 = await second.resume(wa["token"])
    assert w2["member"] == wa["member"]
    if speaks == "a voice frame":
        second.send_voice(build_frame(b"\0" * 32, seq=1, level=127))
    elif speaks == "a refused frame":
        second.send({"type": "not_a_message"})
    else:
        second.send({"type": "stand"})
    await caught_up(second)
    second.drop()
    await second.until_closed()
    third = await server.client()
    third.send({"type": "resume", "token": wa["token"]})
    answer = await third.next(lambda m: m["type"] in ("welcome", "error"))
    assert answer.get("code") == "session_expired", answer["type"]
    fourth = await server.client()
    assert (await fourth.resume(w2["token"]))["member"] == wa["member"]
    await fourth.close()
    await third.close()


@pytest_twisted.ensureDeferred
async def test_resume_on_a_joined_connection_is_already_joined(server: LiveServer) -> None:
    a, wa = await joined(server)
    a.send({"type": "resume", "token": wa["token"]})
    assert (await a.expect("error"))["code"] == "already_joined"
    await a.close()


@pytest_twisted.ensureDeferred
async def test_unknown_fields_are_ignored(server: LiveServer) -> None:
    a = await server.client()
    a.send({"type": "join", "room": "circle", "future": {"x": 1}, "hint": [1, 2]})
    welcome = await a.expect("welcome")
    a.send({"type": "envelope", "body": "AAAA", "commitment": COMMIT, "later": True,
            "ref": "u"})
    assert (await a.expect("sent"))["ref"] == "u"
    assert welcome["member"]
    await a.close()


@pytest_twisted.ensureDeferred
async def test_a_bad_ref_is_refused_naming_the_field_without_echo(server: LiveServer) -> None:
    a, _ = await joined(server)
    a.send_raw(json.dumps({"type": "stand", "ref": 5}).encode())
    error = await a.expect("error")
    assert error["code"] == "bad_message" and "stand.ref" in error["message"] and "ref" not in error
    await a.close()


@pytest_twisted.ensureDeferred
async def test_leave_closes_with_1000(server: LiveServer) -> None:
    a, _ = await joined(server)
    a.send({"type": "leave"})
    code, _ = await a.until_closed()
    assert code == 1000


@pytest_twisted.ensureDeferred
async def test_binary_before_joining(server: LiveServer) -> None:
    a = await server.client()
    a.send_raw(b"\x01" * 30, is_binary=True)
    assert (await a.expect("error"))["code"] == "binary_not_allowed"
    await a.close()


@pytest_twisted.ensureDeferred
async def test_not_joined_first(server: LiveServer) -> None:
    a = await server.client()
    for message in ({"type": "stand"}, {"type": "envelope", "body": "AAAA", "commitment": COMMIT},
                    {"type": "voice_transport"}):
        a.send(message)
        assert (await a.expect("error"))["code"] == "not_joined", message
    await a.close()


@pytest_twisted.ensureDeferred
async def test_voice_transport_when_not_offered(server: LiveServer) -> None:
    a, _ = await joined(server)
    a.send({"type": "voice_transport", "ref": "v"})
    error = await a.expect("error")
    assert error["code"] == "webtransport_unavailable" and error["ref"] == "v"
    await a.close()


@pytest_twisted.ensureDeferred
async def test_status_rules(server: LiveServer) -> None:
    a, _ = await joined(server)
    b, _ = await joined(server)
    a.send({"type": "status", "status": "sleeping"})
    assert (await a.expect("error"))["code"] == "bad_message"
    a.send({"type": "status", "status": "here"})
    await caught_up(a, b)
    assert [m for m in b.inbox if m["type"] == "member_updated"] == []
    await a.close()
    await b.close()


@pytest_twisted.ensureDeferred
async def test_moves_over_the_rate_are_told(server: LiveServer) -> None:
    a, _ = await joined(server)
    for i in range(40):
        a.move(2.0 + (i % 2) * 0.1, 8.5)
    error = await a.expect("error")
    assert error["code"] == "rate_limited"
    await a.close()


@pytest_twisted.ensureDeferred
async def test_a_long_pseudonym(server: LiveServer) -> None:
    a = await server.client()
    a.send({"type": "join", "room": "circle", "pseudonym": "A" * 25})
    assert (await a.expect("error"))["code"] == "pseudonym_invalid"
    a.send({"type": "join", "room": "circle", "pseudonym": "A" * 24})
    assert (await a.expect("welcome"))["member"]
    await a.close()


@pytest_twisted.ensureDeferred
async def test_a_cesu_surrogate_in_a_text_frame(server: LiveServer) -> None:
    a = await server.client()
    a.send_raw(b'{"type":"join","room":"\xed\xa0\x80"}')
    code, _ = await a.until_closed()
    assert code == 1007


@pytest_twisted.ensureDeferred
async def test_what_comes_before_joining_is_rate_limited_like_everything_else() -> None:
    """The per-connection rate limit and flood close hold before a join too: a connection
    that never joins cannot have frames answered without bound (each used to meet a fresh
    limit of its own)."""
    server = await start_server(make_config(limits={"messages_per_second": 5, "message_burst": 10,
                                                    "flood_strikes": 20}))
    try:
        spammer = await server.client()
        for _ in range(40):
            if spammer.close_code is not None:
                break
            spammer.send({"type": "stand"})
            await sleep(0.01)
        code, _ = await spammer.until_closed()
        codes = [m.get("code") for m in spammer.inbox]
        assert code == 1008
        assert codes.count("rate_limited") == 1 and codes.count("not_joined") <= 12, codes
        # a newcomer on its own connection is served
        other = await server.client()
        assert (await other.join("circle"))["member"]
        await other.close()
    finally:
        await server.hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_byte_order_mark_is_bad_json(server: LiveServer) -> None:
    a = await server.client()
    a.send_raw(b'\xef\xbb\xbf{"type":"join","room":"circle"}')
    assert (await a.expect("error"))["code"] == "bad_json"
    await a.close()


@pytest_twisted.ensureDeferred
async def test_a_stale_token_is_told_session_expired_at_once_on_one_node(
        server: LiveServer) -> None:
    """One node, the embedded broker: a token whose room emptied (and was let go) is told
    the truth at once — not `room_moving` for seconds while a person waits to get back in."""
    a, wa = await joined(server)
    a.send({"type": "leave"})
    await a.until_closed()
    await until(lambda: "circle" not in server.hearth.node.host.owned, what="the room let go")
    again = await server.client()
    again.send({"type": "resume", "token": wa["token"]})
    answer = await again.next(lambda m: m["type"] in ("welcome", "error"))
    assert answer.get("code") == "session_expired"
    assert (await again.join("circle"))["member"] != wa["member"]
    await again.close()


@pytest_twisted.ensureDeferred
async def test_another_language_is_taken_as_english(server: LiveServer) -> None:
    a = await server.client()
    welcome = await a.join("circle", locale="fr")
    me = next(m for m in welcome["room"]["members"] if m["id"] == welcome["member"])
    assert me["pseudonym"]  # generated, in English words
    await a.close()


@pytest_twisted.ensureDeferred
async def test_an_unknown_field_inside_the_avatar_is_ignored(server: LiveServer) -> None:
    """"Unknown fields are ignored (forward compatibility)": a newer client's avatar with a
    field this server does not know must still join."""
    a, welcome = await joined(server)
    avatar = next(m for m in welcome["room"]["members"] if m["id"] == welcome["member"])["avatar"]
    b = await server.client()
    b.send({"type": "join", "room": "circle", "avatar": {**avatar, "hat": "top"}})
    answer = await b.next(lambda m: m["type"] in ("welcome", "error"))
    assert answer["type"] == "welcome", answer
    await a.close()
    await b.close()
