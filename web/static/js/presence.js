// Presence: the small signals that make a circle feel like a group.
//
// - Reactions (nod, heart, wave, "me too"): shown on the sender's avatar for a few seconds
//   and said politely to screen readers. They are end-to-end encrypted like chat: each is one
//   room message sent through GroupChat's own `say`, whose text is a *content kind* — U+0000
//   (which no typed message can start with), the kind, ":", its value: "\0reaction:heart".
//   At most 15 bytes, it pads to the same 64-byte block as any chat line of up to 27 bytes,
//   so the server relays an envelope it cannot tell from a short message, and never learns
//   which reaction it was, or that it was one. A page never shows a content kind as chat,
//   never offers to report it and never writes it anywhere (no log line, no storage). An
//   unknown kind (from a newer page) is skipped.
// - Status: what members tell the room about themselves (here, just listening, away for a
//   moment: `status` on the wire), and who is away because their connection dropped or their
//   page closed (`away`), with how long for.
// - Low-bandwidth mode (the voice panel's switch): no reactions are sent; each would cost
//   every member a message. Slow mode also rests them: a reaction would spend the
//   participant's one message.
//
// Time comes from an injected clock ({now(), setTimeout(fn, ms), clearTimeout(handle)}), so
// the tests drive how long a reaction shows and the away times without waiting.

export const REACTIONS = ["nod", "heart", "wave", "metoo"];
export const STATUSES = ["here", "listening", "away"];
export const REACTION_MS = 4000; // how long a reaction shows on an avatar
export const SEND_GAP_MS = 1500; // at most one reaction from this page in this time
const MINUTE_MS = 60_000;
const CONTENT = "\u0000"; // a room message whose text starts with NUL is a content kind, not chat
const NS = "http://www.w3.org/2000/svg";

export const realClock = Object.freeze({
  now: () => performance.now(),
  setTimeout: (fn, ms) => window.setTimeout(fn, ms),
  clearTimeout: (handle) => window.clearTimeout(handle),
});

/** The text that carries one reaction inside an encrypted room message. */
export function encodeReaction(reaction) {
  return `${CONTENT}reaction:${reaction}`;
}

/** null for chat text; otherwise the content kind ({kind, …}); unknown or malformed: {kind: "unknown"}. */
export function contentOf(text) {
  if (typeof text !== "string" || !text.startsWith(CONTENT)) return null;
  const colon = text.indexOf(":");
  const kind = colon < 0 ? text.slice(1) : text.slice(1, colon);
  const value = colon < 0 ? "" : text.slice(colon + 1);
  if (kind === "reaction" && REACTIONS.includes(value)) return { kind: "reaction", reaction: value };
  return { kind: "unknown" }; // a newer or broken content kind: skipped, never shown as text
}

/** Reactions on the map: shown on the sender's avatar for REACTION_MS, and said politely. */
export class ReactionDisplay {
  #timers = new Map(); // member id -> timer

  /** {view, clock, announce(text), nameOf(id), t, me()} */
  constructor({ view, clock = realClock, announce, nameOf, t, me = () => null }) {
    Object.assign(this, { view, clock, announce, nameOf, t, me });
  }

  /**
   * Take one decrypted room message (GroupChat's "message" detail). True when it was a
   * content kind (shown here, or skipped): the page must not show it as chat.
   */
  take(detail) {
    const content = contentOf(detail.text);
    if (content === null) return false;
    if (content.kind === "reaction") this.show(detail.sender, content.reaction);
    return true;
  }

  show(member, reaction) {
    this.view.showReaction(member, reaction);
    this.clock.clearTimeout(this.#timers.get(member));
    this.#timers.set(member, this.clock.setTimeout(() => this.#clear(member), REACTION_MS));
    const own = member === this.me();
    const name = own ? "" : this.nameOf(member);
    this.announce(this.t(own ? `reaction.sent.${reaction}` : `reaction.said.${reaction}`, { name }));
  }

  #clear(member) {
    this.#timers.delete(member);
    this.view.clearReaction(member);
  }

  stop() {
    for (const timer of this.#timers.values()) this.clock.clearTimeout(timer);
    this.#timers.clear();
  }
}

/** Since when each member has been away (the connection's `away`, or their own status), by our clock. */
export class AwayTimes {
  #since = new Map();

