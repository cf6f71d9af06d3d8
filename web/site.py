"""One Site for pages, static files, health and the WebSocket.

Every response carries the security headers: a Content-Security-Policy that
allows only Hearth itself (no inline script, no third party), no referrer, no
sniffing, the microphone for this origin only, and no framing; none names the
server's software or version (no `Server` header: it only helps someone match
a known flaw to this deployment). The access log is off: a request line would
carry the client's address.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from autobahn.twisted.resource import WebSocketResource
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web import http, resource, server
from twisted.web.http_headers import Headers

from hearth.spaces.config import HearthConfig
from hearth.spaces.protocol import SUBPROTOCOL
from hearth.web.auth import Auth
from hearth.web.datadir import Secrets, load_secrets
from hearth.web.node import Node
from hearth.web.pages import JoinPage, Landing, Pages, RoomIndex, RoomPage
from hearth.web.proxy import AddressCap, client_address, is_trusted, trusted_networks
from hearth.web.static_files import StaticFiles, StaticResource

HERE = Path(__file__).resolve().parent
# The largest request body read (the sign-in form, web/auth.py, is the largest there is).
MAX_BODY_BYTES = 8192
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; media-src 'self'; worker-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    b"Content-Security-Policy": CSP.encode(),
    b"Referrer-Policy": b"no-referrer",
    b"X-Content-Type-Options": b"nosniff",
    b"Permissions-Policy": b"microphone=(self), camera=(), geolocation=(), interest-cohort=()",
    b"X-Frame-Options": b"DENY",
    b"Cross-Origin-Opener-Policy": b"same-origin",
    b"Cross-Origin-Resource-Policy": b"same-origin",
}


def templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              autoescape=True, undefined=jinja2.StrictUndefined)


class HearthRequest(server.Request):
    def __repr__(self) -> str:
        """Without the URI: Twisted's own log lines name a request by its repr (a HEAD
        answered with a body, for one), and a path can be a capability (an incident's
        acknowledgement link, which mail scanners fetch with HEAD) or a room's name."""
        return f"<{type(self).__name__} method={self.method!r}>"

    def process(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.setHeader(name, value)
        voice_src = getattr(getattr(self.channel, "site", None), "voice_src", None)
        if voice_src is not None:  # voice over UDP is on (web/webtransport.py)
            src = voice_src(self.getHeader(b"host"))
            if src:
                self.setHeader(b"Content-Security-Policy",
                               CSP.replace("connect-src 'self'", f"connect-src 'self' {src}"))
        if self.isSecure():
            self.setHeader(b"Strict-Transport-Security", b"max-age=31536000")
        super().process()

    def isSecure(self) -> bool:
        """Over our own TLS, or a trusted proxy's: the browser is on HTTPS either way, so
        cookies are Secure (and `__Host-`) and HSTS is sent."""
        return bool(super().isSecure()) or self._forwarded_https()

    def _trusted(self) -> Any:
        return getattr(getattr(self.channel, "site", None), "trusted_proxies", ())

    def _forwarded_https(self) -> bool:
        """A trusted reverse proxy terminated TLS (X-Forwarded-Proto: https)."""
        proto = self.getHeader(b"x-forwarded-proto")
        peer = getattr(self.transport.getPeer(), "host", None) if self.transport else None
        return proto == b"https" and is_trusted(peer, self._trusted())

    _body_bytes = 0

    def handleContentChunk(self, data: bytes) -> None:
        """A chunked body is counted as it comes: past the limit, 413 (HearthChannel)."""
        self._body_bytes += len(data)
        channel = self.channel
        if self._body_bytes > getattr(channel, "max_body", MAX_BODY_BYTES):
            if channel is not None and hasattr(channel, "body_too_large"):
                channel.body_too_large()
            return
        super().handleContentChunk(data)

    def getClientAddress(self) -> Any:
        """Behind a trusted proxy: the address the proxy saw (web/proxy.py). Only ever
        used as a keyed hash (sign-in limits); never logged."""
        address = super().getClientAddress()
        trusted = self._trusted()
        host = getattr(address, "host", None)
        if not trusted or not isinstance(host, str):
            return address
        forwarded = self.getHeader(b"x-forwarded-for")
        real = client_address(host, forwarded.decode("latin-1") if forwarded else None, trusted)
        if real is None or real == host:
            return address
        kind = IPv6Address if ":" in real else IPv4Address
        return kind("TCP", real, 0)


class HearthChannel(http.HTTPChannel):
    """An HTTP connection with limits Twisted does not set by itself.

    - Each request, head and body, must arrive within `header_timeout` seconds: from
      the connection's opening for the first, from the first byte of each next one
      on a kept-alive connection. Twisted's idle timeout is reset by every byte, so a
      slowloris client trickling a header a byte at a time would hold the connection
      for ever.
    - A body longer than MAX_BODY_BYTES (a declared Content-Length, or chunks adding
      up past it) is answered 413 and the connection closed before it is read.
    - A request line or header longer than 16 KiB is answered 431 and closed (Twisted
      alone closes without a word).
    - At most `limits.http_connections_per_address` connections are open from one
      address (a keyed hash: web/proxy.py AddressCap); the next is answered 429 and
      closed. A trusted proxy's connections are not counted (it carries many clients).
      A WebSocket counts here until its handshake, then against connections_per_address.
    """

    header_timeout = 10.0
    max_body = MAX_BODY_BYTES
    _head_deadline: Any = None
    _awaiting_request = True  # between requests (or before the first): the deadline runs
    _refused = False
    _address_key = b""

    def connectionMade(self) -> None:
        super().connectionMade()
        cap = getattr(getattr(self, "site", None), "http_cap", None)
        peer = getattr(self.transport.getPeer(), "host", None) if self.transport else None
        if cap is not None and not is_trusted(peer, getattr(self.site, "trusted_proxies", ())):
            key = cap.admit(peer)
            if key is None:
                self._refuse(b"429 Too Many Requests", b"Too many connections from your address.")
                return
            self._address_key = key
        self._arm()

    def _arm(self) -> None:
        from twisted.internet import reactor
        self._cancel_deadline()
        self._head_deadline = reactor.callLater(self.header_timeout, self._too_slow)

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._websocket is not None:
            self._to_websocket(data)
            return
        if self._awaiting_request and self._head_deadline is None:
            self._arm()  # the first byte of the next request on a kept-alive connection
        super().dataReceived(data)

    def rawDataReceived(self, data: bytes) -> None:
        if self._websocket is not None:
            self._to_websocket(data)
        elif not self._refused:
            super().rawDataReceived(data)

    _websocket: Any = None  # the transport a WebSocket handshake took over

    def _to_websocket(self, data: bytes) -> None:
        """Bytes read with the handshake (a client that did not wait for the 101): the
        WebSocket's first frames, which Twisted would keep for a next HTTP request that
        never comes, leaving the client unanswered."""
        protocol = getattr(self._websocket, "protocol", None)
        if data and protocol is not None and protocol is not self:
            protocol.dataReceived(data)

    def allHeadersReceived(self) -> None:
        if self.length is not None and self.length > self.max_body:
            self.body_too_large()
            return
        super().allHeadersReceived()

    def lineLengthExceeded(self, line: bytes) -> None:
        """A request line or header longer than Twisted reads (16 KiB): Twisted would just
        hang up; the client is told why."""
        self._refuse(b"431 Request Header Fields Too Large",
                     b"The request's first line or one of its headers is too long.")

    def body_too_large(self) -> None:
        """413 without reading the body (HearthRequest calls it for chunked bodies)."""
        self._refuse(b"413 Content Too Large", b"The request body is too large.")

    def allContentReceived(self) -> None:
        if self._refused:  # the rest of a refused body arrived in the same read
            return
        self._awaiting_request = False
        self._cancel_deadline()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        self._awaiting_request = True
        if self._dataBuffer:  # the next request's first bytes came while this one ran
            self._arm()
        super().requestDone(request)

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        """Every response Twisted writes passes here: without its `Server: TwistedWeb/…`."""
        if isinstance(headers, Headers):
            headers.removeHeader(b"server")
        super().writeHeaders(version, code, reason, headers)

    def _refuse(self, status: bytes, sentence: bytes) -> None:
        self._refused = True
        self._cancel_deadline()
        if self.transport is not None:
            self.transport.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; "
                                 b"charset=utf-8\r\nContent-Length: " + str(len(sentence)).encode()
                                 + b"\r\nConnection: close\r\n\r\n" + sentence)
            self.transport.loseConnection()

    def _too_slow(self) -> None:
        self._head_deadline = None
        if self.transport is not None:
            self.transport.abortConnection()

    def _cancel_deadline(self) -> None:
        if self._head_deadline is not None and self._head_deadline.active():
            self._head_deadline.cancel()
        self._head_deadline = None

    def _release_address(self) -> None:
        key, self._address_key = self._address_key, b""
        cap = getattr(getattr(self, "site", None), "http_cap", None)
        if key and cap is not None:
            cap.release(key)

    # A WebSocket handshake takes the transport over (autobahn's WebSocketResource sets
    # it to None here) and this channel never hears of the connection again: its place
    # is given back then, and the WebSocket counts against connections_per_address.
    @property
    def transport(self) -> Any:
        return self.__dict__.get("_transport")

    @transport.setter
    def transport(self, value: Any) -> None:
        if value is None:
            self._websocket = self.__dict__.get("_transport")
            self._release_address()
        self.__dict__["_transport"] = value

    def connectionLost(self, reason: Any) -> None:
        self._cancel_deadline()
        self._release_address()
        super().connectionLost(reason)


