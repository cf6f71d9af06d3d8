"""The frame parser: any bytes in, a message or a ProtocolError with a known code out."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.spaces import protocol as p
from hearth.spaces.server_messages import Error

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
                     "franking_key", "locale", "ticket", "dseq"]), json_values, max_size=6))
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


def test_a_resume_says_the_last_direct_it_received_as_a_whole_number() -> None:
    assert p.decode(b'{"type":"resume","token":"t","dseq":7}') == p.Resume(token="t", dseq=7)
    assert p.decode(b'{"type":"resume","token":"t"}').dseq is None
    for bad in (b'-1', b'1.5', b'"7"', b'true', b'9007199254740993'):
        with pytest.raises(p.ProtocolError) as caught:
            p.decode(b'{"type":"resume","token":"t","dseq":' + bad + b'}')
        assert caught.value.code == "bad_message" and "resume.dseq" in caught.value.message


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


# Text that cannot be written out again as UTF-8: lone surrogates from JSON escapes, in
# any field, at any depth, in a field's name, in `ref` and in `type`.
SURROGATES = ["\ud800", "\udfff", "a\udc00b", "\ud83d", "x" * 10 + "\ude00"]


@pytest.mark.parametrize("kind", sorted(p.CLIENT_TYPES))
@pytest.mark.parametrize("bad", SURROGATES)
def test_a_lone_surrogate_in_any_field_is_bad_message(kind: str, bad: str) -> None:
    fields = ["room", "pseudonym", "token", "body", "to", "text", "reason", "member", "zone",
              "corner", "category", "incident", "ticket", "locale", "anything"]
    for name in fields:
        frame = json.dumps({"type": kind, name: bad, "ref": "r1"})  # ensure_ascii: \\uXXXX
        with pytest.raises(p.ProtocolError) as refused:
            p.decode(frame.encode())
        assert refused.value.code == "bad_message", (kind, name)
        assert refused.value.ref == "r1" and f".{name}:" in refused.value.message
        p.encode(refused.value.as_message())  # the refusal itself can always be sent


@pytest.mark.parametrize("frame", [
    {"type": "join", "room": "circle", "avatar": {"color": "\ud800", "shape": "round"}},
    {"type": "join", "room": "circle", "nested": [[{"deep": "\udbff"}]]},
    {"type": "stand", "\ud800": 1},
    {"type": "\ud800"},
    {"type": "stand", "ref": "\ud800"},
    {"type": "no_such_type", "ref": "\udc00"},
])
def test_surrogates_anywhere_are_refused_and_the_refusal_encodes(frame: dict[str, Any]) -> None:
    for raw in (json.dumps(frame).encode(), json.dumps(frame)):
        with pytest.raises(p.ProtocolError) as refused:
            p.decode(raw)
        assert refused.value.code == "bad_message"
        p.encode(refused.value.as_message())


def test_encoded_surrogates_are_not_utf8() -> None:
    """UTF-8 forbids encoding a surrogate (CESU-8 bytes ED A0 80): not valid text."""
    with pytest.raises(p.ProtocolError) as refused:
        p.decode(b'{"type":"stand","x":"\xed\xa0\x80"}')
    assert refused.value.code == "bad_json"


@pytest.mark.parametrize("text", ["\ufffe", "\uffff", "\ufdd0", "\U0010ffff", "\u0000",
                                  "\U0001f600", "\u202e"])
def test_noncharacters_and_pairs_are_text(text: str) -> None:
    """Non-characters, controls and proper surrogate pairs are text that encodes: accepted
    where a field takes free text (and checked by its pattern elsewhere)."""
    message = p.decode(json.dumps({"type": "report", "seq": 1, "from": "m1", "ts": 1,
                                   "text": text, "franking_key": "A" * 43 + "=",
                                   "commitment": "A" * 43 + "=", "tag": "A" * 43 + "=",
                                   "reason": text}).encode())
    assert isinstance(message, p.Report) and message.reason == text
    p.encode(Error(code="report_invalid", message=message.reason))


@pytest.mark.parametrize("kind", [*sorted(p.CLIENT_TYPES), "no_such_type"])
@pytest.mark.parametrize("ref", ["x" * (p.MAX_REF + 1), 7, True, ["a"], {"a": 1}, 1.5])
def test_a_bad_ref_is_refused_the_same_way_on_every_message(kind: str, ref: Any) -> None:
    with pytest.raises(p.ProtocolError) as refused:
        p.decode(json.dumps({"type": kind, "ref": ref}).encode())
    assert refused.value.code == "bad_message" and ".ref:" in refused.value.message
    assert refused.value.ref is None and "ref" not in refused.value.as_message().to_wire()


@pytest.mark.parametrize("kind", sorted(p.CLIENT_TYPES))
def test_a_good_ref_reaches_every_message_or_its_refusal(kind: str) -> None:
    ref = "r" * p.MAX_REF
    try:
        message = p.decode(json.dumps({"type": kind, "ref": ref}).encode())
    except p.ProtocolError as refused:
        assert refused.ref == ref
    else:
        assert message.ref == ref
    with pytest.raises(p.ProtocolError) as unknown:
        p.decode(json.dumps({"type": "teleport", "ref": ref}).encode())
    assert unknown.value.code == "unknown_type" and unknown.value.ref == ref


def test_an_avatar_keeps_its_two_fields_and_ignores_a_newer_clients_others() -> None:
    """Unknown fields are ignored, inside the avatar too; the two it has are still checked."""
    message = p.decode(json.dumps({"type": "join", "room": "circle",
                                 "avatar": {"color": "teal", "shape": "round", "hat": [1]}}))
    assert isinstance(message, p.Join) and message.avatar == {"color": "teal", "shape": "round"}
    for avatar in ({"color": 7, "hat": "top"}, {"shape": "x" * 17}, ["teal"]):
        with pytest.raises(p.ProtocolError) as refused:
            p.decode(json.dumps({"type": "join", "room": "circle", "avatar": avatar}))
        assert refused.value.code == "bad_message"
