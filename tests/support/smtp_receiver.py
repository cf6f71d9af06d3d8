"""A local SMTP server for tests (twisted.mail), keeping every message it accepts."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.mail import smtp
from zope.interface import implementer


@implementer(smtp.IMessage)
class _Message:
    def __init__(self, box: list[bytes]) -> None:
        self.box, self.lines = box, []  # type: ignore[var-annotated]

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> Any:
        self.box.append(b"\n".join(self.lines))
        return defer.succeed(None)

    def connectionLost(self) -> None:
        self.lines = []


@implementer(smtp.IMessageDelivery)
class _Delivery:
    def __init__(self, box: list[bytes]) -> None:
        self.box = box

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: by the Hearth test receiver"

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        return origin

    def validateTo(self, user: Any) -> Any:
        return lambda: _Message(self.box)


class SMTPReceiver:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.port: Any = None

    def listen(self) -> int:
        box = self.messages

        class Factory(smtp.SMTPFactory):
            def buildProtocol(self, addr: Any) -> Any:
                protocol = super().buildProtocol(addr)
                protocol.delivery = _Delivery(box)
                return protocol

        self.port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        return int(self.port.getHost().port)

    async def stop(self) -> None:
        if self.port is not None:
            await self.port.stopListening()
