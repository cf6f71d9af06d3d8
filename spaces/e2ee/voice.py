"""Voice frames: one 20 ms Opus frame sealed under the sender's voice key for the epoch.

Frame (one binary WebSocket message, network byte order):

    0    1   version 0x01
    1    1   flags: bit 0 speech (voice activity), bit 1 end of talkspurt; other bits 0
    2    1   audio level, RFC 6464 -dBov: 0 loudest .. 127 silence; bit 7 is 0
    3    1   the sender's epoch, low 8 bits (which voice key)
    4    2   sender slot, u16: the sender writes 0, the server stamps the real slot
    6    4   sequence number, u32, per sender, +1 per frame
    10   n   AES-256-GCM ciphertext || 16-byte tag of the Opus frame

Key, nonce, AAD:

    voice_key || salt = HKDF-SHA256(ikm=chain_key(0) of (sender, epoch), salt=32 zero bytes,
                          info=fields(KEY_LABEL, utf8(room), utf8(sender), u64(epoch)), L=36)
    nonce(seq)        = salt (4 bytes) || u64(seq)
    AAD               = fields(AAD_LABEL, frame[0:4], frame[6:10], utf8(room), utf8(sender))

The sender derives the key from its epoch-initial chain key and ships it in the
sender-key payload (chain.SenderKey), with the seq of its next frame, because a
newcomer receives the chain at its current index and could not derive it. The slot is left out
of the AAD: the server rewrites it. The sender's seq only rises for the whole
session (GroupSession refuses a repeat), so no nonce repeats. Receivers refuse
replays with a sliding window over seq (as SRTP does), and refuse every seq
below the one the sender key announced, so the server cannot play back what
someone said earlier in the epoch.

Every member holds every sender's voice key: this is group authentication,
not per-sender (no signature at 50 frames/s). See docs/e2ee.md, "Voice".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hearth.spaces.e2ee import errors
from hearth.spaces.e2ee.encoding import U32_MAX, fields, u64, utf8
from hearth.spaces.e2ee.errors import E2EEError
from hearth.spaces.e2ee.primitives import KEY_LEN, TAG_LEN, aes_gcm, equal, hkdf_sha256, open_sealed, seal

VOICE_VERSION = 0x01
HEADER_LEN = 10
MIN_FRAME_LEN = HEADER_LEN + TAG_LEN
FLAG_SPEECH = 0x01
FLAG_END = 0x02
FLAGS_KNOWN = FLAG_SPEECH | FLAG_END
LEVEL_SILENCE = 127
SALT_LEN = 4
VOICE_KEY_MATERIAL_LEN = KEY_LEN + SALT_LEN
# How far behind the newest seq a frame may arrive (256 frames = 5.12 s, far beyond any
# jitter buffer); older frames and repeats are refused.
VOICE_WINDOW = 256

KEY_LABEL = "hearth-e2ee/v1/voice-key"
AAD_LABEL = "hearth-e2ee/v1/voice-aad"
ZERO_SALT = bytes(32)

_HEADER = struct.Struct("!BBBBHI")


class VoiceHeader(NamedTuple):
    """The clear header, as read from the wire; nothing in it is authenticated yet."""

    version: int
    flags: int
    level: int
    epoch_lo: int
    slot: int
    seq: int


def voice_header(frame: bytes) -> VoiceHeader:
    """Parse the 10-byte clear header, no crypto; only the length is checked (e2ee.malformed).

    The caller judges the values; `decrypt_voice` applies the strict rules
    (version, reserved flag bits, level range).
    """
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise E2EEError(errors.MALFORMED, "voice frame must be bytes")
    if len(frame) < MIN_FRAME_LEN:
        raise E2EEError(errors.MALFORMED, "voice frame too short")
    return VoiceHeader(*_HEADER.unpack_from(frame))


def checked_header(frame: bytes) -> VoiceHeader:
    """The header, strictly: what both clients refuse before any key is looked up."""
    header = voice_header(frame)
    if header.version != VOICE_VERSION:
        raise E2EEError(errors.UNSUPPORTED, "unknown voice frame version")
    if header.flags & ~FLAGS_KNOWN or header.level > LEVEL_SILENCE:
        raise E2EEError(errors.MALFORMED, "reserved voice header bits are set")
    return header


@dataclass(frozen=True, slots=True, eq=False)
class VoiceKey:
    """One sender's voice key for one epoch: the AES-256 key and the 4-byte nonce salt."""

    epoch: int
    key: bytes = field(repr=False)
    salt: bytes = field(repr=False)
    _cipher: AESGCM = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != KEY_LEN or len(self.salt) != SALT_LEN:
            raise E2EEError(errors.MALFORMED, "voice key has the wrong length")
        object.__setattr__(self, "_cipher", aes_gcm(self.key))  # built once, used 50 times a second

    @classmethod
    def derive(cls, initial_chain_key: bytes, *, room_id: str, sender_id: str, epoch: int) -> VoiceKey:
        """The sender's derivation from its chain key at index 0; receivers are sent the result."""
        okm = hkdf_sha256(
            initial_chain_key,
            salt=ZERO_SALT,
            info=fields(KEY_LABEL, utf8(room_id), utf8(sender_id), u64(epoch)),
            length=VOICE_KEY_MATERIAL_LEN,
        )
        return cls(epoch, okm[:KEY_LEN], okm[KEY_LEN:])

    def nonce(self, seq: int) -> bytes:
        """salt || u64(seq): unique per seq, and the sender never reuses a seq under this key."""
        return self.salt + u64(seq)

    def matches(self, other: VoiceKey) -> bool:
        """Same epoch and same key bytes (constant time); used for duplicate sender keys."""
        return self.epoch == other.epoch and equal(self.key + self.salt, other.key + other.salt)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VoiceKey) and self.matches(other)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking secrets are not dict keys


