// Helplines: the participant's card and the facilitator's card to paste.
//
// /crisis/helplines.json (web/crisis_data.py, docs/crisis.md) is fetched when the room page
// opens and kept in this tab's sessionStorage, so the card shows at once — and still shows
// if the connection is gone when the person needs it. It is public reference data: the
// cached file is the same for everyone and says nothing about the person (the chosen
// country stays in the URL fragment). Quick exit clears it with the rest of the storage.
// It holds only what the operator has verified; the console loads
// /crisis/helplines-console.json, where unverified entries are marked for facilitators.
//
// Text goes into the page through textContent only, all of it in the page's language
// (names of services are their own); numbers become tel:/sms: links; a web or WhatsApp
// contact links to the https:// address the file gives. Source and date of every number
// are shown: the card is only as good as its last check.

import { t } from "./i18n.js";

export const CACHE_KEY = "hearth.helplines";
const CONSOLE_CACHE_KEY = "hearth.helplines.console";
const FORMAT = 1;

function valid(data) {
  return Boolean(data && data.format === FORMAT && data.countries && data.international);
}

function cached(key = CACHE_KEY) {
  try {
    const raw = window.sessionStorage.getItem(key);
    const data = raw ? JSON.parse(raw) : null;
    return valid(data) ? data : null;
  } catch {
    return null;
  }
}

/**
 * The helplines, fresh from the server when it answers, else from this tab's cache (or null).
 * `forConsole`: every entry, the unverified ones marked (never for a participant's page).
 */
export async function loadHelplines({ forConsole = false } = {}) {
  const key = forConsole ? CONSOLE_CACHE_KEY : CACHE_KEY;
  const kept = cached(key);
  try {
    const url = forConsole ? "/crisis/helplines-console.json" : "/crisis/helplines.json";
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) return kept;
    const data = await response.json();
    if (!valid(data)) return kept;
    try {
      window.sessionStorage.setItem(key, JSON.stringify(data));
    } catch {
      // storage full or disabled: the copy in memory still works for this page
    }
    return data;
  } catch {
    return kept;
  }
}

/** What is known already, without waiting (the cache). */
export function cachedHelplines({ forConsole = false } = {}) {
  return cached(forConsole ? CONSOLE_CACHE_KEY : CACHE_KEY);
}

/** The cards to show for a country code: its own (if any), then the international directories. */
export function cardsFor(data, country) {
  if (!data) return [];
  const own = country && Object.hasOwn(data.countries, country) ? data.countries[country] : null;
  return own ? [own, data.international] : [data.international];
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function local(value, lang) {
  if (!value) return "";
  if (typeof value === "string") return value;
  return value[lang] ?? value.en ?? "";
}

function contactHref(contact) {
  if (contact.kind === "web" || contact.kind === "whatsapp") return contact.href || null;
  if (!contact.dial) return null;
  return contact.kind === "text" ? `sms:${contact.dial}` : `tel:${contact.dial}`;
}

/** "2026-11" as the page's language says a month ("November 2026", "noviembre de 2026"). */
function month(value, lang) {
  const [year, mon] = String(value).split("-").map(Number);
  if (!year || !mon) return String(value);
  return new Intl.DateTimeFormat(lang, { year: "numeric", month: "long", timeZone: "UTC" })
    .format(new Date(Date.UTC(year, mon - 1, 1)));
}

function checked(item, lang) {
  const note = t("help.source", { source: local(item.source, lang), date: month(item.last_verified, lang) });
  return item.confidence === "unverified" ? `${t("help.unverified")} ${note}` : note;
}

/** "English and Spanish" in the page's language, or "" when the file does not say. */
function languagesText(codes, lang) {
  if (!codes?.length) return "";
  try {
    const names = new Intl.DisplayNames([lang], { type: "language" });
    const list = new Intl.ListFormat(lang, { type: "conjunction" }).format(codes.map((c) => names.of(c) ?? c));
    return t("help.languages", { languages: list });
  } catch {
    return "";
  }
}

/** Services that speak the page's language first; otherwise the file's order. */
function ordered(services, lang) {
  const speaks = (s) => (s.languages ?? []).includes(lang);
  return [...services.filter(speaks), ...services.filter((s) => !speaks(s))];
}

/**
 * Draw the cards for `country` into `container` (emptied first). With no data at all, the
 * person is still told to call the local emergency number.
 */
export function renderHelplines(container, data, country, lang) {
  container.replaceChildren();
  const cards = cardsFor(data, country);
  if (cards.length === 0) {
    container.append(el("p", "help-emergency", t("help.offline_fallback")));
    return;
  }
  for (const card of cards) {
    const section = el("section", "helpline-card");
    section.dataset.country = card.code;
    section.append(el("h3", null, local(card.name, lang)));
    if (card.emergency) {
      const p = el("p", "help-emergency");
      const link = el("a", null, card.emergency.number);
      link.href = `tel:${card.emergency.dial}`;
      p.append(t("help.emergency"), " ", link);
      section.append(p, el("p", "help-source", checked(card.emergency, lang)));
    } else {
      section.append(el("p", "help-emergency", t("help.local_emergency")));
    }
    const list = el("ul", "services");
    for (const service of ordered(card.services, lang)) {
      const li = el("li", "service");
      li.append(el("strong", "service-name", service.name));
      for (const contact of service.contacts) {
        const p = el("p", "contact");
        const href = contactHref(contact);
        if (href) {
          const link = el("a", null, local(contact.label, lang));
          link.href = href;
          if (contact.kind === "web" || contact.kind === "whatsapp") link.rel = "noreferrer noopener";
          p.append(link);
        } else {
          p.textContent = local(contact.label, lang);
        }
        li.append(p);
      }
      li.append(el("p", "hours", local(service.hours_label, lang)));
      const spoken = languagesText(service.languages, lang);
      if (spoken) li.append(el("p", "note", spoken));
      const note = local(service.note, lang);
      if (note) li.append(el("p", "note", note));
      li.append(el("p", "help-source", checked(service, lang)));
      if (service.confidence === "unverified") li.dataset.unverified = "true";
      list.append(li);
    }
    section.append(list);
    container.append(section);
  }
}

/** The same cards as plain text, for a facilitator to paste into the chat: verified entries
 * only (what the participant's own card would show). */
export function helplinesText(data, country, lang) {
  const lines = [];
  const verified = (item) => item && item.confidence !== "unverified";
  for (const card of cardsFor(data, country)) {
    lines.push(`${local(card.name, lang)}:`);
    if (verified(card.emergency)) lines.push(`${t("help.emergency")} ${card.emergency.number}`);
    for (const service of ordered(card.services, lang).filter(verified)) {
      const contacts = service.contacts.map((c) => local(c.label, lang)).join("; ");
      lines.push(`${service.name}: ${contacts} (${local(service.hours_label, lang)})`);
    }
  }
  return lines.join("\n");
}

/** [code, name] for every country with a card, sorted by name in `lang`. */
export function countriesOf(data, lang) {
  if (!data) return [];
  return Object.values(data.countries)
    .map((card) => [card.code, local(card.name, lang)])
    .sort((a, b) => a[1].localeCompare(b[1], lang));
}
