"""A message still "sending…" when the page is reloaded is neither lost nor sent twice.

It is kept, sealed with the conversation (never in the clear), with its client id; the
reloaded page shows it "sending…" at once and sends it again under the same id once it is back
in the room. The server delivers an id once: whether the first try never reached it, or reached
it and only its acknowledgement was lost, the others read it exactly once, and the page shows
it once, acknowledged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted

from hearth.client.groupchat import GroupChat
from tests.browser.harness import Browser, Page, log_has, open_page
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser

TEXT = "said just before the reload"
SHOWN = ("(text) => [...document.querySelectorAll('#chat-log .msg.mine')]"
         ".filter((n) => n.querySelector('.text').textContent === text)"
         ".map((n) => n.classList.contains('pending') ? 'pending' : 'settled')")
STATE = "(state) => document.getElementById('app').dataset.state === state"


def client_id(frame: bytes) -> str:
    return str(json.loads(frame)["id"])


def unacknowledged(node: Any, member: str, reach: bool, ids: set[str]
                   ) -> Callable[[Any, bytes, bool], None]:
    """The node's frame handler, but the member's envelopes (their client ids into `ids`) get no
    `sent`: they never reach the room (`reach` False), or they do and only the answer is lost on
    the way back."""
    received = node.received

    def handle(link: Any, frame: bytes, is_binary: bool) -> None:
        if is_binary or b'"envelope"' not in frame or link.members != {member}:
            received(link, frame, is_binary)
            return
        ids.add(client_id(frame))
        if not reach:
            return
        peer = link.peer
        send_bytes = peer.send_bytes
        peer.send_bytes = lambda payload: None if b'"sent"' in payload else send_bytes(payload)
        try:
            received(link, frame, is_binary)
        finally:
            del peer.send_bytes
    return handle


def frames_from(node: Any, member: str) -> list[bytes]:
    """Every frame the node receives from `member`'s connections from now on."""
    frames: list[bytes] = []
    received = node.received

    def record(link: Any, frame: bytes, is_binary: bool) -> None:
        if link.members == {member}:
            frames.append(bytes(frame))
        received(link, frame, is_binary)
    node.received = record
    return frames


@pytest.mark.parametrize("reach", [False, True], ids=["never_reached", "answer_lost"])
@pytest_twisted.ensureDeferred
async def test_a_message_unacknowledged_at_a_reload_reaches_the_room_once(
        server: LiveServer, browser: Browser, pages: list[Page], reach: bool) -> None:
    page = await open_page(browser, pages, server.http_url)
    member = await page.join("circle", pseudonym="Steady Heron")
    py = await GroupChat.join(await server.client(), "circle", pseudonym="Python Pal")
    assert py.client.member is not None
    await page.wait_for("(id) => document.querySelector(`#members li[data-member='${id}']`)"
                        "?.dataset.e2ee === 'ready'", py.client.member)
    await py.keys_from([member])
    node: Any = server.hearth.node
    received = node.received
    first: set[str] = set()
    node.received = unacknowledged(node, member, reach, first)
    try:
        await page.do(lambda p: (p.fill("#chat-input", TEXT), p.press("#chat-input", "Enter")))
        await page.wait_for("() => document.querySelector('#chat-log .msg.mine .sending')")
        if reach:
            got = await py.next_message(timeout=10)
            assert (got.sender, got.text) == (member, TEXT)
    finally:
        node.received = received
    frames = frames_from(node, member)
    await page.do(lambda p: p.reload())
    await page.wait_for(STATE, "joined")
    once_settled = f"(text) => {{ const s = ({SHOWN})(text); return s.length === 1 && s[0] === 'settled'; }}"
    await page.wait_for(once_settled, TEXT)
    await py.say("and after it")
    await log_has(page, "and after it")
    if not reach:
        got = await py.next_message(timeout=10)
        assert (got.sender, got.text) == (member, TEXT)
    assert [m for m in py.messages if m.text == TEXT] == []  # read once, never twice
    assert await page.evaluate(SHOWN, TEXT) == ["settled"]
    # Never in the clear on the way or in the tab's storage; sent again under its first id.
    assert not any(TEXT.encode() in f for f in frames)
    assert TEXT not in await page.evaluate("() => JSON.stringify({...sessionStorage})")
    again = {client_id(f) for f in frames if b'"envelope"' in f}
    assert len(first) == 1 and again == first, (first, again)
    # Acknowledged, it is kept as said: another reload does not send it again.
    frames.clear()
    await page.do(lambda p: p.reload())
    await page.wait_for(STATE, "joined")
    await log_has(page, "and after it")
    assert await page.evaluate(SHOWN, TEXT) == ["settled"]
    await page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 1500))")
    assert not any(b'"envelope"' in f for f in frames)
    await py.client.close()
