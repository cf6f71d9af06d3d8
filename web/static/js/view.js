// The room, drawn as SVG: floor, quiet corners, the hearth, seats, avatars with pseudonyms.
//
// Drawn in centimetres (the layout is in metres) so text and strokes have ordinary sizes.
// Positions come only from the server; between two updates an avatar glides from where it is
// shown to where the server put it (about one tick), or jumps there under
// prefers-reduced-motion. Seats are focusable buttons; the map itself takes clicks, taps,
// arrow keys / WASD and Enter, and reports them to its owner, which decides what to send.
//
// Everything drawn stays inside the room at every position and size: an avatar (with its
// rings, status badge and reaction) is drawn at least its own reach from the walls — the
// server lets a member stand at the very edge — and its name slides sideways, or moves above
// it near the bottom wall. Names are measured again whenever the map changes size (the text
// size differs on a phone). A seat's tap target is at least 44 × 44 CSS pixels however small
// the map is drawn (an invisible disc around it, never past half the way to the next seat).

const NS = "http://www.w3.org/2000/svg";
const CM = 100;
const GLIDE_MS = 130; // a little more than one server tick (100 ms)
const AVATAR = 42; // half the avatar's size, in centimetres
const REACH = AVATAR + 24; // the avatar's furthest drawing: its speaking ring and outline
const NAME_GAP = 44; // from the avatar's edge to the name's baseline (below), in centimetres
const EDGE = 6; // what is drawn keeps this far from the walls
const SEAT_R = 30;
const TAP_PX = 22; // half the smallest tap target, in CSS pixels
const KEYS = {
  ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0], ArrowRight: [1, 0],
  w: [0, -1], s: [0, 1], a: [-1, 0], d: [1, 0], W: [0, -1], S: [0, 1], A: [-1, 0], D: [1, 0],
};

function svg(name, attrs = {}, parent = null) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (parent) parent.append(node);
  return node;
}

const cm = (metres) => Math.round(metres * CM * 10) / 10;

export class RoomView {
  #avatars = new Map(); // id -> {node, use, label, badge, reaction, shown, from, to, t0}
  #seats = [];
  #seatHits = [];
  #held = new Map(); // key -> [dx, dy]
  #frame = null;
  #settle = null;

