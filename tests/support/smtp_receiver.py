"""A local SMTP server for tests (twisted.mail), keeping every message it accepts.

Plain by default. With `tls` (a server certificate) it offers STARTTLS, or with
`implicit=True` speaks TLS from the first byte; with `users` it offers AUTH
(PLAIN, LOGIN) and refuses mail from a session that did not authenticate.
Each accepted message is kept with how its session was made (`Session`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.cred import checkers, portal
from twisted.internet import defer, interfaces, reactor
from twisted.mail import imap4, smtp
from zope.interface import implementer


@dataclass
class Session:
    tls: bool  # the message came over TLS (STARTTLS or implicit)
    user: str | None  # the authenticated user, if any


@implementer(smtp.IMessage)
class _Message:
    def __init__(self, box: list[bytes], on_end: Any) -> None:
        self.box, self.lines, self.on_end = box, [], on_end  # type: ignore[var-annotated]

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> Any:
        self.box.append(b"\n".join(self.lines))
        self.on_end()
        return defer.succeed(None)

    def connectionLost(self) -> None:
        self.lines = []


@implementer(smtp.IMessageDelivery)
class _Delivery:
    def __init__(self, receiver: SMTPReceiver, user: str | None, anonymous_ok: bool) -> None:
        self.receiver, self.user, self.anonymous_ok = receiver, user, anonymous_ok
        self.protocol: Any = None

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: by the Hearth test receiver"

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        if not self.anonymous_ok:
            raise smtp.SMTPBadSender(origin, 530, b"Authentication required")
        return origin

    def validateTo(self, user: Any) -> Any:
        receiver = self.receiver
        tls = interfaces.ISSLTransport.providedBy(self.protocol.transport) if self.protocol else False

        def ended() -> None:
            receiver.sessions.append(Session(tls=bool(tls), user=self.user))
        return lambda: _Message(receiver.messages, ended)


class SMTPReceiver:
    def __init__(self, tls: tuple[Path, Path] | None = None, implicit: bool = False,
                 users: dict[str, str] | None = None) -> None:
        """`tls`: (key, certificate) PEM files; `users`: name -> password for AUTH."""
        self.messages: list[bytes] = []
        self.sessions: list[Session] = []
        self.port: Any = None
        self.tls, self.implicit, self.users = tls, implicit, users

    def _options(self) -> Any:
        from twisted.internet import ssl
        assert self.tls is not None
        key, cert = self.tls
        return ssl.PrivateCertificate.loadPEM(key.read_text() + cert.read_text()).options()

    def listen(self) -> int:
        receiver = self
        context = self._options() if self.tls is not None else None
        users = self.users

        @implementer(portal.IRealm)
        class Realm:
            def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces_: Any) -> Any:
                name = avatar_id.decode() if isinstance(avatar_id, bytes) else avatar_id
                delivery = _Delivery(receiver, name, anonymous_ok=True)
                delivery.protocol = mind
                return smtp.IMessageDelivery, delivery, lambda: None

        class Factory(smtp.SMTPFactory):
            protocol = smtp.ESMTP

            def buildProtocol(self, addr: Any) -> Any:
                challengers = ({b"PLAIN": imap4.PLAINCredentials, b"LOGIN": imap4.LOGINCredentials}
                               if users else {})
                p = smtp.ESMTP(challengers, None if receiver.implicit else context)
                p.factory = self
                p.host = b"hearth-test-smtp"
                delivery = _Delivery(receiver, None, anonymous_ok=not users)
                delivery.protocol = p
                p.delivery = delivery
                if users:
                    checker = checkers.InMemoryUsernamePasswordDatabaseDontUse()
                    for name, password in users.items():
                        checker.addUser(name.encode(), password.encode())
                    p.portal = portal.Portal(_RealmFor(Realm(), p), [checker])
                return p

        if self.implicit:
            self.port = reactor.listenSSL(0, Factory(), context, interface="127.0.0.1")
        else:
            self.port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        return int(self.port.getHost().port)

    async def stop(self) -> None:
        if self.port is not None:
            await self.port.stopListening()


@implementer(portal.IRealm)
class _RealmFor:
    """Hands the SMTP protocol to the realm, so a delivery knows whether its session is TLS."""

    def __init__(self, realm: Any, protocol: Any) -> None:
        self.realm, self.protocol = realm, protocol

    def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces_: Any) -> Any:
        return self.realm.requestAvatar(avatar_id, self.protocol, *interfaces_)
