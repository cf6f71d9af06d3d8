"""The frame parser: any bytes in, a message or a ProtocolError with a known code out."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.spaces import protocol as p

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=6)


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_arbitrary_bytes_never_escape_as_other_exceptions(frame: bytes) -> None:
    try:
        p.decode(frame)
    except p.ProtocolError as err:
        assert err.code in p.ERRORS


@given(st.sampled_from(sorted(p.CLIENT_TYPES)), st.dictionaries(
    st.sampled_from(["room", "x", "y", "seat", "token", "body", "to", "commitment", "pseudonym",
                     "avatar", "ref", "dh", "sig", "seq", "from", "ts", "text", "tag",
                     "franking_key", "locale", "ticket"]), json_values, max_size=6))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_every_type_with_random_fields_decodes_or_refuses_with_a_code(
        kind: str, fields: dict[str, object]) -> None:
    frame = json.dumps({"type": kind, **fields}, allow_nan=True)
    try:
        msg = p.decode(frame)
    except p.ProtocolError as err:
        assert err.code in ("bad_message", "bad_json")
        assert err.message.startswith(f"{kind}.") or err.code == "bad_json"
    else:
        assert type(msg).__name__.lower().replace("_", "") == kind.replace("_", "") or kind in (
            "list_reports",)


def test_wrong_field_type_names_the_field() -> None:
    with pytest.raises(p.ProtocolError) as caught:
        p.decode(b'{"type":"move","x":"1","y":2}')
    assert caught.value.code == "bad_message" and "move.x" in caught.value.message


def test_deeply_nested_json_is_a_bad_json_not_a_crash() -> None:
    with pytest.raises(p.ProtocolError) as caught:
        p.decode(b"[" * 100_000 + b"]" * 100_000)
    assert caught.value.code in ("bad_json",)


def test_ref_is_echoed_on_refusal() -> None:
    with pytest.raises(p.ProtocolError) as caught:
        p.decode(b'{"type":"envelope","body":"!!","commitment":"x","ref":"abc"}')
    assert caught.value.ref == "abc" and caught.value.as_message().to_wire()["ref"] == "abc"


@pytest.mark.parametrize("message", [
    {"type": "envelope", "body": "QUJD\n", "commitment": "A" * 43 + "="},
    {"type": "envelope", "body": "QUJD", "commitment": "A" * 43 + "=\n"},
    {"type": "join", "room": "circle\n"},
    {"type": "direct", "to": "m1\n", "body": "QUJD"},
    {"type": "flag", "category": "intent\n", "severity": "high"},
])
def test_a_trailing_newline_is_not_part_of_a_valid_field(message: dict[str, Any]) -> None:
    """`$` in a pattern also matches before a final newline; every field pattern ends in \\Z."""
    with pytest.raises(p.ProtocolError) as refused:
        p.decode(json.dumps(message).encode())
    assert refused.value.code == "bad_message"
