"""Pseudonyms that could pass for a staff badge, or hide characters, are refused; the
UTS #39 table they are checked with is Unicode's own file, unchanged."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.spaces import confusables
from hearth.spaces.pseudonyms import (
    ADJECTIVES,
    ANIMALS,
    RESERVED,
    PseudonymRefused,
    badge_key,
    normalise,
    same_name,
)

SPACES = Path(confusables.__file__).resolve().parent


def test_the_table_is_generated_from_the_committed_unicode_file() -> None:
    source = (SPACES / "confusables.txt").read_text(encoding="utf-8")
    assert "Unicode Security Mechanisms for UTS #39" in source
    assert (SPACES / "confusables_table.py").read_text(encoding="utf-8") == \
        confusables.render(source)


def test_skeleton_follows_uts39() -> None:
    assert confusables.skeleton("p\u0430yp\u0430l") == "paypal"  # Cyrillic a (U+0430)
    assert confusables.skeleton("a\u200bb") == "ab"  # default ignorable dropped
    assert confusables.skeleton("m") == "rn" and confusables.skeleton("1") == "l"


@pytest.mark.parametrize("name", [
    "\u2131acilitator",  # SCRIPT CAPITAL F (the reported bypass)
    "f\u0430cilitator",  # Cyrillic a (the reported bypass)
    "\u0192acilitator",  # f with hook
    "Facilitator Ann", "f.a-c i l i t a t o r", "STAFF", "Sta\ufb00",  # ff ligature
    "Adm1n", "ADMlN", "Adrnin", "\u13aadmin",  # Cherokee GO (looks like A)
    "\uff2d\uff4f\uff44\uff45\uff52\uff41\uff54\uff4f\uff52",  # fullwidth Moderator
    "Polic\u00eda", "Moder\u0430dora", "0fficial", "\u0405taff",  # Cyrillic DZE (looks like S)
    "Therap\u0456st",  # Ukrainian i
])
def test_look_alikes_of_staff_words_are_refused(name: str) -> None:
    with pytest.raises(PseudonymRefused) as refused:
        normalise(name, 24)
    assert refused.value.code == "pseudonym_reserved"


@pytest.mark.parametrize("name", [
    "Ana\u3164", "\u115fAna", "Ana\u1160Bo", "Ana\uffa0", "Ana\u200bBo", "Ana\u200dBo",
    "\u2066Ana", "Ana\u00ad", "Ana\ufe0f", "Ana\U000e0041",
])
def test_invisible_and_filler_characters_are_refused(name: str) -> None:
    with pytest.raises(PseudonymRefused) as refused:
        normalise(name, 24)
    assert refused.value.code == "pseudonym_invalid"


def test_every_generated_pseudonym_is_accepted() -> None:
    for locale, adjectives in ADJECTIVES.items():
        for adjective in adjectives:
            for animal in ANIMALS[locale]:
                name = f"{animal} {adjective}" if locale == "es" else f"{adjective} {animal}"
                assert normalise(name, 24) == name


@pytest.mark.parametrize("name", ["Ana", "Mar\u00eda Jos\u00e9", "Simón", "Dominic", "Lidia",
                                  "O'Brien", "Zoë", "Nguyễn", "Иван", "Ηλίας"])
def test_ordinary_names_pass(name: str) -> None:
    assert normalise(name, 24) == unicodedata.normalize("NFC", name)


# Characters whose badge key is one ASCII letter: what an attacker would swap in.
def _stand_ins() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for source, target in confusables.prototypes().items():
        if len(target) == 1 and target.isascii() and target.isalpha() and len(source) == 1 \
                and unicodedata.category(source)[0] == "L":
            key = badge_key(source)
            if len(key) == 1:
                found.setdefault(key, []).append(source)
    return found


STAND_INS = _stand_ins()


@given(st.sampled_from(RESERVED), st.data())
@settings(max_examples=300)
def test_any_mix_of_look_alikes_of_a_staff_word_is_refused(word: str, data: st.DataObject) -> None:
    letters = []
    for ch in word:
        options = [ch, ch.upper(), *STAND_INS.get(badge_key(ch), [])]
        letters.append(data.draw(st.sampled_from(options)))
    name = "".join(letters)[:24]
    with pytest.raises(PseudonymRefused) as refused:
        normalise(name, 24)
    assert refused.value.code == "pseudonym_reserved"


def test_look_alike_names_are_the_same_person() -> None:
    assert same_name("Ana", "\u0410na")  # Cyrillic A (U+0410)
    assert same_name("Quiet Otter", "QUIET OTTER")
    assert not same_name("Ana 2", "Ana 3")
