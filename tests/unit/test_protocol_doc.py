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


# --- close codes: every code the server sends is in the table, and nothing else is ---------

ROOT = Path(__file__).resolve().parents[2]
CLOSERS = {"close", "Close", "Detach", "sendClose", "sendCloseFrame", "going_away",
           "Shut", "CloseLink", "CloseMember", "_close"}  # the last four: spaces/host.py
# What autobahn sends by itself (web/ws.py leaves these to it): a ping not answered in time
# (1001), a frame that breaks RFC 6455 (1002), a text frame that is not UTF-8 (1007), a
# frame over maxMessagePayloadSize (1009).
LIBRARY_CODES = {1001, 1002, 1007, 1009}


def close_codes_sent() -> dict[int, set[str]]:
    """Close codes the server's own code passes to a close (found by reading the code:
    literals, and module constants by name), with where."""
    import ast
    trees, constants = [], {}
    for folder in ("spaces", "web", "moderation"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "client.py":  # the Python client's own closes
                continue
            tree = ast.parse(path.read_text(), str(path))
            trees.append((path.relative_to(ROOT), tree))
            for node in tree.body:
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                        and type(node.value.value) is int:
                    constants.update({t.id: node.value.value for t in node.targets
                                      if isinstance(t, ast.Name)})

    def value(node: ast.AST) -> int | None:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
        return constants.get(name) if name else None

    found: dict[int, set[str]] = {}
    for path, tree in trees:
        for node in ast.walk(tree):
            candidates: list[ast.AST] = []
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in CLOSERS:
                    candidates = [*node.args, *(k.value for k in node.keywords)]
            elif isinstance(node, ast.FunctionDef) and node.args.defaults:
                params = node.args.args[-len(node.args.defaults):]
                candidates = [d for p, d in zip(params, node.args.defaults, strict=True)
                              if p.arg == "code"]
            for candidate in candidates:
                code = value(candidate)
                if code is not None and 1000 <= code <= 4999:
                    found.setdefault(code, set()).add(f"{path}:{getattr(node, 'lineno', 0)}")
    return found


def test_every_close_code_the_server_sends_is_in_the_table_and_only_those() -> None:
    section = DOC.split("### Close codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(c) for c in re.findall(r"^\| (\d{4}) \|", section, re.M)}
    sent = close_codes_sent()
    assert {1000, 1008, 4003, 4006} <= set(sent)  # the finder finds what it must
    missing = {code: sorted(where) for code, where in sent.items() if code not in documented}
    assert not missing, f"close codes sent but not documented: {missing}"
    assert documented == set(sent) | LIBRARY_CODES


# --- welcome: every field the server sends is documented ------------------------------------


def test_every_field_of_welcome_is_documented() -> None:
    from tests.support.world import World
    w = World()
    ticket = w.venue.issue_ticket("facilitator", w.clock.seconds(), "ana")
    _, welcome = w.join(ticket=ticket)
    row = next(line for line in DOC.splitlines() if line.startswith("| `welcome` |"))
    documented = set(re.findall(r"`([a-z_]+)`", row))
    names = set(welcome) - {"type"}
    for nested in ("movement", "voice", "room"):
        names |= set(welcome[nested])
    names |= set(welcome["room"]["stick"])
    missing = names - documented
    assert not missing, f"welcome fields not documented in docs/protocol.md: {sorted(missing)}"
    member_doc = DOC.split("A **member** is", 1)[1].split("\n\n", 1)[0]
    member_fields = set(re.findall(r'"([a-z_]+)"', member_doc))
    assert set(welcome["room"]["members"][0]) <= member_fields
    layout_doc = DOC.split("A **layout** is", 1)[1].split("\n\n", 1)[0]
    assert set(welcome["room"]["layout"]) <= set(re.findall(r'"([a-z_]+)"', layout_doc))
