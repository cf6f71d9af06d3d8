"""The one exception of the E2EE core, with stable string codes.

Callers branch on `code` (never on the message): the Python client maps codes
to user-facing notices and buffering decisions, and the browser module raises
the same codes, so both clients behave alike. Messages never carry key bytes
or plaintext.
"""

from __future__ import annotations

from typing import Final

# Codes, grouped by what the caller should do with them.
#
# Drop the input and carry on (it is broken, forged, replayed or too old):
MALFORMED: Final = "e2ee.malformed"  # not parseable: bad base64, wrong length, version or type
BAD_KEY: Final = "e2ee.bad_key"  # a public key is not 32 bytes or is a low-order point
BAD_SIGNATURE: Final = "e2ee.bad_signature"  # the Ed25519 signature does not verify
TAMPERED: Final = "e2ee.tampered"  # signed, but AES-GCM refuses it (sender or chain is wrong)
BAD_COMMITMENT: Final = "e2ee.bad_commitment"  # decrypted text does not match its commitment
REPLAY: Final = "e2ee.replay"  # this chain index was already decrypted
OUT_OF_WINDOW: Final = "e2ee.out_of_window"  # index too far behind or ahead of the chain
STALE_EPOCH: Final = "e2ee.stale_epoch"  # epoch older than the session keeps
FUTURE_EPOCH: Final = "e2ee.future_epoch"  # epoch implausibly far ahead of the roster
UNKNOWN_SENDER: Final = "e2ee.unknown_sender"  # sender is not on the current roster
OWN_MESSAGE: Final = "e2ee.own_message"  # the server echoed our own envelope back to us
UNSUPPORTED: Final = "e2ee.unsupported"  # well formed, but a kind this version does not know
CHAIN_CONFLICT: Final = "e2ee.chain_conflict"  # a second, different sender key for one epoch
# Buffer briefly and retry after the next roster update or directed envelope:
NO_SENDER_KEY: Final = "e2ee.no_sender_key"
# Session state problems the user should see:
NOT_READY: Final = "e2ee.not_ready"  # no roster yet, so no epoch and no sender key
ROTATION_REQUIRED: Final = "e2ee.rotation_required"  # a member left but the epoch did not advance
ROSTER_MISMATCH: Final = "e2ee.roster_mismatch"  # the roster shows other keys under our member id
CHAIN_EXHAUSTED: Final = "e2ee.chain_exhausted"  # 2**32 messages in one epoch
SEQ_REUSED: Final = "e2ee.seq_reused"  # a voice seq not above the last one under this key (nonce reuse)
# Report verification on the server (spaces.e2ee.franking):
FRANKING_BAD_TAG: Final = "franking.bad_tag"
FRANKING_BAD_COMMITMENT: Final = "franking.bad_commitment"
FRANKING_MALFORMED: Final = "franking.malformed"


class E2EEError(Exception):
    """Raised for every refusal of the E2EE core; `code` is the stable contract."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
