"""`python -m bench.lossy`: voice over a bad mobile link, WebTransport against the WebSocket.

One speaker and one listener in a room of a real `hearth serve` (voice over UDP on); each
of them reaches the server through its own impairment proxy (bench/impair.py: by default 5 %
random loss and 50 ± 20 ms delay each way, on both people's links). The speaker sends a
20 ms frame every 20 ms for `--seconds`, with its send time inside; the listener notes when
each frame first arrives. Then each frame goes through the room page's jitter buffer
(audio.js: the same adaptive play-out, here on the recorded arrival times) and is counted:

- on time: played at its turn on the play-out timeline;
- late: it came after its turn (dropped, or played after an underrun restarted the timeline);
- lost: it never came (over UDP, neither its datagram nor the next one's repeat arrived).

Mouth-to-ear is play time minus send time, for every frame played; the network's own
delay (arrival minus send time) is reported beside it. The run says how busy the machine
was (load average, the share of both cores in use), since other work shares it. JSON out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench import servers
from bench.impair import Link, TcpProxy, UdpProxy
from bench.voice_udp import HOST, join, sent_at, start_server, voice_frame, voice_session
from hearth.spaces.voice import parse_header

FRAME_S = 0.02
MIN_DELAY, MAX_DELAY = 0.04, 0.2  # audio.js's play-out target bounds
GAP_DECIDE = 0.005
NEW_TALKSPURT = 0.2
SHRINK_EVERY = 0.5
MAX_WAITING = 50
TICK = 0.01


@dataclass
class Played:
    on_time: int = 0
    late: int = 0
    lost: int = 0
    mouth_to_ear: list[float] | None = None


def playout(arrivals: dict[int, float], sent: dict[int, float]) -> Played:
    """audio.js's Speaker (push, pump, its 10 ms tick) on recorded arrival times, seconds."""
    out = Played(mouth_to_ear=[])
    events = sorted((t, seq) for seq, t in arrivals.items())
    waiting: dict[int, float] = {}
    next_seq: int | None = None
    next_time = 0.0
    jitter = extra = 0.0
    prev_transit: float | None = None
    last_arrival = -1e9
    ended, last_shrink = True, -1e9
    status: dict[int, str] = {}

    def target() -> float:
        return min(MAX_DELAY, max(MIN_DELAY, FRAME_S + 4 * jitter + extra))

    def pump(now: float, fresh: bool = False) -> None:
        nonlocal next_seq, next_time, extra, ended, last_shrink
        if not waiting:
            return
        if next_seq is None:
            next_seq, next_time = min(waiting), now + target()
        while waiting:
            if next_seq not in waiting:
                ahead = next_time - now
                if ahead < -GAP_DECIDE:
                    if not fresh and not ended:
                        extra = min(MAX_DELAY, extra + FRAME_S)
                    next_time = now + target()
                    break
                if ahead > GAP_DECIDE:
                    break
                next_seq += 1  # concealed: its 20 ms stay silent
                next_time += FRAME_S
                first = min(waiting)
                if first - next_seq > MAX_WAITING:
                    next_seq, next_time = first, now + target()
                continue
            waiting.pop(next_seq)
            ahead = next_time - now
            on_time = ahead >= 0
            if not on_time:
                if not fresh and not ended:
                    extra = min(MAX_DELAY, extra + FRAME_S)
                next_time = now + target()
            elif ahead - target() > 4 * FRAME_S and now - last_shrink > SHRINK_EVERY:
                last_shrink = now  # far ahead (speech): one frame dropped to catch up
                status[next_seq] = "late"
                next_seq += 1
                continue
            status[next_seq] = "on_time" if on_time else "late"
            out.mouth_to_ear.append(next_time - sent[next_seq])  # type: ignore[union-attr]
            ended = False
            next_seq += 1
            next_time += FRAME_S

    i = 0
    now = events[0][0] if events else 0.0
    end = (events[-1][0] if events else 0.0) + 1.0
    while now <= end:
        while i < len(events) and events[i][0] <= now:
            t, seq = events[i]
            i += 1
            fresh = ended or t - last_arrival > NEW_TALKSPURT
            last_arrival = t
            extra *= 0.995
            if next_seq is not None and seq < next_seq:
                status.setdefault(seq, "late")  # its turn is over
                extra = min(MAX_DELAY, extra + FRAME_S)
                continue
            transit = t - seq * FRAME_S
            if fresh or prev_transit is None:
                prev_transit = transit
            else:
                jitter += (min(abs(transit - prev_transit), MAX_DELAY) - jitter) / 16
                prev_transit = transit
            if len(waiting) >= MAX_WAITING:
                status.setdefault(seq, "late")
                continue
            waiting[seq] = t
            pump(t, fresh)
        pump(now)
        now += TICK
    for seq in sent:
        kind = status.get(seq, "lost" if seq not in arrivals else "late")
        if kind == "on_time":
            out.on_time += 1
        elif kind == "late":
            out.late += 1
        else:
            out.lost += 1
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q / 100 * len(values)))] * 1000, 1)


