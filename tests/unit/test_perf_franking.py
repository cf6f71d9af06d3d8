"""The franking tag's fast path MACs exactly the bytes the format defines (docs/e2ee.md).

`server_tag` runs once per room message, so it builds its input by hand
instead of through `fields()`; this pins the two together, edge cases included.
"""

from __future__ import annotations

import hmac
from hashlib import sha256

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.spaces.e2ee import E2EEError
from hearth.spaces.e2ee.encoding import fields, u64, utf8
from hearth.spaces.e2ee.franking import TAG_LABEL, server_tag

KEY = bytes(range(32))


def reference(key: bytes, commitment: bytes, room: str, sender: str, seq: int, ts: int) -> bytes:
    data = fields(TAG_LABEL, commitment, utf8(room), utf8(sender), u64(seq), u64(ts))
    return hmac.new(key, data, sha256).digest()


@given(commitment=st.binary(min_size=32, max_size=32), room=st.text(max_size=50),
       sender=st.text(max_size=40), seq=st.integers(0, 2**64 - 1), ts=st.integers(0, 2**64 - 1))
def test_fast_tag_equals_the_fields_encoding(commitment: bytes, room: str, sender: str, seq: int,
                                             ts: int) -> None:
    try:
        expected = reference(KEY, commitment, room, sender, seq, ts)
    except E2EEError:  # a lone surrogate: refused either way
        with pytest.raises(E2EEError):
            server_tag(KEY, commitment, room, sender, seq, ts)
        return
    assert server_tag(KEY, commitment, room, sender, seq, ts) == expected


@pytest.mark.parametrize("seq, ts", [(-1, 0), (0, -1), (2**64, 0), (0, 2**64), (True, 0),
                                     (0, False)])
def test_out_of_range_integers_are_malformed(seq: int, ts: int) -> None:
    with pytest.raises(E2EEError) as refused:
        server_tag(KEY, bytes(32), "room", "a", seq, ts)
    assert refused.value.code == "franking.malformed"


def test_a_lone_surrogate_is_malformed() -> None:
    with pytest.raises(E2EEError) as refused:
        server_tag(KEY, bytes(32), "room\ud800", "a", 1, 1)
    assert refused.value.code == "franking.malformed"
