"""The organisation's logs, shared: every node's audit and incident records in one place.

A node writes each record to its own fsync'd journal first (moderation/journal.py:
that copy survives a crash), then ships it to the broker's stream of the same
name (`hearth:log:audit`, `hearth:log:incidents` on Redis), tagged with the
node's id. `hearth audit export --redis …` and `hearth incidents export --redis …`
read the streams: every node's records, in the order they reached Redis; a node
learns at start which incidents other nodes run from the incident stream.

While Redis is away records wait here, in order, and go out when it is back.
At most LIMIT wait; beyond that the oldest waiting records are dropped from the
queue and counted (the node's journal still has them). The records are the
journal's: metadata only, never content, an address or a token.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from hearth.spaces.broker import Broker, log_records

LIMIT = 100_000
STREAMS = ("audit", "incidents")


class LogShipper:
    log = Logger(namespace="hearth.logs")

    def __init__(self, broker: Broker, node_id: str, limit: int = LIMIT) -> None:
        self.broker, self.node_id, self.limit = broker, node_id, limit
        self._waiting: deque[tuple[str, bytes]] = deque()
        self._lock = defer.DeferredLock()  # one flush at a time: records go out in order
        self.dropped = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def ship(self, stream: str, record: dict[str, Any]) -> None:
        if len(self._waiting) >= self.limit:
            self._waiting.popleft()
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                self.log.warn("shared log queue full: {count} records kept on this node only",
                              count=self.dropped)
        data = json.dumps({**record, "node": self.node_id}, ensure_ascii=False,
                          separators=(",", ":")).encode()
        self._waiting.append((stream, data))
        if not self._lock.locked:
            d = defer.ensureDeferred(self.flush())
            d.addErrback(lambda f: self.log.failure("shipping log records failed", f))

    async def flush(self) -> bool:
        """Ship what waits, in order; stop at the first refusal (Redis away) and leave the
        rest for the next call (the node's housekeeping calls this every second).
        True when nothing is left waiting."""
        await self._lock.acquire()
        try:
            while self._waiting:
                head = self._waiting[0]
                if await self.broker.append(*head) is None:
                    return False
                if self._waiting and self._waiting[0] is head:  # not dropped meanwhile
                    self._waiting.popleft()
            return True
        finally:
            self._lock.release()


async def read_stream(broker: Broker, stream: str) -> list[dict[str, Any]]:
    """Every record of a shared log, oldest first (for exports and catching up at start).
    Raises ConnectionError when the shared store cannot be reached."""
    records: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        batch = await broker.read(stream, after, 1000)
        if batch is None:
            raise ConnectionError(f"the shared log {stream!r} cannot be read")
        if not batch:
            return records
        records += log_records(batch)
        after = batch[-1][0]
