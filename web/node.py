"""This process's side of the rooms: the routing host's effects (spaces/host.py, which
decides everything) become bytes on client connections, messages to other nodes and broker
calls; its procedures (generators yielding a broker call or an alert to share) are run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger, LogLevel

from hearth.spaces import relay
from hearth.spaces.addresses import AddressBook
from hearth.spaces.broker import Broker, Subscription, Unreachable
from hearth.spaces.effects import Audit, Effect, Record
from hearth.spaces.host import (
    SYNC_WITHIN,
    AlertSink,
    AuditSink,
    Call,
    Fan,
    Link,
    Log,
    NodeEffect,
    Post,
    PostAll,
    Procedure,
    RemoteLink,
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
from hearth.spaces.venue import Venue
from hearth.web.proxy import AddressCap
from hearth.web.shared_logs import LogShipper
from hearth.web.wsfast import call_soon

__all__ = ["Link", "Node"]

# Seconds of work a procedure does in one go before it lets the reactor read what has
# arrived. An embedded broker answers without waiting, so a housekeeping pass over every
# room this node runs (renewals, saves: ~10 ms for 50 busy rooms) would otherwise hold
# every connection's frames for its whole length once a second (docs/performance.md).
PROCEDURE_SLICE = 0.0005


def _applies(name: str) -> Any:
    """A node method that applies what the host's method `name` returns."""
    def method(self: Node, *args: Any) -> None:
        self._apply(getattr(self.host, name)(*args))
    method.__name__ = method.__qualname__ = name
    return method


