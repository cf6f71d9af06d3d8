"""Pseudonyms and avatars for anonymous members: generated, or chosen and checked.

A pseudonym must never pass for a badge (facilitator, staff, admin...), so
reserved words are matched against what a reader would see (`badge_key`):
compatibility forms decomposed and case folded (NFKD, casefold: U+2131 SCRIPT CAPITAL F is "f"),
every look-alike replaced by its Unicode prototype (the UTS #39 skeleton,
spaces/confusables.py: Cyrillic U+0430 is "a", "1" is "l", "m" is "rn"), and
everything that is not a letter dropped ("F.a-c i l i t a t o r" is refused
too). Invisible characters (zero-width, joiners, the Hangul fillers that count
as letters) are refused outright.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Mapping
from functools import lru_cache

from hearth.spaces.confusables import is_default_ignorable, skeleton

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

RESERVED = ("facilitator", "facilitador", "facilitadora", "moderator", "moderador",
            "moderadora", "admin", "administrator", "administrador", "staff", "operator",
            "operador", "hearth", "official", "oficial", "counselor", "counsellor", "therapist",
            "terapeuta", "doctor", "nurse", "police", "policia", "system", "sistema")

MIN_LENGTH = 2
_ALLOWED_PUNCT = frozenset(" -'\u2019.")  # \u2019: the typographic apostrophe


class PseudonymRefused(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def generate(rng: random.Random, locale: str = "en") -> str:
    words = locale if locale in ADJECTIVES else "en"
    if words == "es":  # Spanish puts the adjective after the noun.
        return f"{rng.choice(ANIMALS[words])} {rng.choice(ADJECTIVES[words])}"
    return f"{rng.choice(ADJECTIVES[words])} {rng.choice(ANIMALS[words])}"


def generate_avatar(rng: random.Random) -> dict[str, str]:
    return {"color": rng.choice(AVATAR_COLORS), "shape": rng.choice(AVATAR_SHAPES)}


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
        raise PseudonymRefused(
            "pseudonym_invalid",
            f"A pseudonym needs {MIN_LENGTH} to {max_length} characters.")
    for ch in name:
        if is_default_ignorable(ch):  # the Hangul fillers are letters, and invisible
            raise PseudonymRefused("pseudonym_invalid",
                                   "A pseudonym cannot contain invisible characters.")
        if not (ch.isalpha() or ch.isdigit() or ch in _ALLOWED_PUNCT):
            raise PseudonymRefused(
                "pseudonym_invalid",
                "Use letters, digits, spaces, hyphens, apostrophes and dots only.")
    if not any(ch.isalpha() for ch in name):
        raise PseudonymRefused("pseudonym_invalid", "A pseudonym needs at least one letter.")
    if looks_reserved(name):
        raise PseudonymRefused(
            "pseudonym_reserved",
            "That name could be mistaken for a facilitator or staff badge; choose another.")
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
