"""Voice over WebTransport datagrams, without sockets or clocks: the one-time tokens that
bind a WebTransport session to a member's WebSocket, the datagram framing, and the filter
that takes out repeated copies.

Rules, in one place (docs/protocol.md, "Voice over WebTransport"):
- A token is issued over the member's WebSocket (`voice_transport`) only: 192 bits from
  `secrets`, valid TOKEN_TTL seconds, good for one session. The table keeps its SHA-256
  only. A connection holds at most one token (a new one replaces the old), and may ask
  for one at most once every REQUEST_INTERVAL seconds.
- A datagram carries one voice frame exactly as the WebSocket does (the end-to-end
  encrypted hearth.v1 frame, spaces/voice.py), and may carry after it the previous frame
  of the same sender again (a *repeat*): a single lost datagram then loses no audio.
- Every frame goes to the room core (spaces/room.py) the way a binary WebSocket message
  does; this module only removes the copies of frames already passed on. What a frame
  may do (rate, mute, range and zone, the talking stick, private corners) is decided
  there, once, whatever transport it came on.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from hearth.spaces.protocol import ProtocolError

TOKEN_TTL = 30.0  # seconds a token may wait for its session
REQUEST_INTERVAL = 1.0  # seconds between two tokens for one connection
TOKEN_BYTES = 24  # 192 bits, as session tokens
LENGTH = struct.Struct("!H")
WINDOW = 64  # frames a duplicate filter remembers below the highest seq
REPEAT_SPEAKERS = 64  # speakers whose last frame a channel keeps for its repeats
_MASK = (1 << WINDOW) - 1
SEQ_OFFSET = 6  # voice header: version, flags, level, epoch, slot (u16), seq (u32)
SLOT_OFFSET = 4

Owner = TypeVar("Owner", bound=Hashable)


@dataclass(slots=True)
class _Issued(Generic[Owner]):
    owner: Owner
    digest: bytes
    expires: float
    at: float


class TokenTable(Generic[Owner]):
    """Tokens waiting for their WebTransport session, by digest; one per owner at most."""

    def __init__(self, ttl: float = TOKEN_TTL, interval: float = REQUEST_INTERVAL) -> None:
        self.ttl, self.interval = ttl, interval
        self._by_digest: dict[bytes, _Issued[Owner]] = {}
        self._by_owner: dict[Owner, _Issued[Owner]] = {}
        self.issued = self.redeemed = self.refused = 0

    def __len__(self) -> int:
        return len(self._by_digest)

    def issue(self, owner: Owner, now: float, ref: str | None = None) -> str:
        """A fresh token for `owner`, replacing its previous one; rate_limited if asked
        again within `interval` seconds."""
        old = self._by_owner.get(owner)
        if old is not None and now - old.at < self.interval:
            raise ProtocolError("rate_limited", "Voice over UDP was asked for a moment ago; "
                                                "wait a second.", ref)
        self.revoke(owner)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        issued = _Issued(owner, digest(token), now + self.ttl, now)
        self._by_digest[issued.digest] = issued
        self._by_owner[owner] = issued
        self.issued += 1
        return token

    def redeem(self, token: str, now: float) -> Owner | None:
        """The owner a token was issued to, once; None if unknown, used or expired."""
        issued = self._by_digest.pop(digest(token), None)
        if issued is None:
            self.refused += 1
            return None
        if self._by_owner.get(issued.owner) is issued:
            del self._by_owner[issued.owner]
        if now > issued.expires:
            self.refused += 1
            return None
        self.redeemed += 1
        return issued.owner

    def revoke(self, owner: Owner) -> None:
        """The owner's connection closed (or asked again): its token is no good any more."""
        issued = self._by_owner.pop(owner, None)
        if issued is not None:
            self._by_digest.pop(issued.digest, None)

    def sweep(self, now: float) -> None:
        for issued in [i for i in self._by_digest.values() if now > i.expires]:
            self._by_digest.pop(issued.digest, None)
            if self._by_owner.get(issued.owner) is issued:
                del self._by_owner[issued.owner]


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


