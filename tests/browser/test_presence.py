"""Presence in a live room: reactions, status, who is away, and a closed tab leaving.

Issue 21 points 6 and 9, through the real pages:
- a reaction travels end-to-end encrypted as one ordinary room envelope (the server cannot
  tell it from a short message: same size, no plaintext), shows on the sender's avatar on
  the other pages and is said politely; it is never a chat line; it is sent by click or by
  keyboard; low-bandwidth mode and slow mode rest the buttons, and say why;
- the status a member chooses (here, just listening, away) shows on the others' pages;
- a dropped connection shows the member away (avatar, list, a polite announcement) while
  the resume grace runs, and back when it resumes;
- a closed tab (pagehide) leaves within the short closing grace, not the minute a dropped
  connection gets.
How long a reaction shows is tested on a fake clock (test_client_logic.py).
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted

from hearth.client.groupchat import GroupChat
from hearth.spaces.config import HearthConfig
from tests.browser.harness import Browser, CuttableLink, Page, keys_ready, log_has, open_page, say
from tests.support.config import make_config
from tests.support.live import LiveServer, record_frames

pytestmark = pytest.mark.browser

LIVE = "() => document.getElementById('presence-live').textContent"
STATE = "(state) => document.getElementById('app').dataset.state === state"


@pytest.fixture
def config(neutral_site: str) -> HearthConfig:
    """A closing grace of one second: a closed tab must be gone long before the minute a
    dropped connection gets."""
    return make_config(organisation={"name": "Test Hearth", "quick_exit_url": neutral_site},
                       session={"resume_grace_seconds": 60, "closing_grace_seconds": 1})


def avatar(member: str, inner: str = "") -> str:
    return f".avatar[data-member='{member}']{inner}"


async def said(page: Page, text: str) -> None:
    await page.wait_for(f"(text) => ({LIVE})() === text", text)


def envelope_bodies(frames: list[bytes]) -> list[str]:
    bodies = []
    for frame in frames:
        try:
            message = json.loads(frame)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("type") == "envelope":
            bodies.append(message["body"])
    return bodies


@pytest_twisted.ensureDeferred
async def test_a_reaction_is_encrypted_shown_on_the_avatar_and_announced(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    frames = record_frames(server)
    alice = await open_page(browser, pages, server.http_url)
    bob = await open_page(browser, pages, server.http_url, phone=True, locale="es-MX")
    alice_id = await alice.join("circle", pseudonym="Alice Wren")
    bob_id = await bob.join("circle", pseudonym="Bruno Garza", lang="es")
    await keys_ready(alice, [bob_id])
    await keys_ready(bob, [alice_id])
    # Every reaction is a named button.
    names = await alice.evaluate("() => [...document.querySelectorAll('.reaction-button')]"
                                 ".map((b) => b.textContent.trim())")
    assert names == ["Nod", "Heart", "Wave", "Me too"]
    await say(alice, "hi")  # a short message, to compare sizes with
    await log_has(bob, "hi")
    lines = await bob.evaluate("() => document.querySelectorAll('#chat-log .msg').length")

    # Alice clicks "Heart": Bob sees it on her avatar, and hears it politely.
    await alice.do(lambda p: p.click(".reaction-button[data-reaction='heart']"))
    await bob.wait_for("(sel) => { const r = document.querySelector(sel);"
                       " return r && !r.hasAttribute('hidden'); }",
                       avatar(alice_id, " .reaction[data-reaction='heart']"))
    await said(bob, "Alice Wren envía un corazón.")
    assert await bob.evaluate("(sel) => document.querySelector(sel).getAttribute('href')",
                              avatar(alice_id, " .reaction use")) == "#react-heart"
    await said(alice, "You send a heart.")  # and on her own avatar

    # Bob answers by keyboard: focus "Yo también", Enter.
    await bob.do(lambda p: p.focus(".reaction-button[data-reaction='metoo']"))
    await bob.do(lambda p: p.keyboard.press("Enter"))
    await alice.wait_for("(sel) => !!document.querySelector(sel)",
                         avatar(bob_id, " .reaction[data-reaction='metoo']"))
    await said(alice, "Bruno Garza: me too.")

    # Neither is a chat line, anywhere.
    assert await bob.evaluate("() => document.querySelectorAll('#chat-log .msg').length") == lines
    assert "corazón" not in await bob.evaluate("() => document.getElementById('chat-log').textContent")
    # On the wire: two more envelopes, each exactly the size of "hi", and no plaintext.
    bodies = envelope_bodies(frames)
    assert len(bodies) == 3 and len({len(b) for b in bodies}) == 1, [len(b) for b in bodies]
    received = b"\n".join(frames).decode("utf-8", "replace")
    for word in ("heart", "metoo", "reaction"):
        assert word not in received


@pytest_twisted.ensureDeferred
async def test_low_bandwidth_and_slow_mode_rest_the_reactions_and_say_why(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    page = await open_page(browser, pages, server.http_url)
    await page.join("circle", pseudonym="Calm Lark")
    enabled = "() => [...document.querySelectorAll('.reaction-button')].map((b) => !b.disabled)"
    note = "() => document.getElementById('reactions-note').textContent"
    await page.wait_for(f"() => ({enabled})().every(Boolean)")
    # By keyboard (the voice panel's first pointer press starts the sound and redraws it).
    await page.do(lambda p: p.focus("#voice-low"))
    await page.do(lambda p: p.keyboard.press("Space"))
    assert await page.evaluate(enabled) == [False] * 4
    assert await page.evaluate(note) == "Reactions are off in low-bandwidth mode."
    await page.do(lambda p: p.keyboard.press("Space"))
    assert await page.evaluate(enabled) == [True] * 4
    # A facilitator turns slow mode on: a reaction would spend the participant's one message.
    node = server.hearth.node
    ticket = node.venue.issue_ticket("facilitator", node.clock())
    fac = await server.client()
    await fac.join("circle", pseudonym="Ana Rivers", ticket=ticket)
    fac.send({"type": "slow_mode", "seconds": 30})
    await page.wait_for(f"() => ({note})() === 'Reactions rest while slow mode is on.'")
    assert await page.evaluate(enabled) == [False] * 4
    fac.send({"type": "slow_mode", "seconds": 0})
    await page.wait_for(f"() => ({enabled})().every(Boolean)")
    await fac.close()


@pytest_twisted.ensureDeferred
async def test_status_and_a_dropped_connection_show_on_the_others_pages(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    link = CuttableLink(server.port)
    alice = await open_page(browser, pages, link.listen())
    bob = await open_page(browser, pages, server.http_url)
    try:
        alice_id = await alice.join("circle", pseudonym="Alice Wren")
        await bob.join("circle", pseudonym="Bruno Garza")
        badges = f"() => document.querySelector(\"#members li[data-member='{alice_id}']\").textContent"
        status = f"() => document.querySelector(\"{avatar(alice_id)}\").dataset.status"

        # Alice says she is just listening (a native select: keyboard and screen reader).
        await alice.do(lambda p: p.select_option("#status-choice", "listening"))
        await bob.wait_for(f"() => ({status})() === 'listening'")
        assert "listening" in await bob.evaluate(badges)
        assert await bob.evaluate("(s) => document.querySelector(s).getAttribute('href')",
                                  avatar(alice_id, " .status-badge")) == "#status-listening"

        # Her connection drops: Bob sees her away (not gone) while the grace runs.
        await alice.do(lambda p: p.context.set_offline(True))
        assert link.cut() >= 1
        await bob.wait_for(f"() => ({status})() === 'away'")
        await said(bob, "Alice Wren is away.")
        assert "away" in await bob.evaluate(badges)
        assert "Alice Wren" in await bob.evaluate("() => document.getElementById('members').textContent")
        # She comes back: the same member, here again, still listening.
        await alice.do(lambda p: p.context.set_offline(False))
        await alice.wait_for(STATE, "joined", timeout_ms=25_000)
        await bob.wait_for(f"() => ({status})() === 'listening'")
        await log_has(bob, "Alice Wren reconnected.")  # said once, in the log
        assert "left" not in await bob.evaluate("() => document.getElementById('chat-log').textContent")
        # Away by her own word, then here again.
        await alice.do(lambda p: p.select_option("#status-choice", "away"))
        await bob.wait_for(f"() => ({status})() === 'away'")
        await said(bob, "Alice Wren is away.")
        await alice.do(lambda p: p.select_option("#status-choice", "here"))
        await bob.wait_for(f"() => ({status})() === 'here'")
        await said(bob, "Alice Wren is back.")
        assert await bob.evaluate("(s) => document.querySelector(s).hasAttribute('href')",
                                  avatar(alice_id, " .status-badge")) is False
    finally:
        await link.close()


@pytest_twisted.ensureDeferred
async def test_closing_the_tab_leaves_within_the_closing_grace(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    alice = await open_page(browser, pages, server.http_url)
    bob = await open_page(browser, pages, server.http_url)
    await alice.join("circle", pseudonym="Alice Wren")
    await bob.join("circle", pseudonym="Bruno Garza")
    watcher = await GroupChat.join(await server.client(), "circle", pseudonym="Python Pal")
    await alice.do(lambda p: p.close(run_before_unload=True))  # pagehide, as a closed tab
    # "left" (not "lost their connection"): the closing grace is 1 s; a dropped connection's 60.
    await log_has(bob, "Alice Wren left.")
    reasons = [m["reason"] for m in watcher.client.inbox if m["type"] == "member_left"]
    assert reasons == ["left"]
    await watcher.client.close()
