"""Bad input against the live endpoint: each gets its documented code, and nobody else notices."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.threads import blockingCallFromThread, deferToThread

from hearth.client.websocket import ClientClosed, HearthClient
from hearth.spaces.protocol import ERRORS
from tests.support.config import make_config
from tests.support.live import LiveServer, start_server
from tests.support.nasty import STRING_FIELDS, nasty_text

COMMIT = "C" * 43 + "="


async def pair(server: LiveServer) -> tuple[HearthClient, HearthClient, dict[str, Any]]:
    """An attacker and a bystander in the same room."""
    bystander = await server.client()
    await bystander.join("circle")
    attacker = await server.client()
    welcome = await attacker.join("circle")
    await bystander.expect("member_joined")
    return attacker, bystander, welcome


async def still_fine(server: LiveServer, bystander: HearthClient) -> None:
    """The bystander still chats with a newcomer: the server is up and the room intact."""
    other = await server.client()
    await other.join("circle")
    other.envelope("b2s=", COMMIT)
    got = await bystander.next(lambda m: m["type"] == "envelope" and m["body"] == "b2s=")
    assert got["from"] == other.member
    other.send({"type": "leave"})  # not just close: an away member would hold a place
    await other.until_closed()


@pytest.mark.parametrize("frame,code", [
    (b"not json", "bad_json"),
    (b"[1,2,3]", "bad_json"),
    (b'{"no":"type"}', "bad_message"),
    (b'{"type":"teleport"}', "unknown_type"),
    (b'{"type":"move","x":"far","y":1}', "bad_message"),
    (b'{"type":"move","x":1e400,"y":1}', "bad_message"),
    (b'{"type":"sit","seat":true}', "bad_message"),
    (b'{"type":"envelope","body":"not base64!","commitment":"' + COMMIT.encode() + b'"}',
     "bad_message"),
    (b'{"type":"envelope","body":"AAAA"}', "bad_message"),
    (b'{"type":"direct","to":"nobody","body":"AAAA"}', "recipient_not_found"),
    (b'{"type":"join","room":"circle"}', "already_joined"),
    (b'{"type":"keys","dh":"short","sig":"short"}', "bad_message"),
    (b'{"type":"list_reports"}', "forbidden"),
    ("ünïcode but not json".encode(), "bad_json"),
    # text that cannot be encoded again (lone surrogates), wherever it is
    (b'{"type":"report","seq":1,"from":"m1","ts":1,"text":"x","franking_key":"'
     + COMMIT.encode() + b'","commitment":"' + COMMIT.encode() + b'","tag":"' + COMMIT.encode()
     + b'","reason":"\\ud800"}', "bad_message"),
    (b'{"type":"list_reports","ref":"\\ud800"}', "bad_message"),
    (b'{"type":"resume","token":"\\udfff"}', "bad_message"),
    (b'{"type":"teleport","ref":"\\ud800"}', "bad_message"),
    (b'{"type":"stand","ref":"' + b"r" * 65 + b'"}', "bad_message"),
    (b'{"type":"stand","ref":7}', "bad_message"),
    (b'{"type":"rename","pseudonym":"Ana\\ud83d"}', "bad_message"),
    (b'{"type":"envelope","body":"AAAA","commitment":"' + COMMIT.encode()
     + b'","zone":"\\udc00"}', "bad_message"),
])
@pytest_twisted.ensureDeferred
async def test_malformed_frames_get_their_code_and_others_are_unaffected(
        server: LiveServer, frame: bytes, code: str) -> None:
    attacker, bystander, _ = await pair(server)
    attacker.send_raw(frame)
    error = await attacker.expect("error")
    assert error["code"] == code and error["message"]
    await still_fine(server, bystander)
    attacker.send({"type": "stand"})  # the attacker's own connection still works too
    await attacker.close()
    await bystander.close()


@pytest_twisted.ensureDeferred
async def test_binary_frames_that_are_not_voice(server: LiveServer) -> None:
    early = await server.client()
    early.send_raw(b"\x01" * 40, is_binary=True)  # before joining
    assert (await early.expect("error"))["code"] == "binary_not_allowed"
    await early.close()
    attacker, bystander, _ = await pair(server)
    attacker.send_raw(b"\x00\x01\x02", is_binary=True)  # too short
    assert (await attacker.expect("error"))["code"] == "voice_invalid"
    attacker.send_raw(b"\x09" + b"\x00" * 40, is_binary=True)  # wrong version
    assert (await attacker.expect("error"))["code"] == "voice_invalid"
    await still_fine(server, bystander)
    await attacker.close()
    await bystander.close()


@pytest_twisted.ensureDeferred
async def test_invalid_utf8_in_a_text_frame_is_closed_with_1007(server: LiveServer) -> None:
    attacker, bystander, _ = await pair(server)
    attacker.send_raw(b"\xff\xfe\x00garbage")
    code, _ = await attacker.until_closed()
    assert code == 1007
    await still_fine(server, bystander)
    await bystander.close()


@pytest_twisted.ensureDeferred
async def test_oversized_frame_is_closed_with_1009(server: LiveServer) -> None:
    attacker, bystander, _ = await pair(server)
    attacker.send_raw(json.dumps({"type": "envelope", "body": "A" * 70_000,
                                  "commitment": COMMIT}).encode())
    code, _ = await attacker.until_closed()
    assert code == 1009
    await still_fine(server, bystander)
    await bystander.close()


@pytest_twisted.ensureDeferred
async def test_envelope_over_the_body_limit_but_under_the_frame_limit(server: LiveServer) -> None:
    attacker, bystander, _ = await pair(server)
    attacker.envelope("A" * 30_000, COMMIT)
    assert (await attacker.expect("error"))["code"] == "envelope_too_large"
    await still_fine(server, bystander)
    await attacker.close()
    await bystander.close()


@pytest_twisted.ensureDeferred
async def test_a_flood_is_told_then_closed_with_1008_and_the_room_goes_on() -> None:
    live = await start_server(make_config(
        limits={"messages_per_second": 20, "message_burst": 20, "flood_strikes": 100}))
    try:
        attacker, bystander, _ = await pair(live)
        for _ in range(400):
            attacker.send({"type": "stand"})
        code, _ = await attacker.until_closed()
        assert code == 1008
        assert [m["code"] for m in attacker.inbox if m["type"] == "error"] == ["rate_limited"]
        await still_fine(live, bystander)
        await bystander.close()
    finally:
        await live.hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_foreign_origin_is_refused_at_the_handshake(server: LiveServer) -> None:
    with pytest.raises(ClientClosed):
        await HearthClient.connect(server.ws_url, origin="https://evil.example")
    with pytest.raises(ClientClosed):
        await HearthClient.connect(server.ws_url, origin="null")
    ok = await HearthClient.connect(server.ws_url)  # same origin as the page
    await ok.close()


@pytest_twisted.ensureDeferred
async def test_a_listed_origin_is_allowed() -> None:
    live = await start_server(make_config(server={"allowed_origins": ["https://groups.example.org"]}))
    try:
        client = await HearthClient.connect(live.ws_url, origin="https://groups.example.org")
        await client.close()
    finally:
        await live.hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_wrong_subprotocol_is_refused(server: LiveServer) -> None:
    with pytest.raises(ClientClosed):
        await HearthClient.connect(server.ws_url, protocols=["chat.v9"])
    with pytest.raises(ClientClosed):
        await HearthClient.connect(server.ws_url, protocols=[])


# "leave" is left out: it closes the connection on purpose (tested on its own).
message_types = st.sampled_from(["join", "resume", "move", "sit", "stand", "rename", "keys",
                                 "envelope", "direct", "report", "list_reports", "mute",
                                 "hide", "private_corner", "flag", "incident", "help",
                                 "bogus", 7, None]) | nasty_text()
values = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                   st.floats(allow_nan=False), nasty_text(), st.text(max_size=30),
                   st.lists(st.integers(), max_size=3),
                   st.dictionaries(nasty_text(), st.one_of(st.integers(), nasty_text()),
                                   max_size=2))
frames = st.one_of(
    st.fixed_dictionaries({"type": message_types}, optional={
        k: values for k in [*STRING_FIELDS, "x", "y", "seat", "seq", "ts", "minutes"]
        if k != "type"}).map(
        lambda d: (json.dumps(d).encode(), False)),  # ensure_ascii: surrogates as \uD8xx
    st.text(max_size=40).map(lambda t: (t.encode("utf-8"), False)),
    st.binary(max_size=64).map(lambda b: (b, True)))


@pytest.mark.parametrize("who", ["before_join", "participant", "facilitator"])
@pytest_twisted.ensureDeferred
async def test_random_frames_against_the_live_endpoint(server: LiveServer, who: str) -> None:
    """Every reply to junk — lone surrogates, lone escapes and non-characters in every
    string field included — is a known code; the connection and the bystanders (a
    participant, and a facilitator's console asking for the reports) stay up.

    Hypothesis runs in a worker thread and blocks on the reactor for each
    example, so failing batches still shrink against the live server.
    """
    @given(batch=st.lists(frames, min_size=1, max_size=12))
    @settings(max_examples=20, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    def check(batch: list[tuple[bytes, bool]]) -> None:
        blockingCallFromThread(reactor, lambda: ensureDeferred(
            _random_frames(server, batch, who)))

    await deferToThread(check)


async def _random_frames(server: LiveServer, batch: list[tuple[bytes, bool]], who: str) -> None:
    node = server.hearth.node
    console = await server.client()
    await console.join("circle", ticket=node.venue.issue_ticket("facilitator", node.clock(),
                                                                "console"))
    attacker, bystander, _ = await pair(server)
    if who == "before_join":
        attacker.send({"type": "leave"})
        await attacker.until_closed()
        attacker = await server.client()
    elif who == "facilitator":
        attacker.send({"type": "leave"})
        await attacker.until_closed()
        attacker = await server.client()
        await attacker.join("circle", ticket=node.venue.issue_ticket(
            "facilitator", node.clock(), "fuzz"))
    try:
        for frame, is_binary in batch:
            attacker.send_raw(frame, is_binary)
        attacker.send({"type": "list_reports", "ref": "sentinel"})  # answered after the junk
        # (a facilitator gets `reports`, which carries no ref; a participant `forbidden`)
        await attacker.next(lambda m: m.get("ref") == "sentinel" or m["type"] == "reports")
        for message in attacker.inbox:
            if message["type"] == "error":
                assert message["code"] in ERRORS and message["message"]
        console.send({"type": "list_reports", "ref": "console"})
        await console.next(lambda m: m.get("ref") == "console" or m["type"] == "reports")
        await still_fine(server, bystander)
        assert console.close_code is None and attacker.close_code is None
    finally:
        for client in (attacker, bystander, console):
            if client.close_code is None:
                client.send({"type": "leave"})  # never left away, holding a place
                await client.close()  # (one that never joined is not closed by `leave`)
