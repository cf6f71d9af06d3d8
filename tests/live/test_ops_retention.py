"""Retention: the daily purge of the audit log, incidents and reports; `hearth privacy report`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

from hearth.moderation.audit import AuditLog
from hearth.moderation.journal import Journal
from hearth.moderation.outbox import Outbox, OutboxJournal
from hearth.moderation.reports import ReportQueue
from hearth.spaces.config import to_toml as toml_of
from hearth.web.lifecycle import RoomStateFiles
from hearth.web.retention import DAY, Retention, RetentionService, purge_incidents
from tests.support.config import BASE, make_config

NOW = 1_800_000_000.0  # a fixed "now": 2027-01-15


def incident(incident_id: str, state: str, pseudonym: str = "Quiet Otter") -> dict[str, Any]:
    return {"id": incident_id, "room": "circle", "member": "m1", "pseudonym": pseudonym,
            "trigger": "help_button", "severity": "high", "category": "help_request",
            "rule_pack": None, "opened_at": 0, "state": state, "history": [],
            "responders": [], "outcome": "de_escalated" if state == "resolved" else None,
            "follow_up": False, "test": False}


def write_incidents(path: Path) -> Journal:
    journal = Journal(path)
    for ts, inc in [
        (NOW - 101 * DAY, incident("old", "open")),
        (NOW - 100 * DAY, incident("old", "resolved")),  # resolved 100 days ago: goes
        (NOW - 12 * DAY, incident("recent", "open")),
        (NOW - 10 * DAY, incident("recent", "resolved")),  # resolved 10 days ago: stays
        (NOW - 200 * DAY, incident("unresolved", "open")),  # never resolved: always stays
        (NOW - 199 * DAY, incident("unresolved", "acknowledged")),
    ]:
        journal.append({"ts": int(ts * 1000), "incident": inc})
    return journal


def test_purge_incidents_keeps_unresolved_and_recently_resolved(tmp_path: Path) -> None:
    journal = write_incidents(tmp_path / "incidents.jsonl")
    assert purge_incidents(journal, NOW - 90 * DAY) == 1
    left = [r["incident"]["id"] for r in journal.records()]
    assert left == ["recent", "recent", "unresolved", "unresolved"]
    assert purge_incidents(journal, NOW - 90 * DAY) == 0  # nothing more to do
    journal.append({"ts": int(NOW * 1000), "incident": incident("new", "open")})
    assert [r["incident"]["id"] for r in journal.records()][-1] == "new"  # still appendable


def test_retention_purge_applies_every_limit(tmp_path: Path) -> None:
    config = make_config(retention={"audit_days": 30, "incidents_days": 90, "reports_days": 7})
    audit = AuditLog(tmp_path / "audit.jsonl")
    audit.record("ana", "remove", "Quiet Otter", "circle", "ok", NOW - 31 * DAY)
    audit.record("ana", "mute", "Brave Heron", "circle", "ok", NOW - 29 * DAY)
    journal = write_incidents(tmp_path / "incidents.jsonl")

    class Venue:
        reports = ReportQueue()

        class crisis:
            class desk:
                forgotten: list[float] = []

                @classmethod
                def forget_resolved(cls, before: float) -> int:
                    cls.forgotten.append(before)
                    return 0

    for days in (8, 6):
        Venue.reports.add(room="circle", seq=1, sent_at=0, reported_at=int((NOW - days * DAY) * 1000),
                          sender="m1", sender_pseudonym="A", reporter_pseudonym="B", text="t",
                          reason="")
    gone = Retention(config, lambda: NOW, audit, journal, Venue).purge()
    assert gone == {"audit": 1, "incidents": 1, "reports": 1}
    assert [e.action for e in audit.entries()] == ["mute"]
    assert len(Venue.reports.reports) == 1
    assert Venue.crisis.desk.forgotten == [NOW - 90 * DAY]


def test_the_purge_runs_at_start_and_then_daily() -> None:
    clock = Clock()
    runs: list[float] = []

    class Counting:
        def purge(self) -> dict[str, int]:
            runs.append(clock.seconds())
            return {}

    service = RetentionService(Counting(), clock)  # type: ignore[arg-type]
    service.startService()
    assert runs == [0]
    clock.advance(DAY - 1)
    assert runs == [0]
    clock.advance(1)
    assert runs == [0, DAY]
    service.stopService()


def test_retention_config_defaults_and_the_old_crisis_key() -> None:
    config = make_config()
    assert (config.retention.audit_days, config.retention.incidents_days,
            config.retention.reports_days) == (90, 90, 30)
    assert make_config(crisis={"retention_days": 45}).retention.incidents_days == 45
    assert make_config(crisis={"retention_days": 45},
                       retention={"incidents_days": 10}).retention.incidents_days == 10


def hearth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hearth.web.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_privacy_report_shows_counts_and_dates_never_content(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "hearth.toml"
    config.write_text(toml_of({**BASE, "server": {**BASE["server"], "data_dir": str(data)},
                               "retention": {"audit_days": 30, "incidents_days": 60}}))
    day = 86400
    first = 1_767_225_600  # 2026-01-01 00:00 UTC
    audit = AuditLog(data / "audit.jsonl")
    audit.record("zoltan-acct", "remove", "Quiet Otter", "circle", "ok", first)
    audit.record("zoltan-acct", "mute", "Brave Heron", "circle", "ok", first + 2 * day)
    audit.record("(unknown)", "login", None, None, "refused:bad_credentials", first + 3 * day)
    incidents = Journal(data / "incidents.jsonl")
    incidents.append({"ts": (first + day) * 1000, "incident": incident("inc-alpha", "open", "Calm Lynx")})
    incidents.append({"ts": (first + 5 * day) * 1000,
                      "incident": incident("inc-alpha", "resolved", "Calm Lynx")})
    incidents.append({"ts": (first + 6 * day) * 1000,
                      "incident": incident("inc-beta", "open", "Calm Lynx")})
    outbox = Outbox(journal=OutboxJournal(data / "outbox.jsonl"))
    outbox.add("a1", "webhook:on-call", {"incident": "inc-beta"}, first + 6 * day)
    outbox.add("a2", "webhook:on-call", {"incident": "inc-beta"}, first + 7 * day)
    outbox.delivered("a1")
    RoomStateFiles(data).save("circle", {"room": {"members": []}, "sessions": {}},
                              first + 8 * day)
    (data / "facilitators.json").write_text(json.dumps({"format": 1, "accounts": [
        {"name": "zoltan-acct", "role": "facilitator", "password": "$argon2id$x", "totp": None,
         "created": first, "generation": 1}]}))

    result = hearth("privacy", "report", "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    stores = {s["name"]: s for s in json.loads(result.stdout)}
    assert stores["audit log"]["count"] == 3
    assert stores["audit log"]["oldest"] == first
    assert stores["audit log"]["until"] == first + 30 * day
    assert stores["crisis incidents"]["count"] == 2
    assert stores["crisis incidents"]["oldest"] == first + day
    assert stores["crisis incidents"]["until"] == first + 5 * day + 60 * day
    assert "1 unresolved" in stores["crisis incidents"]["note"]
    assert stores["crisis alerts pending"]["count"] == 1
    assert stores["crisis alerts pending"]["oldest"] == first + 7 * day
    assert stores["facilitator accounts"]["count"] == 1
    assert stores["secrets"]["exists"] is False  # never created by this test
    assert stores["room state files"]["count"] == 1
    assert stores["room state files"]["oldest"] == first + 8 * day
    assert stores["audit log"]["bytes"] == (data / "audit.jsonl").stat().st_size

    text = hearth("privacy", "report", "--config", str(config))
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "audit log: 3 entries" in out and "oldest: 2026-01-01 00:00 UTC" in out
    assert "oldest goes by: 2026-01-31 00:00 UTC" in out
    assert "crisis incidents: 2 incidents" in out and "oldest goes by: 2026-03-07" in out
    assert "crisis alerts pending: 1 alerts" in out
    for content in ("Quiet Otter", "Brave Heron", "Calm Lynx", "zoltan-acct", "$argon2id",
                    "inc-alpha", "inc-beta", "webhook:on-call"):
        assert content not in out, f"{content!r} printed by the privacy report"


def test_privacy_report_names_secrets_without_their_values(tmp_path: Path) -> None:
    from hearth.web.datadir import load_secrets
    data = tmp_path / "data"
    load_secrets(data)
    config = tmp_path / "hearth.toml"
    config.write_text(toml_of({**BASE, "server": {**BASE["server"], "data_dir": str(data)}}))
    result = hearth("privacy", "report", "--config", str(config))
    assert result.returncode == 0
    assert "secrets: 1 file" in result.stdout and "mode 0600" in result.stdout
    for value in json.loads((data / "secrets.json").read_text()).values():
        assert value not in result.stdout
