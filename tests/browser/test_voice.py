"""Spatial voice in the browser (issue 5): Chromium's fake microphone, three pages, one room.

A speaks; B, seated to A's right, decodes A's frames at the full rate with sound in them and
hears A on its left (the HRTF panner sits at negative x, and the left channel of B's output
carries more energy than the right, measured with realtime analysers after a channel
splitter); C, in a quiet corner, receives none of A's frames until it steps out. Then the
controls: push-to-talk, a facilitator's mute (the page stops sending), and the request to
unmute (the page asks; the microphone stays off until the person turns it on), with the
Python client hearing the browser's encrypted voice.

The fake microphone plays a generated speech-like WAV (a gliding harmonic tone with a
syllable rhythm) instead of Chromium's default beep, so A talks continuously.

Counters come from `window.hearthVoice.stats()` (web/static/js/voice.js): counts, levels and
positions only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from hearth.client.groupchat import GroupChat
from hearth.spaces.e2ee.voice import voice_header
from tests.browser.harness import (
    Browser,
    Page,
    artifact,
    keys_ready,
    open_page,
    screen_point,
    seated,
    sound_running,
    voice_frames,
)
from tests.support.live import LiveServer, record_frames

pytestmark = pytest.mark.browser

# The test room (tests/conftest.py): 14 x 10 m; seat 5 at (5.16, 6.84), seat 3 at (8.84, 6.84);
# the quiet corner "corner-west" is the square (0, 0)-(3, 3); spawns (2, 8.5), (12, 8.5), (7, 9.2).
SEAT_LEFT = 5
SEAT_RIGHT = 3
OPUS_24K = 60  # bytes of Opus in a 20 ms frame at 24 kbps constant
OPUS_12K = 30
FRAME_OVERHEAD = 26  # 10-byte header + 16-byte tag

STATS = "() => window.hearthVoice.stats()"
SPEAKER = "(id) => window.hearthVoice.stats().audio.speakers[id] ?? null"
FLOW = """async ([id, frames]) => {
  // Until this page has decoded `frames` more of the speaker's frames: what came meanwhile.
  const get = () => window.hearthVoice.stats().audio.speakers[id];
  const before = get();
  while (get().decoded < before.decoded + frames) await new Promise((r) => setTimeout(r, 50));
  const after = get();
  const more = (key) => after[key] - before[key];
  return { decoded: more('decoded'), voiced: more('voiced'), played: more('played'),
           received: more('received'), late: more('late'), after };
}"""
# The microphone runs in real time: that a page sends *nothing* is checked over a window.
SENT_DURING = """async ([key, ms]) => {
  const before = window.hearthVoice.stats()[key];
  await new Promise((resolve) => setTimeout(resolve, ms));
  return window.hearthVoice.stats()[key] - before;
}"""


async def flow(listener: Page, speaker: Page, speaker_id: str, frames: int) -> dict[str, Any]:
    """The listener's counts over the next `frames` frames it decodes, and how many the speaker
    sent meanwhile: rates against the sender, not against the wall clock (a busy machine
    slows both ends alike)."""
    sent = (await speaker.evaluate(STATS))["sent"]
    counts: dict[str, Any] = await listener.evaluate(FLOW, [speaker_id, frames])
    counts["sent"] = (await speaker.evaluate(STATS))["sent"] - sent
    return counts


def full_rate(rate: dict[str, Any], played: bool = True) -> bool:
    """The listener decoded (nearly) every frame the speaker sent, with sound in them, and
    played them in time."""
    return (rate["decoded"] >= 0.8 * rate["sent"] and rate["voiced"] >= 0.8 * rate["decoded"]
            and (not played or rate["played"] >= 0.8 * rate["decoded"]))


async def flow_at_full_rate(listener: Page, speaker: Page, speaker_id: str, frames: int,
                            played: bool = True, windows: int = 5) -> dict[str, Any]:
    """`flow` over successive windows until one shows the full rate (at most `windows`): the
    microphone runs in real time, and a listener's page that a busy machine starves for a
    moment decodes behind it (frames received, decoded late or dropped as late). A pipeline
    that loses or cannot decode frames fails every window; the last one is returned for the
    assertion's message."""
    for _ in range(windows):
        rate = await flow(listener, speaker, speaker_id, frames)
        if full_rate(rate, played):
            break
    return rate


