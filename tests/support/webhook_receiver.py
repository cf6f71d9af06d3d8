"""A local on-call webhook receiver for tests: records every call, can fail or go away."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import reactor
from twisted.web import resource, server


@dataclass
class Call:
    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    secret: str
    fail_first: int = 0  # answer 503 to this many calls first
    code: int = 200  # the answer to a call that is not failed
    answer: bytes = b"{}"
    calls: list[Call] = field(default_factory=list)
    refused: int = 0
    port: Any = None

    def listen(self, port: int = 0) -> int:
        receiver = self

        class Hook(resource.Resource):
            isLeaf = True

            def render_POST(self, request: server.Request) -> bytes:
                raw = request.content.read()
                if receiver.refused < receiver.fail_first:
                    receiver.refused += 1
                    request.setResponseCode(503)
                    return b"down for a moment"
                headers = {k.decode().lower(): v[0].decode()
                           for k, v in request.requestHeaders.getAllRawHeaders()}
                receiver.calls.append(Call(json.loads(raw), raw, headers))
                request.setResponseCode(receiver.code)
                return receiver.answer

        self.port = reactor.listenTCP(port, server.Site(Hook()), interface="127.0.0.1")
        return int(self.port.getHost().port)

    async def stop(self) -> None:
        if self.port is not None:
            await self.port.stopListening()
            self.port = None

    def verify(self, call: Call) -> bool:
        """The Standard Webhooks signature (webhook-id, webhook-timestamp, webhook-signature),
        checked the way the spec says, for a plain-text secret (its UTF-8 bytes are the key)."""
        msg_id, timestamp = call.headers["webhook-id"], call.headers["webhook-timestamp"]
        mac = hmac.new(self.secret.encode(), f"{msg_id}.{timestamp}.".encode() + call.raw,
                       hashlib.sha256).digest()
        expected = "v1," + base64.b64encode(mac).decode()
        return any(hmac.compare_digest(expected, sig)
                   for sig in call.headers["webhook-signature"].split(" "))
