"""The library internals Hearth leans on still have the shape it was written against.

The WebSocket fast path (frames parsed without autobahn's per-frame machinery, writes
coalesced straight to the socket, reads dispatched without Twisted's logging context)
and the HTTP limits (a deadline per request, 413 before a body, a place given back at
a WebSocket handshake) use private attributes of autobahn and Twisted. pyproject.toml
pins both below their next major version; this test fails loudly, naming what moved,
when an upgrade changes any of them — whichever Hearth module uses them. It checks the
libraries, never Hearth's own code, so it stands wherever the fast path lives.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
from typing import Any

import pytest
from autobahn.twisted import resource as autobahn_resource
from autobahn.twisted import websocket as autobahn_twisted
from autobahn.websocket import protocol as autobahn_protocol
from twisted.internet import abstract, asyncioreactor, tcp
from twisted.web import http, server

UPGRADE = ("an autobahn or Twisted upgrade changed an internal Hearth relies on ({what}); "
           "check the WebSocket fast path, web/ws.py and web/site.py against the new "
           "version before raising the pins in pyproject.toml and constraints.txt")


def assigned(cls: Any, name: str) -> bool:
    """Whether some method of `cls` (or its bases) assigns `self.<name>`."""
    for klass in inspect.getmro(cls):
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if re.search(rf"self\.{re.escape(name)}\s*(:[^=]+)?=", source):
            return True
    return False


def params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def check(ok: bool, what: str) -> None:
    assert ok, UPGRADE.format(what=what)


# --- autobahn: the WebSocket protocol -------------------------------------------------------


@pytest.mark.parametrize("name", ["data", "current_frame", "inside_message", "failedByMe",
                                  "state", "send_queue", "autoPingTimeoutCall",
                                  "_perMessageCompress"])
def test_autobahn_protocol_state_the_fast_path_reads(name: str) -> None:
    check(assigned(autobahn_protocol.WebSocketProtocol, name),
          f"WebSocketProtocol.{name} is no longer kept")


@pytest.mark.parametrize("name,parameters", [
    ("processData", ["self"]),
    ("consumeData", ["self"]),
    ("sendData", ["self", "data", "sync", "chopsize"]),
    ("sendCloseFrame", ["self", "code", "reasonUtf8", "isReply"]),
    ("sendClose", ["self", "code", "reason"]),
    ("sendPreparedMessage", ["self", "preparedMsg"]),
    ("_cancelAutoPingTimeoutCall", ["self"]),
])
def test_autobahn_protocol_methods(name: str, parameters: list[str]) -> None:
    method = getattr(autobahn_protocol.WebSocketProtocol, name, None)
    check(method is not None, f"WebSocketProtocol.{name} is gone")
    check(params(method) == parameters, f"WebSocketProtocol.{name}{inspect.signature(method)}")


def test_autobahn_twisted_adapter() -> None:
    cls = autobahn_twisted.WebSocketServerProtocol
    check(params(cls.dataReceived) == ["self", "data"], "WebSocketServerProtocol.dataReceived")
    check(params(cls._closeConnection) == ["self", "abort"],
          "WebSocketServerProtocol._closeConnection")
    check(cls.STATE_OPEN == 3 and {"STATE_CLOSED", "STATE_CONNECTING", "STATE_CLOSING"}
          <= set(dir(cls)), "the STATE_* constants")
    # Options copied per connection: bound as class attributes instead (web/ws.py bind_node).
    attrs = cls.CONFIG_ATTRS
    for option in ("logOctets", "autoPingRestartOnAnyTraffic", "maxFramePayloadSize",
                   "maxMessagePayloadSize", "openHandshakeTimeout", "autoPingInterval"):
        check(option in attrs, f"{option} in WebSocketServerProtocol.CONFIG_ATTRS")
    check(getattr(cls, "tcpNoDelay", None) is not None or "tcpNoDelay" in attrs,
          "tcpNoDelay as a class attribute")


def test_autobahn_prepared_messages_and_the_lazy_pformat() -> None:
    check(assigned(autobahn_protocol.PreparedMessage, "payloadHybi")
          and assigned(autobahn_protocol.PreparedMessage, "doNotCompress"),
          "PreparedMessage.payloadHybi / doNotCompress")
    source = inspect.getsource(autobahn_protocol.WebSocketProtocol.sendPreparedMessage)
    check("payloadHybi" in source and "doNotCompress" in source,
          "sendPreparedMessage no longer sends payloadHybi as it is")
    check(callable(getattr(autobahn_protocol, "pformat", None)),
          "autobahn.websocket.protocol.pformat (replaced by a lazy one: web/ws.py)")


def test_autobahn_takes_the_transport_over_from_the_http_channel() -> None:
    """web/site.py gives a WebSocket's HTTP place back when this happens."""
    source = inspect.getsource(autobahn_resource.WebSocketResource.render)
    check(re.search(r"request\.channel\.transport\s*=\s*(request\.channel\.transport,\s*)?"
                    r"None", source) is not None,
          "WebSocketResource.render taking over request.channel.transport")


