// The room as a page holds it: members, seats, positions, private corners, the talking stick
// and the settings, kept from the server's room messages, with the map and the log in step.
//
// The participant's page (room.js) and the facilitator console (console.js) each hold one
// RoomState for the room they are in and hand it every server message, in order, through
// `apply`. It keeps the state, the map (`RoomView`: avatars, seats, private corners), the
// walker (created with the first layout) and the notices every page shows (someone came or
// went, a message hidden for everyone), and returns what changed, so that each page draws
// only its own presentation: the members list, the voice controls, the moderation panel.
// The server is the truth: nothing here guesses a position or a seat. docs/client.md.

import { t } from "./i18n.js";
import { distance, SEAT_REACH, Walker } from "./movement.js";

const LOG_LIMIT = 500;
const LEFT_NOTICE = { left: "notice.left", timeout: "notice.timeout", removed: "notice.removed" };

function seated(member) {
  return member.seat !== null && member.seat !== undefined;
}

/** The layout with each quiet corner's title in `lang` (the config may name it per language). */
export function localLayout(layout, lang) {
  return { ...layout, corners: layout.corners.map((c) => ({ ...c, title: c.titles?.[lang] ?? c.title })) };
}

/** The log: messages and notices in server order (by seq; an unsequenced line goes after the last). */
export class RoomLog {
  constructor(element, room, lang) {
    this.element = element;
    this.room = room;
    this.closed = false; // after quick exit nothing may touch the page
    this.timeFormat = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit" });
  }

  entry(className, seq) {
    const li = document.createElement("p");
    li.className = className;
    this.#place(li, typeof seq === "number" ? seq : this.room.lastSeq + 0.5);
    return li;
  }

  #place(li, key) {
    li.dataset.key = String(key);
    const log = this.element;
    let before = null;
    for (let node = log.lastElementChild; node; node = node.previousElementSibling) {
      if (node !== li && Number(node.dataset.key) <= key) break;
      if (node !== li) before = node;
    }
    if (li.parentNode !== log || li.nextElementSibling !== before) log.insertBefore(li, before);
    while (log.childElementCount > LOG_LIMIT) log.firstElementChild.remove();
    if (before === null) this.#toLatest();
  }

  // Scrolled to the latest line once a frame, not once a line: reading scrollHeight lays the
  // whole log out, which once per message froze the page for seconds when hundreds arrived
  // at once (a long conversation handed over after a reconnection).
  #scrolling = false;
  #toLatest() {
    if (this.#scrolling) return;
    this.#scrolling = true;
    requestAnimationFrame(() => {
      this.#scrolling = false;
      this.element.scrollTop = this.element.scrollHeight;
    });
  }

  /** One of our lines (`message` with no seq yet), acknowledged: the server's seq and time, and
   *  its place by seq — moved only if lines came before the acknowledgement (a corner's lines
   *  stay where they arrived). */
  settle(li, { seq, ts, zone = null }) {
    li.classList.remove("pending");
    li.querySelector(".sending")?.remove();
    const when = li.querySelector(".when");
    const shown = this.timeFormat.format(new Date(ts));
    if (when.textContent !== shown) when.textContent = shown; // the log is live: a new text is read out
    when.dateTime = new Date(ts).toISOString();
    if (!zone && li.isConnected) this.#place(li, seq);
  }

  notice(text, { seq = null, warn = false } = {}) {
    if (this.closed) return;
    this.entry(warn ? "notice warn" : "notice", seq).textContent = text;
  }

  /** A message line: who, the text, when, "private" in a corner; the page adds its own tools.
   *  `name` (a message kept across a reload) is the sender's name as it was shown then. */
  message({ sender, text, seq, ts, zone = null, mine, name = null }) {
    // A private corner's messages have their own sequence: they go in arrival order.
    const li = this.entry(mine ? "msg mine" : "msg", zone ? null : seq);
    li.dataset.sender = sender;
    if (zone) li.classList.add("private");
    const when = span("when", this.timeFormat.format(new Date(ts)), "time");
    when.dateTime = new Date(ts).toISOString();
    li.append(span("who", mine ? t("chat.you") : (name ?? this.room.nameOf(sender))), span("text", text), when);
    if (zone) li.append(span("tag", t("chat.private")));
    return li;
  }

  /** A facilitator hid a message for everyone: its text goes, a note stays in its place. */
  hide(target) {
    const line = this.element.querySelector(`.msg[data-key="${Number(target)}"]`);
    if (line) {
      line.className = "notice";
      line.textContent = t("chat.hidden");
    }
  }

  close() {
    this.closed = true;
  }
}

