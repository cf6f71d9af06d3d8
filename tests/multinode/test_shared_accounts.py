"""Facilitator accounts and roles across two nodes sharing a redis-server.

An account added on one node signs in on the other (and is in its own file, the
fallback); signing out, or removing the account on one node, withdraws the role on a
socket held through the other within 2 s; failed sign-ins count across nodes; a TOTP
code works on one node only; and what someone who can write to Redis forges — a sign-in
session, an account — is refused and counted."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_twisted

from hearth.client.websocket import HearthClient
from hearth.moderation.accounts import AccountStore, new_totp_secret, totp_code
from hearth.spaces.venue import ROLE_WITHDRAWN
from hearth.web.redis_broker import RedisBroker
from tests.support.live import LiveServer, until_async
from tests.support.nodes import node_configs, start_nodes
from tests.support.redis_servers import RedisServer
from tests.support.signin import PASSWORD, browser, logout, ticket_of

WITHIN = 2.0


@pytest_twisted.async_yield_fixture
async def two(redis_server: RedisServer) -> AsyncIterator[list[LiveServer]]:
    import redis
    redis.Redis.from_url(redis_server.url).flushall()  # nothing of another test's deployment
    configs = node_configs(2, login={"delay_after_failures": 100, "lockout_after_failures": 4})
    nodes = await start_nodes(configs, [RedisBroker(redis_server.url) for _ in configs])
    yield nodes
    for node in nodes:
        await node.hearth.service.stopService()


def store_of(node: LiveServer) -> AccountStore:
    return AccountStore.in_data_dir(Path(node.hearth.node.venue.config.server.data_dir))


async def has_account(node: LiveServer, name: str = "ana") -> bool:
    return store_of(node).get(name) is not None


async def with_ana(two: list[LiveServer]) -> list[LiveServer]:
    """"ana" added beside node1, and arrived on node2."""
    store_of(two[0]).add("ana", PASSWORD, time.time())
    await until_async(lambda: has_account(two[1]), what="the account on node2", timeout=5)
    return two


async def facilitator_through(signed_on: LiveServer, joined_on: LiveServer,
                              room_owner: LiveServer) -> tuple[Any, HearthClient, HearthClient]:
    """Signed in on one node, in the room through another; the room runs on a third's."""
    bystander = await room_owner.client()
    await bystander.join("circle")  # the first join: this node runs the room
    b = browser(signed_on)
    assert (await b.login("ana", PASSWORD)).code == 303
    facilitator = await joined_on.client()
    await facilitator.join("circle", ticket=await ticket_of(b))
    await bystander.expect("member_joined")
    return b, facilitator, bystander


async def withdrawn(facilitator: HearthClient, bystander: HearthClient) -> float:
    started = time.monotonic()
    code, _ = await facilitator.until_closed()
    assert code == ROLE_WITHDRAWN
    left = await bystander.next(lambda m: m["type"] == "member_left", timeout=5)
    assert left["member"] == facilitator.member
    return time.monotonic() - started


@pytest_twisted.ensureDeferred
async def test_an_account_added_on_one_node_signs_in_on_the_other(
        two: list[LiveServer]) -> None:
    n1, n2 = two
    store_of(n1).add("ana", PASSWORD, time.time())  # `hearth facilitator add` beside node1
    await until_async(lambda: has_account(n2), what="the account on node2", timeout=5)
    copy = store_of(n2).get("ana")
    assert copy is not None and copy.password_hash == store_of(n1).get("ana").password_hash
    assert (await browser(n2).login("ana", PASSWORD)).code == 303
    raw = b"".join(d for _, d in await n2.hearth.node.broker.read("accounts") or [])
    assert b"$argon2" not in raw and b"facilitator" not in raw  # encrypted in Redis


@pytest_twisted.ensureDeferred
async def test_signing_out_on_one_node_withdraws_the_role_on_the_other(
        two: list[LiveServer]) -> None:
    n1, n2 = await with_ana(two)
    b, facilitator, bystander = await facilitator_through(n1, n2, n2)
    assert (await logout(b)).code == 303
    assert await withdrawn(facilitator, bystander) < WITHIN
    await bystander.close()


