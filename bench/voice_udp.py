"""Voice over WebTransport datagrams: the datagram voice scenario, and what bench.lossy shares.

`python -m bench voice_udp` (registered in bench/__main__.py): rooms of 12 members, every
member on a WebTransport session as well as its WebSocket, so every frame goes in and out as
a datagram. The load is the number of speakers (three to a room, as in the WebSocket voice
scenario, each sending a 20 ms frame every 20 ms at its own phase), raised x1.5 from one
speaker and then bisected at each bound, as that scenario does over rooms. A step passes a
bound when its p99 latency (receive time minus the send time written into the frame) is
within it, nothing came out of order and at most LOSS_ALLOWED of the frames expected never
came (a datagram is droppable: the server drops rather than queues). Reported: frames/s
delivered at the highest step within p99 <= 50 ms and within p99 <= 10 ms, the losses, and
whether the load generator (aioquic in Python too, pinned to its own core) was saturated
there. Each step also gives the counts at every stage (`stages`): frames the speakers sent,
what the server received, routed, queued to aioquic, sent and dropped (its /metrics), its
QUIC packets in and out, the datagrams and frames the listeners got, and the machine's UDP
counters (RcvbufErrors: datagrams a full socket buffer dropped).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bench import servers
from bench.scenarios import (
    TIGHT_MS,
    VOICE_BOUND_MS,
    VOICE_STAMP,
    CpuMeter,
    Settings,
    Step,
    _progress,
    at_knee,
    below_knee,
    bounds_summary,
    heard,
    knee,
    ladder,
    pace,
    retried,
)
from bench.wsclient import WSClient, connect
from bench.wtclient import VoiceSession, open_session
from hearth.spaces.config import to_toml
from hearth.spaces.voice import HEADER, build_frame

HOST = "127.0.0.1"
STAMP = struct.Struct("!d")  # the sender's time.monotonic(), at the start of the "ciphertext"
OPUS = 60  # bytes of Opus in a 20 ms frame at 24 kbps
TAG = 16
FRAME_S = 0.02
MEMBERS, SPEAKERS = 12, 3


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_server(rooms: int, capacity: int = 16) -> tuple[servers.Served, int]:
    """`hearth serve` with voice over UDP on (self-signed), pinned like the other scenarios."""
    workdir = Path(tempfile.mkdtemp(prefix="hearth-bench-udp-"))
    udp_port = free_udp_port()
    config = servers.hearth_config(workdir / "data", rooms, capacity)
    config["webtransport"] = {"port": udp_port, "self_signed": True, "max_connections": 100_000}
    path = workdir / "hearth.toml"
    path.write_text(to_toml(config))
    log_path = workdir / "server.log"
    argv = [sys.executable, "-m", "hearth.web.cli", "serve", "--config", str(path)]
    if servers.pinning():
        argv = ["taskset", "-c", str(servers.SERVER_CORE), *argv]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=servers.ROOT)
    served = servers.Served("hearth", proc, log_path, workdir=workdir)
    try:
        served.wait_ready()
    except BaseException:
        servers.cleanup(served)
        raise
    return served, udp_port


def voice_frame(seq: int, level: int = 20) -> bytes:
    """A frame as a client sends it: the send time where the ciphertext would start."""
    return build_frame(STAMP.pack(time.monotonic()) + bytes(OPUS + TAG - STAMP.size),
                       seq=seq, level=level)


def sent_at(frame: bytes) -> float:
    return float(STAMP.unpack_from(frame, 10)[0])


@dataclass
class Member:
    """One generated member: its WebSocket, and its voice session once it has one."""
    ws: WSClient
    id: str = ""
    session: VoiceSession | None = None
    inbox: list[dict[str, Any]] = field(default_factory=list)
    waiters: list[tuple[Any, asyncio.Future[dict[str, Any]]]] = field(default_factory=list)

    def on_text(self, _: WSClient, payload: bytes) -> None:
        message = json.loads(payload)
        for match, future in list(self.waiters):
            if not future.done() and match(message):
                future.set_result(message)
                self.waiters.remove((match, future))
                return
        self.inbox.append(message)

    async def ask(self, message: dict[str, Any], match: Any, timeout: float = 10.0) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters.append((match, future))
        self.ws.send(json.dumps(message).encode())
        return await asyncio.wait_for(future, timeout)


async def join(host: str, port: int, room: str, name: str) -> Member:
    ws = await connect(host, port)
    member = Member(ws)
    ws.on_text = member.on_text
    welcome = await member.ask({"type": "join", "room": room, "pseudonym": name},
                               lambda m: m.get("type") in ("welcome", "error"))
    if welcome["type"] != "welcome":
        raise RuntimeError(f"join refused: {welcome}")
    member.id = welcome["member"]
    return member


async def voice_session(member: Member, via: tuple[str, int] | None = None,
                        tries: int = 3) -> VoiceSession:
    """Ask for a token over the WebSocket and open the session (through `via`, a proxy)."""
    for attempt in range(tries):
        offer = await member.ask({"type": "voice_transport", "ref": "vt"},
                                 lambda m: m.get("ref") == "vt")
        if offer.get("type") != "voice_transport":
            raise RuntimeError(f"no voice over UDP: {offer}")
        try:
            member.session = await open_session(offer, origin=f"http://{HOST}", via=via,
                                                timeout=10.0)
            return member.session
        except (TimeoutError, ConnectionError):
            if attempt == tries - 1:
                raise
            await asyncio.sleep(1.1)  # one token a second
    raise AssertionError("unreachable")


# --- the datagram voice scenario ------------------------------------------------------------

LOSS_ALLOWED = 0.001  # share of frames a passing step may lose (a page's repeats and jitter
# buffer hide that much; a datagram is droppable, the server drops rather than queues)
ROOMS_MAX = 32  # rooms in the server's config: more than any ladder reaches (93 speakers)
PAD = bytes(OPUS + TAG - VOICE_STAMP.size)
SNMP = Path("/proc/net/snmp")
KERNEL = ("InDatagrams", "OutDatagrams", "RcvbufErrors", "SndbufErrors")
# the server's counts at each stage, from its /metrics (web/webtransport.py, web/metrics.py)
STAGES = {"server_received": 'hearth_voice_datagrams_total{outcome="received"}',
          "server_routed": "hearth_voice_frames_forwarded_total",
          "server_queued": 'hearth_voice_datagrams_total{outcome="queued"}',
          "server_sent": 'hearth_voice_datagrams_total{outcome="sent"}',
          "server_dropped_congested": 'hearth_voice_datagrams_total{outcome="dropped_congested"}',
          "server_dropped_late": 'hearth_voice_datagrams_total{outcome="dropped_late"}',
          "server_packets_in": 'hearth_voice_packets_total{direction="in"}',
          "server_packets_out": 'hearth_voice_packets_total{direction="out"}',
          "server_dropped_rate": 'hearth_voice_frames_dropped_total{reason="rate"}'}


def kernel_udp() -> dict[str, int]:
    """The machine's UDP counters (/proc/net/snmp): every process's, the server's and this
    generator's together; RcvbufErrors are datagrams a full socket buffer dropped."""
    try:
        lines = [line.split() for line in SNMP.read_text().splitlines()
                 if line.startswith("Udp:")]
        names, values = lines[0][1:], [int(v) for v in lines[1][1:]]
    except (OSError, IndexError, ValueError):
        return {}
    got = dict(zip(names, values, strict=False))
    return {f"udp_{k}": got[k] for k in KERNEL if k in got}


