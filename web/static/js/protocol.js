// A hearth.v1 client for the browser (docs/protocol.md; client/websocket.py is its Python twin).
//
// One HearthConnection per room page. It opens ws(s)://<this host>/ws with the subprotocol
// hearth.v1, joins (or resumes with the token this tab kept), and when the socket drops it
// reconnects with backoff and resumes the same member. The server rotates the token on every
// welcome; the new one replaces the old in sessionStorage — the only thing the page stores.
// A link can also die without either end being told (a phone that loses signal keeps its
// socket open): while the page waits for the server — a connection's welcome, the answer to a
// request — and hears nothing at all for STALL_MS, it drops the socket and reconnects, as for
// any drop. A resume says the last room seq this connection received, so the server sends the room
// envelopes that came after it, and the last `dseq` (the directs are numbered for each member), so
// it sends first the sender keys that went to the dead link and never arrived; a join or resume refused with `room_moving` (the room is
// moving to another node) is tried again after a short pause.
//
// Events (EventTarget): "state" {state, code}, "welcome" (the welcome message), "message"
// (every server message, welcome included), "voice" (a binary frame, an ArrayBuffer). States: connecting, waiting (in the lobby until a
// facilitator admits us), joined, reconnecting, and the ends: left, removed, elsewhere,
// expired, refused, denied (not admitted from the lobby), ended (the session was ended).

export const SUBPROTOCOL = "hearth.v1";
export const CLOSE_RESUMED_ELSEWHERE = 4001;
export const CLOSE_REMOVED = 4003;
export const CLOSE_NOT_ADMITTED = 4004;
export const CLOSE_SESSION_ENDED = 4005;
export const CLOSE_ROOM_MOVED = 4010; // the room's node went away: resume (on any node) at once
export const ENDED = new Set(["left", "removed", "elsewhere", "expired", "refused", "denied", "ended"]);
const LOBBY_TYPES = new Set(["help", "im_ok"]); // what the server takes from the lobby
const RETRY_MS = [500, 1000, 2000, 4000, 8000, 15000];
const REQUEST_TIMEOUT_MS = 15000;
const LEAVE_TIMEOUT_MS = 1500;
const STALL_MS = 8000; // waiting for the server and hearing nothing at all this long: the link is dead
const VOICE_BACKLOG_BYTES = 4096; // about a second of voice: past that, late audio is dropped

export function socketUrl(loc = window.location) {
  return `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}/ws`;
}

/** The session token for one room, in this tab's sessionStorage (never localStorage). */
export class TokenStore {
  constructor(room, storage = window.sessionStorage) {
    this.key = `hearth.token.${room}`;
    this.storage = storage;
  }

  get() {
    try {
      return this.storage.getItem(this.key);
    } catch {
      return null;
    }
  }

  set(token) {
    try {
      this.storage.setItem(this.key, token);
    } catch {
      // storage disabled: the member cannot resume after a reload, but can still talk
    }
  }

  clear() {
    try {
      this.storage.removeItem(this.key);
    } catch {
      // nothing was stored
    }
  }
}

export class HearthConnection extends EventTarget {
  #ws = null;
  #state = "idle";
  #attempt = 0;
  #timer = null;
  #refs = 0;
  #pending = new Map(); // ref -> {resolve, reject, timer}
  #joined = false; // ever welcomed: a drop now means "reconnecting", not "connecting"
  #lastSeq = null; // the last room seq received: a resume says it, and gets what came after
  #lastDseq = null; // the number of the last `direct` received: likewise, for sender keys
  #stall = null; // timer: while the page waits for the server, it checks that something is heard
  #heardAt = 0; // when anything last came from the server (performance.now())
  #connectingSince = null; // when this socket's attempt began, until its welcome or the lobby
  #join;

  /**
   * @param {object} options
   * @param {string} options.room room id
   * @param {TokenStore} options.tokens where the session token lives
   * @param {object|null} options.join fields of a first `join` (pseudonym, avatar, locale), or null to resume
   */
  constructor({ room, tokens, join = null, url = socketUrl() }) {
    super();
    this.room = room;
    this.tokens = tokens;
    this.url = url;
    this.#join = join;
    this.member = null;
    this.welcome = null;
    this.onOnline = () => this.#retryNow();
  }

  get state() {
    return this.#state;
  }

  get open() {
    return this.#ws !== null && this.#ws.readyState === WebSocket.OPEN && this.#state === "joined";
  }

  start() {
    window.addEventListener("online", this.onOnline);
    this.#connect();
  }

