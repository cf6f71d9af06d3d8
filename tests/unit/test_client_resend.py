"""The Python client's group chat without a server: what it sends again, and when (a fake
connection, a fake clock)."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock

from hearth.client.groupchat import ACK_WAIT, GroupChat
from hearth.client.websocket import HearthClient


class FakeLink:
    """The WebSocket under a HearthClient: open, and what went out on it."""
    STATE_OPEN = 1
    state = 1

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def sendMessage(self, payload: bytes, isBinary: bool = False) -> None:
        self.sent.append(json.loads(payload))


def alone_in_a_room() -> tuple[Clock, HearthClient, FakeLink, GroupChat]:
    clock, link = Clock(), FakeLink()
    client = HearthClient(clock)
    client.member = "m1"
    client._opened(link)  # type: ignore[arg-type]
    chat = GroupChat(client, "circle", {"room": {"epoch": 1, "members": [{"id": "m1", "slot": 0}]}})
    return clock, client, link, chat


def envelopes(link: FakeLink) -> list[str]:
    return [m["id"] for m in link.sent if m.get("type") == "envelope"]


def test_a_message_that_stays_unanswered_on_an_open_connection_goes_again_with_its_id() -> None:
    """A message between nodes can be lost while a Redis Cluster fails over: the client
    sends it again (same id, which the server delivers once) until it is answered."""
    clock, client, link, chat = alone_in_a_room()
    first = chat.post("hello")
    clock.advance(ACK_WAIT - 0.1)
    second = chat.post("again")
    assert envelopes(link) == [first, second]
    clock.advance(0.1)
    assert envelopes(link) == [first, second, first]  # only the one that waited ACK_WAIT
    client._received(json.dumps({"type": "sent", "id": first, "ref": first, "seq": 3,
                                 "ts": 1, "tag": "t"}).encode(), False)
    clock.advance(ACK_WAIT)
    assert envelopes(link) == [first, second, first, second]
    client._received(json.dumps({"type": "sent", "id": second, "ref": second, "seq": 4,
                                 "ts": 1, "tag": "t"}).encode(), False)
    clock.advance(10 * ACK_WAIT)
    assert envelopes(link)[4:] == [] and chat.unacked == {} and not clock.getDelayedCalls()


def test_a_closed_connection_sends_nothing_again_until_the_resume() -> None:
    clock, client, link, chat = alone_in_a_room()
    chat.post("hello")
    client._closed_with(1006, "gone")
    clock.advance(2 * ACK_WAIT)
    assert len(envelopes(link)) == 1 and len(chat.unacked) == 1


def resumed_elsewhere(client: HearthClient, member: str, epoch: int) -> None:
    client._received(json.dumps({"type": "member_resumed", "epoch": epoch,
                                 "member": {"id": member, "slot": 1}}).encode(), False)


def sent(client: HearthClient, client_id: str, epoch: int) -> None:
    client._received(json.dumps({"type": "sent", "id": client_id, "ref": client_id, "seq": 9,
                                 "ts": 1, "tag": "t", "epoch": epoch}).encode(), False)


def test_a_message_sequenced_two_epochs_after_it_was_sealed_is_said_again() -> None:
    """Two members resume at once (their node died) while a message is on its way: the room
    sequences it two epochs after the one it was sealed in, and every member, holding only
    the previous epoch's keys, refuses it (e2ee.stale_epoch). The sender says it again,
    sealed in the epoch now, with a new id; one epoch later is still readable: not again."""
    _, client, link, chat = alone_in_a_room()
    first = chat.post("hello")
    resumed_elsewhere(client, "m2", 2)
    resumed_elsewhere(client, "m3", 3)
    sent(client, first, 3)
    assert len(envelopes(link)) == 2 and envelopes(link)[1] == f"{first}:2"  # shown once
    assert chat.said_again == 1 and list(chat.unacked.values()) == [("hello", None)]
    again = envelopes(link)[1]
    sent(client, again, 3)  # sealed in epoch 3
    second = chat.post("later")
    resumed_elsewhere(client, "m4", 4)
    sent(client, second, 4)
    assert envelopes(link) == [first, again, second] and chat.unacked == {}
