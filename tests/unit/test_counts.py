"""Every count people read is grammatical, in both languages: "Wait 1 second", never "1 seconds"."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir

import hearth.web
from hearth.spaces.wording import counted
from hearth.web import i18n
from hearth.web.pages import environment

TEMPLATES = Path(hearth.web.__file__).resolve().parent / "templates"


def test_counted_says_one_thing_in_the_singular() -> None:
    assert counted(1, "second") == "1 second"
    assert counted(1.0, "day") == "1 day"
    assert counted(0, "room") == "0 rooms"
    assert counted(2, "room") == "2 rooms"
    assert counted(0.5, "day") == "0.5 days"
    assert counted(1_000_000, "entry", "entries") == "1000000 entries"


def _login(lang: str, **context: Any) -> str:
    env = environment(lang, str(TEMPLATES))
    env.globals["static"] = lambda path: f"/static/{path}"
    page = env.get_template("login.html").render(
        lang=lang, organisation="Test Hearth", quick_exit_url="https://example.org/",
        languages=[], code=429, name="", csrf="x", **context)
    found = re.search(r'<p class="form-error"[^>]*>(.*?)</p>', page, re.S)
    assert found is not None
    return " ".join(found.group(1).split())


@pytest.mark.parametrize(("lang", "one", "two"), [
    ("en", "Wait 1 second, then", "Wait 2 seconds, then"),
    ("es", "Espera 1 segundo y", "Espera 2 segundos y"),
])
def test_the_sign_in_wait_counts_seconds_in_both_languages(lang: str, one: str, two: str) -> None:
    assert one in _login(lang, error="wait", seconds=1, minutes=1)
    assert two in _login(lang, error="wait", seconds=2, minutes=1)


@pytest.mark.parametrize(("lang", "one", "many"), [
    ("en", "locked for 1 minute.", "locked for 15 minutes."),
    ("es", "durante 1 minuto.", "durante 15 minutos."),
])
def test_the_sign_in_lockout_counts_minutes_in_both_languages(lang: str, one: str,
                                                               many: str) -> None:
    assert one in _login(lang, error="locked", seconds=60, minutes=1)
    assert many in _login(lang, error="locked", seconds=900, minutes=15)


def test_places_taken_agree_with_the_rooms_size_in_both_languages() -> None:
    source = "{{ ngettext('%(present)s of %(num)s place taken', " \
             "'%(present)s of %(num)s places taken', capacity, present=present) }}"
    template = (TEMPLATES / "landing.html").read_text()
    assert source.replace("'", '"').replace("capacity", "room.capacity").replace(
        "present=present", "present=room.present") in template
    for lang, one, many in (("en", "0 of 1 place taken", "1 of 8 places taken"),
                            ("es", "0 de 1 plaza ocupada", "1 de 8 plazas ocupadas")):
        env = environment(lang, str(TEMPLATES))
        assert env.from_string(source).render(capacity=1, present=0) == one
        assert env.from_string(source).render(capacity=8, present=1) == many


def test_no_template_message_puts_a_count_before_a_plural_noun_without_ngettext() -> None:
    """A message like "Wait %(seconds)s seconds" through _() reads "Wait 1 seconds"."""
    singular_only = [message for _, function, message, _, _ in extract_from_dir(
        str(TEMPLATES), method_map=[("**.html", "jinja2")],
        options_map={"**.html": {"extensions": "jinja2.ext.i18n"}})
        if function != "ngettext" and isinstance(message, str)]
    assert len(singular_only) > 60
    counts = [m for m in singular_only if re.search(r"(?<!to )%\(\w+\)s [a-z]+s\b", m)]
    assert counts == []


def test_every_plural_message_has_both_spanish_forms() -> None:
    plurals = {m for m, v in i18n.catalog("es").messages.items() if isinstance(v, tuple)}
    assert len(plurals) >= 3
    for message in plurals:
        forms = i18n.catalog("es").messages[message]
        assert len(forms) == 2 and all(forms), message
