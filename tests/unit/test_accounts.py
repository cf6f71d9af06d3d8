"""Facilitator accounts: the file, argon2id hashes, equal work for unknown names, TOTP."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from hearth.moderation.accounts import (
    FILE_NAME,
    TOTP_STEP,
    AccountError,
    AccountStore,
    new_totp_secret,
    normalise_name,
    totp_code,
    totp_match,
    totp_uri,
)

PASSWORD = "correct horse battery staple"
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def cheap_hasher() -> PasswordHasher:
    """Still argon2id, with parameters small enough for tests."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified: list[str] = []

    def verify(self, hash: Any, password: Any) -> bool:
        self.verified.append(hash if isinstance(hash, str) else hash.decode())
        return super().verify(hash, password)


@pytest.fixture
def store(tmp_path: Path) -> AccountStore:
    return AccountStore.in_data_dir(tmp_path / "data", cheap_hasher())


def test_add_stores_an_argon2id_hash_in_a_private_file(store: AccountStore) -> None:
    account = store.add("Ana", PASSWORD, NOW)
    assert account.name == "ana" and account.role == "facilitator" and not account.has_totp
    assert store.path.name == FILE_NAME
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    raw = store.path.read_text()
    assert PASSWORD not in raw
    data = json.loads(raw)
    assert data["format"] == 1
    assert data["accounts"][0]["password"].startswith("$argon2id$")
    assert not list(store.path.parent.glob(".*.tmp"))  # the atomic write left nothing behind
    assert PASSWORD not in repr(account) and account.password_hash not in repr(account)


def test_operator_role_and_list(store: AccountStore) -> None:
    store.add("zed", PASSWORD, NOW, role="operator")
    store.add("ana", PASSWORD, NOW)
    assert [(a.name, a.role) for a in store.all()] == [("ana", "facilitator"), ("zed", "operator")]


@pytest.mark.parametrize("name", ["", "-ana", "ana smith", "a" * 41, "ána", "ana/../x"])
def test_bad_names_are_refused(store: AccountStore, name: str) -> None:
    with pytest.raises(AccountError, match="expected 1 to 40 lowercase letters"):
        store.add(name, PASSWORD, NOW)
    assert not store.path.exists()


@pytest.mark.parametrize("password,fragment", [
    ("short", "at least 12 characters"),
    ("x" * 1025, "at most 1024"),
    (" leading space is lost", "no spaces at the start"),
])
def test_weak_passwords_are_refused(store: AccountStore, password: str, fragment: str) -> None:
    with pytest.raises(AccountError, match=fragment):
        store.add("ana", password, NOW)


def test_a_name_is_added_once(store: AccountStore) -> None:
    store.add("ana", PASSWORD, NOW)
    with pytest.raises(AccountError, match="already exists"):
        store.add("ANA", PASSWORD, NOW)


def test_check_password(store: AccountStore) -> None:
    account = store.add("ana", PASSWORD, NOW)
    assert store.check_password(account, PASSWORD)
    assert not store.check_password(account, PASSWORD + "!")
    assert not store.check_password(None, PASSWORD)
    assert not store.check_password(account, PASSWORD + "x" * 2000)


def test_an_unknown_name_costs_one_verification_like_a_wrong_password(tmp_path: Path) -> None:
    hasher = CountingHasher()
    store = AccountStore.in_data_dir(tmp_path, hasher)
    account = store.add("ana", PASSWORD, NOW)
    assert not store.check_password(account, "wrong password!")
    assert not store.check_password(None, "wrong password!")
    assert len(hasher.verified) == 2
    real, dummy = hasher.verified
    assert real == account.password_hash and dummy != real
    # Same algorithm and parameters, so the same cost.
    assert real.split("$")[1:4] == dummy.split("$")[1:4]


def test_reset_changes_the_password_and_the_generation(store: AccountStore) -> None:
    before = store.add("ana", PASSWORD, NOW)
    after = store.reset("ana", "a whole new passphrase")
    assert after.generation == before.generation + 1
    assert not store.check_password(after, PASSWORD)
    assert store.check_password(after, "a whole new passphrase")
    with pytest.raises(AccountError, match="there is no account 'bob'"):
        store.reset("bob", "a whole new passphrase")


