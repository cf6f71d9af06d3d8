"""The routing host without sockets: nodes on an in-memory bus with a fake clock.

Ownership and edges, a welcome only once its session is durable, a room moving when its
node dies (no frame swallowed, no resume left waiting), a directory emptied by a Redis
restart (nobody loses the room), help that is durable before it is answered, and the
relay messages' one wire shape."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from hearth.spaces import relay
from hearth.spaces.effects import Reply
from hearth.spaces.host import (
    ALL_KEPT_FOR,
    ANSWER_WITHIN,
    ASK_TIMEOUT,
    HOLD_AT_MOST,
    NODE_TTL,
    OWNER_TTL,
    ROOM_MOVED,
    SETTLE,
    STATE_MISSING_GRACE,
    SUSPECT_FOR,
    Call,
    Log,
)
from hearth.spaces.server_messages import ReportList, SessionEnded
from tests.support.hosts import COMMIT, Client, Nodes


def envelope(nodes: Nodes, client: Client, body: str, client_id: str | None = None) -> None:
    message: dict[str, Any] = {"type": "envelope", "body": body, "commitment": COMMIT}
    if client_id is not None:
        message["id"] = client_id
    nodes.send(client, message)


def resume(nodes: Nodes, node: str, token: str) -> Client:
    client = nodes.connect(node)
    nodes.send(client, {"type": "resume", "token": token})
    return client


def welcome(client: Client) -> dict[str, Any]:
    return client.last("welcome")


# --- relay messages -------------------------------------------------------------------------

@pytest.mark.parametrize("message", [
    relay.Open("n1/1", "circle", {"2025-01-01": "ab"}), relay.Frame("n1/1", True, b"\x00\xff"),
    relay.Frame("n1/1", False, b"{}", 7),
    relay.Lost("n1/1"), relay.Reply("n1/1", b"{}"),
    relay.Attach("n1/1", "circle", "m1", False, True), relay.Enter("circle", "m1", True),
    relay.Broadcast("circle", None, b"{}"), relay.Broadcast("circle", "m1", b"{}"),
    relay.ToMember("m1", False, b"{}"), relay.Voice(("m1", "m2"), b"\x01"),
    relay.CloseLink("n1/1", 4010, "moved"), relay.CloseMember("m1", 4003, "removed"),
    relay.Release("n1/1"), relay.Moved("circle", "n2"),
    relay.DutyBroadcast("n1", ("m1",), b"{}"), relay.DutyRoster("n1", 2), relay.DutyRoster("n1", 2, "r1", 7),
    relay.IncidentState("n1", {"id": "i1"}),
    relay.SignIn("n1", {"op": "end"}), relay.Accounts("n1"),
    relay.IncidentAct("r1", "n1", "circle", "i1", "ack", None, "ana", None),
    relay.IncidentAct("r1", "n1", "circle", "i1", "external", None, "ana", "r", "consent"),
    relay.IncidentDone("r1", b""), relay.Sync("n1/7"),
    relay.Counted("n1", "r1", 3, relay.Broadcast("circle", None, b"{}")),
    relay.Counted("n1", "r1", 1, relay.Release("n1/1")), relay.Mark("n1", "r1", 3),
    relay.CountedAll("n1", "r1", 4, relay.Moved("circle", "n1")),
    relay.CountedAll("n1", "r1", 5, relay.DutyBroadcast("n1", ("m1",), b"{}")),
    relay.CountedAll("n1", "r1", 6, relay.IncidentState("n1", {"id": "i1"})),
    relay.CountedAll("n1", "r1", 7, relay.SignIn("n1", {"op": "end"})),
    relay.MarkAll("n1", "r1", 7), relay.Replay("n2", "r1", 3), relay.Lapsed("n1", "r1", 9),
])
def test_every_relay_message_comes_back_as_it_was_packed(message: Any) -> None:
    assert relay.unpack(message.pack()) == message


@pytest.mark.parametrize("data", [b"", b"\x63\x00\x02{}", b"\x01\x00\x02[]", b"\x01\x00\x02{}",
                                  b"\x01\x00\x05{nope"])
def test_anything_else_is_refused_with_one_error(data: bytes) -> None:
    with pytest.raises(relay.RelayError):
        relay.unpack(data)


def test_a_counted_message_is_the_message_itself_to_a_node_that_does_not_count() -> None:
    counted = relay.Counted("n1", "r1", 3, relay.Broadcast("circle", "m1", b"{}"))
    data = counted.pack()
    kind, length = struct.unpack_from("!BH", data)
    header = json.loads(data[3:3 + length])
    assert kind == relay.Broadcast.KIND and header["n"] == 3
    assert relay.Broadcast.unpack(header, data[3 + length:]) == counted.message
    voice = relay.Voice(("m1",), b"\x01")  # never counted, whatever its header says
    assert relay.unpack(relay._frame(voice.KIND, {"members": ["m1"], "from": "n1", "run": "r1",
                                                  "n": 1}, b"\x01")) == voice


# --- one room, members on several nodes ----------------------------------------------------

def test_the_first_node_that_needs_a_room_runs_it_and_edges_forward() -> None:
    nodes = Nodes(2)
    a = nodes.join("node1", pseudonym="Calm Heron")
    b = nodes.join("node2", pseudonym="Quiet Otter")
    assert nodes.hosts["node1"].owned == {"circle"} and not nodes.hosts["node2"].owned
    assert welcome(b)["token"].startswith("circle.")
    assert a.last("member_joined")["member"]["id"] == welcome(b)["member"]
    envelope(nodes, b, "QUFBQQ==")
    assert a.last("envelope")["body"] == "QUFBQQ==" and b.last("sent")["seq"] == \
        a.last("envelope")["seq"]
    envelope(nodes, a, "QkJCQg==")
    assert b.last("envelope")["body"] == "QkJCQg=="


def test_a_welcome_goes_out_only_once_the_session_is_saved() -> None:
    nodes = Nodes(2)
    a = nodes.join("node1", pseudonym="Calm Heron")
    nodes.store.paused = True
    nodes.timeline.clear()
    b = nodes.connect("node2")
    nodes.send(b, {"type": "join", "room": "circle", "pseudonym": "Quiet Otter"})
    envelope(nodes, a, "QUFBQQ==")  # said while b's welcome waits: b gets it after, in order
    assert b.got == [] and a.last("member_joined")
    nodes.resume_store()
    assert b.types()[:2] == ["welcome", "envelope"]
    member = welcome(b)["member"]
    saved = nodes.saved()
    assert saved is not None and member in saved["sessions"]
    assert nodes.timeline.index(("save", "circle")) < nodes.timeline.index(("to", "welcome"))


def test_a_welcome_waits_at_most_a_moment_for_a_store_that_does_not_answer() -> None:
    nodes = Nodes(1)
    nodes.store.paused = True
    a = nodes.join("node1")
    assert a.got == []
    nodes.advance(HOLD_AT_MOST + 0.1)
    assert a.types() == ["welcome"]
    assert ("node1", "a session could not be saved before its welcome") not in nodes.logs


def test_a_resumed_member_gets_what_was_said_while_it_was_away() -> None:
    nodes = Nodes(2)
    a = nodes.join("node1")
    b = nodes.join("node2")
    token = welcome(b)["token"]
    nodes.drop(b)
    envelope(nodes, a, "QUFBQQ==", "a-1")
    again = resume(nodes, "node2", token)
    assert again.types()[:2] == ["welcome", "envelope"]
    assert again.last("envelope")["id"] == "a-1"


def test_a_resend_with_the_same_id_is_answered_and_not_delivered_twice() -> None:
    nodes = Nodes(2)
    a = nodes.join("node1")
    b = nodes.join("node2")
    envelope(nodes, b, "QUFBQQ==", "b-1")
    first = b.last("sent")
    envelope(nodes, b, "QUFBQQ==", "b-1")
    assert b.last("sent") == first and len(a.of("envelope")) == 1


def test_a_frame_lost_between_nodes_is_never_overtaken_by_the_next_one() -> None:
    """b's envelope to the owner is lost on the way (pub/sub during a Redis failover) and
    its next one arrives: the owner does not run the next before the lost one; b is told
    to resume, and sends both again, in order. A frame that arrives twice runs once."""
    nodes = Nodes(2)
    a = nodes.join("node1")
    b = nodes.join("node2")
    envelope(nodes, b, "QUFBQQ==", "b-1")
    nodes.send(b, {"type": "envelope", "body": "QUFBQQ==", "commitment": COMMIT, "id": "b-2"},
               flush=False)
    twice = nodes.bus[:]
    nodes.flush()
    nodes.bus[:] = twice  # the same frame again (a publish sent again after an error)
    nodes.flush()
    assert ids(b, "sent") == ["b-1", "b-2"]
    nodes.send(b, {"type": "envelope", "body": "QUFBQQ==", "commitment": COMMIT, "id": "b-3"},
               flush=False)
    nodes.bus.clear()  # lost on the way
    envelope(nodes, b, "QkJCQg==", "b-4")
    assert ids(a, "envelope") == ["b-1", "b-2"]
    assert b.closed is not None and b.closed[0] == ROOM_MOVED
    back = resume(nodes, "node2", welcome(b)["token"])
    for client_id in ("b-3", "b-4"):  # what was not acknowledged, in order
        envelope(nodes, back, "QkJCQg==", client_id)
    assert ids(a, "envelope") == ["b-1", "b-2", "b-3", "b-4"]


# --- what the owner sends an edge, lost on the way -------------------------------------------

def broadcasts_to(node: str) -> Any:
    """A `Store.losing` that loses the room's messages for `node`'s members."""
    def losing(to: str, message: relay.RelayMessage) -> bool:
        if isinstance(message, relay.Counted):
            message = message.message
        return to == node and isinstance(message, relay.Broadcast)
    return losing


def said(nodes: Nodes, client: Client, client_id: str, *, lose: Any = None) -> None:
    nodes.store.losing = lose
    try:
        envelope(nodes, client, "QUFBQQ==", client_id)
    finally:
        nodes.store.losing = None


def back_after_a_loss(nodes: Nodes, client: Client) -> Client:
    """The client was told to resume: it does, from the last seq it saw."""
    assert client.last("moving")["room"] == "circle"
    assert client.closed is not None and client.closed[0] == ROOM_MOVED
    seen = max(m["seq"] for m in client.of("envelope"))
    back = nodes.connect(client.node)
    nodes.send(back, {"type": "resume", "token": welcome(client)["token"], "seq": seen})
    return back


def resyncs(nodes: Nodes, node: str) -> int:
    return nodes.logs.count((node, "a message from node {node} was lost on the way; its rooms' "
                                   "clients here resume"))


def test_a_room_message_lost_between_the_owner_and_an_edge_is_noticed_and_resent() -> None:
    """Redis took the owner's copy for node2 in, then failed before passing it on: the next
    one shows the gap; b is not given it (its resume would start after the lost one), it is
    told to resume, and its resume brings both, in order."""
    nodes = Nodes(2)
    a = nodes.join("node1")
    b = nodes.join("node2")
    said(nodes, a, "a-1")
    said(nodes, a, "a-2", lose=broadcasts_to("node2"))
    assert len(nodes.store.lost) == 1 and b.closed is None
    said(nodes, a, "a-3")
    assert ids(b, "envelope") == ["a-1"]
    back = back_after_a_loss(nodes, b)
    assert welcome(back)["member"] == welcome(b)["member"]
    assert ids(back, "envelope") == ["a-2", "a-3"]
    said(nodes, a, "a-4")  # and on it goes, nothing more lost
    assert ids(back, "envelope") == ["a-2", "a-3", "a-4"] and back.closed is None
    assert resyncs(nodes, "node2") == 1


def test_the_last_message_lost_on_the_way_is_noticed_within_a_housekeeping() -> None:
    nodes = Nodes(2)
    a = nodes.join("node1")
    b = nodes.join("node2")
    said(nodes, a, "a-1")
    nodes.advance(1.0)  # node2 heard how many node1 sent it: all there
    assert b.closed is None
    said(nodes, a, "a-2", lose=broadcasts_to("node2"))  # then nothing more is said
    nodes.advance(1.0)
    back = back_after_a_loss(nodes, b)
    assert ids(back, "envelope") == ["a-2"]
    nodes.advance(1.0)  # the count of what the resume brought is said
    sent: list[relay.RelayMessage] = []
    nodes.store.losing = lambda _, message: sent.append(message) is not None  # (loses none)
    nodes.advance(3.0)  # quiet: no count is said when nothing was sent, nobody else moves
    assert not [m for m in sent if isinstance(m, relay.Mark)]
    assert back.closed is None and resyncs(nodes, "node2") == 1


def test_a_message_that_reaches_an_edge_twice_is_delivered_once() -> None:
    """A publish sent again after an error it had in fact survived: the copy is dropped."""
    nodes = Nodes(2)
    a = nodes.join("node1")
    b = nodes.join("node2")
    said(nodes, a, "a-1", lose=broadcasts_to("node2"))
    (node, copy), = nodes.store.lost
    for _ in range(2):
        nodes.store.send_node(node, copy)
        nodes.flush()
    said(nodes, a, "a-2")
    nodes.advance(1.0)
    assert ids(b, "envelope") == ["a-1", "a-2"] and b.closed is None
    assert resyncs(nodes, "node2") == 0


def test_an_owner_restarted_under_the_same_name_counts_afresh_without_a_resync() -> None:
    """node2 has counted what node1 sent it; node1 restarts (a new run of the same node):
    its count starts again, which is no loss, and a loss in the new run is still noticed."""
    nodes = Nodes(2)
    a = nodes.join("node1")
    b = nodes.join("node2")
    for i in range(5):
        said(nodes, a, f"a-{i}")
    nodes.drop(b)
    nodes.restart("node1")
    nodes.advance(OWNER_TTL + 1.0)
    c = nodes.join("node1")  # node1 runs the room again, from its saved state
    d = nodes.join("node2")
    assert nodes.hosts["node1"].owned == {"circle"} and welcome(d)["member"]
    said(nodes, c, "c-1")
    nodes.advance(1.0)
    assert ids(d, "envelope") == ["c-1"] and d.closed is None
    assert resyncs(nodes, "node2") == 0
    said(nodes, c, "c-2", lose=broadcasts_to("node2"))
    said(nodes, c, "c-3")
    back = back_after_a_loss(nodes, d)
    assert ids(back, "envelope") == ["c-2", "c-3"]
    assert resyncs(nodes, "node2") == 1


def test_an_edge_restarted_under_the_same_name_takes_the_count_as_it_finds_it() -> None:
    """The owner's count for node2 goes on across node2's restart: the first message node2
    gets after it started sets where it stands, no loss is made up."""
    nodes = Nodes(2)
    a = nodes.join("node1")
    b = nodes.join("node2")
    for i in range(3):
        said(nodes, a, f"a-{i}")
    nodes.restart("node2")
    c = nodes.join("node2")
    said(nodes, a, "a-3")
    nodes.advance(2.0)
    assert ids(c, "envelope") == ["a-3"] and c.closed is None
    assert resyncs(nodes, "node2") == 0 and b.closed is None
    said(nodes, a, "a-4", lose=broadcasts_to("node2"))  # counted on from there
    said(nodes, a, "a-5")
    assert ids(back_after_a_loss(nodes, c), "envelope") == ["a-4", "a-5"]


# --- the owner dies ---------------------------------------------------------------------------

def room_on_node1_members_on_both() -> tuple[Nodes, Client, Client, Client]:
    nodes = Nodes(3)
    a = nodes.join("node1", pseudonym="Calm Heron")
    b = nodes.join("node2", pseudonym="Quiet Otter")
    c = nodes.join("node3", pseudonym="Brave Lark")
    nodes.advance(1.0)  # saved
    return nodes, a, b, c


def test_a_frame_sent_to_a_killed_owner_is_answered_and_the_room_moves_at_once() -> None:
    nodes, _, b, c = room_on_node1_members_on_both()
    nodes._call(Call("lease", ("outbox:node1", "node1", 10.0)))  # its alerts, its own
    nodes.kill("node1")
    envelope(nodes, b, "QUFBQQ==", "b-1")  # nobody listens on node1's inbox any more
    assert b.last("moving")["room"] == "circle" and b.closed is not None
    assert b.closed[0] == ROOM_MOVED
    assert "b-1" not in json.dumps(b.of("sent"))  # not acknowledged: the client sends it again
    # its undelivered alerts are taken over now, not when its lease runs out
    assert nodes.store._get("lease:outbox:node1") == "node2"
    # b resumes on node2: node2 takes the room over from its saved state, same pseudonym
    back = resume(nodes, "node2", welcome(b)["token"])
    assert welcome(back)["resumed"] and welcome(back)["member"] == welcome(b)["member"]
    me = next(m for m in welcome(back)["room"]["members"] if m["id"] == welcome(b)["member"])
    assert me["pseudonym"] == "Quiet Otter"
    assert nodes.hosts["node2"].owned == {"circle"}
    # node3 heard that node2 runs the room now: its member is told to resume at once
    assert c.last("moving") and c.closed == (ROOM_MOVED, c.closed[1])
    again = resume(nodes, "node3", welcome(c)["token"])
    assert welcome(again)["member"] == welcome(c)["member"]
    envelope(nodes, back, "QkJCQg==", "b-1")  # the resend
    assert again.last("envelope")["id"] == "b-1"
    assert back.last("sent")["id"] == "b-1"


def ids(client: Client, kind: str) -> list[Any]:
    return [m.get("id") for m in client.of(kind)]


def test_an_owner_killed_before_its_messages_left_never_acknowledged_what_they_carried(
        ) -> None:
    """a (on the owner) says something; the owner dies before the copies for the other
    nodes reach the bus. Whatever a was told, nobody loses it: a was not acknowledged (so
    it sends it again after its resume) or b gets it."""
    nodes, a, b, _ = room_on_node1_members_on_both()
    envelope(nodes, a, "QUFBQQ==", "a-1")  # delivered everywhere
    nodes.send(a, {"type": "envelope", "body": "QUFBQQ==", "commitment": COMMIT, "id": "a-2"},
               flush=False)  # still on its way to the bus
    nodes.bus.clear()  # SIGKILL: what node1 had not handed to Redis yet is gone with it
    nodes.kill("node1")
    assert ids(b, "envelope") == ["a-1"]
    nodes.advance(1.0)  # node2 and node3 notice: their members resume
    assert b.closed is not None and b.closed[0] == ROOM_MOVED
    seen = max(m["seq"] for m in b.of("envelope"))
    b_back = nodes.connect("node2")
    nodes.send(b_back, {"type": "resume", "token": welcome(b)["token"], "seq": seen})
    a_back = resume(nodes, "node2", welcome(a)["token"])
    for client_id in ("a-1", "a-2"):
        if client_id not in ids(a, "sent"):  # the client sends again what was not acknowledged
            envelope(nodes, a_back, "QUFBQQ==", client_id)
    assert "a-2" in ids(b_back, "envelope")


def test_what_an_owner_sent_just_before_it_died_reaches_its_members_before_they_move() -> None:
    """The owner's copies were handed to the other nodes (Redis passed them on), but those
    nodes judge it gone before their readers get to them: the copies are handled first, so
    nobody resumes past a message the sender was told was sent."""
    nodes, a, b, c = room_on_node1_members_on_both()
    nodes.send(a, {"type": "envelope", "body": "QUFBQQ==", "commitment": COMMIT, "id": "a-1"},
               flush=False)
    assert len(nodes.bus) == 3  # a copy for node2, one for node3, then node1's own `sent`
    *to_others, to_itself = nodes.bus
    nodes.bus.clear()
    to_itself()
    assert ids(a, "sent") == ["a-1"]  # a was told...
    nodes.kill("node1")  # ...and node1 died
    nodes.bus[:0] = to_others  # at node2 and node3, not read yet
    for name in ("node2", "node3"):  # each judges node1 gone before reading its inbox
        nodes.apply(name, nodes.hosts[name].housekeeping())
    nodes.flush()
    for member in (b, c):
        assert member.closed is not None and member.closed[0] == ROOM_MOVED
        assert ids(member, "envelope") == ["a-1"]


def test_a_message_the_dead_owner_relayed_but_never_acknowledged_comes_again_with_its_id(
        ) -> None:
    """docs/protocol.md's honest limit: b's envelope reached c, its `sent` died with the
    owner, before the owner saved that it had answered it. b sends it again after resuming
    and the new owner, which cannot know it, relays it again under a new seq, with the same
    sender and id: that is what a client shows once (per `from` and `id`)."""
    nodes, _, b, c = room_on_node1_members_on_both()
    nodes.store.losing = lambda to, message: to == "node2"  # b's `sent` is lost...
    envelope(nodes, b, "QUFBQQ==", "b-1")
    nodes.store.losing = None
    assert ids(c, "envelope") == ["b-1"] and ids(b, "sent") == []
    first = c.last("envelope")
    nodes.kill("node1")  # ...and node1 dies before its next save
    nodes.advance(NODE_TTL + 2.0)
    assert b.closed is not None and b.closed[0] == ROOM_MOVED
    b_back = resume(nodes, "node2", welcome(b)["token"])
    c_back = nodes.connect("node3")
    nodes.send(c_back, {"type": "resume", "token": welcome(c)["token"], "seq": first["seq"]})
    envelope(nodes, b_back, "QUFBQQ==", "b-1")  # the client's resend of what had no answer
    again = c_back.last("envelope")
    assert (again["from"], again["id"]) == (first["from"], first["id"])
    assert again["seq"] > first["seq"]
    assert ids(b_back, "sent") == ["b-1"]


def test_a_resume_sent_to_a_killed_owner_becomes_a_takeover_without_a_second_try() -> None:
    nodes, a, _, _ = room_on_node1_members_on_both()
    token = welcome(a)["token"]
    nodes.kill("node1")  # a's connection went with it; it comes back through node3
    again = resume(nodes, "node3", token)
    assert welcome(again)["member"] == welcome(a)["member"]
    assert nodes.hosts["node3"].owned == {"circle"}


def test_a_resume_to_an_owner_that_does_not_answer_is_answered_in_time() -> None:
    nodes, _, b, _ = room_on_node1_members_on_both()
    nodes.paused.add("node1")  # it still listens (SIGSTOP), it answers nothing
    again = resume(nodes, "node2", welcome(b)["token"])
    assert again.got == []
    nodes.advance(ANSWER_WITHIN + 0.1)
    assert again.last("error")["code"] == "room_moving" and again.closed is not None
    # its heartbeat stops; once it is missing for a while, node1 counts as gone
    nodes.advance(NODE_TTL + SUSPECT_FOR + 1.5)
    back = resume(nodes, "node2", welcome(b)["token"])
    assert welcome(back)["member"] == welcome(b)["member"]
    assert nodes.hosts["node2"].owned == {"circle"}


def test_a_room_is_released_by_a_node_that_no_longer_runs_it_but_is_still_named() -> None:
    nodes = Nodes(2)
    a = nodes.join("node1")
    nodes.drop(a)
    host = nodes.hosts["node1"]
    host.owned.discard("circle")  # e.g. restarted with the same id, the key not expired yet
    b = resume(nodes, "node2", welcome(a)["token"])  # node2 sends it to node1, named owner
    assert b.closed is not None and b.closed[0] == ROOM_MOVED
    assert nodes.saved() is not None
    again = resume(nodes, "node2", welcome(a)["token"])
    assert welcome(again)["member"] == welcome(a)["member"]


# --- the directory emptied (a Redis restart) ------------------------------------------------

def test_a_directory_emptied_by_a_restart_loses_nobody() -> None:
    nodes, a, b, c = room_on_node1_members_on_both()
    nodes.store.away = True
    nodes.advance(0.2)  # every node sees its subscriptions go
    envelope(nodes, a, "QUFBQQ==")  # the owner's own members carry on meanwhile
    assert a.last("sent")
    nodes.store.empty()
    nodes.store.away = False
    # a node comes back first and gets a resume for the room before node1 put it back: it
    # does not take a room it does not run, and never says session_expired
    nodes.apply("node2", nodes.hosts["node2"].bus(True))
    back = resume(nodes, "node2", welcome(b)["token"])
    assert back.last("error")["code"] == "room_moving"
    newcomer = nodes.join("node2", pseudonym="Brave Wren")  # nor a fresh copy of the room
    assert newcomer.last("error")["code"] == "room_moving"
    assert not nodes.hosts["node2"].owned
    nodes.advance(1.2)  # node1 claims its room again and saves it at once
    assert nodes.saved() is not None and nodes.hosts["node1"].owned == {"circle"}
    nodes.advance(SETTLE)
    again = resume(nodes, "node3", welcome(c)["token"])
    assert welcome(again)["member"] == welcome(c)["member"]
    assert not [m for client in nodes.clients["node2"] + nodes.clients["node3"]
                for m in client.of("error") if m["code"] == "session_expired"]
    assert nodes.hosts["node1"].owned == {"circle"} and not nodes.hosts["node3"].owned


def test_a_resume_for_a_room_whose_state_is_lost_waits_then_is_told_the_truth() -> None:
    nodes = Nodes(2)
    a = nodes.join("node1")
    nodes.kill("node1")
    nodes.store.empty()  # and its state with it
    for _ in range(3):
        back = resume(nodes, "node2", welcome(a)["token"])
        assert back.last("error")["code"] == "room_moving"
        nodes.advance(1.0)
    nodes.advance(STATE_MISSING_GRACE)
    back = resume(nodes, "node2", welcome(a)["token"])
    assert back.last("error")["code"] == "session_expired"



def test_on_the_embedded_broker_a_resume_for_a_room_that_runs_nowhere_is_told_at_once(
        ) -> None:
    """One node on the embedded broker: nothing can put a room's state back but this
    process, so a stale token (its room emptied and was let go) is told session_expired at
    once, not room_moving for STATE_MISSING_GRACE seconds while the person waits."""
    nodes = Nodes(1, directory_in_process=True)
    a = nodes.join("node1")
    nodes.send(a, {"type": "leave"})
    nodes.advance(2.0)  # the empty room is let go
    assert not nodes.hosts["node1"].owned
    back = resume(nodes, "node1", welcome(a)["token"])
    assert back.last("error")["code"] == "session_expired"
    newcomer = nodes.join("node1")
    assert welcome(newcomer)["member"]


# --- help: durable before it is answered ------------------------------------------------------

def crisis_nodes() -> tuple[Nodes, Client, Client]:
    nodes = Nodes(2)
    host = nodes.hosts["node1"]
    ticket = host.venue.issue_ticket("facilitator", nodes.clock.seconds(), "ana")
    facilitator = nodes.join("node1", ticket=ticket)
    person = nodes.join("node2", pseudonym="Quiet Otter")
    return nodes, facilitator, person


def test_help_is_answered_once_the_incident_is_saved_and_the_alert_shared() -> None:
    nodes, facilitator, person = crisis_nodes()
    nodes.store.paused = True
    nodes.send(person, {"type": "help", "id": "h-1"})
    assert person.of("help_received") == [] and not nodes.shared
    assert facilitator.of("incident") == []  # nobody is told before it is durable
    nodes.resume_store()
    incident = person.last("help_received")["incident"]
    saved = nodes.saved()
    assert saved is not None and [i["id"] for i in saved["incidents"]] == [incident]
    assert {p["incident"] for _, _, p in nodes.shared} == {incident}
    assert facilitator.last("incident")["incident"]["id"] == incident
    # the alerts left the saved state once they were shared
    nodes.advance(1.0)
    assert nodes.saved()["alerts"] == []  # type: ignore[index]
    # pressed again after a reconnection: the same answer, nothing raised twice
    shared = len(nodes.shared)
    nodes.send(person, {"type": "help", "id": "h-1"})
    assert person.last("help_received")["incident"] == incident and len(nodes.shared) == shared


def test_help_received_kept_back_for_its_durable_write_is_counted_when_it_goes() -> None:
    """The answer to a help press waits for the incident to be saved while the room's
    messages go on to the member's node: it is counted when it is sent, not when it was
    made, so it is neither dropped as a copy nor taken for a loss."""
    nodes, facilitator, person = crisis_nodes()
    nodes.store.paused = True
    nodes.send(person, {"type": "help", "id": "h-1"})
    envelope(nodes, facilitator, "QUFBQQ==", "f-1")
    assert ids(person, "envelope") == ["f-1"] and person.of("help_received") == []
    nodes.resume_store()
    nodes.advance(1.0)
    assert person.last("help_received") and person.closed is None
    assert resyncs(nodes, "node2") == 0


def test_an_alert_that_cannot_be_shared_is_said_to_the_facilitators() -> None:
    nodes, facilitator, person = crisis_nodes()
    nodes.share_fails.add("node1")
    nodes.send(person, {"type": "help"})
    incident = person.last("help_received")["incident"]
    assert facilitator.last("alert_not_shared")["incident"] == incident
    saved = nodes.saved()
    assert saved is not None and [a["payload"]["incident"] for a in saved["alerts"]] \
        == [incident] * len(saved["alerts"])


def test_help_waits_at_most_a_moment_for_a_store_that_does_not_answer() -> None:
    nodes, facilitator, person = crisis_nodes()
    nodes.store.paused = True
    nodes.send(person, {"type": "help"})
    nodes.advance(HOLD_AT_MOST + 0.1)
    incident = person.last("help_received")["incident"]
    assert facilitator.last("alert_not_shared")["incident"] == incident


def test_a_node_that_takes_a_room_over_shares_its_unshared_alerts_with_the_same_keys() -> None:
    nodes, _, person = crisis_nodes()
    nodes.share_fails.add("node1")
    nodes.send(person, {"type": "help"})
    keys = {key for key, _ in [(a["key"], a) for a in nodes.saved()["alerts"]]}  # type: ignore[index]
    assert keys and not nodes.shared
    nodes.kill("node1")
    nodes.advance(1.0)
    back = resume(nodes, "node2", welcome(person)["token"])
    assert welcome(back)
    assert {key for node, key, _ in nodes.shared if node == "node2"} == keys


def test_an_open_incident_is_saved_at_once_and_run_on_by_the_node_that_takes_over() -> None:
    nodes, facilitator, person = crisis_nodes()
    nodes.send(person, {"type": "help"})
    incident = person.last("help_received")["incident"]
    assert [i["id"] for i in nodes.saved()["incidents"]] == [incident]  # type: ignore[index]
    nodes.drop(person)
    nodes.drop(facilitator)
    nodes.kill("node1")  # nobody comes back to the room: node2 takes it for the incident
    nodes.advance(NODE_TTL + 2)
    assert nodes.hosts["node2"].owned == {"circle"}
    assert incident in nodes.hosts["node2"].venue.crisis.desk.incidents
    assert ("node2", "took over room {room} to run its open incidents") in nodes.logs


def test_an_action_for_a_node_that_never_answers_is_refused_not_lost() -> None:
    nodes = Nodes(2)
    host = nodes.hosts["node2"]
    ticket = host.venue.issue_ticket("facilitator", nodes.clock.seconds(), "ana")
    nodes.join("node1")
    facilitator = nodes.join("node2", room="other", ticket=ticket)
    host.venue.crisis.learn({"id": "i1", "room": "circle", "state": "open"})
    nodes.paused.add("node1")  # alive, runs the room, answers nothing
    nodes.send(facilitator, {"type": "incident", "incident": "i1", "action": "ack",
                             "ref": "r1"})
    assert facilitator.of("error") == []
    nodes.advance(ASK_TIMEOUT + 1)
    [refused] = facilitator.of("error")
    assert refused["code"] == "incident_unreachable" and refused["ref"] == "r1"
    nodes.advance(ASK_TIMEOUT)
    assert len(facilitator.of("error")) == 1  # once


def test_at_start_a_crash_s_open_incidents_run_again_where_no_live_node_runs_them() -> None:
    nodes = Nodes(1)
    wire = {"id": "i9", "room": "circle", "member": "m1", "pseudonym": "Quiet Otter",
            "trigger": "help_button", "severity": "high", "category": "help_request",
            "rule_pack": None, "opened_at": int(nodes.clock.seconds() * 1000), "state": "open",
            "fired": [0], "history": [[0, "open", None]], "responders": [], "outcome": None,
            "follow_up": False, "test": False}
    host = nodes.hosts["node1"]
    nodes.apply("node1", host.start([{"ts": 0, "incident": wire}]))
    nodes.flush()
    assert "i9" in host.venue.crisis.desk.incidents and host.owned == {"circle"}
    assert ("node1", "{count} open incidents run again after a restart") in nodes.logs


def test_ownership_is_renewed_and_a_room_nobody_needs_is_let_go() -> None:
    nodes = Nodes(1)
    a = nodes.join("node1")
    nodes.advance(OWNER_TTL + 1)
    assert nodes.hosts["node1"].owned == {"circle"}
    nodes.send(a, {"type": "leave"})
    nodes.advance(1.5)
    assert not nodes.hosts["node1"].owned and nodes.saved() is None


# --- roles withdrawn, shared accounts, effects that fail ------------------------------------

def test_a_signed_out_facilitator_connected_through_another_node_is_closed_where_it_is() -> None:
    nodes = Nodes(2)
    nodes.join("node1", pseudonym="Calm Heron")  # node1 runs the room
    owner = nodes.hosts["node1"]
    ticket = owner.venue.issue_ticket("facilitator", nodes.clock.seconds(), "ana",
                                      signin="s1", generation=1)
    console = nodes.join("node2", ticket=ticket)
    member = welcome(console)["member"]
    nodes.apply("node2", nodes.hosts["node2"].signin_ended("s1"))  # not run there: nothing
    nodes.flush()
    assert console.closed is None
    nodes.apply("node1", owner.signin_ended("s1"))
    nodes.flush()
    assert console.closed is not None and console.closed[0] == 4006
    assert member not in owner.venue.rooms["circle"].members


def test_an_account_change_elsewhere_makes_every_other_node_read_the_accounts_at_once() -> None:
    nodes = Nodes(3)
    nodes.watched.clear()
    nodes.store.send_all(relay.Accounts("node2").pack())
    nodes.flush()
    assert sorted(nodes.watched) == ["node1", "node3"]  # not the node that said it
    nodes.watched.clear()
    nodes.advance(2.0)  # and once every housekeeping
    assert set(nodes.watched) == {"node1", "node2", "node3"}


def test_an_effect_that_cannot_be_sent_is_skipped_and_logged_and_the_rest_go() -> None:
    nodes = Nodes(1)
    person = nodes.join("node1", pseudonym="Calm Heron")
    host = nodes.hosts["node1"]
    assert person.link is not None
    bad = ReportList(reports=[{"text": "tell nobody \ud800"}])
    effects = host.route(person.link, [Reply(bad), Reply(SessionEnded(seq=1))])
    nodes.apply("node1", effects)
    assert person.got[-1] == {"type": "session_ended", "seq": 1} and person.closed is None
    assert host.effects_failed == 1
    [log] = [e for e in effects if isinstance(e, Log)]
    assert log.level == "error" and log.fields["effect"] == "Reply"
    assert log.fields["error"] == "UnicodeEncodeError"
    assert str(log.fields["where"]).startswith("protocol.py:")
    assert "tell nobody" not in repr(log) and "\\ud800" not in repr(log)


# --- what a node posts to every node, lost on the way ------------------------------------------

def to_every_node(node: str, *kinds: type) -> Any:
    """A `Store.losing` that loses, on their way to `node`, the messages posted to every node
    (of `kinds`; with no kinds: all of them, the count announcements and rosters too)."""
    def losing(to: str, message: relay.RelayMessage) -> bool:
        if to != node:
            return False
        if isinstance(message, relay.CountedAll):
            message = message.message
        return isinstance(message, kinds or (*relay.FOR_ALL, relay.MarkAll, relay.DutyRoster))
    return losing


def once(losing: Any) -> Any:
    """Loses only the first message `losing` would (not what is sent again for it)."""
    lost: list[relay.RelayMessage] = []

    def lose_once(to: str, message: relay.RelayMessage) -> bool:
        if not lost and losing(to, message):
            lost.append(message)
            return True
        return False
    return lose_once


def spying(nodes: Nodes) -> list[tuple[str, relay.RelayMessage]]:
    """What goes to each node from now on (nothing is lost)."""
    seen: list[tuple[str, relay.RelayMessage]] = []
    nodes.store.losing = lambda to, message: seen.append((to, message)) is not None
    return seen


def on_duty_elsewhere() -> tuple[Nodes, Client, Client]:
    """node1 runs the room of a participant; an on-duty facilitator's console is on node2."""
    nodes = Nodes(2)
    person = nodes.join("node1", pseudonym="Quiet Otter")
    ticket = nodes.hosts["node2"].venue.issue_ticket("facilitator", nodes.clock.seconds(), "ana")
    console = nodes.join("node2", room="other", ticket=ticket)
    nodes.send(console, {"type": "duty", "on": True})
    nodes.advance(3.0)  # each node's roster says where its count stands
    return nodes, person, console


