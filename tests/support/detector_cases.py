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


def hostile_pack_data() -> dict[str, Any]:
    """A pack of format 2 built so that every token of HOSTILE_TEXT is a candidate for every
    slot of every pattern: eight-slot patterns with the widest gaps, aliases that quadruple
    the tokens, a slip of a typo word in every third token, negation cues, breaks and
    negation exceptions everywhere, and rules that require and lift one another."""
    words = [a + b + c for a in "abcdefgh" for b in "abcd" for c in "ab"]  # 64 words
    pattern = " ~5 ".join(["|".join(words[i:i + 8]) for i in range(0, 64, 8)])
    return {
        "id": "hostile", "language": "en", "version": "1.0.0",
        "negation": {"cues": words[:20], "window": 8, "breaks": words[20:40],
                     "unless": [pattern] * 10},
        "aliases": {" ".join([w] * 4): [f"{w}x"] for w in words},
        "typos": {"words": [w + "zzzz" for w in words], "not": []},
        "severity": {"low": 3, "medium": 5, "high": 8, "category_cap": 6},
        "exceptions": {"e": {"scope": "clause", "patterns": [pattern] * 10}},
        "rules": [{"id": f"r{i}", "category": "intent", "weight": 5, "patterns": [pattern] * 10,
                   "requires": ["intent"] if i % 2 else [], "min_severity": "high",
                   "unless": ["e"] if i % 3 else []}
                  for i in range(10)],
    }


# 5,000 characters: a word, its alias variant and a slip of its typo word, over and over.
HOSTILE_TEXT = " ".join(f"{w}x {w}zzz {w}" for w in
                        [a + b + c for a in "abcdefgh" for b in "abcd" for c in "ab"] * 8)[:5000]
