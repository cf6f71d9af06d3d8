"""The room page never loses or repeats a message to a room moving between nodes.

A message the page sends at the moment its room's node goes away (the frame is lost
with it, the connection closed 4010) is sent again after the page resumes, with the same
client id, and reaches the others once; a message the room's next node relays a second
time (it did not know the first had gone out) is shown once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted

from hearth.client.groupchat import GroupChat
from hearth.spaces.host import ROOM_MOVED
from tests.browser.harness import Browser, Page, chat_both_ways, log_has, open_page
from tests.support.live import LiveServer, until

pytestmark = pytest.mark.browser

COUNT = ("(text) => [...document.querySelectorAll('#chat-log .msg .text')]"
         ".filter((n) => n.textContent === text).length")


def swallowing_one_envelope(node: Any, member: str, lost: list[bytes],
                            close: bool) -> Callable[[Any, bytes, bool], None]:
    """The node's frame handler, but the member's next envelope is lost on the way (into
    `lost`), the page closed 4010 as well if `close`."""
    received = node.received

    def swallow(link: Any, frame: bytes, is_binary: bool) -> None:
        if not lost and not is_binary and b'"envelope"' in frame and link.members == {member}:
            lost.append(frame)
            if close:
                link.peer.close(ROOM_MOVED, "the room moved to another node; resume")
            return
        received(link, frame, is_binary)
    return swallow


async def page_and_python(server: LiveServer, browser: Browser, pages: list[Page]
                          ) -> tuple[Page, str, GroupChat]:
    """A page and a Python client in the room, each reading the other."""
    page = await open_page(browser, pages, server.http_url)
    member = await page.join("circle", pseudonym="Steady Heron")
    py = await GroupChat.join(await server.client(), "circle", pseudonym="Python Pal")
    await chat_both_ways(page, py, member, "before")
    return page, member, py


@pytest_twisted.ensureDeferred
async def test_a_message_lost_as_the_room_moves_is_sent_again_and_shown_once(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    page, member, py = await page_and_python(server, browser, pages)

    node: Any = server.hearth.node
    received = node.received
    lost: list[bytes] = []  # gone with the node that ran the room, which closes the page
    node.received = swallowing_one_envelope(node, member, lost, close=True)
    try:
        await page.do(lambda p: (p.fill("#chat-input", "said as the room moved"),
                                 p.press("#chat-input", "Enter")))
        got = await py.next_message(timeout=15)  # after the page resumed and sent it again
        await log_has(page, "Reconnected.")
        assert got.text == "said as the room moved" and got.sender == member
        assert lost and b'"id"' in lost[0]  # the first try carried the client id
        await log_has(page, "said as the room moved")
        assert await page.evaluate(COUNT, "said as the room moved") == 1
    finally:
        node.received = received
    await until(lambda: not py.unacked, what="python's messages acknowledged")
    assert not [m for m in py.messages if m.text == "said as the room moved"]  # once

    # The room's next node relays a message a second time (it had not heard that the last
    # node relayed it before dying): the page shows it once.
    await py.say("relayed twice")
    await log_has(page, "relayed twice")
    client_id = list(py.acked)[-1]  # "relayed twice", acknowledged
    room = node.venue.rooms["circle"]
    room.members[py.client.member].replies.clear()  # what a takeover may not know
    py.unacked[client_id] = ("relayed twice", None)
    py._resend()
    await until(lambda: client_id not in py.unacked, what="the second relay acknowledged")
    await chat_both_ways(page, py, member, "after")
    assert await page.evaluate(COUNT, "relayed twice") == 1


@pytest_twisted.ensureDeferred
async def test_a_message_lost_between_nodes_on_an_open_connection_is_sent_again(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    """The page's frame never reaches the room's node, and nothing closes (a message between
    nodes lost while a Redis Cluster fails over): unanswered, it goes again with its id."""
    page, member, py = await page_and_python(server, browser, pages)
    node: Any = server.hearth.node
    received = node.received
    lost: list[bytes] = []
    node.received = swallowing_one_envelope(node, member, lost, close=False)
    try:
        await page.do(lambda p: (p.fill("#chat-input", "lost on the way"),
                                 p.press("#chat-input", "Enter")))
        got = await py.next_message(timeout=15)
        assert got.text == "lost on the way" and got.sender == member and lost
        assert await page.evaluate(COUNT, "lost on the way") == 1
        # The first frame is never answered, but the server answered the second: the link is
        # alive, and the page must not take the silence about the first for a dead link.
        await page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 10000))")
        assert await page.evaluate("() => document.getElementById('app').dataset.state") == "joined"
        assert "dropped" not in await page.evaluate(
            "() => document.getElementById('chat-log').textContent")
    finally:
        node.received = received
