// Runs tests/vectors/*.json against web/static/js/e2ee.js inside Chromium,
// and drives live browser sessions for the Python <-> JS interop test.
// Loaded by e2ee_page.html; test_browser_vectors.py calls window.runner.*.

import * as e2ee from "/js/e2ee.js";
import { Keep } from "/js/keep.js";

const { fromHex, toHex, b64decode, b64encode, E2EEError, Identity, PublicIdentity, GroupSession } = e2ee;

/** Reject if `promise` has not settled in `ms`: a stuck page fails the test, never hangs it. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function queueRng(draws) {
  const queue = [...draws];
  const rng = (n) => {
    const next = queue.shift();
    if (next === undefined) throw new Error("rng queue exhausted");
    const bytes = fromHex(next);
    if (bytes.length !== n) throw new Error(`rng asked for ${n} bytes, the vector drew ${bytes.length}`);
    return bytes;
  };
  rng.remaining = () => queue.length;
  return rng;
}

async function codeOf(fn) {
  try {
    await fn();
    return null;
  } catch (err) {
    if (err instanceof E2EEError) return err.code;
    return `unexpected ${err?.name}: ${err?.message}`;
  }
}

function canon(value) {
  if (Array.isArray(value)) return value.map(canon);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canon(value[k])]));
  }
  return value;
}

class Checker {
  constructor() {
    this.failures = [];
    this.counts = {};
  }

  eq(file, what, got, want) {
    this.counts[file] = (this.counts[file] ?? 0) + 1;
    const g = JSON.stringify(canon(got));
    const w = JSON.stringify(canon(want));
    if (g !== w) this.failures.push(`${file}: ${what}: got ${g}, want ${w}`);
  }

  async guard(file, what, fn) {
    try {
      await fn();
    } catch (err) {
      this.counts[file] = (this.counts[file] ?? 0) + 1;
      this.failures.push(`${file}: ${what}: threw ${err?.name}: ${err?.message}`);
    }
  }
}

const anyKey = new Uint8Array(32).fill(0x42);

async function identityFrom(json) {
  return Identity.fromPrivateBytes(fromHex(json.dh_private), fromHex(json.sig_private));
}

async function checkPrimitives(c, v) {
  const f = "primitives";
  for (const [i, t] of v.fields.entries()) {
    c.eq(f, `fields #${i}`, toHex(e2ee.fields(t.label, ...t.parts.map(fromHex))), t.encoded);
  }
  for (const [i, r] of v.ratchets.entries()) {
    let chainKey = fromHex(r.chain_key);
    for (const s of r.steps) {
      const [seed, next] = await e2ee.step(chainKey);
      const [key, nonce] = await e2ee.messageKey(seed);
      c.eq(f, `ratchet #${i} step ${s.index}`, [toHex(seed), toHex(next), toHex(key), toHex(nonce)], [s.seed, s.next_chain_key, s.aes_key, s.nonce]);
      chainKey = next;
    }
  }
  for (const h of v.hkdf) {
    const okm = await e2ee.hkdfSha256(fromHex(h.ikm), { salt: fromHex(h.salt), info: fromHex(h.info), length: h.length });
    c.eq(f, "hkdf", toHex(okm), h.okm);
  }
  for (const [text, hex] of v.base64.valid) {
    c.eq(f, `base64 decode ${JSON.stringify(text)}`, toHex(b64decode(text)), hex);
    c.eq(f, `base64 encode ${hex}`, b64encode(fromHex(hex)), text);
  }
  for (const text of v.base64.invalid) {
    c.eq(f, `base64 refuses ${JSON.stringify(text)}`, await codeOf(() => b64decode(text)), "e2ee.malformed");
  }
}

async function checkIdentity(c, v) {
  const f = "identity";
  for (const person of v.identities) {
    const ident = await identityFrom(person);
    c.eq(f, `${person.name} public keys`, ident.public.toWire(), { dh: person.dh, sig: person.sig });
    c.eq(f, `${person.name} fingerprint`, await ident.public.fingerprint(), person.fingerprint);
  }
  for (const [i, s] of v.safety_codes.entries()) {
    const roster = new Map(Object.entries(s.roster).map(([id, keys]) => [id, PublicIdentity.fromWire(keys)]));
    c.eq(f, `safety code #${i}`, await e2ee.safetyCode(s.room_id, roster), s.code);
  }
  for (const k of v.public_keys) {
    const keys = Object.fromEntries(["dh", "sig"].filter((n) => n in k).map((n) => [n, k[n]]));
    c.eq(f, `public keys: ${k.description}`, await codeOf(() => PublicIdentity.fromWire(keys)), k.code);
  }
  const ek = v.epoch_keys;
  const owner = await identityFrom(ek.identity);
  const own = await e2ee.OwnEpochKey.create(owner, 7, queueRng([ek.cases[0].private]));
  c.eq(f, "epoch key made", { ...owner.public.toWire(), ...own.public.toWire() }, ek.cases[0].entry);
  for (const k of ek.cases) {
    let got;
    try {
      const parsed = await e2ee.EpochKey.fromWire(k.entry, PublicIdentity.fromWire(k.entry));
      got = { code: null, absent: parsed === null };
    } catch (err) {
      got = { code: err instanceof E2EEError ? err.code : `unexpected ${err?.message}`, absent: false };
    }
    c.eq(f, `epoch key: ${k.description}`, got, { code: k.code, absent: Boolean(k.absent) });
  }
  for (const [i, s] of v.signatures.entries()) {
    const ident = await Identity.fromPrivateBytes(anyKey, fromHex(s.sig_private));
    const signature = await ident.sign(fromHex(s.message));
    c.eq(f, `signature #${i}`, toHex(signature), s.signature);
    c.eq(f, `signature #${i} verifies`, await codeOf(() => ident.public.verify(fromHex(s.signature), fromHex(s.message))), null);
    const forged = fromHex(s.signature);
    forged[0] ^= 1;
    c.eq(f, `forged signature #${i}`, await codeOf(() => ident.public.verify(forged, fromHex(s.message))), "e2ee.bad_signature");
  }
  for (const [i, x] of v.exchanges.entries()) {
    const ident = await Identity.fromPrivateBytes(fromHex(x.dh_private), anyKey);
    if (x.error) c.eq(f, `exchange #${i}`, await codeOf(() => ident.exchange(fromHex(x.peer_dh))), x.error);
    else c.eq(f, `exchange #${i}`, toHex(await ident.exchange(fromHex(x.peer_dh))), x.shared);
  }
}

function senderKeyJson(key) {
  return {
    epoch: key.epoch,
    index: key.index,
    chain_key: toHex(key.chainKey),
    voice_key: toHex(key.voice.key),
    voice_salt: toHex(key.voice.salt),
    voice_seq: key.voiceSeq,
  };
}

/** Open an envelope vector as a session would: our epoch key is held for `held_epoch` only. */
async function openCase(t) {
  const recipient = await identityFrom(t.recipient);
  const sender = await identityFrom(t.sender);
  const held = t.held_epoch ?? t.epoch;
  const own = await e2ee.OwnEpochKey.create(recipient, held, queueRng([t.recipient_ek_private]));
  const epochKey = async (epoch) => {
    if (epoch !== held) throw new E2EEError("e2ee.stale_epoch", "no epoch key");
    return own;
  };
  const [, payload] = await e2ee.openEnvelope(b64decode(t.body), {
    recipient,
    recipientId: t.recipient_id,
    epochKey,
    sender: sender.public,
    senderId: t.sender_id,
    roomId: t.room_id,
  });
  return payload;
}

