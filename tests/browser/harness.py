"""The Playwright harness for the participant's pages, against the live Twisted server.

The server runs on the reactor in the test's own thread (tests/conftest.py `server`), so
the browser cannot: Playwright's sync API lives on one worker thread (runner.py, shared
with the E2EE and detector browser tests), and every call to it comes back to the test as a
Deferred the async test awaits — the reactor keeps serving the pages meanwhile. Every
call has a deadline; a page promise is also raced against a JS timer, so a stuck page
fails the test instead of hanging CI.

Nothing may leave 127.0.0.1: each browser context gets an unreachable loopback proxy
for everything that is not 127.0.0.1, and every request and WebSocket a page opens is
recorded for the tests to check.
"""

from __future__ import annotations

import math
import os
import struct
import time
import wave
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from twisted.internet import defer

from tests.browser.runner import PlaywrightThread

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
CALL_TIMEOUT = 30.0  # seconds for one Playwright call
JS_TIMEOUT_MS = 20_000  # for one page promise
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
NEUTRAL_TITLE = "Weather near you"
NEUTRAL_PAGE = (b"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Weather near you"
                b"</title></head><body><h1>Weather</h1><p>Sunny spells, light winds.</p></body></html>")


class Browser(PlaywrightThread):
    """Debian's Chromium on the runner's thread (`start()` in fixture setup, before any test
    awaits); `Browser(extra_args)` adds to the required flags (the fake microphone for voice)."""

    def call(self, fn: Callable[[], Any], timeout: float = CALL_TIMEOUT) -> defer.Deferred[Any]:
        """Run fn on the Playwright thread; the Deferred fires on the reactor thread."""
        from twisted.internet import reactor  # not at import: pytest-twisted installs it first

        d: defer.Deferred[Any] = defer.Deferred()

        def done(future: Future[Any]) -> None:
            def fire() -> None:
                if d.called:
                    return
                error = future.exception()
                if error is not None:
                    d.errback(error)
                else:
                    d.callback(future.result())
            reactor.callFromThread(fire)  # type: ignore[attr-defined]

        def expired() -> None:
            if not d.called:
                self.wedge()  # the blocked call raises; the worker thread ends
                d.errback(TimeoutError(f"a browser call took more than {timeout:g}s"))

        timer = reactor.callLater(timeout, expired)  # type: ignore[attr-defined]
        d.addBoth(lambda result: (timer.cancel() if timer.active() else None, result)[1])
        self.submit(fn).add_done_callback(done)
        return d

    async def page(self, base_url: str, *, viewport: dict[str, int] | None = None,
                   locale: str = "en-GB", reduced_motion: str = "no-preference",
                   phone: bool = False, axe: bool = False) -> Page:
        """A page in its own context: its own session storage, cookies and history."""
        recorder = Recorder()

        def open_page() -> Any:
            options: dict[str, Any] = {
                "viewport": viewport or (PHONE if phone else DESKTOP), "locale": locale,
                "reduced_motion": reduced_motion,
                # Anything not for 127.0.0.1 goes to a proxy that is not there: it cannot leave.
                "proxy": {"server": "http://127.0.0.1:9", "bypass": "127.0.0.1"},
            }
            if phone:
                options.update(is_mobile=True, has_touch=True, device_scale_factor=2)
            context = self.browser.new_context(**options)
            if axe:
                # An init script is injected by the browser itself, so the page's CSP (no inline
                # script) does not stop it; the pages are tested under their real CSP.
                context.add_init_script(path=str(AXE))
            page = context.new_page()
            page.on("request", lambda r: recorder.requests.append(r.url))
            page.on("websocket", lambda ws: recorder.requests.append(ws.url))
            page.on("pageerror", lambda exc: recorder.errors.append(f"pageerror: {exc}"))
            page.on("console", lambda m: recorder.errors.append(f"console: {m.text}")
                    if m.type == "error" else None)
            page.set_default_timeout(15_000)
            return context, page

        context, page = await self.call(open_page)
        return Page(self, context, page, base_url, recorder)

    def call_sync(self, fn: Callable[[], Any], timeout: float = CALL_TIMEOUT) -> Any:
        """Blocking, for fixture teardown (the reactor is not running there)."""
        if self.wedged:
            return None
        return self.run(fn, timeout)


