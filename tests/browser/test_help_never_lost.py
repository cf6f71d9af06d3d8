"""A help press is never swallowed by a connection that drops: the page keeps a press the
server has not answered, says honestly that it waits for the connection (never that it
could not be sent, never that anyone knows), and sends it again with the same client id as
soon as it is back in the room; the server answers the repeated id once — one incident,
one alert. The detector's "yes, talk privately" (a flag) is kept and sent again the same
way. And the button is there for a keyboard and a screen reader."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted

from tests.browser.console_steps import APP, enter, my_id, python_facilitator
from tests.browser.harness import Browser, Page, open_page
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser

# Every text the card's status line shows, in order (a MutationObserver: no timing involved).
WATCH_STATE = """() => {
  window.helpStates = [];
  const line = document.getElementById('help-state');
  new MutationObserver(() => window.helpStates.push(line.textContent))
    .observe(line, { childList: true, characterData: true, subtree: true });
}"""
QUEUED = "You are not connected right now: your request will be sent as soon as the connection is back."
RECEIVED = "Your request was received."


def losing_the_first_help(node: Any, member: str, code: int, helps: list[dict[str, Any]],
                          kind: str = "help") -> Callable[[Any, bytes, bool], None]:
    """The node's frame handler, but the member's first `help` (or `kind`) is lost on the
    way and its connection closed with `code` — or, with code 0, answered `room_moving` (a
    node that could not hand it to the room's node: nothing was done); every such frame the
    member sends is kept in `helps`."""
    received = node.received
    wanted = f'"{kind}"'.encode()

    def handle(link: Any, frame: bytes, is_binary: bool) -> None:
        if not is_binary and wanted in frame and link.members == {member}:
            helps.append(json.loads(frame))
            if len(helps) == 1:
                if code:
                    link.peer.close(code, "gone")
                else:
                    link.peer.send_bytes(json.dumps({
                        "type": "error", "code": "room_moving", "ref": helps[0]["ref"],
                        "message": "The room is moving to another node."}).encode())
                return
        received(link, frame, is_binary)
    return handle


async def asked_through_a_drop(page: Page, node: Any, member: str, code: int, kind: str,
                               button: str) -> list[dict[str, Any]]:
    """Click `button` while the member's first `kind` frame is lost (losing_the_first_help),
    until the card says the request was received: it went twice, with one client id, and
    the card never said it could not be sent or that anyone has it. The frames sent."""
    received = node.received
    frames: list[dict[str, Any]] = []
    node.received = losing_the_first_help(node, member, code, frames, kind=kind)
    try:
        await page.do(lambda p: p.click(button))
        await page.wait_for("(text) => document.getElementById('help-state').textContent"
                            ".startsWith(text)", RECEIVED, timeout_ms=30_000)
    finally:
        node.received = received
    assert len(frames) == 2 and frames[0]["id"] and frames[0]["id"] == frames[1]["id"], frames
    states: list[str] = await page.evaluate("() => window.helpStates")
    if code:  # (a room_moving answer came on an open connection: sent again shortly)
        assert any(s.startswith(QUEUED) for s in states), states
    assert not any("could not" in s or "screen" in s or "told" in s for s in states), states
    return frames


async def opened_and_alerted_once(node: Any, fac: Any) -> Any:
    """The one incident there is, opened once and alerted once to the room's facilitator."""
    [incident] = node.venue.crisis.desk.incidents.values()
    assert [e for _, e, _ in incident.history] == ["open"]
    alert = await fac.next(lambda m: m["type"] == "incident" and m.get("reason") == "alert")
    assert alert["incident"]["id"] == incident.id
    assert not [m for m in fac.inbox if m["type"] == "incident" and m.get("reason") == "alert"]
    return incident


@pytest.mark.parametrize("code", [4010, 1011, 0], ids=["room_moved", "dropped", "room_moving"])
@pytest_twisted.ensureDeferred
async def test_a_press_lost_with_the_connection_is_sent_again_and_counted_once(
        server: LiveServer, browser: Browser, pages: list[Page], code: int) -> None:
    fac = await python_facilitator(server)
    page = await open_page(browser, pages, server.http_url)
    await enter(page, "circle", "Quiet Otter")
    member = await my_id(page)
    await page.evaluate(WATCH_STATE)
    node: Any = server.hearth.node
    # the same press, twice on the wire: the same client id; the first never arrived
    await asked_through_a_drop(page, node, member, code, "help", "#help-button")
    await opened_and_alerted_once(node, fac)
    await fac.close()


@pytest.mark.parametrize("code", [1011, 0], ids=["dropped", "room_moving"])
@pytest_twisted.ensureDeferred
async def test_a_yes_to_the_detector_lost_with_the_connection_is_sent_again_and_counted_once(
        server: LiveServer, browser: Browser, pages: list[Page], code: int) -> None:
    """Someone says yes to "do you want to talk privately with a facilitator?" as their link
    drops: the page keeps the flag and says so honestly, sends it again with the same id,
    and the server opens one incident, alerts once."""
    fac = await python_facilitator(server)
    page = await open_page(browser, pages, server.http_url)
    await enter(page, "circle", "Quiet Otter")
    member = await my_id(page)
    await page.wait_for(f"() => {APP}.dataset.detector === 'ready'")
    await page.evaluate(WATCH_STATE)
    typed = "I have 40 pills saved and tonight is the night"
    await page.do(lambda p: (p.fill("#chat-input", typed), p.press("#chat-input", "Enter")))
    await page.wait_for("() => !document.getElementById('care-prompt').hidden")

    node: Any = server.hearth.node
    flags = await asked_through_a_drop(page, node, member, code, "flag", "#care-yes")
    assert "text" not in flags[1] and flags[1]["category"] == flags[0]["category"]
    incident = await opened_and_alerted_once(node, fac)
    assert incident.trigger == "self_detector"
    # the message the person typed is still theirs to send or not
    assert await page.evaluate("() => document.getElementById('chat-input').value") == typed
    await fac.close()


@pytest_twisted.ensureDeferred
async def test_the_help_button_is_early_in_the_keyboard_order_and_its_status_is_announced(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    """Keyboard only: a few Tabs from the top reach "I need help now"; Enter opens the card
    with the focus on its title, and what happens to the request is in a polite live
    region inside it (a screen reader reads each change without moving the focus)."""
    fac = await python_facilitator(server)
    page = await open_page(browser, pages, server.http_url)
    await enter(page, "circle", "Quiet Otter")
    await page.evaluate("() => document.activeElement?.blur()")
    reached = None
    for tabs in range(1, 9):
        await page.do(lambda p: p.keyboard.press("Tab"))
        if await page.evaluate("() => document.activeElement?.id") == "help-button":
            reached = tabs
            break
    assert reached is not None and reached <= 5, reached
    button = await page.evaluate("""() => { const b = document.getElementById('help-button');
      return { name: b.textContent.trim(), hint: document.getElementById(
        b.getAttribute('aria-describedby')).textContent }; }""")
    assert button["name"] == "I need help now" and "only the facilitators" in button["hint"]
    await page.do(lambda p: p.keyboard.press("Enter"))
    await page.wait_for("() => document.activeElement?.id === 'help-title'")
    region = await page.evaluate("""() => { const s = document.getElementById('help-state');
      return { role: s.getAttribute('role'), live: s.getAttribute('aria-live'),
               inCard: document.getElementById('help-card').contains(s) }; }""")
    assert region == {"role": "status", "live": "polite", "inCard": True}
    alert = await fac.next(lambda m: m["type"] == "incident" and m.get("reason") == "alert")
    fac.send({"type": "incident", "incident": alert["incident"]["id"], "action": "ack"})
    await page.wait_for("() => document.getElementById('help-state').textContent"
                        ".includes('will be with you soon')")
    assert await page.evaluate("() => document.activeElement?.id") == "help-title"  # not moved
    await fac.close()
