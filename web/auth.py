"""Facilitator sign-in: /login, /logout, /console and /console/ticket.

The Twisted shell around moderation/login.py (throttle, sessions, CSRF) and
moderation/accounts.py (the accounts file). What it promises:

- The session cookie is 256 random bits, HttpOnly, SameSite=Strict, Path=/,
  and Secure (with the `__Host-` name prefix) when the request came over TLS.
  The server keeps only its SHA-256, in memory.
- Every POST carries a CSRF token: the sign-in form's is an HMAC of a
  pre-session cookie under the deployment's `cookie` secret; after sign-in,
  each session has its own random token (a hidden `csrf` field, or the
  `X-CSRF-Token` header for scripts). Compared with hmac.compare_digest.
  (An Origin check would add nothing: under `Referrer-Policy: no-referrer`
  browsers send `Origin: null` on same-origin POSTs.)
- An unknown name and a wrong password cost one argon2 verification each (in
  a worker thread) and get the same answer; so do throttled and locked names.
- The WebSocket never trusts the cookie: the console page asks
  POST /console/ticket for a one-time ticket (60 s) and sends it in `join`.
- No client address, password, cookie, ticket or TOTP secret is logged or
  stored; the throttle sees an address only as a keyed daily hash.
- Every sign-in, failure, lockout, sign-out and ticket goes to the audit log
  (`audit.record(actor, action, target, room, outcome, now)`).
- A ticket is bound to the sign-in session it came from: once that session ends
  (signed out, or its account removed or changed), on any node, the ticket is
  refused and every role it gave is withdrawn (spaces/venue.py `signin_ended`,
  `account_changed`; the node runs them where the room is).
- With several nodes, session events and failed-attempt counts travel sealed
  (moderation/sealed.py): one forged in Redis is refused and counted. A TOTP step
  is used once per account across nodes (claimed in the broker) and restarts (kept
  beside the accounts). The accounts themselves are shared (web/shared_accounts.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets as random_tokens
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, cast

from twisted.internet.defer import Deferred, DeferredSemaphore, ensureDeferred
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from hearth.moderation.accounts import (
    TOTP_STEP,
    TOTP_WINDOW,
    Account,
    AccountError,
    AccountStore,
    normalise_name,
)
from hearth.moderation.login import (
    AddressHasher,
    Attempt,
    LoginThrottle,
    Refused,
    Session,
    SessionTable,
    form_token,
    new_token,
    tokens_match,
)
from hearth.moderation.sealed import opened, seal, shared_key
from hearth.spaces.config import HearthConfig
from hearth.spaces.pseudonyms import client_rules
from hearth.spaces.room import Role
from hearth.web.datadir import Secrets
from hearth.web.node import Node
from hearth.web.shared_accounts import SharedAccounts

_log = Logger(namespace="hearth.auth")

SESSION_COOKIE = "hearth_session"
LOGIN_COOKIE = "hearth_login"  # the pre-session cookie the sign-in form's CSRF token is bound to
CSRF_FIELD = b"csrf"
CSRF_HEADER = b"x-csrf-token"
MAX_FORM_BYTES = 8192
MAX_VERIFYING = 4  # argon2 verifications at once (64 MiB each)
MAX_WAITING = 64  # queued beyond that: 503, try again
UNKNOWN_ACTOR = "(unknown)"  # a name with no account is never written down: it may be a password
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
# How long a used TOTP step stays claimed in the broker: every step a code can be
# accepted for (now, and TOTP_WINDOW either side), and one more.
TOTP_CLAIM_SECONDS = TOTP_STEP * (2 * TOTP_WINDOW + 2)

Render = Callable[..., bytes]  # web.pages.Pages.render(request, template, code=..., **context)


class Audit(Protocol):
    def record(self, actor: str, action: str, target: str | None, room: str | None,
               outcome: str, now: float) -> Any: ...


class NullAudit:
    """Records nothing: until the audit log is wired in."""

    def record(self, actor: str, action: str, target: str | None, room: str | None,
               outcome: str, now: float) -> None:
        return None


def cookie_name(base: str, request: server.Request) -> bytes:
    """`__Host-` names under TLS: the browser then insists on Secure, Path=/ and no Domain."""
    return (f"__Host-{base}" if request.isSecure() else base).encode("ascii")


def _set_cookie(request: server.Request, base: str, value: str, *, clear: bool = False) -> None:
    request.addCookie(cookie_name(base, request), b"" if clear else value.encode("ascii"),
                      path=b"/", httpOnly=True, sameSite="strict",
                      secure=True if request.isSecure() else None,
                      max_age=b"0" if clear else None)


def _cookie(request: server.Request, base: str) -> str | None:
    raw = request.getCookie(cookie_name(base, request))
    if not raw:
        return None
    value = raw.decode("ascii", "replace")
    return value if _TOKEN.match(value) else None


def _field(request: server.Request, name: bytes, max_len: int = 2048) -> str:
    values = (request.args or {}).get(name) or [b""]
    return values[0][:max_len * 4].decode("utf-8", "replace")[:max_len]


def _header(request: server.Request, name: bytes) -> str | None:
    raw = request.getHeader(name)
    if raw is None:
        return None
    return raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)


def _body_size(request: server.Request) -> int:
    content = request.content
    if content is None:
        return 0
    position = content.tell()
    content.seek(0, 2)
    size = content.tell()
    content.seek(position)
    return cast(int, size)


def _json(request: server.Request, code: int, body: dict[str, Any]) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(body).encode("utf-8")


def _redirect(request: server.Request, location: bytes) -> bytes:
    request.setResponseCode(303)
    request.setHeader(b"Location", location)
    request.setHeader(b"Cache-Control", b"no-store")
    return b""


class Auth:
    """What the sign-in resources share: accounts, sessions, throttle, keys, audit."""

    def __init__(self, config: HearthConfig, node: Node, render: Render, secrets: Secrets, *,
                 audit: Audit | None = None, store: AccountStore | None = None,
                 clock: Callable[[], float] | None = None,
                 in_thread: Callable[..., Deferred[Any]] = deferToThread) -> None:
        self.config = config
        self.node = node
        self.render = render
        self.audit: Audit = audit if audit is not None else NullAudit()
        self.store = store or AccountStore.in_data_dir(Path(config.server.data_dir))
        self.clock = clock or node.clock
        self.in_thread = in_thread
        self.cookie_key = secrets.cookie
        self.shared_key = shared_key(secrets.cookie)
        self.addresses = AddressHasher(secrets.address_seed)
        self.throttle = LoginThrottle(
            config.login, on_change=self._share,
            name_key=hmac.new(secrets.cookie, b"hearth-login-name-key", hashlib.sha256).digest())
        self.sessions = SessionTable(config.login.session_idle_seconds,
                                     config.login.session_max_seconds,
                                     on_change=self._share, on_ended=self._session_ended)
        node.on_session = self._received
        self.shared_accounts = SharedAccounts(self.store, node.broker, secrets.cookie, node.id,
                                              on_refused=self._count_refused)
        self._account_states: dict[str, tuple[str, int]] = {}
        self.deliver_accounts()  # the venue knows every account before the first ticket
        node.watchers.append(self.refresh_accounts)
        self.verifying = DeferredSemaphore(MAX_VERIFYING)
        # Make the dummy hash now, in a worker: made on first use, it would make the
        # first unknown name slower than a wrong password.
        in_thread(self.store.dummy_hash).addErrback(
            lambda f: _log.failure("cannot prepare the sign-in check", f))

    # --- what nodes tell each other: sealed, so that Redis alone cannot forge it -------

    def _share(self, event: dict[str, Any]) -> None:
        self.node.share_session(seal(self.shared_key, event))

    def _received(self, event: dict[str, Any]) -> None:
        """Another node's session event or failed-attempt count (live, or from the shared
        log): applied only if it carries this deployment's MAC; else refused and counted."""
        record = opened(self.shared_key, event)
        if record is None:
            self._count_refused("a sign-in event")
            return
        if record.get("op") == "throttle":
            self.throttle.apply(record, self.clock())
        else:
            self.sessions.apply(record, self.clock())

    def _count_refused(self, what: str) -> None:
        """A record in the broker that this deployment's key did not seal: someone who can
        write to Redis tried to forge it. Counted (/metrics) and logged, never applied."""
        self.node.shared_records_refused += 1
        _log.warn("{what} from the broker was refused: not sealed with this deployment's "
                  "key ({count} so far)", what=what, count=self.node.shared_records_refused)

    def _session_ended(self, session: Session) -> None:
        """Signed out, or ended for its account (here or on another node): the roles its
        tickets gave are withdrawn, and its tickets refused."""
        self.node.signin_ended(session.id)

    # --- accounts: shared between nodes, and watched for live roles -----------------------

    async def refresh_accounts(self) -> None:
        """Once a second (the node's housekeeping): merge and share account changes, and
        tell the venue of every account that changed since the last time."""
        try:
            await self.shared_accounts.sync()
        except AccountError as err:
            _log.error("facilitator accounts unreadable: {problem}", problem=str(err))
        self.deliver_accounts()

    def signed_in_as(self, name: str, state: tuple[str, int]) -> None:
        """A sign-in read the account in this state: the watcher's next look compares with
        it, so an account removed or changed before the watcher first saw it still takes
        the role away (a change is a difference from what was used, not only from the
        watcher's last look)."""
        self._account_states.setdefault(name, state)

    def deliver_accounts(self) -> None:
        try:
            accounts = self.store.all()
        except AccountError as err:
            _log.error("facilitator accounts unreadable: {problem}", problem=str(err))
            return
        states = {a.name: (a.role, a.generation) for a in accounts}
        for name in sorted(states.keys() | self._account_states.keys()):
            if states.get(name) != self._account_states.get(name):
                self.node.account_changed(name, states.get(name))
        self._account_states = states

    async def claim_totp_step(self, name: str, step: int) -> bool | None:
        """Use up a TOTP step for every node: True if this attempt is the first to use it,
        False if it was used already, None if the broker cannot be reached."""
        holder = random_tokens.token_hex(8)
        broker = self.node.broker
        if await broker.lease(f"totp:{name}:{step}", holder, TOTP_CLAIM_SECONDS):
            return True
        # Taken, or the broker is away (a lease it cannot grant): a fresh name tells which.
        if await broker.lease(f"totp-probe:{holder}", holder, 1.0):
            return False
        return None

    def install(self, root: resource.Resource) -> None:
        root.putChild(b"login", LoginPage(self))
        root.putChild(b"logout", LogoutPage(self))
        console = ConsolePage(self)
        console.putChild(b"", console)
        console.putChild(b"ticket", TicketPage(self))
        root.putChild(b"console", console)

    # --- helpers the resources share ---------------------------------------------------

    def account(self, name: str) -> Account | None:
        try:
            return self.store.get(name)
        except AccountError as err:
            _log.error("facilitator accounts unreadable: {problem}", problem=str(err))
            return None

    def session(self, request: server.Request) -> tuple[str, Session] | None:
        """The request's live session, if its account still exists unchanged."""
        cookie = _cookie(request, SESSION_COOKIE)
        if cookie is None:
            return None
        session = self.sessions.get(cookie, self.clock())
        if session is None:
            return None
        account = self.account(session.account)
        if account is None or account.generation != session.generation \
                or account.role != session.role:
            self.sessions.end(cookie)
            return None
        return cookie, session

    def address_hash(self, request: server.Request) -> str | None:
        host = getattr(request.getClientAddress(), "host", None)
        return self.addresses.digest(host, self.clock()) if isinstance(host, str) else None

    def console(self, request: server.Request, session: Session, code: int = 200,
                error: str | None = None) -> bytes:
        venue = self.node.venue
        rooms = [{"id": r.id, "config": r, "capacity": r.capacity,  # titles: in the page's language
                  "present": len(venue.rooms[r.id].members) if r.id in venue.rooms else 0}
                 for r in self.config.rooms]
        return self.render(request, "console.html", code=code, error=error,
                           account=session.account, role=session.role, csrf=session.csrf,
                           rooms=rooms, rules=client_rules(self.config.limits.pseudonym_max_length))

    def record(self, actor: str, action: str, outcome: str, target: str | None = None) -> None:
        try:
            self.audit.record(actor, action, target, None, outcome, self.clock())
        except Exception:
            _log.failure("cannot write the audit record for {action}", action=action)


