"""Voice over real sockets: who receives a speaker's frames, and what a slow listener costs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest_twisted

from hearth.client.websocket import HearthClient
from hearth.spaces.voice import HEADER_SIZE, build_frame, parse_header
from tests.support.config import make_config
from tests.support.live import LiveServer, caught_up, sleep, start_server, walk_to


async def placed(server: LiveServer, spots: dict[str, tuple[float, float]],
                 ticket: dict[str, str] | None = None) -> dict[str, HearthClient]:
    clients = {}
    for name, (x, y) in spots.items():
        client = await server.client()
        extra = {"ticket": ticket[name]} if ticket and name in ticket else {}
        await client.join("circle", pseudonym=f"{name} Wren", **extra)
        await walk_to(client, x, y)
        clients[name] = client
    return clients


async def talk(speaker: HearthClient, listeners: Iterable[HearthClient], frames: int = 10,
               first: int = 1) -> None:
    """Frames at the voice rate (one per 20 ms: the server counts them), then until every
    listener has read whatever the server sent it for them."""
    for seq in range(first, first + frames):
        speaker.send_voice(build_frame(b"opus?" * 8, seq=seq, level=20))
        await sleep(0.02)
    await caught_up(speaker, *listeners)


def heard(client: HearthClient, slot: int) -> int:
    return sum(1 for f in client.binary if parse_header(f, 4096).slot == slot)


def slot_of(client: HearthClient, observer: HearthClient) -> int:
    for message in [*observer.inbox, observer.welcome or {}]:
        for m in message.get("room", {}).get("members", []) + (
                [message["member"]] if isinstance(message.get("member"), dict) else []):
            if m["id"] == client.member:
                return int(m["slot"])
    raise AssertionError("slot not found")


@pytest_twisted.ensureDeferred
async def test_exactly_the_listeners_in_range_and_zone_hear_and_a_muted_speaker_nobody() -> None:
    live = await start_server(make_config(movement={"walk_speed": 50.0},
                                          voice={"hearing_range": 5.0}))
    try:
        ticket = live.hearth.node.venue.issue_ticket("facilitator", live.hearth.node.clock())
        c = await placed(live, {
            "Speaker": (5.0, 8.0), "Near": (9.0, 8.0), "Far": (11.5, 8.0),
            "Corner": (1.5, 1.5), "Facil": (5.0, 9.5), "Pair": (2.5, 2.5)},
            ticket={"Facil": ticket})
        speaker_slot = slot_of(c["Speaker"], c["Facil"])
        await talk(c["Speaker"], c.values())
        counts = {name: heard(client, speaker_slot) for name, client in c.items()}
        assert counts == {"Speaker": 0, "Near": 10, "Far": 0, "Corner": 0, "Facil": 10, "Pair": 0}
        frame = next(f for f in c["Near"].binary if parse_header(f, 4096).slot == speaker_slot)
        assert frame[HEADER_SIZE:] == b"opus?" * 8  # relayed untouched

        # the quiet-corner pair: heard by each other only
        corner_slot = slot_of(c["Corner"], c["Facil"])
        await talk(c["Corner"], c.values(), first=100)
        assert {n: heard(cl, corner_slot) for n, cl in c.items() if n != "Corner"} == {
            "Speaker": 0, "Near": 0, "Far": 0, "Facil": 0, "Pair": 10}

        # muted by the facilitator: nobody, and the speaker is told
        c["Facil"].send({"type": "mute", "member": c["Speaker"].member})
        await c["Speaker"].next(lambda m: m["type"] == "member_updated"
                                and m["member"]["id"] == c["Speaker"].member
                                and m["member"]["muted"])
        for client in c.values():
            client.binary.clear()
        await talk(c["Speaker"], c.values(), first=200)
        assert sum(heard(client, speaker_slot) for client in c.values()) == 0
        assert (await c["Speaker"].expect("error"))["code"] == "muted"
        for client in c.values():
            await client.close()
    finally:
        await live.hearth.service.stopService()


class FakePeer:
    """A connection as the node sees it, with a controllable backlog."""

    def __init__(self, backlog: int = 0) -> None:
        self.backlog = backlog
        self.text: list[bytes] = []
        self.prepared: list[Any] = []

    def send_bytes(self, payload: bytes) -> None:
        self.text.append(payload)

    def send_binary(self, payload: bytes) -> None:
        self.prepared.append(payload)

    def send_prepared(self, prepared: Any) -> None:
        self.prepared.append(prepared)

    def pending_bytes(self) -> int:
        return self.backlog

    def close(self, code: int, reason: str) -> None:
        pass


def test_a_slow_listener_loses_voice_but_never_chat() -> None:
    import json

    from twisted.internet.task import Clock

    from hearth.moderation.wiring import moderated_venue
    from hearth.spaces.broker import MemoryBroker
    from hearth.web.node import Node
    clock = Clock()
    config = make_config(voice={"slow_listener_bytes": 10_000})
    venue = moderated_venue(config, franking_key=b"k" * 32)
    prepared_count = []

    def prepare(payload: bytes, binary: bool) -> tuple[bytes, bool]:
        prepared_count.append(binary)
        return (payload, binary)
    node = Node(venue, MemoryBroker(clock.seconds), prepare, clock.seconds)
    node.start()
    peers = {"speaker": FakePeer(), "fast": FakePeer(), "slow": FakePeer(backlog=50_000),
             "fast2": FakePeer()}
    conns = {}
    for name, peer in peers.items():
        link = node.open(peer)
        node.received(link, json.dumps({"type": "join", "room": "circle"}).encode(), False)
        conns[name] = link
    for name in peers:
        seat = conns[name].conn.seat  # type: ignore[union-attr]
        venue.rooms["circle"].members[seat.member].pos = type(  # type: ignore[union-attr]
            venue.rooms["circle"].config.layout.spawn[0])(5.0, 8.0)
    for peer in peers.values():
        peer.prepared.clear()
    prepared_count.clear()
    node.received(conns["speaker"], build_frame(b"x" * 40, seq=1, level=9), True)
    assert len(peers["fast"].prepared) == len(peers["fast2"].prepared) == 1
    assert peers["slow"].prepared == [] and node.voice_dropped_slow == 1
    assert prepared_count == [True]  # prepared once for every listener
    before = len(peers["slow"].text)
    node.received(conns["speaker"], json.dumps(
        {"type": "envelope", "body": "AAAA", "commitment": "A" * 43 + "="}).encode(), False)
    assert len(peers["slow"].prepared) == 1 and len(peers["slow"].text) == before  # chat: prepared
