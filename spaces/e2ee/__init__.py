"""End-to-end encryption for group chat and voice: sender keys, sealed envelopes, franking.

    client (Python: session.py / browser: web/static/js/e2ee.js)
        │ public_keys() ─────────────────► `keys`: identity + signed epoch key (every epoch)
        │ update_roster(epoch, roster) ──► directed envelopes (to one member, per epoch key)
        │ encrypt(text) ─────────────────► room envelope {body, commitment}
        │ encrypt_voice(opus, seq=…) ────► binary voice frame (clear 10-byte header, slot 0)
        ▼
    server: relays opaquely, stamps from/seq/ts and a franking tag (franking.server_tag)
        ▼
    other clients: receive_directed(...) installs a sender key (and voice key);
                   decrypt(...) / decrypt_voice(...) open

    identity.py    per-session X25519 + Ed25519 keys, per-epoch keys, fingerprints, safety code
    points.py      public keys refused on decode: non-canonical, off-curve, small order
    envelope.py    pairwise sealed envelopes (two X25519 → HKDF-SHA256 → AES-256-GCM, signed)
    chain.py       sender-key chains: forward ratchet, skipped-key window, replay refusal
    message.py     room message layout: header, AAD, padding, signature
    voice.py       voice frames: clear header, per-epoch voice key, seq nonce, replay window
    franking.py    commitments, the server's tag, report verification
    session.py     GroupSession: one member's state for one room or private corner (sans-IO)
    encoding.py    length-prefixed fields, integers, strict base64
    primitives.py  HMAC, HKDF, AES-GCM behind one function each
    errors.py      E2EEError and its stable codes

No I/O, no clock, no Twisted: randomness is injected (rng(n) -> n bytes) so
tests/vectors/*.json are reproducible in Python and in the browser module.
The protocol and its threat model are in docs/e2ee.md.
"""

from hearth.spaces.e2ee.errors import E2EEError
from hearth.spaces.e2ee.franking import server_tag, verify_report
from hearth.spaces.e2ee.identity import Identity, PublicIdentity, safety_code
from hearth.spaces.e2ee.session import GroupSession, OutgoingMessage, ReceivedMessage, RosterChange
from hearth.spaces.e2ee.voice import VoiceFrame, VoiceHeader, voice_header

__all__ = [
    "E2EEError",
    "GroupSession",
    "Identity",
    "OutgoingMessage",
    "PublicIdentity",
    "ReceivedMessage",
    "RosterChange",
    "VoiceFrame",
    "VoiceHeader",
    "safety_code",
    "server_tag",
    "verify_report",
    "voice_header",
]
