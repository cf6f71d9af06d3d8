"""The Python client for hearth.v1: tests, benchmarks, drills and bots speak through it.

It runs on the Twisted reactor (autobahn). Messages are plain dicts, as in
docs/protocol.md; `next()` waits for the first unread message of a type, so a
test reads like the conversation it checks. E2EE group chat is layered on top
(client/groupchat.py, with hearth.spaces.e2ee) so that tests send real ciphertext.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString

from hearth.spaces.protocol import SUBPROTOCOL


class ClientClosed(Exception):
    """The connection closed while a message was awaited."""


class ServerError(Exception):
    """The server answered with an `error` message."""

    def __init__(self, message: Mapping[str, Any]) -> None:
        super().__init__(f"{message.get('code')}: {message.get('message')}")
        self.code = str(message.get("code"))
        self.message = dict(message)


class _Protocol(WebSocketClientProtocol):
    tcpNoDelay = True
    client: HearthClient

    def onOpen(self) -> None:
        self.client._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.client._received(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.client._closed_with(code, reason)


class HearthClient:
    """One connection. Use `await HearthClient.connect(url)`."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.inbox: list[dict[str, Any]] = []
        self.binary: list[bytes] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed: Deferred[tuple[int | None, str | None]] = Deferred()
        self.member: str | None = None
        self.token: str | None = None
        self.welcome: dict[str, Any] | None = None
        self.seq: int | None = None  # the last room seq received (a resume says it)
        self.dseq: int | None = None  # the last directed envelope's number (a resume says it)
        self._proto: _Protocol | None = None
        self._open: Deferred[HearthClient] = Deferred()
        self._waiters: list[tuple[Callable[[dict[str, Any]], bool], Deferred[dict[str, Any]]]] = []
        self.on_message: Callable[[dict[str, Any]], None] | None = None
        self.on_binary: Callable[[bytes], None] | None = None

    @classmethod
    async def connect(cls, url: str, *, reactor: Any = None, origin: str | None = None,
                      protocols: list[str] | None = None, timeout: float = 10.0,
                      source_address: str | None = None,
                      tls_ca: bytes | None = None) -> HearthClient:
        """Open `url` (ws://host:port/ws, or wss://). `origin` defaults to the server's own.

        `source_address` binds the local end (tests use 127.0.0.2 to tell the
        client's address apart from the server's in what the server logs).
        `tls_ca` (PEM) is the one certificate a wss:// server's must chain to,
        instead of the system's trust roots (a private CA, a test's self-signed one);
        the host name (or IP address) is checked against the certificate either way.
        """
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        client = cls(reactor)
        parts = urlsplit(url)
        scheme = "https" if parts.scheme == "wss" else "http"
        factory = WebSocketClientFactory(  # type: ignore[no-untyped-call]
            url, origin=origin if origin is not None else f"{scheme}://{parts.netloc}",
            protocols=protocols if protocols is not None else [SUBPROTOCOL])
        factory.setProtocolOptions(  # type: ignore[no-untyped-call]
            perMessageCompressionOffers=[], openHandshakeTimeout=timeout)
        factory.protocol = type("BoundClientProtocol", (_Protocol,), {"client": client})  # type: ignore[assignment]
        host, port = parts.hostname or "127.0.0.1", parts.port or (443 if scheme == "https" else 80)
        kind = "tls" if scheme == "https" else "tcp"
        bind = f":bindAddress={source_address}" if source_address else ""
        endpoint: Any  # zope interfaces are not types mypy can check a call against
        if kind == "tls" and tls_ca is not None:
            from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
            from twisted.internet.ssl import Certificate, optionsForClientTLS
            options = optionsForClientTLS(host, trustRoot=Certificate.loadPEM(tls_ca))
            tcp: Any = TCP4ClientEndpoint(reactor, host, port, timeout=timeout,
                                          bindAddress=(source_address, 0) if source_address
                                          else None)
            endpoint = wrapClientTLS(options, tcp)
        else:
            endpoint = clientFromString(  # type: ignore[no-untyped-call]
                reactor, f"{kind}:host={host}:port={port}:timeout={timeout:g}{bind}")
        await endpoint.connect(factory)
        opened: HearthClient = await client._with_timeout(client._open, timeout,
                                                          "the WebSocket handshake")
        return opened

    # --- sending ----------------------------------------------------------------

    def send(self, message: Mapping[str, Any]) -> None:
        self.send_raw(json.dumps(message).encode("utf-8"))

    def send_raw(self, payload: bytes, is_binary: bool = False) -> None:
        if self._proto is None or self._proto.state != self._proto.STATE_OPEN:
            raise ClientClosed("not connected")
        self._proto.sendMessage(payload, isBinary=is_binary)  # type: ignore[no-untyped-call]

    async def join(self, room: str, **fields: Any) -> dict[str, Any]:
        self.send({"type": "join", "room": room, **fields})
        return self._welcomed(await self.expect("welcome"))

    async def resume(self, token: str, seq: int | None = None,
                     dseq: int | None = None) -> dict[str, Any]:
        """`seq`: the last room seq seen (on the connection that dropped); the room
        envelopes after it come right after the welcome. `dseq`: the `dseq` of the last
        directed envelope received there; the ones after it come first (sender keys that
        went to a dead link)."""
        message: dict[str, Any] = {"type": "resume", "token": token}
        if seq is not None:
            message["seq"] = seq
        if dseq is not None:
            message["dseq"] = dseq
            self.dseq = dseq
        self.send(message)
        return self._welcomed(await self.expect("welcome"))

    def _welcomed(self, welcome: dict[str, Any]) -> dict[str, Any]:
        self.welcome = welcome
        self.member = welcome["member"]
        self.token = welcome["token"]
        return welcome

    def move(self, x: float, y: float) -> None:
        self.send({"type": "move", "x": x, "y": y})

    def sit(self, seat: int) -> None:
        self.send({"type": "sit", "seat": seat})

    def envelope(self, body: str, commitment: str, ref: str | None = None,
                 zone: str | None = None, client_id: str | None = None) -> None:
        """Room ciphertext; with `zone`, a private corner's conversation; with `client_id`,
        sent again after a reconnection without being delivered twice."""
        message: dict[str, Any] = {"type": "envelope", "body": body, "commitment": commitment}
        for key, value in (("ref", ref), ("id", client_id), ("zone", zone)):
            if value is not None:
                message[key] = value
        self.send(message)

    def send_voice(self, frame: bytes) -> None:
        """One voice frame (spaces.voice.build_frame, or GroupSession.encrypt_voice)."""
        self.send_raw(frame, is_binary=True)

    def direct(self, to: str, body: str, zone: str | None = None) -> None:
        """A sealed sender key for one member; with `zone`, a private corner's."""
        message = {"type": "direct", "to": to, "body": body}
        self.send(message if zone is None else {**message, "zone": zone})

    async def close(self, code: int = 1000) -> None:
        if self._proto is not None:
            self._proto.sendClose(code)
        await self._with_timeout(self.closed, 10.0, "the close handshake")

    async def until_closed(self, timeout: float = 10.0) -> tuple[int | None, str | None]:
        """(code, reason) once the connection has closed; TimeoutError after `timeout`
        seconds, so that a close that never comes fails instead of waiting for ever."""
        waiter: Deferred[tuple[int | None, str | None]] = Deferred()

        def closed(result: Any) -> Any:
            if not waiter.called:
                waiter.callback(result)
            return result

        self.closed.addBoth(closed)
        result: tuple[int | None, str | None] = await self._with_timeout(
            waiter, timeout, "the connection to close")
        return result

    def stop_reading(self) -> None:
        """Read nothing more (a frozen app on a phone): what the server sends piles up."""
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.pauseProducing()

    def drop(self) -> None:
        """Cut the TCP connection without a close handshake (a phone losing signal)."""
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.abortConnection()

    # --- receiving ----------------------------------------------------------------

    async def next(self, match: Callable[[dict[str, Any]], bool] | str | None = None,
                   timeout: float = 5.0) -> dict[str, Any]:
        """The first unread message matching (a type name or a predicate); consumed."""
        test = _matcher(match)
        for i, message in enumerate(self.inbox):
            if test(message):
                return self.inbox.pop(i)
        if self._proto is None and self._open.called:
            raise ClientClosed(f"closed ({self.close_code}) while waiting")
        d: Deferred[dict[str, Any]] = Deferred()
        self._waiters.append((test, d))
        found: dict[str, Any] = await self._with_timeout(d, timeout, f"a message matching {match!r}")
        return found

    async def expect(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """Like next(kind), but an `error` that arrives first raises ServerError."""
        message = await self.next(lambda m: m.get("type") in (kind, "error"), timeout)
        if message["type"] == "error" and kind != "error":
            raise ServerError(message)
        return message

    def take_all(self, kind: str) -> list[dict[str, Any]]:
        found = [m for m in self.inbox if m.get("type") == kind]
        self.inbox = [m for m in self.inbox if m.get("type") != kind]
        return found

    async def _with_timeout(self, d: Deferred[Any], timeout: float, what: str) -> Any:
        def expire() -> None:
            if not d.called:
                self._waiters[:] = [(t, w) for t, w in self._waiters if w is not d]
                d.errback(TimeoutError(f"timed out after {timeout:g}s waiting for {what}"))
        call = self.reactor.callLater(timeout, expire)
        try:
            return await d
        finally:
            if call.active():
                call.cancel()

    # --- from the protocol ----------------------------------------------------------

    def _opened(self, proto: _Protocol) -> None:
        self._proto = proto
        self._open.callback(self)

    def _received(self, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            if self.on_binary is not None:
                self.on_binary(payload)
            else:
                self.binary.append(payload)
            return
        message = json.loads(payload)
        seq = message.get("seq")
        if type(seq) is int and "zone" not in message and message.get("type") != "welcome":
            self.seq = seq if self.seq is None else max(self.seq, seq)
        dseq = message.get("dseq")
        if type(dseq) is int and message.get("type") == "direct":
            self.dseq = dseq if self.dseq is None else max(self.dseq, dseq)
        if self.on_message is not None:
            self.on_message(message)
        for i, (test, d) in enumerate(self._waiters):
            if test(message):
                del self._waiters[i]
                d.callback(message)
                return
        self.inbox.append(message)

    def _closed_with(self, code: int | None, reason: str | None) -> None:
        self._proto = None
        self.close_code, self.close_reason = code, reason
        if not self._open.called:
            self._open.errback(ClientClosed(f"handshake failed ({code}): {reason}"))
        waiters, self._waiters = self._waiters, []
        for _, d in waiters:
            d.errback(ClientClosed(f"closed ({code}): {reason}"))
        if not self.closed.called:
            self.closed.callback((code, reason))


async def resume_anywhere(urls: list[str], token: str, *, seq: int | None = None,
                          dseq: int | None = None, within: float = 10.0,
                          reactor: Any = None) -> tuple[HearthClient, dict[str, Any]]:
    """Resume on the first node that takes it, trying `urls` in turn: what a client does when
    its connection dropped or its room moved (close 4010). `room_moving`, a refused
    connection or a silent node is tried again after a short pause (growing to 0.5 s) until
    `within` seconds have passed (then TimeoutError); `session_expired` is final
    (ServerError)."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor
        reactor = default_reactor
    from twisted.internet.task import deferLater
    deadline = reactor.seconds() + within
    pause, attempt = 0.05, 0
    while True:
        url = urls[attempt % len(urls)]
        attempt += 1
        client: HearthClient | None = None
        try:
            client = await HearthClient.connect(url, reactor=reactor, timeout=2.0)
            client.seq = seq
            return client, await client.resume(token, seq, dseq)
        except ServerError as refused:
            if refused.code != "room_moving":
                raise
        except (ClientClosed, TimeoutError, ConnectionError, OSError):
            pass
        if client is not None:
            client.drop()
        if reactor.seconds() >= deadline:
            raise TimeoutError(f"could not resume within {within:g}s")
        await deferLater(reactor, pause, lambda: None)
        pause = min(0.5, pause * 2)


def _matcher(match: Callable[[dict[str, Any]], bool] | str | None) -> Callable[[dict[str, Any]], bool]:
    if match is None:
        return lambda m: True
    if isinstance(match, str):
        return lambda m: m.get("type") == match
    return match
