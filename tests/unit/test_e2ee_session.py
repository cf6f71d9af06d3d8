"""GroupSession end to end, with an in-memory relay standing in for the server."""

from __future__ import annotations

import base64

import pytest

from hearth.spaces.e2ee import E2EEError, GroupSession, Identity
from hearth.spaces.e2ee.chain import MAX_FORWARD, WINDOW, SenderKey, step
from hearth.spaces.e2ee.encoding import b64encode
from hearth.spaces.e2ee.envelope import seal_envelope
from hearth.spaces.e2ee.message import RoomMessage
from hearth.spaces.e2ee.session import MAX_EPOCHS_AHEAD, OutgoingMessage
from tests.support.e2ee_relay import Relay


def code_of(session: GroupSession, sender: str, message: OutgoingMessage) -> str:
    with pytest.raises(E2EEError) as caught:
        session.decrypt(sender, message.body, message.commitment)
    return caught.value.code


def flip(b64: str, at: int) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_members_read_each_other() -> None:
    relay = Relay()
    relay.join("a", "b", "c")
    for sender in ("a", "b", "c"):
        sent = relay.send(sender, f"hello from {sender} ☕")
        for reader in set("abc") - {sender}:
            got = relay.sessions[reader].decrypt(sender, sent.body, sent.commitment)
            assert (got.text, got.sender_id, got.epoch) == (f"hello from {sender} ☕", sender, 1)
            assert got.franking_key == sent.franking_key
            assert b64encode(got.commitment) == sent.commitment
    codes = {relay.sessions[m].safety_code() for m in "abc"}
    assert len(codes) == 1
    assert relay.sessions["a"].fingerprint("b") == relay.sessions["b"].fingerprint("b")


def test_tampered_body_forged_signature_and_swapped_commitment_are_refused() -> None:
    relay = Relay()
    relay.join("a", "b", "m")
    sent = relay.send("a", "the real text")
    b = relay.sessions["b"]
    for at in (3, 7, 20, len(base64.b64decode(sent.body)) - 1):  # epoch, index, body, signature
        forged = OutgoingMessage(flip(sent.body, at), sent.commitment, b"", 1, 0)
        assert code_of(b, "a", forged) == "e2ee.bad_signature"
    other = relay.send("a", "other text")
    swapped = OutgoingMessage(sent.body, other.commitment, b"", 1, 0)
    assert code_of(b, "a", swapped) == "e2ee.bad_signature"
    # Member m knows a's chain key, but cannot sign as a: it signs with its own key.
    by_m = relay.send("m", "pretending to be a")
    assert code_of(b, "a", by_m) == "e2ee.bad_signature"
    # None of the failures moved b's chain: the genuine messages still open.
    assert b.decrypt("a", sent.body, sent.commitment).text == "the real text"
    assert b.decrypt("a", other.body, other.commitment).text == "other text"


def test_replay_and_non_member_are_refused() -> None:
    relay = Relay()
    relay.join("a", "b")
    sent = relay.send("a", "once")
    b = relay.sessions["b"]
    b.decrypt("a", sent.body, sent.commitment)
    assert code_of(b, "a", sent) == "e2ee.replay"
    assert code_of(b, "stranger", sent) == "e2ee.unknown_sender"
    assert code_of(b, "b", sent) == "e2ee.own_message"
    stranger = GroupSession("room-1", "stranger")
    stranger.update_roster(1, {"stranger": stranger.public_keys(), **relay.roster()})
    assert code_of(stranger, "a", sent) == "e2ee.no_sender_key"


def opens_with_any_key_from(chain_key: bytes, sent: OutgoingMessage, sender: str,
                            tries: int) -> bool:
    """Ratchet `chain_key` forward and try every message key on `sent`, as an attacker would."""
    message = RoomMessage.decode(base64.b64decode(sent.body))
    commitment = base64.b64decode(sent.commitment)
    for _ in range(tries):
        seed, chain_key = step(chain_key)
        try:
            message.open(seed, room_id="room-1", sender_id=sender, commitment=commitment)
        except E2EEError:
            continue
        return True
    return False