  /**
   * Send one client message; false when not connected (the caller decides what a drop means).
   * Someone waiting in the lobby can still ask for help (`help`, `im_ok`): the server takes it.
   */
  send(message) {
    const waiting = this.#state === "waiting" && this.#ws?.readyState === WebSocket.OPEN;
    if (!this.open && !(waiting && LOBBY_TYPES.has(message.type))) return false;
    this.#ws.send(JSON.stringify(message));
    return true;
  }

  /** Send one voice frame (binary); false when not connected or the socket is backed up. */
  sendVoice(frame) {
    if (!this.open || this.#ws.bufferedAmount > VOICE_BACKLOG_BYTES) return false;
    this.#ws.send(frame);
    return true;
  }

  /** Send with a fresh `ref`; resolves to the reply carrying it (e.g. `sent`, or `error`). */
  request(message, prefix = "r") {
    const ref = `${prefix}-${++this.#refs}`;
    return new Promise((resolve, reject) => {
      if (!this.send({ ...message, ref })) {
        reject(new Error("not connected"));
        return;
      }
      const timer = setTimeout(() => {
        this.#pending.delete(ref);
        reject(new Error("no reply"));
      }, REQUEST_TIMEOUT_MS);
      this.#pending.set(ref, { resolve, reject, timer, sentAt: performance.now() });
      this.#watch();
    });
  }

  /** Leave the room for good: the server forgets the token and tells the others. */
  leave() {
    const ws = this.#ws;
    this.tokens.clear();
    this.#setState("left");
    this.#stopRetrying();
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "leave" }));
      setTimeout(() => ws.close(1000), LEAVE_TIMEOUT_MS); // the server normally closes first
    } else if (ws) {
      ws.close(1000);
    }
  }

  /**
   * The page is going away (pagehide: a closed tab, a reload, a language switch): `leave`
   * with `closing`, so the others see this member leave within seconds — not after the
   * minute a dropped connection gets — while this tab, reloaded, still resumes it.
   */
  pageHidden() {
    const ws = this.#ws;
    if (ws && ws.readyState === WebSocket.OPEN && this.#state === "joined") {
      ws.send(JSON.stringify({ type: "leave", closing: true }));
    }
  }

  /** Quick exit: say `leave` if we can, then go silent at once (no events, no retries). */
  stop() {
    const ws = this.#ws;
    this.#ws = null;
    this.#state = "left";
    this.#stopRetrying();
    this.tokens.clear();
    if (ws) {
      ws.onmessage = null;
      ws.onclose = null;
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "leave" }));
      ws.close(1000);
    }
  }

  // --- internals -----------------------------------------------------------------

  #setState(state, code = null) {
    if (this.#state === state && code === null) return;
    this.#state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, code } }));
  }

  // A drop while waiting in the lobby has no session to resume (no welcome, no token yet):
  // the retry sends the same `join` again and waits in the lobby afresh.
  #connect() {
    this.#timer = null;
    if (ENDED.has(this.#state)) return;
    this.#setState(this.#joined ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new WebSocket(this.url, SUBPROTOCOL);
    } catch {
      this.#scheduleRetry();
      return;
    }
    this.#ws = ws;
    this.#connectingSince = performance.now(); // (the handshake, then the welcome)
    this.#watch();
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      this.#heardAt = performance.now(); // the handshake is an answer: now the welcome is awaited
      this.#connectingSince = this.#heardAt;
      this.#opened(ws);
    };
    ws.onmessage = (event) => {
      if (ws === this.#ws) this.#receive(event.data);
    };
    ws.onclose = (event) => {
      if (ws === this.#ws) this.#closed(event);
    };
  }

  #opened(ws) {
    const token = this.tokens.get();
    if (token) {
      const resume = { type: "resume", token };
      if (this.#lastSeq !== null) resume.seq = this.#lastSeq;
      if (this.#lastDseq !== null) resume.dseq = this.#lastDseq;
      ws.send(JSON.stringify(resume));
    } else if (this.#join) {
      ws.send(JSON.stringify({ type: "join", room: this.room, ...this.#join }));
    } else {
      this.#end("expired", "session_expired");
      ws.close(1000);
    }
  }

  /** Since when the page has waited for the server with nothing heard: the first of this
   *  socket's welcome and the requests still unanswered that went out after the server was last
   *  heard, or Infinity. (A request sent before something was heard proves nothing: the link was
   *  alive after it, and the request has its own timeout.) */
  #silentSince() {
    let since = Infinity;
    for (const at of [this.#connectingSince, ...[...this.#pending.values()].map((w) => w.sentAt)]) {
      if (at !== null && at >= this.#heardAt) since = Math.min(since, at);
    }
    return since;
  }

  /** While the page waits for the server, hearing nothing at all for STALL_MS means the link is
   *  dead: the socket is dropped and the page reconnects, as after any drop. */
  #watch() {
    if (this.#stall !== null) return;
    const since = this.#silentSince();
    if (since === Infinity || this.#ws === null) return;
    // After each failed attempt the page waits longer (8, 16, 24, then 32 s): a link that is
    // merely very slow is not given up on again and again.
    const patience = STALL_MS * Math.min(4, 1 + this.#attempt);
    const silence = performance.now() - since;
    if (silence < patience) {
      this.#stall = setTimeout(() => {
        this.#stall = null;
        this.#watch();
      }, patience - silence);
      return;
    }
    const ws = this.#ws;
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
    ws.close(1000); // (it may never reach the server, which lets the member go after its ping)
    this.#closed({ code: 1006 });
  }

  #receive(data) {
    this.#heardAt = performance.now();
    if (typeof data !== "string") {
      if (this.#state === "joined") this.dispatchEvent(new CustomEvent("voice", { detail: data }));
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message === null || typeof message !== "object") return;
    if (typeof message.seq === "number" && !message.zone && message.type !== "welcome") {
      this.#lastSeq = Math.max(this.#lastSeq ?? 0, message.seq);
    }
    if (message.type === "direct" && Number.isSafeInteger(message.dseq)) {
      this.#lastDseq = Math.max(this.#lastDseq ?? 0, message.dseq);
    }
    if (message.type === "welcome") {
      this.tokens.set(message.token);
      this.member = message.member;
      this.welcome = message;
      this.#joined = true;
      this.#connectingSince = null;
      this.#join = null; // from now on, only ever resume
      this.#attempt = 0;
      this.#setState("joined");
      this.dispatchEvent(new CustomEvent("welcome", { detail: message }));
    } else if (message.type === "waiting") {
      this.#connectingSince = null;
      this.#setState("waiting"); // the lobby is on: `welcome` comes when a facilitator admits us
    } else if (message.type === "error" && this.#state !== "joined") {
      this.#refusedBeforeWelcome(message);
      return;
    }
    const waiting = typeof message.ref === "string" ? this.#pending.get(message.ref) : undefined;
    if (waiting) {
      clearTimeout(waiting.timer);
      this.#pending.delete(message.ref);
      waiting.resolve(message);
    }
    this.dispatchEvent(new CustomEvent("message", { detail: message }));
  }

  #refusedBeforeWelcome(error) {
    // Still open: rate limited (the retry comes on close), or a reminder that we wait in the lobby.
    if (error.code === "rate_limited" || error.code === "waiting") return;
    if (error.code === "room_moving") {
      // The room is moving to another node: nothing was done; come back in a moment.
      this.#attempt = 0;
      this.#ws?.close(1000);
      return;
    }
    if (error.code === "session_expired") {
      this.tokens.clear();
      this.#end("expired", error.code);
    } else {
      this.#end("refused", error.code);
    }
    this.#ws?.close(1000);
  }

  #closed(event) {
    this.#ws = null;
    clearTimeout(this.#stall);
    this.#stall = null;
    this.#connectingSince = null;
    for (const [ref, waiting] of this.#pending) {
      clearTimeout(waiting.timer);
      waiting.reject(new Error("connection closed"));
      this.#pending.delete(ref);
    }
    if (ENDED.has(this.#state)) return;
    if (event.code === CLOSE_RESUMED_ELSEWHERE) {
      this.#end("elsewhere");
      return;
    }
    if (event.code === CLOSE_REMOVED || event.code === CLOSE_NOT_ADMITTED || event.code === CLOSE_SESSION_ENDED) {
      this.tokens.clear();
      this.#end({ [CLOSE_REMOVED]: "removed", [CLOSE_NOT_ADMITTED]: "denied", [CLOSE_SESSION_ENDED]: "ended" }[event.code]);
      return;
    }
    if (event.code === CLOSE_ROOM_MOVED) this.#attempt = 0; // not a failure: come back quickly
    this.#setState(this.#joined ? "reconnecting" : "connecting");
    this.#scheduleRetry();
  }

  #scheduleRetry() {
    if (this.#timer !== null || ENDED.has(this.#state)) return;
    const base = RETRY_MS[Math.min(this.#attempt, RETRY_MS.length - 1)];
    this.#attempt += 1;
    const delay = base * (0.75 + Math.random() * 0.5); // jitter: a room's members do not all return at once
    this.#timer = setTimeout(() => this.#connect(), delay);
  }

  #retryNow() {
    if (this.#timer === null) return;
    clearTimeout(this.#timer);
    this.#connect();
  }

  #stopRetrying() {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    window.removeEventListener("online", this.onOnline);
  }

  #end(state, code = null) {
    this.#stopRetrying();
    this.#setState(state, code);
  }
}
