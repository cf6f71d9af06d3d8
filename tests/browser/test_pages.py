"""The pages over plain HTTP: security headers everywhere, language choice, escaping, catalogs.

No browser needed here; these run wherever the suite runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from babel.messages.extract import extract_from_dir
from twisted.internet import reactor
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from hearth.spaces.config import HearthConfig
from hearth.spaces.protocol import ERRORS
from hearth.web import i18n
from hearth.web.pages import COLOUR_NAMES, SHAPE_NAMES
from hearth.web.site import CSP, SECURITY_HEADERS, STATIC, TEMPLATES
from tests.support.config import make_config
from tests.support.live import LiveServer

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["/", "/?lang=es", "/join/circle", "/join/circle?lang=es", "/room/circle", "/room/other"]
NOT_FOUND = ["/nope", "/join/nope", "/room/nope", "/join/circle/extra", "/join/", "/room"]
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".json": "application/json",
                 ".svg": "image/svg+xml"}


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, list[str]], str]:
    raw = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})
    response = await Agent(reactor).request(b"GET", url.encode(), raw)
    body = await readBody(response)
    found = {k.decode().lower(): [v.decode() for v in vs]
             for k, vs in response.headers.getAllRawHeaders()}
    return response.code, found, body.decode("utf-8", "replace")


def static_files() -> list[str]:
    return sorted("/static/" + p.relative_to(STATIC).as_posix()
                  for p in STATIC.rglob("*") if p.is_file() and not p.name.startswith("."))


def check_security_headers(path: str, headers: dict[str, list[str]]) -> None:
    assert headers.get("content-security-policy") == [CSP], path
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name.decode().lower()) == [value.decode()], (path, name)
    csp = CSP
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "http" not in csp


@pytest_twisted.ensureDeferred
async def test_every_page_and_static_file_carries_the_security_headers(server: LiveServer) -> None:
    files = static_files()
    assert {"/static/js/room.js", "/static/js/e2ee.js", "/static/css/hearth.css",
            "/static/i18n/es.json"} <= set(files)
    for path in PAGES + NOT_FOUND:
        code, headers, body = await get(server.http_url + path)
        assert code == (404 if path in NOT_FOUND else 200), path
        check_security_headers(path, headers)
        assert headers["content-type"] == ["text/html; charset=utf-8"], path
        assert headers["cache-control"] == ["no-store"], path
        # No inline script or style in any page, and every script is a same-origin module.
        assert "<style" not in body and " style=" not in body and " on" + "click=" not in body
        for tag in re.findall(r"<script[^>]*>", body):
            assert re.fullmatch(r'<script type="module" src="/static/js/[a-z]+\.[0-9a-f]{12}\.js">',
                                tag), tag  # content-hashed (web/static_files.py)
    for path in files:
        code, headers, _ = await get(server.http_url + path)
        assert code == 200, path
        check_security_headers(path, headers)
        expected = CONTENT_TYPES.get(Path(path).suffix)
        if expected:
            assert headers["content-type"][0].startswith(expected), (path, headers["content-type"])


@pytest_twisted.ensureDeferred
async def test_the_language_comes_from_query_cookie_or_accept_language(server: LiveServer) -> None:
    url = server.http_url + "/join/circle"
    _, headers, body = await get(url, {"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"})
    assert '<html lang="es">' in body and "Salida rápida" in body and "Normas del grupo" in body
    assert headers["content-language"] == ["es"] and "set-cookie" not in headers
    _, _, body = await get(url, {"Accept-Language": "fr, de;q=0.8"})
    assert '<html lang="en">' in body and "Quick exit" in body
    _, headers, body = await get(url + "?lang=en", {"Accept-Language": "es"})
    assert '<html lang="en">' in body
    [cookie] = headers["set-cookie"]
    assert cookie.startswith("hearth_lang=en") and "SameSite=strict" in cookie
    assert "Expires" not in cookie and "Max-Age" not in cookie  # a session cookie only
    _, _, body = await get(url, {"Cookie": "hearth_lang=es", "Accept-Language": "en"})
    assert '<html lang="es">' in body
    _, _, body = await get(url + "?lang=xx", {"Cookie": "hearth_lang=zz"})
    assert '<html lang="en">' in body


def test_accept_language_parsing() -> None:
    assert i18n.parse_accept_language("fr-CH, fr;q=0.9, es;q=0.95, *;q=0.5") == ["fr", "es", "fr", "*"]
    assert i18n.parse_accept_language("es;q=0, en") == ["en"]
    assert i18n.choose(None, None, "es;q=0, en").lang == "en"
    assert i18n.choose("ES-mx", "en", None) == i18n.Choice("es", True)


@pytest.fixture
def config() -> HearthConfig:
    """Organisation texts with markup in them, and a room whose title needs escaping."""
    return make_config(organisation={
        "name": "Hearth <b>&</b> Co", "helpline_countries": ["GB", "MX", "ES", "US"],
        "quick_exit_url": "https://weather.example/today?x=1&y=2",
        "texts": {"en": {"ground_rules": ["Be <script>alert(1)</script> kind."]},
                  "es": {"ground_rules": ["Sé <b>amable</b>."]}}})


@pytest_twisted.ensureDeferred
async def test_landing_and_join_show_the_config_escaped(server: LiveServer) -> None:
    _, _, landing = await get(server.http_url + "/")
    assert "Hearth &lt;b&gt;&amp;&lt;/b&gt; Co" in landing and "<b>&" not in landing
    assert 'href="/join/circle"' in landing and 'href="/join/other"' in landing
    assert "Test circle" in landing and "0 of 8 places taken" in landing
    assert 'href="https://weather.example/today?x=1&amp;y=2"' in landing
    _, _, join = await get(server.http_url + "/join/circle")
    assert "Be &lt;script&gt;alert(1)&lt;/script&gt; kind." in join and "<script>alert" not in join
    assert "What is never kept" in join and "When we would break anonymity" in join
    countries = re.findall(r'<option value="([A-Z]{2})">([^<]+)</option>', join)
    assert countries == [("MX", "Mexico"), ("ES", "Spain"), ("GB", "United Kingdom"),
                         ("US", "United States")]
    _, _, join_es = await get(server.http_url + "/join/circle?lang=es")
    assert "Sé &lt;b&gt;amable&lt;/b&gt;." in join_es
    assert re.findall(r'<option value="([A-Z]{2})">([^<]+)</option>', join_es) == [
        ("ES", "España"), ("US", "Estados Unidos"), ("MX", "México"), ("GB", "Reino Unido")]
    pseudonym = re.search(r'id="pseudonym" type="text" value="([^"]+)"', join_es)
    assert pseudonym is not None and len(pseudonym.group(1)) >= 2
    names = json.loads(re.search(r"data-names='([^']+)'", join_es).group(1))  # type: ignore[union-attr]
    assert len(names) >= 5 and pseudonym.group(1) not in names


def _template_messages() -> set[str]:
    method_map = [("**.html", "jinja2")]
    options = {"**.html": {"extensions": "jinja2.ext.i18n"}}
    found = {message for _, _, message, _, _ in extract_from_dir(
        str(TEMPLATES), method_map=method_map, options_map=options)}
    return {m[0] if isinstance(m, tuple) else m for m in found}


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"%\(\w+\)s", text))


def test_the_spanish_template_catalog_is_complete() -> None:
    messages = _template_messages() | set(COLOUR_NAMES.values()) | set(SHAPE_NAMES.values())
    assert len(messages) > 60
    spanish = i18n.catalog("es")
    ours = {m for m in messages if m in spanish.messages or _mine(m)}
    missing = sorted(m for m in ours if not spanish.messages.get(m))
    assert missing == [], f"untranslated in web/locale/es: {missing}"
    for message in ours:
        translated = spanish.gettext(message)
        assert _placeholders(translated) == _placeholders(message), message


def _mine(message: str) -> bool:
    """Messages of the participant's pages (other engineers' templates have their own check)."""
    mine = ("base.html", "landing.html", "join.html", "room.html", "not_found.html")
    return any(message in (TEMPLATES / name).read_text() for name in mine)


def _js_keys() -> set[str]:
    keys: set[str] = set()
    for path in (STATIC / "js").glob("*.js"):
        keys |= set(re.findall(r"""\bt\(\s*"([^"]+)\"""", path.read_text()))
    return keys


def test_the_client_catalogs_match_and_cover_every_key_and_error_code() -> None:
    catalogs: dict[str, dict[str, Any]] = {
        lang: json.loads((STATIC / "i18n" / f"{lang}.json").read_text()) for lang in i18n.LANGUAGES}
    assert set(catalogs["en"]) == set(catalogs["es"])
    for key, text in catalogs["en"].items():
        assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", catalogs["es"][key])), key
    used = _js_keys() | {f"error.{code}" for code in ERRORS}
    used |= {f"ended.{s}" for s in ("left", "removed", "elsewhere", "expired", "denied", "ended")}
    used |= {"role.facilitator", "role.operator"}
    assert sorted(used - set(catalogs["en"])) == []
    assert len(_js_keys()) > 25  # the scan found the calls (it would pass vacuously otherwise)
