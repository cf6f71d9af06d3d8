"""Crisis reference data: helplines, detector rule packs and escalation timers, checked at load.

config/crisis/ holds three kinds of file (docs/crisis.md): helplines.toml,
rules/<language>.toml and escalation.toml. They are untrusted input like
config/hearth.toml, and wrong crisis data hurts people, so loading follows
spaces/config.py: every problem is collected, each naming the file, the key
and what was expected, and unknown keys are errors. A retired helpline number
or "committed suicide" in participant-facing text is refused outright. A rule
pack may have a trained model beside it (rules/<language>.model.json, written
by moderation/detector_train.py); it is checked as strictly, down to the
checksum of its weights, and belongs to one version of its pack.

`parse_rule_pack` takes parsed TOML and does no I/O; `load_crisis` reads the
files. Escalation is read straight into the incident desk's own `Escalation`
and `Tier` (moderation/incidents.py). The `*_to_json` functions give the
browser what it caches at join: the helpline card and the rule packs that
web/static/js/detector.js runs on decrypted text.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import tomllib
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, cast

from hearth.moderation.detector import (
    CATEGORIES,
    MAX_ALIAS_WORDS,
    MAX_CHAR_NGRAM,
    MAX_DAMPING,
    MAX_MODEL_BUCKETS,
    MAX_MODEL_INT,
    MAX_NEGATION_WINDOW,
    MAX_TYPO_TOKEN,
    MIN_MODEL_BUCKETS,
    MIN_TYPO_WORD,
    MODEL_FORMAT,
    MODEL_HEADS,
    MODEL_LEVELS,
    MODIFIER_CATEGORIES,
    PACK_FORMAT,
    SCOPES,
    SEVERITIES,
    Combo,
    ExceptionSet,
    Model,
    Pattern,
    PatternError,
    Rule,
    RulePack,
    SeverityPolicy,
    Slot,
    normalize,
    parse_pattern,
    parse_word,
)
from hearth.moderation.incidents import DEFAULT_ESCALATION, Escalation, Notify, Tier
from hearth.spaces.config import TEXT_LOCALES, ConfigError, HearthConfig, TableReader, describe
from hearth.spaces.wording import counted

SHIPPED_CRISIS = Path(__file__).resolve().parent.parent / "config" / "crisis"
JSON_FORMAT = 1  # bumped when the JSON the browser caches changes shape

CONFIDENCE = ("official", "reported", "unverified")
CONTACT_KINDS = ("call", "text", "call_or_text", "whatsapp", "web")
HOURS = ("24/7", "varies")
# Who a tier may tell in escalation.toml (a tier's participant_prompt asks the person, the
# incident desk's "participant_prompt"), and the two schedules the file sets.
NOTIFY = ("room_facilitators", "on_duty_facilitators", "on_call_webhook", "secondary_on_call",
          "admin")
IF_NOT = ("acknowledged", "engaged")
PROMPTS = ("helpline_card", "call_helpline_now")
SCHEDULE_TABLES = ("help_button", "detector_or_flag")

# Numbers that must never be shown again, by their digits (without a leading + or 1).
RETIRED_NUMBERS = {
    "8002738255": "the former US National Suicide Prevention Lifeline 1-800 number, replaced by "
                  "988 in 2022: list 988 instead",
}

_COUNTRY = re.compile(r"^[A-Z]{2}\Z")
_PHONE = re.compile(r"^[+*]?[0-9][0-9 \-]{0,19}\Z")  # "*4141": a mobile short code
_KEYWORD = re.compile(r"^[A-Z0-9]{1,20}\Z")
_DOMAIN = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)+(/[A-Za-z0-9._~/-]*)?\Z")
_LANGUAGE = re.compile(r"^[a-z]{2,3}\Z")
_MONTH = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])\Z")
_PACK_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}\Z")
_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}\Z")
_SET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}\Z")
_VERSION = re.compile(r"^[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}\Z")
# Safe-messaging: "died by suicide", never "committed suicide" (in either language).
_UNSAFE = re.compile(r"\b(commit\w*\s+suicide|comet\w*\s+(el\s+)?suicidio)\b")

MAX_RULES = 500
MAX_PATTERNS_PER_RULE = 60
MAX_PATTERNS_PER_PACK = 3000
MAX_ALIASES = 2000
MAX_TYPOS = 500
# A pack's model: rules/<language>.model.json. The shipped ones are about 110 KB; a file this
# large is not a model of this format (and would not fit the page's budget anyway).
MODEL_SUFFIX = ".model.json"
MAX_MODEL_BYTES = 600_000
RETRAIN = ("train it again (python -m hearth.moderation.detector_train), or remove the file "
           "to run the rules alone")


# ---- helplines --------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Contact:
    kind: str  # call, text, call_or_text, whatsapp, web
    number: str = ""  # as written on the card: "116 123"
    dial: str = ""  # what a tel:/sms: link dials: "116123" (WhatsApp: with the country code)
    keyword: str = ""  # for texts: "HOME" to 741741
    url: str = ""  # for web: a bare domain, "findahelpline.com"


@dataclass(frozen=True, kw_only=True)
class EmergencyNumber:
    number: str
    dial: str
    source: Mapping[str, str]  # by locale
    last_verified: str  # YYYY-MM
    confidence: str


@dataclass(frozen=True, kw_only=True)
class Service:
    name: str
    contacts: tuple[Contact, ...]
    hours: str
    languages: tuple[str, ...]
    note: Mapping[str, str] | None
    source: Mapping[str, str]  # by locale
    last_verified: str  # YYYY-MM
    confidence: str


@dataclass(frozen=True, kw_only=True)
class Country:
    code: str  # ISO 3166-1 alpha-2, or "international"
    name: Mapping[str, str]  # by locale
    emergency: EmergencyNumber | None
    services: tuple[Service, ...]


@dataclass(frozen=True, kw_only=True)
class Helplines:
    countries: Mapping[str, Country]
    international: Country

    def for_country(self, code: str) -> Country:
        """The country's card, or the international directories when it has none."""
        return self.countries.get(code, self.international)


