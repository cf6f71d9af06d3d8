"""Voice over UDP: a WebTransport (HTTP/3 over QUIC, aioquic) endpoint in the same process
and on the same reactor (Twisted's asyncio reactor) as the WebSocket.

Only voice travels here, as datagrams; everything else stays on the WebSocket, and voice
goes back to the WebSocket whenever a session is not there. A member's page asks for a
one-time token over its WebSocket (`voice_transport`), opens
`https://HOST:PORT/voice?token=…` with it, and from then on:

- a datagram from the session enters exactly where a binary WebSocket message enters
  (`Node.received(link, frame, True)`): the same room core decides about it — rate
  limits, mute, range and zone, the talking stick, private corners;
- a voice frame for this member leaves through the same Voice delivery as before; the
  node sends it to the member's channel (`peer.voice_channel`) instead of the socket.

A datagram of a session that no token bound, or of one whose WebSocket closed or that
another session replaced, is dropped and counted (`hearth_voice_datagrams`). The framing,
the tokens and the filter of repeated copies are sans-IO, in spaces/voicelink.py.

Sending (docs/performance.md, "The datagram voice scenario"): QUIC as aioquic does it for
bulk data holds small, self-paced voice back, and a held frame is a late frame. So:
- no pacing: aioquic spaces packets as if each were full-sized, so a burst of 100-byte
  voice packets (a few speakers' frames, or a short stall of the process) left in a
  queue that only drained at the pace of bulk transfer (`Unpaced`);
- the congestion window is New Reno's, but never below VOICE_WINDOW bytes: voice is
  inelastic and the room core already bounds it (50 frames a second a speaker), while
  Reno after a few losses on a lossy link allows less than one room's voice
  (`VoiceCongestion`);
- a datagram the window still holds back is dropped after MAX_AGE seconds, and a
  connection holds at most MAX_PENDING: never an unbounded or stale queue (each
  datagram repeats the previous frame, so the next one carries what a drop lost);
- one transmit per connection per turn of the loop, after everything the turn routed
  and every packet it read (`Turn`): a frame for a listener and the ACKs it owes go
  out in one packet.

Certificates: the operator's (PEM files), or a self-signed ECDSA P-256 one valid
SELF_SIGNED_DAYS days (browsers accept one under 14 days by its SHA-256, which the page
gets with its token), replaced ROTATE_BEFORE_DAYS before it expires.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import re
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DatagramReceived, DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.congestion.base import register_congestion_control
from aioquic.quic.congestion.reno import RenoCongestionControl
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, ProtocolNegotiated, QuicEvent
from aioquic.quic.packet import QuicErrorCode
from aioquic.quic.packet_builder import QuicSentPacket
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from hearth.spaces import protocol as p
from hearth.spaces import voicelink
from hearth.spaces.config import HearthConfig, WebTransportConfig
from hearth.spaces.protocol import ProtocolError, encode
from hearth.spaces.server_messages import ServerMessage, VoiceTransportOffer
from hearth.web.ws import origin_allowed

PATH = "/voice"
REQUEST_MAX = 512  # bytes: a longer voice_transport goes on to the room core, which refuses it
MAX_PENDING = 32  # datagrams a connection may hold unsent (congestion): then voice is dropped
MAX_AGE = 0.04  # seconds a datagram may wait for the congestion window: then it is dropped
VOICE_WINDOW = 12_000  # bytes: the congestion window's floor (aioquic's initial window)
CONGESTION = "hearth-voice"  # VoiceCongestion's name in aioquic's registry
SOCKET_BUFFER = 1 << 20  # bytes of the UDP socket's kernel buffers (both ways), asked for
ROOM = 1100  # bytes of a datagram's payload, well inside a QUIC packet on any path
BIND_WITHIN = 10.0  # seconds a QUIC connection has to open its session
CONNECTION_REFUSED = QuicErrorCode.CONNECTION_REFUSED  # past max_connections
SELF_SIGNED_DAYS = 10  # total validity, under the 14 days browsers allow for hashes
ROTATE_BEFORE_DAYS = 3  # a self-signed certificate is replaced this long before it expires
IDLE_TIMEOUT = 30.0  # seconds of QUIC silence before a connection is given up
SWEEP_EVERY = 60.0  # seconds: expired tokens, and a certificate due for rotation

_log = Logger(namespace="hearth.webtransport")


# --- certificates -------------------------------------------------------------------------

def self_signed(now: float, days: int = SELF_SIGNED_DAYS) -> tuple[x509.Certificate,
                                                                   ec.EllipticCurvePrivateKey]:
    """A fresh ECDSA P-256 certificate for serverCertificateHashes: valid from a minute ago
    (clock skew) for `days` days in all."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hearth voice")])
    start = datetime.datetime.fromtimestamp(now - 60, datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(key, hashes.SHA256()))
    return cert, key


