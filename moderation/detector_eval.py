"""How well the on-device detector does on a labelled corpus: `python -m hearth.moderation.detector_eval`.

Prints recall (risk lines that fire), false alarms (lines without risk that
fire) and precision per language and per corpus category, how severe the
detections are, whether the reported category fits, and every miss and false
alarm. `--json` gives the same as one JSON object.

By default it runs the shipped rule packs (config/crisis/rules/), each with its
model when one is beside it, over the project's corpus
(tests/crisis/corpus/*.jsonl). An operator points it at their own: `--rules
DIR` (every <language>.toml in it), `--pack FILE` (one more pack, its language
from the file name) and `--corpus FILE_OR_DIR`; `--language` keeps only some
languages; `--no-model` runs the rules alone. A language is evaluated when it
has both a pack and lines.

`--cv` measures how the detector does on a writer it has not seen:
leave-one-writer-out cross-validation, each corpus file being one writer (by
default the training files, TRAINING_FILES; never a held-out part). For
each file, a model is trained (moderation/detector_train.py, numpy needed) on
the other files and the detector, rules and that model, runs on the file held
out. It prints the targets per held-out writer and language, next to the
rules alone, the figures of all held-out lines together, and the targets at
other levels: the settings of the shipped model are chosen from this, never
from the figures on the lines a model was trained on. The rules themselves are not retrained: on
the files they were tuned on, their part is not held out (docs/crisis.md).

A corpus file has one JSON object a line:
`{"id", "language", "category", "label": "risk"|"none", "severity": "low"|"medium"|"high"|null,
"text"}`. The corpus categories are evaluation categories, not the detector's:
CATEGORY_MAP says which of the detector's categories (those a detection may
carry on the wire) fits each; a category not listed there accepts any.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.moderation.crisis_config import SHIPPED_CRISIS, load_rule_pack
from hearth.moderation.detector import (
    CATEGORIES,
    SEVERITIES,
    Detection,
    Parts,
    RulePack,
    combine,
    detect,
    detect_parts,
)
from hearth.spaces.config import ConfigError

if TYPE_CHECKING:
    from hearth.moderation.detector_train import Settings, Trained

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent / "tests" / "crisis" / "corpus"
DEFAULT_RULES = SHIPPED_CRISIS / "rules"
LABELS = ("risk", "none")

# Corpus category -> the detector categories a detection of it may fairly report.
CATEGORY_MAP: Mapping[str, tuple[str, ...]] = {
    "explicit": ("intent", "means_method"),
    "indirect_passive": ("intent",),
    "wish_dead": ("intent",),
    "self_harm_now": ("intent", "means_method"),
    "plan": ("intent", "means_method", "farewell"),
    "means": ("means_method",),
    "timeframe_imminent": ("intent", "means_method", "farewell"),
    "farewell": ("farewell",),
    "attempt_in_progress": ("means_method", "intent"),
    "slang_misspelling": ("intent", "means_method"),
    "negation_hedging": ("intent", "means_method", "farewell"),
}
# What the detector is held to (docs/crisis.md):
# (key, name, corpus categories (none: every line), measure, bound).
TARGETS: tuple[tuple[str, str, tuple[str, ...], str, float], ...] = (
    ("recall", "recall on every risk line", (), "recall", 0.90),
    ("core_recall", "recall on explicit, plan, means, imminent and attempt in progress",
     ("explicit", "plan", "means", "timeframe_imminent", "attempt_in_progress"), "recall", 0.97),
    ("quiet", "false alarms on hyperbole, ordinary talk, recovery talk and quotes",
     ("hyperbole_idiom", "ordinary", "past_recovery", "self_harm_recovered", "quotes_lyrics_news"),
     "false_alarms", 0.05),
    ("core_high", "high severity on plan, means, timeframe and attempt in progress",
     ("plan", "means", "timeframe_imminent", "attempt_in_progress"), "high", 1.0),
)


class CorpusError(ValueError):
    """A corpus or pack that cannot be evaluated; the message names every problem."""


@dataclass(frozen=True, kw_only=True)
class Line:
    id: str
    language: str
    category: str
    label: str  # "risk" or "none"
    severity: str | None
    text: str
    source: str  # file name


@dataclass(frozen=True, kw_only=True)
class Result:
    line: Line
    detection: Detection | None

    @property
    def fired(self) -> bool:
        return self.detection is not None

    @property
    def category_fits(self) -> bool:
        if self.detection is None:
            return False
        allowed = CATEGORY_MAP.get(self.line.category)
        return allowed is None or self.detection.category in allowed

    @property
    def severe_enough(self) -> bool:
        """At least the severity the corpus expects (any detection when it expects none)."""
        if self.detection is None:
            return False
        expected = self.line.severity
        return expected is None or (SEVERITIES.index(self.detection.severity)
                                    >= SEVERITIES.index(expected))


def corpus_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and every *.jsonl in a directory given, in name order."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.jsonl")) if path.is_dir() else [path])
    return files


def load_corpus(paths: Iterable[Path]) -> list[Line]:
    """Every line of the corpus files, or CorpusError naming each bad line."""
    lines: list[Line] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    files = corpus_files(paths)
    if not files:
        raise CorpusError("no corpus files (give --corpus FILE or a directory of *.jsonl)")
    for path in files:
        try:
            raw_lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            problems.append(f"{path}: cannot read ({exc.strerror})")
            continue
        for number, raw in enumerate(raw_lines, 1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            line = _line(raw, where, path.name, problems)
            if line is None:
                continue
            if line.id in seen:
                problems.append(f"{where}: id {line.id!r} is also used at {seen[line.id]}")
            seen[line.id] = where
            lines.append(line)
    if problems:
        raise CorpusError("\n".join(problems))
    return lines


def _line(raw: str, where: str, source: str, problems: list[str]) -> Line | None:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        problems.append(f"{where}: expected one JSON object ({exc.msg})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{where}: expected one JSON object")
        return None
    before = len(problems)
    for key in ("id", "language", "category", "text"):
        if not isinstance(data.get(key), str) or not data[key]:
            problems.append(f"{where}: {key}: expected a non-empty string")
    if data.get("label") not in LABELS:
        problems.append(f"{where}: label: expected risk or none")
    severity = data.get("severity")
    if data.get("label") == "risk" and severity not in SEVERITIES:
        problems.append(f"{where}: severity: expected {', '.join(SEVERITIES)} on a risk line")
    if data.get("label") == "none" and severity is not None:
        problems.append(f"{where}: severity: expected null on a line without risk")
    unknown = set(data) - {"id", "language", "category", "label", "severity", "text"}
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
    if len(problems) > before:
        return None
    return Line(id=data["id"], language=data["language"], category=data["category"],
                label=data["label"], severity=severity, text=data["text"], source=source)


def load_packs(rules: Path | None, extra: Sequence[Path] = (), with_models: bool = True
               ) -> dict[str, RulePack]:
    """Every <language>.toml in `rules`, then each extra pack file (its language from its name),
    each with the model beside it (<language>.model.json) unless `with_models` is false."""
    paths = sorted(rules.glob("*.toml")) if rules is not None else []
    if rules is not None and not paths:
        raise CorpusError(f"{rules}: expected rule packs like en.toml")
    packs: dict[str, RulePack] = {}
    problems: list[str] = []
    for path in [*paths, *extra]:
        try:
            packs[path.stem] = load_rule_pack(path, path.stem, with_models)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise CorpusError("\n".join(problems))
    return packs


def evaluate(packs: Mapping[str, RulePack], lines: Iterable[Line]) -> list[Result]:
    """Each line with a pack for its language, through that pack."""
    return [Result(line=line, detection=detect(packs[line.language], line.text))
            for line in lines if line.language in packs]


# ---- figures ----------------------------------------------------------------------------

def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def figures(results: Sequence[Result]) -> dict[str, Any]:
    """Counts and rates for one group of results."""
    risk = [r for r in results if r.line.label == "risk"]
    none = [r for r in results if r.line.label == "none"]
    found = [r for r in risk if r.fired]
    alarms = [r for r in none if r.fired]
    high = [r for r in risk if r.detection is not None and r.detection.severity == "high"]
    return {
        "lines": len(results), "risk": len(risk), "none": len(none),
        "found": len(found), "false_alarms": len(alarms),
        "recall": _rate(len(found), len(risk)),
        "false_alarm_rate": _rate(len(alarms), len(none)),
        "precision": _rate(len(found), len(found) + len(alarms)),
        "severe_enough": _rate(sum(r.severe_enough for r in found), len(found)),
        "high": _rate(len(high), len(risk)),
        "category_fits": _rate(sum(r.category_fits for r in found), len(found)),
    }


def by_reported_category(results: Sequence[Result]) -> dict[str, Any]:
    """Per category a detection reports: how many, and how many were on risk lines."""
    out: dict[str, Any] = {}
    for category in CATEGORIES:
        fired = [r for r in results if r.detection is not None and r.detection.category == category]
        if fired:
            on_risk = sum(r.line.label == "risk" for r in fired)
            out[category] = {"detections": len(fired), "on_risk_lines": on_risk,
                             "precision": on_risk / len(fired)}
    return out


def targets(results: Sequence[Result]) -> list[dict[str, Any]]:
    """Each target with the figure this corpus gives (None when it has no such lines)."""
    out = []
    for key, name, categories, measure, bound in TARGETS:
        group = [r for r in results if not categories or r.line.category in categories]
        f = figures(group)
        if measure == "recall":
            value, met = f["recall"], f["recall"] is not None and f["recall"] >= bound
        elif measure == "false_alarms":
            value = f["false_alarm_rate"]
            met = value is not None and value <= bound
        else:
            value, met = f["high"], f["high"] is not None and f["high"] >= bound
        out.append({"key": key, "target": name, "measure": measure, "bound": bound, "value": value,
                    "lines": f["risk"] if measure != "false_alarms" else f["none"],
                    "met": met if value is not None else None})
    return out


def report(packs: Mapping[str, RulePack], lines: Sequence[Line], files: Sequence[Path]
           ) -> dict[str, Any]:
    """Everything the command prints, as one JSON-ready object."""
    return report_results(packs, lines, files, evaluate(packs, lines))


def report_results(packs: Mapping[str, RulePack], lines: Sequence[Line], files: Sequence[Path],
                   results: Sequence[Result], model: str | None = None) -> dict[str, Any]:
    """The report of results already computed (by evaluate, or by cross_validate: then `model`
    says which model each line went through)."""
    languages = sorted({r.line.language for r in results})
    skipped = sorted({line.language for line in lines} - set(packs))
    per_language = {}
    for language in languages:
        mine = [r for r in results if r.line.language == language]
        categories = sorted({r.line.category for r in mine})
        per_language[language] = {
            **figures(mine),
            "categories": {c: figures([r for r in mine if r.line.category == c])
                           for c in categories},
            "reported": by_reported_category(mine),
        }
    categories = sorted({r.line.category for r in results})

    def entry(r: Result) -> dict[str, Any]:
        d = r.detection
        return {"id": r.line.id, "language": r.line.language, "category": r.line.category,
                "expected": r.line.severity, "text": r.line.text,
                "got": None if d is None else {"category": d.category, "severity": d.severity,
                                               "rule_ids": list(d.rule_ids)}}
    high_wanted = TARGETS[3][2]
    return {
        "corpus": [str(f) for f in files],
        "packs": {lang: {"id": p.id, "version": p.version,
                         "model": model or ("beside the pack" if p.model else None)}
                  for lang, p in sorted(packs.items()) if lang in languages},
        "skipped_languages": skipped,
        "overall": figures(results),
        "categories": {c: figures([r for r in results if r.line.category == c])
                       for c in categories},
        "languages": per_language,
        "targets": targets(results),
        "misses": [entry(r) for r in results if r.line.label == "risk" and not r.fired],
        "false_alarms": [entry(r) for r in results if r.line.label == "none" and r.fired],
        "below_high": [entry(r) for r in results if r.fired and r.line.label == "risk"
                       and r.line.category in high_wanted and r.detection is not None
                       and r.detection.severity != "high"],
    }


# ---- text -------------------------------------------------------------------------------

def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:5.1f}%"


def format_text(data: Mapping[str, Any]) -> str:
    """The report as a terminal table."""
    languages = list(data["languages"])
    out = [f"Detector evaluation: {data['overall']['lines']} lines from "
           f"{', '.join(Path(f).name for f in data['corpus'])}",
           "Packs: " + ", ".join(f"{lang} {p['id']} {p['version']} "
                                 + (f"with its model ({p['model']})" if p["model"] else
                                    "(rules alone)") for lang, p in data["packs"].items())]
    if data["skipped_languages"]:
        out.append(f"Skipped (no pack): {', '.join(data['skipped_languages'])}")
    columns = [*languages, "all"]

    def cell(f: Mapping[str, Any] | None, label: str) -> str:
        if f is None or f[label] == 0:
            return f"{'':>16}"
        if label == "risk":
            return f"{f['found']:>4}/{f['risk']:<4}{_pct(f['recall']):>8}"
        return f"{f['false_alarms']:>4}/{f['none']:<4}{_pct(f['false_alarm_rate']):>8}"

    header = f"{'':26}" + "".join(f"{c:>16}" for c in columns)
    for label, title in (("risk", "Risk lines found (recall)"),
                         ("none", "Lines without risk that fired (false alarms)")):
        out += ["", title, header]
        for category, f_all in data["categories"].items():
            if f_all[label] == 0:
                continue
            row = [data["languages"][lang]["categories"].get(category) for lang in languages]
            out.append(f"  {category:24}" + "".join(cell(f, label) for f in [*row, f_all]))
        totals = [data["languages"][lang] for lang in languages] + [data["overall"]]
        out.append(f"  {'all':24}" + "".join(cell(f, label) for f in totals))

    out += ["", "Overall" + " " * 19 + "".join(f"{c:>16}" for c in columns)]
    totals = [data["languages"][lang] for lang in languages] + [data["overall"]]
    for key, name in (("recall", "recall"), ("precision", "precision"),
                      ("false_alarm_rate", "false alarms"),
                      ("severe_enough", "severity as expected+"),
                      ("category_fits", "category fits")):
        out.append(f"  {name:24}" + "".join(f"{_pct(f[key]):>16}" for f in totals))

    out += ["", "Precision by reported category"]
    for lang in languages:
        parts = [f"{c} {_pct(v['precision']).strip()} of {v['detections']}"
                 for c, v in data["languages"][lang]["reported"].items()]
        out.append(f"  {lang}: " + "; ".join(parts))

    out += ["", "Targets (docs/crisis.md)"]
    for t in data["targets"]:
        sign = "<=" if t["measure"] == "false_alarms" else ">="
        verdict = {True: "met", False: "NOT MET", None: "no lines"}[t["met"]]
        out.append(f"  {t['target']}: {_pct(t['value']).strip()} of {t['lines']} "
                   f"(target {sign} {100 * t['bound']:.0f}%) {verdict}")

    for key, title in (("misses", "Misses (risk lines that did not fire)"),
                       ("false_alarms", "False alarms"),
                       ("below_high", "Below high on plan, means, timeframe, attempt")):
        out += ["", f"{title}: {len(data[key])}"]
        for e in data[key]:
            got = "" if e["got"] is None else (f"  -> {e['got']['category']}/{e['got']['severity']} "
                                               f"{','.join(e['got']['rule_ids'])}")
            out.append(f"  {e['id']}: {e['text']}{got}")
    return "\n".join(out)


# ---- leave-one-writer-out cross-validation ------------------------------------------------

# The other levels the cross-validation tries (score units): fire at the chosen high, then high
# at the chosen fire.
SWEEP_FIRE = (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)
SWEEP_HIGH = (-2.0, -1.0, 0.0, 1.0)
# The files a shipped model is trained on, and that --cv holds out one at a time by default:
# one writer each. The held-out parts (heldout-*.jsonl) are never among them.
TRAINING_FILES = ("dev-a.jsonl", "dev-b.jsonl", "train-d.jsonl", "train-e.jsonl", "train-f.jsonl",
                  "train-g.jsonl", "train-h.jsonl", "train-quiet.jsonl", "train-t.jsonl",
                  "train-u.jsonl")


def training_corpus() -> list[Path]:
    return [DEFAULT_CORPUS / name for name in TRAINING_FILES]


@dataclass(frozen=True, kw_only=True)
class HeldOut:
    """A held-out line: what the rules found and the scores of the model trained without it."""
    line: Line
    pack: RulePack  # with that model
    trained: Trained
    parts: Parts

    def result(self, levels: Mapping[str, float] | None = None) -> Result:
        model = self.pack.model if levels is None else self.trained.with_levels(levels)
        return Result(line=self.line, detection=combine(self.pack, model, self.parts))


def cross_validate(packs: Mapping[str, RulePack], lines: Sequence[Line],
                   settings: Settings | None = None) -> list[HeldOut]:
    """Each corpus file with risk lines held out in turn: a model trained on the other files'
    lines of each language, and every held-out line through the pack with that model."""
    from hearth.moderation.detector_train import DEFAULT_SETTINGS, featurize, train

    settings = settings or DEFAULT_SETTINGS
    # A file without a risk line (everyday talk written for training) is no writer to hold
    # out: it stays in the training of every fold.
    writers = sorted({line.source for line in lines if line.label == "risk"})
    if len(writers) < 2:
        raise CorpusError("cross-validation holds out one corpus file at a time: give at least two "
                          "(one per writer)")
    out: list[HeldOut] = []
    for language, pack in sorted(packs.items()):
        mine = [line for line in lines if line.language == language]
        rows = dict(zip((line.id for line in mine),
                        featurize(pack, [line.text for line in mine], settings), strict=True))
        for writer in writers:
            held = [line for line in mine if line.source == writer]
            rest = [line for line in mine if line.source != writer]
            if not held or not rest:
                continue
            trained = train(pack, rest, settings, [rows[line.id] for line in rest])
            with_model = replace(pack, model=trained.model)
            for line in held:
                out.append(HeldOut(line=line, pack=with_model, trained=trained,
                                   parts=detect_parts(with_model, line.text)))
    return out


def _target_values(results: Sequence[Result]) -> dict[str, float | None]:
    return {t["key"]: t["value"] for t in targets(results)}


def cv_report(packs: Mapping[str, RulePack], lines: Sequence[Line], files: Sequence[Path],
              settings: Settings | None = None) -> dict[str, Any]:
    """The cross-validation as one JSON-ready object: per held-out writer and language, rules
    with the model next to the rules alone; all held-out lines together (the usual report);
    and other levels."""
    from hearth.moderation.detector_train import DEFAULT_SETTINGS

    settings = settings or DEFAULT_SETTINGS
    held = cross_validate(packs, lines, settings)
    results = [h.result() for h in held]
    rules_alone = [Result(line=h.line, detection=h.parts.rules) for h in held]
    writers = sorted({h.line.source for h in held})
    languages = sorted({h.line.language for h in held})

    def row(keep: Any) -> dict[str, Any]:
        mine = [r for r in results if keep(r.line)]
        alone = [r for r in rules_alone if keep(r.line)]
        return {"lines": len(mine), "false_alarm_rate": figures(mine)["false_alarm_rate"],
                "rules_alone_false_alarm_rate": figures(alone)["false_alarm_rate"],
                "targets": _target_values(mine), "rules_alone": _target_values(alone)}

    rows = {}
    for writer in [*writers, None]:
        for language in [*languages, None]:
            rows[f"{writer or 'all'}/{language or 'all'}"] = row(
                lambda line, w=writer, lang=language: (w is None or line.source == w)
                and (lang is None or line.language == lang))
    chosen = settings.levels
    tries = [(fire, chosen["high"]) for fire in SWEEP_FIRE]
    tries += [(chosen["fire"], high) for high in SWEEP_HIGH if high != chosen["high"]]
    sweep = []
    for fire, high in tries:
        tried = [h.result({"fire": fire, "high": high}) for h in held]
        per_writer = [_target_values([r for r in tried if r.line.source == w]) for w in writers]
        sweep.append({"fire": fire, "high": high, "targets": _target_values(tried),
                      "false_alarm_rate": figures(tried)["false_alarm_rate"],
                      "worst_writer_recall": min(v["recall"] or 0.0 for v in per_writer),
                      "worst_writer_quiet": max(v["quiet"] or 0.0 for v in per_writer)})
    return {"cv": {"levels": dict(settings.levels), "rows": rows, "sweep": sweep},
            **report_results(packs, lines, files, results, model="held out")}


def format_cv(data: Mapping[str, Any]) -> str:
    """The cross-validation as terminal tables, then the report of every held-out line."""
    cv = data["cv"]
    levels = cv["levels"]
    heading = f"{'recall':>8}{'core':>8}{'quiet':>8}{'high':>8}{'all FA':>8}"
    out = ["Leave-one-writer-out cross-validation: each corpus file held out in turn, the model "
           "trained on the others",
           f"Levels (score units): fire {levels['fire']}, high {levels['high']}",
           "'core': recall on explicit, plan, means, imminent, attempt; 'quiet': false alarms on "
           "hyperbole, ordinary, recovery talk, quotes; 'high': plan, means, timeframe, attempt "
           "that came out high",
           "",
           f"{'held out / language':30}{'rules + model':>40} |{'rules alone':>40}",
           f"{'':30}{heading} |{heading}"]
    for name, r in cv["rows"].items():
        t, a = r["targets"], r["rules_alone"]
        out.append(f"  {name:28}{_pct(t['recall']):>8}{_pct(t['core_recall']):>8}"
                   f"{_pct(t['quiet']):>8}{_pct(t['core_high']):>8}"
                   f"{_pct(r['false_alarm_rate']):>8} |{_pct(a['recall']):>8}"
                   f"{_pct(a['core_recall']):>8}{_pct(a['quiet']):>8}{_pct(a['core_high']):>8}"
                   f"{_pct(r['rules_alone_false_alarm_rate']):>8}")
    out += ["", "Other levels, all held-out lines ('worst writer': the lowest recall and the "
                "highest quiet false alarms of one held-out file)",
            f"  {'fire':>5}{'high':>6}{heading}{'worst recall':>14}{'worst quiet':>13}"]
    for row in cv["sweep"]:
        t = row["targets"]
        out.append(f"  {row['fire']:>5g}{row['high']:>6g}{_pct(t['recall']):>8}"
                   f"{_pct(t['core_recall']):>8}{_pct(t['quiet']):>8}{_pct(t['core_high']):>8}"
                   f"{_pct(row['false_alarm_rate']):>8}{_pct(row['worst_writer_recall']):>14}"
                   f"{_pct(row['worst_writer_quiet']):>13}")
    out += ["", "All held-out lines, each through the model that did not see its writer", "",
            format_text(data)]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hearth.moderation.detector_eval",
        description="Recall, precision and false alarms of the on-device detector on a corpus.")
    parser.add_argument("--corpus", type=Path, action="append",
                        help=f"a .jsonl file or a directory of them (default: {DEFAULT_CORPUS})")
    parser.add_argument("--rules", type=Path, default=DEFAULT_RULES,
                        help="a directory of <language>.toml rule packs (default: the shipped ones)")
    parser.add_argument("--pack", type=Path, action="append", default=[],
                        help="one more rule pack file, its language from its name (fr.toml)")
    parser.add_argument("--language", action="append",
                        help="evaluate only this language (repeat for several)")
    parser.add_argument("--no-model", action="store_true",
                        help="the rules alone, without the models beside the packs")
    parser.add_argument("--cv", action="store_true",
                        help="leave-one-writer-out cross-validation: each corpus file held out "
                             "in turn, a model trained on the others (needs numpy)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    paths = args.corpus or (training_corpus() if args.cv else [DEFAULT_CORPUS])
    try:
        packs = load_packs(args.rules, args.pack, with_models=not (args.no_model or args.cv))
        lines = load_corpus(paths)
        if args.language:
            packs = {lang: p for lang, p in packs.items() if lang in args.language}
            lines = [line for line in lines if line.language in args.language]
        if not any(line.language in packs for line in lines):
            raise CorpusError("no corpus line has a pack for its language")
        files = corpus_files(paths)
        data = cv_report(packs, lines, files) if args.cv else report(packs, lines, files)
    except CorpusError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=1))
    else:
        print(format_cv(data) if args.cv else format_text(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
