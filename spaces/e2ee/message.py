"""Room messages: one chat text sealed under a message key, signed by its sender.

Layout of a room envelope body (bytes):

    0      1   version 0x01
    1      1   type 0x01 (room message)
    2      4   epoch, u32 big-endian
    6      4   chain index, u32 big-endian
    10     n   AES-256-GCM ciphertext || 16-byte tag
    10+n  64   Ed25519 signature by the sender's identity key

The AAD binds the 10-byte header (so epoch and index), the room, the sender's
member id and the franking commitment; the signature covers the same plus the
ciphertext, so the server can neither forge, splice between senders or rooms,
nor swap the commitment it tags.

Inner plaintext (padded so sizes leak only in steps of 64 bytes):

    0      1   content kind: 0x01 text (CONTENT_KINDS lists what this version reads)
    1     32   franking key
    33     4   text length L, u32 big-endian
    37     L   text, UTF-8
    37+L   p   zero bytes, so that 37 + L + p is the next multiple of 64
"""

from __future__ import annotations

from dataclasses import dataclass

from hearth.spaces.e2ee import errors
from hearth.spaces.e2ee.encoding import WIRE_VERSION, fields, u32, utf8
from hearth.spaces.e2ee.errors import E2EEError
from hearth.spaces.e2ee.franking import FRANKING_KEY_LEN, commitment_matches
from hearth.spaces.e2ee.identity import SIGNATURE_LEN, Identity, PublicIdentity
from hearth.spaces.e2ee.primitives import (
    KEY_LEN,
    NONCE_LEN,
    TAG_LEN,
    hkdf_sha256,
    key_and_nonce,
    open_sealed,
    seal,
)

ROOM_MESSAGE_TYPE = 0x01
HEADER_LEN = 10
TEXT_KIND = 0x01
# Content kinds this version opens; a new kind (a reaction, say) is one more entry here and in
# e2ee.js, UTF-8 text inside like a message. Older clients refuse it with e2ee.unsupported.
CONTENT_KINDS: frozenset[int] = frozenset({TEXT_KIND})
INNER_HEADER_LEN = 1 + FRANKING_KEY_LEN + 4
PAD_BLOCK = 64

KEY_LABEL = "hearth-e2ee/v1/message-key"
AAD_LABEL = "hearth-e2ee/v1/message-aad"
SIG_LABEL = "hearth-e2ee/v1/message-sig"
ZERO_SALT = bytes(32)


def message_key(seed: bytes) -> tuple[bytes, bytes]:
    """AES-256 key and nonce for one chain index; each key encrypts exactly one message."""
    okm = hkdf_sha256(seed, salt=ZERO_SALT, info=fields(KEY_LABEL), length=KEY_LEN + NONCE_LEN)
    return key_and_nonce(okm)


def padded_length(n: int) -> int:
    return -(-n // PAD_BLOCK) * PAD_BLOCK


def encode_inner(text: str, franking_key: bytes, kind: int = TEXT_KIND) -> bytes:
    if kind not in CONTENT_KINDS:
        raise E2EEError(errors.UNSUPPORTED, "unknown message kind")
    data = utf8(text)
    inner = bytes([kind]) + franking_key + u32(len(data)) + data
    return inner + bytes(padded_length(len(inner)) - len(inner))


def decode_inner(inner: bytes) -> tuple[str, bytes, int]:
    """(text, franking key, kind); strict about padding so both clients accept the same bytes."""
    if len(inner) < INNER_HEADER_LEN:
        raise E2EEError(errors.MALFORMED, "inner plaintext too short")
    if inner[0] not in CONTENT_KINDS:
        raise E2EEError(errors.UNSUPPORTED, "unknown message kind")
    franking_key = inner[1 : 1 + FRANKING_KEY_LEN]
    length = int.from_bytes(inner[33:37], "big")
    end = INNER_HEADER_LEN + length
    if end > len(inner) or len(inner) != padded_length(end) or any(inner[end:]):
        raise E2EEError(errors.MALFORMED, "inner plaintext length or padding is wrong")
    try:
        text = inner[INNER_HEADER_LEN:end].decode("utf-8")
    except UnicodeDecodeError:
        raise E2EEError(errors.MALFORMED, "text is not UTF-8") from None
    return text, franking_key, inner[0]


@dataclass(frozen=True, slots=True)
class RoomMessage:
    """A parsed room envelope body; nothing in it is trusted until `verify` passed."""

    epoch: int
    index: int
    ciphertext: bytes
    signature: bytes

    @property
    def header(self) -> bytes:
        return bytes([WIRE_VERSION, ROOM_MESSAGE_TYPE]) + u32(self.epoch) + u32(self.index)

    def encode(self) -> bytes:
        return self.header + self.ciphertext + self.signature

    @classmethod
    def decode(cls, body: bytes) -> RoomMessage:
        if len(body) < 2:
            raise E2EEError(errors.MALFORMED, "room message too short")
        if body[0] != WIRE_VERSION:
            raise E2EEError(errors.UNSUPPORTED, "unknown room message version")
        if body[1] != ROOM_MESSAGE_TYPE:
            raise E2EEError(errors.MALFORMED, "not a room message")
        if len(body) < HEADER_LEN + TAG_LEN + SIGNATURE_LEN:
            raise E2EEError(errors.MALFORMED, "room message too short")
        return cls(
            epoch=int.from_bytes(body[2:6], "big"),
            index=int.from_bytes(body[6:10], "big"),
            ciphertext=body[HEADER_LEN:-SIGNATURE_LEN],
            signature=body[-SIGNATURE_LEN:],
        )

    def _context(self, room_id: str, sender_id: str, commitment: bytes) -> tuple[bytes, ...]:
        return self.header, utf8(room_id), utf8(sender_id), commitment

    def verify(self, signer: PublicIdentity, *, room_id: str, sender_id: str, commitment: bytes) -> None:
        """Check the sender's signature; done before any key is derived or state touched."""
        ctx = self._context(room_id, sender_id, commitment)
        signer.verify(self.signature, fields(SIG_LABEL, *ctx, self.ciphertext))

    def open(self, seed: bytes, *, room_id: str, sender_id: str,
             commitment: bytes) -> tuple[str, bytes, int]:
        """Decrypt, then check the franking commitment; returns (text, franking key, kind)."""
        key, nonce = message_key(seed)
        aad = fields(AAD_LABEL, *self._context(room_id, sender_id, commitment))
        text, franking_key, kind = decode_inner(open_sealed(key, nonce, self.ciphertext, aad))
        if not commitment_matches(franking_key, text, commitment):
            raise E2EEError(errors.BAD_COMMITMENT, "the text does not match its commitment")
        return text, franking_key, kind


def seal_room_message(
    *,
    sender: Identity,
    room_id: str,
    sender_id: str,
    epoch: int,
    index: int,
    seed: bytes,
    text: str,
    franking_key: bytes,
    commitment: bytes,
    kind: int = TEXT_KIND,
) -> RoomMessage:
    """Encrypt and sign one text at (epoch, index) under the seed of that chain index."""
    unsigned = RoomMessage(epoch, index, b"", b"")
    ctx = unsigned._context(room_id, sender_id, commitment)
    key, nonce = message_key(seed)
    ciphertext = seal(key, nonce, encode_inner(text, franking_key, kind), fields(AAD_LABEL, *ctx))
    signature = sender.sign(fields(SIG_LABEL, *ctx, ciphertext))
    return RoomMessage(epoch, index, ciphertext, signature)
