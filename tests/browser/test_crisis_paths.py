"""Issue 14 in the browser: the console never hides an alert; the help card on every path, in
the participant's language entirely; the detector asks again after "not now" (5 minutes, on
the page's injected clock), after a resolved request and after "I'm OK"; the reason for
external help is asked for and recorded.

Participants other than the one under test are Python clients: they press, flag and worry
through the same protocol as the pages, and keep the tests quick.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import pytest_twisted

from hearth.client.websocket import HearthClient
from hearth.spaces.config import HearthConfig
from tests.browser.console_steps import (
    APP,
    console_caught_up,
    enter,
    open_room,
    python_facilitator,
    signed_in_console,
)
from tests.browser.harness import AXE, Browser, Page, axe, log_has, open_page
from tests.support.detector_cases import load_cases
from tests.support.live import LiveServer, until

pytestmark = pytest.mark.browser

BANNER = """() => {
  const box = document.getElementById('alert-banner');
  if (!box || box.hidden) return null;
  const r = box.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + 5, r.top + r.height / 2);
  return { top: r.top, bottom: r.bottom, height: window.innerHeight, scrollY: window.scrollY,
           onTop: box.contains(hit), title: document.title,
           entries: [...box.querySelectorAll('li')].map((li) => li.textContent),
           live: document.getElementById('alert-live').textContent,
           label: box.getAttribute('aria-label') };
}"""
CARD = """() => {
  const card = document.getElementById('help-card');
  return card.hidden ? null : { title: document.getElementById('help-title').textContent,
    state: document.getElementById('help-state').textContent,
    lines: document.getElementById('help-lines').textContent,
    links: [...document.querySelectorAll('#help-lines a')].map((a) => a.href) };
}"""
RISKY = "I have 40 pills saved and tonight is the night"
# How a session ends: the model fires on it at high severity, the rules do not (docs/crisis.md).
GOODNIGHT = "I'm going to bed, goodnight all"


@pytest.fixture
def config(config: HearthConfig, request: pytest.FixtureRequest) -> HearthConfig:
    """The shared test config; `detector_model` on where a test is parametrized with True."""
    model = bool(getattr(request, "param", False))
    return dataclasses.replace(
        config, crisis=dataclasses.replace(config.crisis, detector_model=model))


async def python_person(server: LiveServer, name: str, address: str) -> HearthClient:
    person: HearthClient = await server.client(source_address=address)
    await person.join("circle", pseudonym=name)
    return person


# --- 7. the console never hides an alert --------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_console_scrolled_to_the_bottom_shows_every_alert_until_acknowledged(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    console = await signed_in_console(server, browser, pages, axe=AXE.exists())
    await open_room(console)
    title = await console.evaluate("() => document.title")
    scrolled = await console.evaluate(
        "() => { window.scrollTo(0, document.documentElement.scrollHeight); return window.scrollY; }")
    assert scrolled > 300, "the console must be long enough to scroll for this test to mean much"

    otter = await python_person(server, "Quiet Otter", "127.0.0.7")
    otter.send({"type": "help"})
    await otter.expect("help_received")
    seen = await console.wait_for(BANNER)
    assert seen["top"] == 0 and 0 < seen["bottom"] < seen["height"] and seen["onTop"]
    assert seen["scrollY"] >= scrolled - 1  # the page did not move: the banner came to it
    [entry] = seen["entries"]
    assert "Quiet Otter" in entry and "high" in entry and "Go to the alert" in entry
    assert seen["title"] == f"(1) Alert: Quiet Otter · {title}"
    assert seen["label"] == "Alerts waiting for you"
    await console.wait_for("() => document.getElementById('alert-live').textContent"
                           ".includes('Quiet Otter')")  # announced to screen readers

    heron = await python_person(server, "Calm Heron", "127.0.0.8")
    heron.send({"type": "flag", "category": "intent", "severity": "medium"})
    await heron.expect("flag_received")
    await console.wait_for(f"() => ({BANNER})()?.entries.length === 2")
    stacked = await console.evaluate(BANNER)
    assert "Calm Heron" in stacked["entries"][0] and "Quiet Otter" in stacked["entries"][1]
    assert stacked["title"].startswith("(2) Alert: Calm Heron")
    if AXE.exists():  # (axe-core from npm: tests/run.sh) the banner breaks no rule
        assert await axe(console) == []
    # the console told the server it received both: only now do the people read "told"
    incidents = server.hearth.node.venue.crisis.desk.incidents
    await until(lambda: all(("seen", "ana") in [(e, a) for _, e, a in i.history]
                            for i in incidents.values()), what="both receipts")

    # By keyboard from the top of the page: the banner comes within a few Tabs.
    await console.evaluate("() => { document.querySelector('.skip-link').focus();"
                           " window.scrollTo(0, 999999); }")
    for _ in range(12):
        await console.do(lambda p: p.keyboard.press("Tab"))
        if await console.evaluate("() => document.getElementById('alert-banner')"
                                  ".contains(document.activeElement)"):
            break
    else:
        raise AssertionError("the banner was not reached by keyboard")
    assert await console.evaluate("() => document.activeElement.dataset.act") == "banner_go"
    await console.do(lambda p: p.keyboard.press("Enter"))
    landed = await console.evaluate(
        "() => { const h = document.activeElement; const r = h.getBoundingClientRect();"
        " const b = document.getElementById('alert-banner').getBoundingClientRect();"
        " return { text: h.textContent, top: r.top, below: r.top >= b.bottom - 1,"
        " visible: r.bottom <= window.innerHeight }; }")
    assert "Calm Heron" in landed["text"] and landed["below"] and landed["visible"], landed

    # Acknowledged (from the banner, by keyboard): its entry goes; the other stays.
    await console.do(lambda p: (p.focus(f"#alert-banner button[data-act='banner_ack']"
                                        f"[data-member='{otter_incident(server)}']"),
                                p.keyboard.press("Enter")))
    await console.wait_for(f"() => ({BANNER})()?.entries.length === 1")
    left = await console.evaluate(BANNER)
    assert "Calm Heron" in left["entries"][0] and left["title"].startswith("(1) Alert: Calm Heron")
    # Acknowledged anywhere (here: another facilitator): the banner and the title clear.
    ben = await python_facilitator(server)
    ben.send({"type": "incident", "incident": incident_of(server, "Calm Heron"), "action": "ack"})
    await console.wait_for(f"() => ({BANNER})() === null")
    assert await console.evaluate("() => document.title") == title
    assert await console.evaluate("() => document.body.style.paddingTop") == ""
    for client in (otter, heron, ben):
        await client.close()


def incident_of(server: LiveServer, pseudonym: str) -> str:
    return next(i.id for i in server.hearth.node.venue.crisis.desk.incidents.values()
                if i.pseudonym == pseudonym)


def otter_incident(server: LiveServer) -> str:
    return incident_of(server, "Quiet Otter")


# --- 6. external help: the basis first, then a watch until confirmed ------------------------------


@pytest_twisted.ensureDeferred
async def test_external_help_asks_for_consent_or_imminent_risk_and_records_which(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    console = await signed_in_console(server, browser, pages)
    await open_room(console)
    otter = await python_person(server, "Quiet Otter", "127.0.0.7")
    otter.send({"type": "help"})
    incident = (await otter.expect("help_received"))["incident"]
    await console.wait_for(f"() => document.getElementById('incident-{incident}')")
    card = f"#incident-{incident}"
    await console.do(lambda p: p.click(f"{card} button[data-act='ack']"))
    await console.wait_for(f"() => document.querySelector('{card}').dataset.state === 'acknowledged'")
    await console.do(lambda p: p.click(f"{card} button[data-act='external']"))
    form = await console.evaluate(
        f"() => {{ const f = document.querySelector('{card} .basis-form');"
        " return { shown: !f.hidden, legend: f.querySelector('legend').textContent,"
        " options: [...f.querySelectorAll('input[type=radio]')].map((r) => r.value),"
        " focused: f.contains(document.activeElement) }; }")
    assert form == {"shown": True, "legend": "Before requesting external help, record on what basis:",
                    "options": ["consent", "imminent_risk"], "focused": True}
    # Without a choice the form does not go.
    await console.do(lambda p: p.click(f"{card} button[data-act='external_now']"))
    await console_caught_up(server, console)
    assert server.hearth.node.venue.crisis.desk.incidents[incident].state == "acknowledged"
    await console.do(lambda p: (p.check(f"{card} .basis-form input[value='imminent_risk']"),
                                p.click(f"{card} button[data-act='external_now']")))
    await console.wait_for(f"() => document.querySelector('{card}').dataset.state"
                           " === 'external_help_requested'")
    recorded = server.hearth.node.venue.crisis.desk.incidents[incident]
    assert recorded.external_basis == "imminent_risk"
    note = await console.evaluate(f"() => document.querySelector('{card} .external-note').textContent")
    assert "for imminent risk, without their consent" in note and "alerted again" in note
    await console.do(lambda p: p.click(f"{card} button[data-act='reached']"))
    await console.wait_for(f"() => document.querySelector('{card}').dataset.state === 'resolved'")
    assert server.hearth.node.venue.crisis.desk.incidents[incident].outcome == \
        "external_help_confirmed"
    await otter.close()


# --- 3 and 10. the card on every path, in the participant's language entirely --------------------


@pytest_twisted.ensureDeferred
async def test_the_worried_path_shows_the_card_and_it_is_spanish_entirely(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    page = await open_page(browser, pages, server.http_url, locale="es-MX")
    await page.goto("/?lang=es")
    await enter(page, "circle", "Luna Clara", country="MX")
    friend = await python_person(server, "Quiet Otter", "127.0.0.7")
    await page.wait_for(f"() => document.querySelector(\"#members li[data-member='{friend.member}']\")")
    await page.do(lambda p: p.click(f"#members button[data-focus-key='worried:{friend.member}']"))
    await page.do(lambda p: p.click("#worried-yes"))
    await log_has(page, "Estamos avisando a un facilitador sobre Quiet Otter")
    card = await page.wait_for(CARD)
    assert card["title"] == "Ayuda para alguien que te preocupa"
    assert card["state"].startswith("Gracias. Estamos avisando a un facilitador sobre Quiet Otter")
    lines = card["lines"]
    assert "México" in lines and "911" in lines and "Fuente: fuentes públicas, noviembre de 2026" in lines
    for english in ("Source", "public sources", "Not yet verified", "Aún sin verificar", "Call ",
                    "general knowledge", "Línea de la Vida"):  # the last: not verified yet
        assert english not in lines, english

    # a facilitator's console receives it: now, and only now, it is "on a facilitator's
    # screen" (and still not "told": nobody has answered)
    fac = await python_facilitator(server)
    incident = incident_of(server, "Quiet Otter")
    fac.send({"type": "alert_seen", "incident": incident})
    on_screen = "Lo que dijiste sobre Quiet Otter ya está en la pantalla de un facilitador"
    await log_has(page, on_screen)
    await page.wait_for("(text) => document.getElementById('help-state').textContent"
                        ".startsWith(text)", on_screen)

    async def country(code: str) -> dict[str, Any]:
        await page.do(lambda p: p.select_option("#help-country", code))
        shown: dict[str, Any] = await page.evaluate(CARD)
        return shown
    colombia = await country("CO")
    assert "WhatsApp +57 300 754 8933" in colombia["lines"] and "123" in colombia["lines"]
    assert "https://wa.me/573007548933" in colombia["links"]
    assert "Para quienes están en Bogotá" in colombia["lines"]
    argentina = await country("AR")  # nothing verified there yet: the way to act now remains
    assert "Si estás en peligro inmediato, llama al número de emergencias de tu país." in \
        argentina["lines"]
    assert "135" not in argentina["lines"] and "Find A Helpline" in argentina["lines"]
    chile = await country("CL")
    assert "Llama al *4141" in chile["lines"] and "tel:*4141" in chile["links"]
    united_states = await country("US")
    assert "Idiomas: inglés y español." in united_states["lines"]
    assert "Atiende en inglés y en español." in united_states["lines"]
    for client in (friend, fac):
        await client.close()


# --- 3 and 4. the detector: the card whatever the answer; asks again when it should -------------


async def type_risky(page: Page, text: str = RISKY) -> bool:
    """Type and press Enter: True if the detector asked (the text waits), False if it went."""
    def send(p: Any) -> None:
        p.fill("#chat-input", text)
        p.press("#chat-input", "Enter")
    await page.do(send)
    asked = await page.wait_for(
        "(text) => !document.getElementById('care-prompt').hidden ? 'asked'"
        " : [...document.querySelectorAll('#chat-log .msg.mine .text')].some((n) => n.textContent"
        " === text) ? 'sent' : null", text)
    return bool(asked == "asked")


@pytest_twisted.ensureDeferred
async def test_the_detector_asks_again_after_5_minutes_a_resolution_and_i_m_ok(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    fac = await python_facilitator(server)
    page = await open_page(browser, pages, server.http_url)
    await page.do(lambda p: p.clock.install())  # the page's own clock, moved on by the test
    await enter(page, "circle", "Quiet Otter", country="GB")
    await page.wait_for(f"() => {APP}.dataset.detector === 'ready'")

    assert await type_risky(page)
    await page.do(lambda p: p.click("#care-cancel"))  # "Not now"
    card = await page.wait_for(CARD)
    assert card["title"] == "Help is here, whenever you need it"
    assert "Samaritans" in card["lines"] and "999" in card["lines"]
    assert not await type_risky(page, RISKY + " again")  # quiet: it went to the room
    await page.do(lambda p: p.clock.fast_forward("04:50"))
    assert not await type_risky(page, RISKY + " still")
    await page.do(lambda p: p.clock.fast_forward("00:15"))  # 5 minutes since "not now"
    assert await type_risky(page, RISKY + " later")
    await page.do(lambda p: p.click("#care-send"))  # "No, send my message": quiet again
    await page.wait_for(CARD)
    await log_has(page, RISKY + " later")
    await page.do(lambda p: p.clock.fast_forward("05:01"))

    # Yes: the card with "received, reaching a facilitator", and no question while it is open.
    assert await type_risky(page, RISKY + " now")
    await page.do(lambda p: p.click("#care-yes"))
    card = await page.wait_for(f"() => {{ const c = ({CARD})(); return c?.state.includes("
                               "'reaching a facilitator') ? c : null; }")
    assert "Samaritans" in card["lines"] and "screen" not in card["state"]
    alert = await fac.next(lambda m: m["type"] == "incident" and m.get("reason") == "alert")
    incident = alert["incident"]["id"]
    await page.do(lambda p: p.click("#care-send"))  # sends the message that waited
    await page.do(lambda p: p.clock.fast_forward("10:00"))
    assert not await type_risky(page, RISKY + " meanwhile")

    # Resolved: the detector asks again.
    fac.send({"type": "incident", "incident": incident, "action": "resolve",
              "outcome": "de_escalated"})
    await page.wait_for("() => document.getElementById('help-state').textContent"
                        ".includes('closed this request')")
    assert await type_risky(page, RISKY + " after")
    await page.do(lambda p: p.click("#care-yes"))
    await page.wait_for("() => !document.getElementById('im-ok').hidden")
    await page.do(lambda p: p.click("#care-cancel"))  # "Close": the message stays in the box
    assert not await type_risky(page, RISKY + " waiting")
    # "I'm OK": the detector asks again.
    await page.do(lambda p: p.click("#im-ok"))
    await page.wait_for("() => document.getElementById('help-state').textContent"
                        ".startsWith('Thank you for letting us know')")
    assert await type_risky(page, RISKY + " once more")
    await fac.close()


@pytest.mark.parametrize("config", [False, True], ids=["default", "model_on"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_a_goodnight_goes_to_the_room_and_the_rules_still_ask(
        config: HearthConfig, server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    """[crisis] detector_model is off by default: the page runs the rules alone, which let a
    goodbye through and still ask about a clear risk. Turned on, the model keeps quiet on the
    goodbye too (a set of closings quiets it), and the rules still ask."""
    [risk] = [c for c in load_cases() if c["text"] == "I'm going to take all my pills tonight."]
    assert risk["expect"] == {"category": "means_method", "severity": "high"}  # the rules alone
    page = await open_page(browser, pages, server.http_url)
    await enter(page, "circle", "Quiet Otter", country="GB")
    await page.wait_for(f"() => {APP}.dataset.detector === 'ready'")
    assert not await type_risky(page, GOODNIGHT)
    await log_has(page, GOODNIGHT)
    assert await type_risky(page, risk["text"])


@pytest_twisted.ensureDeferred
async def test_someone_waiting_in_the_lobby_can_ask_for_help_and_hears_when_it_reached_someone(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    fac = await python_facilitator(server)
    fac.send({"type": "lobby", "on": True})
    await fac.next(lambda m: m["type"] == "room_settings" and m["lobby"])
    page = await open_page(browser, pages, server.http_url)
    await enter(page, "circle", "Quiet Otter", country="GB", state="waiting")
    await page.do(lambda p: p.click("#help-button"))
    await page.wait_for("() => document.getElementById('help-state').textContent"
                        ".includes('reaching a facilitator')")
    alert = await fac.next(lambda m: m["type"] == "incident" and m.get("reason") == "alert")
    assert alert["incident"]["pseudonym"] == "Quiet Otter"
    fac.send({"type": "alert_seen", "incident": alert["incident"]["id"]})
    await page.wait_for("() => document.getElementById('help-state').textContent"
                        ".startsWith(\"Your request is on a facilitator's screen\")")
    assert await page.evaluate(f"() => {APP}.dataset.state") == "waiting"
    await fac.close()