@dataclass(frozen=True, kw_only=True)
class CrisisReference:
    """Everything config/crisis/ holds, checked (the [crisis] section of hearth.toml, which
    says where it is, is spaces.config.CrisisReference)."""
    directory: str
    helplines: Helplines
    packs: Mapping[str, RulePack] = field(default_factory=dict)  # by language
    escalation: Escalation  # what the incident desk runs (moderation/incidents.py)


# ---- reading helpers --------------------------------------------------------

def _choice(r: TableReader, name: str, options: Sequence[str], default: str | None) -> str:
    value = r.text(name, default, 60)
    if r.has(name) and isinstance(r.table.get(name), str) and value not in options:
        r.fail(name, f"one of {', '.join(options)}, got {value!r}")
    return value


def _safe_text(r: TableReader, name: str, value: str) -> None:
    if _UNSAFE.search(normalize(value)):
        r.fail(name, "safe-messaging language: say 'died by suicide', never 'committed suicide'")


def _list(r: TableReader, name: str, what: str, required: bool, max_items: int) -> list[Any]:
    if not r.has(name):
        r.seen.add(name)
        if required:
            r.fail(name, f"{what} (this key is required)")
        return []
    value = r.raw(name)
    if not isinstance(value, list) or (required and not value):
        r.fail(name, f"{what}, got {describe(value)}")
        return []
    if len(value) > max_items:
        r.fail(name, f"at most {max_items} items, got {len(value)}")
        return value[:max_items]
    return value


def _month(r: TableReader, name: str) -> str:
    value = r.text(name, None, 7)
    if value and not _MONTH.match(value):
        r.fail(name, f"a year and month like \"2026-11\", got {value!r}")
    return value


def _phone(r: TableReader, name: str) -> tuple[str, str]:
    number = r.text(name, None, 24)
    if not number:
        return "", ""
    if not _PHONE.match(number):
        r.fail(name, f"a phone number of digits, spaces and '-' (like \"116 123\"), got {number!r}")
        return number, ""
    dial = number.replace(" ", "").replace("-", "")
    digits = dial.lstrip("+")
    for retired, why in RETIRED_NUMBERS.items():
        if digits == retired or digits == "1" + retired:
            r.fail(name, f"a current number, not {why}")
    return number, dial


def _localized(r: TableReader, name: str, required: bool, max_len: int) -> dict[str, str] | None:
    if not r.has(name):
        r.seen.add(name)
        if required:
            r.fail(name, "a table { " + ", ".join(f'{loc} = "..."' for loc in TEXT_LOCALES)
                   + " } (this key is required)")
        return None
    t = TableReader(r.source, r.key(name), r.raw(name), r.problems)
    texts = {}
    for loc in TEXT_LOCALES:
        texts[loc] = t.text(loc, None, max_len)
        _safe_text(t, loc, texts[loc])
    t.done()
    return texts


def _provenance(r: TableReader) -> tuple[Mapping[str, str], str, str]:
    source = _localized(r, "source", required=True, max_len=200) or {}
    last_verified = _month(r, "last_verified")
    confidence = _choice(r, "confidence", CONFIDENCE, None)
    return source, last_verified, confidence


def _contact(r: TableReader) -> Contact:
    kind = _choice(r, "kind", CONTACT_KINDS, None)
    if kind == "web":
        url = r.text("url", None, 120)
        if url and not _DOMAIN.match(url):
            r.fail("url", f"a bare domain the organisation is known by, like \"findahelpline.com\" "
                          f"(no scheme), got {url!r}")
        r.done()
        return Contact(kind=kind, url=url)
    number, dial = _phone(r, "number")
    if kind == "whatsapp" and number and not number.startswith("+"):
        r.fail("number", f"the number with its country code, like \"+57 300 000 0000\", got "
                         f"{number!r}")
    keyword = ""
    if r.has("keyword"):
        keyword = r.text("keyword", "", 20)
        if kind not in ("text", "call_or_text"):
            r.fail("keyword", f"no keyword for a contact of kind {kind!r} (only texts have one)")
        elif not _KEYWORD.match(keyword):
            r.fail("keyword", f"capital letters and digits (like \"HOME\"), got {keyword!r}")
    r.done()
    return Contact(kind=kind, number=number, dial=dial, keyword=keyword)


def _service(r: TableReader) -> Service:
    name = r.text("name", None, 120)
    _safe_text(r, "name", name)
    contacts = []
    for i, item in enumerate(_list(r, "contacts", "a non-empty list of contacts like "
                                   "{ kind = \"call\", number = \"116 123\" }", True, 10)):
        contacts.append(_contact(TableReader(r.source, f"{r.key('contacts')}[{i}]", item, r.problems)))
    hours = _choice(r, "hours", HOURS, None)
    languages = r.strings("languages", (), _LANGUAGE, "an ISO 639-1 language code like \"en\"")
    note = _localized(r, "note", required=False, max_len=300)
    source, last_verified, confidence = _provenance(r)
    r.done()
    return Service(name=name, contacts=tuple(contacts), hours=hours, languages=languages, note=note,
                   source=source, last_verified=last_verified, confidence=confidence)


def _country(r: TableReader, code: str, international: bool) -> Country:
    name = _localized(r, "name", required=True, max_len=80) or {}
    emergency = None
    if international:
        pass  # an "emergency" key is reported as unknown by r.done()
    elif not r.has("emergency"):
        r.seen.add("emergency")
        r.fail("emergency", "a table { number = \"112\", source = \"...\", last_verified = "
                            "\"2026-11\", confidence = \"official\" } (this key is required)")
    else:
        e = TableReader(r.source, r.key("emergency"), r.raw("emergency"), r.problems)
        number, dial = _phone(e, "number")
        source, last_verified, confidence = _provenance(e)
        e.done()
        emergency = EmergencyNumber(number=number, dial=dial, source=source,
                                    last_verified=last_verified, confidence=confidence)
    services = tuple(
        _service(TableReader(r.source, f"{r.key('services')}[{i}]", item, r.problems))
        for i, item in enumerate(_list(r, "services", "a non-empty list of [[...services]] tables",
                                       True, 20)))
    r.done()
    return Country(code=code, name=name, emergency=emergency, services=services)


