// On-device crisis phrase detector: the browser twin of moderation/detector.py.
//
// Runs on decrypted text in the participant's and the facilitators' own
// clients; the server never sees that text. A detection says only what kind
// of risk and how strong — {category, severity, rule_ids, pack, version} —
// never the text or the matched words, and toWire() strips it further to what
// the server may receive. No library, no network, no logging: this module
// never prints or stores what it reads.
//
// Packs arrive as JSON from moderation/crisis_config.py:pack_to_json (served
// at /crisis/rules/<language>.json and cached at join), already compiled from
// the pattern language of docs/crisis.md. loadPack() re-checks every limit,
// because a cached or tampered pack must not be able to hang the page:
// matching is one pass over the words, with work per word bounded by the pack.
//
// Keep this file and moderation/detector.py the same algorithm:
// tests/crisis/cases.json runs through both.

export const FORMAT = 1;
// Categories, in the order that breaks ties when picking the one reported.
export const CATEGORIES = ["intent", "means_method", "harm_from_others", "farewell", "timeframe"];
// A timeframe ("tonight") says when, not whether: it only counts next to another category.
const MODIFIERS = new Set(["timeframe"]);
export const SEVERITIES = ["low", "medium", "high"];
const SCOPES = ["sentence", "message"];

const MAX_SLOTS = 8;
const MAX_GAP = 5;
const MAX_ALTERNATIVES = 32;
const MAX_NEGATION_WINDOW = 6;
const MAX_RULES = 500;
const MAX_PATTERNS = 3000;

const APOSTROPHES = new Set(["'", "\u2019", "\u2018", "\u02bc", "`", "\u00b4"]);
const SENTENCE_BREAKS = new Set([".", "!", "?", ";", "\u2026", "\n", "\r", "\u00a1", "\u00bf"]);
const CLAUSE_BREAKS = new Set([",", ":", "\u2013", "\u2014"]);
const WORD_CHAR = /^[\p{L}\p{N}\p{M}]$/u;
const SYMBOL = /^\p{So}$/u;
const NONSPACING = /^\p{Mn}$/u;

/** A pack that cannot be used; `message` names where and what was expected. */
export class PackError extends Error {
  constructor(message) {
    super(message);
    this.name = "PackError";
  }
}

const isDigit = (c) => c >= "0" && c <= "9" && c.length === 1;

/** Lowercase, strip accents and apostrophes: "Vergüenza" and "verguenza" agree. */
export function normalize(text) {
  const decomposed = text.toLowerCase().replaceAll("\u00b4", "").normalize("NFKD");
  let out = "";
  for (const c of decomposed) {
    if (!APOSTROPHES.has(c) && !NONSPACING.test(c)) out += c;
  }
  return out;
}

/** Words, each symbol (emoji) on its own, with clause and sentence numbers. */
export function tokenize(text) {
  const chars = Array.from(normalize(text));
  const tokens = [];
  let word = "";
  let clause = 0;
  let sentence = 0;
  const last = chars.length - 1;
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (WORD_CHAR.test(c)) {
      word += c;
      continue;
    }
    if ((c === "," || c === ".") && i > 0 && i < last && isDigit(chars[i - 1]) && isDigit(chars[i + 1])) {
      continue; // 1,000 and 2.5 stay one number
    }
    if (word) {
      tokens.push({ text: word, clause, sentence });
      word = "";
    }
    if (SYMBOL.test(c)) {
      tokens.push({ text: c, clause, sentence });
    } else if (SENTENCE_BREAKS.has(c)) {
      sentence += 1;
      clause += 1;
    } else if (CLAUSE_BREAKS.has(c)) {
      clause += 1;
    }
  }
  if (word) tokens.push({ text: word, clause, sentence });
  return tokens;
}

// ---- loading ----------------------------------------------------------------

function fail(path, expected, got) {
  const shown = typeof got === "string" ? JSON.stringify(got.slice(0, 40)) : Array.isArray(got) ? "a list" : typeof got;
  throw new PackError(`${path}: expected ${expected}, got ${shown}`);
}

const isInt = (v, lo, hi) => Number.isInteger(v) && v >= lo && v <= hi;

