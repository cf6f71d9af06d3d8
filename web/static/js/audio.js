// Hearing the room: voice frames in, spatial sound out (docs/client.md, "Voice").
//
//   binary frame → slot → member → GroupSession.decryptVoice → per-speaker jitter buffer
//   → AudioDecoder (Opus) → AudioBufferSource at its play time → gain → PannerNode (HRTF,
//   inverse distance) → master gain → speakers
//
// RoomAudio owns the page's one AudioContext (48 kHz; voice.js captures in it too), follows
// the roster and positions from the server's messages (slot → member, where everyone is), and
// keeps one Speaker per member heard. The listener stands at the origin facing "up" the screen
// (−y, Web Audio's −z), so a speaker at a smaller x is to the left; each panner sits at the
// speaker's position relative to ours, in metres.
//
// The jitter buffer (class Speaker) keeps a play-out timeline per speaker: frame `nextSeq`
// starts at context time `nextTime`, and each next seq 20 ms later. A talkspurt starts
// `target` seconds after its first frame arrives; the target follows the measured
// inter-arrival jitter (RFC 3550) between 40 and 200 ms, and grows after a late frame or an
// underrun. Frames are played in seq order; one that arrives after its turn is dropped; a
// missing frame is skipped at its play time (20 ms of silence: the concealment is by
// skipping); a timeline that runs ahead of the target by more than two frames drops a quiet
// frame to catch up.
//
// Time comes from a clock RoomAudio is given (REAL_CLOCK in the page: performance.now(), the
// AudioContext's currentTime, setTimeout), so a test drives the jitter buffer on a clock of
// its own, frame by frame, whatever else the machine is doing.
//
// Nothing here logs, and no sample leaves the page. The counters (stats()) are read by the
// tests through voice.js's window hook; they hold counts, levels and positions only.

import { CODES, E2EEError, voiceHeader } from "./e2ee.js";

export const SAMPLE_RATE = 48000;
export const FRAME_S = 0.02;
const FRAME_US = 20000;
export const MIN_DELAY_S = 0.04;
export const MAX_DELAY_S = 0.2;
const GAP_DECIDE_S = 0.005; // a missing frame is given up this close to its play time
const NEW_TALKSPURT_MS = 200; // a pause this long starts a new talkspurt (and a new timeline)
const SHRINK_EVERY_S = 0.5;
const MAX_WAITING = 50; // frames held per speaker (1 s)
const KEY_WAIT_MS = 400; // frames held while the sender's new voice key is on its way
const KEY_WAIT_LIMIT = 20;
const SPEAKING_MS = 300; // the speaking ring stays this long after the last speech frame
const TICK_MS = 10;
const VOICED_RMS = 1e-4; // −80 dBFS: a decoded frame quieter than this counts as silent
export const DEFAULT_HEARING_RANGE = 7;

/** RFC 6464 audio level of samples with this RMS (full scale 1.0): 0..127 = −dBov. */
export function audioLevel(rms) {
  if (!(rms > 0)) return 127;
  return Math.max(0, Math.min(127, Math.round(-20 * Math.log10(rms))));
}

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

/**
 * Where the jitter buffer's time comes from: `nowMs()` (arrivals, speaking rings),
 * `audioTime(context)` (seconds on the play-out timeline) and `later(fn, ms)` / `cancel(id)`
 * (its ticks).
 */
export const REAL_CLOCK = Object.freeze({
  nowMs: () => performance.now(),
  audioTime: (context) => context.currentTime,
  later: (fn, ms) => setTimeout(fn, ms),
  cancel: (id) => clearTimeout(id),
});

