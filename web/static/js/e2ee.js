// Hearth end-to-end encryption for group chat and voice, in the browser: WebCrypto only.
//
// The byte-for-byte twin of the Python package spaces/e2ee (same formats, same
// error codes, same order of random draws); tests/vectors/*.json prove it.
// The protocol and its threat model are in docs/e2ee.md.
//
//   Identity        per-session X25519 + Ed25519 keys (fingerprint, sign, exchange); made
//                   non-extractable by WebCrypto itself, so no private key is ever bytes here
//   EpochKey / EpochKeys   a member's X25519 key for one epoch, signed by its identity
//   checkX25519 / checkEd25519   public keys refused on decode (small order, off curve, non-canonical)
//   sealEnvelope    pairwise envelope: X25519 (identity + epoch key) -> HKDF-SHA256 -> AES-256-GCM, signed
//   SendingChain / ReceivingChain   sender-key ratchet, skipped-key window, replay refusal
//   RoomMessage     room message layout, AAD, padding, signature
//   commit / serverTag              message franking
//   VoiceKey / sealVoiceFrame / openVoiceFrame / voiceHeader   voice frames (docs/e2ee.md §12)
//   GroupSession    one member's state for one room; every method is async and
//                   runs one at a time, so interleaved awaits never split a ratchet step.
//
// Nothing here logs; nothing here touches the network.

const subtle = globalThis.crypto.subtle;

export const WIRE_VERSION = 0x01;
export const ROOM_MESSAGE_TYPE = 0x01;
export const ENVELOPE_TYPE = 0x02;
export const SENDER_KEY_KIND = 0x03;
export const SENDER_KEY_LEN = 81;
export const TEXT_KIND = 0x01;
/** Content kinds this version opens (message.py CONTENT_KINDS): a new kind is one more entry. */
export const CONTENT_KINDS = Object.freeze(new Set([TEXT_KIND]));
export const WINDOW = 256;
export const MAX_FORWARD = 1024;
export const MAX_EPOCHS_AHEAD = 8;
export const PAD_BLOCK = 64;
export const VOICE_VERSION = 0x01;
export const VOICE_HEADER_LEN = 10;
export const VOICE_FLAG_SPEECH = 0x01;
export const VOICE_FLAG_END = 0x02;
export const VOICE_LEVEL_SILENCE = 127;
export const VOICE_WINDOW = 256;
const U32_MAX = 2 ** 32 - 1;

export const LABELS = Object.freeze({
  fingerprint: "hearth-e2ee/v1/fingerprint",
  safetyCode: "hearth-e2ee/v1/safety-code",
  epochKey: "hearth-e2ee/v1/epoch-key",
  envelopeKey: "hearth-e2ee/v1/envelope-key",
  envelopeAad: "hearth-e2ee/v1/envelope-aad",
  envelopeSig: "hearth-e2ee/v1/envelope-sig",
  messageKey: "hearth-e2ee/v1/message-key",
  messageAad: "hearth-e2ee/v1/message-aad",
  messageSig: "hearth-e2ee/v1/message-sig",
  frankingCommitment: "hearth-e2ee/v1/franking-commitment",
  frankingTag: "hearth-e2ee/v1/franking-tag",
  voiceKey: "hearth-e2ee/v1/voice-key",
  voiceAad: "hearth-e2ee/v1/voice-aad",
});

// ---------------------------------------------------------------- errors

export const CODES = Object.freeze({
  MALFORMED: "e2ee.malformed",
  BAD_KEY: "e2ee.bad_key",
  BAD_SIGNATURE: "e2ee.bad_signature",
  TAMPERED: "e2ee.tampered",
  BAD_COMMITMENT: "e2ee.bad_commitment",
  REPLAY: "e2ee.replay",
  OUT_OF_WINDOW: "e2ee.out_of_window",
  STALE_EPOCH: "e2ee.stale_epoch",
  FUTURE_EPOCH: "e2ee.future_epoch",
  UNKNOWN_SENDER: "e2ee.unknown_sender",
  OWN_MESSAGE: "e2ee.own_message",
  UNSUPPORTED: "e2ee.unsupported",
  CHAIN_CONFLICT: "e2ee.chain_conflict",
  NO_SENDER_KEY: "e2ee.no_sender_key",
  NOT_READY: "e2ee.not_ready",
  ROTATION_REQUIRED: "e2ee.rotation_required",
  ROSTER_MISMATCH: "e2ee.roster_mismatch",
  CHAIN_EXHAUSTED: "e2ee.chain_exhausted",
  SEQ_REUSED: "e2ee.seq_reused",
  FRANKING_MALFORMED: "franking.malformed",
});

/** Every refusal of this module; branch on `code`, never on the message. */
export class E2EEError extends Error {
  constructor(code, message = "") {
    super(message ? `${code}: ${message}` : code);
    this.name = "E2EEError";
    this.code = code;
  }
}

// ---------------------------------------------------------------- encodings

const encoder = new TextEncoder();
// fatal: invalid UTF-8 is refused; ignoreBOM: a leading U+FEFF stays text, as in Python.
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function utf8(text) {
  if (typeof text !== "string" || LONE_SURROGATE.test(text)) {
    throw new E2EEError(CODES.MALFORMED, "text is not valid Unicode");
  }
  return encoder.encode(text);
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function u32(value) {
  if (!Number.isSafeInteger(value) || value < 0 || value > U32_MAX) throw new RangeError("u32 out of range");
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value);
  return out;
}

export function u64(value) {
  const big = typeof value === "bigint" ? value : Number.isSafeInteger(value) ? BigInt(value) : -1n;
  if (big < 0n || big > 0xffffffffffffffffn) throw new RangeError("u64 out of range");
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, big);
  return out;
}

function readU32(bytes, at) {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(at);
}

/** len(label)||label||len(p1)||p1||... with u32 big-endian lengths: injective, so signable. */
export function fields(label, ...parts) {
  const out = [];
  for (const part of [encoder.encode(label), ...parts]) out.push(u32(part.length), part);
  return concat(...out);
}

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function b64encode(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** Strict standard base64 with padding; optionally of an exact decoded length. */
export function b64decode(text, { length = null, code = CODES.MALFORMED } = {}) {
  if (typeof text !== "string" || !B64.test(text)) throw new E2EEError(code, "not standard base64");
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  if (length !== null && out.length !== length) throw new E2EEError(code, `expected ${length} bytes`);
  return out;
}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(hex) {
  return Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
}

export function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function compareBytes(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** Member ids by their UTF-8 bytes: the one order both clients agree on. */
export function sortMembers(ids) {
  return [...ids].sort((a, b) => compareBytes(encoder.encode(a), encoder.encode(b)));
}

const defaultRng = (n) => globalThis.crypto.getRandomValues(new Uint8Array(n));

/** Exactly n bytes from the injected rng (which may be sync or async). */
export async function draw(rng, n) {
  const data = await rng(n);
  if (!(data instanceof Uint8Array) || data.length !== n) throw new Error(`rng must return exactly ${n} bytes`);
  return Uint8Array.from(data);
}

// ---------------------------------------------------------------- primitives

export async function hmacSha256(key, data) {
  const k = await subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", k, data));
}

export async function hkdfSha256(ikm, { salt, info, length }) {
  const k = await subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  return new Uint8Array(await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info }, k, length * 8));
}

async function aesKey(key) {
  return subtle.importKey("raw", key, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
}

export async function seal(key, nonce, plaintext, aad) {
  const k = await aesKey(key);
  return new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 }, k, plaintext));
}

export async function openSealed(key, nonce, ciphertext, aad) {
  const k = await aesKey(key);
  try {
    return new Uint8Array(await subtle.decrypt({ name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 }, k, ciphertext));
  } catch {
    throw new E2EEError(CODES.TAMPERED, "authenticated decryption failed");
  }
}

