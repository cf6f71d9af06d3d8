"""web/static/js/detector.js in Chromium gives exactly what moderation/detector.py gives.

The participant's own client runs the JS detector on decrypted text; facilitator
tooling and the tests run the Python one. They must agree to the rule id: on
every shared case, on every line of the evaluation corpus (tests/crisis/corpus/),
on a seeded corpus of generated texts, and on tricky Unicode.
The page is served on 127.0.0.1 and driven through tests/browser/runner.py (a
Playwright worker thread, every call raced against a timer), as the E2EE browser test's.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hearth.moderation.crisis_config import CrisisReference, pack_to_json, parse_rule_pack
from hearth.moderation.detector import (
    MODEL_HEADS,
    MODEL_RISK_ID,
    RulePack,
    detect,
    detect_parts,
    message_features,
    tokenize,
)
from hearth.moderation.detector_eval import DEFAULT_CORPUS, load_corpus
from tests.browser.runner import RunnerPage, runner_page
from tests.support.detector_cases import HOSTILE_TEXT, hostile_pack_data, load_cases

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
TEST_FILES = {"detector_page.html", "detector_runner.js"}


@pytest.fixture(scope="module")
def browser() -> Iterator[RunnerPage]:
    with runner_page(HERE, TEST_FILES, "detector_page.html") as page:
        yield page


@pytest.fixture(scope="module")
def packs_json(crisis: CrisisReference) -> dict[str, Any]:
    return {language: pack_to_json(pack) for language, pack in crisis.packs.items()}


def python_parts(packs: dict[str, RulePack], items: list[tuple[str, str]]) -> list[Any]:
    """detect_parts() as the runner's parts() reports it."""
    results = []
    for language, text in items:
        parts = detect_parts(packs[language], text)
        results.append({"rules": None if parts.rules is None else parts.rules.to_json(),
                        "ruled_out": parts.ruled_out,
                        "quiet": parts.quiet,
                        "sums": None if parts.scores is None else list(parts.scores.sums),
                        "count": None if parts.scores is None else parts.scores.count})
    return results


def assert_same_parts(browser: RunnerPage, packs: dict[str, RulePack], packs_json: dict[str, Any],
                      items: list[tuple[str, str]]) -> None:
    in_browser = browser.call("parts", packs_json, items)
    in_python = python_parts(packs, items)
    differing = [text for (_, text), js, py in zip(items, in_browser, in_python, strict=True)
                 if js != py]
    assert differing == []
    assert all(p["sums"] is not None for p in in_python if p["count"] is not None)


def python_results(packs: dict[str, RulePack], items: list[tuple[str, str]]) -> list[Any]:
    results = []
    for language, text in items:
        detection = detect(packs[language], text)
        results.append(None if detection is None else detection.to_json())
    return results


def test_every_shared_case_gives_the_same_detection(browser: RunnerPage, crisis: CrisisReference,
                                                    packs_json: dict[str, Any]) -> None:
    cases = load_cases()
    items = [(case["language"], case["text"]) for case in cases]
    in_browser = browser.call("run", packs_json, items)
    in_python = python_results(dict(crisis.packs), items)
    for case, js, py in zip(cases, in_browser, in_python, strict=True):
        assert js == py, case["text"]
        got = None if js is None else {"category": js["category"], "severity": js["severity"]}
        assert got == case.get("with_model", case["expect"]), case["text"]
    assert_same_parts(browser, dict(crisis.packs), packs_json, items)
    assert browser.page_errors == []


def test_the_evaluation_corpus_gives_the_same_detections(browser: RunnerPage, crisis: CrisisReference,
                                                         packs_json: dict[str, Any]) -> None:
    """Every line of every corpus file (the held-out third too, once it is added)."""
    lines = load_corpus([DEFAULT_CORPUS])
    assert len(lines) >= 748
    items = [(line.language, line.text) for line in lines]
    in_browser = browser.call("run", packs_json, items)
    in_python = python_results(dict(crisis.packs), items)
    differing = [line.id for line, js, py in zip(lines, in_browser, in_python, strict=True)
                 if js != py]
    assert differing == []
    assert sum(r is not None for r in in_python) > len(items) // 2  # the corpus really fires
    # ...and the model really takes part: lines only it finds, lines it lifts.
    assert sum(r is not None and r["rule_ids"][0] == MODEL_RISK_ID for r in in_python) > 100
    assert sum(r is not None and "model.high" in r["rule_ids"][1:] for r in in_python) > 20
    assert_same_parts(browser, dict(crisis.packs), packs_json, items)
    assert browser.page_errors == []