function strings(value, path, what, maxItems, minLength = 1) {
  if (!Array.isArray(value) || value.length > maxItems) fail(path, `a list of at most ${maxItems} ${what}`, value);
  value.forEach((s, i) => {
    if (typeof s !== "string" || s.length < minLength || s.length > 300) fail(`${path}[${i}]`, what, s);
  });
  return value;
}

function checkPatterns(value, path, maxItems) {
  if (!Array.isArray(value) || value.length === 0 || value.length > maxItems) {
    fail(path, `a non-empty list of at most ${maxItems} compiled patterns`, value);
  }
  return value.map((slots, i) => {
    const at = `${path}[${i}]`;
    if (!Array.isArray(slots) || slots.length === 0 || slots.length > MAX_SLOTS) {
      fail(at, `a list of 1 to ${MAX_SLOTS} slots`, slots);
    }
    return slots.map((slot, j) => {
      const where = `${at}[${j}]`;
      if (!slot || typeof slot !== "object") fail(where, "a slot object", slot);
      if (!isInt(slot.gap, 0, j === 0 ? 0 : MAX_GAP)) fail(`${where}.gap`, `a whole number from 0 to ${j === 0 ? 0 : MAX_GAP}`, slot.gap);
      const words = strings(slot.words, `${where}.words`, "words", MAX_ALTERNATIVES);
      const prefixes = strings(slot.prefixes, `${where}.prefixes`, "prefixes", MAX_ALTERNATIVES);
      const numbers = strings(slot.numbers, `${where}.numbers`, "number units", MAX_ALTERNATIVES, 0);
      if (words.length + prefixes.length + numbers.length === 0) fail(where, "at least one alternative", slot);
      return { gap: slot.gap, words, prefixes, numbers };
    });
  });
}

/**
 * Check and compile a pack from pack_to_json (an object, or its JSON text).
 * Throws PackError naming the first problem; a pack that loads is safe to run.
 */
export function loadPack(json) {
  let data = json;
  if (typeof json === "string") {
    try {
      data = JSON.parse(json);
    } catch (err) {
      throw new PackError(`pack: expected JSON text (${err.message})`);
    }
  }
  if (!data || typeof data !== "object" || Array.isArray(data)) fail("pack", "an object", data);
  if (data.format !== FORMAT) fail("format", `${FORMAT} (this page and the server disagree: reload)`, String(data.format));
  for (const key of ["id", "language", "version"]) {
    if (typeof data[key] !== "string" || !data[key] || data[key].length > 64) fail(key, "a non-empty string", data[key]);
  }
  const negation = data.negation ?? {};
  const cues = new Set(strings(negation.cues, "negation.cues", "words", 200));
  if (!isInt(negation.window, 0, MAX_NEGATION_WINDOW)) fail("negation.window", `a whole number from 0 to ${MAX_NEGATION_WINDOW}`, negation.window);

  const sev = data.severity ?? {};
  for (const key of ["low", "medium", "high", "category_cap"]) {
    if (!isInt(sev[key], 1, 1000)) fail(`severity.${key}`, "a whole number from 1 to 1000", sev[key]);
  }
  if (!(sev.low <= sev.medium && sev.medium <= sev.high)) fail("severity", "low <= medium <= high", "");
  if (!Array.isArray(sev.combos) || sev.combos.length > 50) fail("severity.combos", "a list", sev.combos);
  const combos = sev.combos.map((combo, i) => {
    const categories = strings(combo?.categories, `severity.combos[${i}].categories`, "categories", 5);
    categories.forEach((c, j) => CATEGORIES.includes(c) || fail(`severity.combos[${i}].categories[${j}]`, "a category", c));
    if (!SEVERITIES.includes(combo.severity)) fail(`severity.combos[${i}].severity`, SEVERITIES.join(", "), combo.severity);
    return { categories, severity: combo.severity };
  });

  let total = 0;
  const exceptions = new Map();
  const rawExceptions = data.exceptions ?? {};
  if (typeof rawExceptions !== "object" || Array.isArray(rawExceptions)) fail("exceptions", "an object", rawExceptions);
  for (const [name, set] of Object.entries(rawExceptions)) {
    if (!set || !SCOPES.includes(set.scope)) fail(`exceptions.${name}.scope`, SCOPES.join(" or "), set?.scope);
    const patterns = checkPatterns(set.patterns, `exceptions.${name}.patterns`, 50);
    total += patterns.length;
    exceptions.set(name, { scope: set.scope, patterns });
  }

  if (!Array.isArray(data.rules) || data.rules.length === 0 || data.rules.length > MAX_RULES) {
    fail("rules", `a non-empty list of at most ${MAX_RULES} rules`, data.rules);
  }
  const rules = data.rules.map((rule, i) => {
    const at = `rules[${i}]`;
    if (!rule || typeof rule !== "object") fail(at, "a rule object", rule);
    if (typeof rule.id !== "string" || !rule.id || rule.id.length > 80) fail(`${at}.id`, "a rule id", rule.id);
    if (!CATEGORIES.includes(rule.category)) fail(`${at}.category`, CATEGORIES.join(", "), rule.category);
    if (!isInt(rule.weight, 1, 100)) fail(`${at}.weight`, "a whole number from 1 to 100", rule.weight);
    if (typeof rule.negatable !== "boolean") fail(`${at}.negatable`, "true or false", rule.negatable);
    const unless = strings(rule.unless, `${at}.unless`, "exception set names", 50);
    unless.forEach((name, j) => exceptions.has(name) || fail(`${at}.unless[${j}]`, "an exception set of this pack", name));
    const patterns = checkPatterns(rule.patterns, `${at}.patterns`, 30);
    total += patterns.length;
    return { id: rule.id, category: rule.category, weight: rule.weight, negatable: rule.negatable, unless, patterns };
  });
  if (total > MAX_PATTERNS) fail("rules", `at most ${MAX_PATTERNS} patterns in a pack`, String(total));

  const pack = {
    id: data.id, language: data.language, version: data.version,
    negationCues: cues, negationWindow: negation.window,
    severity: { low: sev.low, medium: sev.medium, high: sev.high, categoryCap: sev.category_cap, combos },
    exceptions, rules,
  };
  pack.index = buildIndex(pack);
  return Object.freeze(pack);
}