def stages(port: int) -> dict[str, int]:
    scraped = servers.metrics(port)
    return {name: int(scraped[key]) for name, key in STAGES.items() if key in scraped}


class DatagramLoad:
    """Rooms of 12, every member with a WebTransport session; `load` speakers, three a room
    (the voice scenario's rooms), each sending a 20 ms frame every 20 ms at its own phase."""

    def __init__(self, served: servers.Served, settings: Settings) -> None:
        self.served, self.settings = served, settings
        self.rooms: list[list[Member]] = []
        self.speakers: list[tuple[int, VoiceSession]] = []
        self.active: list[tuple[int, VoiceSession]] = []
        self.sessions: list[VoiceSession] = []
        self.counts: dict[int, int] = {}
        self.last: dict[tuple[int, int], int] = {}
        self.step = Step(0)
        self.next = 0
        self.frames_sent = 0

    async def ensure(self, rooms: int) -> None:
        while len(self.rooms) < rooms:
            r = len(self.rooms)
            members = [await join(HOST, self.served.port, f"r{r}", f"Udp {r}-{m}")
                       for m in range(MEMBERS)]
            for m, member in enumerate(members):
                session = await voice_session(member)
                index = r * 100 + m
                session.on_frame = partial(self._heard, index)
                self.sessions.append(session)
                if m < SPEAKERS:
                    self.speakers.append((index, session))
                    self.counts[index] = 0
            self.rooms.append(members)
        await asyncio.sleep(0.3)

    def _heard(self, listener: int, frame: bytes) -> None:
        sent, speaker, count = VOICE_STAMP.unpack_from(frame, HEADER.size)
        now = time.monotonic_ns()
        key = (listener, speaker)
        self.last[key] = heard(self.step, self.last.get(key, 0), count, sent, now)

    def send(self, n: int) -> None:
        """The next `n` frames, round-robin over the active speakers (each at its own phase)."""
        active = self.active
        for _ in range(n):
            index, session = active[self.next % len(active)]
            self.next += 1
            self.counts[index] = count = self.counts[index] + 1
            session.send(build_frame(VOICE_STAMP.pack(time.monotonic_ns(), index, count) + PAD,
                                     seq=count, level=20))
            self.frames_sent += 1
            self.step.expected += MEMBERS - 1

    async def run(self, speakers: int) -> dict[str, Any]:
        settings = self.settings
        await self.ensure(-(-speakers // SPEAKERS))
        self.active = self.speakers[:speakers]
        self.next, self.frames_sent = 0, 0
        before, kernel = stages(self.served.port), kernel_udp()
        heard = sum(s.datagrams for s in self.sessions)
        dropped = sum(getattr(s, "dropped", 0) for s in self.sessions)
        self.step = step = Step(speakers)
        meter = CpuMeter(self.served.pid)
        await pace(speakers / FRAME_S, settings.step_seconds, self.send)
        cpu = meter.read()
        await settle(step, settings.drain_seconds)
        result = step.result(settings.step_seconds, VOICE_BOUND_MS, cpu, "frames_per_s")
        lost_share = result["missing"] / step.expected if step.expected else 0.0
        result["clean"] = clean = (step.received > 0 and lost_share <= LOSS_ALLOWED
                                   and step.reordered == 0 and step.errors == 0)
        result["ok"] = clean and result["p99_ms"] <= VOICE_BOUND_MS
        after, kernel_after = stages(self.served.port), kernel_udp()
        counts = {"generator_sent": self.frames_sent,
                  "generator_dropped": sum(getattr(s, "dropped", 0) for s in self.sessions)
                  - dropped,
                  **{k: v - before.get(k, 0) for k, v in after.items()},
                  "listener_datagrams": sum(s.datagrams for s in self.sessions) - heard,
                  "listener_frames": step.received,
                  **{k: v - kernel.get(k, 0) for k, v in kernel_after.items()}}
        return {**result, "speakers": speakers, "rooms": -(-speakers // SPEAKERS),
                "lost_share": round(lost_share, 5), "stages": counts}

    async def close(self) -> None:
        for room in self.rooms:
            for member in room:
                if member.session is not None:
                    await member.session.close()
                member.ws.abort()


async def settle(step: Step, limit: float, quiet_for: float = 0.3) -> None:
    """Until every frame expected came, nothing more came for `quiet_for` seconds (a dropped
    datagram never comes), or `limit` seconds passed."""
    deadline, seen, still = time.monotonic() + limit, -1, time.monotonic()
    while step.received < step.expected and time.monotonic() < deadline:
        if step.received != seen:
            seen, still = step.received, time.monotonic()
        elif time.monotonic() - still >= quiet_for:
            return
        await asyncio.sleep(0.02)


async def scenario(settings: Settings) -> dict[str, Any]:
    """The ladder over speakers (1, 2, 3, 5, 8, ... at x1.5, three to a room), then bisection
    at each bound, as the WebSocket voice scenario does over rooms."""
    served, _ = start_server(rooms=ROOMS_MAX)
    load = DatagramLoad(served, settings)

    async def run_step(speakers: float) -> dict[str, Any]:
        return await retried(lambda: one_step(int(speakers)), settings.retries)

    async def one_step(speakers: int) -> dict[str, Any]:
        if speakers > ROOMS_MAX * SPEAKERS or not served.alive():
            raise RuntimeError("the datagram ladder went past its rooms, or the server exited")
        result = await load.run(speakers)
        _progress("hearth", "voice_udp", result, "frames_per_s")
        print(f"  [voice_udp hearth  ] stages {json.dumps(result['stages'])}",
              file=sys.stderr, flush=True)
        return result

    try:
        steps = await ladder(run_step, 1, settings, (VOICE_BOUND_MS, TIGHT_MS), integer=True)
    finally:
        await load.close()
        servers.cleanup(served)
    best, tight = knee(steps, "frames_per_s"), knee(steps, "frames_per_s", TIGHT_MS)
    summary = bounds_summary(steps, "frames_per_s", TIGHT_MS)
    return {"scenario": "voice_udp",
            "frames_per_s_p99_50ms": best["frames_per_s"] if best else 0,
            "frames_per_s_p99_10ms": tight["frames_per_s"] if tight else 0,
            "speakers_at_knee": best["speakers"] if best else 0,
            "speakers_at_tight_knee": tight["speakers"] if tight else 0,
            "loss_allowed_pct": 100 * LOSS_ALLOWED,
            "generator_saturated": summary["loadgen_saturated_loose"]
            or summary["loadgen_saturated_tight"],
            **summary, **at_knee(best, steps), **below_knee(best, steps), "steps": steps}


async def bench(kind: str, settings: Settings) -> dict[str, Any]:
    """`python -m bench voice_udp`: Hearth only (the baseline relays have no datagrams)."""
    if kind != "hearth":
        return {"skipped": "datagram voice is Hearth's only"}
    return await scenario(settings)


def main() -> int:
    servers.raise_fd_limit()
    servers.pin_self()
    result = asyncio.run(scenario(Settings.full()))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
