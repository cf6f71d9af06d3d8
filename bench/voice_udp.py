"""Voice over WebTransport datagrams: the datagram voice scenario, and what bench.lossy shares.

`python -m bench voice_udp` (registered in bench/__main__.py): rooms of 12 members, 3 of them
speaking (a 20 ms frame each, at its own phase), every member on a WebTransport session as
well as its WebSocket, so every frame goes in and out as a datagram. Rooms are added step by
step; a step counts when its p99 latency (receive time minus the send time written into the
frame) is within the bound and at most 0.1 % of the frames expected were not received (a
datagram is droppable: the server drops rather than queues). Reported: frames/s delivered
at the highest step within p99 ≤ 50 ms and within p99 ≤ 10 ms, beside the WebSocket voice
scenario's figures. The load generator runs aioquic in Python too: its CPU is reported, and
a step where it was saturated says so.
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
from pathlib import Path
from typing import Any

from bench import servers
from bench.wsclient import WSClient, connect
from bench.wtclient import VoiceSession, open_session
from hearth.spaces.config import to_toml
from hearth.spaces.voice import build_frame

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
    config["webtransport"] = {"port": udp_port, "self_signed": True}
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

def _p99_ms(values: list[float]) -> float:
    if not values:
        return 0.0
    values.sort()
    return round(values[min(len(values) - 1, int(0.99 * len(values)))] * 1000, 2)


class Load:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.rooms: list[list[Member]] = []
        self.latencies: list[float] = []
        self.received = 0
        self.seq = 0

    async def ensure(self, rooms: int) -> None:
        while len(self.rooms) < rooms:
            r = len(self.rooms)
            members = [await join(self.host, self.port, f"r{r}", f"Udp {r}-{m}")
                       for m in range(MEMBERS)]
            for member in members:
                session = await voice_session(member)
                session.on_frame = self._heard
            self.rooms.append(members)

    def _heard(self, frame: bytes) -> None:
        self.received += 1
        self.latencies.append(time.monotonic() - sent_at(frame))

    async def step(self, rooms: int, seconds: float, drain: float) -> dict[str, Any]:
        await self.ensure(rooms)
        speakers = [m.session for room in self.rooms[:rooms] for m in room[:SPEAKERS]]
        self.latencies, self.received = [], 0
        cpu0, wall0 = time.process_time(), time.monotonic()
        ticks = int(seconds / FRAME_S)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for tick in range(ticks):
            self.seq += 1
            for i, session in enumerate(speakers):
                if session is not None:
                    session.send(voice_frame(self.seq))
                if i % 8 == 7:
                    await asyncio.sleep(0)  # each speaker at its own phase within the tick
            delay = start + (tick + 1) * FRAME_S - loop.time()
            await asyncio.sleep(max(0.0, delay))
        await asyncio.sleep(drain)
        expected = ticks * len(speakers) * (MEMBERS - 1)
        cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
        return {"rooms": rooms, "speakers": len(speakers), "expected": expected,
                "received": self.received,
                "lost_share": round(1 - self.received / expected, 5) if expected else 0.0,
                "frames_per_s": round(self.received / seconds),
                "p99_ms": _p99_ms(self.latencies), "generator_cpu": round(cpu, 2),
                "generator_saturated": cpu > 0.9}

    async def close(self) -> None:
        for room in self.rooms:
            for member in room:
                if member.session is not None:
                    await member.session.close()
                member.ws.abort()


def knee(steps: list[dict[str, Any]], bound_ms: float) -> dict[str, Any] | None:
    good = [s for s in steps if s["p99_ms"] <= bound_ms and s["lost_share"] <= 0.001]
    return max(good, key=lambda s: s["frames_per_s"]) if good else None


async def scenario(seconds: float = 3.0, drain: float = 1.5, max_rooms: int = 12,
                   start_rooms: int = 1) -> dict[str, Any]:
    served, _ = start_server(rooms=max_rooms + 1)
    load = Load(HOST, served.port)
    steps: list[dict[str, Any]] = []
    try:
        rooms = start_rooms
        while rooms <= max_rooms:
            step = await load.step(rooms, seconds, drain)
            steps.append(step)
            print(f"voice_udp: {rooms} rooms: {step['frames_per_s']} frames/s, p99 "
                  f"{step['p99_ms']} ms, lost {step['lost_share']:.3%}, generator cpu "
                  f"{step['generator_cpu']}", file=sys.stderr, flush=True)
            if step["p99_ms"] > 50 or step["lost_share"] > 0.01 or not served.alive():
                break
            rooms += max(1, rooms // 2)
    finally:
        await load.close()
        servers.cleanup(served)
    at_50, at_10 = knee(steps, 50.0), knee(steps, 10.0)
    return {"scenario": "voice_udp", "steps": steps,
            "frames_per_s_p99_50ms": at_50["frames_per_s"] if at_50 else 0,
            "frames_per_s_p99_10ms": at_10["frames_per_s"] if at_10 else 0,
            "rooms_at_knee": at_50["rooms"] if at_50 else 0}


async def bench(kind: str, settings: Any) -> dict[str, Any]:
    """`python -m bench voice_udp`: Hearth only (the baseline relays have no datagrams)."""
    if kind != "hearth":
        return {"skipped": "datagram voice is Hearth's only"}
    if settings.quick:
        return await scenario(seconds=0.6, drain=1.0, max_rooms=1)
    return await scenario(seconds=settings.step_seconds, drain=settings.drain_seconds)


def main() -> int:
    result = asyncio.run(scenario())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
