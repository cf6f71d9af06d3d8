// The room page: connection, encrypted chat, the map, the members list, notices.
//
// State lives in memory, except what a reload in the same tab keeps: the session token in
// sessionStorage, and (keep.js) the E2EE identity as non-extractable keys in IndexedDB with the
// conversation sealed beside it, erased by leaving and by quick exit. The join page hands its
// choices over in the URL fragment (never sent to the server; stripped from the address bar
// and history at once); the helpline country stays in the fragment so a reload keeps it.
// docs/client.md describes the whole client.

import { onQuickExit } from "./common.js";
import { detect, loadPack } from "./detector.js";
import { fromHex, toHex } from "./e2ee.js";
import { GroupChat, newClientId } from "./groupchat.js";
import { cachedHelplines, loadHelplines, renderHelplines } from "./helplines.js";
import { errorText, loadStrings, t, whyText } from "./i18n.js";
import { forgetEverything, Keep, LOG_LIMIT } from "./keep.js";
import { Presence } from "./presence.js";
import { ENDED, HearthConnection, TokenStore } from "./protocol.js";
import { mapInput, RoomState } from "./roomstate.js";
import { showSafety } from "./safety.js";
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
  // This person's own request (the button, or yes to the detector's question): its incident
  // and how far it got — sending, received, delivered ("on a facilitator's screen" once a
  // console has it: never "told", which waits for a person's acknowledgement), acknowledged,
  // engaged, resolved, ok (they said so).
  request: { incident: null, status: null },
  // A request not answered yet ({id, kind, fields, inFlight}): a help press, or the
  // detector's "yes, talk privately" (a flag). Sent again, with the same client id, whenever
  // the page is back in the room (or its lobby) — the server answers a repeated id once.
  press: null,
  concerns: new Map(), // incident -> {name, status}: people this person said they worry about
  card: "info", // what the help card is open for: "own", "info", or a concern's incident id
  care: null, // {detection} while the detector's question is on screen
  careQuietUntil: 0, // after "no" or "not now", the question waits before asking again
  reporting: null, // key of the message being reported
  worriedAbout: null, // member id
};
const CARE_QUIET_MS = 5 * 60 * 1000; // "not now" means not for 5 minutes, and no longer
const PRESS_AGAIN_MS = 500; // a press refused with room_moving (nothing done) goes again after this
const ANSWERS = { help: "help_received", flag: "flag_received" }; // what answers each request
const LIVE_REQUEST = new Set(["sending", "queued", "received", "reopened", "delivered", "acknowledged", "engaged"]);
// Refusals of what the join form chose: the person goes back to the form, with it filled in.
const JOIN_REFUSALS = new Set(["pseudonym_invalid", "pseudonym_reserved", "pseudonym_taken", "avatar_invalid"]);
// Errors their own callers show (vt: voicelink.js, which falls back to the WebSocket quietly).
const QUIET_REFS = /^(say|report|help|flag|worried|ok|vt)-/;

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

function showMessage(message) {
  if (exited) return;
  const { key = null, sender, text, seq, ts, zone = null, mine, name = null } = message;
  const li = room.log.message({ sender, text, seq, ts, zone, mine, name });
  if (!mine && key !== null) {
    const report = document.createElement("button");
    report.type = "button";
    report.className = "link-button msg-report";
    report.dataset.key = key;
    report.textContent = t("chat.report");
    report.setAttribute("aria-label", t("chat.report_label", { name: name ?? nameOf(sender) }));
    li.append(report);
  }
  if (state.blocked.has(sender)) li.hidden = true;
  if (!message.restored) remember(message);
}

// --- what a reload keeps (keep.js): this conversation, sealed on this device ---------------

const conversation = []; // the messages shown, as a reload brings them back
// What the person said and the server had not acknowledged when the page was reloaded: kept
// sealed with the conversation (with its client id), shown "sending…" at once and sent again
// under the same id once the page is back in the room — the server delivers an id once, so it
// reaches the room once whether or not the first try did.
const unsentAfterReload = []; // [entry, its line]

function remember({ key = null, sender, text, seq, ts, zone = null, mine, tag = null, frankingKey = null, commitment = null, id = null }) {
  const entry = { key, sender, name: mine ? null : nameOf(sender), text, seq, ts, zone, mine, tag };
  if (id) Object.assign(entry, { pending: true, id }); // not acknowledged yet (see deliver)
  if (frankingKey) Object.assign(entry, { frankingKey: toHex(frankingKey), commitment: toHex(commitment) });
  conversation.push(entry);
  if (conversation.length > 2 * LOG_LIMIT) conversation.splice(0, conversation.length - LOG_LIMIT);
  saveConversation({ soon: mine });
  return entry;
}