def voice_aad(header: bytes, room_id: str, sender_id: str) -> bytes:
    """Header bytes 0-3 and 6-9 (the slot, 4-5, is the server's to write), room, sender."""
    return fields(AAD_LABEL, header[0:4], header[6:10], utf8(room_id), utf8(sender_id))


@dataclass(frozen=True, slots=True)
class VoiceFrame:
    """A decrypted, authenticated voice frame; `epoch` is the full epoch of the key used."""

    opus: bytes = field(repr=False)
    seq: int
    level: int
    flags: int
    epoch: int

    @property
    def speech(self) -> bool:
        return bool(self.flags & FLAG_SPEECH)

    @property
    def end(self) -> bool:
        return bool(self.flags & FLAG_END)


def check_seq(seq: int) -> int:
    """A u32 seq, or e2ee.malformed (bool is not an int here)."""
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= U32_MAX:
        raise E2EEError(errors.MALFORMED, "voice seq out of range")
    return seq


def voice_flags(*, speech: bool, end: bool) -> int:
    if not isinstance(speech, bool) or not isinstance(end, bool):
        raise E2EEError(errors.MALFORMED, "speech and end are booleans")
    return (FLAG_SPEECH if speech else 0) | (FLAG_END if end else 0)


def seal_voice_frame(
    key: VoiceKey, opus: bytes, *, room_id: str, sender_id: str, seq: int, level: int, flags: int
) -> bytes:
    """The whole frame with slot 0; the caller guarantees `seq` is fresh for this key."""
    if not isinstance(opus, bytes | bytearray | memoryview):
        raise E2EEError(errors.MALFORMED, "opus frame must be bytes")
    check_seq(seq)
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= LEVEL_SILENCE:
        raise E2EEError(errors.MALFORMED, "audio level must be 0..127")
    if flags & ~FLAGS_KNOWN:
        raise E2EEError(errors.MALFORMED, "unknown voice flags")
    header = _HEADER.pack(VOICE_VERSION, flags, level, key.epoch & 0xFF, 0, seq)
    return header + seal(key._cipher, key.nonce(seq), bytes(opus), voice_aad(header, room_id, sender_id))


def open_voice_frame(key: VoiceKey, frame: bytes, *, room_id: str, sender_id: str) -> VoiceFrame:
    """Check the header, then AES-GCM (e2ee.tampered); no replay state here, see VoiceReceiver."""
    header = checked_header(frame)
    frame = bytes(frame)
    opus = open_sealed(
        key._cipher, key.nonce(header.seq), frame[HEADER_LEN:], voice_aad(frame, room_id, sender_id)
    )
    return VoiceFrame(opus, header.seq, header.level, header.flags, key.epoch)


@dataclass(slots=True)
class VoiceReceiver:
    """A sender's voice key as a receiver holds it, and which recent seqs already opened.

    `floor` is the seq the sender key said came next when it arrived: anything
    below it was said before we held the key and is e2ee.out_of_window, so a
    key that arrives late (or after a reload) never opens what the server kept.
    `top` is the highest seq opened (-1: none yet); bit i of `seen` is set when
    seq `top - i` opened. A frame VOICE_WINDOW or more behind `top` is
    e2ee.out_of_window, a repeat is e2ee.replay. `mark` only after AES-GCM passed.
    """

    key: VoiceKey
    floor: int = 0
    top: int = -1
    seen: int = 0

    def check(self, seq: int) -> None:
        if seq < self.floor:
            raise E2EEError(errors.OUT_OF_WINDOW, "voice frame from before the key arrived")
        if seq > self.top:
            return
        behind = self.top - seq
        if behind >= VOICE_WINDOW:
            raise E2EEError(errors.OUT_OF_WINDOW, "voice frame is behind the window")
        if (self.seen >> behind) & 1:
            raise E2EEError(errors.REPLAY, "voice frame was already played")

    def mark(self, seq: int) -> None:
        if seq > self.top:
            shift = seq - self.top
            self.seen = ((self.seen << shift) | 1) & ((1 << VOICE_WINDOW) - 1) if shift < VOICE_WINDOW else 1
            self.top = seq
        else:
            self.seen |= 1 << (self.top - seq)
