"""What Hearth keeps, how long for, and the purge that enforces it.

Retention ([retention] in the config, in days):
- the audit log (audit.jsonl): entries older than `audit_days` go;
- the incident log (incidents.jsonl): every record of an incident resolved more
  than `incidents_days` ago goes; unresolved incidents are kept whatever
  their age (someone may still be at risk); the in-memory desk forgets them too;
- reports (in memory): older than `reports_days` go;
- the crisis outbox journal (outbox.jsonl) is compacted to what is still pending
  (delivered alerts' payloads go);
- bans end on their own (the venue's tick), and so do room state files (one restart).

`Retention.purge` runs once at start and then once a day (RetentionService).
`privacy_report` says what is on disk, how much and until when, without ever
reading out an entry's content (`hearth privacy report`).
"""

from __future__ import annotations

import json
import stat
import textwrap
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from hearth.moderation.audit import AuditLog, read_entries
from hearth.moderation.journal import Journal, read_records
from hearth.moderation.outbox import Outbox
from hearth.spaces.broker import Broker
from hearth.spaces.config import HearthConfig
from hearth.spaces.wording import counted

DAY = 86400.0


def _incident_id(record: dict[str, Any]) -> str | None:
    incident = record.get("incident")
    if isinstance(incident, dict) and isinstance(incident.get("id"), str):
        return str(incident["id"])
    return None


def _ts(record: dict[str, Any]) -> float:
    ts = record.get("ts")
    return float(ts) / 1000 if isinstance(ts, int | float) and not isinstance(ts, bool) else 0.0


def incident_summary(records: Iterable[dict[str, Any]]) -> dict[str, tuple[str, float, float]]:
    """Per incident id: (last state, first record time, last record time), in seconds."""
    out: dict[str, tuple[str, float, float]] = {}
    for record in records:
        incident_id = _incident_id(record)
        if incident_id is None:
            continue
        state = str(record["incident"].get("state"))
        first = out[incident_id][1] if incident_id in out else _ts(record)
        out[incident_id] = (state, first, _ts(record))
    return out


def purge_incidents(journal: Journal, older_than: float) -> int:
    """Rewrite the incident log without the incidents resolved before `older_than`
    (seconds); unresolved incidents stay whatever their age. Returns how many went."""
    records = list(journal.records())
    summary = incident_summary(records)
    gone = {i for i, (state, _, last) in summary.items()
            if state == "resolved" and last < older_than}
    keep = [r for r in records
            if (_incident_id(r) not in gone if _incident_id(r) is not None
                else _ts(r) >= older_than)]
    if len(keep) != len(records):
        journal.rewrite(keep)
    return len(gone)


class Retention:
    log = Logger(namespace="hearth.retention")

    def __init__(self, config: HearthConfig, clock: Any, audit: AuditLog | None,
                 incidents: Journal | None, venue: Any = None, alerts: Any = None,
                 broker: Broker | None = None) -> None:
        self.config = config.retention
        self.session_max_seconds = config.login.session_max_seconds
        self.clock = clock
        self.audit, self.incidents, self.venue, self.alerts = audit, incidents, venue, alerts
        self.broker = broker  # the shared logs (web/shared_logs.py) are trimmed the same way
        self.shared_due = False  # a trim of the shared logs waits for the broker

    def purge(self) -> dict[str, int]:
        """Apply every retention limit now; returns what went, by store (counts only)."""
        now = self.clock()
        gone: dict[str, int] = {}
        if self.audit is not None:
            gone["audit"] = self.audit.purge(now - self.config.audit_days * DAY)
        if self.incidents is not None:
            before = now - self.config.incidents_days * DAY
            gone["incidents"] = purge_incidents(self.incidents, before)
            if self.venue is not None:
                self.venue.crisis.desk.forget_resolved(before)
        if self.venue is not None:
            gone["reports"] = self.venue.reports.purge(now - self.config.reports_days * DAY)
        if self.alerts is not None:
            self.alerts.journal.compact(self.alerts.outbox.pending())
        self.shared_due = self.broker is not None  # trim_shared, once the broker is up
        if any(gone.values()):
            self.log.info("retention purge: {audit} audit entries, {incidents} incidents, "
                          "{reports} reports removed", audit=gone.get("audit", 0),
                          incidents=gone.get("incidents", 0), reports=gone.get("reports", 0))
        return gone


    def broker_ready(self) -> bool:
        """The broker answers commands: the in-memory one always, Redis once it is connected
        (at start it is not yet: a trim then would fail)."""
        return self.broker is not None and bool(getattr(self.broker, "connected", True))

    async def trim_shared(self) -> int:
        """Trim the shared logs in the broker by age, like the journals; returns how many
        records went. Done when the broker is up (`shared_due` stays set otherwise)."""
        if not self.shared_due or not self.broker_ready() or self.broker is None:
            return 0
        self.shared_due = False
        now = self.clock()
        gone = 0
        for stream, seconds in (("audit", self.config.audit_days * DAY),
                                ("incidents", self.config.incidents_days * DAY),
                                ("sessions", self.session_max_seconds)):
            gone += await self.broker.trim(stream, int((now - seconds) * 1000))
        if gone:
            self.log.info("retention purge: {count} records removed from the shared logs",
                          count=gone)
        return gone