async def one_path(transport: str, port: int, udp_port: int, room: str, args: Any,
                   seed: int) -> dict[str, Any]:
    """One speaker, one listener, each behind its own impaired link."""
    links = [Link(args.loss, args.delay / 1000, args.jitter / 1000, seed=seed + k)
             for k in range(2)]
    proxies: list[TcpProxy | UdpProxy] = []
    speaker_link, listener_link = links
    if args.legs == "listener":
        speaker_link = Link(0.0, 0.0, 0.0)  # the speaker's link is clean
    if transport == "websocket":
        proxies = [TcpProxy((HOST, port), speaker_link), TcpProxy((HOST, port), listener_link)]
    else:
        proxies = [UdpProxy((HOST, udp_port), speaker_link),
                   UdpProxy((HOST, udp_port), listener_link)]
    for proxy in proxies:
        await proxy.start()
    ws_ports = [p.port for p in proxies] if transport == "websocket" else [port, port]
    speaker = await join(HOST, ws_ports[0], room, "Lossy Speaker")
    listener = await join(HOST, ws_ports[1], room, "Lossy Listener")
    arrivals: dict[int, float] = {}
    sent: dict[int, float] = {}

    def heard(frame: bytes) -> None:
        seq = parse_header(frame, 4096).seq
        if seq not in arrivals:
            arrivals[seq] = time.monotonic()

    sessions = []
    if transport == "webtransport":
        for member, proxy in ((speaker, proxies[0]), (listener, proxies[1])):
            sessions.append(await voice_session(member, via=(HOST, proxy.port)))
        sessions[1].on_frame = heard
        previous: bytes | None = None

        def send(frame: bytes) -> None:
            nonlocal previous
            sessions[0].send(frame, previous)  # the page repeats its previous frame
            previous = frame
    else:
        listener.ws.on_binary = lambda _, payload: heard(payload)

        def send(frame: bytes) -> None:
            speaker.ws.send(frame, 2)
    await asyncio.sleep(1.0)
    loop = asyncio.get_running_loop()
    frames = int(args.seconds / FRAME_S)
    start = loop.time()
    for seq in range(1, frames + 1):
        frame = voice_frame(seq)
        sent[seq] = sent_at(frame)
        send(frame)
        await asyncio.sleep(max(0.0, start + seq * FRAME_S - loop.time()))
    await asyncio.sleep(2.0)
    for session in sessions:
        await session.close()
    speaker.ws.abort()
    listener.ws.abort()
    for proxy in proxies:
        proxy.close()
    played = playout(arrivals, sent)
    network = [arrivals[s] - sent[s] for s in arrivals]
    return {"transport": transport, "frames": frames,
            "on_time_share": round(played.on_time / frames, 4),
            "late_share": round(played.late / frames, 4),
            "lost_share": round(played.lost / frames, 4),
            "mouth_to_ear_p50_ms": pct(played.mouth_to_ear or [], 50),
            "mouth_to_ear_p95_ms": pct(played.mouth_to_ear or [], 95),
            "network_p95_ms": pct(network, 95),
            "link_loss_seen": round(sum(k.lost for k in links) /
                                    max(1, sum(k.lost + k.passed for k in links)), 4)}


async def run(args: Any) -> dict[str, Any]:
    served, udp_port = start_server(rooms=2)
    busy0, wall0, load0 = servers.busy_seconds(), time.monotonic(), os.getloadavg()[0]
    try:
        results = {}
        for i, transport in enumerate(("webtransport", "websocket")):
            print(f"bench.lossy: {transport} for {args.seconds:g} s", file=sys.stderr, flush=True)
            results[transport] = await one_path(transport, served.port, udp_port, f"r{i}",
                                                args, seed=args.seed)
    finally:
        servers.cleanup(served)
    wall = time.monotonic() - wall0
    wt, ws = results["webtransport"], results["websocket"]
    return {
        "impairment": {"loss": args.loss, "delay_ms": args.delay, "jitter_ms": args.jitter,
                       "legs": args.legs, "seconds": args.seconds, "seed": args.seed},
        "webtransport": wt, "websocket": ws,
        "goal": {"on_time_at_least_95": wt["on_time_share"] >= 0.95,
                 "p95_at_most_half_of_websocket":
                     wt["mouth_to_ear_p95_ms"] <= ws["mouth_to_ear_p95_ms"] / 2},
        "machine": {"cores": os.cpu_count(), "loadavg_1m_before": round(load0, 2),
                    "loadavg_1m_after": round(os.getloadavg()[0], 2),
                    "busy_share": round((servers.busy_seconds() - busy0) /
                                        (wall * (os.cpu_count() or 1)), 3)},
    }


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m bench.lossy", description=__doc__.split("\n\n")[0])
    top.add_argument("--seconds", type=float, default=30.0, help="of speech per path (default 30)")
    top.add_argument("--loss", type=float, default=0.05, help="per packet, each way (0.05)")
    top.add_argument("--delay", type=float, default=50.0, help="one-way delay in ms (50)")
    top.add_argument("--jitter", type=float, default=20.0, help="± ms, uniform (20)")
    top.add_argument("--legs", choices=("both", "listener"), default="both",
                     help="whose links are impaired: both people's (default) or the listener's")
    top.add_argument("--seed", type=int, default=23)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not 0 <= args.loss < 1 or args.seconds <= 0 or args.seconds > 600:
        print("bench.lossy: --loss from 0 to 1, --seconds up to 600", file=sys.stderr)
        return 2
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
