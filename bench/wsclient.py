"""A lean asyncio WebSocket client for the load generator: just enough RFC 6455.

Why not autobahn or hearth.client here: the generator must not saturate
before the server under test, and on a 2-core machine it gets one core. A
raw `asyncio.Protocol` that frames by hand costs a few microseconds per
message; autobahn's per-frame machinery costs several times that. Only what
the benchmark needs is implemented: one handshake, unfragmented text and
binary frames, ping -> pong, and close.

Frames to the server are masked as RFC 6455 requires, with a random key per
connection (a browser draws one per frame; the server's work is the same),
so the server under test pays for unmasking exactly as it would in use.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def frame(payload: bytes, opcode: int, key: bytes = b"\x5a\x17\xc3\x96") -> bytes:
    """One FIN frame, masked with `key` (client -> server)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    stream = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        n, "little") if n else payload
    return head + key + masked


class WSClient(asyncio.Protocol):
    """One connection. Set `on_text` / `on_binary` before traffic starts."""

    __slots__ = ("_buf", "_handshake", "closed", "index", "key", "on_binary", "on_close",
                 "on_text", "opened", "transport")

    def __init__(self, host: str, path: str, subprotocol: str | None, index: int = 0) -> None:
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.on_text: Callable[[WSClient, bytes], None] = _ignore
        self.on_binary: Callable[[WSClient, bytes], None] = _ignore
        self.on_close: Callable[[WSClient], None] = _ignore_close
        self.opened: asyncio.Future[WSClient] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.key = os.urandom(4)
        self._buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        proto = f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else ""
        self._handshake: bytes | None = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{proto}\r\n").encode()

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        if self._handshake is not None:
            transport.write(self._handshake)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        if self._handshake is not None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return
            status = buf[:buf.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                if not self.opened.done():
                    self.opened.set_exception(ConnectionError(status.decode("latin-1")))
                self._buf = b""
                return
            self._handshake = None
            buf = buf[end + 4:]
            if not self.opened.done():
                self.opened.set_result(self)
        i, n = 0, len(buf)
        on_text, on_binary = self.on_text, self.on_binary
        while n - i >= 2:
            b0 = buf[i]
            length = buf[i + 1] & 0x7F
            head = 2
            if length == 126:
                if n - i < 4:
                    break
                length = int.from_bytes(buf[i + 2:i + 4], "big")
                head = 4
            elif length == 127:
                if n - i < 10:
                    break
                length = int.from_bytes(buf[i + 2:i + 10], "big")
                head = 10
            end = i + head + length
            if end > n:
                break
            opcode = b0 & 0x0F
            if opcode == BINARY:
                on_binary(self, buf[i + head:end])
            elif opcode == TEXT:
                on_text(self, buf[i + head:end])
            elif opcode == PING:
                self.send(buf[i + head:end], PONG)
            elif opcode == CLOSE:
                self.closed = True
                if self.transport is not None:
                    self.transport.close()
            i = end
        self._buf = buf[i:] if i < n else b""

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        self.on_close(self)

    # --- sending ----------------------------------------------------------------------

    def send(self, payload: bytes, opcode: int = TEXT) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(frame(payload, opcode, self.key))

    def send_frame(self, framed: bytes) -> None:
        """Bytes already framed by `frame()` (the generator prebuilds what it can)."""
        if self.transport is not None and not self.closed:
            self.transport.write(framed)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _ignore(client: WSClient, payload: bytes) -> None:
    return None


def _ignore_close(client: WSClient) -> None:
    return None


async def connect(host: str, port: int, *, path: str = "/ws", subprotocol: str | None = "hearth.v1",
                  index: int = 0, timeout: float = 10.0) -> WSClient:
    """Open a connection and finish the handshake, or raise."""
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(loop.create_connection(
        lambda: WSClient(f"{host}:{port}", path, subprotocol, index), host, port), timeout)
    await asyncio.wait_for(proto.opened, timeout)
    return proto