class RetentionService(Service):
    """The purge, once at start and then every day; the shared logs' trim as soon as the
    broker is up after each purge (at start, Redis is still connecting)."""

    log = Logger(namespace="hearth.retention")

    def __init__(self, retention: Retention, reactor: Any, every: float = DAY,
                 shared_check: float = 1.0) -> None:
        self.retention = retention
        self.loop = LoopingCall(self._purge)
        self.loop.clock = reactor
        self.every = every
        self.shared = LoopingCall(self._trim_shared)
        self.shared.clock = reactor
        self.shared_check = shared_check

    def _purge(self) -> None:
        try:
            self.retention.purge()
        except Exception:  # a full disk must not stop the server; the next day tries again
            self.log.failure("the retention purge failed")

    def _trim_shared(self) -> defer.Deferred[Any]:
        d = defer.ensureDeferred(self.retention.trim_shared())
        d.addErrback(lambda f: self.log.failure("trimming a shared log failed", f))
        return d

    def startService(self) -> None:
        super().startService()
        self.loop.start(self.every, now=True)
        if getattr(self.retention, "broker", None) is not None:
            self.shared.start(self.shared_check, now=True)

    def stopService(self) -> Any:
        super().stopService()
        for loop in (self.loop, self.shared):
            if loop.running:
                loop.stop()
        return None


# --- the privacy report --------------------------------------------------------------


@dataclass
class Store:
    name: str
    path: str
    exists: bool
    count: int  # entries (what `unit` says)
    unit: str
    bytes: int
    oldest: float | None  # seconds since the epoch
    kept: str  # the rule, in words
    until: float | None  # when the oldest entry goes, if it has a date
    note: str = ""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _mode(path: Path) -> str:
    try:
        return f"{stat.S_IMODE(path.stat().st_mode):04o}"
    except OSError:
        return "-"


