"""The room by keyboard alone, as a screen reader hears it; the voice controls by keyboard.

- The map is one focusable region: Enter sits on the nearest free seat; Tab reaches each seat,
  named with its number and who sits there, and Enter sits there; the arrow keys walk into a
  quiet corner and out of it. Each change of place is said once, politely ("You are sitting
  on seat 3.", "You are in …", "You are standing.").
- The microphone, the hand, push to talk and the sound are buttons with names and states
  (aria-pressed, or a name that says what a press does) that the keyboard works.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from hearth.spaces.config import HearthConfig
from tests.browser.harness import RECORD_ANNOUNCEMENTS, Browser, Page, announced, open_page
from tests.support.config import make_config
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser


@pytest.fixture
def config(neutral_site: str) -> HearthConfig:
    """A fast walk: the arrow keys cross the room in a moment."""
    return make_config(organisation={"name": "Test Hearth", "quick_exit_url": neutral_site},
                       movement={"walk_speed": 20.0})


ME = ("(id) => { const a = document.querySelector(`.avatar[data-member='${id}']`);"
      " return a && {...a.dataset}; }")
WHERE = "() => document.getElementById('me-where').textContent"


async def hold(page: Page, keys: list[str], ms: int) -> None:
    def press(p: Any) -> None:
        for key in keys:
            p.keyboard.down(key)
        p.wait_for_timeout(ms)
        for key in keys:
            p.keyboard.up(key)
    await page.do(press)


@pytest_twisted.ensureDeferred
async def test_the_map_by_keyboard_says_each_change_of_place_once(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    page = await open_page(browser, pages, server.http_url, reduced_motion="reduce")
    me = await page.join("circle", pseudonym="Key Mover")
    await page.evaluate(RECORD_ANNOUNCEMENTS)
    await page.do(lambda p: (p.focus("#room-view"), p.keyboard.press("Enter")))
    await page.wait_for("() => /sitting on seat/.test(document.getElementById('me-where').textContent)")
    first = await page.evaluate(WHERE)
    # Tab to the seats: each has a name; Enter on a free one sits there.
    await page.do(lambda p: p.keyboard.press("Tab"))
    names = []
    for _ in range(12):
        name = await page.evaluate(
            "() => document.activeElement.closest('.seat')?.getAttribute('aria-label')")
        assert name, "Tab from the map goes to its seats"
        names.append(name)
        if "free" in name and name.split(",")[0] not in first:
            break
        await page.do(lambda p: p.keyboard.press("Tab"))
    assert any("Key Mover" in n for n in names) or "free" in names[-1], names
    await page.do(lambda p: p.keyboard.press("Enter"))
    seat = names[-1].split(",")[0].split()[-1]
    await page.wait_for("(n) => document.getElementById('me-where').textContent"
                        " === `You are sitting on seat ${n}.`", seat)
    # The arrows walk: up and left into the quiet corner at the top left, then out again.
    await page.do(lambda p: p.focus("#room-view"))
    await hold(page, ["ArrowLeft"], 3000)
    await hold(page, ["ArrowUp"], 2000)
    await page.wait_for("() => /^You are in /.test(document.getElementById('me-where').textContent)")
    corner = await page.evaluate(WHERE)
    await hold(page, ["ArrowRight"], 2000)
    await page.wait_for("() => document.getElementById('me-where').textContent === 'You are standing.'")
    assert (await page.evaluate(ME, me))["seat"] in ("", None, "null")
    said = [a["text"] for a in await announced(page, "^You are ")]
    # Each change once, in order (walking from one seat to another, one stands on the way).
    assert said == [first, "You are standing.", f"You are sitting on seat {seat}.", "You are standing.",
                    corner, "You are standing."], said


PRESSED = "(id) => document.getElementById(id).getAttribute('aria-pressed')"


@pytest_twisted.ensureDeferred
async def test_the_voice_controls_by_keyboard_have_names_and_states(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    page = await open_page(browser, pages, server.http_url)
    await page.join("circle", pseudonym="Key Talker")
    await page.evaluate(RECORD_ANNOUNCEMENTS)
    # The hand: Enter raises it, the button says so (pressed, and its name says what comes next).
    await page.do(lambda p: (p.focus("#hand"), p.keyboard.press("Enter")))
    await page.wait_for(f"() => ({PRESSED})('hand') === 'true'")
    assert await page.evaluate("() => document.getElementById('hand').textContent") == "Lower my hand"
    await page.do(lambda p: p.keyboard.press("Space"))
    await page.wait_for(f"() => ({PRESSED})('hand') === 'false'")
    # The sound: its name says what a press does, and the status line says it is off.
    name = await page.evaluate("() => document.getElementById('voice-sound').textContent")
    await page.do(lambda p: (p.focus("#voice-sound"), p.keyboard.press("Enter")))
    await page.wait_for("(name) => document.getElementById('voice-sound').textContent !== name", name)
    # Push to talk: chosen with the arrow keys in its radio group (a native one).
    await page.do(lambda p: (p.focus("#voice-mode-open"), p.keyboard.press("ArrowDown")))
    assert await page.evaluate("() => document.getElementById('voice-mode-ptt').checked")
    # The microphone: a toggle button; without a microphone here it stays off and says why.
    mic = await page.do(lambda p: p.locator("#mic").aria_snapshot())
    assert 'button "Microphone"' in mic, mic
    await page.do(lambda p: (p.focus("#mic"), p.keyboard.press("Enter")))
    await page.wait_for("() => document.getElementById('mic-note').textContent !== ''")
    assert await page.evaluate(PRESSED, "mic") in ("true", "false")
    described = await page.evaluate("() => document.getElementById('mic').getAttribute('aria-describedby')")
    assert described == "mic-note"
