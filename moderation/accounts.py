"""Facilitator accounts: a name, a role, an argon2id password hash, an optional TOTP secret.

They live in `<data_dir>/facilitators.json` (mode 0600 in the 0700 data
directory), written atomically (write_atomically: write, fsync, rename) under an
exclusive lock on the data directory, so two `hearth facilitator` commands
never lose each other's change. The CLI is the only writer; a running server
reads the file again whenever it changes (a new password, a removed account
or a new TOTP secret applies at the next request, and ends the sessions
signed in with the old one: see `generation`).

    {"format": 1, "accounts": [
      {"name": "ana", "role": "facilitator", "password": "$argon2id$v=19$...",
       "totp": null, "created": 1767225600, "generation": 1}]}

Passwords are hashed with argon2id (argon2-cffi's defaults: RFC 9106's
low-memory profile, 64 MiB, 3 passes). Verifying one takes tens of
milliseconds on purpose, so the server does it off the reactor thread
(`check_password` is safe to call from a worker thread). An unknown name is
checked against a dummy hash with the same parameters, so it costs the same
time as a wrong password.

Nothing here logs, and no message names a password or a TOTP secret.
"""

from __future__ import annotations

import base64
import fcntl
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import quote

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from hearth.moderation.journal import write_atomically  # the one atomic writer (web.datadir re-exports it)

AccountRole = Literal["facilitator", "operator"]
ROLES: tuple[AccountRole, ...] = ("facilitator", "operator")
FILE_NAME = "facilitators.json"
FORMAT = 1

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}\Z")
NAME_RULE = "1 to 40 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
MIN_PASSWORD = 12
MAX_PASSWORD = 1024

# TOTP as every authenticator app speaks it (RFC 6238): SHA-1, 6 digits, 30 s.
TOTP_DIGITS = 6
TOTP_STEP = 30
TOTP_WINDOW = 1  # steps accepted either side of now, for clock drift
TOTP_SECRET_BYTES = 20  # 160 bits, RFC 4226's recommendation


class AccountError(Exception):
    """A problem an operator can act on; the message says what and where."""


@dataclass(frozen=True, kw_only=True)
class Account:
    name: str
    role: AccountRole
    password_hash: str
    totp_secret: str | None  # base32, as shown to the authenticator app
    created: int  # Unix seconds
    # Bumped when the password, the TOTP secret or the role changes: a session
    # signed in under an older generation ends at its next request.
    generation: int = 1

    @property
    def has_totp(self) -> bool:
        return self.totp_secret is not None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "password": self.password_hash,
                "totp": self.totp_secret, "created": self.created, "generation": self.generation}

    def __repr__(self) -> str:  # never print the hash or the TOTP secret
        return (f"Account(name={self.name!r}, role={self.role!r}, totp={self.has_totp}, "
                f"generation={self.generation})")


# --- names and passwords -------------------------------------------------------------


def normalise_name(raw: str) -> str | None:
    """The account name a person typed, or None if no account could have it."""
    name = raw.strip().lower()
    return name if NAME.match(name) else None


def check_name(raw: str) -> str:
    name = normalise_name(raw)
    if name is None:
        raise AccountError(f"account name {raw[:60]!r}: expected {NAME_RULE}")
    return name


def check_new_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: expected at least {MIN_PASSWORD} characters "
                           f"(a passphrase of several words is easiest), got {len(password)}")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"password: expected at most {MAX_PASSWORD} characters")
    if password != password.strip():
        raise AccountError("password: expected no spaces at the start or the end "
                           "(they are easy to lose when typing it)")
    return password


def verify_password(hasher: PasswordHasher, encoded: str, password: str) -> bool:
    """argon2 verification; slow by design, so call it off the reactor thread."""
    try:
        return hasher.verify(encoded, password)
    except (VerificationError, InvalidHashError):
        return False


# --- TOTP ------------------------------------------------------------------------------


def new_totp_secret() -> str:
    return base64.b32encode(secrets.token_bytes(TOTP_SECRET_BYTES)).decode("ascii")


