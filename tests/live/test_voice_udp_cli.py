"""Voice over UDP as an operator meets it: `[webtransport]` in check-config, and
`hearth serve --webtransport PORT` with its short-lived self-signed certificate."""

from __future__ import annotations

import copy
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest_twisted

from bench.wtclient import open_session
from hearth.client.websocket import HearthClient
from hearth.spaces.config import to_toml
from hearth.web.webtransport import certificate_files
from tests.support.config import BASE
from tests.support.serving import ServedHearth
from tests.support.voice_udp import offer, on_asyncio


def hearth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hearth.web.cli", *args], capture_output=True,
                          text=True, timeout=60)


def config_file(tmp_path: Path, webtransport: dict[str, Any]) -> Path:
    data = copy.deepcopy(BASE)
    data["server"]["data_dir"] = str(tmp_path / "data")
    data["webtransport"] = webtransport
    path = tmp_path / "hearth.toml"
    path.write_text(to_toml(data))
    return path


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_check_config_names_the_udp_port_for_the_firewall(tmp_path: Path) -> None:
    path = config_file(tmp_path, {"port": 4433, "self_signed": True})
    result = hearth("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "udp 127.0.0.1:4433" in result.stdout and "open UDP port 4433 in the firewall" \
        in result.stdout and "self-signed" in result.stdout


def test_check_config_refuses_a_bad_port_or_a_missing_certificate(tmp_path: Path) -> None:
    result = hearth("check-config", str(config_file(tmp_path, {"port": 70000})))
    assert result.returncode == 2 and "webtransport.port: expected a whole number from 0 to " \
        "65535" in result.stderr
    result = hearth("check-config", str(config_file(tmp_path, {"port": 4433})))
    assert result.returncode == 2 and "webtransport.port: expected a certificate too" \
        in result.stderr
    result = hearth("check-config", str(config_file(tmp_path, {
        "port": 4433, "certificate": "nowhere.pem", "private_key": "nowhere-key.pem"})))
    assert result.returncode == 2 and "webtransport.certificate: expected a readable PEM" \
        in result.stderr


def test_check_config_accepts_the_operators_certificate(tmp_path: Path) -> None:
    cert, key = certificate_files(tmp_path, time.time())
    result = hearth("check-config", str(config_file(tmp_path, {
        "port": 4433, "certificate": str(cert), "private_key": str(key)})))
    assert result.returncode == 0, result.stderr
    assert "with your certificate" in result.stdout


@pytest_twisted.ensureDeferred
async def test_serve_with_webtransport_carries_a_members_voice_session(tmp_path: Path) -> None:
    port = free_udp_port()
    served = ServedHearth("--config", str(config_file(tmp_path, {})), "--listen",
                          "tcp:0:interface=127.0.0.1", "--webtransport", str(port))
    try:
        http = served.wait_ready()
        assert f"Voice: voice over UDP: WebTransport on udp 127.0.0.1:{port}" in served.output()
        client = await HearthClient.connect(f"ws://127.0.0.1:{http}/ws")
        await client.join("circle")
        answer = await offer(client)
        assert answer["url"] == f"https://127.0.0.1:{port}/voice" and len(answer["hashes"]) == 1
        session = await on_asyncio(open_session(answer, origin=f"http://127.0.0.1:{http}"))
        await on_asyncio(session.close())
        await client.close()
    finally:
        assert served.stop() in (0, -15)
