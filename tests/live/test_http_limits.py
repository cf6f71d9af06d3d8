"""HTTP limits on a real server: a deadline for every request (kept-alive ones too), 413
before a body over the limit is read, a cap on connections per address; no directory
listing under /static; the 404 page links only within the site; /ws answers only a
WebSocket handshake (never a redirect or a page of its own); no response names the
server's software or its version."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher

from hearth.web.site import MAX_BODY_BYTES
from tests.support.config import make_config
from tests.support.live import LiveServer, start_server

TIMEOUT = 1.0  # the test servers' header_timeout_seconds


@pytest_twisted.async_yield_fixture
async def live() -> AsyncIterator[LiveServer]:
    server = await start_server(make_config(limits={
        "header_timeout_seconds": TIMEOUT, "http_connections_per_address": 5},
        server={"trusted_proxies": ["127.0.0.8"]}))
    yield server
    await server.hearth.service.stopService()


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def read_response(s: socket.socket) -> bytes:
    """One response (head, and the body its Content-Length says), or what came before EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def closed_by_peer(s: socket.socket, within: float) -> bool:
    """True if the server closes (or resets) the socket within `within` seconds."""
    s.settimeout(within)
    try:
        while s.recv(65536):
            pass
        return True
    except TimeoutError:
        return False
    except OSError:
        return True


def get(path: bytes, keep_alive: bool = True) -> bytes:
    return (b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + (b"" if keep_alive else b"Connection: close\r\n") + b"\r\n")


def one_get(port: int, path: bytes) -> bytes:
    """One GET on its own connection (blocking: run it in a thread)."""
    s = connect(port)
    try:
        s.sendall(get(path, keep_alive=False))
        return read_response(s)
    finally:
        s.close()


def in_thread(function, *args):  # type: ignore[no-untyped-def]
    return deferToThread(function, *args)


@pytest_twisted.ensureDeferred
async def test_a_request_trickled_over_keep_alive_is_cut(live: LiveServer) -> None:
    def scenario() -> tuple[bytes, bool, float]:
        s = connect(live.port)
        try:
            s.sendall(get(b"/healthz"))
            first = read_response(s)  # answered: the connection is kept alive
            started = time.monotonic()
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            cut = False
            for _ in range(40):  # a header line every 0.2 s, each well inside the idle timeout
                time.sleep(0.2)
                try:
                    s.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    cut = True
                    break
                if closed_by_peer(s, 0.01):
                    cut = True
                    break
            return first, cut, time.monotonic() - started
        finally:
            s.close()
    first, cut, after = await in_thread(scenario)
    assert first.startswith(b"HTTP/1.1 200")
    assert cut, "a trickled second request kept the connection open"
    assert after < TIMEOUT + 4  # cut by the deadline, not by the 60 s idle timeout


@pytest_twisted.ensureDeferred
async def test_kept_alive_requests_that_arrive_whole_are_all_served(live: LiveServer) -> None:
    def scenario() -> list[bytes]:
        s = connect(live.port)
        answers = []
        try:
            for _ in range(3):
                s.sendall(get(b"/healthz"))
                answers.append(read_response(s))
                time.sleep(TIMEOUT * 1.2)  # idle between requests longer than the deadline
            return answers
        finally:
            s.close()
    answers = await in_thread(scenario)
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers)


@pytest_twisted.ensureDeferred
async def test_an_oversized_content_length_is_refused_before_the_body(live: LiveServer) -> None:
    def scenario() -> tuple[bytes, bool]:
        s = connect(live.port)
        try:
            s.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/x-www-form-urlencoded\r\n"
                      b"Content-Length: 100000000000\r\n\r\n")
            answer = read_response(s)  # before a single byte of the body was sent
            streamed_on = True
            try:
                for _ in range(200):
                    s.sendall(b"x" * 65536)
            except OSError:
                streamed_on = False
            return answer, streamed_on
        finally:
            s.close()
    answer, streamed_on = await in_thread(scenario)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    assert not streamed_on, "the server kept reading a body it had refused"


@pytest_twisted.ensureDeferred
async def test_a_chunked_body_past_the_limit_is_refused(live: LiveServer) -> None:
    def scenario() -> bytes:
        s = connect(live.port)
        try:
            s.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"a" * 4096
            with contextlib.suppress(OSError):
                for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
                    s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            return read_response(s)
        finally:
            s.close()
    answer = await in_thread(scenario)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]


