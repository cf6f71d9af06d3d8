// The facilitator console: pick a room, join it with a role ticket, keep it safe.
//
// After sign-in (web/auth.py) the page knows the account and a CSRF token; it asks
// POST /console/ticket for a one-time role ticket and joins the room over the same hearth.v1
// WebSocket as participants do (protocol.js), with the same end-to-end encrypted chat
// (groupchat.js) and the same map (view.js). Around them: the moderation panel (members and
// their microphones, the lobby, raised hands and the talking stick, remove and ban, private
// corners, lock, places, slow mode, hiding a message, ending the session), the verified
// reports, and the crisis desk (live incident alerts with a short tone, a running timer,
// who acknowledged, the incident's actions, things to say and helplines to paste).
//
// The detector (detector.js) runs here on decrypted messages: a line it flags is marked with
// "why you are seeing this", and one click opens an incident with {member, category,
// severity, pack} — never the text. Every control is a native button, select or input, so
// all of it works by keyboard; alerts are announced through an assertive live region.
// docs/client.md ("The facilitator console") describes it.

import { onQuickExit } from "./common.js";
import { detect, loadPack } from "./detector.js";
import { GroupChat } from "./groupchat.js";
import { cachedHelplines, countriesOf, helplinesText, loadHelplines, renderHelplines } from "./helplines.js";
import { errorText, loadStrings, t } from "./i18n.js";
import { distance, SEAT_REACH, Walker } from "./movement.js";
import { ENDED, HearthConnection, TokenStore } from "./protocol.js";
import { RoomView } from "./view.js";

const $ = (id) => document.getElementById(id);
const root = $("console");
const pageLang = root.dataset.lang;
const PACK_LANGUAGES = ["en", "es"]; // a room may speak either: every shipped pack runs
const LOG_LIMIT = 500;
const REF_LIMIT = 200;
const SEVERITY_RANK = { low: 0, medium: 1, high: 2 };
const OUTCOMES = ["de_escalated", "external_help_confirmed", "unreachable", "not_a_concern", "test", "handed_off"];
// incident action -> the states it may come from (moderation/incidents.py TRANSITIONS)
const ALLOWED = {
  ack: ["open", "lost_contact"],
  engage: ["open", "acknowledged", "lost_contact"],
  external: ["acknowledged", "engaged"],
  await: ["external_help_requested"],
  lost: ["open", "acknowledged", "engaged", "external_help_requested", "awaiting_confirmation"],
  resolve: ["open", "acknowledged", "engaged", "external_help_requested", "awaiting_confirmation", "lost_contact"],
};

const state = {
  room: null,
  title: "",
  me: null,
  layout: null,
  members: new Map(),
  ready: new Set(),
  lastSeq: 0,
  settings: { locked: false, lobby: false, capacity: 0, slow_mode: 0 },
  stick: { on: false, holder: null, hands: [] },
  waiting: [],
  private: {},
  reports: new Map(), // id -> report (verified by the server)
  incidents: new Map(), // id -> incident metadata
  duty: false,
  sound: true,
  packs: [],
  helplines: null,
  pendingEngage: new Map(), // member id -> incident id, until the private corner is open
  refs: new Map(), // ref -> what it was, so that an error can say which action failed
  confirm: null,
  dropped: false,
};
let connection = null;
let chat = null;
let view = null;
let walker = null;
let audio = null;
let refCount = 0;
let exited = false;

// --- small helpers -------------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A button whose accessible name also says whom it is for ("Mute" + hidden " Quiet Otter"). */
function button(text, { act = null, member = null, forName = null, primary = false, onClick }) {
  const b = el("button", `small ${primary ? "primary" : "secondary"}`);
  b.type = "button";
  b.append(text);
  if (forName) b.append(el("span", "visually-hidden", ` ${forName}`));
  if (act) b.dataset.act = act;
  if (member) b.dataset.member = member;
  b.dataset.focusKey = `${act ?? text}:${member ?? ""}`;
  b.addEventListener("click", onClick);
  return b;
}

/** Rebuild a list without losing the keyboard focus (the same control gets it back). */
function rebuild(list, items) {
  const key = list.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
  list.replaceChildren(...items);
  if (key) (list.querySelector(`[data-focus-key="${CSS.escape(key)}"]`) ?? list.closest("section")?.querySelector("h2"))?.focus();
}

const timeFormat = new Intl.DateTimeFormat(pageLang, { hour: "2-digit", minute: "2-digit" });
const clock = (ms) => timeFormat.format(new Date(ms));

function nameOf(id) {
  return state.members.get(id)?.pseudonym ?? t("someone");
}

function status(text) {
  $("status").textContent = text;
}

function announce(text) {
  const live = $("alert-live");
  live.textContent = "";
  setTimeout(() => {
    live.textContent = text;
  }, 30);
}

/** Send a facilitator operation with a ref; an error naming that ref says which one failed. */
function act(message, what, failed = null) {
  const ref = `c-${++refCount}`;
  state.refs.set(ref, { what, failed });
  while (state.refs.size > REF_LIMIT) state.refs.delete(state.refs.keys().next().value);
  if (!connection?.send({ ...message, ref })) status(t("console.not_connected"));
}

// --- the alert tone: a short WebAudio chime, no audio file ------------------------------------

