"""The WebSocket endpoint /ws: autobahn frames in and out, nothing else.

The handshake refuses a foreign Origin (403) and a client that does not speak
`hearth.v1` (400); then every frame goes to the node, which returns nothing to
write here but bytes.

This is autobahn's ordinary path. The fast path (web/wsfast.py: whole frames read
directly, one write per connection per turn of the event loop) is mixed in by
`bind_node` when its switch is on (the default), and falls back to this path for
anything but the common case.
"""

from __future__ import annotations

import pprint
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket import protocol as autobahn_protocol
from autobahn.websocket.types import ConnectionDeny
from twisted.logger import Logger

from hearth.spaces.config import HearthConfig
from hearth.spaces.protocol import SUBPROTOCOL
from hearth.web import wsfast
from hearth.web.node import Link, Node
from hearth.web.proxy import client_address, trusted_networks

_log = Logger(namespace="hearth.ws")  # not `log`: that name is autobahn's own txaio logger


class _Formatted:
    """pprint.pformat(value), worked out only if a log line is actually written."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return pprint.pformat(self.value)


def _lazy_pformat(value: Any, *args: Any, **kwargs: Any) -> Any:
    """autobahn pretty-prints every new connection's ~30 options (a list) for a debug line
    that is almost never logged: a sixth of the server's CPU per join. Lists are formatted
    lazily; everything else (autobahn's own __str__ methods need a str) as before."""
    if isinstance(value, list) and not args and not kwargs:
        return _Formatted(value)
    return pprint.pformat(value, *args, **kwargs)


autobahn_protocol.pformat = _lazy_pformat  # type: ignore[attr-defined]


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Same host as the page, or listed in server.allowed_origins.

    A request with no Origin header (`None`) is not a browser (browsers always send
    one on a WebSocket handshake), so it cannot be a cross-site hijack and is allowed:
    the Python client, bots and probes need not pretend to be a page. An Origin that
    is present but empty, or `null` (a sandboxed or opaque page), is refused.
    """
    if origin is None:
        return True
    if origin.rstrip("/") in allowed:
        return True
    netloc = urlsplit(origin).netloc
    return bool(host) and netloc.lower() == (host or "").lower()


# What autobahn's server keeps of the opening handshake; only the handshake reads it.
_HANDSHAKE_ONLY = ("http_headers", "http_request_data", "http_response_data", "http_status_line",
                   "http_request_params", "http_request_uri", "http_request_path",
                   "http_request_host", "_wskey", "websocket_origin", "websocket_protocols",
                   "websocket_extensions")


class HearthServerProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    # autobahn 26 on Twisted calls setTcpNoDelay before the factory's options reach the
    # protocol (the error is swallowed): as a class attribute it is in place when
    # connectionMade runs. Without it relay p99 was 32-42 ms at 1 k msgs/s, with it 1-3 ms.
    tcpNoDelay = True

    node: Node
    config: HearthConfig
    link: Link | None = None
    trusted_proxies: tuple[Any, ...] = ()  # set by bind_node from server.trusted_proxies
    client_address: str | None = None
    # Voice over UDP (web/webtransport.py), when it is on: the endpoint that answers
    # `voice_transport`, the page's Host (for the session's URL), and the member's bound
    # session, to which the node sends voice instead of this socket.
    webtransport: Any = None
    voice_host: str | None = None
    voice_channel: Any = None

    def sendHttpErrorResponse(self, code: int, reason: str,
                              responseHeaders: Any = None) -> None:
        """A refused handshake (426, a foreign origin's 403, a bad request's 400) carries the
        same security headers as every other answer (web/site.py)."""
        from hearth.web.site import SECURITY_HEADERS
        headers = [*(responseHeaders or ()),
                   *((name.decode(), value.decode()) for name, value in SECURITY_HEADERS.items())]
        super().sendHttpErrorResponse(code, reason, headers)

    def onConnect(self, request: Any) -> str:
        host = request.headers.get("host")
        # The header itself: autobahn's `request.origin` is "" both when the header is
        # missing and when it is empty, and only a missing one is allowed.
        origin = request.headers.get("origin")
        if not origin_allowed(origin, host, self.config.server.allowed_origins):
            _log.info("websocket refused: origin not allowed")
            raise ConnectionDeny(403, "Origin not allowed")
        if SUBPROTOCOL not in request.protocols:
            _log.info("websocket refused: subprotocol missing")
            raise ConnectionDeny(400, f"Subprotocol {SUBPROTOCOL} required")
        peer = self.transport.getPeer() if self.transport is not None else None
        # Behind a trusted reverse proxy, the address the proxy saw (web/proxy.py); only
        # ever used as a keyed hash (bans, per-address limits), never logged.
        self.client_address = client_address(getattr(peer, "host", None),
                                             request.headers.get("x-forwarded-for"),
                                             self.trusted_proxies)
        key = self.node.admit_address(self.client_address)
        if key is None:
            _log.info("websocket refused: too many connections from one address")
            raise ConnectionDeny(429, "Too many connections from your address")
        self.address_key = key
        if self.webtransport is not None:
            self.voice_host = host
        return SUBPROTOCOL

    def onOpen(self) -> None:
        for name in _HANDSHAKE_ONLY:  # ~1.5 KB a member that autobahn never reads again
            self.__dict__.pop(name, None)
        self.link = self.node.open(self, self.client_address)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.link is not None:
            if not isBinary and self.webtransport is not None \
                    and self.webtransport.answers(self, payload):
                return  # voice_transport: this node's to answer, not the room's
            self.node.received(self.link, payload, isBinary)

    address_key: bytes = b""

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        key, self.address_key = self.address_key, b""
        self.node.release_address(key)
        link, self.link = self.link, None
        if self.webtransport is not None:
            self.webtransport.closed(self)
        if link is not None:
            self.node.lost(link)

    # --- the Peer interface the node writes through (autobahn's own path; the fast path,
    # web/wsfast.py, overrides these when it is on) ---

    # One whole frame each: autobahn's sendMessage would also hold the server's own
    # messages (a large snapshot) to the limit set for what clients send.
    def send_bytes(self, payload: bytes) -> None:
        if self.state == self.STATE_OPEN:
            self.sendFrame(opcode=1, payload=payload)

    def send_binary(self, payload: bytes) -> None:
        if self.state == self.STATE_OPEN:
            self.sendFrame(opcode=2, payload=payload)

    def send_prepared(self, prepared: Any) -> None:
        if self.state == self.STATE_OPEN:
            self.sendPreparedMessage(prepared)

    def pending_bytes(self) -> int:
        """Bytes written but not yet accepted by the kernel (Twisted's buffers)."""
        transport = self.transport
        if transport is None:
            return 0
        buffered = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
        return buffered + getattr(transport, "_tempDataLen", 0)

    def close(self, code: int, reason: str) -> None:
        if self.state != self.STATE_OPEN:
            return
        if code == 1000 or 3000 <= code <= 4999:
            self.sendClose(code, reason)
        else:  # protocol codes such as 1008: autobahn's public sendClose refuses them
            self.sendCloseFrame(code, reason.encode("utf-8"), isReply=False)


def websocket_factory(config: HearthConfig, fast_path: bool | None = None) -> WebSocketServerFactory:
    """The /ws factory; `bind_node` gives it its node once the node exists. `fast_path`:
    web/wsfast.py on or off (default: its switch, HEARTH_WS_FAST_PATH)."""
    factory = WebSocketServerFactory(protocols=[SUBPROTOCOL])
    limits = config.limits
    factory.setProtocolOptions(
        maxFramePayloadSize=limits.max_frame_bytes,
        maxMessagePayloadSize=limits.max_frame_bytes,
        # permessage-deflate stays off: ciphertext does not compress.
        perMessageCompressionAccept=lambda offers: None,
        autoPingInterval=20, autoPingTimeout=20,
        openHandshakeTimeout=10, closeHandshakeTimeout=5,
        failByDrop=False,
        # A GET without an upgrade is answered 426. autobahn's default (webStatus) is a
        # page of its own with its version and no security headers, and with `?redirect=`
        # a redirect to any URL at all from this origin: an open redirect for phishing.
        webStatus=False)
    factory.server = None  # no `Server: AutobahnPython/<version>` header
    factory.fast_path = wsfast.enabled() if fast_path is None else fast_path
    return factory


def bind_node(factory: WebSocketServerFactory, config: HearthConfig, node: Node,
              webtransport: Any = None) -> None:
    # autobahn copies each of the factory's ~30 options into every connection's
    # __dict__ unless the class has it: as class attributes they are shared (and the
    # per-connection dict is about half the size; docs/performance.md, "idle").
    options = {name: _shared(getattr(factory, name)) for name in HearthServerProtocol.CONFIG_ATTRS
               if name not in HearthServerProtocol.__dict__ and hasattr(factory, name)}
    bases: tuple[type, ...] = (HearthServerProtocol,)
    if factory.fast_path:
        bases = (wsfast.FastPath, HearthServerProtocol)
        options["turn"] = wsfast.turn_from_env()
    factory.protocol = type("BoundHearthServerProtocol", bases,
                            {**options, "node": node, "config": config,
                             "webtransport": webtransport,
                             "trusted_proxies": trusted_networks(config.server.trusted_proxies)})


def _shared(value: Any) -> Any:
    """A function as a class attribute would become a method: keep it a plain function."""
    return staticmethod(value) if callable(value) and not isinstance(value, type) else value


def prepare_for(factory: WebSocketServerFactory) -> Callable[[bytes, bool], Any]:
    """The node's `prepare`: frame a message once, send the same bytes to every recipient."""
    if factory.fast_path:
        return wsfast.Prepared
    return lambda payload, binary: factory.prepareMessage(payload, isBinary=binary,
                                                          doNotCompress=True)
