"""Quick exit: the button, or Escape twice, leaves for the neutral site and leaves no trace.

After it the tab shows the organisation's neutral site (a local page here: no request
may leave 127.0.0.1), this origin's session storage and language cookie are gone, Back
does not bring the room back, and the member has left the room (nobody waits 60 s for
them to come back).
"""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.browser.harness import NEUTRAL_TITLE, Browser, Page, open_page
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("how", ["button", "double escape"])
@pytest_twisted.ensureDeferred
async def test_quick_exit_replaces_the_room_and_clears_the_session(
        server: LiveServer, browser: Browser, pages: list[Page], neutral_site: str, how: str) -> None:
    page = await open_page(browser, pages, server.http_url)
    lang = "es" if how == "double escape" else "en"
    member = await page.join("circle", pseudonym="Quiet Wren", lang=lang)
    venue = server.hearth.node.venue
    assert member in venue.rooms["circle"].members
    # The token, the public helpline list cached for the help card (web/static/js/helplines.js),
    # and the random name of this tab under which a reload finds its kept keys (keep.js).
    await page.wait_for("() => sessionStorage.getItem('hearth.helplines') !== null")
    assert sorted(await page.evaluate("() => Object.keys(sessionStorage)")) == [
        "hearth.helplines", "hearth.tab", "hearth.token.circle"]
    if lang == "es":
        assert "hearth_lang=es" in await page.evaluate("() => document.cookie")

    if how == "button":
        await page.do(lambda p: p.click("#quick-exit"))
    else:
        await page.do(lambda p: p.focus("#chat-input"))  # Escape works wherever the focus is
        await page.do(lambda p: (p.keyboard.press("Escape"), p.keyboard.press("Escape")))
    await page.do(lambda p: p.wait_for_url(neutral_site))
    assert await page.do(lambda p: p.title()) == NEUTRAL_TITLE

    # Back does not show the room (nor any Hearth page: it kept one history entry).
    await page.do(lambda p: p.go_back())
    url = await page.do(lambda p: p.url)
    assert "/room/" not in url and not url.startswith(server.http_url), url

    # The member left for good; the tab's storage for Hearth's origin is empty.
    assert member not in venue.rooms["circle"].members
    await page.goto("/")
    assert await page.evaluate("() => sessionStorage.length") == 0
    assert "hearth_lang" not in await page.evaluate("() => document.cookie")


@pytest_twisted.ensureDeferred
async def test_a_single_escape_does_nothing(server: LiveServer, browser: Browser,
                                            pages: list[Page]) -> None:
    page = await open_page(browser, pages, server.http_url)
    await page.join("circle", pseudonym="Calm Otter")
    await page.do(lambda p: p.keyboard.press("Escape"))
    await page.do(lambda p: p.wait_for_timeout(1000))  # longer than the double-press window
    await page.do(lambda p: p.keyboard.press("Escape"))
    await page.do(lambda p: p.wait_for_timeout(200))
    assert "/room/circle" in await page.do(lambda p: p.url)
