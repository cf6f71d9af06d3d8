"""`python -m bench.faults`: what members lose when a node or Redis fails (loopback only).

Each run starts NODES `hearth serve` processes on one redis-server (all on
127.0.0.1, a fresh data directory each), ROOMS rooms each first joined on a
different node (so every node runs one), and PER_NODE members of every room on
every node, each an E2EE Python client (client/groupchat.py) that says a numbered
message RATE times a second and, when its connection drops or its room moves,
resumes on a live node and sends again what was not acknowledged
(client/websocket.py `resume_anywhere`, GroupChat `resumed`). Then one fault:

- `node`: the node that runs room r0 is killed with SIGKILL; a member of r0 on
  another node pressed help OFFSET ms before, while the on-call webhook answers
  503 to its first calls;
- `redis`: redis-server is killed with SIGKILL and restarted empty OUTAGE s later;
- `partition`: redis-server is paused (SIGSTOP) for OUTAGE s, then resumed — to
  every node it looks like a network partition from Redis.

Traffic goes on for a while, stops, and every message is checked at every other
member of its room. Printed as one JSON object per run, then a summary:

    lost        messages acknowledged (or said) that some member of the room never got
    duplicated  messages a member was shown twice (after its own de-duplication)
    repeats     copies the clients dropped as repeats (what a resend after a takeover
                brings twice; not shown)
    reordered   messages a member got after a later one from the same sender
    unacked     messages never acknowledged nor refused (never sent again)
    recovery_s  from the fault until every member has had a message said after the
                fault acknowledged
    alerts      for the help press: distinct Idempotency-Keys of its first alert, its
                second tier's delay after the press, webhook calls received
    lost_detail for the first few lost messages: who missed it, who said it (each
                "Member <room> <node> <n>"), when it was said (s from the fault), its
                acknowledged seq, and what became of it at the member: "never" arrived,
                "no_key" (arrived, its sender key never came), "rejected <codes>"
                (arrived, did not open: the codes of what did not open from that sender)

Bounded: each run has a deadline; nothing waits on a fixed sleep longer than the
traffic it measures. Usage:

    python -m bench.faults [--repeat N] [--faults node,redis,partition] [--offsets 0,10,100,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred

from bench.servers import hearth_config, raise_fd_limit
from hearth.client.groupchat import GroupChat
from hearth.client.websocket import ClientClosed, HearthClient, ServerError, resume_anywhere
from hearth.spaces.config import to_toml

NODES = 3
ROOMS = 3
PER_NODE = 2  # members of each room connected to each node
RATE = 4.0  # messages a second per member
BEFORE = 2.0  # seconds of traffic before the fault
AFTER = 6.0  # seconds of traffic after the fault
OUTAGE = 2.0  # seconds Redis is away (restart, pause)
DRAIN = 20.0  # seconds at most for the last messages to be acknowledged and delivered
RUN_DEADLINE = 120.0  # seconds a run may take at most
HOOK_FAILS = 3  # the on-call webhook answers 503 to this many calls first
SECOND_TIER = 8  # seconds after the press: the help button's second on-call tier
SECRET = "bench-faults-webhook-secret"


async def sleep(seconds: float) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater
    await deferLater(reactor, seconds, lambda: None)


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await sleep(0.05)


# --- processes ---------------------------------------------------------------------------------

class Redis:
    """redis-server on a loopback port, no persistence: killed, restarted empty, paused."""

    def __init__(self, workdir: Path, port: int) -> None:
        from tests.support.redis_servers import RedisServer
        self.server = RedisServer(workdir, port)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()

    def kill(self) -> None:
        self.server.kill()

    def restart(self) -> None:
        self.server.restart()

    def signal(self, sig: signal.Signals) -> None:
        assert self.server.proc is not None
        self.server.proc.send_signal(sig)


@dataclass
class Cluster:
    """NODES `hearth serve` processes on one Redis, with the same secrets."""

    workdir: Path
    redis: Redis
    nodes: list[Any] = field(default_factory=list)  # tests.support.serving.ServedHearth
    hook_port: int = 0

    def start(self, crisis_dir: str) -> None:
        from hearth.web.datadir import load_secrets
        from tests.support.serving import ServedHearth
        self.redis.start()
        for i in range(NODES):
            data = self.workdir / f"data{i}"
            if i == 0:
                load_secrets(data)
            else:
                data.mkdir(parents=True)
                shutil.copy(self.workdir / "data0" / "secrets.json", data / "secrets.json")
            config = hearth_config(data, ROOMS, 4 * NODES * PER_NODE)
            config["limits"]["messages_per_second"] = 200
            config["crisis"] = {"webhooks": [{"name": "on-call", "secret": SECRET,
                                              "url": f"http://127.0.0.1:{self.hook_port}/hook"}],
                                "max_backoff_seconds": 1.0, "directory": crisis_dir}
            path = self.workdir / f"node{i}.toml"
            path.write_text(to_toml(config))
            node = ServedHearth("--config", str(path), "--redis", self.redis.url,
                                "--node-id", f"node{i}")
            self.nodes.append(node)
        for node in self.nodes:
            node.wait_ready(60)

    def url(self, i: int) -> str:
        return f"ws://127.0.0.1:{self.nodes[i].port}/ws"

    def live_urls(self) -> list[str]:
        return [self.url(i) for i, n in enumerate(self.nodes) if n.proc.poll() is None]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.redis.kill()


def crisis_directory(workdir: Path) -> str:
    """The shipped crisis data with the help button's second tier: the on-call webhook
    again, SECOND_TIER seconds after the press."""
    from tests.support.crisis import quick_crisis
    return quick_crisis(workdir, f'after = {SECOND_TIER}\nif_not = "acknowledged"\n'
                                 'notify = ["on_call_webhook"]')


# --- members -----------------------------------------------------------------------------------

class TracedChat(GroupChat):
    """A GroupChat that also notes which envelopes arrived at all (opened or not)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.arrived: dict[tuple[str, str], int] = {}  # (sender, client id) -> seq
        super().__init__(*args, **kwargs)

    def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") == "envelope" and isinstance(message.get("id"), str):
            self.arrived.setdefault((str(message.get("from")), message["id"]),
                                    int(message.get("seq", -1)))
        super()._on_message(message)


