"""Pseudonyms and avatars for anonymous members: generated, or chosen and checked.

A pseudonym must never pass for a badge (facilitator, staff, admin...), so
reserved words are matched against what a reader would see (`badge_key`):
compatibility forms decomposed and case folded (NFKD, casefold: U+2131 SCRIPT CAPITAL F is "f"),
every look-alike replaced by its Unicode prototype (the UTS #39 skeleton,
spaces/confusables.py: Cyrillic U+0430 is "a", "1" is "l", "m" is "rn"), and
everything that is not a letter dropped ("F.a-c i l i t a t o r" is refused
too). Invisible characters (zero-width, joiners, the Hangul fillers that count
as letters) are refused outright.

This module is the one source of the rules: the join page and the console check a
pseudonym in the browser with `client_rules()` (served in the page,
web/static/js/pseudonym.js), so that they refuse what the server refuses, for the same
reason and with the same sentence (`MESSAGES`). The look-alike rule is served for the
letters people write names in (Latin, Greek, Cyrillic, fullwidth forms); a name with
any other character is left to the server, and the page shows the server's refusal.
"""

from __future__ import annotations

import random
import sys
import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from hearth.spaces.confusables import DEFAULT_IGNORABLE, is_default_ignorable, skeleton

ADJECTIVES: Mapping[str, tuple[str, ...]] = {
    "en": ("Quiet", "Gentle", "Calm", "Bright", "Kind", "Steady", "Warm", "Patient", "Brave",
           "Soft", "Hopeful", "Curious", "Peaceful", "Thoughtful", "Sunny", "Mellow", "Honest",
           "Tender", "Cheerful", "Friendly", "Humble", "Careful", "Silver", "Golden"),
    "es": ("Tranquila", "Amable", "Serena", "Brillante", "Valiente", "Paciente", "Suave",
           "Alegre", "Curiosa", "Sincera", "Tierna", "Cálida", "Risueña", "Humilde", "Atenta",
           "Dorada", "Plateada", "Pacífica", "Luminosa", "Sensata"),
}
ANIMALS: Mapping[str, tuple[str, ...]] = {
    "en": ("Otter", "Heron", "Fox", "Badger", "Owl", "Robin", "Hare", "Deer", "Wren", "Seal",
           "Panda", "Koala", "Finch", "Lynx", "Swan", "Turtle", "Dolphin", "Beaver", "Sparrow",
           "Crane", "Moth", "Lark", "Puffin", "Hedgehog"),
    "es": ("Nutria", "Garza", "Zorra", "Lechuza", "Liebre", "Foca", "Tortuga", "Golondrina",
           "Ardilla", "Ballena", "Gacela", "Paloma", "Jirafa", "Cebra", "Alondra", "Grulla",
           "Mariposa", "Abeja", "Llama", "Ostra"),
}
LOCALES = tuple(ADJECTIVES)

# Colours and shapes the client offers; anything else is refused.
AVATAR_COLORS = ("#e07a5f", "#3d405b", "#81b29a", "#f2cc8f", "#6d597a", "#b56576",
                 "#457b9d", "#2a9d8f", "#e9c46a", "#8d99ae")
AVATAR_SHAPES = ("round", "square", "leaf", "star", "drop", "hex")
# What someone gets before choosing: colours and shapes that say nothing about gender (no
# pink-or-blue coding) and read clearly on the map; every choice stays open to everyone.
DEFAULT_AVATAR_COLORS = ("#e07a5f", "#81b29a", "#f2cc8f", "#6d597a", "#2a9d8f", "#e9c46a",
                         "#8d99ae")
DEFAULT_AVATAR_SHAPES = ("round", "square", "leaf", "star", "hex")

RESERVED = ("facilitator", "facilitador", "facilitadora", "moderator", "moderador",
            "moderadora", "admin", "administrator", "administrador", "staff", "operator",
            "operador", "hearth", "official", "oficial", "counselor", "counsellor", "therapist",
            "terapeuta", "doctor", "nurse", "police", "policia", "system", "sistema")

MIN_LENGTH = 2
_ALLOWED_PUNCT = frozenset(" -'\u2019.")  # \u2019: the typographic apostrophe


# Why a pseudonym is refused -> (error code, the sentence people read). The page shows the
# same sentences (web/static/i18n/<lang>.json, "pseudonym.<reason>"; English equal to these).
MESSAGES: Mapping[str, tuple[str, str]] = {
    "length": ("pseudonym_invalid", "A pseudonym needs {min} to {max} characters."),
    "invisible": ("pseudonym_invalid", "A pseudonym cannot contain invisible characters."),
    "characters": ("pseudonym_invalid",
                   "Use letters, digits, spaces, hyphens, apostrophes and dots only."),
    "letter": ("pseudonym_invalid", "A pseudonym needs at least one letter."),
    "reserved": ("pseudonym_reserved",
                 "That name could be mistaken for a facilitator or staff badge; choose another."),
}
# The reasons web/static/js/pseudonym.js checks from `client_rules()` ("reserved" for names
# written in the letters it is given). A reason not listed here (a rule that cannot be
# written as data for the page) is the server's alone: the page then shows the server's
# refusal, with the join form kept.
PAGE_REASONS = ("length", "invisible", "characters", "letter", "reserved")


