"""Sender-key chains: the forward ratchet, message-key seeds, and the out-of-order window.

Each member owns one sending chain per epoch and holds a receiving chain for
every other member. A chain key only moves forward:

    seed(n)        = HMAC-SHA256(chain_key(n), 0x01)   # one message, used once
    chain_key(n+1) = HMAC-SHA256(chain_key(n), 0x02)

so whoever holds chain_key(n) can read message n and later, never earlier.
A receiver keeps the seeds of skipped indexes for the last WINDOW indexes
(late or reordered delivery) and refuses to jump more than MAX_FORWARD ahead
(a forged-looking index must not cost unbounded work). Chains are immutable
values: the session swaps in the advanced chain only after a message fully
verified, so a rejected message never moves the ratchet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hearth.spaces.e2ee import errors
from hearth.spaces.e2ee.encoding import U32_MAX, u32
from hearth.spaces.e2ee.errors import E2EEError
from hearth.spaces.e2ee.identity import Rng, draw
from hearth.spaces.e2ee.primitives import KEY_LEN, equal, hmac_sha256
from hearth.spaces.e2ee.voice import VOICE_KEY_MATERIAL_LEN, VoiceKey

WINDOW = 256
MAX_FORWARD = 1024

SEED_BYTE = b"\x01"
STEP_BYTE = b"\x02"

SENDER_KEY_KIND = 0x03  # kind | epoch | index | chain key | voice key | salt | next voice seq
SENDER_KEY_LEN = 1 + 4 + 4 + KEY_LEN + VOICE_KEY_MATERIAL_LEN + 4


def step(chain_key: bytes) -> tuple[bytes, bytes]:
    """One ratchet step: (message-key seed for this index, chain key for the next)."""
    return hmac_sha256(chain_key, SEED_BYTE), hmac_sha256(chain_key, STEP_BYTE)


def advance(chain_key: bytes, steps: int) -> bytes:
    for _ in range(steps):
        chain_key = hmac_sha256(chain_key, STEP_BYTE)
    return chain_key


@dataclass(frozen=True, slots=True)
class SenderKey:
    """What one directed envelope carries: a sender's chain key at an index for one epoch, its
    voice key for that epoch, and the seq its next voice frame will carry.

    Wire: kind 0x03 | epoch u32 | index u32 | chain key (32) | voice key (32) | salt (4)
          | voice seq u32                                                          81 bytes
    The receiver reads messages from `index` on and voice frames from `voice_seq` on: what
    was said before the key reached it stays closed, however often the server replays it.
    Earlier kinds (0x01, 0x02: no voice seq) are e2ee.unsupported.
    """

    epoch: int
    index: int
    chain_key: bytes = field(repr=False)
    voice: VoiceKey = field(repr=False)
    voice_seq: int = 0

    def encode(self) -> bytes:
        assert self.voice.epoch == self.epoch
        return (bytes([SENDER_KEY_KIND]) + u32(self.epoch) + u32(self.index) + self.chain_key
                + self.voice.key + self.voice.salt + u32(self.voice_seq))

    @classmethod
    def decode(cls, data: bytes) -> SenderKey:
        if not data:
            raise E2EEError(errors.MALFORMED, "empty sender key")
        if data[0] != SENDER_KEY_KIND:
            raise E2EEError(errors.UNSUPPORTED, "unknown directed payload kind")
        if len(data) != SENDER_KEY_LEN:
            raise E2EEError(errors.MALFORMED, "sender key has the wrong length")
        epoch = int.from_bytes(data[1:5], "big")
        at = 9 + KEY_LEN
        voice = VoiceKey(epoch, data[at : at + KEY_LEN], data[at + KEY_LEN : at + VOICE_KEY_MATERIAL_LEN])
        return cls(
            epoch=epoch,
            index=int.from_bytes(data[5:9], "big"),
            chain_key=data[9:at],
            voice=voice,
            voice_seq=int.from_bytes(data[-4:], "big"),
        )


@dataclass(frozen=True, slots=True)
class SendingChain:
    """Our own chain for one epoch; `index` is the index the next message will use."""

    epoch: int
    index: int
    chain_key: bytes = field(repr=False)

    @classmethod
    def start(cls, epoch: int, rng: Rng) -> SendingChain:
        """A fresh chain: 32 random bytes at index 0 (a rotation)."""
        return cls(epoch=epoch, index=0, chain_key=draw(rng, KEY_LEN))

    def next(self) -> tuple[int, bytes, SendingChain]:
        """(index, seed, advanced chain) for the next message."""
        if self.index > U32_MAX:
            raise E2EEError(errors.CHAIN_EXHAUSTED, "sender chain exhausted; wait for a new epoch")
        seed, chain_key = step(self.chain_key)
        return self.index, seed, SendingChain(self.epoch, self.index + 1, chain_key)

    def sender_key(self, voice: VoiceKey, voice_seq: int) -> SenderKey:
        """The current state, as sent to a member: they can read from here on, not before."""
        return SenderKey(self.epoch, self.index, self.chain_key, voice, voice_seq)


@dataclass(frozen=True, slots=True)
class ReceivingChain:
    """Another member's chain as we know it.

    `index` is the next index we have not derived; `chain_key` is the key at
    `index`; `floor` is the lowest index we could still decrypt (the index we
    received the chain at, or WINDOW behind `index`); `skipped` holds the
    seeds of indexes in [floor, index) that have not arrived yet.
    """

    epoch: int
    index: int
    chain_key: bytes = field(repr=False)
    floor: int
    skipped: Mapping[int, bytes] = field(repr=False)

    @classmethod
    def from_sender_key(cls, key: SenderKey) -> ReceivingChain:
        return cls(epoch=key.epoch, index=key.index, chain_key=key.chain_key, floor=key.index, skipped={})

    def take(self, index: int) -> tuple[bytes, ReceivingChain]:
        """The seed for `index` and the chain with that seed consumed; raises, never mutates."""
        if index < self.floor:
            raise E2EEError(errors.OUT_OF_WINDOW, "message index is behind the window")
        if index < self.index:
            seed = self.skipped.get(index)
            if seed is None:
                raise E2EEError(errors.REPLAY, "message index was already decrypted")
            rest = {i: s for i, s in self.skipped.items() if i != index}
            return seed, ReceivingChain(self.epoch, self.index, self.chain_key, self.floor, rest)
        if index - self.index > MAX_FORWARD:
            raise E2EEError(errors.OUT_OF_WINDOW, "message index is too far ahead")
        new_index = index + 1
        floor = max(self.floor, new_index - WINDOW)
        skipped = {i: s for i, s in self.skipped.items() if i >= floor}
        chain_key = self.chain_key
        for i in range(self.index, index):
            seed, chain_key = step(chain_key)
            if i >= floor:
                skipped[i] = seed
        seed, chain_key = step(chain_key)
        return seed, ReceivingChain(self.epoch, new_index, chain_key, floor, skipped)

    def matches(self, key: SenderKey) -> bool:
        """Whether `key` is a state of this same chain (a harmless duplicate delivery)."""
        if key.epoch != self.epoch:
            return False
        gap = key.index - self.index
        if abs(gap) > MAX_FORWARD:
            return False
        if gap >= 0:
            return equal(advance(self.chain_key, gap), key.chain_key)
        return equal(advance(key.chain_key, -gap), self.chain_key)
