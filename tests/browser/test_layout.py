"""Layout: what a phone and a desktop show, and what a finger can hit.

- Every page stays on 127.0.0.1, and fits a 390 x 844 phone without sideways scrolling.
- On a 390 x 844 phone the map and the conversation are on screen together (the conversation
  a sheet over the lower part of the map, counting what arrived while closed), and "I need
  help now" and quick exit are on screen at every scroll position.
- Every tap target on every page, in every state tested, is at least 44 x 44 CSS pixels,
  at 390 x 844 and at 1280 x 800 (seats included, however small the map is drawn).
- Avatars and their names stay inside the map at the walls and corners, at four sizes.
- Room titles, schedules and corner names show in the page's language (per-language config).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_twisted

from hearth.spaces.config import HearthConfig
from tests.browser.console_steps import open_room, signed_in_console
from tests.browser.harness import DESKTOP, PHONE, Browser, Page, artifact, log_has, open_page, say
from tests.support.config import base_rooms, make_config
from tests.support.live import LiveServer, walk_to

pytestmark = pytest.mark.browser

TITLES = {"en": "Evening circle", "es": "Círculo de la tarde"}
SCHEDULES = {"en": "Tuesdays at seven", "es": "Los martes a las siete"}
CORNERS = {"en": "Quiet corner", "es": "Rincón tranquilo"}


@pytest.fixture
def config(neutral_site: str) -> HearthConfig:
    """The test rooms, the first with its title, schedule and corner named per language,
    room for nine, ten seats as in the shipped demo room (seats closer together: smaller
    tap targets), and a fast walk (people are sent to the walls)."""
    corners = [{"id": "corner-west", "x": 0.0, "y": 0.0, "width": 3.0, "height": 3.0, "title": CORNERS}]
    rooms = base_rooms(title=TITLES, schedule=SCHEDULES, capacity=12)
    rooms[0]["layout"]["corners"] = corners
    rooms[0]["layout"]["circle"]["seats"] = 10
    return make_config(organisation={"name": "Test Hearth", "quick_exit_url": neutral_site},
                       movement={"walk_speed": 50.0}, rooms=rooms)

REFERENCES = """() => [...document.querySelectorAll('[src], [href]')]
  .filter((el) => el.id !== 'quick-exit')
  .map((el) => el.getAttribute('src') ?? el.getAttribute('href'))"""
FITS = "() => [document.documentElement.scrollWidth, window.innerWidth]"


@pytest_twisted.ensureDeferred
async def test_each_page_loads_only_from_127_0_0_1(server: LiveServer, browser: Browser,
                                                   pages: list[Page], neutral_site: str) -> None:
    page = await open_page(browser, pages, server.http_url)
    seen = 0
    for path, expected in [("/", r"/static/css/hearth\.[0-9a-f]{12}\.css"),
                           ("/join/circle", r"/static/js/join\.[0-9a-f]{12}\.js")]:
        await page.goto(path)
        requests = page.recorder.requests[seen:]
        seen = len(page.recorder.requests)
        assert any(re.search(expected + "$", url) for url in requests), requests
        assert {urlsplit(url).hostname for url in requests} == {"127.0.0.1"}, requests
        for reference in await page.evaluate(REFERENCES):
            parts = urlsplit(reference)
            assert not parts.scheme and not parts.netloc, f"{path} refers to {reference}"
        assert await page.evaluate("() => document.getElementById('quick-exit').href") == neutral_site
    await page.join("circle", pseudonym="Local Owl")
    requests = page.recorder.requests[seen:]
    assert any(re.search(r"/static/js/e2ee\.[0-9a-f]{12}\.js$", url) for url in requests)
    # content-hashed URLs only: a page never loads a module that could be of another version
    assert not [url for url in page.recorder.requests
                if "/static/" in url and not re.search(r"\.[0-9a-f]{12}\.[a-z]+$", url)]
    assert any(url.startswith("ws://127.0.0.1:") for url in requests)
    assert {urlsplit(url).hostname for url in requests} == {"127.0.0.1"}, requests
    assert page.recorder.foreign() == []


@pytest.mark.parametrize("lang", ["en", "es"])
@pytest_twisted.ensureDeferred
async def test_the_pages_fit_a_phone(server: LiveServer, browser: Browser, pages: list[Page],
                                     lang: str) -> None:
    page = await open_page(browser, pages, server.http_url, phone=True)
    await page.goto(f"/?lang={lang}")
    width, viewport = await page.evaluate(FITS)
    assert viewport == 390 and width <= viewport, ("landing", width)
    await page.goto("/join/circle")
    width, viewport = await page.evaluate(FITS)
    assert width <= viewport, ("join", width)
    await page.do(lambda p: p.screenshot(path=str(artifact(f"join-phone-{lang}.png"))))
    await page.join("circle", pseudonym="Pequeña Alondra Luminos" if lang == "es" else
                    "Exceptionally Long Name", lang=lang)
    width, viewport = await page.evaluate(FITS)
    assert width <= viewport, ("room", width)
    # The map, the chat box and quick exit are all usable at this size.
    for selector in ("#room-svg", "#chat-input", "#quick-exit"):
        box = await page.do(lambda p, s=selector: p.locator(s).bounding_box())
        assert box["width"] > 40 and box["x"] >= 0 and box["x"] + box["width"] <= 390, (selector, box)
    await page.do(lambda p: p.screenshot(path=str(artifact(f"room-phone-viewport-{lang}.png"))))


# --- tap targets ---------------------------------------------------------------------------

SMALL_TARGETS = """() => {
  const interactive = 'a[href], button, input:not([type=hidden]), select, textarea, summary,'
    + ' [role=button], [tabindex]:not([tabindex="-1"])';
  const small = [];
  for (const el of document.querySelectorAll(interactive)) {
    if (el.closest('[hidden], [aria-hidden="true"]')) continue;
    // A checkbox or radio button is hit through its label too: the label is the target.
    const target = el.matches('input[type=checkbox], input[type=radio]')
      ? (el.closest('label') ?? document.querySelector(`label[for="${el.id}"]`) ?? el) : el;
    const box = target.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || getComputedStyle(target).visibility === 'hidden') continue;
    if (box.width < 43.5 || box.height < 43.5) {
      const name = el.id || el.dataset.seat && `seat ${el.dataset.seat}` || el.textContent.trim().slice(0, 30)
        || el.getAttribute('aria-label') || el.tagName;
      small.push(`${el.tagName.toLowerCase()} ${name}: ${Math.round(box.width)} x ${Math.round(box.height)}`);
    }
  }
  return small;
}"""


async def small_targets(page: Page, where: str, found: dict[str, list[str]]) -> None:
    found[where] = await page.evaluate(SMALL_TARGETS)


@pytest.mark.parametrize("size", ["phone", "desktop"])
@pytest_twisted.ensureDeferred
async def test_every_tap_target_is_at_least_44_pixels(server: LiveServer, browser: Browser,
                                                      pages: list[Page], size: str) -> None:
    phone = size == "phone"
    page = await open_page(browser, pages, server.http_url, phone=phone)
    found: dict[str, list[str]] = {}
    await page.goto("/")
    await small_targets(page, "landing", found)
    await page.goto("/join/circle")
    await page.do(lambda p: p.click("#enter"))  # the error state too
    await small_targets(page, "join", found)
    await page.goto("/login")
    await small_targets(page, "login", found)
    other = await open_page(browser, pages, server.http_url)
    await other.join("circle", pseudonym="Quiet Robin")
    await page.join("circle", pseudonym="Bright Finch")
    await say(other, "hello there")
    await log_has(page, "hello there")
    await page.evaluate("() => document.querySelectorAll('details').forEach((d) => { d.open = true; })")
    await small_targets(page, "room", found)
    await page.do(lambda p: p.click("#show-helplines"))
    await page.wait_for("() => document.querySelector('#help-lines a')")
    if phone:
        await page.do(lambda p: p.click("#sheet-toggle"))
    await small_targets(page, "room, help card and the sheet open", found)
    console = await signed_in_console(server, browser, pages)
    await console.do(lambda p: p.set_viewport_size(PHONE if phone else DESKTOP))
    await small_targets(console, "console", found)
    await open_room(console)
    await small_targets(console, "console, a room open", found)
    assert found == {where: [] for where in found}


# --- the phone's room: map and conversation together ------------------------------------------

BOX = "(sel) => { const r = document.querySelector(sel).getBoundingClientRect();" \
      " return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, height: r.height}; }"


async def box(page: Page, selector: str) -> dict[str, float]:
    found: dict[str, float] = await page.evaluate(BOX, selector)
    return found


async def on_screen(page: Page, selector: str) -> bool:
    b = await box(page, selector)
    return (b["top"] >= 0 and b["bottom"] <= PHONE["height"]
            and b["left"] >= 0 and b["right"] <= PHONE["width"])


@pytest_twisted.ensureDeferred
async def test_on_a_phone_the_map_and_the_conversation_are_on_screen_together(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    page = await open_page(browser, pages, server.http_url, phone=True)
    other = await open_page(browser, pages, server.http_url)
    await page.join("circle", pseudonym="Bruno Garza")
    await other.join("circle", pseudonym="Alice Wren")
    # Closed: the whole map, the last lines, the message box, help and quick exit, unscrolled.
    for selector in ("#room-svg", "#chat-log", "#chat-input", "#chat-send", "#help-button",
                     "#quick-exit", ".reaction-button[data-reaction='heart']"):
        assert await on_screen(page, selector), selector
    sheet = await box(page, "#chat")
    svg = await box(page, "#room-svg")
    assert sheet["top"] >= svg["bottom"] - 1, (sheet, svg)  # closed, it covers none of the map
    # Messages while it is closed are counted on its handle.
    for text in ("first", "second"):
        await say(other, text)
        await log_has(page, text)
    assert await page.evaluate("() => document.getElementById('unread').textContent") == "2 new"
    expanded = "() => document.getElementById('sheet-toggle').getAttribute('aria-expanded')"
    assert await page.evaluate(expanded) == "false"
    # Open: over the lower part of the map; its upper part stays in view; the count is read.
    await page.do(lambda p: p.click("#sheet-toggle"))
    sheet = await box(page, "#chat")
    assert svg["top"] + svg["height"] / 3 < sheet["top"] < svg["bottom"], (sheet, svg)
    assert await page.evaluate("() => document.getElementById('unread').hidden")
    assert await on_screen(page, "#chat-input") and await on_screen(page, "#help-button")
    await page.do(lambda p: p.screenshot(path=str(artifact("room-phone-sheet-open.png"))))
    # Scrolled to the very end of the page: help and quick exit are still on screen.
    await page.do(lambda p: p.click("#sheet-toggle"))
    await page.evaluate("() => window.scrollTo(0, document.documentElement.scrollHeight)")
    assert await page.evaluate("() => window.scrollY") > 100
    for selector in ("#help-button", "#quick-exit", "#chat-input"):
        assert await on_screen(page, selector), selector
    # Everything below the map can be scrolled clear of the closed sheet.
    leave = await box(page, "#leave")
    sheet = await box(page, "#chat")
    assert leave["bottom"] <= sheet["top"], (leave, sheet)


# What the keyboard focuses must not be hidden under the sticky header or the phone's sheet.
FOCUS_HIDDEN = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const r = e.getBoundingClientRect();
  const x = Math.min(Math.max(r.left + r.width / 2, 1), innerWidth - 1);
  const y = r.top + Math.min(r.height / 2, 20);
  const top = y >= 0 && y < innerHeight ? document.elementFromPoint(x, y) : null;
  if (top && (top === e || e.contains(top))) return null;
  const name = (n) => n ? `${n.tagName.toLowerCase()}#${n.id}.${n.getAttribute('class') ?? ''}`
    : 'off screen';
  const label = (e.getAttribute('aria-label') ?? e.textContent).trim().slice(0, 30);
  return `${name(e)} "${label}" at ${Math.round(y)} under ${name(top)}`;
}"""


