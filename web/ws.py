"""The WebSocket endpoint /ws: autobahn frames in and out, nothing else.

The handshake refuses a foreign Origin (403) and a client that does not speak
`hearth.v1` (400); then every frame goes to the node, which returns nothing to
write here but bytes.

Writes are coalesced: every frame for a connection during one turn of the
event loop is buffered here and goes out in one `send()` at the end of the
turn, straight to the socket when Twisted holds nothing unsent for it. A
room message or a voice frame is written to many connections; Twisted's own
path registers each with epoll and writes on the next turn (two epoll_ctl
calls and a callback per connection per write), which was the largest cost of
the relay (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import pprint
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket import protocol as autobahn_protocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import tcp
from twisted.logger import Logger

from hearth.spaces.config import HearthConfig
from hearth.spaces.protocol import SUBPROTOCOL
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
    # autobahn sets TCP_NODELAY before factory options reach the protocol; as a
    # class attribute it is in place when connectionMade runs (STACK.md).
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
        _read_directly(self.transport)
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

    # --- the Peer interface the node writes through ---

    def send_bytes(self, payload: bytes) -> None:
        if self.state == self.STATE_OPEN:
            self.sendData(server_frame(payload, False))

    def send_binary(self, payload: bytes) -> None:
        if self.state == self.STATE_OPEN:
            self.sendData(server_frame(payload, True))

    def pending_bytes(self) -> int:
        """Bytes written but not yet accepted by the kernel (ours, then Twisted's buffers).

        Asked once per listener per voice frame: while every flush has gone straight
        into the socket, Twisted holds nothing for this connection and our buffer is all.
        """
        if not self._handed_over:
            return self._out_len
        transport = self.transport
        if type(transport) is tcp.Server:
            held = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
            if not held:
                self._handed_over = False  # Twisted has written it all out since
            return self._out_len + held
        if transport is None:
            return 0
        buffered = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
        return self._out_len + buffered + getattr(transport, "_tempDataLen", 0)

    def send_prepared(self, prepared: Any) -> None:
        """`sendData(prepared.payloadHybi)` (compression is never on), its common case inline:
        once per recipient of every room message and voice frame."""
        if self.state != _OPEN or self.send_queue:
            if self.state == self.STATE_OPEN:
                self.sendData(prepared.payloadHybi)
            return
        data = prepared.payloadHybi
        out = self._out
        if out is None:
            self._out = [data]
            _dirty.append(self)
            if len(_dirty) == 1:
                _call_soon(_flush_all)
        else:
            out.append(data)
        self._out_len += len(data)

    # --- reading: whole data frames without autobahn's per-frame machinery ---

    def dataReceived(self, data: bytes) -> None:
        """autobahn's Twisted adapter formats a debug line per read, logged or not: skip it."""
        if self.state == self.STATE_OPEN and not self.logOctets:
            self.data = self.data + data if self.data else data
            self.consumeData()
        else:
            super().dataReceived(data)

    def processData(self) -> bool:
        """Complete, masked, unfragmented text or binary frames: unmask, check, deliver.

        That is every frame a hearth.v1 client sends in practice. autobahn's own
        parser (a frame object, a masker object, a UTF-8 validator object and
        about thirty calls per message) still takes anything else: control
        frames, fragments, frames not yet complete, oversized or invalid ones,
        which it answers with the close codes docs/protocol.md lists. The buffer
        is cut once per read, not once per frame (a backlog of small voice frames
        would otherwise be copied over and over).
        """
        data = self.data
        if (self.current_frame is not None or self.inside_message or self.failedByMe
                or self.state != self.STATE_OPEN):
            return bool(super().processData())
        i, n = 0, len(data)
        limit = min(self.maxMessagePayloadSize or n, self.maxFramePayloadSize or n)
        while n - i >= 6 and self.state == self.STATE_OPEN and not self.failedByMe:
            b0, b1 = data[i], data[i + 1]
            if (b0 != 0x81 and b0 != 0x82) or not b1 & 0x80:
                break
            length = b1 & 0x7F
            if length < 126:
                start = i + 6
            elif length == 126 and n - i >= 8:
                length = (data[i + 2] << 8) | data[i + 3]
                start = i + 8
            else:
                break
            end = start + length
            if end > n or length > limit:
                break
            payload = unmask(data[start:end], data[start - 4:start])
            if b0 == 0x81 and not payload.isascii():
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    break  # autobahn closes with 1007
            i = end
            if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
                self._cancelAutoPingTimeoutCall()
            self.onMessage(payload, b0 == 0x82)
        if i == 0:
            return bool(super().processData())
        self.data = data[i:]
        return len(self.data) > 0

    # --- write coalescing (see the module docstring) ---

    _out: list[bytes] | None = None
    _out_len = 0
    # Whether Twisted's transport may hold bytes of ours (the handshake, a partial send,
    # TLS, ...): pending_bytes asks it then, until it is found holding nothing.
    _handed_over = True

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """autobahn writes every frame through here: buffer it until the end of this turn."""
        if sync or chopsize or self.state != self.STATE_OPEN or self.send_queue:
            self.flush()
            if not self._handed_over:  # (a class attribute until then: no per-member key)
                self._handed_over = True
            super().sendData(data, sync, chopsize)
            return
        out = self._out
        if out is None:
            self._out = [data]
            _dirty.append(self)
            if len(_dirty) == 1:
                _call_soon(_flush_all)
        else:
            out.append(data)
        self._out_len += len(data)

    def flush(self) -> None:
        """One write of everything buffered; directly to the socket when nothing else waits."""
        out = self._out
        if out is None:
            return
        self._out, self._out_len = None, 0
        transport = self.transport
        if transport is None:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        if (type(transport) is tcp.Server and transport.connected and not transport.disconnecting
                and not transport.dataBuffer and not transport._tempDataBuffer):
            try:
                sent = transport.socket.send(data)
            except OSError:  # would block, or an error Twisted's own write will report
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        if not self._handed_over:
            self._handed_over = True
        transport.write(data)

    def _closeConnection(self, abort: bool = False) -> None:
        if not abort:
            self.flush()  # a close frame still in the buffer must go before the FIN
        super()._closeConnection(abort)

    def close(self, code: int, reason: str) -> None:
        if self.state != self.STATE_OPEN:
            return
        if code == 1000 or 3000 <= code <= 4999:
            self.sendClose(code, reason)
        else:  # protocol codes such as 1008: autobahn's public sendClose refuses them
            self.sendCloseFrame(code, reason.encode("utf-8"), isReply=False)


_OPEN = HearthServerProtocol.STATE_OPEN
_dirty: list[HearthServerProtocol] = []


def _flush_all() -> None:
    """End of a turn of the event loop: one write per connection that was written to."""
    dirty = _dirty[:]
    del _dirty[:]
    for proto in dirty:
        proto.flush()


def _read_directly(transport: Any) -> None:
    """Twisted's asyncio reactor calls every read of a socket through `callWithLogger`,
    which builds a logging context (the connection's log prefix) around it: four calls
    and two dicts per read, a few per cent of the relay's CPU. For an open WebSocket on
    plain TCP, the event loop calls the reactor's own `_readOrWrite` directly instead:
    the same read, error handling and disconnection, only without that context (log
    lines written while handling a frame carry the default `system`). Any other
    reactor or transport (TLS) keeps Twisted's path, and so does a connection Twisted
    registers again itself (it pauses and resumes reading)."""
    from twisted.internet import reactor
    readers = getattr(reactor, "_readers", None)
    loop = getattr(reactor, "_asyncioEventloop", None)
    read = getattr(reactor, "_readOrWrite", None)
    if type(transport) is not tcp.Server or not isinstance(readers, dict) or loop is None \
            or read is None:
        return
    fd = readers.get(transport)
    if fd is not None and fd == transport.fileno():
        loop.add_reader(fd, read, transport, True)


def _call_soon(callback: Any) -> None:
    """Run after the callbacks of this turn (asyncio's ready queue); any reactor works."""
    try:
        asyncio.get_running_loop().call_soon(callback)
    except RuntimeError:
        from twisted.internet import reactor
        reactor.callLater(0, callback)


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


def bind_node(factory: WebSocketServerFactory, config: HearthConfig, node: Node,
              webtransport: Any = None) -> None:
    # autobahn copies each of the factory's ~30 options into every connection's
    # __dict__ unless the class has it: as class attributes they are shared (and the
    # per-connection dict is about half the size; docs/performance.md, "idle").
    options = {name: _shared(getattr(factory, name)) for name in HearthServerProtocol.CONFIG_ATTRS
               if name not in HearthServerProtocol.__dict__ and hasattr(factory, name)}
    factory.protocol = type("BoundHearthServerProtocol", (HearthServerProtocol,),
                            {**options, "node": node, "config": config,
                             "webtransport": webtransport,
                             "trusted_proxies": trusted_networks(config.server.trusted_proxies)})


def _shared(value: Any) -> Any:
    """A function as a class attribute would become a method: keep it a plain function."""
    return staticmethod(value) if callable(value) and not isinstance(value, type) else value


def server_frame(payload: bytes, binary: bool) -> bytes:
    """One unfragmented, unmasked frame, as a server sends it (RFC 6455 section 5.2)."""
    n = len(payload)
    first = 0x82 if binary else 0x81
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


def unmask(payload: bytes, key: bytes) -> bytes:
    """XOR with the 4-byte masking key, as one big-integer operation."""
    n = len(payload)
    if not n or key == b"\0\0\0\0":
        return payload
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


class Prepared:
    """A message framed once for every recipient (what autobahn's PreparedMessage holds)."""

    __slots__ = ("binary", "doNotCompress", "payload", "payloadHybi")

    def __init__(self, payload: bytes, binary: bool) -> None:
        self.payload = payload
        self.binary = binary
        self.doNotCompress = True
        self.payloadHybi = server_frame(payload, binary)


def prepare_for(factory: WebSocketServerFactory) -> Any:
    """The node's `prepare`: frame once, send the same bytes to every recipient."""
    return Prepared
