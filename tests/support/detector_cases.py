"""The shared detector cases (tests/crisis/cases.json) both detectors must agree on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CASES_FILE = Path(__file__).resolve().parents[1] / "crisis" / "cases.json"


def load_cases() -> list[dict[str, Any]]:
    """tests/crisis/cases.json: the cases both detectors must agree on (and get right)."""
    cases: list[dict[str, Any]] = json.loads(CASES_FILE.read_text(encoding="utf-8"))["cases"]
    return cases


def case_id(case: dict[str, Any]) -> str:
    return f"{case['language']}-{case['kind']}-{case['text'][:40]}"

