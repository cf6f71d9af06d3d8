"""Getting crisis alerts out: the outbox's delivery loop, webhooks, PagerDuty, e-mail, the
incident log.

The core says *what* must go out (Dispatch effects); this shell journals it
first (moderation.outbox), then delivers: a JSON POST signed per the Standard
Webhooks spec (https://www.standardwebhooks.com: `webhook-id`,
`webhook-timestamp`, `webhook-signature`) for webhooks, a PagerDuty Events
API v2 event for PagerDuty services, SMTP over TLS (STARTTLS or implicit,
with optional authentication) for e-mail. A 2xx answer (or an accepted
message) marks it done; anything else is retried with exponential backoff,
in order per destination. When one alert keeps failing the admin is told.
Log lines name the destination and the incident id, never a person, a secret
or a password.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.mail.smtp import ESMTPSenderFactory
from twisted.web.client import Agent, FileBodyProducer
from twisted.web.http_headers import Headers

from hearth.moderation.journal import Journal
from hearth.moderation.outbox import Item, Outbox, OutboxJournal
from hearth.spaces.broker import Broker
from hearth.spaces.config import (
    EmailConfig,
    HearthConfig,
    PagerDutyConfig,
    WebhookConfig,
    webhook_key,
)
from hearth.web.shared_logs import LogShipper
from hearth.web.shared_outbox import SharedOutbox

DELIVERY_TIMEOUT = 10.0
ANSWER_BYTES = 65536  # of an on-call receiver's answer read, at most (only its code counts)
# PagerDuty's severities for Hearth's; a drill is "info" whatever it says.
PAGERDUTY_SEVERITY = {"high": "critical", "medium": "error", "low": "warning"}


class _Skimmer(Protocol):
    """Takes an answer's body up to `limit` bytes, then closes the connection; `done` fires
    when the body ended or the connection closed, whichever way."""

    def __init__(self, limit: int, done: defer.Deferred[None]) -> None:
        self.limit, self.done, self.seen = limit, done, 0

    def dataReceived(self, data: bytes) -> None:
        self.seen += len(data)
        if self.seen > self.limit and self.transport is not None:
            self.transport.stopProducing()

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.callback(None)


async def skim(response: Any, reactor: Any, limit: int = ANSWER_BYTES,
               timeout: float = DELIVERY_TIMEOUT) -> None:
    """Read and drop `response`'s body: at most `limit` bytes, for at most `timeout` seconds
    (then the connection is closed)."""
    skimmer: _Skimmer | None = None

    def stop(_: Any) -> None:
        if skimmer is not None and skimmer.transport is not None:
            skimmer.transport.stopProducing()

    done: defer.Deferred[None] = defer.Deferred(stop)
    skimmer = _Skimmer(limit, done)
    response.deliverBody(skimmer)
    done.addTimeout(timeout, reactor)
    with contextlib.suppress(defer.TimeoutError, defer.CancelledError):
        await done


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks: `v1,` + base64(HMAC-SHA256(key, "<msg_id>.<timestamp>.<body>"))."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def webhook_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[bytes, list[bytes]]:
    """What every webhook call carries: the Standard Webhooks headers, and the same id as
    `Idempotency-Key` (delivery is at least once: receivers de-duplicate on it)."""
    return {
        b"Content-Type": [b"application/json"],
        b"User-Agent": [b"Hearth"],
        b"webhook-id": [msg_id.encode()],
        b"webhook-timestamp": [str(timestamp).encode()],
        b"webhook-signature": [signature(key, msg_id, timestamp, body).encode()],
        b"Idempotency-Key": [msg_id.encode()],
    }


def pagerduty_event(service: PagerDutyConfig, payload: dict[str, Any],
                    public_url: str) -> dict[str, Any]:
    """A PagerDuty Events API v2 `trigger` for one alert: the same minimal content as a
    webhook (no pseudonym, no words), one PagerDuty alert per incident (`dedup_key`), and
    the console link (it needs a sign-in)."""
    incident = str(payload.get("incident"))
    test = bool(payload.get("test"))
    opened = payload.get("opened_at")
    summary = (f"{'[DRILL] ' if test else ''}Hearth crisis incident {incident}: "
               f"{payload.get('severity')} ({payload.get('trigger')}), {payload.get('state')}")
    event: dict[str, Any] = {
        "routing_key": service.routing_key,
        "event_action": "trigger",
        "dedup_key": f"hearth-incident-{incident}",
        "client": "Hearth",
        "payload": {
            "summary": summary[:1024],
            "source": urlsplit(public_url).hostname or "hearth",
            "severity": "info" if test else
            PAGERDUTY_SEVERITY.get(str(payload.get("severity")), "critical"),
            "component": "crisis",
            "group": "hearth",
            "class": str(payload.get("trigger")),
            "custom_details": {k: payload[k] for k in
                               ("event", "incident", "severity", "trigger", "state", "tier",
                                "test", "cause", "external_basis") if k in payload},
        },
    }
    if isinstance(opened, int):
        event["payload"]["timestamp"] = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(opened / 1000))
                                         + f".{opened % 1000:03d}Z")
    if payload.get("link"):
        event["links"] = [{"href": payload["link"], "text": "Open the incident in the Hearth "
                                                            "console (sign-in needed)"}]
    if public_url:
        event["client_url"] = public_url
    return event


def ack_token(key: bytes, incident: str) -> str:
    return hmac.new(key, b"hearth-incident-ack/" + incident.encode(), hashlib.sha256).hexdigest()


class Alerts:
    log = Logger(namespace="hearth.alerts")

    def __init__(self, config: HearthConfig, reactor: Any, data_dir: Path, ack_key: bytes,
                 public_url: str, broker: Broker | None = None, node_id: str = "solo",
                 shared_logs: LogShipper | None = None) -> None:
        self.config = config.crisis
        self.reactor = reactor
        self.ack_key = ack_key
        self.public_url = public_url.rstrip("/")
        self.journal = OutboxJournal(data_dir / "outbox.jsonl")
        self.outbox = Outbox(journal=self.journal, max_backoff=self.config.max_backoff_seconds,
                             alert_after=self.config.alert_admin_after)
        restored = self.outbox.restore(self.journal.records(), reactor.seconds())
        self.journal.compact(self.outbox.pending())
        if restored:
            self.log.warn("{count} crisis alerts were pending at start; delivering them",
                          count=restored)
        self.incidents = Journal(data_dir / "incidents.jsonl")
        self.shared_logs = shared_logs
        self.sharing = (SharedOutbox(self.outbox, broker, node_id, reactor.seconds)
                        if broker is not None else None)
        self.agent = Agent(reactor, connectTimeout=5)
        self.loop = LoopingCall(self.pump)
        self.loop.clock = reactor
        self.sync_loop = LoopingCall(self._sync)
        self.sync_loop.clock = reactor
        # (channel, incident, failed attempts, delivered): at an on-call alert's first failed
        # try, when it keeps failing, (0) when an on-call step has nowhere to go, and
        # (delivered True) when one that had failed gets through at last
        self.on_failing: Callable[[str, str, int, bool], None] | None = None
        self.on_delivered: Callable[[Item, float], None] | None = None
        # (channel, seconds to deliver, or None for a failed attempt): web/metrics.py counts them
        self.watchers: list[Callable[[str, float | None], None]] = []
        self._hooks = {f"webhook:{h.name}": h for h in self.config.webhooks}
        self._pagerduty = {f"pagerduty:{s.name}": s for s in self.config.pagerduty}

    def start(self) -> None:
        self.loop.start(0.2, now=True)
        if self.sharing is not None:
            self.sync_loop.start(1.0, now=True)

    def stop(self) -> None:
        for loop in (self.loop, self.sync_loop):
            if loop.running:
                loop.stop()

    def _sync(self) -> defer.Deferred[None] | None:
        """Share the outbox with the other nodes (web/shared_outbox.py), then deliver
        whatever was adopted."""
        if self.sharing is None:
            return None
        d = defer.ensureDeferred(self.sharing.sync())
        d.addCallback(lambda _: self.pump())
        d.addErrback(lambda f: self.log.failure("sharing the crisis outbox failed", f))
        return d

    def flush(self, timeout: float) -> defer.Deferred[bool]:
        """Shutting down: one more try now for every pending alert, then wait (at most
        `timeout` seconds) until none is pending. True if the outbox emptied; whatever is
        left stays in the journal and goes out after the restart (at least once)."""
        now = self.reactor.seconds()
        for item in self.outbox.pending():
            if not item.in_flight:
                item.next_at = now
        self.pump()
        deadline = now + timeout
        done: defer.Deferred[bool] = defer.Deferred()

        def check() -> None:
            if not self.outbox.pending():
                done.callback(True)
            elif self.reactor.seconds() >= deadline:
                self.log.warn("{count} crisis alerts still pending at shutdown; they are kept "
                              "and delivered after the restart", count=len(self.outbox.pending()))
                done.callback(False)
            else:
                self.reactor.callLater(0.05, check)
        check()
        return done

    # --- from the core ---------------------------------------------------------------

    def dispatch(self, channel: str, payload: dict[str, Any],
                 key: str | None = None) -> defer.Deferred[bool]:
        """Journal one alert for every destination of `channel`, then try at once. `key`: the
        alert's own id (the host keeps it in the room's saved state, so a node that takes the
        room over sends it with the same Idempotency-Key); each destination's item id is
        `<key>.<destination>`. Fires True once every copy is in the shared outbox (False if
        a copy could not be made now: it is retried every second)."""
        now = self.reactor.seconds()
        kind, _, tier = channel.partition(":")
        if kind == "webhook":  # the on-call tiers: every webhook and PagerDuty service of it
            targets = [f"webhook:{h.name}" for h in self.config.webhooks if h.tier == tier]
            targets += [f"pagerduty:{s.name}" for s in self.config.pagerduty if s.tier == tier]
        elif kind == "email" and self.config.email is not None:
            email = self.config.email
            wanted = email.admin if tier == "admin" else email.on_call
            targets = [f"email:{tier}"] if wanted else []
        else:
            targets = []
        if not targets and tier == "admin":
            self.log.critical("crisis admin alert for incident {incident} has nowhere to go: "
                              "configure [crisis.email] admin", incident=payload.get("incident"))
        elif kind == "webhook" and not targets and not self._mails_on_call():
            # an on-call step with no destination at all: paged nobody, and said so
            self.log.critical("crisis on-call alert ({tier}) for incident {incident} has "
                              "nowhere to go: configure [[crisis.webhooks]] or [crisis.email]",
                              tier=tier, incident=payload.get("incident"))
            if self.on_failing is not None and "incident" in payload:
                self.on_failing(channel, str(payload["incident"]), 0, False)
        copies: list[defer.Deferred[bool]] = []
        for target in targets:
            body = dict(payload)
            if kind == "webhook" and "incident" in body:
                body["ack_url"] = (f"{self.public_url}/incidents/ack/{body['incident']}/"
                                   f"{ack_token(self.ack_key, str(body['incident']))}")
            item_id = f"{key}.{target}" if key is not None else secrets.token_hex(12)
            if item_id in self.outbox.items:  # raised again (a takeover): it is here already
                continue
            item = self.outbox.add(item_id, target, body, now)
            if self.sharing is not None:
                copy = defer.ensureDeferred(self.sharing.added(item))
                copy.addErrback(self._not_copied)
                copies.append(copy)
        self.pump()
        copied: defer.Deferred[bool] = defer.gatherResults(copies).addCallback(all)
        return copied

    @staticmethod
    def _on_call(item: Item) -> bool:
        """An alert for on-call (not the admin's e-mail): its failing is told to consoles."""
        return not item.channel.startswith("email:admin")

    def _mails_on_call(self) -> bool:
        return self.config.email is not None and bool(self.config.email.on_call)

    def _not_copied(self, failure: Any) -> bool:
        self.log.failure("copying a crisis alert failed", failure)
        return False

    def record(self, incident: dict[str, Any]) -> None:
        record = {"ts": int(self.reactor.seconds() * 1000), "incident": incident}
        self.incidents.append(record)
        if self.shared_logs is not None:
            self.shared_logs.ship("incidents", record)

    def _quietly(self, work: Any, what: str) -> None:
        d = defer.ensureDeferred(work)
        d.addErrback(lambda f: self.log.failure("{what} failed", f, what=what))

    # --- delivery ----------------------------------------------------------------------

    def pump(self) -> None:
        for item in self.outbox.due(self.reactor.seconds()):
            started = self.reactor.seconds()
            d = defer.ensureDeferred(self._deliver(item))
            d.addCallbacks(lambda _, item=item, started=started: self._done(item, started),
                           lambda failure, item=item: self._failed(item, failure))

    async def _deliver(self, item: Item) -> None:
        if item.channel.startswith("webhook:"):
            hook = self._hooks.get(item.channel)
            if hook is None:  # the config no longer has it: keep it, an operator must decide
                raise RuntimeError("webhook no longer configured")
            await self._post(hook, item)
        elif item.channel.startswith("pagerduty:"):
            service = self._pagerduty.get(item.channel)
            if service is None:
                raise RuntimeError("PagerDuty service no longer configured")
            event = pagerduty_event(service, item.payload, self.public_url)
            await self._send(service.url, json.dumps(event, separators=(",", ":")).encode(),
                             {b"Content-Type": [b"application/json"], b"User-Agent": [b"Hearth"]})
        elif item.channel.startswith("email:"):
            await self._mail(item)
        else:
            raise RuntimeError(f"unknown channel {item.channel}")

    async def _post(self, hook: WebhookConfig, item: Item) -> None:
        body = json.dumps(item.payload, separators=(",", ":")).encode()
        await self._send(hook.url, body, webhook_headers(webhook_key(hook.secret), item.id,
                                                         int(time.time()), body))

    async def _send(self, url: str, body: bytes, headers: dict[bytes, list[bytes]]) -> None:
        """POST `body`; done on a 2xx answer, an exception (so a retry) otherwise."""
        d = self.agent.request(b"POST", url.encode(), Headers(headers),
                               FileBodyProducer(BytesIO(body)))
        d.addTimeout(DELIVERY_TIMEOUT, self.reactor)
        response = await d
        # Only the code counts: the answer's body is read up to ANSWER_BYTES and for at most
        # DELIVERY_TIMEOUT more, then the connection is closed. Read whole, a receiver (or
        # whatever answers at its address) could hold a delivery for ever, or fill memory.
        await skim(response, self.reactor)
        if not 200 <= response.code < 300:
            raise RuntimeError(f"HTTP {response.code}")

    async def _mail(self, item: Item) -> None:
        from email.message import EmailMessage

        email = self.config.email
        if email is None:
            raise RuntimeError("e-mail no longer configured")
        to = list(email.admin if item.channel == "email:admin" else email.on_call)
        p = item.payload
        message = EmailMessage()
        message["From"] = email.sender
        message["To"] = ", ".join(to)
        message["Subject"] = (f"[Hearth{' DRILL' if p.get('test') else ''}] incident "
                              f"{p.get('incident')}: {p.get('severity')} ({p.get('event')})")
        message["Message-ID"] = f"<{item.id}@hearth>"
        message.set_content(
            f"Incident {p.get('incident')} needs attention.\n\nSeverity: {p.get('severity')}\n"
            f"Trigger: {p.get('trigger')}\nState: {p.get('state')}\n\n"
            f"Open the console to respond (login needed): {p.get('link')}\n")
        await send_mail(self.reactor, email, to, message.as_bytes())

    def _done(self, item: Item, started: float) -> None:
        self.outbox.delivered(item.id)
        if self.sharing is not None:
            self._quietly(self.sharing.delivered(item), "removing a delivered alert's copy")
        self.log.info("crisis alert delivered to {channel} for incident {incident}",
                      channel=item.channel, incident=item.payload.get("incident"))
        told = self._on_call(item) or item.attempts >= self.outbox.alert_after
        if self.on_failing is not None and told and item.attempts > 0 \
                and "incident" in item.payload:  # the consoles were told it was failing
            self.on_failing(item.channel, str(item.payload["incident"]), item.attempts, True)
        if self.on_delivered is not None:
            self.on_delivered(item, self.reactor.seconds() - started)
        for watch in self.watchers:
            watch(item.channel, self.reactor.seconds() - started)
        self.pump()

    def _failed(self, item: Item, failure: Any) -> None:
        alert_admin = self.outbox.failed(item.id, self.reactor.seconds())
        self.log.warn("crisis alert to {channel} for incident {incident} failed "
                      "(attempt {attempt}): {why}", channel=item.channel,
                      incident=item.payload.get("incident"), attempt=item.attempts,
                      why=type(failure.value).__name__)
        for watch in self.watchers:
            watch(item.channel, None)
        on_call = self._on_call(item)
        if self.on_failing is not None and (alert_admin or (on_call and item.attempts == 1)):
            self.on_failing(item.channel, str(item.payload.get("incident")), item.attempts, False)
        if alert_admin:
            self.log.critical("crisis alerts to {channel} keep failing", channel=item.channel)
            if on_call:
                self.dispatch("email:admin", {**item.payload, "event": "delivery_failing",
                                              "failing": item.channel})


def _trust_root(ca_file: str) -> Any:
    """The CAs an SMTP server's certificate must chain to: `ca_file`'s, or the system's."""
    from twisted.internet import ssl
    if not ca_file:
        return ssl.platformTrust()
    pem = Path(ca_file).read_bytes()
    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in pem.split(marker) if b"-----BEGIN CERTIFICATE-----" in block]
    if not blocks:
        raise ValueError(f"no certificate in {ca_file}")
    return ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(b) for b in blocks])


