"""Fixtures for the crisis tests: the shipped crisis config and the shared detector cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from moderation.crisis_config import CrisisConfig, load_crisis

CASES_FILE = Path(__file__).resolve().parent / "cases.json"


def load_cases() -> list[dict[str, Any]]:
    """tests/crisis/cases.json: the cases both detectors must agree on (and get right)."""
    cases: list[dict[str, Any]] = json.loads(CASES_FILE.read_text(encoding="utf-8"))["cases"]
    return cases


def case_id(case: dict[str, Any]) -> str:
    return f"{case['language']}-{case['kind']}-{case['text'][:40]}"


@pytest.fixture(scope="session")
def crisis() -> CrisisConfig:
    return load_crisis()