function unlockAudio() {
  try {
    audio ??= new AudioContext();
    if (audio.state === "suspended") audio.resume();
  } catch {
    audio = null; // no audio here: the visual and spoken alerts remain
  }
}

function tone() {
  if (!state.sound) return;
  unlockAudio();
  if (!audio) return;
  const now = audio.currentTime;
  const osc = audio.createOscillator();
  const gain = audio.createGain();
  osc.type = "sine";
  osc.frequency.setValueAtTime(880, now);
  osc.frequency.setValueAtTime(660, now + 0.18);
  gain.gain.setValueAtTime(0.0001, now);
  gain.gain.exponentialRampToValueAtTime(0.25, now + 0.02);
  gain.gain.exponentialRampToValueAtTime(0.0001, now + 0.4);
  osc.connect(gain).connect(audio.destination);
  osc.start(now);
  osc.stop(now + 0.42);
}

// --- labels ------------------------------------------------------------------------------------

function triggerText(trigger) {
  switch (trigger) {
    case "help_button":
      return t("trigger.help_button");
    case "self_detector":
      return t("trigger.self_detector");
    case "facilitator_detector":
      return t("trigger.facilitator_detector");
    case "facilitator_flag":
      return t("trigger.facilitator_flag");
    case "peer_concern":
      return t("trigger.peer_concern");
    default:
      return t("trigger.drill");
  }
}

function severityText(severity) {
  if (severity === "high") return t("severity.high");
  if (severity === "medium") return t("severity.medium");
  return t("severity.low");
}

function stateText(s) {
  switch (s) {
    case "open":
      return t("incident.open");
    case "acknowledged":
      return t("incident.acknowledged");
    case "engaged":
      return t("incident.engaged");
    case "external_help_requested":
      return t("incident.external_help_requested");
    case "awaiting_confirmation":
      return t("incident.awaiting_confirmation");
    case "lost_contact":
      return t("incident.lost_contact");
    default:
      return t("incident.resolved");
  }
}

function outcomeText(outcome) {
  switch (outcome) {
    case "de_escalated":
      return t("outcome.de_escalated");
    case "external_help_confirmed":
      return t("outcome.external_help_confirmed");
    case "unreachable":
      return t("outcome.unreachable");
    case "not_a_concern":
      return t("outcome.not_a_concern");
    case "test":
      return t("outcome.test");
    default:
      return t("outcome.handed_off");
  }
}

function whyText(category) {
  switch (category) {
    case "intent":
      return t("why.intent");
    case "means_method":
      return t("why.means_method");
    case "harm_from_others":
      return t("why.harm_from_others");
    case "farewell":
      return t("why.farewell");
    default:
      return t("why.other");
  }
}

function roomTitle(id) {
  if (id === state.room) return state.title;
  const b = document.querySelector(`.open-room[data-room="${CSS.escape(id)}"]`);
  return b?.dataset.title ?? id;
}

// --- the log -----------------------------------------------------------------------------------

function logEntry(className, seq) {
  const li = el("p", className);
  const key = typeof seq === "number" ? seq : state.lastSeq + 0.5;
  li.dataset.key = String(key);
  const log = $("chat-log");
  let before = null;
  for (let node = log.lastElementChild; node; node = node.previousElementSibling) {
    if (Number(node.dataset.key) <= key) break;
    before = node;
  }
  log.insertBefore(li, before);
  while (log.childElementCount > LOG_LIMIT) log.firstElementChild.remove();
  if (before === null) log.scrollTop = log.scrollHeight;
  return li;
}

function notice(text, { seq = null, warn = false } = {}) {
  if (exited) return;
  logEntry(warn ? "notice warn" : "notice", seq).textContent = text;
}

function showMessage({ sender, text, seq, ts, zone = null, mine }) {
  if (exited) return;
  const li = logEntry(mine ? "msg mine" : "msg", zone ? null : seq);
  li.dataset.sender = sender;
  if (!zone) li.dataset.seq = String(seq);
  if (zone) li.classList.add("private");
  const when = el("time", "when", clock(ts));
  when.dateTime = new Date(ts).toISOString();
  li.append(el("span", "who", mine ? t("chat.you") : nameOf(sender)), el("span", "text", text), when);
  if (zone) li.append(el("span", "tag", t("chat.private")));
  const tools = el("span", "line-tools");
  if (!zone) {
    tools.append(button(t("console.hide"), {
      act: "hide", member: String(seq), forName: t("console.hide_label", { name: mine ? t("chat.you") : nameOf(sender) }),
      onClick: () => act({ type: "hide", seq }, t("console.hide")),
    }));
  }
  li.append(tools);
  if (!mine && state.members.get(sender)?.role === "participant") check(li, tools, sender, text);
}

