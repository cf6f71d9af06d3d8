// The browser side of test_client_logic.py: the page's own modules (pseudonym.js,
// presence.js) run on inputs from Python, on a fake clock, with fake views.

import { checkPseudonym } from "/js/pseudonym.js";
import { AwayTimes, contentOf, encodeReaction, REACTION_MS, ReactionDisplay } from "/js/presence.js";

export function withTimeout(promise, ms, name) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${name} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([Promise.resolve(promise), limit]).finally(() => clearTimeout(timer));
}

/** checkPseudonym on each name, with the rules the server serves. */
export function checkAll(names, rules) {
  return names.map((name) => checkPseudonym(name, rules));
}

/** A clock that moves only when told: timers fire in order as time is advanced. */
class FakeClock {
  #now = 0;
  #timers = new Map();
  #next = 1;

  now() {
    return this.#now;
  }

  setTimeout(fn, ms) {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + ms, fn });
    return id;
  }

  clearTimeout(id) {
    this.#timers.delete(id);
  }

  advance(ms) {
    const end = this.#now + ms;
    for (;;) {
      const due = [...this.#timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at);
      if (due.length === 0) break;
      const [id, timer] = due[0];
      this.#timers.delete(id);
      this.#now = timer.at;
      timer.fn();
    }
    this.#now = end;
  }
}

/** Reactions on the map, driven by a fake clock: what the view and the live region saw. */
export function reactionTimeline() {
  const clock = new FakeClock();
  const log = [];
  const view = {
    showReaction: (id, kind) => log.push(["show", id, kind, clock.now()]),
    clearReaction: (id) => log.push(["clear", id, clock.now()]),
  };
  const names = { a: "Alice", b: "Bruno" };
  const display = new ReactionDisplay({
    view, clock, me: () => "me", nameOf: (id) => names[id] ?? "Someone",
    t: (key, vars) => `${key}:${vars.name}`, announce: (text) => log.push(["say", text, clock.now()]),
  });
  const taken = [
    display.take({ sender: "a", text: encodeReaction("heart") }),
    display.take({ sender: "a", text: "plain words" }),
  ];
  clock.advance(REACTION_MS - 1);
  display.take({ sender: "b", text: encodeReaction("nod") });
  clock.advance(1); // Alice's heart ends now; Bruno's nod runs on
  display.take({ sender: "b", text: encodeReaction("wave") }); // a new reaction starts afresh
  clock.advance(REACTION_MS - 1);
  clock.advance(1);
  display.show("me", "metoo");
  clock.advance(REACTION_MS);
  return { taken, log, reactionMs: REACTION_MS };
}

/** contentOf on texts: chat, a reaction, an unknown kind, broken JSON. */
export function contents(texts) {
  return texts.map((text) => contentOf(text));
}

/** Away times on a fake clock: minutes away, back, and who is counted. */
export function awayTimeline() {
  const clock = new FakeClock();
  const times = new AwayTimes(clock);
  const out = [];
  out.push(times.update({ id: "a", away: false, status: "here" }));
  out.push(times.update({ id: "a", away: true, status: "here" }));
  clock.advance(59_999);
  out.push(times.minutes("a"));
  clock.advance(1);
  out.push(times.minutes("a"));
  out.push(times.update({ id: "a", away: false, status: "away" })); // still away: they said so
  clock.advance(120_000);
  out.push(times.minutes("a"));
  out.push(times.update({ id: "a", away: false, status: "listening" }));
  out.push(times.minutes("a"));
  out.push(times.anyone);
  return out;
}
