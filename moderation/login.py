"""Signing in, without I/O: the failed-attempt throttle, the session table, CSRF tokens,
and the keyed hash that stands in for a client's address.

Time always comes in as `now` (seconds); nothing here reads a clock, a socket
or a file. web/auth.py is the Twisted shell around it.

Throttle. Every attempt is counted against two keys: the account name typed
(kept as its SHA-256, whether or not such an account exists, so the answers
never tell which names exist) and the client's address (kept only as a keyed
hash under a salt that changes every UTC day). An attempt counts as a failure
from the moment it is admitted — so a burst of parallel attempts sees the
delays at once — and is taken back if it succeeds. From `delay_after_failures`
failures on, the next attempt must wait 1, 2, 4, 8 ... seconds (at most
`max_delay_seconds`); at `lockout_after_failures` the name is locked for
`lockout_seconds` (and an address at `address_lockout_after_failures`).
Failures are forgotten `lockout_seconds` after the last one.

Sessions. The cookie is 256 random bits; the table keeps only its SHA-256.
A session ends after `session_idle_seconds` without use and after
`session_max_seconds` in any case. Each holds its own random CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from hearth.spaces.addresses import utc_day
from hearth.spaces.config import LoginConfig

MAX_RECORDS = 100_000  # throttle memory bound; the oldest records go first
SWEEP_EVERY = 60.0
SHARE_SEEN_EVERY = 60.0  # seconds between a session's "still in use" notes to other nodes

Kind = Literal["account", "address"]


# --- client addresses -----------------------------------------------------------------


class AddressHasher:
    """HMAC-SHA256 of an address under the day's salt, derived from `address_seed`.

    The same address gives a different hash every UTC day, and nothing keeps
    the address itself. Domain-separated from the hashes bans keep.
    """

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._day = ""
        self._salt = b""

    def digest(self, address: str, now: float) -> str:
        day = utc_day(now)
        if day != self._day:
            self._salt = hmac.new(self._seed, b"hearth-address-salt/" + day.encode(),
                                  hashlib.sha256).digest()
            self._day = day
        return hmac.new(self._salt, b"login\x00" + address.encode("utf-8"),
                        hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "<AddressHasher>"


# --- CSRF --------------------------------------------------------------------------------


def new_token() -> str:
    """256 random bits, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def form_token(key: bytes, presession: str) -> str:
    """The sign-in form's CSRF token: bound to the pre-session cookie by a server key."""
    mac = hmac.new(key, b"hearth-login-csrf\x00" + presession.encode("ascii", "replace"),
                   hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def tokens_match(expected: str, given: str | None) -> bool:
    """Constant-time comparison; an absent or non-ASCII token never matches."""
    if not given or not expected or not given.isascii():
        return False
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii"))


# --- the throttle ------------------------------------------------------------------------


@dataclass
class _Record:
    failures: int = 0
    last: float = -math.inf
    locked_until: float = -math.inf


@dataclass(frozen=True)
class Refused:
    """Not now: wait `retry_after` seconds. `locked` tells a lockout from a delay."""
    retry_after: float
    locked: bool


@dataclass(frozen=True)
class Attempt:
    """An admitted attempt; pass it back to `failed` or `succeeded`."""
    keys: tuple[tuple[Kind, str], ...]


class LoginThrottle:
    """Failed sign-ins, per name typed and per address hash.

    With several nodes, every count is told to the others (`on_change`, carried like the
    session events: web/auth.py) and theirs applied here (`apply`), so N nodes behind a
    round-robin balancer allow what one node would, not N times as many. A name typed is
    kept only as an HMAC under `name_key` (the same on every node), never as typed."""

    def __init__(self, config: LoginConfig, name_key: bytes | None = None,
                 on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.config = config
        self._name_key = name_key if name_key is not None else secrets.token_bytes(32)
        self._records: dict[tuple[Kind, str], _Record] = {}
        self._last_sweep = -math.inf
        self.on_change = on_change
        # Events of other nodes already counted (they come live, and again from the
        # shared log): id -> until when it could still matter.
        self._applied: dict[str, float] = {}

    def _tell(self, step: str, keys: tuple[tuple[Kind, str], ...], now: float) -> None:
        if self.on_change is not None:
            self.on_change({"op": "throttle", "step": step, "keys": [list(k) for k in keys],
                            "at": now, "id": secrets.token_hex(8)})

    def _lockout_after(self, kind: Kind) -> int:
        if kind == "account":
            return self.config.lockout_after_failures
        return self.config.address_lockout_after_failures

    def delay(self, failures: int) -> float:
        """Seconds to wait after `failures` failures: 0, then 1, 2, 4, 8 ... capped."""
        over = failures - self.config.delay_after_failures
        if over < 0:
            return 0.0
        return min(self.config.max_delay_seconds, 2.0 ** min(over, 62))

    def _keys(self, account: str, address: str | None) -> tuple[tuple[Kind, str], ...]:
        typed = account.strip().lower().encode("utf-8", "replace")
        name = hmac.new(self._name_key, b"login-name\x00" + typed, hashlib.sha256).hexdigest()
        keys: list[tuple[Kind, str]] = [("account", name)]
        if address is not None and self.config.address_lockout_after_failures > 0:
            keys.append(("address", address))
        return tuple(keys)

    def _live(self, key: tuple[Kind, str], now: float) -> _Record | None:
        record = self._records.get(key)
        if record is not None and self._stale(record, now):
            del self._records[key]
            return None
        return record

    def _stale(self, record: _Record, now: float) -> bool:
        return record.locked_until <= now and now - record.last >= self.config.lockout_seconds

    def begin(self, account: str, address: str | None, now: float) -> Attempt | Refused:
        """Admit an attempt for the name typed (and the address hash), or say how long to wait."""
        if now - self._last_sweep >= SWEEP_EVERY or len(self._records) >= MAX_RECORDS:
            self.sweep(now)
        keys = self._keys(account, address)
        locked = wait = 0.0
        for key in keys:
            record = self._live(key, now)
            if record is None:
                continue
            if record.locked_until > now:
                locked = max(locked, record.locked_until - now)
            else:
                wait = max(wait, record.last + self.delay(record.failures) - now)
        if locked > 0:
            return Refused(locked, True)
        if wait > 0:
            return Refused(wait, False)
        self._attempted(keys, now)
        self._tell("attempt", keys, now)
        return Attempt(keys)

    def _attempted(self, keys: tuple[tuple[Kind, str], ...], now: float) -> None:
        for key in keys:
            record = self._records.setdefault(key, _Record())
            record.failures += 1
            record.last = max(record.last, now)

    def failed(self, attempt: Attempt, now: float) -> list[Kind]:
        """The attempt failed; returns the kinds of key it just locked out."""
        self._tell("failed", attempt.keys, now)
        return self._failed(attempt.keys, now)

    def _failed(self, keys: tuple[tuple[Kind, str], ...], now: float) -> list[Kind]:
        locked: list[Kind] = []
        for key in keys:
            record = self._records.setdefault(key, _Record(failures=1))
            record.last = max(record.last, now)
            limit = self._lockout_after(key[0])
            if limit and record.failures >= limit and record.locked_until <= now:
                record.locked_until = now + self.config.lockout_seconds
                locked.append(key[0])
        return locked

    def succeeded(self, attempt: Attempt, now: float) -> None:
        """The name's failures are forgotten; the address only gets this attempt back
        (signing in to one account must not clear failures against others)."""
        self._tell("succeeded", attempt.keys, now)
        self._succeeded(attempt.keys, now)

    def _succeeded(self, keys: tuple[tuple[Kind, str], ...], now: float) -> None:
        for key in keys:
            if key[0] == "account":
                self._records.pop(key, None)
                continue
            record = self._records.get(key)
            if record is not None:
                record.failures -= 1
                if record.failures <= 0 and record.locked_until <= now:
                    del self._records[key]

    def apply(self, event: dict[str, Any], now: float) -> None:
        """Another node's count (or one read back at start). Malformed events are ignored."""
        try:
            step, at, event_id = event["step"], float(event["at"]), str(event["id"])
            keys = tuple((str(kind), str(key)) for kind, key in event["keys"]
                         if kind in ("account", "address"))
        except (KeyError, TypeError, ValueError):
            return
        if not math.isfinite(at) or at > now + 60 or now - at >= self.config.lockout_seconds:
            return  # from the future, or too old to matter
        if event_id in self._applied:
            return
        if len(self._applied) >= MAX_RECORDS:  # a flood: counting twice only locks sooner
            self._applied.clear()
        self._applied[event_id] = at + self.config.lockout_seconds
        typed = cast(tuple[tuple[Kind, str], ...], keys)
        if step == "attempt":
            self._attempted(typed, at)
        elif step == "failed":
            self._failed(typed, at)
        elif step == "succeeded":
            self._succeeded(typed, at)

    def sweep(self, now: float) -> None:
        self._last_sweep = now
        for key in [k for k, r in self._records.items() if self._stale(r, now)]:
            del self._records[key]
        for event_id in [e for e, until in self._applied.items() if until <= now]:
            del self._applied[event_id]
        excess = len(self._records) - MAX_RECORDS + MAX_RECORDS // 10
        if excess > 0 and len(self._records) >= MAX_RECORDS:
            oldest = sorted(self._records, key=lambda k: self._records[k].last)[:excess]
            for key in oldest:
                del self._records[key]

    def __len__(self) -> int:
        return len(self._records)


# --- sessions --------------------------------------------------------------------------


def new_session_id() -> str:
    """A sign-in session's public name (128 random bits): what role tickets are bound to."""
    return secrets.token_hex(16)


@dataclass
class Session:
    account: str
    role: str
    generation: int  # the account's generation when it signed in
    created: float
    last_seen: float
    csrf: str = field(default_factory=new_token, repr=False)
    shared_seen: float = 0.0  # the last_seen other nodes were told of
    # Not the cookie, nor its digest: a role ticket names the session it came from by this,
    # and is refused (and the roles it gave withdrawn) once the session has ended.
    id: str = field(default_factory=new_session_id)


def _digest(cookie: str) -> bytes:
    return hashlib.sha256(cookie.encode("utf-8", "replace")).digest()


class SessionTable:
    """Server-side sessions, in memory, keyed by the SHA-256 of the cookie.

    With several nodes every change is told to the others (`on_change`, carried
    by the node through the broker: web/node.py) and theirs applied here
    (`apply`), so a facilitator signed in on one node is signed in on all. What
    travels is the cookie's digest, never the cookie; `seen` at most once a
    minute per session, enough for an idle limit counted in hours."""

    def __init__(self, idle_seconds: float, max_seconds: float,
                 make_token: Callable[[], str] = new_token,
                 on_change: Callable[[dict[str, Any]], None] | None = None,
                 on_ended: Callable[[Session], None] | None = None) -> None:
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds
        self._make_token = make_token
        self._sessions: dict[bytes, Session] = {}
        # Digests of sessions ended (signed out, account changed), until they would have
        # expired anyway: a replayed "create" must never bring one back.
        self._ended: dict[bytes, float] = {}
        self._last_sweep = -math.inf
        self.on_change = on_change
        self.on_ended = on_ended  # a session was ended, here or by another node

    def _tell(self, event: dict[str, Any]) -> None:
        if self.on_change is not None:
            self.on_change(event)

    def create(self, account: str, role: str, generation: int, now: float) -> tuple[str, Session]:
        """A new session; returns the cookie value (shown once, never stored) and the session."""
        self._maybe_sweep(now)
        cookie = self._make_token()
        session = Session(account=account, role=role, generation=generation, created=now,
                          last_seen=now, shared_seen=now)
        digest = _digest(cookie)
        self._sessions[digest] = session
        self._tell({"op": "create", "digest": digest.hex(), "account": account, "role": role,
                    "generation": generation, "created": now, "csrf": session.csrf,
                    "id": session.id})
        return cookie, session

    def _ending(self, digest: bytes, session: Session) -> None:
        """`session` has just been taken out of the table by an end (not by expiry)."""
        self._ended[digest] = session.created + self.max_seconds
        if self.on_ended is not None:
            self.on_ended(session)

    def _expired(self, session: Session, now: float) -> bool:
        return (now - session.last_seen >= self.idle_seconds
                or now - session.created >= self.max_seconds)

    def get(self, cookie: str, now: float) -> Session | None:
        """The live session for this cookie (its idle clock restarts), or None."""
        self._maybe_sweep(now)
        digest = _digest(cookie)
        session = self._sessions.get(digest)
        if session is None:
            return None
        if self._expired(session, now):
            del self._sessions[digest]
            return None
        session.last_seen = now
        if now - session.shared_seen >= SHARE_SEEN_EVERY:
            session.shared_seen = now
            self._tell({"op": "seen", "digest": digest.hex(), "at": now})
        return session

    def end(self, cookie: str) -> Session | None:
        digest = _digest(cookie)
        ended = self._sessions.pop(digest, None)
        if ended is not None:
            self._ending(digest, ended)
            self._tell({"op": "end", "digest": digest.hex()})
        return ended

    def end_account(self, account: str) -> int:
        """End every session of `account`; returns how many."""
        ended = self._end_account(account)
        self._tell({"op": "end_account", "account": account})
        return ended

    def _end_account(self, account: str) -> int:
        ended = [d for d, s in self._sessions.items() if s.account == account]
        for digest in ended:
            self._ending(digest, self._sessions.pop(digest))
        return len(ended)

    def apply(self, event: dict[str, Any], now: float) -> None:
        """Another node's change (or one read back at start). Malformed events are ignored."""
        try:
            op = event["op"]
            if op == "end_account":
                self._end_account(str(event["account"]))
                return
            digest = bytes.fromhex(event["digest"])
            if op == "create":
                created = float(event["created"])
                session = Session(account=str(event["account"]), role=str(event["role"]),
                                  generation=int(event["generation"]), created=created,
                                  last_seen=created, csrf=str(event["csrf"]),
                                  shared_seen=created, id=str(event["id"]))
                if not self._expired(session, now) and digest not in self._ended \
                        and math.isfinite(created) and created <= now + 60:
                    self._sessions[digest] = session
            elif op == "seen" and digest in self._sessions:
                session = self._sessions[digest]
                at = float(event["at"])
                if math.isfinite(at) and at <= now + 60:
                    session.last_seen = session.shared_seen = max(session.last_seen, at)
            elif op == "end":
                ended = self._sessions.pop(digest, None)
                if ended is not None:
                    self._ending(digest, ended)
        except (KeyError, TypeError, ValueError):
            return

    def _maybe_sweep(self, now: float) -> None:
        if now - self._last_sweep >= SWEEP_EVERY:
            self.sweep(now)

    def sweep(self, now: float) -> None:
        self._last_sweep = now
        for digest in [d for d, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[digest]
        for digest in [d for d, until in self._ended.items() if until <= now]:
            del self._ended[digest]

    def __len__(self) -> int:
        return len(self._sessions)
