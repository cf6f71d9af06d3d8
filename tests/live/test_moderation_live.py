"""Moderation over real sockets: lobby, ban that survives a rejoin, end of session."""

from __future__ import annotations

import pytest
import pytest_twisted

from hearth.client.websocket import HearthClient, ServerError
from tests.support.live import LiveServer


async def facilitator(server: LiveServer) -> HearthClient:
    node = server.hearth.node
    ticket = node.venue.issue_ticket("facilitator", node.clock(), account="ana")
    client = await server.client()
    await client.join("circle", ticket=ticket)
    return client


@pytest_twisted.ensureDeferred
async def test_lobby_then_admission_then_the_room(server: LiveServer) -> None:
    fac = await facilitator(server)
    fac.send({"type": "lobby", "on": True})
    await fac.expect("room_settings")
    newcomer = await server.client()
    newcomer.send({"type": "join", "room": "circle", "pseudonym": "Shy Finch"})
    waiting = await newcomer.expect("waiting")
    lobby = await fac.expect("lobby")
    assert lobby["waiting"][0]["pseudonym"] == "Shy Finch"
    fac.send({"type": "admit", "member": waiting["member"]})
    welcome = await newcomer.expect("welcome")
    assert welcome["member"] == waiting["member"] and welcome["token"]
    joined = await fac.expect("member_joined")
    assert joined["member"]["pseudonym"] == "Shy Finch"
    fac.envelope("AAAA", "A" * 43 + "=")
    assert (await newcomer.expect("envelope"))["from"] == fac.member  # now in the room
    await newcomer.close()
    await fac.close()


@pytest_twisted.ensureDeferred
async def test_a_banned_member_is_closed_and_cannot_rejoin_from_the_same_address(
        server: LiveServer) -> None:
    fac = await facilitator(server)
    banned = await server.client(source_address="127.0.0.3")
    await banned.join("circle")
    fac.send({"type": "ban", "member": banned.member, "minutes": 10})
    code, _ = await banned.until_closed()
    assert code == 4003
    again = await server.client(source_address="127.0.0.3")
    with pytest.raises(ServerError) as refused:
        await again.join("circle")
    assert refused.value.code == "banned"
    other = await server.client(source_address="127.0.0.4")
    await other.join("circle")  # someone else from elsewhere is welcome
    for client in (again, other, fac):
        await client.close()


@pytest_twisted.ensureDeferred
async def test_end_session_closes_everyone(server: LiveServer) -> None:
    fac = await facilitator(server)
    person = await server.client()
    await person.join("circle")
    fac.send({"type": "end_session"})
    assert (await person.expect("session_ended"))["type"] == "session_ended"
    code, _ = await person.until_closed()
    assert code == 4005
    code, _ = await fac.until_closed()
    assert code == 4005
