"""Someone leaves mid-incident. A facilitator who acknowledged someone's request and then
leaves the room: the person's card stops saying a facilitator will be with them and says we
are reaching another one; a console's receipt afterwards says it is on a facilitator's
screen again. The person who asked leaves: the console says so, on the incident and in its
live region, and the incident stays open."""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.browser.console_steps import enter, open_room, python_facilitator, signed_in_console
from tests.browser.harness import Browser, Page, open_page
from tests.support.crisis import asks_for_help
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser

STATE = "document.getElementById('help-state').textContent"


@pytest_twisted.ensureDeferred
async def test_the_card_never_says_someone_is_coming_after_they_left(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    ana = await python_facilitator(server, "ana")
    page = await open_page(browser, pages, server.http_url)
    await enter(page, "circle", "Quiet Otter")
    await page.do(lambda p: p.click("#help-button"))
    alert = await ana.next(lambda m: m["type"] == "incident" and m.get("reason") == "alert")
    incident = alert["incident"]["id"]
    ana.send({"type": "incident", "incident": incident, "action": "ack"})
    await page.wait_for(f"() => {STATE}.includes('will be with you soon')")

    ben = await python_facilitator(server, "ben")
    ana.send({"type": "leave"})
    await page.wait_for(f"() => {STATE}.startsWith('The facilitator who had your request had to "
                        "leave. We are reaching another facilitator')")
    again = await ben.next(lambda m: m["type"] == "incident" and m.get("reason") == "alert",
                           timeout=10)
    assert again["cause"] == "responder_left" and again["incident"]["state"] == "open"
    ben.send({"type": "alert_seen", "incident": incident})
    await page.wait_for(f"() => {STATE}.startsWith(\"Your request is on a facilitator's screen\")")
    await ben.close()


@pytest_twisted.ensureDeferred
async def test_the_console_says_when_the_person_left_and_keeps_the_incident_open(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    console = await signed_in_console(server, browser, pages)
    await open_room(console)
    person, incident = await asks_for_help(server.ws_url)
    row = f"document.getElementById('incident-{incident}')"
    await console.wait_for(f"() => {row} !== null")
    person.send({"type": "leave"})
    await console.wait_for(f"() => !{row}.querySelector('.left-note').hidden")
    note = await console.evaluate(f"() => {row}.querySelector('.left-note').textContent")
    assert note.startswith("They left the room at"), note
    await console.wait_for("() => document.getElementById('alert-live').textContent"
                           ".includes('has left')")
    assert await console.evaluate(f"() => {row}.dataset.state") == "open"
