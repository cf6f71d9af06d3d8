"""GroupSession: one member's end-to-end state for one room, driven by the client.

Sans-IO: the client feeds in what the server said (roster + epoch, directed
envelopes, room envelopes) and sends what comes back. No clock, no sockets;
randomness comes from the injected `rng` so test vectors are reproducible.

Rules, all in `update_roster` and `receive_directed`:
- Epoch advanced (or first roster): draw a new sending chain (rotation) and
  our epoch key for the epoch (publish it: `public_keys()`); keep receiving
  chains of the previous epoch only, so messages in flight still open.
- Our chain goes to every other member as soon as the roster shows their
  epoch key for our epoch, sealed to their identity key and that epoch key
  together. A member who joined in the same epoch (a server that did not
  advance) gets our current chain state: they read from now on, never before.
- A member left, or their identity keys changed: drop every chain we hold
  from them. If the epoch did not advance with it, the old holder still has
  our chain: `encrypt` and `encrypt_voice` refuse (e2ee.rotation_required)
  and nothing is sealed until an epoch advance arrives.
- A sender key is installed once per (sender, epoch), for the life of the
  session: a second one for a chain we hold must be the same chain (a
  duplicate), and one for a chain we dropped is e2ee.replay. So a server that
  swaps a member's keys and back, or re-sends an old envelope, replays nothing.
- A sender's new-epoch key closes its previous epoch here: its older
  messages and voice are refused from then on. `close_previous_epoch()` closes
  every previous epoch (the client calls it a few seconds after an advance).

Voice (voice.py): each rotation also derives our voice key for the epoch from
the new chain key; it travels with the chain in every sender key we seal,
with the seq of our next frame, below which receivers open nothing. The seq
only rises, for the whole session.

Private corners: `sub_session(corner)` is a GroupSession for "<room>#<corner>"
with the same identity and epoch keys and chains of its own, so the room's
members never hold a key of what is said there.

Order of draws from `rng` (part of the test vectors): identity (X25519 32,
Ed25519 32) when none is given; a rotation draws the chain key (32), then our
epoch key for that epoch (32, unless a sub-session's room already drew it),
before any envelope; each envelope draws its ephemeral key (32), envelopes in
order of member id UTF-8 bytes; each `encrypt` draws the franking key (32).
Voice draws nothing.
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
from hearth.spaces.e2ee.identity import (
    EpochKey,
    EpochKeys,
    Identity,
    OwnEpochKey,
    PublicIdentity,
    Rng,
    draw,
    safety_code,
    sort_members,
)
from hearth.spaces.e2ee.message import TEXT_KIND, RoomMessage, seal_room_message
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

# A sender may rotate before our roster update arrives (multi-node relays); its messages for a
# few epochs ahead wait for its key, further ahead are refused (nobody makes us hoard them).
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
    kind: int = TEXT_KIND


@dataclass(frozen=True, slots=True)
class RosterChange:
    """What the last `update_roster` changed: the notices a client should show.

    `joined` → "new member joined"; `keys_changed` → "keys changed" (a new
    identity: another device, or a server swapping keys); `rotation_required`
    → someone left or changed keys and the epoch did not advance; `ignored` →
    roster entries with malformed, small-order or unsigned keys, treated as
    absent; `undeliverable` → members our chain could not be sealed to.
    """

    epoch: int
    epoch_advanced: bool
    joined: tuple[str, ...]
    left: tuple[str, ...]
    keys_changed: tuple[str, ...]
    ignored: tuple[str, ...]
    rotation_required: bool
    undeliverable: tuple[str, ...] = ()


def _parse_entry(keys: object) -> tuple[PublicIdentity, EpochKey | None]:
    """One roster entry: the identity, and its epoch key if it has published one."""
    identity = PublicIdentity.from_wire(keys)  # type: ignore[arg-type]
    return identity, EpochKey.from_wire(keys, identity)  # type: ignore[arg-type]


class GroupSession:
    """Sender-key group encryption for one member of one room (or one private corner)."""

    def __init__(
        self,
        room_id: str,
        member_id: str,
        identity: Identity | None = None,
        rng: Rng = os.urandom,
        *,
        epoch_keys: EpochKeys | None = None,
    ) -> None:
        self.room_id = room_id
        self.member_id = member_id
        self._rng = rng
        self.identity = identity if identity is not None else Identity.generate(rng)
        # A private corner shares its room's epoch keys; only the owner forgets old ones.
        self._owns_epoch_keys = epoch_keys is None
        self._epoch_keys = epoch_keys if epoch_keys is not None else EpochKeys(self.identity)
        self.epoch: int | None = None
        self.last_changes: RosterChange | None = None
        self._floor_epoch = 0  # oldest epoch whose messages still open
        self._roster: dict[str, PublicIdentity] = {}
        self._their_epoch_keys: dict[str, EpochKey] = {}  # for our current epoch only
        self._own: SendingChain | None = None
        # who holds our current chain, under which identity and epoch key
        self._delivered: dict[str, tuple[PublicIdentity, bytes]] = {}
        self._chains: dict[tuple[str, int], ReceivingChain] = {}
        self._installed: set[tuple[str, int]] = set()  # every (sender, epoch) ever installed
        self._rotation_required = False
        self._own_voice: VoiceKey | None = None
        self._voice_seq = -1  # the last seq we sealed, for the whole session
        self._voices: dict[tuple[str, int], VoiceReceiver] = {}  # same keys as _chains

    def sub_session(self, scope: str) -> GroupSession:
        """A session for "<room>#<scope>" (a private corner): same identity and epoch keys,
        chains of its own. Its messages never open in the room's session, nor the other way."""
        return GroupSession(f"{self.room_id}#{scope}", self.member_id, self.identity, self._rng,
                            epoch_keys=self._epoch_keys)

    def public_keys(self) -> dict[str, object]:
        """What to publish with `keys`: {"dh", "sig"}, and once an epoch is known our signed
        epoch key for it {"ek", "ek_epoch", "ek_sig"}. Publish again after every advance."""
        keys: dict[str, object] = dict(self.identity.public.to_wire())
        if self.epoch is not None:
            keys |= self._epoch_keys.for_epoch(self.epoch, self._rng).public.to_wire()
        return keys

    def update_roster(self, epoch: int, roster: Mapping[str, Mapping[str, object]]
                      ) -> list[tuple[str, str]]:
        """Apply the server's epoch and roster; returns directed envelopes [(to, body_b64)]."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= U32_MAX:
            raise E2EEError(errors.MALFORMED, "epoch out of range")
        if self.epoch is not None and epoch < self.epoch:
            raise E2EEError(errors.STALE_EPOCH, "the roster's epoch went backwards")
        parsed: dict[str, PublicIdentity] = {}
        epoch_keys: dict[str, EpochKey] = {}
        ignored: list[str] = []
        for member_id, keys in roster.items():
            try:
                parsed[member_id], ek = _parse_entry(keys)
            except E2EEError:
                ignored.append(member_id)
                continue
            if ek is not None and ek.epoch == epoch:
                epoch_keys[member_id] = ek
        me = self.member_id
        if me in ignored or parsed.get(me, self.identity.public) != self.identity.public:
            raise E2EEError(errors.ROSTER_MISMATCH, "the roster shows other keys under our member id")

        old = self._roster
        joined = tuple(m for m in sort_members(parsed) if m != me and m not in old)
        left = tuple(m for m in sort_members(old) if m != me and m not in parsed)
        keys_changed = tuple(m for m in sort_members(parsed) if m != me and m in old and old[m] != parsed[m])
        advanced = self.epoch is None or epoch > self.epoch
        if advanced:
            # drawn first, chain then epoch key: a failing rng changes nothing
            own = SendingChain.start(epoch, self._rng)
            self._epoch_keys.for_epoch(epoch, self._rng)
            self._own_voice = VoiceKey.derive(own.chain_key, room_id=self.room_id, sender_id=me,
                                              epoch=epoch)
            self._floor_epoch = epoch if self.epoch is None else self.epoch
            self.epoch = epoch
            self._own = own
            self._delivered = {}
            self._rotation_required = False
        elif left or keys_changed:
            self._rotation_required = True  # the old holder keeps our chain: treated as a leave
        gone = {*left, *keys_changed}
        self._chains = {k: c for k, c in self._chains.items()
                        if k[0] not in gone and k[1] >= self._floor_epoch}
        self._voices = {k: v for k, v in self._voices.items()
                        if k[0] not in gone and k[1] >= self._floor_epoch}
        self._installed = {k for k in self._installed if k[1] >= self._floor_epoch}
        if self._owns_epoch_keys:
            self._epoch_keys.forget_before(self._floor_epoch)
        for member_id in gone:
            self._delivered.pop(member_id, None)
        self._roster = parsed
        self._their_epoch_keys = epoch_keys
        envelopes, undeliverable = self._distribute() if me in parsed else ([], [])
        self.last_changes = RosterChange(
            epoch=epoch,
            epoch_advanced=advanced,
            joined=joined,
            left=left,
            keys_changed=keys_changed,
            ignored=tuple(sort_members(ignored)),
            rotation_required=self._rotation_required,
            undeliverable=tuple(undeliverable),
        )
        return envelopes

    def _distribute(self) -> tuple[list[tuple[str, str]], list[str]]:
        """Seal our current chain state to every member who can take it and does not hold it.

        Each member on its own: one that cannot be sealed to is listed and skipped, never
        stopping the others. Delivery is recorded once every envelope is built; a client
        whose send then fails calls `undelivered(member)`.
        """
        if self._own is None or self._own_voice is None or self._rotation_required:
            return [], []
        payload = self._own.sender_key(self._own_voice, self._voice_seq + 1).encode()
        out: list[tuple[str, str]] = []
        sealed: dict[str, tuple[PublicIdentity, bytes]] = {}
        undeliverable: list[str] = []
        for member_id in sort_members(self._roster):
            keys = self._roster[member_id]
            ek = self._their_epoch_keys.get(member_id)
            if member_id == self.member_id or ek is None:
                continue  # no epoch key for this epoch yet: sealed when it comes
            if self._delivered.get(member_id) == (keys, ek.dh):
                continue
            try:
                body = seal_envelope(
                    payload,
                    sender=self.identity,
                    sender_id=self.member_id,
                    recipient=keys,
                    recipient_ek=ek,
                    recipient_id=member_id,
                    room_id=self.room_id,
                    rng=self._rng,
                )
            except E2EEError:
                undeliverable.append(member_id)
                continue
            out.append((member_id, b64encode(body)))
            sealed[member_id] = (keys, ek.dh)
        self._delivered.update(sealed)
        return out, undeliverable

    def undelivered(self, member_id: str) -> None:
        """The client could not send our envelope to `member_id`: seal it again next time."""
        self._delivered.pop(member_id, None)

    def holds_our_key(self, member_id: str) -> bool:
        """Whether our current chain went out to `member_id` (the "waiting for keys" notice)."""
        return member_id in self._delivered

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

    def _own_epoch_key(self, epoch: int) -> OwnEpochKey:
        """Our epoch key for a received envelope: only epochs we published one for, still kept."""
        current = self._check_epoch(epoch)
        own = self._epoch_keys.get(epoch) if epoch <= current else None
        if own is None:
            code = errors.FUTURE_EPOCH if epoch > current else errors.STALE_EPOCH
            raise E2EEError(code, "we hold no epoch key for that epoch")
        return own

    def has_sender_key(self, sender_id: str) -> bool:
        """Whether messages `sender_id` sends in the current epoch can be opened."""
        return self.epoch is not None and (sender_id, self.epoch) in self._chains

    def receive_directed(self, sender_id: str, body_b64: str) -> None:
        """Install a sender key delivered to us; a duplicate of a held chain is a no-op."""
        sender = self._sender(sender_id)
        epoch, payload = open_envelope(
            b64decode(body_b64),
            recipient=self.identity,
            recipient_id=self.member_id,
            epoch_key=self._own_epoch_key,
            sender=sender,
            sender_id=sender_id,
            room_id=self.room_id,
        )
        key = SenderKey.decode(payload)
        if key.epoch != epoch:
            raise E2EEError(errors.MALFORMED, "the sender key is for another epoch than its envelope")
        slot = (sender_id, epoch)
        existing = self._chains.get(slot)
        if existing is not None:
            held = self._voices[slot].key
            if not existing.matches(key) or not held.matches(key.voice):
                raise E2EEError(errors.CHAIN_CONFLICT, "a different sender key for the same epoch")
            return
        if slot in self._installed:
            raise E2EEError(errors.REPLAY, "a sender key for that sender and epoch was installed before")
        self._installed.add(slot)
        self._chains[slot] = ReceivingChain.from_sender_key(key)
        self._voices[slot] = VoiceReceiver(key.voice, floor=key.voice_seq)
        for older in [k for k in self._chains if k[0] == sender_id and k[1] < epoch]:
            del self._chains[older]  # the sender moved on: its older epoch is closed
            self._voices.pop(older, None)

    def close_previous_epoch(self) -> None:
        """Refuse every epoch before the current one from now on (the grace after an advance)."""
        if self.epoch is None:
            return
        self._floor_epoch = self.epoch
        self._chains = {k: c for k, c in self._chains.items() if k[1] >= self.epoch}
        self._voices = {k: v for k, v in self._voices.items() if k[1] >= self.epoch}
        self._installed = {k for k in self._installed if k[1] >= self.epoch}
        if self._owns_epoch_keys:
            self._epoch_keys.forget_before(self.epoch)

    def encrypt(self, text: str, *, kind: int = TEXT_KIND) -> OutgoingMessage:
        """Seal one text (of a content kind, message.CONTENT_KINDS) under our next message key;
        draws the franking key from rng."""
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
            kind=kind,
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
            if message.epoch < current or (sender_id, message.epoch) in self._installed:
                raise E2EEError(errors.STALE_EPOCH, "no key kept for that epoch")
            if any(s == sender_id and e > message.epoch for s, e in self._chains):
                raise E2EEError(errors.STALE_EPOCH, "the sender has moved on to a newer epoch")
            raise E2EEError(errors.NO_SENDER_KEY, "the sender's key has not arrived yet")
        seed, advanced = chain.take(message.index)
        text, franking_key, kind = message.open(
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
            kind=kind,
        )

    def encrypt_voice(self, opus: bytes, *, seq: int, level: int, speech: bool, end: bool = False) -> bytes:
        """Seal one Opus frame under our voice key for this epoch; the whole frame, slot 0.

        `seq` must rise for the whole session (e2ee.seq_reused otherwise): the
        nonce is derived from it, and receivers refuse what is below the seq
        our sender key announced.
        """
        if self._own is None or self._own_voice is None:
            raise E2EEError(errors.NOT_READY, "no roster yet")
        if self._rotation_required:
            raise E2EEError(errors.ROTATION_REQUIRED, "a member left without an epoch change")
        flags = voice_flags(speech=speech, end=end)
        if check_seq(seq) <= self._voice_seq:
            raise E2EEError(errors.SEQ_REUSED, "voice seq must rise")
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
        until the next receive_directed), replay / out_of_window (including
        every seq below the one the sender key announced), tampered. Only
        success moves the window.
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
        newest_candidate = candidates[-1] if candidates else self._floor_epoch - 1
        if (newest_candidate < self.epoch or (sender_id, newest_candidate) in self._installed
                or any(s == sender_id and e > newest_candidate for s, e in self._voices)):
            raise E2EEError(errors.STALE_EPOCH, "that epoch's voice key is closed")
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
        """The room's safety code: equal on every honest member's screen, at every epoch."""
        if self.epoch is None:
            raise E2EEError(errors.NOT_READY, "no roster yet")
        roster = {**self._roster, self.member_id: self.identity.public}
        return safety_code(self.room_id, roster)
