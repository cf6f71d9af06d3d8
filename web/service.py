"""The service tree `hearth serve` runs: listeners on endpoint strings, and the room tick."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, FirstError
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from hearth.moderation.audit import AuditLog
from hearth.moderation.crisis_config import load_crisis
from hearth.moderation.journal import Journal
from hearth.moderation.wiring import moderated_venue
from hearth.spaces.broker import Broker, MemoryBroker
from hearth.spaces.config import HearthConfig
from hearth.web.ack_link import AckLink
from hearth.web.alerts import Alerts
from hearth.web.crisis_data import CrisisData
from hearth.web.datadir import load_secrets
from hearth.web.lifecycle import FLUSH_TIMEOUT, Lifecycle
from hearth.web.metrics import Metrics, MetricsResource
from hearth.web.node import Node
from hearth.web.reload import ReloadableTLS, Reloader, listen_endpoint
from hearth.web.retention import Retention, RetentionService
from hearth.web.shared_logs import LogShipper
from hearth.web.site import Readiness, build_site
from hearth.web.webtransport import DatagramCollector, WebTransportServer, WebTransportService
from hearth.web.ws import bind_node, prepare_for, websocket_factory


class Listener(Service):
    """Listens on one endpoint string while running; remembers the port it got."""

    log = Logger()

    def __init__(self, reactor: Any, description: str, factory: Any) -> None:
        self.reactor, self.description, self.factory = reactor, description, factory
        self.port: Any = None
        self.listening: Deferred[Any] = Deferred()
        self.tls: ReloadableTLS | None = None  # an ssl: listener's certificate (SIGHUP swaps it)

    def startService(self) -> None:
        super().startService()
        endpoint, self.tls = listen_endpoint(self.reactor, self.description)
        d = endpoint.listen(self.factory)

        def up(port: Any) -> Any:
            self.port = port
            self.listening.callback(port)
            return port

        def failed(failure: Any) -> None:  # a port in use, a refused address: no traceback
            self.log.error("cannot listen on {endpoint}: {why}", endpoint=self.description,
                           why=failure.getErrorMessage())
            self.listening.errback(failure)

        d.addCallbacks(up, failed)

    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            return self.port.stopListening()
        return None


@dataclass
class Hearth:
    service: MultiService
    node: Node
    listeners: list[Listener]
    alerts: Alerts
    metrics: Metrics | None = None
    retention: Retention | None = None
    webtransport: WebTransportService | None = None  # voice over UDP, when it is on
    reloader: Reloader | None = None  # what SIGHUP reloads (web/reload.py)
    readiness: Readiness | None = None  # what /readyz answers from (web/site.py)

    # when_listening's outcome: [the listeners' ports, or the first Failure] once known.
    _started: Deferred[Any] | None = field(default=None, init=False, repr=False)
    _outcome: list[Any] = field(default_factory=list, init=False, repr=False)
    _waiting: list[Deferred[Any]] = field(default_factory=list, init=False, repr=False)

    def when_listening(self) -> Deferred[Any]:
        """A new Deferred for each caller: fires once every listener listens, or fails with
        the first that cannot (a FirstError; `why_not_listening` names it). Each caller gets
        the outcome itself: waiting on the listeners' own Deferreds, the first caller to
        handle a failure turned it into a success for the next, and `hearth serve` on a
        port in use ran on, listening nowhere."""
        if self._started is None:
            waits = [lst.listening for lst in self.listeners]
            if self.webtransport is not None:
                waits.append(self.webtransport.listening)
            self._started = DeferredList(waits, fireOnOneErrback=True, consumeErrors=True)
            self._started.addBoth(self._settle)
        waiter: Deferred[Any] = Deferred()
        if self._outcome:
            self._fire(waiter)
        else:
            self._waiting.append(waiter)
        return waiter

    def why_not_listening(self, failure: Failure) -> str:
        """'<endpoint>: <reason>' for when_listening's failure."""
        value = failure.value
        if not isinstance(value, FirstError):
            return failure.getErrorMessage()
        names = [lst.description for lst in self.listeners] + ["webtransport (UDP)"]
        return f"{names[value.index]}: {value.subFailure.getErrorMessage()}"

    def _settle(self, result: Any) -> None:
        self._outcome.append(result)
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            self._fire(waiter)

    def _fire(self, waiter: Deferred[Any]) -> None:
        result = self._outcome[0]
        if isinstance(result, Failure):
            waiter.errback(result)
        else:
            waiter.callback(result)

    def reload(self) -> list[str]:
        """SIGHUP: the TLS certificates and crisis data again (web/reload.py)."""
        if self.reloader is None:
            return []
        self.reloader.tls = [(lst.description, lst.tls) for lst in self.listeners
                             if lst.tls is not None]
        return self.reloader.reload()