def _strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from _strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings_in(v)


def _helplines(data: Any, source: str, problems: list[str]) -> Helplines:
    top = TableReader(source, "", data, problems)
    # A retired number is refused wherever it hides: a note, a name, a source.
    for text in _strings_in(top.table):
        digits = "".join(c for c in text if c.isdigit())
        for retired, why in RETIRED_NUMBERS.items():
            if retired in digits:
                problems.append(f"{source}: contains a retired number ({why})")
    c = TableReader(source, "countries", top.raw("countries"), problems)
    countries: dict[str, Country] = {}
    for code in c.table:
        c.seen.add(code)
        if code == "UK":
            c.fail(code, "ISO 3166-1 alpha-2 code GB for the United Kingdom, got 'UK'")
        elif not _COUNTRY.match(code):
            c.fail(code, f"an ISO 3166-1 alpha-2 country code like \"IE\", got {code!r}")
        countries[code] = _country(TableReader(source, c.key(code), c.raw(code), problems), code, False)
    c.done()
    if top.has("international"):
        international = _country(TableReader(source, "international", top.raw("international"),
                                         problems), "international", True)
    else:
        top.fail("international", "an [international] table with worldwide directories "
                                  "(the card for any country not listed)")
        international = Country(code="international", name={}, emergency=None, services=())
    top.done()
    return Helplines(countries=countries, international=international)


# ---- rule packs -------------------------------------------------------------

def _patterns(r: TableReader, name: str, max_items: int) -> tuple[Pattern, ...]:
    patterns = []
    items = _list(r, name, "a non-empty list of patterns (docs/crisis.md)", True, max_items)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            r.fail(f"{name}[{i}]", f"a pattern string, got {describe(item)}")
            continue
        try:
            patterns.append(parse_pattern(item))
        except PatternError as exc:
            r.fail(f"{name}[{i}]", str(exc))
    return tuple(patterns)


def _severity(r: TableReader) -> SeverityPolicy:
    low = r.integer("low", 3, 1, 1000)
    medium = r.integer("medium", 5, 1, 1000)
    high = r.integer("high", 8, 1, 1000)
    if not low <= medium <= high:
        r.fail("medium", f"low <= medium <= high, got {low}, {medium}, {high}")
    cap = r.integer("category_cap", high, 1, 1000)
    if cap < low:
        r.fail("category_cap", f"at least low ({low}), or no single kind of sign could fire, got {cap}")
    combos = []
    for i, item in enumerate(_list(r, "combos", "a list of { categories = [...], severity = ... }",
                                   False, 50)):
        k = TableReader(r.source, f"{r.key('combos')}[{i}]", item, r.problems)
        categories = k.strings("categories", (), None, "category names")
        if len(categories) < 2 or len(set(categories)) != len(categories):
            k.fail("categories", f"two or more different categories, got {list(categories)!r}")
        for j, cat in enumerate(categories):
            if cat not in CATEGORIES:
                k.fail(f"categories[{j}]", f"one of {', '.join(CATEGORIES)}, got {cat!r}")
        severity = _choice(k, "severity", SEVERITIES, None)
        k.done()
        combos.append(Combo(categories=categories, severity=severity))
    r.done()
    return SeverityPolicy(low=low, medium=medium, high=high, category_cap=cap, combos=tuple(combos))


