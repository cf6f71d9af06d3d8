"""Bans that survive a rejoin without keeping anyone's address.

A ban holds the keyed hash of the banned connection's address under that
day's salt (the salt rotates daily and is derived from a secret seed), and
the day it belongs to. To check a newcomer, the shell hashes the newcomer's
address under the salt of each day a live ban was made on. The hash is
dropped when the ban ends. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


def utc_day(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


@dataclass(frozen=True, kw_only=True)
class AddressBan:
    """One room refusing one address (as that day's keyed hash) until `until`."""
    room: str
    day: str
    address_hash: bytes | None
    until: float
    pseudonym: str


@dataclass
class BanList:
    bans: list[AddressBan] = field(default_factory=list)

    def add(self, ban: AddressBan) -> None:
        self.bans.append(ban)

    def find(self, room: str, hash_for: Callable[[str], bytes | None], now: float) -> AddressBan | None:
        """The live ban matching this address in this room, if any."""
        for ban in self.bans:
            if ban.room == room and ban.until > now and ban.address_hash is not None \
                    and hash_for(ban.day) == ban.address_hash:
                return ban
        return None

    def export(self, room: str) -> list[dict[str, Any]]:
        """The room's bans, to go with the room to the node that runs it next (the keyed
        hashes only; they are dropped there too when the ban ends)."""
        return [{"day": b.day, "hash": b.address_hash.hex(), "until": b.until,
                 "pseudonym": b.pseudonym}
                for b in self.bans if b.room == room and b.address_hash is not None]

    def adopt(self, room: str, states: list[Any]) -> None:
        known = {(b.room, b.day, b.address_hash) for b in self.bans}
        for state in states:
            try:
                ban = AddressBan(room=room, day=str(state["day"]), address_hash=bytes.fromhex(state["hash"]),
                          until=float(state["until"]), pseudonym=str(state["pseudonym"]))
            except (KeyError, TypeError, ValueError):
                continue
            if (ban.room, ban.day, ban.address_hash) not in known:
                self.bans.append(ban)

    def purge(self, now: float) -> int:
        before = len(self.bans)
        self.bans = [b for b in self.bans if b.until > now]
        return before - len(self.bans)


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
        import hashlib
        import hmac
        salt = hmac.new(self._seed, b"hearth-address-salt/" + day.encode(), hashlib.sha256).digest()
        return hmac.new(salt, self._address, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "<ClientAddress>"


BAN_DAYS = 9  # days back a ban may date from: the hashes another node needs of an address


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
