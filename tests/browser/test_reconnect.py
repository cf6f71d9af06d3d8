"""A dropped connection: the page says it is reconnecting, then resumes the same member.

The connection is cut without a close handshake, in both directions (a phone losing
signal: the page reaches the server through a forwarder the test cuts). The page
must show "reconnecting", resume with the token it kept in sessionStorage, store the
rotated token, and be the same member — pseudonym, seat — with chat still working both
ways. A reload resumes too, with the same E2EE identity (tests/browser/test_keep.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from hearth.client.groupchat import GroupChat
from tests.browser.harness import (
    Browser,
    CuttableLink,
    Page,
    chat_both_ways,
    keys_ready,
    log_has,
    open_page,
    seated,
)
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser

SEAT = 5
TOKEN = "() => sessionStorage.getItem('hearth.token.circle')"
STATE = "(state) => document.getElementById('app').dataset.state === state"


@pytest_twisted.ensureDeferred
async def test_a_dropped_connection_resumes_the_same_member_and_seat(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    link = CuttableLink(server.port)
    page = await open_page(browser, pages, link.listen())
    try:
        await dropped_and_resumed(server, page, link)
    finally:
        await link.close()


async def dropped_and_resumed(server: LiveServer, page: Page, link: CuttableLink) -> None:
    member = await page.join("circle", pseudonym="Steady Heron")
    await page.do(lambda p: p.click(f".seat[data-seat='{SEAT}']"))
    await seated(page, member, SEAT)
    py = await GroupChat.join(await server.client(), "circle", pseudonym="Python Pal")
    await chat_both_ways(page, py, member, "before the drop")
    token = await page.evaluate(TOKEN)
    assert token

    reconnecting = page.wait_for(STATE, "reconnecting")  # armed before the cut
    assert link.cut() >= 1
    await reconnecting
    assert "Reconnecting" in await page.evaluate("() => document.getElementById('status').textContent")
    await page.wait_for(STATE, "joined")
    await log_has(page, "Reconnected.")

    assert await page.evaluate("() => document.getElementById('app').dataset.me") == member
    await seated(page, member, SEAT)
    mine = await page.evaluate(
        f"() => document.querySelector(\"#members li[data-member='{member}']\").textContent")
    assert "Steady Heron" in mine and "seat 6" in mine
    rotated = await page.evaluate(TOKEN)
    assert rotated and rotated != token, "the page must store the token the server rotated"
    # Nobody else saw a leave or a join, and the conversation goes on both ways.
    assert [m for m in py.client.inbox if m["type"] in ("member_left", "member_joined")] == []
    await chat_both_ways(page, py, member, "after the drop")

    # A reload resumes as well, and keeps the E2EE identity (test_keep.py has the details).
    await page.do(lambda p: p.reload())
    await page.wait_for(STATE, "joined")
    assert await page.evaluate("() => document.getElementById('app').dataset.me") == member
    await seated(page, member, SEAT)
    assert await page.evaluate(TOKEN) not in (token, rotated)
    await chat_both_ways(page, py, member, "after the reload")
    assert not py.rejected
    await py.client.close()


@pytest_twisted.ensureDeferred
async def test_after_an_outage_in_which_the_room_changed_everyone_can_still_be_read(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    """Someone joins while the page is offline: the epoch advances and the others' new sender
    keys cannot reach the away member. After resuming, the page must read them all again."""
    link = CuttableLink(server.port)
    page = await open_page(browser, pages, link.listen())
    try:
        member = await page.join("circle", pseudonym="Away Owl")
        py = await GroupChat.join(await server.client(), "circle", pseudonym="Python Pal")
        await chat_both_ways(page, py, member, "before the outage")
        await page.do(lambda p: p.context.set_offline(True))
        link.cut()
        await page.wait_for(STATE, "reconnecting")
        carol = await GroupChat.join(await server.client(), "circle", pseudonym="Carol Finch")
        assert carol.client.member is not None and py.client.member is not None
        await py.keys_from([carol.client.member])
        await page.do(lambda p: p.context.set_offline(False))
        await page.wait_for(STATE, "joined", timeout_ms=25_000)
        await keys_ready(page, [py.client.member, carol.client.member])
        await py.keys_from([member])
        await carol.keys_from([member])
        await carol.say("Carol came while you were away")
        await log_has(page, "Carol came while you were away")
        assert (await py.next_message()).text == "Carol came while you were away"
        await chat_both_ways(page, py, member, "after the outage")
        assert (await carol.next_message()).text == "browser says after the outage"
        assert not py.rejected and not carol.rejected
        await py.client.close()
        await carol.client.close()
    finally:
        await link.close()



TEXTS = "() => [...document.querySelectorAll('#chat-log .msg .text')].map((n) => n.textContent)"


async def joined_through(link: CuttableLink, server: LiveServer, browser: Browser, pages: list[Page],
                         name: str) -> tuple[Page, str, GroupChat]:
    """A page that reaches the server through `link`, in the room with a Python member; each
    has read the other."""
    page = await open_page(browser, pages, link.listen())
    member = await page.join("circle", pseudonym=name)
    py = await GroupChat.join(await server.client(), "circle", pseudonym="Python Pal")
    await chat_both_ways(page, py, member, "before the drop")
    return page, member, py


async def offline_while(page: Page, link: CuttableLink, meanwhile: Any) -> None:
    """Cut the page off (and keep it off) while `meanwhile()` runs; then until it has resumed."""
    await page.do(lambda p: p.context.set_offline(True))
    link.cut()
    await page.wait_for(STATE, "reconnecting")
    await meanwhile()
    await page.do(lambda p: p.context.set_offline(False))
    await page.wait_for(STATE, "joined", timeout_ms=25_000)


@pytest_twisted.ensureDeferred
async def test_what_was_said_during_a_drop_is_shown_once_and_the_page_says_so_honestly(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    """The server hands a resuming page the room envelopes it missed (docs/protocol.md): what
    someone said while the page was offline is shown after the resume, once, and the page does
    not claim it was lost. What the page itself had said before the drop is not shown twice."""
    link = CuttableLink(server.port)
    try:
        page, member, py = await joined_through(link, server, browser, pages, "Away Lark")
        await page.do(lambda p: (p.focus("#chat-input"), p.keyboard.type("a draft")))

        async def meanwhile() -> None:
            await py.say("said while you were offline")
            # Someone typing when the connection dropped is still where they were, draft and
            # all, and may send it: it waits, marked, for the resume.
            assert await page.evaluate("() => [document.activeElement.id, document.activeElement.value]"
                                       ) == ["chat-input", "a draft"]
            await page.do(lambda p: p.keyboard.press("Enter"))
            await page.wait_for("() => document.querySelector('#chat-log .msg.pending .sending')")
        await offline_while(page, link, meanwhile)
        await log_has(page, "said while you were offline")
        got = await py.next_message(timeout=15)
        assert (got.sender, got.text) == (member, "a draft")
        await page.wait_for("() => !document.querySelector('#chat-log .pending')")
        assert await page.evaluate("() => document.activeElement.id") == "chat-input"
        await chat_both_ways(page, py, member, "after the drop")
        texts = await page.evaluate(TEXTS)
        for text in ("said while you were offline", "browser says before the drop",
                     "python says before the drop", "a draft"):
            assert texts.count(text) == 1, (text, texts)
        notices = await page.evaluate(
            "() => [...document.querySelectorAll('#chat-log .notice')].map((n) => n.textContent)")
        assert "Reconnected." in notices, notices
        assert not [n for n in notices if "could not reach you" in n], "it did reach the page"
        assert not py.rejected
        await py.client.close()
    finally:
        await link.close()


@pytest_twisted.ensureDeferred
async def test_after_a_drop_longer_than_the_room_keeps_the_page_says_some_may_be_missing(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    """The room keeps its last 256 envelopes for those who resume: past that, the page says
    that some of what was said could not reach it, and still shows the latest."""
    link = CuttableLink(server.port)
    try:
        page, _member, py = await joined_through(link, server, browser, pages, "Long Away")

        async def talk() -> None:
            for n in range(260):
                await py.say(f"line {n}")
        await offline_while(page, link, talk)
        await log_has(page, "line 259")
        await log_has(page, "some of what was said meanwhile could not reach you")
        texts = await page.evaluate(TEXTS)
        assert "line 0" not in texts and texts.count("line 259") == 1
        await py.client.close()
    finally:
        await link.close()


@pytest_twisted.ensureDeferred
async def test_a_link_that_goes_silent_is_noticed_and_what_was_said_is_delivered_once(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    """A phone that loses signal often leaves the socket open: nothing arrives, nothing is
    refused. The page must not go on looking connected while what the person says vanishes:
    when the server answers nothing at all for a few seconds, the page says it is reconnecting,
    and once the network is back the message goes out, once."""
    link = CuttableLink(server.port)
    try:
        page, member, py = await joined_through(link, server, browser, pages, "Silent Link")
        link.stall()

        def type_and_send(p: Any) -> None:
            p.fill("#chat-input", "said into the silence")
            p.press("#chat-input", "Enter")
        await page.do(type_and_send)
        # What was said stays on screen, marked as not sent yet, all along.
        await page.wait_for("() => [...document.querySelectorAll('#chat-log .msg.mine.pending')]"
                            ".some((n) => n.querySelector('.text').textContent === 'said into the silence'"
                            " && n.querySelector('.sending')?.textContent === 'sending…')")
        await page.wait_for(STATE, "reconnecting", timeout_ms=20_000)
        assert await page.evaluate("() => document.querySelectorAll('#chat-log .msg.pending').length") == 1
        assert "Reconnecting" in await page.evaluate("() => document.getElementById('status').textContent")
        link.unstall()
        await page.wait_for(STATE, "joined", timeout_ms=25_000)
        got = await py.next_message(timeout=15)
        assert (got.sender, got.text) == (member, "said into the silence")
        await page.wait_for("() => !document.querySelector('#chat-log .pending, #chat-log .sending')")
        await chat_both_ways(page, py, member, "after the silence")  # (a copy would come first)
        mine = await page.evaluate(
            "() => [...document.querySelectorAll('#chat-log .msg.mine .text')].map((n) => n.textContent)")
        assert mine.count("said into the silence") == 1, mine
        await py.client.close()
    finally:
        await link.close()