def _rule_pack(data: Any, source: str, problems: list[str], language: str | None) -> RulePack:
    top = TableReader(source, "", data, problems)
    pack_id = top.text("id", None, 64)
    if pack_id and not _PACK_ID.match(pack_id):
        top.fail("id", f"lowercase letters, digits, '.', '_' and '-', got {pack_id!r}")
    lang = top.text("language", None, 3)
    if lang and not _LANGUAGE.match(lang):
        top.fail("language", f"an ISO 639-1 language code like \"en\", got {lang!r}")
    elif lang and language is not None and lang != language:
        top.fail("language", f"{language!r}, the name of the file, got {lang!r}")
    version = top.text("version", None, 14)
    if version and not _VERSION.match(version):
        top.fail("version", f"a version like \"1.0.0\", got {version!r}")
    top.text("description", "", 300)

    n = TableReader(source, "negation", top.raw("negation") or {}, problems)
    cues = _words(n, "cues", "single words like \"not\"", 200)
    window = n.integer("window", 3, 0, MAX_NEGATION_WINDOW)
    breaks = _words(n, "breaks", "single words like \"but\"", 200)
    negation_unless = _patterns(n, "unless", 100) if n.has("unless") else ()
    n.done()
    aliases = _aliases(TableReader(source, "aliases", top.raw("aliases") or {}, problems))
    typos, not_typos = _typos(TableReader(source, "typos", top.raw("typos") or {}, problems))

    severity = _severity(TableReader(source, "severity", top.raw("severity") or {}, problems))

    x = TableReader(source, "exceptions", top.raw("exceptions") or {}, problems)
    exceptions: dict[str, ExceptionSet] = {}
    total = 0
    for name in x.table:
        x.seen.add(name)
        if not _SET_NAME.match(name):
            x.fail(name, f"a set name of lowercase letters, digits and '_', got {name!r}")
        e = TableReader(source, x.key(name), x.raw(name), problems)
        scope = _choice(e, "scope", SCOPES, "sentence")
        patterns = _patterns(e, "patterns", 50)
        quiets_model = e.boolean("quiets_model", False)
        total += len(patterns)
        e.done()
        exceptions[name] = ExceptionSet(name=name, scope=scope, patterns=patterns,
                                        quiets_model=quiets_model)
    x.done()

    rules: list[Rule] = []
    seen_ids: set[str] = set()
    raw_rules = _list(top, "rules", "a non-empty list of [[rules]] tables", True, MAX_RULES)
    for i, item in enumerate(raw_rules):
        r = TableReader(source, f"rules[{i}]", item, problems)
        rid = r.text("id", None, 80)
        if rid and not _RULE_ID.match(rid):
            r.fail("id", f"lowercase letters, digits, '.', '_' and '-', got {rid!r}")
        elif rid in seen_ids:
            r.fail("id", f"a unique rule id, but {rid!r} is used twice")
        seen_ids.add(rid)
        category = _choice(r, "category", CATEGORIES, None)
        weight = r.integer("weight", 1, 1, 100)
        patterns = _patterns(r, "patterns", MAX_PATTERNS_PER_RULE)
        total += len(patterns)
        negatable = r.boolean("negatable", True)
        unless = r.strings("unless", (), None, "names of [exceptions.NAME] sets")
        for j, set_name in enumerate(unless):
            if set_name not in exceptions:
                r.fail(f"unless[{j}]", f"the name of an [exceptions.NAME] set in this file, "
                                       f"got {set_name!r}")
        requires = r.strings("requires", (), None, "categories or rule ids")
        if len(requires) > 50:
            r.fail("requires", f"at most 50 categories or rule ids, got {len(requires)}")
        min_severity = _choice(r, "min_severity", SEVERITIES, "") or None
        r.done()
        rules.append(Rule(id=rid, patterns=patterns, category=category, weight=weight,
                          negatable=negatable, unless=unless, requires=requires,
                          min_severity=min_severity))
    total += len(negation_unless)
    for i, rule in enumerate(rules):
        for j, name in enumerate(rule.requires):
            if name not in CATEGORIES and name not in seen_ids:
                top.fail(f"rules[{i}].requires[{j}]",
                         f"a category ({', '.join(CATEGORIES)}) or a rule id of this pack, "
                         f"got {name!r}")
    if total > MAX_PATTERNS_PER_PACK:
        top.fail("rules", f"at most {MAX_PATTERNS_PER_PACK} patterns in a pack, got {total}")
    if rules and all(rule.category in MODIFIER_CATEGORIES for rule in rules):
        top.fail("rules", "at least one rule whose category is not a timeframe")
    _no_variants(top, aliases, cues, breaks, negation_unless, exceptions, rules)
    top.done()
    return RulePack(id=pack_id, language=lang, version=version, negation_cues=frozenset(cues),
                    negation_window=window, exceptions=exceptions, rules=tuple(rules),
                    severity=severity, negation_breaks=frozenset(breaks),
                    negation_unless=negation_unless, aliases=aliases, typos=typos,
                    not_typos=frozenset(not_typos))


def _words(r: TableReader, name: str, what: str, max_items: int, min_length: int = 1) -> list[str]:
    """A list of single words, normalised; each problem named by its index."""
    words: list[str] = []
    raw = r.strings(name, (), None, what)
    if len(raw) > max_items:
        r.fail(name, f"at most {max_items} words, got {len(raw)}")
    for i, item in enumerate(raw[:max_items]):
        try:
            word = parse_word(item, what, symbols=min_length <= 1)
        except PatternError as exc:
            r.fail(f"{name}[{i}]", str(exc))
            continue
        if not min_length <= len(word) <= MAX_TYPO_TOKEN:
            r.fail(f"{name}[{i}]", f"a word of {min_length} to {MAX_TYPO_TOKEN} letters, got {item!r}")
            continue
        if word not in words:
            words.append(word)
    return words


def _aliases(r: TableReader) -> dict[str, tuple[str, ...]]:
    """[aliases]: "reading" = ["variant", ...]; a variant token reads as the reading's words."""
    aliases: dict[str, tuple[str, ...]] = {}
    for reading in r.table:
        r.seen.add(reading)
        try:
            words = tuple(parse_word(w, "word of an alias") for w in reading.split())
        except PatternError as exc:
            r.fail(reading, str(exc))
            continue
        if not 1 <= len(words) <= MAX_ALIAS_WORDS:
            r.fail(reading, f"a reading of 1 to {MAX_ALIAS_WORDS} words, got {reading!r}")
            continue
        for variant in _words(r, reading, "single words like \"kiero\"", MAX_ALIASES):
            if variant in aliases:
                r.fail(reading, f"each variant once, but {variant!r} is also an alias of "
                                f"{' '.join(aliases[variant])!r}")
            elif (variant,) == words:
                r.fail(reading, f"variants other than the reading itself, got {variant!r}")
            else:
                aliases[variant] = words
    if len(aliases) > MAX_ALIASES:
        r.fail("", f"at most {MAX_ALIASES} variants, got {len(aliases)}")
    for words in aliases.values():
        for word in words:
            if word in aliases:
                r.fail(" ".join(words), f"readings made of words that are not variants themselves, "
                                        f"but {word!r} is an alias of {' '.join(aliases[word])!r}")
    return aliases


def _typos(r: TableReader) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """[typos]: `words` matched despite one slip, `not` real words never read as such a slip."""
    words = _words(r, "words", f"single words of at least {MIN_TYPO_WORD} letters", MAX_TYPOS,
                   MIN_TYPO_WORD)
    not_typos = _words(r, "not", "single words", MAX_TYPOS)
    r.done()
    return tuple(words), tuple(not_typos)


