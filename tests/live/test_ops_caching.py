"""Cache headers as a browser meets them: hashed static files immutable, pages never stored."""

from __future__ import annotations

import re

import pytest_twisted
from twisted.internet import reactor
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from tests.support.live import LiveServer


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    raw = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})
    response = await Agent(reactor).request(b"GET", url.encode(), raw)
    body = await readBody(response)
    return response.code, {k.decode().lower(): v[0].decode()
                           for k, v in response.headers.getAllRawHeaders()}, body


@pytest_twisted.ensureDeferred
async def test_hashed_files_are_immutable_pages_are_no_store(server: LiveServer) -> None:
    code, headers, page = await get(server.http_url + "/room/circle")
    assert code == 200 and headers["cache-control"] == "no-store"
    scripts = re.findall(rb'src="(/static/js/[a-z]+\.[0-9a-f]{12}\.js)"', page)
    assert len(scripts) == 2, page  # common.js and room.js, by hashed URL only
    assert b'src="/static/js/room.js"' not in page
    for url in scripts:
        code, headers, body = await get(server.http_url + url.decode())
        assert code == 200 and headers["cache-control"] == "public, max-age=31536000, immutable"
        assert headers["content-type"].startswith("text/javascript")
        assert b'from "./' not in body or re.search(rb'from "\./[a-z-]+\.[0-9a-f]{12}\.js"', body)

    code, headers, body = await get(server.http_url + "/static/js/room.js")  # unhashed: tools
    assert code == 200 and headers["cache-control"] == "no-cache" and headers["etag"]
    code, _, _ = await get(server.http_url + "/static/js/room.js",
                           {"If-None-Match": headers["etag"]})
    assert code == 304
    for missing in ("/static/js/room.000000000000.js", "/static/js/", "/static/",
                    "/static/js/../../site.py", "/static/nope.js"):
        code, headers, _ = await get(server.http_url + missing)
        assert code == 404, missing  # an old version's URL, a directory: never a listing
