"""Failover without loss, with real processes: three `hearth serve` nodes on one
redis-server, E2EE members who stay (they resume and send again what was not
acknowledged), and a fault — the room's node killed (with a help press just before,
the on-call webhook failing at first), Redis killed and restarted empty, Redis paused.
The fault suite (python -m bench.faults) runs the same thing bigger and repeated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from bench import faults
from hearth.client.websocket import HearthClient, resume_anywhere
from tests.support.crisis import SECRET, crisis
from tests.support.live import until
from tests.support.nodes import serve_nodes
from tests.support.redis_servers import RedisServer
from tests.support.serving import ServedHearth
from tests.support.webhook_receiver import Receiver


def no_loss(result: dict[str, Any]) -> None:
    shown = json.dumps(result, default=str)  # all of it (pytest cuts a dict short)
    assert result["said"] > 30, shown  # traffic actually flowed
    assert result["lost"] == 0 and result["duplicated"] == 0 and result["unacked"] == 0, shown
    assert result["reordered"] == 0 and result["gone"] == [], shown  # nobody shut out


@pytest.mark.parametrize("offset_ms", [0, 10, 100, 1000])
@pytest_twisted.ensureDeferred
async def test_the_room_s_node_killed_after_a_help_press_loses_nothing(offset_ms: int) -> None:
    """SIGKILL of the node that runs the room 0, 10, 100 or 1,000 ms after a member on
    another node presses help, while the webhook answers 503 to its first calls: every
    member is back with the same pseudonym (or the run reports it gone), no message is lost
    or shown twice, the alert is delivered once by Idempotency-Key, and its second tier
    fires on time from the node that took the room over."""
    result = await faults.run("node", offset_ms, rooms=1, per_node=2, after=4.0)
    no_loss(result)
    assert result["resumes"] >= 6  # the killed node's members, and the room's on the others
    alerts = result["alerts"]
    assert alerts["webhook_refused"] == faults.HOOK_FAILS
    assert alerts["first_alert_keys"] == 1 and len(alerts["incidents"]) == 1, alerts
    assert alerts["second_tier_keys"] == 1, alerts
    # the second tier is due 8 s after the press; give the takeover and a loaded machine 6 s
    assert faults.SECOND_TIER - 0.5 <= alerts["second_tier_after_s"] <= faults.SECOND_TIER + 6
    # measured; the goal on an idle loopback is 2 s (docs/scaling.md has the figures)
    assert result["recovery_s"] < 8, result


@pytest.mark.parametrize("fault", ["redis", "partition"])
@pytest_twisted.ensureDeferred
async def test_redis_restarted_empty_or_paused_loses_nobody(fault: str) -> None:
    """Redis killed and restarted empty (or paused, a partition between every node and
    Redis) for two seconds, members on every node talking meanwhile: nobody is shut out
    (never session_expired), what was said meanwhile is delivered, and they keep talking."""
    result = await faults.run(fault, rooms=1, per_node=2, after=5.0)
    no_loss(result)
    assert result["recovery_s"] < 10, result


@pytest_twisted.ensureDeferred
async def test_members_who_joined_and_pressed_help_a_moment_before_the_crash_resume(
        tmp_path: Path) -> None:
    """Their sessions were saved before their welcomes went out, and the incident before
    `help_received`: the node that takes the room over knows them and runs the incident."""
    redis = RedisServer(tmp_path / "redis").start()
    receiver = Receiver(SECRET)
    hook = receiver.listen()
    nodes: list[ServedHearth] = []
    clients: list[HearthClient] = []
    try:
        serve_nodes(tmp_path, redis.url, nodes, crisis=crisis(hook))
        urls = [f"ws://127.0.0.1:{n.port}/ws" for n in nodes]
        welcomes = []
        for url, name in ((urls[0], "Quiet Otter"), (urls[1], "Calm Heron")):  # node0 runs it
            client = await HearthClient.connect(url)
            welcomes.append(await client.join("circle", pseudonym=name))
            clients.append(client)
        clients[1].send({"type": "help", "id": "press-1", "ref": "press-1"})
        incident = (await clients[1].expect("help_received"))["incident"]
        nodes[0].proc.kill()  # at once
        for welcome in welcomes:
            again, back = await resume_anywhere([urls[1]], welcome["token"], within=15)
            assert back["member"] == welcome["member"]  # same member, same pseudonym
            clients.append(again)
        await until(lambda: any(c.body.get("incident") == incident for c in receiver.calls),
                    timeout=20, what="the alert")
        keys = {c.headers["idempotency-key"] for c in receiver.calls
                if c.body.get("incident") == incident and c.body.get("tier") == 0}
        assert len(keys) == 1
        runs = nodes[1].output()
        assert "took over room circle" in runs
    finally:
        for client in clients:
            client.drop()
        for node in nodes:
            node.stop()
        await receiver.stop()
        redis.kill()


@pytest_twisted.ensureDeferred
async def test_a_redis_cluster_failover_loses_nobody(tmp_path: Path) -> None:
    """A 3-master Cluster with a replica each; the master that holds the room's ownership is
    killed and its replica takes over (about 2 s): members on three nodes keep talking,
    nobody is shut out, nothing said is lost or shown twice."""
    from twisted.internet.defer import Deferred

    from hearth.web.redis_broker import RedisBroker
    from tests.support.live import sleep
    from tests.support.nodes import node_configs, start_nodes
    from tests.support.redis_servers import RedisCluster
    cluster = RedisCluster(tmp_path, replicas=1).start()
    brokers = [RedisBroker(cluster.url) for _ in range(3)]
    nodes = await start_nodes(node_configs(3), brokers)
    members: list[faults.Member] = []
    running, staying = [True], [True]
    try:
        for k, node in enumerate(nodes):  # node1 runs the room (first join)
            for j in range(2):
                member = faults.Member(f"Member {k} {j}", "circle")
                await member.join(node.ws_url)
                members.append(member)
        for member in members:
            await faults.settled(member, members)
        urls = [n.ws_url for n in nodes]
        keepers = [Deferred.fromCoroutine(m.stay(lambda: urls, lambda: staying[0]))
                   for m in members]
        traffic = Deferred.fromCoroutine(faults.talk(members, lambda: running[0]))
        await sleep(2)
        fault_at = faults.time.monotonic()
        for member in members:
            member.fault_at = fault_at
        cluster.fail_over("hearth:owner:circle")
        await until(cluster.healthy, timeout=30, what="the replica to take over")
        await sleep(4)
        running[0] = False
        await traffic
        await faults.drain(members)  # (members still resume meanwhile)
        staying[0] = False
        for keeper in keepers:
            await keeper
        result = faults.measure(members)
        if result["lost"]:
            result["lost_detail"] = faults.lost_detail(members, fault_at)
        no_loss(result)
    finally:
        running[0] = staying[0] = False
        for member in members:
            if member.chat is not None:
                member.chat.client.drop()
        for node in nodes:
            await node.hearth.service.stopService()
        cluster.kill()
