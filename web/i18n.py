"""Languages for the pages: which one a request gets, the template catalogs, country names.

English is the source language of the templates; other languages come from
Babel-format catalogs (web/locale/<lang>/LC_MESSAGES/messages.po), read once
with Babel's own .po reader so there is no compile step and no .mo file to
forget. Babel also supplies the CLDR country names for the helpline picker, in
the page's language, for any ISO code an operator lists.

Choice of language, first match wins: a `lang` query parameter (the switcher's
links; it also sets a session cookie), the `hearth_lang` cookie, the browser's
Accept-Language, English. Never the client's address.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from babel import Locale
from babel.messages.pofile import read_po

LANGUAGES = ("en", "es")
DEFAULT = "en"
# Each language named in itself: a reader who does not understand the current page must
# still recognise their own language in the switcher.
ENDONYMS = {"en": "English", "es": "Español"}
COOKIE = "hearth_lang"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"


def _primary(tag: str) -> str:
    return tag.strip().lower().replace("_", "-").split("-", 1)[0]


def parse_accept_language(header: str | None) -> list[str]:
    """Primary language subtags in the client's order of preference (q=0 means "not this")."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:32]):
        tag, _, params = part.partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if tag.strip() and q > 0:
            weighted.append((-q, position, _primary(tag)))
    return [tag for _, _, tag in sorted(weighted)]


@dataclass(frozen=True, slots=True)
class Choice:
    lang: str
    from_query: bool  # the user picked it just now: remember it in the cookie


def choose(query: str | None, cookie: str | None, accept_language: str | None) -> Choice:
    """The page language for one request."""
    if query and _primary(query) in LANGUAGES:
        return Choice(_primary(query), True)
    if cookie and cookie in LANGUAGES:
        return Choice(cookie, False)
    for tag in parse_accept_language(accept_language):
        if tag in LANGUAGES:
            return Choice(tag, False)
    return Choice(DEFAULT, False)


@dataclass(frozen=True)
class Catalog:
    """gettext/ngettext over one language's messages; an untranslated message stays English."""

    lang: str
    messages: dict[str, str | tuple[str, ...]]

    def gettext(self, message: str) -> str:
        found = self.messages.get(message)
        return found if isinstance(found, str) and found else message

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        found = self.messages.get(singular)
        if isinstance(found, tuple) and all(found):
            # Both English and Spanish: one form for 1, the other for the rest.
            return found[0] if n == 1 else found[-1]
        return singular if n == 1 else plural


def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"


@cache
def catalog(lang: str) -> Catalog:
    """The catalog for `lang` (English has none: its messages are the source)."""
    path = po_path(lang)
    if lang == DEFAULT or not path.exists():
        return Catalog(lang, {})
    with path.open("rb") as f:
        po = read_po(f, locale=lang)
    messages: dict[str, str | tuple[str, ...]] = {}
    for message in po:
        if not message.id or message.fuzzy:
            continue
        key = message.id[0] if isinstance(message.id, tuple) else message.id
        messages[key] = tuple(message.string) if isinstance(message.string, tuple | list) else (
            message.string)
    return Catalog(lang, messages)


def _sort_key(name: str) -> str:
    """Accents sort with their base letter (México between Letonia and Nicaragua)."""
    return "".join(c for c in unicodedata.normalize("NFKD", name.casefold())
                   if not unicodedata.combining(c))


def country_names(codes: Iterable[str], lang: str) -> list[tuple[str, str]]:
    """(code, name in `lang`) for each code, sorted by name; an unknown code shows as itself."""
    territories = Locale.parse(lang).territories
    named = [(code, str(territories.get(code, code))) for code in codes]
    return sorted(named, key=lambda pair: _sort_key(pair[1]))


def marker(message: str) -> str:
    """N_(): marks a message for the catalog where it is defined; translated where shown."""
    return message


N_: Callable[[str], str] = marker
