"""Everything the server logs during a real session: no client address, token, envelope body
or request path."""

from __future__ import annotations

import contextlib
import http.client
import json
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.logger import formatEvent, globalLogPublisher

from hearth.client.websocket import HearthClient
from hearth.spaces.config import to_toml as toml_of
from tests.support.config import BASE
from tests.support.live import LiveServer
from tests.support.serving import ServedHearth

CLIENT_ADDRESS = "127.0.0.2"  # the client's end; the server listens on 127.0.0.1
BODY = "U2VjcmV0IHRoaW5ncyBzYWlkIGluIHRoZSBjaXJjbGU="
COMMIT = "D" * 43 + "="


@pytest_twisted.ensureDeferred
async def test_no_client_address_token_or_body_in_any_log_event(tmp_path: Path) -> None:
    config = tmp_path / "hearth.toml"
    data = {**BASE, "server": {**BASE["server"], "data_dir": str(tmp_path / "data")}}
    config.write_text(toml_of(data))
    served = ServedHearth("--config", str(config), "--log-format", "json")
    tokens: list[str] = []
    try:
        served.wait_ready()
        url = f"ws://127.0.0.1:{served.port}/ws"
        alice = await HearthClient.connect(url, source_address=CLIENT_ADDRESS)
        tokens.append((await alice.join("circle"))["token"])
        bob = await HearthClient.connect(url, source_address=CLIENT_ADDRESS)
        tokens.append((await bob.join("circle"))["token"])
        alice.envelope(BODY, COMMIT)
        await bob.expect("envelope")
        bob.direct(alice.member or "", BODY)
        await alice.expect("direct")
        alice.send_raw(b"{broken")  # refusals are logged, if at all, without the frame
        await alice.expect("error")
        alice.drop()
        again = await HearthClient.connect(url, source_address=CLIENT_ADDRESS)
        tokens.append((await again.resume(tokens[0]))["token"])
        refused = HearthClient.connect(url, source_address=CLIENT_ADDRESS,
                                       origin="https://evil.example")
        with contextlib.suppress(Exception):  # refusal is expected; only the logs matter
            await refused
        await again.close()
        await bob.close()
    finally:
        served.stop()
    output = served.output()
    events = served.log_events()
    assert events, "the server logged nothing at all: the capture is broken"
    assert any("origin not allowed" in json.dumps(e) for e in events)
    for secret in [CLIENT_ADDRESS, BODY, *tokens]:
        assert secret not in output, f"{secret[:12]}… appears in the server's output"


@pytest_twisted.ensureDeferred
async def test_no_path_or_query_of_any_request_is_logged(server: LiveServer) -> None:
    """A request's path can be a capability (an incident's acknowledgement link, which mail
    scanners and link previewers fetch with HEAD) or name a room: Twisted's own lines about
    a request (a HEAD answered with a body) carry no URI."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    secret = "a1b2c3d4e5f6CAPABILITY"
    try:
        for method, path in (("HEAD", f"/incidents/ack/inc-1/{secret}"),
                             ("HEAD", f"/?lang={secret}"), ("HEAD", f"/room/demo{secret}"),
                             ("GET", f"/static/{secret}"), ("POST", f"/login?{secret}")):
            await deferToThread(_request, server.port, method, path)
    finally:
        globalLogPublisher.removeObserver(events.append)
    for event in events:
        assert secret not in formatEvent(event) + repr(event), formatEvent(event)


def _request(port: int, method: str, path: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path)
        connection.getresponse().read()
    finally:
        connection.close()
