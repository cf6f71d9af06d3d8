"""Train the detector's model on the project's corpus: `python -m hearth.moderation.detector_train`.

For each rule pack with lines in the corpus, writes rules/<language>.model.json
beside it: a linear classifier over the features detector.model_features()
reads (each word, each pair of neighbouring words, the letter n-grams of each
word, and the pack's exception sets that matched), after the pack's own
normalisation and aliases, scaled by one over the square root of how many a
message has. Five heads: risk, high severity (every line), and the three
categories a detection of the model may report (risk lines only).

Each head is the sum of two simple models over the same features: logistic
regression fitted by a fixed number of Adam steps from zero (the few steps are
the regularisation) and naive Bayes log-count ratios. Both are deterministic:
no randomness, no threads; the same corpus and packs give the same bytes. The
weights are then rounded to signed bytes (each head's largest weight to 127),
and so are its bias and levels, so that Python and JavaScript read the model
with integer arithmetic and agree to the unit.

The settings below — features, steps, smoothing and the three levels — were
chosen by leave-one-writer-out cross-validation
(`python -m hearth.moderation.detector_eval --cv`), never by how the model
does on the lines it was trained on. numpy is needed here (the test extra),
never to run the detector.

`--check` trains and compares with the files instead of writing them: the
test suite uses it to prove the shipped models are what this script makes
of the shipped corpus and packs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hearth.moderation.crisis_config import MODEL_SUFFIX, model_to_json
from hearth.moderation.detector import (
    MODEL_CATEGORIES,
    MODEL_HEADS,
    Model,
    RulePack,
    message_features,
)
from hearth.moderation.detector_eval import (
    DEFAULT_RULES,
    TRAINING_FILES,
    CorpusError,
    Line,
    corpus_files,
    load_corpus,
    load_packs,
    training_corpus,
)

Floats = npt.NDArray[np.float64]

# Corpus category -> the category a detection of the model reports for it (CATEGORY_MAP in
# detector_eval says which ones fit; an attempt in progress is nearly always a means).
CATEGORY_TARGETS: Mapping[str, str] = {
    "means": "means_method",
    "attempt_in_progress": "means_method",
    "farewell": "farewell",
}


@dataclass(frozen=True, kw_only=True)
class Settings:
    """How a model is trained; the defaults are what cross-validation chose (docs/crisis.md)."""
    buckets: int = 1 << 14
    char_ngrams: tuple[int, int] = (3, 5)
    damping: int = 100  # added to a message's count of buckets (detector.ModelScores)
    steps: int = 150  # Adam steps from zero: fewer generalise better on new writers
    learning_rate: float = 0.1
    l2: float = 0.001
    smoothing: float = 0.1  # added to every count of the naive Bayes ratios
    # Where the heads are cut, in score units (bias + sum / sqrt(count)); see detector.combine.
    levels: Mapping[str, float] = field(default_factory=lambda: {
        "fire": 4.0, "high": -1.0})


DEFAULT_SETTINGS = Settings()


@dataclass(frozen=True, kw_only=True)
class Trained:
    """A trained model and, per head, how many weight units make one score unit."""
    model: Model
    scales: tuple[float, ...]

    def with_levels(self, levels: Mapping[str, float]) -> Model:
        """The same model cut at other levels (in score units): for the cross-validation's table."""
        return replace(self.model, levels=_levels(levels, self.scales))


def featurize(pack: RulePack, texts: Sequence[str], settings: Settings = DEFAULT_SETTINGS
              ) -> list[list[int]]:
    """Each text's buckets, exactly as the detector reads them at run time."""
    return [message_features(pack, text, settings.buckets, settings.char_ngrams) for text in texts]


def _design(rows: Sequence[Sequence[int]], damping: int
            ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], Floats]:
    """Row of each entry, bucket of each entry, and its value 1/sqrt(the row's count + damping)."""
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    row_of = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
    buckets = np.fromiter((b for r in rows for b in r), dtype=np.int64, count=int(counts.sum()))
    values = np.repeat(1.0 / np.sqrt(np.maximum(counts + damping, 1)), counts)
    return row_of, buckets, values


def fit_head(rows: Sequence[Sequence[int]], labels: Sequence[bool], settings: Settings
             ) -> tuple[Floats, float]:
    """One head: logistic regression (Adam, `steps` steps from zero) plus naive Bayes log-count
    ratios, over binary features scaled by 1/sqrt(count). Returns weights per bucket and bias."""
    n, size = len(rows), settings.buckets
    y = np.asarray(labels, dtype=np.float64)
    if n == 0 or y.min() == y.max():
        raise CorpusError("a head needs lines of both kinds to learn from (risk and none; "
                          "high and not; each category and the others)")
    row_of, buckets, values = _design(rows, settings.damping)
    w = np.zeros(size)
    b = 0.0
    m, v = np.zeros(size), np.zeros(size)
    mb = vb = 0.0
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(1, settings.steps + 1):
        z = np.bincount(row_of, weights=w[buckets] * values, minlength=n) + b
        residual = (1.0 / (1.0 + np.exp(-z)) - y) / n
        g = (np.bincount(buckets, weights=residual[row_of] * values, minlength=size)
             + settings.l2 * w / n)
        gb = float(residual.sum())
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        mb = beta1 * mb + (1 - beta1) * gb
        vb = beta2 * vb + (1 - beta2) * gb * gb
        step = settings.learning_rate / (1 - beta1 ** t)
        w -= step * m / (np.sqrt(v / (1 - beta2 ** t)) + eps)
        b -= step * mb / (math.sqrt(vb / (1 - beta2 ** t)) + eps)
    positive = np.full(size, settings.smoothing)
    negative = np.full(size, settings.smoothing)
    mask = y[row_of] > 0
    positive += np.bincount(buckets[mask], minlength=size)
    negative += np.bincount(buckets[~mask], minlength=size)
    ratios = np.log(positive / positive.sum()) - np.log(negative / negative.sum())
    return w + ratios, b


