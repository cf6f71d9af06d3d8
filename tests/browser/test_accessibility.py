"""Accessibility: axe-core on every page in both languages, the keyboard, reduced motion.

axe-core comes from npm at test time (tests/run.sh: npm install --no-save --prefix
tests/browser axe-core) and is injected by the browser as an init script, so the pages
run under their real CSP. No serious or critical violation is allowed.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from tests.browser.harness import Browser, Page, axe, log_has, open_page, require_axe, say
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser





@pytest.mark.parametrize("lang", ["en", "es"])
@pytest_twisted.ensureDeferred
async def test_no_serious_axe_violation_on_landing_join_and_room(
        server: LiveServer, browser: Browser, pages: list[Page], lang: str) -> None:
    require_axe()
    page = await open_page(browser, pages, server.http_url, axe=True)
    found: dict[str, list[dict[str, Any]]] = {}
    await page.goto(f"/?lang={lang}")
    found["landing"] = await axe(page)
    await page.goto("/join/circle")  # the language cookie carries the choice
    assert await page.evaluate("() => document.documentElement.lang") == lang
    await page.do(lambda p: p.click("#enter"))  # an invalid form: the error state is checked too
    found["join"] = await axe(page)
    await page.join("circle", pseudonym="Bright Finch", lang=lang)
    other = await open_page(browser, pages, server.http_url)
    await other.join("circle", pseudonym="Quiet Robin")
    await log_has(page, "Quiet Robin")
    await say(page, "hello")
    await page.evaluate("() => document.querySelectorAll('details').forEach((d) => { d.open = true; })")
    found["room"] = await axe(page)
    assert found == {"landing": [], "join": [], "room": []}


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
