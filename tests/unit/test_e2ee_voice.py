"""Voice frames through GroupSession: keys per sender and epoch, the clear header, refusals."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hearth.spaces.e2ee import E2EEError, GroupSession, voice_header
from hearth.spaces.e2ee.chain import SenderKey
from hearth.spaces.e2ee.encoding import b64encode
from hearth.spaces.e2ee.envelope import seal_envelope
from hearth.spaces.e2ee.voice import (
    FLAG_END,
    FLAG_SPEECH,
    VOICE_WINDOW,
    VoiceKey,
    open_voice_frame,
    seal_voice_frame,
)
from tests.support.e2ee_relay import Relay

OPUS = bytes(range(60))  # stands in for one 20 ms Opus frame


def code(fn: Callable[[], object]) -> str:
    with pytest.raises(E2EEError) as caught:
        fn()
    return caught.value.code


def stamp(frame: bytes, slot: int) -> bytes:
    """What the server does to every frame: write the sender's slot into bytes 4-5."""
    return frame[:4] + slot.to_bytes(2, "big") + frame[6:]


def flip(frame: bytes, at: int, bit: int = 0x01) -> bytes:
    return frame[:at] + bytes([frame[at] ^ bit]) + frame[at + 1 :]


def talk(relay: Relay, sender: str, seq: int, **kw: object) -> bytes:
    args: dict[str, object] = {"level": 30, "speech": True} | kw
    return relay.sessions[sender].encrypt_voice(OPUS, seq=seq, **args)  # type: ignore[arg-type]


def test_round_trip_to_every_member() -> None:
    relay = Relay()
    relay.join("a", "b", "c")
    frame = talk(relay, "a", 7, level=12, end=True)
    assert voice_header(frame) == (1, FLAG_SPEECH | FLAG_END, 12, 1, 0, 7)  # slot 0 from the sender
    assert len(frame) == 10 + len(OPUS) + 16
    assert OPUS not in frame
    for reader in ("b", "c"):
        got = relay.sessions[reader].decrypt_voice("a", stamp(frame, 3))
        assert (got.opus, got.seq, got.level, got.flags, got.epoch) == (OPUS, 7, 12, 3, 1)
        assert got.speech and got.end
    silent = relay.sessions["b"].encrypt_voice(b"", seq=0, level=127, speech=False)
    got = relay.sessions["a"].decrypt_voice("b", silent)
    assert (got.opus, got.level, got.speech, got.end) == (b"", 127, False, False)


def test_server_slot_rewrite_still_opens() -> None:
    relay = Relay()
    relay.join("a", "b")
    frames = [talk(relay, "a", seq) for seq in range(3)]
    for frame, slot in zip(frames, (1, 42, 0xFFFF), strict=True):
        got = relay.sessions["b"].decrypt_voice("a", stamp(frame, slot))
        assert (got.opus, got.seq) == (OPUS, voice_header(frame).seq)


def test_tampered_header_and_payload_are_refused_and_move_nothing() -> None:
    relay = Relay()
    relay.join("a", "b")
    b = relay.sessions["b"]
    frame = talk(relay, "a", 5)
    for at, bit in [(1, 0x01), (1, 0x02), (2, 0x01), (2, 0x40), (6, 0x80), (9, 0x01),
                    (10, 0x01), (len(frame) - 1, 0x80)]:  # flags, level, seq, payload, tag
        assert code(lambda at=at, bit=bit: b.decrypt_voice("a", flip(frame, at, bit))) == (
            "e2ee.tampered"), at
    # The epoch byte picks the key: no key for epoch 3 here.
    assert code(lambda: b.decrypt_voice("a", flip(frame, 3, 0x02))) == "e2ee.no_sender_key"
    assert code(lambda: b.decrypt_voice("a", flip(frame, 0, 0x02))) == "e2ee.unsupported"
    assert code(lambda: b.decrypt_voice("a", flip(frame, 1, 0x04))) == "e2ee.malformed"
    assert code(lambda: b.decrypt_voice("a", flip(frame, 2, 0x80))) == "e2ee.malformed"
    assert code(lambda: b.decrypt_voice("a", frame[:25])) == "e2ee.malformed"
    # None of it marked seq 5 as played.
    assert b.decrypt_voice("a", frame).opus == OPUS