def alerts(console: Client, incident: str) -> list[dict[str, Any]]:
    return [m for m in console.of("incident")
            if m["reason"] == "alert" and m["incident"]["id"] == incident]


def pressed(nodes: Nodes, person: Client, *, lose: Any) -> str:
    nodes.store.losing = lose
    try:
        nodes.send(person, {"type": "help", "id": "h-1"})
    finally:
        nodes.store.losing = None
    return str(person.last("help_received")["incident"])


def sign_in_news(nodes: Nodes, node: str, signin: str = "s1") -> None:
    """Something else `node` posts to every node (a sign-in session's change)."""
    nodes.apply(node, nodes.hosts[node].share_session({"op": "end", "signin": signin,
                                                      "node": node}))
    nodes.flush()


def sign_ins_heard(nodes: Nodes, node: str) -> list[str]:
    return [str(event["signin"]) for name, event in nodes.signed_in if name == node]


REREAD = ("node2", "messages node {node} sent to every node were lost and are no longer kept; "
                   "the incident log is read again")


@pytest.mark.parametrize("then", ["another message", "quiet"])
def test_a_duty_alert_lost_to_one_node_reaches_its_on_duty_console_once(then: str) -> None:
    """Redis took node1's alert for every on-duty console in, then lost it on its way to
    node2: node2 notices at node1's next message to every node, or when node1 says its count
    within a second, gets it again from node1 and hands it to its console, once."""
    nodes, person, console = on_duty_elsewhere()
    incident = pressed(nodes, person, lose=once(to_every_node("node2", relay.DutyBroadcast)))
    assert len(nodes.store.lost) == 1 and alerts(console, incident) == []
    if then == "another message":
        sign_in_news(nodes, "node1")
    else:
        nodes.advance(1.0)
    assert len(alerts(console, incident)) == 1
    nodes.advance(3.0)
    sign_in_news(nodes, "node1")
    assert len(alerts(console, incident)) == 1 and REREAD not in nodes.logs