/** The detector, on this device: mark the line, explain why, offer one click to flag. */
function check(li, tools, sender, text) {
  let best = null;
  for (const pack of state.packs) {
    const found = detect(pack, text);
    if (found && (!best || SEVERITY_RANK[found.severity] > SEVERITY_RANK[best.severity])) best = found;
  }
  if (!best) return;
  li.classList.add("flagged");
  li.dataset.category = best.category;
  const why = el("details", "why");
  why.append(el("summary", null, t("console.why")));
  why.append(el("p", null, `${whyText(best.category)} ${t("console.why_detail", { severity: severityText(best.severity) })}`));
  why.append(el("p", "hint", t("console.why_rules", { rules: best.rule_ids.join(", ") })));
  const { category, severity, pack, version } = best; // never the text
  const flag = button(t("console.flag"), {
    act: "flag", member: sender, forName: nameOf(sender), primary: true,
    onClick: async () => {
      flag.disabled = true;
      try {
        const reply = await connection.request({ type: "flag", member: sender, category, severity, pack: `${pack}:${version}` }, "flag");
        if (reply.type === "error") {
          status(errorText(reply.code, reply.message));
          flag.disabled = false;
        } else {
          flag.textContent = t("console.flagged");
        }
      } catch {
        status(t("console.not_connected"));
        flag.disabled = false;
      }
    },
  });
  tools.append(flag);
  li.append(why);
}

// --- the room: members, map, settings --------------------------------------------------------

function whereText(member) {
  if (member.seat !== null && member.seat !== undefined) return t("where.seat", { n: member.seat + 1 });
  const corner = state.layout?.corners.find((c) => c.id === member.zone);
  if (corner) return corner.title;
  return t("where.standing");
}

function cornerOf(member) {
  return Object.entries(state.private).find(([, ids]) => ids.includes(member))?.[0] ?? null;
}

function freeCorner() {
  return state.layout?.corners.find((c) => !Object.hasOwn(state.private, c.id))?.id ?? null;
}

function memberItem(m) {
  const li = el("li", "member");
  li.dataset.member = m.id;
  li.dataset.muted = String(Boolean(m.muted));
  li.append(el("span", "name", m.pseudonym));
  if (m.role !== "participant") li.append(el("span", "badge", t(m.role === "operator" ? "role.operator" : "role.facilitator")));
  if (m.id === state.me) li.append(el("span", "badge you", t("badge.you")));
  if (m.role === "participant") {
    li.append(el("span", m.muted ? "badge warn" : "badge quiet", m.muted ? t("badge.muted") : t("console.mic_free")));
  }
  if (m.hand) li.append(el("span", "badge quiet", t("badge.hand")));
  if (m.away) li.append(el("span", "badge quiet", t("console.away")));
  li.append(el("span", "where", whereText(m)));
  if (m.id === state.me || m.role !== "participant") return li;
  const name = m.pseudonym;
  const tools = el("span", "member-actions");
  if (m.muted) {
    tools.append(button(t("console.ask_unmute"), { act: "ask_unmute", member: m.id, forName: name,
      onClick: () => act({ type: "ask_unmute", member: m.id }, t("console.ask_unmute")) }));
  } else {
    tools.append(button(t("console.mute"), { act: "mute", member: m.id, forName: name,
      onClick: () => act({ type: "mute", member: m.id }, t("console.mute")) }));
  }
  tools.append(button(t("console.give_stick"), { act: "give_stick", member: m.id, forName: name,
    onClick: () => act({ type: "give_stick", member: m.id }, t("console.give_stick")) }));
  const corner = cornerOf(m.id);
  if (corner) {
    tools.append(button(t("console.release_corner"), { act: "release_corner", member: m.id, forName: name,
      onClick: () => act({ type: "release_corner", corner }, t("console.release_corner")) }));
  } else {
    tools.append(button(t("console.private_corner"), { act: "private_corner", member: m.id, forName: name,
      onClick: () => {
        const free = freeCorner();
        if (free) act({ type: "private_corner", corner: free, member: m.id }, t("console.private_corner"));
        else status(t("console.no_corner"));
      } }));
  }
  tools.append(button(t("console.flag_concern"), { act: "flag_concern", member: m.id, forName: name,
    onClick: () => act({ type: "flag", member: m.id, category: "concern", severity: "medium", manual: true },
      t("console.flag_concern")) }));
  tools.append(button(t("console.remove"), { act: "remove", member: m.id, forName: name,
    onClick: () => ask(t("console.confirm_remove", { name }), t("console.remove"), () => act({ type: "remove", member: m.id }, t("console.remove"))) }));
  tools.append(button(t("console.ban"), { act: "ban", member: m.id, forName: name,
    onClick: () => ask(t("console.confirm_ban", { name }), t("console.ban"),
      (minutes) => act({ type: "ban", member: m.id, minutes }, t("console.ban")), { ban: true }) }));
  li.append(tools);
  return li;
}

function renderMembers() {
  const order = (m) => (m.id === state.me ? 0 : m.role === "participant" ? 2 : 1);
  const members = [...state.members.values()].sort(
    (a, b) => order(a) - order(b) || a.pseudonym.localeCompare(b.pseudonym, pageLang),
  );
  rebuild($("members"), members.map(memberItem));
  $("member-count").textContent = `(${state.members.size})`;
  const taken = new Map();
  for (const m of state.members.values()) if (m.seat !== null && m.seat !== undefined) taken.set(m.seat, m);
  view.setSeats(taken);
  const me = state.members.get(state.me);
  if (me) {
    const text = me.seat !== null && me.seat !== undefined ? t("me.seated", { n: me.seat + 1 })
      : me.zone && me.zone !== "room" ? t("me.corner", { place: whereText(me) }) : t("me.standing");
    if ($("me-where").textContent !== text) $("me-where").textContent = text;
  }
  renderHands();
}

