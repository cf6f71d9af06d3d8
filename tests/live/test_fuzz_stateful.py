"""Stateful fuzzing of the live endpoint: random valid and invalid sequences of joins, moves,
chat, voice, moderation, resumes and disconnects, with invariants checked after every step.

Text fields carry lone surrogates, lone escapes and non-characters too (tests/support/nasty.py),
from participants, facilitators and connections that have not joined.
Invariants: the server answers (never a crash or a stall); every refusal carries a known code
and a sentence; nothing of one room ever reaches a member of another; a member who joined
without a role ticket is a participant in every message about it. HEARTH_FUZZ_STEPS sets the
number of steps (CI: 2,000; the nightly mode in the README runs 50,000).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import pytest_twisted
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.threads import blockingCallFromThread, deferToThread

from hearth.client.websocket import ClientClosed, HearthClient
from hearth.spaces.protocol import CLIENT_TYPES, ERRORS
from hearth.spaces.voice import build_frame
from tests.support.config import make_config
from tests.support.live import LiveServer, start_server
from tests.support.nasty import STRING_FIELDS, nasty_text

STEPS = int(os.environ.get("HEARTH_FUZZ_STEPS", "2000"))
STEPS_PER_RUN = 40
ROOMS = ("circle", "other")
COMMIT = "A" * 43 + "="
MEMBER_OPS = ("mute", "ask_unmute", "remove", "ban", "admit", "deny", "give_stick", "worried",
              "private_corner")
PLAIN_OPS = ("stick", "lobby", "lock", "capacity", "hide", "slow_mode", "end_session",
             "list_reports", "list_incidents", "duty", "help", "im_ok", "raise_hand", "stand")


@dataclass
class Seat:
    client: HearthClient
    room: str
    role: str
    member: str | None = None
    token: str | None = None
    checked: int = 0
    sentinels: int = 0
    members_seen: set[str] = field(default_factory=set)


def call(coro: Any) -> Any:
    """Run a coroutine on the reactor from hypothesis' thread and wait for it."""
    return blockingCallFromThread(reactor, lambda: ensureDeferred(coro))


LIMITS = {"messages_per_second": 1000, "message_burst": 2000, "flood_strikes": 1000}