def _no_variants(r: TableReader, aliases: Mapping[str, tuple[str, ...]], cues: Sequence[str],
                 breaks: Sequence[str], negation_unless: Sequence[Pattern],
                 exceptions: Mapping[str, ExceptionSet], rules: Sequence[Rule]) -> None:
    """A word the detector never sees (an alias variant is replaced before matching) is a mistake."""
    reported: set[tuple[str, str]] = set()

    def check(where: str, word: str) -> None:
        if word in aliases and (where, word) not in reported:
            reported.add((where, word))
            r.fail(where, f"{' '.join(aliases[word])!r}, not {word!r}: an alias variant is read "
                          f"as its reading before matching")
    for word in (*cues, *breaks):
        check("negation", word)
    named = [("negation.unless", negation_unless),
             *((f"exceptions.{name}", e.patterns) for name, e in exceptions.items()),
             *((f"rules.{rule.id}", rule.patterns) for rule in rules)]
    for where, patterns in named:
        for pattern in patterns:
            for slot in pattern.slots:
                for word in slot.words:
                    check(where, word)


# ---- a pack's model ---------------------------------------------------------

def _int_list(r: TableReader, name: str, length: int, bound: int) -> tuple[int, ...]:
    value = r.raw(name)
    if (not isinstance(value, list) or len(value) != length
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        r.fail(name, f"a list of {length} whole numbers, got {describe(value)}")
        return (0,) * length
    for i, v in enumerate(value):
        if not -bound <= v <= bound:
            r.fail(f"{name}[{i}]", f"a whole number from {-bound} to {bound}, got {v}")
    return tuple(value)


def _model(data: Any, source: str, problems: list[str], pack: RulePack | None) -> Model:
    """A pack's model from its parsed JSON: every key checked, the weights against their
    length and checksum, and the pack it belongs to against `pack` (when given)."""
    top = TableReader(source, "", data, problems)
    form = top.raw("format")
    if form != MODEL_FORMAT:
        top.fail("format", f"{MODEL_FORMAT}, the model format this Hearth reads ({RETRAIN}), "
                           f"got {describe(form)}")
    lang = top.text("language", None, 3)
    pack_id = top.text("pack", None, 64)
    pack_version = top.text("pack_version", None, 14)
    if pack is not None:
        for key, got, want, what in (("language", lang, pack.language, "the pack's language"),
                                     ("pack", pack_id, pack.id, "the id of its pack"),
                                     ("pack_version", pack_version, pack.version,
                                      "the version of its pack")):
            if got and got != want:
                top.fail(key, f"{want!r}, {what}: a model belongs to the pack it was trained "
                              f"with; {RETRAIN}, got {got!r}")
    trained_on = top.strings("trained_on", (), None, "corpus file names")
    if len(trained_on) > 50 or any(len(t) > 200 for t in trained_on):
        top.fail("trained_on", "at most 50 names of at most 200 characters")
    buckets = top.integer("buckets", MIN_MODEL_BUCKETS, MIN_MODEL_BUCKETS, MAX_MODEL_BUCKETS)
    if buckets & (buckets - 1):
        top.fail("buckets", f"a power of two, got {buckets}")
        buckets = MIN_MODEL_BUCKETS
    ngrams = top.raw("char_ngrams")
    if (not isinstance(ngrams, list) or len(ngrams) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in ngrams)
            or not 1 <= ngrams[0] <= ngrams[1] <= MAX_CHAR_NGRAM):
        top.fail("char_ngrams", f"[shortest, longest] letter n-grams, 1 <= shortest <= longest "
                                f"<= {MAX_CHAR_NGRAM}, got {describe(ngrams)}")
        ngrams = [1, 1]
    damping = top.integer("damping", 0, 0, MAX_DAMPING)
    heads = top.raw("heads")
    if heads != list(MODEL_HEADS):
        top.fail("heads", f"{list(MODEL_HEADS)} ({RETRAIN}), got {describe(heads)}")
    bias = _int_list(top, "bias", len(MODEL_HEADS), MAX_MODEL_INT)
    lv = TableReader(source, "levels", top.raw("levels"), problems)
    levels = {name: lv.integer(name, 0, -MAX_MODEL_INT, MAX_MODEL_INT) for name in MODEL_LEVELS}
    for name in MODEL_LEVELS:
        if not lv.has(name):
            lv.fail(name, "a whole number (this key is required)")
    lv.done()
    weights = b""
    encoded = top.raw("weights")
    size = buckets * len(MODEL_HEADS)
    if not isinstance(encoded, str):
        top.fail("weights", f"base64 text, got {describe(encoded)}")
    else:
        try:
            weights = binascii.a2b_base64(encoded, strict_mode=True)
        except binascii.Error:
            top.fail("weights", "base64 text (the file is damaged: restore it or train it again)")
        else:
            if len(weights) != size:
                top.fail("weights", f"{size} bytes ({buckets} buckets x {len(MODEL_HEADS)} heads), "
                                    f"got {len(weights)}")
                weights = b""
    checksum = top.raw("crc32")
    if weights and checksum != zlib.crc32(weights):
        top.fail("crc32", f"the CRC-32 of the weights, {zlib.crc32(weights)} (the file is damaged: "
                          f"restore it or train it again), got {describe(checksum)}")
    top.done()
    return Model(language=lang, pack=pack_id, pack_version=pack_version, buckets=buckets,
                 char_ngrams=(ngrams[0], ngrams[1]), damping=damping, bias=bias, levels=levels,
                 weights=weights or bytes(size), trained_on=trained_on)


def _load_model(path: Path, problems: list[str], pack: RulePack | None) -> Model | None:
    """rules/<language>.model.json, or None with its problems (size first: never parse a file
    this format cannot be)."""
    source = str(path)
    raw = _read_bytes(path, problems)
    if raw is None:
        return None
    if len(raw) > MAX_MODEL_BYTES:
        problems.append(f"{source}: expected a model of at most {MAX_MODEL_BYTES} bytes, got "
                        f"{len(raw)}")
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{source}: not valid JSON: {exc}")
        return None
    before = len(problems)
    model = _model(data, source, problems, pack)
    return model if len(problems) == before else None