class Speaker {
  constructor(room, id) {
    this.room = room;
    this.id = id;
    this.nodes = null; // {gain, panner} once there is a context
    this.decoder = null;
    this.waiting = new Map(); // seq -> opened frame, not yet decoded
    this.keyWait = []; // [arrival ms, frame] refused with e2ee.no_sender_key
    this.nextSeq = null;
    this.nextTime = 0;
    this.lastArrival = -Infinity;
    this.prevTransit = null;
    this.jitter = 0; // seconds, RFC 3550 estimator
    this.extra = 0; // seconds added after late frames and underruns; decays
    this.ended = true;
    this.lastShrink = 0;
    this.lastSpeech = -Infinity;
    this.speaking = false;
    this.decodeTs = 0;
    this.playAt = new Map(); // decode timestamp -> context time
    this.pos = { x: 0, z: 0 };
    this.counts = {
      received: 0, decrypted: 0, rejected: 0, decoded: 0, voiced: 0, played: 0,
      late: 0, concealed: 0, underruns: 0, shrunk: 0, tooLate: 0,
    };
    this.rms = 0;
    this.energy = 0; // mean square of the decoded frames, smoothed
  }

  target() {
    return clamp(FRAME_S + 4 * this.jitter + this.extra, MIN_DELAY_S, MAX_DELAY_S);
  }

  connect(ctx, master) {
    if (this.nodes) return;
    const gain = new GainNode(ctx, { gain: 1 });
    const panner = new PannerNode(ctx, {
      panningModel: "HRTF",
      distanceModel: "inverse",
      refDistance: 1,
      maxDistance: this.room.hearingRange,
      rolloffFactor: 1,
      positionX: this.pos.x,
      positionY: 0,
      positionZ: this.pos.z,
    });
    gain.connect(panner).connect(master);
    this.nodes = { gain, panner };
  }

  place(x, z, smooth) {
    this.pos = { x, z };
    if (!this.nodes) return;
    const { panner } = this.nodes;
    if (smooth) {
      const now = panner.context.currentTime;
      panner.positionX.setTargetAtTime(x, now, 0.03);
      panner.positionZ.setTargetAtTime(z, now, 0.03);
    } else {
      panner.positionX.value = x;
      panner.positionZ.value = z;
    }
  }

  /** A decrypted frame, with sound on. */
  push(frame) {
    const nowMs = this.room.clock.nowMs();
    const fresh = this.ended || nowMs - this.lastArrival > NEW_TALKSPURT_MS;
    this.lastArrival = nowMs;
    this.extra *= 0.995;
    if (this.nextSeq !== null && frame.seq < this.nextSeq) {
      if (this.nextSeq - frame.seq <= 2 * MAX_WAITING) {
        // Its turn is over. One straggler raises the delay by a frame (and that decays); it
        // does not feed the jitter estimate, where a single outlier would weigh for seconds.
        this.counts.late += 1;
        this.extra = Math.min(MAX_DELAY_S, this.extra + FRAME_S);
        return;
      }
      this.reset(); // far behind: the sender started counting afresh (a reloaded page)
    }
    // RFC 3550 interarrival jitter, within a talkspurt (seq counts frames sent, not time).
    const transit = nowMs - frame.seq * (FRAME_US / 1000);
    if (fresh || this.prevTransit === null) {
      this.prevTransit = transit;
    } else {
      const d = Math.min(Math.abs(transit - this.prevTransit) / 1000, MAX_DELAY_S);
      this.jitter += (d - this.jitter) / 16;
      this.prevTransit = transit;
    }
    if (this.waiting.size >= MAX_WAITING) {
      this.counts.late += 1; // held back behind a hole for a second already
      return;
    }
    this.waiting.set(frame.seq, frame);
    this.pump(fresh);
  }