  constructor(clock = realClock) {
    this.clock = clock;
  }

  /** Take a member as the server describes it; returns "away" or "back" when that changed. */
  update(member) {
    const away = isAway(member);
    const was = this.#since.has(member.id);
    if (away && !was) this.#since.set(member.id, this.clock.now());
    if (!away && was) this.#since.delete(member.id);
    if (away === was) return null;
    return away ? "away" : "back";
  }

  forget(id) {
    this.#since.delete(id);
  }

  /** Whole minutes `id` has been away (0 in the first minute), or null when here. */
  minutes(id) {
    const since = this.#since.get(id);
    return since === undefined ? null : Math.floor((this.clock.now() - since) / MINUTE_MS);
  }

  get anyone() {
    return this.#since.size > 0;
  }
}

export function isAway(member) {
  return Boolean(member.away) || member.status === "away";
}

/** The members list's words for a member's presence: "away", "away 3 min", "listening". */
export function presenceBadges(member, times, t) {
  const out = [];
  if (isAway(member)) {
    const minutes = times?.minutes(member.id) ?? 0;
    out.push(minutes > 0 ? t("presence.away_for", { n: minutes }) : t("presence.away"));
  } else if (member.status === "listening") {
    out.push(t("presence.listening"));
  }
  return out.map((text) => {
    const badge = document.createElement("span");
    badge.className = "badge quiet presence";
    badge.textContent = text;
    return badge;
  });
}

function icon(name) {
  const box = document.createElementNS(NS, "svg");
  box.setAttribute("class", "reaction-icon");
  box.setAttribute("viewBox", "-1 -1 2 2");
  box.setAttribute("aria-hidden", "true");
  box.setAttribute("focusable", "false");
  const use = document.createElementNS(NS, "use");
  for (const [key, value] of [["href", `#react-${name}`], ["x", -1], ["y", -1], ["width", 2], ["height", 2]]) {
    use.setAttribute(key, String(value));
  }
  box.append(use);
  return box;
}

/**
 * The participant's presence controls: the reaction buttons (`reactionsRoot`), the status
 * choice (`statusRoot`), and everything presence shows of the others (the map, the polite
 * announcements, the away times for the members list via `badges`).
 */
export class Presence extends EventTarget {
  #lastSent = -Infinity;
  #dropped = new Set(); // members away because their connection dropped or their page closed
  #minuteTimer = null;
  #low = false;

  constructor({ connection, chat, room, view, t, reactionsRoot, statusRoot, live, clock = realClock }) {
    super();
    Object.assign(this, { connection, chat, room, view, t, clock, live });
    this.times = new AwayTimes(clock);
    this.display = new ReactionDisplay({
      view, clock, t, announce: (text) => this.announce(text), nameOf: (id) => room.nameOf(id), me: () => room.me,
    });
    this.#buildReactions(reactionsRoot);
    this.#buildStatus(statusRoot);
    connection.addEventListener("message", (event) => this.#message(event.detail));
    connection.addEventListener("state", () => this.render());
  }

  /** Say something politely (reactions, someone away or back). */
  announce(text) {
    if (!this.live) return;
    this.live.textContent = "";
    this.live.textContent = text;
  }

  /** True when a decrypted room message was a content kind (shown here, not as chat). */
  take(detail) {
    return this.display.take(detail);
  }

  /** The badges for a member's entry in the members list. */
  badges(member) {
    return presenceBadges(member, this.times, this.t);
  }

  /** Low-bandwidth mode on or off (the voice panel's switch). */
  setLowBandwidth(on) {
    this.#low = on;
    this.render();
  }

  async react(reaction) {
    if (!this.#canReact() || !REACTIONS.includes(reaction)) return;
    const now = this.clock.now();
    if (now - this.#lastSent < SEND_GAP_MS) return; // a double tap is one reaction
    this.#lastSent = now;
    try {
      await this.chat.say(encodeReaction(reaction), { zone: this.room.myPrivateCorner() });
      this.display.show(this.room.me, reaction);
    } catch {
      this.announce(this.t("reaction.not_sent"));
    }
  }

  setStatus(status) {
    if (STATUSES.includes(status)) this.connection.send({ type: "status", status });
  }

  stop() {
    this.display.stop();
    this.clock.clearTimeout(this.#minuteTimer);
  }

  // --- drawing -------------------------------------------------------------------------------

  #buildReactions(root) {
    if (!root) return;
    const t = this.t;
    this.note = document.createElement("p");
    this.note.className = "hint reactions-note";
    this.note.id = "reactions-note";
    const group = document.createElement("div");
    group.className = "reaction-buttons";
    group.setAttribute("role", "group");
    group.setAttribute("aria-labelledby", "reactions-title");
    this.buttons = REACTIONS.map((reaction) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "secondary reaction-button";
      button.dataset.reaction = reaction;
      const label = document.createElement("span");
      label.textContent = t(`reaction.${reaction}`);
      button.append(icon(reaction), label);
      button.addEventListener("click", () => this.react(reaction));
      return button;
    });
    group.append(...this.buttons);
    const title = document.createElement("h3");
    title.id = "reactions-title";
    title.className = "visually-hidden";
    title.textContent = t("reaction.title");
    root.replaceChildren(title, group, this.note);
    root.hidden = false;
  }

  #buildStatus(root) {
    if (!root) return;
    const label = document.createElement("label");
    label.htmlFor = "status-choice";
    label.textContent = this.t("presence.status");
    const select = document.createElement("select");
    select.id = "status-choice";
    for (const status of STATUSES) select.append(new Option(this.t(`presence.status.${status}`), status));
    select.addEventListener("change", () => this.setStatus(select.value));
    this.select = select;
    root.replaceChildren(label, select);
    root.hidden = false;
  }

  #canReact() {
    return this.#why() === null;
  }