async function sha256(data) {
  return new Uint8Array(await subtle.digest("SHA-256", data));
}

// ---------------------------------------------------------------- public-key checks (points.py)

const P = 2n ** 255n - 19n;
const D = 37095705934669439343138083508754565189542113879843219016388785533085940283555n;
const LOW_255 = (1n << 255n) - 1n;
// u of the X25519 points, y of the Ed25519 points, of order 1, 2, 4 and 8.
const X25519_SMALL_ORDER = new Set([
  0n,
  1n,
  P - 1n,
  325606250916557431795983626356110631294008115727848805560023387167927233504n,
  39382357235489614581723060781553021112529911719440698176882885853963445705823n,
]);
const ED25519_SMALL_ORDER = new Set([
  0n,
  1n,
  P - 1n,
  2707385501144840649318225287225658788936804267575313519463743609750303402022n,
  55188659117513257062467267217118295137698188065244968500265048394206261417927n,
]);

function littleEndian(bytes) {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

function toLittleEndian(n) {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++, n >>= 8n) out[i] = Number(n & 0xffn);
  return out;
}

function modPow(base, exp, mod) {
  let result = 1n;
  base %= mod;
  for (; exp > 0n; exp >>= 1n) {
    if (exp & 1n) result = (result * base) % mod;
    base = (base * base) % mod;
  }
  return result;
}

/** The key itself, or e2ee.bad_key: not 32 bytes, not canonical (u >= p), or of small order. */
export function checkX25519(raw) {
  if (raw.length !== 32) throw new E2EEError(CODES.BAD_KEY, "an X25519 key is 32 bytes");
  const u = littleEndian(raw);
  if (u >= P) throw new E2EEError(CODES.BAD_KEY, "X25519 key is not canonical");
  if (X25519_SMALL_ORDER.has(u)) throw new E2EEError(CODES.BAD_KEY, "X25519 key is a point of small order");
  return raw;
}

const checkedEd25519 = new Set(); // keys that passed: a roster is parsed again at every change

/** The key itself, or e2ee.bad_key: not 32 bytes, not canonical, of small order, or off the curve. */
export function checkEd25519(raw) {
  if (raw.length !== 32) throw new E2EEError(CODES.BAD_KEY, "an Ed25519 key is 32 bytes");
  const hex = toHex(raw);
  if (checkedEd25519.has(hex)) return raw;
  const y = littleEndian(raw) & LOW_255; // the top bit is the sign of x
  if (y >= P) throw new E2EEError(CODES.BAD_KEY, "Ed25519 key is not canonical");
  if (ED25519_SMALL_ORDER.has(y)) throw new E2EEError(CODES.BAD_KEY, "Ed25519 key is a point of small order");
  const yy = (y * y) % P;
  const x2 = ((yy - 1n) * modPow(D * yy + 1n, P - 2n, P)) % P;
  if (modPow(x2, (P - 1n) / 2n, P) !== 1n) throw new E2EEError(CODES.BAD_KEY, "Ed25519 key is not a point on the curve");
  if (checkedEd25519.size >= 1024) checkedEd25519.clear();
  checkedEd25519.add(hex);
  return raw;
}

// ---------------------------------------------------------------- identity
//
// Real keys are made by WebCrypto, non-extractable: no private key is ever bytes in this page.
// Keys given as bytes (only with an injected rng: the test vectors) are imported
// non-extractable at once and their buffers wiped; their public halves are computed with
// WebCrypto alone (X25519 against the base point; Ed25519 through its X25519 twin).

const PKCS8_X25519 = fromHex("302e020100300506032b656e04220420");
const PKCS8_ED25519 = fromHex("302e020100300506032b657004220420");
const BASE_POINT = Uint8Array.of(9, ...new Uint8Array(31));

async function importPrivateBytes(name, raw, usages) {
  const pkcs8 = concat(name === "X25519" ? PKCS8_X25519 : PKCS8_ED25519, raw);
  try {
    return await subtle.importKey("pkcs8", pkcs8, { name }, false, usages);
  } finally {
    pkcs8.fill(0);
  }
}

/** X25519(private, 9): the public key of a non-extractable private key. */
async function x25519Public(privateKey) {
  const base = await subtle.importKey("raw", BASE_POINT, { name: "X25519" }, false, []);
  return new Uint8Array(await subtle.deriveBits({ name: "X25519", public: base }, privateKey, 256));
}

/**
 * The Ed25519 public key of a seed without exporting anything: its scalar is the clamped first
 * half of SHA-512(seed), which X25519 clamps the same way, so X25519(scalar, 9) is the
 * Montgomery u of the public point, and y = (u - 1) / (u + 1). The sign of x is the one whose
 * encoding verifies a signature made with the key.
 */
async function ed25519Public(seed, signingKey) {
  const h = new Uint8Array(await subtle.digest("SHA-512", seed));
  let u;
  try {
    u = littleEndian(await x25519Public(await importPrivateBytes("X25519", h.subarray(0, 32), ["deriveBits"])));
  } finally {
    h.fill(0);
  }
  const y = ((u - 1n + P) * modPow(u + 1n, P - 2n, P)) % P;
  const probe = Uint8Array.of(0x68, 0x65, 0x61, 0x72, 0x74, 0x68);
  const signature = new Uint8Array(await subtle.sign({ name: "Ed25519" }, signingKey, probe));
  for (const candidate of [toLittleEndian(y), toLittleEndian(y | (1n << 255n))]) {
    const key = await subtle.importKey("raw", candidate, { name: "Ed25519" }, false, ["verify"]);
    if (await subtle.verify({ name: "Ed25519" }, key, signature, probe)) return candidate;
  }
  throw new Error("could not derive the Ed25519 public key");
}

/** A fresh X25519 key: WebCrypto's own (default rng), or 32 drawn bytes (an injected rng). */
async function x25519Key(rng) {
  if (rng === defaultRng) {
    const pair = await subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
    return { key: pair.privateKey, publicRaw: new Uint8Array(await subtle.exportKey("raw", pair.publicKey)) };
  }
  const raw = await draw(rng, 32);
  try {
    const key = await importPrivateBytes("X25519", raw, ["deriveBits"]);
    return { key, publicRaw: await x25519Public(key) };
  } finally {
    raw.fill(0);
  }
}

async function x25519(privateKey, peerDh) {
  let peer;
  try {
    peer = await subtle.importKey("raw", peerDh, { name: "X25519" }, false, []);
    return new Uint8Array(await subtle.deriveBits({ name: "X25519", public: peer }, privateKey, 256));
  } catch {
    throw new E2EEError(CODES.BAD_KEY, "X25519 peer key is a low-order point");
  }
}

function fingerprintOf(digest) {
  const hex = toHex(digest.subarray(0, 16)).toUpperCase();
  return hex.match(/.{4}/g).join(" ");
}

/** The public keys a member publishes to the roster (raw 32-byte encodings). */
export class PublicIdentity {
  constructor(dh, sig) {
    this.dh = Uint8Array.from(dh);
    this.sig = Uint8Array.from(sig);
    this.#verifyKey = null;
  }

  #verifyKey;

  /** Parse {"dh": b64, "sig": b64}; malformed, off-curve or small-order keys are e2ee.bad_key. */
  static fromWire(keys) {
    if (keys === null || typeof keys !== "object") throw new E2EEError(CODES.BAD_KEY, "roster entry is not an object");
    const dh = b64decode(keys.dh, { length: 32, code: CODES.BAD_KEY });
    const sig = b64decode(keys.sig, { length: 32, code: CODES.BAD_KEY });
    return new PublicIdentity(checkX25519(dh), checkEd25519(sig));
  }

  toWire() {
    return { dh: b64encode(this.dh), sig: b64encode(this.sig) };
  }