function setMember(member) {
  state.members.set(member.id, { ...member });
  view.upsert(member);
  if (member.id === state.me && walker) walker.update(member);
}

function renderSettings() {
  const s = state.settings;
  $("lobby").setAttribute("aria-pressed", String(Boolean(s.lobby)));
  $("lock").setAttribute("aria-pressed", String(Boolean(s.locked)));
  $("stick").setAttribute("aria-pressed", String(Boolean(state.stick.on)));
  if (document.activeElement !== $("capacity")) $("capacity").value = String(s.capacity);
  const slow = $("slow-mode");
  const value = String(s.slow_mode);
  if (![...slow.options].some((o) => o.value === value)) {
    slow.append(new Option(t("console.slow_other", { n: s.slow_mode }), value));
  }
  slow.value = value;
}

function renderLobby() {
  rebuild($("waiting-list"), state.waiting.map((w) => {
    const li = el("li", "person");
    li.dataset.member = w.id;
    li.append(el("span", "name", w.pseudonym));
    li.append(button(t("console.admit"), { act: "admit", member: w.id, forName: w.pseudonym, primary: true,
      onClick: () => act({ type: "admit", member: w.id }, t("console.admit")) }));
    li.append(button(t("console.deny"), { act: "deny", member: w.id, forName: w.pseudonym,
      onClick: () => act({ type: "deny", member: w.id }, t("console.deny")) }));
    return li;
  }));
  $("lobby-empty").hidden = state.waiting.length > 0;
  $("lobby-count").textContent = state.waiting.length ? `(${state.waiting.length})` : "";
}

function renderHands() {
  const { on, holder, hands } = state.stick;
  rebuild($("hands"), hands.map((id) => {
    const li = el("li", "person");
    li.append(el("span", "name", nameOf(id)));
    li.append(button(t("console.give_stick"), { act: "give_stick_hand", member: id, forName: nameOf(id),
      onClick: () => act({ type: "give_stick", member: id }, t("console.give_stick")) }));
    return li;
  }));
  $("hands-empty").hidden = hands.length > 0;
  $("stick-holder").textContent = !on ? t("console.stick_off") : holder ? t("stick.holder", { name: nameOf(holder) }) : t("stick.on");
  $("take-stick").hidden = !holder;
}

// --- reports -----------------------------------------------------------------------------------

function renderReports() {
  const reports = [...state.reports.values()].sort((a, b) => b.reported_at - a.reported_at);
  rebuild($("reports"), reports.map((r) => {
    const li = el("li", "report");
    li.dataset.report = r.id;
    li.append(el("p", "quote", r.text));
    li.append(el("p", "meta", t("console.report_meta", {
      sender: r.sender_pseudonym, reporter: r.reporter_pseudonym, time: clock(r.reported_at),
    })));
    if (r.reason) li.append(el("p", "meta", t("console.report_reason", { reason: r.reason })));
    if (r.room === state.room) {
      li.append(button(t("console.hide_reported"), { act: "hide_reported", member: r.id,
        onClick: () => act({ type: "hide", seq: r.seq }, t("console.hide")) }));
    }
    return li;
  }));
  $("reports-empty").hidden = reports.length > 0;
}

// --- incidents ---------------------------------------------------------------------------------

function formatSince(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const two = (n) => String(n).padStart(2, "0");
  const h = Math.floor(s / 3600);
  return h ? `${h}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}` : `${two(Math.floor(s / 60))}:${two(s % 60)}`;
}

function tickTimers() {
  const now = Date.now();
  for (const timer of document.querySelectorAll("#incidents .timer")) {
    if (timer.dataset.stopped === "true") continue;
    timer.textContent = formatSince(now - Number(timer.dataset.since));
  }
}

function incidentElement(incident) {
  const id = `incident-${incident.id}`;
  let li = $(id);
  if (li) return li;
  li = el("li", "incident");
  li.id = id;
  li.dataset.incident = incident.id;
  const head = el("h3", "incident-head");
  head.tabIndex = -1;
  head.append(el("span", "who"), " ", el("span", "badge sev"), " ", el("span", "badge state"));
  const facts = el("dl", "facts");
  const fact = (label, className) => {
    facts.append(el("dt", null, label));
    const dd = el("dd", className);
    facts.append(dd);
    return dd;
  };
  fact(t("incident.room"), "f-room");
  fact(t("incident.trigger"), "f-trigger");
  fact(t("incident.category"), "f-category");
  const timer = el("time", "timer");
  timer.setAttribute("role", "timer");
  timer.dataset.since = String(incident.opened_at);
  fact(t("incident.open_for"), "f-timer").append(timer);
  fact(t("incident.acked_by"), "f-acked");
  const ok = el("p", "ok-note");
  ok.hidden = true;
  const actions = el("p", "actions incident-actions");
  const doIt = (action, extra = {}) => act({ type: "incident", incident: incident.id, action, ...extra },
    t("console.incident_action"));
  actions.append(
    button(t("action.ack"), { act: "ack", member: incident.id, primary: true, onClick: () => doIt("ack") }),
    button(t("action.private"), { act: "private", member: incident.id, onClick: () => takePrivate(incident.id) }),
    button(t("action.external"), { act: "external", member: incident.id, onClick: () => doIt("external") }),
    button(t("action.await"), { act: "await", member: incident.id, onClick: () => doIt("await") }),
    button(t("action.lost"), { act: "lost", member: incident.id, onClick: () => doIt("lost") }),
    button(t("action.resolve"), { act: "resolve", member: incident.id, onClick: () => {
      form.hidden = false;
      select.focus();
    } }),
  );
  const form = el("form", "resolve-form inline");
  form.hidden = true;
  const selectId = `outcome-${incident.id}`;
  const label = el("label", null, t("incident.outcome"));
  label.htmlFor = selectId;
  const select = el("select");
  select.id = selectId;
  for (const outcome of OUTCOMES) select.append(new Option(outcomeText(outcome), outcome));
  const submit = el("button", "small primary", t("action.resolve_now"));
  submit.type = "submit";
  submit.dataset.act = "resolve_now";
  const cancel = button(t("console.cancel"), { act: "resolve_cancel", member: incident.id, onClick: () => {
    form.hidden = true;
    actions.querySelector("[data-act='resolve']")?.focus();
  } });
  form.append(label, select, submit, cancel);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    form.hidden = true;
    doIt("resolve", { outcome: select.value });
  });
  li.append(head, facts, ok, actions, form);
  $("incidents").prepend(li);
  return li;
}

