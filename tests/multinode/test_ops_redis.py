"""What Hearth keeps in Redis, over restarts: retention trims at start, a member who left
stays gone, and `hearth privacy report` lists it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest_twisted

from hearth.client.websocket import HearthClient
from hearth.spaces.config import to_toml as toml_of
from tests.support.config import BASE
from tests.support.live import sleep
from tests.support.redis_servers import RedisServer
from tests.support.serving import ServedHearth


def write_config(tmp_path: Path, redis_url: str, **sections: Any) -> Path:
    """A config for `hearth serve` on this Redis, emptied first (the server is the module's)."""
    import redis
    redis.Redis.from_url(redis_url).flushdb()
    config = tmp_path / "hearth.toml"
    config.write_text(toml_of({**BASE, **sections, "server": {
        **BASE["server"], "data_dir": str(tmp_path / "data"), "redis": redis_url}}))
    return config


async def two_members(served: ServedHearth) -> tuple[HearthClient, HearthClient]:
    """Quiet Otter and Brave Heron in the circle of a `hearth serve` that is ready."""
    served.wait_ready()
    url = f"ws://127.0.0.1:{served.port}/ws"
    alice = await HearthClient.connect(url)
    await alice.join("circle", pseudonym="Quiet Otter")
    bob = await HearthClient.connect(url)
    await bob.join("circle", pseudonym="Brave Heron")
    return alice, bob


@pytest_twisted.ensureDeferred
async def test_members_gone_before_a_restart_never_come_back(
        tmp_path: Path, redis_server: RedisServer) -> None:
    config = write_config(tmp_path, redis_server.url, session={"resume_grace_seconds": 2})
    served = ServedHearth("--config", str(config))
    try:
        await two_members(served)
        await sleep(1.5)
        served.proc.send_signal(signal.SIGTERM)
        assert await served.exited() == 0
    finally:
        served.stop()
    await sleep(3)  # longer than the grace period: alice and bob are gone for good
    again = ServedHearth("--config", str(config))
    try:
        again.wait_ready()
        url = f"ws://127.0.0.1:{again.port}/ws"
        dave = await HearthClient.connect(url)
        welcome = await dave.join("circle", pseudonym="Kind Wren")
        names = {m["pseudonym"] for m in welcome["room"]["members"]}
        assert names == {"Kind Wren"}, f"members who left came back: {names}"
        await dave.close()
    finally:
        again.stop()


@pytest_twisted.ensureDeferred
async def test_after_a_crash_a_member_already_away_is_not_brought_back_when_grace_ended(
        tmp_path: Path, redis_server: RedisServer) -> None:
    """The room's state in Redis keeps when each away member went away: a takeover runs
    their grace period on from then, not from the takeover."""
    config = write_config(tmp_path, redis_server.url, session={"resume_grace_seconds": 3})
    served = ServedHearth("--config", str(config))
    try:
        _, bob = await two_members(served)
        bob.drop()  # away, inside his grace period
        await sleep(1.5)  # saved (once a second) with bob away
        served.proc.kill()  # a crash: no graceful save
        served.proc.wait(10)
    finally:
        served.stop()
    await sleep(3)  # bob's grace is over; alice was connected until the crash
    again = ServedHearth("--config", str(config))
    try:
        again.wait_ready()
        dave = await HearthClient.connect(f"ws://127.0.0.1:{again.port}/ws")
        welcome = await dave.join("circle", pseudonym="Kind Wren")
        members = {m["pseudonym"]: m["away"] for m in welcome["room"]["members"]}
        assert "Brave Heron" not in members, f"a member whose grace ended came back: {members}"
        assert members.get("Quiet Otter") is True  # there at the crash: away, may resume
        await dave.close()
    finally:
        again.stop()


@pytest_twisted.ensureDeferred
async def test_a_shared_record_past_retention_is_trimmed_at_start(
        tmp_path: Path, redis_server: RedisServer) -> None:
    import redis

    config = write_config(tmp_path, redis_server.url, retention={"audit_days": 90})
    r = redis.Redis(port=redis_server.port)
    day_ms = 86_400_000
    now_ms = int(time.time() * 1000)
    old = r.xadd("hearth:log:audit", {"record": b"{}"}, id=f"{now_ms - 200 * day_ms}-0")
    r.xadd("hearth:log:incidents", {"record": b"{}"}, id=f"{now_ms - 200 * day_ms}-0")
    recent = r.xadd("hearth:log:audit", {"record": b"{}"})
    served = ServedHearth("--config", str(config), "--log-format", "json")
    try:
        served.wait_ready()
        deadline = time.monotonic() + 10
        while r.xlen("hearth:log:incidents") or len(r.xrange("hearth:log:audit")) > 1:
            assert time.monotonic() < deadline, "the old shared records were not trimmed"
            await sleep(0.1)
        assert [entry_id for entry_id, _ in r.xrange("hearth:log:audit")] == [recent]
        assert old != recent
    finally:
        served.stop()
        r.delete("hearth:log:audit", "hearth:log:incidents")
    assert "redis call failed" not in served.output()
    assert any(e["namespace"].startswith("hearth.") and "shared logs" in e["message"]
               for e in served.log_events())


def privacy_report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hearth.web.cli", "privacy", "report", *args],
                          capture_output=True, text=True, timeout=60)


@pytest_twisted.ensureDeferred
async def test_the_privacy_report_covers_what_is_in_redis(
        tmp_path: Path, redis_server: RedisServer) -> None:
    config = write_config(tmp_path, redis_server.url)
    served = ServedHearth("--config", str(config))
    try:
        served.wait_ready()
        alice = await HearthClient.connect(f"ws://127.0.0.1:{served.port}/ws")
        await alice.join("circle", pseudonym="Quiet Otter")
        await sleep(1.5)  # the room's state saved to Redis
        report = privacy_report("--config", str(config), "--json")
        assert report.returncode == 0, report.stderr
        stores = {s["name"]: s for s in json.loads(report.stdout)}
        state = stores["room saved state (Redis)"]
        assert state["count"] == 1 and state["path"] == "redis hearth:state:*"
        assert time.time() - 60 < state["oldest"] <= time.time() + 1
        assert not any("session" in name and "sign-in" not in name for name in stores)
        assert stores["node heartbeats (Redis)"]["count"] == 1
        for stream in ("shared audit log", "shared incident log", "crisis alert copies",
                       "shared sign-in sessions"):
            assert f"{stream} (Redis)" in stores
        text = privacy_report("--config", str(config)).stdout
        assert "where:  redis hearth:state:*" in text
        for out in (report.stdout, text):
            assert "Quiet Otter" not in out and redis_server.url not in out
        local = privacy_report("--config", str(config), "--local", "--json")
        assert not any("(Redis)" in s["name"] for s in json.loads(local.stdout))
        await alice.close()
    finally:
        served.stop()
    down = privacy_report("--config", str(config), "--redis", "redis://127.0.0.1:1/0")
    assert down.returncode == 1 and "cannot read what Hearth keeps in Redis" in down.stderr
