"""The console says whether on-call was reached: an on-call alert that failed puts a warning
in the console's alert region; when it gets through at last, the warning gives way to the
news that on-call has it now. (What the server sends, and when, is tested live in
tests/live/test_crisis_delivery_live.py; here the node is told as its outbox tells it.)"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from tests.browser.console_steps import open_room, signed_in_console
from tests.browser.harness import Browser, Page
from tests.support.crisis import asks_for_help
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser

NOTES = "[...document.querySelectorAll('#delivery p')].map((p) => p.textContent)"


@pytest_twisted.ensureDeferred
async def test_a_failing_on_call_alert_that_gets_through_is_said_and_its_warning_goes(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    console = await signed_in_console(server, browser, pages)
    await open_room(console)
    person, incident = await asks_for_help(server.ws_url)
    other, second = await asks_for_help(server.ws_url, "Still Heron")
    await console.wait_for(f"() => document.getElementById('incident-{second}') !== null")
    node: Any = server.hearth.node
    node.delivery_failing("webhook:on-call", incident, 1, False)
    node.delivery_failing("webhook:on-call", second, 1, False)
    await console.wait_for(f"() => {NOTES}.filter((t) => t.includes('first try')).length === 2")

    node.delivery_failing("webhook:on-call", incident, 3, True)
    await console.wait_for(f"() => {NOTES}.some((t) => t.includes('got through'))")
    notes: list[str] = await console.evaluate(f"() => {NOTES}")
    failing = [n for n in notes if "first try" in n]
    # that alert's warning is gone; the other incident's stays: its alert has not got through
    assert len(failing) == 1 and second in failing[0], notes
    assert notes[-1] == (f"The on-call alert for incident {incident} got through "
                         "(webhook:on-call) after 3 failed tries: on-call has it now."), notes
    for client in (person, other):
        await client.close()