function renderIncident(incident) {
  const li = incidentElement(incident);
  li.dataset.state = incident.state;
  li.dataset.severity = incident.severity;
  li.dataset.trigger = incident.trigger;
  li.classList.toggle("resolved", incident.state === "resolved");
  li.querySelector(".who").textContent = incident.pseudonym;
  const sev = li.querySelector(".sev");
  sev.textContent = severityText(incident.severity);
  sev.dataset.severity = incident.severity;
  li.querySelector(".state").textContent = incident.state === "resolved" && incident.outcome
    ? `${stateText(incident.state)}: ${outcomeText(incident.outcome)}` : stateText(incident.state);
  li.querySelector(".f-room").textContent = roomTitle(incident.room);
  li.querySelector(".f-trigger").textContent = incident.test ? `${triggerText(incident.trigger)} (${t("incident.test")})`
    : triggerText(incident.trigger);
  li.querySelector(".f-category").textContent = incident.category === "help_request" || incident.category === "concern"
    ? "—" : whyText(incident.category);
  const acks = incident.history.filter(([, event]) => event === "ack");
  li.querySelector(".f-acked").textContent = acks.length
    ? acks.map(([ts, , actor]) => t("incident.acked_at", { name: actor ?? t("incident.on_call"), time: clock(ts) })).join("; ")
    : t("incident.nobody_yet");
  const okAt = incident.history.filter(([, event]) => event === "participant_ok").pop();
  const ok = li.querySelector(".ok-note");
  ok.hidden = !okAt;
  if (okAt) ok.textContent = t("incident.said_ok", { time: clock(okAt[0]) });
  const timer = li.querySelector(".timer");
  if (incident.state === "resolved") {
    timer.dataset.stopped = "true";
    const end = incident.history[incident.history.length - 1][0];
    timer.textContent = formatSince(end - incident.opened_at);
  } else {
    timer.textContent = formatSince(Date.now() - incident.opened_at);
  }
  const here = incident.room === state.room && state.members.has(incident.member);
  for (const b of li.querySelectorAll(".incident-actions button")) {
    const action = b.dataset.act === "private" ? "engage" : b.dataset.act;
    let allowed = (ALLOWED[action] ?? []).includes(incident.state);
    if (b.dataset.act === "private") allowed = allowed && here;
    if (!allowed && b === document.activeElement) li.querySelector(".incident-head").focus();
    b.hidden = !allowed;
  }
  if (incident.state === "resolved") li.querySelector(".resolve-form").hidden = true;
  $("no-incidents").hidden = [...state.incidents.values()].some((i) => i.state !== "resolved");
}

function onIncident(message) {
  const incident = message.incident;
  const isNew = !state.incidents.has(incident.id);
  state.incidents.set(incident.id, incident);
  renderIncident(incident);
  const what = { name: incident.pseudonym, room: roomTitle(incident.room), trigger: triggerText(incident.trigger),
    severity: severityText(incident.severity) };
  if (message.reason === "alert" || message.reason === "admin") {
    if (isNew || message.sound) tone();
    announce(t(isNew ? "alert.new" : "alert.again", what));
  } else if (message.reason === "participant_ok") {
    announce(t("alert.ok", what));
  } else if (isNew) {
    tone();
    announce(t("alert.new", what));
  }
}

/** "Take private": a private corner with the person, then the incident is engaged. */
function takePrivate(id) {
  const incident = state.incidents.get(id);
  if (!incident) return;
  const corner = cornerOf(incident.member);
  if (corner && state.private[corner].includes(state.me)) {
    act({ type: "incident", incident: id, action: "engage" }, t("console.incident_action"));
    return;
  }
  const free = freeCorner();
  if (!free) {
    status(t("console.no_corner"));
    return;
  }
  state.pendingEngage.set(incident.member, id);
  act({ type: "private_corner", corner: free, member: incident.member }, t("action.private"),
    () => state.pendingEngage.delete(incident.member));
}