def test_a_lost_last_incident_state_is_learned_within_a_second() -> None:
    nodes, facilitator, person = crisis_nodes()
    nodes.send(person, {"type": "help", "id": "h-1"})
    incident = person.last("help_received")["incident"]
    elsewhere = nodes.hosts["node2"].venue.crisis.elsewhere
    assert elsewhere[incident]["state"] == "open"
    nodes.store.losing = to_every_node("node2", *relay.FOR_ALL)  # the state and what follows
    nodes.send(facilitator, {"type": "incident", "incident": incident, "action": "ack",
                             "ref": "r1"})
    nodes.store.losing = None
    assert any(isinstance(relay.unpack(m), relay.CountedAll) for _, m in nodes.store.lost)
    assert elsewhere[incident]["state"] == "open"
    nodes.advance(1.1)  # node1's next housekeeping says its count
    assert elsewhere[incident]["state"] == "acknowledged"


def test_a_message_to_every_node_that_comes_twice_is_handled_once() -> None:
    nodes, person, console = on_duty_elsewhere()
    incident = pressed(nodes, person, lose=once(to_every_node("node2", relay.DutyBroadcast)))
    (_, alert), = nodes.store.lost
    for _ in range(3):  # late, then twice more (a publish sent again after an error)
        nodes.apply("node2", nodes.hosts["node2"].relayed(alert))
    seen = spying(nodes)
    nodes.advance(2.0)
    assert len(alerts(console, incident)) == 1
    assert not [m for _, m in seen if isinstance(m, relay.Replay)]


