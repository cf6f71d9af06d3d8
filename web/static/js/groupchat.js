// End-to-end encrypted group chat over a HearthConnection: the browser twin of spaces/chat.py.
//
// It keeps a GroupSession (e2ee.js) in step with the room: the roster and epoch come from the
// server's welcome / member_updated / member_left; our identity keys go out as `keys`; the
// sender-key envelopes the session asks for go out as `direct`. Room envelopes are decrypted
// here; one that arrives before its sender's key (e2ee.no_sender_key) waits in a small buffer
// and is retried when a key arrives. Anything else that fails to open is reported as
// "rejected", never shown as a message.
//
// Server messages are handled strictly one at a time, in arrival order (a promise queue), so a
// sender key is installed before the envelope that follows it is opened.
//
// Each opened message is also kept (the last KEPT_LIMIT, by `key`: its seq, or "corner:seq" in a
// quiet corner) with its franking proof, so that the person can report it (`report`), as
// spaces/chat.py does.
//
// Events: "message" {key, sender, text, seq, ts, tag, zone, frankingKey, commitment},
// "rejected" {sender, code}, "roster" {changes, ready: Set of member ids that hold our key},
// "security" {safetyCode, fingerprints: Map id -> fingerprint}, "problem" {code}.
// Nothing here logs; plaintext only ever leaves through the "message" event.

import { b64encode, CODES, E2EEError, GroupSession } from "./e2ee.js";

const PENDING_LIMIT = 256; // envelopes held while waiting for a sender key
const KEPT_LIMIT = 500; // received messages kept for reporting (as many as the log shows)

/** How a received message is named for reporting: its seq, or "corner:seq" in a quiet corner. */
export function messageKey(seq, zone = null) {
  return zone ? `${zone}:${seq}` : String(seq);
}

function sameKeys(a, b) {
  return Boolean(a && b && a.dh === b.dh && a.sig === b.sig);
}

export class GroupChat extends EventTarget {
  #queue = Promise.resolve();
  #pending = [];
  #roster = new Map(); // member id -> {dh, sig}, as the server last said
  #kept = new Map(); // message key -> what a report needs (oldest first)

  constructor(connection, roomId) {
    super();
    this.connection = connection;
    this.roomId = roomId;
    this.session = null;
    this.epoch = null;
  }

  /** Feed every server message, in order. */
  handle(message) {
    this.#queue = this.#queue
      .then(() => this.#handle(message))
      .catch((err) => this.#problem(err));
    return this.#queue;
  }

  /**
   * Encrypt and send one text; resolves to {seq, ts, tag, zone} from the server's `sent`.
   * With `zone` (a private corner we stand in), only the members in that corner receive it.
   */
  async say(text, { zone = null } = {}) {
    const out = await this.#exclusive(() => {
      if (this.session === null) throw new E2EEError(CODES.NOT_READY, "not in a room yet");
      return this.session.encrypt(text);
    });
    const envelope = { type: "envelope", body: out.body, commitment: out.commitment };
    if (zone) envelope.zone = zone;
    const reply = await this.connection.request(envelope, "say");
    if (reply.type === "error") {
      const err = new Error(reply.code);
      err.code = reply.code;
      throw err;
    }
    return { seq: reply.seq, ts: reply.ts, tag: reply.tag, zone: reply.zone ?? null };
  }

