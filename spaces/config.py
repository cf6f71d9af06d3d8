"""Typed configuration: every section, its defaults, and the checks run at load.

A config file is untrusted input. Loading never raises on the first problem:
it collects every error, each naming the file, the dotted key and what was
expected, so an operator fixes them in one pass (`hearth check-config`).
Unknown keys are errors too — a misspelt limit silently left at its default is
how safe defaults get lost.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hearth.spaces.layout import Circle, Corner, Layout, Point, Translations, translated

SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "config" / "hearth.toml"

_ROOM_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}\Z")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+\Z")
_EXIT_URL = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(/[^\s\"'<>\\]*)?\Z")
_COUNTRY = re.compile(r"^[A-Z]{2}\Z")
_PROXY = re.compile(r"^[0-9A-Fa-f.:]+(/[0-9]{1,3})?\Z")


class ConfigError(Exception):
    """One or more problems in a config file; `problems` holds one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def default_data_dir() -> str:
    return str(Path("~/.local/share/hearth").expanduser())


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    listen: tuple[str, ...] = ("tcp:8080:interface=127.0.0.1",)
    allowed_origins: tuple[str, ...] = ()
    # Secrets, facilitator accounts and the audit log live here (mode 0700).
    data_dir: str = field(default_factory=default_data_dir)
    # Share rooms between nodes through Redis: redis://host:6379/0, rediss://…, or
    # redis+cluster://host:7000 for a Redis Cluster. Empty: this process alone.
    redis: str = ""
    # Reverse proxies (addresses or networks) whose X-Forwarded-For is believed: from
    # them, a client's address (for bans and rate limits) is the header's last hop.
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    """Prometheus /metrics: counts and states, never a pseudonym or an address."""
    enabled: bool = True
    # "" = only loopback peers (not forwarded by a proxy) may scrape; otherwise the
    # scraper must send `Authorization: Bearer <token>`.
    token: str = ""


@dataclass(frozen=True, kw_only=True)
class RetentionConfig:
    """How long what is kept on disk is kept, in days (a daily purge, and one at start)."""
    audit_days: int = 90
    incidents_days: int = 90  # resolved incidents; unresolved ones are always kept
    reports_days: int = 30


@dataclass(frozen=True, kw_only=True)
class OrganisationTexts:
    """What a participant reads on the join page, in one language.

    Each is a list of short paragraphs, shown as written (escaped, never as
    HTML): the organisation's own words, because only it can promise them.
    """
    ground_rules: tuple[str, ...]
    privacy_kept: tuple[str, ...]  # what is kept, and for how long
    privacy_not_kept: tuple[str, ...]  # what is never kept
    anonymity_exceptions: tuple[str, ...]  # when the organisation would break anonymity


TEXT_KEYS = ("ground_rules", "privacy_kept", "privacy_not_kept", "anonymity_exceptions")
TEXT_LOCALES = ("en", "es")  # the languages the pages are translated into

DEFAULT_TEXTS: Mapping[str, OrganisationTexts] = {
    "en": OrganisationTexts(
        ground_rules=(
            "Be kind. Everyone here is going through something.",
            "What people share here stays here: do not repeat anyone's story outside the group.",
            "Do not share details that could identify you or anyone else: full names, addresses, "
            "phone numbers, schools or workplaces.",
            "No hate, harassment or sexual content. Facilitators may remove anyone who puts the "
            "group at risk.",
            "This group is peer support, not emergency care. If you are in danger right now, "
            "call your local emergency number.",
        ),
        privacy_kept=(
            "A record of moderation actions (for example, someone being removed) and of crisis "
            "alerts. It holds pseudonyms, never what was said, and is deleted after the retention "
            "period the organisation has set.",
            "A message that someone reports to the facilitators: its text and the pseudonym of "
            "the person who sent it, so that they can act on it.",
        ),
        privacy_not_kept=(
            "The conversation. Messages are end-to-end encrypted: the server passes them on "
            "without being able to read them, and nothing of the conversation is kept after "
            "the session.",
            "Your IP address. Where a ban needs it, only a keyed hash that changes every day is kept, "
            "for a short time. We never ask for an account, an e-mail address or a phone number.",
            "Your pseudonym and avatar once you leave, except in a report or a moderation record.",
        ),
        anonymity_exceptions=(
            "We do not know who you are, so we cannot reveal it. If you tell a facilitator that "
            "your life or someone else's is in immediate danger, they may share what you told "
            "them with emergency services. Whenever it is safe to, they will tell you first.",
        ),
    ),
    "es": OrganisationTexts(
        ground_rules=(
            "Sé amable. Todas las personas aquí están pasando por algo.",
            "Lo que se comparte aquí se queda aquí: no cuentes la historia de nadie fuera del grupo.",
            "No compartas datos que puedan identificarte a ti o a otra persona: nombres completos, "
            "direcciones, teléfonos, escuelas o lugares de trabajo.",
            "Nada de odio, acoso ni contenido sexual. Quien facilita puede expulsar a quien ponga "
            "en riesgo al grupo.",
            "Este grupo es apoyo entre pares, no atención de emergencias. Si estás en peligro ahora "
            "mismo, llama al número de emergencias de tu país.",
        ),
        privacy_kept=(
            "Un registro de las acciones de moderación (por ejemplo, una expulsión) y de las "
            "alertas de crisis. Contiene seudónimos, nunca lo que se dijo, y se borra al terminar "
            "el plazo de conservación que fija la organización.",
            "Un mensaje que alguien denuncia a quien facilita: su texto y el seudónimo de quien "
            "lo envió, para poder actuar.",
        ),
        privacy_not_kept=(
            "La conversación. Los mensajes están cifrados de extremo a extremo: el servidor los "
            "transmite sin poder leerlos, y no se guarda nada de la conversación después de la "
            "sesión.",
            "Tu dirección IP. Si una expulsión lo requiere, solo se guarda por poco tiempo una huella "
            "criptográfica que cambia cada día. Nunca pedimos una cuenta, un correo electrónico ni un "
            "teléfono.",
            "Tu seudónimo y tu avatar cuando te vas, salvo en una denuncia o un registro de "
            "moderación.",
        ),
        anonymity_exceptions=(
            "No sabemos quién eres, así que no podemos revelarlo. Si le dices a quien facilita que "
            "tu vida o la de otra persona corre peligro inmediato, puede compartir lo que le "
            "contaste con los servicios de emergencia. Siempre que sea seguro, te lo dirá antes.",
        ),
    ),
}


