"""A room's floor plan: bounds, the hearth, the circle of seats, quiet corners.

Positions are in metres, origin at the top-left, y growing downwards (as on a
screen). Quiet corners are audio zones: the voice relay isolates them from the
room and from each other; everywhere else is the zone "room". A corner's title
(like a room's title and schedule, spaces/config.py) may be given per page
language: `Translations`, with the plain title as the fallback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

MAIN_ZONE = "room"

# (language, text) pairs: an operator's text in each page language it was given in.
Translations = tuple[tuple[str, str], ...]


def translated(default: str, translations: Translations, lang: str) -> str:
    """The text in `lang` when the config gives it, else the default."""
    for code, text in translations:
        if code == lang:
            return text
    return default


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float

    def distance(self, other: Point) -> float:
        return math.hypot(self.x - other.x, self.y - other.y)

    def rounded(self) -> Point:
        """Centimetre precision: enough for a 2D room, and keeps frames small."""
        return Point(round(self.x, 2), round(self.y, 2))


@dataclass(frozen=True, kw_only=True)
class Circle:
    centre: Point
    radius: float
    seats: int = 0


@dataclass(frozen=True, kw_only=True)
class Corner:
    id: str
    title: str
    x: float
    y: float
    width: float
    height: float
    titles: Translations = ()

    def title_in(self, lang: str) -> str:
        return translated(self.title, self.titles, lang)

    def contains(self, p: Point) -> bool:
        return self.x <= p.x <= self.x + self.width and self.y <= p.y <= self.y + self.height


@dataclass(frozen=True, kw_only=True)
class Layout:
    width: float
    height: float
    hearth: Circle
    circle: Circle
    spawn: tuple[Point, ...]
    corners: tuple[Corner, ...] = ()

    @cached_property
    def seats(self) -> tuple[Point, ...]:
        """Seat positions around the circle, seat 0 at the top, clockwise."""
        c = self.circle
        return tuple(
            Point(c.centre.x + c.radius * math.sin(2 * math.pi * i / c.seats),
                  c.centre.y - c.radius * math.cos(2 * math.pi * i / c.seats)).rounded()
            for i in range(c.seats))

    def in_bounds(self, p: Point) -> bool:
        return 0.0 <= p.x <= self.width and 0.0 <= p.y <= self.height

    def walkable(self, p: Point) -> bool:
        """Inside the room and not standing in the fire."""
        return self.in_bounds(p) and p.distance(self.hearth.centre) > self.hearth.radius

    def zone_of(self, p: Point) -> str:
        for corner in self.corners:
            if corner.contains(p):
                return corner.id
        return MAIN_ZONE

    def problems(self) -> list[str]:
        """Geometric mistakes a config can make, as sentences."""
        out: list[str] = []
        if self.circle.radius <= self.hearth.radius:
            out.append("circle.radius: expected larger than hearth.radius so seats are not in the fire")
        for i, seat in enumerate(self.seats):
            if not self.in_bounds(seat):
                out.append(f"circle: seat {i} at ({seat.x}, {seat.y}) is outside the room; "
                           "expected the circle to fit inside width x height")
                break
        for i, p in enumerate(self.spawn):
            if not self.walkable(p):
                out.append(f"spawn[{i}]: expected a point inside the room and outside the hearth, "
                           f"got ({p.x}, {p.y})")
        for i, corner in enumerate(self.corners):
            if corner.x + corner.width > self.width or corner.y + corner.height > self.height:
                out.append(f"corners[{i}]: expected the corner to fit inside the room")
        ids = [c.id for c in self.corners]
        if len(set(ids)) != len(ids) or MAIN_ZONE in ids:
            out.append(f"corners: expected unique ids other than {MAIN_ZONE!r}")
        return out

    def to_wire(self) -> dict[str, object]:
        return {
            "width": self.width, "height": self.height,
            "hearth": {"x": self.hearth.centre.x, "y": self.hearth.centre.y,
                       "radius": self.hearth.radius},
            "seats": [[s.x, s.y] for s in self.seats],
            "corners": [{"id": c.id, "title": c.title, "titles": dict(c.titles), "x": c.x,
                         "y": c.y, "width": c.width, "height": c.height} for c in self.corners],
        }
