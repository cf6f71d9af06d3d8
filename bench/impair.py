"""A bounded in-process impairment proxy: a bad mobile link between a client and the server.

UDP (what WebTransport rides): each datagram, in each direction, is lost with probability
`loss`, or else delivered after a delay drawn uniformly from `delay ± jitter` — datagrams may
overtake each other, as on a real path with that much jitter.

TCP (what the WebSocket rides): the same link, seen through TCP. Bytes are never lost and
never reordered for the application; a segment "lost" on the link arrives when TCP's
retransmission would bring it, and everything behind it waits (head-of-line blocking). The
retransmission follows Linux's RACK-TLP fast recovery on a steady stream: the loss shows
when a later segment (the next 20 ms frame) is acknowledged, after one round trip and a
reordering window of a quarter round trip; the resent copy then crosses the link again
(and may be lost again: then after a retransmission timeout of at least 200 ms, doubling).

Bounded: at most MAX_HELD datagrams or MAX_HELD_BYTES of stream per direction are in
flight inside the proxy (more datagrams are dropped, a stream stops being read), and every
connection is closed with the proxy. The randomness is seeded, so a run can be repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from dataclasses import dataclass, field
from typing import Any

MAX_HELD = 4096  # datagrams in flight per direction
MAX_HELD_BYTES = 1 << 20  # stream bytes in flight per direction
MAX_PEERS = 256  # UDP clients the proxy keeps a path for
MIN_RTO = 0.2  # seconds: Linux's smallest retransmission timeout
MAX_RESENDS = 8  # copies of one segment the model sends at most
NEXT_SEGMENT = 0.02  # seconds until the next segment of a 20 ms voice stream is sent


@dataclass
class Link:
    """The impairment of one link, both directions alike."""
    loss: float = 0.05
    delay: float = 0.050  # seconds, one way
    jitter: float = 0.020  # ± seconds, uniform
    seed: int = 23
    rng: random.Random = field(init=False)
    lost: int = 0
    passed: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def one_way(self) -> float:
        return self.delay + self.rng.uniform(-self.jitter, self.jitter)

    def drops(self) -> bool:
        if self.rng.random() < self.loss:
            self.lost += 1
            return True
        self.passed += 1
        return False

    def stream_delay(self) -> float:
        """How long a segment takes to come through, retransmissions included."""
        if not self.drops():
            return self.one_way()
        # RACK: the acknowledgement of the next segment (sent 20 ms later) shows the loss,
        # a quarter round trip later the copy is sent, and it crosses the link again.
        rtt = self.one_way() + self.one_way()
        waited = NEXT_SEGMENT + rtt + rtt / 4
        rto = max(MIN_RTO, 1.5 * rtt)
        for _ in range(MAX_RESENDS):  # the copy is lost too: a timeout, then another copy
            if not self.drops():
                break
            waited += rto
            rto *= 2
        return waited + self.one_way()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, deliver: Any) -> None:
        self.deliver = deliver
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []  # from the client, before the upstream socket is open

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.deliver(data, addr)

    def send(self, data: bytes, addr: Any = None) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)


class UdpProxy:
    """Listens on a UDP port; each client address gets its own socket towards the server."""

    def __init__(self, target: tuple[str, int], link: Link) -> None:
        self.target, self.link = target, link
        self.port = 0
        self.held = 0
        self.overflow = 0
        self._front: _Datagrams | None = None
        self._paths: dict[Any, _Datagrams] = {}
        self._opening: set[asyncio.Future[None]] = set()

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        _, front = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self._from_client), local_addr=("127.0.0.1", 0))
        self._front = front
        assert front.transport is not None
        self.port = int(front.transport.get_extra_info("sockname")[1])
        return self.port

    def _later(self, send: Any, data: bytes) -> None:
        """Lost, or sent after the link's delay; at most MAX_HELD on the way at once."""
        if self.link.drops():
            return
        if self.held >= MAX_HELD:
            self.overflow += 1
            return
        self.held += 1

        def go() -> None:
            self.held -= 1
            send(data)
        asyncio.get_running_loop().call_later(self.link.one_way(), go)

    def _from_client(self, data: bytes, addr: Any) -> None:
        path = self._paths.get(addr)
        if path is None:
            if len(self._paths) >= MAX_PEERS:
                return
            path = _Datagrams(lambda back, _: self._to_client(back, addr))
            self._paths[addr] = path
            path.pending.append(data)
            task = asyncio.ensure_future(self._open(path))
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)
        elif path.transport is None:
            path.pending.append(data)
        else:
            self._later(path.send, data)

    async def _open(self, path: _Datagrams) -> None:
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: path,
                                                                  remote_addr=self.target)
        for data in path.pending:
            self._later(path.send, data)
        path.pending.clear()

    def _to_client(self, data: bytes, addr: Any) -> None:
        front = self._front
        if front is not None:
            self._later(lambda d: front.send(d, addr), data)

    def close(self) -> None:
        for path in [*self._paths.values(), self._front]:
            if path is not None and path.transport is not None:
                path.transport.close()
        self._paths.clear()


class TcpProxy:
    """Listens on a TCP port; each connection is relayed to the server through the link."""

    def __init__(self, target: tuple[str, int], link: Link) -> None:
        self.target, self.link = target, link
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        for w in (writer, up_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._writers += [writer, up_writer]
        with contextlib.suppress(asyncio.CancelledError):  # the run ended, still connected
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer),
                                 return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Each read is a segment: delivered in order, at max(its own arrival, the last)."""
        loop = asyncio.get_running_loop()
        last = 0.0
        held = [0]
        room = asyncio.Event()
        room.set()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                at = max(loop.time() + self.link.stream_delay(), last)
                last = at
                held[0] += len(data)

                def go(chunk: bytes = data) -> None:
                    held[0] -= len(chunk)
                    if held[0] < MAX_HELD_BYTES:
                        room.set()
                    if not writer.is_closing():
                        writer.write(chunk)
                loop.call_at(at, go)
                if held[0] >= MAX_HELD_BYTES:
                    room.clear()
                    await room.wait()
        finally:
            loop.call_at(last + 0.001, writer.close)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
