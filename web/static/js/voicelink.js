// Voice over UDP (docs/client.md, "Voice"; docs/protocol.md, "Voice over WebTransport").
//
// The page's voice frames, already encrypted (voice.js), go out as WebTransport datagrams
// when this browser and this network allow it, and over the WebSocket otherwise; frames
// come in on both, and go to the same place (audio.js). Everything else stays on the
// WebSocket. Over UDP a lost packet costs one 20 ms frame, not a stall of everything behind
// it, and each datagram repeats the sender's previous frame, so one lost datagram costs
// nothing at all.
//
//   joined → `voice_transport` over the WebSocket → {url, token, hashes} →
//   new WebTransport(url?token, {serverCertificateHashes}) → ready within OPEN_TIMEOUT_MS and
//   datagrams.maxDatagramSize > 0 → voice on datagrams; the session ends or never opens →
//   voice on the WebSocket again, and another try after a backoff.
//
// Timers come from an injected clock ({setTimeout, clearTimeout}) so tests can run the
// timeouts and retries without waiting. Nothing here logs; stats() holds counts only.

const OPEN_TIMEOUT_MS = 4000; // a session not ready by then: UDP is blocked or lossy beyond use
const RETRY_MS = [5000, 15000, 60000, 300000]; // after a session fails or ends
const LENGTH_BYTES = 2; // datagram: u16 length of the frame, the frame, the previous frame
const WINDOW = 64;

const realClock = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
};

function fromBase64(text) {
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) out[i] = raw.charCodeAt(i);
  return out;
}

const seqOf = (frame) => (frame.length >= 10 ? new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(6) : null);

/** Which seqs of one sender were already handed on (spaces/voicelink.py SeqWindow). */
class SeqWindow {
  constructor() {
    this.highest = -1;
    this.seen = new Set();
  }

  fresh(seq) {
    if (seq > this.highest) {
      this.highest = seq;
      this.seen.add(seq);
      for (const old of this.seen) if (old <= seq - WINDOW) this.seen.delete(old);
      return true;
    }
    if (this.highest - seq > WINDOW) {
      this.highest = seq; // the sender started counting afresh
      this.seen = new Set([seq]);
      return true;
    }
    if (this.seen.has(seq)) return false;
    this.seen.add(seq);
    return true;
  }
}

/** u16 length ‖ frame ‖ previous frame (optional). */
export function packDatagram(frame, repeat = null) {
  const out = new Uint8Array(LENGTH_BYTES + frame.length + (repeat ? repeat.length : 0));
  new DataView(out.buffer).setUint16(0, frame.length);
  out.set(frame, LENGTH_BYTES);
  if (repeat) out.set(repeat, LENGTH_BYTES + frame.length);
  return out;
}

/** [frame, repeat|null], or null if the datagram is not framed so. */
export function unpackDatagram(data) {
  if (data.length < LENGTH_BYTES) return null;
  const n = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint16(0);
  if (LENGTH_BYTES + n > data.length) return null;
  const frame = data.subarray(LENGTH_BYTES, LENGTH_BYTES + n);
  const rest = data.subarray(LENGTH_BYTES + n);
  return [frame, rest.length ? rest : null];
}

export class VoiceLink {
  #session = null; // {transport, writer, max} while voice goes over datagrams
  #opening = false;
  #timer = null;
  #attempt = 0;
  #last = null; // the last frame we sent as a datagram, for the next one's repeat
  #windows = new Map(); // slot -> SeqWindow
  #stopped = false;
  #unavailable = false;