def make_hearth(config: HearthConfig, reactor: Any, listen: list[str] | None = None,
                broker: Broker | None = None, node_id: str | None = None,
                persist_rooms: bool = False, webtransport: bool | None = None) -> Hearth:
    """One node. Without a broker: the embedded default (memory, this process only).

    `persist_rooms` (what `hearth serve` does): a graceful stop saves the rooms to
    data_dir/rooms/ and the next start restores them (web/lifecycle.py).
    `webtransport`: voice over UDP on (True: on webtransport.port, any free port if 0) or
    off; None: on when webtransport.port is set."""
    broker = broker or MemoryBroker(reactor.seconds)
    node_id = node_id or secrets.token_hex(4)
    shipper = LogShipper(broker, node_id)
    keys = load_secrets(Path(config.server.data_dir))
    crisis = load_crisis(Path(config.crisis.directory), with_models=config.crisis.detector_model)
    venue = moderated_venue(config, franking_key=keys.franking,
                            escalation=crisis.escalation, public_url=config.crisis.public_url,
                            ticket_key=hmac.new(keys.cookie, b"hearth-role-ticket-key",
                                                hashlib.sha256).digest())
    factory = websocket_factory(config)
    data_dir = Path(config.server.data_dir)
    audit = AuditLog(data_dir / "audit.jsonl", on_record=partial(shipper.ship, "audit"))
    ack_key = hmac.new(keys.cookie, b"hearth-incident-ack-key", hashlib.sha256).digest()
    alerts = Alerts(config, reactor, data_dir, ack_key, config.crisis.public_url,
                    broker=broker, node_id=node_id, shared_logs=shipper)
    node = Node(venue, broker, prepare_for(factory), reactor.seconds, audit=audit,
                address_seed=keys.address_seed, alerts=alerts, node_id=node_id,
                shared_logs=shipper)
    alerts.on_failing = node.delivery_failing
    udp = WebTransportServer(config, node) if (
        bool(config.webtransport.port) if webtransport is None else webtransport) else None
    bind_node(factory, config, node, udp)
    readiness = Readiness(node, alerts, config.crisis.ready_pending_limit)
    site = build_site(config, node, WebSocketResource(factory), broker.name, secrets=keys,
                      readiness=readiness)
    if udp is not None:
        site.voice_src = udp.connect_src  # the page may open its voice session (CSP)
    site.resource.putChild(b"incidents", AckLink(node, ack_key))
    site.resource.putChild(b"crisis", CrisisData(crisis))
    metrics = Metrics(node, alerts)
    if config.metrics.enabled:
        site.resource.putChild(b"metrics", MetricsResource(metrics, config.metrics))
    if udp is not None:
        metrics.registry.register(DatagramCollector(udp))
    top = MultiService()
    lifecycle = Lifecycle(node, reactor, data_dir if persist_rooms else None,
                          readiness=readiness)
    NodeService(node, reactor, lifecycle, shipper, alerts.incidents).setServiceParent(top)
    AlertsService(alerts).setServiceParent(top)
    retention = Retention(config, reactor.seconds, audit, alerts.incidents, venue, alerts,
                          broker)
    RetentionService(retention, reactor).setServiceParent(top)
    listeners = []
    for description in listen or list(config.server.listen):
        listener = Listener(reactor, description, site)
        listener.setServiceParent(top)
        listeners.append(listener)
    tick = TimerService(1.0 / config.movement.tick_hz, node.tick)
    tick.clock = reactor
    tick.setServiceParent(top)
    voice_udp = None
    if udp is not None:
        voice_udp = WebTransportService(udp, reactor)
        voice_udp.setServiceParent(top)
    hearth = Hearth(top, node, listeners, alerts, metrics, retention, voice_udp,
                    reloader=Reloader(reactor, site.resource, Path(config.crisis.directory),
                                      config.crisis.detector_model),
                    readiness=readiness)
    if not config.crisis.public_url:  # links in alerts point at the first listener
        def first_url(_: Any) -> None:
            url = listener_url(listeners[0].port).rstrip("/")
            alerts.public_url = venue.crisis.public_url = url
        # Not listening: `hearth serve` (or the test) says why; nothing to point links at.
        hearth.when_listening().addCallbacks(first_url, lambda _: None)
    return hearth


