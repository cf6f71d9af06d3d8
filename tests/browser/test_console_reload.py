"""A console reloaded mid-incident comes back as it was: in the room it had open, as the
same member (so its claim holds and nothing re-opens), on duty if it was, with every open
incident listed in the state it is in — not at the room picker, deaf to alerts."""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.browser.console_steps import open_room, signed_in_console
from tests.browser.harness import Browser, Page
from tests.support.crisis import asks_for_help
from tests.support.live import LiveServer, until

pytestmark = pytest.mark.browser

CONSOLE = "document.getElementById('console')"


@pytest_twisted.ensureDeferred
async def test_a_reloaded_console_is_back_in_its_room_with_its_claim_its_duty_and_its_incidents(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    console = await signed_in_console(server, browser, pages)
    me = await open_room(console)
    await console.do(lambda p: p.click("#duty"))
    await console.wait_for("() => document.getElementById('duty').getAttribute('aria-pressed')"
                           " === 'true'")
    person, claimed = await asks_for_help(server.ws_url)
    other, waiting = await asks_for_help(server.ws_url, "Still Heron")
    row = "(id) => document.getElementById(`incident-${id}`)"
    await console.wait_for(f"(id) => ({row})(id) !== null", waiting)
    crisis = server.hearth.node.venue.crisis
    # claimed from this console: its own "acknowledge" on the incident
    await console.do(lambda p: p.click(f"#incident-{claimed} .incident-actions "
                                       "button[data-act='ack']"))
    await until(lambda: crisis.desk.incidents[claimed].claimed_by == ("ana",), what="the claim")

    await console.do(lambda p: p.reload())
    await console.wait_for(f"() => {CONSOLE}.dataset.state === 'joined'", timeout_ms=20_000)
    assert await console.evaluate(f"() => {CONSOLE}.dataset.me") == me  # resumed, not a newcomer
    assert await console.evaluate("() => document.getElementById('desk').hidden") is False
    await console.wait_for("() => document.getElementById('duty').getAttribute('aria-pressed')"
                           " === 'true'")
    assert me in crisis.on_duty
    # every open incident is listed again, each in its state
    for incident, state in ((claimed, "acknowledged"), (waiting, "open")):
        await console.wait_for(f"([id, s]) => ({row})(id)?.dataset.state === s", [incident, state])
    # the claim held through the reload: nothing re-opened once the closing grace was over
    grace = server.hearth.node.venue.config.session.closing_grace_seconds
    start = server.hearth.node.clock()
    await until(lambda: server.hearth.node.clock() - start > grace + 1.5, what="the grace")
    assert crisis.desk.incidents[claimed].state == "acknowledged"
    for client in (person, other):
        await client.close()