  equals(other) {
    return other instanceof PublicIdentity && bytesEqual(this.dh, other.dh) && bytesEqual(this.sig, other.sig);
  }

  async verify(signature, data) {
    let ok = false;
    try {
      this.#verifyKey ??= await subtle.importKey("raw", this.sig, { name: "Ed25519" }, false, ["verify"]);
      ok = await subtle.verify({ name: "Ed25519" }, this.#verifyKey, signature, data);
    } catch {
      ok = false;
    }
    if (!ok) throw new E2EEError(CODES.BAD_SIGNATURE, "signature does not verify");
  }

  /** 32 hex digits in groups of four, e.g. "3F9A C2D1 07BE 1122 3344 5566 7788 99AA". */
  async fingerprint() {
    return fingerprintOf(await sha256(fields(LABELS.fingerprint, this.dh, this.sig)));
  }
}

function epochKeyStatement(epoch, dh) {
  return fields(LABELS.epochKey, u64(epoch), dh);
}

/** A member's X25519 key for one epoch, signed by its identity: {ek, ek_epoch, ek_sig}. */
export class EpochKey {
  constructor(epoch, dh, signature) {
    this.epoch = epoch;
    this.dh = dh;
    this.signature = signature;
  }

  /** The epoch key of a roster entry (null when it has none yet); e2ee.bad_key when it is
   *  malformed, of small order, or not signed by `owner`. */
  static async fromWire(keys, owner) {
    if (keys.ek == null && keys.ek_epoch == null && keys.ek_sig == null) return null;
    const epoch = keys.ek_epoch;
    if (!Number.isSafeInteger(epoch) || epoch < 1 || epoch > U32_MAX) throw new E2EEError(CODES.BAD_KEY, "epoch key epoch out of range");
    const dh = checkX25519(b64decode(keys.ek, { length: 32, code: CODES.BAD_KEY }));
    const signature = b64decode(keys.ek_sig, { length: 64, code: CODES.BAD_KEY });
    try {
      await owner.verify(signature, epochKeyStatement(epoch, dh));
    } catch {
      throw new E2EEError(CODES.BAD_KEY, "the epoch key is not signed by its member");
    }
    return new EpochKey(epoch, dh, signature);
  }

  toWire() {
    return { ek: b64encode(this.dh), ek_epoch: this.epoch, ek_sig: b64encode(this.signature) };
  }
}

/** A member's private keys for one session; the private halves are non-extractable. */
export class Identity {
  #dh;
  #sig;

  constructor(dhKey, sigKey, publicIdentity) {
    this.#dh = dhKey;
    this.#sig = sigKey;
    this.public = publicIdentity;
  }

  /** WebCrypto's own keys with the default rng; with an injected rng, 32 bytes for X25519 then
   *  32 for the Ed25519 seed (an order the vectors fix). */
  static async generate(rng = defaultRng) {
    if (rng === defaultRng) {
      const dh = await subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
      const sig = await subtle.generateKey({ name: "Ed25519" }, false, ["sign"]);
      const publicIdentity = new PublicIdentity(
        new Uint8Array(await subtle.exportKey("raw", dh.publicKey)),
        new Uint8Array(await subtle.exportKey("raw", sig.publicKey)),
      );
      return new Identity(dh.privateKey, sig.privateKey, publicIdentity);
    }
    const dh = await draw(rng, 32);
    const sig = await draw(rng, 32);
    try {
      return await Identity.fromPrivateBytes(dh, sig);
    } finally {
      dh.fill(0);
      sig.fill(0);
    }
  }

  /** Keys given as bytes (test vectors): imported non-extractable; the caller wipes its bytes. */
  static async fromPrivateBytes(dhPrivate, sigPrivate) {
    if (dhPrivate.length !== 32 || sigPrivate.length !== 32) throw new Error("private keys are 32 bytes each");
    const dh = await importPrivateBytes("X25519", dhPrivate, ["deriveBits"]);
    const sig = await importPrivateBytes("Ed25519", sigPrivate, ["sign"]);
    const publicIdentity = new PublicIdentity(await x25519Public(dh), await ed25519Public(sigPrivate, sig));
    return new Identity(dh, sig, publicIdentity);
  }

