"""Typed configuration: every section, its defaults, and the checks run at load.

A config file is untrusted input. Loading never raises on the first problem:
it collects every error, each naming the file, the dotted key and what was
expected, so an operator fixes them in one pass (`hearth check-config`).
Unknown keys are errors too — a misspelt limit silently left at its default is
how safe defaults get lost.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spaces.layout import Circle, Corner, Layout, Point

SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "config" / "hearth.toml"

_ROOM_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")


class ConfigError(Exception):
    """One or more problems in a config file; `problems` holds one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    listen: tuple[str, ...] = ("tcp:8080:interface=127.0.0.1",)
    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class OrganisationConfig:
    name: str = "Hearth"


@dataclass(frozen=True, kw_only=True)
class SessionConfig:
    resume_grace_seconds: float = 60.0


@dataclass(frozen=True, kw_only=True)
class LimitsConfig:
    max_frame_bytes: int = 65536
    max_envelope_chars: int = 24000
    messages_per_second: float = 20.0
    message_burst: int = 40
    flood_strikes: int = 50
    moves_per_second: float = 15.0
    pseudonym_max_length: int = 24


@dataclass(frozen=True, kw_only=True)
class MovementConfig:
    walk_speed: float = 3.0
    tick_hz: float = 10.0


@dataclass(frozen=True, kw_only=True)
class RoomConfig:
    id: str
    title: str
    schedule: str = ""
    capacity: int = 12
    layout: Layout