def test_epoch_byte_is_authenticated_and_a_closed_epoch_stays_closed() -> None:
    relay = Relay()
    relay.join("a", "b", "c")
    relay.remove("c")  # epoch 2: a's epoch-2 key closed a's epoch 1 at b
    frame = talk(relay, "a", 1)
    assert voice_header(frame).epoch_lo == 2
    b = relay.sessions["b"]
    assert code(lambda: b.decrypt_voice("a", flip(frame, 3, 0x03))) == "e2ee.stale_epoch"
    held = b._voices[("a", 2)].key
    assert code(lambda: open_voice_frame(held, flip(frame, 3, 0x03), room_id="room-1",
                                         sender_id="a")) == "e2ee.tampered"


def test_wrong_sender_is_refused_and_forgery_needs_the_server() -> None:
    relay = Relay()
    relay.join("a", "b", "m")
    b = relay.sessions["b"]
    frame = talk(relay, "a", 1)
    assert code(lambda: b.decrypt_voice("m", frame)) == "e2ee.tampered"  # stamped with m's slot
    assert code(lambda: b.decrypt_voice("b", frame)) == "e2ee.own_message"
    assert code(lambda: b.decrypt_voice("x", frame)) == "e2ee.unknown_sender"
    # Member m holds a's voice key (group authentication only). Sent from m's connection,
    # the server stamps m's slot, so b tries m's key and refuses it...
    a_key = relay.sessions["m"]._voices[("a", 1)].key
    forged = seal_voice_frame(a_key, b"not a", room_id="room-1", sender_id="a", seq=9, level=0,
                              flags=FLAG_SPEECH)
    assert code(lambda: b.decrypt_voice("m", forged)) == "e2ee.tampered"
    # ...and only a server that stamps a's slot on m's frame makes it pass as a's voice.
    assert b.decrypt_voice("a", forged).opus == b"not a"


def test_removed_member_with_kept_keys_cannot_hear_the_next_epoch() -> None:
    relay = Relay()
    relay.join("a", "b", "mallory")
    before = talk(relay, "a", 1)
    mallory = relay.remove("mallory")  # epoch 2; mallory's session is not told
    after = talk(relay, "a", 2)
    assert relay.sessions["b"].decrypt_voice("a", after).epoch == 2
    assert mallory.decrypt_voice("a", before).opus == OPUS  # what it could hear, it heard
    assert code(lambda: mallory.decrypt_voice("a", after)) == "e2ee.no_sender_key"
    # Even trying its kept epoch-1 key on the new frame by hand fails.
    kept = mallory._voices[("a", 1)].key
    forced = VoiceKey(2, kept.key, kept.salt)
    assert code(lambda: open_voice_frame(forced, after, room_id="room-1", sender_id="a")) == (
        "e2ee.tampered")


def test_previous_epoch_frames_open_until_the_senders_new_key_or_the_grace_ends() -> None:
    relay = Relay()
    relay.join("a", "b", "c", "d")
    in_flight, overtaken, after_grace = (talk(relay, s, 10) for s in ("a", "c", "d"))
    b = relay.sessions["b"]
    relay.epoch = 2
    relay.sessions.pop("c")
    roster = relay.roster()
    b.update_roster(2, roster)  # b has moved on, no new sender key has reached it yet
    assert b.decrypt_voice("a", in_flight).epoch == 1  # in flight: still opens
    relay.announce(["a", "d"])  # a's and d's epoch-2 keys reach b
    assert code(lambda: b.decrypt_voice("a", stamp(in_flight, 1))) == "e2ee.stale_epoch"
    assert b.decrypt_voice("d", talk(relay, "d", 11)).epoch == 2
    assert code(lambda: b.decrypt_voice("d", after_grace)) == "e2ee.stale_epoch"
    assert code(lambda: b.decrypt_voice("c", overtaken)) == "e2ee.unknown_sender"


