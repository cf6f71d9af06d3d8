"""The WebSocket endpoint /ws: autobahn frames in and out, nothing else.

The handshake refuses a foreign Origin (403) and a client that does not speak
`hearth.v1` (400); then every frame goes to the node, which returns nothing to
write here but bytes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.logger import Logger

from spaces.config import HearthConfig
from spaces.connection import Connection
from spaces.protocol import SUBPROTOCOL
from web.node import Node

_log = Logger(namespace="hearth.ws")  # not `log`: that name is autobahn's own txaio logger


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Same host as the page, or listed in server.allowed_origins.

    A request with no Origin is not a browser (browsers always send one on a
    WebSocket handshake), so it cannot be a cross-site hijack and is allowed.
    """
    if origin is None:
        return True
    if origin.rstrip("/") in allowed:
        return True
    netloc = urlsplit(origin).netloc
    return bool(host) and netloc.lower() == (host or "").lower()


class HearthServerProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    # autobahn sets TCP_NODELAY before factory options reach the protocol; as a
    # class attribute it is in place when connectionMade runs (STACK.md).
    tcpNoDelay = True

    node: Node
    config: HearthConfig
    conn: Connection | None = None

    def onConnect(self, request: Any) -> str:
        host = request.headers.get("host")
        if not origin_allowed(request.origin, host, self.config.server.allowed_origins):
            _log.info("websocket refused: origin not allowed")
            raise ConnectionDeny(403, "Origin not allowed")
        if SUBPROTOCOL not in request.protocols:
            _log.info("websocket refused: subprotocol missing")
            raise ConnectionDeny(400, f"Subprotocol {SUBPROTOCOL} required")
        return SUBPROTOCOL

    def onOpen(self) -> None:
        peer = self.transport.getPeer() if self.transport is not None else None
        self.conn = self.node.connection(getattr(peer, "host", None))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.conn is not None:
            self.node.received(self, self.conn, payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.node.lost(self, conn)

    # --- the Peer interface the node writes through ---

    def send_bytes(self, payload: bytes) -> None:
        if self.state == self.STATE_OPEN:
            self.sendMessage(payload, isBinary=False)

    def send_binary(self, payload: bytes) -> None:
        if self.state == self.STATE_OPEN:
            self.sendMessage(payload, isBinary=True)

    def pending_bytes(self) -> int:
        """Bytes written but not yet accepted by the kernel (Twisted's FileDescriptor buffers)."""
        transport = self.transport
        if transport is None:
            return 0
        buffered = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
        return buffered + getattr(transport, "_tempDataLen", 0)

    def send_prepared(self, prepared: Any) -> None:
        if self.state == self.STATE_OPEN:
            self.sendPreparedMessage(prepared)

    def close(self, code: int, reason: str) -> None:
        if self.state != self.STATE_OPEN:
            return
        if code == 1000 or 3000 <= code <= 4999:
            self.sendClose(code, reason)
        else:  # protocol codes such as 1008: autobahn's public sendClose refuses them
            self.sendCloseFrame(code, reason.encode("utf-8"), isReply=False)


def websocket_factory(config: HearthConfig) -> WebSocketServerFactory:
    """The /ws factory; `bind_node` gives it its node once the node exists."""
    factory = WebSocketServerFactory(protocols=[SUBPROTOCOL])
    limits = config.limits
    factory.setProtocolOptions(
        maxFramePayloadSize=limits.max_frame_bytes,
        maxMessagePayloadSize=limits.max_frame_bytes,
        # permessage-deflate stays off: ciphertext does not compress.
        perMessageCompressionAccept=lambda offers: None,
        autoPingInterval=20, autoPingTimeout=20,
        openHandshakeTimeout=10, closeHandshakeTimeout=5,
        failByDrop=False)
    return factory


def bind_node(factory: WebSocketServerFactory, config: HearthConfig, node: Node) -> None:
    factory.protocol = type("BoundHearthServerProtocol", (HearthServerProtocol,),
                            {"node": node, "config": config})


def prepare_for(factory: WebSocketServerFactory) -> Any:
    def prepare(payload: bytes, binary: bool) -> Any:
        return factory.prepareMessage(payload, isBinary=binary, doNotCompress=True)
    return prepare