  /** A received message still kept for reporting, by key (see messageKey), or null. */
  kept(key) {
    return this.#kept.get(key) ?? null;
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

  /** Whether `member` is on the roster we distribute to (so they can read what we say). */
  holdsOurKey(member) {
    return this.#roster.has(member) && this.#roster.has(this.connection.member);
  }

  // --- internals -----------------------------------------------------------------

  #exclusive(fn) {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  async #handle(message) {
    switch (message.type) {
      case "welcome":
        return this.#welcome(message);
      case "member_joined": {
        // Every entry advances the epoch: we rotate, so the newcomer reads nothing said before.
        const member = message.member;
        if (member?.keys) this.#roster.set(member.id, member.keys);
        this.epoch = Math.max(this.epoch ?? 1, Number(message.epoch));
        return this.#sync();
      }
      case "member_updated": {
        const member = message.member;
        if (member?.keys && !sameKeys(this.#roster.get(member.id), member.keys)) {
          this.#roster.set(member.id, member.keys);
          await this.#sync();
        }
        return undefined;
      }
      case "member_left":
        this.#roster.delete(message.member);
        this.epoch = Math.max(this.epoch ?? 1, Number(message.epoch));
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
    const fresh = this.session === null || this.session.memberId !== me;
    if (fresh || (welcome.resumed && this.#changedWhileAway(welcome, roster))) {
      // A fresh page (first join, or a reload that resumed): a new identity for this session.
      // Also after a resume into a room that rotated while we were away: the sender keys the
      // others sent us meanwhile were refused (the server relays `direct` only to members who
      // are connected), and only a change of our keys makes them send their chains again.
      this.session = await GroupSession.create(this.roomId, me);
    }
    this.epoch = Number(welcome.room.epoch);
    this.#roster = roster;
    const ours = this.session.publicKeys();
    if (!sameKeys(this.#roster.get(me), ours)) {
      // The server does not hold our keys yet (or holds a reloaded page's old ones): publish
      // ours, and leave ourselves off the roster until the server confirms them.
      this.#roster.delete(me);
      this.connection.send({ type: "keys", ...ours });
    }
    await this.#sync();
  }

  #changedWhileAway(welcome, roster) {
    if (Number(welcome.room.epoch) !== this.epoch) return true;
    const me = this.connection.member;
    const ids = new Set([...roster.keys(), ...this.#roster.keys()]);
    ids.delete(me);
    return [...ids].some((id) => !sameKeys(roster.get(id), this.#roster.get(id)));
  }

  async #sync() {
    const envelopes = await this.session.updateRoster(this.epoch, new Map(this.#roster));
    for (const [to, body] of envelopes) this.connection.send({ type: "direct", to, body });
    const me = this.connection.member;
    const ready = new Set(this.#roster.has(me) ? [...this.#roster.keys()].filter((id) => id !== me) : []);
    this.dispatchEvent(new CustomEvent("roster", { detail: { changes: this.session.lastChanges, ready } }));
    const fingerprints = new Map();
    for (const id of new Set([me, ...this.#roster.keys()])) {
      try {
        fingerprints.set(id, await this.session.fingerprint(id));
      } catch (err) {
        if (!(err instanceof E2EEError)) throw err; // malformed keys: the session ignores that member
      }
    }
    const safetyCode = await this.session.safetyCode();
    this.dispatchEvent(new CustomEvent("security", { detail: { safetyCode, fingerprints } }));
  }

  async #direct(message) {
    try {
      await this.session.receiveDirected(message.from, message.body);
    } catch (err) {
      if (!(err instanceof E2EEError)) throw err;
      this.dispatchEvent(new CustomEvent("rejected", { detail: { sender: message.from, code: err.code } }));
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
    let opened;
    try {
      opened = await this.session.decrypt(envelope.from, envelope.body, envelope.commitment);
    } catch (err) {
      if (!(err instanceof E2EEError)) throw err;
      if (err.code === CODES.NO_SENDER_KEY) {
        if (!retrying && this.#pending.length < PENDING_LIMIT) this.#pending.push(envelope);
        return false;
      }
      this.dispatchEvent(new CustomEvent("rejected", { detail: { sender: envelope.from, code: err.code } }));
      return true;
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
    this.#kept.set(detail.key, detail);
    while (this.#kept.size > KEPT_LIMIT) this.#kept.delete(this.#kept.keys().next().value);
    this.dispatchEvent(new CustomEvent("message", { detail }));
    return true;
  }

  #problem(err) {
    const code = err instanceof E2EEError ? err.code : "e2ee.internal";
    this.dispatchEvent(new CustomEvent("problem", { detail: { code } }));
  }
}