@dataclass(frozen=True, kw_only=True)
class HearthConfig:
    source: str
    server: ServerConfig = field(default_factory=ServerConfig)
    organisation: OrganisationConfig = field(default_factory=OrganisationConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    movement: MovementConfig = field(default_factory=MovementConfig)
    rooms: tuple[RoomConfig, ...] = ()

    def room(self, room_id: str) -> RoomConfig | None:
        for room in self.rooms:
            if room.id == room_id:
                return room
        return None


class _Reader:
    """Reads one table, recording a precise problem for each bad key."""

    def __init__(self, source: str, prefix: str, table: Any, problems: list[str]) -> None:
        self.source = source
        self.prefix = prefix
        self.problems = problems
        self.seen: set[str] = set()
        if not isinstance(table, Mapping):
            self.fail("", f"a table, got {_kind(table)}")
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
            self.fail(name, f"a number from {lo:g} to {hi:g}, got {_kind(value)}")
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
            self.fail(name, f"a whole number from {lo} to {hi}, got {_kind(value)}")
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
            self.fail(name, f"a non-empty string, got {_kind(value)}")
            return default or ""
        if len(value) > max_len:
            self.fail(name, f"a string of at most {max_len} characters, got {len(value)}")
            return value[:max_len]
        return value

    def strings(self, name: str, default: tuple[str, ...], pattern: re.Pattern[str] | None,
                what: str) -> tuple[str, ...]:
        if not self.has(name):
            self.seen.add(name)
            return default
        value = self.raw(name)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(name, f"a list of strings ({what}), got {_kind(value)}")
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


def _kind(value: Any) -> str:
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
    return type(value).__name__


def _point(r: _Reader, name: str, layout: Layout | None = None) -> Point | None:
    value = r.raw(name)
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        r.fail(name, f"a pair of numbers [x, y] in metres, got {_kind(value)}")
        return None
    return Point(float(value[0]), float(value[1]))


def _layout(source: str, prefix: str, table: Any, problems: list[str]) -> Layout | None:
    before = len(problems)
    r = _Reader(source, prefix, table, problems)
    width = r.number("width", 14.0, 2.0, 200.0)
    height = r.number("height", 10.0, 2.0, 200.0)

    def circle(name: str, needs_seats: bool) -> Circle | None:
        c = _Reader(source, r.key(name), r.raw(name) if r.has(name) else None, problems)
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
        sp = _Reader(source, r.key("spawn"), dict(enumerate(raw_spawn)), problems)
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
        c = _Reader(source, f"{r.key('corners')}[{i}]", item, problems)
        cid = c.text("id", None, 40)
        if cid and not _ROOM_ID.match(cid):
            c.fail("id", f"lowercase letters, digits and '-', got {cid!r}")
        corners.append(Corner(
            id=cid, title=c.text("title", cid, 80),
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


def parse_config(data: Mapping[str, Any], source: str) -> HearthConfig:
    """Build a HearthConfig from parsed TOML, or raise ConfigError listing every problem."""
    problems: list[str] = []
    top = _Reader(source, "", data, problems)

    s = _Reader(source, "server", top.raw("server") or {}, problems)
    server = ServerConfig(
        listen=s.strings("listen", ServerConfig.listen, None, "Twisted endpoint strings"),
        allowed_origins=s.strings("allowed_origins", (), _ORIGIN,
                                  "an origin like https://groups.example.org"))
    if not server.listen:
        s.fail("listen", "at least one endpoint string like 'tcp:8080:interface=127.0.0.1'")
    s.done()

    o = _Reader(source, "organisation", top.raw("organisation") or {}, problems)
    organisation = OrganisationConfig(name=o.text("name", "Hearth", 80))
    o.done()

    se = _Reader(source, "session", top.raw("session") or {}, problems)
    session = SessionConfig(resume_grace_seconds=se.number("resume_grace_seconds", 60.0, 0.0, 3600.0))
    se.done()

    lm = _Reader(source, "limits", top.raw("limits") or {}, problems)
    limits = LimitsConfig(
        max_frame_bytes=lm.integer("max_frame_bytes", 65536, 1024, 1 << 22),
        max_envelope_chars=lm.integer("max_envelope_chars", 24000, 256, 1 << 22),
        messages_per_second=lm.number("messages_per_second", 20.0, 1.0, 10000.0),
        message_burst=lm.integer("message_burst", 40, 1, 100000),
        flood_strikes=lm.integer("flood_strikes", 50, 1, 100000),
        moves_per_second=lm.number("moves_per_second", 15.0, 1.0, 1000.0),
        pseudonym_max_length=lm.integer("pseudonym_max_length", 24, 8, 64))
    if limits.max_envelope_chars > limits.max_frame_bytes:
        lm.fail("max_envelope_chars", f"at most limits.max_frame_bytes ({limits.max_frame_bytes})")
    lm.done()

    mv = _Reader(source, "movement", top.raw("movement") or {}, problems)
    movement = MovementConfig(walk_speed=mv.number("walk_speed", 3.0, 0.1, 50.0),
                              tick_hz=mv.number("tick_hz", 10.0, 1.0, 10.0))
    mv.done()

    rooms: list[RoomConfig] = []
    raw_rooms = top.raw("rooms")
    if not isinstance(raw_rooms, list) or not raw_rooms:
        top.fail("rooms", "at least one [[rooms]] table")
        raw_rooms = []
    seen_ids: set[str] = set()
    for i, item in enumerate(raw_rooms):
        r = _Reader(source, f"rooms[{i}]", item, problems)
        rid = r.text("id", None, 40)
        if rid and not _ROOM_ID.match(rid):
            r.fail("id", f"lowercase letters, digits and '-' (at most 40), got {rid!r}")
        elif rid in seen_ids:
            r.fail("id", f"a unique room id, but {rid!r} is used twice")
        seen_ids.add(rid)
        title = r.text("title", None, 120)
        schedule = r.text("schedule", "", 200)
        capacity = r.integer("capacity", 12, 1, 500)
        layout = _layout(source, r.key("layout"), r.raw("layout"), problems)
        r.done()
        if layout is not None:
            rooms.append(RoomConfig(id=rid, title=title, schedule=schedule,
                                    capacity=capacity, layout=layout))
    top.done()
    if problems:
        raise ConfigError(problems)
    return HearthConfig(source=source, server=server, organisation=organisation, session=session,
                        limits=limits, movement=movement, rooms=tuple(rooms))


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