@dataclass
class Recorder:
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def foreign(self) -> list[str]:
        """Requests for anything but 127.0.0.1 (about:, data: and blob: URLs stay in the page)."""
        out = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in ("about", "data", "blob"):
                continue
            if parts.hostname != "127.0.0.1":
                out.append(url)
        return out


class Page:
    """One Playwright page; each method is one hop to the browser thread."""

    def __init__(self, browser: Browser, context: Any, page: Any, base_url: str,
                 recorder: Recorder) -> None:
        self.browser = browser
        self.context = context
        self.pw = page
        self.base_url = base_url
        self.recorder = recorder

    def do(self, fn: Callable[[Any], Any], timeout: float = CALL_TIMEOUT) -> defer.Deferred[Any]:
        """fn(playwright_page) on the browser thread."""
        return self.browser.call(lambda: fn(self.pw), timeout)

    def goto(self, path: str) -> defer.Deferred[Any]:
        url = path if "://" in path else self.base_url + path
        return self.do(lambda p: p.goto(url, wait_until="load"))

    def evaluate(self, function: str, arg: Any = None) -> defer.Deferred[Any]:
        """`function` is JS source of a (possibly async) one-argument function, raced against a timer."""
        wrapped = (
            "async (arg) => { let timer; const limit = new Promise((_, reject) => { timer = setTimeout("
            f"() => reject(new Error('page call timed out after {JS_TIMEOUT_MS} ms')), {JS_TIMEOUT_MS}); }});"
            f" try {{ return await Promise.race([({function})(arg), limit]); }}"
            " finally { clearTimeout(timer); } }")
        return self.do(lambda p: p.evaluate(wrapped, arg))

    def wait_for(self, predicate: str, arg: Any = None, timeout_ms: int = 15_000) -> defer.Deferred[Any]:
        """Until the JS function `predicate(arg)` returns something truthy (Playwright's own deadline)."""
        return self.do(lambda p: p.wait_for_function(predicate, arg=arg, timeout=timeout_ms,
                                                     polling=50).json_value(),
                       timeout=timeout_ms / 1000 + 10)

    async def until_recorded(self, check: Callable[[], bool], what: str,
                             timeout: float = 15.0) -> None:
        """Until `check()` holds for what this page's Playwright event handlers recorded (its
        WebSocket frames, its requests). Playwright hands a page's events to Python only
        while a call to it runs, so each try is one: a 20 ms timer in the page."""
        deadline = time.monotonic() + timeout
        while True:
            await self.evaluate("() => new Promise((resolve) => setTimeout(resolve, 20))")
            if check():
                return
            assert time.monotonic() < deadline, f"timed out waiting for {what}"

    async def join(self, room: str, *, pseudonym: str, country: str = "GB",
                   lang: str | None = None) -> str:
        """Through the landing and join pages into the room; returns the member id."""
        query = f"?lang={lang}" if lang else ""
        await self.goto(f"/{query}")
        await self.do(lambda p: p.click(f"li[data-room='{room}'] a.join-link"))
        await self.do(lambda p: p.wait_for_url(f"**/join/{room}*"))

        def fill(p: Any) -> None:
            p.fill("#pseudonym", pseudonym)
            p.check("#accept-rules")
            p.select_option("#country", country)
            p.click("#enter")
            p.wait_for_url(f"**/room/{room}*")
        await self.do(fill)
        return str(await self.wait_for(
            "() => document.getElementById('app')?.dataset.state === 'joined'"
            " && document.getElementById('app').dataset.me"))