def _totp(secret: str) -> TOTP:
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    return TOTP(key, TOTP_DIGITS, SHA1(), TOTP_STEP, enforce_key_length=False)


def totp_uri(secret: str, name: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app reads (as a QR code or pasted).

    Built by hand rather than with TOTP.get_provisioning_uri, which writes a space in
    the issuer parameter as '+': the Key URI format wants %20, and some apps show '+'.
    """
    _totp(secret)  # a secret the apps would refuse fails here, not on the phone
    label = f"{quote(issuer, safe='')}:{quote(name, safe='')}"
    return (f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer, safe='')}"
            f"&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP}")


def totp_code(secret: str, now: float) -> str:
    """The code an authenticator shows at `now` (tests and `hearth facilitator totp`)."""
    return _totp(secret).generate(int(now)).decode("ascii")


def totp_match(secret: str, code: str, now: float, after_step: int) -> int | None:
    """The time step `code` is valid for, within TOTP_WINDOW of now and later than
    `after_step` (a code is good once), or None."""
    code = code.replace(" ", "")
    if len(code) != TOTP_DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = _totp(secret)
    step = int(now) // TOTP_STEP
    found = None
    for candidate in range(step - TOTP_WINDOW, step + TOTP_WINDOW + 1):
        expected = totp.generate(candidate * TOTP_STEP)
        if hmac.compare_digest(expected, code.encode("ascii")) and candidate > after_step:
            found = candidate
    return found


# --- the file ---------------------------------------------------------------------------


def _parse(path: Path, raw: bytes) -> dict[str, Account]:
    def bad(where: str, expected: str) -> AccountError:
        return AccountError(f"{path}: {where}: expected {expected}")

    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AccountError(f"{path}: not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise bad("format", f"a JSON object with \"format\": {FORMAT}")
    items = data.get("accounts")
    if not isinstance(items, list):
        raise bad("accounts", "a list")
    accounts: dict[str, Account] = {}
    for i, item in enumerate(items):
        where = f"accounts[{i}]"
        if not isinstance(item, dict):
            raise bad(where, "an object")
        name = item.get("name")
        if not isinstance(name, str) or not NAME.match(name) or name in accounts:
            raise bad(f"{where}.name", f"a unique name of {NAME_RULE}")
        role = item.get("role")
        if role not in ROLES:
            raise bad(f"{where}.role", "'facilitator' or 'operator'")
        password = item.get("password")
        if not isinstance(password, str) or not password.startswith("$argon2"):
            raise bad(f"{where}.password", "an argon2 hash")
        totp = item.get("totp")
        if totp is not None and (not isinstance(totp, str)
                                 or not re.fullmatch(r"[A-Z2-7]{16,128}", totp)):
            raise bad(f"{where}.totp", "null or a base32 secret")
        created, generation = item.get("created"), item.get("generation")
        if isinstance(created, bool) or not isinstance(created, int):
            raise bad(f"{where}.created", "Unix seconds")
        if isinstance(generation, bool) or not isinstance(generation, int) or generation < 1:
            raise bad(f"{where}.generation", "a whole number from 1")
        accounts[name] = Account(name=name, role=cast(AccountRole, role), password_hash=password,
                                 totp_secret=totp, created=created, generation=generation)
    return accounts


def _serialise(accounts: dict[str, Account]) -> bytes:
    body = {"format": FORMAT, "accounts": [a.to_json() for a in sorted(
        accounts.values(), key=lambda a: a.name)]}
    return (json.dumps(body, indent=1) + "\n").encode("utf-8")


class AccountStore:
    """The accounts file: read (again when it changed) by the server, changed by the CLI."""

    def __init__(self, path: Path, hasher: PasswordHasher | None = None) -> None:
        self.path = path
        self.hasher = hasher or PasswordHasher()
        self._accounts: dict[str, Account] = {}
        self._signature: tuple[int, int, int] | None = None
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()
        self._totp_steps: dict[str, int] = {}  # name -> last accepted step (no replay)

    @classmethod
    def in_data_dir(cls, data_dir: Path, hasher: PasswordHasher | None = None) -> AccountStore:
        return cls(data_dir / FILE_NAME, hasher)

    # --- reading -------------------------------------------------------------------

    def _refresh(self) -> None:
        """Read the file if it changed since the last read (a rename gives a new inode)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._accounts, self._signature = {}, None
            return
        except OSError as exc:
            raise AccountError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        if signature == self._signature:
            return
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise AccountError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        self._accounts = _parse(self.path, raw)
        self._signature = signature

    def get(self, name: str) -> Account | None:
        self._refresh()
        return self._accounts.get(name)

    def all(self) -> list[Account]:
        self._refresh()
        return sorted(self._accounts.values(), key=lambda a: a.name)

    # --- checking (the server) ---------------------------------------------------------

    def dummy_hash(self) -> str:
        """A hash no password matches, with this hasher's parameters (made once)."""
        with self._dummy_lock:
            if self._dummy is None:
                self._dummy = self.hasher.hash(secrets.token_urlsafe(32))
            return self._dummy

    def check_password(self, account: Account | None, password: str) -> bool:
        """One argon2 verification whether or not the account exists. Thread-safe."""
        encoded = account.password_hash if account is not None else self.dummy_hash()
        ok = verify_password(self.hasher, encoded, password[:MAX_PASSWORD])
        return ok and account is not None and len(password) <= MAX_PASSWORD

    def check_totp(self, account: Account, code: str, now: float) -> bool:
        """True when the account has no TOTP, or `code` is current and not used before."""
        if account.totp_secret is None:
            return True
        last = self._totp_steps.get(account.name, -1)
        step = totp_match(account.totp_secret, code, now, last)
        if step is None:
            return False
        self._totp_steps[account.name] = step
        return True

    # --- changing (the CLI) ---------------------------------------------------------------

    @contextmanager
    def _editing(self) -> Iterator[dict[str, Account]]:
        """Lock the data directory, read the file fresh, yield it, write it back."""
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if directory.stat().st_mode & 0o077:
            os.chmod(directory, 0o700)
        fd = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._signature = None
            self._refresh()
            accounts = dict(self._accounts)
            yield accounts
            write_atomically(self.path, _serialise(accounts))
            self._signature = None
            self._refresh()
        finally:
            os.close(fd)  # releases the lock

    def add(self, name: str, password: str, now: float,
            role: AccountRole = "facilitator") -> Account:
        name, password = check_name(name), check_new_password(password)
        if role not in ROLES:
            raise AccountError(f"role: expected 'facilitator' or 'operator', got {role!r}")
        password_hash = self.hasher.hash(password)
        with self._editing() as accounts:
            if name in accounts:
                raise AccountError(f"account {name!r} already exists "
                                   f"(`hearth facilitator reset {name}` sets a new password)")
            account = Account(name=name, role=role, password_hash=password_hash, totp_secret=None,
                              created=int(now))
            accounts[name] = account
        return account

    def _existing(self, accounts: dict[str, Account], name: str) -> Account:
        account = accounts.get(name.strip().lower())
        if account is None:
            raise AccountError(f"there is no account {name[:60]!r} "
                               "(`hearth facilitator list` shows them)")
        return account

    def remove(self, name: str) -> Account:
        with self._editing() as accounts:
            account = self._existing(accounts, name)
            del accounts[account.name]
        return account

    def reset(self, name: str, password: str) -> Account:
        check_new_password(password)
        password_hash = self.hasher.hash(password)
        with self._editing() as accounts:
            account = self._existing(accounts, name)
            account = accounts[account.name] = replace(
                account, password_hash=password_hash, generation=account.generation + 1)
        return account

    def set_totp(self, name: str, secret: str | None) -> Account:
        """Set (or, with None, remove) the account's TOTP secret."""
        with self._editing() as accounts:
            account = self._existing(accounts, name)
            account = accounts[account.name] = replace(
                account, totp_secret=secret, generation=account.generation + 1)
        return account
