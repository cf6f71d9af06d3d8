"""A private corner is private, seen from a browser that stood in it (issue 14, point 8).

The page stands in the quiet corner when a facilitator makes it private with someone else.
It is moved out, may not walk back in, and not one frame of the corner's conversation,
sender keys or voice reaches it: every WebSocket frame the page receives is recorded by
Chromium itself. (That corner ciphertext forwarded to a room member does not open in the
browser is tests/browser/test_browser_vectors.py.)
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted

from hearth.client.groupchat import GroupChat
from hearth.spaces.layout import Point
from tests.browser.harness import Browser, Page, keys_ready, log_has, open_page
from tests.support.live import LiveServer, until

pytestmark = pytest.mark.browser

SECRET = "only the facilitator may read this"


@pytest_twisted.ensureDeferred
async def test_a_bystander_who_stood_in_the_corner_receives_nothing_of_it(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    page = await open_page(browser, pages, server.http_url)
    frames: list[Any] = []
    await page.do(lambda p: p.on("websocket", lambda ws: ws.on(
        "framereceived", lambda payload: frames.append(payload))))
    bystander = await page.join("circle", pseudonym="Still Birch")
    venue = server.hearth.node.venue
    ticket = venue.issue_ticket("facilitator", server.hearth.node.clock())
    fac = await GroupChat.join(await server.client(), "circle", pseudonym="Fran Guide", ticket=ticket)
    person = await GroupChat.join(await server.client(), "circle", pseudonym="Sam Stone")
    assert fac.client.member and person.client.member
    await keys_ready(page, [fac.client.member, person.client.member])
    room = venue.rooms["circle"]
    room.members[bystander].pos = Point(1.5, 1.5)  # standing in corner-west, (0, 0)-(3, 3)
    assert room.config.layout.zone_of(room.members[bystander].pos) == "corner-west"

    fac.client.send({"type": "private_corner", "corner": "corner-west",
                     "member": person.client.member})
    await until(lambda: "corner-west" in fac.corners and "corner-west" in person.corners,
                10, "the corner sessions")
    # Moved out at once, on the page too, and kept out.
    await page.wait_for("(me) => !document.querySelector(`#members li[data-member='${me}']`)"
                        "?.textContent.includes('corner')", bystander)
    assert room.config.layout.zone_of(room.members[bystander].pos) == "room"
    assert await page.evaluate("() => document.getElementById('app').dataset.state") == "joined"

    await fac.keys_from([person.client.member], zone="corner-west")
    await person.keys_from([fac.client.member], zone="corner-west")
    start = len(frames)
    await person.say(SECRET, zone="corner-west")
    assert (await fac.next_message()).text == SECRET
    await fac.say("I'm listening", zone="corner-west")
    assert (await person.next_message()).text == "I'm listening"
    for seq in range(3):
        person.speak(bytes([seq]) * 40, level=10)
    await until(lambda: len(fac.heard) == 3, 10, "the facilitator hearing three frames")
    fac.client.send({"type": "hide", "seq": 1, "zone": "corner-west"})
    # Something the page does receive, after all of it: the room goes on around it.
    await fac.say("back in the room")
    await log_has(page, "back in the room")

    received = frames[start:]
    assert not [f for f in received if isinstance(f, bytes)]  # no voice frame at all
    texts = [json.loads(f) for f in received if isinstance(f, str)]
    leaked = [m for m in texts if m.get("type") in ("envelope", "direct", "hidden")
              and m.get("zone") is not None]
    assert leaked == []
    assert [m["from"] for m in texts if m.get("type") == "envelope"] == [fac.client.member]  # recorded
    assert not any(SECRET in f for f in received if isinstance(f, str))
    await fac.client.close()
    await person.client.close()
