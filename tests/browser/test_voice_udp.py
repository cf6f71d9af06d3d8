"""Voice over WebTransport in Chromium (issue 23): datagrams when the browser and the
network allow them, the WebSocket when they do not, with the same room and the same ears.

Chromium 156 opens the session with the self-signed certificate's hash the page gets with
its token (serverCertificateHashes). "UDP blocked" is a UDP port that swallows every
packet (what a firewall that drops UDP looks like to the page); "no WebTransport" is a page
where `window.WebTransport` does not exist. The timing logic of voicelink.js (open
timeout, retries) runs on an injected clock in the last test.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted

from hearth.spaces.config import HearthConfig
from hearth.spaces.e2ee.voice import voice_header
from tests.browser.harness import (
    Browser,
    Page,
    keys_ready,
    open_page,
    seated,
    sound_running,
    voice_frames,
)
from tests.support.live import LiveServer, until
from tests.support.voice_udp import record_socket_frames, start_udp_server, udp

pytestmark = pytest.mark.browser

SEAT_LEFT = 5  # (5.16, 6.84) in the test room
SEAT_RIGHT = 3  # (8.84, 6.84): 3.68 m to the right, within hearing range
STATS = "() => window.hearthVoice.stats()"
LINK = "() => window.hearthVoice.stats().link"
SPEAKER = "(id) => window.hearthVoice.stats().audio.speakers[id] ?? null"


def with_udp(config: HearthConfig) -> HearthConfig:
    return dataclasses.replace(config, webtransport=dataclasses.replace(
        config.webtransport, self_signed=True))


@pytest_twisted.async_yield_fixture
async def udp_server(config: HearthConfig) -> Any:
    live = await start_udp_server(with_udp(config))
    yield live
    await live.hearth.service.stopService()


@pytest.fixture
def udp_pages(mic_browser: Browser) -> Iterator[list[Page]]:
    """As `mic_pages`, allowing Chromium's own line about a session that could not open."""
    opened: list[Page] = []
    yield opened
    for page in opened:
        mic_browser.call_sync(page.context.close)
    for page in opened:
        assert page.recorder.foreign() == [], f"requests left 127.0.0.1: {page.recorder.foreign()}"
        errors = [e for e in page.recorder.errors
                  if not e.startswith("console: Failed to establish a connection to https://")
                  or "/voice?token=" not in e]
        assert errors == [], f"errors in the page: {errors}"


