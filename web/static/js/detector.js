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
// A pack may carry its trained model (moderation/detector_train.py): integer weights per
// hashed feature, read with integer arithmetic only, so that this file and detector.py give
// the same scores to the unit. loadPack() checks it as strictly, down to its CRC-32.
//
// Keep this file and moderation/detector.py the same algorithm:
// tests/crisis/cases.json and the evaluation corpus (tests/crisis/corpus/) run through both.

export const FORMAT = 6;
// The served form before a pattern went out as one line ("want|wish ~2 die|dead*") rather than
// a list of slots [gap, words, prefixes, numbers]: a pack kept from then still loads.
const LIST_FORMAT = 5;
// Categories, in the order that breaks ties when picking the one reported.
export const CATEGORIES = ["intent", "means_method", "harm_from_others", "farewell", "timeframe"];
// A timeframe ("tonight") says when, not whether: it only counts next to another category.
const MODIFIERS = new Set(["timeframe"]);
export const SEVERITIES = ["low", "medium", "high"];
const SCOPES = ["clause", "sentence", "message"];

const MAX_SLOTS = 8;
const MAX_GAP = 5;
const MAX_ALTERNATIVES = 32;
const MAX_NEGATION_WINDOW = 8;
const MAX_RULES = 500;
const MAX_PATTERNS = 3000;
const MAX_PATTERNS_PER_RULE = 60;
const MAX_ALIASES = 2000;
const MAX_ALIAS_WORDS = 4;
const MAX_TYPOS = 500;
const MIN_TYPO_WORD = 5;
const MIN_TYPO_TOKEN = 4;
const MAX_TYPO_TOKEN = 32;
const CENSOR = "*"; // between two letters it stands for a hidden one ("s*icide")
const SLOT_CODES = 16; // more than MAX_SLOTS: a candidate is matcher * 16 + (15 - slot)
const SURROGATE = /[\uD800-\uDFFF]/;
const NONE = Object.freeze([]);

// The model (see detector.py, "the model").
const MODEL_FORMAT = 1;
export const MODEL_HEADS = ["risk", "high", "intent", "means_method", "farewell"];
const MODEL_CATEGORIES = ["intent", "means_method", "farewell"];
const MODEL_LEVELS = ["fire", "high"];
const MODEL_RISK_ID = "model.risk";
const MODEL_HIGH_ID = "model.high";
const MIN_MODEL_BUCKETS = 1 << 8;
const MAX_MODEL_BUCKETS = 1 << 16;
const MAX_CHAR_NGRAM = 6;
const MAX_DAMPING = 1000;
const MAX_MODEL_INT = 1 << 15; // keeps every product in reaches() exact in a double
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

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