  /** Decode every frame whose turn has come, in seq order; skip the missing ones at their time. */
  pump(fresh = false) {
    const ctx = this.room.context;
    if (!ctx || this.waiting.size === 0) return;
    const clock = this.room.clock;
    const now = clock.audioTime(ctx);
    if (this.nextSeq === null) {
      this.nextSeq = Math.min(...this.waiting.keys()); // the first frame we hear from them
      this.nextTime = now + this.target();
    }
    while (this.waiting.size > 0) {
      const frame = this.waiting.get(this.nextSeq);
      if (frame === undefined) {
        const ahead = this.nextTime - clock.audioTime(ctx);
        if (ahead < -GAP_DECIDE_S) {
          // Its turn went by unchecked (the page was busy, or the stream ran dry): nothing is
          // playing now, so start the timeline again and give the missing frame its full
          // delay to arrive, rather than skip it at once.
          if (!fresh && !this.ended) this.#underrun();
          this.nextTime = clock.audioTime(ctx) + this.target();
          break;
        }
        if (ahead > GAP_DECIDE_S) break; // it may still come
        this.counts.concealed += 1; // lost or too slow: its 20 ms stay silent
        this.#advance();
        const first = Math.min(...this.waiting.keys());
        if (first - this.nextSeq > MAX_WAITING) {
          this.nextSeq = first; // a long hole: do not walk it frame by frame
          this.nextTime = clock.audioTime(ctx) + this.target();
        }
        continue;
      }
      this.waiting.delete(this.nextSeq);
      const ahead = this.nextTime - clock.audioTime(ctx);
      if (ahead < 0) {
        // Its turn passed while it was on its way: play it now, with more delay from here on.
        if (!fresh && !this.ended) this.#underrun();
        this.nextTime = clock.audioTime(ctx) + this.target();
      } else if (this.#tooFarAhead(ahead, frame) && now - this.lastShrink > SHRINK_EVERY_S) {
        this.counts.shrunk += 1; // too much delay: drop a quiet frame to catch up
        this.lastShrink = now;
        this.nextSeq += 1;
        continue;
      }
      this.#decode(frame, this.nextTime);
      this.ended = frame.end;
      this.#advance();
    }
  }

  /** More delay than the target needs: a quiet frame goes first, a speech frame only if far off. */
  #tooFarAhead(ahead, frame) {
    const over = ahead - this.target();
    return over > 2 * FRAME_S && (!frame.speech || over > 4 * FRAME_S);
  }

  #advance() {
    this.nextSeq += 1;
    this.nextTime += FRAME_S;
  }

  #underrun() {
    this.counts.underruns += 1;
    this.extra = Math.min(MAX_DELAY_S, this.extra + FRAME_S);
  }

  #decode(frame, when) {
    if (!this.decoder || this.decoder.state === "closed") {
      this.decoder = new AudioDecoder({
        output: (data) => this.#output(data),
        error: () => {
          this.decoder = null; // a fresh decoder for the next frame
          this.playAt.clear();
        },
      });
      this.decoder.configure({ codec: "opus", sampleRate: SAMPLE_RATE, numberOfChannels: 1 });
    }
    // Contiguous timestamps of our own: the decoder numbers its outputs the same way, so each
    // decoded frame finds its play time even though frames were skipped on the timeline.
    const ts = this.decodeTs;
    this.decodeTs += FRAME_US;
    this.playAt.set(ts, when);
    try {
      this.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: ts, data: frame.opus }));
    } catch {
      this.playAt.delete(ts);
    }
  }

  #output(data) {
    const ctx = this.room.context;
    try {
      let when = this.playAt.get(data.timestamp);
      if (when === undefined && this.playAt.size > 0) when = this.playAt.values().next().value;
      for (const ts of this.playAt.keys()) {
        if (ts > data.timestamp) break;
        this.playAt.delete(ts);
      }
      const n = data.numberOfFrames;
      if (!ctx || !this.nodes || n === 0) return;
      const samples = new Float32Array(n);
      data.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
      let sum = 0;
      for (let i = 0; i < n; i += 1) sum += samples[i] * samples[i];
      const meanSquare = sum / n;
      this.counts.decoded += 1;
      if (Math.sqrt(meanSquare) > VOICED_RMS) this.counts.voiced += 1;
      this.rms = Math.sqrt(meanSquare);
      this.energy += (meanSquare - this.energy) / 8;
      const now = this.room.clock.audioTime(ctx);
      if (when === undefined || when < now - 0.005) {
        this.counts.tooLate += 1; // decoded after its play time: late audio is worse than none
        return;
      }
      const buffer = new AudioBuffer({ length: n, numberOfChannels: 1, sampleRate: data.sampleRate });
      buffer.copyToChannel(samples, 0);
      const source = new AudioBufferSourceNode(ctx, { buffer });
      source.connect(this.nodes.gain);
      source.start(ctx.currentTime + Math.max(0, when - now)); // its delay, on the real context
      this.counts.played += 1;
    } finally {
      data.close();
    }
  }

  /** Forget the timeline (sound off, the sender restarted): the next frame starts afresh. */
  reset() {
    this.waiting.clear();
    this.nextSeq = null;
    this.ended = true;
    this.prevTransit = null;
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = null;
    this.playAt.clear();
  }

  close() {
    this.reset();
    if (this.nodes) {
      this.nodes.gain.disconnect();
      this.nodes.panner.disconnect();
    }
    this.nodes = null;
  }

  stats() {
    const p = this.nodes?.panner;
    return {
      ...this.counts,
      rms: this.rms,
      energy: this.energy,
      jitterMs: Math.round(this.jitter * 10000) / 10,
      targetMs: Math.round(this.target() * 1000),
      waiting: this.waiting.size,
      speaking: this.speaking,
      panner: { x: this.pos.x, z: this.pos.z },
      pannerNow: p ? { x: p.positionX.value, z: p.positionZ.value, model: p.panningModel } : null,
    };
  }
}

