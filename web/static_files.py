"""The browser client's files under content-hashed URLs, so a page never mixes two versions.

At start every file under web/static is read once and given a URL that names a
digest of its content: `/static/js/room.js` is served as
`/static/js/room.<digest>.js` with `Cache-Control: public, max-age=31536000,
immutable`. Pages (never cached themselves: `no-store`) refer only to those URLs
(the templates' `static("js/room.js")`).

ES modules import each other (`import … from "./e2ee.js"`), and a module's own
URL must change when anything it imports changes, or a browser could run a new
room.js with a cached old e2ee.js. So, as Django's ManifestStaticFilesStorage
does, the files are served with their references rewritten to hashed URLs:

- in JavaScript, relative module specifiers (`from "./x.js"`, `import "./x.js"`,
  `import("./x.js")`) and string literals naming a static file
  (`"/static/js/capture-worklet.js"`, `"/static/i18n/es.json"`);
- in CSS, `url(...)` references to static files.

A file's digest covers its own content and the content of every file it reaches
through such references (its closure, cycles included): changing e2ee.js
changes the URL of every module that imports it, directly or not, and of
nothing else. After an upgrade, a URL of the old version is either served with
exactly the old bytes (nothing in its closure changed) or not at all (404):
never a new module under an old page. A page that was open across the upgrade
fails to load a module it had not loaded yet and is reloaded by its user;
tests/unit/test_ops_static.py checks this property on the real client.

The unhashed URLs are served too (the same bytes, `Cache-Control: no-cache`
with an ETag), for tools and tests that load a module directly. There is no
directory listing: a directory is the site's 404 page like any unknown name. What
is served is fixed at start and looked up by name, so no path climbs out of
web/static; dotfiles and anything a symlink leads to outside it are left out.
"""

from __future__ import annotations

import hashlib
import mimetypes
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.web import resource, server

DIGEST_CHARS = 12
IMMUTABLE = b"public, max-age=31536000, immutable"
REVALIDATE = b"no-cache"
CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".json": "application/json",
                 ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8"}

# A relative module specifier after `from`, `import` or `import(`.
_JS_MODULE = re.compile(r"""(?P<lead>\bfrom\s*|\bimport\s*\(?\s*)(?P<q>["'])"""
                        r"""(?P<ref>\.{1,2}/[^"'\s]+)(?P=q)""")
# A string literal naming a static file by its absolute path.
_JS_STATIC = re.compile(r"""(?P<lead>)(?P<q>["'`])(?P<ref>/static/[^"'`\s$]+)(?P=q)""")
_CSS_URL = re.compile(r"""(?P<lead>url\(\s*)(?P<q>["']?)(?P<ref>[^"')\s#][^"')\s]*)(?P=q)""")
PATTERNS = {".js": (_JS_MODULE, _JS_STATIC), ".mjs": (_JS_MODULE, _JS_STATIC),
            ".css": (_CSS_URL,)}


@dataclass(frozen=True)
class Asset:
    path: str  # relative to the static root, e.g. "js/room.js"
    digest: str  # of the file and everything it refers to
    body: bytes  # as served: references rewritten to hashed URLs
    content_type: str

    @property
    def hashed(self) -> str:  # e.g. "js/room.3f2a9c01b7de.js"
        return hashed_name(self.path, self.digest)

    @property
    def url(self) -> str:
        return f"/static/{self.hashed}"

    @property
    def etag(self) -> bytes:
        return f'"{self.digest}"'.encode()


def hashed_name(path: str, digest: str) -> str:
    stem, dot, ext = path.rpartition(".")
    return f"{stem}.{digest}.{ext}" if dot and "/" not in ext else f"{path}.{digest}"


