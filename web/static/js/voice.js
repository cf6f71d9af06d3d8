// Speaking in the room: the voice controls, the microphone, Opus, encryption, sending
// (docs/client.md, "Voice"). Hearing is audio.js; this module owns it and feeds it.
//
//   microphone (echo cancellation, noise suppression, auto gain) → the room's 48 kHz
//   AudioContext → capture-worklet.js (20 ms mono blocks) → RFC 6464 level and voice activity
//   → AudioEncoder (Opus, 20 ms, mono, 24 kbps constant; 12 kbps in low-bandwidth mode)
//   → GroupSession.encryptVoice → voicelink.js: one WebTransport datagram per frame, or one
//   binary WebSocket message when WebTransport cannot be used
//
// The microphone button, the facilitator's mute and the "invites you to speak" question are
// room.js's: it says "hearth:mic" {on} on #app, in the click that decided it, and this module
// starts or releases the microphone (releasing it turns the browser's recording indicator
// off). A facilitator's mute (our own `muted` flag in the roster) also stops sending here,
// whatever room.js does; nothing here ever turns the microphone on by itself.
//
// Open microphone sends while the voice-activity detector hears speech (plus a short
// hangover), then one frame flagged "end of talkspurt"; push-to-talk sends while Space or the
// button is held. The panel (#voice) holds what is voice-only: how you talk, the hold-to-talk
// button, the level meter, low-bandwidth mode, sound on/off, and why the microphone failed.
//
// Audio and keys go nowhere but this server (voice frames over WebTransport or the WebSocket,
// keys over the WebSocket), nothing is logged, and window.hearthVoice
// (for the tests) exposes counters, levels and positions only.

import { audioLevel, RoomAudio, SAMPLE_RATE } from "./audio.js";
import { VoiceLink } from "./voicelink.js";

const BLOCK = 960; // samples per 20 ms frame at 48 kHz
const FRAME_US = 20000;
export const BITRATE = 24000;
export const LOW_BITRATE = 12000;
const VAD_LEVEL = 50; // −50 dBov or louder counts as speech (after noise suppression and AGC)
const HANGOVER_FRAMES = 15; // keep sending 300 ms after the last speech frame
const METER_EVERY = 4; // update the level meter every 80 ms
const METER_FLOOR = 60; // −60 dBov shows as an empty meter
const CANCELLED = "the microphone was turned off while it was starting";
const CONSTRAINTS = {
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
  video: false,
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (value === true) node.setAttribute(key, "");
    else if (value !== false && value !== null) node.setAttribute(key, String(value));
  }
  node.append(...children);
  return node;
}

export class Voice {
  #mic = null; // {stream, source, node} while the microphone is on
  #encoder = null;
  #meta = new Map(); // encoder timestamp -> {send, level, speech, end}
  #ts = 0;
  #seq = 0;
  #hang = 0;
  #talking = false;
  #meterCount = 0;
  #starting = false;
  #unlock;
  #keys;

