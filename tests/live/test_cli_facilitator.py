"""`hearth facilitator add|list|remove|reset|totp` as an operator meets it."""

from __future__ import annotations

import http.cookiejar
import json
import re
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from hearth.moderation.accounts import AccountStore, totp_code
from tests.support.serving import ServedHearth

PASSWORD = "correct horse battery staple"

CONFIG = """
[server]
listen = ["tcp:0:interface=127.0.0.1"]
data_dir = "data"
[organisation]
name = "Test Org"
[[rooms]]
id = "r"
title = "Room R"
[rooms.layout]
hearth = { x = 7.0, y = 5.0, radius = 0.8 }
circle = { x = 7.0, y = 5.0, radius = 2.6, seats = 8 }
spawn = [[1.0, 1.0]]
"""


def hearth(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hearth.web.cli", *args], capture_output=True,
                          text=True, timeout=60, input=stdin if stdin is not None else "")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "hearth.toml"
    path.write_text(CONFIG)
    return path


def password_file(tmp_path: Path, password: str = PASSWORD) -> str:
    path = tmp_path / "password.txt"
    path.write_text(password + "\n")
    return str(path)


def store_for(config: Path) -> AccountStore:
    return AccountStore.in_data_dir(config.parent / "data")


def clean(result: subprocess.CompletedProcess[str]) -> None:
    """No traceback, and never the password."""
    assert "Traceback" not in result.stderr, result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def test_add_list_remove(config: Path, tmp_path: Path) -> None:
    added = hearth("facilitator", "add", "ana", "--config", str(config),
                   "--password-file", password_file(tmp_path))
    clean(added)
    assert added.returncode == 0, added.stderr
    assert "Added ana (facilitator)" in added.stdout
    path = config.parent / "data" / "facilitators.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PASSWORD not in path.read_text()
    operator = hearth("facilitator", "add", "zed", "--operator", "--config", str(config),
                      "--password-file", "-", stdin=PASSWORD + "\n")
    assert operator.returncode == 0, operator.stderr
    listed = hearth("facilitator", "list", "--config", str(config))
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split("\t")[:3] == ["ana", "facilitator", "totp off"]
    assert lines[1].split("\t")[:3] == ["zed", "operator", "totp off"]
    account = store_for(config).get("ana")
    assert account is not None and store_for(config).check_password(account, PASSWORD)

    removed = hearth("facilitator", "remove", "ana", "--config", str(config))
    assert removed.returncode == 0 and "Removed ana" in removed.stdout
    assert store_for(config).get("ana") is None
    again = hearth("facilitator", "remove", "ana", "--config", str(config))
    clean(again)
    assert again.returncode == 1 and "there is no account 'ana'" in again.stderr


def test_list_with_no_accounts_says_how_to_add_one(config: Path) -> None:
    listed = hearth("facilitator", "list", "--config", str(config))
    assert listed.returncode == 0 and "hearth facilitator add NAME" in listed.stdout


@pytest.mark.parametrize("args,stdin,fragment", [
    (["add", "Ana Smith"], PASSWORD, "expected 1 to 40 lowercase letters"),
    (["add", "ana"], "short", "at least 12 characters"),
    (["add", "ana"], "", "at least 12 characters"),
])
def test_add_refuses_bad_input_and_writes_nothing(config: Path, args: list[str], stdin: str,
                                                   fragment: str) -> None:
    result = hearth("facilitator", *args, "--config", str(config), "--password-file", "-",
                    stdin=stdin)
    clean(result)
    assert result.returncode == 1 and fragment in result.stderr
    assert not (config.parent / "data" / "facilitators.json").exists()


def test_without_a_terminal_the_password_must_come_from_a_file(config: Path) -> None:
    result = hearth("facilitator", "add", "ana", "--config", str(config))
    clean(result)
    assert result.returncode == 1 and "--password-file" in result.stderr


def test_a_name_is_added_once(config: Path, tmp_path: Path) -> None:
    for expected in (0, 1):
        result = hearth("facilitator", "add", "ana", "--config", str(config),
                        "--password-file", password_file(tmp_path))
        assert result.returncode == expected
    assert "already exists" in result.stderr and "reset ana" in result.stderr


def test_reset_sets_a_new_password(config: Path, tmp_path: Path) -> None:
    hearth("facilitator", "add", "ana", "--config", str(config),
           "--password-file", password_file(tmp_path))
    reset = hearth("facilitator", "reset", "ana", "--config", str(config),
                   "--password-file", "-", stdin="a brand new passphrase\n")
    clean(reset)
    assert reset.returncode == 0, reset.stderr
    account = store_for(config).get("ana")
    assert account is not None and account.generation == 2
    assert store_for(config).check_password(account, "a brand new passphrase")
    assert not store_for(config).check_password(account, PASSWORD)
    unknown = hearth("facilitator", "reset", "bob", "--config", str(config),
                     "--password-file", "-", stdin="a brand new passphrase\n")
    assert unknown.returncode == 1 and "there is no account 'bob'" in unknown.stderr


