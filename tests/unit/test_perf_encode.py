"""`protocol.encode` reuses one C encoder: same bytes as json.dumps, same refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.spaces.protocol import encode

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)


def reference(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@given(st.dictionaries(st.text(max_size=10), values, max_size=6))
def test_same_bytes_as_json_dumps(message: dict[str, Any]) -> None:
    try:
        expected = reference(message)
    except UnicodeEncodeError:  # a lone surrogate: not UTF-8 either way
        with pytest.raises(UnicodeEncodeError):
            encode(message)
        return
    assert encode(message) == expected


def test_envelope_shape_and_specials() -> None:
    message = {"type": "envelope", "from": "a-b_c", "ts": 1_700_000_000_000, "body": "QUJD\n",
               "commitment": "x" * 44, "seq": 7, "tag": "é\u2028\"\\", "f": 0.1, "n": None,
               "nested": {"list": [1, 2.5, True, {"k": "v"}]}, "inf": float("inf")}
    assert encode(message) == reference(message)


def test_a_failed_encode_leaves_the_encoder_usable() -> None:
    circular: dict[str, Any] = {"type": "x"}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular"):
        encode(circular)
    with pytest.raises(TypeError):
        encode({"type": "x", "nested": {"bad": object()}})
    shared = {"k": 1}
    assert encode({"a": shared, "b": shared}) == b'{"a":{"k":1},"b":{"k":1}}'