async def open_page(browser: Browser, pages: list[Page], base_url: str, **options: Any) -> Page:
    page = await browser.page(base_url, **options)
    pages.append(page)
    return page


def require_axe() -> None:
    """axe-core comes from npm (tests/run.sh): missing is a failure in CI, a skip elsewhere."""
    if AXE.exists():
        return
    message = f"{AXE} is missing: npm install --no-save --prefix tests/browser axe-core"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


SCREEN_POINT = """([x, y]) => {
  const svg = document.getElementById('room-svg');
  const p = new DOMPoint(x * 100, y * 100).matrixTransform(svg.getScreenCTM());
  return [p.x, p.y];
}"""


async def screen_point(page: Page, x: float, y: float) -> tuple[float, float]:
    """Where the room point (x, y) in metres is on the screen."""
    sx, sy = await page.evaluate(SCREEN_POINT, [x, y])
    return float(sx), float(sy)


async def log_has(page: Page, text: str, timeout_ms: int = 15_000) -> None:
    """Until the chat log shows `text`."""
    await page.wait_for("(text) => document.getElementById('chat-log').textContent.includes(text)",
                        text, timeout_ms)


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


async def avatar_at(page: Page, member: str) -> tuple[float, float]:
    """Where `page` says the server put `member` (the avatar's data-x/data-y)."""
    x, y = await page.evaluate(
        "(id) => { const a = document.querySelector(`.avatar[data-member='${id}']`);"
        " return [Number(a.dataset.x), Number(a.dataset.y)]; }", member)
    return float(x), float(y)


async def moved_away(page: Page, member: str, start: tuple[float, float], metres: float) -> None:
    await page.wait_for(
        "([id, x, y, d]) => { const a = document.querySelector(`.avatar[data-member='${id}']`);"
        " return a && Math.hypot(a.dataset.x - x, a.dataset.y - y) >= d; }",
        [member, start[0], start[1], metres])


async def seated(page: Page, member: str, seat: int) -> None:
    await page.wait_for(
        "([id, seat]) => document.querySelector(`.avatar[data-member='${id}']`)?.dataset.seat"
        " === String(seat)",
        [member, seat])


async def keys_ready(page: Page, members: list[str]) -> None:
    """Until `page` has handed its sender key to each of `members` (they can read it)."""
    await page.wait_for(
        "(ids) => ids.every((id) => document.querySelector(`#members li[data-member='${id}']`)"
        "?.dataset.e2ee === 'ready')", members)


async def say(page: Page, text: str) -> None:
    def type_and_send(p: Any) -> None:
        p.fill("#chat-input", text)
        p.press("#chat-input", "Enter")
    await page.do(type_and_send)
    await page.wait_for("(text) => [...document.querySelectorAll('#chat-log .msg.mine .text')]"
                        ".some((n) => n.textContent === text)", text)


async def chat_both_ways(page: Page, py: Any, member: str, tag: str) -> None:
    """`page` (member `member`) and a Python GroupChat `py` each read what the other says."""
    assert py.client.member is not None
    await keys_ready(page, [py.client.member])
    await py.keys_from([member])
    await say(page, f"browser says {tag}")
    got = await py.next_message()
    assert (got.sender, got.text) == (member, f"browser says {tag}")
    await py.say(f"python says {tag}")
    await log_has(page, f"python says {tag}")


async def glide_samples(page: Page, member: str, ms: int) -> dict[str, int]:
    """How many distinct drawn positions vs server positions `page` showed for `member`."""
    result: dict[str, int] = await page.evaluate(
        """([id, ms]) => new Promise((resolve) => {
             const drawn = new Set(), told = new Set(); const end = performance.now() + ms;
             const sample = () => {
               const a = document.querySelector(`.avatar[data-member='${id}']`);
               if (a) { drawn.add(a.getAttribute('transform')); told.add(a.dataset.x + ',' + a.dataset.y); }
               if (performance.now() < end) requestAnimationFrame(sample);
               else resolve({drawn: drawn.size, told: told.size});
             };
             requestAnimationFrame(sample);
           })""", [member, ms])
    return result


