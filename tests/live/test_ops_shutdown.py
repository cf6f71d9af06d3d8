"""Graceful stop and restart: SIGTERM tells clients, saves the rooms, and members resume after."""

from __future__ import annotations

import json
import signal
import stat
import time
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from hearth.client.websocket import HearthClient
from hearth.web.lifecycle import RoomStateFiles
from tests.support.config import config_file, make_config
from tests.support.serving import ServedHearth

KEY = "A" * 43 + "="  # base64 of 32 bytes: an identity public key as the roster shows it


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_sigterm_says_going_away_closes_1001_and_members_resume_after_restart(
        tmp_path: Path) -> None:
    config = config_file(tmp_path)
    served = ServedHearth("--config", str(config), "--log-format", "json")
    try:
        served.wait_ready()
        url = f"ws://127.0.0.1:{served.port}/ws"
        alice = await HearthClient.connect(url)
        welcome_a = await alice.join("circle", pseudonym="Quiet Otter")
        bob = await HearthClient.connect(url)
        welcome_b = await bob.join("circle", pseudonym="Brave Heron")
        alice.send({"type": "keys", "dh": KEY, "sig": KEY})
        await bob.next(lambda m: m["type"] == "member_updated" and m["member"]["keys"])
        served.proc.send_signal(signal.SIGTERM)
        for client in (alice, bob):
            code, _ = await client._with_timeout(client.closed, 10.0, "the server's close")
            assert code == 1001
            going = await client.next("going_away")
            assert going["reconnect"] is True and going["message"]
        assert await served.exited() == 0
    finally:
        served.stop()
    output = served.output()
    assert "Traceback" not in output
    for secret in (welcome_a["token"], welcome_b["token"]):
        assert secret not in output

    saved = RoomStateFiles(tmp_path / "data")
    [room_file] = saved.files()
    assert room_file.name == "circle.json"
    assert stat.S_IMODE(room_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.directory.stat().st_mode) == 0o700
    text = room_file.read_text()
    assert "Quiet Otter" in text  # pseudonyms: what export_room holds
    for secret in (welcome_a["token"], welcome_b["token"]):  # token digests only
        assert secret not in text
    state = json.loads(text)["state"]
    assert set(state) == {"room", "sessions", "previous", "incidents", "bans", "alerts"}

    again = ServedHearth("--config", str(config))
    try:
        again.wait_ready()
        assert not saved.files(), "a saved room is used for one restart only"
        url = f"ws://127.0.0.1:{again.port}/ws"
        alice2 = await HearthClient.connect(url)
        resumed = await alice2.resume(welcome_a["token"])
        assert resumed["resumed"] is True and resumed["member"] == welcome_a["member"]
        mine = next(m for m in resumed["room"]["members"] if m["id"] == welcome_a["member"])
        assert mine["pseudonym"] == "Quiet Otter" and mine["keys"] == {"dh": KEY, "sig": KEY}
        bob2 = await HearthClient.connect(url)
        resumed_b = await bob2.resume(welcome_b["token"])
        assert resumed_b["member"] == welcome_b["member"]
        # The epoch advanced (keys rotate) and the sequence jumped: no number repeats.
        assert resumed["room"]["epoch"] > welcome_b["room"]["epoch"]
        assert resumed["room"]["seq"] > welcome_b["room"]["seq"] + 100
        await alice2.close()
        await bob2.close()
    finally:
        assert again.stop() in (0, -15)


@pytest_twisted.ensureDeferred
async def test_a_saved_room_older_than_the_grace_period_is_not_restored(tmp_path: Path) -> None:
    from hearth.web.service import make_hearth
    config = make_config()
    data = Path(config.server.data_dir)
    files = RoomStateFiles(data)
    files.save("circle", {"room": {"members": []}, "sessions": {}}, time.time() - 3600)
    (files.directory / "broken.json").write_text("{not json")
    hearth = make_hearth(config, reactor, ["tcp:0:interface=127.0.0.1"], persist_rooms=True)
    hearth.service.startService()
    try:
        await hearth.when_listening()
        assert not files.files(), "stale and unreadable room files are deleted at start"
        assert "circle" not in hearth.node.owned
    finally:
        await hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_stop_waits_for_pending_alerts_then_gives_up_within_the_bound() -> None:
    """The outbox gets a bounded time to deliver: flush(timeout) fires True when it
    emptied, False (the alert stays journalled for after the restart) when it did not."""
    from hearth.web.service import make_hearth
    config = make_config(crisis={"webhooks": [{"name": "dead", "url": "http://127.0.0.1:9/",
                                               "secret": "s" * 20}]})
    hearth = make_hearth(config, reactor, ["tcp:0:interface=127.0.0.1"])
    hearth.service.startService()
    try:
        await hearth.when_listening()
        alerts = hearth.alerts
        assert await alerts.flush(1.0) is True  # nothing pending
        alerts.dispatch("webhook:primary", {"incident": "abc123", "event": "test"})
        assert alerts.outbox.pending()
        started = time.monotonic()
        assert await alerts.flush(0.5) is False
        assert time.monotonic() - started < 5
        assert alerts.outbox.pending(), "an undelivered alert is kept"
    finally:
        await hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_in_process_servers_keep_no_room_files_unless_asked() -> None:
    """Embedders (tests, the drill) start many servers on one data directory: only
    `hearth serve` (persist_rooms=True) saves rooms to files."""
    from hearth.web.service import make_hearth
    config = make_config()
    hearth = make_hearth(config, reactor, ["tcp:0:interface=127.0.0.1"])
    hearth.service.startService()
    await hearth.when_listening()
    port = hearth.listeners[0].port.getHost().port
    client = await HearthClient.connect(f"ws://127.0.0.1:{port}/ws")
    await client.join("circle")
    await hearth.service.stopService()
    assert client.close_code == 1001 and (await client.next("going_away"))["reconnect"]
    assert not RoomStateFiles(Path(config.server.data_dir)).files()
