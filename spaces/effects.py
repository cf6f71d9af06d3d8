"""What the core asks the shell to do. The core returns these; one adapter applies them.

Messages are server messages (spaces/server_messages.py, the shapes of
docs/protocol.md), frozen like the effects that carry them; the adapter
encodes each effect's message once, however many members receive it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hearth.spaces.server_messages import ServerMessage

Message = ServerMessage


@dataclass(frozen=True, slots=True)
class Reply:
    """To the connection that sent the frame being handled."""
    message: Message


@dataclass(frozen=True, slots=True)
class Send:
    """To one member, on whichever connection (or node) holds it."""
    member: str
    message: Message


@dataclass(frozen=True, slots=True)
class Broadcast:
    """To every attached member of a room, except `exclude`."""
    room: str
    message: Message
    exclude: str | None = None


@dataclass(frozen=True, slots=True)
class Attach:
    """From now on this connection is `member` of `room` (in its lobby while `waiting`)."""
    room: str
    member: str
    waiting: bool = False


@dataclass(frozen=True, slots=True)
class Enter:
    """A waiting member was admitted: it now receives the room's broadcasts."""
    room: str
    member: str


@dataclass(frozen=True, slots=True)
class Audit:
    """One line for the audit log: never content, never an address."""
    actor: str
    action: str
    target: str | None
    room: str | None
    outcome: str


@dataclass(frozen=True, slots=True)
class Detach:
    """Close another connection that held `member` (it resumed elsewhere, or was removed)."""
    member: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close this connection with a WebSocket close code."""
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Voice:
    """One voice frame (binary, slot stamped) for each of `listeners`; droppable."""
    room: str
    frame: bytes
    listeners: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Dispatch:
    """An alert that must leave the building (webhook, e-mail): through the durable outbox."""
    channel: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Record:
    """An incident's new state, for the incident log (metadata only)."""
    incident: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DutyBroadcast:
    """To every on-duty facilitator of the organisation, whichever node holds them, except
    `exclude` (who already got it as a Send): on-duty consoles may sit in any room."""
    message: Message
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ActElsewhere:
    """A facilitator acted on an incident that another node runs (its room is owned
    there): the shell carries the action to that node, and its refusal back."""
    room: str
    incident: str
    action: str
    outcome: str | None
    actor: str
    ref: str | None
    basis: str | None = None  # for "external": consent or imminent_risk


@dataclass(frozen=True, slots=True)
class DutyRoster:
    """How many facilitators are on duty at this node, for every other node: an alert no
    console would hear goes to on-call at once (moderation/crisis.py)."""
    count: int


Effect = (Reply | Send | Broadcast | Attach | Enter | Detach | Close | Voice | Audit | Dispatch
          | Record | DutyBroadcast | ActElsewhere | DutyRoster)
