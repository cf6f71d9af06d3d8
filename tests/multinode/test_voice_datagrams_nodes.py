"""Voice over WebTransport across three nodes: an edge carries its members' datagrams to the
room's owner and the owner's Voice back to the edges, where each listener gets it on its
own session (or its WebSocket), exactly like the WebSocket path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from bench.wtclient import SessionRefused, open_session
from hearth.client.websocket import HearthClient
from hearth.spaces.broker import MemoryBroker
from hearth.spaces.voice import build_frame, parse_header
from tests.support.live import LiveServer, room_caught_up, sleep, until, walk_to
from tests.support.nodes import node_configs, start_nodes
from tests.support.voice_udp import datagrams_in, offer, on_asyncio, session_for, udp


@pytest_twisted.async_yield_fixture(params=["memory", "redis"])
async def three_udp_nodes(request: pytest.FixtureRequest) -> AsyncIterator[list[LiveServer]]:
    configs = node_configs(3, webtransport={"self_signed": True})
    if request.param == "memory":
        shared = MemoryBroker(reactor.seconds, schedule=lambda c: reactor.callLater(0, c))
        brokers: list[Any] = [shared] * 3
    else:
        from hearth.web.redis_broker import RedisBroker
        url = request.getfixturevalue("redis_server").url
        brokers = [RedisBroker(url) for _ in range(3)]
    nodes = await start_nodes(configs, brokers, webtransport=True)
    yield nodes
    for node in nodes:
        await node.hearth.service.stopService()


async def member(node: LiveServer, name: str, x: float, **fields: Any) -> HearthClient:
    client = await HearthClient.connect(node.ws_url)
    await client.join("circle", pseudonym=name, **fields)
    await walk_to(client, x, 8.0)
    return client


@pytest_twisted.ensureDeferred
async def test_an_edge_carries_datagrams_to_the_owner_and_back_on_three_nodes(
        three_udp_nodes: list[LiveServer]) -> None:
    n1, n2, n3 = three_udp_nodes
    ticket = n1.hearth.node.venue.issue_ticket("facilitator", n1.hearth.node.clock(), "ana")
    facilitator = await member(n1, "Ana Guide", 4.0, ticket=ticket)  # node1 runs the room
    speaker = await member(n2, "Speaker Wren", 5.0)
    on_n1 = await member(n1, "Uno Wren", 6.0)
    on_n3 = await member(n3, "Tres Wren", 7.0)
    socket_n2 = await member(n2, "Dos Wren", 8.0)  # stays on its WebSocket
    assert n1.hearth.node.owned == {"circle"} and not n2.hearth.node.owned
    sessions = {name: await session_for(client) for name, client in
                (("speaker", speaker), ("n1", on_n1), ("n3", on_n3))}

    # A session belongs to the node of its WebSocket: node2's token is unknown at node3.
    elsewhere = await offer(socket_n2, "elsewhere")
    elsewhere["url"] = elsewhere["url"].replace(f":{udp(n2).port}/", f":{udp(n3).port}/")
    elsewhere["hashes"] = udp(n3).certificates.hashes()
    try:
        await on_asyncio(open_session(elsewhere))
        raise AssertionError("node3 took node2's token")
    except SessionRefused as refused:
        assert refused.status == 403

    for seq in range(1, 11):
        sessions["speaker"].send(build_frame(b"opus" * 10, seq=seq, level=10))
        await sleep(0.02)
    await until(lambda: len(sessions["n1"].frames) >= 10 and len(sessions["n3"].frames) >= 10
                and len(socket_n2.binary) >= 10 and len(facilitator.binary) >= 10,
                what="the speaker heard on every node")
    # The facilitator (at the room's owner) has all ten: the owner handled them all.
    await room_caught_up(facilitator, speaker, on_n1, on_n3, socket_n2)
    await datagrams_in(three_udp_nodes, sessions.values())
    for got in (sessions["n1"].frames, sessions["n3"].frames, socket_n2.binary):
        assert [parse_header(f, 4096).seq for f in got] == list(range(1, 11))
    assert not on_n1.binary and not on_n3.binary  # theirs came as datagrams
    assert udp(n2).counts["received"] == 10  # at the speaker's edge
    assert udp(n1).counts["sent"] == 10 and udp(n3).counts["sent"] == 10

    # One code path decides: the facilitator on node1 mutes the speaker on node2, whose
    # datagrams then reach nobody on any node, and the speaker is told.
    facilitator.send({"type": "mute", "member": speaker.member})
    await speaker.next(lambda m: m["type"] == "member_updated"
                       and m["member"]["id"] == speaker.member and m["member"]["muted"])
    voice = n1.hearth.node.venue.rooms["circle"].voice  # at the room's owner
    dropped = voice.dropped_muted
    for seq in range(11, 16):
        sessions["speaker"].send(build_frame(b"opus" * 10, seq=seq, level=10))
    assert (await speaker.expect("error"))["code"] == "muted"
    await until(lambda: voice.dropped_muted == dropped + 5, what="five muted frames dropped")
    await room_caught_up(facilitator, speaker, on_n1, on_n3, socket_n2)
    await datagrams_in(three_udp_nodes, sessions.values())
    assert len(sessions["n1"].frames) == len(sessions["n3"].frames) == 10
    assert len(socket_n2.binary) == 10
    for s in sessions.values():
        await on_asyncio(s.close())
    for client in (facilitator, speaker, on_n1, on_n3, socket_n2):
        await client.close()