def test_a_restarted_sender_and_a_restarted_receiver_ask_for_nothing_again() -> None:
    """A new run of node1 counts from 1: no gap; node2 started again takes node1's count as
    it finds it: nothing is asked for again, no incident log read."""
    nodes, _, _ = on_duty_elsewhere()
    for i in range(5):
        sign_in_news(nodes, "node1", f"s{i}")
    seen = spying(nodes)
    nodes.restart("node1")
    sign_in_news(nodes, "node1", "after node1 started again")
    nodes.restart("node2")
    sign_in_news(nodes, "node1", "after node2 started again")
    nodes.advance(3.0)
    assert not [m for _, m in seen if isinstance(m, relay.Replay | relay.Lapsed)]
    assert REREAD not in nodes.logs
    assert sign_ins_heard(nodes, "node2") == [*(f"s{i}" for i in range(5)),
                                              "after node1 started again",
                                              "after node2 started again"]


def test_what_is_no_longer_kept_is_made_good_from_the_incident_log() -> None:
    """node2 hears nothing node1 posts to every node for longer than node1 keeps it: when it
    notices, node1 can no longer send it all again, so node2 reads the shared incident log
    and its on-duty console is handed every open incident."""
    nodes, person, console = on_duty_elsewhere()
    incident = pressed(nodes, person, lose=to_every_node("node2"))
    nodes.store.losing = to_every_node("node2")
    nodes.advance(ALL_KEPT_FOR + 2.0)
    nodes.store.losing = None
    nodes.ship_incidents()
    assert incident not in nodes.hosts["node2"].venue.crisis.elsewhere
    sign_in_news(nodes, "node1")
    listed = console.last("duty")
    assert incident in [i["id"] for i in listed["open"]] and listed["on"] is True
    assert incident in nodes.hosts["node2"].venue.crisis.elsewhere
    assert nodes.logs.count(REREAD) == 1
    nodes.advance(2.0)
    assert nodes.logs.count(REREAD) == 1