function onCorners(corners) {
  state.private = corners ?? {};
  view.setPrivate(state.private);
  for (const [member, id] of [...state.pendingEngage]) {
    if (!cornerOf(member)) continue;
    state.pendingEngage.delete(member);
    const incident = state.incidents.get(id);
    if (incident && ALLOWED.engage.includes(incident.state)) {
      act({ type: "incident", incident: id, action: "engage" }, t("console.incident_action"));
    }
  }
  renderMembers();
}

// --- crisis tools: things to say, helplines to paste --------------------------------------------

function prompts() {
  return [t("prompt.thanks"), t("prompt.safe"), t("prompt.ask"), t("prompt.private"), t("prompt.someone"),
    t("prompt.helpline")];
}

function renderTools() {
  rebuild($("prompts"), prompts().map((text, i) => {
    const li = el("li", "prompt-line");
    li.append(el("span", "text", text), " ");
    li.append(button(t("console.use"), { act: "use_prompt", member: String(i), forName: text,
      onClick: () => putInBox(text) }));
    return li;
  }));
  const select = $("tool-country");
  const chosen = select.value;
  select.replaceChildren(new Option(t("console.any_country"), ""),
    ...countriesOf(state.helplines, pageLang).map(([code, name]) => new Option(name, code)));
  select.value = chosen;
  renderHelplines($("tool-lines"), state.helplines, select.value, pageLang);
}

function putInBox(text) {
  const input = $("chat-input");
  input.value = text;
  input.focus();
}

// --- what the server says ----------------------------------------------------------------------

function onWelcome(welcome) {
  const room = welcome.room;
  state.me = welcome.member;
  root.dataset.me = welcome.member;
  view.setMe(welcome.member);
  if (state.layout === null) {
    state.layout = room.layout;
    view.setLayout(room.layout);
    walker = new Walker(room.layout, (message) => connection.send(message));
  }
  for (const id of state.members.keys()) if (!room.members.some((m) => m.id === id)) view.remove(id);
  state.members.clear();
  for (const member of room.members) setMember(member);
  state.lastSeq = Math.max(state.lastSeq, room.seq);
  state.settings = { locked: room.locked, lobby: room.lobby, capacity: room.capacity, slow_mode: room.slow_mode };
  state.stick = room.stick ?? state.stick;
  state.private = room.private ?? {};
  view.setPrivate(state.private);
  renderMembers();
  renderSettings();
  connection.send({ type: "list_reports" });
  connection.send({ type: "list_incidents" });
  if (state.duty) connection.send({ type: "duty", on: true });
  if (!welcome.resumed) notice(t("console.joined", { room: state.title }));
}

function onMessage(message) {
  if (typeof message.seq === "number" && !message.zone) state.lastSeq = Math.max(state.lastSeq, message.seq);
  switch (message.type) {
    case "welcome":
      onWelcome(message);
      break;
    case "member_joined":
      setMember(message.member);
      renderMembers();
      notice(t("notice.joined", { name: message.member.pseudonym }), { seq: message.seq });
      break;
    case "member_left": {
      const name = nameOf(message.member);
      state.members.delete(message.member);
      view.remove(message.member);
      renderMembers();
      for (const incident of state.incidents.values()) if (incident.member === message.member) renderIncident(incident);
      const key = { left: "notice.left", timeout: "notice.timeout", removed: "notice.removed" }[message.reason];
      notice(t(key ?? "notice.left", { name }), { seq: message.seq });
      break;
    }
    case "member_updated":
      setMember(message.member);
      renderMembers();
      break;
    case "positions":
      for (const [id, x, y, zone] of message.moves) {
        const member = state.members.get(id);
        if (!member) continue;
        const changed = member.zone !== zone;
        Object.assign(member, { x, y, zone });
        view.place(id, x, y);
        if (id === state.me && walker) walker.update(member);
        if (changed) renderMembers();
      }
      break;
    case "hidden": {
      const line = $("chat-log").querySelector(`.msg[data-key="${Number(message.target)}"]`);
      if (line) {
        line.className = "notice";
        line.textContent = t("chat.hidden");
      }
      break;
    }
    case "lobby":
      if (message.waiting.length > state.waiting.length) {
        announce(t("console.someone_waiting"));
      }
      state.waiting = message.waiting;
      renderLobby();
      break;
    case "room_settings":
      state.settings = { locked: message.locked, lobby: message.lobby, capacity: message.capacity, slow_mode: message.slow_mode };
      renderSettings();
      break;
    case "stick":
      state.stick = { on: message.on, holder: message.holder, hands: message.hands };
      renderSettings();
      renderHands();
      break;
    case "corners":
      onCorners(message.private);
      break;
    case "reports":
      state.reports = new Map(message.reports.map((r) => [r.id, r]));
      renderReports();
      break;
    case "report":
      state.reports.set(message.report.id, message.report);
      renderReports();
      status(t("console.new_report", { name: message.report.reporter_pseudonym }));
      break;
    case "incident":
      onIncident(message);
      break;
    case "incidents":
      for (const incident of message.incidents) {
        state.incidents.set(incident.id, incident);
        renderIncident(incident);
      }
      break;
    case "duty":
      state.duty = Boolean(message.on);
      $("duty").setAttribute("aria-pressed", String(state.duty));
      for (const incident of message.open ?? []) {
        state.incidents.set(incident.id, incident);
        renderIncident(incident);
      }
      break;
    case "delivery_failing": {
      const warning = el("p", "notice-box", t("console.delivery_failing", { channel: message.channel, id: message.incident }));
      $("delivery").append(warning);
      tone();
      break;
    }
    case "error":
      onError(message);
      break;
    default:
      break;
  }
  chat.handle(message);
}