# --- datagram framing --------------------------------------------------------------------

def pack(frame: bytes, repeat: bytes | None = None) -> bytes:
    """u16 length of the frame ‖ the frame ‖ (optionally) the sender's previous frame."""
    head = LENGTH.pack(len(frame))
    return head + frame + repeat if repeat else head + frame


def unpack(datagram: bytes) -> tuple[bytes, bytes | None]:
    """(frame, repeat or None); ValueError if the length does not fit the datagram."""
    if len(datagram) < LENGTH.size:
        raise ValueError("a voice datagram starts with the frame's length")
    (n,) = LENGTH.unpack_from(datagram)
    end = LENGTH.size + n
    if end > len(datagram):
        raise ValueError("the frame's length runs past the datagram")
    return datagram[LENGTH.size:end], (datagram[end:] or None)


def seq_of(frame: bytes) -> int | None:
    """The frame's seq from its clear header, or None if the frame is too short to have one
    (the core refuses such a frame with voice_invalid)."""
    if len(frame) < SEQ_OFFSET + 4:
        return None
    return int.from_bytes(frame[SEQ_OFFSET:SEQ_OFFSET + 4], "big")


class SeqWindow:
    """Which seqs of one sender were passed on: the highest, and a bit for each of the
    WINDOW below it. A seq far below the window is a sender that started counting afresh
    (a new voice key may restart at 1), and starts the window again."""

    __slots__ = ("bits", "highest")

    def __init__(self) -> None:
        self.highest = -1
        self.bits = 0

    def fresh(self, seq: int) -> bool:
        """True the first time a seq is seen (and remembers it)."""
        if seq > self.highest:
            if self.highest >= 0:
                shift = seq - self.highest  # the old highest is now `shift` behind
                self.bits = ((self.bits << shift) | (1 << (shift - 1))) & _MASK \
                    if shift <= WINDOW else 0
            self.highest = seq
            return True
        behind = self.highest - seq
        if behind == 0:
            return False
        if behind > WINDOW:
            self.highest, self.bits = seq, 0  # counting afresh
            return True
        mask = 1 << (behind - 1)
        if self.bits & mask:
            return False
        self.bits |= mask
        return True


class Inbound:
    """A channel's frames from its client, in: the frames to pass on, repeat first."""

    __slots__ = ("duplicates", "window")

    def __init__(self) -> None:
        self.window = SeqWindow()
        self.duplicates = 0

    def frames(self, datagram: bytes) -> list[bytes]:
        """ValueError for a datagram that is not framed as above."""
        frame, repeat = unpack(datagram)
        out = []
        for one in (repeat, frame) if repeat is not None else (frame,):
            seq = seq_of(one)
            if seq is None or self.window.fresh(seq):
                out.append(one)  # the core answers a malformed frame as over the WebSocket
            else:
                self.duplicates += 1
        return out


class Outbound:
    """A channel's frames to its listener, out: each datagram repeats the previous frame of
    the same speaker when this listener was sent that one too (so a repeat never reaches
    anyone the core did not send it to) and it fits in `room` bytes."""

    __slots__ = ("last", "room")

    def __init__(self, room: int) -> None:
        self.room = room
        self.last: dict[bytes, tuple[int, bytes]] = {}  # slot (2 bytes) -> (seq, frame)

    def datagram(self, frame: bytes) -> bytes:
        if len(frame) < SEQ_OFFSET + 4:
            return pack(frame)
        slot = frame[SLOT_OFFSET:SLOT_OFFSET + 2]
        seq = int.from_bytes(frame[SEQ_OFFSET:SEQ_OFFSET + 4], "big")
        last = self.last.get(slot)
        if last is None and len(self.last) >= REPEAT_SPEAKERS:
            self.last.clear()
        self.last[slot] = (seq, frame)
        if (last is not None and last[0] == (seq - 1) & 0xFFFFFFFF
                and LENGTH.size + len(frame) + len(last[1]) <= self.room):
            return pack(frame, last[1])
        return pack(frame)
