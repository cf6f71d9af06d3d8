// The room page: connection, encrypted chat, the map, the members list, notices.
//
// State lives in memory only. The join page hands its choices over in the URL fragment
// (never sent to the server; stripped from the address bar and history at once); the
// helpline country stays in the fragment so a reload keeps it; the session token is the
// one thing kept in sessionStorage. docs/client.md describes the whole client.

import { onQuickExit } from "./common.js";
import { detect, loadPack } from "./detector.js";
import { GroupChat } from "./groupchat.js";
import { cachedHelplines, loadHelplines, renderHelplines } from "./helplines.js";
import { errorText, loadStrings, t, whyText } from "./i18n.js";
import { Presence } from "./presence.js";
import { ENDED, HearthConnection, TokenStore } from "./protocol.js";
import { mapInput, RoomState } from "./roomstate.js";
import { ConversationSheet } from "./sheet.js";
import { RoomView } from "./view.js";
import { Voice } from "./voice.js";

const $ = (id) => document.getElementById(id);
const app = $("app");
const roomId = app.dataset.room;
const pageLang = app.dataset.lang;

const state = {
  ready: new Set(), // members who hold our sender key
  epochShown: null,
  dropped: false,
  country: "",
  join: null, // the join page's choices (pseudonym, avatar), while this page joins with them
  blocked: new Set(), // members whose messages this page hides (on this device only)
  mic: false, // the person's own choice; a facilitator's mute turns it off, never on
  helplines: null, // /crisis/helplines.json, cached in sessionStorage at join
  pack: null, // the detector's rule pack for the page's language
  asked: false, // this person asked for help (the button, or yes to the detector's question)
  care: null, // {detection} while the detector's question is on screen
  careQuietUntil: 0, // after "no" or "not now", the question waits a while before asking again
  reporting: null, // key of the message being reported
  worriedAbout: null, // member id
};
const CARE_QUIET_MS = 5 * 60 * 1000;
// Refusals of what the join form chose: the person goes back to the form, with it filled in.
const JOIN_REFUSALS = new Set(["pseudonym_invalid", "pseudonym_reserved", "pseudonym_taken", "avatar_invalid"]);
const QUIET_REFS = /^(say|report|help|flag|worried|ok)-/; // errors their own callers show

// --- the fragment: join choices in, helpline country kept -------------------------------

function readFragment() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  let join = null;
  if (params.has("p") || params.has("c")) {
    join = { locale: pageLang };
    const pseudonym = (params.get("p") || "").trim();
    if (pseudonym) join.pseudonym = pseudonym;
    if (params.get("c") && params.get("s")) join.avatar = { color: params.get("c"), shape: params.get("s") };
  }
  state.country = params.get("n") || "";
  state.join = join;
  writeFragment();
  return join;
}

/** The room refused the pseudonym or avatar chosen: back to the join form, filled in as it
 *  was, with the refusal's code (join.js shows it on the field). */
function backToJoinForm(code) {
  const choice = new URLSearchParams({ p: state.join.pseudonym ?? "", c: state.join.avatar?.color ?? "",
    s: state.join.avatar?.shape ?? "", n: state.country, r: "1", e: code });
  window.location.replace(`${app.dataset.joinUrl}?lang=${encodeURIComponent(pageLang)}#${choice}`);
}

function writeFragment() {
  const hash = state.country ? `#n=${encodeURIComponent(state.country)}` : "";
  window.history.replaceState(null, "", window.location.pathname + window.location.search + hash);
  for (const link of document.querySelectorAll("[data-lang-link]")) {
    const url = new URL(link.href);
    url.hash = hash;
    link.href = url.href;
  }
}

// --- the log: messages and notices, in server order (roomstate.js) -------------------------

function notice(text, options) {
  room.log.notice(text, options);
}

