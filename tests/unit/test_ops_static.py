"""The browser client under content-hashed URLs (web/static_files.py): every reference between
files is hashed, and after an upgrade a page of the old version can never load a new module."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from hearth.web.site import STATIC
from hearth.web.static_files import StaticFiles

ENTRIES = ("js/common.js", "js/join.js", "js/room.js", "js/console.js", "css/hearth.css",
           "img/hearth.svg")
REFERENCE = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)["'](\.{1,2}/[^"']+)["']"""
                       r"""|["'`](/static/[^"'`\s]+)["'`]""")


def reachable(files: StaticFiles) -> dict[str, bytes]:
    """Every URL a page of this version can load, from its entry points through the served
    bodies' references, with the bytes served for it."""
    seen: dict[str, bytes] = {}
    todo = [files.url(entry) for entry in ENTRIES]
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        found = files.find(url.removeprefix("/static/"))
        assert found is not None, f"{url} is referred to but not served"
        asset, hashed = found
        assert hashed, f"{url} is not a hashed URL"
        seen[url] = asset.body
        for relative, absolute in REFERENCE.findall(asset.body.decode("utf-8", "replace")):
            if absolute:
                todo.append(absolute)
            elif relative:
                base = url.rsplit("/", 1)[0]
                todo.append(str(Path(base, relative)).replace("\\", "/"))
    return seen


def test_every_reference_in_the_client_is_a_hashed_url() -> None:
    files = StaticFiles(STATIC)
    urls = reachable(files)
    for path in ("js/e2ee.js", "js/capture-worklet.js", "i18n/en.json", "i18n/es.json"):
        assert files.url(path) in urls, f"{path} is not reached through hashed references"
    for url, body in urls.items():
        assert re.fullmatch(r"/static/[a-z0-9/_-]+\.[0-9a-f]{12}\.[a-z]+", url), url
        text = body.decode("utf-8", "replace")
        for relative in re.findall(r"""\bfrom\s*["'](\.{1,2}/[^"']+)["']""", text):
            assert re.search(r"\.[0-9a-f]{12}\.js$", relative), f"{url} imports {relative}"


def test_catalog_for_every_language_file() -> None:
    i18n = (STATIC / "js" / "i18n.js").read_text()
    for catalog in (STATIC / "i18n").glob("*.json"):
        assert f'"/static/i18n/{catalog.name}"' in i18n, f"i18n.js does not name {catalog.name}"


def upgraded(tmp_path: Path, change: str) -> StaticFiles:
    root = tmp_path / "v2"
    shutil.copytree(STATIC, root)
    with (root / change).open("a") as f:
        f.write("\n// the next release\n")
    return StaticFiles(root)


@pytest.mark.parametrize("change", ["js/e2ee.js", "js/i18n.js", "i18n/es.json",
                                    "js/capture-worklet.js", "css/hearth.css"])
def test_an_old_page_never_gets_a_new_module(tmp_path: Path, change: str) -> None:
    old = StaticFiles(STATIC)
    new = upgraded(tmp_path, change)
    old_urls = reachable(old)
    kept = gone = 0
    for url, body in old_urls.items():
        served = new.find(url.removeprefix("/static/"))
        if served is None:
            gone += 1  # a 404: the old page cannot mix versions
        else:
            assert served[1] and served[0].body == body, f"{url} now serves other bytes"
            kept += 1
    assert old.url(change) not in reachable(new)  # the changed file has a new URL
    assert gone >= 1 and kept >= 1  # only what reaches the change moved; the rest is cached


def test_a_changed_module_moves_every_module_that_imports_it(tmp_path: Path) -> None:
    old, new = StaticFiles(STATIC), upgraded(tmp_path, "js/e2ee.js")
    for importer in ("js/room.js", "js/console.js", "js/groupchat.js", "js/e2ee.js"):
        assert old.url(importer) != new.url(importer), importer
    for untouched in ("js/movement.js", "js/common.js", "css/hearth.css"):
        assert old.url(untouched) == new.url(untouched), untouched


@pytest.mark.parametrize("language", ["en", "es"])
def test_a_client_catalog_names_each_key_once(language: str) -> None:
    """JSON keeps the last of two equal keys: a key given twice hides one of its texts."""
    path = Path(__file__).resolve().parents[2] / "web" / "static" / "i18n" / f"{language}.json"
    keys = json.loads(path.read_text(encoding="utf-8"),
                      object_pairs_hook=lambda pairs: [key for key, _ in pairs])
    assert sorted({k for k in keys if keys.count(k) > 1}) == []


def test_only_real_files_inside_the_static_root_are_served(tmp_path: Path) -> None:
    """No dotfile, nothing outside the root by a symlink (a file or a directory), and no
    path that climbs out: the served set is fixed at start, looked up by name."""
    root, outside = tmp_path / "static", tmp_path / "private"
    (root / "js").mkdir(parents=True)
    outside.mkdir()
    (outside / "secrets.json").write_text("{}")
    (root / "js" / "room.js").write_text("export const a = 1;\n")
    (root / ".env").write_text("KEY=1\n")
    (root / "js" / ".cache").mkdir()
    (root / "js" / ".cache" / "x.js").write_text("1\n")
    (root / "js" / "linked.json").symlink_to(outside / "secrets.json")
    (root / "elsewhere").symlink_to(outside, target_is_directory=True)
    (root / "js" / "same.js").symlink_to(root / "js" / "room.js")  # inside: fine
    files = StaticFiles(root)
    assert sorted(files.assets) == ["js/room.js", "js/same.js"]
    for path in (".env", "js/.cache/x.js", "js/linked.json", "elsewhere/secrets.json",
                 "../private/secrets.json", "js/../../private/secrets.json", "js/", ""):
        assert files.find(path) is None, path
