"""The WebSocket edge's write path over a real socket (web/ws.py, docs/performance.md).

`pending_bytes` answers from the connection's own buffer while every flush has
gone straight into the socket, and asks Twisted's transport once bytes had to be
handed to it: a listener that stops reading must still show up as backed up
(the slow-listener rule drops its voice), and count as drained once it reads.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.support.config import make_config
from tests.support.live import start_server


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


def masked(payload: bytes) -> bytes:
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes((0x81, 0x80 | len(payload))) + key + body


async def raw_member(port: int) -> socket.socket:
    """A hand-made client: handshake, join, and from then on it reads only when told."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    sock.setblocking(False)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
                  "Upgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: hearth.v1\r\n\r\n")
                 .encode())
    got = b""
    for _ in range(200):
        await sleep(0.01)
        try:
            got += sock.recv(65536)
        except BlockingIOError:
            continue
        if b"\r\n\r\n" in got:
            break
    assert got.startswith(b"HTTP/1.1 101"), got[:200]
    sock.sendall(masked(json.dumps({"type": "join", "room": "circle"}).encode()))
    return sock


def drain(sock: socket.socket) -> int:
    total = 0
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return total
        if not chunk:
            return total
        total += len(chunk)


@pytest_twisted.ensureDeferred
async def test_a_reader_that_stops_shows_as_backed_up_and_as_drained_once_it_reads() -> None:
    live = await start_server(make_config())
    sock: socket.socket | None = None
    try:
        sock = await raw_member(live.port)
        node = live.hearth.node
        for _ in range(200):
            await sleep(0.01)
            if node.member_count == 1:
                break
        [link] = [lk for lk in node.host.links.values() if lk.members]
        peer: Any = link.peer
        await sleep(0.05)
        assert peer.pending_bytes() == 0  # the welcome went straight into the socket
        chunk = b"x" * 60_000
        for _ in range(200):  # until the kernel's buffers are full and Twisted holds the rest
            peer.send_bytes(chunk)
            await sleep(0)
            if peer.pending_bytes() > 200_000:
                break
        held = len(peer.transport.dataBuffer) - peer.transport.offset \
            + peer.transport._tempDataLen
        assert held > 0
        assert peer.pending_bytes() >= held > 0
        received = 0
        for _ in range(2000):  # the member reads again: Twisted writes out what it held
            received += drain(sock)
            await sleep(0.005)
            if peer.pending_bytes() == 0:
                break
        assert peer.pending_bytes() == 0 and received > 0
    finally:
        if sock is not None:
            sock.close()
        await live.hearth.service.stopService()
