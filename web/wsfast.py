"""The WebSocket fast path: whole frames read without autobahn's per-frame machinery, and
every write of a turn of the event loop coalesced into one `send()` per connection.

One switch: `HEARTH_WS_FAST_PATH=0` in the environment turns it off, and every frame
then takes autobahn's own path (web/ws.py alone), which the fast path falls back to
whenever it is not sure: control frames, fragments, frames not yet complete, oversize
or invalid ones, TLS. docs/performance.md says what each part saves and how it was
measured; tests/unit/test_ws_fast_path.py drives both paths over a StringTransport.

Reading: a complete, masked, unfragmented text or binary frame (every frame a hearth.v1
client sends in practice) is unmasked in one big-integer XOR, UTF-8-checked and handed
to `onMessage` directly. The buffer is cut once per read, not once per frame.

Writing: frames for a connection during one turn go to its own buffer; at the end of
the turn (`Turn`, one per factory) each written connection gets one write, straight
into the socket when Twisted holds nothing unsent for it. While the server is lightly
loaded (`LIGHT_LIMIT`) each read is written out at once instead. A turn that runs long (a
burst: many speakers' frames read at once) is flushed early, every `FLUSH_BUDGET_NS`
of work, so listeners start receiving while the rest of the burst is still being
routed instead of after all of it (docs/performance.md, "voice latency") — unless
the server is near saturation (`BUSY_LIMIT`), where the fewer, larger writes of
whole turns are what keeps up.

`HEARTH_WS_STAGES=PATH` (bench only) writes the time each frame spends in each stage
(read, route, wait for the flush, flush) to PATH; see `Stages`.
"""

from __future__ import annotations

import binascii
import contextlib
import gc
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import tcp

SWITCH = "HEARTH_WS_FAST_PATH"
STAGES = "HEARTH_WS_STAGES"
STAGES_STAMP = "HEARTH_WS_STAGES_STAMP"
STAGES_CLOCK = "HEARTH_WS_STAGES_CLOCK"  # "cpu": the server thread's CPU time, not wall time
BUDGET = "HEARTH_WS_FLUSH_BUDGET_US"  # bench A/B only: 0 turns the early flush off
LIGHT = "HEARTH_WS_LIGHT_LIMIT"  # bench A/B only: 0 turns the flush after every read off
# Work in one turn after which what is buffered is written out before reading on: small
# enough that a burst reaches its first listeners early, large enough that a connection
# still gets several frames per write under load (docs/performance.md).
FLUSH_BUDGET_NS = 1_000_000
# ... but only while the process uses less than this share of a core (measured over
# BUSY_WINDOW_NS): near the knee one write per connection per turn is what keeps up.
BUSY_LIMIT = 0.8
BUSY_WINDOW_NS = 50_000_000
# Below this share of a core, every read's writes go out as soon as its frames are routed:
# turns carry a frame or two, so there is little to coalesce, and the end of the turn can
# come after other ready work (the room tick, a slice of housekeeping) — 0.5-0.9 ms of
# wait at p99 at the bench's light step (docs/performance.md, "Light load"). Not higher:
# at a third of a core turns already carry several frames, and writing each read on its
# own cost 35 % more CPU per message there (chat at 2,700 envelopes/s).
LIGHT_LIMIT = 0.3


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """The one switch: on unless HEARTH_WS_FAST_PATH is 0, off, false or no."""
    return environ.get(SWITCH, "1").strip().lower() not in ("0", "off", "false", "no")


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


def call_soon(callback: Callable[[], None]) -> None:
    """After the callbacks of this turn (asyncio's ready queue); any reactor works."""
    import asyncio
    try:
        asyncio.get_running_loop().call_soon(callback)
    except RuntimeError:
        from twisted.internet import reactor
        reactor.callLater(0, callback)