function buildIndex(pack) {
  const matchers = [];
  const words = new Map();
  const prefixes = new Map();
  const numbers = new Map();
  const push = (map, key, value) => {
    const list = map.get(key);
    if (list) list.push(value);
    else map.set(key, [value]);
  };
  const add = (slots) => {
    const mi = matchers.length;
    matchers.push(slots);
    slots.forEach((slot, si) => {
      for (const w of slot.words) push(words, w, [mi, si]);
      for (const p of slot.prefixes) push(prefixes, p, [mi, si]);
      for (const n of slot.numbers) push(numbers, n, [mi, si]);
    });
    return mi;
  };
  const ruleMatchers = pack.rules.map((rule) => rule.patterns.map(add));
  const exceptionMatchers = new Map();
  for (const [name, set] of pack.exceptions) exceptionMatchers.set(name, set.patterns.map(add));
  // Prefix lengths in code points, as Python counts them.
  const prefixLengths = [...new Set([...prefixes.keys()].map((p) => Array.from(p).length))].sort((a, b) => a - b);
  return { matchers, words, prefixes, numbers, prefixLengths, ruleMatchers, exceptionMatchers };
}

// ---- matching ---------------------------------------------------------------

/** Every [start, end] token span where each matcher completes; see _scan in detector.py. */
function scan(index, tokens) {
  const { matchers } = index;
  const lastEnd = matchers.map((slots) => new Array(slots.length).fill(-1));
  const lastStart = matchers.map((slots) => new Array(slots.length).fill(-1));
  const found = matchers.map(() => []);
  for (let p = 0; p < tokens.length; p++) {
    const token = tokens[p];
    const text = token.text;
    const candidates = [];
    const take = (list) => {
      if (list) for (const c of list) candidates.push(c);
    };
    take(index.words.get(text));
    if (index.prefixLengths.length) {
      const cps = Array.from(text);
      const bmp = cps.length === text.length;
      for (const length of index.prefixLengths) {
        if (length > cps.length) break;
        take(index.prefixes.get(bmp ? text.slice(0, length) : cps.slice(0, length).join("")));
      }
    }
    let digits = 0;
    while (digits < text.length && isDigit(text[digits])) digits += 1;
    if (digits) take(index.numbers.get(text.slice(digits)));
    if (!candidates.length) continue;
    // Later slots first, so one token never fills two neighbouring slots.
    candidates.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
    let previous = null;
    for (const c of candidates) {
      if (previous && previous[0] === c[0] && previous[1] === c[1]) continue;
      previous = c;
      const [mi, si] = c;
      const slots = matchers[mi];
      let start;
      if (si === 0) {
        start = p;
      } else {
        const prev = lastEnd[mi][si - 1];
        if (prev < 0 || p - prev - 1 > slots[si].gap || tokens[prev].clause !== token.clause) continue;
        start = lastStart[mi][si - 1];
      }
      lastEnd[mi][si] = p;
      lastStart[mi][si] = start;
      if (si === slots.length - 1) found[mi].push([start, p]);
    }
  }
  return found;
}

