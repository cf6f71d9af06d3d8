"""Public keys refused on decode (spaces/e2ee/points.py), checked against the curve arithmetic.

points.py refuses small-order points by lists of coordinates. These tests derive the lists
independently: X25519 against a real key agreement (all-zero output), Ed25519 with a small
Edwards implementation written here ([8]P is the identity exactly for those points).
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.spaces.e2ee import E2EEError, PublicIdentity
from hearth.spaces.e2ee.encoding import b64encode
from hearth.spaces.e2ee.points import (
    ED25519_SMALL_ORDER,
    X25519_SMALL_ORDER,
    D,
    P,
    check_ed25519,
    check_x25519,
)

SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (0, 1)


def decode_point(raw: bytes) -> tuple[int, int] | None:
    """RFC 8032 decoding, without its canonical checks (the caller makes those)."""
    encoded = int.from_bytes(raw, "little")
    y, sign = encoded & ((1 << 255) - 1), encoded >> 255
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x & 1 != sign:
        x = (P - x) % P
    return x, y % P


def add(p1: tuple[int, int], p2: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = p1, p2
    t = D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P,
            (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P)


def times_eight(point: tuple[int, int]) -> tuple[int, int]:
    for _ in range(3):
        point = add(point, point)
    return point


def refused(check: object, raw: bytes) -> bool:
    try:
        check(raw)  # type: ignore[operator]
    except E2EEError as err:
        assert err.code == "e2ee.bad_key"
        return True
    return False


def test_the_x25519_list_is_exactly_what_makes_key_agreement_all_zero() -> None:
    ours = X25519PrivateKey.generate()
    for u in X25519_SMALL_ORDER:
        with pytest.raises(ValueError):  # the all-zero shared secret
            ours.exchange(X25519PublicKey.from_public_bytes(u.to_bytes(32, "little")))
        assert refused(check_x25519, u.to_bytes(32, "little"))
    for _ in range(20):
        real = X25519PrivateKey.generate().public_key().public_bytes_raw()
        assert check_x25519(real) == real
    assert refused(check_x25519, P.to_bytes(32, "little"))  # = 0, not canonical
    assert refused(check_x25519, (P + 1).to_bytes(32, "little"))  # = 1
    real = X25519PrivateKey.generate().public_key().public_bytes_raw()
    assert refused(check_x25519, real[:31] + bytes([real[31] | 0x80]))  # the masked top bit
    assert refused(check_x25519, real[:31])


def test_the_ed25519_list_is_exactly_the_points_of_order_dividing_eight() -> None:
    for y in ED25519_SMALL_ORDER:
        for sign in (0, 1):
            point = decode_point((y | sign << 255).to_bytes(32, "little"))
            if point is None:
                continue
            assert times_eight(point) == IDENTITY
            assert refused(check_ed25519, (y | sign << 255).to_bytes(32, "little"))
    for _ in range(20):
        real = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        point = decode_point(real)
        assert point is not None and times_eight(point) != IDENTITY
        assert check_ed25519(real) == real
    assert refused(check_ed25519, P.to_bytes(32, "little"))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_an_ed25519_key_is_accepted_exactly_when_it_is_a_canonical_point_of_large_order(
        raw: bytes) -> None:
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    point = decode_point(raw)
    good = y < P and point is not None and times_eight(point) != IDENTITY
    assert refused(check_ed25519, raw) is not good


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_an_x25519_key_is_accepted_exactly_when_canonical_and_agreement_is_not_zero(
        raw: bytes) -> None:
    ours = X25519PrivateKey.generate()
    try:
        ours.exchange(X25519PublicKey.from_public_bytes(raw))
        zero = False
    except ValueError:
        zero = True
    good = int.from_bytes(raw, "little") < P and not zero
    assert refused(check_x25519, raw) is not good


def test_a_roster_entry_with_a_refused_key_does_not_decode() -> None:
    good = PublicIdentity.from_wire({"dh": b64encode(
        X25519PrivateKey.generate().public_key().public_bytes_raw()), "sig": b64encode(
        Ed25519PrivateKey.generate().public_key().public_bytes_raw())})
    for dh, sig in [(bytes(32), good.sig), (good.dh, bytes(32)), (good.dh, (1).to_bytes(32, "little"))]:
        with pytest.raises(E2EEError) as caught:
            PublicIdentity.from_wire({"dh": b64encode(dh), "sig": b64encode(sig)})
        assert caught.value.code == "e2ee.bad_key"
