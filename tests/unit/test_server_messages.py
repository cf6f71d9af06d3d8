"""The server's messages: typed, built once, and what docs/protocol.md says they are."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from msgspec import NODEFAULT, structs

from hearth.spaces import server_messages as sm
from hearth.spaces.protocol import encode

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "protocol.md").read_text()
SECTION = DOC.split("## Server → client", 1)[1].split("\n## ", 1)[0]


def sample(cls: type[sm.ServerMessage]) -> sm.ServerMessage:
    """An instance with every field set (none left out as None)."""
    values: dict[str, Any] = {}
    for f in structs.fields(cls):
        kind = str(cls.__annotations__[f.name])
        values[f.name] = (True if kind.startswith("bool") else 1.5 if kind.startswith("float")
                          else 7 if kind.startswith("int") else "x" if kind.startswith("str")
                          else {} if kind.startswith("Mapping") else [])
    return cls(**values)


def documented(wire_type: str) -> str:
    """The fields cell of the row of `wire_type` in the server → client table."""
    for line in SECTION.splitlines():
        cells = line.split("|")
        if len(cells) > 3 and f"`{wire_type}`" in cells[1]:
            return cells[2]
    raise AssertionError(f"{wire_type} has no row in docs/protocol.md")


@pytest.mark.parametrize("cls", sm.SERVER_MESSAGES, ids=lambda c: c.__name__)
def test_every_field_on_the_wire_is_in_the_docs_row_and_marked_optional_if_left_out(
        cls: type[sm.ServerMessage]) -> None:
    message = sample(cls)
    full = json.loads(encode(message))
    assert full == message.to_wire() and next(iter(full)) == "type" and full["type"] == cls.TYPE
    cell = documented(cls.TYPE)
    fields = structs.fields(cls)
    assert list(full)[1:] == [f.encode_name for f in fields]  # in the order declared
    for f in fields:
        assert f"`{f.encode_name}`" in cell, f"{cls.TYPE}: `{f.encode_name}` is not documented"
        if f.default is None:
            assert f"`{f.encode_name}`?" in cell, \
                f"{cls.TYPE}: `{f.encode_name}` is left out when unset: say `{f.encode_name}`?"
    required = {f.name: getattr(message, f.name) for f in fields if f.default is NODEFAULT}
    assert list(json.loads(encode(cls(**required)))) == ["type", *(
        f.encode_name for f in fields if f.default is not None)]  # unset optionals left out


def test_a_room_envelope_and_its_sent_keep_their_bytes() -> None:
    """The chat messages are written out by hand (the hot path): their exact bytes, in the
    order clients have always received them."""
    room = sm.RoomEnvelope(sender="m1", ts=5, body="aGk=", commitment="Yw==", seq=3, tag="dA==")
    assert encode(room) == (b'{"type":"envelope","from":"m1","ts":5,"body":"aGk=",'
                            b'"commitment":"Yw==","seq":3,"tag":"dA=="}')
    corner = sm.CornerEnvelope(zone="corner-west", seq=3, sender="m1", ts=5, body="aGk=",
                               commitment="Yw==", tag="dA==", id="c1")
    assert encode(corner) == (b'{"type":"envelope","zone":"corner-west","seq":3,"from":"m1",'
                              b'"ts":5,"body":"aGk=","commitment":"Yw==","tag":"dA==","id":"c1"}')
    sent = sm.Sent(seq=3, ts=5, tag="dA==", epoch=2)
    assert encode(sent) == b'{"type":"sent","seq":3,"ts":5,"tag":"dA==","epoch":2}'
    assert encode(sm.Sent(zone="z", seq=3, ts=5, tag="dA==", epoch=2, id="c1", ref="r")) == (
        b'{"type":"sent","zone":"z","seq":3,"ts":5,"tag":"dA==","epoch":2,"id":"c1","ref":"r"}')
    assert encode(sm.MemberLeft(member="m1", reason="left", epoch=4, seq=9)) == (
        b'{"type":"member_left","member":"m1","reason":"left","epoch":4,"seq":9}')


def test_a_message_cannot_be_changed_once_made() -> None:
    envelope = sm.RoomEnvelope(sender="m1", ts=5, body="aGk=", commitment="Yw==", seq=3,
                               tag="dA==")
    with pytest.raises(AttributeError):
        envelope.tag = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        sm.Sent(3, 5, "dA==", 2)  # type: ignore[misc]  # keyword-only


def test_a_remembered_answer_comes_back_from_its_saved_form() -> None:
    for sent in (sm.Sent(seq=3, ts=5, tag="dA==", epoch=2, id="c1"),
                 sm.Sent(zone="z", seq=3, ts=5, tag="dA==", epoch=2, id="c1")):
        assert sm.remembered(json.loads(encode(sent))) == sent
    received = sm.HelpReceived(incident="abc")
    assert sm.remembered(json.loads(encode(received))) == received
    for bad in ({"type": "error", "code": "x", "message": "y"}, {"type": "sent", "seq": 1}, {},
                ["sent"], {"type": ["sent"]}, {"type": "sent", "seq": "1", "ts": 5, "tag": "t",
                                                 "epoch": 2}):
        with pytest.raises(ValueError):
            sm.remembered(bad)


def _type_dicts(tree: ast.AST) -> list[int]:
    """Lines of dict literals (or dict(...) calls) with a "type" key: a message built by hand."""
    def by_hand(node: ast.AST) -> bool:
        if isinstance(node, ast.Dict):
            return any(isinstance(k, ast.Constant) and k.value == "type" for k in node.keys)
        if isinstance(node, ast.Call):
            return getattr(node.func, "id", None) == "dict" and any(
                k.arg == "type" for k in node.keywords)
        return isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) and \
            isinstance(node.slice, ast.Constant) and node.slice.value == "type"
    return [getattr(node, "lineno", 0) for node in ast.walk(tree) if by_hand(node)]


def test_the_core_builds_no_server_message_as_a_dict() -> None:
    """Only spaces/server_messages.py writes a message's wire form; the room, the venue,
    the host and moderation build typed messages."""
    offenders = {}
    for folder in ("spaces", "moderation"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.relative_to(ROOT).as_posix() == "spaces/server_messages.py":
                continue
            lines = _type_dicts(ast.parse(path.read_text(), str(path)))
            if lines:
                offenders[path.relative_to(ROOT).as_posix()] = lines
    assert not offenders, f"server messages built as dicts: {offenders}"


def test_the_finder_finds_a_message_built_by_hand() -> None:
    tree = ast.parse('a = {"type": "sent", "seq": 1}\nb = dict(type="x")\nc = {}\nc["type"] = 1\n'
                     'd = {"kind": 1}\n')
    assert _type_dicts(tree) == [1, 2, 4]


def test_each_wire_type_names_one_shape_or_says_why() -> None:
    by_type: dict[str, list[str]] = {}
    for cls in sm.SERVER_MESSAGES:
        by_type.setdefault(cls.TYPE, []).append(cls.__name__)
    shared = {t: sorted(names) for t, names in by_type.items() if len(names) > 1}
    # an incident's update and its alert are one wire type (the alert adds tier and sound);
    # a corner's envelope keeps the order clients have always had (its seq comes early)
    assert shared == {"incident": ["IncidentAlert", "IncidentUpdate"],
                      "envelope": ["CornerEnvelope", "RoomEnvelope"]}
    assert all(re.fullmatch(r"[a-z_]+", t) for t in by_type)
