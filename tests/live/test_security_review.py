"""The second security review's findings that need a live server: an on-call receiver that
never ends its answer, a malformed acknowledgement link, the headers of every response."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred, maybeDeferred

from tests.support.config import base_rooms, make_config
from tests.support.live import LiveServer, start_server
from tests.support.signin import PASSWORD, add_account, browser, ticket_of


class Firehose(protocol.Protocol):
    """An on-call receiver that answers 200, then sends a body as fast as it is read (up to
    CAP bytes), then a byte now and then, never ending it."""

    CAP = 32 * 2**20

    def __init__(self, sent: dict[str, Any]) -> None:
        self.sent, self.paused, self.trickle = sent, False, None

    def dataReceived(self, data: bytes) -> None:
        if self.sent.get("answering"):
            return
        self.sent["answering"] = True
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.sent.get("bytes", 0) < self.CAP:
            self.sent["bytes"] = self.sent.get("bytes", 0) + 65536
            self.transport.write(b"10000\r\n" + b"x" * 65536 + b"\r\n")
        if self.sent.get("bytes", 0) >= self.CAP and self.trickle is None:
            self.trickle = reactor.callLater(0.5, self.drip)

    def drip(self) -> None:
        self.transport.write(b"1\r\nx\r\n")
        self.trickle = reactor.callLater(0.5, self.drip)

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.paused = True

    def connectionLost(self, reason: Any = None) -> None:
        self.paused = True
        if self.trickle is not None and self.trickle.active():
            self.trickle.cancel()
        done: Deferred[None] | None = self.sent.pop("closed", None)
        if done is not None:
            done.callback(None)


@pytest_twisted.ensureDeferred
async def test_an_on_call_answer_that_never_ends_is_not_waited_for_nor_kept(
        server: LiveServer) -> None:
    """A 2xx is delivered: the answer's body is read only up to a bound, within the delivery
    timeout, and the connection is closed (it used to be read whole, without a time limit:
    a receiver could hold a delivery for ever and fill the server's memory)."""
    closed: Deferred[None] = Deferred()
    sent: dict[str, Any] = {"closed": closed}
    factory = protocol.Factory.forProtocol(lambda: Firehose(sent))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        sending = Deferred.fromCoroutine(server.hearth.alerts._send(
            f"http://127.0.0.1:{port.getHost().port}/hook", b"{}", {}))
        await sending.addTimeout(30, reactor)  # a TimeoutError here: waited on for ever
        await closed.addTimeout(5, reactor)  # the connection was let go of
        assert sent["bytes"] < Firehose.CAP // 2, sent["bytes"]  # not read whole
    finally:
        await maybeDeferred(port.stopListening)


@pytest_twisted.ensureDeferred
async def test_an_acknowledgement_link_that_is_not_ascii_is_not_found(server: LiveServer) -> None:
    b = browser(server)
    for path in ("/incidents/ack/x/%C3%A9", "/incidents/ack/%FF/%FF", "/incidents/ack/x/" + "a" * 64,
                 "/incidents/ack/x/y/z", "/incidents/ack"):
        answer = await b.request("POST", path)
        assert answer.code == 404 and answer.json() == {"error": "not_found"}, (path, answer)


PAGES = [("GET", "/"), ("GET", "/join/circle"), ("GET", "/room/circle"), ("GET", "/join/nope"),
         ("GET", "/login"), ("GET", "/console"), ("GET", "/static/css/hearth.css"),
         ("GET", "/static/nope.js"), ("GET", "/livez"), ("GET", "/readyz"), ("GET", "/healthz"),
         ("GET", "/crisis/helplines.json"), ("GET", "/incidents/ack"),
         ("POST", "/incidents/ack/x/y"), ("GET", "/nope"), ("GET", "/ws"), ("POST", "/logout"),
         ("POST", "/console/ticket"), ("POST", "/login")]


@pytest_twisted.ensureDeferred
async def test_every_answer_carries_the_security_headers(server: LiveServer) -> None:
    """Pages, errors, static files, JSON and refusals alike, signed in or not; no HSTS over
    plain HTTP (tests/live/test_ops_tls.py checks it under TLS), no Server header."""
    add_account(server)
    signed_out, signed_in = browser(server), browser(server)
    assert (await signed_in.login("ana", PASSWORD)).code == 303
    for b in (signed_out, signed_in):
        for method, path in PAGES:
            answer = await b.request(method, path)
            where = (method, path, answer.code)
            csp = answer.header("content-security-policy") or ""
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, where
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, where
            assert answer.header("x-content-type-options") == "nosniff", where
            assert answer.header("referrer-policy") == "no-referrer", where
            assert answer.header("x-frame-options") == "DENY", where
            assert answer.header("strict-transport-security") is None, where
            assert answer.header("server") is None, where


NASTY = "<script>alert(1)</script>\"' onmouseover=x &amp;"


@pytest_twisted.ensureDeferred
async def test_every_operator_chosen_string_is_escaped_in_pages_and_console() -> None:
    """Names and texts from the config reach the pages escaped, in text and in attributes
    (pseudonyms and avatars reach the pages only through the client's textContent)."""
    config = make_config(organisation={"name": "Org " + NASTY},
                         rooms=base_rooms(title="Room " + NASTY, schedule="Tuesdays " + NASTY))
    live = await start_server(config)
    try:
        add_account(live)
        b = browser(live)
        pages = [(await b.request("GET", path)).body
                 for path in ("/", "/join/circle", "/room/circle", "/login")]
        assert (await b.login("ana", PASSWORD)).code == 303
        pages.append((await b.request("GET", "/console")).body)
        for page in pages:
            assert "Room &lt;script&gt;" in page or "Org &lt;script&gt;" in page
            assert "<script>alert" not in page and "\"' onmouseover" not in page
            assert "&amp;amp;" in page  # escaped once, as text: never taken as an entity
    finally:
        await live.hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_the_data_directory_at_rest_holds_no_credential_and_is_the_servers_alone() -> None:
    """After a session with a facilitator and a member who asked for help, and a graceful
    stop (the rooms saved): every file 0600, every directory 0700, and no member token,
    role ticket, session cookie or password in any of them."""
    live = await start_server(make_config())
    try:
        add_account(live)
        b = browser(live)
        assert (await b.login("ana", PASSWORD)).code == 303
        ticket = await ticket_of(b)
        facilitator = await live.client()
        await facilitator.join("circle", ticket=ticket)
        member = await live.client()
        welcome = await member.join("circle", pseudonym="Quiet Otter")
        member.send({"type": "help"})
        await facilitator.next(lambda m: m["type"] == "incident" and m.get("reason") == "alert")
        secrets = [welcome["token"], ticket, b.cookies["hearth_session"], PASSWORD]
    finally:
        await live.hearth.service.stopService()
    data = Path(live.hearth.alerts.incidents.path).parent
    found = list(data.rglob("*"))
    assert any(p.name == "incidents.jsonl" for p in found) and any(
        p.name == "facilitators.json" for p in found)
    for path in [data, *found]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
        if path.is_file():
            content = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in content, (path, secret[:6])


@pytest_twisted.ensureDeferred
async def test_an_on_call_receiver_that_redirects_is_a_failed_try_not_followed(
        server: LiveServer) -> None:
    """A redirect could send the alert (its acknowledgement link) to an address inside the
    network that nobody configured: it is a failed try (retried), never followed."""
    from twisted.web import resource
    from twisted.web import server as web_server

    hits: list[bytes] = []

    class Elsewhere(resource.Resource):
        isLeaf = True

        def render_POST(self, request: Any) -> bytes:
            hits.append(request.content.read())
            return b"{}"

    inside = reactor.listenTCP(0, web_server.Site(Elsewhere()), interface="127.0.0.1")

    class Redirecting(resource.Resource):
        isLeaf = True

        def render_POST(self, request: Any) -> bytes:
            request.setResponseCode(307)
            request.setHeader(b"Location",
                              f"http://127.0.0.1:{inside.getHost().port}/internal".encode())
            return b""

    hook = reactor.listenTCP(0, web_server.Site(Redirecting()), interface="127.0.0.1")
    try:
        with pytest.raises(RuntimeError, match="HTTP 307"):
            await server.hearth.alerts._send(f"http://127.0.0.1:{hook.getHost().port}/hook",
                                             b'{"incident":"x"}', {})
        assert hits == []
    finally:
        await maybeDeferred(hook.stopListening)
        await maybeDeferred(inside.stopListening)
