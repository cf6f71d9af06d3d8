"""A sans-IO world for room tests: a venue, members, and the effects they get."""

from __future__ import annotations

import json
import random
from typing import Any

from twisted.internet.task import Clock

from hearth.moderation.wiring import moderated_venue
from hearth.spaces.connection import Connection
from hearth.spaces.effects import Broadcast, Effect, Message, Reply
from hearth.spaces.protocol import encode
from tests.support.config import make_config

COMMIT = "A" * 43 + "="


class World:
    """A venue with a fake clock and helpers to speak frames to it."""

    def __init__(self, **sections: dict[str, Any]) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        counter = iter(range(1, 10_000))
        self.venue = moderated_venue(make_config(**sections), franking_key=b"k" * 32,
                                     rng=random.Random(7), make_member_id=lambda: f"m{next(counter)}")

    def connect(self) -> Connection:
        return Connection(self.venue, self.venue.config.limits, self.clock.seconds())

    def send(self, conn: Connection, message: dict[str, Any]) -> list[Effect]:
        return conn.receive(json.dumps(message).encode(), False, self.clock.seconds())

    def join(self, room: str = "circle", **fields: Any) -> tuple[Connection, dict[str, Any]]:
        conn = self.connect()
        effects = self.send(conn, {"type": "join", "room": room, **fields})
        return conn, reply(effects, "welcome")

    def in_lobby(self, facilitator: Connection, pseudonym: str
                 ) -> tuple[Connection, list[Effect]]:
        """`facilitator` turns the lobby on; a newcomer joins and waits there."""
        self.send(facilitator, {"type": "lobby", "on": True})
        conn = self.connect()
        return conn, self.send(conn, {"type": "join", "room": "circle", "pseudonym": pseudonym})

    def tick(self) -> list[Effect]:
        return self.venue.tick(self.clock.seconds())


def wire(message: Message) -> dict[str, Any]:
    """A message as the client reads it: encoded as the shell sends it, and parsed."""
    decoded: dict[str, Any] = json.loads(encode(message))
    return decoded


def reply(effects: list[Effect], kind: str) -> dict[str, Any]:
    found = [wire(e.message) for e in effects if isinstance(e, Reply)]
    found = [m for m in found if m["type"] == kind]
    assert found, f"no {kind} reply in {effects}"
    return found[0]


def broadcasts(effects: list[Effect], kind: str) -> list[Broadcast]:
    return [e for e in effects if isinstance(e, Broadcast) and wire(e.message)["type"] == kind]


def error_code(effects: list[Effect]) -> str:
    return reply(effects, "error")["code"]
