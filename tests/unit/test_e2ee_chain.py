"""Sender-key chains: forward only, bounded out-of-order window, replays refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.spaces.e2ee import E2EEError
from hearth.spaces.e2ee.chain import (
    MAX_FORWARD,
    WINDOW,
    ReceivingChain,
    SenderKey,
    SendingChain,
    advance,
    step,
)
from hearth.spaces.e2ee.voice import VoiceKey

CHAIN_KEY = bytes(range(32))
VOICE = VoiceKey(1, bytes(range(32, 64)), b"salt")


def seeds(n: int, chain_key: bytes = CHAIN_KEY) -> list[bytes]:
    out = []
    for _ in range(n):
        seed, chain_key = step(chain_key)
        out.append(seed)
    return out


def receiver(index: int = 0) -> ReceivingChain:
    return ReceivingChain.from_sender_key(SenderKey(1, index, advance(CHAIN_KEY, index), VOICE))


def code(exc: pytest.ExceptionInfo[E2EEError]) -> str:
    return exc.value.code


def test_sending_chain_matches_receiving_chain() -> None:
    sending = SendingChain(epoch=1, index=0, chain_key=CHAIN_KEY)
    chain = receiver()
    for expected_index in range(5):
        index, seed, sending = sending.next()
        got, chain = chain.take(index)
        assert (index, got) == (expected_index, seed)


def test_in_order_and_out_of_order_within_the_window() -> None:
    expected = seeds(10)
    chain = receiver()
    for i in (3, 0, 9, 1, 2, 8, 4, 5, 7, 6):
        seed, chain = chain.take(i)
        assert seed == expected[i]
    assert chain.skipped == {}


def test_replay_is_refused_and_state_is_not_mutated() -> None:
    chain = receiver()
    _, after = chain.take(2)
    with pytest.raises(E2EEError) as caught:
        after.take(2)
    assert code(caught) == "e2ee.replay"
    # The original value is untouched: taking from it again still works (immutability).
    assert chain.take(2)[0] == seeds(3)[2]
    # A skipped index is usable exactly once.
    _, after = after.take(0)
    with pytest.raises(E2EEError) as caught:
        after.take(0)
    assert code(caught) == "e2ee.replay"


def test_jump_ahead_up_to_max_forward_only() -> None:
    chain = receiver()
    seed, _ = chain.take(MAX_FORWARD)
    assert seed == seeds(MAX_FORWARD + 1)[MAX_FORWARD]
    with pytest.raises(E2EEError) as caught:
        chain.take(MAX_FORWARD + 1)
    assert code(caught) == "e2ee.out_of_window"


def test_indexes_behind_the_window_are_refused() -> None:
    expected = seeds(WINDOW + 11)
    _, chain = receiver().take(WINDOW + 10)
    # Kept: the last WINDOW indexes before the newest one.
    assert min(chain.skipped) == 11 and len(chain.skipped) == WINDOW - 1
    assert chain.take(11)[0] == expected[11]
    with pytest.raises(E2EEError) as caught:
        chain.take(10)
    assert code(caught) == "e2ee.out_of_window"


def test_a_newcomer_cannot_read_before_its_chain_starts() -> None:
    chain = receiver(index=5)
    with pytest.raises(E2EEError) as caught:
        chain.take(4)
    assert code(caught) == "e2ee.out_of_window"
    assert chain.take(5)[0] == seeds(6)[5]


def test_duplicate_sender_keys_match_and_others_do_not() -> None:
    _, chain = receiver().take(3)
    assert chain.matches(SenderKey(1, 0, CHAIN_KEY, VOICE))  # behind us: same chain
    assert chain.matches(SenderKey(1, 9, advance(CHAIN_KEY, 9), VOICE))  # ahead of us: same chain
    assert not chain.matches(SenderKey(1, 9, advance(bytes(32), 9), VOICE))
    assert not chain.matches(SenderKey(2, 4, advance(CHAIN_KEY, 4), VOICE))  # other epoch
    assert not chain.matches(SenderKey(1, 4 + MAX_FORWARD + 1, CHAIN_KEY, VOICE))


def test_sender_key_encoding_round_trips_and_refuses_junk() -> None:
    voice = VoiceKey(7, bytes(range(32, 64)), b"salt")
    key = SenderKey(7, 300, CHAIN_KEY, voice, voice_seq=123_456)
    assert SenderKey.decode(key.encode()) == key
    assert len(key.encode()) == 81 and key.encode()[0] == 0x03
    assert key.encode()[-4:] == (123_456).to_bytes(4, "big")  # the next voice seq, last
    for junk, expected in ((b"", "e2ee.malformed"), (key.encode()[:-1], "e2ee.malformed"),
                           (key.encode() + b"\0", "e2ee.malformed"),
                           (b"\x02" + key.encode()[1:-4], "e2ee.unsupported"),  # no voice seq
                           (b"\x01" + key.encode()[1:41], "e2ee.unsupported"),  # chat only
                           (b"\x04" + key.encode()[1:], "e2ee.unsupported")):
        with pytest.raises(E2EEError) as caught:
            SenderKey.decode(junk)
        assert code(caught) == expected
    assert repr(CHAIN_KEY) not in repr(key)  # keys never reach a log through repr()
    assert "salt" not in repr(key) and repr(bytes(range(32, 64))) not in repr(key)


@settings(max_examples=60, deadline=None)
@given(st.permutations(list(range(40))))
def test_any_delivery_order_within_the_window_opens_each_message_once(order: list[int]) -> None:
    expected = seeds(40)
    chain = receiver()
    for i in order:
        seed, chain = chain.take(i)
        assert seed == expected[i]
    for i in order[:5]:
        with pytest.raises(E2EEError):
            chain.take(i)