class CuttableLink:
    """A loopback TCP forwarder in front of the server: the page talks to Hearth through it,
    and `cut()` aborts every connection in both directions (RST), as a phone losing signal
    does. `stall()` instead lets every byte vanish, both ways, while the connections stay open
    (a phone that lost signal without either end being told), until `unstall()`. Black-box:
    nothing of the server's internals is touched."""

    def __init__(self, target_port: int) -> None:
        from twisted.protocols import portforward

        links = self.links = set[Any]()
        self.stalled = False
        link = self

        class Client(portforward.ProxyClient):  # type: ignore[misc]
            def dataReceived(self, data: bytes) -> None:
                if not link.stalled:
                    super().dataReceived(data)

        class ClientFactory(portforward.ProxyClientFactory):  # type: ignore[misc]
            protocol = Client

        class Server(portforward.ProxyServer):  # type: ignore[misc]
            clientProtocolFactory = ClientFactory

            def connectionMade(self) -> None:
                links.add(self)
                super().connectionMade()

            def connectionLost(self, reason: Any) -> None:
                links.discard(self)
                super().connectionLost(reason)

            def dataReceived(self, data: bytes) -> None:
                if not link.stalled:
                    super().dataReceived(data)

        factory = portforward.ProxyFactory("127.0.0.1", target_port)
        factory.protocol = Server
        self.factory = factory
        self.port: Any = None

    def listen(self) -> str:
        from twisted.internet import reactor
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        return f"http://127.0.0.1:{self.port.getHost().port}"

    def cut(self) -> int:
        """Abort every forwarded connection, both sides; returns how many were cut."""
        cut = list(self.links)
        for link in cut:
            if link.peer is not None and link.peer.transport is not None:
                link.peer.transport.abortConnection()
            link.transport.abortConnection()
        return len(cut)

    def stall(self) -> None:
        self.stalled = True

    def unstall(self) -> None:
        """Bytes flow again; the connections that stalled are cut (their streams lost bytes)."""
        self.stalled = False
        self.cut()

    async def close(self) -> None:
        self.cut()
        if self.port is not None:
            await self.port.stopListening()


def png_pixel(png: bytes) -> tuple[int, int, int]:
    """The colour of a 1x1 PNG screenshot (8-bit RGB/RGBA, as Chromium writes them).

    One pixel in one row needs no unfiltering: every PNG filter predicts 0 for it.
    """
    import struct
    import zlib
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, b"", b""
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at:at + 8])
        data = png[at + 8:at + 8 + length]
        if kind == b"IHDR":
            header = data
        elif kind == b"IDAT":
            idat += data
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert (width, height, depth) == (1, 1, 8) and colour in (2, 6), header
    raw = zlib.decompress(idat)
    return raw[1], raw[2], raw[3]


async def avatar_centre_colour(page: Page, member: str) -> tuple[tuple[int, int, int], str]:
    """(the pixel drawn at the avatar's centre, the fill colour it should have), once the
    avatar is drawn where the server put it (its glide over)."""
    await page.wait_for(
        "(id) => { const a = document.querySelector(`.avatar[data-member='${id}']`);"
        " const cm = (v) => Math.round(v * 1000) / 10;"
        " return a.getAttribute('transform') === `translate(${cm(a.dataset.x)} ${cm(a.dataset.y)})`; }",
        member)
    x, y = await avatar_at(page, member)
    sx, sy = await screen_point(page, x, y)
    fill = await page.evaluate(
        "(id) => document.querySelector(`.avatar[data-member='${id}'] use`).getAttribute('fill')", member)
    scroll_x, scroll_y = await page.evaluate("() => [window.scrollX, window.scrollY]")
    clip = {"x": sx + scroll_x, "y": sy + scroll_y, "width": 1, "height": 1}  # page coordinates
    png = await page.do(lambda p: p.screenshot(clip=clip, scale="css"))
    return png_pixel(png), str(fill)