def _slips(word: str, rng: random.Random) -> str:
    """The word with one letter dropped, doubled or swapped, or one hidden by '*'."""
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    return rng.choice([word[:i] + word[i + 1:], word[:i] + word[i] + word[i:],
                       word[:i] + word[i + 1] + word[i] + word[i + 2:], word[:i] + "*" + word[i + 1:]])


def _corpus(packs: dict[str, RulePack], seed: int, count: int) -> list[tuple[str, str]]:
    """Texts made of the packs' own words, negations, numbers, emoji and punctuation: dense
    in near-misses, so the two matchers are compared where they could differ."""
    rng = random.Random(seed)
    noise = [",", ".", "!", "?", "¿", "¡", ";", ":", "\n", "—", "-", "'", "\u2019", "😂", "💊", "🤣",
             "1,000", "2.5", "40", "800mg", "  ", "lol", "jaja"]
    items = []
    for language, pack in sorted(packs.items()):
        vocabulary: set[str] = set(pack.negation_cues) | set(pack.negation_breaks) | set(pack.aliases)
        vocabulary.update(_slips(word, rng) for word in pack.typos)
        sets = [*((r.patterns) for r in pack.rules), *(e.patterns for e in pack.exceptions.values()),
                pack.negation_unless]
        for patterns in sets:
            for pattern in patterns:
                for slot in pattern.slots:
                    vocabulary.update(slot.words)
                    vocabulary.update(p + rng.choice(["", "ing", "s", "ed"]) for p in slot.prefixes)
                    vocabulary.update(str(rng.randint(1, 999)) + u for u in slot.numbers)
        words = sorted(vocabulary)
        for _ in range(count):
            parts = []
            for _ in range(rng.randint(1, 40)):
                piece = rng.choice(words) if rng.random() < 0.8 else rng.choice(noise)
                parts.append(piece.upper() if rng.random() < 0.1 else piece)
            items.append((language, " ".join(parts)))
    return items


def test_a_generated_corpus_gives_the_same_detections(browser: RunnerPage, crisis: CrisisReference,
                                                      packs_json: dict[str, Any]) -> None:
    items = _corpus(dict(crisis.packs), seed=20261107, count=400)
    in_browser = browser.call("run", packs_json, items)
    in_python = python_results(dict(crisis.packs), items)
    differing = [text for (_, text), js, py in zip(items, in_browser, in_python, strict=True)
                 if js != py]
    assert differing == []
    assert sum(r is not None for r in in_python) > len(items) // 4  # the corpus really fires
    assert_same_parts(browser, dict(crisis.packs), packs_json, items)


def test_a_model_with_a_weight_flipped_gives_the_same_new_result(
        browser: RunnerPage, crisis: CrisisReference, packs_json: dict[str, Any]) -> None:
    """Both read the weights the same way: flip the risk weights of a message the model alone
    finds, and both stop finding it (and still agree on every corpus line)."""
    lines = load_corpus([DEFAULT_CORPUS])
    pack = crisis.packs["en"]
    model = pack.model
    assert model is not None
    text = next(line.text for line in lines if line.language == "en"
                and (d := detect(pack, line.text)) is not None and d.rule_ids == (MODEL_RISK_ID,))
    weights = bytearray(model.weights)
    risk = MODEL_HEADS.index("risk")
    for b in message_features(pack, text, model.buckets, model.char_ngrams):
        at = b * len(MODEL_HEADS) + risk
        weights[at] = (-(weights[at] - 256 if weights[at] > 127 else weights[at])) & 0xFF
    flipped = dataclasses.replace(pack, model=dataclasses.replace(model, weights=bytes(weights)))
    assert detect(flipped, text) is None
    items = [("en", text), *((line.language, line.text) for line in lines if line.language == "en")]
    packs = {"en": flipped}
    in_browser = browser.call("run", {"en": pack_to_json(flipped)}, items)
    assert in_browser[0] is None
    assert in_browser == python_results(packs, items)


TRICKY = [
    "Don't DON\u2019T don\u02bct don\u00b4t", "VERGÜENZA mañana Ñandú", "İstanbul ΟΔΟΣ straße",
    "\uff18\uff10\uff10\uff4d\uff47 ①②",
    "1,000mg. 2.5mg, 3.mg ,4", "e\u0301 a\u0308 o\u0302", "👩‍👩‍👧 💊💊 ❤️ 🏳️‍🌈", "नमस्ते दुनिया",
    "한국어 テスト 中文", "tab\there\r\nnew…line", "¿Qué? ¡Sí! — no: ya", "x" * 300, "\u200b\u00ad",
    "ﬁnal ﬂow", "٣٤٥ pills", "ǅ ǈ Ǉ",
]


