"""Pseudonyms and avatars for anonymous members: generated, or chosen and checked.

A pseudonym must never pass for a badge (facilitator, staff, admin...), so
reserved words are matched after case folding and dropping everything that is
not a letter ("F.a-c i l i t a t o r" is refused too).

This module is the one source of the rules: the join page and the console check a
pseudonym in the browser with `client_rules()` (served in the page,
web/static/js/pseudonym.js), so that they refuse what the server refuses, with the
same sentence (`MESSAGES`, by reason). A rule that cannot be written as data for the
page is checked here only: the page then shows the server's refusal.
"""

from __future__ import annotations

import random
import sys
import unicodedata
from collections.abc import Mapping
from functools import cache
from typing import Any

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
    "characters": ("pseudonym_invalid",
                   "Use letters, digits, spaces, hyphens, apostrophes and dots only."),
    "letter": ("pseudonym_invalid", "A pseudonym needs at least one letter."),
    "reserved": ("pseudonym_reserved",
                 "That name could be mistaken for a facilitator or staff badge; choose another."),
}


# The reasons web/static/js/pseudonym.js checks from `client_rules()`. A reason not listed
# here (a rule that cannot be written as data for the page) is the server's alone: the page
# then shows the server's refusal, with the join form kept.
PAGE_REASONS = ("length", "characters", "letter", "reserved")


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


def _skeleton(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    return "".join(ch for ch in decomposed if ch.isalpha() and ch.isascii())


def normalise(raw: str, max_length: int) -> str:
    """The pseudonym as it will be shown, or PseudonymRefused with a code and a sentence."""
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if not MIN_LENGTH <= len(name) <= max_length:
        raise _refused("length", max_length)
    for ch in name:
        if not (ch.isalpha() or ch.isdigit() or ch in _ALLOWED_PUNCT):
            raise _refused("characters", max_length)
    if not any(ch.isalpha() for ch in name):
        raise _refused("letter", max_length)
    skeleton = _skeleton(name)
    for word in RESERVED:
        if word in skeleton:
            raise _refused("reserved", max_length)
    return name


@cache
def _python_only_characters() -> tuple[str, str]:
    r"""(whitespace str.split() splits on, digits str.isdigit() accepts that are not decimal):
    the two character classes the browser's own (`\s`, `\p{Nd}`) do not match exactly."""
    spaces = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
    digits = "".join(chr(c) for c in range(sys.maxunicode + 1)
                     if chr(c).isdigit() and not chr(c).isdecimal())
    return spaces, digits


def client_rules(max_length: int) -> dict[str, Any]:
    r"""The rules of `normalise` as data for the browser (web/static/js/pseudonym.js): the
    page refuses what this module refuses, for the same reason; letters are the browser's
    `\p{L}` (the Unicode version may differ by a few new letters: the server decides those)."""
    spaces, digits = _python_only_characters()
    return {"min": MIN_LENGTH, "max": max_length, "punctuation": "".join(sorted(_ALLOWED_PUNCT)),
            "spaces": spaces, "digits": digits, "reserved": list(RESERVED),
            "codes": {reason: MESSAGES[reason][0] for reason in PAGE_REASONS}}


def same_name(a: str, b: str) -> bool:
    """Two pseudonyms a reader would take for the same person."""
    return a.casefold() == b.casefold()