def test_remove(store: AccountStore) -> None:
    store.add("ana", PASSWORD, NOW)
    store.remove("ana")
    assert store.get("ana") is None
    with pytest.raises(AccountError, match="there is no account"):
        store.remove("ana")


def test_a_running_server_sees_what_the_cli_changed(tmp_path: Path) -> None:
    server = AccountStore.in_data_dir(tmp_path, cheap_hasher())
    cli = AccountStore.in_data_dir(tmp_path, cheap_hasher())
    assert server.get("ana") is None
    cli.add("ana", PASSWORD, NOW)
    assert server.get("ana") is not None
    cli.remove("ana")
    assert server.get("ana") is None


def test_two_writers_keep_each_others_changes(tmp_path: Path) -> None:
    first = AccountStore.in_data_dir(tmp_path, cheap_hasher())
    second = AccountStore.in_data_dir(tmp_path, cheap_hasher())
    first.add("ana", PASSWORD, NOW)
    second.add("bob", PASSWORD, NOW)  # reads the file fresh under the lock
    assert [a.name for a in first.all()] == ["ana", "bob"]


@pytest.mark.parametrize("content,fragment", [
    ("{", "not valid JSON"),
    ('{"format": 2, "accounts": []}', "format: expected"),
    ('{"format": 1, "accounts": [{"name": "ana", "role": "admin"}]}', "accounts[0].role: expected"),
    ('{"format": 1, "accounts": [{"name": "ana", "role": "operator", "password": "plain"}]}',
     "accounts[0].password: expected an argon2 hash"),
])
def test_a_damaged_file_is_named_with_the_key(tmp_path: Path, content: str, fragment: str) -> None:
    (tmp_path / FILE_NAME).write_text(content)
    store = AccountStore.in_data_dir(tmp_path, cheap_hasher())
    with pytest.raises(AccountError) as caught:
        store.get("ana")
    assert str(caught.value).startswith(str(tmp_path / FILE_NAME)) and fragment in str(caught.value)


def test_normalise_name() -> None:
    assert normalise_name("  Ana.B ") == "ana.b"
    assert normalise_name("correct horse battery staple") is None


# --- TOTP ---------------------------------------------------------------------------------


def test_totp_codes_are_accepted_within_one_step_and_once(store: AccountStore) -> None:
    store.add("ana", PASSWORD, NOW)
    secret = new_totp_secret()
    account = store.set_totp("ana", secret)
    assert account.has_totp and account.generation == 2 and secret not in repr(account)
    assert not store.check_totp(account, "", NOW)
    assert not store.check_totp(account, "abcdef", NOW)
    assert not store.check_totp(account, totp_code(secret, NOW - 2 * TOTP_STEP), NOW)
    assert not store.check_totp(account, totp_code(secret, NOW + 2 * TOTP_STEP), NOW)
    code = totp_code(secret, NOW - TOTP_STEP)  # an app clock a little slow
    assert store.check_totp(account, code, NOW)
    assert not store.check_totp(account, code, NOW)  # no replay
    current = totp_code(secret, NOW)
    assert store.check_totp(account, current[:3] + " " + current[3:], NOW)
    assert not store.check_totp(account, current, NOW + 1)


def test_totp_match_reports_the_step() -> None:
    secret = new_totp_secret()
    step = int(NOW) // TOTP_STEP
    assert totp_match(secret, totp_code(secret, NOW), NOW, -1) == step
    assert totp_match(secret, totp_code(secret, NOW), NOW, step) is None


def test_an_account_without_totp_ignores_the_code(store: AccountStore) -> None:
    account = store.add("ana", PASSWORD, NOW)
    assert store.check_totp(account, "", NOW) and store.check_totp(account, "123456", NOW)


def test_totp_uri_is_what_authenticator_apps_read() -> None:
    secret = new_totp_secret()
    uri = totp_uri(secret, "ana", "Hearth (demo)")
    assert uri.startswith("otpauth://totp/Hearth%20%28demo%29:ana?")
    assert f"secret={secret}" in uri and "issuer=Hearth%20%28demo%29" in uri
    assert "algorithm=SHA1" in uri and "digits=6" in uri and "period=30" in uri
    assert len(secret) == 32  # 160 bits in base32


def test_the_default_hasher_is_argon2id() -> None:
    assert AccountStore(Path("/nonexistent/x.json")).hasher.type.name == "ID"
