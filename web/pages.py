"""The participant's pages: landing, join and room, in the reader's language.

Thin on purpose: parse the request (room id, language), gather what the
template shows from config and the venue, render. Everything a participant
does after that happens in the browser client (web/static/js, docs/client.md)
over the WebSocket. Pages are never cached (`no-store`): a shared or seized
phone should not keep a copy of a room page on disk.
"""

from __future__ import annotations

import random
from typing import Any

import jinja2
from twisted.web import resource, server

from hearth.spaces.config import HearthConfig, RoomConfig
from hearth.spaces.pseudonyms import (
    AVATAR_COLORS,
    AVATAR_SHAPES,
    client_rules,
    generate,
    generate_avatar,
)
from hearth.web import i18n
from hearth.web.i18n import N_
from hearth.web.node import Node

# Names for the avatar choices (screen readers announce them; colour alone is not enough).
COLOUR_NAMES = {
    "#e07a5f": N_("Coral"), "#3d405b": N_("Ink blue"), "#81b29a": N_("Sage"),
    "#f2cc8f": N_("Sand"), "#6d597a": N_("Plum"), "#b56576": N_("Rose"),
    "#457b9d": N_("Steel blue"), "#2a9d8f": N_("Teal"), "#e9c46a": N_("Mustard"),
    "#8d99ae": N_("Slate grey"),
}
SHAPE_NAMES = {
    "round": N_("Round"), "square": N_("Square"), "leaf": N_("Leaf"), "star": N_("Star"),
    "drop": N_("Drop"), "hex": N_("Hexagon"),
}
NAME_CHOICES = 12  # generated pseudonyms the join page can offer without asking the server


def environment(lang: str, templates: str) -> jinja2.Environment:
    """One jinja2 environment per language, its gettext installed once (no per-request state)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates), autoescape=True,
                             undefined=jinja2.StrictUndefined, extensions=["jinja2.ext.i18n"])
    messages = i18n.catalog(lang)
    env.install_gettext_callables(messages.gettext, messages.ngettext, newstyle=True)  # type: ignore[attr-defined]
    return env


class Pages:
    """What every page shares: config, the venue (for places taken), the environments."""

    def __init__(self, config: HearthConfig, node: Node, templates: str,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.node = node
        self.rng = rng or random.SystemRandom()
        self.envs = {lang: environment(lang, templates) for lang in i18n.LANGUAGES}
        # The pseudonym rules, as the join form and the console check them (pseudonym.js).
        self.rules = client_rules(config.limits.pseudonym_max_length)

    def language(self, request: server.Request) -> str:
        """The request's language, decided once (the cookie is set at most once)."""
        decided: str | None = getattr(request, "hearth_lang", None)
        if decided is not None:
            return decided
        query = request.args.get(b"lang", [b""])[0].decode("utf-8", "replace")
        raw_cookie = request.getCookie(i18n.COOKIE.encode())
        cookie = raw_cookie.decode("ascii", "replace") if raw_cookie else None
        accept = request.getHeader(b"accept-language")
        choice = i18n.choose(query, cookie, accept.decode("latin-1") if accept else None)
        if choice.from_query and choice.lang != cookie:
            # A session cookie, readable by the page so that quick exit can delete it too.
            request.addCookie(i18n.COOKIE.encode(), choice.lang.encode(), path=b"/",
                              sameSite="strict", secure=request.isSecure() or None)
        request.hearth_lang = choice.lang  # type: ignore[attr-defined]
        return choice.lang

    def render(self, request: server.Request, template: str, *, code: int = 200,
               **context: Any) -> bytes:
        lang = self.language(request)
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Content-Language", lang.encode())
        page = self.envs[lang].get_template(template).render(
            lang=lang, organisation=self.config.organisation.name,
            quick_exit_url=self.config.organisation.quick_exit_url,
            # A query-only link: the same page in another language, whatever the path
            # (a path of "//elsewhere" must never become a link off the site).
            languages=[(code_, i18n.ENDONYMS[code_], f"?lang={code_}")
                       for code_ in i18n.LANGUAGES],
            **context)
        return page.encode("utf-8")

    def not_found(self, request: server.Request) -> bytes:
        return self.render(request, "not_found.html", code=404)

    def room_summary(self, room: RoomConfig, lang: str) -> dict[str, Any]:
        """What a page shows of a room, in the page's language."""
        live = self.node.venue.rooms.get(room.id)
        return {"id": room.id, "title": room.title_in(lang), "schedule": room.schedule_in(lang),
                "capacity": room.capacity, "present": len(live.members) if live else 0}

    def countries(self, lang: str) -> list[tuple[str, str]]:
        return i18n.country_names(self.config.organisation.helpline_countries, lang)