async function checkEnvelopes(c, v) {
  const f = "envelope";
  for (const [i, t] of v.cases.entries()) await c.guard(f, `case #${i}`, async () => {
    const sender = await identityFrom(t.sender);
    const recipient = await identityFrom(t.recipient);
    const ek = await e2ee.OwnEpochKey.create(recipient, t.epoch, queueRng([t.recipient_ek_private]));
    c.eq(f, `epoch key #${i}`, ek.public.toWire(), t.recipient_ek);
    const body = await e2ee.sealEnvelope(fromHex(t.payload), {
      sender,
      senderId: t.sender_id,
      recipient: recipient.public,
      recipientEk: ek.public,
      recipientId: t.recipient_id,
      roomId: t.room_id,
      rng: queueRng([t.ephemeral_private]),
    });
    c.eq(f, `seal #${i}`, b64encode(body), t.body);
    const payload = await openCase(t);
    c.eq(f, `open #${i}`, toHex(payload), t.payload);
    c.eq(f, `sender key #${i}`, senderKeyJson(e2ee.SenderKey.decode(payload)), t.sender_key);
  });
  for (const t of v.rejections) {
    c.eq(f, `reject: ${t.description}`, await codeOf(() => openCase(t)), t.code);
  }
}

async function openMessage(t, signer) {
  const commitment = b64decode(t.commitment);
  const ctx = { roomId: t.room_id, senderId: t.sender_id, commitment };
  const message = e2ee.RoomMessage.decode(b64decode(t.body));
  await message.verify(signer, ctx);
  return (await message.open(fromHex(t.seed), ctx)).slice(0, 2);
}

