"""The facilitator console against the participant's page, in one live room.

Issue 6, "done means" 2 and 4, through the real pages: a facilitator signs in through the
/login form, opens a room from the console (a role ticket, then `join`), and

- turns the lobby on, sees the newcomer waiting (who sees the calm waiting screen) and
  lets them in;
- mutes them: the server drops their voice frames (frames sent on the participant page's
  own WebSocket stop reaching a listener), the page cannot turn its microphone back on,
  and after "ask to unmute" the page asks — the microphone stays off until the person
  says yes — and the frames flow again;
- hides a message: it goes from every page;
- removes them (a removal screen), then bans them: from a new browser context on the same
  address the room refuses them (the participant reaches Hearth through a loopback
  forwarder whose connections come from 127.0.0.3, so the ban is theirs alone);
- sees a report of a real message with its verified text, and never a forged one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from argon2 import PasswordHasher
from twisted.internet import reactor
from twisted.protocols import portforward

from hearth.client.groupchat import GroupChat
from hearth.client.websocket import HearthClient
from hearth.moderation.accounts import AccountStore
from hearth.spaces.voice import build_frame
from tests.browser.console_steps import (
    APP,
    confirm,
    console_click,
    enter,
    my_id,
    open_room,
    signed_in_console,
)
from tests.browser.harness import Browser, Page, keys_ready, log_has, open_page, say
from tests.support.live import LiveServer, caught_up, until

pytestmark = pytest.mark.browser

PASSWORD = "a long test passphrase"


# --- helpers shared with test_crisis.py ------------------------------------------------------




def add_account(server: LiveServer, name: str) -> None:
    """A facilitator account in the server's data directory (a cheap hash: the test is not
    about argon2's cost; the server verifies with the parameters stored in the hash)."""
    data_dir = Path(server.hearth.node.venue.config.server.data_dir)
    AccountStore.in_data_dir(data_dir, PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)).add(
        name, PASSWORD, 0)














class SourceLink:
    """A loopback forwarder in front of Hearth whose connections come from `source`.

    Every browser context reaches the server from 127.0.0.1; a page that goes through this
    one reaches it from another loopback address, so a ban by address hits that page alone.
    The page itself still only ever talks to 127.0.0.1.
    """

    def __init__(self, target_port: int, source: str = "127.0.0.3") -> None:
        class Server(portforward.ProxyServer):  # type: ignore[misc]
            def connectionMade(self) -> None:
                self.transport.pauseProducing()
                client = self.clientProtocolFactory()
                client.setServer(self)
                reactor.connectTCP("127.0.0.1", target_port, client,  # type: ignore[attr-defined]
                                   bindAddress=(source, 0))

        factory = portforward.ProxyFactory("127.0.0.1", target_port)
        factory.protocol = Server
        self.port: Any = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"

    async def close(self) -> None:
        await self.port.stopListening()


class VoiceTap:
    """The participant page's WebSocket, routed through Playwright: the test can send voice
    frames to the server on that page's own connection (as its microphone would)."""

    def __init__(self) -> None:
        self.server: Any = None
        self.seq = 0

    async def install(self, page: Page) -> None:
        def route(p: Any) -> None:
            def handler(ws: Any) -> None:
                self.server = ws.connect_to_server()  # everything else passes through unchanged
            p.route_web_socket("**/ws", handler)
        await page.do(route)

    async def speak(self, page: Page, frames: int = 3) -> None:
        for _ in range(frames):
            self.seq += 1
            frame = build_frame(bytes(40), seq=self.seq, level=20)
            await page.do(lambda p, f=frame: self.server.send(f))


async def frames_heard(listener: HearthClient, before: int, timeout: float = 15.0) -> int:
    await until(lambda: len(listener.binary) > before, timeout,
                "a voice frame reaching the listener")
    return len(listener.binary)


