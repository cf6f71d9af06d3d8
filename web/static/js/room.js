// The room page: connection, encrypted chat, the map, the members list, notices.
//
// State lives in memory only. The join page hands its choices over in the URL fragment
// (never sent to the server; stripped from the address bar and history at once); the
// helpline country stays in the fragment so a reload keeps it; the session token is the
// one thing kept in sessionStorage. docs/client.md describes the whole client.

import { onQuickExit } from "./common.js";
import { GroupChat } from "./groupchat.js";
import { errorText, loadStrings, t } from "./i18n.js";
import { distance, SEAT_REACH, Walker } from "./movement.js";
import { ENDED, HearthConnection, TokenStore } from "./protocol.js";
import { RoomView } from "./view.js";

const LOG_LIMIT = 500;
const $ = (id) => document.getElementById(id);
const app = $("app");
const roomId = app.dataset.room;
const pageLang = app.dataset.lang;

const state = {
  members: new Map(), // id -> member as the server describes it (x, y, zone kept current)
  me: null,
  layout: null,
  lastSeq: 0,
  ready: new Set(), // members who hold our sender key
  epochShown: null,
  dropped: false,
  country: "",
};
let walker = null;

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
  writeFragment();
  return join;
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

// --- the log: messages and notices, in server order ---------------------------------------

function logEntry(className, seq) {
  const li = document.createElement("p");
  li.className = className;
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
  const li = logEntry(warn ? "notice warn" : "notice", seq);
  li.textContent = text;
}

const timeFormat = new Intl.DateTimeFormat(pageLang, { hour: "2-digit", minute: "2-digit" });

function showMessage({ sender, text, seq, ts, mine }) {
  if (exited) return;
  const li = logEntry(mine ? "msg mine" : "msg", seq);
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = mine ? t("chat.you") : nameOf(sender);
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  const when = document.createElement("time");
  when.className = "when";
  when.dateTime = new Date(ts).toISOString();
  when.textContent = timeFormat.format(new Date(ts));
  li.append(who, body, when);
}

function nameOf(id) {
  return state.members.get(id)?.pseudonym ?? t("someone");
}

// --- members, seats, where I am --------------------------------------------------------

function whereText(member) {
  if (member.seat !== null && member.seat !== undefined) return t("where.seat", { n: member.seat + 1 });
  const corner = state.layout?.corners.find((c) => c.id === member.zone);
  if (corner) return corner.title;
  return t("where.standing");
}

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
  const order = (m) => (m.id === state.me ? 0 : m.role === "participant" ? 2 : 1);
  const members = [...state.members.values()].sort(
    (a, b) => order(a) - order(b) || a.pseudonym.localeCompare(b.pseudonym, pageLang),
  );
  list.replaceChildren(
    ...members.map((m) => {
      const li = document.createElement("li");
      li.className = "member";
      li.dataset.member = m.id;
      const ready = m.id === state.me || state.ready.has(m.id);
      li.dataset.e2ee = ready ? "ready" : "waiting";
      li.append(chip(m), span("name", m.pseudonym));
      if (m.role !== "participant") li.append(span("badge", t(`role.${m.role}`)));
      if (m.id === state.me) li.append(span("badge you", t("badge.you")));
      li.append(span("where", whereText(m)));
      if (!ready) li.append(span("keys", t("keys.waiting")));
      return li;
    }),
  );
  $("member-count").textContent = `(${state.members.size})`;
  const taken = new Map();
  for (const m of state.members.values()) if (m.seat !== null && m.seat !== undefined) taken.set(m.seat, m);
  view.setSeats(taken);
  renderMe();
}

function renderMe() {
  const me = state.members.get(state.me);
  if (!me) return;
  const seated = me.seat !== null && me.seat !== undefined;
  let text;
  if (seated) text = t("me.seated", { n: me.seat + 1 });
  else if (me.zone && me.zone !== "room") text = t("me.corner", { place: whereText(me) });
  else text = t("me.standing");
  if ($("me-where").textContent !== text) $("me-where").textContent = text;
  $("stand").hidden = !seated;
}

function setMember(member) {
  state.members.set(member.id, { ...member });
  view.upsert(member);
  if (member.id === state.me && walker) walker.update(member);
}