@dataclass(eq=False)
class Member:
    """One person in a room: says numbered messages, and stays through faults."""

    name: str
    room: str
    chat: TracedChat | None = None
    said: dict[str, tuple[int, float]] = field(default_factory=dict)  # client id -> (n, when)
    counter: int = 0
    resumes: int = 0
    gone: str | None = None  # why it could not stay (a final refusal)
    help: str | None = None  # the client id of a help press not yet answered
    incidents: set[str] = field(default_factory=set)
    fault_at: float | None = None
    recovered: float | None = None  # seconds from the fault to its first acknowledged message
    moves: list[tuple[float, int | None, int | None]] = field(default_factory=list)
    # (when, close code, the seq it resumed from) of each resume

    def note(self) -> None:
        """Watch for the first message said after the fault that is acknowledged."""
        assert self.chat is not None
        self.check_help()
        if self.fault_at is None or self.recovered is not None:
            return
        if any(when >= self.fault_at and cid in self.chat.acked
               for cid, (_, when) in self.said.items()):
            self.recovered = time.monotonic() - self.fault_at

    async def join(self, url: str) -> None:
        client = await HearthClient.connect(url)
        chat = await TracedChat.join(client, self.room, pseudonym=self.name)
        assert isinstance(chat, TracedChat)
        self.chat = chat

    def say(self) -> None:
        assert self.chat is not None
        self.counter += 1
        client_id = self.chat.post(f"{self.name}#{self.counter}")
        self.said[client_id] = (self.counter, time.monotonic())

    def press_help(self) -> None:
        self.help = f"help-{secrets.token_urlsafe(8)}"
        self._send_help()

    def _send_help(self) -> None:
        assert self.chat is not None and self.help is not None
        with contextlib.suppress(ClientClosed):  # (if closed: sent again after the resume)
            self.chat.client.send({"type": "help", "id": self.help, "ref": self.help})

    def check_help(self) -> None:
        assert self.chat is not None
        for answer in self.chat.client.take_all("help_received"):
            self.incidents.add(answer["incident"])
            self.help = None

    async def stay(self, urls: Callable[[], list[str]], running: Callable[[], bool]) -> None:
        """Resume whenever the connection goes, until the run ends."""
        assert self.chat is not None
        while running():
            client = self.chat.client
            if client.close_code is None:
                await sleep(0.02)
                continue
            if client.close_code in (4001, 4003, 4005):
                self.gone = f"closed {client.close_code}"
                return
            self.moves.append((time.monotonic(), client.close_code, client.seq))
            try:
                again, welcome = await resume_anywhere(urls(), client.token or "", seq=client.seq,
                                                       within=30.0)
            except (ServerError, TimeoutError) as err:
                self.gone = str(err)
                return
            self.resumes += 1
            self.chat.resumed(again, welcome)
            if self.help is not None:
                self._send_help()


