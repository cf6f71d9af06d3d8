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
// An alert is never hidden: it goes into a banner fixed at the top of the window, whatever
// has been scrolled, with who, how severe and a "go to" control; the page title changes;
// the banner stays until the incident is acknowledged (or, for an alert about one already
// claimed, until "got it"); several alerts stack; it is all buttons, announced through the
// assertive live region. Every alert shown is receipted to the server (`alert_seen`): that
// receipt, and nothing earlier, lets the person read "a facilitator has been told".
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
import { errorText, loadStrings, t, whyText } from "./i18n.js";
import { presenceBadges, ReactionDisplay } from "./presence.js";
import { ENDED, HearthConnection, TokenStore } from "./protocol.js";
import { checkPseudonym, pageRules, pseudonymMessage } from "./pseudonym.js";
import { mapInput, RoomState } from "./roomstate.js";
import { showSafety } from "./safety.js";
import { RoomView } from "./view.js";

const $ = (id) => document.getElementById(id);
const root = $("console");
const pageLang = root.dataset.lang;
const PACK_LANGUAGES = ["en", "es"]; // a room may speak either: every shipped pack runs
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
  roomId: null,
  title: "",
  ready: new Set(),
  waiting: [],
  reports: new Map(), // id -> report (verified by the server)
  incidents: new Map(), // id -> incident metadata
  duty: false,
  restoring: null, // {roomId, title, name, duty} while a reloaded console resumes its room
  sound: true,
  packs: [],
  helplines: null,
  pendingEngage: new Map(), // member id -> incident id, until the private corner is open
  refs: new Map(), // ref -> what it was, so that an error can say which action failed
  confirm: null,
  dropped: false,
  banner: new Map(), // incident id -> {ackable}: alerts on screen until handled
  receipted: new Set(), // incidents this console has told the server it received
};
const BASE_TITLE = document.title;
const WAITING_ACK = ["open", "lost_contact"]; // (ALLOWED.ack) an alert here waits for a claim
let connection = null;
let chat = null;
let view = null;
let room = null; // RoomState of the room opened: members, seats, positions, corners, the stick, the log
let audio = null;
let refCount = 0;
let exited = false;
let reactions = null; // ReactionDisplay: participants' reactions on the map (presence.js)

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
  return room?.nameOf(id) ?? t("someone");
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

function roomTitle(id) {
  if (id === state.roomId) return state.title;
  const b = document.querySelector(`.open-room[data-room="${CSS.escape(id)}"]`);
  return b?.dataset.title ?? id;
}

// --- the log (roomstate.js) --------------------------------------------------------------------

function notice(text, options) {
  room.log.notice(text, options);
}

