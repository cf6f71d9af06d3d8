"""E2EE group chat over a HearthClient: keeps a GroupSession in step with the room.

It follows the room's roster and epoch from the server's messages, publishes
our keys (the identity, and our signed epoch key after every advance), sends
the directed sender-key envelopes the session asks for, encrypts what is said
and decrypts what arrives. Envelopes that arrive before their sender's key
(`e2ee.no_sender_key`) wait in a small buffer and are retried when a key
arrives; anything else that fails to open is recorded in `rejected`, never
shown as a message. GRACE seconds after each epoch advance the previous epoch
is closed (docs/e2ee.md §8).

A private corner we are a member of (`corners`) gets a session of its own
(`GroupSession.sub_session`): its messages, sender keys and voice are sealed
for its members only, and the room's session never opens them.

Nothing said is lost to a reconnection: every message carries a client id and
is kept (its text) until the server's `sent`; after a resume on a new
connection (`resumed`), or a `room_moving` refusal, what is not acknowledged is
encrypted again and sent again with the same id, in order (the server delivers
an id once). So is what stays unanswered ACK_WAIT seconds on an open connection: a
message between nodes can be lost while Redis fails over (publish/subscribe delivers
at most once), and the client's resend is what makes up for it. One whose `sent`
says the room was two epochs past the one it was sealed in opens for nobody
(members keep the previous epoch's keys only): it is said again, sealed anew, with
its first id numbered (`<id>:2`). An envelope that
opens but whose (sender, id before any ":") arrived already is dropped (a resend of what the room's
last node relayed just before it died).
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred

from hearth.client.websocket import ClientClosed, HearthClient
from hearth.spaces.e2ee import E2EEError, GroupSession, ReceivedMessage
from hearth.spaces.e2ee.voice import VoiceFrame, voice_header

PENDING_LIMIT = 256  # envelopes held while waiting for a sender key
SEEN_LIMIT = 4096  # (sender, id) of envelopes received, to drop a repeat
RESEND_AFTER = 1.0  # seconds before sending again what was refused with room_moving
RESEND_WAIT = 8.0  # seconds at most a message waits for everyone to hold our sender key
GRACE = 10.0  # seconds an epoch stays open after the next one began (in-flight messages)
ACK_WAIT = 3.0  # seconds a message may go unanswered on an open connection before it goes again


@dataclass(frozen=True, kw_only=True)
class ChatMessage:
    """A decrypted room message with the server's stamps (what a report needs)."""
    sender: str
    seq: int
    ts: int
    tag: str
    text: str
    franking_key: bytes
    commitment: bytes
    zone: str | None = None


@dataclass(frozen=True, kw_only=True)
class Said:
    seq: int
    ts: int
    tag: str
    text: str
    franking_key: bytes
    commitment: str