def test_a_state_read_again_from_the_log_never_replaces_a_later_one() -> None:
    nodes, person, console = on_duty_elsewhere()
    host = nodes.hosts["node1"]
    incident = pressed(nodes, person, lose=None)
    opened = len(nodes.records)
    nodes.apply("node1", host.route(None, host.venue.crisis.act(
        host.venue.rooms, "ana", incident, "ack", None, nodes.clock.seconds(), None)))
    nodes.flush()
    elsewhere = nodes.hosts["node2"].venue.crisis.elsewhere
    assert elsewhere[incident]["state"] == "acknowledged"
    nodes.ship_incidents(upto=opened)  # the log is behind: it has the incident open
    stream = nodes.hosts["node2"]._streams["node1"]
    lapsed = relay.Lapsed("node1", stream.run, stream.last + 5)
    nodes.apply("node2", nodes.hosts["node2"].relayed(lapsed.pack()))
    nodes.flush()
    assert REREAD in nodes.logs
    assert elsewhere[incident]["state"] == "acknowledged"
    assert [i["state"] for i in console.last("duty")["open"]] == ["acknowledged"]


def test_a_count_forged_ahead_does_not_silence_the_node_for_long() -> None:
    """Someone who can write to Redis posts a message as node1 with a count far ahead: node2
    hears node1's own count within two seconds (its roster), counts on from it, and hands
    on node1's messages again."""
    nodes, _, _ = on_duty_elsewhere()
    run = nodes.hosts["node1"].run
    forged = relay.CountedAll("node1", run, 10**6, relay.SignIn("node1", {"signin": "forged"}))
    nodes.store.send_all(forged.pack())
    nodes.flush()
    nodes.advance(3.0)
    sign_in_news(nodes, "node1", "node1's own")
    assert sign_ins_heard(nodes, "node2")[-1] == "node1's own"
