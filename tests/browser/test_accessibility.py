"""Accessibility: axe-core on every page and state at phone and desktop size, in both
languages; the keyboard; reduced motion.

axe-core comes from npm at test time (tests/run.sh: npm install --no-save --prefix
tests/browser axe-core) and is injected by the browser as an init script, so the pages
run under their real CSP. No violation of any impact is allowed.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from tests.browser.console_steps import enter, open_room, signed_in_console
from tests.browser.harness import (
    Browser,
    Page,
    axe,
    keys_ready,
    log_has,
    open_page,
    require_axe,
    say,
)
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser


async def check(page: Page, state: str, found: dict[str, list[dict[str, Any]]]) -> None:
    found[state] = await axe(page)


@pytest.mark.parametrize(("size", "lang"), [("phone", "es"), ("desktop", "en"), ("phone", "en"),
                                             ("desktop", "es")])
@pytest_twisted.ensureDeferred
async def test_no_axe_violation_on_any_page_or_state(
        server: LiveServer, browser: Browser, pages: list[Page], size: str, lang: str) -> None:
    require_axe()
    phone = size == "phone"
    page = await open_page(browser, pages, server.http_url, axe=True, phone=phone)
    found: dict[str, list[dict[str, Any]]] = {}
    await page.goto(f"/?lang={lang}")
    await check(page, "landing", found)
    await page.goto("/join/circle")  # the language cookie carries the choice
    assert await page.evaluate("() => document.documentElement.lang") == lang
    await check(page, "join", found)
    await page.do(lambda p: p.click("#enter"))  # an invalid form: the error state
    await check(page, "join, refused", found)
    errors = len(page.recorder.errors)
    await page.goto("/nowhere")
    await check(page, "not found", found)
    # The one console error is the 404 the page is about.
    assert [e for e in page.recorder.errors[errors:] if "404" not in e] == []
    del page.recorder.errors[errors:]

    other = await open_page(browser, pages, server.http_url)
    other_id = await other.join("circle", pseudonym="Quiet Robin")
    page_id = await page.join("circle", pseudonym="Bright Finch", lang=lang)
    await keys_ready(other, [page_id])
    await say(other, "hello")
    await log_has(page, "hello")
    await check(page, "room", found)
    # Someone reacts, says they are just listening; the page shows both.
    await other.do(lambda p: p.click(".reaction-button[data-reaction='wave']"))
    await other.do(lambda p: p.select_option("#status-choice", "listening"))
    await page.wait_for("(id) => document.querySelector(`.avatar[data-member='${id}']`)?.dataset.status"
                        " === 'listening' && !!document.querySelector(`.avatar[data-member='${id}']"
                        " .reaction:not([hidden])`)", other_id)
    await check(page, "room, a reaction and a status", found)
    await page.evaluate("() => document.querySelectorAll('details').forEach((d) => { d.open = true; })")
    await page.do(lambda p: p.click("#show-helplines"))
    await page.wait_for("() => document.querySelector('#help-lines a')")
    await check(page, "room, the help card and every panel open", found)
    if phone:
        await page.do(lambda p: p.click("#sheet-toggle"))
        await check(page, "room, the sheet open", found)
    await page.do(lambda p: p.click(".msg-report"))
    await check(page, "room, reporting a message", found)
    await page.do(lambda p: p.click("#report-cancel"))
    if phone:
        await page.do(lambda p: p.click("#sheet-toggle"))  # closed: what is beneath is in reach
    await page.do(lambda p: p.click("#leave"))
    await page.wait_for("() => !document.getElementById('ended').hidden")
    await check(page, "room, left", found)

    # The lobby: a newcomer waits.
    console = await signed_in_console(server, browser, pages, axe=True, phone=phone)
    await console.goto(f"/console?lang={lang}")
    await check(console, "console, rooms", found)
    await console.do(lambda p: p.click(".open-room[data-room='circle']"))  # no name: the error
    await check(console, "console, no name", found)
    await open_room(console)
    await console.do(lambda p: p.click("#lobby"))
    await console.wait_for("() => document.getElementById('lobby').getAttribute('aria-pressed') === 'true'")
    await check(console, "console, a room open", found)
    waiting = await open_page(browser, pages, server.http_url, axe=True, phone=phone)
    await waiting.goto(f"/?lang={lang}")
    await enter(waiting, "circle", "Shy Finch", state="waiting")
    await check(waiting, "room, waiting", found)
    await console.wait_for("() => document.querySelectorAll('#waiting-list li').length === 1")
    await check(console, "console, someone waiting", found)
    await page.goto("/login")
    await check(page, "login", found)
    errors = len(page.recorder.errors)
    await page.do(lambda p: (p.fill("#login-name", "nobody"), p.fill("#login-password", "wrong"),
                             p.click(".login-form button[type=submit]")))
    await page.wait_for("() => !!document.getElementById('login-error')")
    await check(page, "login, refused", found)
    assert [e for e in page.recorder.errors[errors:] if "401" not in e] == []  # the refusal itself
    del page.recorder.errors[errors:]
    assert found == {state: [] for state in found}


@pytest_twisted.ensureDeferred
async def test_every_room_control_is_reachable_by_keyboard_with_visible_focus(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    page = await open_page(browser, pages, server.http_url)
    await page.join("circle", pseudonym="Kind Lark")
    await page.wait_for("() => !document.getElementById('chat-input').disabled")
    seen: list[str] = []
    outlines: dict[str, str] = {}

    def tab_through(p: Any) -> None:
        p.evaluate("() => document.activeElement.blur()")
        for _ in range(40):
            p.keyboard.press("Tab")
            info = p.evaluate("""() => { const el = document.activeElement;
                const key = el.id || (el.dataset.seat !== undefined ? 'seat-' + el.dataset.seat
                    : el.tagName.toLowerCase() + ':' + el.textContent.trim().slice(0, 24));
                const style = getComputedStyle(el);
                const ring = el.closest('.seat') ? getComputedStyle(el.querySelector('.seat-mark')).stroke
                    : style.outlineStyle + ' ' + style.outlineWidth;
                return [key, ring]; }""")
            seen.append(info[0])
            outlines[info[0]] = info[1]
    await page.do(tab_through)
    for control in ("quick-exit", "room-view", "seat-0", "seat-7", "chat-log", "chat-input",
                    "chat-send", "leave"):
        assert control in seen, f"{control} is not reachable with Tab: {seen}"
    assert any(key.startswith("a:Español") for key in seen)
    assert any(key.startswith("summary:") for key in seen)
    for control in ("quick-exit", "room-view", "chat-input", "leave"):
        assert outlines[control].startswith("solid 3px"), (control, outlines[control])
    assert outlines["seat-0"] == "rgb(29, 78, 216)"  # the focus colour on the seat's ring


@pytest_twisted.ensureDeferred
async def test_reduced_motion_stops_animation_and_gliding(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    still = await open_page(browser, pages, server.http_url, reduced_motion="reduce")
    await still.join("circle", pseudonym="Still Heron")
    assert await still.evaluate(
        "() => getComputedStyle(document.querySelector('.hearth-fire')).animationName") == "none"
    mover = await open_page(browser, pages, server.http_url)
    member = await mover.join("circle", pseudonym="Moving Fox")
    await mover.do(lambda p: p.focus("#room-view"))
    await mover.do(lambda p: p.keyboard.down("ArrowUp"))
    samples = await still.evaluate(
        """(id) => new Promise((resolve) => {
             const seen = []; const end = performance.now() + 600;
             const look = () => {
               const a = document.querySelector(`.avatar[data-member='${id}']`);
               const cm = (v) => Math.round(v * 1000) / 10;
               if (a) seen.push([a.getAttribute('transform'),
                                 `translate(${cm(a.dataset.x)} ${cm(a.dataset.y)})`]);
               if (performance.now() < end) requestAnimationFrame(look); else resolve(seen);
             };
             requestAnimationFrame(look);
           })""", member)
    await mover.do(lambda p: p.keyboard.up("ArrowUp"))
    assert len({told for _, told in samples}) >= 3, "the avatar did not move"
    assert all(drawn == told for drawn, told in samples), "an avatar glided under reduced motion"