def test_replays_and_frames_behind_the_window_are_refused() -> None:
    relay = Relay()
    relay.join("a", "b")
    b = relay.sessions["b"]
    frames = {seq: talk(relay, "a", seq) for seq in (0, 1, 2, 3, VOICE_WINDOW + 3)}
    b.decrypt_voice("a", frames[2])
    b.decrypt_voice("a", frames[0])  # out of order, within the window
    assert code(lambda: b.decrypt_voice("a", frames[2])) == "e2ee.replay"
    assert code(lambda: b.decrypt_voice("a", stamp(frames[0], 9))) == "e2ee.replay"
    assert code(lambda: b.decrypt_voice("a", flip(frames[1], 12))) == "e2ee.tampered"
    b.decrypt_voice("a", frames[1])  # the refused forgery did not mark seq 1
    b.decrypt_voice("a", frames[VOICE_WINDOW + 3])
    assert code(lambda: b.decrypt_voice("a", frames[3])) == "e2ee.out_of_window"
    # Another receiver keeps its own window.
    assert relay.sessions["a"].decrypt_voice("b", talk(relay, "b", 0)).seq == 0


def test_sender_refuses_a_repeated_nonce_and_bad_arguments() -> None:
    relay = Relay()
    relay.join("a", "b", "c")
    a = relay.sessions["a"]
    talk(relay, "a", 5)
    for seq in (5, 4, 0):
        assert code(lambda seq=seq: talk(relay, "a", seq)) == "e2ee.seq_reused"
    talk(relay, "a", 6)
    for bad in [{"seq": -1}, {"seq": 2**32}, {"seq": True}, {"level": 128}, {"level": -1},
                {"speech": 1}, {"end": None}]:
        args: dict[str, object] = {"seq": 100, "level": 30, "speech": True} | bad
        assert code(lambda args=args: a.encrypt_voice(OPUS, **args)) == "e2ee.malformed", bad  # type: ignore[arg-type]
    assert code(lambda: a.encrypt_voice("text", seq=100, level=1, speech=True)) == (  # type: ignore[arg-type]
        "e2ee.malformed")
    relay.remove("c")
    # a new key, but the seq still only rises: receivers refuse what is below the announced one
    assert code(lambda: talk(relay, "a", 6)) == "e2ee.seq_reused"
    assert voice_header(talk(relay, "a", 7)).epoch_lo == 2


def test_rotation_required_and_not_ready_block_voice() -> None:
    lonely = GroupSession("room-1", "a")
    assert code(lambda: lonely.encrypt_voice(OPUS, seq=0, level=0, speech=True)) == "e2ee.not_ready"
    relay = Relay()
    relay.join("a", "b", "c")
    frame = talk(relay, "b", 0)
    fresh = GroupSession("room-1", "z")
    assert code(lambda: fresh.decrypt_voice("b", frame)) == "e2ee.unknown_sender"
    a = relay.sessions["a"]
    roster = relay.roster()
    del roster["c"]
    a.update_roster(1, roster)  # c left, epoch unchanged: c still holds our voice key
    assert code(lambda: talk(relay, "a", 1)) == "e2ee.rotation_required"
    a.update_roster(2, roster)
    assert voice_header(talk(relay, "a", 1)).epoch_lo == 2


def test_epoch_low_byte_wraps_and_prefers_the_newest_key() -> None:
    relay = Relay()
    relay.join("a", "b", "c")
    old = talk(relay, "a", 1)
    relay.epoch = 257  # a server jump of 256 epochs: 1 and 257 share the low byte
    relay.sessions.pop("c")
    relay.announce()
    new = talk(relay, "a", 2)
    assert voice_header(new).epoch_lo == voice_header(old).epoch_lo == 1
    b = relay.sessions["b"]
    assert b.decrypt_voice("a", new).epoch == 257
    # the newest key is tried: the old frame is below its announced seq (and would fail AES-GCM)
    assert code(lambda: b.decrypt_voice("a", old)) == "e2ee.out_of_window"
    held = b._voices[("a", 257)].key
    assert code(lambda: open_voice_frame(held, old, room_id="room-1", sender_id="a")) == (
        "e2ee.tampered")


