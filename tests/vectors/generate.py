"""Generate the shared E2EE test vectors (tests/vectors/*.json), deterministically.

    .venv/bin/python tests/vectors/generate.py          # rewrite the JSON files
    .venv/bin/python tests/vectors/generate.py --check  # exit 1 if they are not current

All randomness comes from `DetRng` (SHA-256 of a name and a counter), and every
draw is written into the vectors, so the browser module replays exactly the
same bytes. primitives.json is computed here from the standard library alone
(hmac, hashlib), independently of spaces.e2ee, so it checks the package too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hearth.spaces.e2ee import errors  # noqa: E402
from hearth.spaces.e2ee.chain import SenderKey  # noqa: E402
from hearth.spaces.e2ee.encoding import fields, u32  # noqa: E402
from hearth.spaces.e2ee.envelope import open_envelope, seal_envelope  # noqa: E402
from hearth.spaces.e2ee.errors import E2EEError  # noqa: E402
from hearth.spaces.e2ee.franking import commit, server_tag, verify_report  # noqa: E402
from hearth.spaces.e2ee.identity import (  # noqa: E402
    EpochKey,
    Identity,
    OwnEpochKey,
    PublicIdentity,
    safety_code,
)
from hearth.spaces.e2ee.message import (  # noqa: E402
    AAD_LABEL,
    SIG_LABEL,
    RoomMessage,
    encode_inner,
    message_key,
    seal_room_message,
)
from hearth.spaces.e2ee.points import P  # noqa: E402
from hearth.spaces.e2ee.primitives import seal  # noqa: E402
from hearth.spaces.e2ee.session import GroupSession  # noqa: E402
from hearth.spaces.e2ee.voice import (  # noqa: E402
    VoiceKey,
    open_voice_frame,
    seal_voice_frame,
    voice_aad,
    voice_header,
)

Json = dict[str, Any]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class DetRng:
    """Deterministic rng(n) for vectors; remembers every draw so JS can replay them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.draws: list[str] = []

    def __call__(self, n: int) -> bytes:
        out = b""
        block = 0
        while len(out) < n:
            out += hashlib.sha256(f"{self.name}/{self.count}/{block}".encode()).digest()
            block += 1
        self.count += 1
        data = out[:n]
        self.draws.append(data.hex())
        return data


def det_bytes(name: str, n: int = 32) -> bytes:
    return DetRng(name)(n)


def identity(name: str) -> Identity:
    return Identity(det_bytes(f"{name}/dh"), det_bytes(f"{name}/sig"))


def identity_json(ident: Identity) -> Json:
    dh, sig = ident.private_bytes()
    return {"dh_private": dh.hex(), "sig_private": sig.hex(), **ident.public.to_wire()}


# ---------------------------------------------------------------- primitives (stdlib only)


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _fields(label: str, *parts: bytes) -> bytes:
    return _lp(label.encode()) + b"".join(_lp(p) for p in parts)


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    prk = _hmac(salt, ikm)
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = _hmac(prk, block + info + bytes([counter]))
        okm += block
        counter += 1
    return okm[:length]