def certificate_hash(cert: x509.Certificate) -> str:
    """What a page passes to serverCertificateHashes: SHA-256 of the DER, base64."""
    return base64.b64encode(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER))
                            .digest()).decode()


def operator_certificate(config: WebTransportConfig) -> QuicConfiguration:
    """A QUIC configuration holding the operator's certificate; OSError or ValueError if the
    files cannot be read or do not hold a certificate and its key."""
    quic = quic_configuration()
    quic.load_cert_chain(config.certificate, config.private_key)
    assert quic.certificate is not None and quic.private_key is not None
    if quic.certificate.public_key().public_numbers() != \
            quic.private_key.public_key().public_numbers():  # type: ignore[union-attr]
        raise ValueError("the private key does not belong to the certificate")
    return quic


def check(config: HearthConfig) -> list[str]:
    """What `hearth check-config` (and `hearth serve`) refuse about [webtransport]."""
    wt = config.webtransport
    if not wt.port or not wt.certificate:
        return []
    try:
        operator_certificate(wt)
    except (OSError, ValueError) as err:
        return [f"{config.source}: webtransport.certificate: expected a readable PEM "
                f"certificate and its private key ({err})"]
    return []


def describe(config: HearthConfig, port: int | None = None) -> str | None:
    """One line for an operator: where voice over UDP listens, and with which certificate."""
    wt = config.webtransport
    port = port if port is not None else wt.port
    if not port:
        return None
    cert = "your certificate" if wt.certificate else "a self-signed certificate (by hash)"
    return (f"voice over UDP: WebTransport on udp {wt.interface}:{port} with {cert}; "
            f"open UDP port {port} in the firewall")


def quic_configuration() -> QuicConfiguration:
    return QuicConfiguration(alpn_protocols=H3_ALPN, is_client=False,
                             max_datagram_frame_size=65536, idle_timeout=IDLE_TIMEOUT,
                             congestion_control_algorithm=CONGESTION)


# --- QUIC for voice -----------------------------------------------------------------------

class VoiceCongestion(RenoCongestionControl):
    """New Reno whose window never falls below VOICE_WINDOW bytes (after a loss, or after
    persistent congestion: a process that was not scheduled for a moment looks like that).

    Voice does not grow to fill a window: its rate is set by the speakers (the room core
    allows each 50 frames a second), about 10 KB/s a speaker with its repeats. Reno's own
    floor, two full packets, holds less than three speakers' voice for one 200 ms round
    trip, so after a few random losses (a mobile link) it would hold back voice that the
    network has room for; what a link truly cannot carry is dropped instead (MAX_AGE,
    MAX_PENDING), never queued."""

    def _floor(self) -> None:
        if self.congestion_window < VOICE_WINDOW:
            self.congestion_window = VOICE_WINDOW

    def on_packets_lost(self, *, now: float, packets: Iterable[QuicSentPacket]) -> None:
        super().on_packets_lost(now=now, packets=packets)
        self._floor()

    def on_persistent_congestion(self) -> None:
        super().on_persistent_congestion()
        self._floor()