def _round(x: float) -> int:
    return math.floor(x + 0.5)


def _levels(levels: Mapping[str, float], scales: Sequence[float]) -> dict[str, int]:
    risk, high = scales[MODEL_HEADS.index("risk")], scales[MODEL_HEADS.index("high")]
    return {"fire": _round(levels["fire"] * risk), "high": _round(levels["high"] * high)}


def train(pack: RulePack, lines: Sequence[Line], settings: Settings = DEFAULT_SETTINGS,
          rows: Sequence[Sequence[int]] | None = None) -> Trained:
    """The model of `pack` trained on `lines` (its language's), with its scales.

    `rows` are the lines' features if already computed (featurize); they do not depend on
    which lines a model is trained on, so cross-validation computes them once."""
    if rows is None:
        rows = featurize(pack, [line.text for line in lines], settings)
    risk = [line.label == "risk" for line in lines]
    heads: list[tuple[Floats, float]] = [fit_head(rows, risk, settings)]
    at_risk = [i for i, r in enumerate(risk) if r]
    risk_rows = [rows[i] for i in at_risk]
    # High: a risk line that needs a high severity, against every other line (so that a false
    # alarm is seldom lifted to high).
    heads.append(fit_head(rows, [line.severity == "high" for line in lines], settings))
    targets = [CATEGORY_TARGETS.get(lines[i].category, "intent") for i in at_risk]
    heads += [fit_head(risk_rows, [t == category for t in targets], settings)
              for category in MODEL_CATEGORIES]
    # Each head's largest weight becomes 127; the category heads share one scale, as they are
    # compared with each other.
    largest = [float(np.abs(w).max()) or 1.0 for w, _ in heads]
    shared = max(largest[2:])
    scales = tuple(127.0 / (x if i < 2 else shared) for i, x in enumerate(largest))
    quantized = np.stack([np.clip(np.floor(w * s + 0.5), -127, 127)
                          for (w, _), s in zip(heads, scales, strict=True)], axis=1)
    model = Model(language=pack.language, pack=pack.id, pack_version=pack.version,
                  buckets=settings.buckets, char_ngrams=settings.char_ngrams,
                  damping=settings.damping,
                  bias=tuple(_round(b * s) for (_, b), s in zip(heads, scales, strict=True)),
                  levels=_levels(settings.levels, scales),
                  weights=quantized.astype(np.int8).tobytes(),
                  trained_on=tuple(sorted({line.source for line in lines})))
    return Trained(model=model, scales=scales)


def model_file(rules: Path, language: str) -> Path:
    return rules / f"{language}{MODEL_SUFFIX}"


def model_text(model: Model) -> str:
    """The file's text: one key a line (the weights are one long line), stable byte for byte."""
    data = model_to_json(model)
    lines = [f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}"
             for key, value in data.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def train_all(packs: Mapping[str, RulePack], lines: Sequence[Line],
              settings: Settings = DEFAULT_SETTINGS) -> dict[str, Model]:
    """A model for each pack that has lines in the corpus."""
    out = {}
    for language, pack in sorted(packs.items()):
        mine = [line for line in lines if line.language == language]
        if mine:
            out[language] = train(pack, mine, settings).model
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hearth.moderation.detector_train",
        description="Train the detector's model for each rule pack on a labelled corpus and "
                    "write <language>.model.json beside the pack.")
    parser.add_argument("--corpus", type=Path, action="append",
                        help="a .jsonl file or a directory of them (default: "
                             f"{', '.join(TRAINING_FILES)} in tests/crisis/corpus/)")
    parser.add_argument("--rules", type=Path, default=DEFAULT_RULES,
                        help="the directory of <language>.toml packs to train for and to write "
                             "the models into (default: the shipped ones)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing: exit 1 if a model file differs from what training "
                             "gives")
    args = parser.parse_args(argv)
    paths = args.corpus or training_corpus()
    try:
        packs = load_packs(args.rules, with_models=False)
        lines = load_corpus(paths)
        models = train_all(packs, lines)
    except CorpusError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not models:
        print("no corpus line has a pack for its language", file=sys.stderr)
        return 2
    files = ", ".join(f.name for f in corpus_files(paths))
    stale = []
    for language, model in models.items():
        path = model_file(args.rules, language)
        text = model_text(model)
        if args.check:
            current = path.read_text(encoding="utf-8") if path.exists() else None
            if current != text:
                stale.append(str(path))
            continue
        path.write_text(text, encoding="utf-8")
        print(f"{path}: {len(text.encode())} bytes, trained on {files}")
    if stale:
        print("differs from what training on the corpus gives (run python -m "
              "hearth.moderation.detector_train): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
