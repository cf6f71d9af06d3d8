"""The room and the console zoomed in, and in forced colours (Windows high contrast).

- 400 % (a 1280 x 1024 window is 320 x 256 CSS pixels) and 200 % (640 x 400): no sideways
  scrolling (WCAG 1.4.10), and every control can be scrolled into view and is not covered
  there (by the sticky header or the phone's conversation sheet, which a screen this short does
  not have: the conversation is an ordinary part of the page); a very long word or a line of
  emoji in the conversation breaks inside the log.
- Forced colours: a pressed toggle, a disabled control and the keyboard focus stay visible
  without the backgrounds the colours are removed from.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from tests.browser.console_steps import open_room, signed_in_console
from tests.browser.harness import Browser, Page, open_page, say
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser

ZOOMS = {"400": {"width": 320, "height": 256}, "200": {"width": 640, "height": 400}}
ROOM_CONTROLS = ["#help-button", "#quick-exit", "#room-view", ".seat", "#mic", "#hand", "#chat-input",
                 "#chat-send", ".reaction-button", "#voice-sound", "#voice-mode-ptt",
                 "#help-now > summary", "#safety > summary", "#leave", "#members li"]
CONSOLE_CONTROLS = ["#quick-exit", "#duty", "#desk-leave", "#room-view", "#chat-input", "#lobby", "#lock",
                    "#capacity", "#slow-mode", "#end-session", "#members li", "#reports-refresh"]

# Each control scrolled into view: [selector, why not reachable] for those that are not.
HIDDEN = """(selectors) => {
  const out = [];
  if (document.documentElement.scrollWidth > window.innerWidth) out.push(['page', 'scrolls sideways']);
  for (const s of selectors) {
    const el = document.querySelector(s);
    if (!el) { out.push([s, 'missing']); continue; }
    if (el.closest('[hidden]') || el.getClientRects().length === 0) { out.push([s, 'not shown']); continue; }
    el.scrollIntoView({ block: 'center', inline: 'nearest' });
    const r = el.getBoundingClientRect();
    const x = Math.min(r.left + r.width / 2, window.innerWidth - 1), y = r.top + Math.min(r.height / 2, 10);
    const top = document.elementFromPoint(x, y);
    if (!(top === el || el.contains(top) || top?.closest('svg') && el.closest('svg')))
      out.push([s, `covered by ${top?.tagName}#${top?.id}.${top?.className?.baseVal ?? top?.className}`]);
    if (r.right > window.innerWidth + 1) out.push([s, 'past the right edge']);
  }
  window.scrollTo(0, document.documentElement.scrollHeight);
  for (const s of ['#help-button', '#quick-exit']) {
    const el = document.querySelector(s);
    if (!el) continue;
    const r = el.getBoundingClientRect();
    if (r.top < 0 || r.bottom > window.innerHeight) out.push([s, 'off screen at the bottom of the page']);
  }
  return out;
}"""


@pytest.mark.parametrize("zoom", list(ZOOMS))
@pytest_twisted.ensureDeferred
async def test_the_room_reflows_at_200_and_400_percent(
        server: LiveServer, browser: Browser, pages: list[Page], zoom: str) -> None:
    page = await open_page(browser, pages, server.http_url, viewport=ZOOMS[zoom])
    await page.join("circle", pseudonym="Zoomed In")
    await page.wait_for("() => document.querySelector('.reaction-button')")
    # A very long word and a line of emoji break where they must, inside the log.
    await say(page, "Supercalifragilistic" * 15)
    emoji = "\N{SMILING FACE WITH OPEN MOUTH}\N{HEAVY BLACK HEART}\N{VARIATION SELECTOR-16}"
    await say(page, (emoji + "\N{PERSON WITH FOLDED HANDS}") * 40)
    assert await page.evaluate(
        "() => { const log = document.getElementById('chat-log').getBoundingClientRect();"
        " return [...document.querySelectorAll('#chat-log .msg .text')]"
        ".every((t) => t.getBoundingClientRect().right <= log.right + 0.5); }")
    assert await page.evaluate(HIDDEN, ROOM_CONTROLS) == []


@pytest.mark.parametrize("zoom", list(ZOOMS))
@pytest_twisted.ensureDeferred
async def test_the_console_reflows_at_200_and_400_percent(
        server: LiveServer, browser: Browser, pages: list[Page], zoom: str) -> None:
    console = await signed_in_console(server, browser, pages, viewport=ZOOMS[zoom])
    await open_room(console)
    assert await console.evaluate(HIDDEN, CONSOLE_CONTROLS) == []


STYLE = """(s) => { const c = getComputedStyle(document.querySelector(s));
  return { background: c.backgroundColor, color: c.color, border: c.borderTopColor,
           outline: c.outlineStyle + ' ' + c.outlineWidth, borderStyle: c.borderTopStyle }; }"""


async def style(page: Page, selector: str) -> dict[str, Any]:
    found: dict[str, Any] = await page.evaluate(STYLE, selector)
    return found


@pytest_twisted.ensureDeferred
async def test_in_forced_colours_states_and_focus_stay_visible(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    page = await open_page(browser, pages, server.http_url)
    await page.do(lambda p: p.emulate_media(forced_colors="active"))
    await page.join("circle", pseudonym="High Contrast")
    assert await page.evaluate("() => matchMedia('(forced-colors: active)').matches")
    lowered = await style(page, "#hand")
    await page.do(lambda p: p.click("#hand"))
    await page.wait_for("() => document.getElementById('hand').getAttribute('aria-pressed') === 'true'")
    raised = await style(page, "#hand")
    assert (raised["background"], raised["color"]) != (lowered["background"], lowered["color"]), raised
    # Focus by keyboard: an outline, whatever the colours.
    await page.do(lambda p: (p.focus("#leave"), p.keyboard.press("Shift+Tab"), p.keyboard.press("Tab")))
    assert await page.evaluate("() => document.activeElement.id") == "leave"
    assert (await style(page, "#leave"))["outline"] == "solid 3px"
    # Disabled is not drawn like enabled (the message box's button while the box is empty is
    # enabled; the microphone while the connection is away is disabled).
    enabled = await style(page, "#mic")
    await page.evaluate("() => { document.getElementById('mic').disabled = true; }")
    disabled = await style(page, "#mic")
    assert disabled["color"] != enabled["color"], (enabled, disabled)
    # Quick exit still looks like a control (a border), not a line of text.
    exit_style = await style(page, "#quick-exit")
    assert exit_style["borderStyle"] == "solid", exit_style
