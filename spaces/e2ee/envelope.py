"""Pairwise sealed envelopes: how a sender key reaches exactly one member, for one epoch.

A fresh ephemeral X25519 key per envelope meets both the recipient's identity
key and its signed key for the epoch; HKDF-SHA256 turns the two shared secrets
into an AES-256-GCM key and nonce; the sender's identity Ed25519 key signs the
result. The server relays the body as an opaque directed envelope and can
neither read it, forge it, nor redirect it to another member (the recipient's
id and keys are inside the signature). Whoever copies a member's keys reads
only the epochs whose epoch keys it copied (docs/e2ee.md, "Post-compromise").

Layout (bytes):

    0      1   version 0x01
    1      1   type 0x02 (sealed envelope)
    2      4   epoch, u32 big-endian: whose epoch key, and the sender key's epoch
    6     32   ephemeral X25519 public key
    38     n   AES-256-GCM ciphertext || 16-byte tag
    38+n  64   Ed25519 signature by the sender's identity key
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hearth.spaces.e2ee import errors
from hearth.spaces.e2ee.encoding import WIRE_VERSION, fields, u32, utf8
from hearth.spaces.e2ee.errors import E2EEError
from hearth.spaces.e2ee.identity import (
    PRIVATE_KEY_LEN,
    PUBLIC_KEY_LEN,
    SIGNATURE_LEN,
    EpochKey,
    Identity,
    OwnEpochKey,
    PublicIdentity,
    Rng,
    draw,
    exchange,
)
from hearth.spaces.e2ee.primitives import (
    KEY_LEN,
    NONCE_LEN,
    TAG_LEN,
    hkdf_sha256,
    key_and_nonce,
    open_sealed,
    seal,
)

ENVELOPE_TYPE = 0x02
HEADER_LEN = 2 + 4 + PUBLIC_KEY_LEN
MIN_LEN = HEADER_LEN + TAG_LEN + SIGNATURE_LEN

KEY_LABEL = "hearth-e2ee/v1/envelope-key"
AAD_LABEL = "hearth-e2ee/v1/envelope-aad"
SIG_LABEL = "hearth-e2ee/v1/envelope-sig"


def _context(room_id: str, sender_id: str, recipient_id: str) -> tuple[bytes, bytes, bytes]:
    return utf8(room_id), utf8(sender_id), utf8(recipient_id)


def _key(shared: bytes, ephemeral: bytes, recipient_dh: bytes, recipient_ek: bytes,
         ctx: tuple[bytes, ...]) -> tuple[bytes, bytes]:
    okm = hkdf_sha256(
        shared,
        salt=ephemeral + recipient_dh + recipient_ek,
        info=fields(KEY_LABEL, *ctx),
        length=KEY_LEN + NONCE_LEN,
    )
    return key_and_nonce(okm)


def seal_envelope(
    payload: bytes,
    *,
    sender: Identity,
    sender_id: str,
    recipient: PublicIdentity,
    recipient_ek: EpochKey,
    recipient_id: str,
    room_id: str,
    rng: Rng,
) -> bytes:
    """Encrypt `payload` to one member for the epoch of `recipient_ek`; draws 32 bytes from
    `rng` for the ephemeral key."""
    ctx = _context(room_id, sender_id, recipient_id)
    ephemeral_private = X25519PrivateKey.from_private_bytes(draw(rng, PRIVATE_KEY_LEN))
    ephemeral = ephemeral_private.public_key().public_bytes_raw()
    header = bytes([WIRE_VERSION, ENVELOPE_TYPE]) + u32(recipient_ek.epoch) + ephemeral
    shared = exchange(ephemeral_private, recipient.dh) + exchange(ephemeral_private, recipient_ek.dh)
    key, nonce = _key(shared, ephemeral, recipient.dh, recipient_ek.dh, ctx)
    ciphertext = seal(key, nonce, payload, fields(AAD_LABEL, header, *ctx))
    signature = sender.sign(fields(SIG_LABEL, header, *ctx, recipient.dh, recipient_ek.dh,
                                   ciphertext))
    return header + ciphertext + signature


def envelope_epoch(body: bytes) -> int:
    """The epoch in an envelope's header (checks only the version, type and length)."""
    if len(body) < 2:
        raise E2EEError(errors.MALFORMED, "envelope too short")
    if body[0] != WIRE_VERSION:
        raise E2EEError(errors.UNSUPPORTED, "unknown envelope version")
    if body[1] != ENVELOPE_TYPE:
        raise E2EEError(errors.MALFORMED, "not a sealed envelope")
    if len(body) < MIN_LEN:
        raise E2EEError(errors.MALFORMED, "envelope too short")
    return int.from_bytes(body[2:6], "big")


def open_envelope(
    body: bytes,
    *,
    recipient: Identity,
    recipient_id: str,
    epoch_key: Callable[[int], OwnEpochKey],
    sender: PublicIdentity,
    sender_id: str,
    room_id: str,
) -> tuple[int, bytes]:
    """(epoch, payload): verify the sender's signature, then decrypt with our key for the
    header's epoch (`epoch_key(epoch)` raises if we hold none); raises E2EEError, never
    returns junk."""
    epoch = envelope_epoch(body)
    own = epoch_key(epoch)
    header, ciphertext, signature = (
        body[:HEADER_LEN],
        body[HEADER_LEN:-SIGNATURE_LEN],
        body[-SIGNATURE_LEN:],
    )
    ctx = _context(room_id, sender_id, recipient_id)
    sender.verify(signature, fields(SIG_LABEL, header, *ctx, recipient.public.dh, own.public.dh,
                                    ciphertext))
    ephemeral = header[6:]
    shared = recipient.exchange(ephemeral) + own.exchange(ephemeral)
    key, nonce = _key(shared, ephemeral, recipient.public.dh, own.public.dh, ctx)
    return epoch, open_sealed(key, nonce, ciphertext, fields(AAD_LABEL, header, *ctx))