@pytest.mark.parametrize(("lang", "phone"), [("en", True), ("es", True), ("en", False)])
@pytest_twisted.ensureDeferred
async def test_keyboard_focus_is_never_hidden_under_the_header_or_the_sheet(
        server: LiveServer, browser: Browser, pages: list[Page], lang: str, phone: bool) -> None:
    """Tab and Shift+Tab through the whole room (a keyboard, switch access, a screen reader
    moving focus), on a phone and a desktop: each control focused is on screen, not under the
    header that stays at the top nor under the phone's conversation sheet. The sheet opens when
    focus enters it and closes when focus leaves it."""
    page = await open_page(browser, pages, server.http_url, phone=phone)
    other = await open_page(browser, pages, server.http_url)
    await page.join("circle", pseudonym="Bruno Garza", lang=lang)
    await other.join("circle", pseudonym="Alice Wren")
    await say(other, "hello")
    await log_has(page, "hello")
    await page.evaluate("() => { document.activeElement.blur(); window.scrollTo(0, 0); }")
    hidden: list[str] = []
    for key in ("Tab", "Shift+Tab"):
        for _ in range(60):
            await page.do(lambda p, key=key: p.keyboard.press(key))
            if await page.evaluate("(back) => document.activeElement === document.body"
                                   " || (back && document.activeElement.matches('.skip-link'))",
                                   key == "Shift+Tab"):
                break
            where = await page.evaluate(FOCUS_HIDDEN)
            if where:
                hidden.append(f"{key}: {where}")
        else:
            raise AssertionError(f"{key} never left the page")
        sheet_open = await page.evaluate("() => document.getElementById('chat').classList.contains('open')")
        assert not (phone and sheet_open), "the sheet stayed open after focus left it"
    assert hidden == []