register_congestion_control(CONGESTION, VoiceCongestion)


class Unpaced:
    """aioquic's pacer, never holding a packet back.

    aioquic spaces packets one full-sized packet's time apart at the congestion window's
    rate: right for bulk data, wrong for 100-byte voice packets, where it turned a burst
    of a few speakers' frames (or a moment the process was not scheduled) into a queue
    drained 10x slower than the frames' own bytes needed."""

    packet_time = None

    def next_send_time(self, now: float) -> None:
        return None

    def update_after_send(self, now: float) -> None:
        pass

    def update_rate(self, congestion_window: int, smoothed_rtt: float) -> None:
        pass


def for_voice(quic: QuicConnection) -> None:
    """A QUIC connection set up to carry voice datagrams (both ends use it: the server here,
    the bench's client as a page would). Its configuration names CONGESTION."""
    quic._loss._pacer = Unpaced()  # type: ignore[assignment]


class Outbox:
    """When each datagram still in a connection's queue (aioquic's, first in first out) was
    queued: the ones the congestion window held back longer than `max_age` are dropped
    before the next send, and the queue never holds more than `limit`."""

    __slots__ = ("limit", "max_age", "queued")

    def __init__(self, limit: int = MAX_PENDING, max_age: float = MAX_AGE) -> None:
        self.limit, self.max_age = limit, max_age
        self.queued: deque[float] = deque()

    def room(self, pending: deque[bytes]) -> bool:
        """Whether one more datagram may join `pending`."""
        return len(pending) < self.limit

    def queue(self, now: float) -> None:
        self.queued.append(now)

    def sent(self, pending: deque[bytes]) -> int:
        """How many left the queue since (aioquic takes them from the left), forgotten."""
        queued = self.queued
        n = len(queued) - len(pending)
        for _ in range(n):
            queued.popleft()
        return max(0, n)

    def expire(self, pending: deque[bytes], now: float) -> int:
        """Drop what waited longer than max_age (the oldest first); how many were dropped."""
        queued = self.queued
        dropped = 0
        while queued and now - queued[0] > self.max_age:
            queued.popleft()
            pending.popleft()
            dropped += 1
        return dropped


class Turn:
    """The connections with something to send this turn of the loop: each transmits once,
    at its end, whatever the turn queued for it and whatever ACKs it owes."""

    __slots__ = ("dirty", "schedule")

    def __init__(self, schedule: Callable[[Callable[[], None]], Any]) -> None:
        self.schedule = schedule
        self.dirty: dict[VoiceConnection, None] = {}

    def add(self, conn: VoiceConnection) -> None:
        dirty = self.dirty
        if not dirty:
            self.schedule(self.end)
        dirty[conn] = None

    def end(self) -> None:
        dirty, self.dirty = self.dirty, {}
        for conn in dirty:
            conn.transmit()


