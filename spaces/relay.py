"""Messages between nodes: how an edge node and a room's owner node talk.

A client connects to any node (the edge). Each room is owned by one node at a
time, which runs its state machine; the edge forwards the client's frames to
the owner and delivers what the owner sends back. One wire shape for every
kind: kind (1 byte) ‖ header length (u16) ‖ JSON header ‖ payload bytes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Final

_PREFIX = struct.Struct("!BH")

# edge -> owner
OPEN: Final = 1  # {link, hashes: {day: hex}}: a client bound to one of the owner's rooms
FRAME: Final = 2  # {link, binary}: a client frame, as received
LOST: Final = 3  # {link}: the client's transport went away
# owner -> edge
REPLY: Final = 10  # {link}: text frame for that client
ATTACH: Final = 11  # {link, room, member, waiting}
ENTER: Final = 12  # {room, member}
BROADCAST: Final = 13  # {room, exclude}: text frame for the node's members of the room
TO_MEMBER: Final = 14  # {member, binary}
VOICE: Final = 15  # {members}: binary frame for those members
CLOSE_LINK: Final = 16  # {link, code, reason}
CLOSE_MEMBER: Final = 17  # {member, code, reason}
MOVED: Final = 18  # {room}: the sender no longer owns the room; clients should resume
# node -> every node (Broker.send_all)
DUTY: Final = 20  # {from, exclude}: text frame for the node's on-duty facilitators
INCIDENT: Final = 21  # {from}: JSON payload, an incident's new state (metadata only)
SESSION: Final = 24  # {from}: JSON payload, a facilitator sign-in session's change (digests)
DUTY_ROSTER: Final = 25  # {from, count}: how many facilitators are on duty at that node
ACCOUNTS: Final = 26  # {from}: facilitator accounts changed; read the shared log now
# node -> the node that runs an incident, and back
INCIDENT_ACT: Final = 22  # {req, from, room, incident, action, outcome, actor, ref}
INCIDENT_DONE: Final = 23  # {req}: payload empty, or the text frame of the refusal


@dataclass(frozen=True, slots=True)
class Relayed:
    kind: int
    header: dict[str, Any]
    payload: bytes


def pack(kind: int, header: dict[str, Any], payload: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return _PREFIX.pack(kind, len(head)) + head + payload


def unpack(data: bytes) -> Relayed:
    kind, length = _PREFIX.unpack_from(data)
    start = _PREFIX.size
    header = json.loads(data[start:start + length])
    return Relayed(kind, header, data[start + length:])
