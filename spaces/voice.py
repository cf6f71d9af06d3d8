"""Which listeners hear a voice frame: the relay's decision, without sockets or clocks.

Rules, in one place (docs/protocol.md, "Voice"):
- The server reads only the 10-byte clear header; the Opus payload is
  ciphertext it never opens.
- A muted speaker (muted by a facilitator) reaches nobody: the server drops
  the frame, whatever the client's UI shows.
- While the talking stick is on, only its holder and facilitators are heard,
  by everyone in their zone, at any distance.
- Otherwise a listener hears a speaker only within `hearing_range` metres and
  in the same zone (quiet corners are isolated from the room and each other),
  and only if the speaker is among the listener's `max_speakers` loudest
  audible speakers right now.
- A speaker may send `frames_per_second` frames, with a small burst; the
  excess is dropped.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from hearth.spaces.layout import Layout
from hearth.spaces.protocol import ProtocolError
from hearth.spaces.ratelimit import TokenBucket

if TYPE_CHECKING:
    from hearth.spaces.room import Member

HEADER = struct.Struct("!BBBBHI")  # version, flags, level, epoch_lo, slot, seq
HEADER_SIZE = HEADER.size  # 10
VERSION = 1
FLAG_SPEECH = 0x01
FLAG_END = 0x02
SILENCE = 127  # RFC 6464: 0 is the loudest, 127 is silence
ACTIVE_FOR = 0.3  # seconds a speaker counts as talking after its last frame
LEVEL_SMOOTHING = 0.3  # weight of the newest level in the running average


class VoiceHeader(NamedTuple):
    """Read once per frame: a tuple is built far faster than a frozen dataclass."""
    flags: int
    level: int
    epoch_lo: int
    slot: int
    seq: int


def parse_header(frame: bytes, max_bytes: int) -> VoiceHeader:
    """The clear header of a client's voice frame, or voice_invalid."""
    if len(frame) < HEADER_SIZE + 16 or len(frame) > max_bytes:
        raise ProtocolError("voice_invalid", f"A voice frame is {HEADER_SIZE + 16} to "
                                             f"{max_bytes} bytes; this one is {len(frame)}.")
    version, flags, level, epoch_lo, slot, seq = HEADER.unpack_from(frame)
    if version != VERSION or flags & ~(FLAG_SPEECH | FLAG_END) or level > SILENCE:
        raise ProtocolError("voice_invalid", "The voice frame header is not hearth.v1 voice.")
    return VoiceHeader(flags, level, epoch_lo, slot, seq)


def build_frame(payload: bytes, *, seq: int, level: int, flags: int = FLAG_SPEECH,
                epoch_lo: int = 0) -> bytes:
    """A frame as a client sends it (slot 0). The payload is whatever the sender
    encrypted (spaces.e2ee for real audio); the relay never looks inside."""
    return HEADER.pack(VERSION, flags, level, epoch_lo, 0, seq & 0xFFFFFFFF) + payload


def stamp_slot(frame: bytes, slot: int) -> bytes:
    """The frame as listeners get it: the sender's slot written by the server."""
    return frame[:4] + slot.to_bytes(2, "big") + frame[6:]


@dataclass(frozen=True, kw_only=True)
class VoiceRules:
    hearing_range: float = 7.0
    max_speakers: int = 4
    frames_per_second: float = 50.0
    burst: int = 10


@dataclass(slots=True)
class _Talking:
    level: float
    last: float


@dataclass
class VoiceRoute:
    """One room's voice state: who is talking how loudly, and each speaker's budget."""

    rules: VoiceRules
    layout: Layout
    _talking: dict[str, _Talking] = field(default_factory=dict)
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    dropped_muted: int = 0
    dropped_rate: int = 0
    dropped_stick: int = 0

    def forget(self, member: str) -> None:
        self._talking.pop(member, None)
        self._buckets.pop(member, None)

    def listeners(self, speaker: Member, header: VoiceHeader, members: Mapping[str, Member],
                  stick_on: bool, holder: str | None, now: float) -> tuple[str, ...]:
        """The ids of the members who receive this frame (possibly none)."""
        if speaker.muted:
            self.dropped_muted += 1
            return ()
        bucket = self._buckets.get(speaker.id)
        if bucket is None:
            bucket = self._buckets[speaker.id] = TokenBucket(
                self.rules.frames_per_second, self.rules.burst, now)
        if not bucket.allow(now):
            self.dropped_rate += 1
            return ()
        if stick_on and speaker.id != holder and speaker.role == "participant":
            self.dropped_stick += 1
            return ()
        self._note(speaker.id, header.level, now)
        zone_of = self.layout.zone_of
        here = speaker.pos
        zone = zone_of(here)
        if stick_on and (speaker.id == holder or speaker.role != "participant"):
            # the holder (and facilitators, who run the circle): the whole zone hears
            return tuple(m.id for m in members.values()
                         if m.id != speaker.id and m.away_since is None
                         and zone_of(m.pos) == zone)
        rng = self.rules.hearing_range
        out = []
        # With no more talkers than a listener may hear, nobody is outranked: the
        # per-listener ranking (the relay's costliest step) cannot say no.
        ranked = self._talkers(members, now) > self.rules.max_speakers
        talking = self._audible(members, now) if ranked else []
        zoned = bool(self.layout.corners)  # without corners every point is the main zone
        hx, hy = here.x, here.y
        hypot = math.hypot
        sid = speaker.id
        for m in members.values():
            if m.away_since is not None or m.id == sid:
                continue
            pos = m.pos
            if hypot(hx - pos.x, hy - pos.y) > rng or (zoned and zone_of(pos) != zone):
                continue
            if not ranked or self._among_loudest(speaker.id, m, talking, zone):
                out.append(m.id)
        return tuple(out)

    def _talkers(self, members: Mapping[str, Member], now: float) -> int:
        """How many members `_audible` would list (without listing or sorting them)."""
        n = 0
        for sid, t in self._talking.items():
            if now - t.last <= ACTIVE_FOR and sid in members:
                n += 1
        return n

    def _note(self, speaker: str, level: int, now: float) -> None:
        t = self._talking.get(speaker)
        if t is None or now - t.last > ACTIVE_FOR:
            self._talking[speaker] = _Talking(float(level), now)
        else:
            t.level += LEVEL_SMOOTHING * (level - t.level)
            t.last = now

    def _audible(self, members: Mapping[str, Member], now: float) -> list[tuple[float, Member]]:
        """Members talking right now, loudest first (lowest -dBov)."""
        found = [(t.level, members[sid]) for sid, t in self._talking.items()
                 if now - t.last <= ACTIVE_FOR and sid in members]
        found.sort(key=lambda pair: (pair[0], pair[1].id))
        return found

    def _among_loudest(self, speaker: str, listener: Member,
                       talking: Iterable[tuple[float, Member]], zone: str) -> bool:
        rank = 0
        for _, other in talking:
            if other.id == listener.id:
                continue
            if other.id == speaker:
                return True
            if (listener.pos.distance(other.pos) <= self.rules.hearing_range
                    and self.layout.zone_of(other.pos) == zone):
                rank += 1
                if rank >= self.rules.max_speakers:
                    return False
        return True