class _Page(resource.Resource):
    def __init__(self, auth: Auth) -> None:
        super().__init__()
        self.auth = auth

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        return _NotFound(self.auth)


class _NotFound(resource.Resource):
    isLeaf = True

    def __init__(self, auth: Auth) -> None:
        super().__init__()
        self.auth = auth

    def render(self, request: server.Request) -> bytes:
        return self.auth.render(request, "not_found.html", code=404)


class LoginPage(_Page):
    """GET: the sign-in form. POST name, password, code?, csrf: a session, or the form again."""

    isLeaf = True

    def _form(self, request: server.Request, code: int = 200, error: str | None = None,
              name: str = "", retry_after: float = 0.0) -> bytes:
        presession = _cookie(request, LOGIN_COOKIE)
        if presession is None:
            presession = new_token()
            _set_cookie(request, LOGIN_COOKIE, presession)
        if retry_after > 0:
            request.setHeader(b"Retry-After", str(math.ceil(retry_after)).encode())
        return self.auth.render(
            request, "login.html", code=code, error=error, name=name,
            csrf=form_token(self.auth.cookie_key, presession),
            seconds=math.ceil(retry_after), minutes=math.ceil(retry_after / 60))

    def render_GET(self, request: server.Request) -> bytes:
        if request.postpath not in ([], [b""]):
            return self.auth.render(request, "not_found.html", code=404)
        if self.auth.session(request) is not None:
            return _redirect(request, b"/console")
        return self._form(request)

    def render_POST(self, request: server.Request) -> bytes | int:
        auth = self.auth
        if _body_size(request) > MAX_FORM_BYTES:
            return self._form(request, 413, "too_large")
        presession = _cookie(request, LOGIN_COOKIE)
        if presession is None or not tokens_match(form_token(auth.cookie_key, presession),
                                                  _field(request, CSRF_FIELD, 100)):
            return self._form(request, 403, "csrf")
        typed = _field(request, b"name", 200)
        password = _field(request, b"password", 4096)
        code = _field(request, b"code", 20)
        if not typed.strip() or not password:
            return self._form(request, 400, "missing", typed)
        if len(auth.verifying.waiting) >= MAX_WAITING:
            request.setHeader(b"Retry-After", b"5")
            return self._form(request, 503, "busy", typed)
        decision = auth.throttle.begin(typed, auth.address_hash(request), auth.clock())
        if isinstance(decision, Refused):
            return self._form(request, 429, "locked" if decision.locked else "wait", typed,
                              decision.retry_after)
        name = normalise_name(typed)
        account = auth.account(name) if name is not None else None
        gone = {"yes": False}
        request.notifyFinish().addErrback(lambda _: gone.update(yes=True))
        d = auth.verifying.run(auth.in_thread, auth.store.check_password, account, password)
        d.addCallback(lambda ok: ensureDeferred(self._verified(
            ok, request, decision, account, code, typed, gone)))
        d.addErrback(self._crashed, request, decision, gone)
        return server.NOT_DONE_YET

    async def _second_factor(self, account: Account, code: str) -> bool | None:
        """The code is right and its step unused on every node (then used up), or not;
        None when that cannot be known (the broker is away)."""
        auth = self.auth
        step = auth.store.totp_step(account, code, auth.clock())
        if step is None:
            return False
        if step < 0:  # no second factor on this account
            return True
        claimed = await auth.claim_totp_step(account.name, step)
        if claimed:
            auth.store.use_totp_step(account.name, step)
        return claimed

    async def _verified(self, ok: bool, request: server.Request, attempt: Attempt,
                        account: Account | None, code: str, typed: str,
                        gone: dict[str, bool]) -> None:
        auth = self.auth
        second = await self._second_factor(account, code) if ok and account is not None \
            else False
        now = auth.clock()
        if second is None and account is not None:
            auth.record(account.name, "login", "refused:unavailable")
            auth.throttle.failed(attempt, now)
            if not gone["yes"]:
                request.setHeader(b"Retry-After", b"5")
                request.write(self._form(request, 503, "busy", typed))
                request.finish()
            return
        if ok and account is not None and second:
            auth.throttle.succeeded(attempt, now)
            auth.record(account.name, "login", "ok")
            if gone["yes"]:
                return
            old = _cookie(request, SESSION_COOKIE)
            if old is not None:  # never keep a session id across a sign-in
                auth.sessions.end(old)
            cookie, _ = auth.sessions.create(account.name, account.role, account.generation, now)
            auth.signed_in_as(account.name, (account.role, account.generation))
            _set_cookie(request, SESSION_COOKIE, cookie)
            _set_cookie(request, LOGIN_COOKIE, "", clear=True)
            request.write(_redirect(request, b"/console"))
            request.finish()
            return
        actor = account.name if account is not None else UNKNOWN_ACTOR
        auth.record(actor, "login", "refused:bad_credentials")
        for kind in auth.throttle.failed(attempt, now):
            auth.record(actor, "login.lockout", "ok",
                        target=actor if kind == "account" else "(client address)")
        if not gone["yes"]:
            request.write(self._form(request, 401, "bad_credentials", typed))
            request.finish()

    def _crashed(self, failure: Failure, request: server.Request, attempt: Attempt,
                 gone: dict[str, bool]) -> None:
        _log.failure("sign-in check failed", failure)
        self.auth.throttle.failed(attempt, self.auth.clock())
        if not gone["yes"]:
            request.write(self._form(request, 500, "internal"))
            request.finish()