@pytest_twisted.ensureDeferred
async def test_removing_an_account_on_one_node_withdraws_its_role_on_the_other(
        two: list[LiveServer]) -> None:
    n1, n2 = await with_ana(two)
    _, facilitator, bystander = await facilitator_through(n2, n2, n2)
    store_of(n1).remove("ana")  # on node1's machine; the room runs on node2
    assert await withdrawn(facilitator, bystander) < WITHIN
    assert store_of(n2).get("ana") is None  # and node2's own file says so (the fallback)
    assert "ana" in json.loads(store_of(n2).path.read_text())["removed"]
    refused = browser(n2)
    assert (await refused.login("ana", PASSWORD)).code == 401
    await bystander.close()


@pytest_twisted.ensureDeferred
async def test_failed_sign_ins_count_across_nodes(two: list[LiveServer]) -> None:
    await with_ana(two)
    for i in range(4):  # lockout_after_failures = 4, alternating nodes
        node = two[i % 2]
        assert (await browser(node).login("ana", "wrong password " + str(i))).code == 401
        other = two[(i + 1) % 2]
        await until_async(lambda other=other, i=i: _failures(other, i + 1),
                          what="the count on the other node", timeout=5)
    for node in two:  # locked on both, even with the right password
        assert (await browser(node).login("ana", PASSWORD)).code == 429


async def _failures(node: LiveServer, expected: int) -> bool:
    from tests.support.signin import auth_of
    records = auth_of(node).throttle._records
    return any(k[0] == "account" and r.failures >= expected for k, r in records.items())


@pytest_twisted.ensureDeferred
async def test_a_totp_code_works_on_one_node_only(two: list[LiveServer]) -> None:
    n1, n2 = two
    store = store_of(n1)
    store.add("ana", PASSWORD, time.time())
    secret = new_totp_secret()
    store.set_totp("ana", secret)

    async def has_totp() -> bool:
        found = store_of(n2).get("ana")
        return found is not None and found.has_totp
    await until_async(has_totp, what="the second factor on node2", timeout=5)
    code = totp_code(secret, time.time())
    assert (await browser(n1).login("ana", PASSWORD, code)).code == 303
    assert (await browser(n2).login("ana", PASSWORD, code)).code == 401


@pytest_twisted.ensureDeferred
async def test_what_redis_alone_forges_is_refused_and_counted(
        two: list[LiveServer], redis_server: RedisServer) -> None:
    """A "create" for a cookie the forger knows, and an account with a known password:
    appended to the shared logs as a node would, but not sealed with the deployment's key."""
    import redis
    n1, n2 = two
    client = redis.Redis.from_url(redis_server.url)
    cookie = "A" * 43
    client.xadd("hearth:log:sessions", {"record": json.dumps({
        "op": "create", "digest": hashlib.sha256(cookie.encode()).hexdigest(),
        "account": "ana", "role": "operator", "generation": 1, "created": time.time(),
        "csrf": "B" * 43, "id": "f" * 32, "node": "node9", "mac": "0" * 64})})
    forged_account = store_of(n1)
    forged_account.add("eve", PASSWORD, time.time())
    record = forged_account.records()["eve"]
    forged_account.remove("eve")
    client.xadd("hearth:log:accounts", {"record": json.dumps({**record, "mac": "0" * 64})})

    async def counted() -> bool:
        return all(n.hearth.node.shared_records_refused >= 2 for n in two)
    await until_async(counted, what="both forgeries refused on both nodes", timeout=5)
    b = browser(n2)
    b.cookies = {"hearth_session": cookie}
    assert (await b.request("GET", "/console")).code == 303  # no session
    assert store_of(n2).get("eve") is None
    assert (await browser(n2).login("eve", PASSWORD)).code == 401


@pytest_twisted.ensureDeferred
async def test_with_redis_away_a_node_signs_in_from_its_own_file(
        two: list[LiveServer], redis_server: RedisServer) -> None:
    _, n2 = await with_ana(two)
    redis_server.kill()
    try:
        assert (await browser(n2).login("ana", PASSWORD)).code == 303
    finally:
        redis_server.restart()