// --- what the server says ----------------------------------------------------------------

function onWelcome(welcome) {
  const room = welcome.room;
  state.me = welcome.member;
  app.dataset.me = welcome.member;
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
  state.epochShown = null;
  renderMembers();
  if (!welcome.resumed) notice(t("notice.welcome", { name: nameOf(welcome.member) }));
}

function onServerMessage(message) {
  if (typeof message.seq === "number") state.lastSeq = Math.max(state.lastSeq, message.seq);
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
      state.ready.delete(message.member);
      view.remove(message.member);
      renderMembers();
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
        const zoneChanged = member.zone !== zone;
        Object.assign(member, { x, y, zone });
        view.place(id, x, y);
        if (id === state.me && walker) walker.update(member);
        if (zoneChanged) renderMembers();
      }
      break;
    case "hidden": {
      // A facilitator hid a message for everyone: its text goes, a note stays in its place.
      const hidden = $("chat-log").querySelector(`.msg[data-key="${Number(message.target)}"]`);
      if (hidden) {
        hidden.className = "notice";
        hidden.textContent = t("chat.hidden");
      }
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
  if (typeof error.ref === "string" && error.ref.startsWith("say-")) return; // the sender handles it
  if (["position_invalid", "rate_limited"].includes(error.code)) {
    walker?.refused();
    return;
  }
  if (["seat_taken", "seat_too_far", "seat_not_found"].includes(error.code)) {
    walker?.stop();
    view.showTarget(null);
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
  if (now === "connecting") status.textContent = t("status.connecting");
  if (now === "waiting") status.textContent = t("status.waiting");
  if (now === "reconnecting") {
    status.textContent = t("status.reconnecting");
    walker?.stop();
    view.showTarget(null);
    if (!state.dropped) notice(t("notice.dropped"), { warn: true });
    state.dropped = true;
  }
  if (joined) {
    status.textContent = "";
    if (state.dropped) notice(t("notice.reconnected"));
    state.dropped = false;
  }
  if (ENDED.has(now)) {
    walker?.stop();
    status.textContent = "";
    $("room-layout").hidden = true;
    $("ended").hidden = false;
    const reason = now === "refused" ? errorText(code) : t(`ended.${now}`);
    $("ended-reason").textContent = reason;
    $("ended-title").focus();
  }
}

// --- what the participant does ---------------------------------------------------------

function seatTakenBy(index) {
  for (const m of state.members.values()) if (m.seat === index) return m;
  return null;
}

function sitOn(index) {
  if (!walker || !connection.open) return;
  const who = seatTakenBy(index);
  if (who && who.id !== state.me) {
    $("me-where").textContent = t("seat.taken", { n: index + 1, name: who.pseudonym });
    return;
  }
  if (who) return; // already ours
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

async function send(event) {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  try {
    const sent = await chat.say(text);
    showMessage({ sender: state.me, text, seq: sent.seq, ts: sent.ts, mine: true });
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
let exited = false;

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
  view = new RoomView($("room-view"), $("room-svg"), {
    t,
    onWalk: (point) => {
      if (!walker || !connection.open) return;
      walker.walkTo(point);
      view.showTarget(walker.target);
    },
    onSeat: sitOn,
    onKeys: (dx, dy) => {
      if (!walker || !connection.open) return;
      walker.setDirection(dx, dy);
      view.showTarget(null);
    },
    onEnter: () => {
      const seat = nearestFreeSeat();
      if (seat !== null) sitOn(seat);
    },
  });
  connection = new HearthConnection({ room: roomId, tokens, join });
  chat = new GroupChat(connection, roomId);
  const live = (fn) => (event) => {
    if (!exited) fn(event);
  };
  connection.addEventListener("state", live((event) => onState(event.detail)));
  connection.addEventListener("message", live((event) => onServerMessage(event.detail)));
  chat.addEventListener("message", live((event) => showMessage({ ...event.detail, mine: false })));
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
      dt.textContent = id === state.me ? t("chat.you") : nameOf(id);
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
  });
  onQuickExit(() => {
    exited = true; // the page is about to go: nothing may touch it any more
    walker?.stop();
    connection.stop();
  });
  connection.start();
}

main();