export class RoomAudio {
  #tick = null;
  #worklet = null;

  /**
   * @param {object} options
   * @param {(speaker: string) => object|null} options.session the GroupSession that opens a
   *   speaker's voice (a private corner's, or the room's; it changes on a fresh identity)
   * @param {(id: string, on: boolean) => void} options.onSpeaking the speaking ring of a member
   * @param {() => void} options.onChange the context started or stopped (for the controls)
   * @param {object} options.clock where time comes from (REAL_CLOCK; a test's own)
   */
  constructor({ session, onSpeaking = () => {}, onChange = () => {}, clock = REAL_CLOCK }) {
    this.session = session;
    this.clock = clock;
    this.onSpeaking = onSpeaking;
    this.onChange = onChange;
    this.hearingRange = DEFAULT_HEARING_RANGE;
    this.context = null;
    this.master = null;
    this.soundWanted = true;
    this.me = null;
    this.members = new Map(); // id -> {x, y, zone, slot}
    this.slots = new Map(); // slot -> id
    this.speakers = new Map(); // id -> Speaker
    this.ownSpeech = -Infinity;
    this.ownSpeaking = false;
    this.counts = { frames: 0, unknownSlot: 0, malformed: 0, silenced: 0 };
    this.stopped = false;
  }

  get running() {
    return this.context !== null && this.context.state === "running";
  }

  get playing() {
    return this.running && this.soundWanted;
  }

  /** Create or resume the AudioContext; call it from a user gesture (autoplay rules). */
  ensureContext() {
    if (this.stopped) return null;
    if (this.context === null) {
      try {
        this.context = new AudioContext({ sampleRate: SAMPLE_RATE, latencyHint: "interactive" });
      } catch {
        return null; // no audio here: the page still chats
      }
      this.master = new GainNode(this.context, { gain: this.soundWanted ? 1 : 0 });
      this.master.connect(this.context.destination);
      this.context.addEventListener("statechange", () => this.onChange());
      for (const speaker of this.speakers.values()) speaker.connect(this.context, this.master);
      this.#placeAll(false);
    }
    if (this.context.state === "suspended") this.context.resume().catch(() => {});
    return this.context;
  }

  /** The capture worklet module, loaded once per context. */
  loadWorklet() {
    this.#worklet ??= this.context.audioWorklet.addModule("/static/js/capture-worklet.js");
    return this.#worklet;
  }

  setSound(on) {
    this.soundWanted = on;
    if (on) this.ensureContext();
    if (this.master) this.master.gain.setTargetAtTime(on ? 1 : 0, this.context.currentTime, 0.02);
    if (!on) for (const speaker of this.speakers.values()) speaker.reset();
    this.onChange();
  }

