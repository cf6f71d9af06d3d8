"""Voice over WebTransport datagrams against a live server (aioquic on both ends).

The same room core decides about every frame whichever transport it came on: these tests
send over datagrams what tests/live/test_voice_relay.py sends over the WebSocket and expect
the same listeners; and they check the binding (one-time token over the WebSocket), what
is dropped and counted, and the fall-back to the WebSocket.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest_twisted

from bench.wtclient import SessionRefused, VoiceSession, open_session
from hearth.client.websocket import HearthClient
from hearth.spaces.voice import HEADER_SIZE, build_frame, parse_header
from hearth.web.webtransport import certificate_hash
from tests.support.config import make_config
from tests.support.live import LiveServer, caught_up, sleep, start_server, until, walk_to
from tests.support.voice_udp import (
    datagrams_in,
    offer,
    on_asyncio,
    session_for,
    start_udp_server,
    udp,
)

PAYLOAD = b"opus?" * 8


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


def slot_of(client: HearthClient) -> int:
    members = (client.welcome or {})["room"]["members"]
    return int(next(m["slot"] for m in members if m["id"] == client.member))


async def delivered(live: LiveServer, received: int, sessions: Iterable[VoiceSession],
                    clients: Iterable[HearthClient]) -> None:
    """Until the server has taken in `received` datagrams in all (it handles each as it
    comes), every datagram it sent has reached its session, and every WebSocket client has
    read what the server sent it: nothing more is on its way."""
    await until(lambda: udp(live).counts["received"] == received,
                what=f"the server taking in {received} datagrams")
    await datagrams_in([live], sessions)
    await caught_up(*clients)


def config(**extra: dict[str, object]) -> object:
    return make_config(movement={"walk_speed": 50.0}, voice={"hearing_range": 5.0},
                       webtransport={"self_signed": True}, **extra)


@pytest_twisted.ensureDeferred
async def test_datagrams_reach_exactly_the_websocket_paths_listeners_both_ways() -> None:
    live = await start_udp_server(config())  # type: ignore[arg-type]
    try:
        ticket = live.hearth.node.venue.issue_ticket("facilitator", live.hearth.node.clock())
        c = await placed(live, {"Speaker": (5.0, 8.0), "Near": (9.0, 8.0), "Far": (11.5, 8.0),
                                "Corner": (1.5, 1.5), "Facil": (5.0, 9.5), "Pair": (2.5, 2.5)},
                         ticket={"Facil": ticket})
        # Speaker and Near and Corner talk over WebTransport; the others stay on the socket.
        sessions = {name: await session_for(c[name]) for name in ("Speaker", "Near", "Corner")}
        speaker_slot = slot_of(c["Speaker"])
        for seq in range(1, 11):
            sessions["Speaker"].send(build_frame(PAYLOAD, seq=seq, level=20))
            await sleep(0.02)
        await until(lambda: len(sessions["Near"].frames) >= 10
                    and len([f for f in c["Facil"].binary
                             if parse_header(f, 4096).slot == speaker_slot]) >= 10,
                    timeout=5, what="the speaker's frames")
        await delivered(live, 10, sessions.values(), c.values())
        near = sessions["Near"].frames
        assert [parse_header(f, 4096).seq for f in near] == list(range(1, 11))
        assert {parse_header(f, 4096).slot for f in near} == {speaker_slot}  # slot stamped
        assert near[0][HEADER_SIZE:] == PAYLOAD  # relayed untouched
        # the same listeners as over the WebSocket: in range, same zone, not the speaker
        assert len(c["Facil"].binary) == 10 and not c["Near"].binary  # Near's come as datagrams
        assert sessions["Corner"].frames == [] and c["Far"].binary == [] \
            and c["Pair"].binary == [] and sessions["Speaker"].frames == []

        # The quiet corner: over datagrams in, heard by its pair (on the WebSocket) only.
        for seq in range(100, 105):
            sessions["Corner"].send(build_frame(PAYLOAD, seq=seq, level=20))
        await until(lambda: len(c["Pair"].binary) >= 5, timeout=5, what="the corner pair")
        await delivered(live, 15, sessions.values(), c.values())
        assert len(c["Pair"].binary) == 5 and len(sessions["Near"].frames) == 10
        assert len(c["Facil"].binary) == 10

        # Muted by the facilitator: the speaker's datagrams reach nobody, and it is told
        # (over its WebSocket) as it would be for WebSocket frames.
        c["Facil"].send({"type": "mute", "member": c["Speaker"].member})
        await c["Speaker"].next(lambda m: m["type"] == "member_updated"
                                and m["member"]["id"] == c["Speaker"].member
                                and m["member"]["muted"])
        for seq in range(200, 205):
            sessions["Speaker"].send(build_frame(PAYLOAD, seq=seq, level=20))
        assert (await c["Speaker"].expect("error"))["code"] == "muted"
        await delivered(live, 20, sessions.values(), c.values())
        assert len(sessions["Near"].frames) == 10 and len(c["Facil"].binary) == 10

        counts = udp(live).counts
        assert counts["received"] >= 20 and counts["sessions"] == 3
        assert counts["dropped_unbound"] == counts["dropped_foreign"] == 0
        for s in sessions.values():
            await on_asyncio(s.close())
        for client in c.values():
            await client.close()
    finally:
        await live.hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_lost_datagram_is_carried_by_the_next_ones_repeat() -> None:
    live = await start_udp_server(config())  # type: ignore[arg-type]
    try:
        c = await placed(live, {"Speaker": (5.0, 8.0), "Near": (8.0, 8.0)})
        speaker, near = await session_for(c["Speaker"]), await session_for(c["Near"])
        frames = [build_frame(PAYLOAD, seq=seq, level=20) for seq in range(1, 7)]
        # Frame 3's own datagram is "lost": it arrives only as the repeat inside frame 4's.
        for i, frame in enumerate(frames):
            if i != 2:
                speaker.send(frame, frames[i - 1] if i else None)
            await sleep(0.02)
        await until(lambda: len(near.frames) >= 6, timeout=5, what="six frames")
        await delivered(live, 5, (speaker, near), c.values())
        assert sorted(parse_header(f, 4096).seq for f in near.frames) == [1, 2, 3, 4, 5, 6]
        # the listener's datagrams carry repeats too (the client takes the copies out)
        assert near.datagrams == 6
        await on_asyncio(speaker.close())
        await on_asyncio(near.close())
    finally:
        await live.hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_token_is_good_once_for_its_member_only_and_strays_are_dropped_and_counted() -> None:
    live = await start_udp_server(config())  # type: ignore[arg-type]
    try:
        server = udp(live)
        stranger = await live.client()
        assert (await offer(stranger))["code"] == "not_joined"  # no member, no token
        c = await placed(live, {"Speaker": (5.0, 8.0), "Near": (8.0, 8.0)})
        answer = await offer(c["Speaker"], "one")
        assert answer["url"] == f"https://127.0.0.1:{server.port}/voice"
        assert answer["hashes"] == [certificate_hash(server.certificates.quic.certificate)]
        assert answer["ttl"] == 30 and len(answer["token"]) >= 32
        # asked again at once: refused, and the first token still stands
        assert (await offer(c["Speaker"], "two"))["code"] == "rate_limited"

        # a page of another site: refused (the token is not spent)
        try:
            await on_asyncio(open_session(answer, origin="https://evil.example"))
            raise AssertionError("a foreign origin opened a session")
        except SessionRefused as refused:
            assert refused.status == 403
        session = await on_asyncio(open_session(answer, origin=live.http_url))
        # the same token again: refused (used once)
        try:
            await on_asyncio(open_session(answer))
            raise AssertionError("a token opened two sessions")
        except SessionRefused as refused:
            assert refused.status == 403
        # an expired token: refused
        late = await offer(c["Near"], "late")
        real_clock, server.clock = server.clock, lambda: 1e12
        try:
            await on_asyncio(open_session(late))
            raise AssertionError("an expired token opened a session")
        except SessionRefused:
            pass
        finally:
            server.clock = real_clock

        # A datagram on a session id this connection never bound: dropped, counted.
        protocol = session._protocol
        protocol.http.send_datagram(protocol.session + 4, b"\0\x1a" + build_frame(PAYLOAD, seq=1,
                                                                                     level=9))
        protocol.transmit()
        # A datagram that is not framed: dropped, counted; a frame the core refuses is
        # answered over the WebSocket as a bad binary frame would be.
        session.send_datagram(b"\xff")
        session.send(b"\x07" * 30)
        assert (await c["Speaker"].expect("error"))["code"] == "voice_invalid"
        await until(lambda: server.counts["dropped_unbound"] == 1
                    and server.counts["dropped_malformed"] == 1, timeout=5,
                    what="the strays counted")

        # The member's WebSocket closes: its session ends with it.
        await c["Speaker"].close()
        await until(lambda: session.ended and not server.bound, timeout=5,
                    what="the session closed with its WebSocket")
        await c["Near"].close()
        await stranger.close()
    finally:
        await live.hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_without_webtransport_the_room_core_says_so_and_voice_stays_on_the_websocket(
        ) -> None:
    live = await start_server(make_config())
    try:
        assert live.hearth.webtransport is None
        client = await live.client()
        await client.join("circle")
        answer = await offer(client)
        assert answer["type"] == "error" and answer["code"] == "webtransport_unavailable"
        await client.close()
    finally:
        await live.hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_past_max_connections_a_member_is_turned_away_and_keeps_voice_on_the_websocket(
        ) -> None:
    """Datagrams cost the server far more CPU than WebSocket frames: the cap keeps them from
    crowding out everything else on the process."""
    live = await start_udp_server(make_config(  # type: ignore[arg-type]
        movement={"walk_speed": 50.0}, voice={"hearing_range": 5.0},
        webtransport={"self_signed": True, "max_connections": 1}))
    try:
        server = udp(live)
        c = await placed(live, {"Speaker": (5.0, 8.0), "Near": (8.0, 8.0)})
        first = await on_asyncio(open_session(await offer(c["Near"], "one"), origin=live.http_url))
        try:
            await on_asyncio(open_session(await offer(c["Speaker"], "two"),
                                          origin=live.http_url, timeout=3.0))
            raise AssertionError("a connection past max_connections opened a session")
        except AssertionError:
            raise
        except Exception:
            pass
        await until(lambda: server.counts["refused_busy"] == 1, timeout=5,
                    what="the connection past the cap counted")
        assert len(server.bound) == 1 and not first.ended
        # The one turned away still speaks over the WebSocket, and is heard over datagrams.
        c["Speaker"].send_voice(build_frame(PAYLOAD, seq=1, level=9))
        await until(lambda: any(PAYLOAD in frame for frame in first.frames), timeout=5,
                    what="the WebSocket speaker heard over datagrams")
        for client in c.values():
            await client.close()
    finally:
        await live.hearth.service.stopService()