class _SMTPSend(ESMTPSenderFactory):
    """One message, sent once, through an endpoint. Endpoints never call a factory's
    clientConnectionLost, so a connection lost before the message went (a TLS handshake
    that failed: an untrusted certificate) would leave the result waiting: each
    protocol's connectionLost tells the factory itself."""

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        lost = protocol.connectionLost

        def connection_lost(reason: Any = None) -> None:
            lost(reason)
            self.clientConnectionLost(None, reason)
        protocol.connectionLost = connection_lost
        return protocol


async def send_mail(reactor: Any, email: EmailConfig, to: list[str], message: bytes) -> None:
    """One message through the configured SMTP server: over TLS unless `tls = "none"`
    (STARTTLS must be offered, and is required, when `tls = "starttls"`; `"implicit"` speaks
    TLS from the first byte), the certificate checked against `ca_file` or the system's CAs
    for `smtp_host`, and AUTH (CRAM-MD5, LOGIN or PLAIN, as offered) when a username is set.
    Raises on any failure: the outbox retries."""
    from twisted.internet import ssl
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

    tls = None
    if email.tls != "none":
        tls = ssl.optionsForClientTLS(email.smtp_host, trustRoot=_trust_root(email.ca_file))
    done: defer.Deferred[Any] = defer.Deferred()
    factory = _SMTPSend(
        email.username.encode() if email.username else None,
        email.password.encode() if email.password else None,
        email.sender, to, BytesIO(message), done, retries=0, timeout=DELIVERY_TIMEOUT,
        contextFactory=tls if email.tls == "starttls" else None,
        requireAuthentication=bool(email.username),
        requireTransportSecurity=email.tls != "none",
        hostname=None)  # no opportunistic STARTTLS with unchecked defaults: `tls` decides
    endpoint: Any = HostnameEndpoint(reactor, email.smtp_host, email.smtp_port,
                                     timeout=DELIVERY_TIMEOUT)
    if email.tls == "implicit":
        endpoint = wrapClientTLS(tls, endpoint)
    connecting = endpoint.connect(factory)

    def not_connected(failure: Any) -> None:
        if not done.called:
            done.errback(failure)
    connecting.addErrback(not_connected)
    done.addTimeout(DELIVERY_TIMEOUT * 2, reactor)
    await done
