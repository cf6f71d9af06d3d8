"""Getting crisis alerts out: the outbox's delivery loop, webhooks, e-mail, the incident log.

The core says *what* must go out (Dispatch effects); this shell journals it
first (moderation.outbox), then delivers: a JSON POST signed with
HMAC-SHA256 for webhooks, SMTP for e-mail. A 2xx answer (or an accepted
message) marks it done; anything else is retried with exponential backoff,
in order per destination. When one alert keeps failing the admin is told.
Log lines name the destination and the incident id, never a person.
"""

from __future__ import annotations

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

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.client import Agent, FileBodyProducer, PartialDownloadError, readBody
from twisted.web.http_headers import Headers

from hearth.moderation.journal import Journal
from hearth.moderation.outbox import Item, Outbox, OutboxJournal
from hearth.spaces.broker import Broker
from hearth.spaces.config import HearthConfig, WebhookConfig
from hearth.web.shared_logs import LogShipper
from hearth.web.shared_outbox import SharedOutbox

DELIVERY_TIMEOUT = 10.0
SIGNATURE_HEADER = b"X-Hearth-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)> — receivers check both."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


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
        self.on_failing: Callable[[str, str], None] | None = None  # (channel, incident)
        self.on_delivered: Callable[[Item, float], None] | None = None
        # (channel, seconds to deliver, or None for a failed attempt): web/metrics.py counts them
        self.watchers: list[Callable[[str, float | None], None]] = []
        self._hooks = {f"webhook:{h.name}": h for h in self.config.webhooks}

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
        if kind == "webhook":
            targets = [f"webhook:{h.name}" for h in self.config.webhooks if h.tier == tier]
        elif kind == "email" and self.config.email is not None:
            email = self.config.email
            wanted = email.admin if tier == "admin" else email.on_call
            targets = [f"email:{tier}"] if wanted else []
        else:
            targets = []
        if not targets and tier == "admin":
            self.log.critical("crisis admin alert for incident {incident} has nowhere to go: "
                              "configure [crisis.email] admin", incident=payload.get("incident"))
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
        elif item.channel.startswith("email:"):
            await self._mail(item)
        else:
            raise RuntimeError(f"unknown channel {item.channel}")

    async def _post(self, hook: WebhookConfig, item: Item) -> None:
        body = json.dumps(item.payload, separators=(",", ":")).encode()
        headers = Headers({
            b"Content-Type": [b"application/json"],
            b"User-Agent": [b"Hearth"],
            b"Idempotency-Key": [item.id.encode()],
            SIGNATURE_HEADER: [signature(hook.secret, int(time.time()), body).encode()],
        })
        d = self.agent.request(b"POST", hook.url.encode(), headers, FileBodyProducer(BytesIO(body)))
        d.addTimeout(DELIVERY_TIMEOUT, self.reactor)
        response = await d
        with contextlib.suppress(PartialDownloadError):  # a body ended by closing: the code counts
            await readBody(response)
        if not 200 <= response.code < 300:
            raise RuntimeError(f"HTTP {response.code}")

    async def _mail(self, item: Item) -> None:
        from email.message import EmailMessage

        from twisted.mail.smtp import sendmail
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
        d = sendmail(email.smtp_host, email.sender, to, message.as_bytes(), port=email.smtp_port)
        d.addTimeout(DELIVERY_TIMEOUT, self.reactor)
        await d

    def _done(self, item: Item, started: float) -> None:
        self.outbox.delivered(item.id)
        if self.sharing is not None:
            self._quietly(self.sharing.delivered(item), "removing a delivered alert's copy")
        self.log.info("crisis alert delivered to {channel} for incident {incident}",
                      channel=item.channel, incident=item.payload.get("incident"))
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
        if alert_admin:
            self.log.critical("crisis alerts to {channel} keep failing", channel=item.channel)
            if self.on_failing is not None:
                self.on_failing(item.channel, str(item.payload.get("incident")))
            if not item.channel.startswith("email:admin"):
                self.dispatch("email:admin", {**item.payload, "event": "delivery_failing",
                                              "failing": item.channel})
