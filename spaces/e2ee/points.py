"""Public-key checks on decode: canonical encodings, on the curve, not of small order.

A member publishes its keys through the server, so every key is untrusted. A
small-order X25519 key makes every Diffie-Hellman with it all zeros (a member
could make sealing to it fail for everyone, or a server could make a shared
secret predictable); a small-order or off-curve Ed25519 key makes signatures
meaningless. Both implementations refuse the same encodings, by arithmetic on
the encoding alone (no key agreement, no signature needed):

- X25519 `u`: the 32 bytes little-endian must be below p = 2^255 - 19 (so the
  top bit is clear: RFC 7748 would silently mask it), and `u` must not be one
  of the five points of order dividing 8 (u = 0, 1, p - 1 and the two of order 8).
- Ed25519 `y` (the encoding without its top bit, which is the sign of x): below
  p; not one of the five values whose points have order dividing 8 (y = 0, 1,
  p - 1 and the two of order 8; this also covers "negative zero", x = 0 with
  the sign bit set); and x^2 = (y^2 - 1) / (d y^2 + 1) must have a root (the
  point is on the curve).

tests/unit/test_e2ee_keys.py checks these lists against scalar multiplication.
"""

from __future__ import annotations

from typing import Final

from hearth.spaces.e2ee import errors
from hearth.spaces.e2ee.errors import E2EEError

P: Final = 2**255 - 19
D: Final = (-121665 * pow(121666, P - 2, P)) % P  # the Edwards curve constant of Ed25519
KEY_LEN: Final = 32
_LOW_255 = (1 << 255) - 1

# u of the X25519 points of order 1, 2, 4 and 8 (RFC 7748 curve, canonical encodings).
X25519_SMALL_ORDER: Final = frozenset({
    0, 1, P - 1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
})
# y of the Ed25519 points of order 1, 2, 4 and 8 (either sign of x).
ED25519_SMALL_ORDER: Final = frozenset({
    0, 1, P - 1,
    2707385501144840649318225287225658788936804267575313519463743609750303402022,
    55188659117513257062467267217118295137698188065244968500265048394206261417927,
})


def check_x25519(raw: bytes) -> bytes:
    """The key itself, or e2ee.bad_key: not 32 bytes, not canonical, or of small order."""
    if len(raw) != KEY_LEN:
        raise E2EEError(errors.BAD_KEY, "an X25519 key is 32 bytes")
    u = int.from_bytes(raw, "little")
    if u >= P:
        raise E2EEError(errors.BAD_KEY, "X25519 key is not canonical")
    if u in X25519_SMALL_ORDER:
        raise E2EEError(errors.BAD_KEY, "X25519 key is a point of small order")
    return raw


def check_ed25519(raw: bytes) -> bytes:
    """The key itself, or e2ee.bad_key: not 32 bytes, not canonical, off the curve, small order."""
    if len(raw) != KEY_LEN:
        raise E2EEError(errors.BAD_KEY, "an Ed25519 key is 32 bytes")
    y = int.from_bytes(raw, "little") & _LOW_255  # the top bit is the sign of x
    if y >= P:
        raise E2EEError(errors.BAD_KEY, "Ed25519 key is not canonical")
    if y in ED25519_SMALL_ORDER:
        raise E2EEError(errors.BAD_KEY, "Ed25519 key is a point of small order")
    # y = ±1 (where x = 0 and a set sign bit would be "negative zero") are small order, refused
    # above; so x^2 is never 0 here, and d y^2 + 1 never is (d is not a square).
    yy = y * y % P
    x2 = (yy - 1) * pow(D * yy + 1, P - 2, P) % P
    if pow(x2, (P - 1) // 2, P) != 1:
        raise E2EEError(errors.BAD_KEY, "Ed25519 key is not a point on the curve")
    return raw
