"""The crisis outbox shared between nodes: an alert is not lost with the node that raised it.

Every alert is journaled on the node's own disk first (moderation/outbox.py), then
copied into the shared stream `outbox` (`hearth:log:outbox` on Redis) with the
node's id; the copy goes when the alert was delivered. Each node holds a lease
on its own name (`outbox:<node>`) and renews it every second. A node whose lease
ran out has gone away — or a node found it gone (spaces/host.py takes its lease
at once): the node holding that lease adopts its alerts from the stream and
delivers them, in the order they were raised, and keeps the lease while any is
left. While Redis is away nothing changes: each
node delivers its own alerts, and copies what it could not copy once Redis is
back.

Delivery is at least once: a node restarted from its journal, or two nodes
around a lease running out, may send an alert twice — with the same
Idempotency-Key (the alert's id), which receivers use to drop the second.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from hearth.moderation.outbox import Item, Outbox
from hearth.spaces.broker import Broker
from hearth.spaces.host import OUTBOX_LEASE_TTL as LEASE_TTL
from hearth.spaces.host import outbox_lease

STREAM = "outbox"


class SharedOutbox:
    log = Logger(namespace="hearth.alerts")

    def __init__(self, outbox: Outbox, broker: Broker, node_id: str,
                 clock: Callable[[], float]) -> None:
        self.outbox, self.broker, self.node_id, self.clock = outbox, broker, node_id, clock
        self._removing: set[str] = set()  # delivered, still to delete from the stream
        self._copying: set[str] = set()  # item ids being copied right now
        self.adopted = 0

    async def added(self, item: Item) -> bool:
        """Copy one alert into the stream (a failed copy is retried by `sync`); True once a
        copy is there (or the alert was delivered meanwhile)."""
        if item.sid is not None:
            return True
        if item.id in self._copying:
            return False
        self._copying.add(item.id)
        try:
            record = json.dumps({"node": self.node_id, **item.to_record()},
                                separators=(",", ":")).encode()
            sid = await self.broker.append(STREAM, record)
        finally:
            self._copying.discard(item.id)
        if sid is None:
            return False
        if item.id in self.outbox.items:
            self.outbox.shipped(item.id, sid)
        else:  # delivered while it was being copied: the copy must not outlive it
            item.sid = sid
            await self.delivered(item)
        return True

    async def delivered(self, item: Item) -> None:
        if item.sid is not None:
            self._removing.add(item.sid)
            if await self.broker.remove(STREAM, [item.sid]):
                self._removing.discard(item.sid)

    async def sync(self) -> None:
        """Once a second: keep our own alerts ours, copy what is not copied yet, retry
        deletions, and take over the alerts of nodes that went away."""
        if not await self.broker.lease(outbox_lease(self.node_id), self.node_id, LEASE_TTL):
            return  # the shared store is away: every node delivers its own
        for item in [i for i in self.outbox.pending() if i.sid is None and not i.adopted]:
            await self.added(item)
        if self._removing and await self.broker.remove(STREAM, sorted(self._removing)):
            self._removing.clear()
        entries = await self.broker.read(STREAM)
        if not entries:
            return
        by_node: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for sid, data in entries:
            if sid in self._removing:
                continue
            try:
                record = json.loads(data)
                node = str(record["node"])
            except (ValueError, KeyError, TypeError):
                continue
            if node != self.node_id:
                by_node.setdefault(node, []).append((sid, record))
        now = self.clock()
        for node, records in by_node.items():
            if not await self.broker.lease(outbox_lease(node), self.node_id, LEASE_TTL):
                continue  # its node (or another node that adopted them) delivers them
            for sid, record in records:
                try:
                    item = self.outbox.adopt(sid, record, now)
                except (KeyError, TypeError):
                    continue
                if item is not None:
                    self.adopted += 1
                    self.log.warn("delivering crisis alert {item} for incident {incident} "
                                  "raised on node {node}, which went away", item=item.id,
                                  incident=item.payload.get("incident"), node=node)
