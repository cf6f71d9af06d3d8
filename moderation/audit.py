"""The audit log: who did which moderation action to whom, when — never what was said.

Append-only JSON lines, one fsync per record, so an action that was answered
is on disk even if the process is killed the next instant (`kill -9`). Each
record: ts (ms), actor (account name or pseudonym), action, target (a
pseudonym), room, outcome ("ok" or "refused:<code>"). No message content, no
address, no token ever goes in: the fields are fixed and short.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hearth.moderation.journal import Journal, read_records

MAX_FIELD = 80


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    ts: int
    actor: str
    action: str
    target: str | None
    room: str | None
    outcome: str


class AuditLog:
    def __init__(self, path: Path,
                 on_record: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.path = path
        self._journal = Journal(path)
        self.on_record = on_record  # e.g. ship it to the shared log (web/shared_logs.py)

    def record(self, actor: str, action: str, target: str | None, room: str | None,
               outcome: str, now: float) -> AuditEntry:
        entry = AuditEntry(ts=int(now * 1000), actor=actor[:MAX_FIELD], action=action[:MAX_FIELD],
                           target=None if target is None else target[:MAX_FIELD],
                           room=None if room is None else room[:MAX_FIELD],
                           outcome=outcome[:MAX_FIELD])
        record = asdict(entry)
        self._journal.append(record)
        if self.on_record is not None:
            self.on_record(record)
        return entry

    def entries(self) -> Iterator[AuditEntry]:
        return read_entries(self.path)

    def purge(self, older_than: float) -> int:
        """Drop entries older than `older_than` (seconds); returns how many went."""
        entries = list(self.entries())
        keep = [asdict(e) for e in entries if e.ts >= older_than * 1000]
        if len(keep) != len(entries):
            self._journal.rewrite(keep)
        return len(entries) - len(keep)

    def close(self) -> None:
        self._journal.close()


def read_entries(path: Path) -> Iterator[AuditEntry]:
    """Every complete record; a torn last line (a crash mid-write) is skipped."""
    for record in read_records(path):
        try:
            yield AuditEntry(**record)
        except TypeError:
            continue


def format_entry(entry: AuditEntry) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.ts / 1000))
    return "\t".join([when, entry.room or "-", entry.actor, entry.action, entry.target or "-",
                      entry.outcome])
