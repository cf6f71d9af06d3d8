// The client's strings: one JSON catalog per language (web/static/i18n/<lang>.json),
// the same language as the page (<html lang>). t(key, {name}) fills {name} placeholders.
// Text goes into the page through textContent only, never as HTML.

// Each catalog by its literal path: the server rewrites these to content-hashed URLs
// (web/static_files.py), so a page never reads strings of another version.
const CATALOGS = { en: "/static/i18n/en.json", es: "/static/i18n/es.json" };

let strings = {};
let current = "en";

export async function loadStrings(lang) {
  const wanted = Object.hasOwn(CATALOGS, lang) ? lang : "en";
  const response = await fetch(CATALOGS[wanted], { credentials: "same-origin" });
  if (!response.ok) throw new Error(`no strings for ${wanted}`);
  strings = await response.json();
  current = wanted;
  return current;
}

export function lang() {
  return current;
}

export function t(key, vars = {}) {
  const template = Object.hasOwn(strings, key) ? strings[key] : key;
  return template.replace(/\{(\w+)\}/g, (whole, name) => (Object.hasOwn(vars, name) ? String(vars[name]) : whole));
}

/** A server error code as a sentence in the page's language (the server's English as fallback). */
export function errorText(code, fallback = "") {
  const key = `error.${code}`;
  return Object.hasOwn(strings, key) ? strings[key] : fallback || t("error.unknown");
}

/** Why the on-device detector asked, by the category it found (never the words it matched). */
export function whyText(category) {
  switch (category) {
    case "intent":
      return t("why.intent");
    case "means_method":
      return t("why.means_method");
    case "harm_from_others":
      return t("why.harm_from_others");
    case "farewell":
      return t("why.farewell");
    default:
      return t("why.other");
  }
}