  /**
   * @param {HTMLElement} container the focusable element around the SVG
   * @param {SVGSVGElement} root
   * @param {object} handlers {onWalk(point), onSeat(index), onKeys(dx, dy), onEnter(), t(key, vars)}
   */
  constructor(container, root, handlers) {
    this.container = container;
    this.root = root;
    this.handlers = handlers;
    this.me = null;
    this.layout = null;
    this.reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");
    root.addEventListener("click", (event) => this.#click(event));
    container.addEventListener("keydown", (event) => this.#keydown(event));
    container.addEventListener("keyup", (event) => this.#keyup(event));
    container.addEventListener("focusout", (event) => {
      if (!container.contains(event.relatedTarget)) this.#releaseKeys();
    });
    // A new size (a phone turned, the window resized, the map shown again): text sizes and
    // the scale change, so names are measured again and the seats' tap targets resized.
    new ResizeObserver(() => this.#resized()).observe(root);
  }

  setLayout(layout) {
    this.layout = layout;
    const root = this.root;
    root.replaceChildren();
    root.setAttribute("viewBox", `0 0 ${cm(layout.width)} ${cm(layout.height)}`);
    const scenery = svg("g", { "aria-hidden": "true" }, root);
    svg("rect", { class: "floor", x: 0, y: 0, width: cm(layout.width), height: cm(layout.height) }, scenery);
    for (const corner of layout.corners) {
      const g = svg("g", { class: "corner", "data-corner": corner.id }, scenery);
      svg("rect", { x: cm(corner.x), y: cm(corner.y), width: cm(corner.width), height: cm(corner.height) }, g);
      const label = svg("text", { x: cm(corner.x + corner.width / 2), y: cm(corner.y) + 38 }, g);
      label.textContent = corner.title;
      this.#keepInside(label, cm(corner.x + corner.width / 2), cm(layout.width));
    }
    const h = layout.hearth;
    svg("circle", { class: "hearth-base", cx: cm(h.x), cy: cm(h.y), r: cm(h.radius) }, scenery);
    svg("circle", { class: "hearth-fire", cx: cm(h.x), cy: cm(h.y), r: cm(h.radius * 0.72) }, scenery);
    const seats = svg("g", { class: "seats" }, root);
    this.#seatHits = [];
    this.#seats = layout.seats.map(([x, y], index) => {
      const g = svg("g", { class: "seat", tabindex: 0, role: "button", "data-seat": index }, seats);
      this.#seatHits.push(svg("circle", { class: "seat-hit", cx: cm(x), cy: cm(y), r: SEAT_R }, g));
      svg("circle", { class: "seat-mark", cx: cm(x), cy: cm(y), r: SEAT_R }, g);
      const number = svg("text", { x: cm(x), y: cm(y), "aria-hidden": "true" }, g);
      number.textContent = String(index + 1);
      return g;
    });
    this.target = svg("circle", { class: "walk-target", r: 22, cx: -100, cy: -100, "aria-hidden": "true" }, root);
    this.avatarLayer = svg("g", { class: "avatars", "aria-hidden": "true" }, root);
    this.#avatars.clear();
    this.setSeats(new Map());
    this.#resized();
  }

  setMe(id) {
    this.me = id;
  }

  /** Create or refresh one member's avatar (not its position: see place()). */
  upsert(member) {
    let avatar = this.#avatars.get(member.id);
    if (!avatar) {
      const node = svg("g", { class: "avatar", "data-member": member.id }, this.avatarLayer);
      svg("circle", { class: "speak-ring", r: AVATAR + 18 }, node); // shown while they speak
      const ring = svg("circle", { class: "me-ring", r: AVATAR + 10 }, node);
      const body = svg("g", { class: "body" }, node); // what a nod moves
      svg("circle", { class: "halo", r: AVATAR + 3 }, body); // a light edge: clear on any floor
      const use = svg("use", { x: -AVATAR, y: -AVATAR, width: 2 * AVATAR, height: 2 * AVATAR }, body);
      const badge = svg("use", { class: "status-badge", x: AVATAR * 0.45, y: -AVATAR * 1.05,
        width: AVATAR * 0.75, height: AVATAR * 0.75 }, node);
      const label = svg("text", { y: AVATAR + NAME_GAP }, node);
      const reaction = svg("g", { class: "reaction", hidden: "" }, node);
      svg("circle", { class: "bubble", r: 30 }, reaction);
      const glyph = svg("use", { x: -22, y: -22, width: 44, height: 44 }, reaction);
      const at = { x: member.x, y: member.y };
      avatar = { node, ring, use, badge, label, reaction, glyph, shown: { ...at }, from: { ...at },
        to: { ...at }, t0: 0 };
      this.#avatars.set(member.id, avatar);
      this.#draw(avatar);
    }
    avatar.ring.toggleAttribute("hidden", member.id !== this.me);
    avatar.use.setAttribute("href", `#shape-${member.avatar.shape}`);
    avatar.use.setAttribute("fill", member.avatar.color);
    // Away (the connection dropped or the page is closing, or the member said so) or only
    // listening: drawn on the avatar; the members list says it in words.
    const status = member.away ? "away" : member.status ?? "here";
    avatar.node.dataset.status = status;
    if (status === "here") avatar.badge.removeAttribute("href");
    else avatar.badge.setAttribute("href", `#status-${status}`);
    if (avatar.label.textContent !== member.pseudonym) {
      avatar.label.textContent = member.pseudonym;
      avatar.labelBox = null; // measured again now that the name changed
      this.#draw(avatar);
    }
    avatar.node.dataset.seat = member.seat === null ? "" : String(member.seat);
    this.place(member.id, member.x, member.y);
    if (member.id === this.me) this.avatarLayer.append(avatar.node); // drawn last: on top
  }

  remove(id) {
    const avatar = this.#avatars.get(id);
    if (avatar) avatar.node.remove();
    this.#avatars.delete(id);
  }

  /** The server put `id` at (x, y): glide there. */
  place(id, x, y) {
    const avatar = this.#avatars.get(id);
    if (!avatar) return;
    avatar.node.dataset.x = String(x);
    avatar.node.dataset.y = String(y);
    if (avatar.to.x === x && avatar.to.y === y) return;
    avatar.from = { ...avatar.shown };
    avatar.to = { x, y };
    avatar.t0 = performance.now();
    if (this.reducedMotion.matches) {
      avatar.shown = { x, y };
      this.#draw(avatar);
      return;
    }
    if (this.#frame === null) this.#frame = requestAnimationFrame((now) => this.#animate(now));
    // Frames can be throttled (a hidden tab, a busy phone): a timer makes sure every glide
    // ends where the server said, whether or not the animation got to run.
    clearTimeout(this.#settle);
    this.#settle = setTimeout(() => this.#finish(), GLIDE_MS + 50);
  }

  #finish() {
    for (const avatar of this.#avatars.values()) {
      if (performance.now() - avatar.t0 < GLIDE_MS) continue;
      if (avatar.shown.x !== avatar.to.x || avatar.shown.y !== avatar.to.y) {
        avatar.shown = { ...avatar.to };
        this.#draw(avatar);
      }
    }
  }

  /** The speaking ring on a member's avatar (voice: audio.js, voice.js). */
  setSpeaking(id, on) {
    this.#avatars.get(id)?.node.classList.toggle("speaking", on);
  }

  /** A reaction (presence.js) on a member's avatar, until clearReaction; a nod nods. */
  showReaction(id, kind) {
    const avatar = this.#avatars.get(id);
    if (!avatar) return;
    avatar.glyph.setAttribute("href", `#react-${kind}`);
    avatar.reaction.dataset.reaction = kind;
    avatar.reaction.removeAttribute("hidden");
    avatar.node.classList.toggle("nodding", kind === "nod");
    this.#draw(avatar);
  }

  clearReaction(id) {
    const avatar = this.#avatars.get(id);
    if (!avatar) return;
    avatar.reaction.setAttribute("hidden", "");
    delete avatar.reaction.dataset.reaction;
    avatar.node.classList.remove("nodding");
  }

  /** Seats: which are taken, by whom (for their accessible names). */
  setSeats(takenBy) {
    const t = this.handlers.t;
    this.#seats.forEach((seat, index) => {
      const who = takenBy.get(index);
      seat.classList.toggle("taken", Boolean(who));
      let label;
      if (!who) label = t("seat.free", { n: index + 1 });
      else if (who.id === this.me) label = t("seat.yours", { n: index + 1 });
      else label = t("seat.taken", { n: index + 1, name: who.pseudonym });
      seat.setAttribute("aria-label", label);
    });
  }

  /** Quiet corners a facilitator made private ({corner: [member ids]}) are drawn closed. */
  setPrivate(corners) {
    for (const g of this.root.querySelectorAll(".corner")) {
      g.classList.toggle("private", Object.hasOwn(corners, g.dataset.corner));
    }
  }

  showTarget(point) {
    if (!this.target) return;
    this.target.setAttribute("cx", point ? cm(point.x) : -100);
    this.target.setAttribute("cy", point ? cm(point.y) : -100);
  }

  // --- internals -----------------------------------------------------------------

  /** Slide a centred label sideways so that it stays inside the room. */
  #keepInside(label, centre, width) {
    const half = (label.getComputedTextLength() || 0) / 2;
    const x = Math.min(Math.max(centre, EDGE + half), width - EDGE - half);
    label.setAttribute("x", String(Math.round(x)));
  }