  // --- the room, as the server tells it ------------------------------------------------

  handle(message) {
    switch (message.type) {
      case "welcome": {
        this.me = message.member;
        const range = Number(message.voice?.hearing_range);
        if (range > 0) this.hearingRange = range;
        const ids = new Set(message.room.members.map((m) => m.id));
        for (const id of [...this.speakers.keys()]) if (!ids.has(id)) this.#forget(id);
        this.members.clear();
        this.slots.clear();
        for (const member of message.room.members) this.#setMember(member);
        this.#placeAll(false);
        break;
      }
      case "member_joined":
      case "member_updated":
        this.#setMember(message.member);
        this.#placeAll(true);
        break;
      case "member_left":
        this.#forget(message.member);
        break;
      case "positions": {
        let meMoved = false;
        for (const [id, x, y, zone] of message.moves) {
          const member = this.members.get(id);
          if (!member) continue;
          Object.assign(member, { x, y, zone });
          if (id === this.me) meMoved = true;
          else this.#place(id, true);
        }
        if (meMoved) this.#placeAll(true);
        break;
      }
      case "direct":
        // A sender key may have come: retry frames that waited for it, once the chat has
        // installed it (its queue runs first).
        this.clock.later(() => this.#retryKeyWait(), 50);
        break;
      default:
        break;
    }
  }

  #setMember(member) {
    const old = this.members.get(member.id);
    if (old && old.slot !== member.slot && this.slots.get(old.slot) === member.id) this.slots.delete(old.slot);
    this.members.set(member.id, { x: member.x, y: member.y, zone: member.zone, slot: member.slot });
    if (Number.isInteger(member.slot)) this.slots.set(member.slot, member.id);
  }

