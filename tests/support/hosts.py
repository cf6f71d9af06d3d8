"""Routing hosts without sockets: several nodes on one in-memory bus, a fake clock, fake
client connections, and a shell that applies the hosts' effects the way web/node.py does
(in order, procedures run at once: the memory broker answers without waiting).

The bus is a queue the test delivers (`flush`), so a test can kill a node (its inbox
goes), pause one (it stops handling what it gets), or take the whole store away."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.task import Clock

from hearth.moderation.wiring import moderated_venue
from hearth.spaces import relay
from hearth.spaces.addresses import AddressBook
from hearth.spaces.broker import MemoryBroker, Unreachable
from hearth.spaces.effects import Audit, Record
from hearth.spaces.host import (
    Call,
    Fan,
    Link,
    Log,
    Post,
    PostAll,
    Procedure,
    RoutingHost,
    Run,
    Share,
    Shut,
    SignedIn,
    Sync,
    Synced,
    VoiceFan,
    Watch,
    Write,
)
from tests.support.config import make_config

COMMIT = "A" * 43 + "="


@dataclass(eq=False)
class Client:
    """One client connection: what it was sent, in order, and how it was closed."""
    node: str
    link: Link | None = None
    got: list[dict[str, Any]] = field(default_factory=list)
    voice: list[bytes] = field(default_factory=list)
    closed: tuple[int, str] | None = None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.got if m.get("type") == kind]

    def last(self, kind: str) -> dict[str, Any]:
        found = self.of(kind)
        assert found, f"no {kind} in {[m.get('type') for m in self.got]}"
        return found[-1]

    def types(self) -> list[str]:
        return [str(m.get("type")) for m in self.got]


class Store(MemoryBroker):
    """The memory broker, which a test can take away (every directory call raises
    Unreachable), pause (`paused`: saves wait until `Nodes.resume_store`), empty, or have
    lose messages it counted as delivered (`losing(to, message)`: Redis failing over or
    killed just after it took a message in; a message to one node, or one to every node as
    it goes to `to`; kept in `lost` as (to, bytes), nobody hears of it)."""

    def __init__(self, clock: Callable[[], float], schedule: Callable[[Callable[[], None]], Any]
                 ) -> None:
        super().__init__(clock, schedule)
        self.away = False
        self.paused = False
        self.saves: list[tuple[str, dict[str, Any]]] = []
        self.losing: Callable[[str, relay.RelayMessage], bool] | None = None
        self.lost: list[tuple[str, bytes]] = []

    def send_node(self, node: str, payload: bytes) -> None:
        if self.losing is not None and self.losing(node, relay.unpack(payload)):
            self.lost.append((node, payload))
            return
        super().send_node(node, payload)

    def empty(self) -> None:
        """A Redis restart with no persistence: the directory is gone, subscriptions stay."""
        self._expiring.clear()
        self._values.clear()


class Nodes:
    """n routing hosts named node1…, each with its own venue, on one memory bus."""

    def __init__(self, n: int = 2, *, directory_in_process: bool = False,
                 **sections: Any) -> None:
        """`directory_in_process`: the hosts run as on the embedded broker (one process,
        whose directory nothing empties but its own end)."""
        self.directory_in_process = directory_in_process
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.bus: list[Callable[[], None]] = []
        self.store = Store(self.clock.seconds, self.bus.append)
        self.config = make_config(**sections)
        self.hosts: dict[str, RoutingHost] = {}
        self.clients: dict[str, list[Client]] = {}
        self.shared: list[tuple[str, str, dict[str, Any]]] = []  # (node, key, payload)
        self.share_fails: set[str] = set()  # nodes whose alerts cannot be copied now
        self.logs: list[tuple[str, str]] = []
        self.watched: list[str] = []  # nodes asked to run their watchers (Watch)
        self.records: list[dict[str, Any]] = []
        self.signed_in: list[tuple[str, dict[str, Any]]] = []  # (node, event) handed on
        self.paused: set[str] = set()
        self.parked: list[tuple[str, Procedure, Call]] = []  # saves waiting for the store
        self.syncing: dict[str, Procedure] = {}  # procedures waiting for their Sync to come back
        self.timeline: list[tuple[str, str]] = []  # ("save", room) / ("to", message type)
        self._applying: dict[str, list[Any]] = {}
        self._subscriptions: dict[str, list[Any]] = {}
        self._member_ids = iter(range(1, 100_000))
        for i in range(1, n + 1):
            self._start(f"node{i}", random.Random(i))
            self.store.watch(self._report(f"node{i}", "unheard"),
                             self._report(f"node{i}", "undelivered"))
        self.flush()

    def _start(self, name: str, rng: random.Random) -> None:
        venue = moderated_venue(self.config, franking_key=b"k" * 32, rng=rng,
                                make_member_id=lambda: f"m{next(self._member_ids)}",
                                ticket_key=b"t" * 32)
        host = RoutingHost(venue, name, self.clock.seconds, addresses=AddressBook(b"s" * 32),
                           directory_in_process=self.directory_in_process)
        self.hosts[name] = host
        self.clients[name] = []
        self._subscriptions[name] = [
            self.store.subscribe_node(name, self._deliver(name)),
            self.store.subscribe_all(self._deliver(name, everyone=True))]
        self.apply(name, host.tick(True))
        self.apply(name, host.housekeeping())

    # --- the bus -------------------------------------------------------------------------------

    def _deliver(self, name: str, everyone: bool = False) -> Callable[[bytes], None]:
        def deliver(data: bytes) -> None:
            losing = self.store.losing
            if everyone and losing is not None and losing(name, relay.unpack(data)):
                self.store.lost.append((name, data))
                return
            if name not in self.paused and name in self.hosts:
                self.apply(name, self.hosts[name].relayed(data))
        return deliver

    def _report(self, name: str, kind: str) -> Callable[..., None]:
        def report(*args: Any) -> None:
            if name in self.hosts and name not in self.paused:
                self.apply(name, getattr(self.hosts[name], kind)(*args))
        return report

    def flush(self, rounds: int = 100) -> None:
        """Deliver everything on the bus (and what that sends), in order."""
        for _ in range(rounds):
            if not self.bus:
                return
            pending, self.bus[:] = self.bus[:], []
            for call in pending:
                call()
        raise AssertionError("the bus never went quiet")

    def kill(self, name: str) -> None:
        """SIGKILL: the node's inbox goes at once (nobody listens), its heartbeat stays
        until it expires; its clients lose their connections."""
        for subscription in self._subscriptions.pop(name):
            subscription.cancel()
        del self.hosts[name]

    def restart(self, name: str) -> None:
        """SIGKILL, then the node starts again with the same name and nothing in memory."""
        self.kill(name)
        self._start(name, random.Random(name))
        self.flush()

    # --- time ------------------------------------------------------------------------------------

    def advance(self, seconds: float, step: float = 0.1) -> None:
        """Time passes: every host ticks (movement) and keeps house (once a second)."""
        elapsed = 0.0
        while elapsed < seconds - 1e-9:
            before = self.clock.seconds()
            self.clock.advance(min(step, seconds - elapsed))
            elapsed += min(step, seconds - elapsed)
            for name, host in list(self.hosts.items()):
                if name in self.paused:
                    continue
                self.apply(name, host.tick(not self.store.away))
                if int(self.clock.seconds()) != int(before):
                    self.apply(name, host.housekeeping())
            self.flush()

    # --- clients ---------------------------------------------------------------------------------

    def connect(self, name: str) -> Client:
        client = Client(name)
        client.link = self.hosts[name].open(client, "127.0.0.1")
        self.clients[name].append(client)
        return client

    def send(self, client: Client, message: dict[str, Any], *, flush: bool = True) -> None:
        assert client.link is not None and client.node in self.hosts
        data = json.dumps(message).encode()
        self.apply(client.node, self.hosts[client.node].received(client.link, data, False))
        if flush:
            self.flush()

    def join(self, name: str, room: str = "circle", **fields: Any) -> Client:
        client = self.connect(name)
        self.send(client, {"type": "join", "room": room, **fields})
        return client

    def drop(self, client: Client) -> None:
        """The client's connection went away."""
        if client.node in self.hosts and client.link is not None and client.closed is None:
            client.closed = (1006, "dropped")
            self.apply(client.node, self.hosts[client.node].lost(client.link))
            self.flush()

    # --- the shell ---------------------------------------------------------------------------------

    def apply(self, name: str, effects: list[Any]) -> None:
        if name in self._applying:
            self._applying[name] += effects
            return
        self._applying[name] = list(effects)
        try:
            while self._applying[name]:
                effect = self._applying[name].pop(0)
                self._do(name, effect)
        finally:
            del self._applying[name]

    def _do(self, name: str, effect: Any) -> None:
        match effect:
            case Write(peer=peer, payload=payload):
                self._got(peer, payload)
            case Fan(peers=peers, payload=payload, skip=skip):
                for peer in peers:
                    if peer is not skip:
                        self._got(peer, payload)
            case VoiceFan(peers=peers, frame=frame):
                for peer in peers:
                    peer.voice.append(frame)
            case Shut(peer=peer, code=code, reason=reason):
                if peer.closed is None:
                    peer.closed = (code, reason)
                    host = self.hosts.get(name)
                    if host is not None and peer.link is not None:  # the transport goes
                        self.apply(name, host.lost(peer.link))
            case Post(node=node, message=message):
                self.store.send_node(node, message.pack())
            case PostAll(message=message):
                self.store.send_all(message.pack())
            case Run(steps=steps):
                self._drive(name, steps)
            case Log(text=text):
                self.logs.append((name, text))
            case Record(incident=incident):
                self.records.append(dict(incident))
            case SignedIn(event=event):
                self.signed_in.append((name, dict(event)))
            case Audit():
                pass
            case Watch():
                self.watched.append(name)
            case Synced(token=token):
                waiting = self.syncing.pop(token, None)
                if waiting is not None:
                    self._drive(name, waiting)
            case _:
                raise AssertionError(f"unknown effect {effect!r}")

    def _got(self, peer: Client, payload: bytes) -> None:
        message = json.loads(payload)
        peer.got.append(message)
        self.timeline.append(("to", str(message.get("type"))))

    def _drive(self, name: str, steps: Procedure, answer: Any = None) -> None:
        while True:
            try:
                step = steps.send(answer)
            except StopIteration:
                return
            if isinstance(step, Call):
                if self.store.paused and step.method == "save_room":
                    self.parked.append((name, steps, step))
                    return
                answer = self._call(step)
            elif isinstance(step, Sync):  # through the bus, behind what is on it for us
                self.syncing[step.token] = steps
                self.store.send_node(name, relay.Sync(step.token).pack())
                return
            elif isinstance(step, Share):
                ok = name not in self.share_fails
                if ok:
                    self.shared.append((name, step.key, dict(step.payload)))
                answer = ok
            else:
                self.apply(name, step)
                answer = None

    def _call(self, step: Call) -> Any:
        if self.store.away:
            return Unreachable("away")
        coroutine = getattr(self.store, step.method)(*step.args)
        try:
            coroutine.send(None)
        except StopIteration as done:
            if step.method == "save_room":
                room, data = step.args
                self.store.saves.append((room, json.loads(data)))
                self.timeline.append(("save", room))
            return done.value
        raise AssertionError("the memory broker waited")

    def resume_store(self) -> None:
        """The paused store answers the saves that waited."""
        self.store.paused = False
        parked, self.parked = self.parked, []
        for name, steps, step in parked:
            if name in self.hosts:
                self._drive(name, steps, self._call(step))
        self.flush()

    def ship_incidents(self, upto: int | None = None) -> None:
        """The incident changes recorded so far (or the first `upto`) into the shared
        incident log, as each node's log shipper does from its journal."""
        for wire in self.records[:upto]:
            record = {"ts": int(self.clock.seconds() * 1000), "incident": wire}
            self._call(Call("append", ("incidents", json.dumps(record).encode())))

    def saved(self, room: str = "circle") -> dict[str, Any] | None:
        data = self._call(Call("load_room", (room,)))
        return None if data is None or isinstance(data, Unreachable) else dict(json.loads(data))