function forgetEntry(entry) {
  const at = conversation.indexOf(entry);
  if (at >= 0) conversation.splice(at, 1);
  saveConversation({ soon: true });
}

/** Seal and keep the conversation as it is now. Sealing 200 lines is a few milliseconds'
 *  work: in an ordinary conversation every line is kept at once, but a burst (hundreds of lines
 *  handed over after a reconnection) sealed once per line froze the page for seconds. So once
 *  more than BURST_SAVES saves went in the last second, a save waits for the one under way and
 *  then SAVE_GAP_MS, and takes everything that came meanwhile (keep.js copies the list when a
 *  save starts); a reload in the middle of a burst may then miss its last fraction of a second.
 *  `soon`: one's own line (sending, or acknowledged) is kept at once, so a reload right after
 *  it neither loses it nor sends it again. */
const SAVE_GAP_MS = 200;
const BURST_SAVES = 20; // a second of ordinary conversation never comes near
const saves = { running: false, dirty: false, soon: false, timer: null, recent: [] };
function saveConversation({ soon = false } = {}) {
  if (!keep) return;
  saves.dirty = true;
  saves.soon ||= soon;
  nextSave();
}

function nextSave() {
  if (saves.running || !saves.dirty || (saves.timer !== null && !saves.soon)) return;
  clearTimeout(saves.timer);
  const now = performance.now();
  saves.recent = saves.recent.filter((at) => now - at < 1000);
  saves.recent.push(now);
  Object.assign(saves, { running: true, dirty: false, soon: false, timer: null });
  keep.saveLog(conversation).finally(() => {
    saves.running = false;
    if (saves.recent.length > BURST_SAVES) {
      saves.timer = setTimeout(() => {
        saves.timer = null;
        nextSave();
      }, SAVE_GAP_MS); // a burst: a quiet spell before the next save
    }
    nextSave();
  });
}

/** The conversation kept before a reload, shown again and reportable again. The log is a live
 *  region: these lines (up to 200, already read) go in while it is busy, so that a screen reader
 *  does not read them all out again; it is live again once the browser has drawn them. */