class NodeService(Service):
    """Starts the broker, joins the node to it, catches up, and runs the node's housekeeping.

    With a Lifecycle (web/lifecycle.py): rooms saved by the last graceful stop come
    back at start, and a stop tells every client to reconnect and saves the rooms.
    """

    log = Logger(namespace="hearth.node")

    def __init__(self, node: Node, reactor: Any, lifecycle: Lifecycle | None = None,
                 shipper: LogShipper | None = None, incidents: Journal | None = None) -> None:
        self.node, self.reactor, self.lifecycle, self.shipper = node, reactor, lifecycle, shipper
        self.incidents = incidents  # this node's incident log
        self.loop = LoopingCall(self._housekeeping)
        self.loop.clock = reactor

    def startService(self) -> None:
        super().startService()
        self.node.start()
        d = Deferred.fromCoroutine(self.node.broker.start())
        d.addCallback(lambda _: self._catch_up())
        if self.lifecycle is not None:
            lifecycle = self.lifecycle

            def restore(_: Any) -> Deferred[Any]:
                restoring = Deferred.fromCoroutine(lifecycle.restore())
                restoring.addErrback(lambda f: self.log.failure("saved rooms not restored", f))
                return restoring
            d.addCallback(restore)
        d.addCallback(lambda _: self.loop.start(1.0, now=True))
        d.addErrback(lambda f: self.log.failure("the broker did not start", f))

    def _catch_up(self) -> None:
        """Incidents that must run on after a crash (this node's own incident log), and
        which incidents and sign-ins other nodes have (the shared logs): spaces/host.py."""
        self.node.catch_up(self.incidents.records() if self.incidents is not None else ())

    async def _housekeeping_once(self) -> None:
        self.node.housekeeping()
        self.node.cut_readers()
        if self.shipper is not None:
            await self.shipper.flush()

    def _housekeeping(self) -> Deferred[None]:
        d = Deferred.fromCoroutine(self._housekeeping_once())
        d.addErrback(lambda f: self.log.failure("node housekeeping failed", f))
        return d

    def stopService(self) -> Any:
        super().stopService()
        if self.loop.running:
            self.loop.stop()
        if self.lifecycle is None:
            self.node.stop()
            return Deferred.fromCoroutine(self.node.broker.stop())
        d = Deferred.fromCoroutine(self.lifecycle.shutdown())
        d.addErrback(lambda f: self.log.failure("the graceful stop failed", f))

        def stop_node(_: Any) -> Deferred[None]:
            self.node.stop()
            return Deferred.fromCoroutine(self.node.broker.stop())
        d.addCallback(stop_node)
        return d


class AlertsService(Service):
    def __init__(self, alerts: Alerts) -> None:
        self.alerts = alerts

    def startService(self) -> None:
        super().startService()
        self.alerts.start()

    def stopService(self) -> Any:
        """Pending crisis alerts get FLUSH_TIMEOUT seconds to go out before the loop stops."""
        super().stopService()
        d = self.alerts.flush(FLUSH_TIMEOUT)
        d.addBoth(lambda _: self.alerts.stop())
        return d


def listener_url(port: Any) -> str:
    host = port.getHost()
    from twisted.protocols.tls import TLSMemoryBIOFactory
    tls = isinstance(getattr(port, "factory", None), TLSMemoryBIOFactory)  # an ssl: endpoint
    scheme = "https" if tls or "TLS" in type(port).__name__ else "http"
    address = host.host if ":" not in host.host else f"[{host.host}]"
    if address in ("0.0.0.0", "::", "[::]"):
        address = "127.0.0.1"
    return f"{scheme}://{address}:{host.port}/"
