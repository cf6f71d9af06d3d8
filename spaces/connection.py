"""One client connection, sans-IO: frames and `now` in, effects out.

It parses each frame with spaces.protocol, counts it against the connection's
flood limit, and routes it: a seated member's envelopes and voice frames
straight to its room, a help press and "I'm okay" straight to the crisis desk
(spaces/ports.py Crisis, also from the lobby), everything else to the venue.
Every refusal becomes an `error` reply with a stable code; nothing a client
sends can raise past this class. A client that keeps flooding after being
told is closed (1008), so one bad connection cannot starve the others.
"""

from __future__ import annotations

from hearth.spaces import protocol as p
from hearth.spaces.addresses import AddressKey
from hearth.spaces.config import LimitsConfig
from hearth.spaces.effects import Close, Effect, Reply
from hearth.spaces.protocol import ProtocolError
from hearth.spaces.ratelimit import TokenBucket
from hearth.spaces.venue import Seat, Venue

POLICY_VIOLATION = 1008
STRIKE_MEMORY = 10.0  # seconds without a violation that forgive earlier strikes


class Connection:
    def __init__(self, venue: Venue, limits: LimitsConfig, now: float,
                 address: AddressKey | None = None) -> None:
        self.venue = venue
        self.address = address  # only ever used as a keyed hash (bans)
        self.seat: Seat | None = None
        self._bucket = TokenBucket(limits.messages_per_second, limits.message_burst, now)
        # Voice has its own budget (50 frames/s is above any chat rate); twice
        # the voice rate before a connection counts as flooding.
        voice = venue.config.voice
        self._voice_bucket = TokenBucket(2 * voice.frames_per_second, 2 * voice.frame_burst, now)
        self._flood_strikes = limits.flood_strikes
        self._strikes = 0
        self._last_strike = float("-inf")
        self._closed = False
        self._resumed = False  # until the resumed member's next frame: its old token is good

    def receive(self, frame: bytes, is_binary: bool, now: float) -> list[Effect]:
        if self._closed:
            return []
        if self._resumed and self.seat is not None:
            # Any frame at all (a voice frame, one refused, one over the rate) shows the
            # resumed connection got its welcome and the new token: the old one is spent.
            self._resumed = False
            self.venue.confirm(self.seat)
        if not (self._voice_bucket if is_binary else self._bucket).allow(now):
            return self._strike(now)
        msg: p.ClientMessage | None = None
        try:
            if is_binary:
                return self._voice(frame, now)
            msg = p.decode(frame)
            self.venue.stats.received[p.wire_type(msg)] += 1
            return self._dispatch(msg, now)
        except ProtocolError as refused:
            if refused.ref is None and msg is not None:
                refused.ref = msg.ref
            self.venue.stats.refused[refused.code] += 1
            return [Reply(refused.as_message())]

    def _strike(self, now: float) -> list[Effect]:
        self.venue.stats.frames_dropped += 1
        if now - self._last_strike > STRIKE_MEMORY:
            self._strikes = 0
        self._strikes += 1
        first = now - self._last_strike > 1.0
        self._last_strike = now
        if self._strikes >= self._flood_strikes:
            self._closed = True
            return [Close(POLICY_VIOLATION, "too many messages")]
        # Tell the client once a second, not once per dropped frame.
        if not first:
            return []
        self.venue.stats.refused["rate_limited"] += 1
        return [Reply(ProtocolError("rate_limited").as_message())]

    def _dispatch(self, msg: p.ClientMessage, now: float) -> list[Effect]:
        if self.seat is None:
            if isinstance(msg, p.Join):
                self.seat, effects = self.venue.join(msg, now, self.address)
                return effects
            if isinstance(msg, p.Resume):
                self.seat, effects = self.venue.resume(msg, now)
                self._resumed = True
                return effects
            raise ProtocolError("not_joined")
        seat, room = self.seat, self.venue.rooms[self.seat.room]
        member = room.attached(seat.member, seat.attachment)
        if member is not None and type(msg) is p.Envelope:  # what members send most
            return room.envelope(member, msg, now)
        if isinstance(msg, p.Help | p.ImOk):  # someone waiting in the lobby may ask too
            person = member or room.attached(seat.member, seat.attachment, lobby=True)
            if person is not None:
                crisis = self.venue.crisis
                if isinstance(msg, p.Help):
                    return crisis.help(room, person, now, msg.ref, msg.id)
                return crisis.im_ok(self.venue.rooms, person, now, msg.ref)
        effects = self.venue.handle(seat, msg, now)
        if isinstance(msg, p.Leave):
            self.seat = None
            self._closed = True
            effects.append(Close(1000, "left the room"))
        return effects

    def _voice(self, frame: bytes, now: float) -> list[Effect]:
        if self.seat is None:
            raise ProtocolError("binary_not_allowed")
        room = self.venue.rooms[self.seat.room]
        member = room.attached(self.seat.member, self.seat.attachment)
        if member is None:
            raise ProtocolError("not_joined", "You are no longer in this room.")
        return room.voice_frame(member, frame, now)

    def lost(self, now: float) -> list[Effect]:
        """The transport went away: the member waits out its grace period."""
        self._closed = True
        seat, self.seat = self.seat, None
        return self.venue.connection_lost(seat, now) if seat is not None else []