  /**
   * @param {object} options
   * @param {import("./protocol.js").HearthConnection} options.connection
   * @param {import("./groupchat.js").GroupChat} options.chat its `session` seals and opens voice
   * @param {import("./view.js").RoomView} options.view the speaking rings
   * @param {HTMLElement} options.root the (empty) voice panel
   * @param {EventTarget} options.app where room.js says "hearth:mic" {on}
   * @param {(key: string, vars?: object) => string} options.t
   */
  constructor({ connection, chat, view, root, app, t }) {
    this.connection = connection;
    this.chat = chat;
    this.view = view;
    this.root = root;
    this.app = app;
    this.t = t;
    this.me = null;
    this.mode = "open"; // or "ptt"
    this.micWanted = false;
    this.pttHeld = false;
    this.forcedMuted = false;
    this.bitrate = BITRATE;
    this.problem = null; // a status key when the microphone could not start
    this.stopped = false;
    this.counts = { captured: 0, sent: 0, unsent: 0, bytes: 0, lastOpusBytes: 0, speech: 0, ends: 0 };
    this.level = 127;
    this.audio = new RoomAudio({
      session: (speaker) => chat.voiceSession(speaker),
      onSpeaking: (id, on) => view.setSpeaking?.(id, on),
      onChange: () => this.#render(),
    });
    this.#build();
    connection.addEventListener("message", (event) => this.#message(event.detail));
    // Frames in and out on WebTransport datagrams or the WebSocket (voicelink.js decides).
    this.link = new VoiceLink({ connection, onFrame: (frame) => this.audio.receive(frame) });
    connection.addEventListener("state", (event) => this.#state(event.detail.state));
    app.addEventListener("hearth:mic", (event) => (event.detail?.on ? this.micOn() : this.micOff()));
    // Sound needs a user gesture (autoplay rules): the first click, tap or key in the page
    // starts it, unless the person turned it off. Escape is the quick exit's key: not that.
    this.#unlock = (event) => {
      if (this.audio.running || (event.type === "keydown" && event.key === "Escape")) return;
      if (event.target instanceof Element && event.target.closest(".quick-exit")) return;
      if (this.audio.soundWanted) this.audio.ensureContext();
      this.#render();
    };
    document.addEventListener("pointerdown", this.#unlock, true);
    document.addEventListener("keydown", this.#unlock, true);
    this.#keys = (event) => this.#pttKey(event);
    document.addEventListener("keydown", this.#keys);
    document.addEventListener("keyup", this.#keys);
    window.addEventListener("blur", () => this.#release());
    window.hearthVoice = Object.freeze({
      stats: () => this.stats(),
      measureStereo: (ms) => this.audio.measureStereo(ms),
    });
  }

  // --- the panel -----------------------------------------------------------------------

  #build() {
    const t = this.t;
    this.ui = {
      status: el("p", { id: "voice-status", class: "voice-status", role: "status", "aria-live": "polite" }),
      ptt: el("button", { type: "button", id: "voice-ptt", class: "secondary voice-ptt", hidden: true }),
      sound: el("button", { type: "button", id: "voice-sound", class: "secondary" }),
      meter: el("meter", { id: "voice-level", class: "voice-meter", min: 0, max: 1, value: 0 }),
      open: el("input", { type: "radio", name: "voice-mode", id: "voice-mode-open", value: "open", checked: true }),
      pttMode: el("input", { type: "radio", name: "voice-mode", id: "voice-mode-ptt", value: "ptt" }),
      low: el("input", { type: "checkbox", id: "voice-low" }),
    };
    const u = this.ui;
    u.ptt.textContent = t("voice.ptt");
    this.root.replaceChildren(
      el("h3", { id: "voice-title", text: t("voice.title") }),
      u.status,
      el("p", { class: "voice-controls" }, u.ptt, u.sound),
      el("p", { class: "voice-level" }, el("label", { for: "voice-level", text: t("voice.level") }), u.meter),
      el(
        "fieldset",
        { class: "voice-mode" },
        el("legend", { text: t("voice.mode") }),
        el("label", { class: "check" }, u.open, document.createTextNode(t("voice.mode_open"))),
        el("label", { class: "check" }, u.pttMode, document.createTextNode(t("voice.mode_ptt"))),
      ),
      el("label", { class: "check" }, u.low, document.createTextNode(t("voice.low_bandwidth"))),
    );
    this.root.hidden = false;
    u.sound.addEventListener("click", () => this.audio.setSound(!this.audio.playing));
    for (const radio of [u.open, u.pttMode]) {
      radio.addEventListener("change", () => {
        if (radio.checked) this.mode = radio.value;
        this.#release();
        this.#render();
      });
    }
    u.low.addEventListener("change", () => {
      this.bitrate = u.low.checked ? LOW_BITRATE : BITRATE;
      this.#configureEncoder();
    });
    // Push-to-talk by pointer: held while pressed, released however the press ends.
    u.ptt.addEventListener("pointerdown", (event) => {
      u.ptt.setPointerCapture?.(event.pointerId);
      this.#hold(true);
    });
    for (const end of ["pointerup", "pointercancel", "lostpointercapture"]) {
      u.ptt.addEventListener(end, () => this.#hold(false));
    }
    u.ptt.addEventListener("contextmenu", (event) => event.preventDefault()); // a long press on a phone
    this.#render();
  }

  #render() {
    const u = this.ui;
    if (!u || this.stopped) return;
    const t = this.t;
    this.root.dataset.mic = this.forcedMuted ? "muted" : this.#mic ? "on" : this.#starting ? "starting" : "off";
    u.ptt.hidden = !(this.mode === "ptt" && this.#mic !== null);
    u.ptt.classList.toggle("held", this.pttHeld);
    u.ptt.setAttribute("aria-pressed", String(this.pttHeld));
    u.sound.textContent = t(this.audio.playing ? "voice.sound_off" : "voice.sound_on");
    // room.js says whether the microphone is on and whether a facilitator muted it; this line
    // adds only what is voice-only.
    const parts = [];
    if (this.#starting) parts.push(t("voice.status.starting"));
    else if (this.problem) parts.push(t(this.problem));
    else if (this.#mic && this.mode === "ptt") parts.push(t("voice.status.ptt"));
    if (!this.audio.playing) parts.push(t("voice.status.sound_off"));
    const text = parts.join(" ");
    if (u.status.textContent !== text) u.status.textContent = text;
    if (!this.#mic) u.meter.value = 0;
  }

  // --- the server ------------------------------------------------------------------------

  #message(message) {
    if (this.stopped) return;
    this.audio.handle(message);
    switch (message.type) {
      case "welcome": {
        this.me = message.member;
        const mine = message.room.members.find((m) => m.id === this.me);
        this.#forced(Boolean(mine?.muted));
        break;
      }
      case "member_updated":
        if (message.member.id === this.me) this.#forced(Boolean(message.member.muted));
        break;
      case "error":
        if (message.code === "muted") this.#forced(true); // the server dropped our frames
        break;
      default:
        break;
    }
  }

  #forced(muted) {
    if (muted === this.forcedMuted) return;
    this.forcedMuted = muted;
    if (muted) this.micOff(); // and it stays off: only the person turns it on again
    this.#render();
  }

  #state(state) {
    if (["left", "removed", "elsewhere", "expired", "refused", "denied", "ended"].includes(state)) this.stop();
    else this.#render();
  }

  // --- the microphone --------------------------------------------------------------------

  async micOn() {
    if (this.stopped || this.forcedMuted || this.#mic || this.#starting) return;
    this.micWanted = true;
    this.problem = null;
    const ctx = this.audio.ensureContext(); // in the click: the gesture starts the context
    if (!ctx || !("AudioEncoder" in window) || !navigator.mediaDevices?.getUserMedia) {
      this.problem = "voice.status.unsupported";
      this.micWanted = false;
      this.#render();
      return;
    }
    this.#starting = true;
    this.#render();
    let stream = null;
    try {
      stream = await navigator.mediaDevices.getUserMedia(CONSTRAINTS);
      await this.audio.loadWorklet();
      if (!this.micWanted || this.forcedMuted || this.stopped) throw new Error(CANCELLED);
      const source = ctx.createMediaStreamSource(stream);
      const node = new AudioWorkletNode(ctx, "hearth-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 0,
        channelCount: 1,
        channelCountMode: "explicit",
        channelInterpretation: "speakers",
      });
      node.port.onmessage = (event) => this.#block(event.data);
      source.connect(node);
      this.#mic = { stream, source, node };
      for (const track of stream.getAudioTracks()) {
        track.addEventListener("ended", () => this.#lost(stream)); // unplugged, or revoked
      }
      this.#configureEncoder();
    } catch (err) {
      for (const track of stream?.getTracks() ?? []) track.stop();
      const name = err?.name;
      if (name === "NotAllowedError" || name === "SecurityError") this.problem = "voice.status.denied";
      else if (name === "NotFoundError" || name === "OverconstrainedError") this.problem = "voice.status.no_mic";
      else if (err?.message !== CANCELLED) this.problem = "voice.status.unsupported";
      this.micWanted = false;
      // room.js drew its button as "on" when it asked: tell it the microphone did not start.
      if (this.problem) {
        this.app.dispatchEvent(new CustomEvent("hearth:mic-failed", { detail: { reason: this.problem } }));
      }
    } finally {
      this.#starting = false;
      this.#render();
    }
  }

  #lost(stream) {
    if (this.#mic?.stream !== stream) return;
    this.micOff();
    this.problem = "voice.status.no_mic";
    this.app.dispatchEvent(new CustomEvent("hearth:mic-failed", { detail: { reason: this.problem } }));
    this.#render();
  }

  /** Mute: stop sending and release the microphone. */
  micOff() {
    this.micWanted = false;
    this.#release();
    const mic = this.#mic;
    this.#mic = null;
    if (mic) {
      mic.node.port.onmessage = null;
      mic.source.disconnect();
      mic.node.disconnect();
      for (const track of mic.stream.getTracks()) track.stop();
    }
    if (this.#encoder && this.#encoder.state !== "closed") this.#encoder.close();
    this.#encoder = null;
    this.#meta.clear();
    this.#talking = false;
    this.#hang = 0;
    this.level = 127;
    this.#render();
  }

  #configureEncoder() {
    if (!this.#mic) return;
    const config = {
      codec: "opus",
      sampleRate: SAMPLE_RATE,
      numberOfChannels: 1,
      bitrate: this.bitrate,
      bitrateMode: "constant",
      opus: { frameDuration: FRAME_US, complexity: 5, usedtx: false, useinbandfec: false },
    };
    if (!this.#encoder || this.#encoder.state === "closed") {
      this.#encoder = new AudioEncoder({
        output: (chunk) => this.#encoded(chunk),
        error: () => {
          this.#encoder = null; // the next block makes a new one
          this.#meta.clear();
        },
      });
    }
    this.#encoder.configure(config);
  }

  // --- push-to-talk ------------------------------------------------------------------------

  #pttKey(event) {
    if (event.key !== " ") return;
    if (event.type === "keyup" && this.pttHeld) {
      event.preventDefault();
      this.#hold(false); // wherever the focus went meanwhile
      return;
    }
    if (this.mode !== "ptt" || !this.#mic) return;
    const target = event.target instanceof Element ? event.target : null;
    // Space keeps its meaning in fields, on seats and on other buttons; elsewhere it talks.
    if (target && target !== this.ui.ptt) {
      if (target.closest("input, textarea, select, [contenteditable], .seat, a, summary, details")) return;
      if (target.closest("button")) return;
    }
    event.preventDefault(); // no page scroll, no click on the button
    if (event.type === "keydown" && !event.repeat) this.#hold(true);
  }

  #hold(on) {
    if (on && (this.mode !== "ptt" || !this.#mic)) return;
    if (this.pttHeld === on) return;
    this.pttHeld = on;
    this.#render();
  }

  #release() {
    if (this.pttHeld) this.#hold(false);
  }

  // --- frames out ----------------------------------------------------------------------------

  /** One 20 ms block of 48 kHz mono samples from the worklet. */
  #block(samples) {
    if (!this.#mic || samples.length !== BLOCK) return;
    if (!this.#encoder || this.#encoder.state === "closed") this.#configureEncoder();
    this.counts.captured += 1;
    let sum = 0;
    for (let i = 0; i < samples.length; i += 1) sum += samples[i] * samples[i];
    const level = audioLevel(Math.sqrt(sum / samples.length));
    this.level = level;
    if (++this.#meterCount % METER_EVERY === 0) this.ui.meter.value = Math.max(0, (METER_FLOOR - level) / METER_FLOOR);
    const speech = level <= VAD_LEVEL;
    if (speech) this.#hang = HANGOVER_FRAMES;
    else if (this.#hang > 0) this.#hang -= 1;
    const allowed = !this.forcedMuted && this.connection.open;
    const transmit = allowed && (this.mode === "ptt" ? this.pttHeld : speech || this.#hang > 0);
    const end = !transmit && this.#talking && allowed; // close the talkspurt with one flagged frame
    this.#talking = transmit;
    const ts = this.#ts;
    this.#ts += FRAME_US;
    this.#meta.set(ts, { send: transmit || end, level, speech: speech && transmit, end });
    if (speech && transmit) this.audio.noteOwnSpeech();
    // The encoder hears every block, sent or not, so its state stays continuous.
    this.#encoder.encode(new AudioData({
      format: "f32-planar",
      sampleRate: SAMPLE_RATE,
      numberOfFrames: BLOCK,
      numberOfChannels: 1,
      timestamp: ts,
      data: samples,
    }));
  }

  #encoded(chunk) {
    const meta = this.#meta.get(chunk.timestamp);
    for (const ts of this.#meta.keys()) {
      if (ts > chunk.timestamp) break;
      this.#meta.delete(ts);
    }
    if (!meta?.send || this.forcedMuted || !this.#mic) return;
    const opus = new Uint8Array(chunk.byteLength);
    chunk.copyTo(opus);
    const session = this.chat.voiceSession(this.me); // a private corner's, while we are in one
    if (!session || !this.connection.open) {
      this.counts.unsent += 1;
      return;
    }
    this.#seq += 1;
    session.encryptVoice(opus, { seq: this.#seq, level: meta.level, speech: meta.speech, end: meta.end }).then(
      (frame) => {
        if (this.forcedMuted || !this.link.send(frame)) {
          this.counts.unsent += 1; // muted meanwhile, disconnected, or the socket is backed up
          return;
        }
        this.counts.sent += 1;
        this.counts.bytes += frame.length;
        this.counts.lastOpusBytes = opus.length;
        if (meta.speech) this.counts.speech += 1;
        if (meta.end) this.counts.ends += 1;
      },
      () => {
        this.counts.unsent += 1; // no keys yet, or renewing them: a lost 20 ms
      },
    );
  }

  // --- the end -------------------------------------------------------------------------------

  stats() {
    return {
      me: this.me,
      mic: this.#mic ? "on" : this.#starting ? "starting" : "off",
      mode: this.mode,
      held: this.pttHeld,
      forcedMuted: this.forcedMuted,
      bitrate: this.bitrate,
      level: this.level,
      ...this.counts,
      audio: this.audio.stats(),
      link: this.link.stats(),
    };
  }

  /** Quick exit or the end of the membership: release the microphone and the audio. */
  stop() {
    if (this.stopped) return;
    this.micOff();
    this.stopped = true;
    this.link.stop();
    this.audio.stop();
    document.removeEventListener("pointerdown", this.#unlock, true);
    document.removeEventListener("keydown", this.#unlock, true);
    document.removeEventListener("keydown", this.#keys);
    document.removeEventListener("keyup", this.#keys);
  }
}