@dataclass(frozen=True, kw_only=True)
class OrganisationConfig:
    name: str = "Hearth"
    # Where the quick-exit button sends a participant: a neutral, everyday site.
    quick_exit_url: str = "https://www.bbc.com/weather"
    # ISO 3166-1 alpha-2 codes offered on the join page for helplines (chosen, never guessed).
    helpline_countries: tuple[str, ...] = ("GB", "IE", "US", "CA", "AU", "NZ", "ES", "MX", "AR",
                                           "CO", "CL", "PE")
    texts: Mapping[str, OrganisationTexts] = field(default_factory=lambda: dict(DEFAULT_TEXTS))

    def texts_for(self, locale: str) -> OrganisationTexts:
        """The texts in `locale`, or in English when the locale is not offered."""
        return self.texts.get(locale) or self.texts["en"]


@dataclass(frozen=True, kw_only=True)
class SessionConfig:
    # A dropped connection may resume the same member within this many seconds.
    resume_grace_seconds: float = 60.0
    # A page that says it is closing (a closed tab, or a reload) is away this long, so that a
    # reload comes back as the same member; a closed tab has left when it runs out.
    closing_grace_seconds: float = 5.0


@dataclass(frozen=True, kw_only=True)
class LimitsConfig:
    max_frame_bytes: int = 65536
    max_envelope_chars: int = 24000
    messages_per_second: float = 20.0
    message_burst: int = 40
    flood_strikes: int = 50
    moves_per_second: float = 15.0
    pseudonym_max_length: int = 24
    # Open WebSocket connections from one address (counted by keyed hash); 0 = no cap.
    connections_per_address: int = 20
    # Seconds a connection may take to send each complete HTTP request, head and body
    # (slowloris; counted again for every request on a kept-alive connection).
    header_timeout_seconds: float = 10.0
    # Open HTTP connections (pages, files, sign-in; a WebSocket until its handshake) from
    # one address, counted by keyed hash; 0 = no cap. Not applied to trusted proxies.
    http_connections_per_address: int = 64
    # Bytes sent to one client that it has not read yet (chat is never dropped for a slow
    # reader, so it waits in memory): past this the connection is cut (1013) and the
    # member is away, free to resume. Voice has its own, smaller bound.
    max_unsent_bytes: int = 4194304


@dataclass(frozen=True, kw_only=True)
class MovementConfig:
    walk_speed: float = 3.0
    tick_hz: float = 10.0


@dataclass(frozen=True, kw_only=True)
class VoiceConfig:
    hearing_range: float = 7.0
    max_speakers: int = 4
    frames_per_second: float = 50.0
    frame_burst: int = 10
    max_frame_bytes: int = 1024
    # A listener whose socket holds more than this many unsent bytes gets no
    # voice frames until it drains: voice is droppable, chat and control are not.
    slow_listener_bytes: int = 65536


@dataclass(frozen=True, kw_only=True)
class WebTransportConfig:
    """Voice over UDP: WebTransport (HTTP/3) datagrams beside the WebSocket, which keeps
    everything else and carries voice whenever WebTransport cannot (docs/operations.md)."""
    # The UDP port; 0 = off (voice rides the WebSocket, as always).
    port: int = 0
    # The address to listen on ("::" or "0.0.0.0" for every interface).
    interface: str = "127.0.0.1"
    # The operator's certificate chain and key (PEM), as for an ssl: listener...
    certificate: str = ""
    private_key: str = ""
    # ...or a short-lived self-signed certificate (ECDSA P-256, rotated), which browsers
    # accept by its hash, handed to the page over the WebSocket.
    self_signed: bool = False
    # The host name browsers reach this node's UDP port at ("" = the host the page was
    # loaded from).
    public_host: str = ""
    # QUIC connections at once (bound or still binding); more are closed at once and
    # their members' voice stays on the WebSocket. A datagram costs the server about 40
    # times the CPU of a WebSocket frame (aioquic's per-packet Python): 24 listeners who
    # each hear one speaker take about a quarter of a core (docs/operations.md).
    max_connections: int = 24