# --- one run -------------------------------------------------------------------------------------

async def run(fault: str, offset_ms: float = 10.0, rooms: int = ROOMS,
              per_node: int = PER_NODE, after: float = AFTER) -> dict[str, Any]:
    """One run (module docstring); the tests run it smaller (one room)."""
    from tests.support.redis_servers import free_port
    from tests.support.webhook_receiver import Receiver
    workdir = Path(tempfile.mkdtemp(prefix=f"hearth-faults-{fault}-"))
    receiver = Receiver(SECRET, fail_first=HOOK_FAILS if fault == "node" else 0)
    cluster = Cluster(workdir, Redis(workdir / "redis", free_port()))
    cluster.hook_port = receiver.listen()
    members: list[Member] = []
    running = True
    staying = [True]  # members resume until the run is measured
    running_or_draining = [True]
    started = time.monotonic()
    try:
        cluster.start(crisis_directory(workdir))
        for r, room in enumerate(f"r{i}" for i in range(rooms)):  # r first joined on node r
            for k in range(NODES):
                node = (r + k) % NODES
                for j in range(per_node):
                    member = Member(f"Member {room} {node} {j}", room)
                    await member.join(cluster.url(node))
                    members.append(member)
        for member in members:
            await settled(member, [m for m in members if m.room == member.room])
        keepers = [Deferred.fromCoroutine(m.stay(cluster.live_urls, lambda: staying[0]))
                   for m in members]
        traffic = Deferred.fromCoroutine(talk(members, lambda: running))
        await sleep(BEFORE)
        fault_at = time.monotonic()
        pressed_at = 0.0
        tier_seen: list[float] = []  # seconds from the press to the second tier's alert

        async def watch_second_tier() -> None:
            deadline = pressed_at + SECOND_TIER + 30
            while time.monotonic() < deadline and running_or_draining[0]:
                if second_tier(receiver, person) is not None:
                    tier_seen.append(time.monotonic() - pressed_at)
                    return
                await sleep(0.05)
        person = next(m for m in members if m.room == "r0" and not m.name.startswith("Member r0 0"))
        if fault == "node":
            person.press_help()
            pressed_at = time.monotonic()
            Deferred.fromCoroutine(watch_second_tier())
            await sleep(offset_ms / 1000)
            fault_at = time.monotonic()
            cluster.nodes[0].proc.kill()  # node0 runs r0
        elif fault == "redis":
            cluster.redis.kill()
            await sleep(OUTAGE)
            cluster.redis.restart()
        elif fault == "partition":
            cluster.redis.signal(signal.SIGSTOP)
            await sleep(OUTAGE)
            cluster.redis.signal(signal.SIGCONT)
        for member in members:
            member.fault_at = fault_at
        await sleep(after)
        running = False
        await traffic
        await drain(members)  # (members still resume meanwhile)
        staying[0] = False
        for keeper in keepers:
            await keeper
        result = measure(members)
        result["lost_detail"] = lost_detail(members, fault_at)
        if fault == "node":
            with contextlib.suppress(TimeoutError):  # (reported as missing)
                await until(lambda: tier_seen, timeout=SECOND_TIER + 20, what="the second tier")
            result["alerts"] = alerts(receiver, person, tier_seen, offset_ms)
        result.update(fault=fault, seconds=round(time.monotonic() - started, 1))
        return result
    finally:
        running = False
        staying[0] = False
        running_or_draining[0] = False
        for member in members:
            if member.chat is not None:
                member.chat.client.drop()
        cluster.stop()
        await receiver.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def settled(member: Member, room: list[Member]) -> None:
    """Until the member holds every other member's sender key (it can read them all)."""
    assert member.chat is not None
    others = [m.chat.client.member for m in room if m.chat is not None and m is not member]
    await member.chat.keys_from([o for o in others if o is not None], timeout=30)


