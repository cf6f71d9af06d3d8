"""The audit log: who did which moderation action to whom, when — never what was said.

Append-only JSON lines, one fsync per record, so an action that was answered
is on disk even if the process is killed the next instant (`kill -9`). Each
record: ts (ms), actor (account name or pseudonym), action, target (a
pseudonym), room, outcome ("ok" or "refused:<code>"). No message content, no
address, no token ever goes in: the fields are fixed and short.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

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
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "ab")

    def record(self, actor: str, action: str, target: str | None, room: str | None,
               outcome: str, now: float) -> AuditEntry:
        entry = AuditEntry(ts=int(now * 1000), actor=actor[:MAX_FIELD], action=action[:MAX_FIELD],
                           target=None if target is None else target[:MAX_FIELD],
                           room=None if room is None else room[:MAX_FIELD],
                           outcome=outcome[:MAX_FIELD])
        self._file.write(json.dumps(asdict(entry), ensure_ascii=False).encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        return entry

    def entries(self) -> Iterator[AuditEntry]:
        return read_entries(self.path)

    def purge(self, older_than: float) -> int:
        """Drop entries older than `older_than` (seconds); returns how many went."""
        from web.datadir import write_atomically  # the one atomic writer
        keep, dropped = [], 0
        for entry in self.entries():
            if entry.ts >= older_than * 1000:
                keep.append(json.dumps(asdict(entry), ensure_ascii=False))
            else:
                dropped += 1
        if dropped:
            self._file.close()
            write_atomically(self.path, ("\n".join(keep) + "\n" if keep else "").encode())
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._file = os.fdopen(fd, "ab")
        return dropped

    def close(self) -> None:
        self._file.close()


def read_entries(path: Path) -> Iterator[AuditEntry]:
    """Every complete record; a torn last line (a crash mid-write) is skipped."""
    if not path.exists():
        return
    with path.open("rb") as f:
        for line in f:
            try:
                yield AuditEntry(**json.loads(line))
            except (ValueError, TypeError):
                continue


def format_entry(entry: AuditEntry) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.ts / 1000))
    return "\t".join([when, entry.room or "-", entry.actor, entry.action, entry.target or "-",
                      entry.outcome])
