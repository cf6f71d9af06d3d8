"""GroupSession end to end, with an in-memory relay standing in for the server.

Each attack of the E2EE review (issue 17) is reproduced here against the session as a
hostile server or member would run it, and must fail: replays by key swap, leave and
rejoin, resume and reload; a small-order key that stalls distribution; a copied key that
reads later epochs; previous-epoch messages kept alive; corner ciphertext forwarded to
the room.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from hearth.spaces.e2ee import E2EEError, GroupSession, Identity
from hearth.spaces.e2ee import session as session_module
from hearth.spaces.e2ee.chain import MAX_FORWARD, WINDOW, SenderKey, step
from hearth.spaces.e2ee.encoding import b64encode
from hearth.spaces.e2ee.envelope import seal_envelope
from hearth.spaces.e2ee.identity import EpochKeys
from hearth.spaces.e2ee.message import RoomMessage
from hearth.spaces.e2ee.session import MAX_EPOCHS_AHEAD, OutgoingMessage
from hearth.spaces.e2ee.voice import VoiceKey
from tests.support.e2ee_relay import Relay

OPUS = bytes(range(40))


def code_of(session: GroupSession, sender: str, message: OutgoingMessage) -> str:
    with pytest.raises(E2EEError) as caught:
        session.decrypt(sender, message.body, message.commitment)
    return caught.value.code


def code(fn: Callable[[], object]) -> str:
    with pytest.raises(E2EEError) as caught:
        fn()
    return caught.value.code


def flip(b64: str, at: int) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


class Recorder(Relay):
    """A relay that also records every directed envelope, as a hostile server would."""

    def __init__(self, room: str = "room-1") -> None:
        super().__init__(room)
        self.sealed: dict[tuple[str, str, int], str] = {}  # (from, to, epoch) -> body

    def announce(self, members: list[str] | None = None) -> None:  # type: ignore[override]
        for _ in range(2):
            roster = self.roster()
            for m in members or list(self.sessions):
                for to, body in self.sessions[m].update_roster(self.epoch, roster):
                    self.sealed[(m, to, self.epoch)] = body
                    self.sessions[to].receive_directed(m, body)


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
    assert all(relay.sessions["a"].holds_our_key(m) for m in "bc")


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
    assert relay.sessions["a"].holds_our_key("c")
    assert code_of(relay.sessions["c"], "a", old) == "e2ee.out_of_window"
    new = relay.send("a", "hello c")
    assert relay.sessions["c"].decrypt("a", new.body, new.commitment).text == "hello c"


def pair(room: str = "r") -> tuple[GroupSession, GroupSession, list[tuple[str, str]]]:
    """a and b at epoch 1, epoch keys published; returns a's envelopes to b, undelivered."""
    a, b = GroupSession(room, "a"), GroupSession(room, "b")
    roster = {"a": a.public_keys(), "b": b.public_keys()}
    assert a.update_roster(1, roster) == []  # nobody has an epoch key yet: nothing is sealed
    b.update_roster(1, roster)
    roster = {"a": a.public_keys(), "b": b.public_keys()}
    assert {"ek", "ek_epoch", "ek_sig"} <= set(roster["a"])
    to_b = a.update_roster(1, roster)
    for _, body in b.update_roster(1, roster):
        a.receive_directed("b", body)
    return a, b, to_b


def test_no_sender_key_then_buffered_retry_succeeds() -> None:
    a, b, to_b = pair()
    early = a.encrypt("raced the key")
    assert code_of(b, "a", early) == "e2ee.no_sender_key"
    for _, body in to_b:
        b.receive_directed("a", body)
        b.receive_directed("a", body)  # a duplicate delivery is harmless
    assert b.decrypt("a", early.body, early.commitment).text == "raced the key"


def hand_sealed(a: GroupSession, b: GroupSession, key: SenderKey, fill: int, room: str = "r") -> str:
    """A sender key `a` signs for `b` by hand (as a malicious member would)."""
    ek = b._epoch_keys.get(key.epoch)
    assert ek is not None
    return b64encode(seal_envelope(key.encode(), sender=a.identity, sender_id="a",
                                   recipient=b.identity.public, recipient_ek=ek.public,
                                   recipient_id="b", room_id=room,
                                   rng=lambda n: bytes([fill]) * n))