@dataclass(frozen=True, kw_only=True)
class LoginConfig:
    """Facilitator sign-in: sessions, and how failed attempts slow down and lock out."""
    # A signed-in session ends after this long without a request, and after
    # session_max_seconds in any case.
    session_idle_seconds: float = 8 * 3600.0
    session_max_seconds: float = 24 * 3600.0
    # From this many failures on, each next attempt waits 1, 2, 4, 8 ... seconds
    # (at most max_delay_seconds), counted per account name and per client address.
    delay_after_failures: int = 3
    max_delay_seconds: float = 60.0
    # This many failures lock the account name for lockout_seconds; failures are
    # forgotten lockout_seconds after the last one.
    lockout_after_failures: int = 10
    lockout_seconds: float = 900.0
    # Failures from one client address (kept only as a keyed hash) before it is
    # locked out of every account; 0 turns the per-address limit off (behind a
    # reverse proxy every client shares the proxy's address).
    address_lockout_after_failures: int = 30


@dataclass(frozen=True, kw_only=True)
class WebhookConfig:
    name: str
    url: str
    secret: str
    tier: str = "primary"  # "primary" gets every tier that calls on-call; "secondary" the later
    # The body carries an acknowledgement link that stops escalation: over plain http to
    # another machine anyone on the path could read and use it. Refused unless allowed here.
    allow_plain_http: bool = False


WHSEC = "whsec_"


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a webhook's `secret`: Standard Webhooks' `whsec_<base64>` form is the
    decoded bytes; any other text is its UTF-8 bytes. b"" for a `whsec_` that is not base64."""
    if secret.startswith(WHSEC):
        import base64
        import binascii
        body = secret[len(WHSEC):]
        try:
            return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except (binascii.Error, ValueError):
            return b""
    return secret.encode("utf-8")


@dataclass(frozen=True, kw_only=True)
class PagerDutyConfig:
    """A PagerDuty service (Events API v2): one integration's routing key."""
    name: str
    routing_key: str
    tier: str = "primary"
    url: str = "https://events.pagerduty.com/v2/enqueue"  # EU: events.eu.pagerduty.com


SMTP_TLS = ("starttls", "implicit", "none")
SMTP_PORTS = {"starttls": 587, "implicit": 465, "none": 25}


@dataclass(frozen=True, kw_only=True)
class EmailConfig:
    smtp_host: str
    # "starttls" (the default: the server must offer STARTTLS, or nothing is sent),
    # "implicit" (TLS from the first byte, port 465), "none" (a relay on this machine).
    tls: str = "starttls"
    smtp_port: int = 587
    # Optional SMTP authentication (PLAIN or LOGIN), only ever over TLS.
    username: str = ""
    password: str = ""
    # PEM file of the CAs to trust for the server's certificate ("" = the system's).
    ca_file: str = ""
    sender: str = "hearth@localhost"
    on_call: tuple[str, ...] = ()
    admin: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class CrisisConfig:
    # Helplines, rule packs and escalation tiers (docs/crisis.md); relative to the config file.
    directory: str = str(Path(__file__).resolve().parent.parent / "config" / "crisis")
    # The address people use to reach this Hearth, for links in alerts ("" = the first listener).
    public_url: str = ""
    retention_days: int = 90
    webhooks: tuple[WebhookConfig, ...] = ()
    pagerduty: tuple[PagerDutyConfig, ...] = ()
    email: EmailConfig | None = None
    max_backoff_seconds: float = 300.0
    alert_admin_after: int = 5
    # /readyz answers 503 while this many crisis alerts (or more) wait in this node's outbox.
    ready_pending_limit: int = 1000
    # Whether the detector runs each rule pack's trained model (rules/<lang>.model.json) too.
    # Off: it finds more, but also fires at high severity on everyday goodbyes (docs/crisis.md).
    detector_model: bool = False


@dataclass(frozen=True, kw_only=True)
class RoomConfig:
    id: str
    # In the room's own language; `titles` and `schedules` hold any per-language versions
    # (`title = { en = "…", es = "…" }` in the config), which the pages show in their language.
    title: str
    schedule: str = ""
    titles: Translations = ()
    schedules: Translations = ()
    capacity: int = 12
    # People wait in a lobby until a facilitator admits them.
    lobby: bool = False
    # The language the group meets in: facilitators' detectors use its rule pack.
    language: str = "en"
    layout: Layout

    def title_in(self, lang: str) -> str:
        return translated(self.title, self.titles, lang)

    def schedule_in(self, lang: str) -> str:
        return translated(self.schedule, self.schedules, lang)


