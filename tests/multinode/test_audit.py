"""The audit log: durable across kill -9, free of content and addresses, exported by the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.task import Clock

from hearth.client.websocket import HearthClient
from hearth.moderation.audit import AuditLog, read_entries
from hearth.spaces.config import to_toml as toml_of
from tests.support.config import BASE
from tests.support.serving import ServedHearth

CLIENT_ADDRESS = "127.0.0.2"
SECRET = "this text must never reach the audit log"


def test_records_are_read_back_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    clock = Clock()
    log = AuditLog(tmp_path / "audit.jsonl")
    log.record("ana", "mute", "Quiet Otter", "circle", "ok", clock.seconds())
    log.record("Calm Heron", "ban", "Quiet Otter", "circle", "refused:forbidden", 1.0)
    log.close()
    with (tmp_path / "audit.jsonl").open("ab") as f:
        f.write(b'{"ts": 5, "actor": "ha')  # a crash mid-write
    entries = list(read_entries(tmp_path / "audit.jsonl"))
    assert [(e.actor, e.action, e.outcome) for e in entries] == [
        ("ana", "mute", "ok"), ("Calm Heron", "ban", "refused:forbidden")]


def test_purge_keeps_recent_entries(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.record("ana", "mute", None, "circle", "ok", 100.0)
    log.record("ana", "lock", None, "circle", "ok", 200.0)
    assert log.purge(older_than=150.0) == 1
    log.record("ana", "unlock", None, "circle", "ok", 300.0)
    assert [e.action for e in log.entries()] == ["lock", "unlock"]
    assert (tmp_path / "audit.jsonl").stat().st_mode & 0o777 == 0o600


@pytest_twisted.ensureDeferred
async def test_the_audit_log_survives_kill_9_and_holds_no_content_or_address(
        tmp_path: Path) -> None:
    config = tmp_path / "hearth.toml"
    data = {**BASE, "server": {**BASE["server"], "data_dir": str(tmp_path / "data")}}
    config.write_text(toml_of(data))
    served = ServedHearth("--config", str(config))
    try:
        served.wait_ready()
        url = f"ws://127.0.0.1:{served.port}/ws"
        mallory = await HearthClient.connect(url, source_address=CLIENT_ADDRESS)
        await mallory.join("circle", pseudonym="Sly Fox")
        victim = await HearthClient.connect(url, source_address=CLIENT_ADDRESS)
        target = (await victim.join("circle", pseudonym="Calm Heron"))["member"]
        mallory.envelope("U2VjcmV0", "A" * 43 + "=")
        for kind in ("mute", "ban", "remove"):
            mallory.send({"type": kind, "member": target, "minutes": 5, "ref": kind,
                          "text": SECRET})
            assert (await mallory.next(lambda m, k=kind: m.get("ref") == k))["code"] == "forbidden"
        served.proc.send_signal(signal.SIGKILL)  # no chance to flush anything
        served.proc.wait(10)
    finally:
        served.stop()
    result = subprocess.run([sys.executable, "-m", "hearth.web.cli", "audit", "export", "--json",
                             "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    # Refused controls are audited once a minute per member (each is still answered): the
    # first of the three is on record, and survived the kill.
    assert [(e["actor"], e["action"], e["target"], e["outcome"]) for e in entries] == [
        ("Sly Fox", "mute", "Calm Heron", "refused:forbidden")]
    raw = (tmp_path / "data" / "audit.jsonl").read_text()
    for needle in (SECRET, CLIENT_ADDRESS, "U2VjcmV0"):
        assert needle not in raw
    text = subprocess.run([sys.executable, "-m", "hearth.web.cli", "audit", "export",
                           "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert text.stdout.count("refused:forbidden") == 1


@pytest_twisted.ensureDeferred
async def test_the_export_reads_every_node_s_records_from_redis(
        tmp_path: Path, redis_server: Any) -> None:
    """Two nodes' audit logs, shipped to Redis; `hearth audit export` reads both from there,
    and with --local only this node's own journal."""
    from functools import partial

    from hearth.web.redis_broker import RedisBroker
    from hearth.web.shared_logs import LogShipper
    config = tmp_path / "hearth.toml"
    data = tmp_path / "data"
    config.write_text(toml_of({**BASE, "server": {**BASE["server"], "data_dir": str(data)}}))
    for node, actor in (("node-a", "ana"), ("node-b", "bo")):
        broker = RedisBroker(redis_server.url)
        await broker.start()
        shipper = LogShipper(broker, node)
        path = data / "audit.jsonl" if node == "node-a" else tmp_path / "b" / "audit.jsonl"
        audit = AuditLog(path, on_record=partial(shipper.ship, "audit"))
        audit.record(actor, "mute", "Quiet Otter", "circle", "ok", 1_700_000_000.0)
        assert await shipper.flush()
        audit.close()
        await broker.stop()

    def export(*where: str) -> list[dict[str, Any]]:
        done = subprocess.run([sys.executable, "-m", "hearth.web.cli", "audit", "export", "--json",
                               "--config", str(config), *where], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["actor"] for e in export("--redis", redis_server.url)] == ["ana", "bo"]
    assert [e["actor"] for e in export("--local")] == ["ana"]
    # an unreachable Redis is a clear failure, never a silent local answer
    done = subprocess.run([sys.executable, "-m", "hearth.web.cli", "audit", "export", "--config",
                           str(config), "--redis", "redis://127.0.0.1:1/0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "cannot read the shared audit log" in done.stderr
    assert "Traceback" not in done.stderr
