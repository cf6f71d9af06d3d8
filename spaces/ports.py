"""What the room core needs of moderation: the crisis desk, the facilitator controls,
the ban list and the report queue, as typed Protocols.

moderation/ implements them (crisis.py CrisisDesk, controls.py facilitate,
bans.py BanList, reports.py ReportQueue) and moderation/wiring.py plugs them
into a venue; mypy checks that each implementation has what its Protocol
asks. The room core calls them and never imports moderation/: a connection
hands help and "I'm okay" straight to the crisis desk; the venue hands every
facilitator message to the controls, flags and "I'm worried" to the crisis
desk, and tells it its own events (a member forgotten, a room moving, time
passing); the routing host asks the desk which incidents run where.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from hearth.spaces import protocol as p
from hearth.spaces.addresses import AddressKey
from hearth.spaces.effects import Effect
from hearth.spaces.room import Member, Room

if TYPE_CHECKING:
    from hearth.spaces.venue import Venue


class Crisis(Protocol):
    """The crisis desk: help, flags and "I'm worried" become incidents, incidents alerts."""

    @property
    def on_duty(self) -> Mapping[str, Member]:
        """Facilitators on duty at this node's consoles, by member id."""

    @property
    def elsewhere(self) -> Mapping[str, Mapping[str, Any]]:
        """Incidents other nodes run, as last heard (id -> its wire form)."""

    # members' and facilitators' messages
    def help(self, room: Room, person: Member, now: float, ref: str | None,
             client_id: str | None = None) -> list[Effect]: ...
    def im_ok(self, rooms: Mapping[str, Room], person: Member, now: float,
              ref: str | None) -> list[Effect]: ...
    def worried(self, room: Room, reporter: Member, person: Member, now: float,
                ref: str | None) -> list[Effect]: ...
    def flagged(self, room: Room, member: Member, msg: p.Flag, now: float) -> list[Effect]: ...
    def standing(self, room: str, person: str) -> list[Effect]: ...
    def failing(self, rooms: Mapping[str, Room], channel: str, incident_id: str,
                attempts: int, delivered: bool = False) -> list[Effect]: ...
    def incident(self, rooms: Mapping[str, Room], actor: str, msg: p.Incident,
                 now: float) -> list[Effect]: ...
    def act(self, rooms: Mapping[str, Room], actor: str, incident_id: str, action: str,
            outcome: str | None, now: float, ref: str | None,
            basis: str | None = None) -> list[Effect]: ...
    def set_duty(self, member: Member, on: bool, now: float) -> list[Effect]: ...
    def listing(self, room: Room) -> list[Effect]: ...

    # the venue's events
    def forget_member(self, member: str) -> None: ...
    def export(self, room: str) -> list[dict[str, Any]]: ...
    def adopt(self, states: list[Any]) -> int: ...
    def tick(self, rooms: Mapping[str, Room], now: float) -> list[Effect]: ...

    # what the routing host asks and tells
    def room_of(self, incident_id: str) -> str | None: ...
    def runs_in(self, room: str) -> bool: ...
    def hand_over(self, room: str) -> None: ...
    def heard_duty(self, node: str, count: int, now: float) -> None: ...
    def learn(self, wire: dict[str, Any]) -> None: ...
    def relist(self) -> list[Effect]: ...
    def latest(self, records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]: ...


class Controls(Protocol):
    """Facilitator controls: a message of protocol.FACILITATOR_TYPES from a seated member,
    its role checked, done (on the room, the venue's sessions, bans, reports, incidents)
    and audited."""

    def __call__(self, venue: Venue, room: Room, actor: Member, msg: p.ClientMessage,
                 now: float) -> list[Effect]: ...


class Bans(Protocol):
    """Rooms refusing addresses (as keyed hashes) for a while."""

    def ban(self, room: str, member: Member, until: float) -> None: ...
    def refuses(self, room: str, address: AddressKey, now: float) -> bool: ...
    def export(self, room: str) -> list[dict[str, Any]]: ...
    def adopt(self, room: str, states: list[Any]) -> None: ...
    def purge(self, now: float) -> int: ...


class FiledReport(Protocol):
    """A verified report as facilitators see it."""

    @property
    def id(self) -> int: ...
    def to_wire(self) -> dict[str, Any]: ...


class Reports(Protocol):
    """Verified reports of single messages, waiting for a facilitator."""

    def add(self, *, room: str, seq: int, sent_at: int, reported_at: int, sender: str,
            sender_pseudonym: str, reporter_pseudonym: str, text: str,
            reason: str) -> FiledReport: ...
    def find(self, *, room: str, seq: int, sender: str,
             reporter_pseudonym: str) -> FiledReport | None: ...
    def full(self, *, room: str, reporter_pseudonym: str) -> bool: ...
    def for_room(self, room: str) -> Sequence[FiledReport]: ...