def _load_pack(path: Path, problems: list[str], language: str | None, with_model: bool = True
               ) -> RulePack | None:
    """A pack file and, if one is beside it, its model (<language>.model.json)."""
    data = _read_toml(path, problems)
    if data is None:
        return None
    before = len(problems)
    pack = _rule_pack(data, str(path), problems, language)
    model_path = path.with_name(path.stem + MODEL_SUFFIX)
    if len(problems) > before or not with_model or not model_path.exists():
        return pack  # a pack with problems is fixed first: its model is checked against it after
    model = _load_model(model_path, problems, pack)
    return pack if model is None else dataclasses.replace(pack, model=model)


# ---- escalation -------------------------------------------------------------

def _tiers(r: TableReader, schedule: str) -> tuple[tuple[Tier, ...], str]:
    """One schedule's [[tiers]], as the incident desk runs them: a tier asks the person to
    call a helpline (participant_prompt = "call_helpline_now") by telling
    "participant_prompt"; the first tier has no condition (its stop_when never matters)."""
    t = TableReader(r.source, schedule, r.raw(schedule) if r.has(schedule) else None,
                    r.problems)
    high = _choice(t, "high_severity", SCHEDULE_TABLES, "help_button") \
        if schedule == "detector_or_flag" else "help_button"
    tiers: list[Tier] = []
    for i, item in enumerate(_list(t, "tiers", f"a non-empty list of [[{schedule}.tiers]] tables",
                                   True, 20)):
        k = TableReader(r.source, f"{schedule}.tiers[{i}]", item, r.problems)
        after = k.integer("after", 0, 0, 86400)
        if_not = _choice(k, "if_not", IF_NOT, "") or None
        notify = _notify(k, "notify", ())
        sound = k.boolean("sound", False)
        prompt = _choice(k, "participant_prompt", PROMPTS, "") or None
        if i == 0 and after != 0:
            k.fail("after", f"0 for the first tier (someone is told at once), got {after}")
        if i == 0 and if_not is not None:
            k.fail("if_not", "no condition on the first tier: it always fires")
        if i > 0:
            if after <= tiers[-1].after:
                k.fail("after", f"more than the previous tier's {counted(tiers[-1].after, 'second')}, "
                                f"got {after}")
            if if_not is None:
                k.fail("if_not", "acknowledged or engaged: a later tier fires only while the "
                                 "incident is still waiting")
        if i == 0 and schedule == "help_button" and prompt != "helpline_card":
            k.fail("participant_prompt", "\"helpline_card\": after the help button the "
                                         "participant sees helplines at once")
        k.done()
        asks: tuple[Notify, ...] = ("participant_prompt",) if prompt == "call_helpline_now" \
            else ()
        tiers.append(Tier(after=float(after), notify=(*notify, *asks),
                          stop_when="engaged" if if_not == "engaged" else "acknowledged",
                          sound=sound))
    if tiers and not any("on_call_webhook" in tier.notify for tier in tiers):
        t.fail("tiers", "on_call_webhook in some tier: without it an unanswered crisis never "
                        "leaves the room")
    t.done()
    return tuple(tiers), high


def _notify(r: TableReader, name: str, default: tuple[Notify, ...]) -> tuple[Notify, ...]:
    notify = r.strings(name, default, None, "who to tell")
    if not notify:
        r.fail(name, f"a non-empty list of: {', '.join(NOTIFY)}")
    for j, who in enumerate(notify):
        if who not in NOTIFY:
            r.fail(f"{name}[{j}]", f"one of {', '.join(NOTIFY)}, got {who!r}")
    if len(set(notify)) != len(notify):
        r.fail(name, "each one at most once")
    return cast(tuple[Notify, ...], notify)


def _escalation(data: Any, source: str, problems: list[str]) -> Escalation:
    top = TableReader(source, "", data, problems)
    help_button, _ = _tiers(top, "help_button")
    detector_or_flag, high = _tiers(top, "detector_or_flag")
    for schedule in SCHEDULE_TABLES:
        top.seen.add(schedule)
    x = TableReader(source, "external_help", top.raw("external_help") or {}, problems)
    confirm_within = x.integer("confirm_within", 600, 60, 86400)
    confirm_notify = _notify(x, "notify", DEFAULT_ESCALATION.confirm_notify)
    if "on_call_webhook" not in confirm_notify:
        x.fail("notify", "on_call_webhook among them: an unconfirmed request for external help "
                         "goes back to on-call")
    x.done()
    p = TableReader(source, "presses", top.raw("presses") or {}, problems)
    press_window = p.integer("window", 600, 60, 86400)
    realert_every = p.integer("realert_every", 30, 5, 3600)
    concerns = p.integer("concerns_per_window", 3, 1, 100)
    p.done()
    top.done()
    return Escalation(help_button=help_button, default=detector_or_flag, high_severity=high,
                      confirm_within=float(confirm_within), confirm_notify=confirm_notify,
                      press_window=float(press_window), realert_every=float(realert_every),
                      concerns_per_window=concerns)


# ---- public API -------------------------------------------------------------

def _checked(build: Any, data: Mapping[str, Any], source: str, *args: Any) -> Any:
    problems: list[str] = []
    result = build(data, source, problems, *args)
    if problems:
        raise ConfigError(problems)
    return result


def parse_rule_pack(data: Mapping[str, Any], source: str, language: str | None = None) -> RulePack:
    """A compiled rule pack from parsed TOML, or ConfigError listing every problem."""
    pack: RulePack = _checked(_rule_pack, data, source, language)
    return pack


def parse_model(data: Mapping[str, Any], source: str, pack: RulePack | None = None) -> Model:
    """A pack's model from parsed JSON (checked against `pack`), or ConfigError listing every
    problem."""
    model: Model = _checked(_model, data, source, pack)
    return model


def load_rule_pack(path: Path, language: str | None = None, with_model: bool = True) -> RulePack:
    """A rule pack file with its model if one is beside it, or ConfigError listing every
    problem in both."""
    problems: list[str] = []
    pack = _load_pack(path, problems, language, with_model)
    if problems or pack is None:
        raise ConfigError(problems)
    return pack


