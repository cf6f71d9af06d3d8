"""The WebSocket edge over a StringTransport, no sockets: autobahn's own path and the fast
path (web/wsfast.py) must read and write the same frames and refuse the same ones.

Every test runs twice, with the fast path's switch on and off, through the real
factory and protocol class `hearth serve` builds (web/ws.py `websocket_factory` and
`bind_node`), with a node that only records what it is given and a fake clock for
autobahn's timers and the end of each turn of the event loop.
"""

from __future__ import annotations

import base64
import os
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from hearth.web import ws, wsfast
from tests.support.config import make_config

MAX_FRAME = 2048


class Transport(StringTransport):
    """A TCP transport's leniency: unregistering when no producer is registered is a no-op."""

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


class RecordingNode:
    """What web/ws.py asks of the node; it records frames and answers nothing."""

    def __init__(self) -> None:
        self.frames: list[tuple[bytes, bool]] = []
        self.opened = self.lost_links = 0

    def admit_address(self, address: str | None) -> bytes:
        return b"key"

    def release_address(self, key: bytes) -> None:
        pass

    def open(self, peer: Any, address: str | None = None) -> object:
        self.opened += 1
        return object()

    def received(self, link: object, frame: bytes, is_binary: bool) -> None:
        self.frames.append((frame, is_binary))

    def lost(self, link: object) -> None:
        self.lost_links += 1


