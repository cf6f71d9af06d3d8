"""Bans that survive a rejoin without keeping anyone's address.

A ban holds the keyed hash of the banned member's address under that day's
salt (spaces/addresses.py), and the day it belongs to. To check a newcomer,
its address is hashed under the salt of each day a live ban was made on. The
hash is dropped when the ban ends. The venue uses the list through
spaces/ports.py Bans. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hearth.spaces.addresses import AddressKey
from hearth.spaces.room import Member


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

    def ban(self, room: str, member: Member, until: float) -> None:
        """`member`'s address may not join `room` again before `until` (a member who came
        without an address, such as an in-process one, leaves nothing to ban)."""
        if member.address is not None:
            day, address_hash = member.address
            self.add(AddressBan(room=room, day=day, address_hash=address_hash, until=until,
                                pseudonym=member.pseudonym))

    def refuses(self, room: str, address: AddressKey, now: float) -> bool:
        """Whether a live ban in this room matches this address."""
        return any(ban.room == room and ban.until > now and ban.address_hash is not None
                   and address.hash_for(ban.day) == ban.address_hash for ban in self.bans)

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
