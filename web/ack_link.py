"""/incidents/ack/<id>/<token>: the acknowledgement link an on-call receiver may follow.

The token is an HMAC of the incident id under a server key, so the URL is a
capability for that one incident and nothing else; it acknowledges only
(viewing an incident needs a facilitator login). What acknowledging means is
the crisis desk's (moderation/crisis.py `acknowledge_by_link`); this only
checks the link and answers.
"""

from __future__ import annotations

import hmac
import json

from twisted.web import resource, server

from hearth.spaces.protocol import ProtocolError
from hearth.web.alerts import ack_token
from hearth.web.node import Node


class AckLink(resource.Resource):
    isLeaf = True

    def __init__(self, node: Node, ack_key: bytes) -> None:
        super().__init__()
        self.node, self.ack_key = node, ack_key

    def render_POST(self, request: server.Request) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        parts = request.postpath
        # Bytes, compared in constant time: a token that is not ASCII is a wrong one (as text,
        # compare_digest raised on it and the link answered 500).
        if len(parts) != 3 or parts[0] != b"ack" or not parts[1].isascii() \
                or not hmac.compare_digest(parts[2],
                                           ack_token(self.ack_key, parts[1].decode()).encode()):
            request.setResponseCode(404)
            return json.dumps({"error": "not_found"}).encode()
        incident = parts[1].decode()
        venue = self.node.venue
        try:
            state, effects = venue.crisis.acknowledge_by_link(venue.rooms, incident,
                                                              self.node.clock())
        except ProtocolError as refused:
            request.setResponseCode(404 if refused.code == "incident_not_found" else 409)
            return json.dumps({"error": refused.code}).encode()
        self.node.apply(None, effects)
        return json.dumps({"ok": True, "state": state}).encode()

    def render_GET(self, request: server.Request) -> bytes:
        request.setResponseCode(405)
        request.setHeader(b"Allow", b"POST")
        return b"POST to acknowledge.\n"
