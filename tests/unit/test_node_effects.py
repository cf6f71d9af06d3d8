"""The node's effect applier: a failure stays with its one effect.

A value that cannot be sent (here: a stored report whose text cannot be encoded) must
never drop the facilitator who asks for it, nor stop the effects after it; the failure
is logged once, by kind and place, without the content."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent

from hearth.spaces.broker import MemoryBroker
from hearth.spaces.effects import Audit, Broadcast, Reply, Send
from hearth.spaces.server_messages import ReportList, SessionEnded, UnmuteRequested
from hearth.web.node import Link, Node
from tests.support.world import World

BAD = "tell nobody \ud800"


class Peer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    def send_bytes(self, payload: bytes) -> None:
        self.sent.append(json.loads(payload))

    def send_binary(self, payload: bytes) -> None:
        raise AssertionError("no voice here")

    def send_prepared(self, prepared: Any) -> None:
        self.sent.append(json.loads(prepared))

    def pending_bytes(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def node_for(world: World) -> tuple[Node, list[dict[str, Any]]]:
    clock = Clock()
    clock.advance(1_000_000)
    node = Node(world.venue, MemoryBroker(clock.seconds), lambda payload, binary: payload,
                clock.seconds)
    events: list[dict[str, Any]] = []
    node.log = Logger(namespace="hearth.node", observer=events.append)
    return node, events


def connected(node: Node) -> tuple[Peer, Link]:
    """A client connection at the node, and the node's link for it."""
    peer = Peer()
    return peer, node.open(peer)


def assert_logged_once_without_content(events: list[dict[str, Any]]) -> None:
    assert len(events) == 1
    text = formatEvent(events[0]) + repr(events[0])
    assert "UnicodeEncodeError" in text and "protocol.py" in text
    assert "tell nobody" not in text and "\\ud800" not in text and "\ud800" not in text


def test_one_failing_effect_leaves_the_others_and_the_connection() -> None:
    world = World()
    node, events = node_for(world)
    peer, link = connected(node)
    audits: list[tuple[Any, ...]] = []
    node.audit = type("A", (), {"record": lambda self, *a: audits.append(a)})()
    node.apply(link, [Reply(ReportList(reports=[{"text": BAD}])),
                      Reply(SessionEnded(seq=1)),
                      Audit("ana", "list_reports", None, "circle", "ok")])
    assert peer.sent == [{"type": "session_ended", "seq": 1}] and peer.closed is None
    assert len(audits) == 1 and node.effects_failed == 1
    assert_logged_once_without_content(events)


def test_a_stored_bad_value_never_drops_the_facilitator_who_lists_it() -> None:
    world = World()
    node, events = node_for(world)
    ticket = world.venue.issue_ticket("facilitator", world.clock.seconds(), "ana")
    conn, _ = world.join(ticket=ticket)
    # A report stored before decoding refused such text (or by any other path).
    world.venue.reports.add(room="circle", seq=1, sent_at=1, reported_at=1, sender="m9",
                            sender_pseudonym="Quiet Otter", reporter_pseudonym="Kind Fox",
                            text=BAD, reason=BAD)
    peer, link = connected(node)
    for _ in range(3):  # the console asks on every welcome: never a loop of drops
        node.apply(link, world.send(conn, {"type": "list_reports", "ref": "r"}))
        node.apply(link, world.send(conn, {"type": "stand", "ref": "still-here"}))
    assert peer.closed is None and node.effects_failed == 3
    assert all(m.get("type") != "reports" for m in peer.sent)
    assert len(events) == 3
    assert_logged_once_without_content(events[:1])


def test_a_failing_broadcast_or_send_does_not_stop_the_batch() -> None:
    world = World()
    node, events = node_for(world)
    peer, link = connected(node)
    node.apply(link, [Broadcast("circle", UnmuteRequested(by=BAD)),
                      Send("nobody", UnmuteRequested(by=BAD)),
                      Reply(SessionEnded(seq=1))])
    assert peer.sent == [{"type": "session_ended", "seq": 1}]
    assert node.effects_failed == 2 and len(events) == 2



def test_a_procedure_s_sync_goes_on_once_its_message_came_back_through_the_inbox() -> None:
    """A Sync step (spaces/host.py) waits for the node's own relay.Sync to come back, or to
    be given up on (nobody heard it): it never waits for good."""
    from hearth.spaces.host import Procedure, Run, Sync
    node, _ = node_for(World())
    node.start()
    done: list[str] = []

    def steps(token: str) -> Procedure:
        yield Sync(token)
        done.append(token)
    node._apply([Run("sync", steps("back"))])
    assert done == ["back"] and not node._syncs  # the memory broker delivers at once
    node.stop()  # nobody listens any more: the broker gives it up
    node._apply([Run("sync", steps("given up"))])
    assert done == ["back", "given up"] and not node._syncs
