"""On-device crisis phrase detector: rule packs of safe patterns, matched in linear time.

Runs where the plaintext is (a participant's or a facilitator's client, and
facilitator tooling); the server never sees what it reads. A detection says
only *what kind* of risk and *how strong* — category, severity, the ids of the
rules that fired, pack and version — never the text or the matched words, so
nothing that leaves this module can leak the conversation.

Patterns are a small language of words, prefixes, numbers and bounded gaps
(docs/crisis.md), not regular expressions: a rule pack comes from a config
file, and a bad pack must not be able to hang a client. Every token is looked
up in an index once and each pattern keeps one "latest match" per slot, so
detection is linear in the length of the text whatever the pack says.

A pack may carry a small model trained on the project's own corpus
(moderation/detector_train.py): a linear classifier over hashed words, word
pairs and letter n-grams of the same tokens. Its weights are small integers
and it is read with integer arithmetic only, so this module and the browser
compute the same scores to the last unit. The rules are the floor: the model
never drops a rule detection nor lowers its severity, and stays silent where a
rule matched and was negated or excepted (hyperbole, other people, the past,
quotes; those exception sets are features of the model too). It adds what no
rule wrote down, and lifts severity.

web/static/js/detector.js is the same algorithm in the browser; the two are
kept identical by tests/crisis/cases.json and by the evaluation corpus in
tests/crisis/corpus/. Change both or neither.
"""

from __future__ import annotations

import unicodedata
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

# Categories, in the order that breaks ties when picking the one reported.
CATEGORIES = ("intent", "means_method", "harm_from_others", "farewell", "timeframe")
# A timeframe ("tonight") says when, not whether: it only counts next to another category.
MODIFIER_CATEGORIES = frozenset({"timeframe"})
SEVERITIES = ("low", "medium", "high")
# Where an exception set's match cancels a rule: the same clause, sentence, or anywhere.
SCOPES = ("clause", "sentence", "message")
# The shape of pack_to_json; the browser refuses a pack of another format (a stale cache).
PACK_FORMAT = 6

# Limits on one pattern: they bound the work per token, whatever a pack says.
MAX_PATTERN_CHARS = 300
MAX_SLOTS = 8
MAX_GAP = 5
MAX_ALTERNATIVES = 32
MIN_PREFIX = 3
MAX_NEGATION_WINDOW = 8
# An alias stands for one to four words ("kms" reads as "kill myself").
MAX_ALIAS_WORDS = 4
# One wrong, missing, extra or swapped letter is forgiven in a pack's typo words of at least
# MIN_TYPO_WORD letters, and only in tokens of MIN_TYPO_TOKEN to MAX_TYPO_TOKEN characters
# that are not themselves words of the pack.
MIN_TYPO_WORD = 5
MIN_TYPO_TOKEN = 4
MAX_TYPO_TOKEN = 32

# Dropped (straight, typographic and modifier apostrophes) so that "don't" and "dont" are one word.
APOSTROPHES = frozenset("'\u2019\u2018\u02bc`\u00b4")
# End a sentence (the scope of hyperbole exceptions) and a clause.
SENTENCE_BREAKS = frozenset(".!?;\u2026\n\r\u00a1\u00bf")
# End a clause only: no match and no negation reaches across one.
CLAUSE_BREAKS = frozenset(",:\u2013\u2014")
ASCII_DIGITS = frozenset("0123456789")
# Between two letters it stands for a hidden one ("s*icide") and stays in the word.
CENSOR = "*"