function span(className, text, tag = "span") {
  const node = document.createElement(tag);
  node.className = className;
  node.textContent = text;
  return node;
}

export class RoomState {
  /**
   * `connection`: the room's HearthConnection (the walker sends through it); `view`: the
   * RoomView to keep in step; `log`: the chat log element; `lang`: the page's language.
   */
  constructor({ connection, view, log, lang }) {
    this.connection = connection;
    this.view = view;
    this.log = new RoomLog(log, this, lang);
    this.lang = lang;
    this.members = new Map(); // id -> member as the server describes it (x, y, zone kept current)
    this.me = null;
    this.layout = null;
    this.walker = null;
    this.lastSeq = 0; // the room's; a private corner's messages count their own
    this.private = {}; // quiet corners a facilitator made private: corner -> [member ids]
    this.stick = { on: false, holder: null, hands: [] };
    this.settings = { locked: false, lobby: false, capacity: 0, slow_mode: 0 };
  }

  /**
   * Take one server message. Returns null for messages that are not about the room's state;
   * otherwise what the page may need to draw again: `members` (the list or the seats),
   * `mine` (our own member was replaced: muted, hand…), `left` (the id of who went),
   * `cornerBefore` (the private corner we stood in before corners changed), `settingsBefore`.
   */
  apply(message) {
    if (typeof message.seq === "number" && !message.zone) this.lastSeq = Math.max(this.lastSeq, message.seq);
    switch (message.type) {
      case "welcome":
        return this.#welcome(message);
      case "member_joined":
        this.#setMember(message.member);
        this.log.notice(t("notice.joined", { name: message.member.pseudonym }), { seq: message.seq });
        return { members: true, mine: message.member.id === this.me };
      case "member_left": {
        const name = this.nameOf(message.member);
        this.members.delete(message.member);
        this.view.remove(message.member);
        this.log.notice(t(LEFT_NOTICE[message.reason] ?? "notice.left", { name }), { seq: message.seq });
        return { members: true, left: message.member };
      }
      case "member_updated":
        this.#setMember(message.member);
        return { members: true, mine: message.member.id === this.me };
      case "member_resumed": // back after a dropped connection or a reload: not a leave, not a join
        this.#setMember(message.member);
        this.log.notice(t("notice.back", { name: message.member.pseudonym }), { seq: message.seq });
        return { members: true };
      case "positions": {
        let zones = false;
        for (const [id, x, y, zone] of message.moves) {
          const member = this.members.get(id);
          if (!member) continue;
          if (member.zone !== zone) zones = true;
          Object.assign(member, { x, y, zone });
          this.view.place(id, x, y);
          if (id === this.me && this.walker) this.walker.update(member);
        }
        return { members: zones };
      }
      case "hidden":
        this.log.hide(message.target);
        return {};
      case "corners":
        return { cornerBefore: this.#setPrivate(message.private) };
      case "stick":
        this.stick = { on: message.on, holder: message.holder, hands: message.hands };
        return {};
      case "room_settings": {
        const settingsBefore = this.settings;
        this.settings = { locked: message.locked, lobby: message.lobby, capacity: message.capacity,
          slow_mode: message.slow_mode };
        return { settingsBefore };
      }
      default:
        return null;
    }
  }

  #welcome(welcome) {
    const room = welcome.room;
    this.me = welcome.member;
    this.view.setMe(welcome.member);
    if (this.layout === null) {
      this.layout = localLayout(room.layout, this.lang);
      this.view.setLayout(this.layout);
      this.walker = new Walker(this.layout, (message) => this.connection.send(message));
    }
    for (const id of this.members.keys()) if (!room.members.some((m) => m.id === id)) this.view.remove(id);
    this.members.clear();
    for (const member of room.members) this.#setMember(member);
    this.lastSeq = Math.max(this.lastSeq, room.seq);
    this.settings = { locked: room.locked, lobby: room.lobby, capacity: room.capacity, slow_mode: room.slow_mode ?? 0 };
    this.stick = room.stick ?? this.stick;
    return { members: true, mine: true, cornerBefore: this.#setPrivate(room.private) };
  }

  #setMember(member) {
    this.members.set(member.id, { ...member });
    this.view.upsert(member);
    if (member.id === this.me && this.walker) this.walker.update(member);
  }

