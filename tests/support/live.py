"""A live server on an ephemeral loopback port, and waiting for what it does."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater

from hearth.client.groupchat import GroupChat
from hearth.client.websocket import HearthClient
from hearth.spaces.config import HearthConfig


@dataclass
class LiveServer:
    hearth: Any
    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def client(self, **kwargs: Any) -> Any:
        from hearth.client.websocket import HearthClient
        return await HearthClient.connect(self.ws_url, **kwargs)


async def start_server(config: HearthConfig) -> LiveServer:
    from twisted.internet import reactor

    from hearth.web.service import make_hearth
    hearth = make_hearth(config, reactor, ["tcp:0:interface=127.0.0.1"])
    hearth.service.startService()
    await hearth.when_listening()
    return LiveServer(hearth, hearth.listeners[0].port.getHost().port)


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


_PROBES = itertools.count(1)


async def caught_up(*clients: HearthClient) -> None:
    """Until the server has handled everything each client sent before, and each client has
    read everything the server sent it before: one round trip per connection, in the order
    given (senders first, then whoever must not have received something).

    The probe is a frame the server refuses at once (`unknown_type`, with our `ref`): on
    one WebSocket the server handles frames in order and TCP keeps what it sends in order,
    so its answer comes after anything earlier. A test asserting that something did *not*
    arrive waits for this, never for a fixed time.
    """
    for client in clients:
        ref = f"caught-up-{next(_PROBES)}"
        client.send({"type": "caught_up_probe", "ref": ref})
        answer = await client.next(lambda m, ref=ref: m.get("ref") == ref, timeout=30.0)
        assert answer.get("code") == "unknown_type", answer


async def room_caught_up(actor: HearthClient, *members: HearthClient) -> None:
    """Until each member has read everything the room sent it before `actor` spoke, on
    whichever node it is: `actor` raises its hand and lowers it again, and each member waits
    for both `stick` broadcasts (a room's messages reach each member in the order the room
    sent them, across nodes too). Call it once the room has handled what is being checked
    (e.g. `actor` received it)."""
    for up in (True, False):
        actor.send({"type": "raise_hand", "up": up})
        for member in (actor, *members):
            await member.next(lambda m, up=up: m.get("type") == "stick"
                              and (actor.member in m.get("hands", ())) == up, timeout=30.0)


async def walk_to(client: HearthClient, x: float, y: float) -> None:
    """Walk (the test config walks at 50 m/s) until the server reports us there."""
    for _ in range(40):
        client.move(x, y)
        await sleep(0.1)
        for message in client.take_all("positions"):
            for member, mx, my, _zone in message["moves"]:
                if member == client.member and (mx, my) == (x, y):
                    return
    raise AssertionError(f"could not walk to {(x, y)}")


async def until(check: Any, timeout: float = 15.0, what: str = "a condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await sleep(0.05)


async def until_async(check: Any, timeout: float = 10.0, what: str = "a condition") -> None:
    deadline = reactor.seconds() + timeout
    while not await check():
        assert reactor.seconds() < deadline, f"timed out waiting for {what}"
        await sleep(0.1)


def record_frames(server: LiveServer) -> list[bytes]:
    """Every frame the server receives, as received."""
    frames: list[bytes] = []
    node: Any = server.hearth.node
    original = node.received

    def received(link: Any, frame: bytes, is_binary: bool) -> None:
        frames.append(bytes(frame))
        original(link, frame, is_binary)
    node.received = received
    return frames


async def settle(*chats: GroupChat) -> None:
    """Until every member holds every other member's current sender key."""
    members = [c.client.member or "" for c in chats]
    for c in chats:
        await c.keys_from(members)
