"""Prometheus metrics at /metrics (prometheus-client's text format).

Almost everything is read from the live objects when Prometheus scrapes
(`HearthCollector`), so the relay's hot path pays nothing for it: the node's
links and voice counters, the rooms, the venue's counts by message type and
error code (spaces/stats.py), the incident desk, the outbox, the broker. Only
crisis alert deliveries are observed as they happen (a histogram and a
failure counter, fed by web/alerts.py's `watchers`).

No label ever carries a pseudonym, a member id, an account name or an address:
labels are room ids (config), message types, error codes, incident states,
alert channels (config names) and the broker kind. tests/live/test_ops_metrics.py
checks that on a live scrape.

Who may scrape: `[metrics] token` set — a request with `Authorization: Bearer
<token>`; no token — a loopback peer whose request carries no forwarding
header (a request that came through a reverse proxy on the same machine is
refused, since anyone on the internet could have sent it).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web import resource, server

from hearth.spaces.config import MetricsConfig
from hearth.spaces.protocol import SUBPROTOCOL
from hearth.web.node import Node
from hearth.web.proxy import is_loopback

INCIDENT_STATES = ("open", "acknowledged", "engaged", "external_help_requested",
                   "awaiting_confirmation", "lost_contact", "resolved")
FORWARDING_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


class HearthCollector(Collector):
    """Reads one node's live objects at scrape time."""

    def __init__(self, node: Node, alerts: Any = None) -> None:
        self.node, self.alerts = node, alerts

    def collect(self) -> Iterator[Metric]:
        node, venue = self.node, self.node.venue
        broker = node.broker
        info = GaugeMetricFamily("hearth_info", "This node: protocol and broker kind.",
                                 labels=["protocol", "broker"])
        info.add_metric([SUBPROTOCOL, broker.name], 1)
        yield info
        yield GaugeMetricFamily("hearth_connections",
                                "WebSocket connections open at this node.",
                                value=node.link_count)
        yield GaugeMetricFamily("hearth_rooms_owned", "Rooms this node runs now.",
                                value=len(node.owned))
        members = GaugeMetricFamily(
            "hearth_room_members", "Members of each room run by this node: present, away "
            "(inside the resume grace period) or waiting in the lobby.", labels=["room", "state"])
        for room_id, room in venue.rooms.items():
            owned = room_id in node.owned
            away = sum(1 for m in room.members.values() if m.away_since is not None) if owned else 0
            present = len(room.members) - away if owned else 0
            members.add_metric([room_id, "present"], present)
            members.add_metric([room_id, "away"], away)
            members.add_metric([room_id, "waiting"], len(room.waiting) if owned else 0)
        yield members

        stats = venue.stats
        received = CounterMetricFamily(
            "hearth_client_messages", "Well-formed client messages handled by this node's "
            "rooms, by type (an envelope is one chat message relayed).", labels=["type"])
        for kind, count in sorted(stats.received.items()):
            received.add_metric([kind], count)
        yield received
        refused = CounterMetricFamily(
            "hearth_refusals", "Error replies sent to clients, by code (rate_limited: at most "
            "one a second per connection; forbidden: a participant tried a facilitator action).",
            labels=["code"])
        for code, count in sorted(stats.refused.items()):
            refused.add_metric([code], count)
        yield refused
        yield CounterMetricFamily(
            "hearth_frames_dropped", "Client frames dropped for exceeding a connection's "
            "rate limit.", value=stats.frames_dropped)

        voice = CounterMetricFamily("hearth_voice_frames_forwarded",
                                    "Voice frames written to listeners at this node.",
                                    value=node.voice_forwarded)
        yield voice
        dropped = CounterMetricFamily("hearth_voice_frames_dropped",
                                      "Voice frames not forwarded, by reason.", labels=["reason"])
        dropped.add_metric(["slow_listener"], node.voice_dropped_slow)
        for reason in ("muted", "rate", "stick"):
            dropped.add_metric([reason], sum(getattr(r.voice, f"dropped_{reason}", 0)
                                             for r in venue.rooms.values()))
        yield dropped

        incidents = GaugeMetricFamily("hearth_incidents", "Crisis incidents known to this node, "
                                      "by state (resolved ones until retention).",
                                      labels=["state"])
        counts = dict.fromkeys(INCIDENT_STATES, 0)
        for incident in venue.crisis.desk.incidents.values():
            counts[incident.state] = counts.get(incident.state, 0) + 1
        for state, count in counts.items():
            incidents.add_metric([state], count)
        yield incidents
        if self.alerts is not None:
            yield GaugeMetricFamily("hearth_alerts_pending",
                                    "Crisis alerts in the outbox not yet delivered.",
                                    value=len(self.alerts.outbox.pending()))

        yield GaugeMetricFamily("hearth_broker_connected", "1 if the broker is reachable "
                                "(the in-memory broker always is).",
                                value=1 if getattr(broker, "connected", True) else 0)
        yield CounterMetricFamily("hearth_broker_dropped", "Messages between nodes dropped "
                                  "while the broker was away or backed up.",
                                  value=getattr(broker, "dropped", 0))
        yield CounterMetricFamily("hearth_shared_records_refused", "Sign-in events, "
                                  "failed-attempt counts and account changes read from the "
                                  "broker and refused: not sealed with this deployment's key.",
                                  value=node.shared_records_refused)


class Metrics:
    """One node's registry: the collector, alert deliveries, and the process's own figures."""

    def __init__(self, node: Node, alerts: Any = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(HearthCollector(node, alerts))
        ProcessCollector(registry=self.registry)  # CPU, memory, open files (Linux)
        self.delivery = Histogram(
            "hearth_alert_delivery_seconds", "Time from a delivery attempt to the receiver's "
            "2xx answer (or the accepted e-mail), by channel.", ["channel"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=self.registry)
        self.failures = Counter("hearth_alert_delivery_failures",
                                "Failed crisis alert delivery attempts, by channel.",
                                ["channel"], registry=self.registry)
        if alerts is not None:
            alerts.watchers.append(self.observe)

    def observe(self, channel: str, seconds: float | None) -> None:
        if seconds is None:
            self.failures.labels(channel).inc()
        else:
            self.delivery.labels(channel).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def scrape_allowed(request: server.Request, config: MetricsConfig) -> tuple[int, str]:
    """(200, "") if the request may scrape, else the status and a sentence why."""
    if config.token:
        header = request.getHeader(b"authorization") or b""
        if hmac.compare_digest(header, b"Bearer " + config.token.encode()):
            return 200, ""
        return 401, "metrics need Authorization: Bearer <token> ([metrics] token)"
    if any(request.requestHeaders.hasHeader(h) for h in FORWARDING_HEADERS):
        return 403, "metrics are served to loopback scrapers only, not through a proxy"
    peer = request.transport.getPeer() if request.transport is not None else None
    if not is_loopback(getattr(peer, "host", None)):
        return 403, "metrics are served to loopback scrapers only (or set [metrics] token)"
    return 200, ""


class MetricsResource(resource.Resource):
    isLeaf = True

    def __init__(self, metrics: Metrics, config: MetricsConfig) -> None:
        super().__init__()
        self.metrics, self.config = metrics, config

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"Cache-Control", b"no-store")
        status, why = scrape_allowed(request, self.config)
        if status != 200:
            request.setResponseCode(status)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            if status == 401:
                request.setHeader(b"WWW-Authenticate", b'Bearer realm="hearth-metrics"')
            return why.encode() + b"\n"
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        return self.metrics.render()
