"""Several nodes, one room: members spread over three nodes chat, speak and are moderated
as if on one. Run over a shared MemoryBroker, a real redis-server, and a 3-master Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted

from hearth.client.groupchat import GroupChat
from hearth.client.websocket import HearthClient
from tests.support.live import LiveServer, settle, until, walk_to
from tests.support.nodes import brokers_for, node_configs, start_nodes


@pytest_twisted.async_yield_fixture(params=["memory", "redis", "cluster"])
async def three_nodes(request: pytest.FixtureRequest) -> AsyncIterator[list[LiveServer]]:
    nodes = await start_nodes(node_configs(3), brokers_for(request.param, request, 3))
    yield nodes
    for node in nodes:
        await node.hearth.service.stopService()


async def join_on(node: LiveServer, **fields: Any) -> GroupChat:
    client = await HearthClient.connect(node.ws_url)
    return await GroupChat.join(client, "circle", **fields)


@pytest_twisted.ensureDeferred
async def test_nine_members_on_three_nodes_chat_speak_and_are_moderated(
        three_nodes: list[LiveServer]) -> None:
    n1, _, n3 = three_nodes
    ticket = n1.hearth.node.venue.issue_ticket("facilitator", n1.hearth.node.clock(), "ana")
    chats = [await join_on(n1, ticket=ticket)]  # joins first: node1 owns the room
    for i in range(1, 8):
        chats.append(await join_on(three_nodes[i % 3], pseudonym=f"Member {i}"))
    target = await join_on(n3, pseudonym="Target Wren")
    everyone = [*chats, target]
    await settle(*everyone)
    owners = {n.hearth.node.id: n.hearth.node.owned for n in three_nodes}
    assert owners["node1"] == {"circle"} and not owners["node2"] and not owners["node3"]

    # chat: every message reaches every other member, in one order, decrypted
    said = [await c.say(f"hello from {i}") for i, c in enumerate(everyone)]
    assert [s.seq for s in said] == list(range(said[0].seq, said[0].seq + 9))
    for i, c in enumerate(everyone):
        got = [await c.next_message() for _ in range(8)]
        assert sorted(m.text for m in got) == sorted(
            f"hello from {j}" for j in range(9) if j != i)
        assert [m.seq for m in got] == sorted(m.seq for m in got)
        assert not c.rejected

    # voice: the target (on node3) is heard by members on every node
    for c in everyone:
        await walk_to(c.client, 5.0 + 0.3 * everyone.index(c), 8.0)
    target.speak(b"opus" * 10, level=10)
    await until(lambda: all(any(who == target.client.member for who, _ in c.heard)
                            for c in everyone if c is not target), what="voice on every node")

    # the facilitator on node1 mutes the target on node3: nobody hears it any more
    facilitator = chats[0]
    facilitator.client.send({"type": "mute", "member": target.client.member})
    await target.client.next(lambda m: m["type"] == "member_updated"
                             and m["member"]["id"] == target.client.member
                             and m["member"]["muted"])
    for c in everyone:
        c.heard.clear()
    for _ in range(5):
        target.speak(b"opus" * 10, level=10)
    error = await target.client.expect("error")
    assert error["code"] == "muted"
    assert all(not c.heard for c in everyone)

    # ... and removes it: closed with 4003, and the room's epoch moves on everywhere
    facilitator.client.send({"type": "remove", "member": target.client.member})
    code, _ = await target.client.until_closed()
    assert code == 4003
    for c in everyone[1:8]:
        left = await c.client.next(lambda m: m["type"] == "member_left")
        assert left["member"] == target.client.member and left["reason"] == "removed"
    for c in chats:
        await c.client.close()
    # every member let go by the owner, whichever node held it (relay LOST from the edges)
    await until(lambda: not n1.hearth.node.host.holders and not n1.hearth.node.host.held_remotely,
                what="the owner to let go of every member")
