"""Per-session identities: an X25519 key for envelopes, an Ed25519 key for signatures.

An identity lives as long as one room session; nothing ties it to a person.
Its public half goes on the roster as {"dh": b64, "sig": b64}. Members see each
other's keys as a short fingerprint, and the whole roster as a safety code
that facilitators can compare aloud to spot a ghost member or a swapped key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from hearth.spaces.e2ee import errors
from hearth.spaces.e2ee.encoding import b64decode, b64encode, fields, u64, utf8
from hearth.spaces.e2ee.errors import E2EEError

Rng = Callable[[int], bytes]

PUBLIC_KEY_LEN = 32
PRIVATE_KEY_LEN = 32
SIGNATURE_LEN = 64

FINGERPRINT_LABEL = "hearth-e2ee/v1/fingerprint"
SAFETY_CODE_LABEL = "hearth-e2ee/v1/safety-code"


def draw(rng: Rng, n: int) -> bytes:
    """Take exactly n bytes from the injected rng; a short read would weaken keys silently."""
    data = rng(n)
    if not isinstance(data, bytes) or len(data) != n:
        raise ValueError(f"rng must return exactly {n} bytes")
    return data


@dataclass(frozen=True, slots=True)
class PublicIdentity:
    """The public keys a member publishes to the roster (raw 32-byte encodings)."""

    dh: bytes
    sig: bytes

    @classmethod
    def from_wire(cls, keys: Mapping[str, str]) -> PublicIdentity:
        """Parse a roster entry {"dh": b64, "sig": b64}; anything else is e2ee.bad_key."""
        if not isinstance(keys, Mapping):
            raise E2EEError(errors.BAD_KEY, "roster entry is not an object")
        dh = b64decode(keys.get("dh"), length=PUBLIC_KEY_LEN, code=errors.BAD_KEY)
        sig = b64decode(keys.get("sig"), length=PUBLIC_KEY_LEN, code=errors.BAD_KEY)
        try:
            X25519PublicKey.from_public_bytes(dh)
            Ed25519PublicKey.from_public_bytes(sig)
        except ValueError:
            raise E2EEError(errors.BAD_KEY, "public key does not load") from None
        return cls(dh=dh, sig=sig)

    def to_wire(self) -> dict[str, str]:
        return {"dh": b64encode(self.dh), "sig": b64encode(self.sig)}

    def verify(self, signature: bytes, data: bytes) -> None:
        try:
            Ed25519PublicKey.from_public_bytes(self.sig).verify(signature, data)
        except (InvalidSignature, ValueError):
            raise E2EEError(errors.BAD_SIGNATURE, "signature does not verify") from None

    def fingerprint(self) -> str:
        """20 hex digits in groups of four, e.g. "3F9A C2D1 07BE 1122 3344"."""
        digest = hashlib.sha256(fields(FINGERPRINT_LABEL, self.dh, self.sig)).digest()
        hex_digits = digest[:10].hex().upper()
        return " ".join(hex_digits[i : i + 4] for i in range(0, 20, 4))


class Identity:
    """A member's private keys for one session. Never serialised onto the wire."""

    __slots__ = ("_dh", "_sig", "public")

    def __init__(self, dh_private: bytes, sig_private: bytes) -> None:
        if len(dh_private) != PRIVATE_KEY_LEN or len(sig_private) != PRIVATE_KEY_LEN:
            raise ValueError("private keys are 32 bytes each")
        self._dh = X25519PrivateKey.from_private_bytes(dh_private)
        self._sig = Ed25519PrivateKey.from_private_bytes(sig_private)
        self.public = PublicIdentity(
            dh=self._dh.public_key().public_bytes_raw(),
            sig=self._sig.public_key().public_bytes_raw(),
        )

    @classmethod
    def generate(cls, rng: Rng = os.urandom) -> Identity:
        """Draws 32 bytes for X25519, then 32 for the Ed25519 seed (an order the vectors fix)."""
        dh = draw(rng, PRIVATE_KEY_LEN)
        return cls(dh, draw(rng, PRIVATE_KEY_LEN))

    def private_bytes(self) -> tuple[bytes, bytes]:
        """(X25519 private, Ed25519 seed): to keep a session across a page reload; vectors."""
        return self._dh.private_bytes_raw(), self._sig.private_bytes_raw()

    def sign(self, data: bytes) -> bytes:
        return self._sig.sign(data)

    def exchange(self, peer_dh: bytes) -> bytes:
        """X25519 with a peer's raw public key; a low-order point is e2ee.bad_key."""
        return exchange(self._dh, peer_dh)

    def __repr__(self) -> str:
        return f"Identity({self.public.fingerprint()})"


def exchange(private: X25519PrivateKey, peer_dh: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(peer_dh))
    except ValueError:  # all-zero shared secret: the peer sent a low-order point
        raise E2EEError(errors.BAD_KEY, "X25519 peer key is a low-order point") from None


def sort_members(ids: Iterable[str]) -> list[str]:
    """Member ids by their UTF-8 bytes: the one order both clients agree on."""
    return sorted(ids, key=utf8)


def safety_code(room_id: str, epoch: int, roster: Mapping[str, PublicIdentity]) -> str:
    """Four groups of five digits over the room, the epoch and every member's keys.

    Every honest member of one room at one epoch computes the same code; a
    ghost member, a swapped key or a different epoch on anyone's screen changes it.
    """
    parts = [utf8(room_id), u64(epoch)]
    for member_id in sort_members(roster):
        keys = roster[member_id]
        parts += [utf8(member_id), keys.dh, keys.sig]
    digest = hashlib.sha256(fields(SAFETY_CODE_LABEL, *parts)).digest()
    groups = (int.from_bytes(digest[i : i + 5], "big") % 100_000 for i in range(0, 20, 5))
    return " ".join(f"{g:05d}" for g in groups)