async def sends(page: Page, frames: int) -> None:
    """Until the page has sent `frames` more voice frames."""
    before = (await page.evaluate(STATS))["sent"]
    await page.wait_for(f"() => window.hearthVoice.stats().sent >= {before + frames}")


async def stops_sending(page: Page, ends: int) -> None:
    """Until the talkspurt that was on has ended (its flagged last frame sent): from then on
    nothing goes out until the page talks again."""
    await page.wait_for(f"() => window.hearthVoice.stats().ends > {ends}")


async def walk_to(page: Page, x: float, y: float) -> None:
    sx, sy = await screen_point(page, x, y)
    await page.do(lambda p: p.mouse.click(sx, sy))


async def in_zone(page: Page, zone: str) -> None:
    await page.wait_for("(zone) => window.hearthVoice?.stats().audio.me?.zone === zone", zone)


@pytest_twisted.ensureDeferred
async def test_a_speaks_b_hears_a_on_the_left_and_a_quiet_corner_hears_nothing(
        server: LiveServer, mic_browser: Browser, mic_pages: list[Page]) -> None:
    frames = record_frames(server)
    a = await open_page(mic_browser, mic_pages, server.http_url)
    b = await open_page(mic_browser, mic_pages, server.http_url)
    c = await open_page(mic_browser, mic_pages, server.http_url)
    a_id = await a.join("circle", pseudonym="Ana Voz")
    b_id = await b.join("circle", pseudonym="Beto Oye")
    c_id = await c.join("circle", pseudonym="Cora Calma")

    # A sits to B's left (same y, smaller x: the listener faces up the screen); C walks into
    # the quiet corner, 6.5 m from A: within hearing range, but the corner is its own zone.
    await a.do(lambda p: p.click(f".seat[data-seat='{SEAT_LEFT}']"))
    await b.do(lambda p: p.click(f".seat[data-seat='{SEAT_RIGHT}']"))
    await walk_to(c, 1.5, 1.5)
    for page in (a, b, c):
        await seated(page, a_id, SEAT_LEFT)
        await seated(page, b_id, SEAT_RIGHT)
    await in_zone(c, "corner-west")
    await keys_ready(a, [b_id, c_id])
    # Each page's sound started with its first click (a user gesture).
    for page in (a, b, c):
        await sound_running(page)

    # A turns the microphone on (room.js's button; voice.js captures, encodes and sends).
    await a.do(lambda p: p.click("#mic"))
    await a.wait_for("() => window.hearthVoice.stats().sent >= 50")
    await b.wait_for(f"() => ({SPEAKER})('{a_id}')?.decoded >= 25")

    # B decodes A at the full rate (every frame A sends), with sound in the frames, and plays
    # them in time.
    rate = await flow_at_full_rate(b, a, a_id, 100)
    assert rate["decoded"] >= 0.8 * rate["sent"], rate
    assert rate["voiced"] >= 0.8 * rate["decoded"], rate
    assert rate["played"] >= 0.8 * rate["decoded"], rate
    speaker = rate["after"]
    assert speaker["rms"] > 1e-3 and speaker["energy"] > 1e-6, speaker
    assert speaker["speaking"] is True, speaker
    assert await b.evaluate(
        "(id) => document.querySelector(`.avatar[data-member='${id}']`).classList.contains('speaking')",
        a_id)

    await b.do(lambda p: p.screenshot(path=str(artifact("room-voice-desktop-en.png")), full_page=True))

    # B's panner for A is where A sits: 3.68 m to the left, level with B; HRTF.
    assert speaker["panner"]["x"] == pytest.approx(-3.68, abs=0.05), speaker
    assert speaker["panner"]["z"] == pytest.approx(0.0, abs=0.05), speaker
    assert speaker["pannerNow"]["x"] < -3.0, speaker
    assert speaker["pannerNow"]["model"] == "HRTF", speaker
    # ...and what B plays is louder in the left ear.
    stereo = await b.evaluate("() => window.hearthVoice.measureStereo(1500)")
    assert stereo["reads"] >= 10, stereo
    assert stereo["left"] > 1.3 * stereo["right"] > 0, stereo

    # C, in the quiet corner, received none of A's frames (A has sent well over a hundred).
    sent = (await a.evaluate(STATS))["sent"]
    assert sent >= 150, sent
    c_stats = (await c.evaluate(STATS))["audio"]
    assert c_stats["frames"] == 0 and a_id not in c_stats["speakers"], c_stats

    # What went over the wire: one binary message per 20 ms frame, 24 kbps constant (60 bytes
    # of Opus each), the slot left to the server, and A's measured speech level in the header.
    out = voice_frames(frames)
    assert len(out) >= sent - 5, (len(out), sent)
    assert {len(f) for f in out} == {FRAME_OVERHEAD + OPUS_24K}
    headers = [voice_header(f) for f in out]
    assert {h.slot for h in headers} == {0}
    assert [h.seq for h in headers] == sorted(h.seq for h in headers)
    levels = [h.level for h in headers]
    assert max(levels) < 70 and len(set(levels)) > 5, levels[:50]
    assert sum(h.flags & 1 for h in headers) >= 0.9 * len(headers)

    # Low-bandwidth mode: 12 kbps (30 bytes of Opus a frame), and B still hears A.
    await a.do(lambda p: p.check("#voice-low"))
    await a.wait_for(f"() => window.hearthVoice.stats().lastOpusBytes === {OPUS_12K}")
    rate = await flow_at_full_rate(b, a, a_id, 50, played=False)
    assert full_rate(rate, played=False), rate

    # The control: C steps out of the corner to (4, 3.5) and hears A from then on: A is now
    # to C's right (larger x) and behind (larger y: down the screen).
    await walk_to(c, 4.0, 3.5)
    await in_zone(c, "room")
    await c.wait_for(f"() => ({SPEAKER})('{a_id}')?.decoded >= 20")
    heard = await c.evaluate(SPEAKER, a_id)
    assert heard["voiced"] >= 15, heard
    assert heard["panner"]["x"] > 0.5 and heard["panner"]["z"] > 2.5, heard


