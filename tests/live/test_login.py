"""Facilitator sign-in: the sans-IO throttle and sessions (on a Clock), then the real thing
over HTTP: CSRF, delays and lockout, sessions, logout, the ticket and the WebSocket role."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

import hearth.client.websocket
from hearth.client.websocket import ClientClosed, HearthClient, ServerError
from hearth.moderation.accounts import new_totp_secret, totp_code
from hearth.moderation.audit import read_entries
from hearth.moderation.login import (
    AddressHasher,
    Attempt,
    LoginThrottle,
    Refused,
    SessionTable,
    form_token,
    tokens_match,
)
from hearth.spaces.config import LoginConfig
from tests.support.config import make_config
from tests.support.live import LiveServer, start_server
from tests.support.signin import PASSWORD, Reply, add_account, auth_of, browser, console_csrf, csrf_in

# --- the throttle, on a Clock -------------------------------------------------------------


def fail(throttle: LoginThrottle, clock: Clock, name: str = "ana",
         address: str | None = "addr") -> list[str]:
    attempt = throttle.begin(name, address, clock.seconds())
    assert isinstance(attempt, Attempt), attempt
    return list(throttle.failed(attempt, clock.seconds()))


def test_delays_grow_1_2_4_8_after_three_failures() -> None:
    clock, throttle = Clock(), LoginThrottle(LoginConfig())
    for _ in range(3):
        fail(throttle, clock)  # the first three are not slowed down
    for delay in (1.0, 2.0, 4.0, 8.0):
        refused = throttle.begin("ana", "addr", clock.seconds())
        assert refused == Refused(delay, locked=False)
        clock.advance(delay - 0.01)
        assert isinstance(throttle.begin("ana", "addr", clock.seconds()), Refused)
        clock.advance(0.01)
        fail(throttle, clock)


def test_the_delay_is_capped() -> None:
    throttle = LoginThrottle(LoginConfig(max_delay_seconds=5.0))
    assert [throttle.delay(n) for n in range(2, 9)] == [0.0, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_ten_failures_lock_the_name_for_fifteen_minutes() -> None:
    clock, throttle = Clock(), LoginThrottle(LoginConfig(max_delay_seconds=1.0))
    locks: list[str] = []
    for _ in range(10):
        clock.advance(1.0)
        locks += fail(throttle, clock, address=None)
    assert locks == ["account"]
    refused = throttle.begin("ana", None, clock.seconds())
    assert refused == Refused(900.0, locked=True)
    # Locked means locked: from a fresh address too, whatever the password would be.
    assert isinstance(throttle.begin("ANA ", "elsewhere", clock.seconds()), Refused)
    assert isinstance(throttle.begin("bob", None, clock.seconds()), Attempt)  # others are not
    clock.advance(900.0)
    assert isinstance(throttle.begin("ana", None, clock.seconds()), Attempt)


def test_failures_are_forgotten_after_the_lockout_period() -> None:
    clock, throttle = Clock(), LoginThrottle(LoginConfig())
    for _ in range(3):
        fail(throttle, clock)
    clock.advance(900.0)
    for _ in range(3):
        fail(throttle, clock)  # counted from zero again: no delay yet
    assert len(throttle) == 2


def test_parallel_attempts_count_before_they_finish() -> None:
    clock, throttle = Clock(), LoginThrottle(LoginConfig())
    admitted = [throttle.begin("ana", "addr", clock.seconds()) for _ in range(5)]
    assert [isinstance(a, Attempt) for a in admitted] == [True, True, True, False, False]


def test_success_clears_the_name_but_only_takes_back_its_own_address_attempt() -> None:
    clock, throttle = Clock(), LoginThrottle(LoginConfig())
    fail(throttle, clock, "bob")
    fail(throttle, clock, "ana")
    attempt = throttle.begin("ana", "addr", clock.seconds())
    assert isinstance(attempt, Attempt)
    throttle.succeeded(attempt, clock.seconds())
    # ana starts afresh; the address keeps its two failures (one against bob).
    for _ in range(2):
        fail(throttle, clock, "ana", address=None)
    assert isinstance(throttle.begin("ana", None, clock.seconds()), Attempt)
    assert isinstance(throttle.begin("carol", "addr", clock.seconds()), Attempt)
    assert isinstance(throttle.begin("dave", "addr", clock.seconds()), Refused)


def test_one_address_trying_many_names_is_locked_out() -> None:
    clock = Clock()
    throttle = LoginThrottle(LoginConfig(address_lockout_after_failures=5, max_delay_seconds=1))
    locks: list[str] = []
    for i in range(5):
        clock.advance(1.0)
        locks += fail(throttle, clock, f"name{i}")
    assert locks == ["address"]
    assert throttle.begin("someone-else", "addr", clock.seconds()) == Refused(900.0, locked=True)
    assert isinstance(throttle.begin("someone-else", "other-addr", clock.seconds()), Attempt)


def test_the_address_limit_can_be_turned_off() -> None:
    clock = Clock()
    throttle = LoginThrottle(LoginConfig(address_lockout_after_failures=0))
    for i in range(20):
        fail(throttle, clock, f"name{i}")
    assert isinstance(throttle.begin("next", "addr", clock.seconds()), Attempt)


def test_the_throttle_keeps_no_name_typed() -> None:
    clock, throttle = Clock(), LoginThrottle(LoginConfig())
    fail(throttle, clock, "my secret password typed as a name")
    assert "secret" not in repr(throttle.__dict__)


def test_address_hashes_are_keyed_and_change_every_utc_day() -> None:
    hasher = AddressHasher(b"s" * 32)
    day = 1_767_225_600.0  # midnight UTC
    first = hasher.digest("203.0.113.9", day + 10)
    assert first == hasher.digest("203.0.113.9", day + 86399)
    assert first != hasher.digest("203.0.113.9", day + 86400)
    assert first != hasher.digest("203.0.113.10", day + 10)
    assert first != AddressHasher(b"t" * 32).digest("203.0.113.9", day + 10)
    assert "203.0.113.9" not in first and "203.0.113.9" not in repr(hasher)


# --- sessions and tokens --------------------------------------------------------------------


def test_sessions_keep_only_a_digest_and_expire_when_idle() -> None:
    clock = Clock()
    table = SessionTable(idle_seconds=100.0, max_seconds=1000.0)
    cookie, session = table.create("ana", "facilitator", 1, clock.seconds())
    assert len(cookie) == 43  # 256 bits, URL-safe base64
    assert cookie not in repr(table.__dict__)
    assert len(session.csrf) == 43 and session.csrf != cookie
    clock.advance(99.0)
    assert table.get(cookie, clock.seconds()) is session  # use restarts the idle clock
    clock.advance(99.0)
    assert table.get(cookie, clock.seconds()) is session
    clock.advance(100.0)
    assert table.get(cookie, clock.seconds()) is None
    assert len(table) == 0


def test_sessions_end_at_their_maximum_age_even_in_use() -> None:
    clock = Clock()
    table = SessionTable(idle_seconds=100.0, max_seconds=250.0)
    cookie, _ = table.create("ana", "facilitator", 1, clock.seconds())
    for _ in range(2):
        clock.advance(99.0)
        assert table.get(cookie, clock.seconds()) is not None
    clock.advance(99.0)
    assert table.get(cookie, clock.seconds()) is None


def test_ending_sessions() -> None:
    table = SessionTable(idle_seconds=100.0, max_seconds=1000.0)
    one, _ = table.create("ana", "facilitator", 1, 0.0)
    two, _ = table.create("ana", "facilitator", 1, 0.0)
    three, _ = table.create("bob", "operator", 1, 0.0)
    assert table.end(one) is not None and table.get(one, 1.0) is None
    assert table.end_account("ana") == 1
    assert table.get(two, 1.0) is None and table.get(three, 1.0) is not None


def test_tokens() -> None:
    assert form_token(b"k" * 32, "a") == form_token(b"k" * 32, "a")
    assert form_token(b"k" * 32, "a") != form_token(b"k" * 32, "b")
    assert form_token(b"k" * 32, "a") != form_token(b"j" * 32, "a")
    assert tokens_match("abc", "abc")
    assert not tokens_match("abc", "abd") and not tokens_match("abc", None)
    assert not tokens_match("abc", "") and not tokens_match("", "") and not tokens_match("abc", "ábc")


# --- over HTTP ----------------------------------------------------------------------------------










def error_of(reply: Reply) -> str | None:
    found = re.search(r'data-error="([^"]+)"', reply.body)
    return found.group(1) if found else None


class FakeAudit:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, str | None, str | None, str]] = []

    def record(self, actor: str, action: str, target: str | None, room: str | None,
               outcome: str, now: float) -> None:
        self.records.append((actor, action, target, room, outcome))








@pytest_twisted.ensureDeferred
async def test_the_login_page_sets_a_pre_session_cookie_and_a_form_token(server: LiveServer) -> None:
    b = browser(server)
    page = await b.request("GET", "/login")
    assert page.code == 200 and 'action="/login"' in page.body
    assert page.header("content-security-policy") and page.header("cache-control") == "no-store"
    [cookie] = b.set_cookies
    assert cookie.startswith("hearth_login=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Path=/" in cookie and "Secure" not in cookie  # plain HTTP here
    assert csrf_in(page.body) != b.cookies["hearth_login"]


@pytest_twisted.ensureDeferred
async def test_posts_without_the_csrf_token_are_refused(server: LiveServer) -> None:
    add_account(server)
    b = browser(server)
    csrf = await b.login_form()
    refused = await b.request("POST", "/login", {"name": "ana", "password": PASSWORD})
    assert refused.code == 403 and error_of(refused) == "csrf"
    wrong = await b.request("POST", "/login", {"name": "ana", "password": PASSWORD,
                                               "csrf": csrf[:-2] + "xx"})
    assert wrong.code == 403
    # A token without its cookie (another browser's page) is no good either.
    stranger = browser(server)
    alone = await stranger.request("POST", "/login",
                                   {"name": "ana", "password": PASSWORD, "csrf": csrf})
    assert alone.code == 403 and "hearth_session" not in stranger.cookies

    signed_in = await b.login("ana", PASSWORD)
    assert signed_in.code == 303
    for headers in ({}, {"X-CSRF-Token": "nope"}):
        ticket = await b.request("POST", "/console/ticket", headers=headers)
        assert ticket.code == 403 and ticket.json()["error"] == "csrf"
    logout = await b.request("POST", "/logout", {"csrf": "nope"})
    assert logout.code == 403
    assert (await b.request("GET", "/console")).code == 200  # still signed in


@pytest_twisted.ensureDeferred
async def test_login_ticket_join_gives_the_facilitator_role_once(server: LiveServer) -> None:
    add_account(server)
    audit = auth_of(server).audit = FakeAudit()
    b = browser(server)
    signed_in = await b.login("Ana", PASSWORD)
    assert signed_in.code == 303 and signed_in.header("location") == "/console"
    session_cookie = next(c for c in b.set_cookies if c.startswith("hearth_session="))
    assert "HttpOnly" in session_cookie and "Path=/" in session_cookie
    assert "samesite=strict" in session_cookie.lower()
    assert len(b.cookies["hearth_session"]) == 43 and "hearth_login" not in b.cookies

    console = await b.request("GET", "/console")
    assert console.code == 200 and console.header("cache-control") == "no-store"
    assert "ana" in console.body and 'action="/logout"' in console.body
    assert "Test circle" in console.body and "Another room" in console.body

    reply = await b.request("POST", "/console/ticket",
                            headers={"X-CSRF-Token": console_csrf(console.body)})
    assert reply.code == 200 and reply.header("content-type") == "application/json"
    assert reply.header("cache-control") == "no-store"
    body = reply.json()
    assert set(body) == {"ticket", "role", "account"}
    assert body["role"] == "facilitator" and body["account"] == "ana"

    facilitator = await server.client()
    welcome = await facilitator.join("circle", ticket=body["ticket"])
    me = next(m for m in welcome["room"]["members"] if m["id"] == welcome["member"])
    assert me["role"] == "facilitator"
    assert server.hearth.node.venue.rooms["circle"].members[welcome["member"]].account == "ana"

    replay = await server.client()
    with pytest.raises(ServerError) as caught:
        await replay.join("circle", ticket=body["ticket"])
    assert caught.value.code == "forbidden"
    assert [(r[0], r[1], r[4]) for r in audit.records] == [("ana", "login", "ok"),
                                                           ("ana", "ticket", "ok")]
    for client in (facilitator, replay):
        await client.close()


@pytest_twisted.ensureDeferred
async def test_a_cookie_alone_on_the_websocket_gives_a_participant(
        server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    add_account(server)
    b = browser(server)
    assert (await b.login("ana", PASSWORD)).code == 303
    cookie = f"hearth_session={b.cookies['hearth_session']}"

    def with_cookie(*args: Any, **kwargs: Any) -> WebSocketClientFactory:
        return WebSocketClientFactory(*args, headers={"Cookie": cookie}, **kwargs)

    monkeypatch.setattr(hearth.client.websocket, "WebSocketClientFactory", with_cookie)
    client = await server.client()
    welcome = await client.join("circle")
    me = next(m for m in welcome["room"]["members"] if m["id"] == welcome["member"])
    assert me["role"] == "participant"
    await client.close()


@pytest_twisted.ensureDeferred
async def test_a_foreign_origin_is_refused_at_the_handshake_cookie_or_not(
        server: LiveServer) -> None:
    add_account(server)
    b = browser(server)
    assert (await b.login("ana", PASSWORD)).code == 303
    handshake = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                 "Sec-WebSocket-Protocol": "hearth.v1", "Origin": "https://evil.example"}
    refused = await b.request("GET", "/ws", headers=handshake)
    assert refused.code == 403
    with pytest.raises(ClientClosed):
        await HearthClient.connect(server.ws_url, origin="https://evil.example")


@pytest_twisted.ensureDeferred
async def test_unknown_name_and_wrong_password_look_the_same(server: LiveServer) -> None:
    add_account(server)
    auth = auth_of(server)
    verified: list[object] = []
    check = auth.store.check_password

    def counting(account: object, password: str) -> bool:
        verified.append(account)
        return bool(check(account, password))

    auth.store.check_password = counting
    auth.audit = audit = FakeAudit()
    b = browser(server)
    wrong = await b.login("ana", "not the password")
    unknown = await b.login("nobody", "not the password")
    assert wrong.code == unknown.code == 401
    assert error_of(wrong) == error_of(unknown) == "bad_credentials"

    def scrub(html: str) -> str:
        return re.sub(r'value="[^"]*"', 'value=""', html)

    assert scrub(wrong.body) == scrub(unknown.body)
    assert len(verified) == 2 and verified[0] is not None and verified[1] is None
    assert [r[0] for r in audit.records] == ["ana", "(unknown)"]
    assert all(r[1:] == ("login", None, None, "refused:bad_credentials") for r in audit.records)


@pytest_twisted.ensureDeferred
async def test_wrong_passwords_slow_down_then_lock_out() -> None:
    live = await start_server(make_config(login={"lockout_after_failures": 5}))
    try:
        add_account(live)
        audit = auth_of(live).audit = FakeAudit()
        b = browser(live)
        codes = [(await b.login("ana", f"wrong password {i}")).code for i in range(3)]
        assert codes == [401, 401, 401]
        slowed = await b.login("ana", PASSWORD)  # even the right password must wait
        assert slowed.code == 429 and error_of(slowed) == "wait"
        assert slowed.header("retry-after") == "1"
        auth = auth_of(live)
        # Skip the waits: the throttle reads the shell's clock.
        offset = [0.0]
        real = auth.clock
        auth.clock = lambda: real() + offset[0]
        for delay in (1, 2):
            offset[0] += delay
            assert (await b.login("ana", "wrong again!")).code == 401
        offset[0] += 4
        locked = await b.login("ana", PASSWORD)
        assert locked.code == 429 and error_of(locked) == "locked"
        assert 890 <= int(locked.header("retry-after") or 0) <= 900
        # The same answer for a name that does not exist, after as many failures.
        other = browser(live)
        assert [(r[0], r[1], r[2], r[4]) for r in audit.records if r[1] == "login.lockout"] == [
            ("ana", "login.lockout", "ana", "ok")]
        offset[0] += 900
        assert (await other.login("ana", PASSWORD)).code == 303
    finally:
        await live.hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_an_unknown_name_locks_out_the_same_way() -> None:
    live = await start_server(make_config(login={"lockout_after_failures": 2,
                                                 "delay_after_failures": 5}))
    try:
        add_account(live)
        b = browser(live)
        answers = []
        for name in ("ana", "nobody"):
            for _ in range(2):
                assert (await b.login(name, "wrong password!")).code == 401
            locked = await b.login(name, "wrong password!")
            answers.append((locked.code, error_of(locked), locked.header("retry-after")))
        assert answers[0] == answers[1] and answers[0][:2] == (429, "locked")
    finally:
        await live.hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_logout_ends_the_session(server: LiveServer) -> None:
    add_account(server)
    b = browser(server)
    await b.login("ana", PASSWORD)
    old = b.cookies["hearth_session"]
    csrf = console_csrf((await b.request("GET", "/console")).body)
    out = await b.request("POST", "/logout", {"csrf": csrf})
    assert out.code == 303 and out.header("location") == "/login"
    assert "hearth_session" not in b.cookies
    assert (await b.request("GET", "/console")).code == 303
    b.cookies["hearth_session"] = old  # a copied cookie is worthless now
    assert (await b.request("GET", "/console")).header("location") == "/login"
    ticket = await b.request("POST", "/console/ticket", headers={"X-CSRF-Token": csrf})
    assert ticket.code == 401 and ticket.json()["error"] == "not_signed_in"


@pytest_twisted.ensureDeferred
async def test_logout_with_the_header_token(server: LiveServer) -> None:
    add_account(server)
    b = browser(server)
    await b.login("ana", PASSWORD)
    csrf = console_csrf((await b.request("GET", "/console")).body)
    out = await b.request("POST", "/logout", headers={"X-CSRF-Token": csrf})
    assert out.code == 303 and (await b.request("GET", "/console")).code == 303


@pytest_twisted.ensureDeferred
async def test_a_new_password_or_a_removed_account_ends_its_sessions(server: LiveServer) -> None:
    store = add_account(server)
    add_account(server, "zed", role="operator")
    ana, zed = browser(server), browser(server)
    await ana.login("ana", PASSWORD)
    await zed.login("zed", PASSWORD)
    assert "(operator)" in (await zed.request("GET", "/console")).body
    store.reset("ana", "another long passphrase")
    store.remove("zed")
    assert (await ana.request("GET", "/console")).code == 303
    assert (await zed.request("GET", "/console")).code == 303
    assert (await ana.login("ana", PASSWORD)).code == 401
    assert (await ana.login("ana", "another long passphrase")).code == 303


@pytest_twisted.ensureDeferred
async def test_an_operator_gets_the_operator_role(server: LiveServer) -> None:
    add_account(server, "zed", role="operator")
    b = browser(server)
    await b.login("zed", PASSWORD)
    csrf = console_csrf((await b.request("GET", "/console")).body)
    body = (await b.request("POST", "/console/ticket", headers={"X-CSRF-Token": csrf})).json()
    assert (body["role"], body["account"]) == ("operator", "zed")


@pytest_twisted.ensureDeferred
async def test_idle_sessions_end(server: LiveServer) -> None:
    add_account(server)
    auth = auth_of(server)
    now = [1000.0]
    auth.clock = lambda: now[0]
    b = browser(server)
    await b.login("ana", PASSWORD)
    now[0] += 8 * 3600 - 1
    assert (await b.request("GET", "/console")).code == 200
    now[0] += 8 * 3600
    assert (await b.request("GET", "/console")).code == 303


@pytest_twisted.ensureDeferred
async def test_totp_is_required_once_set_and_a_code_works_once(server: LiveServer) -> None:
    store = add_account(server)
    secret = new_totp_secret()
    store.set_totp("ana", secret)
    auth = auth_of(server)
    b = browser(server)
    assert (await b.login("ana", PASSWORD)).code == 401
    assert (await b.login("ana", PASSWORD, "000000" if totp_code(secret, auth.clock()) != "000000"
                          else "111111")).code == 401
    code = totp_code(secret, auth.clock())
    assert (await b.login("ana", PASSWORD, code)).code == 303
    assert (await browser(server).login("ana", PASSWORD, code)).code == 401  # no replay


@pytest_twisted.ensureDeferred
async def test_the_console_needs_a_session(server: LiveServer) -> None:
    b = browser(server)
    assert (await b.request("GET", "/console")).header("location") == "/login"
    ticket = await b.request("POST", "/console/ticket", headers={"X-CSRF-Token": "x"})
    assert ticket.code == 401
    assert (await b.request("GET", "/console/ticket")).code == 405
    assert (await b.request("GET", "/console/nothing")).code == 404
    missing = await b.request("POST", "/login", {"csrf": await b.login_form(), "name": "ana"})
    assert missing.code == 400
    huge = await b.request("POST", "/login", raw=b"name=" + b"a" * 20000)
    assert huge.code == 413


@pytest_twisted.ensureDeferred
async def test_no_address_password_or_cookie_is_logged_or_kept(server: LiveServer) -> None:
    add_account(server)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        b = browser(server, bind="127.0.0.2")
        await b.login("ana", "a wrong password")
        await b.login("ana", PASSWORD)
        csrf = console_csrf((await b.request("GET", "/console")).body)
        ticket = (await b.request("POST", "/console/ticket",
                                  headers={"X-CSRF-Token": csrf})).json()["ticket"]
    finally:
        globalLogPublisher.removeObserver(events.append)
    auth = auth_of(server)
    data_dir = Path(server.hearth.node.venue.config.server.data_dir)
    stored = b"".join(p.read_bytes() for p in data_dir.iterdir() if p.is_file()).decode()
    kept = repr(auth.throttle.__dict__) + repr(auth.sessions.__dict__)
    logged = repr(events)
    entries = list(read_entries(data_dir / "audit.jsonl"))
    assert {(e.actor, e.action, e.outcome) for e in entries} >= {
        ("ana", "login", "refused:bad_credentials"), ("ana", "login", "ok"), ("ana", "ticket", "ok")}
    for secret in ("127.0.0.2", PASSWORD, "a wrong password", b.cookies["hearth_session"], ticket):
        for haystack, what in ((stored, "data dir"), (kept, "memory"), (logged, "logs")):
            assert secret not in haystack, f"{secret[:12]}... found in {what}"


def test_the_shipped_config_documents_the_login_defaults() -> None:
    from hearth.spaces.config import load_config
    assert load_config().login == LoginConfig()