def test_conflicting_sender_key_for_one_epoch_is_refused() -> None:
    a, b, to_b = pair()
    for _, body in to_b:
        b.receive_directed("a", body)
    voice = VoiceKey(1, bytes(32), bytes(4))
    assert code(lambda: b.receive_directed("a", hand_sealed(
        a, b, SenderKey(1, 0, bytes(32), voice), 7))) == "e2ee.chain_conflict"
    # A sender key that claims another epoch than its envelope (sealed to our epoch-1 key).
    lie = SenderKey(2, 0, bytes(32), VoiceKey(2, bytes(32), bytes(4)))
    ek = b._epoch_keys.get(1)
    assert ek is not None
    body = b64encode(seal_envelope(lie.encode(), sender=a.identity, sender_id="a",
                                   recipient=b.identity.public, recipient_ek=ek.public,
                                   recipient_id="b", room_id="r", rng=lambda n: bytes([9]) * n))
    assert code(lambda: b.receive_directed("a", body)) == "e2ee.malformed"
    assert MAX_EPOCHS_AHEAD == 8


def test_a_sender_key_meant_for_someone_else_is_refused() -> None:
    relay = Recorder()
    relay.join("a", "b", "c")
    with pytest.raises(E2EEError) as caught:
        relay.sessions["c"].receive_directed("a", relay.sealed[("a", "b", 1)])
    assert caught.value.code == "e2ee.bad_signature"


def test_member_leaving_without_epoch_advance_blocks_sending() -> None:
    relay = Relay()
    relay.join("a", "b", "c")
    a = relay.sessions["a"]
    roster = relay.roster()
    del roster["c"]
    assert a.update_roster(1, roster) == []
    assert a.last_changes is not None and a.last_changes.rotation_required
    assert a.last_changes.left == ("c",)
    assert code(lambda: a.encrypt("c still holds my chain key")) == "e2ee.rotation_required"
    relay.sessions.pop("c")
    relay.epoch = 2
    relay.announce()
    assert a.encrypt("rotated").epoch == 2
    assert relay.sessions["b"].has_sender_key("a")


def test_roster_checks() -> None:
    a = GroupSession("r", "a")
    other = Identity.generate()
    with pytest.raises(E2EEError) as caught:
        a.update_roster(1, {"a": other.public.to_wire()})
    assert caught.value.code == "e2ee.roster_mismatch"
    assert a.epoch is None  # refused before any state changed
    assert code(lambda: a.encrypt("too early")) == "e2ee.not_ready"
    assert code(lambda: a.update_roster(True, {})) == "e2ee.malformed"  # type: ignore[arg-type]
    assert code(lambda: a.update_roster(0, {})) == "e2ee.malformed"
    a.update_roster(2, {"a": a.public_keys()})
    assert code(lambda: a.update_roster(1, {"a": a.public_keys()})) == "e2ee.stale_epoch"


def small_order_entries(good: dict[str, object]) -> dict[str, dict[str, object]]:
    """Entries with the X25519 and Ed25519 encodings points.py refuses, next to good ones."""
    p = 2**255 - 19
    bad_dh = [0, 1, p - 1, p, p + 1,
              325606250916557431795983626356110631294008115727848805560023387167927233504,
              39382357235489614581723060781553021112529911719440698176882885853963445705823]
    bad_sig = [0, 1, p - 1, 1 << 255,
               2707385501144840649318225287225658788936804267575313519463743609750303402022,
               55188659117513257062467267217118295137698188065244968500265048394206261417927, 2]
    out: dict[str, dict[str, object]] = {}
    for i, u in enumerate(bad_dh):
        out[f"x-dh-{i}"] = {**good, "dh": b64encode(u.to_bytes(32, "little"))}
    for i, y in enumerate(bad_sig):
        out[f"x-sig-{i}"] = {**good, "sig": b64encode(y.to_bytes(32, "little"))}
    out["x-ek"] = {**good, "ek": b64encode(bytes(32))}  # small order, and no longer signed
    return out


