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
       "totp": null, "created": 1767225600, "generation": 1, "rev": 1767225600000}],
     "removed": {"bob": 1767312000000}}

With several nodes the file is each node's copy of the organisation's accounts
(web/shared_accounts.py): every change has a revision (`rev`, milliseconds, and
always above the name's last one), a removed name keeps its revision in
`removed`, and a node merges what other nodes changed (`merge`) — the newer
revision of a name wins — so an old record replayed never undoes a newer change.

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
import time
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
TOTP_FILE = "totp-used.json"  # the last TOTP step used per account: a code works once
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
    rev: int = 0  # the revision of the last change (0: made before revisions existed)

    @property
    def has_totp(self) -> bool:
        return self.totp_secret is not None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "password": self.password_hash,
                "totp": self.totp_secret, "created": self.created, "generation": self.generation,
                "rev": self.rev}

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


def _whole(value: Any, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


def parse_account(item: Any, where: str = "account") -> Account:
    """One account object (from the file, or a record another node shared)."""
    def bad(field: str, expected: str) -> AccountError:
        return AccountError(f"{where}{field}: expected {expected}")

    if not isinstance(item, dict):
        raise bad("", "an object")
    name = item.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise bad(".name", f"a name of {NAME_RULE}")
    role = item.get("role")
    if role not in ROLES:
        raise bad(".role", "'facilitator' or 'operator'")
    password = item.get("password")
    if not isinstance(password, str) or not password.startswith("$argon2"):
        raise bad(".password", "an argon2 hash")
    totp = item.get("totp")
    if totp is not None and (not isinstance(totp, str)
                             or not re.fullmatch(r"[A-Z2-7]{16,128}", totp)):
        raise bad(".totp", "null or a base32 secret")
    created, generation, rev = item.get("created"), item.get("generation"), item.get("rev", 0)
    if not isinstance(created, int) or not _whole(created, -(2**62)):
        raise bad(".created", "Unix seconds")
    if not isinstance(generation, int) or not _whole(generation, 1):
        raise bad(".generation", "a whole number from 1")
    if not isinstance(rev, int) or not _whole(rev, 0):
        raise bad(".rev", "a whole number from 0")
    return Account(name=name, role=cast(AccountRole, role), password_hash=password,
                   totp_secret=totp, created=created, generation=generation, rev=rev)


def _parse(path: Path, raw: bytes) -> tuple[dict[str, Account], dict[str, int]]:
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
        account = parse_account(item, f"{path}: accounts[{i}]")
        if account.name in accounts:
            raise bad(f"accounts[{i}].name", f"a unique name of {NAME_RULE}")
        accounts[account.name] = account
    removed = data.get("removed", {})
    if not isinstance(removed, dict) or not all(
            isinstance(k, str) and _whole(v, 0) for k, v in removed.items()):
        raise bad("removed", "an object of names and revisions")
    return accounts, dict(removed)


def _serialise(accounts: dict[str, Account], removed: dict[str, int]) -> bytes:
    body: dict[str, Any] = {"format": FORMAT, "accounts": [a.to_json() for a in sorted(
        accounts.values(), key=lambda a: a.name)]}
    if removed:
        body["removed"] = dict(sorted(removed.items()))
    return (json.dumps(body, indent=1) + "\n").encode("utf-8")


def next_rev(current: int, now: float) -> int:
    """A change's revision: milliseconds now, and above the name's last revision."""
    return max(current + 1, int(now * 1000))


class AccountStore:
    """The accounts file: read (again when it changed) by the server, changed by the CLI."""

    def __init__(self, path: Path, hasher: PasswordHasher | None = None) -> None:
        self.path = path
        self.hasher = hasher or PasswordHasher()
        self._accounts: dict[str, Account] = {}
        self._removed: dict[str, int] = {}  # name -> revision of its removal
        self._signature: tuple[int, int, int] | None = None
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()
        # name -> last accepted TOTP step (no replay), kept in TOTP_FILE beside the accounts
        # so that a restart does not forget it (web/auth.py also claims each step in the
        # broker, so no two nodes accept the same one).
        self._totp_steps: dict[str, int] | None = None

    @classmethod
    def in_data_dir(cls, data_dir: Path, hasher: PasswordHasher | None = None) -> AccountStore:
        return cls(data_dir / FILE_NAME, hasher)

    # --- reading -------------------------------------------------------------------

    def _refresh(self) -> None:
        """Read the file if it changed since the last read (a rename gives a new inode)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._accounts, self._removed, self._signature = {}, {}, None
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
        self._accounts, self._removed = _parse(self.path, raw)
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
        """True when the account has no TOTP, or `code` is current and not used before
        (then its step is used up, here and across a restart)."""
        step = self.totp_step(account, code, now)
        if step is None:
            return False
        if step >= 0:
            self.use_totp_step(account.name, step)
        return True

    def totp_step(self, account: Account, code: str, now: float) -> int | None:
        """The step `code` is good for (later than any this node accepted for the account),
        -1 for an account without TOTP, or None."""
        if account.totp_secret is None:
            return -1
        last = self._steps().get(account.name, -1)
        return totp_match(account.totp_secret, code, now, last)

    def use_totp_step(self, name: str, step: int) -> None:
        """Remember that `step` was used for `name` (written to disk before returning)."""
        steps = self._steps()
        if step > steps.get(name, -1):
            steps[name] = step
            write_atomically(self.path.with_name(TOTP_FILE),
                             json.dumps(steps, sort_keys=True).encode())

    def _steps(self) -> dict[str, int]:
        if self._totp_steps is None:
            try:
                raw = json.loads(self.path.with_name(TOTP_FILE).read_bytes())
                self._totp_steps = {k: v for k, v in raw.items()
                                    if isinstance(k, str) and _whole(v, 0)}
            except (OSError, ValueError, AttributeError):
                self._totp_steps = {}
        return self._totp_steps

    # --- changing (the CLI) ---------------------------------------------------------------

    @contextmanager
    def _editing(self) -> Iterator[tuple[dict[str, Account], dict[str, int]]]:
        """Lock the data directory, read the file fresh, yield it (accounts and removed
        names), write it back if it changed."""
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if directory.stat().st_mode & 0o077:
            os.chmod(directory, 0o700)
        fd = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._signature = None
            self._refresh()
            accounts, removed = dict(self._accounts), dict(self._removed)
            yield accounts, removed
            if (accounts, removed) != (self._accounts, self._removed):
                write_atomically(self.path, _serialise(accounts, removed))
            self._signature = None
            self._refresh()
        finally:
            os.close(fd)  # releases the lock

    def _rev(self, accounts: dict[str, Account], removed: dict[str, int], name: str) -> int:
        """The last revision of `name`: its account's, its removal's, or -1."""
        account = accounts.get(name)
        return account.rev if account is not None else removed.get(name, -1)

    def add(self, name: str, password: str, now: float,
            role: AccountRole = "facilitator") -> Account:
        name, password = check_name(name), check_new_password(password)
        if role not in ROLES:
            raise AccountError(f"role: expected 'facilitator' or 'operator', got {role!r}")
        password_hash = self.hasher.hash(password)
        with self._editing() as (accounts, removed):
            if name in accounts:
                raise AccountError(f"account {name!r} already exists "
                                   f"(`hearth facilitator reset {name}` sets a new password)")
            # A name added again after a removal starts above every generation it had (a
            # generation never exceeds its revision), so no ticket or session of the old
            # account can pass for the new one.
            rev = next_rev(self._rev(accounts, removed, name), now)
            account = Account(name=name, role=role, password_hash=password_hash, totp_secret=None,
                              created=int(now), generation=removed.pop(name, 0) + 1, rev=rev)
            accounts[name] = account
        return account

    def _existing(self, accounts: dict[str, Account], name: str) -> Account:
        account = accounts.get(name.strip().lower())
        if account is None:
            raise AccountError(f"there is no account {name[:60]!r} "
                               "(`hearth facilitator list` shows them)")
        return account

    def remove(self, name: str, now: float | None = None) -> Account:
        when = time.time() if now is None else now
        with self._editing() as (accounts, removed):
            account = self._existing(accounts, name)
            del accounts[account.name]
            removed[account.name] = next_rev(account.rev, when)
        return account

    def _changed(self, name: str, now: float | None, **fields: Any) -> Account:
        when = time.time() if now is None else now
        with self._editing() as (accounts, _):
            account = self._existing(accounts, name)
            account = accounts[account.name] = replace(
                account, generation=account.generation + 1, rev=next_rev(account.rev, when),
                **fields)
        return account

    def reset(self, name: str, password: str, now: float | None = None) -> Account:
        check_new_password(password)
        return self._changed(name, now, password_hash=self.hasher.hash(password))

    def set_totp(self, name: str, secret: str | None, now: float | None = None) -> Account:
        """Set (or, with None, remove) the account's TOTP secret."""
        return self._changed(name, now, totp_secret=secret)

    # --- sharing between nodes (web/shared_accounts.py) ---------------------------------

    def records(self) -> dict[str, dict[str, Any]]:
        """Every name's last change, as shareable records: {"op": "put", "name", "rev",
        "account"} or {"op": "remove", "name", "rev"}."""
        self._refresh()
        out: dict[str, dict[str, Any]] = {
            name: {"op": "remove", "name": name, "rev": rev} for name, rev in self._removed.items()}
        for account in self._accounts.values():
            out[account.name] = {"op": "put", "name": account.name, "rev": account.rev,
                                 "account": account.to_json()}
        return out

    def merge(self, records: list[dict[str, Any]]) -> list[str]:
        """Apply other nodes' changes: for each name, a record with a higher revision than
        this file's wins. Returns the names that changed. Malformed records are skipped."""
        changed: list[str] = []
        with self._editing() as (accounts, removed):
            for record in records:
                name, rev = record.get("name"), record.get("rev")
                if not isinstance(name, str) or not NAME.match(name) or not isinstance(rev, int) \
                        or not _whole(rev, 0):
                    continue
                if rev <= self._rev(accounts, removed, name):
                    continue
                if record.get("op") == "remove":
                    accounts.pop(name, None)
                    removed[name] = rev
                elif record.get("op") == "put":
                    try:
                        account = parse_account(record.get("account"))
                    except AccountError:
                        continue
                    if account.name != name or account.rev != rev:
                        continue
                    removed.pop(name, None)
                    accounts[name] = account
                else:
                    continue
                changed.append(name)
        return changed