  #setPrivate(corners) {
    const before = this.myPrivateCorner();
    this.private = corners ?? {};
    this.view.setPrivate(this.private);
    return before;
  }

  // --- what the pages ask ---------------------------------------------------------------

  nameOf(id) {
    return this.members.get(id)?.pseudonym ?? t("someone");
  }

  myself() {
    return this.members.get(this.me) ?? null;
  }

  whereText(member) {
    if (seated(member)) return t("where.seat", { n: member.seat + 1 });
    const corner = this.layout?.corners.find((c) => c.id === member.zone);
    if (corner) return corner.title;
    return t("where.standing");
  }

  /** "You are sitting on seat 4." and the like, or null before we are in the room. */
  myPlaceText() {
    const me = this.myself();
    if (!me) return null;
    if (seated(me)) return t("me.seated", { n: me.seat + 1 });
    if (me.zone && me.zone !== "room") return t("me.corner", { place: this.whereText(me) });
    return t("me.standing");
  }

  /** seat index -> the member on it. */
  takenSeats() {
    const taken = new Map();
    for (const m of this.members.values()) if (seated(m)) taken.set(m.seat, m);
    return taken;
  }

  seatTakenBy(index) {
    for (const m of this.members.values()) if (m.seat === index) return m;
    return null;
  }

  nearestFreeSeat() {
    const me = this.myself();
    if (!me || !this.layout) return null;
    let best = null;
    this.layout.seats.forEach(([x, y], index) => {
      if (this.seatTakenBy(index)) return;
      const d = distance(me, { x, y });
      if (best === null || d < best.d) best = { index, d };
    });
    return best?.index ?? null;
  }

  /** The private corner `id` is in, if any (whether or not they stand in it yet). */
  privateCornerOf(id) {
    return Object.entries(this.private).find(([, ids]) => ids.includes(id))?.[0] ?? null;
  }

  /** The private corner we stand in, if a facilitator made it private with us. */
  myPrivateCorner() {
    const me = this.myself();
    if (!me || !me.zone || me.zone === "room") return null;
    return (this.private[me.zone] ?? []).includes(this.me) ? me.zone : null;
  }

  /** A quiet corner nobody has made private. */
  freeCorner() {
    return this.layout?.corners.find((c) => !Object.hasOwn(this.private, c.id))?.id ?? null;
  }

  // --- walking and sitting: the map's input, while the connection is open ---------------

  canWalk() {
    return Boolean(this.walker && this.connection.open);
  }

  walkTo(point) {
    this.walker.walkTo(point);
    this.view.showTarget(this.walker.target);
  }

  walkKeys(dx, dy) {
    this.walker.setDirection(dx, dy);
    this.view.showTarget(null);
  }

  /** Sit at once when near enough, else walk there first; returns who holds the seat, if anyone. */
  sitOn(index) {
    const who = this.seatTakenBy(index);
    if (who) return who;
    const [x, y] = this.layout.seats[index];
    const me = this.myself();
    if (me && distance(me, { x, y }) <= SEAT_REACH) {
      this.walker.stop();
      this.connection.send({ type: "sit", seat: index });
    } else {
      this.walker.walkTo({ x, y }, index);
      this.view.showTarget({ x, y });
    }
    return null;
  }

  /** Stop walking and clear the target shown on the map. */
  stopWalking() {
    this.walker?.stop();
    this.view.showTarget(null);
  }
}

/**
 * RoomView's input handlers for the room `current()` returns (null while there is none):
 * click or tap to walk, arrow keys, a seat, Enter for the nearest free seat. `onTaken(index,
 * member)` is told when someone else holds the seat asked for.
 */
export function mapInput(current, onTaken = null) {
  const walking = () => {
    const room = current();
    return room?.canWalk() ? room : null;
  };
  const onSeat = (index) => {
    const room = walking();
    if (!room) return;
    const who = room.sitOn(index);
    if (who && who.id !== room.me) onTaken?.(index, who);
  };
  return {
    onWalk: (point) => walking()?.walkTo(point),
    onSeat,
    onKeys: (dx, dy) => walking()?.walkKeys(dx, dy),
    onEnter: () => {
      const seat = current()?.nearestFreeSeat() ?? null;
      if (seat !== null) onSeat(seat);
    },
  };
}
