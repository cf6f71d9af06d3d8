"""The four primitives, each behind one function: HMAC, HKDF, AES-256-GCM, constant-time compare.

Kept in one place so the browser module can mirror them one to one (WebCrypto
HMAC, HKDF and AES-GCM), and so an AES-GCM failure always becomes the same
E2EEError code.
"""

from __future__ import annotations

import hmac
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hearth.spaces.e2ee import errors
from hearth.spaces.e2ee.errors import E2EEError

KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, sha256).digest()


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-SHA256; the salt is always given explicitly (WebCrypto requires it)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def key_and_nonce(okm: bytes) -> tuple[bytes, bytes]:
    """Split 44 bytes of HKDF output into an AES-256 key and a 96-bit nonce."""
    assert len(okm) == KEY_LEN + NONCE_LEN
    return okm[:KEY_LEN], okm[KEY_LEN:]


def aes_gcm(key: bytes) -> AESGCM:
    """A reusable AES-256-GCM instance, for a key that seals many plaintexts (voice, 50/s)."""
    return AESGCM(key)


def seal(key: bytes | AESGCM, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM; returns ciphertext || 16-byte tag, as WebCrypto does."""
    cipher = key if isinstance(key, AESGCM) else AESGCM(key)
    return cipher.encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes | AESGCM, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    cipher = key if isinstance(key, AESGCM) else AESGCM(key)
    try:
        return cipher.decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise E2EEError(errors.TAMPERED, "authenticated decryption failed") from None


def equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
