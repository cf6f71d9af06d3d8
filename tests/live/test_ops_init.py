"""`hearth init DIR`: a deployment directory that checks, serves, and keeps its secrets private."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

from hearth.spaces.config import CrisisConfig, load_config
from tests.support.serving import ServedHearth


def hearth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hearth.web.cli", *args], capture_output=True,
                          text=True, timeout=60)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_makes_a_directory_that_checks_and_serves(tmp_path: Path) -> None:
    target = tmp_path / "deploy"
    result = hearth("init", str(target))
    assert result.returncode == 0, result.stderr
    config_path = target / "hearth.toml"
    text = config_path.read_text()
    assert text.startswith("# Hearth — this deployment's configuration, written by `hearth init`")
    raw = tomllib.loads(text)
    assert raw["server"]["data_dir"] == "data"  # relative: the directory can move
    assert raw["crisis"]["directory"] == "crisis"
    assert "# " in text and "[retention]" in text and "[metrics]" in text  # commented, whole

    assert mode(config_path) == 0o600
    assert mode(target / "data") == 0o700
    secrets = target / "data" / "secrets.json"
    assert mode(secrets) == 0o600
    assert set(json.loads(secrets.read_text())) == {"franking", "cookie", "address_seed"}
    assert (target / "crisis" / "escalation.toml").exists()  # its own copy, to edit

    config = load_config(config_path)
    assert config.server.data_dir == str(target / "data")
    assert config.crisis.directory == str(target / "crisis")

    checked = hearth("check-config", str(config_path))
    assert checked.returncode == 0 and "OK" in checked.stdout, checked.stderr

    keys = secrets.read_text()
    served = ServedHearth("--config", str(config_path), "--listen", "tcp:0:interface=127.0.0.1")
    try:
        port = served.wait_ready()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
            assert json.loads(response.read())["status"] == "ok"
    finally:
        assert served.stop() in (0, -15)
    assert secrets.read_text() == keys  # serving uses the secrets init made
    assert mode(target / "data" / "audit.jsonl") == 0o600


def test_init_refuses_to_overwrite_a_config(tmp_path: Path) -> None:
    target = tmp_path / "deploy"
    assert hearth("init", str(target)).returncode == 0
    config_path = target / "hearth.toml"
    config_path.write_text(config_path.read_text() + "\n# my own edits\n")
    secrets_before = (target / "data" / "secrets.json").read_text()
    again = hearth("init", str(target))
    assert again.returncode == 1
    assert f"{config_path} already exists" in again.stderr and "Traceback" not in again.stderr
    assert config_path.read_text().endswith("# my own edits\n")
    assert (target / "data" / "secrets.json").read_text() == secrets_before


def test_init_can_point_at_the_shipped_crisis_data(tmp_path: Path) -> None:
    target = tmp_path / "deploy"
    result = hearth("init", str(target), "--shared-crisis")
    assert result.returncode == 0, result.stderr
    assert not (target / "crisis").exists()
    assert load_config(target / "hearth.toml").crisis.directory == CrisisConfig.directory


def test_init_takes_the_public_url_and_a_fresh_webhook_secret(tmp_path: Path) -> None:
    target = tmp_path / "deploy"
    result = hearth("init", str(target), "--public-url", "https://groups.example.org/")
    assert result.returncode == 0, result.stderr
    config = load_config(target / "hearth.toml")
    assert config.crisis.public_url == "https://groups.example.org"
    text = (target / "hearth.toml").read_text()
    secret = text.split('# secret = "', 1)[1].split('"', 1)[0]
    assert secret.startswith("whsec_") and len(secret) > 40  # uncommented, it is valid
    other = tmp_path / "other"
    assert hearth("init", str(other)).returncode == 0
    assert secret not in (other / "hearth.toml").read_text()  # one per deployment
    bad = hearth("init", str(tmp_path / "bad"), "--public-url", "groups.example.org")
    assert bad.returncode == 2 and "--public-url" in bad.stderr
    assert not (tmp_path / "bad" / "hearth.toml").exists()


def test_without_a_terminal_init_says_public_url_is_unset(tmp_path: Path) -> None:
    result = hearth("init", str(tmp_path / "deploy"))  # stdin is not a terminal here
    assert result.returncode == 0
    assert "crisis.public_url is not set" in result.stdout
    assert load_config(tmp_path / "deploy" / "hearth.toml").crisis.public_url == ""


def test_hearth_config_and_etc_are_the_default_config(tmp_path: Path) -> None:
    import os

    from hearth.web.cli import default_config
    etc = tmp_path / "etc-hearth.toml"
    assert default_config({}, etc) is None  # the shipped config
    etc.write_text("")
    assert default_config({}, etc) == etc
    assert default_config({"HEARTH_CONFIG": "/srv/h.toml"}, etc) == Path("/srv/h.toml")
    assert hearth("init", str(tmp_path / "deploy")).returncode == 0
    config = tmp_path / "deploy" / "hearth.toml"
    env = {**os.environ, "HEARTH_CONFIG": str(config)}
    for command in (["check-config"], ["privacy", "report"], ["facilitator", "list"]):
        done = subprocess.run([sys.executable, "-m", "hearth.web.cli", *command],
                              capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        assert str(config) in done.stdout or str(tmp_path / "deploy" / "data") in done.stdout


def test_version() -> None:
    from importlib.metadata import version
    result = hearth("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"hearth {version('hearth')}"


def test_init_can_put_the_data_directory_elsewhere(tmp_path: Path) -> None:
    state = tmp_path / "var-lib-hearth"  # the systemd unit's /var/lib/hearth
    result = hearth("init", str(tmp_path / "etc"), "--data-dir", str(state))
    assert result.returncode == 0, result.stderr
    assert load_config(tmp_path / "etc" / "hearth.toml").server.data_dir == str(state)
    assert mode(state) == 0o700 and mode(state / "secrets.json") == 0o600
    assert not (tmp_path / "etc" / "data").exists()