@pytest_twisted.ensureDeferred
async def test_push_to_talk_and_a_facilitators_mute_and_request_to_unmute(
        server: LiveServer, mic_browser: Browser, mic_pages: list[Page]) -> None:
    a = await open_page(mic_browser, mic_pages, server.http_url)
    a_id = await a.join("circle", pseudonym="Ana Voz")  # spawns at (2, 8.5)
    node = server.hearth.node
    ticket = node.venue.issue_ticket("facilitator", node.clock())
    py = await GroupChat.join(await server.client(), "circle", pseudonym="Fran Guide",
                              ticket=ticket)  # spawns at (12, 8.5)
    # A sits 3.6 m from the facilitator, who hears (and decrypts) A's voice in Python.
    await a.do(lambda p: p.click(f".seat[data-seat='{SEAT_RIGHT}']"))
    await seated(a, a_id, SEAT_RIGHT)
    await keys_ready(a, [py.client.member])

    await a.do(lambda p: p.click("#mic"))
    await a.wait_for("() => window.hearthVoice.stats().sent >= 25")
    heard = [f for who, f in py.heard if who == a_id]
    assert len(heard) >= 10 and {len(f.opus) for f in heard} == {OPUS_24K}
    assert all(f.level < 127 for f in heard) and any(f.speech for f in heard)

    # Push to talk: nothing goes out until Space is held (on the map), then frames flow, and
    # letting go ends the talkspurt.
    ends = (await a.evaluate(STATS))["ends"]
    await a.do(lambda p: p.check("#voice-mode-ptt"))
    await a.wait_for("() => !document.getElementById('voice-ptt').hidden")
    await stops_sending(a, ends)
    assert await a.evaluate(SENT_DURING, ["sent", 600]) == 0
    ends = (await a.evaluate(STATS))["ends"]
    await a.do(lambda p: p.focus("#room-view"))
    await a.do(lambda p: p.keyboard.down(" "))
    assert (await a.evaluate(STATS))["held"] is True
    await sends(a, 20)
    await a.do(lambda p: p.keyboard.up(" "))
    await stops_sending(a, ends)
    assert await a.evaluate(SENT_DURING, ["sent", 600]) == 0
    # The hold-to-talk button does the same.
    await a.do(lambda p: p.hover("#voice-ptt"))
    await a.do(lambda p: p.mouse.down())
    await sends(a, 20)
    await a.do(lambda p: p.mouse.up())
    await a.do(lambda p: p.check("#voice-mode-open"))
    assert (await a.evaluate(STATS))["mode"] == "open"
    await sends(a, 20)

    # The facilitator mutes A: the page shows it, releases the microphone and stops sending.
    py.client.send({"type": "mute", "member": a_id})
    await a.wait_for("() => { const s = window.hearthVoice.stats();"
                     " return s.forcedMuted && s.mic === 'off'; }")
    assert await a.evaluate("() => document.getElementById('app').dataset.muted") == "true"
    assert await a.evaluate(SENT_DURING, ["sent", 800]) == 0  # (muted: nothing can go out)
    await a.do(lambda p: p.click("#mic", force=True))  # trying anyway changes nothing
    assert (await a.evaluate(STATS))["mic"] == "off"

    # The facilitator asks A to speak: the page asks; the microphone stays off meanwhile.
    py.client.send({"type": "ask_unmute", "member": a_id})
    await a.wait_for("() => !document.getElementById('unmute-prompt').hidden")
    assert await a.evaluate(SENT_DURING, ["sent", 800]) == 0
    stats = await a.evaluate(STATS)
    assert stats["mic"] == "off" and stats["forcedMuted"] is False, stats
    # A says yes: from now on A is heard again.
    await a.do(lambda p: p.click("#unmute-yes"))
    await sends(a, 20)
    py.client.send({"type": "leave"})
    await py.client.until_closed()


