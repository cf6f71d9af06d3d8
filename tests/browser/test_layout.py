"""Every page stays on 127.0.0.1, and the pages fit a 390 x 844 phone without sideways scrolling."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import pytest_twisted

from tests.browser.harness import Browser, Page, artifact, open_page
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser

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
    await page.join("circle", pseudonym="Pequeña Alondra Luminosa" if lang == "es" else
                    "Exceptionally Long Name", lang=lang)
    width, viewport = await page.evaluate(FITS)
    assert width <= viewport, ("room", width)
    # The map, the chat box and quick exit are all usable at this size.
    for selector in ("#room-svg", "#chat-input", "#quick-exit"):
        box = await page.do(lambda p, s=selector: p.locator(s).bounding_box())
        assert box["width"] > 40 and box["x"] >= 0 and box["x"] + box["width"] <= 390, (selector, box)
    await page.do(lambda p: p.screenshot(path=str(artifact(f"room-phone-viewport-{lang}.png"))))
