"""What a screen reader hears on the room page: each thing once, in the page's language.

- One dropped connection is announced once ("Reconnecting…"), and its end once ("Reconnected.");
  the acknowledgement of one's own line is not read out (its time alone).
"""

from __future__ import annotations

import pytest
import pytest_twisted

from hearth.client.groupchat import GroupChat
from tests.browser.harness import (
    RECORD_ANNOUNCEMENTS,
    Browser,
    CuttableLink,
    Page,
    announced,
    chat_both_ways,
    open_page,
)
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser

STATE = "(state) => document.getElementById('app').dataset.state === state"


@pytest_twisted.ensureDeferred
async def test_one_drop_is_announced_once_and_so_is_its_end(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    link = CuttableLink(server.port)
    page = await open_page(browser, pages, link.listen())
    try:
        member = await page.join("circle", pseudonym="Steady Heron")
        py = await GroupChat.join(await server.client(), "circle", pseudonym="Python Pal")
        await chat_both_ways(page, py, member, "before the drop")
        await page.evaluate(RECORD_ANNOUNCEMENTS)
        reconnecting = page.wait_for(STATE, "reconnecting")
        assert link.cut() >= 1
        await reconnecting
        await page.wait_for(STATE, "joined")
        await chat_both_ways(page, py, member, "after the drop")
        assert len(await announced(page, "reconnecting|dropped|connection lost")) == 1, \
            await announced(page)
        assert len(await announced(page, "^reconnected")) == 1, await announced(page)
        # A line the server acknowledged keeps its time: a time alone is never read out.
        assert await announced(page, r"^\\d\\d:\\d\\d( [AP]M)?$") == []
        await py.client.close()
    finally:
        await link.close()