function showMessage({ sender, text, seq, ts, zone = null, mine }) {
  if (exited) return;
  const li = room.log.message({ sender, text, seq, ts, zone, mine });
  if (!zone) li.dataset.seq = String(seq);
  const tools = el("span", "line-tools");
  if (!zone) {
    tools.append(button(t("console.hide"), {
      act: "hide", member: String(seq), forName: t("console.hide_label", { name: mine ? t("chat.you") : nameOf(sender) }),
      onClick: () => act({ type: "hide", seq }, t("console.hide")),
    }));
  }
  li.append(tools);
  if (!mine && room.members.get(sender)?.role === "participant") check(li, tools, sender, text);
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

function memberItem(m) {
  const li = el("li", "member");
  li.dataset.member = m.id;
  li.dataset.muted = String(Boolean(m.muted));
  li.append(el("span", "name", m.pseudonym));
  if (m.role !== "participant") li.append(el("span", "badge", t(m.role === "operator" ? "role.operator" : "role.facilitator")));
  if (m.id === room.me) li.append(el("span", "badge you", t("badge.you")));
  if (m.role === "participant") {
    li.append(el("span", m.muted ? "badge warn" : "badge quiet", m.muted ? t("badge.muted") : t("console.mic_free")));
  }
  if (m.hand) li.append(el("span", "badge quiet", t("badge.hand")));
  li.append(...presenceBadges(m, null, t));
  li.append(el("span", "where", room.whereText(m)));
  if (m.id === room.me || m.role !== "participant") return li;
  const name = m.pseudonym;
  const tools = el("span", "member-actions");
  if (m.muted) {
    tools.append(button(t("console.ask_unmute"), { act: "ask_unmute", member: m.id, forName: name,
      onClick: () => act({ type: "ask_unmute", member: m.id }, t("console.ask_unmute")) }));
  } else {
    tools.append(button(t("console.mute"), { act: "mute", member: m.id, forName: name,
      onClick: () => act({ type: "mute", member: m.id }, t("console.mute")) }));
  }
  if (room.stick.on) { // giving the stick never turns it on: the toggle above does
    tools.append(button(t("console.give_stick"), { act: "give_stick", member: m.id, forName: name,
      onClick: () => act({ type: "give_stick", member: m.id }, t("console.give_stick")) }));
  }
  const corner = room.privateCornerOf(m.id);
  if (corner) {
    tools.append(button(t("console.release_corner"), { act: "release_corner", member: m.id, forName: name,
      onClick: () => act({ type: "release_corner", corner }, t("console.release_corner")) }));
  } else {
    tools.append(button(t("console.private_corner"), { act: "private_corner", member: m.id, forName: name,
      onClick: () => {
        const free = room.freeCorner();
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
  const order = (m) => (m.id === room.me ? 0 : m.role === "participant" ? 2 : 1);
  const members = [...room.members.values()].sort(
    (a, b) => order(a) - order(b) || a.pseudonym.localeCompare(b.pseudonym, pageLang),
  );
  rebuild($("members"), members.map(memberItem));
  $("member-count").textContent = `(${room.members.size})`;
  view.setSeats(room.takenSeats());
  const text = room.myPlaceText();
  if (text !== null && $("me-where").textContent !== text) $("me-where").textContent = text;
  renderHands();
}

function renderSettings() {
  const s = room.settings;
  $("lobby").setAttribute("aria-pressed", String(Boolean(s.lobby)));
  $("lock").setAttribute("aria-pressed", String(Boolean(s.locked)));
  $("stick").setAttribute("aria-pressed", String(Boolean(room.stick.on)));
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
  const { on, holder, hands } = room.stick;
  rebuild($("hands"), hands.map((id) => {
    const li = el("li", "person");
    li.append(el("span", "name", nameOf(id)));
    if (on) {
      li.append(button(t("console.give_stick"), { act: "give_stick_hand", member: id, forName: nameOf(id),
        onClick: () => act({ type: "give_stick", member: id }, t("console.give_stick")) }));
    }
    return li;
  }));
  $("hands-empty").hidden = hands.length > 0;
  $("stick-holder").textContent = !on ? t("console.stick_off") : holder ? t("stick.holder", { name: nameOf(holder) }) : t("stick.on");
  $("take-stick").hidden = !(on && holder);
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
    if (r.room === state.roomId) {
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
  fact(t("incident.seen_by"), "f-seen");
  const ok = el("p", "ok-note");
  ok.hidden = true;
  const left = el("p", "left-note"); // the person left the room (the incident stays open)
  left.hidden = true;
  const external = el("p", "external-note");
  external.hidden = true;
  const actions = el("p", "actions incident-actions");
  const doIt = (action, extra = {}) => act({ type: "incident", incident: incident.id, action, ...extra },
    t("console.incident_action"));
  actions.append(
    button(t("action.ack"), { act: "ack", member: incident.id, primary: true, onClick: () => doIt("ack") }),
    button(t("action.private"), { act: "private", member: incident.id, onClick: () => takePrivate(incident.id) }),
    button(t("action.external"), { act: "external", member: incident.id, onClick: () => {
      basisForm.hidden = false;
      basisForm.querySelector("input").focus();
    } }),
    button(t("action.await"), { act: "await", member: incident.id, onClick: () => doIt("await") }),
    button(t("action.reached"), { act: "reached", member: incident.id, primary: true,
      onClick: () => doIt("resolve", { outcome: "external_help_confirmed" }) }),
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
  const basisForm = externalForm(incident.id, actions, doIt);
  li.append(head, facts, ok, left, external, actions, basisForm, form);
  $("incidents").prepend(li);
  return li;
}

/** Before "external help requested": on what basis — the person's consent, or imminent risk. */
function externalForm(id, actions, doIt) {
  const form = el("form", "basis-form");
  form.hidden = true;
  const fieldset = el("fieldset");
  fieldset.append(el("legend", null, t("external.title")));
  for (const [basis, text] of [["consent", t("external.consent")], ["imminent_risk", t("external.imminent")]]) {
    const label = el("label", "choice");
    const radio = el("input");
    radio.type = "radio";
    radio.name = `basis-${id}`;
    radio.value = basis;
    radio.required = true;
    label.append(radio, " ", text);
    fieldset.append(label);
  }
  const submit = el("button", "small primary", t("external.submit"));
  submit.type = "submit";
  submit.dataset.act = "external_now";
  const cancel = button(t("console.cancel"), { act: "external_cancel", member: id, onClick: () => {
    form.hidden = true;
    actions.querySelector("[data-act='external']")?.focus();
  } });
  form.append(fieldset, submit, cancel);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = form.querySelector("input:checked");
    if (!chosen) return;
    form.hidden = true;
    doIt("external", { basis: chosen.value });
  });
  return form;
}

function basisText(basis) {
  return basis === "imminent_risk" ? t("basis.imminent_risk") : t("basis.consent");
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
  const seen = [...new Set(incident.history.filter(([, event]) => event === "seen").map(([, , actor]) => actor))];
  li.querySelector(".f-seen").textContent = seen.length ? seen.join(", ") : t("incident.nobody_yet");
  const external = li.querySelector(".external-note");
  const waiting = ["external_help_requested", "awaiting_confirmation"].includes(incident.state);
  external.hidden = !incident.external_basis;
  if (incident.external_basis) {
    external.textContent = t(waiting ? "external.waiting" : "external.done", {
      time: clock(incident.external_at), basis: basisText(incident.external_basis) });
  }
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
  const here = incident.room === state.roomId && room.members.has(incident.member);
  for (const b of li.querySelectorAll(".incident-actions button")) {
    const action = { private: "engage", reached: "resolve" }[b.dataset.act] ?? b.dataset.act;
    let allowed = (ALLOWED[action] ?? []).includes(incident.state);
    if (b.dataset.act === "private") allowed = allowed && here;
    if (b.dataset.act === "reached") allowed = waiting;
    if (!allowed && b === document.activeElement) li.querySelector(".incident-head").focus();
    b.hidden = !allowed;
  }
  if (incident.state === "resolved") li.querySelector(".resolve-form").hidden = true;
  if (!ALLOWED.external.includes(incident.state)) li.querySelector(".basis-form").hidden = true;
  $("no-incidents").hidden = [...state.incidents.values()].some((i) => i.state !== "resolved");
  settleBanner(incident);
}

function alertText(message, isNew, what) {
  if (message.cause === "press" || message.cause === "press_noted") return t("alert.pressed", what);
  if (message.cause === "unconfirmed") return t("alert.unconfirmed", what);
  if (message.cause === "responder_left") return t("alert.responder_left", what);
  return t(isNew ? "alert.new" : "alert.again", what);
}

function onIncident(message) {
  const incident = message.incident;
  const isNew = !state.incidents.has(incident.id);
  state.incidents.set(incident.id, incident);
  renderIncident(incident);
  const what = { name: incident.pseudonym, room: roomTitle(incident.room), trigger: triggerText(incident.trigger),
    severity: severityText(incident.severity) };
  if (message.reason === "alert" || message.reason === "admin") {
    receipt(incident.id, true);
    if (isNew || message.sound) tone();
    announce(alertText(message, isNew, what));
    raiseBanner(incident);
  } else if (message.reason === "participant_ok") {
    announce(t("alert.ok", what));
  } else if (message.reason === "person_left") {
    const left = $(`incident-${incident.id}`)?.querySelector(".left-note");
    if (left) {
      left.textContent = t("incident.person_left", { time: clock(Date.now()) });
      left.hidden = false;
    }
    announce(t("alert.person_left", what));
  } else if (isNew && incident.state !== "resolved") {
    receipt(incident.id, true);
    tone();
    announce(t("alert.new", what));
    raiseBanner(incident);
  }
}

/** Incidents listed on joining or going on duty: each is an alert this console now shows. */
function onListed(incidents) {
  for (const incident of incidents) {
    state.incidents.set(incident.id, incident);
    renderIncident(incident);
    if (incident.state !== "resolved") {
      receipt(incident.id, false);
      if (WAITING_ACK.includes(incident.state)) raiseBanner(incident);
    }
  }
}

/** Tell the server this console received the alert (each alert; a listed incident once). */
function receipt(id, always) {
  if (!always && state.receipted.has(id)) return;
  state.receipted.add(id);
  connection?.send({ type: "alert_seen", incident: id, ref: `seen-${++refCount}` });
}

// --- the alert banner: fixed at the top, until acknowledged ------------------------------------

function raiseBanner(incident) {
  if (incident.state === "resolved") return;
  state.banner.delete(incident.id); // the newest on top
  state.banner.set(incident.id, { ackable: WAITING_ACK.includes(incident.state) });
  renderBanner();
}

function goTo(id) {
  const li = $(`incident-${id}`);
  if (!li) return;
  li.scrollIntoView({ block: "start" });
  li.querySelector(".incident-head").focus();
}

function renderBanner() {
  const box = $("alert-banner");
  const entries = [...state.banner].reverse();
  rebuild($("alert-banner-list"), entries.map(([id, entry]) => {
    const incident = state.incidents.get(id);
    const li = el("li", "alert-entry");
    li.dataset.incident = id;
    li.dataset.severity = incident.severity;
    li.append(el("span", "what", t("console.banner_line", { name: incident.pseudonym,
      severity: severityText(incident.severity), trigger: triggerText(incident.trigger), room: roomTitle(incident.room) })));
    li.append(button(t("console.go_to"), { act: "banner_go", member: id, forName: incident.pseudonym,
      onClick: () => goTo(id) }));
    if (entry.ackable) {
      li.append(button(t("action.ack"), { act: "banner_ack", member: id, forName: incident.pseudonym, primary: true,
        onClick: () => act({ type: "incident", incident: id, action: "ack" }, t("console.incident_action")) }));
    } else {
      li.append(button(t("console.got_it"), { act: "banner_done", member: id, forName: incident.pseudonym,
        onClick: () => {
          state.banner.delete(id);
          renderBanner();
          goTo(id);
        } }));
    }
    return li;
  }));
  box.hidden = entries.length === 0;
  document.title = entries.length === 0 ? BASE_TITLE
    : `(${entries.length}) ${t("console.title_alert", { name: state.incidents.get(entries[0][0]).pseudonym })} · ${BASE_TITLE}`;
  if (box.hidden && box.contains(document.activeElement)) $("incidents-title").focus();
  padForBanner();
}

/** The page moves down by the banner's height, so nothing sits under it. */
function padForBanner() {
  const box = $("alert-banner");
  document.body.style.paddingTop = box.hidden ? "" : `${box.offsetHeight}px`;
}

/** An incident changed: its banner entry goes once it is claimed (or closed). */
function settleBanner(incident) {
  const entry = state.banner.get(incident.id);
  if (!entry) return;
  if (incident.state === "resolved" || (entry.ackable && !WAITING_ACK.includes(incident.state))) {
    state.banner.delete(incident.id);
  }
  renderBanner();
}

/** "Take private": a private corner with the person, then the incident is engaged. */
function takePrivate(id) {
  const incident = state.incidents.get(id);
  if (!incident) return;
  const corner = room.privateCornerOf(incident.member);
  if (corner && room.private[corner].includes(room.me)) {
    act({ type: "incident", incident: id, action: "engage" }, t("console.incident_action"));
    return;
  }
  const free = room.freeCorner();
  if (!free) {
    status(t("console.no_corner"));
    return;
  }
  state.pendingEngage.set(incident.member, id);
  act({ type: "private_corner", corner: free, member: incident.member }, t("action.private"),
    () => state.pendingEngage.delete(incident.member));
}

/** The private corners changed (roomstate.js keeps them): engage what waited for its corner. */
function onCorners() {
  for (const [member, id] of [...state.pendingEngage]) {
    if (!room.privateCornerOf(member)) continue;
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
  root.dataset.me = welcome.member;
  renderSettings();
  connection.send({ type: "list_reports" });
  connection.send({ type: "list_incidents" });
  if (state.duty) connection.send({ type: "duty", on: true });
  if (!welcome.resumed) notice(t("console.joined", { room: state.title }));
}

function onMessage(message) {
  // Members, seats, positions, corners, the stick and settings: roomstate.js keeps them, the
  // map and the shared notices; the console draws its panels from them.
  const change = room.apply(message);
  if (change?.members) renderMembers();
  switch (message.type) {
    case "welcome":
      onWelcome(message);
      break;
    case "member_left":
      for (const incident of state.incidents.values()) if (incident.member === message.member) renderIncident(incident);
      break;
    case "lobby":
      if (message.waiting.length > state.waiting.length) {
        announce(t("console.someone_waiting"));
      }
      state.waiting = message.waiting;
      renderLobby();
      break;
    case "room_settings":
      renderSettings();
      break;
    case "stick":
      renderSettings();
      renderMembers(); // the "give the stick" buttons come and go with the mode
      break;
    case "corners":
      onCorners();
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
      onListed(message.incidents);
      break;
    case "duty":
      state.duty = Boolean(message.on);
      $("duty").setAttribute("aria-pressed", String(state.duty));
      if (keptOpen()) keepOpen({ ...keptOpen(), duty: state.duty });
      onListed(message.open ?? []);
      break;
    case "delivery_failing": {
      const key = { 0: "console.delivery_nowhere", 1: "console.delivery_first_failed" }[message.attempts]
        ?? "console.delivery_failing";
      const warning = el("p", "notice-box", t(key, { channel: message.channel, id: message.incident }));
      warning.dataset.incident = message.incident;
      warning.dataset.channel = message.channel;
      $("delivery").append(warning);
      tone();
      break;
    }
    case "delivery_restored": {
      // An on-call alert that had failed got through: its warnings give way to that news
      // (a later failure of another alert warns again).
      for (const old of $("delivery").querySelectorAll("p")) {
        if (old.dataset.incident === message.incident && old.dataset.channel === message.channel) old.remove();
      }
      const news = el("p", "notice-box", t("console.delivery_restored",
        { channel: message.channel, id: message.incident, attempts: message.attempts }));
      news.dataset.incident = message.incident;
      news.dataset.channel = message.channel;
      $("delivery").append(news);
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
  if (typeof error.ref === "string" && error.ref.startsWith("seen-")) return; // a receipt for a closed one
  if (["position_invalid", "rate_limited"].includes(error.code) && !error.ref) {
    room.walker?.refused();
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
    room.walker?.stop();
    if (!state.dropped) notice(t("notice.dropped"), { warn: true });
    state.dropped = true;
  }
  if (joined) {
    status("");
    if (state.dropped) notice(t("notice.reconnected"));
    state.dropped = false;
    state.restoring = null;
  }
  if (ENDED.has(now)) {
    room.walker?.stop();
    keepOpen(null);
    const restoring = state.restoring;
    state.restoring = null;
    if (restoring && now === "expired") { // reloaded too late to resume: joined afresh
      showRooms();
      openRoom(restoring.roomId, restoring.title);
      return;
    }
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

/** The name the facilitator chose to show in the room, checked with the server's own rules;
 *  null (and the field marked, the reason said) until it is a name the room accepts. */
function chosenName() {
  const field = $("console-name");
  const rules = pageRules(root);
  const result = field.value.trim() ? checkPseudonym(field.value, rules) : null;
  if (result?.ok) {
    field.removeAttribute("aria-invalid");
    return result.name;
  }
  field.setAttribute("aria-invalid", "true");
  $("pick-error").textContent = result ? pseudonymMessage(result, rules, t) : t("console.name_required");
  field.focus();
  return null;
}

async function openRoom(roomId, title) {
  unlockAudio(); // a click: the browser lets the page make sounds from now on
  $("pick-error").textContent = "";
  const name = chosenName();
  if (name === null) return;
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
  start(roomId, title, ticket, name);
}

// A reloaded console comes back as it was: this tab keeps (sessionStorage) the room it has
// open, the name it shows and whether it is on duty, and a reload resumes the same member —
// its claims, its place on duty — and lists every open incident again. Left, ended or
// refused, nothing is kept; a session that expired meanwhile is joined afresh.
const OPEN_KEY = "hearth.console.open";

function keepOpen(open) {
  try {
    if (open) sessionStorage.setItem(OPEN_KEY, JSON.stringify(open));
    else sessionStorage.removeItem(OPEN_KEY);
  } catch {
    // storage refused (private mode): a reload shows the rooms, as before
  }
}

function keptOpen() {
  try {
    const open = JSON.parse(sessionStorage.getItem(OPEN_KEY) ?? "null");
    return open && typeof open.roomId === "string" && typeof open.name === "string" ? open : null;
  } catch {
    return null;
  }
}

function consoleTokens(roomId) {
  const tokens = new TokenStore(roomId);
  tokens.key = `hearth.console.${roomId}`; // not the participant's key: a different member
  return tokens;
}

/** After a reload: resume the room this tab had open (its token is still here). */
function reopenKept() {
  const open = keptOpen();
  if (!open || !consoleTokens(open.roomId).get()) return;
  state.duty = Boolean(open.duty);
  $("duty").setAttribute("aria-pressed", String(state.duty));
  $("console-name").value = open.name;
  state.restoring = open;
  start(open.roomId, open.title, null, open.name);
}

function start(roomId, title, ticket, name) {
  const tokens = consoleTokens(roomId);
  if (ticket !== null) tokens.clear(); // a fresh ticket is a fresh member (null: a reload resumes)
  const join = ticket === null ? null : { ticket, locale: pageLang, pseudonym: name };
  keepOpen({ roomId, title, name, duty: state.duty });
  const conn = new HearthConnection({ room: roomId, tokens, join });
  room?.walker?.stop();
  room = new RoomState({ connection: conn, view, log: $("chat-log"), lang: pageLang });
  Object.assign(state, {
    roomId, title, ready: new Set(), waiting: [], reports: new Map(), pendingEngage: new Map(), dropped: false,
  });
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
  const ch = new GroupChat(conn, roomId);
  connection = conn;
  chat = ch;
  const mine = (fn) => (event) => {
    if (!exited && conn === connection) fn(event.detail);
  };
  conn.addEventListener("state", mine(onState));
  conn.addEventListener("message", mine(onMessage));
  ch.addEventListener("message", mine((detail) => {
    if (!reactions.take(detail)) showMessage({ ...detail, mine: false }); // a reaction is not chat
  }));
  ch.addEventListener("rejected", mine((detail) => notice(t("notice.rejected", { name: nameOf(detail.sender) }), { warn: true })));
  ch.addEventListener("problem", mine(() => notice(t("notice.e2ee_problem"), { warn: true })));
  ch.addEventListener("roster", mine((detail) => {
    state.ready = detail.ready;
    // A ghost or a swapped key shows here too: the facilitator reads the safety code aloud.
    for (const id of detail.unannounced) notice(t("notice.joined", { name: nameOf(id) }));
    for (const id of detail.changes.keysChanged) notice(t("notice.keys_changed", { name: nameOf(id) }), { warn: true });
    renderMembers();
  }));
  ch.addEventListener("security", mine((detail) => {
    showSafety(detail, { me: room.me, you: t("chat.you"), nameOf });
  }));
  conn.start();
}

// --- saying something ---------------------------------------------------------------------------

async function say(event) {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || !chat) return;
  input.value = "";
  try {
    const sent = await chat.say(text, { zone: room.myPrivateCorner() });
    showMessage({ sender: room.me, text, seq: sent.seq, ts: sent.ts, zone: sent.zone, mine: true });
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
  const banner = el("section", "alert-banner");
  banner.id = "alert-banner";
  banner.hidden = true;
  banner.setAttribute("aria-label", t("console.alerts"));
  const bannerList = el("ul", "alert-banner-list");
  bannerList.id = "alert-banner-list";
  banner.append(bannerList);
  root.prepend(banner); // first in the page's order: the first thing Tab reaches
  new ResizeObserver(padForBanner).observe(banner);
  view = new RoomView($("room-view"), $("room-svg"), { t, ...mapInput(() => room) });
  reactions = new ReactionDisplay({
    view, t, nameOf: (id) => nameOf(id), me: () => room?.me,
    announce: (text) => { $("presence-live").textContent = text; },
  });
  // A closed console tab leaves the room within seconds (a reload resumes: docs/protocol.md).
  window.addEventListener("pagehide", () => {
    if (!exited) connection?.pageHidden();
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
  $("lobby").addEventListener("click", () => act({ type: "lobby", on: !room?.settings.lobby }, t("console.lobby")));
  $("lock").addEventListener("click", () => act({ type: "lock", on: !room?.settings.locked }, t("console.lock")));
  $("stick").addEventListener("click", () => act({ type: "stick", on: !room?.stick.on }, t("console.stick")));
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
    keepOpen(null);
    room?.log.close();
    room?.walker?.stop();
    reactions?.stop();
    connection?.stop();
  });
  setInterval(tickTimers, 1000);
  reopenKept(); // a reload: back in the room this tab had open, as the same member
  state.helplines = cachedHelplines({ forConsole: true });
  renderTools();
  loadHelplines({ forConsole: true }).then((data) => {
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