class Turn:
    """The connections written to during this turn of the event loop: each gets one write
    at the end of the turn, or earlier: after every read while the server is lightly loaded
    (under `light_limit` of a core), or once the turn has done `budget_ns` of work while it
    is not saturated.

    Early flushes buy latency with writes: a listener gets what was routed so far instead
    of waiting for the whole turn, in more, smaller `send()` calls. Worth it while the
    server has time to spare (a burst at moderate load); not near its knee, where turns
    are long because work is queued and one write per connection per turn is what keeps
    up. So the early flush is on only while the process used less than `busy_limit` of a
    core over the last `window_ns` (its CPU time over wall time, measured once a window).
    """

    __slots__ = ("budget_ns", "busy", "busy_limit", "clock", "cpu_clock", "dirty", "light_limit",
                 "schedule", "scheduled", "stages", "started", "window_cpu", "window_ns",
                 "window_start")

    def __init__(self, schedule: Callable[[Callable[[], None]], None] = call_soon,
                 clock: Callable[[], int] = time.monotonic_ns,
                 budget_ns: int = FLUSH_BUDGET_NS, stages: Stages | None = None,
                 cpu_clock: Callable[[], int] = time.process_time_ns,
                 busy_limit: float = BUSY_LIMIT, window_ns: int = BUSY_WINDOW_NS,
                 light_limit: float = LIGHT_LIMIT) -> None:
        self.schedule = schedule
        self.light_limit = light_limit
        self.clock = clock
        self.budget_ns = budget_ns
        self.dirty: list[Any] = []
        self.scheduled = False
        self.started = 0
        self.stages = stages
        self.cpu_clock = cpu_clock
        self.busy_limit = busy_limit
        self.window_ns = window_ns
        self.window_start = clock()
        self.window_cpu = cpu_clock()
        self.busy = 0.0

    def add(self, proto: Any) -> None:
        """A connection's buffer went from empty to not empty."""
        dirty = self.dirty
        dirty.append(proto)
        if len(dirty) == 1:
            self.started = self.clock()
            if not self.scheduled:
                self.scheduled = True
                self.schedule(self.end)

    def end(self) -> None:
        """The end of the turn (scheduled once per turn with something to write)."""
        self.scheduled = False
        self.flush()

    def flush(self) -> None:
        dirty = self.dirty
        if not dirty:
            return
        self.dirty = []
        stages = self.stages
        started = stages.clock() if stages is not None else 0
        for proto in dirty:
            proto.flush()
        if stages is not None:
            stages.flushed(started, stages.clock(), len(dirty))

    def read_done(self) -> None:
        """After each read's frames: flush now if the server is lightly loaded, or if this
        turn has worked long enough and the server is not saturated."""
        if self.dirty:
            now = self.clock()
            busy = self.load(now)
            if busy < self.light_limit or (busy < self.busy_limit
                                           and now - self.started >= self.budget_ns):
                self.flush()

    def load(self, now: int) -> float:
        """The share of a core this process used over the last whole window."""
        if now - self.window_start >= self.window_ns:
            cpu = self.cpu_clock()
            self.busy = (cpu - self.window_cpu) / (now - self.window_start)
            self.window_start, self.window_cpu = now, cpu
        return self.busy