class GroupChat:
    def __init__(self, client: HearthClient, room: str, welcome: dict[str, Any],
                 session: GroupSession | None = None) -> None:
        assert client.member is not None
        self.client = client
        self.room = room
        self.session = session or GroupSession(room, client.member)
        self.epoch = int(welcome["room"]["epoch"])
        self.roster: dict[str, dict[str, Any]] = {}
        self.private: dict[str, list[str]] = {}  # private corner -> its members, as the server said
        self.corners: dict[str, GroupSession] = {}  # our private corners' sessions
        self.messages: list[ChatMessage] = []
        self.rejected: list[tuple[str, str]] = []  # (sender, e2ee code)
        self.superseded = 0  # sender keys that arrived after their epoch had passed
        self._pending: list[dict[str, Any]] = []
        self._waiters: list[Deferred[ChatMessage]] = []
        self._grace: Any = None  # the delayed call that closes the previous epoch
        self._published: dict[str, object] | None = None
        self.slots: dict[int, str] = {}  # voice slot -> member id
        self.heard: list[tuple[str, VoiceFrame]] = []  # decrypted voice, (speaker, frame)
        self.voice_rejected: list[tuple[int, str]] = []  # (slot, e2ee code)
        self._voice_seq = 0
        # what was said and not yet acknowledged: client id -> (text, zone), in order
        self.unacked: dict[str, tuple[str, str | None]] = {}
        self.acked: dict[str, dict[str, Any]] = {}  # client id -> its `sent`
        self.refused: dict[str, str] = {}  # client id -> the code it was refused with
        self.duplicates = 0  # envelopes dropped because they had arrived already
        self._seen: set[tuple[str, str]] = set()
        self._seen_order: deque[tuple[str, str]] = deque()
        self._encrypted: dict[str, Any] = {}  # client id -> its last encryption
        self._to_send: list[str] = []  # client ids waiting for everyone to hold our key
        self._flush_later: Any = None  # the call that sends them anyway, RESEND_WAIT later
        self._sent_at: dict[str, float] = {}  # client id -> when it last went out (this link)
        self._sealed_in: dict[str, int] = {}  # client id -> the epoch it was last sealed in
        self.said_again = 0  # messages said again because nobody could open them
        self._ack_check: Any = None  # the call that sends again what stays unanswered
        client.on_message = self._on_message
        client.on_binary = self._on_voice
        self._absorb_room(welcome["room"])

    @classmethod
    async def join(cls, client: HearthClient, room: str, **fields: Any) -> GroupChat:
        return cls(client, room, await client.join(room, **fields))

    # --- saying ------------------------------------------------------------------

    async def say(self, text: str, zone: str | None = None) -> Said:
        """Encrypt and send one text; with `zone` (a private corner we are in), for it only."""
        client_id = self.post(text, zone)
        sent = await self.client.next(lambda m: m.get("ref") == client_id)
        if sent["type"] == "error":
            raise E2EEError("unsupported", f"the server refused the message: {sent['code']}")
        out = self._encrypted[client_id]
        return Said(seq=sent["seq"], ts=sent["ts"], tag=sent["tag"], text=text,
                    franking_key=out.franking_key, commitment=out.commitment)

    def post(self, text: str, zone: str | None = None) -> str:
        """Say `text` without waiting; it is kept until the server acknowledges it (and sent
        again after a resume). Returns its client id."""
        client_id = secrets.token_urlsafe(12)
        self.unacked[client_id] = (text, zone)
        self._queue(client_id)
        return client_id

    def _queue(self, client_id: str) -> None:
        """To go as soon as everyone in the room holds our sender key for this epoch (at most
        RESEND_WAIT seconds later): what is sealed before our key reached someone stays
        unreadable to them (docs/e2ee.md), and around a failover the epoch moves on as each
        member resumes. In order: what was said first goes first."""
        waiting = set(self._to_send) | {client_id}
        self._to_send = [c for c in self.unacked if c in waiting]
        self._flush()

    def _ready(self) -> bool:
        me = self.client.member
        return all(self.session.holds_our_key(m) for m in self.roster if m != me)

    def _flush(self, anyway: bool = False) -> None:
        if not self._to_send or self.client.close_code is not None:
            return  # (after a resume, `resumed` sends what waits)
        if not anyway and not self._ready():
            if self._flush_later is None:
                self._flush_later = self.client.reactor.callLater(RESEND_WAIT, self._flush_now)
            return
        if self._flush_later is not None and self._flush_later.active():
            self._flush_later.cancel()
        self._flush_later = None
        sending, self._to_send = self._to_send, []
        for client_id in sending:
            if client_id in self.unacked:
                self._send_said(client_id)

    def _flush_now(self) -> None:
        self._flush_later = None
        self._flush(anyway=True)

    def _send_said(self, client_id: str) -> None:
        text, zone = self.unacked[client_id]
        session = self.session if zone is None else self.corners.get(zone)
        if session is None:  # the corner closed meanwhile: what was said there goes nowhere
            del self.unacked[client_id]
            self.refused[client_id] = "corner_not_found"
            return
        out = self._encrypted[client_id] = session.encrypt(text)
        if session.epoch is not None:
            self._sealed_in[client_id] = session.epoch
        with contextlib.suppress(ClientClosed):  # (if closed: sent again after the resume)
            self.client.envelope(out.body, out.commitment, ref=client_id, client_id=client_id,
                                 zone=zone)
            self._sent_at[client_id] = self.client.reactor.seconds()
            if self._ack_check is None:
                self._ack_check = self.client.reactor.callLater(ACK_WAIT, self._unanswered)

    def _unanswered(self) -> None:
        """Send again, in order, what went out on this connection ACK_WAIT ago and got no
        answer (the same id: the server delivers it once)."""
        self._ack_check = None
        self._sent_at = {c: t for c, t in self._sent_at.items() if c in self.unacked}
        if self.client.close_code is not None:
            return  # (the resume sends them)
        now = self.client.reactor.seconds()
        for client_id in [c for c in self.unacked if c in self._sent_at]:
            if now - self._sent_at[client_id] >= ACK_WAIT and client_id not in self._to_send:
                self._send_said(client_id)
        if self._sent_at and self._ack_check is None:
            due = min(self._sent_at.values()) + ACK_WAIT - now
            self._ack_check = self.client.reactor.callLater(max(0.05, due), self._unanswered)

    def resumed(self, client: HearthClient, welcome: dict[str, Any]) -> None:
        """The member resumed on a new connection: follow the room from its welcome (and
        what came right after it), then send again, in order, what is not acknowledged."""
        self.client = client
        client.on_message = self._on_message
        client.on_binary = self._on_voice
        if self._flush_later is not None and self._flush_later.active():
            self._flush_later.cancel()
        self._flush_later = None
        self._to_send = list(self.unacked)
        self._sent_at.clear()  # (all of it goes again on the new connection)
        for message in [welcome, *client.inbox]:  # (a tap: they stay in the inbox)
            self._on_message(message)
        self._flush()

    def _resend(self) -> None:
        """Everything not acknowledged, again (same ids: the server delivers an id once)."""
        for client_id in list(self.unacked):
            self._queue(client_id)

    async def next_message(self, timeout: float = 5.0) -> ChatMessage:
        if self.messages:
            return self.messages.pop(0)
        d: Deferred[ChatMessage] = Deferred()
        self._waiters.append(d)
        found: ChatMessage = await self.client._with_timeout(d, timeout, "a chat message")
        return found

    async def keys_from(self, members: list[str], timeout: float = 5.0,
                        zone: str | None = None) -> None:
        """Until this member can read what each of `members` says in the current epoch."""
        me = self.client.member
        while True:
            session = self.session if zone is None else self.corners.get(zone)
            if session is not None and all(session.has_sender_key(m) for m in members if m != me):
                return
            await self.client.next("direct", timeout)

    def report(self, message: ChatMessage, reason: str = "", ref: str = "report") -> None:
        """Reveal one received message to the facilitators, with its franking proof."""
        report = {
            "type": "report", "seq": message.seq, "from": message.sender, "ts": message.ts,
            "text": message.text, "reason": reason, "ref": ref,
            "franking_key": base64.b64encode(message.franking_key).decode(),
            "commitment": base64.b64encode(message.commitment).decode(), "tag": message.tag}
        if message.zone is not None:
            report["zone"] = message.zone
        self.client.send(report)

    # --- voice ---------------------------------------------------------------------

    def _corner_with(self, member: str) -> str | None:
        """The private corner we share with `member` (or are in, for ourselves)."""
        me = self.client.member
        return next((c for c, ms in self.private.items() if me in ms and member in ms
                     and c in self.corners), None)

    def speak(self, opus: bytes, level: int = 30, *, speech: bool = True) -> bytes:
        """Encrypt one Opus frame and send it; returns the frame as sent (slot 0). In a private
        corner the frame is sealed for the corner, so the room's keys never open it."""
        self._voice_seq += 1
        corner = self._corner_with(self.client.member or "")
        session = self.session if corner is None else self.corners[corner]
        frame = session.encrypt_voice(opus, seq=self._voice_seq, level=level, speech=speech)
        self.client.send_voice(frame)
        return frame

    def _on_voice(self, frame: bytes) -> None:
        slot = voice_header(frame).slot
        speaker = self.slots.get(slot)
        if speaker is None:
            self.voice_rejected.append((slot, "e2ee.unknown_sender"))
            return
        corner = self._corner_with(speaker)
        session = self.session if corner is None else self.corners[corner]
        try:
            self.heard.append((speaker, session.decrypt_voice(speaker, frame)))
        except E2EEError as err:
            self.voice_rejected.append((slot, err.code))

    # --- following the room ------------------------------------------------------

    def _absorb_room(self, room: dict[str, Any]) -> None:
        self.epoch = max(self.epoch, int(room["epoch"]))
        members = room["members"]
        self.roster = {m["id"]: m["keys"] for m in members if m.get("keys")}
        self.slots = {int(m["slot"]): m["id"] for m in members}
        self.private = {c: list(ms) for c, ms in room.get("private", {}).items()}
        self._sync()

    def _advance(self, message: dict[str, Any]) -> None:
        if message.get("epoch") is not None:
            self.epoch = max(self.epoch, int(message["epoch"]))

    def _sync(self) -> None:
        """The roster and epoch into the room's session and our corners'; publish our keys
        when they changed; send what the sessions seal."""
        before = self.session.epoch
        self._send_directs(self.session, self.session.update_roster(self.epoch, self.roster), None)
        if self.session.epoch != before and before is not None:
            self._arm_grace()
        keys = self.session.public_keys()
        if keys != self._published:
            self._published = keys
            self._send({"type": "keys", **keys})
        me = self.client.member
        for corner, members in self.private.items():
            if me in members and corner not in self.corners:
                self.corners[corner] = self.session.sub_session(corner)
        for corner in [c for c in self.corners if me not in self.private.get(c, [])]:
            del self.corners[corner]  # released: its keys go with it
        for corner, session in self.corners.items():
            roster = {m: self.roster[m] for m in self.private[corner] if m in self.roster}
            self._send_directs(session, session.update_roster(self.epoch, roster), corner)
        if self._to_send:
            self._flush()

    def _send_directs(self, session: GroupSession, envelopes: list[tuple[str, str]],
                      zone: str | None) -> None:
        for to, body in envelopes:
            try:
                self.client.direct(to, body, zone=zone)
            except ClientClosed:
                session.undelivered(to)  # sealed again at the next sync

    def _send(self, message: dict[str, Any]) -> bool:
        try:
            self.client.send(message)
        except ClientClosed:
            return False
        return True

    def _arm_grace(self) -> None:
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        self._grace = self.client.reactor.callLater(GRACE, self._close_previous_epoch)

    def _close_previous_epoch(self) -> None:
        self.session.close_previous_epoch()
        for session in self.corners.values():
            session.close_previous_epoch()

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "welcome":  # a resume: the room has moved on meanwhile (a new epoch at least)
            self._absorb_room(message["room"])
        elif kind in ("member_updated", "member_resumed"):
            member = message["member"]
            self._advance(message)
            if member.get("keys"):
                self.roster[member["id"]] = member["keys"]
            self._sync()
        elif kind == "member_joined":
            self.slots[int(message["member"]["slot"])] = message["member"]["id"]
            self._advance(message)
            self._sync()
        elif kind == "member_left":
            self.roster.pop(message["member"], None)
            self.slots = {s: m for s, m in self.slots.items() if m != message["member"]}
            self._advance(message)
            self._sync()
        elif kind == "corners":
            self.private = {c: list(ms) for c, ms in message["private"].items()}
            self._advance(message)
            self._sync()
        elif kind == "direct":
            self._direct(message)
        elif kind == "envelope":
            self._open(message)
        elif kind == "sent":
            client_id = message.get("id")
            if client_id in self.unacked:
                text, zone = self.unacked.pop(client_id)
                self._sent_at.pop(client_id, None)
                self.acked[client_id] = message
                self._check_readable(client_id, text, zone, message.get("epoch"))
        elif kind == "error" and message.get("ref") in self.unacked:
            client_id = message["ref"]
            self._sent_at.pop(client_id, None)  # answered
            if message.get("code") == "room_moving":  # not done: send it again in a moment
                self.client.reactor.callLater(RESEND_AFTER, self._queue, client_id)
            else:
                del self.unacked[client_id]
                self.refused[client_id] = str(message.get("code"))

    def _check_readable(self, client_id: str, text: str, zone: str | None,
                        epoch: Any) -> None:
        """A message the room sequenced in an epoch two past the one it was sealed in (two
        members resumed at once as a node died, say) opens for nobody: every member keeps
        only the previous epoch's keys (docs/e2ee.md, section 8), and got those advances
        before it. `sent` says the room's epoch: such a message is said again, sealed in
        the epoch now, with its first id numbered (`<id>:2`), which a member that did open
        the first (one that resumed across both advances) shows once."""
        sealed = self._sealed_in.pop(client_id, None)
        if sealed is None or type(epoch) is not int or epoch < sealed + 2:
            return
        self.said_again += 1
        base, _, n = client_id.partition(":")  # the same message: its first id, numbered
        again = f"{base}:{int(n) + 1 if n.isdigit() else 2}"
        self.unacked[again] = (text, zone)
        self._queue(again)

    def _first_time(self, envelope: dict[str, Any]) -> bool:
        """False for a repeat of an envelope already received (same sender and id)."""
        client_id = envelope.get("id")
        if not isinstance(client_id, str):
            return True
        key = (str(envelope.get("from")), client_id.split(":", 1)[0])
        if key in self._seen:
            self.duplicates += 1
            return False
        self._seen.add(key)
        self._seen_order.append(key)
        if len(self._seen_order) > SEEN_LIMIT:
            self._seen.discard(self._seen_order.popleft())
        return True

    def _direct(self, message: dict[str, Any]) -> None:
        zone = message.get("zone")
        session = self.session if zone is None else self.corners.get(zone)
        if session is None:
            self.rejected.append((message["from"], "e2ee.unknown_sender"))
            return
        try:
            session.receive_directed(message["from"], message["body"])
        except E2EEError as err:
            if err.code == "e2ee.stale_epoch":
                # a key for an epoch the room has already left (joins in quick
                # succession): superseded, not an attack
                self.superseded += 1
            else:
                self.rejected.append((message["from"], err.code))
        else:
            self._retry_pending()

    def _open(self, envelope: dict[str, Any], retrying: bool = False) -> bool:
        zone = envelope.get("zone")
        session = self.session if zone is None else self.corners.get(zone)
        if session is None:  # a corner we are not in: nothing of it is ours to open
            self.rejected.append((envelope["from"], "e2ee.unknown_sender"))
            return True
        try:
            opened: ReceivedMessage = session.decrypt(
                envelope["from"], envelope["body"], envelope["commitment"])
        except E2EEError as err:
            if err.code == "e2ee.no_sender_key":
                if not retrying and len(self._pending) < PENDING_LIMIT:
                    self._pending.append(envelope)
                return False
            self.rejected.append((envelope["from"], err.code))
            return True
        if not self._first_time(envelope):  # sent again after a reconnection: shown once
            return True
        self._deliver(ChatMessage(sender=envelope["from"], seq=envelope["seq"], ts=envelope["ts"],
                                  tag=envelope["tag"], text=opened.text,
                                  franking_key=opened.franking_key, commitment=opened.commitment,
                                  zone=zone))
        return True

    def _retry_pending(self) -> None:
        self._pending = [e for e in self._pending if not self._open(e, retrying=True)]

    def _deliver(self, message: ChatMessage) -> None:
        if self._waiters:
            self._waiters.pop(0).callback(message)
        else:
            self.messages.append(message)

    def close(self) -> None:
        """Stop the timers (the client is going away)."""
        for call in (self._grace, self._ack_check):
            if call is not None and call.active():
                call.cancel()
