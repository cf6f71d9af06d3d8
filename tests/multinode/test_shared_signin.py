"""A facilitator signs in on one node and is signed in on every node (the load balancer
may send each request anywhere), gets a role ticket from another, moderates through a
third, and signing out anywhere ends the session everywhere. Over a shared MemoryBroker,
a real redis-server and a 3-master Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import Clock

from hearth.moderation.login import SHARE_SEEN_EVERY, SessionTable
from hearth.spaces.broker import MemoryBroker
from tests.support.live import LiveServer, until_async
from tests.support.nodes import node_configs, start_nodes
from tests.support.signin import PASSWORD, add_account, browser, console_csrf, csrf_in


def test_session_changes_reach_the_other_tables() -> None:
    clock = Clock()
    clock.advance(1000)
    events: list[dict[str, Any]] = []
    here = SessionTable(3600, 86400, on_change=events.append)
    there = SessionTable(3600, 86400)
    cookie, session = here.create("ana", "facilitator", 1, clock.seconds())
    for event in events:
        there.apply(event, clock.seconds())
    found = there.get(cookie, clock.seconds())
    assert found is not None and (found.account, found.csrf) == ("ana", session.csrf)
    assert cookie not in repr(events)  # the digest travels, never the cookie
    events.clear()
    clock.advance(SHARE_SEEN_EVERY / 2)
    here.get(cookie, clock.seconds())
    assert events == []  # "seen" at most once a minute
    clock.advance(SHARE_SEEN_EVERY / 2)
    here.get(cookie, clock.seconds())
    assert [e["op"] for e in events] == ["seen"]
    here.end(cookie)
    for event in events:
        there.apply(event, clock.seconds())
    assert there.get(cookie, clock.seconds()) is None
    # end_account, nonsense, and a session that had already expired
    other, _ = here.create("bo", "operator", 1, clock.seconds())
    stale = {"op": "create", "digest": "00" * 32, "account": "cy", "role": "facilitator",
             "generation": 1, "created": clock.seconds() - 90000, "csrf": "x"}
    for event in [*events, stale, {"op": "create"}, {"digest": "zz"}, {"op": "seen"}]:
        there.apply(event, clock.seconds())
    assert len(there) == 1
    here.end_account("bo")
    there.apply(events[-1], clock.seconds())
    assert len(there) == 0 and here.get(other, clock.seconds()) is None


@pytest_twisted.async_yield_fixture(params=["memory", "redis", "cluster"])
async def three(request: pytest.FixtureRequest) -> AsyncIterator[list[LiveServer]]:
    if request.param == "memory":
        shared = MemoryBroker(reactor.seconds, schedule=lambda c: reactor.callLater(0, c))
        brokers: list[Any] = [shared] * 4
    else:
        from hearth.web.redis_broker import RedisBroker
        url = request.getfixturevalue(
            "redis_server" if request.param == "redis" else "redis_cluster").url
        brokers = [RedisBroker(url) for _ in range(4)]
    configs = node_configs(4)
    nodes = await start_nodes(configs[:3], brokers[:3])
    add_account(nodes[0])  # on one node: the others get it (web/shared_accounts.py)
    for node in nodes:
        await until_async(lambda node=node: _has_ana(node), what="the account on every node")
    started = [*nodes]

    async def late() -> LiveServer:
        [node] = await start_nodes(configs[3:], brokers[3:], first=4)
        await until_async(lambda: _has_ana(node), what="the account on a node started later")
        started.append(node)
        return node
    request.node.late = late
    yield nodes
    for node in started:
        await node.hearth.service.stopService()


async def _has_ana(node: LiveServer) -> bool:
    from pathlib import Path

    from hearth.moderation.accounts import AccountStore
    data = Path(node.hearth.node.venue.config.server.data_dir)
    return AccountStore.in_data_dir(data).get("ana") is not None


@pytest_twisted.ensureDeferred
async def test_signed_in_on_one_node_is_signed_in_on_every_node(
        three: list[LiveServer], request: pytest.FixtureRequest) -> None:
    n1, n2, n3 = three
    b = browser(n1)
    page = await b.request("GET", "/login")
    signed_in = await b.request("POST", "/login", {"name": "ana", "password": PASSWORD,
                                                   "code": "", "csrf": csrf_in(page.body)})
    assert signed_in.code == 303
    cookies = dict(b.cookies)

    def on(node: LiveServer) -> Any:
        """The same browser (its cookies as right after signing in), on another node: a
        signed-out session must be refused even to a browser that kept the cookie."""
        other = browser(node)
        other.cookies = dict(cookies)
        return other

    async def console_ok(node: LiveServer) -> bool:
        return (await on(node).request("GET", "/console")).code == 200
    for node in (n2, n3):
        await until_async(lambda node=node: console_ok(node), what="signed in on every node")
    console = await on(n2).request("GET", "/console")
    ticket = await on(n3).request("POST", "/console/ticket",
                                  headers={"X-CSRF-Token": console_csrf(console.body)})
    assert ticket.code == 200, ticket.body
    facilitator = await n1.client()
    welcome = await facilitator.join("circle", ticket=ticket.json()["ticket"])
    assert welcome["room"]["members"][-1]["role"] == "facilitator"

    late = await request.node.late()  # a node started afterwards reads the shared log
    await until_async(lambda: console_ok(late), what="signed in on a node started later")

    # signing out on node3 ends the session on every node
    out = await on(n3).request("POST", "/logout", {"csrf": console_csrf(console.body)})
    assert out.code == 303

    async def signed_out(node: LiveServer) -> bool:
        return (await on(node).request("GET", "/console")).code == 303
    for node in (n1, n2, late):
        await until_async(lambda node=node: signed_out(node), what="signed out everywhere")
    await facilitator.close()



