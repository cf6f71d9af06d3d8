// Walking: turns "go there" (a click, a tap, held arrow keys, a seat) into `move` intents.
//
// The server is the truth. It clips each move to walk speed, refuses targets outside the room
// or in the hearth, and lets a member sit only within 1.5 m of a seat; positions come back in
// `positions`. The walker sends at most one intent per INTENT_MS, each one short step from the
// last intent (or from the server's position when the two have drifted apart), steering
// round the hearth rather than into it. It never moves an avatar on screen itself.

export const WALK_SPEED = 2.8; // m/s: a little under the server's 3 m/s, so steps are not clipped
export const INTENT_MS = 100; // at most 10 intents a second
export const SEAT_REACH = 1.2; // ask to sit once the server has us this close (it allows 1.5)
const STEP = (WALK_SPEED * INTENT_MS) / 1000;
const HEARTH_MARGIN = 0.35; // keep this far from the fire
const WALL = 0.15;
const DRIFT = 1.0; // metres between our last intent and the server's position before we re-anchor
const SIT_PATIENCE_MS = 3000;

export function distance(a, b) {
  return Math.hypot(a.x - b.x, a.y - b.y);
}

function round(p) {
  return { x: Math.round(p.x * 100) / 100, y: Math.round(p.y * 100) / 100 };
}

/** Distance from point c to the segment a-b. */
function segmentDistance(a, b, c) {
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const len2 = dx * dx + dy * dy;
  const t = len2 === 0 ? 0 : Math.max(0, Math.min(1, ((c.x - a.x) * dx + (c.y - a.y) * dy) / len2));
  return Math.hypot(a.x + t * dx - c.x, a.y + t * dy - c.y);
}

/** The nearest walkable point: inside the walls, outside the hearth and its margin. */
export function walkable(layout, p) {
  const h = layout.hearth;
  const keep = h.radius + HEARTH_MARGIN;
  let { x, y } = p;
  const d = Math.hypot(x - h.x, y - h.y);
  if (d < keep) {
    const ux = d > 1e-6 ? (x - h.x) / d : 0;
    const uy = d > 1e-6 ? (y - h.y) / d : 1;
    x = h.x + ux * (keep + 0.01);
    y = h.y + uy * (keep + 0.01);
  }
  x = Math.min(layout.width - WALL, Math.max(WALL, x));
  y = Math.min(layout.height - WALL, Math.max(WALL, y));
  return { x, y };
}

/** One step from `from` toward `goal`, around the hearth when the straight line crosses it. */
export function stepToward(layout, from, goal, step = STEP) {
  const h = layout.hearth;
  const keep = h.radius + HEARTH_MARGIN;
  const dx = goal.x - from.x;
  const dy = goal.y - from.y;
  const d = Math.hypot(dx, dy);
  if (d <= step) return walkable(layout, goal);
  let next = { x: from.x + (dx / d) * step, y: from.y + (dy / d) * step };
  const fromCentre = Math.hypot(from.x - h.x, from.y - h.y);
  if (segmentDistance(from, goal, h) < keep && fromCentre >= keep - 0.05) {
    // Walk along the tangent, on the goal's side, until the way is clear.
    let tx = -(from.y - h.y) / fromCentre;
    let ty = (from.x - h.x) / fromCentre;
    if (tx * dx + ty * dy < 0) {
      tx = -tx;
      ty = -ty;
    }
    next = { x: from.x + tx * step, y: from.y + ty * step };
  }
  return walkable(layout, next);
}

export class Walker {
  #timer = null;
  #intent = null;
  #refusals = 0;
  #arrivedAt = null;

  /**
   * @param {object} layout welcome.room.layout (metres, y downwards)
   * @param {(message: object) => boolean} send sends one client message
   */
  constructor(layout, send, now = () => performance.now()) {
    this.layout = layout;
    this.send = send;
    this.now = now;
    this.server = null; // our position as the server last told it
    this.target = null;
    this.seat = null; // seat index to sit on when close enough
    this.direction = null; // {x, y} unit vector while keys are held
  }

  /** The server's word on where we are. */
  update(position) {
    this.server = { x: position.x, y: position.y };
  }

  walkTo(point, seat = null) {
    this.target = walkable(this.layout, point);
    this.seat = seat;
    this.direction = null;
    this.#arrivedAt = null;
    this.#start();
  }

  /** Held keys: dx, dy in {-1, 0, 1}; (0, 0) stops. */
  setDirection(dx, dy) {
    if (dx === 0 && dy === 0) {
      this.direction = null;
      return;
    }
    const len = Math.hypot(dx, dy);
    this.direction = { x: dx / len, y: dy / len };
    this.target = null;
    this.seat = null;
    this.#start();
  }

  stop() {
    this.target = null;
    this.seat = null;
    this.direction = null;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** The server refused or clipped a move: start again from where it says we are. */
  refused() {
    this.#intent = null;
    this.#refusals += 1;
    if (this.#refusals >= 3) this.stop();
  }

  get walking() {
    return this.#timer !== null;
  }

  #start() {
    this.#refusals = 0;
    if (this.#timer === null) {
      this.#tick();
      if (this.target !== null || this.direction !== null || this.seat !== null) {
        this.#timer = setInterval(() => this.#tick(), INTENT_MS);
      }
    }
  }

  #base() {
    if (this.#intent !== null && this.server !== null && distance(this.#intent, this.server) <= DRIFT) {
      return this.#intent;
    }
    this.#intent = this.server;
    return this.server;
  }

  #tick() {
    if (this.server === null) return;
    const base = this.#base();
    let next = null;
    if (this.direction !== null) {
      next = walkable(this.layout, {
        x: base.x + this.direction.x * STEP,
        y: base.y + this.direction.y * STEP,
      });
    } else if (this.target !== null) {
      if (distance(base, this.target) < 0.02) {
        this.target = null;
        this.#arrivedAt = this.now();
      } else {
        next = stepToward(this.layout, base, this.target);
      }
    }
    if (this.seat !== null) {
      const seat = this.layout.seats[this.seat];
      const at = { x: seat[0], y: seat[1] };
      if (distance(this.server, at) <= SEAT_REACH) {
        this.send({ type: "sit", seat: this.seat });
        this.stop();
        return;
      }
      if (this.target === null && this.#arrivedAt !== null && this.now() - this.#arrivedAt > SIT_PATIENCE_MS) {
        this.stop(); // the server never brought us close enough: give up rather than spin
        return;
      }
    }
    if (next !== null) {
      next = round(next);
      if (distance(next, base) > 0.005 && this.send({ type: "move", x: next.x, y: next.y })) {
        this.#intent = next;
      }
    }
    if (this.direction === null && this.target === null && this.seat === null) {
      if (this.#timer !== null) clearInterval(this.#timer);
      this.#timer = null;
    }
  }
}