def test_removed_member_cannot_decrypt_with_kept_keys() -> None:
    relay = Relay()
    relay.join("a", "b", "mallory")
    before = relay.send("a", "before")
    unread = relay.send("a", "also before, not yet read by mallory")
    mallory = relay.remove("mallory")
    assert mallory.decrypt("a", before.body, before.commitment).text == "before"
    after = relay.send("a", "after the removal")
    assert after.epoch == 2
    assert relay.sessions["b"].decrypt("a", after.body, after.commitment).text == (
        "after the removal")
    assert code_of(mallory, "a", after) == "e2ee.no_sender_key"
    # Mallory ratchets the epoch-1 chain it kept and tries every key: that finds the
    # epoch-1 message (the attack works where it should), never the epoch-2 one.
    kept = mallory._chains[("a", 1)].chain_key
    assert opens_with_any_key_from(kept, unread, "a", 64)
    assert not opens_with_any_key_from(kept, after, "a", 64)


def test_in_flight_messages_of_the_previous_epoch_open_older_ones_do_not() -> None:
    relay = Relay()
    relay.join("a", "b", "c", "d")
    in_flight = relay.send("a", "sent while c was leaving")
    relay.remove("c")
    assert relay.sessions["b"].decrypt("a", in_flight.body, in_flight.commitment).text
    late = relay.send("a", "epoch 2")
    relay.remove("d")  # epoch 3: epoch 1 is now two epochs back
    older = relay.send("b", "epoch 3")
    assert relay.sessions["a"].decrypt("b", older.body, older.commitment).epoch == 3
    relay.sessions["b"].decrypt("a", late.body, late.commitment)  # epoch 2 still opens
    replayed = OutgoingMessage(in_flight.body, in_flight.commitment, b"", 1, 0)
    assert code_of(relay.sessions["b"], "a", replayed) == "e2ee.stale_epoch"


def test_out_of_order_within_window_ok_beyond_refused() -> None:
    relay = Relay()
    relay.join("a", "b")
    b = relay.sessions["b"]
    burst = [relay.send("a", f"m{i}") for i in range(WINDOW + 2)]
    assert b.decrypt("a", burst[-1].body, burst[-1].commitment).text == f"m{WINDOW + 1}"
    assert b.decrypt("a", burst[2].body, burst[2].commitment).text == "m2"  # within the window
    assert code_of(b, "a", burst[1]) == "e2ee.out_of_window"  # one beyond it
    ahead = [relay.send("a", f"x{i}") for i in range(MAX_FORWARD + 2)]
    edge, beyond = ahead[-2], ahead[-1]
    assert beyond.index == burst[-1].index + 1 + MAX_FORWARD + 1
    assert code_of(b, "a", beyond) == "e2ee.out_of_window"  # refused, chain untouched
    assert b.decrypt("a", edge.body, edge.commitment).text == f"x{MAX_FORWARD}"
    assert b.decrypt("a", beyond.body, beyond.commitment).text == f"x{MAX_FORWARD + 1}"


def test_newcomer_reads_from_now_on_only() -> None:
    relay = Relay()
    relay.join("a", "b")
    old = relay.send("a", "before c")
    relay.join("c")
    assert relay.sessions["a"].last_changes is not None
    assert relay.sessions["a"].last_changes.joined == ("c",)
    assert code_of(relay.sessions["c"], "a", old) == "e2ee.out_of_window"
    new = relay.send("a", "hello c")
    assert relay.sessions["c"].decrypt("a", new.body, new.commitment).text == "hello c"


def test_no_sender_key_then_buffered_retry_succeeds() -> None:
    a, b = GroupSession("r", "a"), GroupSession("r", "b")
    roster = {"a": a.public_keys(), "b": b.public_keys()}
    to_b = a.update_roster(1, roster)
    b.update_roster(1, roster)
    early = a.encrypt("raced the key")
    assert code_of(b, "a", early) == "e2ee.no_sender_key"
    for _, body in to_b:
        b.receive_directed("a", body)
        b.receive_directed("a", body)  # a duplicate delivery is harmless
    assert b.decrypt("a", early.body, early.commitment).text == "raced the key"


