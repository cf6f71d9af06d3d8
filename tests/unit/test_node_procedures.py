"""A node's procedures (housekeeping, saves) give the reactor back after a slice of work.

An embedded broker answers every call without waiting, so a procedure that asks it many
things (a housekeeping pass over every room the node runs) would otherwise hold every
connection's frames until it ends. Time here is the node's injected clock; the reactor's
ready queue is a list the test runs by hand."""

from __future__ import annotations

from collections.abc import Callable

from hearth.spaces.broker import MemoryBroker
from hearth.spaces.host import Procedure, Run, ask
from hearth.web.node import PROCEDURE_SLICE, Node
from tests.support.world import World


class SteppedNode:
    """A node whose clock moves `per_read` seconds each time it is read, and whose paused
    procedures wait in `ready` until the test runs them."""

    def __init__(self, per_read: float) -> None:
        self.now = 1_000_000.0
        self.per_read = per_read
        self.ready: list[Callable[[], None]] = []
        self.node = Node(World().venue, MemoryBroker(self.clock), lambda payload, binary: payload,
                         self.clock)
        self.node.soon = self.ready.append  # type: ignore[method-assign]

    def clock(self) -> float:
        self.now += self.per_read
        return self.now

    def run_ready(self) -> int:
        """One turn of the reactor: what was ready before it (not what it makes ready)."""
        turn, self.ready[:] = list(self.ready), []
        for callback in turn:
            callback()
        return len(turn)


def beats(done: list[int], count: int) -> Procedure:
    """`count` heartbeats to the broker, each noted once its answer is back."""
    for n in range(count):
        yield ask("heartbeat", "solo", 10.0)
        done.append(n)


def test_a_long_procedure_pauses_between_steps_and_finishes_in_order() -> None:
    world = SteppedNode(per_read=PROCEDURE_SLICE / 2)  # two reads of the clock a slice
    done: list[int] = []
    world.node._apply([Run("beats", beats(done, 12))])  # as the host's effects are
    assert len(done) < 12 and world.ready  # paused, not finished, and will go on
    turns = 0
    while world.ready:
        assert world.run_ready() == 1  # one paused procedure, resumed once a turn
        turns += 1
        assert turns < 50
    assert done == list(range(12)) and turns >= 3


def test_a_procedure_within_its_slice_runs_through_at_once() -> None:
    world = SteppedNode(per_read=0.0)  # a clock that does not move: all within one slice
    done: list[int] = []
    world.node._apply([Run("beats", beats(done, 200))])  # as the host's effects are
    assert done == list(range(200)) and world.ready == []


def test_a_housekeeping_pass_lets_the_reactor_in() -> None:
    world = SteppedNode(per_read=PROCEDURE_SLICE / 4)
    node = world.node
    node.housekeeping()
    assert world.ready  # the pass did not hold the reactor to its end
    while world.ready:
        world.run_ready()
    assert node.host.housekeeping() != []  # the pass ended: a new one may start
