"""`hearth serve` as a service: systemd's notifications (readiness, watchdog, reload, stop)
through a test socket, and SIGHUP reloading the TLS certificate and the crisis data of a real
process while a member stays connected."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from hearth.client.websocket import HearthClient
from hearth.spaces.config import to_toml as toml_of
from hearth.web.systemd import Notifier
from tests.support.config import BASE
from tests.support.crisis import ROOT
from tests.support.live import sleep
from tests.support.serving import ServedHearth
from tests.support.systemd import NotifySocket
from tests.support.tls import self_signed


def write_config(tmp_path: Path, listen: str = "tcp:0:interface=127.0.0.1",
                 **sections: Any) -> Path:
    config = tmp_path / "hearth.toml"
    config.write_text(toml_of({**BASE, **sections, "server": {
        **BASE["server"], "listen": [listen], "data_dir": str(tmp_path / "data")}}))
    return config


@pytest_twisted.ensureDeferred
async def test_readiness_watchdog_reload_and_stop_are_told_to_systemd(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify")
    served = ServedHearth("--config", str(write_config(tmp_path)),
                          env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"})
    try:
        served.wait_ready()
        ready = await notify.wait_for("READY")
        assert notify.messages[ready]["STATUS"].startswith("Serving 2 rooms")
        start = time.monotonic()
        while sum("WATCHDOG" in m for m in notify.read()) < 3:  # every 0.2 s
            assert time.monotonic() - start < 5, "the watchdog is not pinged"
            await sleep(0.05)
        served.proc.send_signal(signal.SIGHUP)
        reloading = await notify.wait_for("RELOADING", after=ready + 1)
        assert int(notify.messages[reloading]["MONOTONIC_USEC"]) > 0
        await notify.wait_for("READY", after=reloading + 1)
        served.proc.send_signal(signal.SIGTERM)
        await notify.wait_for("STOPPING", after=reloading + 1)
        assert await served.exited() == 0
    finally:
        served.stop()
        notify.close()


def test_without_notify_socket_nothing_is_sent_and_abstract_sockets_work(tmp_path: Path) -> None:
    assert not Notifier({}).enabled and Notifier({}).ready("x") is False
    assert Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog is None  # not us
    name = f"hearth-test-{time.time_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000"})
        assert notifier.watchdog == 2.0 and notifier.ready("Serving")
        assert listener.recv(100) == b"READY=1\nSTATUS=Serving"
        notifier.close()


def get(url: str, cafile: Path) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(cafile))
    with urllib.request.urlopen(url, timeout=10, context=context) as response:
        return response.status, response.read()


async def helplines(port: int, cafile: Path) -> dict[str, Any]:
    status, body = await deferToThread(get, f"https://127.0.0.1:{port}/crisis/helplines.json",
                                       cafile)
    assert status == 200
    return dict(json.loads(body))


def services(data: dict[str, Any]) -> str:
    return json.dumps(data)


@pytest_twisted.ensureDeferred
async def test_sighup_reloads_certificate_and_crisis_data_and_keeps_members(
        tmp_path: Path) -> None:
    crisis = tmp_path / "crisis"
    shutil.copytree(ROOT / "config" / "crisis", crisis)
    helplines_file = crisis / "helplines.toml"
    original = helplines_file.read_text()
    first = tmp_path / "first"
    second = tmp_path / "second"
    first.mkdir()
    second.mkdir()
    key, cert, pem_a = self_signed(first, "hearth")
    config = write_config(tmp_path, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
                          crisis={"directory": str(crisis)})
    notify = NotifySocket(tmp_path / "notify")
    served = ServedHearth("--config", str(config), "--log-format", "json",
                          env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        port = served.wait_ready()
        seen = await notify.wait_for("READY")
        url = f"wss://127.0.0.1:{port}/ws"
        member = await HearthClient.connect(url, tls_ca=pem_a)
        await member.join("circle", pseudonym="Quiet Otter")
        assert "Crisis Text Line (reloaded)" not in services(await helplines(port, cert))

        # A renewal: new key and certificate in the same files; corrected helplines.
        new_key, new_cert, pem_b = self_signed(second, "hearth")
        shutil.copy(new_key, key)
        shutil.copy(new_cert, cert)
        helplines_file.write_text(original.replace('name = "Crisis Text Line"',
                                                   'name = "Crisis Text Line (reloaded)"', 1))
        served.proc.send_signal(signal.SIGHUP)
        seen = await notify.wait_for("READY", after=await notify.wait_for("RELOADING", seen + 1))
        assert "kept" not in notify.messages[seen]["STATUS"]

        assert "Crisis Text Line (reloaded)" in services(await helplines(port, cert))
        with pytest.raises(Exception):  # noqa: B017 - the old certificate is gone for new ones
            await HearthClient.connect(url, tls_ca=pem_a, timeout=5)
        newcomer = await HearthClient.connect(url, tls_ca=pem_b)
        await newcomer.join("circle", pseudonym="Brave Heron")
        joined = await member.next(lambda m: m["type"] == "member_joined", 10)
        assert joined["member"]["pseudonym"] == "Brave Heron"  # the member never left

        # A broken certificate and broken crisis data are refused: the running ones stay.
        cert.write_text("not a certificate")
        helplines_file.write_text(original.replace('confidence = "official"',
                                                   'confidence = "rumoured"', 1))
        served.proc.send_signal(signal.SIGHUP)
        seen = await notify.wait_for("READY", after=await notify.wait_for("RELOADING", seen + 1))
        assert "kept 2 parts" in notify.messages[seen]["STATUS"]
        assert "Crisis Text Line (reloaded)" in services(await helplines(port, tmp_path /
                                                                          "second" / "hearth.pem"))
        again = await HearthClient.connect(url, tls_ca=pem_b)
        await again.join("circle")
        for client in (member, newcomer, again):
            await client.close()
    finally:
        served.stop()
        notify.close()
    errors = [e for e in served.log_events() if e["level"] == "error"]
    assert any("kept as they were" in e["message"] and "confidence" in e["message"]
               for e in errors), errors
    assert "Traceback" not in served.output()