/** Words, each symbol (emoji) on its own, with clause and sentence numbers; "s*icide" stays one word. */
export function tokenize(text) {
  const chars = Array.from(normalize(text));
  const tokens = [];
  let word = "";
  let clause = 0;
  let sentence = 0;
  const last = chars.length - 1;
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (WORD_CHAR.test(c) || (c === CENSOR && word && i < last && WORD_CHAR.test(chars[i + 1]))) {
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

// A compiled pattern's line ("want|wish ~2 die|dead* #mg", pack_to_json) as the list of slots
// [gap, words, prefixes, numbers] that checkPatterns() checks: a gap "~N" goes to the slot after
// it, an alternative "stem*" is a prefix, "#unit" a number, anything else a word.
function patternSlots(line, at) {
  if (line.length > 4000) fail(at, "a compiled pattern of at most 4000 characters", line);
  const slots = [];
  let gap = null;
  for (const part of line.split(" ")) {
    if (part.startsWith("~")) {
      if (gap !== null || !/^~[0-9]{1,2}$/.test(part)) fail(at, "a gap ~N before a word", line);
      gap = Number(part.slice(1));
      continue;
    }
    const words = [];
    const prefixes = [];
    const numbers = [];
    for (const alt of part.split("|")) {
      if (alt.startsWith("#")) numbers.push(alt.slice(1));
      else if (alt.endsWith("*")) prefixes.push(alt.slice(0, -1));
      else words.push(alt);
    }
    slots.push([gap ?? 0, words, prefixes, numbers]);
    gap = null;
  }
  if (gap !== null) fail(at, "a word after the last gap", line);
  return slots;
}

function checkPatterns(value, path, maxItems) {
  if (!Array.isArray(value) || value.length === 0 || value.length > maxItems) {
    fail(path, `a non-empty list of at most ${maxItems} compiled patterns`, value);
  }
  return value.map((raw, i) => {
    const at = `${path}[${i}]`;
    const slots = typeof raw === "string" ? patternSlots(raw, at) : raw;
    if (!Array.isArray(slots) || slots.length === 0 || slots.length > MAX_SLOTS) {
      fail(at, `a list of 1 to ${MAX_SLOTS} slots`, slots);
    }
    return slots.map((slot, j) => {
      const where = `${at}[${j}]`;
      if (!Array.isArray(slot) || slot.length !== 4) fail(where, "a slot [gap, words, prefixes, numbers]", slot);
      const [gap, rawWords, rawPrefixes, rawNumbers] = slot;
      if (!isInt(gap, 0, j === 0 ? 0 : MAX_GAP)) fail(`${where}.gap`, `a whole number from 0 to ${j === 0 ? 0 : MAX_GAP}`, gap);
      const words = strings(rawWords, `${where}.words`, "words", MAX_ALTERNATIVES);
      const prefixes = strings(rawPrefixes, `${where}.prefixes`, "prefixes", MAX_ALTERNATIVES);
      const numbers = strings(rawNumbers, `${where}.numbers`, "number units", MAX_ALTERNATIVES, 0);
      if (words.length + prefixes.length + numbers.length === 0) fail(where, "at least one alternative", slot);
      return { gap, words, prefixes, numbers };
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
  if (data.format !== FORMAT && data.format !== LIST_FORMAT) fail("format", `${FORMAT} (this page and the server disagree: reload)`, String(data.format));
  for (const key of ["id", "language", "version"]) {
    if (typeof data[key] !== "string" || !data[key] || data[key].length > 64) fail(key, "a non-empty string", data[key]);
  }
  const negation = data.negation ?? {};
  const cues = new Set(strings(negation.cues, "negation.cues", "words", 200));
  if (!isInt(negation.window, 0, MAX_NEGATION_WINDOW)) fail("negation.window", `a whole number from 0 to ${MAX_NEGATION_WINDOW}`, negation.window);
  const breaks = new Set(strings(negation.breaks, "negation.breaks", "words", 200));
  const negationUnless = negation.unless?.length ? checkPatterns(negation.unless, "negation.unless", 100) : [];

  const rawAliases = data.aliases;
  if (!rawAliases || typeof rawAliases !== "object" || Array.isArray(rawAliases)) fail("aliases", "an object", rawAliases);
  const aliases = new Map();
  for (const [variant, words] of Object.entries(rawAliases)) {
    if (!variant || variant.length > MAX_TYPO_TOKEN) fail(`aliases.${variant}`, "a variant word", variant);
    const reading = strings(words, `aliases.${variant}`, "words", MAX_ALIAS_WORDS);
    if (!reading.length) fail(`aliases.${variant}`, `1 to ${MAX_ALIAS_WORDS} words`, words);
    aliases.set(variant, reading);
  }
  if (aliases.size > MAX_ALIASES) fail("aliases", `at most ${MAX_ALIASES} variants`, String(aliases.size));
  const typos = data.typos ?? {};
  const typoWords = strings(typos.words, "typos.words", "words", MAX_TYPOS);
  typoWords.forEach((w, i) => {
    const n = Array.from(w).length;
    if (n < MIN_TYPO_WORD || n > MAX_TYPO_TOKEN) fail(`typos.words[${i}]`, `a word of ${MIN_TYPO_WORD} to ${MAX_TYPO_TOKEN} letters`, w);
  });
  const notTypos = strings(typos.not, "typos.not", "words", MAX_TYPOS);

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

  let total = negationUnless.length;
  const exceptions = new Map();
  const rawExceptions = data.exceptions ?? {};
  if (typeof rawExceptions !== "object" || Array.isArray(rawExceptions)) fail("exceptions", "an object", rawExceptions);
  for (const [name, set] of Object.entries(rawExceptions)) {
    if (!set || !SCOPES.includes(set.scope)) fail(`exceptions.${name}.scope`, SCOPES.join(", "), set?.scope);
    const patterns = checkPatterns(set.patterns, `exceptions.${name}.patterns`, 50);
    const quietsModel = set.quiets_model ?? false;
    if (typeof quietsModel !== "boolean") fail(`exceptions.${name}.quiets_model`, "true or false", quietsModel);
    total += patterns.length;
    exceptions.set(name, { scope: set.scope, patterns, quietsModel });
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
    // A key left out has its default (pack_to_json leaves defaults out).
    const negatable = rule.negatable ?? true;
    if (typeof negatable !== "boolean") fail(`${at}.negatable`, "true or false", rule.negatable);
    const unless = strings(rule.unless ?? [], `${at}.unless`, "exception set names", 50);
    unless.forEach((name, j) => exceptions.has(name) || fail(`${at}.unless[${j}]`, "an exception set of this pack", name));
    const requires = strings(rule.requires ?? [], `${at}.requires`, "categories or rule ids", 50);
    const minSeverity = rule.min_severity ?? null;
    if (minSeverity !== null && !SEVERITIES.includes(minSeverity)) fail(`${at}.min_severity`, `null or ${SEVERITIES.join(", ")}`, minSeverity);
    const patterns = checkPatterns(rule.patterns, `${at}.patterns`, MAX_PATTERNS_PER_RULE);
    total += patterns.length;
    return { id: rule.id, category: rule.category, weight: rule.weight, negatable, unless, requires, minSeverity, patterns };
  });
  if (total > MAX_PATTERNS) fail("rules", `at most ${MAX_PATTERNS} patterns in a pack`, String(total));
  const ids = new Set(rules.map((rule) => rule.id));
  rules.forEach((rule, i) => rule.requires.forEach((name, j) => {
    if (!CATEGORIES.includes(name) && !ids.has(name)) fail(`rules[${i}].requires[${j}]`, "a category or a rule id of this pack", name);
  }));

  const pack = {
    id: data.id, language: data.language, version: data.version,
    negationCues: cues, negationWindow: negation.window, negationBreaks: breaks, negationUnless,
    aliases, typoWords, notTypos,
    severity: { low: sev.low, medium: sev.medium, high: sev.high, categoryCap: sev.category_cap, combos },
    exceptions, rules,
    model: data.model === null || data.model === undefined ? null : loadModel(data.model, data),
  };
  pack.index = buildIndex(pack);
  return Object.freeze(pack);
}

// ---- the model --------------------------------------------------------------

let crcTable = null;

/** CRC-32 (the zlib one) of bytes. */
function crc32(bytes) {
  if (!crcTable) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  let crc = -1;
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

const isModelInt = (v) => isInt(v, -MAX_MODEL_INT, MAX_MODEL_INT);

/** Check and compile a pack's model (model_to_json in crisis_config.py); throws PackError. */
function loadModel(model, pack) {
  if (typeof model !== "object" || Array.isArray(model)) fail("model", "an object or null", model);
  if (model.format !== MODEL_FORMAT) fail("model.format", `${MODEL_FORMAT} (this page and the server disagree: reload)`, String(model.format));
  for (const [key, want] of [["language", pack.language], ["pack", pack.id], ["pack_version", pack.version]]) {
    if (model[key] !== want) fail(`model.${key}`, `${JSON.stringify(want)}, its pack's`, model[key]);
  }
  strings(model.trained_on, "model.trained_on", "corpus file names", 50);
  const buckets = model.buckets;
  if (!isInt(buckets, MIN_MODEL_BUCKETS, MAX_MODEL_BUCKETS) || buckets & (buckets - 1)) {
    fail("model.buckets", `a power of two from ${MIN_MODEL_BUCKETS} to ${MAX_MODEL_BUCKETS}`, String(buckets));
  }
  const ngrams = model.char_ngrams;
  if (!Array.isArray(ngrams) || ngrams.length !== 2 || !isInt(ngrams[0], 1, MAX_CHAR_NGRAM) || !isInt(ngrams[1], ngrams[0], MAX_CHAR_NGRAM)) {
    fail("model.char_ngrams", `[shortest, longest], 1 <= shortest <= longest <= ${MAX_CHAR_NGRAM}`, ngrams);
  }
  if (!isInt(model.damping, 0, MAX_DAMPING)) fail("model.damping", `a whole number from 0 to ${MAX_DAMPING}`, String(model.damping));
  if (!Array.isArray(model.heads) || model.heads.join() !== MODEL_HEADS.join()) fail("model.heads", MODEL_HEADS.join(", "), model.heads);
  if (!Array.isArray(model.bias) || model.bias.length !== MODEL_HEADS.length || !model.bias.every(isModelInt)) {
    fail("model.bias", `${MODEL_HEADS.length} whole numbers from ${-MAX_MODEL_INT} to ${MAX_MODEL_INT}`, model.bias);
  }
  const levels = model.levels;
  if (!levels || typeof levels !== "object" || Object.keys(levels).sort().join() !== [...MODEL_LEVELS].sort().join()) {
    fail("model.levels", MODEL_LEVELS.join(", "), levels);
  }
  for (const name of MODEL_LEVELS) {
    if (!isModelInt(levels[name])) fail(`model.levels.${name}`, `a whole number from ${-MAX_MODEL_INT} to ${MAX_MODEL_INT}`, String(levels[name]));
  }
  const size = buckets * MODEL_HEADS.length;
  const encoded = model.weights;
  if (typeof encoded !== "string" || encoded.length !== 4 * Math.ceil(size / 3) || !BASE64.test(encoded)) {
    fail("model.weights", `${size} bytes in base64`, typeof encoded === "string" ? `${encoded.length} characters` : encoded);
  }
  const text = atob(encoded);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  if (bytes.length !== size) fail("model.weights", `${size} bytes`, `${bytes.length} bytes`);
  if (!isInt(model.crc32, 0, 0xffffffff) || crc32(bytes) !== model.crc32) {
    fail("model.crc32", "the CRC-32 of the weights (the model is damaged: reload)", String(model.crc32));
  }
  return Object.freeze({
    buckets, low: ngrams[0], high: ngrams[1], damping: model.damping,
    bias: Int32Array.from(model.bias), levels: { ...levels },
    weights: new Int8Array(bytes.buffer),
    // Scratch for modelScores(): which buckets a message has (detect never runs re-entrantly).
    seen: new Uint8Array(buckets), words: new Map(),
  });
}

function fnv1a(text, h = FNV_OFFSET) {
  for (const c of text) h = Math.imul(h ^ c.codePointAt(0), FNV_PRIME) >>> 0;
  return h;
}

const WORD_HASH = fnv1a("w ");
const PAIR_HASH = fnv1a("b ");
const NGRAM_HASH = fnv1a("c ");
const EXCEPTION_HASH = fnv1a("x ");
const MAX_CACHED_WORDS = 16384;

/** A word's hash ("w word") and those of the letter n-grams of "<word>" ("c <wo", ...). */
function wordHashes(model, word) {
  let out = model.words.get(word);
  if (out) return out;
  out = [fnv1a(word, WORD_HASH)];
  const marked = Array.from(`<${word}>`, (c) => c.codePointAt(0));
  for (let start = 0; start < marked.length; start++) {
    let h = NGRAM_HASH;
    const end = Math.min(marked.length, start + model.high);
    for (let i = start; i < end; i++) {
      h = Math.imul(h ^ marked[i], FNV_PRIME) >>> 0;
      if (i - start + 1 >= model.low) out.push(h);
    }
  }
  if (model.words.size >= MAX_CACHED_WORDS) model.words.clear();
  model.words.set(word, out);
  return out;
}

/**
 * The model's sums per head over a message's distinct buckets (each word, each pair of
 * neighbouring words in a clause, letter n-grams, the exception sets that matched), and the
 * count of those buckets plus the damping: see model_features and model_scores in detector.py.
 */
function modelScores(model, tokens, exceptionNames) {
  const mask = model.buckets - 1;
  const { seen } = model;
  const touched = [];
  const take = (h) => {
    const b = h & mask;
    if (!seen[b]) {
      seen[b] = 1;
      touched.push(b);
    }
  };
  let previous = null;
  for (const token of tokens) {
    for (const h of wordHashes(model, token.text)) take(h);
    if (previous && previous.clause === token.clause) take(fnv1a(`${previous.text} ${token.text}`, PAIR_HASH));
    previous = token;
  }
  for (const name of exceptionNames) take(fnv1a(name, EXCEPTION_HASH));
  const heads = MODEL_HEADS.length;
  const sums = new Array(heads).fill(0);
  for (const b of touched) {
    seen[b] = 0;
    const base = b * heads;
    for (let h = 0; h < heads; h++) sums[h] += model.weights[base + h];
  }
  return { sums, count: touched.length + model.damping };
}

const squared = (x) => x * Math.abs(x);

/** bias + sum / sqrt(count) >= level, in integers (see reaches in detector.py). */
function reaches(model, scores, head, level) {
  const h = MODEL_HEADS.indexOf(head);
  return squared(scores.sums[h]) >= squared(model.levels[level] - model.bias[h]) * scores.count;
}

/** The category head with the highest score; a tie goes to the earlier one. */
function modelCategory(model, scores) {
  let best = MODEL_CATEGORIES[0];
  for (const category of MODEL_CATEGORIES.slice(1)) {
    const c = MODEL_HEADS.indexOf(category);
    const b = MODEL_HEADS.indexOf(best);
    if (squared(scores.sums[c] - scores.sums[b]) > squared(model.bias[b] - model.bias[c]) * scores.count) best = category;
  }
  return best;
}

/**
 * The rules' detection weighed by the model: see combine in detector.py. The rules are the
 * floor: the model adds a detection only where no rule matched at all and no exception set that
 * quiets it matched, and only ever lifts.
 */
function combine(pack, parts) {
  const { scores } = parts;
  let found = parts.rules;
  if (!scores) return found; // no text, no pack, or a pack without a model
  const { model } = pack;
  if (!found) {
    if (parts.ruledOut || parts.quiet || !reaches(model, scores, "risk", "fire")) return null;
    found = { category: modelCategory(model, scores), severity: "medium", rule_ids: [MODEL_RISK_ID], pack: pack.id, version: pack.version };
  }
  if (found.severity !== "high" && MODEL_CATEGORIES.includes(found.category) && reaches(model, scores, "high", "high")) {
    found = { ...found, severity: "high", rule_ids: [...found.rule_ids, MODEL_HIGH_ID] };
  }
  return found;
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
  // A candidate (matcher mi, slot si) is one number that sorts as (mi, -si): see scan().
  const add = (slots) => {
    const mi = matchers.length;
    matchers.push(slots);
    slots.forEach((slot, si) => {
      const code = mi * SLOT_CODES + (SLOT_CODES - 1 - si);
      for (const w of slot.words) push(words, w, code);
      for (const p of slot.prefixes) push(prefixes, p, code);
      for (const n of slot.numbers) push(numbers, n, code);
    });
    return mi;
  };
  const ruleMatchers = pack.rules.map((rule) => rule.patterns.map(add));
  const exceptionMatchers = new Map();
  for (const [name, set] of pack.exceptions) exceptionMatchers.set(name, set.patterns.map(add));
  const negationMatchers = pack.negationUnless.map(add);
  // Each list in candidate order, so a token with one list needs no sort.
  for (const map of [words, prefixes, numbers]) for (const list of map.values()) list.sort((a, b) => a - b);
  // Per matcher, the words of its slots: a cue that is one of them is part of the phrase.
  const matcherWords = matchers.map((slots) => new Set(slots.flatMap((slot) => slot.words)));
  // A typo word and each of its one-letter deletions -> the typo words they come from.
  const typoKeys = new Map();
  for (const typo of pack.typoWords) {
    for (const key of [typo, ...deletions(Array.from(typo))]) push(typoKeys, key, typo);
  }
  // Every word the pack knows: such a token is never read as a typo of another.
  const vocabulary = new Set([...words.keys(), ...pack.negationCues, ...pack.negationBreaks, ...pack.typoWords, ...pack.notTypos]);
  for (const reading of pack.aliases.values()) for (const w of reading) vocabulary.add(w);
  // Prefix lengths in code points, as Python counts them.
  const prefixLengths = [...new Set([...prefixes.keys()].map((p) => Array.from(p).length))].sort((a, b) => a - b);
  // Per slot of every matcher, its gap; and where each matcher's slots start in the flat arrays.
  const slotStart = new Int32Array(matchers.length + 1);
  matchers.forEach((slots, mi) => { slotStart[mi + 1] = slotStart[mi] + slots.length; });
  const gaps = new Int32Array(slotStart[matchers.length]);
  matchers.forEach((slots, mi) => slots.forEach((slot, si) => { gaps[slotStart[mi] + si] = slot.gap; }));
  return {
    matchers, words, prefixes, numbers, prefixLengths, ruleMatchers, exceptionMatchers, negationMatchers,
    matcherWords, typoKeys, vocabulary, slotStart, gaps,
    // Scratch for scan(): reused by every call (detect never runs re-entrantly).
    lastEnd: new Int32Array(gaps.length), lastStart: new Int32Array(gaps.length),
  };
}

/** Each one-letter deletion of a word given as code points. */
function deletions(cps) {
  const out = [];
  for (let i = 0; i < cps.length; i++) out.push(cps.slice(0, i).join("") + cps.slice(i + 1).join(""));
  return out;
}

/** The tokens of `text` as `pack` reads them: tokenized, each alias replaced by its words. */
export function read(pack, text) {
  const tokens = tokenize(text);
  if (!pack.aliases.size) return tokens;
  const out = [];
  for (const token of tokens) {
    const reading = pack.aliases.get(token.text);
    if (reading === undefined) out.push(token);
    else for (const w of reading) out.push({ text: w, clause: token.clause, sentence: token.sentence });
  }
  return out;
}

/** The typo words `text` is one slip away from (none if it is a word of the pack). */
function typoWordsOf(index, text) {
  if (!index.typoKeys.size || text.length < MIN_TYPO_TOKEN || index.vocabulary.has(text)) return NONE;
  const cps = SURROGATE.test(text) ? Array.from(text) : null;
  const length = cps ? cps.length : text.length;
  if (length < MIN_TYPO_TOKEN || length > MAX_TYPO_TOKEN) return NONE;
  let found = NONE;
  const take = (key) => {
    const list = index.typoKeys.get(key);
    if (!list) return;
    if (found === NONE) found = [];
    for (const w of list) if (!found.includes(w)) found.push(w);
  };
  take(text);
  for (let i = 0; i < length; i++) {
    take(cps ? cps.slice(0, i).join("") + cps.slice(i + 1).join("") : text.slice(0, i) + text.slice(i + 1));
  }
  return found;
}

// ---- matching ---------------------------------------------------------------

/** The candidate lists (see buildIndex) of every word and prefix of `word`, into `out`. */
function lookup(index, word, out) {
  const listed = index.words.get(word);
  if (listed) out.push(listed);
  if (!index.prefixLengths.length) return;
  const cps = SURROGATE.test(word) ? Array.from(word) : null;
  const length = cps ? cps.length : word.length;
  for (const n of index.prefixLengths) {
    if (n > length) break;
    const found = index.prefixes.get(cps ? cps.slice(0, n).join("") : word.slice(0, n));
    if (found) out.push(found);
  }
}

/**
 * Every [start, end] token span where each matcher completes (an array per matcher that
 * completed, undefined for the others); see _scan in detector.py.
 */
function scan(index, tokens) {
  const { slotStart, gaps, lastEnd, lastStart } = index;
  lastEnd.fill(-1);
  lastStart.fill(-1);
  const found = new Array(index.matchers.length);
  const lists = [];
  for (let p = 0; p < tokens.length; p++) {
    const token = tokens[p];
    const text = token.text;
    lists.length = 0;
    lookup(index, text, lists);
    for (const typo of typoWordsOf(index, text)) lookup(index, typo, lists);
    let digits = 0;
    while (digits < text.length && isDigit(text[digits])) digits += 1;
    if (digits) {
      const units = index.numbers.get(text.slice(digits));
      if (units) lists.push(units);
    }
    if (!lists.length) continue;
    // Later slots first, so one token never fills two neighbouring slots: each list is
    // already in that order; several are merged and sorted.
    const candidates = lists.length === 1 ? lists[0] : lists.flat().sort((a, b) => a - b);
    let previous = -1;
    for (const c of candidates) {
      if (c === previous) continue;
      previous = c;
      const mi = Math.floor(c / SLOT_CODES);
      const si = SLOT_CODES - 1 - (c % SLOT_CODES);
      const at = slotStart[mi] + si;
      let start;
      if (si === 0) {
        start = p;
      } else {
        const prev = lastEnd[at - 1];
        if (prev < 0 || p - prev - 1 > gaps[at] || tokens[prev].clause !== token.clause) continue;
        start = lastStart[at - 1];
      }
      lastEnd[at] = p;
      lastStart[at] = start;
      if (at === slotStart[mi + 1] - 1) (found[mi] ??= []).push([start, p]);
    }
  }
  return found;
}

/**
 * A cue inside the match that is not one of its words (a gap skipped over it), or a cue
 * within the window before it, in its clause, with no break word between them.
 */
function negated(pack, tokens, mi, start, end, excused) {
  const own = pack.index.matcherWords[mi];
  for (let i = start + 1; i < end; i++) {
    const text = tokens[i].text;
    if (pack.negationCues.has(text) && !own.has(text) && !excused.has(i)) return true;
  }
  const clause = tokens[start].clause;
  for (let i = start - 1; i >= Math.max(0, start - pack.negationWindow); i--) {
    const token = tokens[i];
    if (token.clause !== clause || pack.negationBreaks.has(token.text)) return false;
    if (pack.negationCues.has(token.text) && !excused.has(i)) return true;
  }
  return false;
}

/**
 * The strongest risk in `text` under `pack` (from loadPack), the rules weighed by its model
 * if it has one, or null:
 * {category, severity, rule_ids, pack, version}. Never returns or keeps the text.
 */
export function detect(pack, text) {
  return combine(pack, detectParts(pack, text));
}

/**
 * What the rules detect, whether a rule matched and was ruled out (negated or excepted; a sign
 * lacking the company it requires rules nothing out), and what the pack's model scores ({sums, count}: numbers
 * only), before combine() weighs them: see detect_parts in detector.py.
 */
export function detectParts(pack, text) {
  const nothing = { rules: null, scores: null, ruledOut: false, quiet: false };
  if (typeof text !== "string" || !text || !pack?.index) return nothing;
  const tokens = read(pack, text);
  if (!tokens.length) return nothing;
  const { index } = pack;
  const found = scan(index, tokens);

  const excused = new Set();
  for (const mi of index.negationMatchers) {
    for (const [start, end] of found[mi] ?? []) for (let i = start; i <= end; i++) excused.add(i);
  }

  // Per exception set: the clauses and sentences where it matched, and whether anywhere.
  const excepted = new Map();
  const exceptedMessage = new Set();
  for (const [name, matcherIds] of index.exceptionMatchers) {
    const clauses = new Set();
    const sentences = new Set();
    for (const mi of matcherIds) {
      for (const [start] of found[mi] ?? []) {
        clauses.add(tokens[start].clause);
        sentences.add(tokens[start].sentence);
      }
    }
    if (sentences.size) {
      excepted.set(name, { clauses, sentences });
      if (pack.exceptions.get(name).scope === "message") exceptedMessage.add(name);
    }
  }
  const exceptedAt = (rule, start) => rule.unless.some((name) => {
    const where = excepted.get(name);
    if (!where) return false;
    if (pack.exceptions.get(name).scope === "clause") return where.clauses.has(tokens[start].clause);
    return where.sentences.has(tokens[start].sentence);
  });

  const fired = [];
  let ruledOut = false;
  pack.rules.forEach((rule, ri) => {
    const matchers = index.ruleMatchers[ri].filter((mi) => found[mi]?.length);
    if (!matchers.length) return;
    if (rule.unless.some((name) => exceptedMessage.has(name))) {
      ruledOut = true;
      return;
    }
    const hit = matchers.some((mi) => found[mi].some(([start, end]) =>
      !(rule.negatable && negated(pack, tokens, mi, start, end, excused)) && !exceptedAt(rule, start)));
    if (hit) fired.push(rule);
    else ruledOut = true;
  });
  const independent = new Set(fired.filter((rule) => !rule.requires.length).flatMap((rule) => [rule.category, rule.id]));
  const kept = fired.filter((rule) => !rule.requires.length || rule.requires.some((c) => independent.has(c)));
  return {
    rules: judge(pack, kept),
    scores: pack.model ? modelScores(pack.model, tokens, excepted.keys()) : null,
    ruledOut,
    // An exception set that quiets the model matched: see Parts in detector.py.
    quiet: [...excepted.keys()].some((name) => pack.exceptions.get(name).quietsModel),
  };
}

function judge(pack, fired) {
  const policy = pack.severity;
  const weights = new Map();
  for (const rule of fired) {
    weights.set(rule.category, Math.min(policy.categoryCap, (weights.get(rule.category) ?? 0) + rule.weight));
  }
  const main = CATEGORIES.filter((c) => weights.has(c) && !MODIFIERS.has(c));
  // A time says when, not whether: it adds to severity, never makes a detection.
  if (main.reduce((sum, c) => sum + weights.get(c), 0) < policy.low) return null;
  let score = 0;
  for (const w of weights.values()) score += w;
  let rank = score >= policy.high ? 2 : score >= policy.medium ? 1 : score >= policy.low ? 0 : -1;
  if (score >= policy.medium) {
    for (const combo of policy.combos) {
      if (combo.categories.every((c) => weights.has(c))) rank = Math.max(rank, SEVERITIES.indexOf(combo.severity));
    }
  }
  if (rank < 0) return null;
  for (const rule of fired) {
    if (rule.minSeverity !== null) rank = Math.max(rank, SEVERITIES.indexOf(rule.minSeverity));
  }
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
