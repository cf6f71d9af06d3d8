"""A live server that misbehaves toward one member: the hostile server of docs/e2ee.md §11.

The room itself runs honestly; what goes out to one member's connection passes through
`rewrite`, which may drop a message (return []), change it, duplicate it or hold it back
for `inject` later. Everything else the server does is untouched, so the others see the
honest room while the victim sees the server's version of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hearth.spaces.e2ee import GroupSession
from hearth.spaces.host import Fan, Write
from tests.support.live import LiveServer

Rewrite = Callable[[dict[str, Any]], list[dict[str, Any]]]


class Meddler:
    def __init__(self, server: LiveServer) -> None:
        self.node: Any = server.hearth.node
        self.victim: str | None = None
        self.rewrite: Rewrite | None = None
        self.seen: list[dict[str, Any]] = []  # what the honest server sent the victim
        honest = self.node._do

        def do(effects: list[Any]) -> None:
            peer = self._peer()
            for effect in effects:
                if peer is None or self.rewrite is None:
                    honest([effect])
                elif type(effect) is Fan and peer in effect.peers and effect.skip is not peer:
                    honest([Fan([p for p in effect.peers if p is not peer], effect.payload,
                                effect.skip)])
                    self._to_victim(peer, effect.payload)
                elif type(effect) is Write and effect.peer is peer:
                    self._to_victim(peer, effect.payload)
                else:
                    honest([effect])
        self.node._do = do

    def _peer(self) -> Any:
        link = self.node.host.local.get(self.victim) if self.victim else None
        return link.peer if link is not None else None

    def _to_victim(self, peer: Any, payload: bytes) -> None:
        message = json.loads(payload)
        self.seen.append(message)
        assert self.rewrite is not None
        for out in self.rewrite(message):
            peer.send_bytes(json.dumps(out).encode())

    def member(self, member: str) -> dict[str, Any]:
        """The victim's latest view of `member` (its whole wire entry), to forge from."""
        return dict(next(m for m in reversed(self.seen) if m["type"] == "member_updated"
                         and m["member"]["id"] == member)["member"])

    def inject(self, message: dict[str, Any]) -> None:
        """Send the victim a message of the server's making (or one it held back)."""
        peer = self._peer()
        assert peer is not None, "the victim is not connected"
        peer.send_bytes(json.dumps(message).encode())


def forged_keys(room: str, member: str, epoch: int) -> dict[str, Any]:
    """Roster keys of the server's own making for `member`: a valid identity and an epoch
    key for `epoch` signed by it (what an honest member would publish)."""
    session = GroupSession(room, member)
    session.update_roster(epoch, {})
    return session.public_keys()
