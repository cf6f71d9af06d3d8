"""Behind a reverse proxy: the client's address comes from X-Forwarded-For only when the
TCP peer is a trusted proxy, and is used (as a keyed hash) for bans and limits."""

from __future__ import annotations

import functools
import urllib.request
from typing import Any

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

import hearth.client.websocket
from hearth.client.websocket import HearthClient, ServerError
from hearth.web.proxy import client_address, is_loopback, trusted_networks
from hearth.web.service import make_hearth
from tests.support.config import make_config

TRUSTED = trusted_networks(["127.0.0.1", "10.1.0.0/16", "::1"])


@pytest.mark.parametrize("peer,header,expected", [
    ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
    ("127.0.0.1", "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # the hop the proxy added
    ("127.0.0.1", "203.0.113.7 , 2001:db8::5", "2001:db8::5"),
    ("10.1.2.3", "203.0.113.9", "203.0.113.9"),
    ("::ffff:127.0.0.1", "203.0.113.7", "203.0.113.7"),
    ("127.0.0.1", "not an address", "127.0.0.1"),
    ("127.0.0.1", None, "127.0.0.1"),
    ("192.0.2.50", "203.0.113.7", "192.0.2.50"),  # not a proxy we trust: header ignored
])
def test_client_address(peer: str, header: str | None, expected: str) -> None:
    assert client_address(peer, header, TRUSTED) == expected


def test_no_trusted_proxies_means_the_header_is_never_read() -> None:
    assert client_address("127.0.0.1", "203.0.113.7", ()) == "127.0.0.1"
    assert is_loopback("::1") and is_loopback("127.0.0.5") and not is_loopback("10.0.0.1")


async def through_proxy(monkeypatch: pytest.MonkeyPatch, url: str, forwarded: str) -> Any:
    """A client whose handshake carries X-Forwarded-For, as nginx would add it."""
    monkeypatch.setattr(hearth.client.websocket, "WebSocketClientFactory", functools.partial(
        WebSocketClientFactory, headers={"X-Forwarded-For": forwarded}))
    try:
        return await HearthClient.connect(url)
    finally:
        monkeypatch.undo()


async def ban_then_rejoin(monkeypatch: pytest.MonkeyPatch, trusted: list[str],
                          banned_from: str, rejoin_from: str) -> str:
    """A facilitator bans a member that came through the 'proxy'; who can join again?"""
    config = make_config(server={"trusted_proxies": trusted})
    hearth = make_hearth(config, reactor, ["tcp:0:interface=127.0.0.1"])
    hearth.service.startService()
    try:
        await hearth.when_listening()
        url = f"ws://127.0.0.1:{hearth.listeners[0].port.getHost().port}/ws"
        node = hearth.node
        host = await HearthClient.connect(url)
        await host.join("circle", ticket=node.venue.issue_ticket("facilitator", node.clock()))
        member = await through_proxy(monkeypatch, url, banned_from)
        await member.join("circle")
        host.send({"type": "ban", "member": member.member, "minutes": 10})
        code, _ = await member._with_timeout(member.closed, 5, "the ban")
        assert code == 4003
        again = await through_proxy(monkeypatch, url, rejoin_from)
        try:
            await again.join("circle")
            return "joined"
        except ServerError as refused:
            return refused.code
    finally:
        await hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_ban_follows_the_forwarded_address_from_a_trusted_proxy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert await ban_then_rejoin(monkeypatch, ["127.0.0.1"], "203.0.113.7",
                                 "203.0.113.7") == "banned"
    # Another client behind the same proxy is not caught by that ban.
    assert await ban_then_rejoin(monkeypatch, ["127.0.0.1"], "203.0.113.7",
                                 "203.0.113.8") == "joined"


@pytest_twisted.ensureDeferred
async def test_an_untrusted_peer_cannot_choose_its_address(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # No trusted proxies: the header is ignored, the TCP peer (127.0.0.1) is what was banned.
    assert await ban_then_rejoin(monkeypatch, [], "203.0.113.7", "203.0.113.8") == "banned"


@pytest_twisted.ensureDeferred
async def test_hsts_when_a_trusted_proxy_terminated_tls() -> None:
    def headers(port: int, extra: dict[str, str]) -> dict[str, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", headers=extra)
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(response.headers)

    for trusted, expected in (([], False), (["127.0.0.1"], True)):
        hearth = make_hearth(make_config(server={"trusted_proxies": trusted}), reactor,
                             ["tcp:0:interface=127.0.0.1"])
        hearth.service.startService()
        try:
            await hearth.when_listening()
            port = hearth.listeners[0].port.getHost().port
            got = await deferToThread(headers, port, {"X-Forwarded-Proto": "https"})
            assert ("Strict-Transport-Security" in got) is expected
            plain = await deferToThread(headers, port, {})
            assert "Strict-Transport-Security" not in plain
        finally:
            await hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_sign_in_cookies_are_secure_when_a_trusted_proxy_terminated_tls() -> None:
    """Behind a TLS-terminating proxy the browser is on HTTPS: the session cookie must be
    Secure (and `__Host-`), or it could leak over a plain-HTTP request. Only a trusted
    proxy's X-Forwarded-Proto counts."""
    from tests.support.live import start_server
    from tests.support.signin import PASSWORD, add_account, browser, csrf_in
    https = {"X-Forwarded-Proto": "https"}
    for trusted, secure in (([], False), (["127.0.0.1"], True)):
        live = await start_server(make_config(server={"trusted_proxies": trusted}))
        try:
            add_account(live)
            b = browser(live)
            page = await b.request("GET", "/login", headers=https)
            signed_in = await b.request("POST", "/login", {
                "name": "ana", "password": PASSWORD, "code": "", "csrf": csrf_in(page.body)},
                headers=https)
            assert signed_in.code == 303
            session = [c for c in b.set_cookies if "hearth_session=" in c][-1]
            assert session.startswith("__Host-hearth_session=") is secure
            assert ("Secure" in session) is secure
            assert (await b.request("GET", "/console", headers=https)).code == 200
        finally:
            await live.hearth.service.stopService()