async function checkMessages(c, v) {
  const f = "message";
  for (const [i, t] of v.cases.entries()) await c.guard(f, `case #${i}`, async () => {
    const sender = await identityFrom(t.sender);
    const frankingKey = fromHex(t.franking_key);
    c.eq(f, `commitment #${i}`, b64encode(await e2ee.commit(frankingKey, t.text)), t.commitment);
    c.eq(f, `inner #${i}`, toHex(e2ee.encodeInner(t.text, frankingKey)), t.inner);
    const [key, nonce] = await e2ee.messageKey(fromHex(t.seed));
    c.eq(f, `message key #${i}`, [toHex(key), toHex(nonce)], [t.aes_key, t.nonce]);
    const message = await e2ee.sealRoomMessage({
      sender,
      roomId: t.room_id,
      senderId: t.sender_id,
      epoch: t.epoch,
      index: t.index,
      seed: fromHex(t.seed),
      text: t.text,
      frankingKey,
      commitment: b64decode(t.commitment),
    });
    c.eq(f, `seal #${i}`, b64encode(message.encode()), t.body);
    const [text, fk] = await openMessage(t, sender.public);
    c.eq(f, `open #${i}`, [text, toHex(fk)], [t.text, t.franking_key]);
  });
  for (const t of v.rejections) {
    const signer = (await identityFrom(t.sender)).public;
    c.eq(f, `reject: ${t.description}`, await codeOf(() => openMessage(t, signer)), t.code);
  }
}

async function checkFranking(c, v) {
  const f = "franking";
  for (const [i, t] of v.commitments.entries()) {
    const fk = fromHex(t.franking_key);
    c.eq(f, `commitment #${i}`, toHex(await e2ee.commit(fk, t.text)), t.commitment);
    c.eq(f, `commitment #${i} opens`, await e2ee.commitmentMatches(fk, t.text, fromHex(t.commitment)), true);
    c.eq(f, `commitment #${i} other text`, await e2ee.commitmentMatches(fk, `${t.text}.`, fromHex(t.commitment)), false);
  }
  for (const [i, t] of v.tags.entries()) {
    const tag = await e2ee.serverTag(fromHex(t.server_key), fromHex(t.commitment), t.room_id, t.sender_id, BigInt(t.seq), BigInt(t.ts));
    c.eq(f, `tag #${i}`, toHex(tag), t.tag);
  }
  // The server verifies reports; recomputing the outcome here proves the encodings agree.
  for (const t of v.reports) {
    const code = await codeOf(async () => {
      if (fromHex(t.franking_key).length !== 32) throw new E2EEError("franking.malformed");
      const tag = await e2ee.serverTag(fromHex(v.server_key), fromHex(t.commitment), t.room_id, t.sender_id, t.seq, t.ts);
      if (!e2ee.bytesEqual(tag, fromHex(t.tag))) throw new E2EEError("franking.bad_tag");
      if (!(await e2ee.commitmentMatches(fromHex(t.franking_key), t.plaintext, fromHex(t.commitment)))) {
        throw new E2EEError("franking.bad_commitment");
      }
    });
    c.eq(f, `report: ${t.description}`, code, t.code);
  }
}

const voiceKeyOf = (t) => new e2ee.VoiceKey(t.epoch, fromHex(t.voice_key), fromHex(t.salt));