async def talk(members: list[Member], running: Callable[[], bool]) -> None:
    """Every member says a message RATE times a second, staggered."""
    interval = 1.0 / (RATE * len(members))
    i = 0
    while running():
        member = members[i % len(members)]
        if member.chat is not None and member.gone is None:
            member.say()
            member.note()
        i += 1
        await sleep(interval)


async def drain(members: list[Member]) -> None:
    """Until every message is acknowledged (or refused) and delivered, or DRAIN passes."""
    deadline = time.monotonic() + DRAIN
    while time.monotonic() < deadline:
        for member in members:
            member.note()
        if all(not m.chat.unacked for m in members if m.chat is not None and m.gone is None) \
                and all(not missing(m, members) for m in members):
            return
        await sleep(0.1)


def received(member: Member) -> list[str]:
    assert member.chat is not None
    return [m.text for m in member.chat.messages]


def missing(member: Member, members: list[Member]) -> set[str]:
    """What other members of its room said and had acknowledged, that it has not got."""
    got = set(received(member))
    want = set()
    for other in members:
        if other is member or other.room != member.room or other.chat is None:
            continue
        for client_id, (n, _) in other.said.items():
            if client_id in other.chat.acked:
                want.add(f"{other.name}#{n}")
    return want - got


def measure(members: list[Member]) -> dict[str, Any]:
    lost = duplicated = reordered = unacked = repeats = 0
    for member in members:
        assert member.chat is not None
        texts = received(member)
        lost += len(missing(member, members))
        duplicated += len(texts) - len(set(texts))
        repeats += member.chat.duplicates
        last: dict[str, int] = {}
        for text in texts:
            sender, _, n = text.rpartition("#")
            if int(n) < last.get(sender, 0):
                reordered += 1
            last[sender] = max(last.get(sender, 0), int(n))
        unacked += len(member.chat.unacked)
    waited = sorted(m.recovered if m.recovered is not None else float("inf") for m in members)
    return {"members": len(members), "said": sum(len(m.said) for m in members),
            "acknowledged": sum(len(m.chat.acked) for m in members if m.chat is not None),
            "lost": lost, "duplicated": duplicated, "repeats_dropped": repeats,
            "reordered": reordered, "unacked": unacked,
            "resumes": sum(m.resumes for m in members),
            "gone": [m.gone for m in members if m.gone],
            "recovery_s": round(waited[-1], 2),
            "recovery_median_s": round(statistics.median(waited), 2)}