def primitives() -> Json:
    field_cases = [
        ("hearth-e2ee/v1/message-key", []),
        ("x", [b"", b"ab", bytes(range(5))]),
        ("hearth-e2ee/v1/franking-tag", [bytes(32), "Zimmer ☕".encode(), b"m-1",
                                         struct.pack(">Q", 7), struct.pack(">Q", 1764095400123)]),
    ]
    ratchets: list[Json] = []
    for name in ("chain-a", "chain-b"):
        chain_key = det_bytes(name)
        steps: list[Json] = []
        key = chain_key
        for index in range(4):
            seed, nxt = _hmac(key, b"\x01"), _hmac(key, b"\x02")
            okm = _hkdf(seed, bytes(32), _fields("hearth-e2ee/v1/message-key"), 44)
            steps.append({"index": index, "seed": seed.hex(), "aes_key": okm[:32].hex(),
                          "nonce": okm[32:].hex(), "next_chain_key": nxt.hex()})
            key = nxt
        ratchets.append({"chain_key": chain_key.hex(), "steps": steps})
    return {
        "description": "Length-prefixed fields, the sender-key ratchet and message keys "
                       "(computed with hmac/hashlib only).",
        "fields": [{"label": label, "parts": [p.hex() for p in parts],
                    "encoded": _fields(label, *parts).hex()} for label, parts in field_cases],
        "ratchets": ratchets,
        "hkdf": [{  # RFC 5869, test case 1
            "ikm": "0b" * 22, "salt": "000102030405060708090a0b0c",
            "info": "f0f1f2f3f4f5f6f7f8f9", "length": 42,
            "okm": _hkdf(bytes.fromhex("0b" * 22), bytes.fromhex("000102030405060708090a0b0c"),
                         bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"), 42).hex(),
        }],
        "base64": {
            "valid": [["", ""], ["AA==", "00"], ["AAE=", "0001"], ["AAEC", "000102"]],
            "invalid": ["A", "AA", "AA=", "AA=A", "A===", "AA==\n", " AA==", "AA-_", "QUJD\n"],
        },
    }


# ---------------------------------------------------------------- identities


def _le(value: int) -> str:
    return b64(value.to_bytes(32, "little"))


def invalid_keys(good: PublicIdentity) -> list[Json]:
    """Encodings both implementations must refuse (e2ee.bad_key), next to a good key."""
    dh, sig = b64(good.dh), b64(good.sig)
    x_small = [("all zero", 0), ("u = 1", 1), ("u = p - 1 (order 4)", P - 1),
               ("order 8, first", int.from_bytes(bytes.fromhex(
                   "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"), "little")),
               ("order 8, second", int.from_bytes(bytes.fromhex(
                   "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"), "little")),
               ("u = p (not canonical, is 0)", P), ("u = p + 1 (not canonical, is 1)", P + 1),
               ("top bit set", int.from_bytes(good.dh, "little") | 1 << 255)]
    y8 = int.from_bytes(bytes.fromhex(
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little")
    e_small = [("identity (y = 1)", 1), ("order 2 (y = p - 1)", P - 1),
               ("order 4 (y = 0)", 0), ("order 4, sign set", 1 << 255),
               ("order 8", y8), ("order 8, other sign", y8 ^ 1 << 255),
               ("order 8, negated", P - y8), ("negative zero (y = 1, sign set)", 1 | 1 << 255),
               ("y = p (not canonical)", P), ("off the curve (y = 2)", 2)]
    cases: list[Json] = [{"description": "good keys", "dh": dh, "sig": sig, "code": None}]
    cases += [{"description": f"dh {d}", "dh": _le(u), "sig": sig, "code": errors.BAD_KEY}
              for d, u in x_small]
    cases += [{"description": f"sig {d}", "dh": dh, "sig": _le(y), "code": errors.BAD_KEY}
              for d, y in e_small]
    cases += [{"description": "dh of 31 bytes", "dh": b64(good.dh[:31]), "sig": sig,
               "code": errors.BAD_KEY},
              {"description": "sig missing", "dh": dh, "code": errors.BAD_KEY}]
    for case in cases:  # the generator refuses to write a vector the code disagrees with
        try:
            PublicIdentity.from_wire({k: v for k, v in case.items() if k in ("dh", "sig")})
            got = None
        except E2EEError as exc:
            got = exc.code
        assert got == case["code"], case["description"]
    return cases


def epoch_keys(alice: Identity, bob: Identity) -> Json:
    own = OwnEpochKey(alice, 7, det_bytes("epoch-key/alice/7"))
    wire = {**alice.public.to_wire(), **own.public.to_wire()}
    cases: list[Json] = [{"description": "signed by its member", "private": det_bytes(
        "epoch-key/alice/7").hex(), "epoch": 7, "entry": wire, "code": None}]
    forged = OwnEpochKey(bob, 7, det_bytes("epoch-key/alice/7")).public.to_wire()
    small = {"ek": b64(bytes(32)), "ek_epoch": 7,
             "ek_sig": b64(alice.sign_epoch_key(7, bytes(32)))}
    for description, entry in [
        ("signed by another identity", {**wire, **forged}),
        ("moved to another epoch", {**wire, "ek_epoch": 8}),
        ("of small order, signed", {**wire, **small}),
        ("epoch 0", {**wire, "ek_epoch": 0}),
        ("signature missing", {k: v for k, v in wire.items() if k != "ek_sig"}),
    ]:
        cases.append({"description": description, "entry": entry, "code": errors.BAD_KEY})
    cases.append({"description": "no epoch key yet", "entry": alice.public.to_wire(),
                  "code": None, "absent": True})
    for case in cases:
        try:
            got = EpochKey.from_wire(case["entry"], PublicIdentity.from_wire(case["entry"]))
            code = None
            assert (got is None) == bool(case.get("absent"))
        except E2EEError as exc:
            code = exc.code
        assert code == case["code"], case["description"]
    return {"identity": identity_json(alice), "cases": cases}


def identities() -> Json:
    people = {name: identity(name) for name in ("alice", "bob", "carol")}
    roster = {"m-a": people["alice"].public, "m-b": people["bob"].public,
              "m-ä": people["carol"].public}
    signing = people["alice"]
    messages = [b"", b"hearth", bytes(range(256))]
    low_order = bytes(32)
    wire = {m: k.to_wire() for m, k in roster.items()}
    without = {m: k for m, k in roster.items() if m != "m-ä"}
    return {
        "description": "Identity keys from private bytes, fingerprints, safety codes, "
                       "Ed25519 signatures, X25519 agreement, keys refused on decode, epoch keys.",
        "identities": [{"name": n, **identity_json(i), "fingerprint": i.public.fingerprint()}
                       for n, i in people.items()],
        "safety_codes": [
            {"room_id": "room-1", "roster": wire, "code": safety_code("room-1", roster)},
            {"room_id": "room-2", "roster": wire, "code": safety_code("room-2", roster)},
            {"room_id": "room-1", "roster": {m: k.to_wire() for m, k in without.items()},
             "code": safety_code("room-1", without)},
        ],
        "signatures": [{"sig_private": signing.private_bytes()[1].hex(), "message": m.hex(),
                        "signature": signing.sign(m).hex()} for m in messages],
        "exchanges": [
            {"dh_private": people["alice"].private_bytes()[0].hex(),
             "peer_dh": people["bob"].public.dh.hex(),
             "shared": people["alice"].exchange(people["bob"].public.dh).hex()},
            {"dh_private": people["alice"].private_bytes()[0].hex(),
             "peer_dh": low_order.hex(), "error": errors.BAD_KEY},
        ],
        "public_keys": invalid_keys(people["alice"].public),
        "epoch_keys": epoch_keys(people["alice"], people["bob"]),
    }


# ---------------------------------------------------------------- sealed envelopes


def sender_key_json(key: SenderKey) -> Json:
    return {"epoch": key.epoch, "index": key.index, "chain_key": key.chain_key.hex(),
            "voice_key": key.voice.key.hex(), "voice_salt": key.voice.salt.hex(),
            "voice_seq": key.voice_seq}


def sender_key(epoch: int, index: int, n: int, voice_seq: int = 0) -> SenderKey:
    voice = VoiceKey(epoch, det_bytes(f"envelope-voice-key/{n}"), det_bytes(f"envelope-voice-salt/{n}", 4))
    return SenderKey(epoch, index, det_bytes(f"envelope-chain/{n}"), voice, voice_seq)


def envelopes() -> Json:
    alice, bob, carol = identity("alice"), identity("bob"), identity("carol")
    cases: list[Json] = []
    rejections: list[Json] = []
    for n, (epoch, index, voice_seq) in enumerate([(1, 0, 0), (3, 17, 4242), (2, 5, 2**32 - 1)]):
        key = sender_key(epoch, index, n, voice_seq)
        recipient_ek = det_bytes(f"envelope-epoch-key/{n}")
        ek = OwnEpochKey(bob, epoch, recipient_ek)
        rng = DetRng(f"envelope-ephemeral/{n}")
        body = seal_envelope(key.encode(), sender=alice, sender_id="m-a", recipient=bob.public,
                             recipient_ek=ek.public, recipient_id="m-b", room_id="room-1", rng=rng)
        cases.append({"room_id": "room-1", "sender_id": "m-a", "recipient_id": "m-b",
                      "sender": identity_json(alice), "recipient": identity_json(bob),
                      "epoch": epoch, "recipient_ek_private": recipient_ek.hex(),
                      "recipient_ek": ek.public.to_wire(),
                      "ephemeral_private": rng.draws[0], "payload": key.encode().hex(),
                      "sender_key": sender_key_json(key),
                      "body": b64(body)})
    good = base64.b64decode(cases[0]["body"])

    def flip(data: bytes, at: int) -> bytes:
        return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]

    base = {"room_id": "room-1", "sender_id": "m-a", "recipient_id": "m-b",
            "sender": identity_json(alice), "recipient": identity_json(bob),
            "recipient_ek_private": cases[0]["recipient_ek_private"], "epoch": 1}

    def reject(description: str, body: bytes, code: str, **over: Any) -> None:
        case = {**base, **over, "description": description, "body": b64(body), "code": code}
        got = None
        try:  # the generator refuses to write a vector the code disagrees with
            open_case(case)
        except E2EEError as exc:
            got = exc.code
        assert got == code, (description, got)
        rejections.append(case)

    reject("ciphertext byte flipped", flip(good, 45), errors.BAD_SIGNATURE)
    reject("ephemeral key byte flipped", flip(good, 9), errors.BAD_SIGNATURE)
    reject("signature byte flipped", flip(good, len(good) - 1), errors.BAD_SIGNATURE)
    reject("opened by another member", good, errors.BAD_SIGNATURE,
           recipient_id="m-c", recipient=identity_json(carol))
    reject("claimed by another sender", good, errors.BAD_SIGNATURE,
           sender_id="m-c", sender=identity_json(carol))
    reject("replayed into another room", good, errors.BAD_SIGNATURE, room_id="room-2")
    reject("replayed into a private corner", good, errors.BAD_SIGNATURE, room_id="room-1#corner")
    reject("opened with a copied epoch key of the next epoch", good, errors.BAD_SIGNATURE,
           recipient_ek_private=det_bytes("envelope-epoch-key/1").hex())
    reject("epoch rewritten (no key for it)", good[:5] + b"\x02" + good[6:], errors.STALE_EPOCH,
           epoch=2, held_epoch=1)
    reject("unknown version", b"\x02" + good[1:], errors.UNSUPPORTED)
    reject("room message type", b"\x01\x01" + good[2:], errors.MALFORMED)
    reject("truncated", good[:100], errors.MALFORMED)
    # A sender who signs junk: the signature holds, AES-GCM refuses.
    ek = OwnEpochKey(bob, 1, bytes.fromhex(base["recipient_ek_private"])).public
    header = good[:38]
    ctx = (b"room-1", b"m-a", b"m-b")
    junk = seal(bytes(32), bytes(12), b"not for you", fields("hearth-e2ee/v1/envelope-aad",
                                                               header, *ctx))
    signed = alice.sign(fields("hearth-e2ee/v1/envelope-sig", header, *ctx, bob.public.dh, ek.dh,
                               junk))
    reject("signed by the sender, wrong key inside", header + junk + signed, errors.TAMPERED)
    # A sender who signs a low-order ephemeral key.
    header = b"\x01\x02" + u32(1) + bytes(32)
    signed = alice.sign(fields("hearth-e2ee/v1/envelope-sig", header, *ctx, bob.public.dh, ek.dh,
                               junk))
    reject("signed low-order ephemeral key", header + junk + signed, errors.BAD_KEY)
    return {"description": "Pairwise sealed envelopes carrying sender keys, sealed to the "
                           "recipient's identity key and its epoch key together.",
            "cases": cases, "rejections": rejections}


def open_case(case: Json) -> bytes:
    """Open an envelope vector as a session would: our epoch key is known for `held_epoch`."""
    recipient = Identity(bytes.fromhex(case["recipient"]["dh_private"]),
                         bytes.fromhex(case["recipient"]["sig_private"]))
    held = case.get("held_epoch", case["epoch"])
    own = OwnEpochKey(recipient, held, bytes.fromhex(case["recipient_ek_private"]))

    def epoch_key(epoch: int) -> OwnEpochKey:
        if epoch != held:
            raise E2EEError(errors.STALE_EPOCH, "no epoch key")
        return own

    sender = Identity(bytes.fromhex(case["sender"]["dh_private"]),
                      bytes.fromhex(case["sender"]["sig_private"]))
    _, payload = open_envelope(base64.b64decode(case["body"]), recipient=recipient,
                               recipient_id=case["recipient_id"], epoch_key=epoch_key,
                               sender=sender.public, sender_id=case["sender_id"],
                               room_id=case["room_id"])
    return payload


# ---------------------------------------------------------------- room messages

TEXTS = [
    "",
    "Hello, everyone.",
    "Привет 👋 — مرحبا",
    "\ufeffstarts with a byte order mark",
    "x" * 27,  # 37 + 27 = 64: exactly one block
    "y" * 28,  # one byte over: two blocks
    "I hear you. " * 40,
]


def messages() -> Json:
    alice = identity("alice")
    cases: list[Json] = []
    rejections: list[Json] = []
    for n, text in enumerate(TEXTS):
        seed = det_bytes(f"message-seed/{n}")
        franking_key = det_bytes(f"franking-key/{n}")
        commitment = commit(franking_key, text)
        epoch, index = 1 + n % 3, n * 5
        msg = seal_room_message(sender=alice, room_id="room-1", sender_id="m-a", epoch=epoch,
                                index=index, seed=seed, text=text, franking_key=franking_key,
                                commitment=commitment)
        key, nonce = message_key(seed)
        cases.append({"room_id": "room-1", "sender_id": "m-a", "sender": identity_json(alice),
                      "epoch": epoch, "index": index, "seed": seed.hex(), "text": text,
                      "franking_key": franking_key.hex(), "commitment": b64(commitment),
                      "aes_key": key.hex(), "nonce": nonce.hex(),
                      "inner": encode_inner(text, franking_key).hex(),
                      "body": b64(msg.encode())})
    first = cases[1]
    seed = bytes.fromhex(first["seed"])
    good = base64.b64decode(first["body"])
    commitment = base64.b64decode(first["commitment"])
    base = {"room_id": "room-1", "sender_id": "m-a", "sender": identity_json(alice),
            "seed": first["seed"], "commitment": first["commitment"]}

    def reject(description: str, body: bytes, code: str, **over: Any) -> None:
        rejections.append({**base, **over, "description": description, "body": b64(body),
                           "code": code})

    def flip(data: bytes, at: int) -> bytes:
        return data[:at] + bytes([data[at] ^ 0x80]) + data[at + 1 :]

    reject("ciphertext byte flipped", flip(good, 20), errors.BAD_SIGNATURE)
    reject("epoch rewritten", flip(good, 5), errors.BAD_SIGNATURE)
    reject("index rewritten", flip(good, 9), errors.BAD_SIGNATURE)
    reject("signature byte flipped", flip(good, len(good) - 3), errors.BAD_SIGNATURE)
    reject("commitment swapped", good, errors.BAD_SIGNATURE,
           commitment=b64(commit(bytes(32), first["text"])))
    reject("spliced to another sender", good, errors.BAD_SIGNATURE, sender_id="m-b")
    reject("spliced to another room", good, errors.BAD_SIGNATURE, room_id="room-2")
    reject("forged by another identity", good, errors.BAD_SIGNATURE,
           sender=identity_json(identity("mallory")))
    reject("unknown version", b"\x07" + good[1:], errors.UNSUPPORTED)
    reject("envelope type", b"\x01\x02" + good[2:], errors.MALFORMED)
    reject("truncated", good[:60], errors.MALFORMED)

    # A malicious sender signs what it likes; these must still be refused after decryption.
    def signed_inner(description: str, inner: bytes, code: str, *, key_seed: bytes = seed,
                     commit_to: bytes = commitment) -> None:
        header = RoomMessage(1, 5, b"", b"").header
        ctx = (header, b"room-1", b"m-a", commit_to)
        key, nonce = message_key(key_seed)
        ciphertext = seal(key, nonce, inner, fields(AAD_LABEL, *ctx))
        signature = alice.sign(fields(SIG_LABEL, *ctx, ciphertext))
        reject(description, header + ciphertext + signature, code, commitment=b64(commit_to))

    fk = bytes.fromhex(first["franking_key"])
    signed_inner("signed, sealed under another key", encode_inner("hi", fk), errors.TAMPERED,
                 key_seed=bytes(32))
    signed_inner("commitment to other text", encode_inner("something else", fk),
                 errors.BAD_COMMITMENT)
    inner = bytearray(encode_inner(first["text"], fk))
    inner[-1] = 1
    signed_inner("non-zero padding", bytes(inner), errors.MALFORMED)
    signed_inner("unpadded", encode_inner(first["text"], fk)[: 37 + len(first["text"])],
                 errors.MALFORMED)
    signed_inner("length beyond the plaintext",
                 bytes([1]) + fk + u32(1000) + b"hi".ljust(27, b"\0"), errors.MALFORMED)
    signed_inner("unknown kind", bytes([9]) + encode_inner(first["text"], fk)[1:],
                 errors.UNSUPPORTED)
    bad_utf8 = bytes([1]) + fk + u32(2) + b"\xc3\x28"
    signed_inner("invalid UTF-8", bad_utf8 + bytes(64 - len(bad_utf8)), errors.MALFORMED)
    return {"description": "Room messages: one text under one message key, signed.",
            "cases": cases, "rejections": rejections}


# ---------------------------------------------------------------- franking


def franking() -> Json:
    server_key = det_bytes("server-franking-key")
    commitments: list[Json] = []
    for n, text in enumerate(TEXTS[:4]):
        fk = det_bytes(f"franking-key/{n}")
        commitments.append({"franking_key": fk.hex(), "text": text,
                            "commitment": commit(fk, text).hex()})
    tags: list[Json] = []
    for n, (room, sender, seq, ts) in enumerate([("room-1", "m-a", 1, 1764095400123),
                                                 ("Zimmer ☕", "m-ä", 2**53, 0),
                                                 ("r", "s", 0, 2**64 - 1)]):
        c = bytes.fromhex(commitments[n]["commitment"])
        tags.append({"server_key": server_key.hex(), "commitment": c.hex(), "room_id": room,
                     "sender_id": sender, "seq": str(seq), "ts": str(ts),
                     "tag": server_tag(server_key, c, room, sender, seq, ts).hex()})
    good: Json = {"plaintext": commitments[1]["text"], "franking_key": commitments[1]["franking_key"],
            "commitment": commitments[1]["commitment"], "room_id": "room-1",
            "sender_id": "m-a", "seq": 42, "ts": 1764095400123}
    good["tag"] = server_tag(server_key, bytes.fromhex(good["commitment"]), "room-1", "m-a", 42,
                             1764095400123).hex()
    reports: list[Json] = [
        {**good, "description": "genuine", "code": None},
        {**good, "description": "altered text", "plaintext": "Hello, everyone!",
         "code": errors.FRANKING_BAD_COMMITMENT},
        {**good, "description": "swapped sender", "sender_id": "m-b",
         "code": errors.FRANKING_BAD_TAG},
        {**good, "description": "other seq", "seq": 43, "code": errors.FRANKING_BAD_TAG},
        {**good, "description": "other time", "ts": 1764095400124,
         "code": errors.FRANKING_BAD_TAG},
        {**good, "description": "other room", "room_id": "room-2",
         "code": errors.FRANKING_BAD_TAG},
        {**good, "description": "forged tag", "tag": _hmac(bytes(32), b"forged").hex(),
         "code": errors.FRANKING_BAD_TAG},
        {**good, "description": "other franking key",
         "franking_key": commitments[2]["franking_key"], "code": errors.FRANKING_BAD_COMMITMENT},
        {**good, "description": "short franking key", "franking_key": "00" * 16,
         "code": errors.FRANKING_MALFORMED},
    ]
    for report in reports:  # the generator refuses to write a vector the code disagrees with
        code = None
        try:
            verify_report(server_key, plaintext=report["plaintext"],
                          franking_key=bytes.fromhex(report["franking_key"]),
                          commitment=bytes.fromhex(report["commitment"]),
                          tag=bytes.fromhex(report["tag"]), room_id=report["room_id"],
                          sender_id=report["sender_id"], seq=report["seq"], ts=report["ts"])
        except E2EEError as exc:
            code = exc.code
        assert code == report["code"], (report["description"], code)
    return {"description": "Franking commitments, server tags (seq and ts as decimal strings, "
                           "u64) and report verification outcomes.",
            "server_key": server_key.hex(), "commitments": commitments, "tags": tags,
            "reports": reports}


# ---------------------------------------------------------------- voice frames


def voice() -> Json:
    derivations: list[Json] = []
    for n, (room, sender, epoch) in enumerate([("room-1", "m-a", 1), ("room-1", "m-a", 2),
                                               ("room-1", "m-b", 1), ("Zimmer ☕", "m-ä", 300)]):
        chain_key = det_bytes(f"voice-chain/{n}")
        key = VoiceKey.derive(chain_key, room_id=room, sender_id=sender, epoch=epoch)
        derivations.append({"chain_key": chain_key.hex(), "room_id": room, "sender_id": sender,
                            "epoch": epoch, "voice_key": key.key.hex(), "salt": key.salt.hex()})
    assert len({d["voice_key"] for d in derivations}) == len(derivations)

    def key_of(d: Json) -> VoiceKey:
        return VoiceKey(d["epoch"], bytes.fromhex(d["voice_key"]), bytes.fromhex(d["salt"]))

    frames: list[Json] = []
    for n, (d, seq, level, flags, size) in enumerate([
        (derivations[0], 0, 127, 0, 0),  # silence, empty payload
        (derivations[0], 1, 30, 1, 60),  # a typical 24 kbps frame
        (derivations[0], 2, 0, 3, 3),  # loudest, last frame of a talkspurt
        (derivations[3], 2**32 - 1, 64, 1, 1275),  # epoch 300 (low byte 44), largest seq and frame
    ]):
        key = key_of(d)
        opus = det_bytes(f"voice-opus/{n}", size)
        frame = seal_voice_frame(key, opus, room_id=d["room_id"], sender_id=d["sender_id"], seq=seq,
                                 level=level, flags=flags)
        frames.append({"room_id": d["room_id"], "sender_id": d["sender_id"], "epoch": d["epoch"],
                       "voice_key": d["voice_key"], "salt": d["salt"], "seq": seq, "level": level,
                       "flags": flags, "opus": opus.hex(), "nonce": key.nonce(seq).hex(),
                       "aad": voice_aad(frame, d["room_id"], d["sender_id"]).hex(),
                       "header": list(voice_header(frame)), "frame": frame.hex()})

    good = bytes.fromhex(frames[1]["frame"])
    base = {"room_id": "room-1", "sender_id": "m-a", "voice_key": frames[1]["voice_key"],
            "salt": frames[1]["salt"], "epoch": 1}
    openings: list[Json] = []

    def opening(description: str, frame: bytes, code: str | None, **over: Any) -> None:
        case = {**base, **over, "description": description, "frame": frame.hex(), "code": code}
        if code is None:
            case["opus"] = frames[1]["opus"]
        got: str | None = None
        try:  # the generator refuses to write a vector the code disagrees with
            opened = open_voice_frame(key_of(case), frame, room_id=case["room_id"],
                                      sender_id=case["sender_id"])
            assert opened.opus.hex() == frames[1]["opus"]
        except E2EEError as exc:
            got = exc.code
        assert got == code, (description, got)
        openings.append(case)

    def at(data: bytes, i: int, value: int) -> bytes:
        return data[:i] + bytes([value]) + data[i + 1 :]

    def flip(data: bytes, i: int, bit: int = 0x01) -> bytes:
        return at(data, i, data[i] ^ bit)

    opening("genuine", good, None)
    opening("slot stamped by the server", good[:4] + (513).to_bytes(2, "big") + good[6:], None)
    opening("speech flag cleared", flip(good, 1), errors.TAMPERED)
    opening("end flag set", flip(good, 1, 0x02), errors.TAMPERED)
    opening("level rewritten", flip(good, 2), errors.TAMPERED)
    opening("epoch byte rewritten", flip(good, 3), errors.TAMPERED)
    opening("seq rewritten", flip(good, 9), errors.TAMPERED)
    opening("seq high byte rewritten", flip(good, 6), errors.TAMPERED)
    opening("ciphertext byte flipped", flip(good, 12), errors.TAMPERED)
    opening("tag byte flipped", flip(good, len(good) - 1), errors.TAMPERED)
    opening("claimed by another sender", good, errors.TAMPERED, sender_id="m-b")
    opening("replayed into another room", good, errors.TAMPERED, room_id="room-2")
    opening("opened with the next epoch's key", good, errors.TAMPERED,
            voice_key=derivations[1]["voice_key"], salt=derivations[1]["salt"], epoch=2)
    opening("unknown version", at(good, 0, 2), errors.UNSUPPORTED)
    opening("reserved flag bit", flip(good, 1, 0x04), errors.MALFORMED)
    opening("level bit 7", flip(good, 2, 0x80), errors.MALFORMED)
    opening("truncated below header and tag", good[:25], errors.MALFORMED)
    opening("header only", good[:10], errors.MALFORMED)

    good_key = sender_key(2, 5, 2, 4242).encode()
    payloads: list[Json] = []
    for description, payload in [
        ("kind 0x03", good_key),
        ("kind 0x03, largest voice seq", sender_key(9, 0, 1, 2**32 - 1).encode()),
        ("kind 0x03 cut short", good_key[:-1]),
        ("kind 0x03 too long", good_key + b"\0"),
        ("kind 0x02 (no voice seq)", b"\x02" + good_key[1:-4]),
        ("kind 0x01 (chat only)", b"\x01" + good_key[1:41]),
        ("unknown kind", b"\x04" + good_key[1:]),
        ("empty", b""),
    ]:
        try:
            expect: Json = sender_key_json(SenderKey.decode(payload))
        except E2EEError as exc:
            expect = {"error": exc.code}
        payloads.append({"description": description, "payload": payload.hex(), "expect": expect})
    return {"description": "Voice keys (HKDF from the epoch-initial chain key), frames "
                           "(clear header, AES-256-GCM, nonce salt || u64 seq, AAD without "
                           "the slot), refusals, and sender-key payloads.",
            "derivations": derivations, "frames": frames, "openings": openings,
            "sender_keys": payloads}


# ---------------------------------------------------------------- a whole session


class Scenario:
    """Drives real GroupSessions and writes down every call and its outcome."""

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.sessions: dict[str, GroupSession] = {}
        self.rngs: dict[str, DetRng] = {}
        self.published: dict[str, dict[str, Any]] = {}  # what the server holds for each member
        self.steps: list[Json] = []

    def _run(self, step: Json, call: Callable[[], Json]) -> Json:
        try:
            expect = call()
        except E2EEError as exc:
            expect = {"error": exc.code}
        step["expect"] = expect
        self.steps.append(step)
        return expect

    def create(self, member: str) -> None:
        rng = self.rngs[member] = DetRng(f"session/{member}")
        self.sessions[member] = GroupSession(self.room_id, member, rng=rng)
        result = self._run({"member": member, "op": "create"},
                           lambda: {"public_keys": self.sessions[member].public_keys()})
        self.published[member] = result["public_keys"]

    def publish(self, member: str) -> None:
        """The member sends `keys`; the server keeps them for the roster."""
        result = self._run({"member": member, "op": "public_keys"},
                           lambda: {"public_keys": self.sessions[member].public_keys()})
        self.published[member] = result["public_keys"]

    def roster(self, members: list[str]) -> dict[str, dict[str, Any]]:
        return {m: self.published[m] for m in members}

    def update_roster(self, member: str, epoch: int, roster: dict[str, dict[str, Any]]
                      ) -> list[list[str]]:
        session = self.sessions[member]

        def call() -> Json:
            out = session.update_roster(epoch, roster)
            change = session.last_changes
            assert change is not None
            return {"envelopes": [list(e) for e in out], "changes": {
                "epoch": change.epoch, "epoch_advanced": change.epoch_advanced,
                "joined": list(change.joined), "left": list(change.left),
                "keys_changed": list(change.keys_changed), "ignored": list(change.ignored),
                "rotation_required": change.rotation_required,
                "undeliverable": list(change.undeliverable)}}

        result = self._run({"member": member, "op": "update_roster", "epoch": epoch,
                            "roster": roster}, call)
        envelopes: list[list[str]] = result.get("envelopes", [])
        return envelopes

    def advance(self, epoch: int, members: list[str], deliver: bool = True
                ) -> dict[str, list[list[str]]]:
        """What an honest server and clients do at an epoch: the roster, everyone's new epoch
        key, the roster again; the envelopes that come of it, delivered unless told not to."""
        outs = {}
        for m in members:
            outs[m] = list(self.update_roster(m, epoch, self.roster(members)))
            self.publish(m)
        for m in members:
            outs[m] += self.update_roster(m, epoch, self.roster(members))
        if deliver:
            for m, out in outs.items():
                self.deliver(m, out)
        return outs

    def deliver(self, sender: str, envelopes: list[list[str]]) -> None:
        for to, body in envelopes:
            self.receive_directed(to, sender, body)

    @property
    def sealed(self) -> dict[tuple[str, int, str], str]:
        """(sender, epoch, recipient) -> the last envelope body, as a server would record it."""
        out: dict[tuple[str, int, str], str] = {}
        for step in self.steps:
            if step["op"] == "update_roster":
                for to, body in step["expect"].get("envelopes", []):
                    out[(step["member"], step["epoch"], to)] = body
        return out

    def receive_directed(self, member: str, sender: str, body: str) -> Json:
        def call() -> Json:
            self.sessions[member].receive_directed(sender, body)
            return {"ok": True}

        return self._run({"member": member, "op": "receive_directed", "from": sender,
                          "body": body}, call)

    def close_previous_epoch(self, member: str) -> None:
        def call() -> Json:
            self.sessions[member].close_previous_epoch()
            return {"ok": True}

        self._run({"member": member, "op": "close_previous_epoch"}, call)

    def encrypt(self, member: str, text: str) -> Json:
        def call() -> Json:
            out = self.sessions[member].encrypt(text)
            return {"body": out.body, "commitment": out.commitment,
                    "franking_key": out.franking_key.hex(), "epoch": out.epoch,
                    "index": out.index}

        return self._run({"member": member, "op": "encrypt", "text": text}, call)

    def decrypt(self, member: str, sender: str, message: Json) -> Json:
        def call() -> Json:
            got = self.sessions[member].decrypt(sender, message["body"], message["commitment"])
            return {"text": got.text, "franking_key": got.franking_key.hex(),
                    "commitment": b64(got.commitment), "epoch": got.epoch, "index": got.index,
                    "kind": got.kind}

        return self._run({"member": member, "op": "decrypt", "from": sender,
                          "body": message["body"], "commitment": message["commitment"]}, call)

    def encrypt_voice(self, member: str, seq: int, *, level: int = 40, speech: bool = True,
                      end: bool = False) -> Json:
        opus = det_bytes(f"session-opus/{member}/{seq}", 40 + seq % 7)

        def call() -> Json:
            frame = self.sessions[member].encrypt_voice(opus, seq=seq, level=level, speech=speech,
                                                        end=end)
            return {"frame": frame.hex()}

        return self._run({"member": member, "op": "encrypt_voice", "opus": opus.hex(), "seq": seq,
                          "level": level, "speech": speech, "end": end}, call)

    def decrypt_voice(self, member: str, sender: str, frame: str) -> Json:
        def call() -> Json:
            got = self.sessions[member].decrypt_voice(sender, bytes.fromhex(frame))
            return {"opus": got.opus.hex(), "seq": got.seq, "level": got.level,
                    "flags": got.flags, "epoch": got.epoch}

        return self._run({"member": member, "op": "decrypt_voice", "from": sender,
                          "frame": frame}, call)

    def safety_code(self, member: str) -> str:
        result = self._run({"member": member, "op": "safety_code"},
                           lambda: {"code": self.sessions[member].safety_code()})
        code: str = result["code"]
        return code

    def fingerprint(self, member: str, of: str) -> None:
        self._run({"member": member, "op": "fingerprint", "of": of},
                  lambda: {"fingerprint": self.sessions[member].fingerprint(of)})


def session() -> Json:
    s = Scenario("room-1")
    for m in ("m-a", "m-b", "m-c"):
        s.create(m)
    s.decrypt("m-a", "m-b", {"body": "AA==", "commitment": "AA=="})  # no roster yet
    # Epoch 1: the roster, epoch keys published, the roster again: only then is anything sealed.
    s.update_roster("m-a", 1, s.roster(["m-a", "m-b"]))  # m-b has no epoch key yet: nothing
    s.update_roster("m-b", 1, s.roster(["m-a", "m-b"]))
    s.publish("m-a")
    s.publish("m-b")
    to_b = s.update_roster("m-a", 1, s.roster(["m-a", "m-b"]))
    to_a = s.update_roster("m-b", 1, s.roster(["m-a", "m-b"]))
    hello = s.encrypt("m-a", "Hello, everyone.")
    s.decrypt("m-b", "m-a", hello)  # before the sender key arrives: buffer and retry
    early_voice = s.encrypt_voice("m-a", 0)["frame"]
    s.decrypt_voice("m-b", "m-a", early_voice)  # no voice key yet either
    s.deliver("m-a", to_b)
    s.deliver("m-b", to_a)
    s.decrypt("m-b", "m-a", hello)
    s.decrypt_voice("m-b", "m-a", early_voice)

    # Voice both ways; the server stamps slots; replays, strangers, tampering are refused.
    talk = [s.encrypt_voice("m-a", seq, level=20 + seq, end=seq == 4)["frame"]
            for seq in range(1, 5)]
    s.decrypt_voice("m-b", "m-a", talk[1][:8] + "0007" + talk[1][12:])  # slot 7 stamped
    s.decrypt_voice("m-b", "m-a", talk[0])  # late, within the window
    s.decrypt_voice("m-b", "m-a", talk[1])  # the same frame again: replay
    s.decrypt_voice("m-b", "m-a", talk[3])
    s.decrypt_voice("m-b", "m-c", talk[2])  # not on the roster
    s.decrypt_voice("m-a", "m-a", talk[2])  # our own, echoed
    s.decrypt_voice("m-b", "m-a", talk[2][:4] + "7f" + talk[2][6:])  # level rewritten
    s.decrypt_voice("m-b", "m-a", talk[2][:6] + "02" + talk[2][8:])  # epoch byte rewritten
    s.decrypt_voice("m-b", "m-a", "02" + talk[2][2:])  # unknown version
    s.decrypt_voice("m-b", "m-a", talk[2][:40])  # truncated
    s.decrypt_voice("m-b", "m-a", talk[2])
    s.encrypt_voice("m-a", 4)  # the nonce would repeat: refused
    s.decrypt_voice("m-a", "m-b", s.encrypt_voice("m-b", 100, speech=False, level=127)["frame"])
    s.decrypt("m-a", "m-b", s.encrypt("m-b", "Привет 👋"))
    burst = [s.encrypt("m-a", f"burst {i}") for i in range(3)]
    for i in (2, 0, 1):  # out of order, within the window
        s.decrypt("m-b", "m-a", burst[i])
    s.decrypt("m-b", "m-a", burst[1])  # replay
    s.decrypt("m-b", "m-c", burst[1])  # not on the roster
    s.decrypt("m-a", "m-a", burst[1])  # our own, echoed
    tampered = dict(burst[0])
    raw = bytearray(base64.b64decode(tampered["body"]))
    raw[12] ^= 1
    tampered["body"] = b64(bytes(raw))
    s.decrypt("m-b", "m-a", tampered)

    # m-c joins without an epoch change (a server breaking the contract): it gets current
    # chains and voice seqs, so it reads and hears from now on only.
    s.advance(1, ["m-a", "m-b", "m-c"])
    s.receive_directed("m-b", "m-a", to_b[0][1])  # duplicate delivery: harmless
    s.decrypt("m-c", "m-a", hello)  # sent before m-c joined
    after_join = s.encrypt("m-a", "Welcome, m-c.")
    s.decrypt("m-c", "m-a", after_join)
    s.decrypt("m-b", "m-a", after_join)
    s.decrypt_voice("m-c", "m-a", talk[3])  # spoken before m-c held the key: refused
    s.decrypt_voice("m-c", "m-a", s.encrypt_voice("m-a", 5)["frame"])
    for m in ("m-a", "m-b", "m-c"):
        s.safety_code(m)
        s.fingerprint(m, "m-c")

    # m-b is removed: epoch 2. Messages of epoch 1 in flight open until the sender's epoch-2
    # key has arrived, or until the grace after the advance is over; never after.
    in_flight = s.encrypt("m-a", "sent just before the change")
    late = s.encrypt("m-a", "overtaken by the end of the grace")
    c_late = s.encrypt("m-c", "overtaken by my new key")
    old_b = s.encrypt("m-b", "last words of epoch 1")
    voice_in_flight = s.encrypt_voice("m-a", 6)["frame"]
    voice_late = s.encrypt_voice("m-a", 7)["frame"]
    outs = s.advance(2, ["m-a", "m-c"], deliver=False)
    voice_epoch_2 = s.encrypt_voice("m-a", 8)["frame"]
    s.decrypt_voice("m-c", "m-a", voice_epoch_2)  # m-c has no key for epoch 2 yet
    s.decrypt("m-c", "m-a", in_flight)  # the previous epoch still opens
    s.decrypt_voice("m-c", "m-a", voice_in_flight)
    s.close_previous_epoch("m-c")  # the grace is over
    s.decrypt("m-c", "m-a", late)
    s.decrypt_voice("m-c", "m-a", voice_late)
    s.deliver("m-c", outs["m-c"])
    s.decrypt("m-a", "m-c", c_late)  # m-c's epoch-2 key is here: its epoch 1 is closed
    s.deliver("m-a", outs["m-a"])
    s.decrypt_voice("m-c", "m-a", voice_epoch_2)
    s.decrypt("m-c", "m-b", old_b)  # m-b is gone from the roster
    secret = s.encrypt("m-a", "only for m-c")
    s.decrypt("m-c", "m-a", secret)
    s.decrypt("m-b", "m-a", secret)  # the removed member holds no key for epoch 2
    s.decrypt_voice("m-b", "m-a", voice_epoch_2)  # nor a voice key
    s.decrypt_voice("m-b", "m-a", voice_in_flight)  # epoch 1 it still had
    s.receive_directed("m-b", "m-a", s.sealed[("m-a", 1, "m-c")])  # m-c's envelope: not for m-b
    s.safety_code("m-a")
    s.safety_code("m-c")
    # The server re-sends m-a's epoch-1 sender key to m-c: that epoch is closed.
    s.receive_directed("m-c", "m-a", s.sealed[("m-a", 1, "m-c")])
    # It swaps m-a's keys for m-b's and back, then re-sends m-a's epoch-2 key: installed once.
    swapped = {**s.roster(["m-a", "m-c"]), "m-a": s.published["m-b"]}
    s.update_roster("m-c", 2, swapped)  # keys changed in the same epoch: like a leave
    s.encrypt("m-c", "not while someone who left holds my chain")
    s.update_roster("m-c", 2, s.roster(["m-a", "m-c"]))  # swapped back
    s.receive_directed("m-c", "m-a", outs["m-a"][0][1])  # the reinstall is refused
    s.decrypt("m-c", "m-a", secret)  # nothing of epoch 2 replays
    s.decrypt_voice("m-c", "m-a", voice_epoch_2)
    # It has m-a leave and come back in the same epoch: the same.
    s.update_roster("m-c", 2, s.roster(["m-c"]))
    s.update_roster("m-c", 2, s.roster(["m-a", "m-c"]))
    s.receive_directed("m-c", "m-a", outs["m-a"][0][1])

    # The server drops m-c without advancing the epoch: m-a refuses to send.
    s.update_roster("m-a", 2, s.roster(["m-a"]))
    s.encrypt("m-a", "must not be sent")
    s.encrypt_voice("m-a", 9)
    s.update_roster("m-a", 1, s.roster(["m-a"]))  # epochs never go backwards
    s.advance(3, ["m-a", "m-c"])
    s.encrypt("m-a", "sent again after rotation")
    s.encrypt_voice("m-a", 3)  # the seq rises for the whole session: 3 again is refused
    s.encrypt_voice("m-a", 10)
    # A roster that lies about our own keys; one with a malformed and a small-order entry:
    # those are ignored, and everyone else still gets our key.
    s.update_roster("m-a", 3, {"m-a": s.published["m-b"]})
    bad = {"m-x": {"dh": "AA==", "sig": "AA=="},
           "m-y": {**s.published["m-c"], "dh": b64(bytes(32))}}
    s.create("m-d")
    for m in ("m-a", "m-c", "m-d"):
        s.update_roster(m, 4, s.roster(["m-a", "m-c", "m-d"]))
        s.publish(m)
    s.update_roster("m-a", 4, {**s.roster(["m-a", "m-c", "m-d"]), **bad})
    return {"description": "A scripted room: join, messages, a newcomer, a removal, replays "
                           "and key swaps by the server, a server that forgets to rotate, "
                           "bad keys. Replay each member's rng draws in order.",
            "room_id": s.room_id, "rng": {m: r.draws for m, r in s.rngs.items()},
            "steps": s.steps}


def build() -> dict[str, Json]:
    return {"primitives": primitives(), "identity": identities(), "envelope": envelopes(),
            "message": messages(), "franking": franking(), "voice": voice(),
            "session": session()}


def render(data: Json) -> str:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=True) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for name, data in build().items():
        path = HERE / f"{name}.json"
        text = render(data)
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print("stale vectors:", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
