"""Incidents and alerts across nodes, without sockets: incidents travel with their room,
on-duty alerts go to every node, actions on another node's incident are carried there,
the outbox is shared through the broker's stream and adopted when its node goes away,
and the shared logs wait for Redis in order."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from hearth.moderation.crisis import CrisisDesk
from hearth.moderation.incidents import DEFAULT_ESCALATION, IncidentDesk, IncidentRecord
from hearth.moderation.outbox import Outbox
from hearth.moderation.wiring import moderated_venue
from hearth.spaces.broker import MemoryBroker
from hearth.spaces.effects import ActElsewhere, Dispatch, DutyBroadcast, Record, Send
from hearth.spaces.pseudonyms import generate_avatar
from hearth.spaces.room import Member, Role, Room
from hearth.web.shared_logs import LogShipper, read_stream
from hearth.web.shared_outbox import LEASE_TTL, SharedOutbox
from tests.support.config import make_config
from tests.support.hosts import Nodes
from tests.support.world import wire as as_sent


def done(coro: Any) -> Any:
    """The result of a coroutine that does not wait (the memory broker answers at once)."""
    results: list[Any] = []
    ensureDeferred(coro).addBoth(results.append)
    assert results, "it waited"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def seat(room: Room, member_id: str, name: str, role: Role = "participant") -> Member:
    member, _ = room.add(member_id=member_id, pseudonym=name, role=role,
                         avatar=generate_avatar(random.Random(member_id)),
                         locale="en", now=0.0)
    return member


def open_help(desk: IncidentDesk, now: float, room: str = "circle") -> IncidentRecord:
    incident, _ = desk.open(incident_id="i1", room=room, member="m1", pseudonym="Quiet Otter",
                            trigger="help_button", severity="high", category="help_request",
                            rule_pack=None, now=now)
    return incident


def test_an_incident_carries_its_timers_to_the_node_that_takes_it_over() -> None:
    old = IncidentDesk(DEFAULT_ESCALATION)
    open_help(old, 100.0)
    old.apply("i1", "ack", "ana", 101.0)
    assert [a.notify for a in old.tick(131.0)] == []  # acknowledged: the 30 s tier stops
    state = json.loads(json.dumps(old.export("circle")))  # through JSON, as saved in Redis
    assert old.export("elsewhere") == []

    new = IncidentDesk(DEFAULT_ESCALATION)
    assert new.adopt(state) == 1
    adopted = new.incidents["i1"]
    assert adopted == old.incidents["i1"]  # every field, the fired tiers and history included
    assert new.tick(130.0) == []
    # the 300 s tier (stop when engaged) fires on the new node at its second, not before
    assert new.tick(399.9) == []
    assert [a.notify for a in new.tick(400.0)] == ["admin", "participant_prompt"]
    assert new.tick(500.0) == []  # once
    # an older copy never replaces a newer one; nonsense is skipped
    assert new.adopt([{**state[0], "history": state[0]["history"][:1]}]) == 0
    assert new.adopt([{"id": "x"}, {**state[0], "id": "i2", "state": "exploded"}]) == 0


def test_resolved_incidents_stay_behind() -> None:
    desk = IncidentDesk(DEFAULT_ESCALATION)
    open_help(desk, 0.0)
    desk.apply("i1", "resolve", "ana", 5.0, outcome="de_escalated")
    assert desk.export("circle") == []


def crisis_desk() -> CrisisDesk:
    return CrisisDesk(IncidentDesk(DEFAULT_ESCALATION), new_id=lambda: "i1")


def test_on_duty_alerts_are_for_every_node() -> None:
    venue = moderated_venue(make_config(), franking_key=b"k" * 32)
    room = venue.rooms["circle"]
    person = seat(room, "m1", "Quiet Otter")
    seat(room, "f1", "Host", "facilitator")
    effects = venue.crisis.help(room, person, 0.0, None)
    assert not [e for e in effects if isinstance(e, DutyBroadcast)]  # tier 0: the room and on-call
    later = venue.crisis.tick(venue.rooms, 30.0)
    duty = [e for e in later if isinstance(e, DutyBroadcast)]
    assert len(duty) == 1 and as_sent(duty[0].message)["notify"] == "on_duty_facilitators"
    assert [e.member for e in later if isinstance(e, Send)] == ["f1"]  # on duty: never a Send
    # which tiers fired is recorded (a node that runs the incident on must not re-fire them)
    assert [r.incident["fired"] for r in effects + later if isinstance(r, Record)] == [[0], [0, 1]]


def test_responders_are_the_room_s_facilitators_and_everyone_on_duty_once() -> None:
    venue = moderated_venue(make_config(), franking_key=b"k" * 32)
    room = venue.rooms["circle"]
    person = seat(room, "m1", "Quiet Otter")
    seat(room, "f1", "Host", "facilitator")
    incident_id = as_sent(venue.crisis.help(room, person, 0.0, None)[0].message)["incident"]
    effects = venue.crisis.act(venue.rooms, "ana", incident_id, "ack", None, 1.0, None)
    sends = [e for e in effects if isinstance(e, Send)]
    duty = [e for e in effects if isinstance(e, DutyBroadcast)]
    assert [s.member for s in sends] == ["f1", "m1"]  # the room's host, then the person
    assert len(duty) == 1 and duty[0].exclude == ("f1",)  # the host is not told twice
    assert any(isinstance(e, Record) for e in effects)
    assert any(isinstance(e, Dispatch) for e in effects)


def test_an_incident_another_node_runs_is_listed_and_acted_on_there() -> None:
    desk = crisis_desk()
    wire = {"id": "far1", "room": "other", "state": "open", "pseudonym": "Far Away"}
    desk.learn(wire)
    room = moderated_venue(make_config(), franking_key=b"k" * 32).rooms["circle"]
    on = desk.set_duty(seat(room, "f9", "Duty", "facilitator"), True, 0.0)
    assert [i["id"] for i in as_sent(on[0].message)["open"]] == ["far1"]
    effects = desk.act({}, "ana", "far1", "ack", None, 5.0, "r1")
    assert effects == [ActElsewhere("other", "far1", "ack", None, "ana", "r1")]
    desk.learn({**wire, "state": "resolved"})
    assert "far1" not in desk.elsewhere
    with pytest.raises(Exception, match="no such incident"):
        desk.act({}, "ana", "far1", "ack", None, 6.0, None)


def test_a_room_handed_over_takes_its_incidents_and_its_new_node_runs_them() -> None:
    config = make_config()
    here, there = (moderated_venue(config, franking_key=b"k" * 32) for _ in range(2))
    room = here.rooms["circle"]
    person = seat(room, "m1", "Quiet Otter")
    incident_id = as_sent(here.crisis.help(room, person, 0.0, None)[0].message)["incident"]
    there.crisis.learn(here.crisis.desk.incidents[incident_id].to_wire())
    state = json.loads(json.dumps(here.export_room("circle")))
    there.import_room("circle", state, 10.0)
    assert incident_id in there.crisis.desk.incidents and incident_id not in there.crisis.elsewhere
    here.crisis.hand_over("circle")
    assert incident_id not in here.crisis.desk.incidents
    assert incident_id in here.crisis.elsewhere  # still listed; actions go to the new node
    assert [e for e in there.crisis.tick(there.rooms, 30.0) if isinstance(e, DutyBroadcast)]


# --- the outbox, shared ----------------------------------------------------------------


def test_outbox_items_remember_their_copy_and_adopted_ones_are_journaled_nowhere() -> None:
    journal: list[dict[str, Any]] = []
    outbox = Outbox(journal=journal.append)
    outbox.add("a1", "webhook:on-call", {"incident": "i1"}, 0.0)
    outbox.shipped("a1", "5-0")
    adopted = outbox.adopt("9-0", {"id": "b1", "channel": "webhook:on-call",
                                   "payload": {"incident": "i2"}, "created_at": 1.0}, 2.0)
    assert adopted is not None and adopted.adopted
    assert outbox.adopt("9-0", {"id": "b1", "channel": "x", "payload": {},
                                "created_at": 1.0}, 2.0) is None  # here already
    outbox.delivered("b1")
    assert [r["op"] for r in journal] == ["add", "shipped"]  # nothing about b1
    again = Outbox()
    again.restore(iter(journal), 10.0)
    assert again.items["a1"].sid == "5-0"


def test_a_dead_node_s_alerts_are_adopted_by_a_live_one_once_its_lease_runs_out() -> None:
    clock = Clock()
    clock.advance(1_000_000)
    broker = MemoryBroker(clock.seconds)
    mine, theirs = Outbox(), Outbox()
    a = SharedOutbox(mine, broker, "node-a", clock.seconds)
    b = SharedOutbox(theirs, broker, "node-b", clock.seconds)

    done(a.sync())
    done(b.sync())
    first = mine.add("a1", "webhook:on-call", {"incident": "i1"}, clock.seconds())
    second = mine.add("a2", "webhook:on-call", {"incident": "i1", "n": 2}, clock.seconds())
    done(a.added(first))
    done(a.added(second))
    assert first.sid is not None
    done(b.sync())
    assert not theirs.items  # node-a is alive (holds its lease)
    clock.advance(LEASE_TTL - 1)
    done(a.sync())  # renewed
    clock.advance(LEASE_TTL - 1)
    done(b.sync())
    assert not theirs.items
    clock.advance(2)  # node-a stopped renewing LEASE_TTL seconds ago: gone
    done(b.sync())
    assert list(theirs.items) == ["a1", "a2"]  # in the order they were raised
    assert all(i.adopted for i in theirs.items.values())
    done(b.delivered(theirs.delivered("a1")))  # type: ignore[arg-type]
    stream = done(broker.read("outbox"))
    assert [json.loads(data)["id"] for _, data in stream] == ["a2"]
    done(b.sync())
    assert list(theirs.items) == ["a2"]  # not adopted twice


# --- the shared logs ---------------------------------------------------------------------


class FlakyBroker(MemoryBroker):
    """A MemoryBroker whose shared logs can be 'away'."""

    away = False

    async def append(self, stream: str, record: bytes) -> str | None:
        if self.away:
            return None
        return await super().append(stream, record)


def test_log_records_wait_for_the_shared_store_in_order_and_the_queue_is_bounded() -> None:
    clock = Clock()
    broker = FlakyBroker(clock.seconds)
    shipper = LogShipper(broker, "node-a", limit=3)
    broker.away = True
    for n in range(5):
        shipper.ship("audit", {"n": n})
    assert shipper.waiting == 3 and shipper.dropped == 2
    broker.away = False
    assert done(shipper.flush())
    records = done(read_stream(broker, "audit"))
    assert [(r["n"], r["node"]) for r in records] == [(2, "node-a"), (3, "node-a"),
                                                      (4, "node-a")]


def test_an_alert_delivered_while_it_was_being_copied_leaves_no_copy_behind() -> None:
    from twisted.internet.defer import Deferred

    class SlowBroker(MemoryBroker):
        """append answers only when the test says so."""

        pending: list[Deferred[None]] = []

        async def append(self, stream: str, record: bytes) -> str | None:
            wait: Deferred[None] = Deferred()
            self.pending.append(wait)
            await wait
            return await super().append(stream, record)

    clock = Clock()
    clock.advance(1_000_000)
    broker = SlowBroker(clock.seconds)
    outbox = Outbox()
    sharing = SharedOutbox(outbox, broker, "node-a", clock.seconds)
    item = outbox.add("a1", "webhook:on-call", {"incident": "i1"}, clock.seconds())
    copying = ensureDeferred(sharing.added(item))
    ensureDeferred(sharing.added(item))  # sync() retrying at the same moment: not twice
    assert len(broker.pending) == 1
    outbox.delivered("a1")  # the webhook answered before Redis did
    broker.pending.pop().callback(None)
    assert copying.called
    assert done(broker.read("outbox")) == []


# --- issue 14: on-duty counts, receipts and the basis of external help between nodes -------


def test_every_node_hears_how_many_are_on_duty_at_the_others() -> None:
    from hearth.spaces.effects import DutyRoster
    nodes = Nodes(2)
    a, b = nodes.hosts["node1"], nodes.hosts["node2"]
    nodes.apply("node1", a.route(None, [DutyRoster(2)]))
    nodes.flush()
    assert b.venue.crisis.duty_elsewhere == {"node1": (2, nodes.clock.seconds())}
    assert "node1" not in a.venue.crisis.duty_elsewhere  # not itself
    assert b.venue.crisis.anyone_on_duty(nodes.clock.seconds())
    nodes.clock.advance(10)  # not heard again: gone stale
    assert not b.venue.crisis.anyone_on_duty(nodes.clock.seconds())


def test_a_receipt_and_an_external_request_are_carried_to_the_node_that_runs_the_incident() -> None:
    nodes = Nodes(2)
    person = nodes.join("node1", pseudonym="Quiet Otter")  # node1 runs the room
    a, b = nodes.hosts["node1"], nodes.hosts["node2"]
    now = nodes.clock.seconds()
    room = a.venue.rooms["circle"]
    member = room.members[person.last("welcome")["member"]]
    incident_id = as_sent(a.venue.crisis.help(room, member, now, None)[0].message)["incident"]
    b.venue.crisis.learn(a.venue.crisis.desk.incidents[incident_id].to_wire())
    console = nodes.connect("node2")
    for action, basis in (("seen", None), ("ack", None), ("external", "imminent_risk")):
        effects = b.venue.crisis.act(b.venue.rooms, "ben", incident_id, action, None, now,
                                     f"r-{action}", basis)
        assert effects == [ActElsewhere("circle", incident_id, action, None, "ben",
                                        f"r-{action}", basis)]
        nodes.apply("node2", b.route(console.link, effects))
        nodes.flush()
    incident = a.venue.crisis.desk.incidents[incident_id]
    assert [(e, actor) for _, e, actor in incident.history] == [
        ("open", None), ("seen", "ben"), ("ack", "ben"), ("external", "ben")]
    assert incident.external_basis == "imminent_risk" and console.got == []