  /** What a reload keeps (keep.js): the non-extractable CryptoKeys and the public keys. */
  toStored() {
    return { dh: this.#dh, sig: this.#sig, dhPublic: this.public.dh, sigPublic: this.public.sig };
  }

  static fromStored(stored) {
    const ok = stored && stored.dh instanceof CryptoKey && stored.sig instanceof CryptoKey;
    if (!ok || stored.dh.extractable || stored.sig.extractable) throw new Error("not a stored identity");
    return new Identity(stored.dh, stored.sig, new PublicIdentity(stored.dhPublic, stored.sigPublic));
  }

  async sign(data) {
    return new Uint8Array(await subtle.sign({ name: "Ed25519" }, this.#sig, data));
  }

  async exchange(peerDh) {
    return x25519(this.#dh, peerDh);
  }

  async signEpochKey(epoch, dh) {
    return this.sign(epochKeyStatement(epoch, dh));
  }
}

/** Our private X25519 key for one epoch and its signed public half. */
export class OwnEpochKey {
  #key;

  constructor(key, publicKey) {
    this.#key = key;
    this.public = publicKey;
  }

  static async create(identity, epoch, rng) {
    const { key, publicRaw } = await x25519Key(rng);
    return new OwnEpochKey(key, new EpochKey(epoch, publicRaw, await identity.signEpochKey(epoch, publicRaw)));
  }

  async exchange(peerDh) {
    return x25519(this.#key, peerDh);
  }
}

/** Our epoch keys, one per epoch, shared by a room's session and its private corners'. */
export class EpochKeys {
  #keys = new Map(); // epoch -> Promise of OwnEpochKey

  constructor(identity) {
    this.identity = identity;
  }

  /** The key for `epoch`, drawn the first time it is asked for. */
  forEpoch(epoch, rng) {
    if (!this.#keys.has(epoch)) {
      const made = OwnEpochKey.create(this.identity, epoch, rng);
      this.#keys.set(epoch, made);
      made.catch(() => this.#keys.delete(epoch));
    }
    return this.#keys.get(epoch);
  }

  get(epoch) {
    return this.#keys.get(epoch) ?? null;
  }

  forgetBefore(epoch) {
    for (const e of [...this.#keys.keys()]) if (e < epoch) this.#keys.delete(e);
  }
}

/** Ten groups of five digits over the room and every member's id and identity keys (sorted by id). */
export async function safetyCode(roomId, roster) {
  const entries = roster instanceof Map ? roster : new Map(Object.entries(roster));
  const parts = [utf8(roomId)];
  for (const id of sortMembers(entries.keys())) {
    const keys = entries.get(id);
    parts.push(utf8(id), keys.dh, keys.sig);
  }
  const digest = new Uint8Array(await subtle.digest("SHA-512", fields(LABELS.safetyCode, ...parts)));
  const groups = [];
  for (let i = 0; i < 50; i += 5) {
    let n = 0;
    for (const b of digest.subarray(i, i + 5)) n = n * 256 + b;
    groups.push(String(n % 100000).padStart(5, "0"));
  }
  return groups.join(" ");
}

// ---------------------------------------------------------------- sealed envelopes

const ENVELOPE_HEADER_LEN = 38;

async function envelopeKey(shared, ephemeral, recipientDh, recipientEk, ctx) {
  const okm = await hkdfSha256(shared, { salt: concat(ephemeral, recipientDh, recipientEk), info: fields(LABELS.envelopeKey, ...ctx), length: 44 });
  return [okm.subarray(0, 32), okm.subarray(32)];
}

/** Encrypt `payload` to one member for the epoch of `recipientEk`; draws 32 bytes from rng
 *  for the ephemeral key (WebCrypto makes it with the default rng). */
export async function sealEnvelope(payload, { sender, senderId, recipient, recipientEk, recipientId, roomId, rng }) {
  const ctx = [utf8(roomId), utf8(senderId), utf8(recipientId)];
  const eph = await x25519Key(rng);
  const header = concat(Uint8Array.of(WIRE_VERSION, ENVELOPE_TYPE), u32(recipientEk.epoch), eph.publicRaw);
  const shared = concat(await x25519(eph.key, recipient.dh), await x25519(eph.key, recipientEk.dh));
  const [key, nonce] = await envelopeKey(shared, eph.publicRaw, recipient.dh, recipientEk.dh, ctx);
  shared.fill(0);
  const ciphertext = await seal(key, nonce, payload, fields(LABELS.envelopeAad, header, ...ctx));
  const signature = await sender.sign(fields(LABELS.envelopeSig, header, ...ctx, recipient.dh, recipientEk.dh, ciphertext));
  return concat(header, ciphertext, signature);
}

/** The epoch in an envelope's header (checks only the version, type and length). */
export function envelopeEpoch(body) {
  if (body.length < 2) throw new E2EEError(CODES.MALFORMED, "envelope too short");
  if (body[0] !== WIRE_VERSION) throw new E2EEError(CODES.UNSUPPORTED, "unknown envelope version");
  if (body[1] !== ENVELOPE_TYPE) throw new E2EEError(CODES.MALFORMED, "not a sealed envelope");
  if (body.length < ENVELOPE_HEADER_LEN + 16 + 64) throw new E2EEError(CODES.MALFORMED, "envelope too short");
  return readU32(body, 2);
}

/** [epoch, payload]: verify the sender's signature, then decrypt with our key for the header's
 *  epoch (`epochKey(epoch)` resolves to an OwnEpochKey or throws); never returns junk. */
export async function openEnvelope(body, { recipient, recipientId, epochKey, sender, senderId, roomId }) {
  const epoch = envelopeEpoch(body);
  const own = await epochKey(epoch);
  const header = body.subarray(0, ENVELOPE_HEADER_LEN);
  const ciphertext = body.subarray(ENVELOPE_HEADER_LEN, body.length - 64);
  const signature = body.subarray(body.length - 64);
  const ctx = [utf8(roomId), utf8(senderId), utf8(recipientId)];
  await sender.verify(signature, fields(LABELS.envelopeSig, header, ...ctx, recipient.public.dh, own.public.dh, ciphertext));
  const ephemeral = header.subarray(6);
  const shared = concat(await recipient.exchange(ephemeral), await own.exchange(ephemeral));
  const [key, nonce] = await envelopeKey(shared, ephemeral, recipient.public.dh, own.public.dh, ctx);
  shared.fill(0);
  return [epoch, await openSealed(key, nonce, ciphertext, fields(LABELS.envelopeAad, header, ...ctx))];
}

// ---------------------------------------------------------------- sender-key chains

const SEED_BYTE = Uint8Array.of(0x01);
const STEP_BYTE = Uint8Array.of(0x02);

/** One ratchet step: [seed for this index, chain key for the next]. */
export async function step(chainKey) {
  return [await hmacSha256(chainKey, SEED_BYTE), await hmacSha256(chainKey, STEP_BYTE)];
}

async function advance(chainKey, steps) {
  for (let i = 0; i < steps; i++) chainKey = await hmacSha256(chainKey, STEP_BYTE);
  return chainKey;
}

/**
 * What one directed envelope carries: a chain key at an index for one epoch, the sender's voice
 * key for that epoch, and the seq its next voice frame will carry (chain.py SenderKey).
 * Wire: kind 0x03 | epoch u32 | index u32 | chain key (32) | voice key (32) | salt (4) | voice seq u32   81 bytes
 */
export class SenderKey {
  constructor(epoch, index, chainKey, voice, voiceSeq = 0) {
    this.epoch = epoch;
    this.index = index;
    this.chainKey = chainKey;
    this.voice = voice; // VoiceKey
    this.voiceSeq = voiceSeq;
  }

  encode() {
    return concat(Uint8Array.of(SENDER_KEY_KIND), u32(this.epoch), u32(this.index), this.chainKey, this.voice.key, this.voice.salt, u32(this.voiceSeq));
  }

  static decode(data) {
    if (data.length === 0) throw new E2EEError(CODES.MALFORMED, "empty sender key");
    if (data[0] !== SENDER_KEY_KIND) throw new E2EEError(CODES.UNSUPPORTED, "unknown directed payload kind");
    if (data.length !== SENDER_KEY_LEN) throw new E2EEError(CODES.MALFORMED, "sender key has the wrong length");
    const epoch = readU32(data, 1);
    const voice = new VoiceKey(epoch, data.slice(41, 73), data.slice(73, 77));
    return new SenderKey(epoch, readU32(data, 5), data.slice(9, 41), voice, readU32(data, 77));
  }
}

/** Our own chain for one epoch; `index` is the index the next message will use. */
export class SendingChain {
  constructor(epoch, index, chainKey) {
    this.epoch = epoch;
    this.index = index;
    this.chainKey = chainKey;
  }

  static async start(epoch, rng) {
    return new SendingChain(epoch, 0, await draw(rng, 32));
  }

  /** [index, seed, advanced chain] for the next message. */
  async next() {
    if (this.index > U32_MAX) throw new E2EEError(CODES.CHAIN_EXHAUSTED, "sender chain exhausted; wait for a new epoch");
    const [seed, chainKey] = await step(this.chainKey);
    return [this.index, seed, new SendingChain(this.epoch, this.index + 1, chainKey)];
  }

  senderKey(voice, voiceSeq) {
    return new SenderKey(this.epoch, this.index, this.chainKey, voice, voiceSeq);
  }
}

/** Another member's chain as we know it; see chain.py for the meaning of each field. */
export class ReceivingChain {
  constructor(epoch, index, chainKey, floor, skipped) {
    this.epoch = epoch;
    this.index = index;
    this.chainKey = chainKey;
    this.floor = floor;
    this.skipped = skipped;
  }

  static fromSenderKey(key) {
    return new ReceivingChain(key.epoch, key.index, key.chainKey, key.index, new Map());
  }

  /** [seed for index, chain with that seed consumed]; throws, never mutates. */
  async take(index) {
    if (index < this.floor) throw new E2EEError(CODES.OUT_OF_WINDOW, "message index is behind the window");
    if (index < this.index) {
      const seed = this.skipped.get(index);
      if (seed === undefined) throw new E2EEError(CODES.REPLAY, "message index was already decrypted");
      const rest = new Map(this.skipped);
      rest.delete(index);
      return [seed, new ReceivingChain(this.epoch, this.index, this.chainKey, this.floor, rest)];
    }
    if (index - this.index > MAX_FORWARD) throw new E2EEError(CODES.OUT_OF_WINDOW, "message index is too far ahead");
    const newIndex = index + 1;
    const floor = Math.max(this.floor, newIndex - WINDOW);
    const skipped = new Map([...this.skipped].filter(([i]) => i >= floor));
    let chainKey = this.chainKey;
    let seed;
    for (let i = this.index; i < index; i++) {
      [seed, chainKey] = await step(chainKey);
      if (i >= floor) skipped.set(i, seed);
    }
    [seed, chainKey] = await step(chainKey);
    return [seed, new ReceivingChain(this.epoch, newIndex, chainKey, floor, skipped)];
  }

  /** Whether `key` is a state of this same chain (a harmless duplicate delivery). */
  async matches(key) {
    if (key.epoch !== this.epoch) return false;
    const gap = key.index - this.index;
    if (Math.abs(gap) > MAX_FORWARD) return false;
    if (gap >= 0) return bytesEqual(await advance(this.chainKey, gap), key.chainKey);
    return bytesEqual(await advance(key.chainKey, -gap), this.chainKey);
  }
}

// ---------------------------------------------------------------- franking

export async function commit(frankingKey, text) {
  return hmacSha256(frankingKey, fields(LABELS.frankingCommitment, utf8(text)));
}

export async function commitmentMatches(frankingKey, text, commitment) {
  const k = await subtle.importKey("raw", frankingKey, { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
  return subtle.verify("HMAC", k, commitment, fields(LABELS.frankingCommitment, utf8(text)));
}

/** The server's tag (spaces/e2ee/franking.py); here so the vectors can check the encoding. */
export async function serverTag(serverKey, commitment, roomId, senderId, seq, ts) {
  if (commitment.length !== 32) throw new E2EEError(CODES.FRANKING_MALFORMED, "commitment must be 32 bytes");
  let data;
  try {
    data = fields(LABELS.frankingTag, commitment, utf8(roomId), utf8(senderId), u64(seq), u64(ts));
  } catch {
    throw new E2EEError(CODES.FRANKING_MALFORMED, "room, sender, seq or ts out of range");
  }
  return hmacSha256(serverKey, data);
}

// ---------------------------------------------------------------- room messages

const HEADER_LEN = 10;
const INNER_HEADER_LEN = 37;
const ZERO_SALT = new Uint8Array(32);

/** [AES-256 key, nonce] for one chain index; each key encrypts exactly one message. */
export async function messageKey(seed) {
  const okm = await hkdfSha256(seed, { salt: ZERO_SALT, info: fields(LABELS.messageKey), length: 44 });
  return [okm.subarray(0, 32), okm.subarray(32)];
}

const paddedLength = (n) => Math.ceil(n / PAD_BLOCK) * PAD_BLOCK;

export function encodeInner(text, frankingKey, kind = TEXT_KIND) {
  if (!CONTENT_KINDS.has(kind)) throw new E2EEError(CODES.UNSUPPORTED, "unknown message kind");
  const data = utf8(text);
  const inner = new Uint8Array(paddedLength(INNER_HEADER_LEN + data.length));
  inner.set(concat(Uint8Array.of(kind), frankingKey, u32(data.length), data));
  return inner;
}

/** [text, franking key, kind]; strict about padding so both clients accept the same bytes. */
export function decodeInner(inner) {
  if (inner.length < INNER_HEADER_LEN) throw new E2EEError(CODES.MALFORMED, "inner plaintext too short");
  if (!CONTENT_KINDS.has(inner[0])) throw new E2EEError(CODES.UNSUPPORTED, "unknown message kind");
  const frankingKey = inner.slice(1, 33);
  const end = INNER_HEADER_LEN + readU32(inner, 33);
  if (end > inner.length || inner.length !== paddedLength(end) || inner.subarray(end).some((b) => b !== 0)) {
    throw new E2EEError(CODES.MALFORMED, "inner plaintext length or padding is wrong");
  }
  let text;
  try {
    text = decoder.decode(inner.subarray(INNER_HEADER_LEN, end));
  } catch {
    throw new E2EEError(CODES.MALFORMED, "text is not UTF-8");
  }
  return [text, frankingKey, inner[0]];
}

/** A parsed room envelope body; nothing in it is trusted until verify() passed. */
export class RoomMessage {
  constructor(epoch, index, ciphertext, signature) {
    this.epoch = epoch;
    this.index = index;
    this.ciphertext = ciphertext;
    this.signature = signature;
  }

  get header() {
    return concat(Uint8Array.of(WIRE_VERSION, ROOM_MESSAGE_TYPE), u32(this.epoch), u32(this.index));
  }

  encode() {
    return concat(this.header, this.ciphertext, this.signature);
  }

  static decode(body) {
    if (body.length < 2) throw new E2EEError(CODES.MALFORMED, "room message too short");
    if (body[0] !== WIRE_VERSION) throw new E2EEError(CODES.UNSUPPORTED, "unknown room message version");
    if (body[1] !== ROOM_MESSAGE_TYPE) throw new E2EEError(CODES.MALFORMED, "not a room message");
    if (body.length < HEADER_LEN + 16 + 64) throw new E2EEError(CODES.MALFORMED, "room message too short");
    return new RoomMessage(readU32(body, 2), readU32(body, 6), body.slice(HEADER_LEN, body.length - 64), body.slice(body.length - 64));
  }

  #context(roomId, senderId, commitment) {
    return [this.header, utf8(roomId), utf8(senderId), commitment];
  }

  async verify(signer, { roomId, senderId, commitment }) {
    await signer.verify(this.signature, fields(LABELS.messageSig, ...this.#context(roomId, senderId, commitment), this.ciphertext));
  }

  /** Decrypt, then check the franking commitment; [text, franking key, kind]. */
  async open(seed, { roomId, senderId, commitment }) {
    const [key, nonce] = await messageKey(seed);
    const aad = fields(LABELS.messageAad, ...this.#context(roomId, senderId, commitment));
    const [text, frankingKey, kind] = decodeInner(await openSealed(key, nonce, this.ciphertext, aad));
    if (!(await commitmentMatches(frankingKey, text, commitment))) {
      throw new E2EEError(CODES.BAD_COMMITMENT, "the text does not match its commitment");
    }
    return [text, frankingKey, kind];
  }
}

/** Encrypt and sign one text at (epoch, index) under the seed of that chain index. */
export async function sealRoomMessage({ sender, roomId, senderId, epoch, index, seed, text, frankingKey, commitment, kind = TEXT_KIND }) {
  const ctx = [new RoomMessage(epoch, index).header, utf8(roomId), utf8(senderId), commitment];
  const [key, nonce] = await messageKey(seed);
  const ciphertext = await seal(key, nonce, encodeInner(text, frankingKey, kind), fields(LABELS.messageAad, ...ctx));
  const signature = await sender.sign(fields(LABELS.messageSig, ...ctx, ciphertext));
  return new RoomMessage(epoch, index, ciphertext, signature);
}

// ---------------------------------------------------------------- voice frames
//
//   0 version 0x01 | 1 flags (bit0 speech, bit1 end) | 2 level 0..127 | 3 epoch low 8 bits
//   4-5 slot u16 (0 from the sender, stamped by the server) | 6-9 seq u32 | 10.. AES-GCM ct || tag
//
// voice key || salt = HKDF(chain key at index 0, zero salt, fields(voiceKey, room, sender, u64 epoch), 36)
// nonce = salt || u64(seq); AAD = fields(voiceAad, bytes 0-3, bytes 6-9, room, sender).

function asBytes(data, what) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new E2EEError(CODES.MALFORMED, `${what} must be bytes`);
}

/** One sender's voice key for one epoch; the WebCrypto key is imported once, on first use. */
export class VoiceKey {
  #cryptoKey = null;

  constructor(epoch, key, salt) {
    if (key.length !== 32 || salt.length !== 4) throw new E2EEError(CODES.MALFORMED, "voice key has the wrong length");
    this.epoch = epoch;
    this.key = Uint8Array.from(key);
    this.salt = Uint8Array.from(salt);
  }

  /** The sender's derivation from its chain key at index 0; receivers are sent the result. */
  static async derive(initialChainKey, { roomId, senderId, epoch }) {
    const info = fields(LABELS.voiceKey, utf8(roomId), utf8(senderId), u64(epoch));
    const okm = await hkdfSha256(initialChainKey, { salt: ZERO_SALT, info, length: 36 });
    return new VoiceKey(epoch, okm.slice(0, 32), okm.slice(32));
  }

  /** salt || u64(seq): unique per seq, and the sender never reuses a seq under one key. */
  nonce(seq) {
    return concat(this.salt, u64(seq));
  }

  /** The imported AES-GCM key, cached: no importKey per frame at 50 frames/s. */
  cryptoKey() {
    this.#cryptoKey ??= aesKey(this.key);
    return this.#cryptoKey;
  }

  matches(other) {
    return other instanceof VoiceKey && this.epoch === other.epoch && bytesEqual(concat(this.key, this.salt), concat(other.key, other.salt));
  }
}

/** Parse the clear header, no crypto; only the length is checked (e2ee.malformed). */
export function voiceHeader(frame) {
  frame = asBytes(frame, "voice frame");
  if (frame.length < VOICE_HEADER_LEN + 16) throw new E2EEError(CODES.MALFORMED, "voice frame too short");
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  return { version: frame[0], flags: frame[1], level: frame[2], epochLo: frame[3], slot: view.getUint16(4), seq: view.getUint32(6) };
}

/** The header, strictly: what both clients refuse before any key is looked up. */
export function checkedVoiceHeader(frame) {
  const header = voiceHeader(frame);
  if (header.version !== VOICE_VERSION) throw new E2EEError(CODES.UNSUPPORTED, "unknown voice frame version");
  if (header.flags & ~(VOICE_FLAG_SPEECH | VOICE_FLAG_END) || header.level > VOICE_LEVEL_SILENCE) {
    throw new E2EEError(CODES.MALFORMED, "reserved voice header bits are set");
  }
  return header;
}

/** Header bytes 0-3 and 6-9 (the slot, 4-5, is the server's to write), room, sender. */
export function voiceAad(header, roomId, senderId) {
  return fields(LABELS.voiceAad, header.subarray(0, 4), header.subarray(6, 10), utf8(roomId), utf8(senderId));
}

function checkSeq(seq) {
  if (!Number.isSafeInteger(seq) || seq < 0 || seq > U32_MAX) throw new E2EEError(CODES.MALFORMED, "voice seq out of range");
  return seq;
}

export function voiceFlags({ speech, end }) {
  if (typeof speech !== "boolean" || typeof end !== "boolean") throw new E2EEError(CODES.MALFORMED, "speech and end are booleans");
  return (speech ? VOICE_FLAG_SPEECH : 0) | (end ? VOICE_FLAG_END : 0);
}

/** The whole frame with slot 0; the caller guarantees `seq` is fresh for this key. */
export async function sealVoiceFrame(key, opus, { roomId, senderId, seq, level, flags }) {
  opus = asBytes(opus, "opus frame");
  checkSeq(seq);
  if (!Number.isInteger(level) || level < 0 || level > VOICE_LEVEL_SILENCE) throw new E2EEError(CODES.MALFORMED, "audio level must be 0..127");
  if (flags & ~(VOICE_FLAG_SPEECH | VOICE_FLAG_END)) throw new E2EEError(CODES.MALFORMED, "unknown voice flags");
  const header = new Uint8Array(VOICE_HEADER_LEN);
  header.set([VOICE_VERSION, flags, level, key.epoch & 0xff]);
  new DataView(header.buffer).setUint32(6, seq);
  const params = { name: "AES-GCM", iv: key.nonce(seq), additionalData: voiceAad(header, roomId, senderId), tagLength: 128 };
  return concat(header, new Uint8Array(await subtle.encrypt(params, await key.cryptoKey(), opus)));
}

/** Check the header, then AES-GCM (e2ee.tampered); no replay state here, see VoiceReceiver. */
export async function openVoiceFrame(key, frame, { roomId, senderId }) {
  frame = asBytes(frame, "voice frame");
  const h = checkedVoiceHeader(frame);
  const params = { name: "AES-GCM", iv: key.nonce(h.seq), additionalData: voiceAad(frame, roomId, senderId), tagLength: 128 };
  let opus;
  try {
    opus = new Uint8Array(await subtle.decrypt(params, await key.cryptoKey(), frame.subarray(VOICE_HEADER_LEN)));
  } catch {
    throw new E2EEError(CODES.TAMPERED, "authenticated decryption failed");
  }
  return {
    opus,
    seq: h.seq,
    level: h.level,
    flags: h.flags,
    epoch: key.epoch,
    speech: (h.flags & VOICE_FLAG_SPEECH) !== 0,
    end: (h.flags & VOICE_FLAG_END) !== 0,
  };
}

const WINDOW_MASK = (1n << BigInt(VOICE_WINDOW)) - 1n;

/**
 * A sender's voice key as a receiver holds it, and which recent seqs already opened (voice.py):
 * `floor` is the seq the sender key announced (below it: out of window); `top` is the highest
 * seq opened (-1: none); bit i of `seen` is seq top - i.
 */
export class VoiceReceiver {
  constructor(key, floor = 0) {
    this.key = key;
    this.floor = floor;
    this.top = -1;
    this.seen = 0n;
  }

  check(seq) {
    if (seq < this.floor) throw new E2EEError(CODES.OUT_OF_WINDOW, "voice frame from before the key arrived");
    if (seq > this.top) return;
    const behind = this.top - seq;
    if (behind >= VOICE_WINDOW) throw new E2EEError(CODES.OUT_OF_WINDOW, "voice frame is behind the window");
    if ((this.seen >> BigInt(behind)) & 1n) throw new E2EEError(CODES.REPLAY, "voice frame was already played");
  }

  mark(seq) {
    if (seq > this.top) {
      const shift = seq - this.top;
      this.seen = shift < VOICE_WINDOW ? ((this.seen << BigInt(shift)) | 1n) & WINDOW_MASK : 1n;
      this.top = seq;
    } else {
      this.seen |= 1n << BigInt(this.top - seq);
    }
  }
}

// ---------------------------------------------------------------- the group session

/** One roster entry: [identity, epoch key or null]; e2ee.bad_key when anything is wrong. */
async function parseEntry(keys) {
  const identity = PublicIdentity.fromWire(keys);
  return [identity, await EpochKey.fromWire(keys, identity)];
}

/**
 * One member's end-to-end state for one room (or one private corner). Mirrors
 * spaces/e2ee/session.py (read its docstring for the rules); every crypto method is async and
 * runs exclusively, in call order.
 */
export class GroupSession {
  #rng;
  #queue = Promise.resolve();
  #epochKeys; // EpochKeys, shared with the sub-sessions of private corners
  #ownsEpochKeys;
  #floorEpoch = 0;
  #roster = new Map(); // member id -> PublicIdentity
  #theirEpochKeys = new Map(); // member id -> EpochKey, for our current epoch only
  #own = null; // SendingChain
  #delivered = new Map(); // member id -> [PublicIdentity, epoch key bytes] that hold our current chain
  #chains = new Map(); // sender id -> Map(epoch -> ReceivingChain)
  #installed = new Set(); // "epoch/sender" of every sender key ever installed
  #rotationRequired = false;
  #ownVoice = null; // VoiceKey for our current epoch
  #voiceSeq = -1; // the last seq we sealed, for the whole session
  #voices = new Map(); // sender id -> Map(epoch -> VoiceReceiver), same epochs as #chains

  constructor(roomId, memberId, identity, rng, epochKeys = null) {
    this.roomId = roomId;
    this.memberId = memberId;
    this.identity = identity;
    this.#rng = rng;
    this.#ownsEpochKeys = epochKeys === null;
    this.#epochKeys = epochKeys ?? new EpochKeys(identity);
    this.epoch = null;
    this.lastChanges = null;
  }

  static async create(roomId, memberId, { identity = null, rng = defaultRng } = {}) {
    return new GroupSession(roomId, memberId, identity ?? (await Identity.generate(rng)), rng);
  }

  /** A session for "<room>#<scope>" (a private corner): same identity and epoch keys, its own chains. */
  subSession(scope) {
    return new GroupSession(`${this.roomId}#${scope}`, this.memberId, this.identity, this.#rng, this.#epochKeys);
  }

  #exclusive(fn) {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  /** What to publish with `keys`: {dh, sig}, and once an epoch is known {ek, ek_epoch, ek_sig}. */
  publicKeys() {
    return this.#exclusive(async () => {
      const keys = this.identity.public.toWire();
      if (this.epoch === null) return keys;
      return { ...keys, ...(await this.#epochKeys.forEpoch(this.epoch, this.#rng)).public.toWire() };
    });
  }

  /** Apply the server's epoch and roster; resolves to directed envelopes [[to, body_b64], ...]. */
  updateRoster(epoch, roster) {
    return this.#exclusive(async () => {
      if (!Number.isSafeInteger(epoch) || epoch < 1 || epoch > U32_MAX) throw new E2EEError(CODES.MALFORMED, "epoch out of range");
      if (this.epoch !== null && epoch < this.epoch) throw new E2EEError(CODES.STALE_EPOCH, "the roster's epoch went backwards");
      const entries = roster instanceof Map ? [...roster] : Object.entries(roster);
      const parsed = new Map();
      const epochKeys = new Map();
      const ignored = [];
      for (const [id, keys] of entries) {
        let identity;
        let ek;
        try {
          [identity, ek] = await parseEntry(keys);
        } catch (err) {
          if (!(err instanceof E2EEError)) throw err;
          ignored.push(id);
          continue;
        }
        parsed.set(id, identity);
        if (ek !== null && ek.epoch === epoch) epochKeys.set(id, ek);
      }
      const me = this.memberId;
      const mine = parsed.get(me);
      if (ignored.includes(me) || (mine !== undefined && !mine.equals(this.identity.public))) {
        throw new E2EEError(CODES.ROSTER_MISMATCH, "the roster shows other keys under our member id");
      }
      const old = this.#roster;
      const joined = sortMembers(parsed.keys()).filter((m) => m !== me && !old.has(m));
      const left = sortMembers(old.keys()).filter((m) => m !== me && !parsed.has(m));
      const keysChanged = sortMembers(parsed.keys()).filter((m) => m !== me && old.has(m) && !old.get(m).equals(parsed.get(m)));
      const advanced = this.epoch === null || epoch > this.epoch;
      if (advanced) {
        // drawn first, chain then epoch key: a failing rng changes nothing
        const own = await SendingChain.start(epoch, this.#rng);
        await this.#epochKeys.forEpoch(epoch, this.#rng);
        this.#ownVoice = await VoiceKey.derive(own.chainKey, { roomId: this.roomId, senderId: me, epoch });
        this.#floorEpoch = this.epoch === null ? epoch : this.epoch;
        this.epoch = epoch;
        this.#own = own;
        this.#delivered = new Map();
        this.#rotationRequired = false;
      } else if (left.length > 0 || keysChanged.length > 0) {
        this.#rotationRequired = true; // the old holder keeps our chain: treated as a leave
      }
      const gone = new Set([...left, ...keysChanged]);
      this.#dropChains((sender, e) => gone.has(sender) || e < this.#floorEpoch);
      this.#forgetInstalled(this.#floorEpoch);
      if (this.#ownsEpochKeys) this.#epochKeys.forgetBefore(this.#floorEpoch);
      for (const m of gone) this.#delivered.delete(m);
      this.#roster = parsed;
      this.#theirEpochKeys = epochKeys;
      const [envelopes, undeliverable] = parsed.has(me) ? await this.#distribute() : [[], []];
      this.lastChanges = Object.freeze({
        epoch,
        epochAdvanced: advanced,
        joined,
        left,
        keysChanged,
        ignored: sortMembers(ignored),
        rotationRequired: this.#rotationRequired,
        undeliverable,
      });
      return envelopes;
    });
  }

  #dropChains(drop) {
    for (const store of [this.#chains, this.#voices]) {
      for (const [sender, byEpoch] of [...store]) {
        for (const e of [...byEpoch.keys()]) if (drop(sender, e)) byEpoch.delete(e);
        if (byEpoch.size === 0) store.delete(sender);
      }
    }
  }

  #forgetInstalled(below) {
    for (const slot of [...this.#installed]) if (Number(slot.split("/", 1)[0]) < below) this.#installed.delete(slot);
  }

  /** Seal our current chain to every member who can take it and does not hold it; each on its own. */
  async #distribute() {
    if (this.#own === null || this.#ownVoice === null || this.#rotationRequired) return [[], []];
    const payload = this.#own.senderKey(this.#ownVoice, this.#voiceSeq + 1).encode();
    const out = [];
    const sealed = new Map();
    const undeliverable = [];
    for (const id of sortMembers(this.#roster.keys())) {
      const keys = this.#roster.get(id);
      const ek = this.#theirEpochKeys.get(id);
      if (id === this.memberId || ek === undefined) continue; // sealed when their epoch key comes
      const held = this.#delivered.get(id);
      if (held !== undefined && held[0].equals(keys) && bytesEqual(held[1], ek.dh)) continue;
      let body;
      try {
        body = await sealEnvelope(payload, {
          sender: this.identity,
          senderId: this.memberId,
          recipient: keys,
          recipientEk: ek,
          recipientId: id,
          roomId: this.roomId,
          rng: this.#rng,
        });
      } catch (err) {
        if (!(err instanceof E2EEError)) throw err;
        undeliverable.push(id);
        continue;
      }
      out.push([id, b64encode(body)]);
      sealed.set(id, [keys, ek.dh]);
    }
    for (const [id, held] of sealed) this.#delivered.set(id, held);
    return [out, undeliverable];
  }

  /** The client could not send our envelope to `memberId`: seal it again next time. */
  undelivered(memberId) {
    this.#delivered.delete(memberId);
  }

  /** Whether our current chain went out to `memberId` (the "waiting for keys" notice). */
  holdsOurKey(memberId) {
    return this.#delivered.has(memberId);
  }

  #sender(senderId) {
    if (senderId === this.memberId) throw new E2EEError(CODES.OWN_MESSAGE, "envelope claims to come from ourselves");
    const keys = this.#roster.get(senderId);
    if (keys === undefined) throw new E2EEError(CODES.UNKNOWN_SENDER, "sender is not on the roster");
    return keys;
  }

  #checkEpoch(epoch) {
    if (this.epoch === null) throw new E2EEError(CODES.NOT_READY, "no roster yet");
    if (epoch < this.#floorEpoch) throw new E2EEError(CODES.STALE_EPOCH, "epoch is older than the keys kept");
    if (epoch > this.epoch + MAX_EPOCHS_AHEAD) throw new E2EEError(CODES.FUTURE_EPOCH, "epoch is too far ahead of the roster");
    return this.epoch;
  }

  async #ownEpochKey(epoch) {
    const current = this.#checkEpoch(epoch);
    const own = epoch <= current ? this.#epochKeys.get(epoch) : null;
    if (own === null) throw new E2EEError(epoch > current ? CODES.FUTURE_EPOCH : CODES.STALE_EPOCH, "we hold no epoch key for that epoch");
    return own;
  }

  #chain(senderId, epoch) {
    return this.#chains.get(senderId)?.get(epoch);
  }

  #set(store, senderId, epoch, value) {
    if (!store.has(senderId)) store.set(senderId, new Map());
    store.get(senderId).set(epoch, value);
  }

  #movedOn(senderId, epoch) {
    return [...(this.#voices.get(senderId)?.keys() ?? [])].some((e) => e > epoch);
  }

  /** Whether messages `senderId` sends in the current epoch can be opened. */
  hasSenderKey(senderId) {
    return this.epoch !== null && this.#chain(senderId, this.epoch) !== undefined;
  }

  /** Install a sender key delivered to us; a duplicate of a held chain is a no-op. */
  receiveDirected(senderId, bodyB64) {
    return this.#exclusive(async () => {
      const sender = this.#sender(senderId);
      const [epoch, payload] = await openEnvelope(b64decode(bodyB64), {
        recipient: this.identity,
        recipientId: this.memberId,
        epochKey: (e) => this.#ownEpochKey(e),
        sender,
        senderId,
        roomId: this.roomId,
      });
      const key = SenderKey.decode(payload);
      if (key.epoch !== epoch) throw new E2EEError(CODES.MALFORMED, "the sender key is for another epoch than its envelope");
      const existing = this.#chain(senderId, epoch);
      if (existing !== undefined) {
        const held = this.#voices.get(senderId).get(epoch).key;
        if (!(await existing.matches(key)) || !held.matches(key.voice)) throw new E2EEError(CODES.CHAIN_CONFLICT, "a different sender key for the same epoch");
        return;
      }
      const slot = `${epoch}/${senderId}`;
      if (this.#installed.has(slot)) throw new E2EEError(CODES.REPLAY, "a sender key for that sender and epoch was installed before");
      this.#installed.add(slot);
      this.#set(this.#chains, senderId, epoch, ReceivingChain.fromSenderKey(key));
      this.#set(this.#voices, senderId, epoch, new VoiceReceiver(key.voice, key.voiceSeq));
      this.#dropChains((s, e) => s === senderId && e < epoch); // the sender moved on
    });
  }

  /** Refuse every epoch before the current one from now on (the grace after an advance). */
  closePreviousEpoch() {
    return this.#exclusive(async () => {
      if (this.epoch === null) return;
      this.#floorEpoch = this.epoch;
      this.#dropChains((_, e) => e < this.epoch);
      this.#forgetInstalled(this.epoch);
      if (this.#ownsEpochKeys) this.#epochKeys.forgetBefore(this.epoch);
    });
  }

  /** Seal one text (of a content kind, CONTENT_KINDS) under our next message key; resolves to
   *  {body, commitment, frankingKey, epoch, index}. */
  encrypt(text, { kind = TEXT_KIND } = {}) {
    return this.#exclusive(async () => {
      if (this.#own === null) throw new E2EEError(CODES.NOT_READY, "no roster yet");
      if (this.#rotationRequired) throw new E2EEError(CODES.ROTATION_REQUIRED, "a member left without an epoch change");
      const [index, seed, advanced] = await this.#own.next();
      const frankingKey = await draw(this.#rng, 32);
      const commitment = await commit(frankingKey, text);
      const message = await sealRoomMessage({
        sender: this.identity,
        roomId: this.roomId,
        senderId: this.memberId,
        epoch: this.#own.epoch,
        index,
        seed,
        text,
        frankingKey,
        commitment,
        kind,
      });
      this.#own = advanced;
      return { body: b64encode(message.encode()), commitment: b64encode(commitment), frankingKey, epoch: message.epoch, index };
    });
  }

  /**
   * Verify, decrypt and check one room envelope; the chain moves only on success.
   * e2ee.no_sender_key: the sender's key has not arrived yet; buffer briefly and retry.
   */
  decrypt(senderId, bodyB64, commitmentB64) {
    return this.#exclusive(async () => {
      const sender = this.#sender(senderId);
      const commitment = b64decode(commitmentB64, { length: 32 });
      const message = RoomMessage.decode(b64decode(bodyB64));
      const ctx = { roomId: this.roomId, senderId, commitment };
      await message.verify(sender, ctx);
      const current = this.#checkEpoch(message.epoch);
      const chain = this.#chain(senderId, message.epoch);
      if (chain === undefined) {
        if (message.epoch < current || this.#installed.has(`${message.epoch}/${senderId}`)) {
          throw new E2EEError(CODES.STALE_EPOCH, "no key kept for that epoch");
        }
        if ([...(this.#chains.get(senderId)?.keys() ?? [])].some((e) => e > message.epoch)) {
          throw new E2EEError(CODES.STALE_EPOCH, "the sender has moved on to a newer epoch");
        }
        throw new E2EEError(CODES.NO_SENDER_KEY, "the sender's key has not arrived yet");
      }
      const [seed, advanced] = await chain.take(message.index);
      const [text, frankingKey, kind] = await message.open(seed, ctx);
      this.#set(this.#chains, senderId, message.epoch, advanced);
      return { senderId, text, frankingKey, commitment, epoch: message.epoch, index: message.index, kind };
    });
  }

  /**
   * Seal one Opus frame under our voice key for this epoch; resolves to the whole frame (slot 0).
   * `seq` must rise for the whole session (e2ee.seq_reused): the nonce comes from it.
   */
  encryptVoice(opus, { seq, level, speech, end = false } = {}) {
    return this.#exclusive(async () => {
      if (this.#own === null || this.#ownVoice === null) throw new E2EEError(CODES.NOT_READY, "no roster yet");
      if (this.#rotationRequired) throw new E2EEError(CODES.ROTATION_REQUIRED, "a member left without an epoch change");
      const flags = voiceFlags({ speech, end });
      if (checkSeq(seq) <= this.#voiceSeq) throw new E2EEError(CODES.SEQ_REUSED, "voice seq must rise");
      const frame = await sealVoiceFrame(this.#ownVoice, opus, { roomId: this.roomId, senderId: this.memberId, seq, level, flags });
      this.#voiceSeq = seq;
      return frame;
    });
  }

  /**
   * Open one voice frame from `senderId` (known from the slot the server stamped);
   * resolves to {opus, seq, level, flags, epoch, speech, end}. Only success moves the replay window.
   */
  decryptVoice(senderId, frame) {
    return this.#exclusive(async () => {
      this.#sender(senderId);
      frame = asBytes(frame, "voice frame");
      const header = checkedVoiceHeader(frame);
      const receiver = this.#voiceReceiver(senderId, header.epochLo);
      receiver.check(header.seq);
      const opened = await openVoiceFrame(receiver.key, frame, { roomId: this.roomId, senderId });
      receiver.mark(header.seq);
      return opened;
    });
  }

  /** The kept key whose epoch ends in `epochLo`; the newest if 256 epochs apart. */
  #voiceReceiver(senderId, epochLo) {
    if (this.epoch === null) throw new E2EEError(CODES.NOT_READY, "no roster yet");
    const newest = this.epoch + MAX_EPOCHS_AHEAD;
    const candidates = [];
    for (let e = this.#floorEpoch + ((epochLo - this.#floorEpoch) & 0xff); e <= newest; e += 256) candidates.push(e);
    const held = this.#voices.get(senderId);
    for (const e of [...candidates].reverse()) {
      const receiver = held?.get(e);
      if (receiver !== undefined) return receiver;
    }
    const newestCandidate = candidates.length > 0 ? candidates[candidates.length - 1] : this.#floorEpoch - 1;
    if (newestCandidate < this.epoch || this.#installed.has(`${newestCandidate}/${senderId}`) || this.#movedOn(senderId, newestCandidate)) {
      throw new E2EEError(CODES.STALE_EPOCH, "that epoch's voice key is closed");
    }
    throw new E2EEError(CODES.NO_SENDER_KEY, "no voice key for that sender and epoch");
  }

  /** A member's key fingerprint (ours included), for the member list. */
  fingerprint(memberId) {
    return this.#exclusive(async () => {
      if (memberId === this.memberId) return this.identity.public.fingerprint();
      const keys = this.#roster.get(memberId);
      if (keys === undefined) throw new E2EEError(CODES.UNKNOWN_SENDER, "member is not on the roster");
      return keys.fingerprint();
    });
  }

  /** The room's safety code: equal on every honest member's screen, at every epoch. */
  safetyCode() {
    return this.#exclusive(async () => {
      if (this.epoch === null) throw new E2EEError(CODES.NOT_READY, "no roster yet");
      const roster = new Map(this.#roster);
      roster.set(this.memberId, this.identity.public);
      return safetyCode(this.roomId, roster);
    });
  }
}
