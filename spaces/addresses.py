"""Client addresses as the core may use them: only as keyed hashes, one per UTC day's salt.

The salt rotates daily and is derived from a secret seed, so the same address
hashes differently every day and nothing keeps the address itself. Bans
(moderation/bans.py) hold these hashes; the routing host carries them to the
node that runs a room. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Protocol

BAN_DAYS = 9  # days back a ban may date from: the hashes another node needs of an address


def utc_day(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


class AddressKey(Protocol):
    """An address as the core may use it: only as keyed hashes, one per day's salt."""

    def hash_for(self, day: str) -> bytes: ...


class HashedAddress:
    """An address as another node knows it: only its keyed hashes for recent days."""

    __slots__ = ("_hashes",)

    def __init__(self, hashes: dict[str, bytes]) -> None:
        self._hashes = hashes

    def hash_for(self, day: str) -> bytes:
        return self._hashes.get(day, b"")


class ClientAddress:
    """A connection's address, usable only as a keyed hash; it never prints itself."""

    __slots__ = ("_address", "_seed")

    def __init__(self, seed: bytes, address: str) -> None:
        self._seed = seed
        self._address = address.encode("utf-8")

    def hash_for(self, day: str) -> bytes:
        salt = hmac.new(self._seed, b"hearth-address-salt/" + day.encode(), hashlib.sha256).digest()
        return hmac.new(salt, self._address, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "<ClientAddress>"


class AddressBook:
    """Client addresses as the routing host handles them (spaces/host.py Addresses): a
    connection's, one known only by the hashes another node sent, and those hashes."""

    __slots__ = ("_seed",)

    def __init__(self, seed: bytes) -> None:
        self._seed = seed

    def client(self, address: str) -> ClientAddress:
        return ClientAddress(self._seed, address)

    def hashed(self, hashes: Mapping[str, str]) -> HashedAddress:
        return HashedAddress({day: bytes.fromhex(value) for day, value in hashes.items()})

    def hashes(self, address: AddressKey, now: float) -> dict[str, str]:
        """The keyed hashes of `address` for the days a ban may date from (never the
        address)."""
        days = {utc_day(now - 86400 * d) for d in range(BAN_DAYS)}
        return {day: address.hash_for(day).hex() for day in days}

    def __repr__(self) -> str:
        return "<AddressBook>"