def lost_detail(members: list[Member], fault_at: float, most: int = 12) -> list[dict[str, Any]]:
    """What became of the first `most` lost messages (module docstring)."""
    out: list[dict[str, Any]] = []
    by_text = {f"{m.name}#{n}": (m, cid, when) for m in members
               for cid, (n, when) in m.said.items()}
    for member in members:
        assert member.chat is not None
        pending = {(str(e.get("from")), e.get("id")) for e in member.chat._pending}
        for text in sorted(missing(member, members)):
            sender, client_id, when = by_text[text]
            assert sender.chat is not None
            key = (sender.chat.client.member or "", client_id)
            fate = "never" if key not in member.chat.arrived else \
                "no_key" if key in pending else "rejected " + ",".join(sorted(
                    {code for who, code in member.chat.rejected if who == key[0]}))
            out.append({"member": member.name, "resumes": member.resumes, "said": text,
                        "said_s": round(when - fault_at, 3),
                        "seq": sender.chat.acked[client_id].get("seq"), "fate": fate,
                        "arrived_seq": member.chat.arrived.get(key),
                        "moves": [(round(t - fault_at, 3), code, seq)
                                  for t, code, seq in member.moves]})
            if len(out) >= most:
                return out
    return out


def second_tier(receiver: Any, person: Member) -> Any:
    calls = [c for c in receiver.calls if c.body.get("incident") in person.incidents
             and c.body.get("event") == "incident.alert" and c.body.get("tier") == 1]
    return calls[0] if calls else None


def alerts(receiver: Any, person: Member, tier_seen: list[float],
           offset_ms: float) -> dict[str, Any]:
    """The help press: its first alert, delivered once by Idempotency-Key (however many
    times it was tried), and its second tier, on time from the node that took over."""
    first = [c for c in receiver.calls if c.body.get("event") == "incident.alert"
             and c.body.get("tier") == 0]
    return {"kill_after_press_ms": offset_ms, "incidents": sorted(person.incidents),
            "first_alert_keys": len({c.headers.get("idempotency-key") for c in first}),
            "first_alert_calls": len(first),
            "second_tier_after_s": round(tier_seen[0], 1) if tier_seen else None,
            "second_tier_keys": len({c.headers.get("idempotency-key") for c in receiver.calls
                                     if c.body.get("tier") == 1}),
            "webhook_refused": receiver.refused}


# --- the command ---------------------------------------------------------------------------------

def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fault in sorted({r["fault"] for r in results}):
        runs = [r for r in results if r["fault"] == fault]
        times = [r["recovery_s"] for r in runs]
        out[fault] = {"runs": len(runs),
                      **{key: sum(r[key] for r in runs) for key in
                         ("said", "lost", "duplicated", "repeats_dropped", "reordered",
                          "unacked", "resumes")},
                      "recovery_s": {"median": statistics.median(times), "max": max(times)}}
        if fault == "node":
            out[fault]["alert_first_keys"] = [r["alerts"]["first_alert_keys"] for r in runs]
    return out


async def main_async(options: argparse.Namespace) -> int:
    from twisted.internet import reactor
    results = []
    offsets = [float(x) for x in options.offsets.split(",")]
    for i in range(options.repeat):
        for fault in options.faults.split(","):
            offset = offsets[i % len(offsets)]
            bounded = Deferred.fromCoroutine(run(fault, offset))
            bounded.addTimeout(RUN_DEADLINE, reactor)
            try:
                result = await bounded
            except Exception as err:  # one failed run is reported, the others go on
                result = {"fault": fault, "error": f"{type(err).__name__}: {err}"}
            print(json.dumps(result), flush=True)
            if "error" not in result:
                results.append(result)
    print(json.dumps({"summary": summary(results)}, indent=2), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--faults", default="node,redis,partition")
    parser.add_argument("--offsets", default="0,10,100,1000",
                        help="ms between the help press and the kill, in turn per run")
    options = parser.parse_args(argv)
    raise_fd_limit()
    from twisted.internet import asyncioreactor
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    from twisted.internet import task
    task.react(lambda reactor: Deferred.fromCoroutine(main_async(options)))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
