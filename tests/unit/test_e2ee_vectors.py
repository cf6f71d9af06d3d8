"""The Python package against the shared vectors (the browser runs the same files)."""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from hearth.spaces.e2ee import E2EEError, GroupSession, Identity, PublicIdentity, safety_code
from hearth.spaces.e2ee.chain import SenderKey, step
from hearth.spaces.e2ee.encoding import b64decode, b64encode, fields
from hearth.spaces.e2ee.envelope import seal_envelope
from hearth.spaces.e2ee.franking import commit, commitment_matches, server_tag, verify_report
from hearth.spaces.e2ee.identity import EpochKey, OwnEpochKey
from hearth.spaces.e2ee.message import RoomMessage, encode_inner, message_key, seal_room_message
from hearth.spaces.e2ee.primitives import hkdf_sha256
from hearth.spaces.e2ee.voice import VoiceKey, open_voice_frame, seal_voice_frame, voice_aad, voice_header

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def queue_rng(draws: list[str]) -> Callable[[int], bytes]:
    queue = [bytes.fromhex(d) for d in draws]

    def rng(n: int) -> bytes:
        data = queue.pop(0)
        assert len(data) == n, "the code draws a different size than the vector recorded"
        return data

    rng.remaining = lambda: len(queue)  # type: ignore[attr-defined]
    return rng


def ident(data: dict[str, str]) -> Identity:
    return Identity(bytes.fromhex(data["dh_private"]), bytes.fromhex(data["sig_private"]))


def sender_key_json(key: SenderKey) -> dict[str, Any]:
    return {"epoch": key.epoch, "index": key.index, "chain_key": key.chain_key.hex(),
            "voice_key": key.voice.key.hex(), "voice_salt": key.voice.salt.hex(),
            "voice_seq": key.voice_seq}


def code_of(fn: Callable[[], object]) -> str | None:
    try:
        fn()
    except E2EEError as exc:
        return exc.code
    return None


def test_committed_vectors_are_current_and_deterministic(
    generator: ModuleType, vectors: dict[str, Any]
) -> None:
    built = generator.build()
    assert sorted(built) == sorted(vectors)
    for name, data in built.items():
        committed = (VECTORS / f"{name}.json").read_text()
        assert generator.render(data) == committed, f"{name}.json is stale: run generate.py"


def test_primitives(vectors: dict[str, Any]) -> None:
    v = vectors["primitives"]
    for case in v["fields"]:
        parts = [bytes.fromhex(p) for p in case["parts"]]
        assert fields(case["label"], *parts).hex() == case["encoded"]
    for ratchet in v["ratchets"]:
        chain_key = bytes.fromhex(ratchet["chain_key"])
        for s in ratchet["steps"]:
            seed, chain_key = step(chain_key)
            key, nonce = message_key(seed)
            assert [seed.hex(), chain_key.hex(), key.hex(), nonce.hex()] == [
                s["seed"], s["next_chain_key"], s["aes_key"], s["nonce"]]
    for h in v["hkdf"]:
        okm = hkdf_sha256(bytes.fromhex(h["ikm"]), salt=bytes.fromhex(h["salt"]),
                          info=bytes.fromhex(h["info"]), length=h["length"])
        assert okm.hex() == h["okm"]
    # RFC 5869 A.1, written out here so the generator's own HKDF is checked too.
    assert v["hkdf"][0]["okm"].startswith("3cb25f25faacd57a90434f64d0362f2a")
    for text, hex_ in v["base64"]["valid"]:
        assert b64decode(text).hex() == hex_
        assert b64encode(bytes.fromhex(hex_)) == text
    for text in v["base64"]["invalid"]:
        assert code_of(functools.partial(b64decode, text)) == "e2ee.malformed"