@pytest_twisted.ensureDeferred
async def test_a_body_within_the_limit_is_read(live: LiveServer) -> None:
    def scenario() -> bytes:
        s = connect(live.port)
        try:
            body = b"name=ana&password=x&csrf=nope"
            s.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      b"application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(body), body))
            return read_response(s)
        finally:
            s.close()
    answer = await in_thread(scenario)
    assert answer.startswith(b"HTTP/1.1 403")  # read and judged: the CSRF token is wrong


@pytest_twisted.ensureDeferred
async def test_http_connections_per_address_are_capped(live: LiveServer) -> None:
    held: list[socket.socket] = []
    try:
        def open_many() -> tuple[list[socket.socket], bytes]:
            sockets = [connect(live.port, "127.0.0.9") for _ in range(5)]
            extra = connect(live.port, "127.0.0.9")
            answer = read_response(extra)
            extra.close()
            return sockets, answer
        held, answer = await in_thread(open_many)
        assert answer.startswith(b"HTTP/1.1 429"), answer[:80]

        def others() -> tuple[bytes, bytes]:
            s = connect(live.port, "127.0.0.2")  # another address is served
            s.sendall(get(b"/healthz", keep_alive=False))
            other = read_response(s)
            s.close()
            held[0].close()  # one place given back
            time.sleep(0.3)
            again = connect(live.port, "127.0.0.9")
            again.sendall(get(b"/healthz", keep_alive=False))
            freed = read_response(again)
            again.close()
            return other, freed
        other, freed = await in_thread(others)
        assert other.startswith(b"HTTP/1.1 200") and freed.startswith(b"HTTP/1.1 200")
        site = live.hearth.listeners[0].factory
        assert "127.0.0.9" not in repr(site.http_cap._open)  # keyed hashes only
    finally:
        for s in held:
            s.close()


@pytest_twisted.ensureDeferred
async def test_a_trusted_proxy_is_not_capped(live: LiveServer) -> None:
    def scenario() -> list[bytes]:
        sockets = [connect(live.port, "127.0.0.8") for _ in range(8)]
        answers = []
        for s in sockets:
            s.sendall(get(b"/healthz", keep_alive=False))
            answers.append(read_response(s))
            s.close()
        return answers
    answers = await in_thread(scenario)
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers)


@pytest.mark.parametrize("path", [b"/static/", b"/static/js/", b"/static/i18n/", b"/static/css/",
                                  b"/static/img/"])
@pytest_twisted.ensureDeferred
async def test_no_directory_listing_under_static(live: LiveServer, path: bytes) -> None:
    answer = await in_thread(one_get, live.port, path)
    assert answer.startswith(b"HTTP/1.1 404")
    body = answer.split(b"\r\n\r\n", 1)[1]
    assert b"There is nothing at this address" in body  # the site's own 404 page
    for name in (b"Directory listing", b"room.js", b"e2ee.js", b"en.json", b"es.json"):
        assert name not in body


@pytest_twisted.ensureDeferred
async def test_the_404_page_links_only_within_the_site(live: LiveServer) -> None:
    answer = await in_thread(one_get, live.port, b"//evil.example/x")
    assert answer.startswith(b"HTTP/1.1 404")
    body = answer.split(b"\r\n\r\n", 1)[1]
    assert b"evil.example" not in body
    assert b'href="?lang=es"' in body and b'href="?lang=en"' in body


@pytest_twisted.ensureDeferred
async def test_websockets_give_their_http_place_back(live: LiveServer) -> None:
    """A WebSocket counts as an HTTP connection until its handshake only: many of them,
    opened and closed one after another, never fill the HTTP cap (5 here)."""
    for _ in range(12):
        client = await live.client(source_address="127.0.0.9")
        await client.close()
    site = live.hearth.listeners[0].factory
    assert len(site.http_cap) == 0
    client = await live.client(source_address="127.0.0.9")
    await client.join("circle")
    await client.close()


