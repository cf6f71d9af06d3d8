"""spaces/voicelink.py and the channel rules of web/webtransport.py, without sockets."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.congestion.base import create_congestion_control
from aioquic.quic.congestion.reno import RenoCongestionControl
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicPacketType
from aioquic.quic.packet_builder import QuicSentPacket
from aioquic.tls import Epoch

from hearth.spaces.protocol import ProtocolError
from hearth.spaces.voice import build_frame, stamp_slot
from hearth.spaces.voicelink import (
    Inbound,
    Outbound,
    SeqWindow,
    TokenTable,
    digest,
    pack,
    unpack,
)
from hearth.web.webtransport import (
    CONGESTION,
    MAX_AGE,
    MAX_PENDING,
    ROOM,
    SELF_SIGNED_DAYS,
    VOICE_WINDOW,
    Certificates,
    DatagramCollector,
    Outbox,
    Turn,
    VoiceChannel,
    VoiceCongestion,
    WebTransportServer,
    certificate_hash,
    for_voice,
    self_signed,
)
from tests.support.config import make_config


def frame(seq: int, slot: int = 0, size: int = 40) -> bytes:
    return stamp_slot(build_frame(b"x" * size, seq=seq, level=20), slot)


# --- tokens --------------------------------------------------------------------------------

def test_a_token_is_good_once_within_its_time_and_only_its_digest_is_kept() -> None:
    table: TokenTable[str] = TokenTable(ttl=30.0, interval=1.0)
    token = table.issue("ws-1", now=100.0)
    assert len(token) >= 32 and token not in repr(table.__dict__)
    assert digest(token) in table._by_digest
    assert table.redeem(token, 129.0) == "ws-1"
    assert table.redeem(token, 129.0) is None  # used
    late = table.issue("ws-1", now=200.0)
    assert table.redeem(late, 230.5) is None  # expired
    assert table.redeem("made-up", 200.0) is None
    assert (table.issued, table.redeemed, table.refused) == (2, 1, 3)


def test_one_token_per_connection_asked_at_most_once_a_second_and_revoked_on_close() -> None:
    table: TokenTable[str] = TokenTable(ttl=30.0, interval=1.0)
    first = table.issue("ws-1", now=0.0)
    with pytest.raises(ProtocolError) as refused:
        table.issue("ws-1", now=0.5, ref="r")
    assert refused.value.code == "rate_limited" and refused.value.ref == "r"
    second = table.issue("ws-1", now=1.0)
    assert table.redeem(first, 1.0) is None  # replaced
    other = table.issue("ws-2", now=1.0)
    table.revoke("ws-1")
    assert table.redeem(second, 1.0) is None and len(table) == 1
    table.sweep(100.0)
    assert len(table) == 0 and table.redeem(other, 2.0) is None


# --- framing, repeats and duplicates -----------------------------------------------------

def test_a_datagram_is_the_frame_and_optionally_the_previous_one() -> None:
    a, b = frame(1), frame(2)
    assert unpack(pack(b)) == (b, None)
    assert unpack(pack(b, a)) == (b, a)
    for bad in (b"", b"\x00", b"\x00\x30" + b"x" * 10):
        with pytest.raises(ValueError):
            unpack(bad)


def test_the_duplicate_filter_passes_each_seq_once_in_any_order_and_a_fresh_start() -> None:
    window = SeqWindow()
    seen = [s for s in [5, 3, 4, 5, 3, 70, 6, 7, 69, 6] if window.fresh(s)]
    assert seen == [5, 3, 4, 70, 6, 7, 69]
    assert window.fresh(2) and window.fresh(3)  # 67 behind: a sender counting afresh


def test_inbound_passes_the_repeat_first_and_only_frames_not_seen() -> None:
    inbound = Inbound()
    f1, f2, f3 = frame(1), frame(2), frame(3)
    assert inbound.frames(pack(f1)) == [f1]
    assert inbound.frames(pack(f3, f2)) == [f2, f3]  # frame 2's own datagram was lost
    assert inbound.frames(pack(f3, f2)) == []  # the network duplicated a datagram
    assert inbound.duplicates == 2
    short = b"\x01\x00"
    assert inbound.frames(pack(short)) == [short]  # the core refuses it (voice_invalid)


def test_outbound_repeats_a_speakers_previous_frame_only_to_a_listener_that_had_it() -> None:
    out = Outbound(ROOM)
    a1, a2, a4 = frame(1, slot=3), frame(2, slot=3), frame(4, slot=3)
    b7, b8 = frame(7, slot=5), frame(8, slot=5)
    assert unpack(out.datagram(a1)) == (a1, None)
    assert unpack(out.datagram(b7)) == (b7, None)
    assert unpack(out.datagram(a2)) == (a2, a1)
    assert unpack(out.datagram(b8)) == (b8, b7)
    assert unpack(out.datagram(a4)) == (a4, None)  # frame 3 never came here: no repeat
    big = Outbound(100)
    big.datagram(frame(1, size=40))
    assert unpack(big.datagram(frame(2, size=40))) == (frame(2, size=40), None)  # too big


# --- the channel's rules (web/webtransport.py) with fakes -----------------------------------

class FakeHTTP:
    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []

    def send_datagram(self, stream_id: int, data: bytes) -> None:
        self.sent.append((stream_id, data))


class FakeQuic:
    def __init__(self) -> None:
        self._datagrams_pending: deque[bytes] = deque()


class FakeConn:
    def __init__(self) -> None:
        self.http = FakeHTTP()
        self._quic = FakeQuic()
        self.outbox = Outbox()
        self.time = 0.0
        self.transmits = 0
        self.closed = False

    def now(self) -> float:
        return self.time

    def transmit_soon(self) -> None:
        self.transmits += 1

    def close(self) -> None:
        self.closed = True


class FakeNode:
    def __init__(self) -> None:
        self.frames: list[tuple[Any, bytes, bool]] = []

    def received(self, link: Any, frame: bytes, is_binary: bool) -> None:
        self.frames.append((link, frame, is_binary))


class FakePeer:
    def __init__(self) -> None:
        self.link: Any = object()
        self.voice_channel: Any = None


def channel_setup() -> tuple[WebTransportServer, FakeNode, FakePeer, VoiceChannel, FakeConn]:
    node = FakeNode()
    server = WebTransportServer(make_config(), node)
    peer, conn = FakePeer(), FakeConn()
    channel = VoiceChannel(server, conn, 0, peer)  # type: ignore[arg-type]
    server.attach(channel)
    return server, node, peer, channel, conn


def test_a_bound_sessions_frames_enter_where_websocket_frames_enter() -> None:
    server, node, peer, channel, _ = channel_setup()
    channel.received(pack(frame(1)))
    assert node.frames == [(peer.link, frame(1), True)]
    assert server.counts["received"] == 1


def test_a_foreign_sessions_datagrams_are_dropped_and_counted() -> None:
    server, node, peer, channel, conn = channel_setup()
    newer = VoiceChannel(server, FakeConn(), 0, peer)  # type: ignore[arg-type]
    server.attach(newer)  # the member opened another session: the first is foreign now
    assert conn.closed and not channel.open and peer.voice_channel is newer
    channel.received(pack(frame(1)))
    peer.link = None  # its WebSocket closed
    newer.received(pack(frame(2)))
    assert node.frames == [] and server.counts["dropped_foreign"] == 2


def test_voice_out_is_bounded_never_queued_without_end_and_too_big_goes_by_websocket() -> None:
    server, _, _, channel, conn = channel_setup()
    assert channel.send(frame(1))
    assert conn.http.sent == [(0, pack(frame(1)))] and conn.transmits == 1
    assert server.counts["queued"] == 1 and list(conn.outbox.queued) == [0.0]
    conn._quic._datagrams_pending.extend([b""] * MAX_PENDING)
    assert channel.send(frame(2))  # dropped (congested): not late over the WebSocket either
    assert len(conn.http.sent) == 1 and server.counts["dropped_congested"] == 1
    conn._quic._datagrams_pending.clear()
    assert not channel.send(frame(3, size=ROOM))  # does not fit a datagram: the WebSocket
    channel.close()
    assert not channel.send(frame(4))


def test_the_metrics_count_every_stage_of_a_datagrams_way() -> None:
    server, _, _, channel, _ = channel_setup()
    channel.send(frame(1))
    server.counts["dropped_late"] += 1
    server.packets["in"] += 3
    samples = {(s.name, tuple(s.labels.values())): s.value
               for family in DatagramCollector(server).collect() for s in family.samples}
    datagrams, packets = "hearth_voice_datagrams_total", "hearth_voice_packets_total"
    assert samples[(datagrams, ("queued",))] == 1 and samples[(datagrams, ("sent",))] == 0
    assert samples[(datagrams, ("dropped_late",))] == 1
    assert samples[(packets, ("in",))] == 3 and samples[(packets, ("out",))] == 0


def test_a_datagram_the_congestion_window_held_back_too_long_is_dropped_not_sent_late() -> None:
    outbox, pending = Outbox(limit=3), deque[bytes]()
    for at, data in ((0.0, b"a"), (0.01, b"b")):
        pending.append(data)
        outbox.queue(at)
    assert outbox.expire(pending, MAX_AGE) == 0  # not older than MAX_AGE yet
    assert outbox.expire(pending, 0.005 + MAX_AGE) == 1 and list(pending) == [b"b"]
    pending.popleft()  # aioquic put it in a packet
    assert outbox.sent(pending) == 1 and not outbox.queued
    pending.extend([b"c", b"d", b"e"])
    for _ in range(3):
        outbox.queue(1.0)
    assert not outbox.room(pending)  # at its limit: the next frame is dropped, not queued
    assert outbox.expire(pending, 2.0) == 3 and not pending and outbox.room(pending)


class Transmitter:
    def __init__(self) -> None:
        self.transmits = 0

    def transmit(self) -> None:
        self.transmits += 1


def test_each_connection_transmits_once_a_turn_whatever_the_turn_queued_for_it() -> None:
    scheduled: list[Any] = []
    turn = Turn(scheduled.append)
    a, b = Transmitter(), Transmitter()
    for conn in (a, b, a, a):  # three frames (or packets read) for a, one for b
        turn.add(conn)  # type: ignore[arg-type]
    assert len(scheduled) == 1 and a.transmits == b.transmits == 0
    scheduled.pop()()
    assert a.transmits == b.transmits == 1
    turn.add(a)  # type: ignore[arg-type]
    assert len(scheduled) == 1  # the next turn has its own end


def lost_packet(number: int, sent_time: float) -> QuicSentPacket:
    return QuicSentPacket(epoch=Epoch.ONE_RTT, in_flight=True, is_ack_eliciting=True,
                          is_crypto_packet=False, packet_number=number,
                          packet_type=QuicPacketType.ONE_RTT, sent_time=sent_time,
                          sent_bytes=150)


def test_voice_congestion_keeps_a_window_for_voice_after_losses_where_reno_would_not() -> None:
    voice = create_congestion_control(CONGESTION, max_datagram_size=1280)
    reno = RenoCongestionControl(max_datagram_size=1280)
    assert isinstance(voice, VoiceCongestion)
    for n in range(6):  # a loss in each round trip: a lossy mobile link
        for cc in (voice, reno):
            packet = lost_packet(n, float(n))
            cc.on_packet_sent(packet=packet)
            cc.on_packets_lost(now=n + 0.5, packets=[packet])
    assert reno.congestion_window < VOICE_WINDOW <= voice.congestion_window
    voice.on_persistent_congestion()
    assert voice.congestion_window == VOICE_WINDOW


def test_a_voice_connection_never_paces_its_packets() -> None:
    paced = QuicConnection(configuration=QuicConfiguration(is_client=True))
    voice = QuicConnection(configuration=QuicConfiguration(is_client=True))
    for_voice(voice)
    for quic in (paced, voice):  # 12 KB a 100 ms round trip: one full packet each 10.7 ms
        pacer = quic._loss._pacer
        pacer.update_rate(congestion_window=12_000, smoothed_rtt=0.1)
        for _ in range(4):  # a burst of four 150-byte voice packets, in one moment
            pacer.update_after_send(now=1.0)
    assert paced._loss._pacer.next_send_time(now=1.0) is not None  # aioquic's: hold it back
    assert voice._loss._pacer.next_send_time(now=1.0) is None


def test_the_self_signed_certificate_is_p256_under_14_days_and_rotated_before_it_ends() -> None:
    cert, key = self_signed(1_000_000.0)
    assert key.curve.name == "secp256r1"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.days == SELF_SIGNED_DAYS and lifetime.total_seconds() < 14 * 86400
    now = [1_000_000.0]
    certs = Certificates(make_config(webtransport={"self_signed": True}).webtransport,
                         lambda: now[0])
    first = certs.hashes()
    assert first == [certificate_hash(certs.quic.certificate)]  # type: ignore[arg-type]
    now[0] += (SELF_SIGNED_DAYS - 4) * 86400
    assert not certs.rotate_if_due() and certs.hashes() == first
    now[0] += 2 * 86400  # three days or less left
    assert certs.rotate_if_due() and certs.hashes() != first