  /**
   * @param {object} options
   * @param {import("./protocol.js").HearthConnection} options.connection
   * @param {(frame: ArrayBuffer) => void} options.onFrame where a received frame goes (audio.js)
   * @param {{setTimeout: Function, clearTimeout: Function}} [options.clock]
   * @param {Function|undefined} [options.WebTransport] the browser's, or a test's
   */
  constructor({ connection, onFrame, clock = realClock, WebTransport = globalThis.WebTransport }) {
    this.connection = connection;
    this.onFrame = onFrame;
    this.clock = clock;
    this.WebTransport = WebTransport;
    this.counts = { datagramsSent: 0, datagramsReceived: 0, socketSent: 0, dropped: 0, duplicates: 0, sessions: 0, failures: 0 };
    connection.addEventListener("voice", (event) => this.onFrame(event.detail));
    connection.addEventListener("state", (event) => this.#state(event.detail.state));
    if (connection.state === "joined") this.#state("joined");
  }

  /** "webtransport" while a session carries voice, else "websocket". */
  get transport() {
    return this.#session ? "webtransport" : "websocket";
  }

  /** One encrypted voice frame; false if it could not be sent on either. */
  send(frame) {
    const session = this.#session;
    if (session && LENGTH_BYTES + frame.length <= session.max) {
      const seq = seqOf(frame);
      const last = this.#last;
      const repeat = last && seq !== null && last.seq === ((seq - 1) >>> 0) && LENGTH_BYTES + frame.length + last.frame.length <= session.max ? last.frame : null;
      this.#last = { seq, frame };
      if (session.writer.desiredSize !== null && session.writer.desiredSize <= 0) {
        this.counts.dropped += 1; // the browser holds enough already: late audio is worse than none
        return true;
      }
      session.writer.write(packDatagram(frame, repeat)).catch(() => {});
      this.counts.datagramsSent += 1;
      return true;
    }
    if (!this.connection.sendVoice(frame)) return false;
    this.counts.socketSent += 1;
    return true;
  }

  stats() {
    return { transport: this.transport, ...this.counts };
  }

  stop() {
    this.#stopped = true;
    this.#cancelRetry();
    this.#close();
  }

  // --- the session ---------------------------------------------------------------------

  #state(state) {
    if (this.#stopped) return;
    if (state === "joined") {
      this.#attempt = 0;
      if (!this.#session && !this.#opening) this.#open();
    } else {
      this.#cancelRetry();
      this.#close(); // the server ends it with the WebSocket anyway
    }
  }

  async #open() {
    if (this.#stopped || this.#unavailable || typeof this.WebTransport !== "function" || this.connection.state !== "joined") return;
    this.#opening = true;
    let transport = null;
    try {
      const offer = await this.connection.request({ type: "voice_transport" }, "vt");
      if (offer.type !== "voice_transport") {
        if (offer.code === "webtransport_unavailable") this.#unavailable = true; // not offered here
        throw new Error(offer.code);
      }
      const options = offer.hashes?.length
        ? { serverCertificateHashes: offer.hashes.map((h) => ({ algorithm: "sha-256", value: fromBase64(h) })) }
        : {};
      transport = new this.WebTransport(`${offer.url}?token=${encodeURIComponent(offer.token)}`, options);
      transport.closed.catch(() => {});
      await this.#within(transport.ready, OPEN_TIMEOUT_MS);
      const max = Math.min(transport.datagrams.maxDatagramSize || 0, offer.max_bytes || Infinity);
      if (!(max > 0)) throw new Error("no datagrams");
      if (this.#stopped || this.connection.state !== "joined") throw new Error("gone");
      const session = { transport, writer: transport.datagrams.writable.getWriter(), max };
      this.#session = session;
      this.#last = null;
      this.#attempt = 0;
      this.counts.sessions += 1;
      this.#read(session);
      transport.closed.then(() => this.#ended(session), () => this.#ended(session));
    } catch {
      if (transport) {
        try {
          transport.close();
        } catch {
          // already closed
        }
      }
      this.counts.failures += 1;
      this.#retryLater();
    } finally {
      this.#opening = false;
    }
  }

  #within(promise, ms) {
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => reject(new Error("timed out")), ms);
      promise.then(
        (value) => {
          this.clock.clearTimeout(timer);
          resolve(value);
        },
        (err) => {
          this.clock.clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  async #read(session) {
    const reader = session.transport.datagrams.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        this.#datagram(value);
      }
    } catch {
      // the session ended; #ended puts voice back on the WebSocket
    }
  }

  #datagram(data) {
    const parts = unpackDatagram(data);
    if (!parts) return;
    this.counts.datagramsReceived += 1;
    const [frame, repeat] = parts;
    for (const one of repeat ? [repeat, frame] : [frame]) {
      const seq = seqOf(one);
      if (seq === null) continue;
      const slot = (one[4] << 8) | one[5];
      let window = this.#windows.get(slot);
      if (!window) {
        window = new SeqWindow();
        this.#windows.set(slot, window);
      }
      if (!window.fresh(seq)) {
        this.counts.duplicates += 1;
        continue;
      }
      this.onFrame(one.slice().buffer); // an ArrayBuffer, as the WebSocket's binary frames
    }
  }

  #ended(session) {
    if (this.#session !== session) return;
    this.#session = null;
    this.#retryLater();
  }

  #close() {
    const session = this.#session;
    this.#session = null;
    if (!session) return;
    try {
      session.transport.close();
    } catch {
      // already closed
    }
  }

  #retryLater() {
    if (this.#stopped || this.#unavailable || this.#timer !== null || this.connection.state !== "joined") return;
    const delay = RETRY_MS[Math.min(this.#attempt, RETRY_MS.length - 1)];
    this.#attempt += 1;
    this.#timer = this.clock.setTimeout(() => {
      this.#timer = null;
      if (!this.#session && !this.#opening) this.#open();
    }, delay);
  }

  #cancelRetry() {
    if (this.#timer !== null) this.clock.clearTimeout(this.#timer);
    this.#timer = null;
  }
}
