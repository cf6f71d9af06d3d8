// The pseudonym rules in the browser: the same rules as the server, from the server.
//
// spaces/pseudonyms.py is the one source: the page gets its rules as data
// (`client_rules()`, in the form's data-rules) and checks a pseudonym here exactly as
// `normalise` does — the same whitespace, length in code points, letters, digits and
// punctuation, the same reserved words after the same folding — so the join form refuses
// what the room would refuse, with the same sentence ("pseudonym.<reason>" in
// web/static/i18n). What the server checks beyond these rules (a name someone in the room
// already uses, anything not expressible as data) it refuses itself; the page then shows
// that refusal with the form kept (join.js).

const LETTER = /\p{L}/u;
const DECIMAL = /\p{Nd}/u;

/** {ok: true, name} (the pseudonym as it will be shown), or {ok: false, reason, code}. */
export function checkPseudonym(raw, rules) {
  const spaces = new Set(rules.spaces);
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
  const digits = new Set(rules.digits);
  const allowed = (ch) => LETTER.test(ch) || DECIMAL.test(ch) || digits.has(ch) || rules.punctuation.includes(ch);
  if (!chars.every(allowed)) return refuse("characters");
  if (!chars.some((ch) => LETTER.test(ch))) return refuse("letter");
  const skeleton = skeletonOf(name);
  if (rules.reserved.some((reserved) => skeleton.includes(reserved))) return refuse("reserved");
  return { ok: true, name };
}

/** Case-folded (upper then lower: ß → ss, as Python's casefold), compatibility-decomposed,
 *  ASCII letters only: "F.a-c i l i t a t o r" → "facilitator". */
function skeletonOf(name) {
  const folded = name.toUpperCase().toLowerCase().normalize("NFKD");
  let out = "";
  for (const ch of folded) if (ch >= "a" && ch <= "z") out += ch;
  return out;
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
