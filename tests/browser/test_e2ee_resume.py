"""A sender key written to a dead link reaches the page with its resume, once.

A phone that loses signal often keeps its socket open: what the server writes meanwhile
vanishes, a sender key included. The page resumes saying the last room `seq` and the
last `dseq` it received; the server hands it the sender keys and then the envelopes it
missed, and the page shows what was said while its link was dead, once.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from hearth.client.groupchat import GroupChat
from tests.browser.harness import Browser, CuttableLink, Page, chat_both_ways, log_has, open_page
from tests.support.live import LiveServer, until

pytestmark = pytest.mark.browser

STATE = "(state) => document.getElementById('app').dataset.state === state"
TEXTS = "() => [...document.querySelectorAll('#chat-log .msg .text')].map((n) => n.textContent)"


@pytest_twisted.ensureDeferred
async def test_a_sender_key_lost_on_a_dead_link_comes_back_and_what_it_opens_is_shown_once(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    link = CuttableLink(server.port)
    page = await open_page(browser, pages, link.listen())
    try:
        member = await page.join("circle", pseudonym="Dim Signal")
        py = await GroupChat.join(await server.client(), "circle", pseudonym="Python Pal")
        await chat_both_ways(page, py, member, "before the link died")

        # The link dies the moment the page's epoch key for the next epoch reached the
        # server: py's sender key for that epoch, sealed to it, goes into the void.
        follow = py.client.on_message
        assert follow is not None

        def watch(message: dict[str, Any]) -> None:
            keys = (message.get("member") or {}).get("keys") or {}
            if message.get("type") == "member_updated" and \
                    message["member"]["id"] == member and keys.get("ek_epoch") == py.epoch:
                link.stall()
            follow(message)
        py.client.on_message = watch
        carol = await GroupChat.join(await server.client(), "circle", pseudonym="Carol Finch")
        await until(lambda: link.stalled, what="the page's keys for the new epoch")
        await until(lambda: py.session.holds_our_key(member), what="py's key sealed to the page")
        py.client.on_message = follow
        said = await py.say("said while your link was dead")
        assert said.seq > 0
        link.unstall()  # the dead link is cut: the page reconnects and resumes
        await page.wait_for(STATE, "joined", timeout_ms=25_000)
        await log_has(page, "said while your link was dead")
        await chat_both_ways(page, py, member, "after the resume")
        texts = await page.evaluate(TEXTS)
        assert texts.count("said while your link was dead") == 1, texts
        assert not py.rejected
        warnings = await page.evaluate(
            "() => [...document.querySelectorAll('#chat-log .notice.warn')].map((n) => n.textContent)")
        # nothing refused, nothing "could not reach you" (the drop is said by the status line)
        assert warnings == [], warnings
        await py.client.close()
        await carol.client.close()
    finally:
        await link.close()