  /** Why reactions rest right now (a sentence key), or null. */
  #why() {
    if (this.#low) return "reaction.off_low_bandwidth";
    const me = this.room.myself();
    if (me && me.role === "participant" && this.room.settings.slow_mode > 0) return "reaction.off_slow_mode";
    if (!this.connection.open) return "reaction.off_offline";
    return null;
  }

  render() {
    if (!this.buttons) return;
    const why = this.#why();
    for (const button of this.buttons) {
      button.disabled = why !== null;
      if (why) button.setAttribute("aria-describedby", "reactions-note");
      else button.removeAttribute("aria-describedby");
    }
    const text = why ? this.t(why) : "";
    if (this.note.textContent !== text) this.note.textContent = text;
    const mine = this.room.myself()?.status;
    if (this.select && mine && this.select.value !== mine) this.select.value = mine;
  }

  // --- the server -----------------------------------------------------------------------------

  #message(message) {
    switch (message.type) {
      case "welcome":
        for (const member of message.room.members) {
          this.times.update(member);
          if (member.away) this.#dropped.add(member.id);
        }
        break;
      case "member_joined":
      case "member_updated":
      case "member_resumed":
        this.#changed(message.member);
        break;
      case "member_left":
        this.times.forget(message.member);
        this.#dropped.delete(message.member);
        this.view.clearReaction?.(message.member);
        break;
      case "room_settings": // slow mode rests the reactions
        break;
      default:
        return; // positions ten times a second, chat…: nothing of presence
    }
    this.render();
    this.#minutes();
  }

  #changed(member) {
    const dropped = this.#dropped.has(member.id); // away because the connection was
    if (member.away) this.#dropped.add(member.id);
    else this.#dropped.delete(member.id);
    const change = this.times.update(member);
    if (change === null) return;
    this.dispatchEvent(new CustomEvent("change"));
    if (member.id === this.room.me) return;
    // Back after a dropped connection or a reload: the log already says "… reconnected."
    if (change === "back" && dropped) return;
    this.announce(this.t(change === "away" ? "presence.now_away" : "presence.now_back", { name: member.pseudonym }));
  }

  /** While anyone is away, the members list's "away N min" is redrawn each minute. */
  #minutes() {
    if (this.#minuteTimer !== null || !this.times.anyone) return;
    this.#minuteTimer = this.clock.setTimeout(() => {
      this.#minuteTimer = null;
      this.dispatchEvent(new CustomEvent("change"));
      this.#minutes();
    }, MINUTE_MS);
  }
}