class StaticFiles:
    """Every file under `root`, read once, with its hashed URL and rewritten body."""

    def __init__(self, root: Path) -> None:
        self.root = root
        raw = {p.relative_to(root).as_posix(): p.read_bytes()
               for p in sorted(root.rglob("*")) if self._servable(root, p)}
        edges = {path: self._references(path, body, raw) for path, body in raw.items()}
        own = {path: hashlib.sha256(body).hexdigest() for path, body in raw.items()}
        digests = {path: self._closure_digest(path, edges, own) for path in raw}
        hashed = {path: hashed_name(path, digests[path]) for path in raw}
        self.assets: dict[str, Asset] = {}
        for path, body in raw.items():
            ext = posixpath.splitext(path)[1]
            served = self._rewrite(path, body, hashed, ext) if ext in PATTERNS else body
            content_type = CONTENT_TYPES.get(ext) or mimetypes.guess_type(path)[0] \
                or "application/octet-stream"
            self.assets[path] = Asset(path, digests[path], served, content_type)
        self.by_hashed = {a.hashed: a for a in self.assets.values()}

    @staticmethod
    def _servable(root: Path, path: Path) -> bool:
        """A file, no part of whose name starts with a dot, that is inside `root` once every
        symlink is followed (a link out of the client's files is never served)."""
        if not path.is_file() or any(part.startswith(".") for part in
                                     path.relative_to(root).parts):
            return False
        return path.resolve().is_relative_to(root.resolve())

    @staticmethod
    def _resolve(source: str, ref: str) -> str | None:
        """A reference in `source` as a path under the static root (None: not a static file)."""
        if ref.startswith("/static/"):
            return posixpath.normpath(ref[len("/static/"):])
        if ref.startswith(("./", "../")) or not re.match(r"^[a-z][a-z0-9+.-]*:|^/", ref):
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(source), ref))
            return None if joined.startswith("..") else joined
        return None

    def _references(self, path: str, body: bytes, files: dict[str, bytes]) -> set[str]:
        ext = posixpath.splitext(path)[1]
        text = body.decode("utf-8", "replace")
        found = set()
        for pattern in PATTERNS.get(ext, ()):
            for match in pattern.finditer(text):
                target = self._resolve(path, match["ref"])
                if target is not None and target in files:
                    found.add(target)
        return found

    @staticmethod
    def _closure_digest(path: str, edges: dict[str, set[str]], own: dict[str, str]) -> str:
        seen, todo = {path}, [path]
        while todo:
            for target in edges[todo.pop()]:
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        digest = hashlib.sha256()
        for member in sorted(seen):
            digest.update(f"{member}\0{own[member]}\n".encode())
        return digest.hexdigest()[:DIGEST_CHARS]

    def _rewrite(self, path: str, body: bytes, hashed: dict[str, str], ext: str) -> bytes:
        text = body.decode("utf-8")

        def replace(match: re.Match[str]) -> str:
            ref = match["ref"]
            target = self._resolve(path, ref)
            if target is None or target not in hashed:
                return match[0]
            new_ref = ("/static/" + hashed[target] if ref.startswith("/static/")
                       else ref[:len(ref) - len(posixpath.basename(ref))]
                       + posixpath.basename(hashed[target]))
            return f"{match['lead']}{match['q']}{new_ref}{match['q']}"

        for pattern in PATTERNS[ext]:
            text = pattern.sub(replace, text)
        return text.encode("utf-8")

    def url(self, path: str) -> str:
        """The hashed URL of `path` (relative to the static root): the templates' static()."""
        return self.assets[path].url

    def find(self, path: str) -> tuple[Asset, bool] | None:
        """(the asset, whether `path` is its hashed name) or None."""
        if path in self.by_hashed:
            return self.by_hashed[path], True
        if path in self.assets:
            return self.assets[path], False
        return None


class StaticResource(resource.Resource):
    """/static/…: hashed URLs immutable, unhashed ones revalidated, anything else 404."""

    isLeaf = True

    def __init__(self, files: StaticFiles,
                 not_found: Callable[[server.Request], bytes] | None = None) -> None:
        """`not_found`: the site's own 404 page (a plain 404 without it)."""
        super().__init__()
        self.files = files
        self.not_found = not_found

    def render_GET(self, request: server.Request) -> bytes:
        path = "/".join(p.decode("utf-8", "replace") for p in request.postpath)
        found = self.files.find(path)
        if found is None:  # an unknown name, an old version's URL, a directory
            if self.not_found is not None:
                return self.not_found(request)
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            request.setHeader(b"Cache-Control", b"no-store")
            return b"Not found.\n"
        asset, immutable = found
        request.setHeader(b"Content-Type", asset.content_type.encode())
        request.setHeader(b"ETag", asset.etag)
        request.setHeader(b"Cache-Control", IMMUTABLE if immutable else REVALIDATE)
        if not immutable and request.getHeader(b"if-none-match") == asset.etag:
            request.setResponseCode(304)
            return b""
        return asset.body

    def install(self, root: Any, envs: Any) -> None:
        """Serve under /static and give every template environment `static(path)`."""
        root.putChild(b"static", self)
        for env in envs:
            env.globals["static"] = self.files.url
