"""Verified reports of single messages, waiting for a facilitator to read them.

A report holds what the reporter chose to reveal (the text) and pseudonyms,
never anything else of the conversation. Only reports whose franking proof
verified are ever stored (the venue checks it; it uses the queue through
spaces/ports.py Reports).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class VerifiedReport:
    id: int
    room: str
    seq: int
    sent_at: int  # ms, as stamped by the server when relayed
    reported_at: int  # ms
    sender: str  # member id
    sender_pseudonym: str
    reporter_pseudonym: str
    text: str
    reason: str

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)


MAX_REPORTS_PER_MESSAGE = 16  # reporters of one message kept (a room's members, renamed ones)
MAX_REPORTS_PER_REPORTER = 100  # reports one pseudonym has kept in a room (until retention)


@dataclass
class ReportQueue:
    """In memory (Redis storage arrives with its issue); purged after [retention] reports_days."""

    reports: list[VerifiedReport] = field(default_factory=list)
    _next_id: int = 1

    def find(self, *, room: str, seq: int, sender: str,
             reporter_pseudonym: str) -> VerifiedReport | None:
        """A report already kept of this message: by this reporter, or any once the message
        has MAX_REPORTS_PER_MESSAGE (a report sent again is answered as the first time,
        never kept twice nor pushed to facilitators again: without bound, the same proof
        repeated at the message rate filled memory for reports_days)."""
        same = [r for r in self.reports if r.room == room and r.seq == seq and r.sender == sender]
        mine = next((r for r in same if r.reporter_pseudonym == reporter_pseudonym), None)
        return mine or (same[0] if len(same) >= MAX_REPORTS_PER_MESSAGE else None)

    def full(self, *, room: str, reporter_pseudonym: str) -> bool:
        """This reporter has MAX_REPORTS_PER_REPORTER reports kept in this room: a member
        reporting message after message (its own, or a friend's) would otherwise grow
        memory at the message rate for reports_days."""
        return sum(1 for r in self.reports if r.room == room
                   and r.reporter_pseudonym == reporter_pseudonym) >= MAX_REPORTS_PER_REPORTER

    def add(self, *, room: str, seq: int, sent_at: int, reported_at: int, sender: str,
            sender_pseudonym: str, reporter_pseudonym: str, text: str,
            reason: str) -> VerifiedReport:
        report = VerifiedReport(id=self._next_id, room=room, seq=seq, sent_at=sent_at,
                                reported_at=reported_at, sender=sender,
                                sender_pseudonym=sender_pseudonym,
                                reporter_pseudonym=reporter_pseudonym, text=text, reason=reason)
        self._next_id += 1
        self.reports.append(report)
        return report

    def for_room(self, room: str) -> list[VerifiedReport]:
        return [r for r in self.reports if r.room == room]

    def purge(self, older_than: float) -> int:
        """Drop reports made before `older_than` (seconds); returns how many went."""
        before = len(self.reports)
        self.reports = [r for r in self.reports if r.reported_at >= older_than * 1000]
        return before - len(self.reports)