UNCOVERED = """(sel) => {
  const e = document.querySelector(sel);
  const r = e.getBoundingClientRect();
  if (r.top < 0 || r.bottom > innerHeight) return false;
  return [[r.left + 4, r.top + 4], [r.right - 4, r.bottom - 4], [r.left + r.width / 2, r.top + r.height / 2]]
    .every(([x, y]) => { const top = document.elementFromPoint(x, y); return top === e || e.contains(top); });
}"""


@pytest.mark.parametrize("lang", ["en", "es"])
@pytest_twisted.ensureDeferred
async def test_on_a_small_phone_the_help_card_is_not_under_the_conversation_sheet(
        server: LiveServer, browser: Browser, pages: list[Page], lang: str) -> None:
    """At 320 x 568 the closed sheet would take half the screen below the header: while the help
    card is open it shrinks to its handle, so "I need help now" shows the card's heading and what
    is happening at once, and the emergency number is one scroll away, clear of the sheet."""
    page = await open_page(browser, pages, server.http_url, phone=True,
                           viewport={"width": 320, "height": 568})
    await page.join("circle", pseudonym="Small Screen", lang=lang)
    await page.do(lambda p: p.click("#help-button"))
    await page.wait_for("() => document.activeElement?.id === 'help-title'")
    for selector in ("#help-title", "#help-state", "#sheet-toggle"):
        assert await page.evaluate(UNCOVERED, selector), selector
    number = "#help-lines a[href^='tel:']"
    await page.evaluate(f"() => document.querySelector(\"{number}\").focus()")
    assert await page.evaluate(UNCOVERED, number)
    # Closed again, the sheet is whole again.
    await page.do(lambda p: p.click("#help-close"))
    assert await page.evaluate(
        "() => getComputedStyle(document.getElementById('chat-input')).display") != "none"


