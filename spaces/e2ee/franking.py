"""Message franking: a reporter proves to the server who sent which text, and nothing more.

The sender commits to the text with a fresh key that travels inside the
ciphertext; the server, which sees only the commitment, binds it to the room,
the sender, the sequence number and the time with its own HMAC key (the tag).
To report, a recipient reveals text, franking key, commitment and tag; the
server recomputes both MACs. Stateless on the server: nothing about messages
that are never reported is kept.

    commitment = HMAC-SHA256(franking_key, fields(COMMITMENT_LABEL, utf8(text)))
    tag        = HMAC-SHA256(server_key, fields(TAG_LABEL, commitment, utf8(room_id),
                                                utf8(sender_id), u64(seq), u64(ts)))
"""

from __future__ import annotations

import hmac
from hashlib import sha256

from hearth.spaces.e2ee import errors
from hearth.spaces.e2ee.encoding import U32_MAX, U64_MAX, fields, u64, utf8
from hearth.spaces.e2ee.errors import E2EEError
from hearth.spaces.e2ee.primitives import equal, hmac_sha256

COMMITMENT_LABEL = "hearth-e2ee/v1/franking-commitment"
TAG_LABEL = "hearth-e2ee/v1/franking-tag"
FRANKING_KEY_LEN = 32
COMMITMENT_LEN = 32
TAG_LEN = 32
MIN_SERVER_KEY_LEN = 32


def commit(franking_key: bytes, text: str) -> bytes:
    """The sender's commitment to exactly these UTF-8 bytes (no normalisation)."""
    return hmac_sha256(franking_key, fields(COMMITMENT_LABEL, utf8(text)))


def commitment_matches(franking_key: bytes, text: str, commitment: bytes) -> bool:
    return equal(commit(franking_key, text), commitment)


def server_tag(
    server_key: bytes, commitment: bytes, room_id: str, sender_id: str, seq: int, ts: int
) -> bytes:
    """The server's stamp over one relayed room envelope; raises franking.malformed on bad input."""
    if len(server_key) < MIN_SERVER_KEY_LEN:
        raise ValueError("the server franking key must be at least 32 bytes")
    if len(commitment) != COMMITMENT_LEN:
        raise E2EEError(errors.FRANKING_MALFORMED, "commitment must be 32 bytes")
    # Done once per room message, so written out: exactly the bytes of
    # fields(TAG_LABEL, commitment, utf8(room_id), utf8(sender_id), u64(seq), u64(ts))
    # (tests/unit/test_perf_franking.py checks the two agree), MACed in one call.
    try:
        room, sender = utf8(room_id), utf8(sender_id)
        if (type(seq) is not int or type(ts) is not int or not 0 <= seq <= U64_MAX
                or not 0 <= ts <= U64_MAX or len(room) > U32_MAX or len(sender) > U32_MAX):
            data = fields(TAG_LABEL, commitment, room, sender, u64(seq), u64(ts))
        else:
            data = b"".join((_TAG_HEAD, commitment, len(room).to_bytes(4, "big"), room,
                             len(sender).to_bytes(4, "big"), sender, _U64_LEN,
                             seq.to_bytes(8, "big"), _U64_LEN, ts.to_bytes(8, "big")))
    except (E2EEError, ValueError):
        raise E2EEError(errors.FRANKING_MALFORMED, "room, sender, seq or ts out of range") from None
    keyed = _KEYED.get(server_key)
    if keyed is None:
        if len(_KEYED) >= 8:  # one key per deployment; a few in tests
            _KEYED.clear()
        keyed = _KEYED[server_key] = hmac.new(server_key, digestmod=sha256)
    mac = keyed.copy()  # the key's inner and outer state, computed once per key
    mac.update(data)
    return mac.digest()


# What every tag's MACed bytes start with: the label and the commitment's length (fields()).
_TAG_HEAD = fields(TAG_LABEL) + COMMITMENT_LEN.to_bytes(4, "big")
_U64_LEN = (8).to_bytes(4, "big")
_KEYED: dict[bytes, hmac.HMAC] = {}


def verify_report(
    server_key: bytes,
    *,
    plaintext: str,
    franking_key: bytes,
    commitment: bytes,
    tag: bytes,
    room_id: str,
    sender_id: str,
    seq: int,
    ts: int,
) -> None:
    """Accept a report only if the server stamped this commitment for this sender, and the
    commitment opens to this text. Raises franking.bad_tag / franking.bad_commitment."""
    if len(franking_key) != FRANKING_KEY_LEN or len(tag) != TAG_LEN:
        raise E2EEError(errors.FRANKING_MALFORMED, "franking key and tag must be 32 bytes")
    expected = server_tag(server_key, commitment, room_id, sender_id, seq, ts)
    if not equal(expected, tag):
        raise E2EEError(errors.FRANKING_BAD_TAG, "the server did not stamp this message so")
    try:
        opened = commitment_matches(franking_key, plaintext, commitment)
    except E2EEError:
        opened = False
    if not opened:
        raise E2EEError(errors.FRANKING_BAD_COMMITMENT, "the text does not match the commitment")
