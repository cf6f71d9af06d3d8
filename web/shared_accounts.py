"""Facilitator accounts shared between nodes: Redis carries the changes, each node's
`facilitators.json` is its copy and the fallback.

`hearth facilitator add|remove|reset|totp` changes the accounts file of the node it runs
beside (moderation/accounts.py: every change has a revision). Each node, once a second
(its housekeeping):

1. reads the shared log `hearth:log:accounts` on from where it stopped (from the start
   when it starts) and merges what other nodes changed into its own file — for each
   name the higher revision wins, a removal included — so every node's file converges
   and serves on its own while Redis is away;
2. appends to the log every change of its own file that the log does not have yet
   (made by the CLI here, or before Redis was reachable).

What goes to Redis is sealed (moderation/sealed.py: a MAC under the deployment's key,
so a record written by anyone else is refused and counted), and the account itself —
its argon2id hash and TOTP secret — is encrypted (AES-256-GCM under another key derived
from the same secret): Redis sees names and revisions, never a role, a hash or a
secret. Replaying an old record changes nothing on a node that has seen a newer one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from twisted.internet.defer import DeferredLock

from hearth.moderation.accounts import AccountStore
from hearth.moderation.sealed import opened, seal, shared_key
from hearth.spaces import relay
from hearth.spaces.broker import Broker

STREAM = "accounts"
BATCH = 1000


class SharedAccounts:
    def __init__(self, store: AccountStore, broker: Broker, secret: bytes, node_id: str = "",
                 on_refused: Callable[[str], None] | None = None) -> None:
        self.store, self.broker, self.node_id = store, broker, node_id
        self.on_refused = on_refused  # a record not sealed with this deployment's key
        self._mac_key = shared_key(secret)
        self._box = AESGCM(hmac.new(secret, b"hearth-shared-accounts-box", hashlib.sha256).digest())
        self._read: str | None = None  # the last id read from the shared log
        self._shared: dict[str, int] = {}  # name -> the highest revision the log holds
        self._lock = DeferredLock()

    def wrap(self, record: dict[str, Any]) -> bytes:
        """A change as it goes to Redis: the account encrypted, the whole sealed."""
        out = {"op": record["op"], "name": record["name"], "rev": record["rev"]}
        if record["op"] == "put":
            nonce = os.urandom(12)
            plain = json.dumps(record["account"], sort_keys=True).encode()
            box = self._box.encrypt(nonce, plain, self._aad(out))
            out["box"] = base64.b64encode(nonce + box).decode("ascii")
        return json.dumps(seal(self._mac_key, out), separators=(",", ":")).encode()

    @staticmethod
    def _aad(record: dict[str, Any]) -> bytes:
        return f"{record['name']}\0{record['rev']}".encode()

    def unwrap(self, data: bytes) -> dict[str, Any] | None:
        """A change read from Redis, or None if it was not written with this deployment's
        key (or is damaged)."""
        try:
            record = opened(self._mac_key, json.loads(data))
            if record is None or not isinstance(record.get("name"), str) \
                    or not isinstance(record.get("rev"), int):
                return None
            if record.get("op") == "put":
                raw = base64.b64decode(record.pop("box"), validate=True)
                plain = self._box.decrypt(raw[:12], raw[12:], self._aad(record))
                record["account"] = json.loads(plain)
            return record
        except (ValueError, KeyError, TypeError, InvalidTag):
            return None

    async def sync(self) -> list[str] | None:
        """Merge other nodes' changes into this node's file, then share this node's own.
        Returns the names that changed here, or None when the shared log is unreachable
        (the file serves as it is). One at a time (housekeeping and a hint may meet)."""
        await self._lock.acquire()
        try:
            return await self._sync()
        finally:
            self._lock.release()

    async def _sync(self) -> list[str] | None:
        records: list[dict[str, Any]] = []
        while True:
            batch = await self.broker.read(STREAM, self._read, BATCH)
            if batch is None:
                return None
            if not batch:
                break
            self._read = batch[-1][0]
            for _, data in batch:
                record = self.unwrap(data)
                if record is None:
                    if self.on_refused is not None:
                        self.on_refused("an account change")
                    continue
                self._shared[record["name"]] = max(self._shared.get(record["name"], -1),
                                                   record["rev"])
                records.append(record)
            if len(batch) < BATCH:
                break
        changed = self.store.merge(records) if records else []
        shared = 0
        for name, record in sorted(self.store.records().items()):
            if record["rev"] > self._shared.get(name, -1):
                if await self.broker.append(STREAM, self.wrap(record)) is None:
                    break  # Redis went away: the next call shares the rest
                self._shared[name] = record["rev"]
                shared += 1
        if shared:  # the other nodes read the log at once, not at their next housekeeping
            self.broker.send_all(relay.Accounts(self.node_id).pack())
        return changed
