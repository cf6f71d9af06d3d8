// The pseudonym rules in the browser: the same rules as the server, from the server.
//
// spaces/pseudonyms.py is the one source: the page gets its rules as data
// (`client_rules()`, in the form's data-rules) and checks a pseudonym here exactly as
// `normalise` does — the same whitespace, length in code points, invisible characters,
// letters, digits and punctuation, in the same order, and the same look-alike key for the
// reserved words (each page letter's key is given: NFKD, case folding and the UTS #39
// skeleton, per character) — so the join form refuses what the room would refuse, with the
// same sentence ("pseudonym.<reason>" in web/static/i18n). What the server checks beyond
// these rules (a name someone in the room already uses; the look-alike rule for a name
// written in other letters) it refuses itself; the page then shows that refusal with the
// form kept (join.js).

const LETTER = /\p{L}/u;
const DECIMAL = /\p{Nd}/u;
const compiled = new WeakMap(); // rules -> the sets and maps built from them, once

function prepare(rules) {
  let ready = compiled.get(rules);
  if (!ready) {
    const keys = new Map();
    for (const entry of rules.keys.split("|")) {
      const [ch, ...key] = [...entry];
      if (ch !== undefined) keys.set(ch, key.join(""));
    }
    ready = { spaces: new Set(rules.spaces), digits: new Set(rules.digits), keys };
    compiled.set(rules, ready);
  }
  return ready;
}

/** {ok: true, name} (the pseudonym as it will be shown), or {ok: false, reason, code}. */
export function checkPseudonym(raw, rules) {
  const { spaces, digits, keys } = prepare(rules);
  const words = [];
  let word = "";
  for (const ch of String(raw).normalize("NFC")) {
    if (spaces.has(ch)) {
      if (word) words.push(word);
      word = "";
    } else {
      word += ch;
    }
  }
  if (word) words.push(word);
  const name = words.join(" ");
  const chars = [...name];
  const refuse = (reason) => ({ ok: false, reason, code: rules.codes[reason] });
  if (chars.length < rules.min || chars.length > rules.max) return refuse("length");
  const invisible = (ch) => rules.invisible.some(([lo, hi]) => ch.codePointAt(0) >= lo && ch.codePointAt(0) <= hi);
  for (const ch of chars) {
    if (invisible(ch)) return refuse("invisible");
    if (!(LETTER.test(ch) || DECIMAL.test(ch) || digits.has(ch) || rules.punctuation.includes(ch))) {
      return refuse("characters");
    }
  }
  if (!chars.some((ch) => LETTER.test(ch))) return refuse("letter");
  // The look-alike key, when every character is a page letter; otherwise the server decides.
  if (chars.every((ch) => keys.has(ch))) {
    const key = chars.map((ch) => keys.get(ch)).join("");
    if (rules.reserved.some((reserved) => key.includes(reserved))) return refuse("reserved");
  }
  return { ok: true, name };
}

/** The sentence for a refusal, in the page's language (the server's words in English). */
export function pseudonymMessage(result, rules, t) {
  return t(`pseudonym.${result.reason}`, { min: rules.min, max: rules.max });
}

/** The rules a page was given (`data-rules` on `element`), or null without them. */
export function pageRules(element) {
  try {
    return JSON.parse(element.dataset.rules);
  } catch {
    return null;
  }
}
