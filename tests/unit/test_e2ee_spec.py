"""docs/e2ee.md, read literally: open the vectors with raw primitives and the documented layout.

Nothing from spaces.e2ee is imported here. If the code and the document
disagree about an offset, a label or a derivation, this file fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def enc(label: str, *parts: bytes) -> bytes:
    """The documented encoding: every field as u32 big-endian length, then the bytes."""
    out = struct.pack(">I", len(label)) + label.encode()
    for part in parts:
        out += struct.pack(">I", len(part)) + part
    return out


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=44, salt=salt, info=info).derive(ikm)
    return okm[:32], okm[32:]


def test_room_message_layout(vectors: dict[str, Any]) -> None:
    for case in vectors["message"]["cases"]:
        body = base64.b64decode(case["body"])
        commitment = base64.b64decode(case["commitment"])
        version, kind, epoch, index = struct.unpack(">BBII", body[:10])
        assert (version, kind, epoch, index) == (1, 1, case["epoch"], case["index"])
        header, ciphertext, signature = body[:10], body[10:-64], body[-64:]
        room, sender = case["room_id"].encode(), case["sender_id"].encode()
        Ed25519PublicKey.from_public_bytes(base64.b64decode(case["sender"]["sig"])).verify(
            signature, enc("hearth-e2ee/v1/message-sig", header, room, sender, commitment,
                           ciphertext))
        key, nonce = hkdf(bytes.fromhex(case["seed"]), bytes(32),
                          enc("hearth-e2ee/v1/message-key"))
        inner = AESGCM(key).decrypt(
            nonce, ciphertext, enc("hearth-e2ee/v1/message-aad", header, room, sender, commitment))
        assert len(inner) % 64 == 0
        assert inner[0] == 0x01
        franking_key = inner[1:33]
        (length,) = struct.unpack(">I", inner[33:37])
        text = inner[37 : 37 + length]
        assert inner[37 + length :] == bytes(len(inner) - 37 - length)
        assert 37 + length + 64 > len(inner)  # the padding is less than one block
        assert text.decode() == case["text"]
        assert hmac.new(franking_key, enc("hearth-e2ee/v1/franking-commitment", text),
                        hashlib.sha256).digest() == commitment


def test_sealed_envelope_layout(vectors: dict[str, Any]) -> None:
    for case in vectors["envelope"]["cases"]:
        body = base64.b64decode(case["body"])
        assert body[:2] == b"\x01\x02"
        (epoch,) = struct.unpack(">I", body[2:6])
        assert epoch == case["epoch"]
        header, ciphertext, signature = body[:38], body[38:-64], body[-64:]
        ephemeral = body[6:38]
        recipient_private = X25519PrivateKey.from_private_bytes(
            bytes.fromhex(case["recipient"]["dh_private"]))
        ek_private = X25519PrivateKey.from_private_bytes(bytes.fromhex(case["recipient_ek_private"]))
        recipient_dh = recipient_private.public_key().public_bytes_raw()
        recipient_ek = ek_private.public_key().public_bytes_raw()
        assert base64.b64encode(recipient_ek).decode() == case["recipient_ek"]["ek"]
        sender_sig = Ed25519PublicKey.from_public_bytes(base64.b64decode(case["sender"]["sig"]))
        # the epoch key is vouched for by its member's identity
        Ed25519PublicKey.from_public_bytes(base64.b64decode(case["recipient"]["sig"])).verify(
            base64.b64decode(case["recipient_ek"]["ek_sig"]),
            enc("hearth-e2ee/v1/epoch-key", struct.pack(">Q", epoch), recipient_ek))
        ctx = (case["room_id"].encode(), case["sender_id"].encode(),
               case["recipient_id"].encode())
        sender_sig.verify(signature, enc("hearth-e2ee/v1/envelope-sig", header, *ctx, recipient_dh,
                                         recipient_ek, ciphertext))
        peer = X25519PublicKey.from_public_bytes(ephemeral)
        shared = recipient_private.exchange(peer) + ek_private.exchange(peer)
        key, nonce = hkdf(shared, ephemeral + recipient_dh + recipient_ek,
                          enc("hearth-e2ee/v1/envelope-key", *ctx))
        payload = AESGCM(key).decrypt(nonce, ciphertext,
                                      enc("hearth-e2ee/v1/envelope-aad", header, *ctx))
        kind, key_epoch, index = struct.unpack(">BII", payload[:9])
        assert (kind, len(payload), key_epoch) == (3, 81, epoch)
        sender_key = case["sender_key"]
        assert index == sender_key["index"]
        assert payload[9:41].hex() == sender_key["chain_key"]
        assert payload[41:73].hex() == sender_key["voice_key"]
        assert payload[73:77].hex() == sender_key["voice_salt"]
        assert struct.unpack(">I", payload[77:81])[0] == sender_key["voice_seq"]
        assert len(body) == 38 + 81 + 16 + 64  # 199 bytes


def test_ratchet_and_franking_tag(vectors: dict[str, Any]) -> None:
    for ratchet in vectors["primitives"]["ratchets"]:
        chain_key = bytes.fromhex(ratchet["chain_key"])
        for s in ratchet["steps"]:
            assert hmac.new(chain_key, b"\x01", hashlib.sha256).hexdigest() == s["seed"]
            chain_key = hmac.new(chain_key, b"\x02", hashlib.sha256).digest()
            assert chain_key.hex() == s["next_chain_key"]
    for case in vectors["franking"]["tags"]:
        data = enc("hearth-e2ee/v1/franking-tag", bytes.fromhex(case["commitment"]),
                   case["room_id"].encode(), case["sender_id"].encode(),
                   struct.pack(">Q", int(case["seq"])), struct.pack(">Q", int(case["ts"])))
        tag = hmac.new(bytes.fromhex(case["server_key"]), data, hashlib.sha256).hexdigest()
        assert tag == case["tag"]


def test_fingerprint_and_safety_code(vectors: dict[str, Any]) -> None:
    for person in vectors["identity"]["identities"]:
        digest = hashlib.sha256(enc("hearth-e2ee/v1/fingerprint", base64.b64decode(person["dh"]),
                                    base64.b64decode(person["sig"]))).digest()
        hex_ = digest[:16].hex().upper()
        assert person["fingerprint"] == " ".join(hex_[i : i + 4] for i in range(0, 32, 4))
    for case in vectors["identity"]["safety_codes"]:
        parts = [case["room_id"].encode()]
        for member in sorted(case["roster"], key=lambda m: m.encode()):
            keys = case["roster"][member]
            parts += [member.encode(), base64.b64decode(keys["dh"]),
                      base64.b64decode(keys["sig"])]
        digest = hashlib.sha512(enc("hearth-e2ee/v1/safety-code", *parts)).digest()
        groups = [int.from_bytes(digest[i : i + 5], "big") % 100_000 for i in range(0, 50, 5)]
        assert case["code"] == " ".join(f"{g:05d}" for g in groups)


def test_voice_frame_layout(vectors: dict[str, Any]) -> None:
    v = vectors["voice"]
    for case in v["derivations"]:
        info = enc("hearth-e2ee/v1/voice-key", case["room_id"].encode(),
                   case["sender_id"].encode(), struct.pack(">Q", case["epoch"]))
        okm = HKDF(algorithm=hashes.SHA256(), length=36, salt=bytes(32), info=info).derive(
            bytes.fromhex(case["chain_key"]))
        assert okm.hex() == case["voice_key"] + case["salt"]
    for case in v["frames"]:
        frame = bytes.fromhex(case["frame"])
        version, flags, level, epoch_lo, slot, seq = struct.unpack(">BBBBHI", frame[:10])
        assert (version, flags, level, epoch_lo, slot, seq) == (
            1, case["flags"], case["level"], case["epoch"] % 256, 0, case["seq"])
        assert flags & ~0x03 == 0 and level <= 127
        salt = bytes.fromhex(case["salt"])
        nonce = salt + struct.pack(">Q", seq)
        stamped = frame[:4] + struct.pack(">H", 4242) + frame[6:]  # the server writes the slot
        aad = enc("hearth-e2ee/v1/voice-aad", stamped[0:4], stamped[6:10],
                  case["room_id"].encode(), case["sender_id"].encode())
        opus = AESGCM(bytes.fromhex(case["voice_key"])).decrypt(nonce, stamped[10:], aad)
        assert opus.hex() == case["opus"]
        assert len(frame) == 10 + len(opus) + 16