function negated(pack, tokens, start) {
  const clause = tokens[start].clause;
  for (let i = Math.max(0, start - pack.negationWindow); i < start; i++) {
    if (tokens[i].clause === clause && pack.negationCues.has(tokens[i].text)) return true;
  }
  return false;
}

/**
 * The strongest risk in `text` under `pack` (from loadPack), or null:
 * {category, severity, rule_ids, pack, version}. Never returns or keeps the text.
 */
export function detect(pack, text) {
  if (typeof text !== "string" || !text || !pack?.index) return null;
  const tokens = tokenize(text);
  if (!tokens.length) return null;
  const { index } = pack;
  const found = scan(index, tokens);

  const exceptedSentences = new Map();
  const exceptedMessage = new Set();
  for (const [name, matcherIds] of index.exceptionMatchers) {
    const sentences = new Set();
    for (const mi of matcherIds) for (const [start] of found[mi]) sentences.add(tokens[start].sentence);
    if (sentences.size) {
      exceptedSentences.set(name, sentences);
      if (pack.exceptions.get(name).scope === "message") exceptedMessage.add(name);
    }
  }

  const fired = [];
  pack.rules.forEach((rule, ri) => {
    if (rule.unless.some((name) => exceptedMessage.has(name))) return;
    const hit = index.ruleMatchers[ri].some((mi) => found[mi].some(([start]) => {
      if (rule.negatable && negated(pack, tokens, start)) return false;
      const sentence = tokens[start].sentence;
      return !rule.unless.some((name) => exceptedSentences.get(name)?.has(sentence));
    }));
    if (hit) fired.push(rule);
  });
  return judge(pack, fired);
}

function judge(pack, fired) {
  const policy = pack.severity;
  const weights = new Map();
  for (const rule of fired) {
    weights.set(rule.category, Math.min(policy.categoryCap, (weights.get(rule.category) ?? 0) + rule.weight));
  }
  const main = CATEGORIES.filter((c) => weights.has(c) && !MODIFIERS.has(c));
  if (!main.length) return null;
  let score = 0;
  for (const w of weights.values()) score += w;
  let rank = score >= policy.high ? 2 : score >= policy.medium ? 1 : score >= policy.low ? 0 : -1;
  if (score >= policy.medium) {
    for (const combo of policy.combos) {
      if (combo.categories.every((c) => weights.has(c))) rank = Math.max(rank, SEVERITIES.indexOf(combo.severity));
    }
  }
  if (rank < 0) return null;
  // Highest weight wins; ties go to the earlier category in CATEGORIES.
  let category = main[0];
  for (const c of main) if (weights.get(c) > weights.get(category)) category = c;
  return {
    category,
    severity: SEVERITIES[rank],
    rule_ids: fired.map((rule) => rule.id),
    pack: pack.id,
    version: pack.version,
  };
}

/** All the server may receive of a detection: category, severity, pack and version. */
export function toWire(detection) {
  if (!detection) return null;
  const { category, severity, pack, version } = detection;
  return { category, severity, pack, version };
}
