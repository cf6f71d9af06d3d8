"""A relay that stands in for the server between E2EE sessions in unit tests."""

from __future__ import annotations

from collections.abc import Iterable

from hearth.spaces.e2ee import GroupSession
from hearth.spaces.e2ee.session import OutgoingMessage


class Relay:
    """What the server does for E2EE: announce epoch + roster, deliver directed envelopes."""

    def __init__(self, room: str = "room-1") -> None:
        self.room = room
        self.sessions: dict[str, GroupSession] = {}
        self.epoch = 1

    def join(self, *members: str) -> None:
        for m in members:
            self.sessions[m] = GroupSession(self.room, m)
        self.announce()

    def remove(self, member: str) -> GroupSession:
        gone = self.sessions.pop(member)
        self.epoch += 1
        self.announce()
        return gone

    def roster(self) -> dict[str, dict[str, object]]:
        return {m: s.public_keys() for m, s in self.sessions.items()}

    def announce(self, members: Iterable[str] | None = None) -> None:
        """The epoch and roster to everyone; then, as the server relays each member's `keys`
        with its epoch key for the epoch, the roster again; every envelope delivered."""
        for _ in range(2):
            roster = self.roster()
            outgoing = []
            for m in members or list(self.sessions):
                outgoing += [(m, to, body) for to, body in
                             self.sessions[m].update_roster(self.epoch, roster)]
            for sender, to, body in outgoing:
                self.sessions[to].receive_directed(sender, body)

    def send(self, sender: str, text: str) -> OutgoingMessage:
        return self.sessions[sender].encrypt(text)