class LiveEndpoint(RuleBasedStateMachine):
    server: LiveServer
    steps = 0  # rule steps run, across examples (hypothesis picks each example's length)

    def __init__(self) -> None:
        super().__init__()
        self.seats: list[Seat] = []
        self.room_of: dict[str, str] = {}  # member id -> room (as the server told us)
        self.participants: set[str] = set()

    # --- helpers (run on the reactor) ---

    async def _join(self, room: str, facilitator: bool) -> Seat | None:
        client = await self.server.client()
        fields: dict[str, Any] = {}
        if facilitator:
            node = self.server.hearth.node
            fields["ticket"] = node.venue.issue_ticket("facilitator", node.clock(), "fuzz")
        client.send({"type": "join", "room": room, **fields})
        first = await client.next(lambda m: m["type"] in ("welcome", "waiting", "error"))
        seat = Seat(client, room, "facilitator" if facilitator else "participant")
        if first["type"] == "welcome":
            seat.member, seat.token = first["member"], first["token"]
            self.room_of[first["member"]] = room
            if not facilitator:
                self.participants.add(first["member"])
        elif first["type"] == "waiting":
            seat.member = first["member"]
            self.room_of[first["member"]] = room
            self.participants.add(first["member"])
        else:
            assert first["code"] in ERRORS
            await client.close()
            return None
        return seat

    async def _sentinel(self, seat: Seat) -> None:
        """An answer proves the server handled everything before it, for this client."""
        if seat.client.close_code is not None:
            return
        seat.sentinels += 1
        ref = f"sentinel-{seat.sentinels}"
        try:
            seat.client.send({"type": "join", "room": "nowhere", "ref": ref})
        except ClientClosed:
            return
        try:
            await seat.client.next(lambda m: m.get("ref") == ref, timeout=5)
        except Exception:
            assert seat.client.close_code is not None, "the server did not answer"

    def _check(self, seat: Seat) -> None:
        for message in seat.client.inbox[seat.checked:]:
            if message["type"] == "error":
                assert message["code"] in ERRORS and message["message"], message
            for member in _members_in(message):
                if member.get("id") in self.participants:
                    assert member["role"] == "participant", "a participant's role escalated"
                other = self.room_of.get(member.get("id", ""))
                assert other in (None, seat.room), "a member of another room leaked"
            sender = message.get("from")
            if sender in self.room_of:
                assert self.room_of[sender] == seat.room, "a message crossed rooms"
        seat.checked = len(seat.client.inbox)

    def pick(self, index: int) -> Seat:
        """Any seat, live or not: a choice that does not depend on the server's timing."""
        return self.seats[index % len(self.seats)]

    def send(self, seat: Seat, message: dict[str, Any]) -> None:
        with contextlib.suppress(ClientClosed):  # the server may have closed it: that's allowed
            seat.client.send(message)

    # --- rules ---

    @initialize()
    def start(self) -> None:
        # a fresh server and data directory per example: nothing carries over
        self.server = call(start_server(make_config(limits=LIMITS)))
        for room in ROOMS:
            seat = call(self._join(room, facilitator=True))
            assert seat is not None
            self.seats.append(seat)

    @rule(room=st.sampled_from(ROOMS), facilitator=st.booleans())
    def join(self, room: str, facilitator: bool) -> None:
        if len(self.seats) < 12:
            seat = call(self._join(room, facilitator))
            if seat is not None:
                self.seats.append(seat)

    @rule(i=st.integers(0, 99), x=st.floats(-5, 20), y=st.floats(-5, 15))
    def move(self, i: int, x: float, y: float) -> None:
        self.send(self.pick(i), {"type": "move", "x": x, "y": y})

    @rule(i=st.integers(0, 99), body=st.binary(min_size=1, max_size=64),
          zone=st.sampled_from([None, "corner-west"]))
    def chat(self, i: int, body: bytes, zone: str | None) -> None:
        import base64
        message: dict[str, Any] = {"type": "envelope", "body": base64.b64encode(body).decode(),
                                   "commitment": COMMIT}
        if zone:
            message["zone"] = zone
        self.send(self.pick(i), message)

    @rule(i=st.integers(0, 99), j=st.integers(0, 99))
    def direct(self, i: int, j: int) -> None:
        to = self.pick(j).member or "nobody"
        self.send(self.pick(i), {"type": "direct", "to": to, "body": "a2V5"})

    @rule(i=st.integers(0, 99), level=st.integers(0, 127), size=st.integers(16, 200),
          seq=st.integers(0, 1 << 31))
    def voice(self, i: int, level: int, size: int, seq: int) -> None:
        with contextlib.suppress(ClientClosed):
            self.pick(i).client.send_voice(build_frame(b"\x55" * size, seq=seq, level=level))

    @rule(i=st.integers(0, 99), j=st.integers(0, 99), op=st.sampled_from(MEMBER_OPS))
    def moderate_member(self, i: int, j: int, op: str) -> None:
        target = self.pick(j).member or "nobody"
        self.send(self.pick(i), {"type": op, "member": target, "minutes": 1,
                                 "corner": "corner-west"})

    @rule(i=st.integers(0, 99), op=st.sampled_from(PLAIN_OPS), flag=st.booleans(),
          number=st.integers(-3, 700))
    def moderate_room(self, i: int, op: str, flag: bool, number: int) -> None:
        self.send(self.pick(i), {"type": op, "on": flag, "up": flag, "value": number,
                                 "seq": number, "seconds": number})

    @rule(i=st.integers(0, 99), is_binary=st.booleans(), junk=st.one_of(
        st.binary(max_size=80),
        st.dictionaries(st.sampled_from(["type", "room", "x", "member", "body", "token"]),
                        st.one_of(st.none(), st.integers(), st.text(max_size=10)),
                        max_size=4).map(lambda d: json.dumps(d).encode())))
    def junk(self, i: int, is_binary: bool, junk: bytes) -> None:
        seat = self.pick(i)
        if not is_binary:
            junk = junk.decode("utf-8", "replace").encode()  # invalid UTF-8 closes: tested apart
        with contextlib.suppress(ClientClosed):
            seat.client.send_raw(junk, is_binary)

    @rule(i=st.integers(0, 99), kind=st.sampled_from(sorted(CLIENT_TYPES - {"leave"})),
          field=st.sampled_from(STRING_FIELDS), text=nasty_text(),
          keep=st.dictionaries(st.sampled_from(STRING_FIELDS), nasty_text(), max_size=3))
    def nasty(self, i: int, kind: str, field: str, text: str, keep: dict[str, str]) -> None:
        """Lone surrogates, lone escapes, non-characters in any string field of any
        message, from any seat (facilitators included; surrogates as JSON escapes)."""
        message = {**keep, "type": kind, field: text}
        with contextlib.suppress(ClientClosed):
            self.pick(i).client.send_raw(json.dumps(message).encode())

    @rule(kind=st.sampled_from(["join", "resume", "move", "report", "bogus"]),
          field=st.sampled_from(STRING_FIELDS), text=nasty_text())
    def nasty_before_join(self, kind: str, field: str, text: str) -> None:
        """The same on a connection that has not joined: refused, the connection kept."""
        async def go() -> None:
            client = await self.server.client()
            message = {"type": kind, "room": "circle", field: text}
            client.send_raw(json.dumps(message).encode())
            client.send({"type": "join", "room": "nowhere", "ref": "after"})
            await client.next(lambda m: m.get("ref") == "after", timeout=5)
            for answer in client.inbox:
                if answer["type"] == "error":
                    assert answer["code"] in ERRORS and answer["message"]
            assert client.close_code is None
            if client.member is not None or any(m["type"] in ("welcome", "waiting")
                                                for m in client.inbox):
                client.send({"type": "leave"})
            await client.close()
        call(go())

    @rule(i=st.integers(0, 99))
    def drop_and_resume(self, i: int) -> None:
        seat = self.pick(i)
        if seat.token is None:
            return

        async def go() -> None:
            if seat.client.close_code is None:
                seat.client.drop()
                await seat.client.until_closed()
            client = await self.server.client()
            client.send({"type": "resume", "token": seat.token})
            answer = await client.next(lambda m: m["type"] in ("welcome", "error"))
            if answer["type"] == "welcome":
                assert answer["member"] == seat.member, "resumed as someone else"
                new = Seat(client, seat.room, seat.role, seat.member, answer["token"])
                self.seats.append(new)
            else:
                assert answer["code"] in ERRORS
                await client.close()
        call(go())

    @rule(i=st.integers(0, 99))
    def leave(self, i: int) -> None:
        self.send(self.pick(i), {"type": "leave"})

    @invariant()
    def answered_and_consistent(self) -> None:
        LiveEndpoint.steps += 1
        async def check() -> None:
            for seat in list(self.seats):
                await self._sentinel(seat)
                self._check(seat)
        call(check())

    def teardown(self) -> None:
        async def close() -> None:
            for seat in self.seats:
                if seat.client.close_code is None:
                    seat.client.drop()
            await self.server.hearth.service.stopService()
        if hasattr(self, "server") and self.seats is not None:
            call(close())


def _members_in(message: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    if isinstance(message.get("member"), dict):
        found.append(message["member"])
    room = message.get("room")
    if isinstance(room, dict):
        found += [m for m in room.get("members", []) if isinstance(m, dict)]
    return found


@pytest_twisted.ensureDeferred
async def test_stateful_fuzz_of_the_live_endpoint() -> None:
    runs = max(1, STEPS // STEPS_PER_RUN)
    machine = settings(max_examples=runs, stateful_step_count=STEPS_PER_RUN, deadline=None,
                       database=None, suppress_health_check=list(HealthCheck))(LiveEndpoint)
    LiveEndpoint.steps = 0
    for _ in range(20):  # until at least STEPS steps have run (bounded)
        await deferToThread(machine.TestCase().runTest)
        if LiveEndpoint.steps >= STEPS:
            break
    assert LiveEndpoint.steps >= STEPS, f"only {LiveEndpoint.steps} steps ran"