class PseudonymRefused(ValueError):
    def __init__(self, code: str, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason


def _refused(reason: str, max_length: int) -> PseudonymRefused:
    code, sentence = MESSAGES[reason]
    return PseudonymRefused(code, sentence.format(min=MIN_LENGTH, max=max_length), reason)


def generate(rng: random.Random, locale: str = "en") -> str:
    words = locale if locale in ADJECTIVES else "en"
    if words == "es":  # Spanish puts the adjective after the noun.
        return f"{rng.choice(ANIMALS[words])} {rng.choice(ADJECTIVES[words])}"
    return f"{rng.choice(ADJECTIVES[words])} {rng.choice(ANIMALS[words])}"


def generate_avatar(rng: random.Random) -> dict[str, str]:
    return {"color": rng.choice(DEFAULT_AVATAR_COLORS), "shape": rng.choice(DEFAULT_AVATAR_SHAPES)}


def check_avatar(avatar: Mapping[str, str]) -> dict[str, str] | None:
    """The avatar if both parts are offered choices, else None."""
    color, shape = avatar.get("color"), avatar.get("shape")
    if color in AVATAR_COLORS and shape in AVATAR_SHAPES:
        return {"color": str(color), "shape": str(shape)}
    return None


def badge_key(text: str) -> str:
    """What a reader sees, for comparing with the reserved words: NFKD and case folding,
    the UTS #39 skeleton (before folding, for capital look-alikes, and after), letters
    only, and "i" read as "l" (I, l and 1 are one stroke in many fonts)."""
    seen = _look(text)
    return "".join(ch for ch in seen if unicodedata.category(ch)[0] == "L").replace("i", "l")


@lru_cache(maxsize=1)
def _reserved_keys() -> tuple[str, ...]:
    return tuple(badge_key(word) for word in RESERVED)


def looks_reserved(name: str) -> bool:
    """Whether a reader could take `name` for a staff badge."""
    key = badge_key(name)
    return any(word in key for word in _reserved_keys())


def normalise(raw: str, max_length: int) -> str:
    """The pseudonym as it will be shown, or PseudonymRefused with a code and a sentence."""
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if not MIN_LENGTH <= len(name) <= max_length:
        raise _refused("length", max_length)
    for ch in name:
        if is_default_ignorable(ch):  # the Hangul fillers are letters, and invisible
            raise _refused("invisible", max_length)
        if not (ch.isalpha() or ch.isdigit() or ch in _ALLOWED_PUNCT):
            raise _refused("characters", max_length)
    if not any(ch.isalpha() for ch in name):
        raise _refused("letter", max_length)
    if looks_reserved(name):
        raise _refused("reserved", max_length)
    return name


@lru_cache(maxsize=4096)
def _look(name: str) -> str:
    """A name as a reader sees it: case folded, look-alikes replaced (digits and spaces
    kept, so "Ana 2" and "Ana 3" stay two people)."""
    seen = unicodedata.normalize("NFKD", skeleton(unicodedata.normalize("NFKD", name)))
    return unicodedata.normalize("NFKD", skeleton(seen.casefold())).casefold()


def same_name(a: str, b: str) -> bool:
    """Two pseudonyms a reader would take for the same person (case and look-alike
    letters aside: "ANA", and "Ana" with a Cyrillic U+0410, are "Ana")."""
    return a.casefold() == b.casefold() or _look(a) == _look(b)


# The letters the page is given the look-alike rule for: Latin (with IPA), Greek, Cyrillic,
# and the fullwidth forms — what names are written in, and what look-alikes are made of.
_PAGE_LETTERS = ((0x0020, 0x052F), (0x1D00, 0x1DBF), (0x1E00, 0x1FFF), (0xFF00, 0xFFEF))


@lru_cache(maxsize=1)
def _python_only() -> tuple[str, str, dict[str, str]]:
    """What the browser's own classes do not say exactly: the whitespace str.split() splits
    on, the digits str.isdigit() accepts that are not decimal, and each page letter's part
    of `badge_key` (the key is per character: NFKD, case folding and the skeleton are)."""
    spaces = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
    digits = "".join(chr(c) for c in range(sys.maxunicode + 1)
                     if chr(c).isdigit() and not chr(c).isdecimal())
    keys = {}
    for lo, hi in _PAGE_LETTERS:
        for point in range(lo, hi + 1):
            ch = chr(point)
            if (ch.isalpha() or ch.isdigit() or ch in _ALLOWED_PUNCT) and not is_default_ignorable(ch):
                keys[ch] = badge_key(ch)
    return spaces, digits, keys


def client_rules(max_length: int) -> dict[str, Any]:
    r"""The rules of `normalise` as data for the browser (web/static/js/pseudonym.js): the
    page refuses what this module refuses, for the same reason. Letters are the browser's
    `\p{L}` (its Unicode version may know a few letters more: the server decides those);
    the look-alike keys cover the page letters only (other names: the server decides)."""
    spaces, digits, keys = _python_only()
    return {"min": MIN_LENGTH, "max": max_length, "punctuation": "".join(sorted(_ALLOWED_PUNCT)),
            "spaces": spaces, "digits": digits, "invisible": [list(r) for r in DEFAULT_IGNORABLE],
            # each page letter followed by its key, "|" between (neither is ever in a name)
            "keys": "|".join(ch + key for ch, key in keys.items()), "reserved": list(_reserved_keys()),
            "codes": {reason: MESSAGES[reason][0] for reason in PAGE_REASONS}}