@dataclass(frozen=True, kw_only=True)
class HearthConfig:
    source: str
    server: ServerConfig = field(default_factory=ServerConfig)
    organisation: OrganisationConfig = field(default_factory=OrganisationConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    movement: MovementConfig = field(default_factory=MovementConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    webtransport: WebTransportConfig = field(default_factory=WebTransportConfig)
    login: LoginConfig = field(default_factory=LoginConfig)
    crisis: CrisisConfig = field(default_factory=CrisisConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    rooms: tuple[RoomConfig, ...] = ()

    def room(self, room_id: str) -> RoomConfig | None:
        for room in self.rooms:
            if room.id == room_id:
                return room
        return None


class TableReader:
    """Reads one table of an untrusted config file, recording a precise problem for each bad
    key (the file, the dotted key, what was expected) instead of raising on the first.

    Every reader of Hearth's config files uses it: this module for hearth.toml,
    moderation/crisis_config.py for config/crisis/. `done()` reports the keys nobody read.
    """

    def __init__(self, source: str, prefix: str, table: Any, problems: list[str]) -> None:
        self.source = source
        self.prefix = prefix
        self.problems = problems
        self.seen: set[str] = set()
        if not isinstance(table, Mapping):
            self.fail("", f"a table, got {describe(table)}")
            table = {}
        self.table: Mapping[str, Any] = table

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix and name else (self.prefix or name)

    def fail(self, name: str, expected: str) -> None:
        self.problems.append(f"{self.source}: {self.key(name)}: expected {expected}")

    def has(self, name: str) -> bool:
        return name in self.table

    def raw(self, name: str) -> Any:
        self.seen.add(name)
        return self.table.get(name)

    def number(self, name: str, default: float, lo: float, hi: float) -> float:
        if not self.has(name):
            self.seen.add(name)
            return default
        value = self.raw(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.fail(name, f"a number from {lo:g} to {hi:g}, got {describe(value)}")
            return default
        if not lo <= value <= hi:
            self.fail(name, f"a number from {lo:g} to {hi:g}, got {value!r}")
            return default
        return float(value)

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        if not self.has(name):
            self.seen.add(name)
            return default
        value = self.raw(name)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"a whole number from {lo} to {hi}, got {describe(value)}")
            return default
        if not lo <= value <= hi:
            self.fail(name, f"a whole number from {lo} to {hi}, got {value!r}")
            return default
        return value

    def text(self, name: str, default: str | None, max_len: int = 200) -> str:
        if not self.has(name):
            self.seen.add(name)
            if default is None:
                self.fail(name, "a string (this key is required)")
                return ""
            return default
        value = self.raw(name)
        if not isinstance(value, str) or (not value.strip() and default is None):
            self.fail(name, f"a non-empty string, got {describe(value)}")
            return default or ""
        if len(value) > max_len:
            self.fail(name, f"a string of at most {max_len} characters, got {len(value)}")
            return value[:max_len]
        return value

    def localised(self, name: str, default: str | None, max_len: int,
                  prefer: str = "en") -> tuple[str, Translations]:
        """A text given once (a string) or per page language (a table like
        { en = "…", es = "…" }): (the text in `prefer`, or the first given; the translations)."""
        if not isinstance(self.table.get(name), Mapping):
            return self.text(name, default, max_len), ()
        table = TableReader(self.source, self.key(name), self.raw(name), self.problems)
        given: list[tuple[str, str]] = []
        for lang in TEXT_LOCALES:
            if table.has(lang):
                text = table.text(lang, None, max_len)
                if text.strip():
                    given.append((lang, text))
        for other in table.table:
            if other not in TEXT_LOCALES:
                table.raw(other)
                table.fail(other, f"a page language ({' or '.join(TEXT_LOCALES)}) as the key")
        table.done()
        if not given:
            self.fail(name, f"a string, or a table of {' and '.join(TEXT_LOCALES)} texts "
                            f"like {{ en = \"…\", es = \"…\" }}")
            return default or "", ()
        return translated(given[0][1], tuple(given), prefer), tuple(given)

    def boolean(self, name: str, default: bool) -> bool:
        if not self.has(name):
            self.seen.add(name)
            return default
        value = self.raw(name)
        if not isinstance(value, bool):
            self.fail(name, f"true or false, got {describe(value)}")
            return default
        return value

    def strings(self, name: str, default: tuple[str, ...], pattern: re.Pattern[str] | None,
                what: str) -> tuple[str, ...]:
        if not self.has(name):
            self.seen.add(name)
            return default
        value = self.raw(name)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(name, f"a list of strings ({what}), got {describe(value)}")
            return default
        for i, item in enumerate(value):
            if pattern is not None and not pattern.match(item):
                self.fail(f"{name}[{i}]", f"{what}, got {item!r}")
        return tuple(value)

    def done(self) -> None:
        for name in self.table:
            if name not in self.seen:
                self.problems.append(
                    f"{self.source}: {self.key(name)}: unknown key (check its spelling)")


def describe(value: Any) -> str:
    """What a config value is, for an error message: "a string ('abc')", "a list"."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    if value is None:  # a required table or value that is not there at all
        return "nothing (this key is required)"
    return type(value).__name__


def _point(r: TableReader, name: str, layout: Layout | None = None) -> Point | None:
    value = r.raw(name)
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        r.fail(name, f"a pair of numbers [x, y] in metres, got {describe(value)}")
        return None
    return Point(float(value[0]), float(value[1]))


def _layout(source: str, prefix: str, table: Any, problems: list[str],
            language: str = "en") -> Layout | None:
    before = len(problems)
    r = TableReader(source, prefix, table, problems)
    width = r.number("width", 14.0, 2.0, 200.0)
    height = r.number("height", 10.0, 2.0, 200.0)

    def circle(name: str, needs_seats: bool) -> Circle | None:
        c = TableReader(source, r.key(name), r.raw(name) if r.has(name) else None, problems)
        x = c.number("x", width / 2, 0.0, width)
        y = c.number("y", height / 2, 0.0, height)
        radius = c.number("radius", 1.0, 0.1, max(width, height))
        seats = c.integer("seats", 8, 1, 64) if needs_seats else 0
        c.done()
        return Circle(centre=Point(x, y), radius=radius, seats=seats)

    if not r.has("hearth") or not r.has("circle"):
        for name in ("hearth", "circle"):
            if not r.has(name):
                r.fail(name, "a table like { x = 7.0, y = 5.0, radius = 1.0 } (required)")
        r.raw("hearth")
        r.raw("circle")
        r.raw("spawn")
        r.raw("corners")
        r.done()
        return None
    hearth = circle("hearth", needs_seats=False)
    ring = circle("circle", needs_seats=True)
    spawn: list[Point] = []
    raw_spawn = r.raw("spawn")
    if not isinstance(raw_spawn, list) or not raw_spawn:
        r.fail("spawn", "a non-empty list of [x, y] points in metres")
    else:
        sp = TableReader(source, r.key("spawn"), dict(enumerate(raw_spawn)), problems)
        for i in range(len(raw_spawn)):
            p = _point(sp, i)  # type: ignore[arg-type]
            if p is not None:
                spawn.append(p)
    corners: list[Corner] = []
    raw_corners = r.raw("corners") if r.has("corners") else []
    if not isinstance(raw_corners, list):
        r.fail("corners", "a list of [[rooms.layout.corners]] tables")
        raw_corners = []
    for i, item in enumerate(raw_corners):
        c = TableReader(source, f"{r.key('corners')}[{i}]", item, problems)
        cid = c.text("id", None, 40)
        if cid and not _ROOM_ID.match(cid):
            c.fail("id", f"lowercase letters, digits and '-', got {cid!r}")
        title, titles = c.localised("title", cid, 80, language)
        corners.append(Corner(
            id=cid, title=title, titles=titles,
            x=c.number("x", 0.0, 0.0, width), y=c.number("y", 0.0, 0.0, height),
            width=c.number("width", 2.0, 0.5, width), height=c.number("height", 2.0, 0.5, height)))
        c.done()
    r.done()
    if len(problems) > before or hearth is None or ring is None:
        return None
    layout = Layout(width=width, height=height, hearth=hearth, circle=ring,
                    spawn=tuple(spawn), corners=tuple(corners))
    for problem in layout.problems():
        problems.append(f"{source}: {prefix}: {problem}")
    return layout if len(problems) == before else None


def _paragraphs(r: TableReader, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A list of 1-20 non-empty paragraphs of at most 1000 characters each."""
    value = r.strings(name, default, None, "paragraphs of text")
    if r.has(name) and isinstance(r.table.get(name), list):
        if not 1 <= len(value) <= 20:
            r.fail(name, f"a list of 1 to 20 paragraphs, got {len(value)}")
        for i, item in enumerate(value):
            if not item.strip() or len(item) > 1000:
                r.fail(f"{name}[{i}]", "a non-empty paragraph of at most 1000 characters")
    return value


def _organisation(o: TableReader) -> OrganisationConfig:
    name = o.text("name", "Hearth", 80)
    exit_url = o.text("quick_exit_url", OrganisationConfig.quick_exit_url, 500)
    if not _EXIT_URL.match(exit_url):
        o.fail("quick_exit_url", f"an absolute http(s) URL of a neutral site, got {exit_url!r}")
    countries = o.strings("helpline_countries", OrganisationConfig.helpline_countries, _COUNTRY,
                          "an ISO 3166-1 alpha-2 country code like 'GB'")
    if not countries:
        o.fail("helpline_countries", "at least one ISO 3166-1 alpha-2 country code")
    elif len(set(countries)) != len(countries):
        o.fail("helpline_countries", "each country code once")
    texts = dict(DEFAULT_TEXTS)
    raw = o.raw("texts") if o.has("texts") else {}
    t = TableReader(o.source, o.key("texts"), raw, o.problems)
    overridden: dict[str, set[str]] = {}
    for locale in t.table:
        if locale not in TEXT_LOCALES:
            continue  # reported as an unknown key by t.done()
        lr = TableReader(o.source, t.key(locale), t.raw(locale), o.problems)
        base = DEFAULT_TEXTS[locale]
        overridden[locale] = {k for k in TEXT_KEYS if lr.has(k)}
        texts[locale] = OrganisationTexts(**{
            k: _paragraphs(lr, k, getattr(base, k)) for k in TEXT_KEYS})
        lr.done()
    # A privacy statement rewritten in one language and left at the default in another
    # would promise different things: every language must override the same keys.
    for key in TEXT_KEYS:
        written = [loc for loc in TEXT_LOCALES if key in overridden.get(loc, set())]
        for loc in TEXT_LOCALES:
            if written and loc not in written:
                t.fail(f"{loc}.{key}", f"a translation too, since {t.key(written[0])}.{key} is set")
    t.done()
    return OrganisationConfig(name=name, quick_exit_url=exit_url, helpline_countries=countries,
                              texts=texts)


def _data_dir(r: TableReader, source: str) -> str:
    """Relative paths are relative to the config file, not to wherever hearth was started."""
    raw = r.text("data_dir", "", 1000)
    if not raw:
        return default_data_dir()
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = Path(source).resolve().parent / path
    return str(path)


def _proxies(r: TableReader) -> tuple[str, ...]:
    """server.trusted_proxies: IP addresses or networks (CIDR), checked with ipaddress."""
    import ipaddress
    proxies = r.strings("trusted_proxies", (), _PROXY, "an IP address or network like "
                        "'127.0.0.1' or '10.0.0.0/24'")
    for i, item in enumerate(proxies):
        if _PROXY.match(item):
            try:
                network = ipaddress.ip_network(item, strict=False)
            except ValueError:
                r.fail(f"trusted_proxies[{i}]", f"an IP address or network like '127.0.0.1' "
                                               f"or '10.0.0.0/24', got {item!r}")
                continue
            if network.prefixlen == 0:  # then any client may say who it is and that it is HTTPS
                r.fail(f"trusted_proxies[{i}]", "the proxies' own addresses or network, not "
                       f"every address ({item!r}): any client could then set X-Forwarded-For "
                       "(its address, for bans and limits) and X-Forwarded-Proto")
    return proxies


_URL = re.compile(r"^https?://[^\s]+\Z")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\Z")


def _plain_http_elsewhere(url: str) -> bool:
    """An http:// URL whose host is not this machine (loopback)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name: it may resolve anywhere


def _crisis(source: str, table: Any, problems: list[str]) -> CrisisConfig:
    c = TableReader(source, "crisis", table, problems)
    directory = c.text("directory", "", 1000)
    if directory:
        path = Path(directory).expanduser()
        directory = str(path if path.is_absolute() else Path(source).resolve().parent / path)
    public_url = c.text("public_url", "", 300)
    if public_url and not _URL.match(public_url):
        c.fail("public_url", f"an http(s) URL, got {public_url!r}")
    webhooks = []
    raw_hooks = c.raw("webhooks") if c.has("webhooks") else []
    if not isinstance(raw_hooks, list):
        c.fail("webhooks", "a list of [[crisis.webhooks]] tables")
        raw_hooks = []
    for i, item in enumerate(raw_hooks):
        w = TableReader(source, f"crisis.webhooks[{i}]", item, problems)
        hook = WebhookConfig(name=w.text("name", f"webhook-{i}", 40), url=w.text("url", None, 500),
                             secret=w.text("secret", None, 500), tier=w.text("tier", "primary", 20),
                             allow_plain_http=w.boolean("allow_plain_http", False))
        if hook.url and not _URL.match(hook.url):
            w.fail("url", f"an http(s) URL, got {hook.url!r}")
        elif hook.url and _plain_http_elsewhere(hook.url) and not hook.allow_plain_http:
            w.fail("url", "an https:// URL: over plain http to another machine the alert and "
                          "its acknowledgement link (which stops escalation) travel in clear; "
                          "set allow_plain_http = true on this webhook only if the path is "
                          f"private, got {hook.url!r}")
        if hook.secret and len(webhook_key(hook.secret)) < 16:
            w.fail("secret", "a shared secret of at least 16 characters (for the HMAC "
                             "signature), or 'whsec_' and the base64 of at least 16 bytes")
        if hook.tier not in ("primary", "secondary"):
            w.fail("tier", f"'primary' or 'secondary', got {hook.tier!r}")
        w.done()
        webhooks.append(hook)
    email = _email(source, c.raw("email"), problems) if c.has("email") else None
    config = CrisisConfig(
        directory=directory or CrisisConfig.directory, public_url=public_url.rstrip("/"),
        retention_days=c.integer("retention_days", 90, 1, 3650), webhooks=tuple(webhooks),
        pagerduty=_pagerduty(source, c.raw("pagerduty") if c.has("pagerduty") else [], problems),
        email=email, max_backoff_seconds=c.number("max_backoff_seconds", 300.0, 1.0, 3600.0),
        alert_admin_after=c.integer("alert_admin_after", 5, 1, 1000),
        ready_pending_limit=c.integer("ready_pending_limit", 1000, 1, 1_000_000),
        detector_model=c.boolean("detector_model", False))
    c.done()
    return config


_ROUTING_KEY = re.compile(r"^[A-Za-z0-9]{20,64}\Z")
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _pagerduty(source: str, raw: Any, problems: list[str]) -> tuple[PagerDutyConfig, ...]:
    """[[crisis.pagerduty]]: PagerDuty services called at the on-call tiers, like webhooks."""
    if not isinstance(raw, list):
        problems.append(f"{source}: crisis.pagerduty: expected a list of [[crisis.pagerduty]] "
                        "tables")
        return ()
    services = []
    for i, item in enumerate(raw):
        r = TableReader(source, f"crisis.pagerduty[{i}]", item, problems)
        service = PagerDutyConfig(name=r.text("name", f"pagerduty-{i}", 40),
                                  routing_key=r.text("routing_key", None, 64),
                                  tier=r.text("tier", "primary", 20),
                                  url=r.text("url", PagerDutyConfig.url, 500))
        if service.routing_key and not _ROUTING_KEY.match(service.routing_key):
            r.fail("routing_key", "the integration key of an Events API v2 integration "
                                  "(20-64 letters and digits)")
        if service.url and not _URL.match(service.url):
            r.fail("url", f"an http(s) URL, got {service.url!r}")
        elif service.url and _plain_http_elsewhere(service.url):
            r.fail("url", "an https:// URL: the routing key and the alert would travel in "
                          f"clear, got {service.url!r}")
        if service.tier not in ("primary", "secondary"):
            r.fail("tier", f"'primary' or 'secondary', got {service.tier!r}")
        r.done()
        services.append(service)
    return tuple(services)


def _email(source: str, raw: Any, problems: list[str]) -> EmailConfig:
    """[crisis.email]: TLS (STARTTLS by default, or implicit) and optional authentication."""
    e = TableReader(source, "crisis.email", raw, problems)
    host = e.text("smtp_host", None, 200)
    tls = e.text("tls", "starttls", 20)
    if tls not in SMTP_TLS:
        e.fail("tls", f"one of {', '.join(repr(m) for m in SMTP_TLS)}, got {tls!r}")
        tls = "starttls"
    username = e.text("username", "", 200)
    password = e.text("password", "", 500)
    if bool(username) != bool(password):
        e.fail("password" if username else "username",
               "both username and password (SMTP authentication), or neither")
    if username and tls == "none" and host not in _LOOPBACK_HOSTS:
        e.fail("tls", "'starttls' or 'implicit' when username is set: authentication over "
                      "plain text would send the password in the clear")
    ca_file = e.text("ca_file", "", 1000)
    if ca_file:
        path = Path(ca_file).expanduser()
        ca_file = str(path if path.is_absolute() else Path(source).resolve().parent / path)
    email = EmailConfig(smtp_host=host, tls=tls,
                        smtp_port=e.integer("smtp_port", SMTP_PORTS[tls], 1, 65535),
                        username=username, password=password, ca_file=ca_file,
                        sender=e.text("sender", "hearth@localhost", 200),
                        on_call=e.strings("on_call", (), _EMAIL, "an e-mail address"),
                        admin=e.strings("admin", (), _EMAIL, "an e-mail address"))
    e.done()
    return email


_HOST = re.compile(r"^[A-Za-z0-9.\-]{1,253}\Z|^\[[0-9A-Fa-f:.]+\]\Z")


def _webtransport(source: str, table: Any, problems: list[str]) -> WebTransportConfig:
    w = TableReader(source, "webtransport", table, problems)

    def path(name: str) -> str:
        raw = w.text(name, "", 1000)
        if not raw:
            return ""
        p = Path(raw).expanduser()
        return str(p if p.is_absolute() else Path(source).resolve().parent / p)
    config = WebTransportConfig(
        port=w.integer("port", 0, 0, 65535),
        interface=w.text("interface", "127.0.0.1", 100),
        certificate=path("certificate"), private_key=path("private_key"),
        self_signed=w.boolean("self_signed", False),
        public_host=w.text("public_host", "", 253),
        max_connections=w.integer("max_connections", 24, 1, 1_000_000))
    try:
        ipaddress.ip_address(config.interface)
    except ValueError:
        w.fail("interface", f"an IP address like '127.0.0.1', '0.0.0.0' or '::', "
                            f"got {config.interface!r}")
    if config.public_host and not _HOST.match(config.public_host):
        w.fail("public_host", f"a host name like 'groups.example.org', got {config.public_host!r}")
    if bool(config.certificate) != bool(config.private_key):
        w.fail("certificate" if not config.certificate else "private_key",
               "both webtransport.certificate and webtransport.private_key, or neither")
    elif config.certificate and config.self_signed:
        w.fail("self_signed", "false when webtransport.certificate is set (one certificate)")
    elif config.port and not config.certificate and not config.self_signed:
        w.fail("port", "a certificate too: set webtransport.certificate and "
                       "webtransport.private_key, or self_signed = true")
    w.done()
    return config


def parse_config(data: Mapping[str, Any], source: str) -> HearthConfig:
    """Build a HearthConfig from parsed TOML, or raise ConfigError listing every problem."""
    problems: list[str] = []
    top = TableReader(source, "", data, problems)

    s = TableReader(source, "server", top.raw("server") or {}, problems)
    server = ServerConfig(
        listen=s.strings("listen", ServerConfig.listen, None, "Twisted endpoint strings"),
        allowed_origins=s.strings("allowed_origins", (), _ORIGIN,
                                  "an origin like https://groups.example.org"),
        data_dir=_data_dir(s, source),
        redis=s.text("redis", "", 500),
        trusted_proxies=_proxies(s))
    if server.redis and not re.match(r"^(redis|rediss|redis\+cluster)://", server.redis):
        # the value is not repeated: a Redis URL may carry a password
        s.fail("redis", "a URL starting with redis://, rediss:// or redis+cluster:// "
                        "(like redis://127.0.0.1:6379/0)")
    if not server.listen:
        s.fail("listen", "at least one endpoint string like 'tcp:8080:interface=127.0.0.1'")
    s.done()

    o = TableReader(source, "organisation", top.raw("organisation") or {}, problems)
    organisation = _organisation(o)
    o.done()

    se = TableReader(source, "session", top.raw("session") or {}, problems)
    session = SessionConfig(
        resume_grace_seconds=se.number("resume_grace_seconds", 60.0, 0.0, 3600.0),
        closing_grace_seconds=se.number("closing_grace_seconds", 5.0, 0.0, 60.0))
    se.done()

    lm = TableReader(source, "limits", top.raw("limits") or {}, problems)
    limits = LimitsConfig(
        max_frame_bytes=lm.integer("max_frame_bytes", 65536, 1024, 1 << 22),
        max_envelope_chars=lm.integer("max_envelope_chars", 24000, 256, 1 << 22),
        messages_per_second=lm.number("messages_per_second", 20.0, 1.0, 10000.0),
        message_burst=lm.integer("message_burst", 40, 1, 100000),
        flood_strikes=lm.integer("flood_strikes", 50, 1, 100000),
        moves_per_second=lm.number("moves_per_second", 15.0, 1.0, 1000.0),
        pseudonym_max_length=lm.integer("pseudonym_max_length", 24, 8, 64),
        connections_per_address=lm.integer("connections_per_address", 20, 0, 100000),
        header_timeout_seconds=lm.number("header_timeout_seconds", 10.0, 0.5, 300.0),
        http_connections_per_address=lm.integer("http_connections_per_address", 64, 0, 100000),
        max_unsent_bytes=lm.integer("max_unsent_bytes", 4194304, 65536, 1 << 30))
    if limits.max_envelope_chars > limits.max_frame_bytes:
        lm.fail("max_envelope_chars", f"at most limits.max_frame_bytes ({limits.max_frame_bytes})")
    lm.done()

    mv = TableReader(source, "movement", top.raw("movement") or {}, problems)
    movement = MovementConfig(walk_speed=mv.number("walk_speed", 3.0, 0.1, 50.0),
                              tick_hz=mv.number("tick_hz", 10.0, 1.0, 10.0))
    mv.done()

    vo = TableReader(source, "voice", top.raw("voice") or {}, problems)
    voice = VoiceConfig(
        hearing_range=vo.number("hearing_range", 7.0, 0.5, 200.0),
        max_speakers=vo.integer("max_speakers", 4, 1, 32),
        frames_per_second=vo.number("frames_per_second", 50.0, 10.0, 200.0),
        frame_burst=vo.integer("frame_burst", 10, 1, 1000),
        max_frame_bytes=vo.integer("max_frame_bytes", 1024, 64, 16384),
        slow_listener_bytes=vo.integer("slow_listener_bytes", 65536, 4096, 1 << 26))
    vo.done()

    webtransport = _webtransport(source, top.raw("webtransport") or {}, problems)

    lg = TableReader(source, "login", top.raw("login") or {}, problems)
    login = LoginConfig(
        session_idle_seconds=lg.number("session_idle_seconds", 8 * 3600.0, 60.0, 7 * 86400.0),
        session_max_seconds=lg.number("session_max_seconds", 24 * 3600.0, 60.0, 30 * 86400.0),
        delay_after_failures=lg.integer("delay_after_failures", 3, 1, 100),
        max_delay_seconds=lg.number("max_delay_seconds", 60.0, 1.0, 3600.0),
        lockout_after_failures=lg.integer("lockout_after_failures", 10, 1, 1000),
        lockout_seconds=lg.number("lockout_seconds", 900.0, 60.0, 7 * 86400.0),
        address_lockout_after_failures=lg.integer("address_lockout_after_failures", 30, 0, 100000))
    if login.session_max_seconds < login.session_idle_seconds:
        lg.fail("session_max_seconds",
                f"at least login.session_idle_seconds ({login.session_idle_seconds:g})")
    lg.done()

    crisis = _crisis(source, top.raw("crisis") or {}, problems)

    me = TableReader(source, "metrics", top.raw("metrics") or {}, problems)
    metrics = MetricsConfig(enabled=me.boolean("enabled", True), token=me.text("token", "", 200))
    if metrics.token and (len(metrics.token) < 16 or metrics.token != metrics.token.strip()):
        me.fail("token", "a bearer token of at least 16 characters without spaces at the ends "
                         "(or \"\" for loopback-only scraping)")
    me.done()

    re_ = TableReader(source, "retention", top.raw("retention") or {}, problems)
    retention = RetentionConfig(
        audit_days=re_.integer("audit_days", 90, 1, 3650),
        # crisis.retention_days is the older name of incidents_days; it is still honoured.
        incidents_days=re_.integer("incidents_days", crisis.retention_days, 1, 3650),
        reports_days=re_.integer("reports_days", 30, 1, 3650))
    re_.done()

    rooms: list[RoomConfig] = []
    raw_rooms = top.raw("rooms")
    if not isinstance(raw_rooms, list) or not raw_rooms:
        top.fail("rooms", "at least one [[rooms]] table")
        raw_rooms = []
    seen_ids: set[str] = set()
    for i, item in enumerate(raw_rooms):
        r = TableReader(source, f"rooms[{i}]", item, problems)
        rid = r.text("id", None, 40)
        if rid and not _ROOM_ID.match(rid):
            r.fail("id", f"lowercase letters, digits and '-' (at most 40), got {rid!r}")
        elif rid in seen_ids:
            r.fail("id", f"a unique room id, but {rid!r} is used twice")
        seen_ids.add(rid)
        language = r.text("language", "en", 5)
        if language not in TEXT_LOCALES:
            r.fail("language", f"'en' or 'es', got {language!r}")
        title, titles = r.localised("title", None, 120, language)
        schedule, schedules = r.localised("schedule", "", 200, language)
        capacity = r.integer("capacity", 12, 1, 500)
        lobby = r.boolean("lobby", False)
        layout = _layout(source, r.key("layout"), r.raw("layout"), problems, language)
        r.done()
        if layout is not None:
            rooms.append(RoomConfig(id=rid, title=title, schedule=schedule, titles=titles,
                                    schedules=schedules, capacity=capacity, lobby=lobby,
                                    language=language, layout=layout))
    top.done()
    if problems:
        raise ConfigError(problems)
    return HearthConfig(source=source, server=server, organisation=organisation, session=session,
                        limits=limits, movement=movement, voice=voice,
                        webtransport=webtransport, login=login,
                        crisis=crisis, metrics=metrics, retention=retention,
                        rooms=tuple(rooms))


def to_toml(data: Mapping[str, Any]) -> str:
    """A config as TOML text: tables of scalars, lists and inline tables, which is all
    Hearth's config uses. Tests and benchmarks write their configs with it."""
    def value(v: Any) -> str:
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)
    lines = []
    for section, body in data.items():
        if isinstance(body, list):
            for item in body:
                lines.append(f"[[{section}]]")
                lines += [f"{k} = {value(v)}" for k, v in item.items()]
        else:
            lines.append(f"[{section}]")
            lines += [f"{k} = {value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


def load_config(path: Path | None = None) -> HearthConfig:
    """Read and check a config file (the shipped one when no path is given)."""
    path = path or SHIPPED_CONFIG
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read the file ({exc.strerror or exc})"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"{source}: expected UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"]) from None
    return parse_config(data, source)
