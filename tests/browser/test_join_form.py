"""The join form checks the pseudonym with the server's rules, and never loses what was chosen.

Issue 21 point 3: `<b>Hi</b>` (and any name the room would refuse for a rule the page can
check) is refused on the join page itself, with the sentence the server would give, in the
page's language. A refusal only the room can make (the name is taken there) brings the
person back to the form filled in as it was — pseudonym, colour, shape, country, the rules
accepted — with the refusal said on the pseudonym field.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from hearth.spaces.pseudonyms import MESSAGES
from tests.browser.harness import Browser, Page, open_page
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser

ERROR = "() => document.getElementById('join-error').textContent"
FIELD = """() => { const p = document.getElementById('pseudonym');
  return [p.value, p.getAttribute('aria-invalid'), document.activeElement === p]; }"""


async def submit(page: Page, name: str, *, colour: str | None = None, shape: str | None = None,
                 country: str = "MX") -> None:
    def fill(p: Any) -> None:
        p.fill("#pseudonym", name)
        p.check("#accept-rules")
        if colour:
            p.check(f"input[name='colour'][value='{colour}']")
        if shape:
            p.check(f"input[name='shape'][value='{shape}']")
        p.select_option("#country", country)
        p.click("#enter")
    await page.do(fill)


@pytest.mark.parametrize(("lang", "name", "sentence"), [
    ("en", "<b>Hi</b>", MESSAGES["characters"][1]),
    ("en", "Staff Member", MESSAGES["reserved"][1]),
    ("en", "   x  ", MESSAGES["length"][1].format(min=2, max=24)),
    ("es", "<b>Hola</b>", "Usa solo letras, números, espacios, guiones, apóstrofos y puntos."),
    ("es", "F.a-c i l i t a d o r a", "Ese nombre podría confundirse con una insignia de facilitación o "
                                      "del equipo; elige otro."),
])
@pytest_twisted.ensureDeferred
async def test_the_form_refuses_what_the_room_would_with_the_servers_sentence(
        server: LiveServer, browser: Browser, pages: list[Page], lang: str, name: str,
        sentence: str) -> None:
    page = await open_page(browser, pages, server.http_url)
    await page.goto(f"/join/circle?lang={lang}")
    await submit(page, name)
    await page.wait_for(f"(s) => ({ERROR})() === s", sentence)
    assert "/join/circle" in await page.evaluate("() => location.pathname")
    value, invalid, focused = await page.evaluate(FIELD)
    assert (value, invalid, focused) == (name, "true", True)


@pytest_twisted.ensureDeferred
async def test_a_name_only_the_room_refuses_brings_the_form_back_as_it_was(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    first = await open_page(browser, pages, server.http_url)
    await first.join("circle", pseudonym="Quiet Robin")
    page = await open_page(browser, pages, server.http_url)
    await page.goto("/join/circle?lang=es")
    await submit(page, "  quiet   ROBIN ", colour="#2a9d8f", shape="leaf", country="MX")
    # The room refuses it (taken there); the page comes back to the form, filled in.
    await page.wait_for("() => location.pathname === '/join/circle'"
                        " && document.getElementById('join-error').textContent !== ''")
    assert await page.evaluate(ERROR) == \
        "Alguien en la sala ya usa ese seudónimo. Elige otro."
    assert await page.evaluate("() => location.hash") == ""  # nothing left in the address
    value, invalid, focused = await page.evaluate(FIELD)
    assert (value, invalid, focused) == ("quiet ROBIN", "true", True)
    kept = await page.evaluate("""() => [
      document.querySelector("input[name='colour']:checked").value,
      document.querySelector("input[name='shape']:checked").value,
      document.getElementById('country').value, document.getElementById('accept-rules').checked,
      document.getElementById('preview-use').getAttribute('href')]""")
    assert kept == ["#2a9d8f", "leaf", "MX", True, "#shape-leaf"]
    # Another name, and in.
    await page.do(lambda p: p.fill("#pseudonym", "Robin Serena"))
    await page.do(lambda p: p.click("#enter"))
    await page.wait_for("() => document.getElementById('app')?.dataset.state === 'joined'")
