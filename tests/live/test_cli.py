"""The `hearth` command as an operator meets it."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from hearth.moderation.crisis_config import SHIPPED_CRISIS
from hearth.web.datadir import DataDirInUse, lock_data_dir
from tests.support.serving import ServedHearth


def hearth(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`home`: where the shipped config's data directory (~/.local/share/hearth) goes, so a
    test does not meet another run's server on the same directory."""
    env = None if home is None else {**os.environ, "HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "hearth.web.cli", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_help_names_the_commands() -> None:
    result = hearth("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout and "check-config" in result.stdout


def test_check_config_accepts_the_shipped_config() -> None:
    result = hearth("check-config", "config/hearth.toml")
    assert result.returncode == 0 and "OK" in result.stdout


def test_check_config_checks_a_model_file_while_the_model_is_off(tmp_path: Path) -> None:
    """[crisis] detector_model is off in the shipped config, yet a broken model file beside a
    pack is an error: it would break the day someone turns the model on."""
    crisis = tmp_path / "crisis"
    shutil.copytree(SHIPPED_CRISIS, crisis)
    model = crisis / "rules" / "es.model.json"
    model.write_text("{not json", encoding="utf-8")
    config = tmp_path / "hearth.toml"
    shipped = Path("config/hearth.toml").read_text(encoding="utf-8")
    assert 'directory = "crisis"' in shipped and "detector_model = false" in shipped
    config.write_text(shipped, encoding="utf-8")  # the same relative "crisis", beside it
    result = hearth("check-config", str(config))
    assert result.returncode == 2, result.stdout
    assert f"{model}: not valid JSON" in result.stderr and "Traceback" not in result.stderr
    model.unlink()  # no model at all: the rules alone, fine
    assert hearth("check-config", str(config)).returncode == 0


BAD = """
[limits]
messages_per_second = "lots"
[server]
listen = ["carrier-pigeon:8080"]
[[rooms]]
id = "r"
title = "R"
[rooms.layout]
hearth = { x = 7.0, y = 5.0, radius = 0.8 }
circle = { x = 7.0, y = 5.0, radius = 2.6, seats = 8 }
spawn = [[1.0, 1.0]]
"""


def test_check_config_names_file_key_and_expectation(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    result = hearth("check-config", str(path))
    assert result.returncode == 2
    assert f"{path}: limits.messages_per_second: expected a number" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_endpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD.replace('messages_per_second = "lots"', ""))
    result = hearth("check-config", str(path))
    assert result.returncode == 2
    assert f"{path}: server.listen[0]: expected a Twisted endpoint string" in result.stderr


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    result = hearth("serve", "--config", str(path))
    assert result.returncode == 2
    assert "limits.messages_per_second" in result.stderr and "Traceback" not in result.stderr


def test_serve_refuses_a_bad_listen_flag() -> None:
    result = hearth("serve", "--listen", "nonsense:1")
    assert result.returncode == 2 and "--listen[0]" in result.stderr


def test_serve_with_no_arguments_runs_the_shipped_config_on_8080(tmp_path: Path) -> None:
    served = ServedHearth(env={"HOME": str(tmp_path)})
    try:
        port = served.wait_ready()
        assert port == 8080, served.output()
        with urllib.request.urlopen("http://127.0.0.1:8080/healthz", timeout=5) as response:
            assert response.status == 200
            assert json.loads(response.read())["status"] == "ok"
        with urllib.request.urlopen("http://127.0.0.1:8080/", timeout=5) as response:
            page = response.read().decode()
        assert "Evening circle (demo)" in page
        assert "Hearth is running" in served.output()
    finally:
        assert served.stop() in (0, -15)


@pytest.mark.parametrize("flag", ["--listen"])
def test_listen_flag_overrides_config(flag: str, tmp_path: Path) -> None:
    served = ServedHearth(flag, "tcp:0:interface=127.0.0.1", env={"HOME": str(tmp_path)})
    try:
        port = served.wait_ready()
        assert port not in (0, 8080)
    finally:
        served.stop()


@pytest.mark.parametrize("endpoint", ["ssl:0:privateKey={missing}",
                                      "ssl:0:privateKey={directory}",
                                      "ssl:0:privateKey={garbage}"])
def test_an_unusable_tls_key_file_is_named_not_a_traceback(tmp_path: Path, endpoint: str) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    endpoint = endpoint.format(missing=tmp_path / "nowhere.pem", directory=tmp_path,
                               garbage=garbage)
    config = tmp_path / "hearth.toml"
    config.write_text(Path("config/hearth.toml").read_text(encoding="utf-8")
                      .replace('listen = ["tcp:8080:interface=127.0.0.1"]',
                               f"listen = [{json.dumps(endpoint)}]"), encoding="utf-8")
    shutil.copytree(SHIPPED_CRISIS, tmp_path / "crisis")
    for command in (["check-config", str(config)], ["serve", "--config", str(config)]):
        result = hearth(*command)
        assert result.returncode == 2, result.stderr
        assert f"{config}: server.listen[0]: " in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    result = hearth("serve", "--listen", endpoint)
    assert result.returncode == 2 and "--listen[0]: " in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_a_port_in_use_says_so_and_exits(tmp_path: Path) -> None:
    """Not a process that runs on listening nowhere (a service manager would think it up)."""
    import socket
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        result = hearth("serve", "--listen", f"tcp:{port}:interface=127.0.0.1", home=tmp_path)
    finally:
        taken.close()
    assert result.returncode == 1, result.stdout[-2000:]
    assert f"hearth: cannot listen on tcp:{port}:interface=127.0.0.1" in result.stderr
    assert "Address already in use" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("problem", ["a file", "corrupt secrets", "cannot be made"])
def test_an_unusable_data_directory_is_named_not_a_traceback(tmp_path: Path, problem: str) -> None:
    data = tmp_path / "data"
    if problem == "a file":
        data.write_text("not a directory\n")
        expected = "server.data_dir: expected a directory"
    elif problem == "corrupt secrets":
        data.mkdir()
        (data / "secrets.json").write_text("{")
        expected = "secrets.json: expected a JSON object"
    else:
        (tmp_path / "blocker").write_text("a file where a directory should be\n")
        data = tmp_path / "blocker" / "data"
        expected = "server.data_dir: cannot make"
    config = tmp_path / "hearth.toml"
    config.write_text(Path("config/hearth.toml").read_text(encoding="utf-8").replace(
        '# data_dir = "/var/lib/hearth"', f"data_dir = {json.dumps(str(data))}"),
        encoding="utf-8")
    shutil.copytree(SHIPPED_CRISIS, tmp_path / "crisis")
    for command in (["check-config", str(config)],
                    ["serve", "--config", str(config), "--listen", "tcp:0:interface=127.0.0.1"]):
        result = hearth(*command)
        assert result.returncode == 2, result.stdout[-1000:] + result.stderr[-2000:]
        assert expected in result.stderr and str(config) in result.stderr, result.stderr
        assert "Traceback" not in result.stderr + result.stdout


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_second_server_on_a_data_directory_in_use_touches_nothing(tmp_path: Path) -> None:
    """One owner per data directory: a second `hearth serve` on it (here on the first one's
    port, so it cannot listen either) used to replay the first one's outbox and save its own
    rooms there on the way out. Now it says whose the directory is and exits 1 at once."""
    from hearth.spaces.config import to_toml
    from tests.support.config import BASE
    data = tmp_path / "data"
    config = tmp_path / "hearth.toml"
    config.write_text(to_toml({**BASE, "server": {**BASE["server"], "data_dir": str(data)}}))
    first = ServedHearth("--config", str(config))
    try:
        port = first.wait_ready()
        before = _files(data)
        second = hearth("serve", "--config", str(config),
                        "--listen", f"tcp:{port}:interface=127.0.0.1")
        assert second.returncode == 1, second.stdout[-2000:] + second.stderr[-2000:]
        assert f"{data} is in use by another hearth serve (pid {first.proc.pid})" \
            in second.stderr, second.stderr
        assert "Traceback" not in second.stderr + second.stdout
        assert _files(data) == before
        assert first.proc.poll() is None
    finally:
        first.stop()
    os.close(lock_data_dir(data))  # the lock went with its owner


def test_the_data_directory_lock_is_one_owners_and_goes_with_it(tmp_path: Path) -> None:
    held = lock_data_dir(tmp_path / "data")
    try:
        assert stat.S_IMODE((tmp_path / "data" / "serve.lock").stat().st_mode) == 0o600
        with pytest.raises(DataDirInUse, match=f"pid {os.getpid()}"):
            lock_data_dir(tmp_path / "data")
    finally:
        os.close(held)
    os.close(lock_data_dir(tmp_path / "data"))