def handshake(origin: bytes | None) -> bytes:
    lines = [b"GET /ws HTTP/1.1", b"Host: 127.0.0.1", b"Upgrade: websocket",
             b"Connection: Upgrade", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Protocol: hearth.v1"]
    if origin is not None:
        lines.append(b"Origin: " + origin)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def handshake_answer(port: int, origin: bytes | None, then: bytes = b"",
                     until: tuple[bytes, ...] = (b"\r\n\r\n",)) -> bytes:
    """What the server answers a WebSocket handshake (and the bytes sent right behind it),
    read until one of `until` or the end (blocking: run it in a thread)."""
    s = connect(port)
    try:
        s.sendall(handshake(origin) + then)
        data = b""
        while not any(marker in data for marker in until):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        s.close()


@pytest.mark.parametrize("origin,status", [
    (None, b"101"),  # not a browser: allowed (docs/protocol.md, "Origin")
    (b"http://127.0.0.1", b"101"),  # the page's own host
    (b"", b"400"),  # present but empty: refused (autobahn: not an origin)
    (b"null", b"400"),  # an opaque origin: refused (autobahn)
    (b"https://evil.example", b"403"),
])
@pytest_twisted.ensureDeferred
async def test_the_origin_rule_both_ways(live: LiveServer, origin: bytes | None,
                                         status: bytes) -> None:
    answer = await in_thread(handshake_answer, live.port, origin)
    assert answer.split(b" ", 2)[1] == status, answer[:80]


@pytest.mark.parametrize("query", [
    b"",
    b"?redirect=https%3A%2F%2Fevil.example%2Fsign-in",  # autobahn's own 303 to anywhere
    b"?redirect=https%3A%2F%2Fevil.example&after=0",  # its meta-refresh page
    b"?redirect=https%3A%2F%2Fevil.example&after=soon",  # int("soon"): its traceback
])
@pytest_twisted.ensureDeferred
async def test_ws_without_an_upgrade_is_426_and_never_a_redirect(live: LiveServer,
                                                                  query: bytes) -> None:
    """A plain GET of /ws (a link someone was sent, a crawler) is answered 426 Upgrade
    Required: never autobahn's status page (its version, no security headers), never its
    open redirect to any site the link names, never a traceback."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        answer = await in_thread(one_get, live.port, b"/ws" + query)
    finally:
        globalLogPublisher.removeObserver(events.append)
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert answer.startswith(b"HTTP/1.1 426"), answer[:80]
    assert b"evil.example" not in answer and b"\r\nlocation:" not in head.lower()
    assert b"autobahn" not in answer.lower()
    assert not [e for e in events if e.get("log_failure") is not None
                or (e.get("log_level") is not None and e["log_level"].name == "critical")]


@pytest.mark.parametrize("path", [b"/", b"/healthz", b"/static/", b"/login", b"/ws"])
@pytest_twisted.ensureDeferred
async def test_no_response_names_the_server_software(live: LiveServer, path: bytes) -> None:
    answer = await in_thread(one_get, live.port, path)
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nserver:" not in head, head
    for name in (b"twisted", b"autobahn", b"python"):
        assert name not in head


@pytest_twisted.ensureDeferred
async def test_the_websocket_handshake_names_no_server_software(live: LiveServer) -> None:
    answer = await in_thread(handshake_answer, live.port, None)
    assert answer.startswith(b"HTTP/1.1 101"), answer[:80]
    assert b"\r\nserver:" not in answer.lower() and b"autobahn" not in answer.lower()


@pytest.mark.parametrize("request_head", [
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
])
@pytest_twisted.ensureDeferred
async def test_a_line_too_long_is_answered_431_not_just_dropped(live: LiveServer,
                                                                 request_head: bytes) -> None:
    def scenario() -> bytes:
        s = connect(live.port)
        try:
            s.sendall(request_head)
            return read_response(s)
        finally:
            s.close()
    answer = await in_thread(scenario)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
    assert b"too long" in answer.split(b"\r\n\r\n", 1)[1]


@pytest_twisted.ensureDeferred
async def test_frames_sent_with_the_handshake_are_not_lost(live: LiveServer) -> None:
    """A client that sends its first frames without waiting for the 101 (in the same packet
    as the handshake) gets them answered, not silently dropped with the HTTP parser."""
    join = b'{"type":"join","room":"circle","ref":"early"}'
    mask = b"\x01\x02\x03\x04"
    frame = bytes((0x81, 0x80 | len(join))) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(join))
    answer = await in_thread(handshake_answer, live.port, None, frame,
                             (b'"welcome"', b'"error"'))
    assert answer.startswith(b"HTTP/1.1 101"), answer[:80]
    assert b'"welcome"' in answer, answer[:300]