class NotFound(resource.Resource):
    isLeaf = True

    def __init__(self, pages: Pages) -> None:
        super().__init__()
        self.pages = pages

    def render_GET(self, request: server.Request) -> bytes:
        return self.pages.not_found(request)


class Landing(resource.Resource):
    """"/": the organisation, its rooms, their schedules and places taken. Unknown paths: 404."""

    def __init__(self, pages: Pages) -> None:
        super().__init__()
        self.pages = pages

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        return NotFound(self.pages)

    def render_GET(self, request: server.Request) -> bytes:
        if request.postpath not in ([], [b""]):
            return self.pages.not_found(request)
        lang = self.pages.language(request)
        rooms = [self.pages.room_summary(r, lang) for r in self.pages.config.rooms]
        return self.pages.render(request, "landing.html", rooms=rooms)


class _RoomPage(resource.Resource):
    """/<kind>/<room id>: a room page, or 404 for an unknown room or a longer path."""

    isLeaf = True

    def __init__(self, pages: Pages, room: RoomConfig) -> None:
        super().__init__()
        self.pages = pages
        self.room = room

    def render_GET(self, request: server.Request) -> bytes:
        if request.postpath:
            return self.pages.not_found(request)
        return self.render_page(request)

    def render_page(self, request: server.Request) -> bytes:
        raise NotImplementedError


class JoinPage(_RoomPage):
    """Ground rules, privacy statement, pseudonym, avatar and helpline country."""

    def render_page(self, request: server.Request) -> bytes:
        lang = self.pages.language(request)
        rng = self.pages.rng
        avatar = generate_avatar(rng)  # inclusive defaults (spaces/pseudonyms.py)
        names = list(dict.fromkeys(generate(rng, lang) for _ in range(NAME_CHOICES * 2)))
        return self.pages.render(
            request, "join.html", room=self.pages.room_summary(self.room, lang),
            texts=self.pages.config.organisation.texts_for(lang),
            countries=self.pages.countries(lang),
            pseudonym=names[0], names=names[1:NAME_CHOICES + 1],
            max_length=self.pages.rules["max"], rules=self.pages.rules,
            colours=[(c, COLOUR_NAMES.get(c, c)) for c in AVATAR_COLORS],
            shapes=[(s, SHAPE_NAMES.get(s, s)) for s in AVATAR_SHAPES],
            colour=avatar["color"], shape=avatar["shape"])


class RoomPage(_RoomPage):
    """The room itself: the client in web/static/js/room.js does the rest."""

    def render_page(self, request: server.Request) -> bytes:
        lang = self.pages.language(request)
        return self.pages.render(request, "room.html", room=self.pages.room_summary(self.room, lang),
                                 countries=self.pages.countries(lang))


class RoomIndex(resource.Resource):
    """/join or /room: a child per configured room."""

    def __init__(self, pages: Pages, page: type[_RoomPage]) -> None:
        super().__init__()
        self.pages = pages
        self.page = page

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        room = self.pages.config.room(path.decode("utf-8", "replace"))
        if room is None:
            return NotFound(self.pages)
        return self.page(self.pages, room)

    def render_GET(self, request: server.Request) -> bytes:
        return self.pages.not_found(request)