def test_totp_prints_the_secret_once_and_can_be_disabled(config: Path, tmp_path: Path) -> None:
    hearth("facilitator", "add", "ana", "--config", str(config),
           "--password-file", password_file(tmp_path))
    result = hearth("facilitator", "totp", "ana", "--config", str(config))
    assert result.returncode == 0, result.stderr
    uri = re.search(r"otpauth://totp/\S+", result.stdout)
    assert uri and uri.group(0).startswith("otpauth://totp/Test%20Org:ana?")
    secret = urllib.parse.parse_qs(urllib.parse.urlsplit(uri.group(0)).query)["secret"][0]
    typed = re.search(r"secret \(to type in\): ([A-Z2-7 ]+)", result.stdout)
    assert typed and typed.group(1).replace(" ", "") == secret
    account = store_for(config).get("ana")
    assert account is not None and account.totp_secret == secret
    assert store_for(config).check_totp(account, totp_code(secret, time.time()), time.time())
    assert "totp on" in hearth("facilitator", "list", "--config", str(config)).stdout
    # `list` never shows it again.
    assert secret not in hearth("facilitator", "list", "--config", str(config)).stdout
    off = hearth("facilitator", "totp", "ana", "--disable", "--config", str(config))
    assert off.returncode == 0
    account = store_for(config).get("ana")
    assert account is not None and account.totp_secret is None


def test_a_bad_config_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(CONFIG + "[login]\nlockout_seconds = 'long'\n")
    result = hearth("facilitator", "list", "--config", str(path))
    clean(result)
    assert result.returncode == 2
    assert f"{path}: login.lockout_seconds: expected a number" in result.stderr


def test_help_lists_the_actions() -> None:
    result = hearth("facilitator", "--help")
    assert result.returncode == 0
    for action in ("add", "list", "remove", "reset", "totp"):
        assert action in result.stdout


def test_an_account_added_by_the_cli_signs_in_to_a_served_hearth(config: Path,
                                                                   tmp_path: Path) -> None:
    hearth("facilitator", "add", "ana", "--config", str(config),
           "--password-file", password_file(tmp_path))
    served = ServedHearth("--config", str(config))
    try:
        port = served.wait_ready()
        base = f"http://127.0.0.1:{port}"
        jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
        page = opener.open(f"{base}/login", timeout=10).read().decode()
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found
        form = urllib.parse.urlencode({"name": "ana", "password": PASSWORD,
                                       "csrf": found.group(1)}).encode()
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(f"{base}/login", form, timeout=10)
        assert redirect.value.code == 303 and redirect.value.headers["Location"] == "/console"
        console = opener.open(f"{base}/console", timeout=10).read().decode()
        csrf = re.search(r'data-csrf="([^"]+)"', console)
        assert csrf and "Room R" in console
        request = urllib.request.Request(f"{base}/console/ticket", data=b"", method="POST",
                                         headers={"X-CSRF-Token": csrf.group(1)})
        body = json.loads(opener.open(request, timeout=10).read())
        assert body["role"] == "facilitator" and body["account"] == "ana"
        assert PASSWORD not in served.output()
        assert body["ticket"] not in served.output()
    finally:
        served.stop()


def test_every_account_change_is_audited(config: Path, tmp_path: Path) -> None:
    """add, reset, totp on and off, remove: one audit line each, naming who ran the command,
    the action and the account — never the password or the TOTP secret."""
    import getpass

    from hearth.moderation.audit import read_entries
    pw = password_file(tmp_path)
    for args in (["add", "ana"], ["reset", "ana"], ["totp", "ana"], ["totp", "ana", "--disable"],
                 ["remove", "ana"]):
        extra = ["--password-file", pw] if args[0] in ("add", "reset") else []
        result = hearth("facilitator", *args, "--config", str(config), *extra)
        clean(result)
        assert result.returncode == 0, result.stderr
    secret = re.search(r"secret=([A-Z2-7]+)", (config.parent / "data" / "audit.jsonl").read_text())
    assert secret is None
    entries = list(read_entries(config.parent / "data" / "audit.jsonl"))
    assert [(e.action, e.target, e.outcome) for e in entries] == [
        ("facilitator.add", "ana", "ok"), ("facilitator.reset", "ana", "ok"),
        ("facilitator.totp.on", "ana", "ok"), ("facilitator.totp.off", "ana", "ok"),
        ("facilitator.remove", "ana", "ok")]
    assert {e.actor for e in entries} == {f"cli:{getpass.getuser()}"}
    raw = (config.parent / "data" / "audit.jsonl").read_text()
    assert PASSWORD not in raw and "$argon2" not in raw


def test_a_refused_change_is_not_audited(config: Path, tmp_path: Path) -> None:
    result = hearth("facilitator", "remove", "nobody", "--config", str(config))
    assert result.returncode == 1
    assert not (config.parent / "data" / "audit.jsonl").exists() or \
        (config.parent / "data" / "audit.jsonl").read_text() == ""