def test_small_order_keys_are_ignored_and_everyone_else_still_gets_our_key() -> None:
    """The review's finding: one member publishing an all-zero X25519 key stopped every
    distribution in the room. Now such an entry is ignored on decode and nobody else notices."""
    relay = Relay()
    relay.join("a", "b", "c")
    a = relay.sessions["a"]
    relay.epoch = 2
    for session in relay.sessions.values():  # epoch 2 at everyone, before any epoch key
        session.update_roster(2, relay.roster())
    roster = relay.roster()
    hostile = small_order_entries(dict(roster["b"]))
    envelopes = a.update_roster(2, {**hostile, **roster})
    assert a.last_changes is not None
    assert a.last_changes.ignored == tuple(sorted(hostile))
    assert sorted(to for to, _ in envelopes) == ["b", "c"]
    for to, body in envelopes:
        relay.sessions[to].receive_directed("a", body)
    sent = a.encrypt("still readable")
    for m in ("b", "c"):
        assert relay.sessions[m].decrypt("a", sent.body, sent.commitment).text == "still readable"


def test_one_member_that_cannot_be_sealed_to_never_stops_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    relay = Relay()
    relay.join("b", "c", "d")
    a = GroupSession("room-1", "a")
    relay.sessions["a"] = a
    real = session_module.seal_envelope

    def failing_for_c(payload: bytes, **kw: object) -> bytes:
        if kw["recipient_id"] == "c":
            raise E2EEError("e2ee.bad_key", "cannot seal to c")
        return real(payload, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(session_module, "seal_envelope", failing_for_c)
    envelopes = a.update_roster(1, relay.roster())  # the others published epoch keys already
    assert [to for to, _ in envelopes] == ["b", "d"]
    assert a.last_changes is not None and a.last_changes.undeliverable == ("c",)
    assert (a.holds_our_key("b"), a.holds_our_key("c"), a.holds_our_key("d")) == (True, False, True)
    monkeypatch.setattr(session_module, "seal_envelope", real)
    assert [to for to, _ in a.update_roster(1, relay.roster())] == ["c"]  # retried, only c
    # A send the client could not make is marked undelivered, and sealed again next time.
    a.undelivered("d")
    assert [to for to, _ in a.update_roster(1, relay.roster())] == ["d"]


# --- replays (issue 17, point 2) --------------------------------------------------------------


def test_a_key_swap_and_back_replays_nothing() -> None:
    relay = Recorder()
    relay.join("a", "b", "m")
    said = [relay.send("a", f"said {i}") for i in range(3)]
    b = relay.sessions["b"]
    for s in said:
        b.decrypt("a", s.body, s.commitment)
    spoken = relay.sessions["a"].encrypt_voice(OPUS, seq=1, level=9, speech=True)
    b.decrypt_voice("a", spoken)
    # The server shows b another key for a (a man in the middle), then a's real one again.
    roster = relay.roster()
    b.update_roster(1, {**roster, "a": relay.sessions["m"].public_keys()})
    assert b.last_changes is not None and b.last_changes.keys_changed == ("a",)
    assert b.last_changes.rotation_required  # whoever held the swapped key holds b's chain
    assert code(lambda: b.encrypt("not now")) == "e2ee.rotation_required"
    b.update_roster(1, roster)
    # ...and re-sends a's original sender key: it would rewind the chain and the voice window.
    assert code(lambda: b.receive_directed("a", relay.sealed[("a", "b", 1)])) == "e2ee.replay"
    for s in said:
        assert code_of(b, "a", s) == "e2ee.stale_epoch"
    assert code(lambda: b.decrypt_voice("a", spoken)) == "e2ee.stale_epoch"
    # The honest way on: the server advances the epoch; a's new chain installs.
    relay.epoch = 2
    relay.announce()
    fresh = relay.send("a", "after the rotation")
    assert b.decrypt("a", fresh.body, fresh.commitment).text == "after the rotation"


def test_a_leave_and_rejoin_in_the_same_epoch_replays_nothing() -> None:
    relay = Recorder()
    relay.join("a", "b")
    said = relay.send("a", "before the leave")
    b = relay.sessions["b"]
    b.decrypt("a", said.body, said.commitment)
    roster = relay.roster()
    b.update_roster(1, {"b": roster["b"]})  # a "left" without an epoch change
    b.update_roster(1, roster)  # and "came back"
    assert b.last_changes is not None and b.last_changes.joined == ("a",)
    assert code(lambda: b.receive_directed("a", relay.sealed[("a", "b", 1)])) == "e2ee.replay"
    assert code_of(b, "a", said) == "e2ee.stale_epoch"


def test_a_resume_keeps_every_window() -> None:
    """A dropped connection: the same session object carries on, the server re-delivers."""
    relay = Recorder()
    relay.join("a", "b")
    b = relay.sessions["b"]
    said = relay.send("a", "before the drop")
    spoken = relay.sessions["a"].encrypt_voice(OPUS, seq=5, level=9, speech=True)
    b.decrypt("a", said.body, said.commitment)
    b.decrypt_voice("a", spoken)
    # The resume: the server re-sends what it held and the room's roster; nothing rewinds.
    b.receive_directed("a", relay.sealed[("a", "b", 1)])  # a duplicate of the held chain
    b.update_roster(1, relay.roster())
    assert code_of(b, "a", said) == "e2ee.replay"
    assert code(lambda: b.decrypt_voice("a", spoken)) == "e2ee.replay"
    # A resume advances the epoch (docs/protocol.md): fresh chains, old ones closed for good.
    relay.epoch = 2
    relay.announce()
    assert code_of(b, "a", said) == "e2ee.stale_epoch"
    assert code(lambda: b.decrypt_voice("a", spoken)) == "e2ee.stale_epoch"
    after = relay.send("a", "after the resume")
    assert b.decrypt("a", after.body, after.commitment).text == "after the resume"


def test_a_reload_keeps_the_identity_and_opens_nothing_from_before() -> None:
    """A reload: a new session with the identity the page kept, and nothing else."""
    relay = Recorder()
    relay.join("a", "b")
    said = relay.send("a", "before the reload")
    spoken = relay.sessions["a"].encrypt_voice(OPUS, seq=5, level=9, speech=True)
    old_b = relay.sessions["b"]
    reloaded = GroupSession("room-1", "b", identity=old_b.identity)
    relay.sessions["b"] = reloaded
    relay.epoch = 2  # the resume that follows a reload advances the epoch
    relay.announce()
    a = relay.sessions["a"]
    assert a.last_changes is not None and a.last_changes.keys_changed == ()  # no warning
    assert a.safety_code() == reloaded.safety_code()
    # The server replays the old sender key and everything said and spoken before.
    assert code(lambda: reloaded.receive_directed("a", relay.sealed[("a", "b", 1)])) == (
        "e2ee.stale_epoch")
    assert code_of(reloaded, "a", said) == "e2ee.stale_epoch"
    assert code(lambda: reloaded.decrypt_voice("a", spoken)) == "e2ee.stale_epoch"
    # Even at the old epoch, the old envelope was sealed to an epoch key the page no longer has.
    again = GroupSession("room-1", "b", identity=old_b.identity)
    again.update_roster(1, relay.roster())
    assert code(lambda: again.receive_directed("a", relay.sealed[("a", "b", 1)])) == (
        "e2ee.bad_signature")
    after = relay.send("a", "after the reload")
    assert reloaded.decrypt("a", after.body, after.commitment).text == "after the reload"
    fresh_voice = a.encrypt_voice(OPUS, seq=6, level=9, speech=True)
    assert reloaded.decrypt_voice("a", fresh_voice).seq == 6
    assert reloaded._voices[("a", 2)].floor == 6  # the announced next seq: nothing below opens


# --- post-compromise (point 4) and old epochs (point 5) ------------------------------------------


def test_a_copied_key_stops_opening_at_the_next_epoch() -> None:
    """Whoever copied b's identity and epoch key at epoch 1, and sees every relayed envelope,
    reads epoch 1 and nothing after it."""
    relay = Recorder()
    relay.join("a", "b")
    b = relay.sessions["b"]
    dh, sig = b.identity.private_bytes()
    thief = GroupSession("room-1", "b", identity=Identity(dh, sig))
    copied = b._epoch_keys.get(1)
    assert copied is not None
    thief._epoch_keys._keys[1] = copied  # the copy, taken at epoch 1
    thief.update_roster(1, relay.roster())
    thief.receive_directed("a", relay.sealed[("a", "b", 1)])
    said = relay.send("a", "epoch 1")
    assert thief.decrypt("a", said.body, said.commitment).text == "epoch 1"  # the attack works
    relay.epoch = 2
    relay.announce()
    later = relay.send("a", "epoch 2")
    assert b.decrypt("a", later.body, later.commitment).text == "epoch 2"
    thief.update_roster(2, relay.roster())  # it follows the room, but draws its own epoch key
    assert code(lambda: thief.receive_directed("a", relay.sealed[("a", "b", 2)])) == (
        "e2ee.bad_signature")
    # Forcing the copied epoch-1 key onto the epoch-2 envelope fails as well.
    thief._epoch_keys._keys[2] = copied
    assert code(lambda: thief.receive_directed("a", relay.sealed[("a", "b", 2)])) in (
        "e2ee.bad_signature", "e2ee.tampered")
    assert code_of(thief, "a", later) == "e2ee.no_sender_key"
    assert b._epoch_keys.get(1) is not None and b._epoch_keys.get(0) is None
    relay.epoch = 3
    relay.announce()
    assert b._epoch_keys.get(1) is None  # deleted once the epoch is out of reach


def test_previous_epoch_messages_stop_once_the_senders_new_key_arrives() -> None:
    relay = Relay()
    relay.join("a", "b", "c", "d")
    from_a, from_d = relay.send("a", "a, in flight"), relay.send("d", "d, stalled")
    late_a = relay.send("a", "a, after its new key")
    b = relay.sessions["b"]
    relay.sessions.pop("c")
    relay.epoch = 2
    roster = relay.roster()
    b.update_roster(2, roster)
    assert b.decrypt("a", from_a.body, from_a.commitment).text == "a, in flight"
    relay.announce(["a", "b"])  # a's epoch-2 key reaches b; d is kept on epoch 1 by the server
    assert code_of(b, "a", late_a) == "e2ee.stale_epoch"
    assert b.decrypt("d", from_d.body, from_d.commitment).text == "d, stalled"
    stalled = relay.sessions["d"].encrypt("d, still on epoch 1")
    b.close_previous_epoch()  # the client's grace after the advance is over
    assert code_of(b, "d", stalled) == "e2ee.stale_epoch"


def test_a_same_epoch_key_change_requires_rotation_and_the_new_identity_reads_after_it() -> None:
    relay = Relay()
    relay.join("a", "b")
    before = relay.send("b", "from the first b")
    relay.sessions["b"] = GroupSession("room-1", "b")  # same member id, new keys
    new_b_chain = relay.sessions["b"].update_roster(1, relay.roster())
    a = relay.sessions["a"]
    a.update_roster(1, relay.roster())
    assert a.last_changes is not None and a.last_changes.keys_changed == ("b",)
    assert a.last_changes.rotation_required
    assert code_of(a, "b", before) == "e2ee.bad_signature"  # signed by the old keys
    assert code(lambda: a.encrypt("the old b may still hold my chain")) == "e2ee.rotation_required"
    # b's new identity may not install a second chain for epoch 1 either (installed once)
    assert code(lambda: a.receive_directed("b", dict(new_b_chain)["a"])) == "e2ee.replay"
    relay.epoch = 2  # an honest server advances the epoch on a key change
    relay.announce()
    sent = relay.send("a", "to the new b")
    assert relay.sessions["b"].decrypt("a", sent.body, sent.commitment).text == "to the new b"


# --- private corners ------------------------------------------------------------------------


def corner(relay: Relay, name: str, members: tuple[str, ...]) -> dict[str, GroupSession]:
    """Each member's sub-session for the corner, keys exchanged among them only."""
    subs = {m: relay.sessions[m].sub_session(name) for m in members}
    roster = {m: relay.sessions[m].public_keys() for m in members}
    outgoing = [(m, to, body) for m, sub in subs.items()
                for to, body in sub.update_roster(relay.epoch, roster)]
    for sender, to, body in outgoing:
        subs[to].receive_directed(sender, body)
    return subs


def test_a_private_corner_has_keys_the_room_never_receives() -> None:
    relay = Recorder()
    relay.join("fac", "pat", "bystander")
    subs = corner(relay, "corner-west", ("fac", "pat"))
    assert subs["fac"].room_id == "room-1#corner-west"
    assert subs["fac"].identity is relay.sessions["fac"].identity
    sent = subs["pat"].encrypt("only for the facilitator")
    assert subs["fac"].decrypt("pat", sent.body, sent.commitment).text == "only for the facilitator"
    # A server forwards the corner's ciphertext to the room: the corner is in the signed and
    # authenticated data, so nobody's room session opens it, not even a corner member's.
    for m in ("fac", "bystander"):
        assert code_of(relay.sessions[m], "pat", sent) == "e2ee.bad_signature"
    # The room's sender keys never open the corner, and the corner's never reached the room.
    room_msg = relay.send("pat", "to the room")
    assert code_of(subs["fac"], "pat", room_msg) == "e2ee.bad_signature"
    corner_chain = subs["pat"]._own
    assert corner_chain is not None
    assert not opens_with_any_key_from(relay.sessions["bystander"]._chains[("pat", 1)].chain_key,
                                       sent, "pat", 8)
    # Voice is sealed for the corner too.
    frame = subs["pat"].encrypt_voice(OPUS, seq=1, level=3, speech=True)
    assert subs["fac"].decrypt_voice("pat", frame).opus == OPUS
    assert code(lambda: relay.sessions["bystander"].decrypt_voice("pat", frame)) == "e2ee.tampered"


def test_content_kinds_are_a_table() -> None:
    a, b, to_b = pair()
    for _, body in to_b:
        b.receive_directed("a", body)
    assert code(lambda: a.encrypt("a nod", kind=0x7F)) == "e2ee.unsupported"
    sent = a.encrypt("hello", kind=0x01)
    assert b.decrypt("a", sent.body, sent.commitment).kind == 0x01


def test_epoch_keys_are_shared_by_the_room_and_its_corners_and_drawn_once() -> None:
    draws: list[int] = []

    def rng(n: int) -> bytes:
        draws.append(n)
        return bytes([len(draws)]) * n

    room = GroupSession("r", "a", rng=rng)
    assert draws == [32, 32]  # the identity
    sub = room.sub_session("c")
    assert isinstance(room._epoch_keys, EpochKeys) and sub._epoch_keys is room._epoch_keys
    room.update_roster(1, {"a": room.public_keys()})
    assert draws == [32, 32, 32, 32]  # the chain key, then the epoch key
    sub.update_roster(1, {"a": room.public_keys()})
    assert draws == [32, 32, 32, 32, 32]  # the corner's own chain key, no second epoch key


def test_secrets_stay_out_of_reprs() -> None:
    relay = Relay()
    relay.join("a", "b")
    sent = relay.send("a", "private words")
    got = relay.sessions["b"].decrypt("a", sent.body, sent.commitment)
    ek = relay.sessions["a"]._epoch_keys.get(1)
    for value in (sent, got, relay.sessions["a"].identity, ek):
        text = repr(value)
        assert "private words" not in text
        assert sent.franking_key.hex() not in text and repr(sent.franking_key) not in text