def _read_bytes(path: Path, problems: list[str]) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError as exc:
        problems.append(f"{path}: cannot read the file ({exc.strerror or exc})")
        return None


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any] | None:
    source = str(path)
    raw = _read_bytes(path, problems)
    if raw is None:
        return None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        problems.append(f"{source}: expected UTF-8 text")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{source}: not valid TOML: {exc}")
    return None


def load_crisis(directory: Path | None = None, *, with_models: bool = True) -> CrisisReference:
    """Read and check config/crisis/ (the shipped one when no directory is given).

    A model beside a pack is checked either way (a broken file is an error even while it is
    not used); with `with_models` false the packs come without their models, so whoever runs
    them runs the rules alone ([crisis] detector_model in hearth.toml, off by default).
    Raises ConfigError listing every problem in every file.
    """
    directory = directory or SHIPPED_CRISIS
    problems: list[str] = []
    helplines_path = directory / "helplines.toml"
    data = _read_toml(helplines_path, problems)
    helplines = _helplines(data, str(helplines_path), problems) if data is not None else None

    packs: dict[str, RulePack] = {}
    rules_dir = directory / "rules"
    paths = sorted(rules_dir.glob("*.toml")) if rules_dir.is_dir() else []
    if not paths:
        problems.append(f"{rules_dir}: expected at least one rule pack like en.toml")
    for path in paths:
        pack = _load_pack(path, problems, path.stem)
        if pack is not None:
            packs[path.stem] = pack if with_models else dataclasses.replace(pack, model=None)
    if rules_dir.is_dir():
        for path in sorted(rules_dir.glob("*" + MODEL_SUFFIX)):
            language = path.name[:-len(MODEL_SUFFIX)]
            if language not in packs and not (rules_dir / f"{language}.toml").exists():
                problems.append(f"{path}: expected the rule pack {language}.toml beside it "
                                "(a model belongs to a pack)")

    escalation_path = directory / "escalation.toml"
    data = _read_toml(escalation_path, problems)
    escalation = _escalation(data, str(escalation_path), problems) if data is not None else None

    if problems or helplines is None or escalation is None:
        raise ConfigError(problems)
    return CrisisReference(directory=str(directory), helplines=helplines, packs=packs,
                        escalation=escalation)


def missing_helplines(helplines: Helplines, countries: Sequence[str]) -> list[str]:
    """The offered countries (organisation.helpline_countries) with no card of their own:
    their participants see only the international directories."""
    return [code for code in countries if code not in helplines.countries]


def config_warnings(config: HearthConfig, crisis: CrisisReference) -> list[str]:
    """What `hearth check-config` (and `hearth serve`) warn about: nothing that stops Hearth,
    everything an operator should fix before people rely on it."""
    warnings = [f"{config.source}: warning: no helpline data for {country}; people there see "
                "the international directories only"
                for country in missing_helplines(crisis.helplines,
                                                 config.organisation.helpline_countries)]
    helplines = Path(crisis.directory) / "helplines.toml"
    warnings += [f"{helplines}: warning: {entry}"
                 for entry in unverified_entries(crisis.helplines)]
    alerts = config.crisis.webhooks or config.crisis.email is not None
    if alerts and not config.crisis.public_url:
        warnings.append(f"{config.source}: warning: crisis.public_url is empty, so the links in "
                        "on-call alerts point at the address Hearth listens on (such as "
                        "127.0.0.1), which on-call staff cannot open: set it to the address "
                        "people use, like \"https://support.example.org\"")
    return warnings


def stale_entries(helplines: Helplines, today: date, max_age_months: int = 6) -> list[str]:
    """One sentence per number last verified more than `max_age_months` ago (a warning)."""
    now = today.year * 12 + today.month - 1
    stale = []
    for country in (*helplines.countries.values(), helplines.international):
        dated = [(f"{country.code} emergency number", country.emergency.last_verified)
                 ] if country.emergency else []
        dated += [(f"{country.code} {s.name}", s.last_verified) for s in country.services]
        for what, month in dated:
            year, mon = (int(part) for part in month.split("-"))
            if now - (year * 12 + mon - 1) > max_age_months:
                stale.append(f"{what}: last verified {month}; check it again")
    return stale


# ---- JSON for the browser ---------------------------------------------------

_LABELS: Mapping[str, Mapping[str, str]] = {
    "en": {"call": "Call {number}", "text": "Text {number}",
           "text_keyword": "Text {keyword} to {number}", "call_or_text": "Call or text {number}",
           "whatsapp": "WhatsApp {number}", "web": "Visit {url}", "24/7": "24 hours, every day",
           "varies": "Hours vary"},
    "es": {"call": "Llama al {number}", "text": "Escribe al {number}",
           "text_keyword": "Escribe {keyword} al {number}",
           "call_or_text": "Llama o escribe al {number}", "whatsapp": "WhatsApp {number}",
           "web": "Visita {url}", "24/7": "24 horas, todos los días",
           "varies": "El horario varía"},
}


def _contact_json(contact: Contact) -> dict[str, Any]:
    key = "text_keyword" if contact.keyword else contact.kind
    out: dict[str, Any] = {"kind": contact.kind,
                           "label": {loc: _LABELS[loc][key].format(
                               number=contact.number, keyword=contact.keyword, url=contact.url)
                               for loc in TEXT_LOCALES}}
    if contact.kind == "web":
        out["url"] = contact.url
        out["href"] = f"https://{contact.url}"
    elif contact.kind == "whatsapp":  # WhatsApp's own link opens a chat with that number
        out.update(number=contact.number, dial=contact.dial,
                   href=f"https://wa.me/{contact.dial.lstrip('+')}")
    else:
        out.update(number=contact.number, dial=contact.dial)
        if contact.keyword:
            out["keyword"] = contact.keyword
    return out


