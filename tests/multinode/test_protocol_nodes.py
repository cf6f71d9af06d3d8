"""docs/protocol.md's resume and de-duplication promises across nodes: a member connected to
another node than its room's drops, resumes on a third, and gets what it missed once, in
order, right after the welcome; an envelope sent again through another node is answered
the same and delivered once. Over the embedded broker and a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from hearth.client.websocket import HearthClient, resume_anywhere
from tests.support.live import LiveServer, caught_up, room_caught_up, sleep
from tests.support.nodes import brokers_for, node_configs, serve_nodes, start_nodes
from tests.support.redis_servers import RedisServer
from tests.support.serving import ServedHearth

COMMIT = "C" * 43 + "="


@pytest_twisted.async_yield_fixture(params=["memory", "redis"])
async def three_nodes(request: pytest.FixtureRequest) -> AsyncIterator[list[LiveServer]]:
    nodes = await start_nodes(node_configs(3), brokers_for(request.param, request, 3))
    yield nodes
    for node in nodes:
        await node.hearth.service.stopService()


async def member_on(node: LiveServer) -> tuple[HearthClient, dict[str, Any]]:
    client = await HearthClient.connect(node.ws_url)
    return client, await client.join("circle")


@pytest_twisted.ensureDeferred
async def test_a_member_resumed_on_a_third_node_gets_what_it_missed_once_and_in_order(
        three_nodes: list[LiveServer]) -> None:
    n1, n2, n3 = three_nodes
    owner, _ = await member_on(n1)  # the first join: n1 runs the room
    roamer, welcome = await member_on(n2)
    talker, _ = await member_on(n3)
    talker.envelope("AQ==", COMMIT, client_id="t-0")
    await roamer.next(lambda m: m["type"] == "envelope" and m.get("id") == "t-0")
    last = roamer.seq
    roamer.drop()
    await roamer.until_closed()
    await owner.next(lambda m: m["type"] == "member_updated" and m["member"]["away"])
    for i in range(1, 4):
        (owner if i % 2 else talker).envelope("Ag==", COMMIT, client_id=f"x-{i}")
    talker.send({"type": "direct", "to": welcome["member"], "body": "BBBB"})
    await caught_up(talker)
    await room_caught_up(owner, talker)

    again = await HearthClient.connect(n3.ws_url)
    frames: list[dict[str, Any]] = []
    again.on_message = frames.append
    back = await again.resume(welcome["token"], seq=last)
    await caught_up(again)
    kinds = [m["type"] for m in frames]
    assert kinds[:5] == ["welcome", "direct", "envelope", "envelope", "envelope"], kinds
    replayed = frames[2:5]
    assert sorted(m["id"] for m in replayed) == ["x-1", "x-2", "x-3"]
    assert [m["seq"] for m in replayed] == sorted(m["seq"] for m in replayed)  # the room's order
    assert all(m["seq"] < back["room"]["seq"] for m in frames[2:5])
    assert [m for m in frames[5:] if m["type"] in ("envelope", "direct")] == []
    await again.close()
    await owner.close()
    await talker.close()


@pytest_twisted.ensureDeferred
async def test_a_direct_written_to_a_dead_link_on_another_node_comes_back_with_the_resume(
        three_nodes: list[LiveServer]) -> None:
    """The roamer's link (to n2; the room runs on n1) stops delivering while it still looks
    open: a sender key and an envelope go into it. Resumed on n3 saying the last `seq` and
    `dseq` it received, it gets that direct, then that envelope, each once."""
    n1, n2, n3 = three_nodes
    owner, _ = await member_on(n1)
    roamer, welcome = await member_on(n2)
    talker, _ = await member_on(n3)
    talker.send({"type": "direct", "to": welcome["member"], "body": "AAAA"})
    first = await roamer.next("direct")
    assert first["dseq"] == roamer.dseq == 1
    last = roamer.seq
    roamer.stop_reading()
    talker.send({"type": "direct", "to": welcome["member"], "body": "BBBB"})
    talker.envelope("Ag==", COMMIT, client_id="d-1")
    await caught_up(talker)
    await room_caught_up(owner, talker)
    again = await HearthClient.connect(n3.ws_url)
    frames: list[dict[str, Any]] = []
    again.on_message = frames.append
    await again.resume(welcome["token"], seq=last, dseq=roamer.dseq)
    await caught_up(again)
    kinds = [m["type"] for m in frames]
    assert kinds[:3] == ["welcome", "direct", "envelope"], kinds
    assert (frames[1]["body"], frames[1]["dseq"], frames[2]["id"]) == ("BBBB", 2, "d-1")
    assert [m for m in frames[3:] if m["type"] in ("envelope", "direct")] == []
    roamer.drop()
    await again.close()
    await owner.close()
    await talker.close()


@pytest_twisted.ensureDeferred
async def test_an_envelope_sent_again_through_another_node_is_answered_the_same_once(
        three_nodes: list[LiveServer]) -> None:
    n1, n2, n3 = three_nodes
    owner, _ = await member_on(n1)
    sender, welcome = await member_on(n2)
    sender.envelope("AQ==", COMMIT, client_id="s-1", ref="first")
    first = await sender.expect("sent")
    await owner.next(lambda m: m["type"] == "envelope" and m.get("id") == "s-1")
    sender.drop()  # as if the `sent` had been lost with the connection
    await sender.until_closed()
    again = await HearthClient.connect(n3.ws_url)
    await again.resume(welcome["token"], seq=first["seq"])
    again.envelope("AQ==", COMMIT, client_id="s-1", ref="again")
    repeat = await again.expect("sent")
    assert repeat["ref"] == "again"
    assert {k: repeat[k] for k in ("seq", "ts", "tag", "epoch", "id")} == \
        {k: first[k] for k in ("seq", "ts", "tag", "epoch", "id")}
    await room_caught_up(again, owner)
    assert [m for m in owner.inbox if m["type"] == "envelope"] == []
    await again.close()
    await owner.close()


@pytest_twisted.ensureDeferred
async def test_when_the_room_s_node_dies_a_member_elsewhere_is_told_moving_then_4010_and_resumes(
        tmp_path: Path) -> None:
    """What docs/protocol.md promises a member connected to another node than its room's,
    when that node is killed: `moving` naming the room, a close with 4010, and a resume on
    a live node that brings back the member, a new epoch and a seq past every one used
    before (a gap, never a repeat); the envelope said meanwhile arrives once."""
    redis = RedisServer(tmp_path / "redis").start()
    nodes: list[ServedHearth] = []
    try:
        serve_nodes(tmp_path, redis.url, nodes)
        urls = [f"ws://127.0.0.1:{n.port}/ws" for n in nodes]
        owner = await HearthClient.connect(urls[0])
        await owner.join("circle")  # node0 runs the room
        member = await HearthClient.connect(urls[1])
        welcome = await member.join("circle")
        owner.envelope("AQ==", COMMIT, client_id="o-1")
        await member.next(lambda m: m["type"] == "envelope" and m.get("id") == "o-1")
        last = member.seq
        await sleep(1.5)  # the room's state is saved once a second
        nodes[0].proc.kill()
        moving = await member.next("moving", timeout=15.0)
        assert moving["room"] == "circle"
        code, _ = await member.until_closed()
        assert code == 4010
        again, back = await resume_anywhere([urls[1]], welcome["token"], seq=last, within=10.0)
        assert back["resumed"] and back["member"] == welcome["member"]
        assert back["room"]["epoch"] > welcome["room"]["epoch"]
        assert last is not None and back["room"]["seq"] >= last + 1000
        await caught_up(again)
        assert [m for m in again.inbox if m["type"] == "envelope"] == []  # o-1 not again
        await again.close()
        owner.drop()
    finally:
        for node in nodes:
            node.stop()
        redis.kill()


@pytest_twisted.ensureDeferred
async def test_resuming_on_another_node_while_the_old_connection_is_open_closes_it_with_4001(
        three_nodes: list[LiveServer]) -> None:
    """A phone that changed networks: its old connection (to another node) looks open to the
    server. The resume wins; the old connection is closed with 4001, whichever node holds it."""
    n1, n2, n3 = three_nodes
    owner, _ = await member_on(n1)
    old, welcome = await member_on(n2)
    again = await HearthClient.connect(n3.ws_url)
    back = await again.resume(welcome["token"], seq=welcome["room"]["seq"])
    assert back["member"] == welcome["member"] and back["resumed"]
    code, _ = await old.until_closed()
    assert code == 4001
    again.envelope("AQ==", COMMIT, client_id="r-1")
    assert (await owner.next(lambda m: m["type"] == "envelope"))["id"] == "r-1"
    await again.close()
    await owner.close()
