"""Hearth serving TLS itself: an ssl: endpoint, a wss:// client that checks the certificate,
and HSTS on https pages."""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from hearth.client.websocket import HearthClient
from hearth.web.service import listener_url, make_hearth
from tests.support.config import make_config
from tests.support.tls import self_signed


def https_get(url: str, cafile: Path) -> tuple[int, dict[str, str]]:
    context = ssl.create_default_context(cafile=str(cafile))
    with urllib.request.urlopen(url, timeout=10, context=context) as response:
        return response.status, dict(response.headers)


@pytest_twisted.ensureDeferred
async def test_wss_with_a_checked_certificate_and_hsts_on_https_pages(tmp_path: Path) -> None:
    key, cert, pem = self_signed(tmp_path)
    config = make_config()
    hearth = make_hearth(config, reactor,
                         [f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"])
    hearth.service.startService()
    try:
        await hearth.when_listening()
        port = hearth.listeners[0].port.getHost().port
        assert listener_url(hearth.listeners[0].port).startswith("https://")
        client = await HearthClient.connect(f"wss://127.0.0.1:{port}/ws", tls_ca=pem)
        welcome = await client.join("circle")
        assert welcome["room"]["id"] == "circle"
        other = await HearthClient.connect(f"wss://localhost:{port}/ws", tls_ca=pem)
        await other.join("circle")
        await client.next("member_joined")
        status, headers = await deferToThread(https_get, f"https://127.0.0.1:{port}/", cert)
        assert status == 200
        assert headers.get("Strict-Transport-Security") == "max-age=31536000"
        status, headers = await deferToThread(https_get, f"https://127.0.0.1:{port}/healthz",
                                              cert)
        assert status == 200 and "Strict-Transport-Security" in headers
        await client.close()
        await other.close()
    finally:
        await hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_certificate_from_another_authority_is_refused(tmp_path: Path) -> None:
    key, cert, _ = self_signed(tmp_path, "server")
    _, _, stranger = self_signed(tmp_path, "stranger")
    hearth = make_hearth(make_config(), reactor,
                         [f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"])
    hearth.service.startService()
    try:
        await hearth.when_listening()
        port = hearth.listeners[0].port.getHost().port
        with pytest.raises(Exception):  # noqa: B017 - OpenSSL's or autobahn's, either way refused
            client = await HearthClient.connect(f"wss://127.0.0.1:{port}/ws", tls_ca=stranger,
                                                timeout=5)
            await client.join("circle")
    finally:
        await hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_plain_http_pages_carry_no_hsts() -> None:
    hearth = make_hearth(make_config(), reactor, ["tcp:0:interface=127.0.0.1"])
    hearth.service.startService()
    try:
        await hearth.when_listening()
        port = hearth.listeners[0].port.getHost().port

        def get() -> dict[str, str]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
                return dict(r.headers)
        headers = await deferToThread(get)
        assert "Strict-Transport-Security" not in headers
    finally:
        await hearth.service.stopService()