class HearthSite(server.Site):
    requestFactory = HearthRequest
    protocol = HearthChannel
    trusted_proxies: tuple[Any, ...] = ()  # networks whose X-Forwarded-For is believed
    http_cap: AddressCap | None = None  # open HTTP connections per address

    def log(self, request: Any) -> None:
        """No access log: a request line names the client's address."""


# --- health: /livez, /readyz, /healthz ------------------------------------------------


@dataclass
class Readiness:
    """Whether this node should get new people: its broker reachable, its crisis outbox below
    `pending_limit`, and not stopping. Lifecycle sets `draining` when a graceful stop begins."""

    node: Node
    alerts: Any = None  # web/alerts.py's Alerts (its outbox), if any
    pending_limit: int = 1000
    draining: bool = False

    def checks(self) -> dict[str, Any]:
        pending = len(self.alerts.outbox.pending()) if self.alerts is not None else 0
        return {"broker": bool(getattr(self.node.broker, "connected", True)),
                "alerts_pending": pending, "alerts_pending_limit": self.pending_limit,
                "draining": self.draining}

    def ready(self, checks: dict[str, Any] | None = None) -> bool:
        c = self.checks() if checks is None else checks
        return bool(c["broker"] and c["alerts_pending"] < c["alerts_pending_limit"]
                    and not c["draining"])


