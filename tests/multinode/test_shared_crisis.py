"""Crisis work across nodes: an on-duty facilitator on one node is alerted of an incident
in a room another node runs, acts on it there and is refused there; every node knows the
incident; the audit and incident logs are shared. Over a shared MemoryBroker, a real
redis-server and a 3-master Cluster."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from hearth.spaces.broker import MemoryBroker
from hearth.web.shared_logs import read_stream
from tests.support.crisis import crisis, quick_crisis
from tests.support.live import LiveServer, sleep, until
from tests.support.nodes import node_configs, start_nodes
from tests.support.webhook_receiver import Receiver


@pytest_twisted.async_yield_fixture(params=["memory", "redis", "cluster"])
async def cluster_of_three(request: pytest.FixtureRequest, tmp_path: Path,
                           ) -> AsyncIterator[tuple[list[LiveServer], Callable[[], Any]]]:
    receiver = Receiver("s" * 32)
    port = receiver.listen()
    configs = node_configs(4, crisis=crisis(port))
    directory = quick_crisis(tmp_path)
    configs = [replace(c, crisis=replace(c.crisis, directory=directory)) for c in configs]
    if request.param == "memory":
        shared = MemoryBroker(reactor.seconds, schedule=lambda c: reactor.callLater(0, c))

        def broker() -> Any:
            return shared
    else:
        from hearth.web.redis_broker import RedisBroker
        url = request.getfixturevalue(
            "redis_server" if request.param == "redis" else "redis_cluster").url

        def broker() -> Any:
            return RedisBroker(url)
    nodes = await start_nodes(configs[:3], [broker() for _ in range(3)])
    started: list[LiveServer] = []

    async def fourth() -> LiveServer:
        late = await start_nodes(configs[3:], [broker()], first=4)
        started.extend(late)
        return late[0]
    yield nodes, fourth
    for node in [*nodes, *started]:
        await node.hearth.service.stopService()
    await receiver.stop()


@pytest_twisted.ensureDeferred
async def test_on_duty_facilitators_on_any_node_see_and_handle_an_incident(
        cluster_of_three: tuple[list[LiveServer], Callable[[], Any]]) -> None:
    (n1, n2, n3), fourth = cluster_of_three
    # ana is on duty in room "other", run by node1; the person is in "circle", run by node3.
    # Her role ticket comes from node2 (where she signed in), her socket goes through node1.
    on_duty = await n1.client()
    await on_duty.join("other", ticket=n2.hearth.node.venue.issue_ticket(
        "facilitator", n2.hearth.node.clock(), account="ana"))
    person = await n3.client()
    await person.join("circle", pseudonym="Quiet Otter")
    bystander = await n2.client()
    await bystander.join("circle", pseudonym="Calm Heron")
    assert n1.hearth.node.owned == {"other"} and n3.hearth.node.owned == {"circle"}
    on_duty.send({"type": "duty", "on": True})
    assert (await on_duty.expect("duty"))["open"] == []

    person.send({"type": "help"})
    incident = (await person.expect("help_received"))["incident"]
    # the on-duty tier (1 s here) fires on node3 and reaches ana on node1
    alert = await on_duty.next(lambda m: m["type"] == "incident" and m.get("reason") == "alert",
                               timeout=10)
    assert alert["incident"]["id"] == incident and alert["notify"] == "on_duty_facilitators"
    # every node knows it (so its on-duty consoles list it)
    await until(lambda: incident in n2.hearth.node.venue.crisis.elsewhere, what="node2 knows")

    # ana acknowledges from node1: node3 runs it, the person is told, ana sees the update
    on_duty.send({"type": "incident", "incident": incident, "action": "ack"})
    status = await person.next(lambda m: m["type"] == "help_status", timeout=10)
    assert status == {"type": "help_status", "incident": incident, "status": "acknowledged"}
    update = await on_duty.next(lambda m: m["type"] == "incident" and m.get("reason") == "ack")
    assert update["incident"]["state"] == "acknowledged" and update["incident"]["responders"] == [
        "ana"]
    assert n3.hearth.node.venue.crisis.desk.incidents[incident].state == "acknowledged"

    # a refusal (only node3 knows the state) comes back across the nodes, with its code
    on_duty.send({"type": "incident", "incident": incident, "action": "await", "ref": "r1"})
    refused = await on_duty.expect("error")
    assert refused["code"] == "incident_state" and refused["ref"] == "r1"
    on_duty.send({"type": "incident", "incident": incident, "action": "resolve",
                  "outcome": "de_escalated"})
    resolved = await on_duty.next(lambda m: m["type"] == "incident"
                                  and m.get("reason") == "resolve")
    assert resolved["incident"]["outcome"] == "de_escalated"
    await until(lambda: incident not in n2.hearth.node.venue.crisis.elsewhere,
                what="node2 hears it was resolved")
    assert all(m["type"] not in ("incident", "help_status") for m in bystander.inbox)

    # the shared logs hold both nodes' records: the forwarded action and the one applied
    broker = n1.hearth.node.broker

    async def audit() -> list[dict[str, Any]]:
        return [r for r in await read_stream(broker, "audit") if r.get("action") == "incident"]
    found: list[dict[str, Any]] = []

    async def both_sides() -> bool:
        found[:] = await audit()
        return {(r["node"], r["outcome"]) for r in found} >= {("node1", "forwarded"),
                                                               ("node3", "ok")}
    deadline = time.monotonic() + 10
    while not await both_sides():
        assert time.monotonic() < deadline, f"the audit records of both nodes: {found}"
        await sleep(0.1)
    assert all(r["actor"] == "ana" for r in found)
    incidents = [r for r in await read_stream(broker, "incidents")
                 if r["incident"]["id"] == incident]
    assert [r["incident"]["state"] for r in incidents][-1] == "resolved"
    assert {r["node"] for r in incidents} == {"node3"}

    # a node started later learns the open incidents from the shared log
    person.send({"type": "help"})
    second = (await person.expect("help_received"))["incident"]
    late = await fourth()
    await until(lambda: second in late.hearth.node.venue.crisis.elsewhere,
                what="the late node knows the open incident")
    assert incident not in late.hearth.node.venue.crisis.elsewhere  # resolved: not listed
    on_duty.send({"type": "incident", "incident": second, "action": "resolve",
                  "outcome": "test"})  # nothing left open for the next test's nodes to adopt
    await on_duty.next(lambda m: m["type"] == "incident" and m.get("reason") == "resolve")
    for client in (on_duty, person, bystander):
        await client.close()


@pytest_twisted.ensureDeferred
async def test_an_empty_room_s_alert_reaches_someone_on_duty_on_another_node_and_not_on_call(
        cluster_of_three: tuple[list[LiveServer], Callable[[], Any]]) -> None:
    """Issue 14: "nobody in the room and nobody on duty on any node" is known across nodes
    (each says how many are on duty), and a console's receipt on one node tells the person
    on another that a facilitator has been told."""
    (n1, n2, n3), _ = cluster_of_three
    on_duty = await n1.client()
    await on_duty.join("other", ticket=n1.hearth.node.venue.issue_ticket(
        "facilitator", n1.hearth.node.clock(), account="cleo"))
    on_duty.send({"type": "duty", "on": True})
    await on_duty.expect("duty")
    person = await n3.client()
    await person.join("circle", pseudonym="Still Pond")
    assert "circle" not in n1.hearth.node.owned and "other" in n1.hearth.node.owned
    runs = next(n for n in (n1, n2, n3) if "circle" in n.hearth.node.owned)  # (n3, or whoever)
    crisis3 = runs.hearth.node.venue.crisis
    assert crisis3.duty_count() == 0  # ana is on duty on another node
    await until(lambda: crisis3.anyone_on_duty(runs.hearth.node.clock()),
                what="the room's node hears someone is on duty on node1")
    paged: list[str] = []
    dispatch = runs.hearth.alerts.dispatch
    runs.hearth.alerts.dispatch = lambda channel, payload, key=None: (  # type: ignore[method-assign]
        paged.append(channel), dispatch(channel, payload, key))[1]

    person.send({"type": "flag", "category": "intent", "severity": "medium"})
    incident = (await person.expect("flag_received"))["incident"]
    alert = await on_duty.next(lambda m: m["type"] == "incident" and m.get("reason") == "alert",
                               timeout=10)
    assert alert["incident"]["id"] == incident and alert["notify"] == "on_duty_facilitators"
    assert alert["tier"] == 0  # at once, not at the 60 s tier
    on_duty.send({"type": "alert_seen", "incident": incident})
    status = await person.next(lambda m: m["type"] == "help_status", timeout=10)
    assert status == {"type": "help_status", "incident": incident, "status": "delivered"}
    assert paged == []  # someone was there to hear it: on-call is not paged for it
    # ana goes off duty: the next alert nobody would hear goes to on-call at once
    on_duty.send({"type": "duty", "on": False})
    await on_duty.expect("duty")
    await until(lambda: not crisis3.anyone_on_duty(runs.hearth.node.clock()), timeout=20,
                what="the room's node hears nobody is on duty")
    other = await n3.client()
    await other.join("circle", pseudonym="Warm Ember")
    other.send({"type": "worried", "member": person.member})
    await other.expect("concern_received")
    bystander = await n3.client()
    await bystander.join("circle", pseudonym="Tall Reed")
    other.send({"type": "worried", "member": bystander.member})
    await other.expect("concern_received")
    await until(lambda: "webhook:primary" in paged, what="on-call paged at once")
    for client in (on_duty, person, other, bystander):
        await client.close()