def test_identities(vectors: dict[str, Any]) -> None:
    v = vectors["identity"]
    for person in v["identities"]:
        identity = ident(person)
        assert identity.public.to_wire() == {"dh": person["dh"], "sig": person["sig"]}
        assert identity.public.fingerprint() == person["fingerprint"]
        assert PublicIdentity.from_wire(person).fingerprint() == person["fingerprint"]
    for case in v["safety_codes"]:
        roster = {m: PublicIdentity.from_wire(k) for m, k in case["roster"].items()}
        assert safety_code(case["room_id"], roster) == case["code"]
    assert len({c["code"] for c in v["safety_codes"]}) == len(v["safety_codes"])
    for case in v["signatures"]:
        signer = Identity(bytes(32), bytes.fromhex(case["sig_private"]))
        assert signer.sign(bytes.fromhex(case["message"])).hex() == case["signature"]
    for case in v["exchanges"]:
        identity = Identity(bytes.fromhex(case["dh_private"]), bytes(32))
        if "error" in case:
            peer = bytes.fromhex(case["peer_dh"])
            assert code_of(functools.partial(identity.exchange, peer)) == case["error"]
        else:
            assert identity.exchange(bytes.fromhex(case["peer_dh"])).hex() == case["shared"]
    for case in v["public_keys"]:
        keys = {k: case[k] for k in ("dh", "sig") if k in case}
        assert code_of(functools.partial(PublicIdentity.from_wire, keys)) == case["code"], (
            case["description"])
    assert sum(c["code"] == "e2ee.bad_key" for c in v["public_keys"]) >= 15
    ek = v["epoch_keys"]
    own = OwnEpochKey(ident(ek["identity"]), 7, bytes.fromhex(ek["cases"][0]["private"]))
    assert {**ident(ek["identity"]).public.to_wire(), **own.public.to_wire()} == (
        ek["cases"][0]["entry"])
    for case in ek["cases"]:
        entry = case["entry"]
        got = code_of(lambda e=entry: EpochKey.from_wire(e, PublicIdentity.from_wire(e)))
        assert got == case["code"], case["description"]


def test_envelopes(vectors: dict[str, Any], generator: ModuleType) -> None:
    v = vectors["envelope"]
    for case in v["cases"]:
        sender, recipient = ident(case["sender"]), ident(case["recipient"])
        ek = OwnEpochKey(recipient, case["epoch"], bytes.fromhex(case["recipient_ek_private"]))
        assert ek.public.to_wire() == case["recipient_ek"]
        body = seal_envelope(bytes.fromhex(case["payload"]), sender=sender,
                             sender_id=case["sender_id"], recipient=recipient.public,
                             recipient_ek=ek.public, recipient_id=case["recipient_id"],
                             room_id=case["room_id"],
                             rng=queue_rng([case["ephemeral_private"]]))
        assert b64encode(body) == case["body"]
        payload = generator.open_case(case)
        assert payload.hex() == case["payload"]
        assert sender_key_json(SenderKey.decode(payload)) == case["sender_key"]
    assert len(v["rejections"]) >= 12
    for case in v["rejections"]:
        assert code_of(functools.partial(generator.open_case, case)) == case["code"], (
            case["description"])


def _open(case: dict[str, Any], signer: PublicIdentity) -> tuple[str, bytes]:
    commitment = base64.b64decode(case["commitment"])
    message = RoomMessage.decode(b64decode(case["body"]))
    message.verify(signer, room_id=case["room_id"], sender_id=case["sender_id"],
                   commitment=commitment)
    text, franking_key, _ = message.open(bytes.fromhex(case["seed"]), room_id=case["room_id"],
                                         sender_id=case["sender_id"], commitment=commitment)
    return text, franking_key


def test_messages(vectors: dict[str, Any]) -> None:
    v = vectors["message"]
    for case in v["cases"]:
        sender = ident(case["sender"])
        franking_key = bytes.fromhex(case["franking_key"])
        assert b64encode(commit(franking_key, case["text"])) == case["commitment"]
        assert encode_inner(case["text"], franking_key).hex() == case["inner"]
        key, nonce = message_key(bytes.fromhex(case["seed"]))
        assert [key.hex(), nonce.hex()] == [case["aes_key"], case["nonce"]]
        message = seal_room_message(
            sender=sender, room_id=case["room_id"], sender_id=case["sender_id"],
            epoch=case["epoch"], index=case["index"], seed=bytes.fromhex(case["seed"]),
            text=case["text"], franking_key=franking_key,
            commitment=b64decode(case["commitment"]))
        assert b64encode(message.encode()) == case["body"]
        assert _open(case, sender.public) == (case["text"], franking_key)
    codes = set()
    for case in v["rejections"]:
        signer = ident(case["sender"]).public
        assert code_of(functools.partial(_open, case, signer)) == case["code"], case["description"]
        codes.add(case["code"])
    assert codes >= {"e2ee.bad_signature", "e2ee.tampered", "e2ee.bad_commitment",
                     "e2ee.malformed", "e2ee.unsupported"}


