"""`python -m hearth.moderation.detector_eval`: figures per language and category, misses, and an
operator's own pack and corpus.

The command is how anyone tuning a pack sees what a change does, so its numbers
must add up, its mapping to the wire categories must stay within the fixed set,
and a new language must work without touching the code.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from hearth.moderation.detector import CATEGORIES
from hearth.moderation.detector_eval import (
    CATEGORY_MAP,
    DEFAULT_CORPUS,
    DEFAULT_RULES,
    load_corpus,
    load_packs,
    main,
    report,
)
from hearth.moderation.incidents import CATEGORIES as WIRE_CATEGORIES

DEV = [DEFAULT_CORPUS / "dev-a.jsonl", DEFAULT_CORPUS / "dev-b.jsonl"]

FRENCH_PACK = '''
id = "operator-fr"
language = "fr"
version = "0.1.0"

[negation]
cues = ["pas", "jamais"]
window = 3

[exceptions.rire]
scope = "sentence"
patterns = ["mdr|ptdr"]

[[rules]]
id = "fr.intent.mourir"
category = "intent"
weight = 5
patterns = ["envie de mourir", "me tuer"]
unless = ["rire"]
'''

FRENCH_CORPUS = [
    {"id": "fr-1", "language": "fr", "category": "explicit", "label": "risk", "severity": "medium",
     "text": "J'ai envie de mourir."},
    {"id": "fr-2", "language": "fr", "category": "explicit", "label": "risk", "severity": "medium",
     "text": "Je vais me tuer ce soir."},
    {"id": "fr-3", "language": "fr", "category": "wish_dead", "label": "risk", "severity": "medium",
     "text": "Je voudrais ne plus me réveiller."},
    {"id": "fr-4", "language": "fr", "category": "hyperbole_idiom", "label": "none", "severity": None,
     "text": "Ce devoir me donne envie de mourir mdr"},
    {"id": "fr-5", "language": "fr", "category": "negation_hedging", "label": "none",
     "severity": None, "text": "Je ne vais pas me tuer, promis."},
    {"id": "fr-6", "language": "fr", "category": "ordinary", "label": "none", "severity": None,
     "text": "Je vais me tuer à la tâche cette semaine."},
]


def write_corpus(path: Path, lines: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
                    encoding="utf-8")
    return path


def test_the_corpus_is_balanced_labelled_and_unique() -> None:
    everything = load_corpus([DEFAULT_CORPUS])
    assert len({line.id for line in everything}) == len(everything)
    # Everyday talk written for training only (train-quiet.jsonl) has no risk line and is never
    # measured: the writers' files, which are, hold both languages equally.
    writers = {line.source for line in everything if line.label == "risk"}
    assert {line.label for line in everything if line.source not in writers} <= {"none"}
    lines = [line for line in everything if line.source in writers]
    assert len(lines) >= 748
    per_language = Counter(line.language for line in lines)
    assert set(per_language) == {"en", "es"} and per_language["en"] == per_language["es"]
    risk = {line.category for line in lines if line.label == "risk"}
    assert {"explicit", "plan", "means", "timeframe_imminent", "attempt_in_progress"} <= risk


def test_every_corpus_category_maps_to_categories_the_wire_carries() -> None:
    lines = load_corpus([DEFAULT_CORPUS])
    risk_categories = {line.category for line in lines if line.label == "risk"}
    assert risk_categories <= set(CATEGORY_MAP)
    for allowed in CATEGORY_MAP.values():
        assert set(allowed) <= set(CATEGORIES) <= set(WIRE_CATEGORIES)


def test_the_shipped_packs_hold_their_figures_on_the_dev_thirds() -> None:
    """A pack edit that loses what the dev thirds show fails here (docs/crisis.md has the figures)."""
    data = report(load_packs(DEFAULT_RULES), load_corpus(DEV), DEV)
    targets = {t["key"]: t["value"] for t in data["targets"]}
    assert data["overall"]["recall"] >= 0.97
    assert data["overall"]["false_alarm_rate"] <= 0.02
    for language in ("en", "es"):
        assert data["languages"][language]["recall"] >= 0.97, language
        assert data["languages"][language]["precision"] >= 0.97, language
    assert all(value is not None for value in targets.values())
    assert targets["core_recall"] >= 0.97
    assert targets["quiet"] <= 0.02
    assert targets["core_high"] >= 0.97


def test_the_text_report_has_every_language_category_and_miss(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--corpus", str(DEV[0])]) == 0
    out = capsys.readouterr().out
    assert "Risk lines found (recall)" in out and "false alarms" in out
    assert "Packs: en hearth-en" in out and "es hearth-es" in out
    for category in ("attempt_in_progress", "hyperbole_idiom", "third_person"):
        assert category in out
    assert "Targets (docs/crisis.md)" in out and "Misses (risk lines that did not fire):" in out


def test_json_figures_add_up(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "--language", "es"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data["languages"]) == ["es"]
    es = data["languages"]["es"]
    assert es["found"] == sum(c["found"] for c in es["categories"].values())
    assert es["false_alarms"] == sum(c["false_alarms"] for c in es["categories"].values())
    assert es["recall"] == es["found"] / es["risk"]
    assert len(data["misses"]) == es["risk"] - es["found"]
    assert len(data["false_alarms"]) == es["false_alarms"]
    assert all(miss["language"] == "es" for miss in data["misses"])


def test_an_operator_evaluates_a_language_of_their_own(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    pack = tmp_path / "fr.toml"
    pack.write_text(FRENCH_PACK, encoding="utf-8")
    corpus = write_corpus(tmp_path / "fr.jsonl", FRENCH_CORPUS)
    assert main(["--pack", str(pack), "--corpus", str(corpus), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["packs"] == {"fr": {"id": "operator-fr", "version": "0.1.0", "model": None}}
    fr = data["languages"]["fr"]
    assert (fr["risk"], fr["found"], fr["none"], fr["false_alarms"]) == (3, 2, 3, 1)
    assert [m["id"] for m in data["misses"]] == ["fr-3"]
    assert [(m["id"], m["got"]["rule_ids"]) for m in data["false_alarms"]] == [
        ("fr-6", ["fr.intent.mourir"])]
    assert fr["categories"]["explicit"]["recall"] == 1.0
    assert data["categories"]["wish_dead"]["recall"] == 0.0

    rules = tmp_path / "rules"  # the same as a directory of packs, in text
    rules.mkdir()
    (rules / "fr.toml").write_text(FRENCH_PACK, encoding="utf-8")
    assert main(["--rules", str(rules), "--corpus", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Packs: fr operator-fr 0.1.0" in out
    assert "fr-6: Je vais me tuer à la tâche cette semaine." in out


def test_bad_corpus_lines_and_packs_are_named(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write_corpus(tmp_path / "bad.jsonl", [
        {"id": "x", "language": "en", "category": "c", "label": "maybe", "severity": None, "text": "t"},
        {"id": "x", "language": "en", "category": "c", "label": "risk", "severity": None, "text": "t"},
    ])
    assert main(["--corpus", str(corpus)]) == 2
    err = capsys.readouterr().err
    assert f"{corpus}:1: label: expected risk or none" in err
    assert f"{corpus}:2: severity: expected low, medium, high on a risk line" in err

    pack = tmp_path / "fr.toml"
    pack.write_text(FRENCH_PACK.replace("window = 3", "window = 30"), encoding="utf-8")
    assert main(["--pack", str(pack), "--corpus", str(DEV[0])]) == 2
    assert "fr.toml: negation.window: expected a whole number from 0 to 8" in capsys.readouterr().err

    assert main(["--corpus", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["--language", "fr"]) == 2
    assert "no corpus line has a pack for its language" in capsys.readouterr().err