def privacy_report(config: HearthConfig, now: float | None = None) -> list[Store]:
    """Every store on disk: how much, how old, until when. Counts and dates, never content."""
    now = time.time() if now is None else now
    data = Path(config.server.data_dir)
    r = config.retention
    stores: list[Store] = []

    path = data / "audit.jsonl"
    times = [e.ts / 1000 for e in read_entries(path)]
    oldest = min(times, default=None)
    stores.append(Store(
        name="audit log", path=str(path), exists=path.exists(), count=len(times), unit="entries",
        bytes=_size(path), oldest=oldest, kept=counted(r.audit_days, "day"),
        until=None if oldest is None else oldest + r.audit_days * DAY,
        note="moderation actions and sign-ins: account names and pseudonyms, never content"))

    path = data / "incidents.jsonl"
    summary = incident_summary(read_records(path))
    resolved = [last for state, _, last in summary.values() if state == "resolved"]
    unresolved = len(summary) - len(resolved)
    firsts = [first for _, first, _ in summary.values()]
    stores.append(Store(
        name="crisis incidents", path=str(path), exists=path.exists(), count=len(summary),
        unit="incidents", bytes=_size(path), oldest=min(firsts, default=None),
        kept=f"{counted(r.incidents_days, 'day')} after resolution; unresolved ones until "
             "resolved",
        until=min(resolved) + r.incidents_days * DAY if resolved else None,
        note=f"{unresolved} unresolved; metadata only (pseudonym, trigger, severity, times)"))

    path = data / "outbox.jsonl"
    outbox = Outbox()
    outbox.restore(read_records(path), now)
    pending = outbox.pending()
    stores.append(Store(
        name="crisis alerts pending", path=str(path), exists=path.exists(), count=len(pending),
        unit="alerts", bytes=_size(path), oldest=min((i.created_at for i in pending), default=None),
        kept="until delivered (the journal is compacted daily and at start)", until=None,
        note="incident id, trigger, severity, state, times and a console link; no pseudonym"))

    path = data / "facilitators.json"
    try:
        accounts = json.loads(path.read_text()).get("accounts", []) if path.exists() else []
    except (OSError, ValueError, AttributeError):
        accounts = []
    created = [float(a["created"]) for a in accounts
               if isinstance(a, dict) and isinstance(a.get("created"), int | float)]
    stores.append(Store(
        name="facilitator accounts", path=str(path), exists=path.exists(), count=len(accounts),
        unit="accounts", bytes=_size(path), oldest=min(created, default=None),
        kept="until an operator removes them (hearth facilitator remove)", until=None,
        note="name, role, argon2id password hash, TOTP secret if on"))

    path = data / "secrets.json"
    stores.append(Store(
        name="secrets", path=str(path), exists=path.exists(), count=1 if path.exists() else 0,
        unit="file", bytes=_size(path), oldest=None, kept="until you delete it", until=None,
        note=f"mode {_mode(path)}; three random keys (franking, cookie, address seed); "
             "values never shown"))

    from hearth.web.lifecycle import RoomStateFiles
    files = RoomStateFiles(data)
    saved: list[float] = []
    for file in files.files():
        try:
            saved.append(float(json.loads(file.read_bytes())["saved_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            saved.append(file.stat().st_mtime)
    grace = config.session.resume_grace_seconds
    stores.append(Store(
        name="room state files", path=str(files.directory), exists=files.directory.exists(),
        count=len(saved), unit="rooms", bytes=sum(_size(f) for f in files.files()),
        oldest=min(saved, default=None),
        kept=f"until the next start (read once, then deleted; unused after {grace:g} s)",
        until=min(saved) + grace if saved else None,
        note="written at a graceful stop: pseudonyms, seats, token digests; never content"))
    return stores


# What Hearth keeps in Redis (docs/scaling.md), for the privacy report: key prefix, name,
# unit, what it holds, and how long it is kept. Streams carry their own dates (entry ids);
# keys with a time to live tell when they were last written (their full TTL minus what is left).
REDIS_STREAMS = {
    "hearth:log:audit": ("shared audit log", "moderation actions and sign-ins of every node: "
                         "account names and pseudonyms, never content", "audit_days"),
    "hearth:log:incidents": ("shared incident log", "every node's incident changes: metadata "
                             "only (pseudonym, trigger, severity, times)", "incidents_days"),
    "hearth:log:outbox": ("crisis alert copies", "alerts not yet delivered, for another node "
                          "to deliver if this one dies: incident id, severity, a console link",
                          None),
    "hearth:log:sessions": ("shared sign-in sessions", "facilitator sessions: the cookie's "
                            "SHA-256, account name, role; never the cookie", "sessions"),
}


def redis_stores(items: list[dict[str, Any]], config: HearthConfig, now: float) -> list[Store]:
    """The privacy report's Redis part, from RedisBroker.inventory (names, types, TTLs and
    stream heads; never a value)."""
    from hearth.web.redis_broker import STATE_TTL_MS
    r = config.retention
    stores: list[Store] = []
    for key, (name, note, rule) in REDIS_STREAMS.items():
        found = [i for i in items if i["key"] == key]
        length = sum(int(i.get("length", 0)) for i in found)
        heads = [int(str(i["first_id"]).split("-")[0]) / 1000 for i in found if i.get("first_id")]
        oldest = min(heads, default=None)
        seconds = {"audit_days": r.audit_days * DAY, "incidents_days": r.incidents_days * DAY,
                   "sessions": float(config.login.session_max_seconds), None: None}[rule]
        stores.append(Store(
            name=f"{name} (Redis)", path=f"redis {key}", exists=bool(found), count=length,
            unit="entries", bytes=sum(int(i.get("bytes", 0)) for i in found), oldest=oldest,
            kept=("until delivered (the copy is deleted then)" if seconds is None else
                  counted(seconds / DAY, "day") if seconds >= DAY else f"{seconds:g} s"),
            until=None if oldest is None or seconds is None else oldest + seconds, note=note))
    for prefix, name, unit, full, kept, note in (
            ("hearth:state:", "room saved state (Redis)", "rooms", STATE_TTL_MS / 1000,
             "1 day after its last save; deleted when the room empties",
             "what a takeover needs: pseudonyms, avatars, seats, public keys, token digests, "
             "a ban-able member's keyed address hash, bans, open incidents; never content"),
            ("hearth:owner:", "room owners (Redis)", "rooms", 5.0, "5 s, renewed by the owner",
             "the id of the node that runs each room"),
            ("hearth:node:", "node heartbeats (Redis)", "nodes", 4.0, "4 s, renewed by the node",
             "that each node is alive"),
            ("hearth:lease:", "leases (Redis)", "leases", None, "while the holder renews it",
             "the id of the node doing a job alone (e.g. delivering a dead node's alerts)")):
        found = [i for i in items if i["key"].startswith(prefix)]
        written = [now - (full - i["ttl_ms"] / 1000) for i in found
                   if full is not None and i["ttl_ms"] >= 0]
        stores.append(Store(
            name=name, path=f"redis {prefix}*", exists=bool(found), count=len(found), unit=unit,
            bytes=sum(int(i.get("bytes", 0)) for i in found),
            oldest=min(written, default=None), kept=kept, until=None, note=note))
    known = (*REDIS_STREAMS, "hearth:state:", "hearth:owner:",
             "hearth:node:", "hearth:lease:")
    other = [i for i in items if not i["key"].startswith(known)]
    if other:
        stores.append(Store(
            name="other keys (Redis)", path="redis hearth:*", exists=True, count=len(other),
            unit="keys", bytes=sum(int(i.get("bytes", 0)) for i in other), oldest=None,
            kept="unknown to this version of Hearth", until=None,
            note="keys under hearth: that this version does not write (an older or newer "
                 "Hearth?)"))
    return stores


IN_MEMORY = (
    "In memory only, gone when Hearth stops: room membership and positions; SHA-256 digests of "
    "session tokens (until the member leaves or its grace period ends); role tickets (60 s); "
    "digests of facilitator session cookies; failed sign-in counts (keyed hashes); bans (a keyed "
    "hash of the address under that day's salt, until the ban ends); reports of single messages "
    "(the revealed text and pseudonyms, {reports} at most).",
    "Never stored: the conversation (chat and voice reach the server end-to-end encrypted and "
    "are relayed, not kept) and anyone's IP address (only the keyed hashes above). Participants "
    "have no account: no e-mail address, no phone number.",
)


def _date(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _bytes(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB" if n < 1 << 20 else \
        f"{n / (1 << 20):.1f} MiB"


def format_report(config: HearthConfig, stores: list[Store], now: float) -> str:
    lines = [f"Hearth privacy report, {_date(now)}",
             f"Config: {config.source}",
             f"Data directory: {config.server.data_dir}",
             "What is stored on disk (and in Redis, with several nodes), how much, and until "
             "when. No entry's content is shown.", ""]
    for s in stores:
        lines.append(f"{s.name}: {s.count} {s.unit}, {_bytes(s.bytes)}"
                     + ("" if s.exists else " (none yet)"))
        label = "where:" if s.path.startswith("redis ") else "file:"
        lines.append(f"    {label:<8}{s.path}")
        lines.append(f"    oldest: {_date(s.oldest)}")
        lines.append(f"    kept:   {s.kept}")
        if s.until is not None:
            lines.append(f"    oldest goes by: {_date(s.until)}")
        if s.note:
            lines.append(f"    holds:  {s.note}")
    lines.append("")
    for text in IN_MEMORY:
        lines += textwrap.wrap(text.format(reports=counted(config.retention.reports_days, 'day')), 88)
    return "\n".join(lines) + "\n"


def report_json(stores: list[Store]) -> str:
    return json.dumps([asdict(s) for s in stores], indent=1)
