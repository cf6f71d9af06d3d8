"""The console and the participant's page keep the room the same way (web/static/js/roomstate.js).

Both pages hold the room in one RoomState: who is there, who sits where, who came and who
went and why. A facilitator's console and a watching participant follow two others:

- Moss joins and sits: both pages say "Moss Walker joined.", draw Moss on the seat, name
  the seat in the members list and in the seat's label;
- the watcher asks for Moss's seat: the room page says whose it is (its own line), and the
  watcher stays standing;
- the facilitator sits from the console: both pages draw it on its seat;
- Moss leaves and Fern is removed: both pages say so, each in its own words for the
  reason, and drop the member from the list and the map.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.browser.console_steps import confirm, console_click, enter, my_id, open_room, signed_in_console
from tests.browser.harness import Browser, Page, log_has, open_page, seated
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser

SEAT_MOSS = 5  # "seat 6" to people
SEAT_FACILITATOR = 1

MEMBER = "(id) => document.querySelector(`#members li[data-member='${id}']`)"
AVATAR = "(id) => document.querySelector(`.avatar[data-member='${id}']`)"


async def member_where(page: Page, member: str, where: str) -> None:
    """Until `page`'s members list says `member` is at `where` ("seat 6", "standing")."""
    await page.wait_for(
        f"([id, where]) => ({MEMBER})(id)?.querySelector('.where')?.textContent === where", [member, where])


async def me_where(page: Page, text: str) -> None:
    """Until `page`'s own line says `text`."""
    await page.wait_for("(text) => document.getElementById('me-where').textContent === text", text)


async def gone(page: Page, member: str) -> None:
    """Until `page` shows `member` neither in the members list nor on the map."""
    await page.wait_for(f"(id) => !({MEMBER})(id) && !({AVATAR})(id)", member)


async def newcomer(server: LiveServer, browser: Browser, pages: list[Page],
                   pseudonym: str) -> tuple[Page, str]:
    """A participant's page in the room "circle", and their member id."""
    page = await open_page(browser, pages, server.http_url)
    await enter(page, "circle", pseudonym)
    return page, await my_id(page)


@pytest_twisted.ensureDeferred
async def test_the_console_and_the_room_page_show_the_room_alike(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    console = await signed_in_console(server, browser, pages)
    facilitator = await open_room(console)
    watcher, wren = await newcomer(server, browser, pages, "Wren Watcher")
    both = (console, watcher)

    mover, moss = await newcomer(server, browser, pages, "Moss Walker")
    for page in both:
        await log_has(page, "Moss Walker joined.")
        await member_where(page, moss, "standing")

    # Moss sits: the avatar on the seat, the seat named in the list and in the seat's label.
    await mover.do(lambda p: p.click(f".seat[data-seat='{SEAT_MOSS}']"))
    for page in (*both, mover):
        await seated(page, moss, SEAT_MOSS)
    for page in both:
        await member_where(page, moss, "seat 6")
        assert await page.evaluate(
            f"() => document.querySelector(\".seat[data-seat='{SEAT_MOSS}']\").getAttribute('aria-label')"
        ) == "Seat 6 is taken by Moss Walker"
    await me_where(mover, "You are sitting on seat 6.")

    # The watcher asks for Moss's seat: the page says whose it is and stays standing.
    await watcher.do(lambda p: p.click(f".seat[data-seat='{SEAT_MOSS}']"))
    await me_where(watcher, "Seat 6 is taken by Moss Walker")

    await member_where(console, wren, "standing")

    # The facilitator sits from the console, through the same map input.
    await console.do(lambda p: p.click(f".seat[data-seat='{SEAT_FACILITATOR}']"))
    for page in both:
        await seated(page, facilitator, SEAT_FACILITATOR)
    await me_where(console, "You are sitting on seat 2.")
    await member_where(watcher, facilitator, "seat 2")

    # Moss leaves: both pages say so and let go of Moss.
    await mover.do(lambda p: p.click("#leave"))
    for page in both:
        await log_has(page, "Moss Walker left.")
        await gone(page, moss)
    assert await watcher.evaluate(
        f"() => document.querySelector(\".seat[data-seat='{SEAT_MOSS}']\").getAttribute('aria-label')"
    ) == "Seat 6, free"

    # Fern is removed by the facilitator: the reason is said the same way on both pages.
    _, fern = await newcomer(server, browser, pages, "Fern Gale")
    for page in both:
        await log_has(page, "Fern Gale joined.")
    await console_click(console, "remove", fern)
    await confirm(console)
    for page in both:
        await log_has(page, "Fern Gale was removed by a facilitator.")
        await gone(page, fern)
    assert await console.evaluate("() => document.getElementById('member-count').textContent") == "(2)"
    assert await watcher.evaluate("() => document.getElementById('member-count').textContent") == "(2)"
