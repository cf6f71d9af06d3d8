"""The architecture as rules a test can read: who may import whom, where I/O happens, what
each package says it holds, and that no test leans on another test.

    web/  ─►  moderation/  ─►  spaces/          client/  ─►  spaces/

spaces/ (the room core) imports nothing of Hearth but itself; moderation/ builds on spaces/;
web/ (the Twisted shell) may use all of them; client/ (the Python client) stands on the core's
wire types only. Neither spaces/ nor moderation/ imports Twisted or autobahn, and neither
reaches into another package's private names. The modules of spaces/ and moderation/ that do
I/O are the ones their package docstring names, no more and no fewer.

The rules read the source (ast), not the running program: a lazy import inside a function
counts like any other.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("spaces", "moderation", "web", "client")
# Which Hearth packages each package may import (its own always).
MAY_IMPORT = {
    "spaces": set(),
    "moderation": {"spaces"},
    "client": {"spaces"},
    "web": {"spaces", "moderation", "client"},
}
TWISTED = ("twisted", "autobahn", "pytest_twisted")
CORE = ("spaces", "moderation")
# Imports that mean a module talks to the world: files, sockets, other processes, threads.
IO_MODULES = ("socket", "fcntl", "subprocess", "threading", "asyncio", "smtplib", "shutil",
              "urllib.request", "http", "redis", *TWISTED)
# Path's file calls; and anything of os but its randomness (os.open, os.replace, os.fsync...).
IO_CALLS = frozenset({"read_bytes", "read_text", "write_bytes", "write_text", "mkdir", "unlink",
                      "glob", "rglob", "iterdir", "rmdir", "touch", "chmod"})
NOT_IO_OF_OS = frozenset({"urandom", "fspath"})


@dataclass(frozen=True)
class Import:
    module: str  # the file, relative to the repository: spaces/venue.py
    target: str  # hearth.moderation.bans, twisted.internet.defer, os
    names: tuple[str, ...]  # for `from x import a, b`
    line: int


def sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def imports(path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = str(path.relative_to(ROOT))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield Import(name, node.module, tuple(a.name for a in node.names), node.lineno)


def hearth_package(target: str) -> str | None:
    parts = target.split(".")
    return parts[1] if parts[0] == "hearth" and len(parts) > 1 else None


def within(target: str, roots: tuple[str, ...]) -> bool:
    return any(target == r or target.startswith(r + ".") for r in roots)


def all_imports(*packages: str) -> list[Import]:
    return [i for package in packages for path in sources(package) for i in imports(path)]


def found(kind: str, item: Import, detail: str) -> str:
    return f"{kind}: {item.module} {detail}"


def violations() -> list[str]:
    out = []
    for package in PACKAGES:
        for item in all_imports(package):
            other = hearth_package(item.target)
            if other in PACKAGES and other != package and other not in MAY_IMPORT[package]:
                out.append(found("direction", item, f"imports {item.target}"))
            if package in CORE and within(item.target, TWISTED):
                out.append(found("twisted", item, f"imports {item.target}"))
            if other is not None and other != package:
                private = [n for n in item.names if n.startswith("_")]
                if private:
                    out.append(found("private", item, f"takes {', '.join(private)} "
                                                      f"from {item.target}"))
    return out


def test_imports_go_one_way_and_the_core_has_no_twisted() -> None:
    assert violations() == []


# --- I/O, as each core package says ----------------------------------------------------

def does_io(path: Path) -> list[str]:
    """What in this file talks to the world directly (imports, file calls, open())."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    why = [f"imports {i.target}" for i in imports(path) if within(i.target, IO_MODULES)]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open":
            why.append(f"open() at line {node.lineno}")
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                and func.value.id == "os" and func.attr not in NOT_IO_OF_OS:
            why.append(f"os.{func.attr}() at line {node.lineno}")
        elif isinstance(func, ast.Attribute) and func.attr in IO_CALLS:
            why.append(f".{func.attr}() at line {node.lineno}")
    return why


def docstring(package: str) -> str:
    tree = ast.parse((ROOT / package / "__init__.py").read_text(encoding="utf-8"))
    return ast.get_docstring(tree, clean=False) or ""


def declared_io(package: str) -> set[str]:
    """The modules named in the package docstring's paragraph that starts "I/O happens"."""
    for paragraph in docstring(package).split("\n\n"):
        if paragraph.lstrip().startswith("I/O happens"):
            return set(re.findall(r"(?<![/\w])([a-z_]+\.py)", paragraph))
    raise AssertionError(f"{package}/__init__.py says nothing about where I/O happens")


@pytest.mark.parametrize("package", CORE)
def test_the_package_docstring_names_every_module_that_does_io_and_no_other(
        package: str) -> None:
    declared = declared_io(package)
    direct = {p.name: does_io(p) for p in (ROOT / package).glob("*.py")}
    doing = {name for name, why in direct.items() if why}
    assert doing <= declared, {name: direct[name] for name in doing - declared}
    for name in declared - doing:  # then through a declared module of its own package
        uses = {i.target.rsplit(".", 1)[-1] + ".py" for i in imports(ROOT / package / name)
                if hearth_package(i.target) == package}
        assert uses & declared, f"{package}/{name} is said to do I/O but does none"


# --- each package lists its modules --------------------------------------------------------

# A module's line in the docstring: indented, its file name, two spaces, what it is for.
LISTED = re.compile(r"^ +([a-z_0-9]+(?:\.py|/)) {2,}\S", re.MULTILINE)


@pytest.mark.parametrize("package", [*PACKAGES, "spaces/e2ee"])
def test_each_package_docstring_lists_its_modules(package: str) -> None:
    """Every module and subpackage is listed; a listed name (data folders too) exists."""
    folder = ROOT / package
    present = {p.name for p in folder.glob("*.py") if p.name != "__init__.py"}
    present |= {f"{p.name}/" for p in folder.iterdir()
                if p.is_dir() and (p / "__init__.py").exists()}
    listed = set(LISTED.findall(docstring(package)))
    absent = {name for name in listed if not (folder / name.rstrip("/")).exists()}
    assert (sorted(present - listed), sorted(absent)) == ([], [])


# --- tests stand alone -------------------------------------------------------------------

def test_no_test_imports_another_test() -> None:
    """Shared helpers live in tests/support/ (and tests/browser/harness.py, console_steps.py,
    runner.py); a test module or a conftest is never imported."""
    bad = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for item in imports(path):
            for target in (item.target, *(f"{item.target}.{n}" for n in item.names)):
                leaf = target.rsplit(".", 1)[-1]
                if target.startswith("tests.") and (leaf.startswith("test_")
                                                    or leaf == "conftest"):
                    bad.append(f"{path.relative_to(ROOT)}:{item.line} imports {target}")
    assert bad == []
