"""A WebTransport voice client (aioquic), for the bench and the tests: what a browser does
with `new WebTransport(url, {serverCertificateHashes})` and its datagrams.

It asks for nothing itself: the caller gets the offer (`voice_transport`: url, token,
hashes) over its WebSocket and hands it here. The server's certificate is checked the
way a browser checks a hash-pinned one: its SHA-256 must be one of the offered hashes
(with no hashes, the certificate is the operator's and is not checked here).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from aioquic.asyncio import QuicConnectionProtocol
from aioquic.asyncio.client import connect
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DatagramReceived, DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent
from cryptography.hazmat.primitives import serialization

from hearth.spaces import voicelink
from hearth.web.webtransport import CONGESTION, Outbox, for_voice

OPEN_TIMEOUT = 5.0


class SessionRefused(Exception):
    """The server answered the CONNECT with this HTTP status (403: the token was refused)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the WebTransport session was refused ({status})")
        self.status = status


class _Protocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for_voice(self._quic)  # as the server's end: no pacing, voice's congestion floor
        # Acknowledge at once, in the transmit that follows each packet read, rather than from
        # a 1 ms timer (aioquic's default): as many acknowledgements for the server to read,
        # one loop wake-up and one transmit fewer per packet for this end (the bench runs
        # hundreds of these in one process).
        self._quic._ack_delay = 0.0
        self.outbox = Outbox()  # unsent datagrams: bounded, and dropped once stale
        self.dropped = 0
        self.http = H3Connection(self._quic, enable_webtransport=True)
        self.session: int | None = None
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.on_datagram: Callable[[bytes], None] = lambda data: None
        self.ended = asyncio.Event()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.ended.set()
            if not self.status.done():
                self.status.set_exception(ConnectionError("the connection ended"))
        for h3 in self.http.handle_event(event):
            if isinstance(h3, DatagramReceived) and h3.stream_id == self.session:
                self.on_datagram(h3.data)
            elif isinstance(h3, HeadersReceived) and h3.stream_id == self.session \
                    and not self.status.done():
                self.status.set_result(int(dict(h3.headers).get(b":status", b"0")))
            elif isinstance(h3, DataReceived) and h3.stream_id == self.session and h3.stream_ended:
                self.ended.set()


class VoiceSession:
    """One WebTransport session carrying hearth.v1 voice datagrams (spaces/voicelink.py)."""

    def __init__(self, protocol: _Protocol, stack: contextlib.AsyncExitStack) -> None:
        self._protocol, self._stack = protocol, stack
        self.frames: list[bytes] = []  # every frame received (repeats already taken out)
        self.datagrams = 0
        self.on_frame: Callable[[bytes], None] | None = None
        self._seen: dict[bytes, voicelink.SeqWindow] = {}
        protocol.on_datagram = self._datagram

    def _datagram(self, data: bytes) -> None:
        self.datagrams += 1
        frame, repeat = voicelink.unpack(data)
        for one in (repeat, frame) if repeat is not None else (frame,):
            window = self._seen.setdefault(one[4:6], voicelink.SeqWindow())
            seq = voicelink.seq_of(one)
            if seq is not None and window.fresh(seq):
                if self.on_frame is not None:
                    self.on_frame(one)
                else:
                    self.frames.append(one)

    def send_datagram(self, data: bytes) -> None:
        """Raw bytes as one datagram (tests of what the server drops). Dropped, and counted,
        when the connection already holds too many unsent or they are stale: a page's
        datagram writer drops too (web/static/js/voicelink.js)."""
        protocol = self._protocol
        assert protocol.session is not None
        pending, outbox = protocol._quic._datagrams_pending, protocol.outbox
        outbox.sent(pending)
        protocol.dropped += outbox.expire(pending, protocol._loop.time())
        if not outbox.room(pending):
            protocol.dropped += 1
            return
        protocol.http.send_datagram(protocol.session, data)
        outbox.queue(protocol._loop.time())
        protocol.transmit()

    @property
    def dropped(self) -> int:
        """Datagrams this end dropped unsent (congestion), as the server's dropped_* do."""
        return self._protocol.dropped

    def send(self, frame: bytes, repeat: bytes | None = None) -> None:
        self.send_datagram(voicelink.pack(frame, repeat))

    @property
    def ended(self) -> bool:
        return self._protocol.ended.is_set()

    async def close(self) -> None:
        self._protocol.close()
        await self._stack.aclose()


async def open_session(offer: dict[str, Any], *, origin: str | None = None,
                       via: tuple[str, int] | None = None,
                       timeout: float = OPEN_TIMEOUT) -> VoiceSession:
    """Open the session an offer (`voice_transport`) describes; `via`: connect to this
    address instead (an impairment proxy) while naming the server's host in the request.
    SessionRefused if the server answers anything but 200."""
    url = urlsplit(offer["url"])
    host, port = url.hostname or "127.0.0.1", url.port or 443
    config = QuicConfiguration(alpn_protocols=H3_ALPN, is_client=True,
                               max_datagram_frame_size=65536, verify_mode=ssl.CERT_NONE,
                               server_name=host, congestion_control_algorithm=CONGESTION)
    stack = contextlib.AsyncExitStack()
    target = via or (host, port)
    try:
        protocol = await asyncio.wait_for(stack.enter_async_context(connect(
            target[0], target[1], configuration=config, create_protocol=_Protocol)), timeout)
        assert isinstance(protocol, _Protocol)
        _check_pin(protocol, offer.get("hashes") or [])
        session = protocol._quic.get_next_available_stream_id()
        protocol.session = session
        headers = [(b":method", b"CONNECT"), (b":scheme", b"https"),
                   (b":authority", url.netloc.encode()),
                   (b":path", f"{url.path}?token={offer['token']}".encode()),
                   (b":protocol", b"webtransport")]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        protocol.http.send_headers(session, headers)
        protocol.transmit()
        status = await asyncio.wait_for(protocol.status, timeout)
        if status != 200:
            raise SessionRefused(status)
    except BaseException:
        await stack.aclose()
        raise
    return VoiceSession(protocol, stack)


def _check_pin(protocol: _Protocol, hashes: list[str]) -> None:
    if not hashes:
        return
    cert = protocol._quic.tls._peer_certificate
    assert cert is not None
    digest = base64.b64encode(hashlib.sha256(
        cert.public_bytes(serialization.Encoding.DER)).digest()).decode()
    if digest not in hashes:
        raise ssl.SSLError("the server's certificate is not the one offered")