  #forget(id) {
    const member = this.members.get(id);
    if (member && this.slots.get(member.slot) === id) this.slots.delete(member.slot);
    this.members.delete(id);
    const speaker = this.speakers.get(id);
    if (speaker) {
      speaker.close();
      if (speaker.speaking) this.onSpeaking(id, false);
    }
    this.speakers.delete(id);
  }

  #place(id, smooth) {
    const speaker = this.speakers.get(id);
    const them = this.members.get(id);
    const me = this.members.get(this.me);
    if (!speaker || !them || !me) return;
    // Screen x → audio x (right), screen y (down) → audio z (towards the listener's back).
    speaker.place(them.x - me.x, them.y - me.y, smooth);
  }

  #placeAll(smooth) {
    for (const id of this.speakers.keys()) this.#place(id, smooth);
  }

  // --- frames in --------------------------------------------------------------------------

  /** One binary WebSocket message. */
  receive(data) {
    if (this.stopped) return;
    this.counts.frames += 1;
    let header;
    try {
      header = voiceHeader(data);
    } catch {
      this.counts.malformed += 1;
      return;
    }
    const id = this.slots.get(header.slot);
    if (id === undefined || id === this.me) {
      this.counts.unknownSlot += 1;
      return;
    }
    const speaker = this.#speaker(id);
    speaker.counts.received += 1;
    this.#open(speaker, data);
  }

  #speaker(id) {
    let speaker = this.speakers.get(id);
    if (!speaker) {
      speaker = new Speaker(this, id);
      this.speakers.set(id, speaker);
      if (this.context) speaker.connect(this.context, this.master);
      this.#place(id, false);
    }
    return speaker;
  }

  #open(speaker, data, arrived = this.clock.nowMs()) {
    const session = this.session(speaker.id);
    if (!session) return;
    session.decryptVoice(speaker.id, data).then(
      (opened) => this.#opened(speaker, opened),
      (err) => {
        if (err instanceof E2EEError && err.code === CODES.NO_SENDER_KEY && speaker.keyWait.length < KEY_WAIT_LIMIT) {
          speaker.keyWait.push([arrived, data]); // the key is probably a moment behind
          return;
        }
        speaker.counts.rejected += 1; // dropped silently: the decoder's timeline skips it
      },
    );
  }

  #retryKeyWait() {
    const now = this.clock.nowMs();
    for (const speaker of this.speakers.values()) {
      const waiting = speaker.keyWait;
      speaker.keyWait = [];
      for (const [arrived, data] of waiting) {
        if (now - arrived > KEY_WAIT_MS) speaker.counts.rejected += 1;
        else this.#open(speaker, data, arrived);
      }
    }
  }

  #opened(speaker, opened) {
    if (this.stopped || this.speakers.get(speaker.id) !== speaker) return;
    speaker.counts.decrypted += 1;
    if (opened.speech) speaker.lastSpeech = this.clock.nowMs();
    if (this.playing) speaker.push(opened);
    else this.counts.silenced += 1;
    this.#wake();
  }

  /** We are sending speech (voice.js): our own ring. */
  noteOwnSpeech() {
    this.ownSpeech = this.clock.nowMs();
    this.#wake();
  }

  #wake() {
    if (this.#tick === null && !this.stopped) this.#tick = this.clock.later(() => this.#run(), TICK_MS);
  }

  #run() {
    this.#tick = null;
    const now = this.clock.nowMs();
    let busy = false;
    for (const speaker of this.speakers.values()) {
      if (this.playing) speaker.pump();
      const speaking = now - speaker.lastSpeech < SPEAKING_MS;
      if (speaking !== speaker.speaking) {
        speaker.speaking = speaking;
        this.onSpeaking(speaker.id, speaking);
      }
      if (speaking || speaker.waiting.size > 0) busy = true;
    }
    const own = now - this.ownSpeech < SPEAKING_MS;
    if (own !== this.ownSpeaking && this.me !== null) {
      this.ownSpeaking = own;
      this.onSpeaking(this.me, own);
    }
    if (own) busy = true;
    if (busy) this.#wake();
  }

  // --- for the tests (voice.js puts these on window) -----------------------------------

  stats() {
    const speakers = {};
    for (const [id, speaker] of this.speakers) speakers[id] = speaker.stats();
    const me = this.members.get(this.me);
    return {
      context: this.context ? this.context.state : "none",
      sampleRate: this.context ? this.context.sampleRate : null,
      sound: this.soundWanted,
      hearingRange: this.hearingRange,
      me: me ? { x: me.x, y: me.y, zone: me.zone } : null,
      ...this.counts,
      speakers,
    };
  }

  /**
   * Energy of the left and the right channel of what the room plays, over `ms` (realtime
   * analysers after a channel splitter; nothing is recorded or kept).
   */
  measureStereo(ms) {
    const ctx = this.context;
    if (!ctx) return Promise.resolve(null);
    const splitter = new ChannelSplitterNode(ctx, { numberOfOutputs: 2 });
    const left = new AnalyserNode(ctx, { fftSize: 2048 });
    const right = new AnalyserNode(ctx, { fftSize: 2048 });
    this.master.connect(splitter);
    splitter.connect(left, 0);
    splitter.connect(right, 1);
    const a = new Float32Array(2048);
    const b = new Float32Array(2048);
    const out = { left: 0, right: 0, reads: 0 };
    return new Promise((resolve) => {
      const read = () => {
        left.getFloatTimeDomainData(a);
        right.getFloatTimeDomainData(b);
        for (let i = 0; i < a.length; i += 1) {
          out.left += a[i] * a[i];
          out.right += b[i] * b[i];
        }
        out.reads += 1;
      };
      const timer = setInterval(read, 40); // 2048 samples are 42.7 ms at 48 kHz
      setTimeout(() => {
        clearInterval(timer);
        this.master.disconnect(splitter);
        resolve(out);
      }, ms);
    });
  }

  stop() {
    this.stopped = true;
    if (this.#tick !== null) this.clock.cancel(this.#tick);
    this.#tick = null;
    for (const speaker of this.speakers.values()) speaker.close();
    this.speakers.clear();
    if (this.context) this.context.close().catch(() => {});
    this.context = null;
  }
}