def _shown(item: EmergencyNumber | Service, everything: bool) -> bool:
    return everything or item.confidence != "unverified"


def _country_json(country: Country, everything: bool) -> dict[str, Any]:
    emergency = None
    if country.emergency is not None and _shown(country.emergency, everything):
        e = country.emergency
        emergency = {"number": e.number, "dial": e.dial, "source": dict(e.source),
                     "last_verified": e.last_verified, "confidence": e.confidence}
    return {
        "code": country.code,
        "name": dict(country.name),
        "emergency": emergency,
        "services": [{
            "name": s.name,
            "contacts": [_contact_json(c) for c in s.contacts],
            "hours": s.hours,
            "hours_label": {loc: _LABELS[loc][s.hours] for loc in TEXT_LOCALES},
            "languages": list(s.languages),
            "note": dict(s.note) if s.note else None,
            "source": dict(s.source),
            "last_verified": s.last_verified,
            "confidence": s.confidence,
        } for s in country.services if _shown(s, everything)],
    }


def helplines_to_json(helplines: Helplines, *, everything: bool = False) -> dict[str, Any]:
    """The cards, for the browser to cache at join: for participants (GET
    /crisis/helplines.json) only what the operator has verified; with `everything`, for the
    facilitators' console (GET /crisis/helplines-console.json), unverified entries too,
    marked by their `confidence`."""
    return {"format": JSON_FORMAT,
            "countries": {code: _country_json(c, everything)
                          for code, c in sorted(helplines.countries.items())},
            "international": _country_json(helplines.international, everything)}


def unverified_entries(helplines: Helplines) -> list[str]:
    """One sentence per entry participants do not see until the operator confirms it."""
    found = []
    for country in (*helplines.countries.values(), helplines.international):
        dated: list[tuple[str, EmergencyNumber | Service]] = [
            (f"{country.code} emergency number {country.emergency.number}", country.emergency)
        ] if country.emergency else []
        dated += [(f"{country.code} {s.name}", s) for s in country.services]
        found += [f"{what}: unverified, so participants do not see it; confirm it with the "
                  "service, then set confidence and last_verified"
                  for what, item in dated if item.confidence == "unverified"]
    return found


def _slot_text(slot: Slot) -> str:
    """A slot as the browser reads it: its gap ("~2 "), then words, prefixes ("stem*") and
    numbers ("#mg") joined by '|'. A normalised word never holds a space, '|', '~', '*' or '#'
    and never starts with '#', so the form cannot be misread."""
    alternatives = [*slot.words, *(f"{p}*" for p in slot.prefixes), *(f"#{n}" for n in slot.numbers)]
    return (f"~{slot.gap} " if slot.gap else "") + "|".join(alternatives)


def _patterns_json(patterns: Sequence[Pattern]) -> list[str]:
    """Each pattern compiled and normalised, as one line: "want|wish ~2 die|dead*" (a third
    of the size of one list per slot, as a pack holds thousands of slots)."""
    return [" ".join(_slot_text(slot) for slot in p.slots) for p in patterns]


def model_to_json(model: Model) -> dict[str, Any]:
    """A pack's model as its file holds it (rules/<language>.model.json), and as the browser
    gets it inside its pack: integers, and the weights in base64 with their CRC-32."""
    return {
        "format": MODEL_FORMAT,
        "language": model.language,
        "pack": model.pack,
        "pack_version": model.pack_version,
        "trained_on": list(model.trained_on),
        "buckets": model.buckets,
        "char_ngrams": list(model.char_ngrams),
        "damping": model.damping,
        "heads": list(MODEL_HEADS),
        "bias": list(model.bias),
        "levels": {name: model.levels[name] for name in MODEL_LEVELS},
        "crc32": zlib.crc32(model.weights),
        "weights": base64.b64encode(model.weights).decode("ascii"),
    }


# What a rule or an exception set is unless it says otherwise: the browser's pack leaves these
# out (a page loads one pack within its byte budget) and loadPack() puts them back.
_JSON_DEFAULTS: dict[str, Any] = {"negatable": True, "unless": [], "requires": [],
                                  "min_severity": None, "quiets_model": False}


def _without_defaults(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items()
            if key not in _JSON_DEFAULTS or value != _JSON_DEFAULTS[key]}


def pack_to_json(pack: RulePack) -> dict[str, Any]:
    """The compiled pack that detector.js loadPack() takes (GET /crisis/rules/<language>.json).

    Patterns go out compiled and normalised, so the browser never parses the
    pattern language and both sides match on the same words. The pack's model,
    if it has one, goes with it.
    """
    return {
        "format": PACK_FORMAT,
        "id": pack.id,
        "language": pack.language,
        "version": pack.version,
        "negation": {"cues": sorted(pack.negation_cues), "window": pack.negation_window,
                     "breaks": sorted(pack.negation_breaks),
                     "unless": _patterns_json(pack.negation_unless)},
        "aliases": {variant: list(words) for variant, words in sorted(pack.aliases.items())},
        "typos": {"words": list(pack.typos), "not": sorted(pack.not_typos)},
        "severity": {"low": pack.severity.low, "medium": pack.severity.medium,
                     "high": pack.severity.high, "category_cap": pack.severity.category_cap,
                     "combos": [{"categories": list(c.categories), "severity": c.severity}
                                for c in pack.severity.combos]},
        "exceptions": {name: _without_defaults({"scope": e.scope,
                                                "patterns": _patterns_json(e.patterns),
                                                "quiets_model": e.quiets_model})
                       for name, e in pack.exceptions.items()},
        "rules": [_without_defaults({"id": r.id, "category": r.category, "weight": r.weight,
                                     "negatable": r.negatable, "unless": list(r.unless),
                                     "requires": list(r.requires), "min_severity": r.min_severity,
                                     "patterns": _patterns_json(r.patterns)})
                  for r in pack.rules],
        "model": None if pack.model is None else model_to_json(pack.model),
    }