function onError(error) {
  if (typeof error.ref === "string" && /^(say|flag|report)-/.test(error.ref)) return; // the caller shows it
  if (["position_invalid", "rate_limited"].includes(error.code) && !error.ref) {
    walker?.refused();
    return;
  }
  const entry = typeof error.ref === "string" ? state.refs.get(error.ref) : null;
  entry?.failed?.();
  const text = errorText(error.code, error.message);
  status(entry ? t("console.failed", { what: entry.what, why: text }) : text);
}

function onState({ state: now, code }) {
  root.dataset.state = now;
  const joined = now === "joined";
  $("chat-input").disabled = !joined;
  $("chat-send").disabled = !joined;
  if (now === "connecting") status(t("status.connecting"));
  if (now === "reconnecting") {
    status(t("status.reconnecting"));
    walker?.stop();
    if (!state.dropped) notice(t("notice.dropped"), { warn: true });
    state.dropped = true;
  }
  if (joined) {
    status("");
    if (state.dropped) notice(t("notice.reconnected"));
    state.dropped = false;
  }
  if (ENDED.has(now)) {
    walker?.stop();
    $("desk").hidden = true;
    if (now === "left") {
      showRooms();
      return;
    }
    $("desk-ended").hidden = false;
    $("desk-ended-reason").textContent = now === "refused" ? errorText(code) : t(`ended.${now}`);
    $("desk-ended-title").focus();
  }
}

// --- confirmation ------------------------------------------------------------------------------

function ask(text, yes, then, { ban = false } = {}) {
  state.confirm = { then, from: document.activeElement };
  $("confirm-text").textContent = text;
  $("confirm-yes").textContent = yes;
  $("confirm-ban").hidden = !ban;
  $("confirm").hidden = false;
  $("confirm-text").focus();
}

function confirmed(yes) {
  const pending = state.confirm;
  state.confirm = null;
  $("confirm").hidden = true;
  if (!pending) return;
  if (yes) pending.then(Number($("confirm-minutes").value));
  if (pending.from?.isConnected) pending.from.focus();
  else $("desk-title").focus();
}

// --- opening a room ----------------------------------------------------------------------------

function showRooms() {
  $("desk").hidden = true;
  $("desk-ended").hidden = true;
  $("pick-room").hidden = false;
  document.querySelector(".open-room")?.focus();
}

async function openRoom(roomId, title) {
  unlockAudio(); // a click: the browser lets the page make sounds from now on
  $("pick-error").textContent = "";
  let ticket;
  try {
    const response = await fetch(root.dataset.ticketUrl, {
      method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": root.dataset.csrf },
    });
    if (response.status === 401) {
      $("pick-error").textContent = t("console.signed_out");
      return;
    }
    if (!response.ok) throw new Error(String(response.status));
    ticket = (await response.json()).ticket;
  } catch {
    $("pick-error").textContent = t("console.no_ticket");
    return;
  }
  start(roomId, title, ticket);
}

function start(roomId, title, ticket) {
  Object.assign(state, {
    room: roomId, title, me: null, layout: null, lastSeq: 0, ready: new Set(), waiting: [], private: {},
    reports: new Map(), stick: { on: false, holder: null, hands: [] }, pendingEngage: new Map(), dropped: false,
  });
  state.members.clear();
  walker?.stop();
  walker = null;
  $("chat-log").replaceChildren();
  $("incidents").replaceChildren();
  for (const incident of state.incidents.values()) renderIncident(incident);
  renderLobby();
  renderReports();
  $("desk-title").textContent = title;
  $("pick-room").hidden = true;
  $("desk-ended").hidden = true;
  $("desk").hidden = false;
  $("desk-title").focus();
  const tokens = new TokenStore(roomId);
  tokens.key = `hearth.console.${roomId}`; // not the participant's key: a different member
  tokens.clear(); // a fresh ticket is a fresh member
  const join = { ticket, locale: pageLang };
  const name = $("console-name").value.trim();
  if (name.length >= 2) join.pseudonym = name;
  const conn = new HearthConnection({ room: roomId, tokens, join });
  const ch = new GroupChat(conn, roomId);
  connection = conn;
  chat = ch;
  const mine = (fn) => (event) => {
    if (!exited && conn === connection) fn(event.detail);
  };
  conn.addEventListener("state", mine(onState));
  conn.addEventListener("message", mine(onMessage));
  ch.addEventListener("message", mine((detail) => showMessage({ ...detail, mine: false })));
  ch.addEventListener("rejected", mine((detail) => notice(t("notice.rejected", { name: nameOf(detail.sender) }), { warn: true })));
  ch.addEventListener("problem", mine(() => notice(t("notice.e2ee_problem"), { warn: true })));
  ch.addEventListener("roster", mine((detail) => {
    state.ready = detail.ready;
    renderMembers();
  }));
  conn.start();
}

// --- walking and sitting (as on the room page) ------------------------------------------------

