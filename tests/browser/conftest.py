"""Fixtures for the browser tests: Chromium, the neutral site, the config, pages.

The machinery (a Browser on its own thread, Page, helpers) is in harness.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from hearth.spaces.config import HearthConfig
from tests.browser.harness import NEUTRAL_PAGE, Browser, Page, speech_wav
from tests.browser.runner import CHROMIUM, FAKE_MEDIA_ARGS, serving
from tests.support.binaries import need_binary
from tests.support.config import make_config


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    need_binary(CHROMIUM, "Chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("playwright is missing in CI: pip install -e '.[test]'")
        pytest.skip("playwright is not installed")
    b = Browser()
    b.start()
    try:
        yield b
    finally:
        b.close()


class _Neutral(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(NEUTRAL_PAGE)))
        self.end_headers()
        self.wfile.write(NEUTRAL_PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def neutral_site() -> Iterator[str]:
    """The quick exit's destination: a plain local page standing in for a weather site."""
    with serving(_Neutral, "neutral-site") as url:
        yield f"{url}/weather"


@pytest.fixture
def config(neutral_site: str) -> HearthConfig:
    """The shared test config, with quick exit pointing at the local neutral site."""
    return make_config(organisation={"name": "Test Hearth", "quick_exit_url": neutral_site})


@pytest.fixture
def pages(browser: Browser) -> Iterator[list[Page]]:
    """Pages a test opens; each must have stayed on 127.0.0.1 and raised no page errors
    (a CSP violation is a console error, so this also catches inline script or style)."""
    opened: list[Page] = []
    yield opened
    for page in opened:
        browser.call_sync(page.context.close)
    for page in opened:
        assert page.recorder.foreign() == [], f"requests left 127.0.0.1: {page.recorder.foreign()}"
        errors = [e for e in page.recorder.errors if not _expected_error(e)]
        assert errors == [], f"errors in the page: {errors}"


def _expected_error(message: str) -> bool:
    """A reconnect attempt while the server is away is logged by Chromium; that is the point."""
    return "WebSocket connection to" in message


@pytest.fixture(scope="module")
def mic_browser(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """`browser` first: it skips (or fails in CI) when Chromium or Playwright is missing."""
    # Debian's Chromium with the fake microphone (and no permission prompt), playing the WAV.
    wav = speech_wav(tmp_path_factory.mktemp("voice") / "speech.wav")
    b = Browser([*FAKE_MEDIA_ARGS, f"--use-file-for-fake-audio-capture={wav}"])
    b.start()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def mic_pages(mic_browser: Browser) -> Iterator[list[Page]]:
    """As `pages`: each page stayed on 127.0.0.1 and raised no error."""
    opened: list[Page] = []
    yield opened
    for page in opened:
        mic_browser.call_sync(page.context.close)
    for page in opened:
        assert page.recorder.foreign() == [], f"requests left 127.0.0.1: {page.recorder.foreign()}"
        assert page.recorder.errors == [], f"errors in the page: {page.recorder.errors}"
