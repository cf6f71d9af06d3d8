"""The facilitator's side of issue 21: the name shown in the room, and the talking stick.

- Point 7: the console's "your name in the room" starts empty (never the account name), is
  checked with the server's pseudonym rules before anything is asked of the server, and is
  the name the room sees, beside a role badge worded clearly in Spanish ("Facilitación",
  "Equipo": not "Personal", which reads first as "personal, private").
- Point 4: giving the stick and taking it back never turn the talking-stick mode on or off;
  the console offers "give the stick" only while the mode is on.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from hearth.spaces.pseudonyms import MESSAGES
from tests.browser.console_steps import (
    APP,
    CONSOLE,
    console_click,
    enter,
    my_id,
    open_room,
    signed_in_console,
)
from tests.browser.harness import Browser, Page, open_page
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser

PICK_ERROR = "() => document.getElementById('pick-error').textContent"


async def badge_of(page: Page, member: str) -> str:
    return str(await page.wait_for(
        "(id) => document.querySelector(`#members li[data-member='${id}'] .badge`)?.textContent",
        member))


@pytest_twisted.ensureDeferred
async def test_the_facilitator_chooses_the_name_the_room_sees(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    console = await signed_in_console(server, browser, pages)
    assert await console.evaluate("() => document.getElementById('console-name').value") == ""
    await console.do(lambda p: p.click(".open-room[data-room='circle']"))
    assert await console.evaluate(PICK_ERROR) == "Choose the name people in the room will see."
    await console.do(lambda p: p.fill("#console-name", "Staff Ana"))
    await console.do(lambda p: p.click(".open-room[data-room='circle']"))
    assert await console.evaluate(PICK_ERROR) == MESSAGES["reserved"][1]
    assert await console.evaluate("() => document.getElementById('desk').hidden")  # nothing asked
    assert await console.evaluate("() => document.activeElement.id") == "console-name"
    facilitator = await open_room(console, name="Ana Rivers")
    participant = await open_page(browser, pages, server.http_url, locale="es-MX")
    await enter(participant, "circle", "Garza Serena")
    name = await participant.wait_for(
        "(id) => document.querySelector(`#members li[data-member='${id}'] .name`)?.textContent",
        facilitator)
    assert name == "Ana Rivers"
    assert await badge_of(participant, facilitator) == "Facilitación"


@pytest_twisted.ensureDeferred
async def test_an_operators_badge_reads_equipo_in_spanish(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    console = await signed_in_console(server, browser, pages, name="olga", role="operator")
    operator = await open_room(console, name="Olga Luz")
    participant = await open_page(browser, pages, server.http_url)
    await participant.goto("/?lang=es")
    await enter(participant, "circle", "Foca Amable")
    assert await badge_of(participant, operator) == "Equipo"


@pytest_twisted.ensureDeferred
async def test_giving_and_taking_the_stick_never_change_its_mode(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    console = await signed_in_console(server, browser, pages)
    await open_room(console)
    participant = await open_page(browser, pages, server.http_url)
    await enter(participant, "circle", "Kind Heron")
    member = await my_id(participant)
    await participant.do(lambda p: p.click("#hand"))
    await console.wait_for("() => document.querySelectorAll('#hands li').length === 1")
    give = "() => document.querySelectorAll(\"button[data-act^='give_stick']\").length"
    mode = "() => document.getElementById('stick').getAttribute('aria-pressed')"
    line = ("() => { const l = document.getElementById('stick-line');"
            " return l.hidden ? null : l.textContent; }")

    # Off: nothing offers to give it (the server would refuse: stick_off).
    assert await console.evaluate(give) == 0 and await console.evaluate(mode) == "false"
    # On, by the toggle: now it can be given — from the hands, or the members list.
    await console.do(lambda p: p.click("#stick"))
    await console.wait_for(f"() => ({mode})() === 'true' && ({give})() === 2")
    await participant.wait_for(f"() => ({line})() === 'The talking stick is on: wait for a "
                               "facilitator to pass it to you.'")
    await console_click(console, "give_stick_hand", member)
    await participant.wait_for(f"() => ({line})()?.startsWith('You have the talking stick')")
    await console.do(lambda p: p.click("#take-stick"))
    await participant.wait_for(f"() => ({line})()?.startsWith('The talking stick is on')")
    # Given and taken back: the mode is still on, as the facilitator left it (the console
    # hears the same room update as the participant, perhaps a moment later).
    await console.wait_for("() => document.getElementById('take-stick').hidden")
    assert await console.evaluate(mode) == "true"
    # Off again, by the toggle only.
    await console.do(lambda p: p.click("#stick"))
    await console.wait_for(f"() => ({mode})() === 'false' && ({give})() === 0")
    await participant.wait_for(f"() => ({line})() === null")
    assert await participant.evaluate(f"() => {APP}.dataset.state") == "joined"
    assert await console.evaluate(f"() => {CONSOLE}.dataset.state") == "joined"