async function checkVoice(c, v) {
  const f = "voice";
  for (const [i, t] of v.derivations.entries()) {
    const key = await e2ee.VoiceKey.derive(fromHex(t.chain_key), { roomId: t.room_id, senderId: t.sender_id, epoch: t.epoch });
    c.eq(f, `derivation #${i}`, [toHex(key.key), toHex(key.salt)], [t.voice_key, t.salt]);
  }
  for (const [i, t] of v.frames.entries()) await c.guard(f, `frame #${i}`, async () => {
    const key = voiceKeyOf(t);
    const ctx = { roomId: t.room_id, senderId: t.sender_id };
    const frame = await e2ee.sealVoiceFrame(key, fromHex(t.opus), { ...ctx, seq: t.seq, level: t.level, flags: t.flags });
    c.eq(f, `seal #${i}`, toHex(frame), t.frame);
    c.eq(f, `nonce #${i}`, toHex(key.nonce(t.seq)), t.nonce);
    c.eq(f, `aad #${i}`, toHex(e2ee.voiceAad(frame, t.room_id, t.sender_id)), t.aad);
    const h = e2ee.voiceHeader(fromHex(t.frame));
    c.eq(f, `header #${i}`, [h.version, h.flags, h.level, h.epochLo, h.slot, h.seq], t.header);
    const got = await e2ee.openVoiceFrame(key, fromHex(t.frame).buffer, ctx); // an ArrayBuffer, as a WebSocket delivers it
    c.eq(f, `open #${i}`, [toHex(got.opus), got.seq, got.level, got.flags, got.epoch], [t.opus, t.seq, t.level, t.flags, t.epoch]);
  });
  for (const t of v.openings) {
    let got;
    try {
      got = toHex((await e2ee.openVoiceFrame(voiceKeyOf(t), fromHex(t.frame), { roomId: t.room_id, senderId: t.sender_id })).opus);
    } catch (err) {
      got = err instanceof E2EEError ? err.code : `unexpected ${err?.name}: ${err?.message}`;
    }
    c.eq(f, `open: ${t.description}`, got, t.code === null ? t.opus : t.code);
  }
  for (const t of v.sender_keys) {
    let got;
    try {
      got = senderKeyJson(e2ee.SenderKey.decode(fromHex(t.payload)));
    } catch (err) {
      got = err instanceof E2EEError ? { error: err.code } : { unexpected: `${err?.name}: ${err?.message}` };
    }
    c.eq(f, `sender key: ${t.description}`, got, t.expect);
  }
}

function voiceJson(got) {
  return { opus: toHex(got.opus), seq: got.seq, level: got.level, flags: got.flags, epoch: got.epoch };
}

function changesJson(ch) {
  return {
    epoch: ch.epoch,
    epoch_advanced: ch.epochAdvanced,
    joined: ch.joined,
    left: ch.left,
    keys_changed: ch.keysChanged,
    ignored: ch.ignored,
    rotation_required: ch.rotationRequired,
    undeliverable: ch.undeliverable,
  };
}

async function runStep(sessions, rngs, roomId, step) {
  const s = sessions.get(step.member);
  switch (step.op) {
    case "create": {
      const created = await GroupSession.create(roomId, step.member, { rng: rngs[step.member] });
      sessions.set(step.member, created);
      return { public_keys: await created.publicKeys() };
    }
    case "public_keys":
      return { public_keys: await s.publicKeys() };
    case "close_previous_epoch":
      await s.closePreviousEpoch();
      return { ok: true };
    case "update_roster": {
      const envelopes = await s.updateRoster(step.epoch, step.roster);
      return { envelopes, changes: changesJson(s.lastChanges) };
    }
    case "receive_directed":
      await s.receiveDirected(step.from, step.body);
      return { ok: true };
    case "encrypt": {
      const out = await s.encrypt(step.text);
      return { body: out.body, commitment: out.commitment, franking_key: toHex(out.frankingKey), epoch: out.epoch, index: out.index };
    }
    case "decrypt": {
      const got = await s.decrypt(step.from, step.body, step.commitment);
      return { text: got.text, franking_key: toHex(got.frankingKey), commitment: b64encode(got.commitment), epoch: got.epoch, index: got.index, kind: got.kind };
    }
    case "encrypt_voice": {
      const frame = await s.encryptVoice(fromHex(step.opus), { seq: step.seq, level: step.level, speech: step.speech, end: step.end });
      return { frame: toHex(frame) };
    }
    case "decrypt_voice":
      return voiceJson(await s.decryptVoice(step.from, fromHex(step.frame)));
    case "safety_code":
      return { code: await s.safetyCode() };
    case "fingerprint":
      return { fingerprint: await s.fingerprint(step.of) };
    default:
      throw new Error(`unknown op ${step.op}`);
  }
}

async function checkSession(c, v) {
  const f = "session";
  const rngs = Object.fromEntries(Object.entries(v.rng).map(([m, draws]) => [m, queueRng(draws)]));
  const sessions = new Map();
  for (const [i, step] of v.steps.entries()) {
    let got;
    try {
      got = await runStep(sessions, rngs, v.room_id, step);
    } catch (err) {
      got = err instanceof E2EEError ? { error: err.code } : { unexpected: `${err?.name}: ${err?.message}` };
    }
    c.eq(f, `step ${i} (${step.member} ${step.op})`, got, step.expect);
  }
  for (const [m, rng] of Object.entries(rngs)) c.eq(f, `${m} used every draw`, rng.remaining(), 0);
}

