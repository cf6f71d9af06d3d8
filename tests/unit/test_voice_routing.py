"""The voice relay's decision, driven with a fake clock: range, zones, loudest N, mute, stick, rate."""

from __future__ import annotations

from typing import Any

import pytest

from hearth.spaces.effects import Voice
from hearth.spaces.layout import Point
from hearth.spaces.protocol import ProtocolError
from hearth.spaces.server_messages import UnmuteRequested
from hearth.spaces.voice import HEADER_SIZE, build_frame, parse_header
from tests.support.world import World, error_code

PAYLOAD = b"\xaa" * 40  # opaque to the relay


class VoiceWorld(World):
    def member(self, x: float, y: float, **fields: Any) -> tuple[Any, str]:
        conn, welcome = self.join(**fields)
        room = self.venue.rooms["circle"]
        room.members[welcome["member"]].pos = Point(x, y)
        return conn, welcome["member"]

    def speak(self, conn: Any, level: int = 30, seq: int = 1) -> tuple[str, ...]:
        effects = conn.receive(build_frame(PAYLOAD, seq=seq, level=level), True,
                               self.clock.seconds())
        voices = [e for e in effects if isinstance(e, Voice)]
        return tuple(sorted(voices[0].listeners)) if voices else ()


def test_range_and_zones() -> None:
    w = VoiceWorld(voice={"hearing_range": 5.0})
    speaker, _ = w.member(5.0, 8.0)
    _, near = w.member(9.0, 8.0)  # 4 m
    _, far = w.member(11.0, 8.0)  # 6 m
    _, corner = w.member(2.0, 2.0)  # 6.1 m, and in the west quiet corner
    assert w.speak(speaker) == (near,)
    # a quiet-corner pair hears only each other, however close the room is
    a, a_id = w.member(1.0, 1.0)
    b, b_id = w.member(2.9, 2.9)
    _, outside = w.member(3.2, 3.2)  # 0.4 m away, but outside the corner
    assert w.speak(a) == tuple(sorted([b_id, corner]))
    assert w.speak(b) == tuple(sorted([a_id, corner]))
    assert outside not in w.speak(a) and far not in w.speak(speaker)


def test_only_the_n_loudest_audible_speakers_reach_a_listener() -> None:
    w = VoiceWorld(voice={"max_speakers": 2, "hearing_range": 20.0})
    _, listener = w.member(7.0, 9.0)
    loud, _ = w.member(4.0, 8.0)
    louder, _ = w.member(10.0, 8.0)
    quiet, _ = w.member(5.0, 7.0)
    w.speak(loud, level=20)
    w.speak(louder, level=10)
    assert listener not in w.speak(quiet, level=60)  # two louder speakers are talking
    assert listener in w.speak(loud, level=20)
    w.clock.advance(0.5)  # the loud ones stop: the quiet one is heard again
    assert listener in w.speak(quiet, level=60)


def test_a_muted_speaker_reaches_nobody_and_is_told() -> None:
    w = VoiceWorld()
    ticket = w.venue.issue_ticket("facilitator", w.clock.seconds())
    fac, _ = w.member(6.0, 8.0, ticket=ticket)
    speaker, speaker_id = w.member(5.0, 8.0)
    assert w.speak(speaker) != ()
    w.send(fac, {"type": "mute", "member": speaker_id})
    effects = speaker.receive(build_frame(PAYLOAD, seq=2, level=10), True, w.clock.seconds())
    assert error_code(effects) == "muted" and not [e for e in effects if isinstance(e, Voice)]
    assert speaker.receive(build_frame(PAYLOAD, seq=3, level=10), True, w.clock.seconds()) == []
    # a participant cannot lift it; a facilitator asks, and the participant is free to speak
    assert error_code(w.send(speaker, {"type": "ask_unmute", "member": speaker_id})) == "forbidden"
    effects = w.send(fac, {"type": "ask_unmute", "member": speaker_id})
    assert any(isinstance(getattr(e, "message", None), UnmuteRequested) for e in effects)
    w.clock.advance(1)
    assert w.speak(speaker, seq=4) != ()


def test_a_participant_cannot_mute() -> None:
    w = VoiceWorld()
    a, _ = w.member(5.0, 8.0)
    _, b = w.member(6.0, 8.0)
    assert error_code(w.send(a, {"type": "mute", "member": b})) == "forbidden"


def test_talking_stick_lets_only_its_holder_be_heard_by_the_whole_zone() -> None:
    w = VoiceWorld(voice={"hearing_range": 3.0})
    ticket = w.venue.issue_ticket("facilitator", w.clock.seconds())
    fac, fac_id = w.member(7.0, 8.5, ticket=ticket)
    holder, holder_id = w.member(1.0, 9.5)
    other, other_id = w.member(12.0, 9.5)
    _, cornered = w.member(1.0, 1.0)
    w.send(other, {"type": "raise_hand", "up": True})
    w.send(fac, {"type": "stick", "on": True})
    assert w.speak(holder) == () and w.speak(other) == ()  # nobody holds it yet
    w.send(fac, {"type": "give_stick", "member": holder_id})
    heard = w.speak(holder)
    assert set(heard) == {fac_id, other_id}  # 11 m away, still heard; not the corner
    assert cornered not in heard
    assert w.speak(other) == ()
    assert w.speak(fac) != ()  # facilitators may always speak
    w.send(fac, {"type": "give_stick", "member": other_id})  # the raised hand gets it
    assert w.venue.rooms["circle"].hands == []
    w.send(fac, {"type": "stick", "on": False})
    assert w.speak(holder, seq=9) == ()  # back to range rules: nobody within 3 m


def test_per_speaker_rate_limit() -> None:
    w = VoiceWorld(voice={"frames_per_second": 50, "frame_burst": 5})
    speaker, _ = w.member(5.0, 8.0)
    w.member(6.0, 8.0)
    heard = [bool(w.speak(speaker, seq=i)) for i in range(12)]  # all in one instant
    assert heard[:5] == [True] * 5 and not any(heard[5:])
    w.clock.advance(0.02)
    assert w.speak(speaker, seq=13)


def test_the_slot_is_stamped_by_the_server_and_the_header_is_all_it_reads() -> None:
    w = VoiceWorld()
    speaker, speaker_id = w.member(5.0, 8.0)
    w.member(6.0, 8.0)
    effects = speaker.receive(build_frame(PAYLOAD, seq=7, level=30), True, w.clock.seconds())
    [voice] = [e for e in effects if isinstance(e, Voice)]
    header = parse_header(voice.frame, 1024)
    assert header.slot == w.venue.rooms["circle"].members[speaker_id].slot != 0
    assert header.seq == 7 and voice.frame[HEADER_SIZE:] == PAYLOAD


@pytest.mark.parametrize("frame", [b"", b"\x01" * 25, b"\x02" + b"\x00" * 40,
                                   b"\x01\x80" + b"\x00" * 40, b"\x01\x01\x80" + b"\x00" * 40,
                                   b"\x01" * 2000])
def test_malformed_voice_frames(frame: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_header(frame, 1024)
    assert caught.value.code == "voice_invalid"


def test_slots_are_unique_and_reused() -> None:
    w = VoiceWorld()
    conns = [w.member(5.0 + i * 0.1, 8.0) for i in range(3)]
    room = w.venue.rooms["circle"]
    assert sorted(m.slot for m in room.members.values()) == [1, 2, 3]
    w.send(conns[1][0], {"type": "leave"})
    _, new = w.member(6.0, 8.0)
    assert room.members[new].slot == 2
