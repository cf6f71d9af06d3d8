"""Where log events go, and what they may carry.

Hearth's own events never name a client address, a token, a key or a message
body. Libraries are less careful: autobahn's debug events name the peer.
So the observer chain drops debug events and blanks fields that name a peer
before anything is written.
"""

from __future__ import annotations

from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    jsonFileLogObserver,
    textFileLogObserver,
)
from zope.interface import provider

PEER_FIELDS = ("peer", "client", "clientAddress", "remote", "ip", "address", "host")


def redacting(inner: ILogObserver) -> ILogObserver:
    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        if any(name in event for name in PEER_FIELDS):
            event = {**event, **{name: "[redacted]" for name in PEER_FIELDS if name in event}}
        inner(event)
    return observe


def observer(stream: IO[str], fmt: str, level: LogLevel = LogLevel.info) -> ILogObserver:
    out = jsonFileLogObserver(stream) if fmt == "json" else textFileLogObserver(stream)
    return FilteringLogObserver(redacting(out),
                                [LogLevelFilterPredicate(defaultLogLevel=level)])
