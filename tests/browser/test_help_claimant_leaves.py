"""A facilitator who acknowledged someone's request and then leaves the room: the person's
card stops saying a facilitator will be with them and says we are reaching another one; a
console's receipt afterwards says it is on a facilitator's screen again."""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.browser.console_steps import enter, python_facilitator
from tests.browser.harness import Browser, Page, open_page
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