def test_tokens_are_the_same_on_tricky_unicode(browser: RunnerPage) -> None:
    in_browser = browser.call("tokens", TRICKY)
    in_python = [[[t.text, t.clause, t.sentence] for t in tokenize(text)] for text in TRICKY]
    for text, js, py in zip(TRICKY, in_browser, in_python, strict=True):
        assert js == py, text


def test_a_pack_sent_as_json_text_works(browser: RunnerPage, crisis: CrisisReference,
                                        packs_json: dict[str, Any]) -> None:
    texts = ["Quiero morirme esta noche.", "No quiero morir.", "Me muero de vergüenza."]
    got = browser.call("runFromText", json.dumps(packs_json["es"], ensure_ascii=False), texts)
    assert got == python_results(dict(crisis.packs), [("es", t) for t in texts])
    assert got[0]["severity"] == "high" and got[1] is None and got[2] is None


def test_to_wire_keeps_only_category_severity_pack_and_version(
        browser: RunnerPage, packs_json: dict[str, Any]) -> None:
    assert browser.call("wire", packs_json["en"], "I want to kill myself tonight") == {
        "category": "intent", "severity": "high", "pack": "hearth-en", "version": "3.5.0"}
    assert browser.call("wire", packs_json["en"], "see you next week") is None


def test_odd_arguments_detect_nothing(browser: RunnerPage, packs_json: dict[str, Any]) -> None:
    assert browser.call("oddArguments", packs_json["en"]) == [None] * 6


def test_large_texts_complete_in_the_browser(browser: RunnerPage,
                                             packs_json: dict[str, Any]) -> None:
    texts = ["kill myself " * 450, "a" * 5000, "💊" * 5000, "1," * 2500, "not " * 1250,
             "me quiero morir " * 300, "\U0001d518" * 5000]
    result = browser.call("large", packs_json["en"], texts)
    assert result["count"] == len(texts)


def test_a_hostile_pack_completes_in_the_browser(browser: RunnerPage) -> None:
    """Every limit of format 2 at once (see the unit test): the page stays responsive."""
    hostile = pack_to_json(parse_rule_pack(hostile_pack_data(), "hostile.toml"))
    result = browser.call("large", hostile, [HOSTILE_TEXT, HOSTILE_TEXT.upper()])
    assert result["count"] == 2
    assert browser.page_errors == []


def _slots(line: str) -> list[list[Any]]:
    """A pattern line ("want|wish ~2 die|dead*") as the list form's slots."""
    slots: list[list[Any]] = []
    gap = 0
    for part in line.split(" "):
        if part.startswith("~"):
            gap = int(part[1:])
            continue
        alternatives = part.split("|")
        slots.append([gap, [a for a in alternatives if not a.endswith("*") and not a.startswith("#")],
                      [a[:-1] for a in alternatives if a.endswith("*")],
                      [a[1:] for a in alternatives if a.startswith("#")]])
        gap = 0
    return slots


def list_form(pack: dict[str, Any]) -> dict[str, Any]:
    """A served pack as format 5 sent it: each pattern a list of [gap, words, prefixes, numbers]."""
    old = copy.deepcopy(pack)
    old["format"] = 5
    holders = [old["negation"], *old["exceptions"].values(), *old["rules"]]
    for holder in holders:
        key = "unless" if holder is old["negation"] else "patterns"
        holder[key] = [_slots(line) for line in holder[key]]
    return old