class Edge:
    """One server-side connection, its transport, its node, and the turn's pending flush."""

    def __init__(self, fast: bool, clock: Clock) -> None:
        self.clock = clock
        self.ns = [0]
        config = make_config(limits={"max_frame_bytes": MAX_FRAME, "max_envelope_chars": 1024})
        factory = ws.websocket_factory(config, fast_path=fast)
        self.node = RecordingNode()
        ws.bind_node(factory, config, self.node)  # type: ignore[arg-type]
        self.turn_ends: list[Any] = []
        self.cpu = [0]  # the process's CPU time, ns (the early flush's saturation check)
        if fast:
            factory.protocol.turn = wsfast.Turn(schedule=self.turn_ends.append,
                                                clock=lambda: self.ns[0],
                                                cpu_clock=lambda: self.cpu[0])
        self.prepare = ws.prepare_for(factory)
        self.proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = Transport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.proto.makeConnection(self.transport)
        key = base64.b64encode(os.urandom(16)).decode()
        self.proto.dataReceived((
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nOrigin: http://127.0.0.1:8080\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: hearth.v1\r\n\r\n").encode())
        self.end_turn()
        response = self.transport.value()
        assert response.startswith(b"HTTP/1.1 101"), response[:200]
        self.transport.clear()
        assert self.node.opened == 1

    def load(self, share: float) -> None:
        """A whole window of the turn's busy check passes with the process at `share` of a core
        (the next read's check sees it)."""
        window = wsfast.BUSY_WINDOW_NS
        self.ns[0] += window
        self.cpu[0] += int(share * window)

    def end_turn(self) -> None:
        """What the event loop does after this turn's callbacks: run the scheduled flushes."""
        ends, self.turn_ends[:] = list(self.turn_ends), []
        for end in ends:
            end()
        self.clock.advance(0)

    def feed(self, data: bytes) -> None:
        self.proto.dataReceived(data)
        self.end_turn()

    def frames(self) -> list[tuple[int, bytes]]:
        """What the server wrote since the last call, as (opcode, payload), checking framing."""
        out = parse_server_frames(self.transport.value())
        self.transport.clear()
        return out

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)


def client_frame(payload: bytes, opcode: int = 0x1, fin: bool = True,
                 key: bytes | None = None, masked: bool = True) -> bytes:
    key = os.urandom(4) if key is None else key
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = bytes((first, mask_bit | n))
    elif n < 65536:
        head = bytes((first, mask_bit | 126)) + struct.pack("!H", n)
    else:
        head = bytes((first, mask_bit | 127)) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def parse_server_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames, i = [], 0
    while i < len(data):
        b0, b1 = data[i], data[i + 1]
        assert b0 & 0x80 and not b1 & 0x80, "server frames are whole and unmasked"
        n, i = b1 & 0x7F, i + 2
        if n == 126:
            n, i = struct.unpack("!H", data[i:i + 2])[0], i + 2
        elif n == 127:
            n, i = struct.unpack("!Q", data[i:i + 8])[0], i + 8
        frames.append((b0 & 0x0F, data[i:i + n]))
        i += n
    assert i == len(data), "no partial frame written"
    return frames


def close_code(frames: list[tuple[int, bytes]]) -> int | None:
    closes = [payload for opcode, payload in frames if opcode == 0x8]
    return struct.unpack("!H", closes[0][:2])[0] if closes else None


@pytest.fixture(autouse=True)
def fake_timers() -> Iterator[Clock]:
    """autobahn's timers (handshake, ping, close) on a fake clock, not the global reactor."""
    clock = Clock()
    before = txaio.config.loop
    txaio.config.loop = clock
    yield clock
    txaio.config.loop = before


@pytest.fixture(params=[True, False], ids=["fast", "autobahn"])
def edge(request: pytest.FixtureRequest, fake_timers: Clock) -> Edge:
    return Edge(request.param, fake_timers)


def test_the_switch_picks_the_class(fake_timers: Clock) -> None:
    assert isinstance(Edge(True, fake_timers).proto, wsfast.FastPath)
    assert not isinstance(Edge(False, fake_timers).proto, wsfast.FastPath)
    assert wsfast.enabled({}) and wsfast.enabled({"HEARTH_WS_FAST_PATH": "1"})
    for off in ("0", "off", "false", "No"):
        assert not wsfast.enabled({"HEARTH_WS_FAST_PATH": off})


def test_text_and_binary_frames_with_any_mask(edge: Edge) -> None:
    messages = [(b'{"type":"leave"}', False), (b"\x01\x02voice", True), ("é ✓".encode(), False),
                (b"x" * 300, False), (b"", False), (b"\x00" * 130, True)]
    for (payload, binary), key in zip(messages, [None, b"\0\0\0\0", None, b"\xff" * 4, None, None],
                                      strict=True):
        edge.feed(client_frame(payload, 0x2 if binary else 0x1, key=key))
    assert edge.node.frames == messages
    assert not edge.closed


def test_several_frames_in_one_read_and_in_any_split(edge: Edge) -> None:
    messages = [os.urandom(n) for n in (1, 60, 125, 126, 127, 500, 1200)]
    stream = b"".join(client_frame(m, 0x2) for m in messages)
    edge.feed(stream[:1])
    for i in range(1, len(stream), 7):  # partial reads: headers and payloads cut anywhere
        edge.feed(stream[i:i + 7])
    edge.feed(stream)  # then all of it in one read
    assert edge.node.frames == [(m, True) for m in messages] * 2


def test_a_fragmented_message_is_delivered_once_joined(edge: Edge) -> None:
    edge.feed(client_frame(b'{"type":', 0x1, fin=False)
              + client_frame(b'"leave"', 0x0, fin=False))
    assert edge.node.frames == []
    edge.feed(client_frame(b"}", 0x0) + client_frame(b"after", 0x2))
    assert edge.node.frames == [(b'{"type":"leave"}', False), (b"after", True)]


def test_ping_between_data_frames_is_answered_with_its_payload(edge: Edge) -> None:
    edge.feed(client_frame(b"a", 0x1) + client_frame(b"are you there", 0x9)
              + client_frame(b"b", 0x1))
    assert edge.node.frames == [(b"a", False), (b"b", False)]
    assert (0xA, b"are you there") in edge.frames()


def test_client_close_is_answered_and_the_link_lost(edge: Edge) -> None:
    edge.feed(client_frame(struct.pack("!H", 1000) + b"bye", 0x8))
    assert close_code(edge.frames()) == 1000
    assert edge.closed
    edge.proto.connectionLost(Failure(ConnectionDone()))
    assert edge.node.lost_links == 1


@pytest.mark.parametrize(("frame", "code"), [
    (client_frame(b"x" * (MAX_FRAME + 1), 0x2), 1009),                    # oversize
    (client_frame(b"\xff\xfe", 0x1), 1007),                               # not UTF-8
    (client_frame(b"unmasked", 0x1, masked=False), 1002),                 # a client must mask
    (client_frame(b"x", 0x3), 1002),                                      # reserved opcode
    (client_frame(b"x" * 126, 0x9), 1002),                                # control frame too long
    (client_frame(b"x", 0x9, fin=False), 1002),                           # fragmented control
    (client_frame(b"x", 0x0), 1002),                                      # continuation of nothing
    (bytes((0xC1, 0x81)) + os.urandom(5), 1002),                          # RSV1 without deflate
], ids=["oversize", "not-utf8", "unmasked", "reserved-opcode", "long-control", "fragmented-control",
        "lone-continuation", "rsv1"])
def test_bad_frames_close_with_their_code(edge: Edge, frame: bytes, code: int) -> None:
    edge.feed(client_frame(b"before", 0x1) + frame + client_frame(b"after", 0x1))
    assert edge.node.frames == [(b"before", False)]
    assert close_code(edge.frames()) == code


def test_replies_and_prepared_fan_out_arrive_whole_and_in_order(edge: Edge) -> None:
    proto = edge.proto
    prepared = edge.prepare(b"\x09" * 200, True)
    proto.send_bytes(b'{"type":"welcome"}')
    proto.send_prepared(prepared)
    proto.send_binary(b"voice")
    proto.send_bytes(b"y" * 70_000)
    edge.end_turn()
    assert edge.frames() == [(0x1, b'{"type":"welcome"}'), (0x2, b"\x09" * 200),
                             (0x2, b"voice"), (0x1, b"y" * 70_000)]


def test_a_close_from_the_server_goes_after_what_was_written(edge: Edge) -> None:
    edge.proto.send_bytes(b'{"type":"error"}')
    edge.proto.close(1008, "policy")
    edge.end_turn()
    assert edge.frames() == [(0x1, b'{"type":"error"}'), (0x8, struct.pack("!H", 1008) + b"policy")]


# --- the fast path's own promises ------------------------------------------------------------

@pytest.fixture
def fast(fake_timers: Clock) -> Edge:
    return Edge(True, fake_timers)


def test_writes_of_a_turn_leave_in_one_write_at_its_end(fast: Edge) -> None:
    writes: list[bytes] = []
    fast.transport.write = writes.append  # type: ignore[method-assign]
    for n in range(5):
        fast.proto.send_bytes(b'{"n":%d}' % n)
    assert writes == [] and fast.proto.pending_bytes() == 5 * 9
    fast.end_turn()
    assert len(writes) == 1
    assert parse_server_frames(writes[0]) == [(0x1, b'{"n":%d}' % n) for n in range(5)]


def echoing(edge: Edge) -> list[bytes]:
    """The node sends every frame straight back; returns the transport's writes, one each."""
    writes: list[bytes] = []
    edge.transport.write = writes.append  # type: ignore[method-assign]

    class Echo(RecordingNode):
        def received(self, link: object, frame: bytes, is_binary: bool) -> None:
            edge.proto.send_binary(frame)
    edge.proto.node = Echo()
    return writes


def test_a_long_turn_is_flushed_early_once_its_budget_is_spent(fast: Edge) -> None:
    """A burst read in one turn: listeners get what was routed so far every FLUSH_BUDGET_NS."""
    writes = echoing(fast)
    fast.load(0.6)  # busy enough that turns carry several frames, not saturated
    fast.proto.dataReceived(client_frame(b"first", 0x2))
    assert writes == []  # within budget: waits for the end of the turn
    fast.ns[0] += wsfast.FLUSH_BUDGET_NS
    fast.proto.dataReceived(client_frame(b"second", 0x2))
    assert [parse_server_frames(w) for w in writes] == [[(0x2, b"first"), (0x2, b"second")]]
    fast.proto.dataReceived(client_frame(b"third", 0x2))
    fast.end_turn()
    assert parse_server_frames(writes[-1]) == [(0x2, b"third")] and len(writes) == 2


def test_a_saturated_server_keeps_one_write_per_connection_per_turn(fast: Edge) -> None:
    """Near the knee turns are long because work is queued: no early flush then."""
    writes = echoing(fast)
    fast.load(0.95)
    fast.proto.dataReceived(client_frame(b"first", 0x2))
    fast.ns[0] += 5 * wsfast.FLUSH_BUDGET_NS
    fast.proto.dataReceived(client_frame(b"second", 0x2))
    assert writes == []  # saturated: the turn keeps batching
    fast.end_turn()
    assert [parse_server_frames(w) for w in writes] == [[(0x2, b"first"), (0x2, b"second")]]
    fast.load(0.6)  # a quieter window
    fast.proto.dataReceived(client_frame(b"third", 0x2))
    fast.ns[0] += wsfast.FLUSH_BUDGET_NS
    fast.proto.dataReceived(client_frame(b"fourth", 0x2))
    assert len(writes) == 2  # early again


def test_a_lightly_loaded_server_writes_every_read_out_at_once(fast: Edge) -> None:
    """Under LIGHT_LIMIT of a core a read's frames go out as soon as they are routed, not
    after whatever else the turn holds; busier, the turn coalesces again."""
    writes = echoing(fast)
    fast.load(wsfast.LIGHT_LIMIT - 0.1)
    fast.proto.dataReceived(client_frame(b"first", 0x2))
    assert [parse_server_frames(w) for w in writes] == [[(0x2, b"first")]]
    fast.proto.dataReceived(client_frame(b"second", 0x2) + client_frame(b"third", 0x2))
    assert parse_server_frames(writes[1]) == [(0x2, b"second"), (0x2, b"third")]
    fast.end_turn()
    assert len(writes) == 2  # nothing was left for the end of the turn
    fast.load(wsfast.LIGHT_LIMIT + 0.05)
    fast.proto.dataReceived(client_frame(b"fourth", 0x2))
    fast.proto.dataReceived(client_frame(b"fifth", 0x2))
    assert len(writes) == 2
    fast.end_turn()
    assert parse_server_frames(writes[2]) == [(0x2, b"fourth"), (0x2, b"fifth")]


def test_stages_are_recorded_without_payloads(fast: Edge, tmp_path: Any) -> None:
    path = tmp_path / "stages.jsonl"
    stages = wsfast.Stages(str(path), stamp_offset=0, clock=lambda: fast.ns[0])
    fast.proto.turn.stages = stages
    try:
        class Echo(RecordingNode):
            def received(self, link: object, frame: bytes, is_binary: bool) -> None:
                fast.ns[0] += 3_000
                fast.proto.send_binary(frame)
        fast.proto.node = Echo()
        fast.load(0.6)  # the flush at the end of the turn, so that there is a wait to time
        fast.ns[0] += 10_000
        fast.proto.dataReceived(client_frame(struct.pack("!Q", time.monotonic_ns() - 6_000_000)
                                             + b"secret", 0x2))
        fast.ns[0] += 2_000
        fast.end_turn()
        stages.dump(fast.ns[0])
    finally:
        import gc
        gc.callbacks.remove(stages._gc)
    line = path.read_text()
    assert "secret" not in line
    import json
    figures = json.loads(line)
    assert 6_000 <= figures["queue"]["p50_us"] < 60_000 and figures["route"]["p50_us"] == 3.0
    assert figures["wait"]["p50_us"] == 2.0 and figures["flushes"] == 1


def test_stages_time_chat_envelopes_queue_and_the_reactors_timed_calls(tmp_path: Any) -> None:
    path = tmp_path / "stages.jsonl"
    ns = [0]
    stages = wsfast.Stages(str(path), clock=lambda: ns[0], text_stamp=True)

    class Reactor:
        def runUntilCurrent(self) -> None:  # the room tick, say: 700 us of work
            ns[0] += 700_000
    reactor = Reactor()
    try:
        stamp = struct.pack("!Q", time.monotonic_ns() - 4_000_000) + b"secret cipher"
        envelope = b'{"type":"envelope","body":"' + base64.b64encode(stamp) + b'"}'
        stages.frame(envelope, False, time.monotonic_ns(), 0, 0)
        stages.frame(b'{"type":"leave"}', False, time.monotonic_ns(), 0, 0)  # no stamp
        stages.frame(b'{"type":"envelope","body":"*not base64*"}', False, 0, 0, 0)
        stages.watch_timers(reactor)
        reactor.runUntilCurrent()
        stages.dump(ns[0])
    finally:
        import gc
        gc.callbacks.remove(stages._gc)
    line = path.read_text()
    assert "secret" not in line and base64.b64encode(stamp).decode() not in line
    import json
    figures = json.loads(line)
    assert figures["queue"]["n"] == 1 and 4_000 <= figures["queue"]["p50_us"] < 60_000
    assert figures["timers"] == {"n": 1, "p50_us": 700.0, "p99_us": 700.0, "max_us": 700.0}