# --- issue 6, done means 2 -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_facilitator_admits_mutes_hides_removes_and_bans_from_the_console(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    venue = server.hearth.node.venue
    console = await signed_in_console(server, browser, pages)
    fac_id = await open_room(console)

    # A listener near where the newcomer will stand (voice goes 7 m): a Python client.
    node = server.hearth.node
    listener = await server.client()
    await listener.join("circle", pseudonym="Python Ear",
                        ticket=venue.issue_ticket("facilitator", node.clock()))

    # The lobby, on from the console.
    await console.do(lambda p: p.click("#lobby"))
    await console.wait_for("() => document.getElementById('lobby').getAttribute('aria-pressed') === 'true'")
    assert venue.rooms["circle"].lobby_on

    link = SourceLink(server.port)
    try:
        participant = await open_page(browser, pages, link.url)
        tap = VoiceTap()
        await tap.install(participant)
        await enter(participant, "circle", "Rowan Pike", state="waiting")
        waiting = await participant.evaluate(
            "() => ({screen: !document.getElementById('waiting').hidden,"
            " room: !document.getElementById('room-layout').hidden,"
            " text: document.getElementById('waiting').textContent})")
        assert waiting["screen"] and not waiting["room"], waiting
        assert "waiting room" in waiting["text"] and "Take your time" in waiting["text"]

        # The console lists the newcomer; the facilitator lets them in.
        waiting_id = str(await console.wait_for(
            "() => document.querySelector('#waiting-list li')?.dataset.member"))
        assert "Rowan Pike" in await console.evaluate(
            "() => document.getElementById('waiting-list').textContent")
        await console_click(console, "admit", waiting_id)
        await participant.wait_for(f"() => {APP}.dataset.state === 'joined'")
        rowan = await my_id(participant)
        assert rowan == waiting_id
        assert await participant.evaluate("() => document.getElementById('waiting').hidden")
        await console.wait_for("() => document.getElementById('lobby-empty').hidden === false")

        # Voice frames from the page's own connection reach the listener...
        await tap.speak(participant, 3)
        await frames_heard(listener, 0)

        # ...until the facilitator mutes: the server drops them.
        await console_click(console, "mute", rowan)
        await console.wait_for(
            f"() => document.querySelector(\"#members li[data-member='{rowan}']\")?.dataset.muted === 'true'")
        await participant.wait_for(f"() => {APP}.dataset.muted === 'true'")
        assert venue.rooms["circle"].members[rowan].muted
        before = len(listener.binary)
        voice = venue.rooms["circle"].voice
        dropped = voice.dropped_muted
        await tap.speak(participant, 5)
        # The server dropped all five (it counts them), and the listener has read whatever
        # the server sent it meanwhile.
        await until(lambda: voice.dropped_muted == dropped + 5, what="five muted frames dropped")
        await caught_up(listener)
        assert len(listener.binary) == before, "a muted member's voice reached someone"

        # The page cannot turn its microphone on while muted: not by click, not by keyboard.
        await participant.do(lambda p: p.click("#mic", force=True))  # aria-disabled: still clickable
        await participant.do(lambda p: (p.focus("#mic"), p.keyboard.press("Enter")))
        state = await participant.evaluate(
            f"() => [{APP}.dataset.mic, document.getElementById('mic-note').textContent]")
        assert state[0] == "off" and "muted your microphone" in state[1], state

        # Ask to unmute: the mute is lifted, the page asks, the microphone stays off until yes.
        await console_click(console, "ask_unmute", rowan)
        await participant.wait_for("() => !document.getElementById('unmute-prompt').hidden")
        assert await participant.evaluate(f"() => [{APP}.dataset.muted, {APP}.dataset.mic]") == [
            "false", "off"]
        await participant.do(lambda p: p.click("#unmute-yes"))
        await participant.wait_for(f"() => {APP}.dataset.mic === 'on'")
        before = len(listener.binary)
        await tap.speak(participant, 3)
        await frames_heard(listener, before)

        # The lobby off again; a second participant comes straight in.
        await console.do(lambda p: p.click("#lobby"))
        await console.wait_for(
            "() => document.getElementById('lobby').getAttribute('aria-pressed') === 'false'")
        bystander = await open_page(browser, pages, server.http_url)
        await enter(bystander, "circle", "Bea Holm")
        bea = await my_id(bystander)

        # A message hidden from the console goes from every page.
        await keys_ready(participant, [fac_id, bea])
        await say(participant, "Please hide this one")
        for page in (console, bystander):
            await log_has(page, "Please hide this one")
        seq = await console.evaluate(
            "() => [...document.querySelectorAll('#chat-log .msg')].find((m) =>"
            " m.querySelector('.text').textContent === 'Please hide this one').dataset.seq")
        await console_click(console, "hide", str(seq))
        for page in (console, participant, bystander):
            await log_has(page, "A facilitator hid this message.")
            assert "Please hide this one" not in await page.evaluate(
                "() => document.getElementById('chat-log').textContent")

        # Remove: the removal screen.
        await console_click(console, "remove", rowan)
        await confirm(console)
        await participant.wait_for(f"() => {APP}.dataset.state === 'removed'")
        assert await participant.evaluate(
            "() => !document.getElementById('ended').hidden"
            " && document.getElementById('ended-reason').textContent") == \
            "A facilitator removed you from the room."

        # A removal is not a ban: they come back (same context, same address), and are banned.
        await enter(participant, "circle", "Rowan Pike")
        rowan = await my_id(participant)
        await console.wait_for(f"() => !!document.querySelector(\"#members li[data-member='{rowan}']\")")
        await console_click(console, "ban", rowan)
        await console.wait_for("() => !document.getElementById('confirm-ban').hidden")
        await console.do(lambda p: p.select_option("#confirm-minutes", "60"))
        await confirm(console)
        await participant.wait_for(f"() => {APP}.dataset.state === 'removed'")
        [ban] = venue.bans.bans
        assert ban.pseudonym == "Rowan Pike" and 3500 < ban.until - node.clock() <= 3600

        # A new browser context from the same address is refused, with the reason on the page.
        again = await open_page(browser, pages, link.url)
        await enter(again, "circle", "Rowan Again", state="refused")
        assert await again.evaluate("() => document.getElementById('ended-reason').textContent") == \
            "You cannot join this room for a while."
        # Nobody else is: the ban is that address's alone.
        other = await server.client()
        await other.join("circle", pseudonym="Still Welcome")
        assert bea in venue.rooms["circle"].members
        await other.close()
    finally:
        await link.close()
    await listener.close()


