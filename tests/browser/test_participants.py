"""Two browsers and the Python client in one live room: walking, sitting, encrypted chat.

This is issue 4's first "done means" and the browser half of issue 3's interop: the
browser client (web/static/js) and hearth.client.groupchat.GroupChat speak the same hearth.v1 and
the same E2EE in one room, each reading what the others say, and all three show the
same safety code.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from hearth.client.groupchat import GroupChat
from tests.browser.harness import (
    Browser,
    Page,
    artifact,
    avatar_at,
    avatar_centre_colour,
    glide_samples,
    keys_ready,
    log_has,
    moved_away,
    open_page,
    say,
    screen_point,
    seated,
)
from tests.support.live import LiveServer, record_frames

pytestmark = pytest.mark.browser

# The test room (tests/conftest.py): 14 x 10 m, hearth at (7, 5), 8 seats on a 2.6 m circle.
# Seat 5 is at (5.16, 6.84), seat 3 at (8.84, 6.84); spawn points (2, 8.5) and (12, 8.5).
SEAT_ALICE = 5
SEAT_BOB = 3


@pytest_twisted.ensureDeferred
async def test_two_browsers_and_the_python_client_walk_sit_and_talk(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    frames = record_frames(server)
    alice = await open_page(browser, pages, server.http_url)
    bob = await open_page(browser, pages, server.http_url, phone=True, locale="es-ES")
    alice_id = await alice.join("circle", pseudonym="Alice Wren", country="GB")
    bob_id = await bob.join("circle", pseudonym="Bruno Garza", country="MX", lang="es")
    assert await bob.evaluate("() => document.documentElement.lang") == "es"

    # Each sees the other's avatar.
    for page, other in ((alice, bob_id), (bob, alice_id)):
        await page.wait_for("(id) => !!document.querySelector(`.avatar[data-member='${id}']`)", other)

    # Alice walks with the arrow keys; Bob sees her move, drawn smoothly between server ticks.
    start = await avatar_at(bob, alice_id)
    await alice.do(lambda p: p.focus("#room-view"))
    await alice.do(lambda p: p.keyboard.down("ArrowRight"))
    glide = await glide_samples(bob, alice_id, 700)
    await alice.do(lambda p: p.keyboard.up("ArrowRight"))
    await moved_away(bob, alice_id, start, 1.0)
    end = await avatar_at(bob, alice_id)
    assert end[0] > start[0] + 1.0 and abs(end[1] - start[1]) < 0.05, (start, end)
    assert glide["told"] >= 3, glide
    assert glide["drawn"] > glide["told"], f"no interpolation between server positions: {glide}"

    # Bob taps the floor to walk (a phone); Alice sees him move.
    start = await avatar_at(alice, bob_id)
    tap = await screen_point(bob, 11.0, 7.5)
    await bob.do(lambda p: p.touchscreen.tap(*tap))
    await moved_away(alice, bob_id, start, 1.0)

    # Alice clicks a seat and sits; Bob chooses a seat with the keyboard (Tab to it, Enter).
    await alice.do(lambda p: p.click(f".seat[data-seat='{SEAT_ALICE}']"))
    await bob.do(lambda p: p.focus(f".seat[data-seat='{SEAT_BOB}']"))
    await bob.do(lambda p: p.keyboard.press("Enter"))
    for page in (alice, bob):
        await seated(page, alice_id, SEAT_ALICE)
        await seated(page, bob_id, SEAT_BOB)
    assert "seat 6" in await alice.evaluate(
        f"() => document.querySelector(\"#members li[data-member='{alice_id}']\").textContent")
    label = await alice.evaluate("() => document.querySelector(\".seat[data-seat='3']\")"
                                 ".getAttribute('aria-label')")
    assert "Bruno Garza" in label
    # What is drawn is the avatar chosen: its centre is painted in its own colour.
    for page, member in ((alice, bob_id), (bob, alice_id)):
        pixel, fill = await avatar_centre_colour(page, member)
        wanted = tuple(int(fill[i:i + 2], 16) for i in (1, 3, 5))
        assert all(abs(a - b) <= 6 for a, b in zip(pixel, wanted, strict=True)), (pixel, fill)

    # The Python client joins the same room, as a facilitator (with a role ticket).
    node = server.hearth.node
    ticket = node.venue.issue_ticket("facilitator", node.clock())
    py = await GroupChat.join(await server.client(), "circle", pseudonym="Python Pal", ticket=ticket)
    py_id = py.client.member
    assert py_id is not None
    await log_has(alice, "Python Pal joined.")
    await log_has(bob, "Python Pal entró.")
    for page, badge in ((alice, "Facilitator"), (bob, "Facilitación")):
        await page.wait_for(
            "([id, badge]) => document.querySelector(`#members li[data-member='${id}'] .badge`)"
            "?.textContent === badge", [py_id, badge])
    await keys_ready(alice, [bob_id, py_id])
    await keys_ready(bob, [alice_id, py_id])
    await py.keys_from([alice_id, bob_id])

    # Browser to browser, both ways; the Python client reads both browsers.
    await say(alice, "Hello Bruno, it is Alice ☕")
    await log_has(bob, "Hello Bruno, it is Alice ☕")
    got = await py.next_message()
    assert (got.sender, got.text) == (alice_id, "Hello Bruno, it is Alice ☕")
    await say(bob, "¡Hola Alice! Aquí Bruno")
    await log_has(alice, "¡Hola Alice! Aquí Bruno")
    got = await py.next_message()
    assert (got.sender, got.text) == (bob_id, "¡Hola Alice! Aquí Bruno")

    # The Python client to both browsers.
    await py.say("Python here, reading you both")
    for page in (alice, bob):
        await page.wait_for(
            "(text) => [...document.querySelectorAll('#chat-log .msg:not(.mine)')].some("
            "(li) => li.querySelector('.who').textContent === 'Python Pal'"
            " && li.querySelector('.text').textContent === text)", "Python here, reading you both")

    # One safety code on all three screens, and matching fingerprints.
    code = py.session.safety_code()
    for page in (alice, bob):
        await page.wait_for("(code) => document.getElementById('safety-code').textContent === code", code)
    assert await alice.evaluate(
        f"() => document.querySelector(\"#fingerprints dd[data-member='{py_id}']\").textContent"
    ) == py.session.fingerprint(py_id)

    # The Python client leaves: both browsers say so, and the keys are renewed.
    py.client.send({"type": "leave"})
    await py.client.until_closed()
    await log_has(alice, "Python Pal left.")
    await log_has(alice, "Encryption keys renewed")
    await log_has(bob, "Python Pal salió.")
    await alice.wait_for("(old) => document.getElementById('safety-code').textContent !== old", code)

    # Screenshots of the room at desktop and phone size (tests/browser/artifacts/).
    await alice.do(lambda p: p.screenshot(path=str(artifact("room-desktop-en.png")), full_page=True))
    await bob.do(lambda p: p.screenshot(path=str(artifact("room-phone-es.png"))))
    assert await bob.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")

    # What the server received never held the plaintext.
    received = b"\n".join(frames).decode("utf-8", "replace")
    assert frames
    for secret in ("Hello Bruno", "Aquí Bruno", "reading you both"):
        assert secret not in received