def _json(request: server.Request, code: int, body: dict[str, Any]) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(body).encode()


class Livez(resource.Resource):
    """200 while the process serves HTTP at all (a liveness probe: restart it if not)."""

    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        return _json(request, 200, {"status": "live"})


class Readyz(resource.Resource):
    """200 if this node should get new people (Readiness), else 503 with the failed checks
    (a load balancer's health check)."""

    isLeaf = True

    def __init__(self, readiness: Readiness) -> None:
        super().__init__()
        self.readiness = readiness

    def render_GET(self, request: server.Request) -> bytes:
        checks = self.readiness.checks()
        ready = self.readiness.ready(checks)
        return _json(request, 200 if ready else 503,
                     {"status": "ready" if ready else "unready", **checks})


class Health(resource.Resource):
    """For people: counts and the readiness checks; always 200 (`status` says "ok" or
    "degraded"). Probes use /livez and /readyz."""

    isLeaf = True

    def __init__(self, node: Node, broker_name: str, readiness: Readiness) -> None:
        super().__init__()
        self.node, self.broker_name, self.readiness = node, broker_name, readiness

    def render_GET(self, request: server.Request) -> bytes:
        venue = self.node.venue
        checks = self.readiness.checks()
        return _json(request, 200, {
            "status": "ok" if self.readiness.ready(checks) else "degraded",
            "protocol": SUBPROTOCOL, "broker": self.broker_name,
            "rooms": len(venue.rooms),
            "members": sum(len(r.members) for r in venue.rooms.values()),
            "connections": self.node.member_count, "checks": checks,
        })


def install_health(root: resource.Resource, node: Node, broker_name: str,
                   readiness: Readiness) -> None:
    root.putChild(b"livez", Livez())
    root.putChild(b"readyz", Readyz(readiness))
    root.putChild(b"healthz", Health(node, broker_name, readiness))


def build_site(config: HearthConfig, node: Node, ws: WebSocketResource,
               broker_name: str, secrets: Secrets | None = None,
               readiness: Readiness | None = None) -> HearthSite:
    pages = Pages(config, node, str(TEMPLATES))
    root = Landing(pages)  # unknown paths get the translated 404 page
    root.putChild(b"", Landing(pages))
    root.putChild(b"join", RoomIndex(pages, JoinPage))
    root.putChild(b"room", RoomIndex(pages, RoomPage))
    # The client under content-hashed URLs, immutable; a miss (a directory included: never a
    # listing) is the site's own 404 page. Templates get static(path).
    StaticResource(StaticFiles(STATIC), not_found=pages.not_found).install(
        root, pages.envs.values())
    install_health(root, node, broker_name, readiness or Readiness(node))
    root.putChild(b"ws", ws)
    # Facilitator sign-in: /login, /logout, /console, /console/ticket (web/auth.py).
    keys = secrets if secrets is not None else load_secrets(Path(config.server.data_dir))
    Auth(config, node, pages.render, keys, audit=node.audit).install(root)
    site = HearthSite(root, timeout=60)
    site.protocol = type("BoundHearthChannel", (HearthChannel,),
                         {"header_timeout": config.limits.header_timeout_seconds})
    site.trusted_proxies = trusted_networks(config.server.trusted_proxies)
    site.http_cap = AddressCap(keys.address_seed, config.limits.http_connections_per_address,
                               node.clock)
    site.displayTracebacks = False
    return site
