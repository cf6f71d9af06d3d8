"""The service tree `hearth serve` runs: listeners on endpoint strings, and the room tick."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from moderation.audit import AuditLog
from spaces.broker import MemoryBroker
from spaces.config import HearthConfig
from spaces.venue import Venue
from web.datadir import load_secrets
from web.node import Node
from web.site import build_site
from web.ws import bind_node, prepare_for, websocket_factory


class Listener(Service):
    """Listens on one endpoint string while running; remembers the port it got."""

    log = Logger()

    def __init__(self, reactor: Any, description: str, factory: Any) -> None:
        self.reactor, self.description, self.factory = reactor, description, factory
        self.port: Any = None
        self.listening: Deferred[Any] = Deferred()

    def startService(self) -> None:
        super().startService()
        d = serverFromString(self.reactor, self.description).listen(self.factory)

        def up(port: Any) -> Any:
            self.port = port
            self.listening.callback(port)
            return port

        def failed(failure: Any) -> None:
            self.log.failure("cannot listen on {endpoint}", failure, endpoint=self.description)
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

    def when_listening(self) -> Deferred[Any]:
        return DeferredList([lst.listening for lst in self.listeners], fireOnOneErrback=True,
                            consumeErrors=True)


def make_hearth(config: HearthConfig, reactor: Any, listen: list[str] | None = None) -> Hearth:
    broker = MemoryBroker()
    keys = load_secrets(Path(config.server.data_dir))
    venue = Venue(config, franking_key=keys.franking)
    factory = websocket_factory(config)
    audit = AuditLog(Path(config.server.data_dir) / "audit.jsonl")
    node = Node(venue, broker, prepare_for(factory), reactor.seconds, audit=audit,
                address_seed=keys.address_seed)
    bind_node(factory, config, node)
    site = build_site(config, node, WebSocketResource(factory), "memory")
    top = MultiService()
    listeners = []
    for description in listen or list(config.server.listen):
        listener = Listener(reactor, description, site)
        listener.setServiceParent(top)
        listeners.append(listener)
    tick = TimerService(1.0 / config.movement.tick_hz, node.tick)
    tick.clock = reactor
    tick.setServiceParent(top)
    return Hearth(top, node, listeners)