def test_franking(vectors: dict[str, Any]) -> None:
    v = vectors["franking"]
    for case in v["commitments"]:
        fk = bytes.fromhex(case["franking_key"])
        assert commit(fk, case["text"]).hex() == case["commitment"]
        assert commitment_matches(fk, case["text"], bytes.fromhex(case["commitment"]))
        assert not commitment_matches(fk, case["text"] + ".", bytes.fromhex(case["commitment"]))
    for case in v["tags"]:
        tag = server_tag(bytes.fromhex(case["server_key"]), bytes.fromhex(case["commitment"]),
                         case["room_id"], case["sender_id"], int(case["seq"]), int(case["ts"]))
        assert tag.hex() == case["tag"]
    server_key = bytes.fromhex(v["server_key"])
    for case in v["reports"]:
        def report(c: dict[str, Any] = case) -> None:
            verify_report(server_key, plaintext=c["plaintext"],
                          franking_key=bytes.fromhex(c["franking_key"]),
                          commitment=bytes.fromhex(c["commitment"]), tag=bytes.fromhex(c["tag"]),
                          room_id=c["room_id"], sender_id=c["sender_id"], seq=c["seq"],
                          ts=c["ts"])
        assert code_of(report) == case["code"], case["description"]


def _voice_key(case: dict[str, Any]) -> VoiceKey:
    return VoiceKey(case["epoch"], bytes.fromhex(case["voice_key"]), bytes.fromhex(case["salt"]))


def test_voice(vectors: dict[str, Any]) -> None:
    v = vectors["voice"]
    for case in v["derivations"]:
        key = VoiceKey.derive(bytes.fromhex(case["chain_key"]), room_id=case["room_id"],
                              sender_id=case["sender_id"], epoch=case["epoch"])
        assert [key.key.hex(), key.salt.hex()] == [case["voice_key"], case["salt"]]
    for case in v["frames"]:
        key = _voice_key(case)
        frame = seal_voice_frame(key, bytes.fromhex(case["opus"]), room_id=case["room_id"],
                                 sender_id=case["sender_id"], seq=case["seq"],
                                 level=case["level"], flags=case["flags"])
        assert frame.hex() == case["frame"]
        assert key.nonce(case["seq"]).hex() == case["nonce"]
        assert voice_aad(frame, case["room_id"], case["sender_id"]).hex() == case["aad"]
        assert list(voice_header(frame)) == case["header"]
        got = open_voice_frame(key, frame, room_id=case["room_id"], sender_id=case["sender_id"])
        assert (got.opus.hex(), got.seq, got.level, got.flags, got.epoch) == (
            case["opus"], case["seq"], case["level"], case["flags"], case["epoch"])
    codes = set()
    for case in v["openings"]:
        def attempt(c: dict[str, Any] = case) -> bytes:
            return open_voice_frame(_voice_key(c), bytes.fromhex(c["frame"]), room_id=c["room_id"],
                                    sender_id=c["sender_id"]).opus
        assert code_of(attempt) == case["code"], case["description"]
        if case["code"] is None:
            assert attempt().hex() == case["opus"]
        codes.add(case["code"])
    assert codes == {None, "e2ee.tampered", "e2ee.unsupported", "e2ee.malformed"}
    for case in v["sender_keys"]:
        try:
            got_key: dict[str, Any] = sender_key_json(SenderKey.decode(bytes.fromhex(case["payload"])))
        except E2EEError as exc:
            got_key = {"error": exc.code}
        assert got_key == case["expect"], case["description"]