class Node:
    log = Logger(namespace="hearth.node")

    def __init__(self, venue: Venue, broker: Broker, prepare: Callable[[bytes, bool], Any],
                 clock: Callable[[], float], audit: AuditSink | None = None,
                 address_seed: bytes = b"", alerts: AlertSink | None = None,
                 node_id: str = "solo", shared_logs: LogShipper | None = None) -> None:
        self.host = host = RoutingHost(venue, node_id, clock,
                                       addresses=AddressBook(address_seed),
                                       directory_in_process=broker.directory_in_process)
        self.venue, self.broker, self.prepare = venue, broker, prepare
        self.audit, self.alerts, self.shared_logs = audit, alerts, shared_logs
        # facilitator sign-in sessions shared between nodes (moderation/login.py SessionTable)
        self.on_session: Callable[[dict[str, Any]], None] | None = None
        self.shared_records_refused = 0  # records in the broker not sealed with our key
        # Run at the end of each housekeeping (web/auth.py: accounts shared and watched).
        self.watchers: list[Callable[[], Awaitable[None]]] = []
        self.slow_listener_bytes = venue.config.voice.slow_listener_bytes
        self.max_unsent_bytes = venue.config.limits.max_unsent_bytes
        self.cut_backed_up = 0  # connections cut for holding too much unread (cut_readers)
        self.voice_forwarded = 0
        self.voice_dropped_slow = 0
        self._subscriptions: list[Subscription] = []
        self._applying = False
        self._later: list[NodeEffect] = []
        self._syncs: dict[str, Deferred[None]] = {}  # procedures waiting for their Sync
        # a WebSocket counted against its address's cap (keyed hashes only, while open)
        self._per_address = cap = AddressCap(address_seed,
                                             venue.config.limits.connections_per_address, clock)
        self.admit_address, self.release_address = cap.admit, cap.release
        self.open: Callable[..., Link] = host.open  # asked of the host (changes nothing else)

    # how a paused procedure resumes: after the reactor's ready work (tests step it by hand)
    soon: Callable[[Callable[[], None]], None] = staticmethod(call_soon)

    id = property(lambda self: self.host.id)
    owned = property(lambda self: self.host.owned)
    member_count = property(lambda self: self.host.member_count)
    link_count = property(lambda self: self.host.link_count)
    effects_failed = property(lambda self: self.host.effects_failed)

    clock = property(lambda self: self.host.clock,  # (bench.micro steps time)
                     lambda self, clock: setattr(self.host, "clock", clock))

    def start(self) -> None:
        self._subscriptions = [self.broker.subscribe_node(self.id, self._from_bus),
                               self.broker.subscribe_all(self._from_bus)]
        self.broker.watch(self._unheard, self._undelivered)

    def stop(self) -> None:
        for subscription in self._subscriptions:
            subscription.cancel()
        self._subscriptions = []

    def received(self, link: Link, frame: bytes, is_binary: bool) -> None:  # every frame
        self._apply(self.host.received(link, frame, is_binary))

    def tick(self) -> None:
        self._apply(self.host.tick(self.broker.connected))

    # What the rest of the process tells the host; the node applies what it answers.
    lost = _applies("lost")
    housekeeping = _applies("housekeeping")
    catch_up = _applies("start")  # at start: this node's incident log (and the shared logs)
    restored = _applies("restored")  # a room saved by the last graceful stop (lifecycle.py)
    going_away = _applies("going_away")
    move_remote_members = _applies("move_remote_members")
    delivery_failing = _applies("delivery_failing")
    signin_ended = _applies("signin_ended")  # roles withdrawn where the room is run
    account_changed = _applies("account_changed")

    def cut_readers(self) -> None:
        """Cut every connection whose client has left more than limits.max_unsent_bytes
        unread (once a second, from housekeeping). Chat is never dropped for a slow reader,
        so without this a client that stops reading in a busy room (or on purpose) holds
        the server's memory until the ping timeout. The close (1013) waits behind what it
        did not read, so autobahn drops the connection when the close handshake times out;
        the member is away then, and may resume."""
        limit = self.max_unsent_bytes
        for link in list(self.host.links.values()):
            if not link.closed and link.peer.pending_bytes() > limit:
                self.cut_backed_up += 1
                self.log.info("a connection was cut: its client left {unread} bytes unread",
                              unread=link.peer.pending_bytes())
                link.peer.close(1013, "too far behind: reconnect")

    def apply(self, peer: Link | RemoteLink | None, effects: Iterable[Effect]) -> None:
        """The core's effects from outside a connection (an acknowledgement link, a drill)."""
        self._apply(self.host.route(peer, effects))

    def share_session(self, event: dict[str, Any]) -> None:
        self._apply(self.host.share_session(event))
        if self.shared_logs is not None:
            self.shared_logs.ship("sessions", event)

    def _unheard(self, node: str) -> None:
        self._apply([*self.host.bus(self.broker.connected), *self.host.unheard(node)])

    def _undelivered(self, node: str, data: bytes) -> None:
        self._apply([*self.host.bus(self.broker.connected), *self.host.undelivered(node, data)])

    def _from_bus(self, data: bytes) -> None:
        try:
            self._apply(self.host.relayed(data))
        except Exception:  # one bad message must not stop the inbox
            self.log.failure("a relayed message could not be handled")

    # --- applying effects ------------------------------------------------------------------------

    def _apply(self, effects: list[NodeEffect]) -> None:
        """In order; effects that a procedure yields meanwhile come after these."""
        if self._applying:
            self._later += effects
            return
        self._applying = True
        try:
            self._do(effects)
            while self._later:
                more, self._later = self._later, []
                self._do(more)
        finally:
            self._applying = False

    def _do(self, effects: list[NodeEffect]) -> None:
        for effect in effects:
            kind = type(effect)
            try:
                if kind is Fan:  # the hot path first: a room message, framed once
                    prepared = self.prepare(effect.payload, False)  # type: ignore[union-attr]
                    skip = effect.skip  # type: ignore[union-attr]
                    for peer in effect.peers:  # type: ignore[union-attr]
                        if peer is not skip:
                            peer.send_prepared(prepared)
                elif kind is Write:
                    effect.peer.send_bytes(effect.payload)  # type: ignore[union-attr]
                elif kind is VoiceFan:
                    self._voice(effect.peers, effect.frame)  # type: ignore[union-attr]
                elif kind is Post:
                    self.broker.send_node(effect.node, effect.message.pack())  # type: ignore[union-attr]
                else:
                    self._do_one(effect)
            except Exception as failure:  # one effect only: the rest still apply
                self._do_one(self.host.effect_failed(effect, failure))

    def _do_one(self, effect: NodeEffect) -> None:
        match effect:
            case PostAll(message=message):
                self.broker.send_all(message.pack())
            case Shut(peer=peer, code=code, reason=reason):
                peer.close(code, reason)
            case Run(what=what, steps=steps):
                d = Deferred.fromCoroutine(self._drive(steps))
                d.addErrback(lambda f: self.log.failure("{what} failed", f, what=what))
            case Audit(actor=actor, action=action, target=target, room=room, outcome=outcome):
                if self.audit is not None:
                    self.audit.record(actor, action, target, room, outcome, self.clock())
            case Record(incident=incident):
                if self.alerts is not None:
                    self.alerts.record(dict(incident))
            case SignedIn(event=event):
                if self.on_session is not None:
                    self.on_session(dict(event))
            case Watch():
                Deferred.fromCoroutine(self.run_watchers())  # each watcher's failure is logged
            case Synced(token=token):
                waiting = self._syncs.pop(token, None)
                if waiting is not None and not waiting.called:
                    waiting.callback(None)
            case Log(level=level, text=text, fields=fields):
                self.log.emit(LogLevel.levelWithName(level), text, **fields)

    async def run_watchers(self) -> None:
        """Each watcher once (web/auth.py: shared accounts); one failing stops no other."""
        for watcher in self.watchers:
            try:
                await watcher()
            except Exception:
                self.log.failure("a housekeeping watcher failed")

    def _voice(self, peers: list[Any], frame: bytes) -> None:
        """Framed once; as a datagram to a listener with a WebTransport session bound
        (web/webtransport.py); skipped for a listener whose socket is backed up."""
        prepared = None
        limit, sent = self.slow_listener_bytes, 0
        for peer in peers:
            channel = getattr(peer, "voice_channel", None)
            if channel is not None and channel.send(frame):
                sent += 1
                continue
            if peer.pending_bytes() > limit:
                self.voice_dropped_slow += 1
                continue
            if prepared is None:
                prepared = self.prepare(frame, True)
            peer.send_prepared(prepared)
            sent += 1
        self.voice_forwarded += sent

    def _pause(self) -> Deferred[None]:
        """Fires once the reactor has done what was ready before it (reads included)."""
        resumed: Deferred[None] = Deferred()
        self.soon(lambda: resumed.callback(None))
        return resumed

    async def _synced(self, token: str) -> None:
        """Until this node's own relay.Sync came back through its inbox (or SYNC_WITHIN)."""
        from twisted.internet import reactor
        waiting: Deferred[None] = Deferred()
        self._syncs[token] = waiting
        waiting.addTimeout(SYNC_WITHIN, reactor, onTimeoutCancel=lambda *_: None)
        self.broker.send_node(self.id, relay.Sync(token).pack())
        try:
            await waiting
        finally:
            self._syncs.pop(token, None)

    async def _drive(self, steps: Procedure) -> None:
        """Run one procedure: each broker call's answer (or Unreachable) goes back in. After
        PROCEDURE_SLICE of work without waiting, the reactor's other work goes first."""
        answer: Any = None
        clock = self.clock
        resumed = clock()
        try:
            while True:
                if clock() - resumed >= PROCEDURE_SLICE:
                    await self._pause()
                    resumed = clock()
                try:
                    step = steps.send(answer)
                except StopIteration:
                    return
                if isinstance(step, Call):
                    try:
                        answer = await getattr(self.broker, step.method)(*step.args)
                    except Unreachable as err:
                        answer = err
                    except Exception as err:
                        self.log.failure("broker call {method} failed", method=step.method)
                        answer = Unreachable(type(err).__name__)
                elif isinstance(step, Sync):
                    answer = await self._synced(step.token)
                elif isinstance(step, Share):
                    answer = True if self.alerts is None else await self.alerts.dispatch(
                        step.channel, dict(step.payload), step.key)
                else:
                    self._apply(step)
                    answer = None
        finally:
            steps.close()