class PatternError(ValueError):
    """A pattern outside the language; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    clause: int
    sentence: int


def normalize(text: str) -> str:
    """Lowercase, strip accents and apostrophes: 'Vergüenza', 'verguenza' and 'VERGUENZA' agree."""
    text = unicodedata.normalize("NFKD", text.lower().replace("\u00b4", ""))
    return "".join(c for c in text if c not in APOSTROPHES and unicodedata.category(c) != "Mn")


def _word_char(c: str) -> bool:
    return unicodedata.category(c)[0] in "LNM"


def tokenize(text: str) -> list[Token]:
    """Words (letters, digits, marks), each symbol such as an emoji on its own, with clause and
    sentence numbers. '1,000' and '2.5' stay one number; 's*icide' stays one word."""
    chars = normalize(text)
    tokens: list[Token] = []
    word: list[str] = []
    clause = sentence = 0
    last = len(chars) - 1
    for i, c in enumerate(chars):
        category = unicodedata.category(c)
        if category[0] in "LNM" or (c == CENSOR and word and i < last and _word_char(chars[i + 1])):
            word.append(c)
            continue
        if (c in ",." and 0 < i < last and chars[i - 1] in ASCII_DIGITS
                and chars[i + 1] in ASCII_DIGITS):
            continue
        if word:
            tokens.append(Token("".join(word), clause, sentence))
            word = []
        if category == "So":
            tokens.append(Token(c, clause, sentence))
        elif c in SENTENCE_BREAKS:
            sentence += 1
            clause += 1
        elif c in CLAUSE_BREAKS:
            clause += 1
    if word:
        tokens.append(Token("".join(word), clause, sentence))
    return tokens


@dataclass(frozen=True, slots=True)
class Slot:
    """One position of a pattern: any of its alternatives matches one token."""
    gap: int  # at most this many other tokens between the previous slot and this one
    words: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()  # unit after the digits: "mg" for #mg, "" for a bare #


@dataclass(frozen=True, slots=True)
class Pattern:
    source: str
    slots: tuple[Slot, ...]


def parse_word(text: str, what: str = "word", symbols: bool = True) -> str:
    """One word as the detector sees it ("Don't" → "dont"), or PatternError if it is several."""
    word = normalize(text)
    tokens = tokenize(text)
    if len(tokens) != 1 or tokens[0].text != word:
        raise PatternError(f"one word per {what}, got {text!r} (write 'self harm', not 'self-harm')")
    if not symbols and unicodedata.category(word[0]) == "So":
        raise PatternError(f"letters or digits in {what}, got {text!r}")
    return word


def parse_pattern(source: str) -> Pattern:
    """Compile a pattern, or raise PatternError naming what was expected (docs/crisis.md)."""
    if len(source) > MAX_PATTERN_CHARS:
        raise PatternError(f"a pattern of at most {MAX_PATTERN_CHARS} characters, got {len(source)}")
    slots: list[Slot] = []
    gap = 0
    pending_gap = False
    for part in source.split():
        if part.startswith("~"):
            digits = part[1:]
            if not slots or pending_gap:
                raise PatternError(f"a gap (~N) only between two words, got {source!r}")
            if not digits or len(digits) > 2 or not set(digits) <= ASCII_DIGITS or not (
                    1 <= int(digits) <= MAX_GAP):
                raise PatternError(f"a gap from ~1 to ~{MAX_GAP}, got {part!r}")
            gap, pending_gap = int(digits), True
            continue
        slots.append(_parse_slot(part, gap))
        gap, pending_gap = 0, False
    if not slots:
        raise PatternError("at least one word")
    if pending_gap:
        raise PatternError(f"a word after the last gap, got {source!r}")
    if len(slots) > MAX_SLOTS:
        raise PatternError(f"at most {MAX_SLOTS} words, got {len(slots)}")
    return Pattern(source=source, slots=tuple(slots))


def _parse_slot(part: str, gap: int) -> Slot:
    alternatives = part.split("|")
    if len(alternatives) > MAX_ALTERNATIVES:
        raise PatternError(f"at most {MAX_ALTERNATIVES} alternatives a|b|c, got {len(alternatives)}")
    words: list[str] = []
    prefixes: list[str] = []
    numbers: list[str] = []
    for alt in alternatives:
        if not alt:
            raise PatternError(f"a word on both sides of '|', got {part!r}")
        if alt.startswith("#"):
            unit = alt[1:]
            if not unit:
                numbers.append("")
                continue
            if "*" in unit or "#" in unit:
                raise PatternError(f"a unit of letters after '#' (like #mg), got {alt!r}")
            unit = parse_word(unit, "unit after '#'", symbols=False)
            if unit[0] in ASCII_DIGITS:
                raise PatternError(f"a unit that starts with a letter after '#', got {alt!r}")
            numbers.append(unit)
        elif alt.endswith("*"):
            stem = alt[:-1]
            if "*" in stem or "#" in stem or not stem:
                raise PatternError(f"a word before a single trailing '*', got {alt!r}")
            stem = parse_word(stem, "prefix", symbols=False)
            if len(stem) < MIN_PREFIX:
                raise PatternError(f"at least {MIN_PREFIX} letters before '*', got {alt!r}")
            prefixes.append(stem)
        else:
            if "*" in alt or "#" in alt or "~" in alt:
                raise PatternError(f"'*' only at the end and '#' only at the start, got {alt!r}")
            words.append(parse_word(alt, "slot", symbols=True))
    return Slot(gap=gap, words=tuple(dict.fromkeys(words)), prefixes=tuple(dict.fromkeys(prefixes)),
                numbers=tuple(dict.fromkeys(numbers)))


@dataclass(frozen=True, kw_only=True)
class ExceptionSet:
    """Patterns that mark a match as hyperbole, past talk or talk about others, within the
    same clause, sentence or message."""
    name: str
    scope: str  # one of SCOPES
    patterns: tuple[Pattern, ...]
    # Where it matches, the model reports no detection of its own (it may still lift a rule's):
    # the ends of sessions, thanks and requests to the moderators are what people say every day.
    quiets_model: bool = False


@dataclass(frozen=True, kw_only=True)
class Rule:
    id: str
    patterns: tuple[Pattern, ...]
    category: str
    weight: int
    negatable: bool = True
    unless: tuple[str, ...] = ()  # names of exception sets
    # Counts only next to an independent rule (one without `requires`) that is one of these
    # rule ids or of one of these categories: "do it" says little alone and a lot next to
    # "once everyone is asleep".
    requires: tuple[str, ...] = ()
    # A detection it is part of is at least this severe (an attempt under way is high); it
    # does not make a detection by itself where the weights do not reach `low`.
    min_severity: str | None = None


@dataclass(frozen=True, kw_only=True)
class Combo:
    """All these categories present (and the score at least `medium`) lift severity to `severity`."""
    categories: tuple[str, ...]
    severity: str


@dataclass(frozen=True, kw_only=True)
class SeverityPolicy:
    low: int
    medium: int
    high: int
    # One kind of sign adds at most this much, however many rules of it fire: a phrase
    # that several rules match is not stronger evidence than one of them.
    category_cap: int
    combos: tuple[Combo, ...] = ()


# A candidate (matcher mi, slot si) is one number, mi * SLOT_CODES + (SLOT_CODES - 1 - si), so
# that ascending order is matcher by matcher, later slots first.
SLOT_CODES = 16


@dataclass(frozen=True)
class _Index:
    matchers: tuple[tuple[Slot, ...], ...]
    # word, prefix or number unit -> candidates, in ascending order
    words: Mapping[str, tuple[int, ...]]
    prefixes: Mapping[str, tuple[int, ...]]
    prefix_lengths: tuple[int, ...]
    numbers: Mapping[str, tuple[int, ...]]
    rule_matchers: tuple[tuple[int, ...], ...]
    exception_matchers: Mapping[str, tuple[int, ...]]
    negation_matchers: tuple[int, ...]
    # Per matcher, the words of its slots: a cue that is one of them is part of the phrase.
    matcher_words: tuple[frozenset[str], ...]
    # A typo word and each of its one-letter deletions -> the typo words they come from.
    typo_keys: Mapping[str, tuple[str, ...]]
    # Every word the pack knows: such a token is never read as a typo of another.
    vocabulary: frozenset[str]
    # Where each matcher's slots start in one flat list of all slots, and each slot's gap.
    slot_start: tuple[int, ...]
    gaps: tuple[int, ...]


# ---- the model ----------------------------------------------------------------------------
# A pack's optional model (docs/crisis.md, "The model"): integer weights per hashed feature and
# head, read with integer arithmetic only, so that detector.js computes the same to the unit.

MODEL_FORMAT = 1
# What the model says: whether there is risk, whether it is high, and (when no rule fired) which
# of these categories it is.
MODEL_HEADS = ("risk", "high", "intent", "means_method", "farewell")
MODEL_CATEGORIES = ("intent", "means_method", "farewell")
# Where its scores are cut: a detection of its own from `fire` on the risk head; from `high` on
# the high head, a detection in MODEL_CATEGORIES is lifted to high severity.
MODEL_LEVELS = ("fire", "high")
# Named in a detection's rule_ids ("why you are seeing this") when the model found or lifted it.
MODEL_RISK_ID = "model.risk"
MODEL_HIGH_ID = "model.high"
MIN_MODEL_BUCKETS = 1 << 8
MAX_MODEL_BUCKETS = 1 << 16
MAX_CHAR_NGRAM = 6
MAX_DAMPING = 1000
# Bias and levels stay within this, so that every product below stays exact in a JavaScript
# number (|sum| <= 127 * 2**16; (2 * 2**15)**2 * (2**16 + MAX_DAMPING) < 2**53).
MAX_MODEL_INT = 1 << 15

# FNV-1a, 32 bits, over the code points of a feature's text.
FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193


def fnv1a(text: str, h: int = FNV_OFFSET) -> int:
    for c in text:
        h = ((h ^ ord(c)) * FNV_PRIME) & 0xFFFFFFFF
    return h


_WORD_HASH = fnv1a("w ")
_PAIR_HASH = fnv1a("b ")
_NGRAM_HASH = fnv1a("c ")
_EXCEPTION_HASH = fnv1a("x ")


@dataclass(frozen=True, kw_only=True)
class Model:
    """A pack's trained model; build it with moderation.crisis_config, which validates."""
    language: str
    pack: str  # the id and version of the pack it was trained with, and belongs to
    pack_version: str
    buckets: int  # a power of two: features are hashed into this many
    char_ngrams: tuple[int, int]  # letter n-grams of "<word>", from this length to that
    # Added to a message's count of buckets before the square root: a message of a word or two
    # is not scored as if that word were all there is to know.
    damping: int
    bias: tuple[int, ...]  # per head (MODEL_HEADS), in weight units
    levels: Mapping[str, int]  # MODEL_LEVELS, in weight units
    weights: bytes  # signed bytes, bucket by bucket: weights[bucket * len(MODEL_HEADS) + head]
    trained_on: tuple[str, ...] = ()  # corpus files, for whoever reads the file
    _signed: array[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_signed", array("b", self.weights))


@dataclass(frozen=True, slots=True)
class ModelScores:
    """The sum of a message's bucket weights per head, and how many distinct buckets it has
    plus the model's damping.

    A head's score is bias + sum / sqrt(count): the square root keeps a long message from
    outweighing a short one. It is never computed: see reaches()."""
    sums: tuple[int, ...]
    count: int


@lru_cache(maxsize=16384)
def _word_hashes(word: str, low: int, high: int) -> tuple[int, ...]:
    """The hashes of a word ("w word") and of the letter n-grams of "<word>" ("c <wo", ...)."""
    out = [fnv1a(word, _WORD_HASH)]
    marked = f"<{word}>"
    for start in range(len(marked)):
        h = _NGRAM_HASH
        for end in range(start, min(len(marked), start + high)):
            h = ((h ^ ord(marked[end])) * FNV_PRIME) & 0xFFFFFFFF
            if end - start + 1 >= low:
                out.append(h)
    return tuple(out)


def model_features(tokens: Sequence[Token], exceptions: Iterable[str], buckets: int,
                   char_ngrams: tuple[int, int]) -> list[int]:
    """The distinct buckets of a message, ascending: each word, each pair of neighbouring words
    in a clause ("b word word"), the letter n-grams of each word, and the name of each
    exception set that matched anywhere in the message ("x past")."""
    mask = buckets - 1
    low, high = char_ngrams
    seen: set[int] = set()
    previous = None
    for token in tokens:
        seen.update(h & mask for h in _word_hashes(token.text, low, high))
        if previous is not None and previous.clause == token.clause:
            seen.add(fnv1a(f"{previous.text} {token.text}", _PAIR_HASH) & mask)
        previous = token
    seen.update(fnv1a(name, _EXCEPTION_HASH) & mask for name in exceptions)
    return sorted(seen)


def model_scores(model: Model, buckets: Sequence[int]) -> ModelScores:
    heads = len(MODEL_HEADS)
    sums = [0] * heads
    weights = model._signed
    for bucket in buckets:
        base = bucket * heads
        for head in range(heads):
            sums[head] += weights[base + head]
    return ModelScores(sums=tuple(sums), count=len(buckets) + model.damping)


def _squared(x: int) -> int:
    return x * abs(x)


def reaches(model: Model, scores: ModelScores, head: str, level: str) -> bool:
    """bias + sum / sqrt(count) >= level, in integers: sum >= (level - bias) * sqrt(count), both
    sides squared with their signs (x |x| is increasing, and maps a sqrt(count) to count)."""
    h = MODEL_HEADS.index(head)
    return (_squared(scores.sums[h])
            >= _squared(model.levels[level] - model.bias[h]) * scores.count)


def model_category(model: Model, scores: ModelScores) -> str:
    """The category head with the highest score; a tie goes to the earlier one."""
    index = MODEL_HEADS.index
    best = MODEL_CATEGORIES[0]
    for category in MODEL_CATEGORIES[1:]:
        c, b = index(category), index(best)
        # bias_c + sum_c / sqrt(n) > bias_b + sum_b / sqrt(n), in integers as in reaches()
        if (_squared(scores.sums[c] - scores.sums[b])
                > _squared(model.bias[b] - model.bias[c]) * scores.count):
            best = category
    return best


@dataclass(frozen=True, kw_only=True)
class RulePack:
    """A language's rules, compiled; build it with moderation.crisis_config, which validates."""
    id: str
    language: str
    version: str
    negation_cues: frozenset[str]
    negation_window: int
    exceptions: Mapping[str, ExceptionSet]
    rules: tuple[Rule, ...]
    severity: SeverityPolicy
    # Words that end a negation's reach ("not ok but I want to die").
    negation_breaks: frozenset[str] = frozenset()
    # A cue inside one of these matches is not a negation ("I don't know if I want to live").
    negation_unless: tuple[Pattern, ...] = ()
    # A token that reads as other words: "kms" -> ("kill", "myself"), "kiero" -> ("quiero",).
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Words matched despite one wrong, missing, extra or swapped letter ("myslef").
    typos: tuple[str, ...] = ()
    # Real words never read as a typo of a typo word.
    not_typos: frozenset[str] = frozenset()
    # The pack's trained model, if it has one (rules/<language>.model.json).
    model: Model | None = None
    _index: _Index = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", _build_index(self))


def _deletions(word: str) -> list[str]:
    return [word[:i] + word[i + 1:] for i in range(len(word))]


def _build_index(pack: RulePack) -> _Index:
    matchers: list[tuple[Slot, ...]] = []
    words: dict[str, list[int]] = {}
    prefixes: dict[str, list[int]] = {}
    numbers: dict[str, list[int]] = {}

    def add(pattern: Pattern) -> int:
        mi = len(matchers)
        matchers.append(pattern.slots)
        for si, slot in enumerate(pattern.slots):
            code = mi * SLOT_CODES + (SLOT_CODES - 1 - si)
            for w in slot.words:
                words.setdefault(w, []).append(code)
            for p in slot.prefixes:
                prefixes.setdefault(p, []).append(code)
            for n in slot.numbers:
                numbers.setdefault(n, []).append(code)
        return mi

    rule_matchers = tuple(tuple(add(p) for p in rule.patterns) for rule in pack.rules)
    exception_matchers = {name: tuple(add(p) for p in es.patterns)
                          for name, es in pack.exceptions.items()}
    negation_matchers = tuple(add(p) for p in pack.negation_unless)
    typo_keys: dict[str, set[str]] = {}
    for typo in pack.typos:
        for key in (typo, *_deletions(typo)):
            typo_keys.setdefault(key, set()).add(typo)
    vocabulary = {*words, *pack.negation_cues, *pack.negation_breaks, *pack.typos,
                  *pack.not_typos}
    for expansion in pack.aliases.values():
        vocabulary.update(expansion)
    slot_start = [0]
    for slots in matchers:
        slot_start.append(slot_start[-1] + len(slots))
    return _Index(matchers=tuple(matchers),
                  words={k: tuple(sorted(v)) for k, v in words.items()},
                  prefixes={k: tuple(sorted(v)) for k, v in prefixes.items()},
                  prefix_lengths=tuple(sorted({len(p) for p in prefixes})),
                  numbers={k: tuple(sorted(v)) for k, v in numbers.items()},
                  rule_matchers=rule_matchers, exception_matchers=exception_matchers,
                  negation_matchers=negation_matchers,
                  matcher_words=tuple(frozenset(w for slot in slots for w in slot.words)
                                      for slots in matchers),
                  typo_keys={k: tuple(sorted(v)) for k, v in typo_keys.items()},
                  vocabulary=frozenset(vocabulary), slot_start=tuple(slot_start),
                  gaps=tuple(slot.gap for slots in matchers for slot in slots))


@dataclass(frozen=True, kw_only=True)
class Detection:
    """What a detection may say: never the text, never the matched words."""
    category: str
    severity: str
    rule_ids: tuple[str, ...]  # for "why you are seeing this" on the device; not for the server
    pack: str
    version: str

    def to_json(self) -> dict[str, Any]:
        """The same shape as detect() in detector.js."""
        return {"category": self.category, "severity": self.severity,
                "rule_ids": list(self.rule_ids), "pack": self.pack, "version": self.version}

    def to_wire(self) -> dict[str, str]:
        """All the server may receive: category, severity, pack and version."""
        return {"category": self.category, "severity": self.severity, "pack": self.pack,
                "version": self.version}


def read(pack: RulePack, text: str) -> list[Token]:
    """The tokens of `text` as `pack` reads them: tokenized, each alias replaced by its words."""
    tokens = tokenize(text)
    if not pack.aliases:
        return tokens
    out: list[Token] = []
    for token in tokens:
        expansion = pack.aliases.get(token.text)
        if expansion is None:
            out.append(token)
        else:
            out.extend(Token(word, token.clause, token.sentence) for word in expansion)
    return out


def typo_words(pack: RulePack, text: str) -> tuple[str, ...]:
    """The typo words `text` is one slip away from (none if it is a word of the pack)."""
    index = pack._index
    if (not index.typo_keys or text in index.vocabulary
            or not MIN_TYPO_TOKEN <= len(text) <= MAX_TYPO_TOKEN):
        return ()
    found: set[str] = set()
    for key in (text, *_deletions(text)):
        found.update(index.typo_keys.get(key, ()))
    return tuple(sorted(found))


def _candidates(index: _Index, text: str, into: list[tuple[int, ...]]) -> None:
    """The candidate lists of every word and prefix of `text`."""
    listed = index.words.get(text)
    if listed:
        into.append(listed)
    for length in index.prefix_lengths:
        if length > len(text):
            break
        found = index.prefixes.get(text[:length])
        if found:
            into.append(found)


def _scan(pack: RulePack, tokens: Sequence[Token]) -> list[list[tuple[int, int]]]:
    """Every (start, end) token span where each matcher completes, left to right.

    For each slot only the latest position where the pattern up to that slot
    matched is kept: with gaps that bound distance from the left, a later end
    never allows less than an earlier one, so one pass suffices.
    """
    index = pack._index
    slot_start, gaps = index.slot_start, index.gaps
    last_end = [-1] * len(gaps)
    last_start = [-1] * len(gaps)
    found: list[list[tuple[int, int]]] = [[] for _ in index.matchers]
    for p, token in enumerate(tokens):
        text = token.text
        lists: list[tuple[int, ...]] = []
        _candidates(index, text, lists)
        for typo in typo_words(pack, text):
            _candidates(index, typo, lists)
        digits = 0
        while digits < len(text) and text[digits] in ASCII_DIGITS:
            digits += 1
        if digits:
            units = index.numbers.get(text[digits:])
            if units:
                lists.append(units)
        if not lists:
            continue
        # Later slots first, so one token never fills two neighbouring slots: each list is
        # already in that order; several are merged and sorted.
        candidates = lists[0] if len(lists) == 1 else sorted({c for li in lists for c in li})
        for code in candidates:
            mi, rest = divmod(code, SLOT_CODES)
            at = slot_start[mi] + SLOT_CODES - 1 - rest
            if at == slot_start[mi]:
                start = p
            else:
                prev = last_end[at - 1]
                if prev < 0 or p - prev - 1 > gaps[at] or tokens[prev].clause != token.clause:
                    continue
                start = last_start[at - 1]
            last_end[at] = p
            last_start[at] = start
            if at == slot_start[mi + 1] - 1:
                found[mi].append((start, p))
    return found


def _negated(pack: RulePack, tokens: Sequence[Token], mi: int, start: int, end: int,
             excused: set[int]) -> bool:
    """A cue inside the match that is not one of its words (a gap skipped over it), or a cue
    within the window before it, in its clause, with no break word between them."""
    own = pack._index.matcher_words[mi]
    for i in range(start + 1, end):
        text = tokens[i].text
        if text in pack.negation_cues and text not in own and i not in excused:
            return True
    clause = tokens[start].clause
    for i in range(start - 1, max(-1, start - 1 - pack.negation_window), -1):
        token = tokens[i]
        if token.clause != clause or token.text in pack.negation_breaks:
            return False
        if token.text in pack.negation_cues and i not in excused:
            return True
    return False


def detect(pack: RulePack, text: str) -> Detection | None:
    """The strongest risk in `text` under `pack`, or None. Never returns or keeps the text."""
    return combine(pack, pack.model, detect_parts(pack, text))


@dataclass(frozen=True, slots=True)
class Parts:
    """What the rules and the pack's model say of a message, before combine() weighs them."""
    rules: Detection | None = None
    scores: ModelScores | None = None
    # A rule matched, and the rules themselves ruled it out: every match negated or excepted
    # ("I don't want to die", "homework, I want to die"). A sign that needs company and lacks
    # it ("enough" without a means) rules nothing out: the model may still speak.
    ruled_out: bool = False
    # An exception set that quiets the model matched ("goodnight all, see you Thursday").
    quiet: bool = False


def detect_parts(pack: RulePack, text: str) -> Parts:
    """What the rules detect and what the pack's model scores, before combine() weighs them
    (the evaluation tries other levels on the same parts)."""
    if not isinstance(text, str) or not text:
        return Parts()
    tokens = read(pack, text)
    if not tokens:
        return Parts()
    found = _rules_pass(pack, tokens)
    model = pack.model
    scores = None if model is None else model_scores(
        model, model_features(tokens, found.excepted, model.buckets, model.char_ngrams))
    quiet = any(pack.exceptions[name].quiets_model for name in found.excepted)
    return Parts(rules=_judge(pack, found.kept), scores=scores, ruled_out=found.ruled_out,
                 quiet=quiet)


@dataclass(frozen=True, slots=True)
class _Found:
    """What the rules found in a message: the exception sets that matched, the rules that count
    (not negated nor excepted, and with the company they require), and whether a rule was ruled
    out by a negation or an exception."""
    excepted: tuple[str, ...]
    kept: tuple[Rule, ...]
    ruled_out: bool


def _rules_pass(pack: RulePack, tokens: Sequence[Token]) -> _Found:
    index = pack._index
    found = _scan(pack, tokens)

    excused: set[int] = set()
    for mi in index.negation_matchers:
        for start, end in found[mi]:
            excused.update(range(start, end + 1))

    # Per exception set: the clauses and sentences where it matched, and whether anywhere.
    excepted: dict[str, tuple[set[int], set[int]]] = {}
    excepted_message: set[str] = set()
    for name, matcher_ids in index.exception_matchers.items():
        starts = [start for mi in matcher_ids for start, _ in found[mi]]
        if starts:
            excepted[name] = ({tokens[s].clause for s in starts},
                              {tokens[s].sentence for s in starts})
            if pack.exceptions[name].scope == "message":
                excepted_message.add(name)

    def excepted_at(rule: Rule, start: int) -> bool:
        for name in rule.unless:
            if name not in excepted:
                continue
            if pack.exceptions[name].scope == "clause":
                if tokens[start].clause in excepted[name][0]:
                    return True
            elif tokens[start].sentence in excepted[name][1]:
                return True
        return False

    fired: list[Rule] = []
    ruled_out = False
    for rule, matcher_ids in zip(pack.rules, index.rule_matchers, strict=True):
        matches = [(mi, start, end) for mi in matcher_ids for start, end in found[mi]]
        if not matches:
            continue
        if any(name in excepted_message for name in rule.unless):
            ruled_out = True
            continue
        if any(not (rule.negatable and _negated(pack, tokens, mi, start, end, excused))
               and not excepted_at(rule, start) for mi, start, end in matches):
            fired.append(rule)
        else:
            ruled_out = True
    independent = {name for rule in fired if not rule.requires for name in (rule.category, rule.id)}
    kept = [rule for rule in fired if not rule.requires or any(c in independent for c in rule.requires)]
    return _Found(excepted=tuple(excepted), kept=tuple(kept), ruled_out=ruled_out)


def message_features(pack: RulePack, text: str, buckets: int, char_ngrams: tuple[int, int]
                     ) -> list[int]:
    """The buckets a model of this shape would read in `text` under `pack` (for training)."""
    tokens = read(pack, text)
    if not tokens:
        return []
    return model_features(tokens, _rules_pass(pack, tokens).excepted, buckets, char_ngrams)


def _judge(pack: RulePack, fired: Sequence[Rule]) -> Detection | None:
    """Severity from summed weights, co-occurring categories and floors (docs/crisis.md)."""
    policy = pack.severity
    weights: dict[str, int] = {}
    for rule in fired:
        weights[rule.category] = min(policy.category_cap,
                                     weights.get(rule.category, 0) + rule.weight)
    main = [c for c in CATEGORIES if c in weights and c not in MODIFIER_CATEGORIES]
    # A time says when, not whether: it adds to severity, never makes a detection.
    if sum(weights[c] for c in main) < policy.low:
        return None
    score = sum(weights.values())
    rank = 2 if score >= policy.high else 1 if score >= policy.medium else 0 if score >= policy.low \
        else -1
    if score >= policy.medium:
        for combo in policy.combos:
            if all(c in weights for c in combo.categories):
                rank = max(rank, SEVERITIES.index(combo.severity))
    if rank < 0:
        return None
    for rule in fired:
        if rule.min_severity is not None:
            rank = max(rank, SEVERITIES.index(rule.min_severity))
    category = max(main, key=lambda c: (weights[c], -CATEGORIES.index(c)))
    return Detection(category=category, severity=SEVERITIES[rank],
                     rule_ids=tuple(rule.id for rule in fired), pack=pack.id, version=pack.version)


def combine(pack: RulePack, model: Model | None, parts: Parts) -> Detection | None:
    """The rules' detection weighed by the model (docs/crisis.md, "The model").

    The rules are the floor: the model never drops a rule detection nor lowers its severity.
    When no rule fired, no rule was ruled out by negation or an exception ("I don't want
    to die", "my grandfather died") and no exception set that quiets the model matched
    ("goodnight all"), the model reports a medium detection of its own from its `fire` level
    on; a detection in one of its categories whose high head reaches `high` is lifted to high
    severity."""
    found, scores = parts.rules, parts.scores
    if model is None or scores is None:
        return found
    if found is None:
        if parts.ruled_out or parts.quiet or not reaches(model, scores, "risk", "fire"):
            return None
        found = Detection(category=model_category(model, scores), severity="medium",
                          rule_ids=(MODEL_RISK_ID,), pack=pack.id, version=pack.version)
    if (found.severity != "high" and found.category in MODEL_CATEGORIES
            and reaches(model, scores, "high", "high")):
        found = Detection(category=found.category, severity="high",
                          rule_ids=(*found.rule_ids, MODEL_HIGH_ID), pack=found.pack,
                          version=found.version)
    return found
