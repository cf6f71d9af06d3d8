"""Steps in the facilitator console that several browser tests take."""

from __future__ import annotations

from typing import Any

from hearth.client.websocket import HearthClient
from tests.browser.harness import Browser, Page, open_page
from tests.support.live import LiveServer, until
from tests.support.signin import PASSWORD, add_account

APP = "document.getElementById('app')"


async def console_caught_up(server: LiveServer, console: Page) -> None:
    """Until the server has handled every frame the console sent before: the console asks
    for the room's reports (its refresh button), a frame that comes after them on its
    WebSocket, and the server counts it. A test that asserts a click sent nothing waits for
    this, never for a fixed time."""
    received = server.hearth.node.venue.stats.received
    before = received["list_reports"]
    await console.do(lambda p: p.click("#reports-refresh"))
    await until(lambda: received["list_reports"] > before,
                what="the server receiving the console's list_reports")


async def signed_in_console(server: LiveServer, browser: Browser, pages: list[Page],
                            name: str = "ana", axe: bool = False, role: str = "facilitator",
                            **options: Any) -> Page:
    """Through the real /login form to /console (`options`: Browser.page's, e.g. phone)."""
    add_account(server, name, role=role)
    page = await open_page(browser, pages, server.http_url, axe=axe, **options)
    await page.goto("/login")

    def sign_in(p: Any) -> None:
        p.fill("#login-name", name)
        p.fill("#login-password", PASSWORD)
        p.click(".login-form button[type=submit]")
        p.wait_for_url("**/console")
    await page.do(sign_in)
    return page


async def open_room(console: Page, room: str = "circle", name: str = "Ana Rivers") -> str:
    """Open a room from the console, shown in it as `name` (the facilitator chooses it: it is
    not the account name); returns the facilitator's member id."""
    def choose_and_open(p: Any) -> None:
        p.fill("#console-name", name)
        p.click(f".open-room[data-room='{room}']")
    await console.do(choose_and_open)
    return str(await console.wait_for(
        f"() => {CONSOLE}.dataset.state === 'joined' && {CONSOLE}.dataset.me"))


async def enter(page: Page, room: str, pseudonym: str, *, country: str = "GB",
                state: str = "joined") -> None:
    """Through the join page into the room page, until the page is in `state`."""
    await page.goto(f"/join/{room}")

    def fill(p: Any) -> None:
        p.fill("#pseudonym", pseudonym)
        p.check("#accept-rules")
        p.select_option("#country", country)
        p.click("#enter")
        p.wait_for_url(f"**/room/{room}*")
    await page.do(fill)
    await page.wait_for(f"(s) => {APP}?.dataset.state === s", state)


async def my_id(page: Page) -> str:
    return str(await page.wait_for(f"() => {APP}.dataset.me"))


async def console_click(console: Page, act: str, member: str) -> None:
    await console.do(lambda p: p.click(f"button[data-act='{act}'][data-member='{member}']"))


async def confirm(console: Page) -> None:
    await console.wait_for("() => !document.getElementById('confirm').hidden")
    await console.do(lambda p: p.click("#confirm-yes"))


CONSOLE = "document.getElementById('console')"


async def python_facilitator(server: LiveServer, account: str = "ben") -> HearthClient:
    """A facilitator in the circle through the Python client (quicker than a console page)."""
    node = server.hearth.node
    fac: HearthClient = await server.client()
    await fac.join("circle", ticket=node.venue.issue_ticket("facilitator", node.clock(),
                                                            account=account))
    return fac
