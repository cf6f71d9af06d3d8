"""A message every node should hear, lost on its way to one node (Redis counted it delivered
and never wrote it): the duty alert still reaches the on-duty console there, once. Two nodes
over a shared MemoryBroker, a real redis-server and a 3-master Cluster."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from hearth.spaces import relay
from hearth.spaces.broker import MemoryBroker
from tests.support.crisis import crisis
from tests.support.live import LiveServer, sleep, until
from tests.support.nodes import node_configs, start_nodes
from tests.support.webhook_receiver import Receiver


@pytest_twisted.async_yield_fixture(params=["memory", "redis", "cluster"])
async def two_nodes(request: pytest.FixtureRequest) -> AsyncIterator[list[LiveServer]]:
    receiver = Receiver("s" * 32)
    port = receiver.listen()
    configs = node_configs(2, crisis=crisis(port))  # the next on-duty tier: 30 s later
    if request.param == "memory":
        shared = MemoryBroker(reactor.seconds, schedule=lambda c: reactor.callLater(0, c))
        brokers: list[Any] = [shared, shared]
    else:
        from hearth.web.redis_broker import RedisBroker
        url = request.getfixturevalue(
            "redis_server" if request.param == "redis" else "redis_cluster").url
        brokers = [RedisBroker(url), RedisBroker(url)]
    nodes = await start_nodes(configs, brokers)
    yield nodes
    for node in nodes:
        await node.hearth.service.stopService()
    await receiver.stop()


def losing_the_first_duty_alert(node: LiveServer) -> list[bytes]:
    """The node's host never gets the first duty alert posted to every node (the others it
    gets): the bytes reached the process and went no further, as when Redis counts a message
    delivered and dies before writing it."""
    host, lost = node.hearth.node.host, []
    relayed = host.relayed

    def lossy(data: bytes) -> Any:
        message = relay.unpack(data)
        if not lost and isinstance(message, relay.CountedAll) \
                and isinstance(message.message, relay.DutyBroadcast):
            lost.append(data)
            return []
        return relayed(data)
    host.relayed = lossy  # type: ignore[method-assign]
    return lost


@pytest_twisted.ensureDeferred
async def test_a_duty_alert_lost_to_a_node_reaches_its_on_duty_console_once(
        two_nodes: list[LiveServer]) -> None:
    n1, n2 = two_nodes
    console = await n1.client()
    await console.join("other", ticket=n1.hearth.node.venue.issue_ticket(
        "facilitator", n1.hearth.node.clock(), account="ana"))
    console.send({"type": "duty", "on": True})
    assert (await console.expect("duty"))["open"] == []
    person = await n2.client()
    await person.join("circle", pseudonym="Quiet Otter")
    assert n1.hearth.node.owned == {"other"} and n2.hearth.node.owned == {"circle"}
    await until(lambda: n2.hearth.node.venue.crisis.anyone_on_duty(n2.hearth.node.clock()),
                what="node2 hears someone is on duty on node1")
    await until(lambda: "node2" in n1.hearth.node.host._streams,
                what="node1 knows where node2's count stands")
    lost = losing_the_first_duty_alert(n1)

    person.send({"type": "help"})
    incident = (await person.expect("help_received"))["incident"]
    alert = await console.next(lambda m: m["type"] == "incident" and m.get("reason") == "alert",
                               timeout=10)
    assert lost and alert["incident"]["id"] == incident
    [dropped] = [relay.unpack(data) for data in lost]
    assert isinstance(dropped, relay.CountedAll) and isinstance(dropped.message,
                                                                relay.DutyBroadcast)
    assert json.loads(dropped.message.payload) == alert  # the very alert that was lost
    assert alert["notify"] == "on_duty_facilitators"
    await sleep(2.5)  # counts said again: nothing more is sent, nothing handed on twice
    assert not [m for m in console.inbox if m["type"] == "incident"
                and m.get("reason") == "alert" and m.get("tier") == alert["tier"]]
    for client in (console, person):
        await client.close()
