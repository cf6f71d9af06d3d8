"""GroupSession: one member's end-to-end state for one room, driven by the client.

Sans-IO: the client feeds in what the server said (roster + epoch, directed
envelopes, room envelopes) and sends what comes back. No clock, no sockets;
randomness comes from the injected `rng` so test vectors are reproducible.

Rules, all in `update_roster`:
- Epoch advanced (or first roster): draw a new sending chain (rotation) and
  send it to every other member; keep receiving chains of the previous epoch
  only, so messages in flight during the change still open.
- Same epoch, a member appeared or their keys changed: send them our current
  chain state, so they read from now on and never before.
- A member left or changed keys: drop every chain we hold from them.
- A member left but the epoch did not advance: the server failed to rotate;
  the leaver still holds our chain, so `encrypt` and `encrypt_voice` refuse
  (e2ee.rotation_required) until an epoch advance arrives.

Voice (voice.py): each rotation also derives our voice key for the epoch from
the new chain key; it travels with the chain in every sender key we seal.
Receivers keep the voice keys of the same epochs as the chains (this one and
the previous one), so frames in flight across a rotation still open.

Order of draws from `rng` (part of the test vectors): identity (X25519 32,
Ed25519 32) when none is given; a rotation draws the chain key (32) before
any envelope; each envelope draws its ephemeral key (32), envelopes in order
of member id UTF-8 bytes; each `encrypt` draws the franking key (32). Voice draws nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from hearth.spaces.e2ee import errors
from hearth.spaces.e2ee.chain import ReceivingChain, SenderKey, SendingChain
from hearth.spaces.e2ee.encoding import U32_MAX, b64decode, b64encode
from hearth.spaces.e2ee.envelope import open_envelope, seal_envelope
from hearth.spaces.e2ee.errors import E2EEError
from hearth.spaces.e2ee.franking import COMMITMENT_LEN, FRANKING_KEY_LEN, commit
from hearth.spaces.e2ee.identity import Identity, PublicIdentity, Rng, draw, safety_code, sort_members
from hearth.spaces.e2ee.message import RoomMessage, seal_room_message
from hearth.spaces.e2ee.voice import (
    VoiceFrame,
    VoiceKey,
    VoiceReceiver,
    check_seq,
    checked_header,
    open_voice_frame,
    seal_voice_frame,
    voice_flags,
)

# A sender may rotate before our roster update arrives (multi-node relays); accept
# sender keys a few epochs ahead, no further (a member must not make us hoard chains).
MAX_EPOCHS_AHEAD = 8


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A room envelope ready to send: `body` and `commitment` go on the wire as they are."""

    body: str
    commitment: str
    franking_key: bytes = field(repr=False)
    epoch: int
    index: int


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A verified, decrypted room message; keep `franking_key` and `commitment` to report it."""

    sender_id: str
    text: str = field(repr=False)
    franking_key: bytes = field(repr=False)
    commitment: bytes
    epoch: int
    index: int


@dataclass(frozen=True, slots=True)
class RosterChange:
    """What the last `update_roster` changed: the notices a client should show.

    `joined` → "new member joined"; `keys_changed` → "keys changed" (a new
    device, or a server swapping keys); `rotation_required` → the server did
    not advance the epoch when someone left; `ignored` → roster entries with
    malformed keys, treated as absent.
    """

    epoch: int
    epoch_advanced: bool
    joined: tuple[str, ...]
    left: tuple[str, ...]
    keys_changed: tuple[str, ...]
    ignored: tuple[str, ...]
    rotation_required: bool


class GroupSession:
    """Sender-key group encryption for one member of one room."""

    def __init__(
        self,
        room_id: str,
        member_id: str,
        identity: Identity | None = None,
        rng: Rng = os.urandom,
    ) -> None:
        self.room_id = room_id
        self.member_id = member_id
        self._rng = rng
        self.identity = identity if identity is not None else Identity.generate(rng)
        self.epoch: int | None = None
        self.last_changes: RosterChange | None = None
        self._floor_epoch = 0  # oldest epoch whose messages still open
        self._roster: dict[str, PublicIdentity] = {}
        self._own: SendingChain | None = None
        self._delivered: dict[str, PublicIdentity] = {}  # who holds our current chain, under which keys
        self._chains: dict[tuple[str, int], ReceivingChain] = {}
        self._rotation_required = False
        self._own_voice: VoiceKey | None = None
        self._voice_seq = -1  # the last seq sealed under _own_voice
        self._voices: dict[tuple[str, int], VoiceReceiver] = {}  # same keys as _chains

    def public_keys(self) -> dict[str, str]:
        """What to publish to the roster: {"dh": b64, "sig": b64}."""
        return self.identity.public.to_wire()

    def update_roster(self, epoch: int, roster: Mapping[str, Mapping[str, str]]) -> list[tuple[str, str]]:
        """Apply the server's epoch and roster; returns directed envelopes [(to, body_b64)]."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= U32_MAX:
            raise E2EEError(errors.MALFORMED, "epoch out of range")
        if self.epoch is not None and epoch < self.epoch:
            raise E2EEError(errors.STALE_EPOCH, "the roster's epoch went backwards")
        parsed: dict[str, PublicIdentity] = {}
        ignored: list[str] = []
        for member_id, keys in roster.items():
            try:
                parsed[member_id] = PublicIdentity.from_wire(keys)
            except E2EEError:
                ignored.append(member_id)
        me = self.member_id
        if me in ignored or parsed.get(me, self.identity.public) != self.identity.public:
            raise E2EEError(errors.ROSTER_MISMATCH, "the roster shows other keys under our member id")

        old = self._roster
        joined = tuple(m for m in sort_members(parsed) if m != me and m not in old)
        left = tuple(m for m in sort_members(old) if m != me and m not in parsed)
        keys_changed = tuple(m for m in sort_members(parsed) if m != me and m in old and old[m] != parsed[m])
        advanced = self.epoch is None or epoch > self.epoch
        if advanced:
            own = SendingChain.start(epoch, self._rng)  # drawn first: a failing rng changes nothing
            own_voice = VoiceKey.derive(own.chain_key, room_id=self.room_id, sender_id=me, epoch=epoch)
            self._floor_epoch = epoch if self.epoch is None else self.epoch
            self.epoch = epoch
            self._own = own
            self._own_voice = own_voice
            self._voice_seq = -1
            self._delivered = {}
            self._rotation_required = False
        elif left:
            self._rotation_required = True
        gone = {*left, *keys_changed}
        self._chains = {
            key: chain
            for key, chain in self._chains.items()
            if key[0] not in gone and key[1] >= self._floor_epoch
        }
        self._voices = {
            key: voice
            for key, voice in self._voices.items()
            if key[0] not in gone and key[1] >= self._floor_epoch
        }
        for member_id in gone:
            self._delivered.pop(member_id, None)
        self._roster = parsed
        self.last_changes = RosterChange(
            epoch=epoch,
            epoch_advanced=advanced,
            joined=joined,
            left=left,
            keys_changed=keys_changed,
            ignored=tuple(sort_members(ignored)),
            rotation_required=self._rotation_required,
        )
        return self._distribute() if me in parsed else []

    def _distribute(self) -> list[tuple[str, str]]:
        """Seal our current chain state to every member who does not hold it yet."""
        assert self._own is not None
        payload = self._own.sender_key(self._own_voice).encode()
        out: list[tuple[str, str]] = []
        for member_id in sort_members(self._roster):
            keys = self._roster[member_id]
            if member_id == self.member_id or self._delivered.get(member_id) == keys:
                continue
            body = seal_envelope(
                payload,
                sender=self.identity,
                sender_id=self.member_id,
                recipient=keys,
                recipient_id=member_id,
                room_id=self.room_id,
                rng=self._rng,
            )
            out.append((member_id, b64encode(body)))
            self._delivered[member_id] = keys
        return out

    def _sender(self, sender_id: str) -> PublicIdentity:
        if sender_id == self.member_id:
            raise E2EEError(errors.OWN_MESSAGE, "envelope claims to come from ourselves")
        keys = self._roster.get(sender_id)
        if keys is None:
            raise E2EEError(errors.UNKNOWN_SENDER, "sender is not on the roster")
        return keys

    def _check_epoch(self, epoch: int) -> int:
        if self.epoch is None:
            raise E2EEError(errors.NOT_READY, "no roster yet")
        if epoch < self._floor_epoch:
            raise E2EEError(errors.STALE_EPOCH, "epoch is older than the keys kept")
        if epoch > self.epoch + MAX_EPOCHS_AHEAD:
            raise E2EEError(errors.FUTURE_EPOCH, "epoch is too far ahead of the roster")
        return self.epoch

    def has_sender_key(self, sender_id: str) -> bool:
        """Whether messages `sender_id` sends in the current epoch can be opened."""
        return self.epoch is not None and (sender_id, self.epoch) in self._chains

    def receive_directed(self, sender_id: str, body_b64: str) -> None:
        """Install a sender key delivered to us; duplicates of a known chain are no-ops."""
        sender = self._sender(sender_id)
        payload = open_envelope(
            b64decode(body_b64),
            recipient=self.identity,
            recipient_id=self.member_id,
            sender=sender,
            sender_id=sender_id,
            room_id=self.room_id,
        )
        key = SenderKey.decode(payload)
        self._check_epoch(key.epoch)
        slot = (sender_id, key.epoch)
        existing = self._chains.get(slot)
        if existing is None:
            self._chains[slot] = ReceivingChain.from_sender_key(key)
            if key.voice is not None:
                self._voices[slot] = VoiceReceiver(key.voice)
        elif not existing.matches(key) or not _same_voice(self._voices.get(slot), key.voice):
            raise E2EEError(errors.CHAIN_CONFLICT, "a different sender key for the same epoch")

    def encrypt(self, text: str) -> OutgoingMessage:
        """Seal one chat text under our next message key; draws the franking key from rng."""
        if self._own is None:
            raise E2EEError(errors.NOT_READY, "no roster yet")
        if self._rotation_required:
            raise E2EEError(errors.ROTATION_REQUIRED, "a member left without an epoch change")
        index, seed, advanced = self._own.next()
        franking_key = draw(self._rng, FRANKING_KEY_LEN)
        commitment = commit(franking_key, text)
        message = seal_room_message(
            sender=self.identity,
            room_id=self.room_id,
            sender_id=self.member_id,
            epoch=self._own.epoch,
            index=index,
            seed=seed,
            text=text,
            franking_key=franking_key,
            commitment=commitment,
        )
        self._own = advanced
        return OutgoingMessage(
            body=b64encode(message.encode()),
            commitment=b64encode(commitment),
            franking_key=franking_key,
            epoch=message.epoch,
            index=index,
        )

    def decrypt(self, sender_id: str, body_b64: str, commitment_b64: str) -> ReceivedMessage:
        """Verify, decrypt and check one room envelope; the chain moves only on success.

        e2ee.no_sender_key means the sender's key has not arrived yet: buffer
        the envelope briefly and retry after the next directed envelope.
        """
        sender = self._sender(sender_id)
        commitment = b64decode(commitment_b64, length=COMMITMENT_LEN)
        message = RoomMessage.decode(b64decode(body_b64))
        message.verify(sender, room_id=self.room_id, sender_id=sender_id, commitment=commitment)
        current = self._check_epoch(message.epoch)
        chain = self._chains.get((sender_id, message.epoch))
        if chain is None:
            if message.epoch < current:
                raise E2EEError(errors.STALE_EPOCH, "no key kept for that epoch")
            raise E2EEError(errors.NO_SENDER_KEY, "the sender's key has not arrived yet")
        seed, advanced = chain.take(message.index)
        text, franking_key = message.open(
            seed, room_id=self.room_id, sender_id=sender_id, commitment=commitment
        )
        self._chains[(sender_id, message.epoch)] = advanced
        return ReceivedMessage(
            sender_id=sender_id,
            text=text,
            franking_key=franking_key,
            commitment=commitment,
            epoch=message.epoch,
            index=message.index,
        )

    def encrypt_voice(self, opus: bytes, *, seq: int, level: int, speech: bool, end: bool = False) -> bytes:
        """Seal one Opus frame under our voice key for this epoch; the whole frame, slot 0.

        `seq` must rise under one key (e2ee.seq_reused otherwise): the nonce is
        derived from it, and a repeated nonce would break AES-GCM.
        """
        if self._own is None or self._own_voice is None:
            raise E2EEError(errors.NOT_READY, "no roster yet")
        if self._rotation_required:
            raise E2EEError(errors.ROTATION_REQUIRED, "a member left without an epoch change")
        flags = voice_flags(speech=speech, end=end)
        if check_seq(seq) <= self._voice_seq:
            raise E2EEError(errors.SEQ_REUSED, "voice seq must rise under one key")
        frame = seal_voice_frame(
            self._own_voice, opus, room_id=self.room_id, sender_id=self.member_id,
            seq=seq, level=level, flags=flags,
        )
        self._voice_seq = seq
        return frame

    def decrypt_voice(self, sender_id: str, frame: bytes) -> VoiceFrame:
        """Open one voice frame from `sender_id` (known from the slot the server stamped).

        Refusals: e2ee.own_message / unknown_sender, malformed / unsupported
        header, no_sender_key (no key for that epoch: drop, or hold a few frames
        until the next receive_directed), unsupported (the sender sent no voice
        key), replay / out_of_window, tampered. Only success moves the window.
        """
        self._sender(sender_id)
        header = checked_header(frame)
        receiver = self._voice_receiver(sender_id, header.epoch_lo)
        receiver.check(header.seq)
        opened = open_voice_frame(receiver.key, frame, room_id=self.room_id, sender_id=sender_id)
        receiver.mark(header.seq)
        return opened

    def _voice_receiver(self, sender_id: str, epoch_lo: int) -> VoiceReceiver:
        """The kept key whose epoch ends in `epoch_lo`; the newest if 256 epochs apart."""
        if self.epoch is None:
            raise E2EEError(errors.NOT_READY, "no roster yet")
        newest = self.epoch + MAX_EPOCHS_AHEAD
        epoch = self._floor_epoch + ((epoch_lo - self._floor_epoch) & 0xFF)
        candidates = []
        while epoch <= newest:
            candidates.append(epoch)
            epoch += 256
        for epoch in reversed(candidates):
            receiver = self._voices.get((sender_id, epoch))
            if receiver is not None:
                return receiver
        if any((sender_id, epoch) in self._chains for epoch in candidates):
            raise E2EEError(errors.UNSUPPORTED, "the sender's key carries no voice key")
        raise E2EEError(errors.NO_SENDER_KEY, "no voice key for that sender and epoch")

    def fingerprint(self, member_id: str) -> str:
        """A member's key fingerprint (ours included), for the member list."""
        if member_id == self.member_id:
            return self.identity.public.fingerprint()
        keys = self._roster.get(member_id)
        if keys is None:
            raise E2EEError(errors.UNKNOWN_SENDER, "member is not on the roster")
        return keys.fingerprint()

    def safety_code(self) -> str:
        """The room's safety code at this epoch; equal on every honest member's screen."""
        if self.epoch is None:
            raise E2EEError(errors.NOT_READY, "no roster yet")
        roster = {**self._roster, self.member_id: self.identity.public}
        return safety_code(self.room_id, self.epoch, roster)


def _same_voice(held: VoiceReceiver | None, sent: VoiceKey | None) -> bool:
    """A re-sent sender key must carry the voice key we hold (or none, if we hold none)."""
    if held is None or sent is None:
        return held is None and sent is None
    return held.key.matches(sent)