function showMessage({ key = null, sender, text, seq, ts, zone = null, mine }) {
  if (exited) return;
  const li = room.log.message({ sender, text, seq, ts, zone, mine });
  if (!mine && key !== null) {
    const report = document.createElement("button");
    report.type = "button";
    report.className = "link-button msg-report";
    report.dataset.key = key;
    report.textContent = t("chat.report");
    report.setAttribute("aria-label", t("chat.report_label", { name: nameOf(sender) }));
    li.append(report);
  }
  if (state.blocked.has(sender)) li.hidden = true;
}

function nameOf(id) {
  return room.nameOf(id);
}

// --- members, seats, where I am --------------------------------------------------------

function chip(member) {
  const ns = "http://www.w3.org/2000/svg";
  const icon = document.createElementNS(ns, "svg");
  icon.setAttribute("class", "chip");
  icon.setAttribute("viewBox", "-1 -1 2 2");
  icon.setAttribute("aria-hidden", "true");
  const use = document.createElementNS(ns, "use");
  use.setAttribute("href", `#shape-${member.avatar.shape}`);
  use.setAttribute("x", "-1");
  use.setAttribute("y", "-1");
  use.setAttribute("width", "2");
  use.setAttribute("height", "2");
  use.setAttribute("fill", member.avatar.color);
  icon.append(use);
  return icon;
}

function span(className, text) {
  const node = document.createElement("span");
  node.className = className;
  node.textContent = text;
  return node;
}

