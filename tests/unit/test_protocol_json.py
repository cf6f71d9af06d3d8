"""JSON on the wire (spaces/protocol.py): `encode` always writes valid compact JSON, and
`decode` refuses what hearth.v1 refuses, whatever library parses it.

The parser and serialiser are msgspec's (docs/performance.md, "JSON"); these tests pin
the behaviour the protocol promises, not the library: a change of library that lets a
NaN, a lone surrogate or trailing data through fails here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.spaces.protocol import Envelope, Join, ProtocolError, decode, encode

values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)


@given(st.dictionaries(st.text(max_size=10), values, max_size=6))
def test_encode_round_trips_through_the_standard_parser(message: dict[str, Any]) -> None:
    try:
        json.dumps(message, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not UTF-8, refused
        with pytest.raises(UnicodeEncodeError):
            encode(message)
        return
    out = encode(message)
    assert json.loads(out) == message


def test_encode_is_compact_utf8_without_escaping_non_ascii() -> None:
    message = {"type": "envelope", "from": "a-b_c", "ts": 1_700_000_000_000, "body": "QUJD\n",
               "seq": 7, "tag": "é\u2028\"\\", "n": None, "nested": {"list": [1, 2.5, True]}}
    out = encode(message)
    assert out == json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    assert "é".encode() in out


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_encode_never_writes_nan_or_infinity(value: float) -> None:
    out = encode({"type": "x", "v": value})
    assert out == b'{"type":"x","v":null}'
    json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} on the wire"))


def test_encode_refuses_what_is_not_json_and_stays_usable() -> None:
    circular: dict[str, Any] = {"type": "x"}
    circular["self"] = circular
    with pytest.raises(RecursionError):
        encode(circular)
    with pytest.raises(TypeError):
        encode({"type": "x", "nested": {"bad": object()}})
    with pytest.raises(UnicodeEncodeError):
        encode({"type": "x", "text": "\ud800"})
    shared = {"k": 1}
    assert encode({"a": shared, "b": shared}) == b'{"a":{"k":1},"b":{"k":1}}'


ENVELOPE = b'{"type":"envelope","body":"QUJD","commitment":"' + b"A" * 43 + b'="}'


def test_decode_takes_bytes_and_text_and_surrounding_whitespace() -> None:
    for frame in (ENVELOPE, ENVELOPE.decode(), b" \n" + ENVELOPE + b"\r\n\t "):
        message = decode(frame)
        assert isinstance(message, Envelope) and message.body == "QUJD"
    assert decode('{"type":"join","room":"demo","pseudonym":"\\ud83d\\ude00 Sam"}') == \
        Join(room="demo", pseudonym="\U0001f600 Sam")


@pytest.mark.parametrize("frame", [
    b'{"type":"join","room":"demo","pseudonym":"\xed\xa0\x80"}',  # UTF-8-encoded surrogate
    b'{"type":"join","room":"demo","pseudonym":"\xed\xa0\x80","x":"\\u00e9"}',
    b'{"type":"move","x":NaN,"y":1,"n":"\\ud800"}',              # NaN beside a surrogate
    b'{"type":"join","room":"demo","pseudonym":"\xff"}',          # not UTF-8
    b'{"type":"move","x":NaN,"y":1}',
    b'{"type":"move","x":Infinity,"y":1}',
    b'{"type":"move","x":-Infinity,"y":1}',
    b'{"type":"leave"} {"type":"leave"}',                          # two objects
    b'{"type":"leave"}x',                                          # trailing data
    b'\xef\xbb\xbf{"type":"leave"}',                               # a byte-order mark
    b'{"type":"leave",}',                                          # trailing comma
    b"{'type':'leave'}",
    b'{"type":"leave","x":"a\x01b"}',                              # raw control character
    b"[" * 100_000 + b"]" * 100_000,                               # deeper than any parser goes
    b"",
    b"   ",
    "\x00".encode("utf-16-le") + b'{"type":"leave"}',
])
def test_decode_refuses_what_is_not_strict_json(frame: bytes | str) -> None:
    with pytest.raises(ProtocolError) as refused:
        decode(frame)
    assert refused.value.code == "bad_json"


@pytest.mark.parametrize("frame", [b"[]", b'"leave"', b"1", b"null", b"true", b'[{"type":"leave"}]'])
def test_decode_refuses_what_is_not_an_object(frame: bytes) -> None:
    with pytest.raises(ProtocolError) as refused:
        decode(frame)
    assert refused.value.code == "bad_json"


@pytest.mark.parametrize("frame", [
    b'{"type":"join","room":"demo","pseudonym":"\\ud800"}',      # escaped lone surrogate
    b'{"type":"join","room":"demo","pseudonym":"\\udc00x"}',     # escaped lone low surrogate
    '{"type":"join","room":"demo","pseudonym":"\ud800"}',       # a str holding one
    b'{"type":"join","room":"demo","avatar":{"color":"\\udfff"}}',
])
def test_a_lone_surrogate_in_valid_json_is_a_bad_field_naming_it(frame: bytes | str) -> None:
    """msgspec refuses these too; decode reads them again to say which field (the
    protocol's refusal: bad_message, not bad_json)."""
    with pytest.raises(ProtocolError) as refused:
        decode(frame)
    assert refused.value.code == "bad_message"
    assert "surrogate" in refused.value.message and refused.value.message.startswith("join.")


def test_a_number_past_a_double_is_out_of_range() -> None:
    for frame in (b'{"type":"move","x":1e400,"y":1}', b'{"type":"leave","x":-1e999}'):
        with pytest.raises(ProtocolError) as refused:
            decode(frame)
        assert refused.value.code == "bad_message"


def test_huge_integers_are_refused_as_out_of_range_not_rounded() -> None:
    with pytest.raises(ProtocolError) as refused:
        decode(b'{"type":"sit","seat":123456789012345678901234567890}')
    assert refused.value.code == "bad_message"
    with pytest.raises(ProtocolError) as refused:
        decode(b'{"type":"sit","seat":1.0}')  # a float is not a whole number, however round
    assert refused.value.code == "bad_message"