async function restoreConversation() {
  const entries = await keep.log();
  const log = $("chat-log");
  if (entries.length > 0) {
    log.setAttribute("aria-busy", "true");
    const live = () => log.removeAttribute("aria-busy");
    requestAnimationFrame(() => setTimeout(live, 0));
    setTimeout(live, 1000); // a hidden tab draws no frame
  }
  for (const entry of entries) {
    if (entry.pending) unsentAfterReload.push([entry, pendingLine(entry)]); // sent again once joined
    else showMessage({ ...entry, restored: true });
  }
  conversation.push(...entries);
  chat.restore(entries.filter((e) => e.frankingKey && e.key !== null).map((e) => ({
    ...e, frankingKey: fromHex(e.frankingKey), commitment: fromHex(e.commitment),
  })));
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
  const name = nameOf(id);
  try {
    const reply = await connection.request({ type: "worried", member: id }, "worried");
    if (reply.type === "error") {
      notice(reply.code === "rate_limited" ? t("concern.limited") : errorText(reply.code, reply.message),
        { warn: true });
      return;
    }
    const known = state.concerns.get(reply.incident);
    state.concerns.set(reply.incident, { name, status: known?.status ?? "received" });
    notice(t(known?.status === "delivered" ? "concern.delivered" : "concern.received", { name }));
    showCard(reply.incident, { focus: false }); // the helplines, for them or for whoever needs them
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
//
// Nothing is promised before it is true: the person reads "received, reaching a facilitator"
// until the server says a facilitator's console has it (help_status "delivered": "on a
// facilitator's screen"), and "a facilitator has been told" only once a person acknowledged
// it (help_status "acknowledged"). The card — helplines and the emergency number of the
// chosen country — opens on every path: the button, the detector's question whatever the
// answer, and "I'm worried".

const OWN_TITLE = $("help-title").textContent;

function renderHelp() {
  renderHelplines($("help-lines"), state.helplines, state.country, pageLang);
}

function ownText(status) {
  switch (status) {
    case "sending":
      return t("help.sending");
    case "received":
      return t("help.received");
    case "delivered":
      return t("help.delivered");
    case "acknowledged":
      return t("help.acknowledged");
    case "engaged":
      return t("help.engaged");
    case "resolved":
      return t("help.resolved");
    case "ok":
      return t("help.ok_sent");
    case "queued":
      return t("help.queued");
    case "reopened":
      return t("help.reopened");
    case "offline":
      return t("help.offline");
    case "not_sent":
      return t("help.not_sent");
    default:
      return "";
  }
}

/** The card's title and status line, for what it is open for. */
function renderCardState() {
  let title = OWN_TITLE;
  let text = "";
  if (state.card === "own") {
    text = ownText(state.request.status);
  } else if (state.card === "info") {
    title = t("help.title_info");
    text = t("help.info");
  } else {
    const concern = state.concerns.get(state.card);
    title = t("help.title_concern");
    if (concern) text = t(concern.status === "delivered" ? "concern.delivered" : "concern.received", { name: concern.name });
  }
  if ($("help-title").textContent !== title) $("help-title").textContent = title;
  $("help-state").textContent = text;
  $("im-ok").hidden = !(state.card === "own" && LIVE_REQUEST.has(state.request.status));
}

/** Open the card (from the cache, at once) for `what`; by default the person is taken to it. */
function showCard(what, { focus = true } = {}) {
  state.card = what;
  if (what !== "own") $("help-prompt").hidden = true;
  renderHelp();
  renderCardState();
  $("help-card").hidden = false;
  if (focus) $("help-title").focus();
}

function requestStatus(status) {
  state.request.status = status;
  if (state.card === "own") renderCardState();
}

/** "I need help now": the card at once; the facilitators are told privately. A press is
 * never dropped: one the server has not answered is sent again (same id) until it is, while
 * the page can still reach the room; the card says honestly where it stands meanwhile. */
function askForHelp() {
  showCard("own");
  $("help-prompt").hidden = true;
  state.press = { id: newClientId(), kind: "help", fields: { type: "help" }, inFlight: false };
  sendPress();
}

function sendPress() {
  const press = state.press;
  if (!press || press.inFlight) return;
  if (ENDED.has(connection.state)) {
    state.press = null;
    requestStatus("not_sent");
    return;
  }
  press.inFlight = true;
  requestStatus("sending");
  connection.request({ ...press.fields, id: press.id }, press.kind).then(
    (reply) => {
      press.inFlight = false;
      const latest = state.press === press; // (else a newer press is on its way)
      if (reply.type === "error" && reply.code === "room_moving") {
        if (latest) setTimeout(sendPress, PRESS_AGAIN_MS); // nothing was done: again shortly
        return;
      }
      if (latest) state.press = null;
      if (reply.type !== ANSWERS[press.kind] || !reply.incident) {
        if (latest) requestStatus("not_sent");
        return;
      }
      if (state.request.incident !== reply.incident) state.request.incident = reply.incident;
      if (latest && ["sending", "queued"].includes(state.request.status)) requestStatus("received");
    },
    () => {
      press.inFlight = false;
      if (state.press !== press) return;
      if (ENDED.has(connection.state)) {
        state.press = null;
        requestStatus("not_sent");
      } else if (connection.open || (connection.state === "waiting" && navigator.onLine)) {
        sendPress(); // no answer on an open connection: the same press again (answered once)
      } else {
        requestStatus("queued"); // sent again as soon as the page is back (onState)
      }
    },
  );
}

function onHelpStatus(message) {
  const concern = state.concerns.get(message.incident);
  if (concern && message.status === "delivered") {
    concern.status = "delivered";
    notice(t("concern.delivered", { name: concern.name }));
    if (state.card === message.incident) renderCardState();
  }
  if (message.incident !== state.request.incident) return; // not a request this person made
  if (!["delivered", "reopened", "acknowledged", "engaged", "resolved"].includes(message.status)) return;
  // "delivered" only follows "received" (or a reopening): after an answer it is past that
  if (message.status === "delivered" && !["received", "reopened"].includes(state.request.status)) return;
  requestStatus(message.status);
  if (message.status === "resolved") state.careQuietUntil = 0; // the detector may ask again
  if ($("help-card").hidden || state.card !== "own") showCard("own", { focus: false });
}

function onHelpPrompt(message) {
  if (message.incident !== state.request.incident) return;
  const shown = !$("help-card").hidden && state.card === "own" && !$("help-prompt").hidden;
  showCard("own", { focus: !shown });
  $("help-prompt").hidden = false;
}

function imOk() {
  if (connection.send({ type: "im_ok", ref: "ok-1" })) {
    requestStatus("ok"); // and the detector is ready to ask again
    state.careQuietUntil = 0;
  } else {
    requestStatus("offline");
  }
}

// --- the on-device detector: asks before anyone is told ------------------------------------
//
// It stays quiet while the person's own request is open, and for 5 minutes after "not now"
// or "no, send my message"; it asks again once a request is resolved or the person says they
// are OK.

/** True when the detector fired and the person is being asked first (nothing is sent yet). */
function careCheck(text) {
  if (!state.pack || LIVE_REQUEST.has(state.request.status) || Date.now() < state.careQuietUntil) return false;
  const detection = detect(state.pack, text);
  if (!detection) return false;
  state.care = { detection };
  $("care-why").textContent = `${whyText(detection.category)} ${t("why.private")}`;
  $("care-done").textContent = "";
  $("care-send").textContent = t("care.send_no");
  $("care-cancel").textContent = t("care.not_now");
  for (const id of ["care-yes", "care-send", "care-cancel"]) $(id).disabled = false;
  $("care-yes").hidden = false;
  $("care-prompt").hidden = false;
  $("care-title").focus();
  return true;
}

/** "Yes, talk privately": the person's own request, kept and sent like a help press — with
 * a client id, again after a drop until the server answers — and the card says where it
 * stands ("not connected right now: it will be sent", never that anyone knows). */
function careYes() {
  const care = state.care;
  if (!care) return;
  const { category, severity, pack, version } = care.detection; // never the text
  state.care = null;
  $("care-yes").hidden = true;
  $("care-done").textContent = t("care.thanks");
  $("care-send").textContent = t("care.send_group");
  $("care-cancel").textContent = t("care.close");
  state.request = { incident: null, status: null };
  showCard("own", { focus: false });
  const fields = { type: "flag", category, severity, pack: `${pack}:${version}` };
  state.press = { id: newClientId(), kind: "flag", fields, inFlight: false };
  sendPress();
}

function careLater(sendIt) {
  const declined = state.care !== null; // (after "yes", these buttons only send or close)
  state.care = null;
  if (declined) state.careQuietUntil = Date.now() + CARE_QUIET_MS;
  closePrompt("care-prompt", "chat-input");
  if (declined) showCard("info", { focus: false }); // helplines, for whenever they are wanted
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
      onHelpPrompt(message);
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
    if (state.card === "own") $("help-state").textContent = errorText(error.code, error.message);
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
  // While reconnecting, the message box stays as it was: someone typing keeps their place
  // (disabling it would drop the focus) and what they send waits, marked "sending…", for the
  // resume. The microphone and the hand wait for the room.
  const canSay = joined || now === "reconnecting";
  $("chat-input").disabled = !canSay;
  $("chat-send").disabled = !canSay;
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
    // Said once, by the status line (a polite live region at the top of the page): a line in
    // the log too would be read out a second time. "Reconnected." marks the gap in the log.
    status.textContent = t("status.reconnecting");
    room.stopWalking();
    state.dropped = true;
  }
  if (joined) {
    sendUnsentAfterReload();
    status.textContent = "";
    if (state.dropped) notice(t(missedMayBeLost() ? "notice.reconnected_gap" : "notice.reconnected"));
    state.dropped = false;
  }
  if (joined || waiting || ENDED.has(now)) sendPress(); // a press still unanswered (or: not sent)
  if (now === "refused" && state.join && JOIN_REFUSALS.has(code)) {
    backToJoinForm(code);
    return;
  }
  if (ENDED.has(now)) {
    if (now === "elsewhere") {
      keep?.letGo(); // another tab of this one is the member now: what it keeps is its own
      tokens.clear(); // (the token was rotated there), so a reload here starts at the join page
    } else {
      keep?.forget(); // left, removed, ended: nothing of the room stays on the device
    }
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

/** After a drop, the server hands the page the room messages it missed, from the room's last
 *  256 (docs/protocol.md, "Session lifecycle"). Every room message takes a seq, so when no more
 *  than that many went by, nothing said can be missing; after a longer absence some may be. Called
 *  as the resume's welcome arrives, before the page applies it. */
const REPLAYED = 256;
function missedMayBeLost() {
  const now = connection.welcome?.room?.seq;
  return typeof now === "number" && now - room.lastSeq - 1 > REPLAYED;
}

// --- what the participant does ---------------------------------------------------------

async function send(event) {
  event.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text) return;
  if (careCheck(text)) return; // the detector fired: the person is asked first, the text waits
  await sendText(text);
}

/** What the person says shows at once; if the server has not acknowledged it within
 *  SENDING_SHOWN_MS (a slow or dropped connection: it goes again after the resume), the line
 *  says "sending…" until it has. Until then it is kept, sealed, with its client id, so that a
 *  reload sends it again (once) instead of losing it. */
const SENDING_SHOWN_MS = 1000;

function pendingLine({ sender, text, ts, zone }) {
  const line = room.log.message({ sender, text, seq: null, ts, zone, mine: true });
  line.classList.add("pending");
  return line;
}

function sendText(text) {
  $("chat-input").value = "";
  const zone = room.myPrivateCorner();
  const entry = remember({ sender: room.me, text, seq: null, ts: Date.now(), zone, mine: true, id: newClientId() });
  return deliver(entry, pendingLine(entry), SENDING_SHOWN_MS);
}

async function deliver(entry, line, sendingAfter) {
  const slow = setTimeout(() => line.append(span("tag sending", t("chat.sending"))), sendingAfter);
  try {
    const sent = await chat.say(entry.text, { zone: entry.zone, id: entry.id });
    clearTimeout(slow);
    if (exited) return;
    room.log.settle(line, sent);
    delete entry.pending;
    Object.assign(entry, { seq: sent.seq, ts: sent.ts, zone: sent.zone });
    saveConversation({ soon: true });
  } catch (err) {
    clearTimeout(slow);
    line.remove();
    if (exited) return;
    forgetEntry(entry);
    const input = $("chat-input");
    if (!input.value.includes(entry.text)) input.value = input.value ? `${entry.text} ${input.value}` : entry.text;
    notice(errorText(err.code ?? "not_sent", t("error.not_sent")), { warn: true }); // and it is in the box again
  }
}

/** Back in the room after a reload: what was not acknowledged before it goes again, in order. */
function sendUnsentAfterReload() {
  for (const [entry, line] of unsentAfterReload.splice(0)) deliver(entry, line, 0);
}

// --- wiring --------------------------------------------------------------------------------

let connection;
let chat;
let view;
let room; // RoomState: members, seats, positions, corners, the stick, the log
let voice = null;
let presence = null;
let keep = null; // keep.js: what a reload in this tab keeps
let tokens = null; // this tab's session token (protocol.js)
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
  tokens = new TokenStore(roomId);
  keep = await Keep.open(roomId);
  if (join) {
    tokens.clear(); // a fresh join from the join page wins over an old session
    await keep.forget();
  } else if (!tokens.get()) {
    await keep.forget();
    window.location.replace(`${app.dataset.joinUrl}?lang=${encodeURIComponent(pageLang)}`);
    return;
  }
  const seatTaken = (index, who) => {
    $("me-where").textContent = t("seat.taken", { n: index + 1, name: who.pseudonym });
  };
  view = new RoomView($("room-view"), $("room-svg"), { t, ...mapInput(() => room, seatTaken) });
  connection = new HearthConnection({ room: roomId, tokens, join });
  room = new RoomState({ connection, view, log: $("chat-log"), lang: pageLang });
  chat = new GroupChat(connection, roomId, { identityFor: (member) => keep.identity(member) });
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
  chat.addEventListener("session", live((event) => {
    const { session, fresh } = event.detail;
    if (fresh) keep.saveIdentity(session.memberId, session.identity); // a reload keeps it
  }));
  chat.addEventListener("roster", live((event) => {
    const { changes, ready, unannounced } = event.detail;
    state.ready = ready;
    for (const id of unannounced) notice(t("notice.joined", { name: nameOf(id) }));
    for (const id of changes.keysChanged) notice(t("notice.keys_changed", { name: nameOf(id) }), { warn: true });
    const renewed = state.epochShown !== null && changes.epoch > state.epochShown;
    if (renewed && changes.left.length > 0) notice(t("notice.keys_renewed"));
    state.epochShown = changes.epoch;
    renderMembers();
  }));
  chat.addEventListener("security", live((event) => {
    showSafety(event.detail, { me: room.me, you: t("chat.you"), nameOf });
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
  $("help-button").addEventListener("click", askForHelp);
  $("show-helplines").addEventListener("click", () => showCard(LIVE_REQUEST.has(state.request.status) ? "own" : "info"));
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
  if (!join) await restoreConversation();
  onQuickExit(() => {
    exited = true; // the page is about to go: nothing may touch it any more
    forgetEverything(); // the kept identity and conversation, every tab's
    chat?.stop();
    room.log.close();
    room.walker?.stop();
    voice?.stop(); // the microphone and the sound, released at once
    presence?.stop();
    connection.stop();
  });
  connection.start();
}

main();
