"""The Python detector: every shared case, the pattern language, severity, and bad input.

The detector reads what people in distress write, so two things matter as much
as accuracy: it must never hand the text on (a detection holds only fixed
strings from the pack), and it must never hang or raise, whatever it is given.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.moderation.crisis_config import CrisisReference, pack_to_json, parse_rule_pack
from hearth.moderation.detector import (
    CATEGORIES,
    MODEL_HIGH_ID,
    MODEL_RISK_ID,
    PACK_FORMAT,
    SEVERITIES,
    Detection,
    PatternError,
    RulePack,
    detect,
    normalize,
    parse_pattern,
    read,
    tokenize,
    typo_words,
)
from tests.support.detector_cases import HOSTILE_TEXT, case_id, hostile_pack_data, load_cases

CASES = load_cases()
KINDS = ("negation", "hyperbole", "ordinary", "intent", "means", "timeframe", "farewell",
         "harm_from_others")


def _brief(detection: Detection | None) -> dict[str, str] | None:
    return None if detection is None else {"category": detection.category,
                                           "severity": detection.severity}


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_every_shared_case(crisis: CrisisReference, case: dict[str, Any]) -> None:
    """`expect` is what the rules alone give; `with_model`, where the shipped model changes
    it, what the detector gives with the model (each such case says why in model_note)."""
    pack = crisis.packs[case["language"]]
    rules_alone = detect(dataclasses.replace(pack, model=None), case["text"])
    assert _brief(rules_alone) == case["expect"], (rules_alone, case.get("note"))
    detection = detect(pack, case["text"])
    assert _brief(detection) == case.get("with_model", case["expect"]), (detection,
                                                                         case.get("model_note"))


def test_cases_cover_every_kind_in_every_language() -> None:
    per_language = Counter(case["language"] for case in CASES)
    assert per_language["en"] >= 40 and per_language["es"] >= 40
    for language in ("en", "es"):
        kinds = Counter(c["kind"] for c in CASES if c["language"] == language)
        assert set(kinds) == set(KINDS), language
        assert kinds["ordinary"] >= 10  # talk that must not fire outweighs any single kind
    for case in CASES:
        for key in ("expect", "with_model"):
            if case.get(key) is not None:
                assert case[key]["category"] in CATEGORIES
                assert case[key]["severity"] in SEVERITIES
        assert ("with_model" in case) == ("model_note" in case)


def test_every_category_and_severity_is_exercised() -> None:
    seen = {(c["expect"]["category"], c["expect"]["severity"]) for c in CASES if c["expect"]}
    assert {cat for cat, _ in seen} == set(CATEGORIES) - {"timeframe"}
    assert {sev for _, sev in seen} == set(SEVERITIES)


# ---- what a detection may carry ------------------------------------------------

def _assert_textless(pack: RulePack, detection: Detection | None) -> None:
    if detection is None:
        return
    rule_ids = {rule.id for rule in pack.rules}
    if pack.model is not None:
        rule_ids |= {MODEL_RISK_ID, MODEL_HIGH_ID}
    assert detection.category in CATEGORIES and detection.category != "timeframe"
    assert detection.severity in SEVERITIES
    assert set(detection.rule_ids) <= rule_ids and detection.rule_ids
    assert (detection.pack, detection.version) == (pack.id, pack.version)
    assert detection.to_wire() == {"category": detection.category, "severity": detection.severity,
                                   "pack": pack.id, "version": pack.version}


def test_a_detection_holds_only_fixed_strings_from_the_pack(crisis: CrisisReference) -> None:
    for case in CASES:
        pack = crisis.packs[case["language"]]
        detection = detect(pack, case["text"])
        _assert_textless(pack, detection)
        if detection is not None:
            assert case["text"] not in json.dumps(detection.to_json(), ensure_ascii=False)


VOCABULARY = ["kill", "myself", "not", "no", "never", "want", "to", "die", "tonight", "pills", "800mg",
              "40", "goodbye", "everyone", "homework", "lol", "he", "me", "quiero", "morir",
              "matarme", "esta", "noche", "pastillas", "vergüenza", "adiós", "todos", "💊", "😂",
              ",", ".", "!", "¿", "\n", "'", "\u2019", "1,000", "#", "*", "~3", "|"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=5000),
                 st.lists(st.sampled_from(VOCABULARY), max_size=800).map(" ".join)))
def test_detect_never_raises_and_leaks_nothing_on_arbitrary_text(crisis: CrisisReference,
                                                                 text: str) -> None:
    """Any text up to 5,000 characters completes (the matcher is one pass) and yields
    either nothing or fixed strings from the pack."""
    for pack in crisis.packs.values():
        _assert_textless(pack, detect(pack, text))


@pytest.mark.parametrize("text", [
    "kill myself " * 450, "a" * 5000, "💊" * 5000, "1," * 2500, "not " * 1250, "9" * 4998 + "mg",
    "me quiero morir " * 300, ("goodbye everyone, " * 300)[:5000], "\u0301" * 5000, "İ" * 5000,
], ids=["repeat", "one-word", "emoji", "numbers", "negations", "long-number", "es-repeat",
        "clauses", "combining", "dotted-i"])
def test_adversarial_texts_complete(crisis: CrisisReference, text: str) -> None:
    for pack in crisis.packs.values():
        _assert_textless(pack, detect(pack, text))


def test_empty_and_wordless_text_detect_nothing(crisis: CrisisReference) -> None:
    for text in ("", "   ", "...!!!", "\n\n"):
        assert detect(crisis.packs["en"], text) is None


# ---- normalising and tokens ---------------------------------------------------------

def test_normalize_folds_case_accents_and_apostrophes() -> None:
    assert normalize("Vergüenza MAÑANA") == "verguenza manana"
    assert normalize("Don't DON\u2019T don\u02bct don\u00b4t") == "dont dont dont dont"
    assert normalize("İ") == "i"


def test_tokens_carry_clauses_and_sentences() -> None:
    tokens = tokenize("No, I took 1,000mg. 💊💊 ok")
    assert [t.text for t in tokens] == ["no", "i", "took", "1000mg", "💊", "💊", "ok"]
    assert [t.clause for t in tokens] == [0, 1, 1, 1, 2, 2, 2]
    assert [t.sentence for t in tokens] == [0, 0, 0, 0, 1, 1, 1]
    assert [t.text for t in tokenize("self-harm 2.5mg ¿qué?")] == ["self", "harm", "25mg", "que"]


# ---- the pattern language -----------------------------------------------------------

def test_patterns_compile_to_normalised_slots() -> None:
    pattern = parse_pattern("Don't ~2 kill*|HURT #mg|# 💊")
    assert [(s.gap, s.words, s.prefixes, s.numbers) for s in pattern.slots] == [
        (0, ("dont",), (), ()), (2, ("hurt",), ("kill",), ()), (0, (), (), ("mg", "")),
        (0, ("💊",), (), ())]


@pytest.mark.parametrize("source,fragment", [
    ("", "at least one word"),
    ("~2 die", "a gap (~N) only between two words"),
    ("want ~2", "a word after the last gap"),
    ("want ~2 ~2 die", "a gap (~N) only between two words"),
    ("want ~9 die", "a gap from ~1 to ~5"),
    ("want ~x die", "a gap from ~1 to ~5"),
    ("self-harm", "one word per slot"),
    ("ab*", "at least 3 letters before '*'"),
    ("k*ll", "'*' only at the end"),
    ("kill**", "a word before a single trailing '*'"),
    ("#5", "a unit that starts with a letter"),
    ("#m*", "a unit of letters after '#'"),
    ("want|", "a word on both sides of '|'"),
    ("a b c d e f g h i", "at most 8 words"),
    ("x" * 301, "at most 300 characters"),
    ("|".join(f"w{i}" for i in range(33)), "at most 32 alternatives"),
    ("💊*", "letters or digits in prefix"),
])
def test_bad_patterns_say_what_was_expected(source: str, fragment: str) -> None:
    with pytest.raises(PatternError) as caught:
        parse_pattern(source)
    assert fragment in str(caught.value)


# ---- matching semantics, on small packs ---------------------------------------------

def pack(rules: list[dict[str, Any]], **extra: Any) -> RulePack:
    data: dict[str, Any] = {
        "id": "test", "language": "en", "version": "1.0.0",
        "negation": {"cues": ["not", "never"], "window": 2},
        "severity": {"low": 3, "medium": 5, "high": 8, "category_cap": 6,
                     "combos": [{"categories": ["intent", "timeframe"], "severity": "high"}]},
        "rules": rules, **extra}
    return parse_rule_pack(data, "test.toml")


def fired(p: RulePack, text: str) -> tuple[str, ...]:
    detection = detect(p, text)
    return () if detection is None else detection.rule_ids


def test_gaps_are_bounded_and_matches_stay_in_their_clause() -> None:
    p = pack([{"id": "a", "category": "intent", "weight": 5, "patterns": ["want ~2 die"]}])
    assert fired(p, "I want to die") == ("a",)
    assert fired(p, "I want just to die") == ("a",)
    assert fired(p, "I want so much to die") == ()  # three words between
    assert fired(p, "I want, to die") == ()  # a clause break
    assert fired(p, "want want x x die") == ("a",)  # the latest 'want' is within reach


def test_latest_start_keeps_gaps_honest() -> None:
    """'aa ~2 bb cc' on 'aa bb xx bb cc': the earliest 'bb' fails, the later one succeeds."""
    p = pack([{"id": "a", "category": "intent", "weight": 5, "patterns": ["aa ~2 bb cc"]}])
    assert fired(p, "aa bb xx bb cc") == ("a",)
    assert fired(p, "aa xx yy zz bb cc") == ()


def test_negation_looks_back_a_window_within_the_clause() -> None:
    p = pack([{"id": "a", "category": "intent", "weight": 5, "patterns": ["kill* myself"]},
              {"id": "b", "category": "intent", "weight": 5, "negatable": False,
               "patterns": ["end it"]}])
    assert fired(p, "I will not kill myself") == ()
    assert fired(p, "not going to kill myself") == ("a",)  # 'not' is 3 words back; window is 2
    assert fired(p, "not, kill myself") == ("a",)  # another clause
    assert fired(p, "never end it") == ("b",)  # not negatable


def test_exceptions_apply_to_the_sentence_or_the_message() -> None:
    p = pack([{"id": "a", "category": "intent", "weight": 5, "patterns": ["want to die"],
               "unless": ["school", "leaving"]}],
             exceptions={"school": {"scope": "sentence", "patterns": ["homework"]},
                         "leaving": {"scope": "message", "patterns": ["see you"]}})
    assert fired(p, "homework, I want to die") == ()  # a comma does not end the sentence
    assert fired(p, "Homework. I want to die") == ("a",)
    assert fired(p, "I want to die. See you") == ()


def test_severity_from_capped_weights_combos_and_modifiers() -> None:
    p = pack([{"id": "w1", "category": "intent", "weight": 5, "patterns": ["die"]},
              {"id": "w2", "category": "intent", "weight": 5, "patterns": ["dead"]},
              {"id": "m", "category": "means_method", "weight": 3, "patterns": ["pills"]},
              {"id": "t", "category": "timeframe", "weight": 1, "patterns": ["tonight"]},
              {"id": "low", "category": "farewell", "weight": 2, "patterns": ["bye"]}])
    assert detect(p, "tonight") is None  # a timeframe alone is not a sign
    assert detect(p, "bye") is None  # below `low`
    assert detect(p, "bye tonight") is None  # a time adds to severity, never makes a detection
    assert detect(p, "bye pills").severity == "medium"  # type: ignore[union-attr]
    assert detect(p, "die").severity == "medium"  # type: ignore[union-attr]
    both = detect(p, "die dead")  # 10, capped at 6: one kind of sign stays medium
    assert both is not None and both.severity == "medium" and both.rule_ids == ("w1", "w2")
    combo = detect(p, "die tonight")  # 6 >= medium, and intent + timeframe
    assert combo is not None and combo.severity == "high"
    mixed = detect(p, "die pills")  # 5 + 3 = 8 reaches high
    assert mixed is not None and (mixed.category, mixed.severity) == ("intent", "high")
    tie = pack([{"id": "f", "category": "farewell", "weight": 3, "patterns": ["bye"]},
                {"id": "m", "category": "means_method", "weight": 3, "patterns": ["pills"]}])
    assert detect(tie, "pills bye").category == "means_method"  # type: ignore[union-attr]


def test_prefixes_and_numbers_match_whole_tokens() -> None:
    p = pack([{"id": "a", "category": "means_method", "weight": 3,
               "patterns": ["overdos*", "#mg", "# pills"]}])
    assert fired(p, "overdose") == fired(p, "OVERDOSING") == ("a",)
    assert fired(p, "overdo") == ()
    assert fired(p, "800mg") == fired(p, "1,000mg") == fired(p, "20 pills") == ("a",)
    assert fired(p, "mg") == fired(p, "800mgs") == fired(p, "twenty pills") == ()


# ---- what the packs of format 2 add ------------------------------------------------

def test_aliases_read_a_word_as_other_words_before_matching() -> None:
    p = pack([{"id": "a", "category": "intent", "weight": 5, "patterns": ["kill myself"]},
              {"id": "b", "category": "intent", "weight": 5, "patterns": ["quiero morir"]}],
             aliases={"kill myself": ["kms"], "quiero": ["kiero", "qiero"]})
    assert fired(p, "gonna kms fr") == ("a",)
    assert fired(p, "KIERO morir") == fired(p, "qiero morir") == ("b",)
    assert fired(p, "not kms") == ()  # the reading is negated like the words themselves
    assert [t.text for t in read(p, "kms, ok")] == ["kill", "myself", "ok"]
    assert [t.clause for t in read(p, "kms, ok")] == [0, 0, 1]


def test_typos_forgive_one_slip_in_listed_words_only() -> None:
    p = pack([{"id": "a", "category": "intent", "weight": 5, "patterns": ["kill myself"]},
              {"id": "b", "category": "intent", "weight": 5, "patterns": ["suicidarme"]},
              {"id": "x", "category": "intent", "weight": 5, "patterns": ["suicidarse"]}],
             typos={"words": ["myself", "suicidarme"], "not": ["suicidarte"]})
    for slip in ("myslef", "mysef", "myselff", "mzself", "my*elf"):  # swap, drop, add, change, hide
        assert fired(p, f"kill {slip}") == ("a",), slip
    assert fired(p, "kill mslf") == ()  # two letters away
    assert fired(p, "kill my") == ()  # too short to be read as a slip
    assert fired(p, "suisidarme") == ("b",)
    assert fired(p, "suicidarte") == ()  # listed under `not`: a real word, another person
    assert fired(p, "suicidarse") == ("x",)  # a word of the pack is itself, never a slip
    assert typo_words(p, "suisidarme") == ("suicidarme",)
    assert typo_words(p, "suicidarse") == ()


def test_a_censored_letter_stays_inside_the_word() -> None:
    assert [t.text for t in tokenize("s*icide *word* 5*3 x*")] == ["s*icide", "word", "5*3", "x"]


def test_negation_reaches_over_the_clause_until_a_break_word() -> None:
    p = pack([{"id": "a", "category": "intent", "weight": 5, "patterns": ["want to die"]}],
             negation={"cues": ["not", "dont"], "window": 8, "breaks": ["and", "but"],
                       "unless": ["dont know"]})
    assert fired(p, "I do not have any wish or want to die") == ()  # six words back
    assert fired(p, "I am not ok and I want to die") == ("a",)  # 'and' ends its reach
    assert fired(p, "I dont know if I want to die") == ("a",)  # 'dont know' is not a negation


def test_a_negation_skipped_by_a_gap_negates_unless_it_is_a_word_of_the_pattern() -> None:
    p = pack([{"id": "a", "category": "intent", "weight": 5, "patterns": ["have ~3 to hurt"]},
              {"id": "b", "category": "intent", "weight": 5, "patterns": ["not ~1 want to live"]}])
    assert fired(p, "I have a plan to hurt") == ("a",)
    assert fired(p, "I have not got to hurt") == ()  # 'not' inside the gap
    assert fired(p, "I do not want to live") == ("b",)  # 'not' is the pattern's own word


def test_exceptions_in_the_same_clause_only() -> None:
    p = pack([{"id": "a", "category": "intent", "weight": 5, "patterns": ["want to die"],
               "unless": ["others"]}],
             exceptions={"others": {"scope": "clause", "patterns": ["she says"]}})
    assert fired(p, "she says she wants to die and I want to die") == ()
    assert fired(p, "she says hello, I want to die") == ("a",)  # another clause, same sentence


def test_requires_a_category_or_a_rule_beside_it() -> None:
    p = pack([{"id": "do", "category": "intent", "weight": 3, "min_severity": "high",
               "patterns": ["do it"], "requires": ["alone", "means_method"]},
              {"id": "alone", "category": "timeframe", "weight": 3, "patterns": ["everyone asleep"]},
              {"id": "tonight", "category": "timeframe", "weight": 2, "patterns": ["tonight"]},
              {"id": "pills", "category": "means_method", "weight": 2, "patterns": ["pills"]},
              {"id": "chain", "category": "means_method", "weight": 5, "patterns": ["chain"],
               "requires": ["do"]}])
    assert detect(p, "do it") is None
    assert detect(p, "do it tonight") is None  # 'tonight' is not what it requires
    both = detect(p, "once everyone asleep do it")
    assert both is not None and (both.rule_ids, both.severity) == (("do", "alone"), "high")
    assert fired(p, "do it pills") == ("do", "pills")  # a category does too
    assert fired(p, "do it chain") == ()  # a requiring rule never satisfies another


def test_a_floor_lifts_a_detection_but_never_makes_one() -> None:
    p = pack([{"id": "took", "category": "means_method", "weight": 2, "min_severity": "high",
               "patterns": ["took them"]},
              {"id": "sorry", "category": "farewell", "weight": 2, "patterns": ["sorry"]},
              {"id": "all", "category": "means_method", "weight": 5, "min_severity": "high",
               "patterns": ["took all"]}])
    assert detect(p, "took them") is None  # 2 is below low
    lifted = detect(p, "took them. sorry")
    assert lifted is not None and lifted.severity == "high"  # 4 is low; the floor lifts it
    alone = detect(p, "took all")
    assert alone is not None and (alone.category, alone.severity) == ("means_method", "high")


def test_format_3_keys_survive_json_for_the_browser(crisis: CrisisReference) -> None:
    data = pack_to_json(crisis.packs["en"])
    assert data["format"] == PACK_FORMAT == 6
    assert data["model"]["pack_version"] == data["version"]
    assert data["aliases"]["kms"] == ["kill", "myself"]
    assert set(data["negation"]) == {"cues", "window", "breaks", "unless"}
    assert all(isinstance(p, str) for rule in data["rules"] for p in rule["patterns"])


def test_a_served_pattern_line_names_gaps_prefixes_and_numbers() -> None:
    """pack_to_json sends each compiled pattern as one normalised line that detector.js splits:
    '~N ' before a slot with a gap, 'stem*' a prefix, '#unit' a number, '|' between alternatives."""
    data = pack_to_json(pack([{"id": "a", "category": "intent", "weight": 5, "patterns": [
        "Took|SWALLOWED ~2 #MG|# ~1 pill*|Tablet*", "Don't ~5 Vergüenza"]}]))
    assert data["rules"][0]["patterns"] == ["took|swallowed ~2 #mg|# ~1 pill*|tablet*",
                                            "dont ~5 verguenza"]


def test_a_hostile_pack_of_format_2_stays_bounded() -> None:
    """Every limit at once, every token a candidate: detection completes (the work per token
    is bounded by the pack, whatever it says) and still says only fixed strings."""
    hostile = parse_rule_pack(hostile_pack_data(), "hostile.toml")
    tokens = tokenize(HOSTILE_TEXT)
    variants = sum(token.text in hostile.aliases for token in tokens)
    assert variants > 300 and len(read(hostile, HOSTILE_TEXT)) == len(tokens) + 3 * variants
    detection = detect(hostile, HOSTILE_TEXT)
    assert detection is None or set(detection.rule_ids) <= {r.id for r in hostile.rules}
