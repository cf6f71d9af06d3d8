// End-to-end encrypted group chat over a HearthConnection: the browser twin of client/groupchat.py.
//
// It keeps a GroupSession (e2ee.js) in step with the room: the roster and epoch come from the
// server's welcome / member_joined / member_updated / member_resumed / member_left / corners;
// our keys go out as `keys` (the identity, and our signed epoch key after every advance); the
// sender-key envelopes the session asks for go out as `direct`. Room envelopes are decrypted
// here; one that arrives before its sender's key (e2ee.no_sender_key) waits in a small buffer
// and is retried when a key arrives. Anything else that fails to open is reported as
// "rejected", never shown as a message. GRACE_MS after an epoch advance the previous epoch is
// closed (docs/e2ee.md §8).
//
// A private corner we are a member of gets a session of its own (GroupSession.subSession): what
// is said and spoken there is sealed for its members, and the room's session never opens it.
//
// Server messages are handled strictly one at a time, in arrival order (a promise queue), so a
// sender key is installed before the envelope that follows it is opened.
//
// Each opened message is also kept (the last KEPT_LIMIT, by `key`: its seq, or "corner:seq" in a
// quiet corner) with its franking proof, so that the person can report it (`report`), as
// client/groupchat.py does.
//
// Nothing said is lost to a reconnection (docs/protocol.md, "When the room moves"): each message
// carries a client id and is kept (its text) until the server's `sent`; after a resume, or a
// `room_moving` refusal, what is not acknowledged is encrypted again and sent again with the same
// id, in order (the server delivers an id once). So is a message left unanswered ACK_WAIT_MS on
// an open connection (a message between nodes can be lost while Redis fails over: pub/sub
// delivers at most once). One whose `sent` says the room was two epochs past the one it was
// sealed in opens for nobody (members keep the previous epoch's keys only): it is said again,
// sealed anew, with its first id numbered (`<id>:2`). `say` resolves when it is finally
// acknowledged.
// An envelope that opens but whose (sender, id) was shown already is not shown again.
//
// Events: "message" {key, sender, text, seq, ts, tag, zone, frankingKey, commitment},
// "rejected" {sender, code}, "roster" {changes, ready: Set of member ids that hold our key,
// unannounced: ids new to the roster that no `member_joined` announced — say they joined: a
// server that slips a member in by `member_updated`, or while we were away, is seen},
// "security" {safetyCode, fingerprints: Map id -> fingerprint}, "problem" {code},
// "session" {session, fresh} (a new session: fresh when its identity is new, not restored).
// Nothing here logs; plaintext only ever leaves through the "message" event.

import { b64encode, CODES, E2EEError, GroupSession } from "./e2ee.js";
import { ENDED } from "./protocol.js";

const PENDING_LIMIT = 256; // envelopes held while waiting for a sender key
const SEEN_LIMIT = 4096; // (sender, id) of envelopes shown, to leave out a repeat
const RESEND_MS = 1000; // what was refused with room_moving goes again after this
const ACK_WAIT_MS = 3000; // what is not answered this long on an open connection goes again
const READY_WAIT_MS = 8000; // at most this long a message waits for everyone to hold our key
const KEPT_LIMIT = 500; // received messages kept for reporting (as many as the log shows)
export const GRACE_MS = 10000; // an epoch stays open this long after the next one began

/** How a received message is named for reporting: its seq, or "corner:seq" in a quiet corner. */
export function messageKey(seq, zone = null) {
  return zone ? `${zone}:${seq}` : String(seq);
}

/** A client id for an envelope (docs/protocol.md): 12 random bytes, base64url. */
export function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
}

export class GroupChat extends EventTarget {
  #queue = Promise.resolve();
  #pending = [];
  #roster = new Map(); // member id -> keys, as the server last said
  #private = {}; // private corner -> [member ids], as the server last said
  #corners = new Map(); // our private corners -> their sessions
  #kept = new Map(); // message key -> what a report needs (oldest first)
  #published = null; // the keys we last sent, as JSON
  #grace = null;
  #identityFor;
  #unacked = new Map(); // client id -> {text, zone, resolve, reject}: said, not acknowledged yet
  #seen = new Set(); // "sender\nid" (before any ":") of envelopes shown
  #whenReady = []; // callbacks waiting for everyone to hold our sender key
  #announced = new Set(); // members a first welcome or a member_joined told us of

  /**
   * @param {import("./protocol.js").HearthConnection} connection
   * @param {string} roomId
   * @param {object} [options]
   * @param {(member: string) => import("./e2ee.js").Identity|null} [options.identityFor] the
   *   identity this tab kept for a member across a reload (keep.js), or null for a new one
   */
  constructor(connection, roomId, { identityFor = () => null } = {}) {
    super();
    this.connection = connection;
    this.roomId = roomId;
    this.session = null;
    this.epoch = null;
    this.#identityFor = identityFor;
    connection.addEventListener("state", (event) => {
      if (!ENDED.has(event.detail.state)) return; // no resume is coming: what waits is not sent
      for (const [id, said] of this.#unacked) {
        this.#unacked.delete(id);
        const err = new Error("not_sent");
        err.code = "not_sent";
        said.reject(err);
      }
    });
  }