@pytest.fixture
def silent_udp() -> Iterator[int]:
    """A UDP port that takes every packet and answers none: UDP blocked on the way."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


async def seated_pair(a: Page, b: Page) -> tuple[str, str]:
    a_id = await a.join("circle", pseudonym="Ana Voz")
    b_id = await b.join("circle", pseudonym="Beto Oye")
    await a.do(lambda p: p.click(f".seat[data-seat='{SEAT_LEFT}']"))
    await b.do(lambda p: p.click(f".seat[data-seat='{SEAT_RIGHT}']"))
    for page in (a, b):
        await seated(page, a_id, SEAT_LEFT)
        await seated(page, b_id, SEAT_RIGHT)
    await keys_ready(a, [b_id])
    for page in (a, b):
        await sound_running(page)
    return a_id, b_id


async def a_is_heard_by_b(a: Page, b: Page, a_id: str) -> dict[str, Any]:
    await a.do(lambda p: p.click("#mic"))
    await a.wait_for("() => window.hearthVoice.stats().sent >= 50")
    await b.wait_for(f"() => ({SPEAKER})('{a_id}')?.decoded >= 25")
    heard = await b.evaluate(SPEAKER, a_id)
    assert heard["voiced"] >= 20, heard
    return dict(heard)


@pytest_twisted.ensureDeferred
async def test_voice_rides_webtransport_datagrams_and_falls_back_to_the_websocket(
        udp_server: LiveServer, mic_browser: Browser, udp_pages: list[Page]) -> None:
    frames = record_socket_frames(udp_server)  # what arrives over the WebSocket
    a = await open_page(mic_browser, udp_pages, udp_server.http_url)
    b = await open_page(mic_browser, udp_pages, udp_server.http_url)
    a_id, _ = await seated_pair(a, b)
    for page in (a, b):
        await page.wait_for("() => window.hearthVoice.stats().link.transport === 'webtransport'")
    await a_is_heard_by_b(a, b, a_id)
    sent, got = await a.evaluate(LINK), await b.evaluate(LINK)
    # (a frame the browser's datagram writer had no room for is dropped, not queued)
    assert sent["datagramsSent"] >= 25, sent
    assert sent["socketSent"] == 0, sent
    assert got["datagramsReceived"] >= 25, got
    assert voice_frames(frames) == []  # not one voice frame came over the WebSocket
    server = udp(udp_server)
    # the page counts a frame sent when its writer takes it: on a busy machine the last few
    # are still on their way (the microphone goes on, so more come)
    await until(lambda: server.counts["received"] >= 50, timeout=10,
                what="50 datagrams from the page at the server")
    assert server.counts["sent"] >= 25
    assert server.counts["dropped_unbound"] == server.counts["dropped_foreign"] == 0

    # The network drops the session (here: the server's end closes): A's voice goes back to
    # the WebSocket at once, and B hears on.
    channel = next(c for c in server.bound if c.peer.link is not None
                   and a_id in c.peer.link.members)
    channel.conn.close()
    await a.wait_for("() => window.hearthVoice.stats().link.transport === 'websocket'")
    before = (await b.evaluate(SPEAKER, a_id))["decoded"]
    await a.wait_for("() => window.hearthVoice.stats().link.socketSent >= 25")
    await b.wait_for(f"(n) => ({SPEAKER})('{a_id}').decoded >= n + 20", before)
    over_socket = voice_frames(frames)
    assert len(over_socket) >= 25
    assert {voice_header(f).slot for f in over_socket} == {0}  # hearth.v1 frames, unchanged


@pytest_twisted.ensureDeferred
async def test_without_webtransport_or_with_udp_blocked_voice_stays_on_the_websocket(
        udp_server: LiveServer, mic_browser: Browser, udp_pages: list[Page],
        silent_udp: int) -> None:
    frames = record_socket_frames(udp_server)
    server = udp(udp_server)
    server.port = silent_udp  # offers (and the page's CSP) name a port that never answers
    a = await open_page(mic_browser, udp_pages, udp_server.http_url)
    await a.do(lambda p: p.context.add_init_script("delete window.WebTransport;"))
    b = await open_page(mic_browser, udp_pages, udp_server.http_url)
    a_id, _ = await seated_pair(a, b)
    # B tried, waited for the session and gave up; A (no WebTransport) never asked.
    await b.wait_for("() => window.hearthVoice.stats().link.failures >= 1", timeout_ms=20_000)
    assert (await b.evaluate(LINK))["transport"] == "websocket"
    assert server.tokens.issued == 1 and server.counts["sessions"] == 0
    await a_is_heard_by_b(a, b, a_id)
    link = await a.evaluate(LINK)
    assert link["transport"] == "websocket" and link["sessions"] == link["failures"] == 0, link
    assert link["socketSent"] >= 50 and link["datagramsSent"] == 0, link
    assert len(voice_frames(frames)) >= 50


LINK_LOGIC = """async () => {
  const { VoiceLink, packDatagram, unpackDatagram } = await import('/static/js/voicelink.js');
  // A clock the test turns by hand, a connection and a WebTransport that do what we say.
  const timers = new Map(); let nextId = 1;
  const clock = { setTimeout: (fn, ms) => { timers.set(nextId, { fn, ms }); return nextId++; },
                  clearTimeout: (id) => timers.delete(id) };
  const fire = () => { const due = [...timers.entries()]; timers.clear();
                       for (const [, t] of due) t.fn(); return due.map(([, t]) => t.ms); };
  const flush = () => new Promise((resolve) => setTimeout(resolve, 0));
  const requests = []; const socketFrames = [];
  const connection = new EventTarget();
  connection.state = 'joined';
  connection.request = async (message) => { requests.push(message.type);
    return { type: 'voice_transport', url: 'https://127.0.0.1:9/voice', token: 't', hashes: [],
             max_bytes: 1100 }; };
  connection.sendVoice = (frame) => { socketFrames.push(frame); return true; };
  const sessions = [];
  class FakeTransport {
    constructor(url, options) {
      this.url = url; this.written = []; this.datagrams = { maxDatagramSize: 1200,
        writable: { getWriter: () => ({ desiredSize: 1, write: async (d) => { this.written.push(d); } }) },
        readable: { getReader: () => ({ read: () => new Promise((resolve) => { this.push = resolve; }) }) } };
      this.ready = new Promise((resolve, reject) => { this.open = resolve; this.fail = reject; });
      this.closed = new Promise((resolve) => { this.end = resolve; });
      sessions.push(this);
    }
    close() { this.end(); }
  }
  const heard = [];
  const link = new VoiceLink({ connection, onFrame: (f) => heard.push(new Uint8Array(f)), clock,
                               WebTransport: FakeTransport });
  const frame = (seq, slot = 0) => { const f = new Uint8Array(30); f[0] = 1;
    new DataView(f.buffer).setUint16(4, slot); new DataView(f.buffer).setUint32(6, seq); return f; };
  const out = {};
  await flush();
  // 1. The session never gets ready (UDP blocked): the open timeout gives up, the WebSocket
  //    carries voice, and a retry is set for later.
  out.firstUrl = sessions[0].url;
  out.openTimeout = fire();
  await flush();
  out.afterTimeout = link.stats();
  link.send(frame(1));
  out.socketAfterTimeout = socketFrames.length;
  // 2. The retry opens a session: voice goes as datagrams, each repeating the previous frame.
  out.retryDelay = fire();
  await flush();
  sessions[1].open();
  await flush(); await flush();
  out.afterOpen = link.stats();
  link.send(frame(2)); link.send(frame(3)); link.send(frame(5));
  const seq = (f) => new DataView(f.buffer, f.byteOffset).getUint32(6);
  out.datagrams = sessions[1].written.map((d) => { const [f, r] = unpackDatagram(d);
    return [seq(f), r ? seq(r) : null]; });
  // 3. Frames in: a repeat of a frame already heard is taken out before it is decrypted.
  sessions[1].push({ value: packDatagram(frame(7, 4)), done: false }); await flush();
  sessions[1].push({ value: packDatagram(frame(9, 4), frame(8, 4)), done: false }); await flush();
  sessions[1].push({ value: packDatagram(frame(9, 4), frame(8, 4)), done: false }); await flush();
  out.heard = heard.map((f) => new DataView(f.buffer).getUint32(6));
  // 4. The session ends: voice on the WebSocket again, and a new try after a longer wait.
  sessions[1].end(); await flush(); await flush();
  out.afterEnd = link.stats();
  out.socketBefore = socketFrames.length;
  link.send(frame(6));
  out.socketAfter = socketFrames.length;
  out.pending = [...timers.values()].map((t) => t.ms);
  out.requests = requests;
  link.stop();
  return out;
}"""


@pytest_twisted.ensureDeferred
async def test_the_voice_link_times_out_falls_back_retries_and_repeats_on_its_clock(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    page = await open_page(browser, pages, server.http_url)
    await page.goto("/")
    out = await page.evaluate(LINK_LOGIC)
    assert out["firstUrl"] == "https://127.0.0.1:9/voice?token=t"
    assert out["openTimeout"] == [4000]
    assert out["afterTimeout"]["transport"] == "websocket" and out["afterTimeout"]["failures"] == 1
    assert out["socketAfterTimeout"] == 1
    assert out["retryDelay"] == [5000]
    assert out["afterOpen"]["transport"] == "webtransport" and out["afterOpen"]["sessions"] == 1
    assert out["datagrams"] == [[2, None], [3, 2], [5, None]]  # no repeat across a gap
    assert out["heard"] == [7, 8, 9] and out["afterEnd"]["duplicates"] == 2
    assert out["afterEnd"]["transport"] == "websocket"
    assert out["socketAfter"] == out["socketBefore"] + 1
    assert out["pending"] == [5000]  # the session had opened: back to the first backoff step
    assert out["requests"] == ["voice_transport", "voice_transport"]  # one token per try