class Certificates:
    """The certificate new QUIC connections get; a self-signed one is rotated in place
    (connections already open keep theirs)."""

    def __init__(self, config: WebTransportConfig, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.own = bool(config.certificate)
        self.quic = operator_certificate(config) if self.own else quic_configuration()
        self.expires = 0.0
        if not self.own:
            self.rotate()

    def rotate(self) -> None:
        cert, key = self_signed(self.clock())
        self.quic.certificate, self.quic.private_key = cert, key
        self.expires = cert.not_valid_after_utc.timestamp()

    def rotate_if_due(self) -> bool:
        if self.own or self.expires - self.clock() > ROTATE_BEFORE_DAYS * 86400:
            return False
        self.rotate()
        _log.info("voice over UDP: a new self-signed certificate")
        return True

    def hashes(self) -> list[str]:
        """For serverCertificateHashes: the self-signed certificate's (none for the operator's)."""
        if self.own or self.quic.certificate is None:
            return []
        return [certificate_hash(self.quic.certificate)]


# --- one member's channel -----------------------------------------------------------------

class VoiceChannel:
    """One WebTransport session bound to one member's WebSocket (the `peer`)."""

    def __init__(self, server: WebTransportServer, conn: VoiceConnection, session: int,
                 peer: Any) -> None:
        self.server, self.conn, self.session, self.peer = server, conn, session, peer
        self.inbound = voicelink.Inbound()
        self.outbound = voicelink.Outbound(ROOM)
        self.open = True

    def send(self, frame: bytes) -> bool:
        """A frame for this member; False if it must go over the WebSocket instead."""
        if not self.open or len(frame) + voicelink.LENGTH.size > ROOM:
            return False
        conn = self.conn
        if not conn.outbox.room(conn._quic._datagrams_pending):
            self.server.counts["dropped_congested"] += 1
            return True  # late audio is worse than none; the WebSocket would not be sooner
        http = conn.http
        assert http is not None
        http.send_datagram(self.session, self.outbound.datagram(frame))
        conn.outbox.queue(conn.now())
        self.server.counts["queued"] += 1
        conn.transmit_soon()
        return True

    def received(self, data: bytes) -> None:
        server, peer = self.server, self.peer
        link = getattr(peer, "link", None)
        if link is None or peer.voice_channel is not self:
            server.counts["dropped_foreign"] += 1  # its WebSocket closed, or another replaced it
            return
        try:
            frames = self.inbound.frames(data)
        except ValueError:
            server.counts["dropped_malformed"] += 1
            return
        server.counts["received"] += 1
        for frame in frames:
            server.node.received(link, frame, True)

    def close(self) -> None:
        """Stop carrying voice (the WebSocket closed, or the session ended)."""
        if not self.open:
            return
        self.open = False
        if getattr(self.peer, "voice_channel", None) is self:
            self.peer.voice_channel = None
        self.server.bound.discard(self)


# --- one QUIC connection ------------------------------------------------------------------

class VoiceConnection(QuicConnectionProtocol):
    """HTTP/3 with WebTransport, as aioquic's own example server does it: a CONNECT with
    `:protocol webtransport` on /voice with a good token is answered 200 and bound; every
    other request is refused. Datagrams go to the session's channel."""

    server: WebTransportServer  # set by WebTransportServer on its subclass

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for_voice(self._quic)
        self.http: H3Connection | None = None
        self.channels: dict[int, VoiceChannel] = {}
        self.outbox = Outbox()
        self._unbound_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        server = self.server
        if len(server.connections) >= server.config.max_connections:
            # Refused once its first packet is read (before it, the connection has no path
            # to answer on): the page keeps voice on the WebSocket and tries again later.
            self._refused = True
            server.counts["refused_busy"] += 1
            return
        server.connections.add(self)
        self._unbound_timer = self._loop.call_later(BIND_WITHIN, self._bind_timeout)

    def _bind_timeout(self) -> None:
        self._unbound_timer = None
        if not self.channels:
            self.close()

    def now(self) -> float:
        return self._loop.time()

    def transmit_soon(self) -> None:
        """One transmit per turn of the loop, however many frames were queued in it."""
        self.server.turn.add(self)

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        """As aioquic's, but the transmit (ACKs, and frames the packet had routed here) waits
        for the end of the turn: every packet read in it, one send."""
        self.server.packets["in"] += 1
        self._quic.receive_datagram(data, addr, now=self._loop.time())  # type: ignore[arg-type]
        if self._refused:  # past max_connections: say so, and read nothing it sends
            self._quic.close(error_code=CONNECTION_REFUSED, reason_phrase="busy")
            super().transmit()
            return
        self._process_events()
        self.server.turn.add(self)

    def transmit(self) -> None:
        quic = self._quic
        outbox, pending = self.outbox, quic._datagrams_pending
        counts = self.server.counts
        if outbox.queued:
            counts["sent"] += outbox.sent(pending)
            late = outbox.expire(pending, self._loop.time())
            if late:
                counts["dropped_late"] += late
        before = quic._packet_number
        super().transmit()
        self.server.packets["out"] += max(0, quic._packet_number - before)
        if outbox.queued:
            counts["sent"] += outbox.sent(pending)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self.http = H3Connection(self._quic, enable_webtransport=True)
        elif isinstance(event, ConnectionTerminated):
            self._ended()
        if self.http is not None:
            for h3 in self.http.handle_event(event):
                self._h3(h3)

    def _h3(self, event: H3Event) -> None:
        if isinstance(event, DatagramReceived):
            channel = self.channels.get(event.stream_id)
            if channel is None:
                self.server.counts["dropped_unbound"] += 1
            else:
                channel.received(event.data)
        elif isinstance(event, HeadersReceived):
            if event.stream_id in self.channels:
                return  # trailers on the session's stream: nothing for us
            self._request(event)
        elif isinstance(event, DataReceived) and event.stream_ended:
            channel = self.channels.pop(event.stream_id, None)
            if channel is not None:  # the page closed the session
                channel.close()
        # anything else (WebTransport streams, capsules) carries nothing Hearth uses

    def _request(self, event: HeadersReceived) -> None:
        headers = {k: v for k, v in event.headers}
        method = headers.get(b":method", b"")
        target = urlsplit(headers.get(b":path", b"").decode("latin-1"))
        authority = headers.get(b":authority", b"").decode("latin-1")
        origin = headers.get(b"origin")
        if method != b"CONNECT" or headers.get(b":protocol") != b"webtransport" \
                or target.path != PATH:
            self._answer(event.stream_id, 404)
            return
        token = parse_qs(target.query).get("token", [""])[0]
        peer = self.server.bind(token, origin.decode("latin-1") if origin else None, authority)
        if peer is None or self.channels:
            self._answer(event.stream_id, 403)
            return
        channel = VoiceChannel(self.server, self, event.stream_id, peer)
        self.channels[event.stream_id] = channel
        assert self.http is not None
        self.http.send_headers(event.stream_id, [(b":status", b"200"),
                                                 (b"sec-webtransport-http3-draft", b"draft02")])
        self.server.attach(channel)
        self.transmit()

    def _answer(self, stream_id: int, status: int) -> None:
        self.server.counts[f"refused_{status}"] += 1
        assert self.http is not None
        self.http.send_headers(stream_id, [(b":status", str(status).encode())], end_stream=True)
        self.transmit()

    def _ended(self) -> None:
        for channel in self.channels.values():
            channel.close()
        self.channels.clear()
        self.server.connections.discard(self)
        if self._unbound_timer is not None:
            self._unbound_timer.cancel()
            self._unbound_timer = None


# --- the endpoint -------------------------------------------------------------------------

@dataclass
class WebTransportServer:
    """This node's WebTransport endpoint: tokens, bound channels, counts, the QUIC server."""

    hearth: HearthConfig
    node: Any  # web.node.Node: `received(link, frame, True)` is where every voice frame enters
    clock: Callable[[], float] = time.time
    port: int = 0  # the UDP port, once listening
    certificates: Certificates | None = None
    tokens: voicelink.TokenTable[Any] = field(default_factory=voicelink.TokenTable)
    connections: set[VoiceConnection] = field(default_factory=set)
    bound: set[VoiceChannel] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    packets: Counter[str] = field(default_factory=Counter)  # QUIC packets, "in" and "out"
    turn: Turn = field(default_factory=lambda: Turn(_call_soon))
    _quic: QuicServer | None = None

    @property
    def config(self) -> WebTransportConfig:
        return self.hearth.webtransport

    # --- from the WebSocket (web/ws.py) ---

    def answers(self, peer: Any, payload: bytes) -> bool:
        """True if this text frame was a voice_transport request, answered here (the node
        the WebSocket is connected to: the session must come here too)."""
        if len(payload) > REQUEST_MAX or b'"voice_transport"' not in payload:
            return False
        try:
            msg = p.decode(payload)
        except ProtocolError:
            return False  # the core answers it as any bad frame
        if not isinstance(msg, p.VoiceTransport):
            return False
        peer.send_bytes(encode(self.offer(peer, msg.ref)))
        return True

    def offer(self, peer: Any, ref: str | None) -> ServerMessage:
        link = getattr(peer, "link", None)
        try:
            if link is None or not link.members:
                raise ProtocolError("not_joined", ref=ref)
            if not self.port or self.certificates is None:
                raise ProtocolError("webtransport_unavailable", ref=ref)
            token = self.tokens.issue(peer, self.clock(), ref)
        except ProtocolError as refused:
            return refused.as_message()
        host = self.config.public_host or _hostname(getattr(peer, "voice_host", None))
        if not _HOST.match(host):
            return ProtocolError("webtransport_unavailable", ref=ref).as_message()
        return VoiceTransportOffer(url=f"https://{host}:{self.port}{PATH}", token=token,
                                   ttl=self.tokens.ttl, hashes=self.certificates.hashes(),
                                   max_bytes=ROOM, ref=ref)

    def connect_src(self, host_header: bytes | str | None) -> str | None:
        """The session's origin for the page's Content-Security-Policy (connect-src)."""
        if not self.port:
            return None
        if isinstance(host_header, bytes):
            host_header = host_header.decode("latin-1")
        host = self.config.public_host or _hostname(host_header)
        if not _HOST.match(host):
            return None
        return f"https://{host}:{self.port}"

    def closed(self, peer: Any) -> None:
        """The member's WebSocket closed: its token and its session end with it."""
        self.tokens.revoke(peer)
        channel = getattr(peer, "voice_channel", None)
        if channel is not None:
            channel.close()
            channel.conn.close()

    # --- from QUIC ---

    def bind(self, token: str, origin: str | None, authority: str) -> Any:
        """The WebSocket peer a session's token was issued to, or None (refused)."""
        if origin is not None and not _same_host(origin, authority, self.hearth):
            self.counts["refused_origin"] += 1
            return None
        peer = self.tokens.redeem(token, self.clock()) if token else None
        if peer is None or getattr(peer, "link", None) is None:
            return None
        return peer

    def attach(self, channel: VoiceChannel) -> None:
        old = getattr(channel.peer, "voice_channel", None)
        if old is not None and old is not channel:
            old.close()
            old.conn.close()
        channel.peer.voice_channel = channel
        self.bound.add(channel)
        self.counts["sessions"] += 1

    # --- running ---

    async def start(self) -> None:
        self.certificates = Certificates(self.config, self.clock)
        connection = type("BoundVoiceConnection", (VoiceConnection,), {"server": self})
        self._quic = await serve(self.config.interface, self.config.port,
                                 configuration=self.certificates.quic,
                                 create_protocol=connection)
        transport = self._quic._transport
        assert transport is not None
        self.port = int(transport.get_extra_info("sockname")[1])
        _buffers(transport.get_extra_info("socket"))

    def housekeeping(self) -> None:
        self.tokens.sweep(self.clock())
        if self.certificates is not None:
            self.certificates.rotate_if_due()

    def stop(self) -> None:
        for channel in list(self.bound):
            channel.close()
        if self._quic is not None:
            self._quic.close()
            self._quic = None
        self.connections.clear()


def _call_soon(callback: Callable[[], None]) -> None:
    asyncio.get_running_loop().call_soon(callback)


def _buffers(sock: Any) -> None:
    """Kernel buffers for a moment's burst (the default, ~200 KB, holds about 170 small
    packets: one busy moment of a few rooms' ACKs); the kernel caps them at its maximum."""
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError, AttributeError):  # uvloop's or asyncio's socket
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)