def _broken(pack: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(pack)
    *parents, last = path.split("/")
    target: Any = broken
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return broken


@pytest.mark.parametrize("path,value,fragment", [
    ("format", 2, "format: expected 6"),
    ("exceptions/see_you/quiets_model", "yes", "exceptions.see_you.quiets_model: expected true or false"),
    ("model/format", 2, "model.format: expected 1"),
    ("model/pack_version", "2.0.0", "model.pack_version: expected \"3.5.0\""),
    ("model/crc32", 12345, "model.crc32: expected the CRC-32 of the weights"),
    ("model/weights", "AAAA", "model.weights: expected 81920 bytes in base64"),
    ("model/buckets", 1000, "model.buckets: expected a power of two"),
    ("model/bias", [0, 0], "model.bias: expected 5 whole numbers"),
    ("model/levels/high", 1e9, "model.levels.high: expected a whole number"),
    ("model/levels/keep", 0, "model.levels: expected fire, high"),
    ("model/char_ngrams", [3, 9], "model.char_ngrams"),
    ("id", "", "id: expected a non-empty string"),
    ("negation/window", 99, "negation.window: expected a whole number from 0 to 8"),
    ("severity/category_cap", 0, "severity.category_cap: expected a whole number"),
    ("severity/combos/0/severity", "urgent", "severity.combos[0].severity"),
    ("rules/0/category", "other", "rules[0].category"),
    ("rules/0/weight", 1e9, "rules[0].weight"),
    ("rules/0/unless", ["nope"], "rules[0].unless[0]: expected an exception set of this pack"),
    ("rules/0/patterns", [], "rules[0].patterns: expected a non-empty list"),
    ("rules/0/patterns/0", [[0, ["a"], [], []]] * 9,
     "rules[0].patterns[0]: expected a list of 1 to 8 slots"),
    ("rules/0/patterns/0/1/0", 50, "rules[0].patterns[0][1].gap: expected a whole number from 0 to 5"),
    ("rules/0/patterns/0/0/0", 1, "rules[0].patterns[0][0].gap: expected a whole number from 0 to 0"),
    ("rules/0/patterns/0/0/1", ["x"] * 33,
     "rules[0].patterns[0][0].words: expected a list of at most 32"),
    ("rules/0/patterns/0/0/2", [""], "rules[0].patterns[0][0].prefixes[0]"),
    ("rules/0/patterns/0/0", {"gap": 0},
     "rules[0].patterns[0][0]: expected a slot [gap, words, prefixes, numbers]"),
    ("negation/window", 9, "negation.window: expected a whole number from 0 to 8"),
    ("rules/0/min_severity", "urgent", "rules[0].min_severity: expected null or low, medium, high"),
    ("rules/0/requires", ["nope"], "rules[0].requires[0]: expected a category or a rule id of this pack"),
    ("aliases", [], "aliases: expected an object"),
    ("typos/words", ["kill"], "typos.words[0]: expected a word of 5 to 32 letters"),
    ("exceptions/school/scope", "room", "exceptions.school.scope: expected clause, sentence, message"),
])
def test_a_bad_pack_is_refused_with_its_path(browser: RunnerPage, packs_json: dict[str, Any],
                                             path: str, value: Any, fragment: str) -> None:
    """In the list form of the patterns (format 5), where every slot has a path of its own."""
    error = browser.call("loadError", _broken(list_form(packs_json["en"]), path, value))
    assert error is not None and error.startswith("PackError: ") and fragment in error, error


@pytest.mark.parametrize("line,fragment", [
    ("want ~2", "expected a word after the last gap"),
    ("~2 want", "rules[0].patterns[0][0].gap: expected a whole number from 0 to 0"),
    ("want ~9 die", "rules[0].patterns[0][1].gap: expected a whole number from 0 to 5"),
    ("want ~x die", "expected a gap ~N before a word"),
    ("want ~2 ~3 die", "expected a gap ~N before a word"),
    ("want  die", "rules[0].patterns[0][1].words[0]"),
    ("want||wish", "rules[0].patterns[0][0].words[1]"),
    ("want *", "rules[0].patterns[0][1].prefixes[0]"),
    (" ".join(["a"] * 9), "rules[0].patterns[0]: expected a list of 1 to 8 slots"),
    ("|".join(["a"] * 33), "rules[0].patterns[0][0].words: expected a list of at most 32"),
    ("a" * 4001, "rules[0].patterns[0]: expected a compiled pattern of at most 4000"),
])
def test_a_bad_pattern_line_is_refused_with_its_path(
        browser: RunnerPage, packs_json: dict[str, Any], line: str, fragment: str) -> None:
    error = browser.call("loadError", _broken(packs_json["en"], "rules/0/patterns/0", line))
    assert error is not None and error.startswith("PackError: ") and fragment in error, error


def test_a_pack_served_in_the_list_form_still_loads_and_agrees(
        browser: RunnerPage, crisis: CrisisReference, packs_json: dict[str, Any]) -> None:
    """A page keeps a pack served before patterns went out as lines (format 5, one list per
    slot): it loads, and detects exactly what the pack in its line form does."""
    lines = load_corpus([DEFAULT_CORPUS])
    items = [(line.language, line.text) for line in lines][::3]
    old = {language: list_form(pack) for language, pack in packs_json.items()}
    assert old["en"]["format"] == 5 and isinstance(old["en"]["rules"][0]["patterns"][0], list)
    assert browser.call("run", old, items) == python_results(dict(crisis.packs), items)


def test_a_model_with_a_flipped_byte_is_refused(browser: RunnerPage,
                                                packs_json: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(packs_json["es"]["model"]["weights"]))
    raw[1234] ^= 0x40
    damaged = _broken(packs_json["es"], "model/weights", base64.b64encode(bytes(raw)).decode())
    error = browser.call("loadError", damaged)
    assert error is not None and "model.crc32: expected the CRC-32" in error, error


def test_garbage_packs_are_refused(browser: RunnerPage) -> None:
    for garbage in ("{not json", "[]", "null", 42):
        error = browser.call("loadError", garbage)
        assert error is not None and error.startswith("PackError: "), error
    assert browser.page_errors == []
