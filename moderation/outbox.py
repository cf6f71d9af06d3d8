"""The crisis outbox: alerts that must leave the building, kept until delivered.

Every webhook call and e-mail about an incident is first written to an
append-only journal (fsync'd) and only then attempted. A delivery is marked
done in the journal after the receiver answered 2xx. On start the journal is
replayed: whatever was added and not marked done is pending again — a
`kill -9` loses nothing, at the price of at-least-once delivery (receivers
de-duplicate with the Idempotency-Key, the item id).

Per channel, items go out one at a time in the order they were added: a
failing head item is retried with exponential backoff and nothing behind it
overtakes it, so an on-call receiver sees an incident's updates in order.
The scheduling state (`Outbox`) is pure; `OutboxJournal` is the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hearth.moderation.journal import Journal

BASE_BACKOFF = 1.0
MAX_BACKOFF = 300.0


@dataclass(kw_only=True)
class Item:
    id: str
    channel: str  # e.g. "webhook:primary", "email:admin"
    payload: dict[str, Any]
    created_at: float
    attempts: int = 0
    next_at: float = 0.0
    in_flight: bool = False
    # Shared through the broker (web/shared_outbox.py): the item's id in the shared stream,
    # and whether it was adopted from a node that went away (then only the stream has it).
    sid: str | None = None
    adopted: bool = False

    def to_record(self) -> dict[str, Any]:
        return {"id": self.id, "channel": self.channel, "payload": self.payload,
                "created_at": self.created_at}


@dataclass
class Outbox:
    journal: Callable[[dict[str, Any]], None] = lambda record: None
    max_backoff: float = MAX_BACKOFF
    alert_after: int = 5  # failed attempts of one item before the admin is alerted
    items: dict[str, Item] = field(default_factory=dict)  # insertion order = delivery order

    def add(self, item_id: str, channel: str, payload: dict[str, Any], now: float) -> Item:
        item = Item(id=item_id, channel=channel, payload=payload, created_at=now, next_at=now)
        self.journal({"op": "add", "id": item_id, "channel": channel, "payload": payload,
                      "created_at": now})
        self.items[item_id] = item
        return item

    def restore(self, records: Iterator[dict[str, Any]], now: float) -> int:
        """Replay a journal: added and not done is pending again."""
        for record in records:
            if record.get("op") == "add":
                self.items[record["id"]] = Item(
                    id=record["id"], channel=record["channel"], payload=record["payload"],
                    created_at=record["created_at"], next_at=now, sid=record.get("sid"))
            elif record.get("op") == "shipped" and record.get("id") in self.items:
                self.items[record["id"]].sid = record.get("sid")
            elif record.get("op") == "done":
                self.items.pop(record["id"], None)
        return len(self.items)

    def shipped(self, item_id: str, sid: str) -> None:
        """The item is in the shared stream too: another node can deliver it if this one dies."""
        item = self.items.get(item_id)
        if item is not None and not item.adopted:
            item.sid = sid
            self.journal({"op": "shipped", "id": item_id, "sid": sid})

    def adopt(self, sid: str, record: dict[str, Any], now: float) -> Item | None:
        """An item of a node that went away, from the shared stream; journaled nowhere here
        (the stream keeps it until it is delivered). None if it is here already."""
        if record["id"] in self.items:
            return None
        item = Item(id=record["id"], channel=record["channel"], payload=record["payload"],
                    created_at=record["created_at"], next_at=now, sid=sid, adopted=True)
        self.items[item.id] = item
        return item

    def due(self, now: float) -> list[Item]:
        """The head of each channel, if it is not in flight and its time has come."""
        heads: dict[str, Item] = {}
        for item in self.items.values():
            heads.setdefault(item.channel, item)
        out = [i for i in heads.values() if not i.in_flight and i.next_at <= now]
        for item in out:
            item.in_flight = True
        return out

    def delivered(self, item_id: str) -> Item | None:
        item = self.items.pop(item_id, None)
        if item is not None and not item.adopted:
            self.journal({"op": "done", "id": item_id})
        return item

    def failed(self, item_id: str, now: float) -> bool:
        """Schedule a retry; True exactly when this failure should alert the admin."""
        item = self.items.get(item_id)
        if item is None:
            return False
        item.in_flight = False
        item.attempts += 1
        item.next_at = now + min(self.max_backoff, BASE_BACKOFF * 2 ** (item.attempts - 1))
        return item.attempts == self.alert_after

    def pending(self, channel: str | None = None) -> list[Item]:
        return [i for i in self.items.values() if channel is None or i.channel == channel]


class OutboxJournal(Journal):
    """outbox.jsonl in the data directory."""

    def __call__(self, record: dict[str, Any]) -> None:
        self.append(record)

    def compact(self, pending: list[Item]) -> None:
        """Keep only what is still pending (after a restart has replayed the journal)."""
        self.rewrite({"op": "add", **i.to_record(), **({"sid": i.sid} if i.sid else {})}
                     for i in pending if not i.adopted)