  /** Feed every server message, in order. */
  handle(message) {
    this.#queue = this.#queue
      .then(() => this.#handle(message))
      .catch((err) => this.#problem(err));
    return this.#queue;
  }

  /**
   * Encrypt and send one text; resolves to {seq, ts, tag, zone} from the server's `sent` — after
   * a reconnection if need be (it is sent again then, with the same id). With `zone` (a private
   * corner we are in), it is sealed for the corner and only its members receive it. With `id` (a
   * message a reload kept unacknowledged, keep.js), it is sent again under its first client id,
   * so that the server delivers it once whether or not the first try reached it.
   */
  say(text, { zone = null, id = newClientId() } = {}) {
    return new Promise((resolve, reject) => {
      this.#unacked.set(id, { text, zone, resolve, reject });
      this.#transmit(id);
    });
  }

  async #transmit(id) {
    const said = this.#unacked.get(id);
    if (!said) return;
    // Sealed once everyone holds our sender key for this epoch (at most READY_WAIT_MS later):
    // what is sealed before our key reached someone stays unreadable to them, and around a
    // failover the epoch moves on as each member resumes.
    await this.#ready();
    if (this.#unacked.get(id) !== said) return;
    let out;
    let sealedIn = null;
    try {
      out = await this.#exclusive(() => {
        const session = said.zone ? this.#corners.get(said.zone) : this.session;
        if (!session) throw new E2EEError(CODES.NOT_READY, "not in a room yet");
        sealedIn = session.epoch;
        return session.encrypt(said.text);
      });
    } catch (err) {
      this.#unacked.delete(id);
      said.reject(err);
      return;
    }
    const envelope = { type: "envelope", body: out.body, commitment: out.commitment, id };
    if (said.zone) envelope.zone = said.zone;
    let reply;
    try {
      reply = await this.#answer(envelope);
    } catch {
      return; // not connected, or the connection went: sent again after the resume
    }
    if (this.#unacked.get(id) !== said) return; // answered meanwhile
    if (reply === null) {
      this.#transmit(id); // unanswered: again, same id (the server delivers it once)
      return;
    }
    if (reply.type === "error" && reply.code === "room_moving") {
      setTimeout(() => this.#transmit(id), RESEND_MS); // nothing was done: again in a moment
      return;
    }
    this.#unacked.delete(id);
    if (reply.type === "sent" && typeof reply.epoch === "number" && typeof sealedIn === "number"
        && reply.epoch >= sealedIn + 2) {
      // Sequenced two epochs after it was sealed (two members resumed at once): everyone
      // keeps the previous epoch's keys only, so nobody opens it. Said again, a new id.
      const [base, n] = id.split(":");
      const again = `${base}:${Number(n ?? 1) + 1}`; // the same message: shown once
      this.#unacked.set(again, said);
      this.#transmit(again);
      return;
    }
    if (reply.type === "error") {
      const err = new Error(reply.code);
      err.code = reply.code;
      said.reject(err);
      return;
    }
    said.resolve({ seq: reply.seq, ts: reply.ts, tag: reply.tag, zone: reply.zone ?? null });
  }

  /** The server's answer to an envelope, or null if none came within ACK_WAIT_MS. */
  #answer(envelope) {
    const request = this.connection.request(envelope, "say");
    request.catch(() => {}); // (a late failure of a request given up on is nobody's concern)
    let timer;
    const late = new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), ACK_WAIT_MS);
    });
    return Promise.race([request, late]).finally(() => clearTimeout(timer));
  }

  /** A received message still kept for reporting, by key (see messageKey), or null. */
  kept(key) {
    return this.#kept.get(key) ?? null;
  }

  /** Messages a reload brought back (keep.js): reportable again, as they were. */
  restore(details) {
    for (const detail of details) this.#keep(detail);
  }

  /**
   * Reveal one received message to the facilitators, with its franking proof (docs/e2ee.md):
   * the server checks that the sender really sent this text. Resolves to the server's reply
   * (`report_received`, or an `error` such as report_invalid).
   */
  report(key, reason = "") {
    const m = this.#kept.get(key);
    if (!m) return Promise.reject(new Error("no such message"));
    const message = {
      type: "report", seq: m.seq, from: m.sender, ts: m.ts, text: m.text, tag: m.tag,
      franking_key: b64encode(m.frankingKey), commitment: b64encode(m.commitment),
    };
    if (reason) message.reason = reason.slice(0, 500);
    if (m.zone) message.zone = m.zone;
    return this.connection.request(message, "report");
  }

  /** Whether our current sender key has gone out to `member` (so they can read what we say). */
  holdsOurKey(member) {
    return Boolean(this.session?.holdsOurKey(member));
  }

  /**
   * The session that seals and opens `member`'s voice: a private corner's when we share one
   * with them (or, for ourselves, when we are in one), else the room's.
   */
  voiceSession(member) {
    const me = this.connection.member;
    for (const [corner, members] of Object.entries(this.#private)) {
      if (members.includes(me) && members.includes(member) && this.#corners.has(corner)) return this.#corners.get(corner);
    }
    return this.session;
  }

  /** Stop the grace timer (the page is going away). */
  stop() {
    clearTimeout(this.#grace);
  }

  // --- internals -----------------------------------------------------------------

  #exclusive(fn) {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  #advance(epoch) {
    if (epoch !== undefined && epoch !== null) this.epoch = Math.max(this.epoch ?? 1, Number(epoch));
  }

  async #handle(message) {
    switch (message.type) {
      case "welcome":
        return this.#welcome(message);
      case "member_joined":
        // Every entry advances the epoch: we rotate, so the newcomer reads nothing said before.
        if (typeof message.member?.id === "string") this.#announced.add(message.member.id);
        if (message.member?.keys) this.#roster.set(message.member.id, message.member.keys);
        this.#advance(message.epoch);
        return this.#sync();
      case "member_updated":
      case "member_resumed":
        if (message.member?.keys) this.#roster.set(message.member.id, message.member.keys);
        this.#advance(message.epoch);
        return this.#sync();
      case "member_left":
        this.#roster.delete(message.member);
        this.#advance(message.epoch);
        return this.#sync();
      case "corners":
        this.#private = message.private ?? {};
        this.#advance(message.epoch);
        return this.#sync();
      case "direct":
        return this.#direct(message);
      case "envelope":
        await this.#open(message);
        return undefined;
      default:
        return undefined;
    }
  }

  async #welcome(welcome) {
    const me = welcome.member;
    const roster = new Map();
    for (const member of welcome.room.members) {
      if (member.keys) roster.set(member.id, member.keys);
    }
    if (this.session === null || this.session.memberId !== me) {
      // A fresh page: the identity this tab kept for the member (a reload), or a new one.
      const kept = this.#identityFor(me);
      this.session = await GroupSession.create(this.roomId, me, kept ? { identity: kept } : {});
      this.#corners.clear();
      this.#published = null;
      // Whoever is here when we arrive needs no notice; after a resume, whoever came meanwhile does.
      this.#announced = new Set(welcome.room.members.map((m) => m.id));
      this.dispatchEvent(new CustomEvent("session", { detail: { session: this.session, fresh: !kept } }));
    }
    // A resume comes back into a later epoch (every resume advances it): everyone rotates and
    // seals fresh keys to us; nothing of before is installed again.
    this.epoch = Math.max(this.epoch ?? 1, Number(welcome.room.epoch));
    this.#roster = roster;
    this.#private = welcome.room.private ?? {};
    await this.#sync();
    if (welcome.resumed) {
      for (const id of [...this.#unacked.keys()]) this.#transmit(id); // again, in order, same ids
    }
  }

  #allHoldOurKey() {
    const me = this.connection.member;
    return this.session !== null
      && [...this.#roster.keys()].every((id) => id === me || this.session.holdsOurKey(id));
  }

  #ready() {
    if (this.#allHoldOurKey()) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#whenReady = this.#whenReady.filter((w) => w !== done);
        resolve();
      }, READY_WAIT_MS);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#whenReady.push(done);
    });
  }

  async #sync() {
    const session = this.session;
    if (session === null) return;
    const before = session.epoch;
    const roster = new Map(this.#roster);
    const me = this.connection.member;
    const ours = session.identity.public.toWire();
    if (roster.has(me) && (roster.get(me).dh !== ours.dh || roster.get(me).sig !== ours.sig)) {
      // The server still shows keys of ours from before (a reload that could not keep them):
      // leave ourselves off until it shows the ones we publish now.
      roster.delete(me);
    }
    this.#sendDirects(session, await session.updateRoster(this.epoch, roster), null);
    if (before !== null && session.epoch !== before) this.#armGrace();
    const keys = await session.publicKeys();
    const json = JSON.stringify(keys);
    if (json !== this.#published && this.connection.send({ type: "keys", ...keys })) this.#published = json;
    for (const [corner, members] of Object.entries(this.#private)) {
      if (members.includes(me) && !this.#corners.has(corner)) this.#corners.set(corner, session.subSession(corner));
    }
    for (const corner of [...this.#corners.keys()]) {
      if (!(this.#private[corner] ?? []).includes(me)) this.#corners.delete(corner); // released
    }
    for (const [corner, sub] of this.#corners) {
      const members = new Map(this.#private[corner].filter((m) => roster.has(m)).map((m) => [m, roster.get(m)]));
      this.#sendDirects(sub, await sub.updateRoster(this.epoch, members), corner);
    }
    const ready = new Set([...this.#roster.keys()].filter((id) => id !== me && session.holdsOurKey(id)));
    const unannounced = session.lastChanges.joined.filter((id) => !this.#announced.has(id));
    for (const id of unannounced) this.#announced.add(id);
    this.dispatchEvent(new CustomEvent("roster", { detail: { changes: session.lastChanges, ready, unannounced } }));
    if (this.#whenReady.length && this.#allHoldOurKey()) {
      const waiting = this.#whenReady;
      this.#whenReady = [];
      for (const done of waiting) done();
    }
    const fingerprints = new Map();
    for (const id of new Set([me, ...this.#roster.keys()])) {
      try {
        fingerprints.set(id, await session.fingerprint(id));
      } catch (err) {
        if (!(err instanceof E2EEError)) throw err; // malformed keys: the session ignores that member
      }
    }
    const safetyCode = await session.safetyCode();
    this.dispatchEvent(new CustomEvent("security", { detail: { safetyCode, fingerprints } }));
  }

  #sendDirects(session, envelopes, zone) {
    for (const [to, body] of envelopes) {
      const direct = { type: "direct", to, body };
      if (zone) direct.zone = zone;
      if (!this.connection.send(direct)) session.undelivered(to); // sealed again at the next sync
    }
  }

  #armGrace() {
    clearTimeout(this.#grace);
    this.#grace = setTimeout(() => {
      this.#exclusive(async () => {
        await this.session?.closePreviousEpoch();
        for (const sub of this.#corners.values()) await sub.closePreviousEpoch();
      });
    }, GRACE_MS);
  }

  async #direct(message) {
    const session = message.zone ? this.#corners.get(message.zone) : this.session;
    try {
      if (!session) throw new E2EEError(CODES.UNKNOWN_SENDER, "a corner we are not in");
      await session.receiveDirected(message.from, message.body);
    } catch (err) {
      if (!(err instanceof E2EEError)) throw err;
      // A key for an epoch the room has already left (changes in quick succession): not shown.
      if (err.code !== CODES.STALE_EPOCH) {
        this.dispatchEvent(new CustomEvent("rejected", { detail: { sender: message.from, code: err.code } }));
      }
      return;
    }
    const waiting = this.#pending;
    this.#pending = [];
    for (const envelope of waiting) {
      if (!(await this.#open(envelope, true))) this.#pending.push(envelope);
    }
  }

  /** True when the envelope is dealt with (shown or rejected); false when it still waits for a key. */
  async #open(envelope, retrying = false) {
    if (this.session === null) return true;
    const session = envelope.zone ? this.#corners.get(envelope.zone) : this.session;
    let opened;
    try {
      if (!session) throw new E2EEError(CODES.UNKNOWN_SENDER, "a corner we are not in");
      opened = await session.decrypt(envelope.from, envelope.body, envelope.commitment);
    } catch (err) {
      if (!(err instanceof E2EEError)) throw err;
      if (err.code === CODES.NO_SENDER_KEY) {
        if (!retrying && this.#pending.length < PENDING_LIMIT) this.#pending.push(envelope);
        return false;
      }
      this.dispatchEvent(new CustomEvent("rejected", { detail: { sender: envelope.from, code: err.code } }));
      return true;
    }
    if (typeof envelope.id === "string") {
      const seen = `${envelope.from}\n${envelope.id.split(":")[0]}`; // (`<id>:2`: said again)
      if (this.#seen.has(seen)) return true; // sent again after a reconnection: shown once
      this.#seen.add(seen);
      if (this.#seen.size > SEEN_LIMIT) this.#seen.delete(this.#seen.values().next().value);
    }
    const detail = {
      key: messageKey(envelope.seq, envelope.zone),
      sender: envelope.from,
      text: opened.text,
      seq: envelope.seq,
      ts: envelope.ts,
      tag: envelope.tag,
      zone: envelope.zone ?? null,
      frankingKey: opened.frankingKey, // kept only to report this message
      commitment: opened.commitment,
    };
    this.#keep(detail);
    this.dispatchEvent(new CustomEvent("message", { detail }));
    return true;
  }

  #keep(detail) {
    this.#kept.set(detail.key, detail);
    while (this.#kept.size > KEPT_LIMIT) this.#kept.delete(this.#kept.keys().next().value);
  }

  #problem(err) {
    const code = err instanceof E2EEError ? err.code : "e2ee.internal";
    this.dispatchEvent(new CustomEvent("problem", { detail: { code } }));
  }
}
