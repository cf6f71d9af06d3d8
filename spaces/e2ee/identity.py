"""Per-session identities, per-epoch key-exchange keys, fingerprints and the safety code.

An identity (an X25519 key and an Ed25519 key) lives as long as one room session
(a reload keeps it); nothing ties it to a person. Its public half goes on the
roster as {"dh": b64, "sig": b64}. For every epoch a member also draws a fresh
X25519 **epoch key**, signs it with its identity, and publishes it beside
("ek", "ek_epoch", "ek_sig"); sender keys for that epoch are sealed to the
identity key and the epoch key together, so a copied key stops opening
anything at the next epoch. Members see each other's identity as a
fingerprint, and the whole roster as a safety code that facilitators compare
aloud to spot a ghost member or a swapped key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from hearth.spaces.e2ee import errors
from hearth.spaces.e2ee.encoding import U32_MAX, b64decode, b64encode, fields, u64, utf8
from hearth.spaces.e2ee.errors import E2EEError
from hearth.spaces.e2ee.points import check_ed25519, check_x25519

Rng = Callable[[int], bytes]

PUBLIC_KEY_LEN = 32
PRIVATE_KEY_LEN = 32
SIGNATURE_LEN = 64

FINGERPRINT_LABEL = "hearth-e2ee/v1/fingerprint"
SAFETY_CODE_LABEL = "hearth-e2ee/v1/safety-code"
EPOCH_KEY_LABEL = "hearth-e2ee/v1/epoch-key"
FINGERPRINT_BYTES = 16  # 128 bits: a second preimage for one member's key costs 2^128
SAFETY_CODE_GROUPS = 10  # ten groups of five digits: 166 bits, a colliding roster costs 2^83


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
    def from_wire(cls, keys: Mapping[str, object]) -> PublicIdentity:
        """Parse {"dh": b64, "sig": b64}; anything malformed, off-curve or of small order is
        e2ee.bad_key (points.py)."""
        if not isinstance(keys, Mapping):
            raise E2EEError(errors.BAD_KEY, "roster entry is not an object")
        dh = b64decode(keys.get("dh"), length=PUBLIC_KEY_LEN, code=errors.BAD_KEY)
        sig = b64decode(keys.get("sig"), length=PUBLIC_KEY_LEN, code=errors.BAD_KEY)
        return cls(dh=check_x25519(dh), sig=check_ed25519(sig))

    def to_wire(self) -> dict[str, str]:
        return {"dh": b64encode(self.dh), "sig": b64encode(self.sig)}

    def verify(self, signature: bytes, data: bytes) -> None:
        try:
            Ed25519PublicKey.from_public_bytes(self.sig).verify(signature, data)
        except (InvalidSignature, ValueError):
            raise E2EEError(errors.BAD_SIGNATURE, "signature does not verify") from None

    def fingerprint(self) -> str:
        """32 hex digits in groups of four, e.g. "3F9A C2D1 07BE 1122 3344 5566 7788 99AA"."""
        digest = hashlib.sha256(fields(FINGERPRINT_LABEL, self.dh, self.sig)).digest()
        hex_digits = digest[:FINGERPRINT_BYTES].hex().upper()
        return " ".join(hex_digits[i : i + 4] for i in range(0, len(hex_digits), 4))


def epoch_key_statement(epoch: int, dh: bytes) -> bytes:
    """What an identity signs to vouch for its epoch key."""
    return fields(EPOCH_KEY_LABEL, u64(epoch), dh)


@dataclass(frozen=True, slots=True)
class EpochKey:
    """A member's X25519 key for one epoch, signed by its identity: {"ek", "ek_epoch", "ek_sig"}."""

    epoch: int
    dh: bytes
    signature: bytes = field(repr=False)

    @classmethod
    def from_wire(cls, keys: Mapping[str, object], owner: PublicIdentity) -> EpochKey | None:
        """The epoch key of a roster entry (None when it has none yet); e2ee.bad_key when it is
        malformed, of small order, or not signed by `owner`."""
        if keys.get("ek") is None and keys.get("ek_epoch") is None and keys.get("ek_sig") is None:
            return None
        epoch = keys.get("ek_epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= U32_MAX:
            raise E2EEError(errors.BAD_KEY, "epoch key epoch out of range")
        dh = check_x25519(b64decode(keys.get("ek"), length=PUBLIC_KEY_LEN, code=errors.BAD_KEY))
        signature = b64decode(keys.get("ek_sig"), length=SIGNATURE_LEN, code=errors.BAD_KEY)
        try:
            owner.verify(signature, epoch_key_statement(epoch, dh))
        except E2EEError:
            raise E2EEError(errors.BAD_KEY, "the epoch key is not signed by its member") from None
        return cls(epoch, dh, signature)

    def to_wire(self) -> dict[str, object]:
        return {"ek": b64encode(self.dh), "ek_epoch": self.epoch, "ek_sig": b64encode(self.signature)}


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

    def sign_epoch_key(self, epoch: int, dh: bytes) -> bytes:
        return self.sign(epoch_key_statement(epoch, dh))

    def __repr__(self) -> str:
        return f"Identity({self.public.fingerprint()})"


def exchange(private: X25519PrivateKey, peer_dh: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(peer_dh))
    except ValueError:  # all-zero shared secret: the peer sent a low-order point
        raise E2EEError(errors.BAD_KEY, "X25519 peer key is a low-order point") from None


class OwnEpochKey:
    """Our private X25519 key for one epoch and its signed public half."""

    __slots__ = ("_private", "public")

    def __init__(self, identity: Identity, epoch: int, private: bytes) -> None:
        self._private = X25519PrivateKey.from_private_bytes(private)
        dh = self._private.public_key().public_bytes_raw()
        self.public = EpochKey(epoch, dh, identity.sign_epoch_key(epoch, dh))

    def exchange(self, peer_dh: bytes) -> bytes:
        return exchange(self._private, peer_dh)

    def __repr__(self) -> str:
        return f"OwnEpochKey(epoch={self.public.epoch})"


class EpochKeys:
    """Our epoch keys, one per epoch, shared by a room's session and its private corners'."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self._keys: dict[int, OwnEpochKey] = {}

    def for_epoch(self, epoch: int, rng: Rng) -> OwnEpochKey:
        """The key for `epoch`, drawn (32 bytes) the first time it is asked for."""
        key = self._keys.get(epoch)
        if key is None:
            key = self._keys[epoch] = OwnEpochKey(self.identity, epoch, draw(rng, PRIVATE_KEY_LEN))
        return key

    def get(self, epoch: int) -> OwnEpochKey | None:
        return self._keys.get(epoch)

    def forget_before(self, epoch: int) -> None:
        """Delete the keys of older epochs: whoever copies them later opens nothing new."""
        for old in [e for e in self._keys if e < epoch]:
            del self._keys[old]


def sort_members(ids: Iterable[str]) -> list[str]:
    """Member ids by their UTF-8 bytes: the one order both clients agree on."""
    return sorted(ids, key=utf8)


def safety_code(room_id: str, roster: Mapping[str, PublicIdentity]) -> str:
    """Ten groups of five digits over the room and every member's id and identity keys.

    Every honest member of one room computes the same code whatever the epoch (a
    reload or a reconnection keeps it); a ghost member or a swapped key on
    anyone's screen changes it. The server, which chooses the keys and ids it
    shows to each member, needs two rosters with one code: a collision on 166
    bits, about 2^83 work (docs/e2ee.md, "The safety code").
    """
    parts = [utf8(room_id)]
    for member_id in sort_members(roster):
        keys = roster[member_id]
        parts += [utf8(member_id), keys.dh, keys.sig]
    digest = hashlib.sha512(fields(SAFETY_CODE_LABEL, *parts)).digest()
    groups = (int.from_bytes(digest[5 * i : 5 * i + 5], "big") % 100_000
              for i in range(SAFETY_CODE_GROUPS))
    return " ".join(f"{g:05d}" for g in groups)
