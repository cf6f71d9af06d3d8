// The room, drawn as SVG: floor, quiet corners, the hearth, seats, avatars with pseudonyms.
//
// Drawn in centimetres (the layout is in metres) so text and strokes have ordinary sizes.
// Positions come only from the server; between two updates an avatar glides from where it is
// shown to where the server put it (about one tick), or jumps there under
// prefers-reduced-motion. Seats are focusable buttons; the map itself takes clicks, taps,
// arrow keys / WASD and Enter, and reports them to its owner, which decides what to send.

const NS = "http://www.w3.org/2000/svg";
const CM = 100;
const GLIDE_MS = 130; // a little more than one server tick (100 ms)
const AVATAR = 30; // half the avatar's size, in centimetres
const SEAT_R = 30;
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
  #avatars = new Map(); // id -> {node, use, label, shown, from, to, t0}
  #seats = [];
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
    this.#seats = layout.seats.map(([x, y], index) => {
      const g = svg("g", { class: "seat", tabindex: 0, role: "button", "data-seat": index }, seats);
      svg("circle", { cx: cm(x), cy: cm(y), r: SEAT_R }, g);
      const number = svg("text", { x: cm(x), y: cm(y), "aria-hidden": "true" }, g);
      number.textContent = String(index + 1);
      return g;
    });
    this.target = svg("circle", { class: "walk-target", r: 22, cx: -100, cy: -100, "aria-hidden": "true" }, root);
    this.avatarLayer = svg("g", { class: "avatars", "aria-hidden": "true" }, root);
    this.#avatars.clear();
    this.setSeats(new Map());
  }

  setMe(id) {
    this.me = id;
  }

  /** Create or refresh one member's avatar (not its position: see place()). */
  upsert(member) {
    let avatar = this.#avatars.get(member.id);
    if (!avatar) {
      const node = svg("g", { class: "avatar", "data-member": member.id }, this.avatarLayer);
      svg("circle", { class: "speak-ring", r: AVATAR + 20 }, node); // shown while they speak
      const ring = svg("circle", { class: "me-ring", r: AVATAR + 12 }, node);
      const use = svg("use", { x: -AVATAR, y: -AVATAR, width: 2 * AVATAR, height: 2 * AVATAR }, node);
      const label = svg("text", { y: AVATAR + 40 }, node);
      const at = { x: member.x, y: member.y };
      avatar = { node, ring, use, label, shown: { ...at }, from: { ...at }, to: { ...at }, t0: 0 };
      this.#avatars.set(member.id, avatar);
      this.#draw(avatar);
    }
    avatar.ring.toggleAttribute("hidden", member.id !== this.me);
    avatar.use.setAttribute("href", `#shape-${member.avatar.shape}`);
    avatar.use.setAttribute("fill", member.avatar.color);
    if (avatar.label.textContent !== member.pseudonym) {
      avatar.label.textContent = member.pseudonym;
      avatar.labelWidth = null; // measured again now that the name changed
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
    const x = Math.min(Math.max(centre, 6 + half), width - 6 - half);
    label.setAttribute("x", String(Math.round(x)));
  }

  #draw(avatar) {
    const x = cm(avatar.shown.x);
    avatar.node.setAttribute("transform", `translate(${x} ${cm(avatar.shown.y)})`);
    // Keep the name inside the room: near a wall it slides sideways instead of being cut off.
    if (!avatar.labelWidth) avatar.labelWidth = avatar.label.getComputedTextLength() || 0;
    const half = avatar.labelWidth / 2;
    const width = cm(this.layout.width);
    let shift = 0;
    if (x - half < 6) shift = 6 - (x - half);
    else if (x + half > width - 6) shift = width - 6 - (x + half);
    avatar.label.setAttribute("x", String(Math.round(shift)));
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
