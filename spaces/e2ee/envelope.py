"""Pairwise sealed envelopes: how a sender key reaches exactly one member.

A fresh ephemeral X25519 key per envelope meets the recipient's identity key;
HKDF-SHA256 turns the shared secret into an AES-256-GCM key and nonce; the
sender's identity Ed25519 key signs the result. The server relays the body as
an opaque directed envelope and can neither read it, forge it, nor redirect it
to another member (the recipient's id and key are inside the signature).

Layout (bytes):

    0      1   version 0x01
    1      1   type 0x02 (sealed envelope)
    2     32   ephemeral X25519 public key
    34     n   AES-256-GCM ciphertext || 16-byte tag
    34+n  64   Ed25519 signature by the sender's identity key
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hearth.spaces.e2ee import errors
from hearth.spaces.e2ee.encoding import WIRE_VERSION, fields, utf8
from hearth.spaces.e2ee.errors import E2EEError
from hearth.spaces.e2ee.identity import (
    PRIVATE_KEY_LEN,
    PUBLIC_KEY_LEN,
    SIGNATURE_LEN,
    Identity,
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
HEADER_LEN = 2 + PUBLIC_KEY_LEN
MIN_LEN = HEADER_LEN + TAG_LEN + SIGNATURE_LEN

KEY_LABEL = "hearth-e2ee/v1/envelope-key"
AAD_LABEL = "hearth-e2ee/v1/envelope-aad"
SIG_LABEL = "hearth-e2ee/v1/envelope-sig"


def _context(room_id: str, sender_id: str, recipient_id: str) -> tuple[bytes, bytes, bytes]:
    return utf8(room_id), utf8(sender_id), utf8(recipient_id)


def _key(shared: bytes, ephemeral: bytes, recipient_dh: bytes, ctx: tuple[bytes, ...]) -> tuple[bytes, bytes]:
    okm = hkdf_sha256(
        shared,
        salt=ephemeral + recipient_dh,
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
    recipient_id: str,
    room_id: str,
    rng: Rng,
) -> bytes:
    """Encrypt `payload` to one member; draws 32 bytes from `rng` for the ephemeral key."""
    ctx = _context(room_id, sender_id, recipient_id)
    ephemeral_private = X25519PrivateKey.from_private_bytes(draw(rng, PRIVATE_KEY_LEN))
    ephemeral = ephemeral_private.public_key().public_bytes_raw()
    header = bytes([WIRE_VERSION, ENVELOPE_TYPE]) + ephemeral
    key, nonce = _key(exchange(ephemeral_private, recipient.dh), ephemeral, recipient.dh, ctx)
    ciphertext = seal(key, nonce, payload, fields(AAD_LABEL, header, *ctx))
    signature = sender.sign(fields(SIG_LABEL, header, *ctx, recipient.dh, ciphertext))
    return header + ciphertext + signature


def open_envelope(
    body: bytes,
    *,
    recipient: Identity,
    recipient_id: str,
    sender: PublicIdentity,
    sender_id: str,
    room_id: str,
) -> bytes:
    """Verify the sender's signature, then decrypt; raises E2EEError, never returns junk."""
    if len(body) < 2:
        raise E2EEError(errors.MALFORMED, "envelope too short")
    if body[0] != WIRE_VERSION:
        raise E2EEError(errors.UNSUPPORTED, "unknown envelope version")
    if body[1] != ENVELOPE_TYPE:
        raise E2EEError(errors.MALFORMED, "not a sealed envelope")
    if len(body) < MIN_LEN:
        raise E2EEError(errors.MALFORMED, "envelope too short")
    header, ciphertext, signature = (
        body[:HEADER_LEN],
        body[HEADER_LEN:-SIGNATURE_LEN],
        body[-SIGNATURE_LEN:],
    )
    ctx = _context(room_id, sender_id, recipient_id)
    sender.verify(signature, fields(SIG_LABEL, header, *ctx, recipient.public.dh, ciphertext))
    ephemeral = header[2:]
    key, nonce = _key(recipient.exchange(ephemeral), ephemeral, recipient.public.dh, ctx)
    return open_sealed(key, nonce, ciphertext, fields(AAD_LABEL, header, *ctx))
