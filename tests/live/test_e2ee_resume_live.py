"""A sender key lost with a dead connection comes back with the resume, once.

A member's link can die without either end being told (a phone losing signal): what the
server writes to it meanwhile is lost, directed envelopes (sender keys) included, until the
server notices or the member resumes elsewhere. The room envelopes it missed come back with
the resume (by `seq`); the sender keys that open them must come back too (by `dseq`), or
the member cannot read what was said while its link was dead.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from hearth.client import groupchat
from hearth.client.groupchat import GroupChat
from tests.support.live import LiveServer, caught_up, settle, until


async def chat(server: LiveServer) -> GroupChat:
    return await GroupChat.join(await server.client(), "circle")


def freeze_after_keys(member: GroupChat) -> dict[str, Any]:
    """Stop `member` reading right after it publishes its keys for a new epoch: whatever
    the server sends it from then on (the others' sender keys for that epoch) is written
    to a connection nobody reads."""
    published: dict[str, Any] = {}
    client = member.client
    original = client.send

    def send(message: Any) -> None:
        original(message)
        if message.get("type") == "keys" and "ek_epoch" in message and not published:
            published.update(message)
            client.stop_reading()
    client.send = send  # type: ignore[method-assign]
    return published


@pytest.mark.parametrize("cut", [True, False], ids=["cut-without-close", "still-looks-open"])
@pytest_twisted.ensureDeferred
async def test_a_sender_key_written_to_a_dead_link_comes_back_with_the_resume(
        server: LiveServer, cut: bool) -> None:
    alice, bob = await chat(server), await chat(server)
    await settle(alice, bob)
    published = freeze_after_keys(bob)
    carol = await chat(server)  # a new epoch: bob publishes its epoch key, then reads nothing
    await until(lambda: bool(published), what="bob's keys for the new epoch")
    epoch = published["ek_epoch"]
    assert epoch == carol.epoch
    await settle(alice, carol)
    # alice's sender key for the new epoch went to bob, and what she says is sealed under it
    await until(lambda: alice.session.holds_our_key(bob.client.member or ""),
                what="alice's key sealed to bob")
    said = await alice.say("said while bob's link was dead")  # (sequenced: `sent` came)
    seen = bob.client.seq
    token = bob.client.token
    assert token is not None and seen is not None and seen < said.seq
    if cut:  # the phone lost signal: everything in flight to it is gone
        bob.client.drop()
        await bob.client.until_closed()
    old = bob.client
    old.on_message = None  # (what it never read stays unread)
    again = await server.client()
    welcome = await again.resume(token, seq=seen, dseq=old.dseq)
    bob.resumed(again, welcome)
    message = await bob.next_message()
    assert (message.sender, message.text, message.seq) == (
        alice.client.member, "said while bob's link was dead", said.seq)
    # Nothing came twice: one sender key per (sender, epoch), one copy of the message.
    await settle(alice, bob, carol)
    await caught_up(alice.client, again)
    assert bob.rejected == [] and bob.duplicates == 0 and bob.superseded == 0
    assert bob.messages == []
    await alice.say("after the resume")
    assert (await bob.next_message()).text == "after the resume"
    await bob.say("back")
    assert (await alice.next_message()).text == "back"
    assert (await carol.next_message()).text == "said while bob's link was dead"
    for c in (alice, bob, carol):
        c.close()
        await c.client.close()
    old.drop()


@pytest_twisted.ensureDeferred
async def test_what_was_sealed_in_an_epoch_a_dead_link_never_reached_is_refused_as_too_late(
        server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """bob's link dies before the room's next epoch: bob never publishes an epoch key for
    it, so nobody can seal that epoch's sender keys to bob, then or later (a newcomer must
    not read what was said before it came, so nothing is said again for bob). The envelopes
    of that epoch come back with the resume and cannot open; once the sender's key of the
    epoch after arrives they are refused as too late (`e2ee.stale_epoch`: the page says a
    message "arrived after the keys had changed"), never held silently."""
    monkeypatch.setattr(groupchat, "RESEND_WAIT", 0.5)  # (alice stops waiting for bob sooner)
    alice, bob = await chat(server), await chat(server)
    await settle(alice, bob)
    bob.client.stop_reading()
    carol = await chat(server)
    await settle(alice, carol)
    said = await alice.say("said in an epoch bob holds no key of")
    seen, token = bob.client.seq, bob.client.token
    assert token is not None and seen is not None and seen < said.seq
    bob.client.drop()
    old = bob.client
    old.on_message = None
    again = await server.client()
    bob.resumed(again, await again.resume(token, seq=seen, dseq=old.dseq))
    await settle(alice, bob)
    await alice.say("after the resume")
    assert (await bob.next_message()).text == "after the resume"
    assert bob.rejected == [(alice.client.member, "e2ee.stale_epoch")]
    assert bob.messages == []
    assert (await carol.next_message()).text == "said in an epoch bob holds no key of"
    for c in (alice, bob, carol):
        c.close()
        await c.client.close()