# --- Twisted: the TCP transport and the asyncio reactor -------------------------------------


def test_twisted_tcp_write_buffers() -> None:
    """pending_bytes and the direct write read the transport's buffers."""
    check("dataBuffer" in vars(abstract.FileDescriptor) and
          "offset" in vars(abstract.FileDescriptor), "FileDescriptor.dataBuffer / offset")
    for name in ("_tempDataBuffer", "_tempDataLen"):
        check(assigned(abstract.FileDescriptor, name), f"FileDescriptor.{name}")
    for name in ("socket", "connected", "disconnecting"):
        check(assigned(tcp.Server, name) or hasattr(tcp.Server, name), f"tcp.Server.{name}")
    check(issubclass(tcp.Server, abstract.FileDescriptor), "tcp.Server's base class")


def test_twisted_asyncio_reactor_readers() -> None:
    """Reads of an open WebSocket go straight to the reactor's `_readOrWrite`, found from
    its `_readers` map (transport -> fd) and its `_asyncioEventloop`."""
    check(params(asyncioreactor.AsyncioSelectorReactor._readOrWrite)
          == ["self", "selectable", "read"], "AsyncioSelectorReactor._readOrWrite")
    loop = asyncio.new_event_loop()
    reactor = asyncioreactor.AsyncioSelectorReactor(loop)
    read_fd, write_fd = os.pipe()
    try:
        class Reader:
            def fileno(self) -> int:
                return read_fd

            def doRead(self) -> None:
                return None

            def logPrefix(self) -> str:
                return "reader"

        reader = Reader()
        reactor.addReader(reader)  # type: ignore[arg-type]
        check(getattr(reactor, "_asyncioEventloop", None) is loop,
              "AsyncioSelectorReactor._asyncioEventloop")
        readers = getattr(reactor, "_readers", None)
        check(isinstance(readers, dict) and readers.get(reader) == read_fd,
              "AsyncioSelectorReactor._readers maps a selectable to its fd")
        reactor.removeReader(reader)  # type: ignore[arg-type]
    finally:
        os.close(read_fd)
        os.close(write_fd)
        loop.close()


# --- Twisted: the HTTP channel (web/site.py's limits) ------------------------------------------


def test_twisted_http_channel_hooks() -> None:
    channel = http.HTTPChannel
    for name in ("allHeadersReceived", "allContentReceived", "rawDataReceived", "dataReceived",
                 "requestDone", "connectionLost", "connectionMade"):
        check(callable(getattr(channel, name, None)), f"HTTPChannel.{name}")
    check(params(channel.requestDone) == ["self", "request"], "HTTPChannel.requestDone")
    for name in ("_dataBuffer", "length", "_handlingRequest", "transport"):
        check(assigned(channel, name), f"HTTPChannel.{name}")
    lines = inspect.getsource(channel.lineReceived)
    check("self.allHeadersReceived()" in lines and "self.length == 0" in lines,
          "HTTPChannel.lineReceived calling allHeadersReceived, then reading the body")
    check(params(server.Request.handleContentChunk) == ["self", "data"],
          "Request.handleContentChunk")
