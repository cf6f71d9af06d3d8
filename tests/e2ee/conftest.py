"""Fixtures shared by the E2EE tests: the committed vectors, and a module loader for them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
VECTOR_FILES = ("primitives", "identity", "envelope", "message", "franking", "voice", "session")


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    """Every tests/vectors/*.json file, by name."""
    return {name: json.loads((VECTORS / f"{name}.json").read_text()) for name in VECTOR_FILES}


@pytest.fixture(scope="session")
def generator() -> ModuleType:
    """tests/vectors/generate.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("e2ee_vector_generator", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