def test_the_voice_strings_exist_in_both_catalogs() -> None:
    static = Path(__file__).resolve().parents[2] / "web" / "static"
    source = (static / "js" / "voice.js").read_text(encoding="utf-8")
    used = set(re.findall(r'"(voice\.[a-z_.]+)"', source))
    assert len(used) >= 10
    for lang in ("en", "es"):
        catalog: dict[str, Any] = json.loads((static / "i18n" / f"{lang}.json").read_text("utf-8"))
        assert used <= catalog.keys(), (lang, used - catalog.keys())


JITTER = """async () => {
  const { RoomAudio, MIN_DELAY_S } = await import('/static/js/audio.js');
  // The jitter buffer's own clock, driven by the test: arrivals, the play-out timeline and the
  // buffer's ticks all follow it, so what is measured does not depend on the machine's load.
  class TestClock {
    constructor() { this.ms = 1000; this.timers = []; this.ids = 0; }
    nowMs() { return this.ms; }
    audioTime() { return this.ms / 1000; }
    later(fn, ms) {
      this.ids += 1;
      this.timers.push({ at: this.ms + ms, id: this.ids, fn });
      return this.ids;
    }
    cancel(id) { this.timers = this.timers.filter((t) => t.id !== id); }
    advance(ms) {  // runs every timer due meanwhile, in order, at its own time
      const end = this.ms + ms;
      for (;;) {
        this.timers.sort((a, b) => a.at - b.at || a.id - b.id);
        const due = this.timers[0];
        if (!due || due.at > end) break;
        this.timers.shift();
        this.ms = due.at;
        due.fn();
      }
      this.ms = end;
    }
  }
  const clock = new TestClock();
  // Real Opus frames (a 300 Hz tone) for a speaker whose "decryption" hands them back by seq.
  const opus = [];
  const encoder = new AudioEncoder({ output: (chunk) => {
    const bytes = new Uint8Array(chunk.byteLength); chunk.copyTo(bytes); opus.push(bytes); },
    error: () => {} });
  encoder.configure({ codec: 'opus', sampleRate: 48000, numberOfChannels: 1, bitrate: 24000,
                      bitrateMode: 'constant' });
  for (let i = 0; i < 20; i += 1) {
    const data = new Float32Array(960);
    for (let k = 0; k < 960; k += 1) data[k] = 0.3 * Math.sin(2 * Math.PI * 300 * (i * 960 + k) / 48000);
    encoder.encode(new AudioData({ format: 'f32-planar', sampleRate: 48000, numberOfFrames: 960,
                                   numberOfChannels: 1, timestamp: i * 20000, data }));
  }
  await encoder.flush();
  const opened = new Map();
  const session = { decryptVoice: async (id, data) => opened.get(new DataView(data).getUint32(6)) };
  const audio = new RoomAudio({ session: () => session, clock });
  audio.ensureContext();
  await audio.context.resume();
  audio.handle({ type: 'welcome', member: 'me', room: { members: [
    { id: 'me', x: 5, y: 5, zone: 'room', slot: 1 }, { id: 'them', x: 3, y: 5, zone: 'room', slot: 2 }] } });
  const send = async (...seqs) => {  // frames arriving now (each opened before the next)
    for (const seq of seqs) {
      const frame = new Uint8Array(26);
      frame.set([1, 1, 30]);
      new DataView(frame.buffer).setUint16(4, 2);
      new DataView(frame.buffer).setUint32(6, seq);
      opened.set(seq, { opus: opus[seq % opus.length], seq, level: 30, flags: 1, speech: true, end: false });
      audio.receive(frame.buffer);
      await null; await null;  // the "decryption" promise settles, then the buffer takes it
      await decoded();
    }
  };
  // Decoding takes no time on this clock: whatever the buffer handed the decoder comes out
  // before the clock moves on (5 ms at a time, its ticks are 10 ms apart).
  const decoded = async () => {
    const decoder = audio.speakers.get('them')?.decoder;
    if (decoder && decoder.state === 'configured') await decoder.flush();
  };
  const wait = async (ms) => { for (let t = 0; t < ms; t += 5) { clock.advance(5); await decoded(); } };
  const them = () => audio.stats().speakers.them;
  const out = {};
  for (let seq = 1; seq <= 10; seq += 1) { await send(seq); await wait(20); }
  await send(12, 11); await wait(20);                      // reordered: 11 still plays
  await wait(20); await send(14); await wait(20);          // 13 is lost...
  for (let seq = 15; seq <= 24; seq += 1) { await send(seq); await wait(20); }
  await send(13);                                          // ...and comes far too late
  await wait(60);
  out.steady = them();
  // Bursty arrivals (two frames every 40 ms): the measured jitter raises the target delay.
  for (let seq = 25; seq <= 84; seq += 2) { await send(seq, seq + 1); await wait(40); }
  await wait(100);
  out.bursty = them();
  out.min = MIN_DELAY_S * 1000;
  audio.stop();
  return out;
}"""


@pytest_twisted.ensureDeferred
async def test_the_jitter_buffer_reorders_skips_lost_frames_drops_late_ones_and_adapts(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    page = await open_page(browser, pages, server.http_url)
    await page.goto("/")
    out = await page.evaluate(JITTER)
    steady, bursty = out["steady"], out["bursty"]
    # 1-12 and 14-24 decoded (12 came before 11 and both played), 13 skipped at its turn and
    # dropped when it came, 200 ms later.
    assert steady["decoded"] == 23, steady
    assert steady["concealed"] == 1 and steady["late"] == 1, steady
    assert steady["voiced"] == steady["played"] == 23 and steady["tooLate"] == 0, steady
    assert steady["underruns"] == 0 and steady["shrunk"] == 0, steady  # on time, every one
    assert steady["targetMs"] >= out["min"], steady
    # Two frames at once every 40 ms: ~20 ms of jitter, so a longer target (still bounded).
    assert bursty["jitterMs"] >= 10, bursty
    assert steady["targetMs"] + 30 <= bursty["targetMs"] <= 200, (steady, bursty)
    assert bursty["decoded"] == bursty["played"] == 23 + 60 and bursty["late"] == 1, bursty