class LogoutPage(_Page):
    """POST with the session's CSRF token (form field or header): the session ends."""

    isLeaf = True

    def render_POST(self, request: server.Request) -> bytes:
        found = self.auth.session(request)
        if found is None:
            _set_cookie(request, SESSION_COOKIE, "", clear=True)
            return _redirect(request, b"/login")
        cookie, session = found
        given = _field(request, CSRF_FIELD, 100) or _header(request, CSRF_HEADER)
        if not tokens_match(session.csrf, given):
            return self.auth.console(request, session, code=403, error="csrf")
        self.auth.sessions.end(cookie)
        self.auth.record(session.account, "logout", "ok")
        _set_cookie(request, SESSION_COOKIE, "", clear=True)
        return _redirect(request, b"/login")


class ConsolePage(_Page):
    """GET: who is signed in, sign out, the rooms. Not signed in: 303 to /login."""

    def render_GET(self, request: server.Request) -> bytes:
        if request.postpath not in ([], [b""]):
            return self.auth.render(request, "not_found.html", code=404)
        found = self.auth.session(request)
        if found is None:
            return _redirect(request, b"/login")
        return self.auth.console(request, found[1])


class TicketPage(_Page):
    """POST with the session cookie and the X-CSRF-Token header:
    200 {"ticket", "role", "account"}; 401 {"error": "not_signed_in"}; 403 {"error": "csrf"}."""

    isLeaf = True

    def render_POST(self, request: server.Request) -> bytes:
        auth = self.auth
        if request.postpath:
            return _json(request, 404, {"error": "not_found", "message": "No such endpoint."})
        found = auth.session(request)
        if found is None:
            return _json(request, 401, {"error": "not_signed_in",
                                        "message": "Sign in again: the session has ended."})
        session = found[1]
        if not tokens_match(session.csrf, _header(request, CSRF_HEADER)):
            return _json(request, 403, {"error": "csrf",
                                        "message": "The X-CSRF-Token header is missing or wrong."})
        role = cast(Role, session.role)
        ticket = auth.node.venue.issue_ticket(role, auth.clock(), session.account,
                                              signin=session.id, generation=session.generation)
        auth.record(session.account, "ticket", "ok")
        return _json(request, 200, {"ticket": ticket, "role": role, "account": session.account})