class Stages:
    """Per-frame stage times for the bench (HEARTH_WS_STAGES): never on in production.

    For each data frame: `queue` (the sender's stamp to the read, when the payload
    carries one at HEARTH_WS_STAGES_STAMP — the bench's voice frames carry their send
    time at byte 10), `route` (onMessage: decode, the room's rules, encode, buffering),
    `wait` (routed until its turn's flush starts), `flush` (that whole flush: the
    `send()` calls). Garbage collections are timed too (`gc`, and `gc2` the collections of
    the oldest generation), and the reactor's timed calls (`timers`, `watch_timers`). The
    bench's chat envelopes carry their send time too, at the start of the ciphertext
    (`text_stamp`): their `queue` is timed the same way. One JSON line a second, of
    percentiles, appended to the file; nothing of any payload is written.

    On a machine shared with other work, wall-clock stages mostly measure the other
    work; with HEARTH_WS_STAGES_CLOCK=cpu every stage but `queue` is measured in the
    server thread's CPU time instead: the delay the server's own work adds, which on
    a quiet machine is what the wall clock would show.
    """

    def __init__(self, path: str, stamp_offset: int | None = None,
                 clock: Callable[[], int] = time.monotonic_ns, text_stamp: bool = False) -> None:
        self.path = path
        self.stamp_offset = stamp_offset
        self.text_stamp = text_stamp
        self.clock = clock
        self.pending: list[tuple[int, int]] = []  # read, routed
        self.samples: dict[str, list[int]] = {"queue": [], "route": [], "wait": [], "flush": [],
                                              "gc": [], "gc2": [], "timers": []}
        self.flushes = self.written = 0
        self.last_dump = time.monotonic_ns()
        self._gc_started = 0
        gc.callbacks.append(self._gc)

    def frame(self, payload: bytes, binary: bool, wall: int, read: int, routed: int) -> None:
        """One data frame: read at `wall` (monotonic), `read` and `routed` on self.clock."""
        at = self.stamp_offset
        if binary and at is not None and len(payload) >= at + 8:
            self.samples["queue"].append(wall - int.from_bytes(payload[at:at + 8], "big"))
        elif not binary and self.text_stamp:
            body = payload.find(b'"body":"')
            if body >= 0:  # the bench's chat envelopes: the send time opens the ciphertext
                with contextlib.suppress(ValueError):
                    sent = int.from_bytes(binascii.a2b_base64(payload[body + 8:body + 20])[:8],
                                          "big")
                    self.samples["queue"].append(wall - sent)
        self.pending.append((read, routed))

    def flushed(self, started: int, ended: int, connections: int) -> None:
        s = self.samples
        for read, routed in self.pending:
            s["route"].append(routed - read)
            s["wait"].append(max(0, started - routed))
            s["flush"].append(ended - started)
        self.pending = []
        self.flushes += 1
        self.written += connections
        now = time.monotonic_ns()
        if now - self.last_dump >= 1_000_000_000:
            self.dump(now)

    def watch_timers(self, reactor: Any) -> None:
        """Time the reactor's timed calls (the room tick, housekeeping, ...) as `timers`: a
        frame that arrives while they run waits for them before it is read."""
        run = reactor.runUntilCurrent
        clock, samples = self.clock, self.samples["timers"]

        def timed() -> None:
            started = clock()
            run()
            samples.append(clock() - started)
        reactor.runUntilCurrent = timed

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = self.clock()
        elif self._gc_started:
            took = self.clock() - self._gc_started
            self.samples["gc"].append(took)
            if info.get("generation") == 2:  # the whole heap: the long ones
                self.samples["gc2"].append(took)

    def dump(self, now: int) -> None:
        line: dict[str, Any] = {"t": now, "flushes": self.flushes,
                                "connections_per_flush": round(self.written / self.flushes, 2)
                                if self.flushes else 0}
        for name, values in self.samples.items():
            values.sort()
            line[name] = {"n": len(values),
                          **{f"p{q}_us": round(values[min(len(values) - 1, len(values) * q // 100)]
                                               / 1000, 1) if values else 0 for q in (50, 99)},
                          "max_us": round(values[-1] / 1000, 1) if values else 0}
            values.clear()
        self.flushes = self.written = 0
        self.last_dump = now
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")


def turn_from_env(environ: Mapping[str, str] = os.environ) -> Turn:
    """The factory's Turn; the bench's measuring knobs (HEARTH_WS_STAGES, ...) if set."""
    path = environ.get(STAGES)
    offset = environ.get(STAGES_STAMP)
    clock = time.thread_time_ns if environ.get(STAGES_CLOCK) == "cpu" else time.monotonic_ns
    stages = Stages(path, int(offset) if offset and offset != "body" else None, clock,
                    text_stamp=offset == "body") if path else None
    if stages is not None:
        from twisted.internet import reactor
        stages.watch_timers(reactor)
    budget = environ.get(BUDGET)
    budget_ns = int(float(budget) * 1000) if budget else FLUSH_BUDGET_NS
    light = environ.get(LIGHT)
    return Turn(budget_ns=budget_ns or 1 << 62, stages=stages,
                light_limit=float(light) if light else LIGHT_LIMIT)


class FastPath:
    """Mixed in before autobahn's WebSocketServerProtocol (web/ws.py builds the class).

    `turn` is the factory's Turn, set on the bound class. Everything here assumes
    autobahn's attributes (`state`, `data`, `send_queue`, ...) and falls back to
    autobahn's own methods whenever the common case does not hold.
    """

    turn: Turn
    _out: list[bytes] | None = None
    _out_len = 0
    # Whether Twisted's transport may hold bytes of ours (the handshake, a partial send,
    # TLS, ...): pending_bytes asks it then, until it is found holding nothing.
    _handed_over = True

    # attributes of autobahn's protocol this class reads (for the type checker's sake)
    state: int
    STATE_OPEN: int
    data: bytes
    send_queue: Any
    transport: Any
    logOctets: bool
    current_frame: Any
    inside_message: bool
    failedByMe: bool
    maxMessagePayloadSize: int
    maxFramePayloadSize: int
    autoPingTimeoutCall: Any
    autoPingRestartOnAnyTraffic: bool

    # --- the Peer interface the node writes through -------------------------------

    def send_bytes(self, payload: bytes) -> None:
        if self.state == self.STATE_OPEN:
            self.sendData(server_frame(payload, False))

    def send_binary(self, payload: bytes) -> None:
        if self.state == self.STATE_OPEN:
            self.sendData(server_frame(payload, True))

    def send_prepared(self, prepared: Any) -> None:
        """`sendData(prepared.payloadHybi)` (compression is never on), its common case inline:
        once per recipient of every room message and voice frame."""
        if self.state != self.STATE_OPEN or self.send_queue:
            if self.state == self.STATE_OPEN:
                self.sendData(prepared.payloadHybi)
            return
        self._buffer(prepared.payloadHybi)

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

    # --- reading -----------------------------------------------------------------------

    def onOpen(self) -> None:
        super().onOpen()  # type: ignore[misc]
        read_directly(self.transport)

    def dataReceived(self, data: bytes) -> None:
        """autobahn's Twisted adapter formats a debug line per read, logged or not: skip it."""
        if self.state == self.STATE_OPEN and not self.logOctets:
            self.data = self.data + data if self.data else data
            self.consumeData()  # type: ignore[attr-defined]
            self.turn.read_done()
        else:
            super().dataReceived(data)  # type: ignore[misc]

    def processData(self) -> bool:
        """Complete, masked, unfragmented text or binary frames: unmask, check, deliver.

        autobahn's own parser takes anything else (control frames, fragments, frames not
        yet complete, oversized or invalid ones) and answers with the close codes
        docs/protocol.md lists.
        """
        data = self.data
        if (self.current_frame is not None or self.inside_message or self.failedByMe
                or self.state != self.STATE_OPEN):
            return bool(super().processData())  # type: ignore[misc]
        stages = self.turn.stages
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
                self._cancelAutoPingTimeoutCall()  # type: ignore[attr-defined]
            if stages is None:
                self.onMessage(payload, b0 == 0x82)  # type: ignore[attr-defined]
            else:
                wall, read = time.monotonic_ns(), stages.clock()
                self.onMessage(payload, b0 == 0x82)  # type: ignore[attr-defined]
                stages.frame(payload, b0 == 0x82, wall, read, stages.clock())
        if i == 0:
            return bool(super().processData())  # type: ignore[misc]
        self.data = data[i:]
        return len(self.data) > 0

    # --- writing -----------------------------------------------------------------------

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """autobahn writes every frame through here: buffer it until the end of this turn."""
        if sync or chopsize or self.state != self.STATE_OPEN or self.send_queue:
            self.flush()
            if not self._handed_over:  # (a class attribute until then: no per-member key)
                self._handed_over = True
            super().sendData(data, sync, chopsize)  # type: ignore[misc]
            return
        self._buffer(data)

    def _buffer(self, data: bytes) -> None:
        """Into this connection's buffer for the turn; the turn learns of a first write."""
        out = self._out
        if out is None:
            self._out = [data]
            self.turn.add(self)
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
        super()._closeConnection(abort)  # type: ignore[misc]


def read_directly(transport: Any) -> None:
    """Twisted's asyncio reactor calls every read of a socket through `callWithLogger`,
    which builds a logging context (the connection's log prefix) around it: four calls
    and two dicts per read, a few per cent of the relay's CPU. For an open WebSocket on
    plain TCP, the event loop calls the reactor's own `_readOrWrite` for it directly: the
    same read, error handling and disconnection, only without that context (log lines
    written while handling a frame carry the default `system`). Any other reactor or
    transport (TLS) keeps Twisted's path, and so does a connection Twisted registers
    again itself (it pauses and resumes reading)."""
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