_HOST = re.compile(r"^[A-Za-z0-9.\-]{1,253}\Z|^\[[0-9A-Fa-f:.]{2,45}\]\Z")


def _hostname(host_header: str | None) -> str:
    """The host part of a Host header ("[::1]:8080" -> "[::1]", "a.org:443" -> "a.org")."""
    host = (host_header or "127.0.0.1").strip()
    if host.startswith("["):
        return host[:host.index("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if ":" in host else host


def _same_host(origin: str, authority: str, config: HearthConfig) -> bool:
    """A page may open the session if it may open the WebSocket (web/ws.py's rule), but on
    another port: the UDP port is not the page's."""
    if origin_allowed(origin, None, config.server.allowed_origins):
        return True
    return (urlsplit(origin).hostname or "").lower() == \
        (urlsplit(f"//{authority}").hostname or "").lower()


# --- the service and the metrics ----------------------------------------------------------

class WebTransportService(Service):
    log = Logger(namespace="hearth.webtransport")

    def __init__(self, server: WebTransportServer, reactor: Any) -> None:
        self.server = server
        self.listening: Deferred[int] = Deferred()
        self.loop = LoopingCall(server.housekeeping)
        self.loop.clock = reactor

    def startService(self) -> None:
        super().startService()
        d = Deferred.fromFuture(asyncio.ensure_future(self.server.start()))

        def up(_: Any) -> None:
            self.loop.start(SWEEP_EVERY, now=False)
            self.listening.callback(self.server.port)

        def failed(failure: Any) -> None:
            self.log.failure("voice over UDP cannot listen on udp port {port}", failure,
                             port=self.server.config.port)
            self.listening.errback(failure)
        d.addCallbacks(up, failed)

    def stopService(self) -> Any:
        super().stopService()
        if self.loop.running:
            self.loop.stop()
        self.server.stop()
        return None


class DatagramCollector(Collector):
    """hearth_voice_datagrams{outcome} and the sessions open, read at scrape time."""

    def __init__(self, server: WebTransportServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        counts = self.server.counts
        datagrams = CounterMetricFamily(
            "hearth_voice_datagrams", "Voice datagrams (WebTransport): received and passed "
            "to the room core, queued for a listener, sent in a packet, or dropped (unbound: "
            "no session bound by a token; foreign: a session whose WebSocket closed or was "
            "replaced; congested: the connection already held too many unsent; late: the "
            "congestion window held it back too long; malformed: not framed as hearth.v1).",
            labels=["outcome"])
        for outcome in ("received", "queued", "sent", "dropped_unbound", "dropped_foreign",
                        "dropped_congested", "dropped_late", "dropped_malformed"):
            datagrams.add_metric([outcome], counts[outcome])
        yield datagrams
        packets = CounterMetricFamily(
            "hearth_voice_packets", "QUIC packets of the WebTransport connections, read from "
            "the UDP socket (in) and built to send (out): voice, acknowledgements, handshakes.",
            labels=["direction"])
        for direction in ("in", "out"):
            packets.add_metric([direction], self.server.packets[direction])
        yield packets
        sessions = CounterMetricFamily(
            "hearth_voice_sessions", "WebTransport sessions: bound by a token, or refused "
            "(403: no good token or origin; 404: not a WebTransport request for /voice; "
            "busy: too many connections).", labels=["outcome"])
        sessions.add_metric(["bound"], counts["sessions"])
        for why in ("403", "404", "busy"):
            sessions.add_metric([f"refused_{why}"], counts[f"refused_{why}"])
        yield sessions
        yield GaugeMetricFamily("hearth_voice_sessions_open",
                                "WebTransport sessions carrying voice now.",
                                value=len(self.server.bound))


def certificate_files(directory: Path, now: float) -> tuple[Path, Path]:
    """A self-signed certificate and key written as PEM (for tests and the bench)."""
    cert, key = self_signed(now)
    cert_path, key_path = directory / "voice-cert.pem", directory / "voice-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