async def axe(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now, of every impact (minor included)."""
    result = await page.evaluate(RUN_AXE)
    assert result["rules"] > 20 and result["contrastChecked"], "axe did not really run"
    bad: list[dict[str, Any]] = result["bad"]
    return bad


RUN_AXE = """async () => {
  const result = await axe.run(document, { resultTypes: ['violations'] });
  return {
    rules: result.passes.length + result.violations.length + result.incomplete.length,
    contrastChecked: [...result.passes, ...result.violations, ...result.incomplete]
      .some((r) => r.id === 'color-contrast'),
    bad: result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                                         nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')) })),
  };
}"""


def speech_wav(path: Path, seconds: float = 4.0, rate: int = 48000) -> Path:
    """A voice-like signal: a harmonic tone gliding around 140 Hz, 3.5 syllables a second."""
    out = bytearray()
    phase = 0.0
    for i in range(int(rate * seconds)):
        t = i / rate
        phase += 2 * math.pi * (140 + 40 * math.sin(2 * math.pi * 0.7 * t)) / rate
        envelope = 0.55 + 0.45 * math.sin(2 * math.pi * 3.5 * t)
        sample = sum(math.sin(k * phase) / k for k in range(1, 8)) * 0.25 * envelope
        out += struct.pack("<h", int(max(-1.0, min(1.0, sample)) * 32767))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(out))
    return path


async def sound_running(page: Page) -> None:
    await page.wait_for("() => window.hearthVoice.stats().audio.context === 'running'")


def voice_frames(frames: list[bytes]) -> list[bytes]:
    return [f for f in frames if f[:1] == b"\x01"]  # text frames start with "{"


# What a screen reader is handed, in order: each change inside a live region (aria-live polite
# or assertive) that is not busy. A log (aria-relevant="additions") announces what is added to
# it; any other region (a status) announces its whole new text. A model of the announcements,
# recorded by a MutationObserver: no timing, no screen reader.
RECORD_ANNOUNCEMENTS = """() => {
  if (window.__announced) return;
  window.__announced = [];
  const live = (node) => {
    const el = node.nodeType === 1 ? node : node.parentElement;
    const region = el?.closest('[aria-live]');
    return region && region.getAttribute('aria-live') !== 'off' ? region : null;
  };
  new MutationObserver((records) => {
    // The browser hands on what the page changed in one go (one batch of records): a line added
    // and then filled in is one addition.
    const statuses = new Set(), added = [];
    for (const r of records) {
      const region = live(r.target);
      if (!region || region.getAttribute('aria-busy') === 'true' || region.closest('[hidden]')) continue;
      if ((region.getAttribute('aria-relevant') ?? '').trim() === 'additions') {
        for (const node of r.addedNodes) added.push([region, node]);
      } else {
        statuses.add(region);
      }
    }
    const nodes = new Set(added.map(([, node]) => node));
    for (const [region, node] of added) {
      let outer = false;
      for (let up = node.parentNode; up && up !== region; up = up.parentNode) outer ||= nodes.has(up);
      const text = node.textContent.trim();
      if (!outer && text && node.isConnected) window.__announced.push({ region: region.id, text });
    }
    for (const region of statuses) {
      const text = region.textContent.trim();
      if (text) window.__announced.push({ region: region.id, text });
    }
  }).observe(document, { childList: true, subtree: true, characterData: true });
}"""


async def announced(page: Page, pattern: str = "") -> list[dict[str, str]]:
    """What the page announced since `page.evaluate(RECORD_ANNOUNCEMENTS)` (matching the regular
    expression `pattern`, case-insensitive)."""
    found: list[dict[str, str]] = await page.evaluate(
        "(pattern) => (window.__announced ?? []).filter((a) => new RegExp(pattern, 'i').test(a.text))",
        pattern)
    return found