def _sealed(a: GroupSession, b: GroupSession, key: SenderKey, fill: int) -> str:
    """A sender key `a` signs for `b` by hand (as a malicious member would)."""
    ek = b._epoch_keys.get(key.epoch)
    assert ek is not None
    body = seal_envelope(key.encode(), sender=a.identity, sender_id="a",
                         recipient=b.identity.public, recipient_ek=ek.public, recipient_id="b",
                         room_id="r", rng=lambda n: bytes([fill]) * n)
    return b64encode(body)


def _pair() -> tuple[GroupSession, GroupSession]:
    a, b = GroupSession("r", "a"), GroupSession("r", "b")
    for _ in range(2):
        roster = {"a": a.public_keys(), "b": b.public_keys()}
        a.update_roster(1, roster)
        b.update_roster(1, roster)
    return a, b


def test_duplicate_and_conflicting_voice_keys() -> None:
    a, b = _pair()
    chain = bytes(range(32))
    voice = VoiceKey.derive(chain, room_id="r", sender_id="a", epoch=1)
    frame = seal_voice_frame(voice, OPUS, room_id="r", sender_id="a", seq=3, level=0, flags=0)
    b.receive_directed("a", _sealed(a, b, SenderKey(1, 0, chain, voice, 3), 1))
    b.receive_directed("a", _sealed(a, b, SenderKey(1, 0, chain, voice, 0), 2))  # a duplicate
    other = VoiceKey(1, bytes(32), bytes(4))
    with pytest.raises(E2EEError) as caught:
        b.receive_directed("a", _sealed(a, b, SenderKey(1, 0, chain, other, 3), 3))
    assert caught.value.code == "e2ee.chain_conflict"
    assert b.decrypt_voice("a", frame).opus == OPUS  # the duplicate did not lower the floor
    early = seal_voice_frame(voice, OPUS, room_id="r", sender_id="a", seq=2, level=0, flags=0)
    assert code(lambda: b.decrypt_voice("a", early)) == "e2ee.out_of_window"


def test_a_sender_key_carries_the_next_voice_seq_so_earlier_frames_never_open() -> None:
    relay = Relay()
    relay.join("a", "b")
    earlier = [talk(relay, "a", seq) for seq in (1, 2)]
    relay.join("c")  # no epoch change (a server breaking the contract): c gets a's current key
    c = relay.sessions["c"]
    assert c._voices[("a", 1)].floor == 3
    for frame in earlier:  # a recording of what was said before c came: refused
        assert code(lambda frame=frame: c.decrypt_voice("a", frame)) == "e2ee.out_of_window"
    assert c.decrypt_voice("a", talk(relay, "a", 3)).opus == OPUS


def test_voice_header_parses_without_keys() -> None:
    frame = bytes([1, 3, 127, 44, 0x12, 0x34, 0xFF, 0xFF, 0xFF, 0xFE]) + bytes(16)
    header = voice_header(frame)
    assert header == (1, 3, 127, 44, 0x1234, 2**32 - 2)
    assert (header.slot, header.seq, header.epoch_lo) == (0x1234, 2**32 - 2, 44)
    assert voice_header(b"\x09" + frame[1:]).version == 9  # judged by the caller, not here
    assert code(lambda: voice_header(frame[:25])) == "e2ee.malformed"
    assert code(lambda: voice_header(frame.hex())) == "e2ee.malformed"  # type: ignore[arg-type]
    assert voice_header(memoryview(bytearray(frame))) == header


def test_keys_and_audio_stay_out_of_reprs() -> None:
    relay = Relay()
    relay.join("a", "b")
    frame = talk(relay, "a", 1)
    got = relay.sessions["b"].decrypt_voice("a", frame)
    held = relay.sessions["b"]._voices[("a", 1)]
    for value in (got, held, held.key, SenderKey(1, 0, bytes(32), held.key)):
        text = repr(value)
        assert held.key.key.hex() not in text and repr(held.key.key) not in text
        assert repr(OPUS) not in text and OPUS.hex() not in text
