"""Message franking as the server uses it: tag on relay, verify on report."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.spaces.e2ee import E2EEError, server_tag, verify_report
from hearth.spaces.e2ee.encoding import b64decode, fields
from hearth.spaces.e2ee.franking import commit
from tests.support.e2ee_relay import Relay

SERVER_KEY = bytes(range(100, 132))
ROOM = "room-1"
TS = 1_764_095_400_123


def relayed(text: str = "you are not alone") -> tuple[dict[str, object], str]:
    """A real message from a to b, stamped as the server would: the report b could file."""
    relay = Relay(ROOM)
    relay.join("a", "b")
    a, b = relay.sessions["a"], relay.sessions["b"]
    sent = a.encrypt(text)
    # The server sees only body and commitment; it stamps from/seq/ts and the tag.
    tag = server_tag(SERVER_KEY, b64decode(sent.commitment), ROOM, "a", 42, TS)
    got = b.decrypt("a", sent.body, sent.commitment)
    report: dict[str, object] = {
        "plaintext": got.text, "franking_key": got.franking_key, "commitment": got.commitment,
        "tag": tag, "room_id": ROOM, "sender_id": "a", "seq": 42, "ts": TS}
    return report, sent.body


def refusal(**report: object) -> str:
    with pytest.raises(E2EEError) as caught:
        verify_report(SERVER_KEY, **report)  # type: ignore[arg-type]
    return caught.value.code


def test_genuine_report_verifies() -> None:
    report, _ = relayed()
    verify_report(SERVER_KEY, **report)  # type: ignore[arg-type]


def test_altered_text_swapped_sender_and_forged_tag_are_refused() -> None:
    report, _ = relayed()
    assert refusal(**{**report, "plaintext": "you are alone"}) == "franking.bad_commitment"
    assert refusal(**{**report, "plaintext": "you are not alone "}) == "franking.bad_commitment"
    assert refusal(**{**report, "sender_id": "b"}) == "franking.bad_tag"
    assert refusal(**{**report, "seq": 43}) == "franking.bad_tag"
    assert refusal(**{**report, "ts": TS + 1}) == "franking.bad_tag"
    assert refusal(**{**report, "room_id": "room-2"}) == "franking.bad_tag"
    assert refusal(**{**report, "tag": bytes(32)}) == "franking.bad_tag"
    other_key = bytes(range(32))
    forged = server_tag(other_key, report["commitment"], ROOM, "a", 42, TS)  # type: ignore[arg-type]
    assert refusal(**{**report, "tag": forged}) == "franking.bad_tag"
    assert refusal(**{**report, "franking_key": bytes(32)}) == "franking.bad_commitment"
    # A reporter who invents text needs a commitment the server tagged: they cannot get one.
    invented_fk = bytes(32)
    invented = commit(invented_fk, "invented")
    assert refusal(**{**report, "plaintext": "invented", "franking_key": invented_fk,
                      "commitment": invented}) == "franking.bad_tag"


def test_malformed_inputs() -> None:
    report, _ = relayed()
    assert refusal(**{**report, "franking_key": b"short"}) == "franking.malformed"
    assert refusal(**{**report, "tag": b"short"}) == "franking.malformed"
    assert refusal(**{**report, "commitment": b"short"}) == "franking.malformed"
    assert refusal(**{**report, "seq": -1}) == "franking.malformed"
    assert refusal(**{**report, "ts": 2**64}) == "franking.malformed"
    assert refusal(**{**report, "plaintext": "\udcff"}) == "franking.bad_commitment"
    with pytest.raises(ValueError):
        server_tag(b"too short", bytes(32), ROOM, "a", 1, 1)


def test_the_server_tags_without_seeing_text() -> None:
    report, body = relayed("a sentence only the room sees")
    assert b"a sentence only the room sees" not in b64decode(body)
    assert b"a sentence only the room sees" not in report["commitment"]  # type: ignore[operator]


@given(st.text(max_size=8), st.text(max_size=8), st.text(max_size=8), st.text(max_size=8))
def test_length_prefixes_keep_fields_apart(a: str, b: str, c: str, d: str) -> None:
    """("ab", "c") and ("a", "bc") never encode alike, so tags cannot be re-split."""
    try:
        left = fields("t", a.encode(), b.encode())
        right = fields("t", c.encode(), d.encode())
    except UnicodeEncodeError:
        return
    assert (left == right) == ((a, b) == (c, d))