# --- issue 6, done means 4 -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_real_report_shows_in_the_console_with_its_verified_text_and_a_forged_one_never(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    console = await signed_in_console(server, browser, pages)
    fac_id = await open_room(console)
    reporter = await open_page(browser, pages, server.http_url)
    await enter(reporter, "circle", "Rita Reed")
    rita = await my_id(reporter)
    sender = await GroupChat.join(await server.client(), "circle", pseudonym="Sam Stone")
    mallory = await GroupChat.join(await server.client(), "circle", pseudonym="Mal Lorry")
    sam = sender.client.member
    assert sam is not None and mallory.client.member is not None
    await keys_ready(reporter, [fac_id, sam, mallory.client.member])
    await sender.keys_from([rita, mallory.client.member])
    await mallory.keys_from([sam, rita])

    threat = "I know where you live and I will come round tonight"
    await sender.say(threat)
    await log_has(reporter, threat)
    real = await mallory.next_message()
    assert real.text == threat

    # The participant reports it from the message's own "Report" button.
    await reporter.do(lambda p: p.click("#chat-log .msg:not(.mine) .msg-report"))
    await reporter.wait_for("() => !document.getElementById('report-form').hidden")
    assert threat in await reporter.evaluate("() => document.getElementById('report-quote').textContent")
    await reporter.do(lambda p: (p.fill("#report-reason", "a threat"), p.click("#report-send")))
    await log_has(reporter, "The facilitators have your report.")

    # The console has it at once (a live push), verified: the sender's real text.
    await console.wait_for("(text) => [...document.querySelectorAll('#reports .quote')]"
                           ".some((q) => q.textContent === text)", threat)
    item = await console.evaluate("() => document.querySelector('#reports li').textContent")
    assert "Sam Stone" in item and "Rita Reed" in item and "a threat" in item

    # Forgeries: a changed text under the real proof, and a message Rita never sent.
    from dataclasses import replace
    forged_text = "Rita Reed said she wants to hurt someone"
    mallory.report(replace(real, text=forged_text), ref="forged-1")
    refused = await mallory.client.next(lambda m: m.get("ref") == "forged-1")
    assert refused["type"] == "error" and refused["code"] == "report_invalid"
    mallory.report(replace(real, sender=rita, text=forged_text), ref="forged-2")
    refused = await mallory.client.next(lambda m: m.get("ref") == "forged-2")
    assert refused["type"] == "error" and refused["code"] == "report_invalid"

    # A second real report after the forgeries: once it shows, the forgeries would have too.
    await sender.say("second message, also reported")
    await log_has(reporter, "second message, also reported")
    await reporter.do(lambda p: p.locator("#chat-log .msg:not(.mine) .msg-report").last.click())
    await reporter.do(lambda p: p.click("#report-send"))
    await console.wait_for("() => document.querySelectorAll('#reports li').length === 2")
    # list_reports: the server's own list, drawn afresh (the old items are marked first)
    await console.evaluate("() => document.querySelectorAll('#reports li')"
                           ".forEach((li) => { li.dataset.stale = '1'; })")
    await console.do(lambda p: p.click("#reports-refresh"))
    await console.wait_for("() => document.querySelectorAll('#reports li').length === 2"
                           " && !document.querySelector('#reports li[data-stale]')")
    shown = await console.evaluate(
        "() => [...document.querySelectorAll('#reports .quote')].map((q) => q.textContent)")
    assert sorted(shown) == sorted([threat, "second message, also reported"])
    assert forged_text not in await console.evaluate("() => document.body.textContent")
    for c in (sender, mallory):
        await c.client.close()