  /** Where an avatar is drawn: the server's position, moved in from the walls far enough
   *  for all of it to show (the server lets a member stand at the very edge). */
  #drawnAt(avatar) {
    const width = cm(this.layout.width);
    const height = cm(this.layout.height);
    const inside = (v, max) => Math.min(Math.max(v, REACH + EDGE), max - REACH - EDGE);
    return { x: inside(cm(avatar.shown.x), width), y: inside(cm(avatar.shown.y), height) };
  }

  #draw(avatar) {
    const { x, y } = this.#drawnAt(avatar);
    avatar.node.setAttribute("transform", `translate(${x} ${y})`);
    const width = cm(this.layout.width);
    const height = cm(this.layout.height);
    // The name: below the avatar, or above it near the bottom wall; near a side wall it
    // slides sideways instead of being cut off. Measured once shown (0 while hidden).
    if (!avatar.labelBox && avatar.label.textContent) {
      const box = avatar.label.getBBox();
      const at = Number(avatar.label.getAttribute("y"));
      if (box.width > 0) avatar.labelBox = { half: box.width / 2, descent: box.y + box.height - at };
    }
    const box = avatar.labelBox ?? { half: 0, descent: 0 };
    let baseline = AVATAR + NAME_GAP;
    if (y + baseline + box.descent > height - EDGE) baseline = -REACH - box.descent - 4;
    avatar.label.setAttribute("y", String(Math.round(baseline)));
    let shift = 0;
    if (x - box.half < EDGE) shift = EDGE - (x - box.half);
    else if (x + box.half > width - EDGE) shift = width - EDGE - (x + box.half);
    avatar.label.setAttribute("x", String(Math.round(shift)));
    // A reaction sits beside the head, on the side with room for it.
    const side = x + AVATAR + 60 + EDGE > width ? -1 : 1;
    avatar.reaction.setAttribute("transform", `translate(${side * (AVATAR + 30)} ${-AVATAR * 0.55})`);
  }

  #resized() {
    if (!this.layout) return;
    const box = this.root.getBoundingClientRect();
    if (box.width <= 0) return; // hidden (the waiting room): measured when shown again
    const perCm = box.width / cm(this.layout.width); // CSS pixels per centimetre
    const seats = this.layout.seats;
    let gap = Infinity;
    for (let i = 0; i < seats.length && seats.length > 1; i += 1) {
      const [x, y] = seats[i];
      const [nx, ny] = seats[(i + 1) % seats.length];
      gap = Math.min(gap, cm(Math.hypot(nx - x, ny - y)));
    }
    const r = Math.max(SEAT_R, Math.min(TAP_PX / perCm + 1, gap / 2 - 1));
    for (const hit of this.#seatHits) hit.setAttribute("r", String(Math.round(r)));
    for (const avatar of this.#avatars.values()) {
      avatar.labelBox = null; // the text size may have changed with the width
      this.#draw(avatar);
    }
  }

  #animate(now) {
    this.#frame = null;
    let moving = false;
    for (const avatar of this.#avatars.values()) {
      const k = Math.min(1, (now - avatar.t0) / GLIDE_MS);
      if (avatar.shown.x === avatar.to.x && avatar.shown.y === avatar.to.y) continue;
      avatar.shown = {
        x: avatar.from.x + (avatar.to.x - avatar.from.x) * Math.max(0, k),
        y: avatar.from.y + (avatar.to.y - avatar.from.y) * Math.max(0, k),
      };
      this.#draw(avatar);
      if (k < 1) moving = true;
    }
    if (moving) this.#frame = requestAnimationFrame((t) => this.#animate(t));
  }

  #point(event) {
    const matrix = this.root.getScreenCTM();
    if (!matrix) return null;
    const p = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
    return { x: p.x / CM, y: p.y / CM };
  }

  #click(event) {
    if (!this.layout) return;
    const seat = event.target instanceof Element ? event.target.closest(".seat") : null;
    if (seat) {
      this.handlers.onSeat(Number(seat.dataset.seat));
      return;
    }
    const point = this.#point(event);
    if (point) this.handlers.onWalk(point);
  }

  #keydown(event) {
    if (!this.layout || event.altKey || event.ctrlKey || event.metaKey) return;
    const seat = event.target instanceof Element ? event.target.closest(".seat") : null;
    if (event.key === "Enter" || (seat && event.key === " ")) {
      event.preventDefault();
      if (seat) this.handlers.onSeat(Number(seat.dataset.seat));
      else this.handlers.onEnter();
      return;
    }
    const dir = KEYS[event.key];
    if (!dir) return;
    event.preventDefault(); // arrows would scroll the page
    this.#held.set(event.key.toLowerCase(), dir);
    this.#steer();
  }

  #keyup(event) {
    if (this.#held.delete(event.key.toLowerCase())) this.#steer();
  }

  #releaseKeys() {
    if (this.#held.size === 0) return;
    this.#held.clear();
    this.#steer();
  }

  #steer() {
    let dx = 0;
    let dy = 0;
    for (const [x, y] of this.#held.values()) {
      dx += x;
      dy += y;
    }
    this.handlers.onKeys(Math.sign(dx), Math.sign(dy));
  }
}