def _run_step(sessions: dict[str, GroupSession], rngs: dict[str, Any], room: str,
              step: dict[str, Any]) -> dict[str, Any]:
    member = step["member"]
    session = sessions.get(member)
    try:
        match step["op"]:
            case "create":
                sessions[member] = GroupSession(room, member, rng=rngs[member])
                return {"public_keys": sessions[member].public_keys()}
            case "public_keys":
                assert session is not None
                return {"public_keys": session.public_keys()}
            case "close_previous_epoch":
                assert session is not None
                session.close_previous_epoch()
                return {"ok": True}
            case "update_roster":
                assert session is not None
                out = session.update_roster(step["epoch"], step["roster"])
                ch = session.last_changes
                assert ch is not None
                return {"envelopes": [list(e) for e in out], "changes": {
                    "epoch": ch.epoch, "epoch_advanced": ch.epoch_advanced,
                    "joined": list(ch.joined), "left": list(ch.left),
                    "keys_changed": list(ch.keys_changed), "ignored": list(ch.ignored),
                    "rotation_required": ch.rotation_required,
                    "undeliverable": list(ch.undeliverable)}}
            case "receive_directed":
                assert session is not None
                session.receive_directed(step["from"], step["body"])
                return {"ok": True}
            case "encrypt":
                assert session is not None
                sent = session.encrypt(step["text"])
                return {"body": sent.body, "commitment": sent.commitment,
                        "franking_key": sent.franking_key.hex(), "epoch": sent.epoch,
                        "index": sent.index}
            case "decrypt":
                assert session is not None
                got = session.decrypt(step["from"], step["body"], step["commitment"])
                return {"text": got.text, "franking_key": got.franking_key.hex(),
                        "commitment": b64encode(got.commitment), "epoch": got.epoch,
                        "index": got.index, "kind": got.kind}
            case "encrypt_voice":
                assert session is not None
                frame = session.encrypt_voice(bytes.fromhex(step["opus"]), seq=step["seq"],
                                              level=step["level"], speech=step["speech"],
                                              end=step["end"])
                return {"frame": frame.hex()}
            case "decrypt_voice":
                assert session is not None
                heard = session.decrypt_voice(step["from"], bytes.fromhex(step["frame"]))
                return {"opus": heard.opus.hex(), "seq": heard.seq, "level": heard.level,
                        "flags": heard.flags, "epoch": heard.epoch}
            case "safety_code":
                assert session is not None
                return {"code": session.safety_code()}
            case "fingerprint":
                assert session is not None
                return {"fingerprint": session.fingerprint(step["of"])}
    except E2EEError as exc:
        return {"error": exc.code}
    raise AssertionError(f"unknown op {step['op']}")


def test_session_scenario_replays(vectors: dict[str, Any]) -> None:
    v = vectors["session"]
    rngs = {m: queue_rng(draws) for m, draws in v["rng"].items()}
    sessions: dict[str, GroupSession] = {}
    for i, step_ in enumerate(v["steps"]):
        assert _run_step(sessions, rngs, v["room_id"], step_) == step_["expect"], (i, step_["op"])
    assert all(rng.remaining() == 0 for rng in rngs.values())  # type: ignore[attr-defined]
    errors = {s["expect"].get("error") for s in v["steps"]} - {None}
    assert errors >= {"e2ee.no_sender_key", "e2ee.replay", "e2ee.unknown_sender",
                      "e2ee.own_message", "e2ee.bad_signature", "e2ee.out_of_window",
                      "e2ee.rotation_required", "e2ee.stale_epoch", "e2ee.roster_mismatch"}
    voice = [s["expect"].get("error") for s in v["steps"] if s["op"].endswith("_voice")]
    assert set(voice) >= {None, "e2ee.no_sender_key", "e2ee.replay", "e2ee.unknown_sender",
                          "e2ee.own_message", "e2ee.tampered", "e2ee.unsupported",
                          "e2ee.malformed", "e2ee.seq_reused", "e2ee.rotation_required",
                          "e2ee.out_of_window", "e2ee.stale_epoch"}
    # The replay paths the scenario scripts, each refused (docs/e2ee.md, "Replays"):
    reinstalls = [s for s in v["steps"] if s["op"] == "receive_directed"
                  and s["expect"].get("error") == "e2ee.replay"]
    assert len(reinstalls) >= 2  # keys swapped and back; left and came back
    ignored = [s["expect"]["changes"] for s in v["steps"] if s["op"] == "update_roster"
               and s["expect"].get("changes", {}).get("ignored")]
    assert ignored and ignored[-1]["ignored"] == ["m-x", "m-y"]