# --- avatars and names inside the map -----------------------------------------------------------

EDGES = [(0.0, 0.0), (14.0, 0.0), (0.0, 10.0), (14.0, 10.0), (7.0, 0.0), (7.0, 10.0), (0.0, 5.0),
         (14.0, 5.0)]
OUTSIDE = """() => {
  const floor = document.querySelector('#room-svg .floor').getBoundingClientRect();
  const out = [];
  for (const a of document.querySelectorAll('.avatar')) {
    for (const part of [a, a.querySelector('text')]) {
      const r = part.getBoundingClientRect();
      if (r.left < floor.left - 0.5 || r.right > floor.right + 0.5 || r.top < floor.top - 0.5
          || r.bottom > floor.bottom + 0.5) {
        out.push(`${a.querySelector('text').textContent} (${part.tagName}) at`
          + ` ${a.dataset.x},${a.dataset.y}: ${[r.left, r.top, r.right, r.bottom].map(Math.round)}`
          + ` outside ${[floor.left, floor.top, floor.right, floor.bottom].map(Math.round)}`);
      }
    }
  }
  return out;
}"""


@pytest_twisted.ensureDeferred
async def test_avatars_and_names_stay_inside_the_map_at_every_wall_and_size(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    page = await open_page(browser, pages, server.http_url, reduced_motion="reduce")
    await page.join("circle", pseudonym="Exceptionally Long Namez")
    clients: list[Any] = []
    for i, (x, y) in enumerate(EDGES):
        client = await server.client()
        await client.join("circle", pseudonym=f"Long Edge Name Walker {'ABCDEFGH'[i]}")
        clients.append(client)
        await walk_to(client, x, y)
    await page.wait_for("(n) => [...document.querySelectorAll('.avatar')].filter((a) =>"
                        " (a.dataset.x === '0' || a.dataset.x === '14' || a.dataset.y === '0'"
                        " || a.dataset.y === '10')).length === n", len(EDGES))
    found = {}
    for width, height in [(390, 844), (1280, 800), (768, 1024), (320, 640)]:
        await page.do(lambda p, w=width, h=height: p.set_viewport_size({"width": w, "height": h}))
        await page.evaluate("() => new Promise((resolve) => requestAnimationFrame(() =>"
                            " requestAnimationFrame(resolve)))")  # the resize observed, drawn
        found[f"{width}x{height}"] = await page.evaluate(OUTSIDE)
        # Larger avatars than the 16 px teardrops of before: at least 22 px on a 390 px phone.
        smallest = await page.evaluate("() => Math.min(...[...document.querySelectorAll('.avatar .body')]"
                                       ".map((b) => b.getBoundingClientRect().width))")
        assert smallest >= {320: 18, 390: 22}.get(width, 40), (width, smallest)
        await page.do(lambda p, w=width: p.screenshot(path=str(artifact(f"map-walls-{w}.png"))))
    assert found == {size: [] for size in found}
    for client in clients:
        await client.close()


# --- the room's words in the page's language --------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_room_title_schedule_and_corner_names_in_the_pages_language(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    for lang in ("en", "es"):
        page = await open_page(browser, pages, server.http_url)
        await page.goto(f"/?lang={lang}")
        landing = await page.evaluate("() => document.querySelector(\"li[data-room='circle']\").textContent")
        assert TITLES[lang] in landing and SCHEDULES[lang] in landing
        await page.join("circle", pseudonym="Calm Heron" if lang == "en" else "Garza Serena", lang=lang)
        assert await page.evaluate("() => document.getElementById('room-title').textContent") == TITLES[lang]
        assert (await page.evaluate("() => document.title")).startswith(TITLES[lang])
        corner = await page.evaluate("() => document.querySelector('.corner text').textContent")
        assert corner == CORNERS[lang]
        # Walk into the corner: the members list names it in the page's language.
        await page.do(lambda p: p.focus("#room-view"))
        await page.do(lambda p: p.keyboard.down("ArrowUp"))
        await page.do(lambda p: p.keyboard.down("ArrowLeft"))
        await page.wait_for("(name) => document.getElementById('me-where').textContent.includes(name)",
                            CORNERS[lang])
        await page.do(lambda p: p.keyboard.up("ArrowUp"))
        await page.do(lambda p: p.keyboard.up("ArrowLeft"))


CARD_TOP = """() => {
  const header = document.querySelector('header.top').getBoundingClientRect();
  const card = document.getElementById('help-card').getBoundingClientRect();
  return [Math.round(card.top - header.bottom), Math.round(window.scrollY)];
}"""


@pytest.mark.parametrize("scrolled", ["bottom", "card_half_hidden"])
@pytest_twisted.ensureDeferred
async def test_on_a_small_phone_the_help_card_opens_at_its_top(
        server: LiveServer, browser: Browser, pages: list[Page], scrolled: str) -> None:
    """At 320 x 568, "I need help now" (or "Show the helplines", far down the page) takes the
    person to the card's top, just below the header that stays at the top: not to its title
    alone with the card's edge and first line hidden under the header, wherever the page was
    scrolled to."""
    page = await open_page(browser, pages, server.http_url, phone=True,
                           viewport={"width": 320, "height": 568})
    await page.join("circle", pseudonym="Small Screen")
    await page.do(lambda p: p.click("#help-button"))
    await page.do(lambda p: p.click("#help-close"))
    if scrolled == "bottom":
        await page.evaluate("() => window.scrollTo(0, document.documentElement.scrollHeight)")
    else:  # the card's top just under the header, its title still in view
        await page.evaluate(
            """() => { const header = document.querySelector('header.top').offsetHeight;
               const top = document.getElementById('help-hint').getBoundingClientRect().bottom;
               window.scrollTo(0, window.scrollY + top - header + 16); }""")
    await page.do(lambda p: p.click("#help-button"))
    await page.wait_for("() => document.activeElement?.id === 'help-title'")
    gap, _ = await page.evaluate(CARD_TOP)
    assert 0 <= gap <= 16, await page.evaluate(CARD_TOP)
    assert await page.evaluate(UNCOVERED, "#help-title")
