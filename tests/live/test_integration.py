"""The real server on an ephemeral loopback port, spoken to by the project's own client."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.web.client import Agent, readBody

from hearth.client.websocket import HearthClient
from tests.support.live import LiveServer

COMMIT = "B" * 43 + "="


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def http_get(url: str) -> tuple[int, dict[str, list[str]], bytes]:
    response = await Agent(reactor).request(b"GET", url.encode())
    body = await readBody(response)
    headers = {k.decode().lower(): [v.decode() for v in vs]
               for k, vs in response.headers.getAllRawHeaders()}
    return response.code, headers, body


@pytest_twisted.ensureDeferred
async def test_two_members_see_each_other_join_move_and_exchange_envelopes(
        server: LiveServer) -> None:
    alice = await server.client()
    wa = await alice.join("circle", pseudonym="Alice Wren")
    bob = await server.client()
    wb = await bob.join("circle")
    assert {m["id"] for m in wb["room"]["members"]} == {wa["member"], wb["member"]}
    joined = await alice.expect("member_joined")
    assert joined["member"]["id"] == wb["member"]

    bob.move(12.0, 8.3)  # within one step of the spawn point (12.0, 8.5)
    moved = await alice.next(lambda m: m["type"] == "positions"
                             and any(mv[0] == wb["member"] for mv in m["moves"]))
    assert next(mv for mv in moved["moves"] if mv[0] == wb["member"])[1:3] == [12.0, 8.3]

    alice.envelope("aGVsbG8=", COMMIT, ref="x1")
    sent = await alice.expect("sent")
    got = await bob.expect("envelope")
    assert got["from"] == wa["member"] and got["body"] == "aGVsbG8=" and got["seq"] == sent["seq"]
    assert sent["ref"] == "x1" and got["tag"] == sent["tag"]

    bob.direct(wa["member"], "ZGlyZWN0")
    direct = await alice.expect("direct")
    assert direct == {"type": "direct", "from": wb["member"], "body": "ZGlyZWN0", "dseq": 1}
    await alice.close()
    await bob.close()


@pytest_twisted.ensureDeferred
async def test_a_member_of_another_room_sees_nothing(server: LiveServer) -> None:
    carol = await server.client()
    await carol.join("other")
    alice = await server.client()
    await alice.join("circle")
    bob = await server.client()
    wb = await bob.join("circle")
    alice.envelope("c2VjcmV0", COMMIT)
    await bob.expect("envelope")
    bob.move(11.0, 8.0)
    await alice.next("positions")
    await alice.close()
    await sleep(0.3)  # a tick or two
    seen = [m for m in carol.inbox if m["type"] != "positions" or
            any(mv[0] == wb["member"] for mv in m["moves"])]
    assert seen == []
    await carol.close()
    await bob.close()


@pytest_twisted.ensureDeferred
async def test_a_dropped_member_resumes_with_pseudonym_and_seat_unseen_by_others(
        server: LiveServer) -> None:
    alice = await server.client()
    wa = await alice.join("circle", pseudonym="Steady Owl")
    bob = await server.client()
    await bob.join("circle")
    seat = wa["room"]["layout"]["seats"][4]
    for step in range(12):  # walk to seat 4 at walking pace
        x0, y0 = 2.0, 8.5
        alice.move(x0 + (seat[0] - x0) * (step + 1) / 12, y0 + (seat[1] - y0) * (step + 1) / 12)
        await sleep(0.1)
    alice.sit(4)
    update = await bob.next(lambda m: m["type"] == "member_updated" and m["member"]["seat"] == 4)
    assert update["member"]["id"] == wa["member"]

    alice.drop()
    await alice.until_closed()
    again = await server.client()
    resumed = await again.resume(wa["token"])
    assert resumed["resumed"] and resumed["member"] == wa["member"]
    me = next(m for m in resumed["room"]["members"] if m["id"] == wa["member"])
    assert me["pseudonym"] == "Steady Owl" and me["seat"] == 4
    await sleep(0.3)
    assert [m for m in bob.inbox if m["type"] in ("member_left", "member_joined")] == []
    await again.close()
    await bob.close()


@pytest_twisted.ensureDeferred
async def test_healthz_and_landing_page_with_security_headers(server: LiveServer) -> None:
    code, headers, body = await http_get(server.http_url + "/healthz")
    assert code == 200 and headers["content-type"] == ["application/json"]
    health = json.loads(body)
    assert health["status"] == "ok" and health["rooms"] == 2
    code, headers, body = await http_get(server.http_url + "/")
    assert code == 200 and b"Test circle" in body and b"Another room" in body
    csp = headers["content-security-policy"][0]
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "http" not in csp
    assert headers["referrer-policy"] == ["no-referrer"]
    assert headers["x-content-type-options"] == ["nosniff"]
    assert "microphone=(self)" in headers["permissions-policy"][0]
    code, _, _ = await http_get(server.http_url + "/static/css/hearth.css")
    assert code == 200
    code, _, body = await http_get(server.http_url + "/static/")
    assert code == 404  # no directory listings
    code, _, _ = await http_get(server.http_url + "/nope")
    assert code == 404


@pytest_twisted.ensureDeferred
async def test_tcp_nodelay_is_set_on_server_connections(server: LiveServer) -> None:
    client = await server.client()
    await client.join("circle")
    node: Any = server.hearth.node
    link = next(iter(node.host.local.values()))
    sock = link.peer.transport.getHandle()
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    await client.close()


@pytest_twisted.ensureDeferred
async def test_client_reports_handshake_refusal(server: LiveServer) -> None:
    try:
        await HearthClient.connect(server.ws_url, origin="https://evil.example")
    except Exception as err:
        assert "403" in str(err) or "handshake" in str(err)
    else:
        raise AssertionError("a foreign origin was accepted")
