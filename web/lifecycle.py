"""A graceful stop and a restart that members live through.

On SIGTERM (the reactor's shutdown, then the service tree's stopService):

1. the listeners stop accepting (web/service.py's Listener, at once) and
   /readyz answers 503 to what still reaches it (a load balancer stops
   sending new people here);
2. every client connected here gets `going_away` and a close with 1001; its link
   takes no more frames, so the rooms stop changing;
3. we wait (at most CLOSE_WAIT seconds) for those closes, which leave the
   members away — in the room, inside their resume grace period;
4. each room owned here is saved: to the broker (another node can take it
   over at once) and to `<data_dir>/rooms/<room>.json` (mode 0600), then
   released; members of those rooms connected through other nodes are told to
   resume (4010);
5. meanwhile the crisis outbox gets FLUSH_TIMEOUT seconds to deliver what is
   pending (web/alerts.py's flush; what is left stays in its journal).

At the next start, a saved room younger than the resume grace period is
loaded (everyone away; the epoch advances and the sequence jumps, as after a
takeover) and the file is deleted, whether it was used or not. So a single
node with the in-memory broker keeps its rooms across a restart: members
resume with their tokens and keep pseudonym, seat and position.

A room file holds exactly what Venue.export_room holds (pseudonyms, avatars,
seats, roles, public keys, moderation state, the SHA-256 digests of session
tokens, and for a ban-able member the keyed daily hash of its address), plus
when it was saved. Never a message, a token or an address.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from twisted.internet.task import deferLater
from twisted.logger import Logger

from hearth.spaces.host import OWNER_TTL
from hearth.web.datadir import ensure_dir, write_atomically
from hearth.web.node import Node

CLOSE_WAIT = 3.0  # seconds to wait for clients to answer the close
FLUSH_TIMEOUT = 5.0  # seconds the crisis outbox gets to deliver what is pending
GOING_AWAY = 1001
MESSAGE = "The server is restarting. You will be reconnected in a moment."
ROOMS_DIR = "rooms"


class RoomStateFiles:
    """`<data_dir>/rooms/<room>.json`: a room's saved state across a restart."""

    log = Logger(namespace="hearth.lifecycle")

    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / ROOMS_DIR

    def path(self, room: str) -> Path:
        return self.directory / f"{room}.json"

    def save(self, room: str, state: dict[str, Any], now: float) -> None:
        ensure_dir(self.directory)
        data = json.dumps({"saved_at": now, "state": state}, separators=(",", ":")).encode()
        write_atomically(self.path(room), data)

    def files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("*.json") if p.is_file())

    def take(self, max_age: float, now: float) -> dict[str, tuple[float, dict[str, Any]]]:
        """Every saved room younger than `max_age` seconds, by room id. Each file is
        deleted once read, used or not: a saved state is good for one restart only."""
        found: dict[str, tuple[float, dict[str, Any]]] = {}
        for path in self.files():
            try:
                raw = json.loads(path.read_bytes())
                saved_at, state = float(raw["saved_at"]), raw["state"]
                if not isinstance(state, dict) or not isinstance(state.get("room"), dict):
                    raise ValueError("no room state")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.log.warn("ignoring the unreadable saved room {file} ({why})",
                              file=path.name, why=type(exc).__name__)
            else:
                if now - saved_at < max_age:
                    found[path.stem] = (saved_at, state)
                else:
                    self.log.info("saved room {room} is older than the resume grace period; "
                                  "not restored", room=path.stem)
            with contextlib.suppress(OSError):
                os.unlink(path)
        return found


class Lifecycle:
    """Restore at start, shut down gracefully at stop (module docstring)."""

    log = Logger(namespace="hearth.lifecycle")

    def __init__(self, node: Node, reactor: Any, data_dir: Path | None,
                 close_wait: float = CLOSE_WAIT, readiness: Any = None) -> None:
        """`data_dir` None: rooms are saved to the broker only, never to files (embedders
        and tests that start several servers on one data directory). `readiness`
        (web/site.py): /readyz answers 503 from the moment the stop begins."""
        self.node, self.reactor = node, reactor
        self.files = RoomStateFiles(data_dir) if data_dir is not None else None
        self.close_wait = close_wait
        self.readiness = readiness

    async def restore(self) -> int:
        """Load the rooms saved by the last graceful stop; returns how many came back."""
        node, venue = self.node, self.node.venue
        now = self.reactor.seconds()
        grace = venue.config.session.resume_grace_seconds
        restored = 0
        saved = self.files.take(grace, now) if self.files is not None else {}
        for room, (saved_at, state) in saved.items():
            if room not in venue.rooms:
                self.log.warn("saved room {room} is not in the config any more; dropped",
                              room=room)
                continue
            try:
                if await node.broker.claim_room(room, node.id, OWNER_TTL) != node.id:
                    continue  # another node runs it now; its state is newer
                if await node.broker.load_room(room) is not None:
                    continue  # the broker's copy is at least as new: a takeover loads it
                node.restored(room, state, saved_at)  # the grace period runs from the stop
            except Exception:
                self.log.failure("saved room {room} could not be restored", room=room)
                continue
            restored += 1
            self.log.info("room {room} restored after a restart: {count} members may resume",
                          room=room, count=len(venue.rooms[room].members))
        return restored

    async def shutdown(self) -> None:
        node = self.node
        if self.readiness is not None:
            self.readiness.draining = True
        links = node.link_count
        self.log.info("stopping: telling {count} connections to reconnect shortly", count=links)
        node.going_away(MESSAGE, GOING_AWAY)
        deadline = self.reactor.seconds() + self.close_wait
        while node.link_count and self.reactor.seconds() < deadline:
            await deferLater(self.reactor, 0.05, lambda: None)
        await self.save_rooms()
        node.move_remote_members()

    async def save_rooms(self) -> None:
        node = self.node
        now = self.reactor.seconds()
        for room in sorted(node.owned):
            state = node.host.state_of(room)
            if state["room"]["members"]:
                try:
                    if self.files is not None:
                        self.files.save(room, state, now)
                except OSError as exc:
                    self.log.error("room {room} could not be saved ({why})", room=room,
                                   why=exc.strerror or type(exc).__name__)
            try:
                if state["room"]["members"]:
                    # saved_at: whoever takes the room runs the grace period from this stop
                    await node.broker.save_room(room, json.dumps(
                        {**state, "saved_at": now}, separators=(",", ":")).encode())
                else:  # an older copy (with people who left since) must not outlive it
                    await node.broker.drop_room(room)
            except Exception as exc:
                self.log.warn("room {room} was not saved to the broker ({why})", room=room,
                              why=type(exc).__name__)
            try:
                await node.broker.release_room(room, node.id)
            except Exception as exc:
                self.log.warn("room {room} was not released ({why})", room=room,
                              why=type(exc).__name__)
            node.owned.discard(room)
