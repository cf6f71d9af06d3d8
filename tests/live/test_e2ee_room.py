"""End-to-end encrypted chat in a live room, with real clients, as the server sees it."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import pytest_twisted
from twisted.logger import globalLogPublisher

from hearth.client.groupchat import ChatMessage, GroupChat
from hearth.client.websocket import HearthClient
from hearth.spaces.e2ee import E2EEError
from tests.support.live import LiveServer, caught_up, record_frames, settle, until

SECRET = "I have never told anyone this: the pills are in the kitchen drawer"




async def chat(server: LiveServer, room: str = "circle", **fields: Any) -> GroupChat:
    client = await server.client()
    return await GroupChat.join(client, room, **fields)




@pytest_twisted.ensureDeferred
async def test_a_conversation_decrypts_and_the_server_never_holds_the_plaintext(
        server: LiveServer) -> None:
    frames = record_frames(server)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        alice, bob = await chat(server), await chat(server)
        await settle(alice, bob)
        said = await alice.say(SECRET)
        got = await bob.next_message()
        assert got.text == SECRET and got.sender == alice.client.member and got.seq == said.seq
        carol = await chat(server)
        await settle(alice, bob, carol)
        await bob.say(SECRET + " (bob)")
        assert (await alice.next_message()).text == SECRET + " (bob)"
        assert (await carol.next_message()).text == SECRET + " (bob)"
        await carol.say("¿Y tú? " + SECRET)
        assert (await alice.next_message()).text == "¿Y tú? " + SECRET
        assert not alice.rejected and not bob.rejected and not carol.rejected
        stored = repr(vars(server.hearth.node.venue)) + repr(server.hearth.node.venue.rooms) + repr(
            server.hearth.node.venue.reports.reports)
        for c in (alice, bob, carol):
            await c.client.close()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert frames, "no frames recorded: the capture is broken"
    logged = "\n".join(repr(e) for e in events)
    needles = [SECRET, SECRET.split(":")[1].strip(), "kitchen drawer"]
    needles += [base64.b64encode(n.encode()).decode()[:16] for n in needles]
    for haystack, what in [(b"\n".join(frames).decode("utf-8", "replace"), "frames received"),
                           (logged, "log events"), (stored, "server state")]:
        for needle in needles:
            assert needle not in haystack, f"plaintext found in {what}"


@pytest_twisted.ensureDeferred
async def test_a_removed_member_cannot_read_what_follows(server: LiveServer) -> None:
    ticket = server.hearth.node.venue.issue_ticket("facilitator", server.hearth.node.clock())
    facilitator = await chat(server, ticket=ticket)
    alice, mallory = await chat(server), await chat(server)
    await settle(facilitator, alice, mallory)
    await alice.say("before")
    assert (await mallory.next_message()).text == "before"
    kept = mallory.session  # the removed member keeps every key it had

    facilitator.client.send({"type": "remove", "member": mallory.client.member})
    code, _ = await mallory.client.until_closed()
    assert code == 4003
    left = await alice.client.next("member_left")
    assert left["reason"] == "removed" and left["epoch"] == facilitator.epoch
    await settle(facilitator, alice)
    await alice.say("after the removal")
    envelope = await facilitator.client.next(
        lambda m: m["type"] == "envelope" and m["from"] == alice.client.member)
    assert (await facilitator.next_message()).text == "before"
    assert (await facilitator.next_message()).text == "after the removal"
    with pytest.raises(E2EEError):
        kept.decrypt(envelope["from"], envelope["body"], envelope["commitment"])
    await facilitator.client.close()
    await alice.client.close()


@pytest_twisted.ensureDeferred
async def test_receivers_reject_tampering_forgery_replay_and_non_members(
        server: LiveServer) -> None:
    alice, bob = await chat(server), await chat(server)
    await settle(alice, bob)
    await alice.say("genuine")
    genuine = await bob.client.next(lambda m: m["type"] == "envelope")
    assert (await bob.next_message()).text == "genuine"

    def deliver(**changes: Any) -> str:
        before = len(bob.rejected)
        bob._on_message({**genuine, **changes})  # as a malicious server would
        assert len(bob.rejected) == before + 1, "a forged envelope was accepted"
        return bob.rejected[-1][1]

    raw = bytearray(base64.b64decode(genuine["body"]))
    raw[20] ^= 1  # inside the ciphertext
    assert deliver(body=base64.b64encode(bytes(raw)).decode()) in ("e2ee.tampered",
                                                                    "e2ee.bad_signature")
    raw = bytearray(base64.b64decode(genuine["body"]))
    raw[-1] ^= 1  # inside the signature
    assert deliver(body=base64.b64encode(bytes(raw)).decode()) == "e2ee.bad_signature"
    assert deliver() == "e2ee.replay"
    assert deliver(**{"from": "not-a-member"}) in ("e2ee.unknown_sender", "e2ee.bad_signature")
    assert deliver(commitment=base64.b64encode(b"\0" * 32).decode()) in (
        "e2ee.bad_signature", "e2ee.bad_commitment")
    assert bob.messages == []

    # a live member forging a message as someone else still fails: the server stamps `from`
    mallory = await chat(server)
    await settle(alice, bob, mallory)
    mallory.client.envelope(genuine["body"], genuine["commitment"])
    await bob.client.next(lambda m: m["type"] == "envelope" and m["from"] == mallory.client.member)
    assert bob.rejected[-1][0] == mallory.client.member
    for c in (alice, bob, mallory):
        await c.client.close()


async def _reportable(server: LiveServer) -> tuple[GroupChat, GroupChat, GroupChat, ChatMessage]:
    ticket = server.hearth.node.venue.issue_ticket("facilitator", server.hearth.node.clock())
    facilitator = await chat(server, ticket=ticket)
    harasser, target = await chat(server), await chat(server)
    await settle(facilitator, harasser, target)
    await harasser.say("you are worthless")
    message = await target.next_message()
    return facilitator, harasser, target, message


@pytest_twisted.ensureDeferred
async def test_a_genuine_report_verifies_and_facilitators_can_read_it(server: LiveServer) -> None:
    facilitator, harasser, target, message = await _reportable(server)
    target.report(message, reason="harassment", ref="r1")
    received = await target.client.expect("report_received")
    assert received["ref"] == "r1"
    target.client.send({"type": "list_reports", "ref": "l1"})
    assert (await target.client.expect("error"))["code"] == "forbidden"
    facilitator.client.send({"type": "list_reports"})
    [report] = (await facilitator.client.expect("reports"))["reports"]
    assert report["text"] == "you are worthless" and report["sender"] == harasser.client.member
    assert report["reason"] == "harassment" and report["seq"] == message.seq
    for c in (facilitator, harasser, target):
        await c.client.close()


@pytest.mark.parametrize("forgery", ["altered text", "swapped sender", "forged tag",
                                     "other seq", "wrong franking key"])
@pytest_twisted.ensureDeferred
async def test_a_forged_report_is_refused(server: LiveServer, forgery: str) -> None:
    facilitator, harasser, target, message = await _reportable(server)
    changes: dict[str, Any] = {
        "altered text": {"text": "you are worthless, and I know where you live"},
        "swapped sender": {"sender": facilitator.client.member},
        "forged tag": {"tag": base64.b64encode(b"\1" * 32).decode()},
        "other seq": {"seq": message.seq + 1},
        "wrong franking key": {"franking_key": b"\2" * 32},
    }[forgery]
    forged = ChatMessage(**{**vars(message), **changes})
    target.report(forged)
    refused = await target.client.next(lambda m: m.get("ref") == "report")
    assert refused["type"] == "error" and refused["code"] == "report_invalid"
    facilitator.client.send({"type": "list_reports"})
    assert (await facilitator.client.expect("reports"))["reports"] == []
    for c in (facilitator, harasser, target):
        await c.client.close()


def test_wire_keys_are_what_the_roster_publishes() -> None:
    from hearth.spaces.e2ee import GroupSession
    keys = GroupSession("circle", "m1").public_keys()
    assert set(keys) == {"dh", "sig"}
    assert all(len(base64.b64decode(v)) == 32 for v in keys.values())
    json.dumps(keys)
    assert HearthClient  # the client module imports without a reactor running


OPUS = bytes(range(60)) * 2  # stands in for an Opus frame: distinctive bytes to look for


@pytest_twisted.ensureDeferred
async def test_voice_is_encrypted_end_to_end_and_the_server_sees_only_the_header() -> None:
    from tests.support.config import make_config
    from tests.support.live import start_server, walk_to
    live = await start_server(make_config(movement={"walk_speed": 50.0}))
    try:
        frames = record_frames(live)
        alice, bob = await chat(live), await chat(live)
        await settle(alice, bob)
        await walk_to(alice.client, 5.0, 8.0)
        await walk_to(bob.client, 6.0, 8.0)
        sent = [alice.speak(OPUS + bytes([i]), level=20) for i in range(5)]
        await until(lambda: len(bob.heard) == 5, what="bob hearing alice's five frames")
        assert [(who, f.opus) for who, f in bob.heard] == [
            (alice.client.member, OPUS + bytes([i])) for i in range(5)]
        voice_in = [f for f in frames if f[:1] == b"\x01" and len(f) > 26 and f in sent]
        assert len(voice_in) == 5
        for frame in voice_in:
            assert OPUS[:16] not in frame  # only the 10-byte header is in the clear

        # a newcomer gets keys of the new epoch only: earlier voice stays closed to it
        carol = await chat(live)
        await settle(alice, bob, carol)
        with pytest.raises(E2EEError):
            carol.session.decrypt_voice(alice.client.member or "", sent[0])
        await walk_to(carol.client, 5.5, 8.5)
        alice.speak(OPUS, level=20)
        await until(lambda: bool(carol.heard), what="carol hearing alice")
        assert carol.heard and carol.heard[0][1].opus == OPUS
        for c in (alice, bob, carol):
            await c.client.close()
    finally:
        await live.hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_private_corner_reaches_its_two_members_and_no_bystander() -> None:
    """Issue 14, point 8, with real clients: a bystander standing in the corner when it became
    private is moved out and receives nothing of it; corner ciphertext a server forwards to a
    room member does not open, not even in a corner member's own room session."""
    from tests.support.config import make_config
    from tests.support.live import start_server, walk_to
    live = await start_server(make_config(movement={"walk_speed": 50.0}))
    try:
        frames = record_frames(live)
        ticket = live.hearth.node.venue.issue_ticket("facilitator", live.hearth.node.clock())
        fac = await chat(live, ticket=ticket)
        person, bystander = await chat(live), await chat(live)
        await settle(fac, person, bystander)
        await walk_to(bystander.client, 1.5, 1.5)  # inside corner-west
        assert fac.client.member and person.client.member and bystander.client.member
        fac.client.send({"type": "private_corner", "corner": "corner-west",
                         "member": person.client.member})
        await until(lambda: "corner-west" in person.corners and "corner-west" in fac.corners,
                    what="both members' corner sessions")
        assert "corner-west" not in bystander.corners
        await fac.keys_from([person.client.member], zone="corner-west")
        await person.keys_from([fac.client.member], zone="corner-west")
        said = await person.say(SECRET, zone="corner-west")
        got = await fac.next_message()
        assert (got.text, got.zone, got.seq) == (SECRET, "corner-west", said.seq)
        await fac.say("I'm here with you", zone="corner-west")
        assert (await person.next_message()).text == "I'm here with you"
        await walk_to(fac.client, 1.2, 1.4)  # close enough to hear, both in the corner
        person.speak(OPUS, level=10)
        await until(lambda: len(fac.heard) == 1, what="the facilitator hearing the person")
        assert fac.heard[0] == (person.client.member, fac.heard[0][1])
        assert fac.heard[0][1].opus == OPUS
        await caught_up(person.client, fac.client, bystander.client)
        # The bystander: moved out, and nothing of the corner reached it.
        corner_envelopes = [m for m in bystander.client.inbox
                            if m.get("type") in ("envelope", "direct") and m.get("zone")]
        assert corner_envelopes == [] and bystander.heard == [] and bystander.messages == []
        assert not [r for r in bystander.voice_rejected if r[0] != 0]  # no frame came at all
        # A hostile server forwards the corner's ciphertext to the bystander, as a corner
        # message and as a room message: neither opens.
        forwarded = next(json.loads(f) for f in frames if b'"zone": "corner-west"' in f
                         and b'"envelope"' in f and SECRET.encode() not in f)
        for zone in ("corner-west", None):
            before = len(bystander.rejected)
            bystander._on_message({**forwarded, "type": "envelope", "from": person.client.member,
                                   "seq": 99, "ts": 1, "tag": "", **({"zone": zone} if zone else {}),
                                   **({} if zone else {"zone": None})})
            assert len(bystander.rejected) == before + 1 and bystander.messages == []
        assert bystander.rejected[-1][1] == "e2ee.bad_signature"
        # Not even the facilitator's room session opens it (the corner is in what is signed).
        with pytest.raises(E2EEError) as caught:
            fac.session.decrypt(person.client.member, forwarded["body"], forwarded["commitment"])
        assert caught.value.code == "e2ee.bad_signature"
        for c in (fac, person, bystander):
            c.close()
            await c.client.close()
    finally:
        await live.hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_resume_advances_the_epoch_and_replays_nothing(server: LiveServer) -> None:
    alice, bob = await chat(server), await chat(server)
    await settle(alice, bob)
    await alice.say("before the drop")
    first = await bob.client.next(lambda m: m["type"] == "envelope")
    assert (await bob.next_message()).text == "before the drop"
    epoch = bob.epoch
    token = bob.client.token
    assert token is not None and bob.client.member is not None
    alice.client.inbox.clear()
    bob.client.drop()
    await bob.client.until_closed()
    again = await server.client()
    bob.client = again
    again.on_message = bob._on_message
    again.on_binary = bob._on_voice
    welcome = await again.resume(token)
    assert welcome["room"]["epoch"] == epoch + 1
    resumed = await alice.client.next("member_resumed")
    assert resumed["member"]["id"] == bob.client.member
    assert [m for m in alice.client.inbox if m["type"] in ("member_left", "member_joined")] == []
    await settle(alice, bob)
    # The server replays what bob read before: refused.
    rejected = len(bob.rejected)
    bob._on_message(first)
    # (its epoch is closed: alice's key for the new epoch has arrived)
    assert bob.rejected[rejected:] == [(alice.client.member, "e2ee.stale_epoch")]
    await alice.say("after the resume")
    assert (await bob.next_message()).text == "after the resume"
    await bob.say("back again")
    assert (await alice.next_message()).text == "back again"
    for c in (alice, bob):
        c.close()
        await c.client.close()