function renderMembers() {
  const list = $("members");
  const order = (m) => (m.id === room.me ? 0 : m.role === "participant" ? 2 : 1);
  const members = [...room.members.values()].sort(
    (a, b) => order(a) - order(b) || a.pseudonym.localeCompare(b.pseudonym, pageLang),
  );
  const focused = document.activeElement?.dataset?.focusKey;
  list.replaceChildren(
    ...members.map((m) => {
      const li = document.createElement("li");
      li.className = "member";
      li.dataset.member = m.id;
      const ready = m.id === room.me || state.ready.has(m.id);
      li.dataset.e2ee = ready ? "ready" : "waiting";
      li.append(chip(m), span("name", m.pseudonym));
      if (m.role !== "participant") li.append(span("badge", t(`role.${m.role}`)));
      if (m.id === room.me) li.append(span("badge you", t("badge.you")));
      li.append(...presence.badges(m));
      li.append(span("where", room.whereText(m)));
      if (!ready) li.append(span("keys", t("keys.waiting")));
      if (m.muted) li.append(span("badge quiet", t("badge.muted")));
      if (m.hand) li.append(span("badge quiet", t("badge.hand")));
      if (m.id !== room.me && m.role === "participant") li.append(memberActions(m));
      return li;
    }),
  );
  if (focused) list.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`)?.focus();
  $("member-count").textContent = `(${room.members.size})`;
  view.setSeats(room.takenSeats());
  renderMe();
}

function renderMe() {
  const text = room.myPlaceText();
  if (text === null) return;
  if ($("me-where").textContent !== text) $("me-where").textContent = text;
  const seat = room.myself().seat;
  $("stand").hidden = seat === null || seat === undefined;
}

function actionButton(text, focusKey, onClick, pressed = null) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "small secondary";
  button.textContent = text;
  button.dataset.focusKey = focusKey;
  if (pressed !== null) button.setAttribute("aria-pressed", String(pressed));
  button.addEventListener("click", onClick);
  return button;
}

/** What a participant can do about another: hide their messages here, or tell a facilitator. */
function memberActions(member) {
  const box = document.createElement("span");
  box.className = "member-actions";
  const blocked = state.blocked.has(member.id);
  const hide = actionButton(t("member.hide"), `hide:${member.id}`, () => toggleBlocked(member.id), blocked);
  hide.setAttribute("aria-label", t("member.hide_label", { name: member.pseudonym }));
  const worried = actionButton(t("member.worried"), `worried:${member.id}`, () => askWorried(member.id));
  worried.setAttribute("aria-label", t("member.worried_label", { name: member.pseudonym }));
  box.append(hide, worried);
  return box;
}

function toggleBlocked(id) {
  const name = nameOf(id);
  if (state.blocked.has(id)) state.blocked.delete(id);
  else state.blocked.add(id);
  const blocked = state.blocked.has(id);
  for (const li of $("chat-log").querySelectorAll(".msg")) {
    if (li.dataset.sender === id) li.hidden = blocked;
  }
  notice(t(blocked ? "notice.blocked" : "notice.unblocked", { name }));
  renderMembers();
}

function askWorried(id) {
  state.worriedAbout = id;
  $("worried-title").textContent = t("worried.title", { name: nameOf(id) });
  $("worried-form").hidden = false;
  $("worried-title").focus();
}

async function sendWorried() {
  const id = state.worriedAbout;
  closePrompt("worried-form");
  if (!id) return;
  try {
    const reply = await connection.request({ type: "worried", member: id }, "worried");
    if (reply.type === "error") notice(errorText(reply.code, reply.message), { warn: true });
    else notice(t("notice.concern_sent", { name: nameOf(id) }));
  } catch {
    notice(t("error.not_sent"), { warn: true });
  }
}

function closePrompt(id, focus = null) {
  $(id).hidden = true;
  if (focus) $(focus)?.focus();
}

// --- voice: the person's own microphone, and the facilitator's mute ----------------------
//
// The microphone is the person's choice. A facilitator's mute turns it off (and the server
// drops the member's voice frames whatever this page does); it stays off until a facilitator
// asks to unmute and the person turns it on. The page says "hearth:mic" {on} on #app, for the
// voice module to start or stop sending.

function myself() {
  return room.myself();
}

function setMic(on) {
  if (on && (myself()?.muted || !connection.open)) {
    $("mic-note").textContent = myself()?.muted ? t("mic.muted") : t("mic.off");
    return false;
  }
  if (state.mic !== on) {
    state.mic = on;
    app.dispatchEvent(new CustomEvent("hearth:mic", { detail: { on } }));
  }
  renderVoice();
  return true;
}

function renderVoice() {
  const me = myself();
  const muted = Boolean(me?.muted);
  if (muted && state.mic) {
    state.mic = false;
    app.dispatchEvent(new CustomEvent("hearth:mic", { detail: { on: false } }));
  }
  if (muted) $("unmute-prompt").hidden = true;
  app.dataset.mic = state.mic ? "on" : "off";
  app.dataset.muted = String(muted);
  const mic = $("mic");
  mic.setAttribute("aria-pressed", String(state.mic));
  mic.setAttribute("aria-disabled", String(muted));
  let note = state.mic ? t("mic.on") : t("mic.off");
  if (muted) note = t("mic.muted");
  if ($("mic-note").textContent !== note) $("mic-note").textContent = note;
  const hand = $("hand");
  const up = Boolean(me?.hand);
  hand.setAttribute("aria-pressed", String(up));
  hand.textContent = up ? t("hand.lower") : t("hand.raise");
}

function renderStick() {
  const { on, holder } = room.stick;
  const line = $("stick-line");
  line.hidden = !on;
  if (!on) return;
  if (holder === room.me) line.textContent = t("stick.yours");
  else if (holder) line.textContent = t("stick.holder", { name: nameOf(holder) });
  else line.textContent = t("stick.on");
}

/** A facilitator opened or closed a private corner with this member: say so. */
function privateNotice(before) {
  const after = room.privateCornerOf(room.me);
  if (after && after !== before) notice(t("notice.private_corner"));
  if (before && !after) notice(t("notice.private_corner_closed"));
}

// --- help: the card, the request, what the facilitators answer ----------------------------

function renderHelp() {
  renderHelplines($("help-lines"), state.helplines, state.country, pageLang);
}

function helpState(text) {
  $("help-state").textContent = text;
}

/** Show the card at once (from the cache); with `ask`, tell the facilitators privately. */
function openHelp(ask) {
  renderHelp();
  $("help-card").hidden = false;
  $("help-title").focus();
  if (!ask) return;
  state.asked = true;
  $("im-ok").hidden = false;
  $("help-prompt").hidden = true;
  if ($("help-state").dataset.status === "resolved") delete $("help-state").dataset.status; // a new request
  if (!connection.open) {
    helpState(connection.state === "waiting" ? t("help.waiting") : t("help.offline"));
    return;
  }
  helpState(t("help.sending"));
  connection.request({ type: "help" }, "help").then(
    (reply) => {
      if (reply.type === "help_received") {
        if ($("help-state").dataset.status === undefined) helpState(t("help.received"));
      } else {
        helpState(t("help.not_sent"));
      }
    },
    () => helpState(t("help.not_sent")),
  );
}

function onHelpStatus(message) {
  if (!state.asked) return; // someone else's concern about this person: not theirs to be told
  const text = { acknowledged: t("help.acknowledged"), engaged: t("help.engaged"), resolved: t("help.resolved") }[
    message.status
  ];
  if (!text) return;
  $("help-state").dataset.status = message.status;
  helpState(text);
  if ($("help-card").hidden) {
    renderHelp();
    $("help-card").hidden = false;
  }
}

function onHelpPrompt() {
  if (!state.asked) return;
  renderHelp();
  $("help-card").hidden = false;
  $("help-prompt").hidden = false;
  $("help-title").focus();
}

function imOk() {
  if (connection.send({ type: "im_ok", ref: "ok-1" })) helpState(t("help.ok_sent"));
  else helpState(t("help.offline"));
}

// --- the on-device detector: asks before anyone is told ------------------------------------

/** True when the detector fired and the person is being asked first (nothing is sent yet). */
function careCheck(text) {
  if (!state.pack || state.asked || Date.now() < state.careQuietUntil) return false;
  const detection = detect(state.pack, text);
  if (!detection) return false;
  state.care = { detection };
  $("care-why").textContent = `${whyText(detection.category)} ${t("why.private")}`;
  $("care-done").textContent = "";
  for (const id of ["care-yes", "care-send", "care-cancel"]) $(id).disabled = false;
  $("care-prompt").hidden = false;
  $("care-title").focus();
  return true;
}

async function careYes() {
  const care = state.care;
  if (!care) return;
  const { category, severity, pack, version } = care.detection; // never the text
  $("care-yes").disabled = true;
  try {
    const reply = await connection.request({ type: "flag", category, severity, pack: `${pack}:${version}` }, "flag");
    if (reply.type === "error") {
      $("care-done").textContent = errorText(reply.code, reply.message);
      $("care-yes").disabled = false;
      return;
    }
    state.asked = true;
    state.care = null;
    $("care-done").textContent = t("care.sent");
    $("care-send").textContent = t("care.send_group");
    $("care-cancel").textContent = t("care.close");
  } catch {
    $("care-done").textContent = t("help.not_sent");
    $("care-yes").disabled = false;
  }
}

function careLater(sendIt) {
  state.care = null;
  if (!state.asked) state.careQuietUntil = Date.now() + CARE_QUIET_MS;
  closePrompt("care-prompt", "chat-input");
  const text = $("chat-input").value.trim();
  if (sendIt && text) sendText(text);
}

// --- reporting a message ------------------------------------------------------------------

function openReport(key) {
  const kept = chat.kept(key);
  if (!kept) return;
  state.reporting = key;
  $("report-quote").textContent = t("report.quote", { name: nameOf(kept.sender), text: kept.text });
  $("report-reason").value = "";
  $("report-form").hidden = false;
  $("report-title").focus();
}

async function sendReport(event) {
  event.preventDefault();
  const key = state.reporting;
  state.reporting = null;
  closePrompt("report-form", "chat-input");
  if (key === null) return;
  try {
    const reply = await chat.report(key, $("report-reason").value.trim());
    if (reply.type === "report_received") notice(t("notice.report_sent"));
    else notice(errorText(reply.code, reply.message), { warn: true });
  } catch {
    notice(t("error.not_sent"), { warn: true });
  }
}

// --- what the server says ----------------------------------------------------------------

function onWelcome(welcome, change) {
  app.dataset.me = welcome.member;
  state.epochShown = null;
  privateNotice(change.cornerBefore);
  renderStick();
  if (!welcome.resumed) notice(t("notice.welcome", { name: nameOf(welcome.member) }));
}

function onServerMessage(message) {
  // Members, seats, positions, corners, the stick and settings: roomstate.js keeps them, the
  // map and the shared notices; this page draws the rest.
  const change = room.apply(message);
  if (change?.left) state.ready.delete(change.left);
  if (change?.mine) renderVoice();
  if (change?.members) renderMembers();
  switch (message.type) {
    case "welcome":
      onWelcome(message, change);
      break;
    case "corners":
      privateNotice(change.cornerBefore);
      break;
    case "stick":
      renderStick();
      break;
    case "room_settings":
      if (message.slow_mode !== change.settingsBefore.slow_mode) {
        notice(message.slow_mode > 0 ? t("notice.slow_mode", { n: message.slow_mode }) : t("notice.slow_mode_off"),
          { seq: message.seq });
      }
      break;
    case "unmute_requested":
      if (!myself()?.muted) {
        $("unmute-prompt").hidden = false;
        $("unmute-title").focus();
      }
      break;
    case "help_status":
      onHelpStatus(message);
      break;
    case "help_prompt":
      onHelpPrompt();
      break;
    case "error":
      onError(message);
      break;
    default:
      break;
  }
  chat.handle(message);
}

function onError(error) {
  if (error.ref === "ok-1") {
    helpState(errorText(error.code, error.message));
    return;
  }
  if (typeof error.ref === "string" && QUIET_REFS.test(error.ref)) return; // the caller handles it
  if (["position_invalid", "rate_limited"].includes(error.code)) {
    room.walker?.refused();
    return;
  }
  if (["seat_taken", "seat_too_far", "seat_not_found"].includes(error.code)) {
    room.stopWalking();
    $("me-where").textContent = errorText(error.code, error.message);
    return;
  }
  notice(errorText(error.code, error.message), { warn: true });
}

function onState({ state: now, code }) {
  app.dataset.state = now;
  const status = $("status");
  const joined = now === "joined";
  $("chat-input").disabled = !joined;
  $("chat-send").disabled = !joined;
  $("mic").disabled = !joined;
  $("hand").disabled = !joined;
  const waiting = now === "waiting";
  if (waiting && $("waiting").hidden) {
    $("waiting").hidden = false;
    $("room-layout").hidden = true;
    $("waiting-title").focus();
  } else if (!waiting && !$("waiting").hidden) {
    $("waiting").hidden = true;
    $("room-layout").hidden = ENDED.has(now);
  }
  if (now === "connecting") status.textContent = t("status.connecting");
  if (now === "waiting") status.textContent = t("status.waiting");
  if (now === "reconnecting") {
    status.textContent = t("status.reconnecting");
    room.stopWalking();
    if (!state.dropped) notice(t("notice.dropped"), { warn: true });
    state.dropped = true;
  }
  if (joined) {
    status.textContent = "";
    if (state.dropped) notice(t("notice.reconnected"));
    state.dropped = false;
  }
  if (now === "refused" && state.join && JOIN_REFUSALS.has(code)) {
    backToJoinForm(code);
    return;
  }
  if (ENDED.has(now)) {
    room.walker?.stop();
    setMic(false);
    status.textContent = "";
    $("room-layout").hidden = true;
    $("ended").hidden = false;
    const reason = now === "refused" ? errorText(code) : t(`ended.${now}`);
    $("ended-reason").textContent = reason;
    $("ended-title").focus();
  }
}

// --- what the participant does ---------------------------------------------------------

async function send(event) {
  event.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text) return;
  if (careCheck(text)) return; // the detector fired: the person is asked first, the text waits
  await sendText(text);
}

async function sendText(text) {
  const input = $("chat-input");
  input.value = "";
  try {
    const sent = await chat.say(text, { zone: room.myPrivateCorner() });
    showMessage({ sender: room.me, text, seq: sent.seq, ts: sent.ts, zone: sent.zone, mine: true });
  } catch (err) {
    if (exited) return;
    input.value = input.value || text; // keep what was typed, so nothing is lost
    notice(errorText(err.code ?? "not_sent", t("error.not_sent")), { warn: true });
  }
}

// --- wiring --------------------------------------------------------------------------------

let connection;
let chat;
let view;
let room; // RoomState: members, seats, positions, corners, the stick, the log
let voice = null;
let presence = null;
let exited = false;

/** Presence (reactions, status, who is away), the phone's conversation sheet, and leaving
 *  the room at once when the page goes away (pagehide: a closed tab; a reload resumes). */
function wirePresence(live) {
  presence = new Presence({
    connection, chat, room, view, t, reactionsRoot: $("reactions"), statusRoot: $("status-control"),
    live: $("presence-live"),
  });
  presence.addEventListener("change", live(() => renderMembers()));
  const low = $("voice-low"); // low-bandwidth mode (the voice panel): reactions rest too
  low?.addEventListener("change", () => presence.setLowBandwidth(low.checked));
  new ConversationSheet({ section: $("chat"), toggle: $("sheet-toggle"), count: $("unread"), log: $("chat-log"), t });
  window.addEventListener("pagehide", () => {
    if (!exited) connection.pageHidden();
  });
}

async function main() {
  try {
    await loadStrings(pageLang);
  } catch {
    await loadStrings("en");
  }
  const join = readFragment();
  const tokens = new TokenStore(roomId);
  if (join) tokens.clear(); // a fresh join from the join page wins over an old session
  else if (!tokens.get()) {
    window.location.replace(`${app.dataset.joinUrl}?lang=${encodeURIComponent(pageLang)}`);
    return;
  }
  const seatTaken = (index, who) => {
    $("me-where").textContent = t("seat.taken", { n: index + 1, name: who.pseudonym });
  };
  view = new RoomView($("room-view"), $("room-svg"), { t, ...mapInput(() => room, seatTaken) });
  connection = new HearthConnection({ room: roomId, tokens, join });
  room = new RoomState({ connection, view, log: $("chat-log"), lang: pageLang });
  chat = new GroupChat(connection, roomId);
  voice = new Voice({ connection, chat, view, root: $("voice"), app, t }); // docs/client.md, "Voice"
  const live = (fn) => (event) => {
    if (!exited) fn(event);
  };
  connection.addEventListener("state", live((event) => onState(event.detail)));
  connection.addEventListener("message", live((event) => onServerMessage(event.detail)));
  wirePresence(live);
  chat.addEventListener("message", live((event) => {
    if (!presence.take(event.detail)) showMessage({ ...event.detail, mine: false }); // a reaction is not chat
  }));
  chat.addEventListener("rejected", live((event) => {
    // Too late for its keys (they changed meanwhile) is not the same as forged or tampered.
    const late = ["e2ee.stale_epoch", "e2ee.out_of_window", "e2ee.future_epoch"].includes(event.detail.code);
    notice(t(late ? "notice.too_late" : "notice.rejected", { name: nameOf(event.detail.sender) }), { warn: true });
  }));
  chat.addEventListener("problem", live(() => notice(t("notice.e2ee_problem"), { warn: true })));
  chat.addEventListener("roster", live((event) => {
    const { changes, ready } = event.detail;
    state.ready = ready;
    for (const id of changes.keysChanged) notice(t("notice.keys_changed", { name: nameOf(id) }), { warn: true });
    const renewed = state.epochShown !== null && changes.epoch > state.epochShown;
    if (renewed && changes.left.length > 0) notice(t("notice.keys_renewed"));
    state.epochShown = changes.epoch;
    renderMembers();
  }));
  chat.addEventListener("security", live((event) => {
    const { safetyCode, fingerprints } = event.detail;
    $("safety-code").textContent = safetyCode;
    const list = $("fingerprints");
    list.replaceChildren();
    for (const [id, fingerprint] of fingerprints) {
      const dt = document.createElement("dt");
      dt.textContent = id === room.me ? t("chat.you") : nameOf(id);
      const dd = document.createElement("dd");
      dd.textContent = fingerprint;
      dd.dataset.member = id;
      list.append(dt, dd);
    }
  }));
  $("chat-form").addEventListener("submit", send);
  $("stand").addEventListener("click", () => connection.send({ type: "stand" }));
  $("leave").addEventListener("click", () => connection.leave());
  const country = $("help-country");
  if ([...country.options].some((o) => o.value === state.country)) country.value = state.country;
  country.addEventListener("change", () => {
    state.country = country.value;
    writeFragment();
    renderHelp();
  });
  // Help: the card comes from the cache at once; the fresh copy replaces it when it arrives.
  state.helplines = cachedHelplines();
  loadHelplines().then((data) => {
    if (!data) return;
    state.helplines = data;
    if (!$("help-card").hidden) renderHelp();
  });
  fetch(`/crisis/rules/${pageLang}.json`, { credentials: "same-origin" })
    .then((response) => (response.ok ? response.json() : null))
    .then((json) => {
      if (!json) return;
      state.pack = loadPack(json);
      app.dataset.detector = "ready";
    })
    .catch(() => {}); // without a pack the detector stays silent; everything else works
  $("help-button").addEventListener("click", () => openHelp(true));
  $("show-helplines").addEventListener("click", () => openHelp(false));
  $("help-close").addEventListener("click", () => closePrompt("help-card", "help-button"));
  $("im-ok").addEventListener("click", imOk);
  $("mic").addEventListener("click", () => setMic(!state.mic));
  $("hand").addEventListener("click", () => connection.send({ type: "raise_hand", up: !myself()?.hand }));
  $("unmute-yes").addEventListener("click", () => {
    if (setMic(true)) closePrompt("unmute-prompt", "mic");
  });
  $("unmute-no").addEventListener("click", () => closePrompt("unmute-prompt", "mic"));
  $("care-yes").addEventListener("click", careYes);
  $("care-send").addEventListener("click", () => careLater(true));
  $("care-cancel").addEventListener("click", () => careLater(false));
  $("report-form").addEventListener("submit", sendReport);
  $("report-cancel").addEventListener("click", () => {
    state.reporting = null;
    closePrompt("report-form", "chat-input");
  });
  $("chat-log").addEventListener("click", (event) => {
    const button = event.target instanceof Element ? event.target.closest(".msg-report") : null;
    if (button) openReport(button.dataset.key);
  });
  $("worried-yes").addEventListener("click", sendWorried);
  $("worried-no").addEventListener("click", () => {
    closePrompt("worried-form");
    $("members").querySelector(`[data-focus-key="worried:${CSS.escape(state.worriedAbout ?? "")}"]`)?.focus();
  });
  renderVoice();
  onQuickExit(() => {
    exited = true; // the page is about to go: nothing may touch it any more
    room.log.close();
    room.walker?.stop();
    voice?.stop(); // the microphone and the sound, released at once
    presence?.stop();
    connection.stop();
  });
  connection.start();
}

main();