function seatTakenBy(index) {
  for (const m of state.members.values()) if (m.seat === index) return m;
  return null;
}

function sitOn(index) {
  if (!walker || !connection?.open) return;
  const who = seatTakenBy(index);
  if (who) return;
  const [x, y] = state.layout.seats[index];
  const me = state.members.get(state.me);
  if (me && distance(me, { x, y }) <= SEAT_REACH) {
    walker.stop();
    connection.send({ type: "sit", seat: index });
  } else {
    walker.walkTo({ x, y }, index);
    view.showTarget({ x, y });
  }
}

function nearestFreeSeat() {
  const me = state.members.get(state.me);
  if (!me || !state.layout) return null;
  let best = null;
  state.layout.seats.forEach(([x, y], index) => {
    if (seatTakenBy(index)) return;
    const d = distance(me, { x, y });
    if (best === null || d < best.d) best = { index, d };
  });
  return best?.index ?? null;
}

async function say(event) {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || !chat) return;
  input.value = "";
  const me = state.members.get(state.me);
  const zone = me && me.zone !== "room" && (state.private[me.zone] ?? []).includes(state.me) ? me.zone : null;
  try {
    const sent = await chat.say(text, { zone });
    showMessage({ sender: state.me, text, seq: sent.seq, ts: sent.ts, zone: sent.zone, mine: true });
  } catch (err) {
    input.value = input.value || text;
    notice(errorText(err.code ?? "not_sent", t("error.not_sent")), { warn: true });
  }
}

// --- wiring ------------------------------------------------------------------------------------

async function main() {
  try {
    await loadStrings(pageLang);
  } catch {
    await loadStrings("en");
  }
  view = new RoomView($("room-view"), $("room-svg"), {
    t,
    onWalk: (point) => {
      if (!walker || !connection?.open) return;
      walker.walkTo(point);
      view.showTarget(walker.target);
    },
    onSeat: sitOn,
    onKeys: (dx, dy) => {
      if (!walker || !connection?.open) return;
      walker.setDirection(dx, dy);
      view.showTarget(null);
    },
    onEnter: () => {
      const seat = nearestFreeSeat();
      if (seat !== null) sitOn(seat);
    },
  });
  for (const b of document.querySelectorAll(".open-room")) {
    b.addEventListener("click", () => openRoom(b.dataset.room, b.dataset.title));
  }
  $("back-to-rooms").addEventListener("click", showRooms);
  $("desk-leave").addEventListener("click", () => connection?.leave());
  $("duty").addEventListener("click", () => act({ type: "duty", on: !state.duty }, t("console.duty")));
  $("sound").addEventListener("click", () => {
    state.sound = !state.sound;
    $("sound").setAttribute("aria-pressed", String(state.sound));
    if (state.sound) unlockAudio();
  });
  $("lobby").addEventListener("click", () => act({ type: "lobby", on: !state.settings.lobby }, t("console.lobby")));
  $("lock").addEventListener("click", () => act({ type: "lock", on: !state.settings.locked }, t("console.lock")));
  $("stick").addEventListener("click", () => act({ type: "stick", on: !state.stick.on }, t("console.stick")));
  $("take-stick").addEventListener("click", () => act({ type: "give_stick", member: null }, t("console.give_stick")));
  $("capacity-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = Number($("capacity").value);
    if (Number.isInteger(value) && value >= 1 && value <= 500) act({ type: "capacity", value }, t("console.capacity"));
  });
  $("slow-mode").addEventListener("change", () => act({ type: "slow_mode", seconds: Number($("slow-mode").value) },
    t("console.slow_mode")));
  $("end-session").addEventListener("click", () => ask(t("console.confirm_end"), t("console.end"),
    () => act({ type: "end_session" }, t("console.end"))));
  $("confirm-yes").addEventListener("click", () => confirmed(true));
  $("confirm-no").addEventListener("click", () => confirmed(false));
  $("reports-refresh").addEventListener("click", () => connection?.send({ type: "list_reports" }));
  $("chat-form").addEventListener("submit", say);
  $("tool-country").addEventListener("change", () => renderHelplines($("tool-lines"), state.helplines,
    $("tool-country").value, pageLang));
  const toolText = () => helplinesText(state.helplines, $("tool-country").value, pageLang);
  $("tool-paste").addEventListener("click", () => putInBox(toolText().replaceAll("\n", " · ")));
  $("tool-copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(toolText());
      status(t("console.copied"));
    } catch {
      status(t("console.copy_failed"));
    }
  });
  onQuickExit(() => {
    exited = true;
    walker?.stop();
    connection?.stop();
  });
  setInterval(tickTimers, 1000);
  state.helplines = cachedHelplines();
  renderTools();
  loadHelplines().then((data) => {
    if (data) {
      state.helplines = data;
      renderTools();
    }
  });
  for (const lang of PACK_LANGUAGES) {
    fetch(`/crisis/rules/${lang}.json`, { credentials: "same-origin" })
      .then((response) => (response.ok ? response.json() : null))
      .then((json) => {
        if (!json) return;
        state.packs.push(loadPack(json));
        if (state.packs.length === PACK_LANGUAGES.length) root.dataset.detector = "ready";
      })
      .catch(() => status(t("console.no_detector")));
  }
}

main();
