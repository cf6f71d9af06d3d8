"""Records nodes share through Redis that must not be forged there: sealed with a MAC.

Sign-in session events, login-throttle counts and facilitator account changes travel
between nodes (and wait in Redis's shared logs for nodes that start later). Whoever
can write to Redis could otherwise mint a session or add an account. Each such record
carries `mac`: HMAC-SHA256, under a key derived from the deployment's secrets
(`secrets.json`, the same on every node), of the record's canonical JSON without
`mac` and without the `node` tag the log shipper adds. A record whose MAC is missing
or wrong is refused by the node that reads it (and counted).

The MAC proves a node (or the CLI, on a machine with the secrets) wrote the record; it
does not stop a record being replayed or deleted: each reader guards against replays
itself (sessions: an ended session never comes back; accounts: a revision must grow).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

UNSEALED = ("mac", "node")  # not covered: the MAC itself, and the shipper's node tag


def shared_key(secret: bytes) -> bytes:
    """The key sealing shared records, from the deployment's cookie secret."""
    return hmac.new(secret, b"hearth-shared-records-key", hashlib.sha256).digest()


def _mac(key: bytes, record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k not in UNSEALED}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, canonical.encode("ascii"), hashlib.sha256).hexdigest()


def seal(key: bytes, record: Mapping[str, Any]) -> dict[str, Any]:
    """The record with its MAC."""
    return {**record, "mac": _mac(key, record)}


def opened(key: bytes, record: Any) -> dict[str, Any] | None:
    """The record without its MAC if the MAC is right, else None (never raises)."""
    if not isinstance(record, dict):
        return None
    mac = record.get("mac")
    try:
        expected = _mac(key, record)
    except (TypeError, ValueError):
        return None
    if not isinstance(mac, str) or not mac.isascii() \
            or not hmac.compare_digest(mac.encode("ascii"), expected.encode("ascii")):
        return None
    return {k: v for k, v in record.items() if k not in UNSEALED}
