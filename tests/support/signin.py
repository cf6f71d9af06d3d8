"""Facilitator accounts and sign-in over HTTP, as the console does it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from twisted.web.client import Agent, FileBodyProducer, PartialDownloadError, readBody
from twisted.web.http_headers import Headers

from hearth.moderation.accounts import AccountStore
from tests.support.live import LiveServer

PASSWORD = "correct horse battery staple"


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def console_csrf(html: str) -> str:
    found = re.search(r'data-csrf="([^"]+)"', html)
    assert found, html
    return found.group(1)


def add_account(live: LiveServer, name: str = "ana", role: str = "facilitator") -> AccountStore:
    store = AccountStore.in_data_dir(Path(live.hearth.node.venue.config.server.data_dir))
    store.add(name, PASSWORD, 0, role=role)  # type: ignore[arg-type]
    return store


def browser(live: LiveServer, bind: str | None = None) -> HttpBrowser:
    return HttpBrowser(live.http_url, bind=bind)


@dataclass
class Reply:
    code: int
    headers: Headers
    body: str

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[-1] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpBrowser:
    """Agent plus a cookie jar: just enough of a browser for the sign-in pages (no JavaScript)."""
    base: str
    cookies: dict[str, str] = field(default_factory=dict)
    set_cookies: list[str] = field(default_factory=list)
    bind: str | None = None

    async def request(self, method: str, path: str, form: dict[str, str] | None = None,
                      headers: dict[str, str] | None = None, raw: bytes | None = None) -> Reply:
        from twisted.internet import reactor
        agent = Agent(reactor, bindAddress=(self.bind, 0) if self.bind else None)
        sent = Headers({k: [v] for k, v in (headers or {}).items()})
        if self.cookies:
            sent.setRawHeaders("cookie", ["; ".join(f"{k}={v}" for k, v in self.cookies.items())])
        body = None
        if form is not None or raw is not None:
            data = raw if raw is not None else urlencode(form or {}).encode()
            sent.setRawHeaders("content-type", ["application/x-www-form-urlencoded"])
            body = FileBodyProducer(BytesIO(data))
        response = await agent.request(method.encode(), (self.base + path).encode(), sent, body)
        try:
            content = await readBody(response)
        except PartialDownloadError as err:  # a refused WebSocket handshake drops the connection
            content = err.response or b""
        for line in response.headers.getRawHeaders("set-cookie") or []:
            self.set_cookies.append(line)
            name, _, rest = line.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in line.lower() or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return Reply(response.code, response.headers, content.decode("utf-8"))

    async def login_form(self) -> str:
        page = await self.request("GET", "/login")
        assert page.code == 200
        return csrf_in(page.body)

    async def login(self, name: str, password: str, code: str = "") -> Reply:
        csrf = await self.login_form()
        return await self.request("POST", "/login", {"name": name, "password": password,
                                                     "code": code, "csrf": csrf})


def auth_of(live: LiveServer) -> Any:
    site = live.hearth.listeners[0].factory
    return site.resource.children[b"login"].auth


async def ticket_of(b: HttpBrowser) -> str:
    """A role ticket, as the console asks for one (the browser must be signed in)."""
    console = await b.request("GET", "/console")
    assert console.code == 200, console.code
    reply = await b.request("POST", "/console/ticket",
                            headers={"X-CSRF-Token": console_csrf(console.body)})
    assert reply.code == 200, reply.body
    return str(reply.json()["ticket"])


async def logout(b: HttpBrowser) -> Reply:
    console = await b.request("GET", "/console")
    return await b.request("POST", "/logout", {"csrf": console_csrf(console.body)})
