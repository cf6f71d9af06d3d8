"""docs/protocol.md and spaces/protocol.py describe the same protocol."""

from __future__ import annotations

import re
from pathlib import Path

from hearth.spaces import protocol as p
from hearth.spaces.server_messages import SERVER_TYPES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()


def test_every_error_code_is_documented_and_every_documented_code_exists() -> None:
    section = DOC.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))
    assert documented == set(p.ERRORS)


def test_every_client_message_type_is_documented() -> None:
    section = DOC.split("## Client → server", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))
    assert documented == set(p.CLIENT_TYPES)


def test_every_server_message_type_is_documented() -> None:
    section = DOC.split("## Server → client", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", section, re.M)
    documented = {name for cell in first_cells for name in re.findall(r"`([a-z_]+)`", cell)}
    assert documented == set(SERVER_TYPES)


def test_subprotocol_name() -> None:
    assert f"**`{p.SUBPROTOCOL}`**" in DOC