/** Check every vector file; resolves to {failures: [...], counts: {file: checks}}. */
export async function runAll(vectors) {
  const c = new Checker();
  const steps = [
    ["primitives", checkPrimitives],
    ["identity", checkIdentity],
    ["envelope", checkEnvelopes],
    ["message", checkMessages],
    ["franking", checkFranking],
    ["voice", checkVoice],
    ["session", checkSession],
  ];
  for (const [name, check] of steps) await c.guard(name, "vector file", () => check(c, vectors[name]));
  return { failures: c.failures, counts: c.counts };
}

// ---------------------------------------------------------------- live sessions for interop

const live = new Map();

export async function liveCreate(name, roomId, memberId) {
  const session = await GroupSession.create(roomId, memberId);
  live.set(name, session);
  return session.publicKeys();
}

/**
 * A reload of `name`: its identity goes through keep.js (IndexedDB, as the room page keeps it)
 * and comes back as a new session `newName` for the same member; nothing else survives.
 */
export async function liveReload(name, newName) {
  const old = live.get(name);
  const room = `reload-${newName}`;
  await (await Keep.open(room)).saveIdentity(old.memberId, old.identity);
  const identity = (await Keep.open(room)).identity(old.memberId);
  const stored = identity.toStored();
  const session = await GroupSession.create(old.roomId, old.memberId, { identity });
  live.set(newName, session);
  return { keys: await session.publicKeys(), extractable: [stored.dh.extractable, stored.sig.extractable] };
}

/** The private corner `scope` of `name`'s room, as the session `newName`. */
export function liveSub(name, scope, newName) {
  live.set(newName, live.get(name).subSession(scope));
  return true;
}

/** Call one GroupSession method; E2EEError becomes {error: code}, bytes become hex. */
export async function liveCall(name, op, args) {
  const s = live.get(name);
  try {
    switch (op) {
      case "publicKeys":
        return await s.publicKeys();
      case "closePreviousEpoch":
        await s.closePreviousEpoch();
        return { ok: true };
      case "undelivered":
        s.undelivered(...args);
        return { ok: true };
      case "updateRoster":
        return { envelopes: await s.updateRoster(...args), changes: changesJson(s.lastChanges) };
      case "receiveDirected":
        await s.receiveDirected(...args);
        return { ok: true };
      case "encrypt": {
        const out = await s.encrypt(...args);
        return { body: out.body, commitment: out.commitment, franking_key: toHex(out.frankingKey), epoch: out.epoch, index: out.index };
      }
      case "encryptMany": {
        // Fired without awaiting in between: the session must serialise them.
        const outs = await Promise.all(args[0].map((text) => s.encrypt(text)));
        return outs.map((out) => ({ body: out.body, commitment: out.commitment, index: out.index }));
      }
      case "decrypt": {
        const got = await s.decrypt(...args);
        return { text: got.text, franking_key: toHex(got.frankingKey), commitment: b64encode(got.commitment), epoch: got.epoch, index: got.index };
      }
      case "encryptVoice": {
        const [opusHex, options] = args;
        return { frame: toHex(await s.encryptVoice(fromHex(opusHex), options)) };
      }
      case "encryptVoiceMany": {
        // Fired without awaiting in between, as a capture callback would: serialised, distinct seqs.
        const [opusHex, seqs] = args;
        const frames = await Promise.all(seqs.map((seq) => s.encryptVoice(fromHex(opusHex), { seq, level: 20, speech: true })));
        return frames.map(toHex);
      }
      case "decryptVoice":
        return voiceJson(await s.decryptVoice(args[0], fromHex(args[1]).buffer));
      case "decryptVoiceMany": {
        // 50 frames = one second of one speaker. Count WebCrypto key imports meanwhile:
        // the voice key must be imported once per (sender, epoch), never per frame.
        const [senderId, framesHex] = args;
        const subtle = globalThis.crypto.subtle;
        const original = subtle.importKey;
        let imports = 0;
        subtle.importKey = function (...a) {
          imports += 1;
          return original.apply(this, a);
        };
        try {
          const out = [];
          for (const hex of framesHex) {
            try {
              out.push(voiceJson(await s.decryptVoice(senderId, fromHex(hex))));
            } catch (err) {
              if (!(err instanceof E2EEError)) throw err;
              out.push({ error: err.code });
            }
          }
          return { frames: out, imports };
        } finally {
          delete subtle.importKey;
        }
      }
      case "safetyCode":
        return { code: await s.safetyCode() };
      case "fingerprint":
        return { fingerprint: await s.fingerprint(...args) };
      default:
        throw new Error(`unknown op ${op}`);
    }
  } catch (err) {
    if (err instanceof E2EEError) return { error: err.code };
    throw err;
  }
}
