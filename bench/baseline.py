"""The baseline: the smallest autobahn relay that can carry the same load as Hearth.

Why it exists: absolute figures depend on the machine; a ratio to a relay
that does nothing but relay, measured by the same generator in the same run,
does not. It is the obvious autobahn program, written the way autobahn's own
advice for Twisted goes (prepared messages, compression off, TCP_NODELAY as a
class attribute), so the comparison is against a good
minimal relay, not a straw man:

- the same reactor as `hearth serve` (Twisted's asyncio reactor), the same
  subprotocol, TCP_NODELAY as a class attribute, no permessage-deflate;
- the first text message names the room (`{"type": "join", "room": ...}`)
  and gets a tiny `welcome`; every later message, text or binary, is prepared
  once and sent to every other member of that room. Nothing else: no
  validation, no sequence numbers, no roles, no voice routing, no pings.

Run: `python -m bench.baseline [--listen tcp:0:interface=127.0.0.1]`; it prints
"Open http://127.0.0.1:PORT/" like `hearth serve` does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any


def install_reactor() -> Any:
    """Twisted's asyncio reactor on a default loop, exactly as web/cli.py installs it."""
    from twisted.internet import asyncioreactor
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    from twisted.internet import reactor
    return reactor


def build_factory() -> Any:
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    rooms: dict[str, set[Any]] = {}
    counter = [0]

    class RelayProtocol(WebSocketServerProtocol):  # type: ignore[misc]
        tcpNoDelay = True
        room: set[Any] | None = None

        def onConnect(self, request: Any) -> str | None:
            return "hearth.v1" if "hearth.v1" in request.protocols else None

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            members = self.room
            if members is None:
                if isBinary:
                    return
                room_id = str(json.loads(payload).get("room"))
                members = self.room = rooms.setdefault(room_id, set())
                members.add(self)
                counter[0] += 1
                self.sendMessage(json.dumps({"type": "welcome", "member": f"m{counter[0]}",
                                             "room": {"id": room_id, "seq": 0}}).encode())
                return
            prepared = self.factory.prepareMessage(payload, isBinary=isBinary, doNotCompress=True)
            for other in members:
                if other is not self:
                    other.sendPreparedMessage(prepared)

        def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
            if self.room is not None:
                self.room.discard(self)
                self.room = None

    factory = WebSocketServerFactory(protocols=["hearth.v1"])
    factory.setProtocolOptions(perMessageCompressionAccept=lambda offers: None,
                               maxFramePayloadSize=65536, maxMessagePayloadSize=65536,
                               openHandshakeTimeout=10, closeHandshakeTimeout=5)
    factory.protocol = RelayProtocol
    return factory


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(prog="python -m bench.baseline")
    args.add_argument("--listen", default="tcp:0:interface=127.0.0.1")
    options = args.parse_args(argv)
    reactor = install_reactor()
    from twisted.internet.endpoints import serverFromString

    def listening(port: Any) -> None:
        host = port.getHost()
        print(f"\nBaseline relay is running.\n  Open http://{host.host}:{host.port}/\n", flush=True)

    def failed(failure: Any) -> None:
        print(f"baseline: cannot listen: {failure.value}", file=sys.stderr)
        reactor.stop()

    d = serverFromString(reactor, options.listen).listen(build_factory())
    d.addCallbacks(listening, failed)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