def test_conflicting_sender_key_for_one_epoch_is_refused() -> None:
    a, b = GroupSession("r", "a"), GroupSession("r", "b")
    roster = {"a": a.public_keys(), "b": b.public_keys()}
    b.update_roster(1, roster)
    for _, body in a.update_roster(1, roster):
        b.receive_directed("a", body)
    other = seal_envelope(SenderKey(1, 0, bytes(32)).encode(), sender=a.identity, sender_id="a",
                          recipient=b.identity.public, recipient_id="b", room_id="r",
                          rng=lambda n: bytes([7]) * n)
    with pytest.raises(E2EEError) as caught:
        b.receive_directed("a", b64encode(other))
    assert caught.value.code == "e2ee.chain_conflict"
    far = seal_envelope(SenderKey(2 + MAX_EPOCHS_AHEAD, 0, bytes(32)).encode(), sender=a.identity,
                        sender_id="a", recipient=b.identity.public, recipient_id="b",
                        room_id="r", rng=lambda n: bytes([8]) * n)
    with pytest.raises(E2EEError) as caught:
        b.receive_directed("a", b64encode(far))
    assert caught.value.code == "e2ee.future_epoch"


def test_a_sender_key_meant_for_someone_else_is_refused() -> None:
    relay = Relay()
    relay.join("a", "b", "c")
    keys = relay.roster()
    fresh = GroupSession("room-1", "a", identity=relay.sessions["a"].identity)
    envelopes = dict(fresh.update_roster(1, keys))
    with pytest.raises(E2EEError) as caught:
        relay.sessions["c"].receive_directed("a", envelopes["b"])
    assert caught.value.code == "e2ee.bad_signature"


def test_member_leaving_without_epoch_advance_blocks_sending() -> None:
    relay = Relay()
    relay.join("a", "b", "c")
    a = relay.sessions["a"]
    roster = relay.roster()
    del roster["c"]
    a.update_roster(1, roster)
    assert a.last_changes is not None and a.last_changes.rotation_required
    assert a.last_changes.left == ("c",)
    with pytest.raises(E2EEError) as caught:
        a.encrypt("c still holds my chain key")
    assert caught.value.code == "e2ee.rotation_required"
    envelopes = a.update_roster(2, roster)
    assert [to for to, _ in envelopes] == ["b"]
    assert a.encrypt("rotated").epoch == 2


def test_roster_checks() -> None:
    a = GroupSession("r", "a")
    other = Identity.generate()
    with pytest.raises(E2EEError) as caught:
        a.update_roster(1, {"a": other.public.to_wire()})
    assert caught.value.code == "e2ee.roster_mismatch"
    assert a.epoch is None  # refused before any state changed
    with pytest.raises(E2EEError) as caught:
        a.encrypt("too early")
    assert caught.value.code == "e2ee.not_ready"
    bad = {"dh": "AAAA", "sig": a.public_keys()["sig"]}
    envelopes = a.update_roster(2, {"a": a.public_keys(), "x": bad, "y": other.public.to_wire()})
    assert [to for to, _ in envelopes] == ["y"]
    assert a.last_changes is not None and a.last_changes.ignored == ("x",)
    with pytest.raises(E2EEError) as caught:
        a.update_roster(1, {"a": a.public_keys()})
    assert caught.value.code == "e2ee.stale_epoch"
    with pytest.raises(E2EEError) as caught:
        a.update_roster(True, {})
    assert caught.value.code == "e2ee.malformed"


def test_keys_changed_drops_the_old_chain_and_resends_ours() -> None:
    relay = Relay()
    relay.join("a", "b")
    before = relay.send("b", "from the first b")
    relay.sessions["b"] = GroupSession("room-1", "b")  # same member id, new keys
    relay.announce()
    a = relay.sessions["a"]
    assert a.last_changes is not None and a.last_changes.keys_changed == ("b",)
    with pytest.raises(E2EEError) as caught:
        a.decrypt("b", before.body, before.commitment)
    assert caught.value.code == "e2ee.bad_signature"  # signed by the old keys
    sent = relay.send("a", "to the new b")
    assert relay.sessions["b"].decrypt("a", sent.body, sent.commitment).text == "to the new b"


def test_secrets_stay_out_of_reprs() -> None:
    relay = Relay()
    relay.join("a", "b")
    sent = relay.send("a", "private words")
    got = relay.sessions["b"].decrypt("a", sent.body, sent.commitment)
    for value in (sent, got, relay.sessions["a"].identity):
        text = repr(value)
        assert "private words" not in text
        assert sent.franking_key.hex() not in text and repr(sent.franking_key) not in text
