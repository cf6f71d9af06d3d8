"""What Hearth keeps in Redis, over restarts: retention trims at start, a member who left
stays gone, and `hearth privacy report` lists it."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest_twisted

from hearth.spaces.client import HearthClient
from hearth.spaces.config import to_toml as toml_of
from tests.support.config import BASE
from tests.support.live import sleep
from tests.support.redis_servers import RedisServer
from tests.support.serving import ServedHearth


def write_config(tmp_path: Path, redis_url: str, **sections: Any) -> Path:
    config = tmp_path / "hearth.toml"
    config.write_text(toml_of({**BASE, **sections, "server": {
        **BASE["server"], "data_dir": str(tmp_path / "data"), "redis": redis_url}}))
    return config


async def stopped(served: ServedHearth, timeout: float = 20.0) -> int:
    served.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while served.proc.poll() is None:
        assert time.monotonic() < deadline, "hearth serve did not stop"
        await sleep(0.1)
    return served.stop()


@pytest_twisted.ensureDeferred
async def test_members_gone_before_a_restart_never_come_back(
        tmp_path: Path, redis_server: RedisServer) -> None:
    config = write_config(tmp_path, redis_server.url, session={"resume_grace_seconds": 2})
    served = ServedHearth("--config", str(config))
    try:
        served.wait_ready()
        url = f"ws://127.0.0.1:{served.port}/ws"
        alice = await HearthClient.connect(url)
        await alice.join("circle", pseudonym="Quiet Otter")
        bob = await HearthClient.connect(url)
        await bob.join("circle", pseudonym="Brave Heron")
        await sleep(1.5)
        assert await stopped(served) == 0
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
        served.wait_ready()
        url = f"ws://127.0.0.1:{served.port}/ws"
        alice = await HearthClient.connect(url)
        await alice.join("circle", pseudonym="Quiet Otter")
        bob = await HearthClient.connect(url)
        await bob.join("circle", pseudonym="Brave Heron")
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
