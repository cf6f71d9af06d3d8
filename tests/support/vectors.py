"""Where the shared E2EE test vectors are (tests/vectors/, written by generate.py)."""

from __future__ import annotations

from pathlib import Path

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
VECTOR_FILES = ("primitives", "identity", "envelope", "message", "franking", "voice", "session")
