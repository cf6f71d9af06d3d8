"""Voice over WebTransport in the tests: a live server with it on, and a member's session."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

from bench.wtclient import VoiceSession, open_session
from hearth.client.websocket import HearthClient
from hearth.spaces.config import HearthConfig
from tests.support.live import LiveServer, until

T = TypeVar("T")


def on_asyncio(coro: Coroutine[Any, Any, T]) -> Deferred[T]:
    """An asyncio coroutine (aioquic's) awaited from a Twisted test on the asyncio reactor."""
    return Deferred.fromFuture(asyncio.ensure_future(coro))


async def start_udp_server(config: HearthConfig) -> LiveServer:
    """A live server with voice over UDP on a free port (self-signed unless configured)."""
    from twisted.internet import reactor

    from hearth.web.service import make_hearth
    hearth = make_hearth(config, reactor, ["tcp:0:interface=127.0.0.1"], webtransport=True)
    hearth.service.startService()
    await hearth.when_listening()
    return LiveServer(hearth, hearth.listeners[0].port.getHost().port)


async def offer(client: HearthClient, ref: str = "vt") -> dict[str, Any]:
    """The member's `voice_transport` answer (an offer, or an error)."""
    client.send({"type": "voice_transport", "ref": ref})
    return await client.next(lambda m: m.get("ref") == ref)


async def session_for(client: HearthClient, **options: Any) -> VoiceSession:
    answer = await offer(client)
    assert answer["type"] == "voice_transport", answer
    return await on_asyncio(open_session(answer, **options))


def udp(server: LiveServer) -> Any:
    """The node's WebTransport endpoint (web/webtransport.py WebTransportServer)."""
    return server.hearth.webtransport.server


async def datagrams_in(servers: list[LiveServer], sessions: Iterable[VoiceSession]) -> None:
    """Until every datagram the servers sent has reached its session (they count what they
    send; a session counts what it receives): nothing more is on its way."""
    await until(lambda: sum(s.datagrams for s in sessions)
                == sum(udp(server).counts["sent"] for server in servers),
                what="every datagram sent reaching its session")


def record_socket_frames(server: LiveServer) -> list[bytes]:
    """Every frame the server receives over a WebSocket (not over WebTransport), as received."""
    frames: list[bytes] = []
    factory = server.hearth.listeners[0].factory.resource.children[b"ws"]._factory
    protocol = factory.protocol
    original = protocol.onMessage

    def on_message(self: Any, payload: bytes, is_binary: bool) -> None:
        frames.append(bytes(payload))
        original(self, payload, is_binary)
    protocol.onMessage = on_message
    return frames
