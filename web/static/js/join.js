// The join page: ground rules accepted, a pseudonym, an avatar, a helpline country.
//
// Nothing is sent to the server from here. The choices travel to the room page in the URL
// fragment (which browsers never send), and the room page removes them from the address bar
// at once. location.replace keeps Hearth to one entry in the tab's history.
//
// The pseudonym is checked with the server's own rules (pseudonym.js, from data-rules). If
// the room still refuses it (a name someone there already uses, or a rule only the server
// can check), the room page comes back here with the choices and the error code in the
// fragment (#p=…&c=…&s=…&n=…&e=<code>): the form is filled in again and the refusal shown
// on the pseudonym. Only a known code is shown, as this page's own sentence — never text
// from the address.

import { errorText, loadStrings, t } from "./i18n.js";
import { checkPseudonym, pageRules, pseudonymMessage } from "./pseudonym.js";

const form = document.getElementById("join-form");
const pseudonym = document.getElementById("pseudonym");
const accepted = document.getElementById("accept-rules");
const country = document.getElementById("country");
const error = document.getElementById("join-error");
const previewUse = document.getElementById("preview-use");
const previewName = document.getElementById("preview-name");
const names = JSON.parse(form.dataset.names || "[]");
const rules = pageRules(form);
let nextName = 0;
const REFUSALS = new Set(["pseudonym_invalid", "pseudonym_reserved", "pseudonym_taken", "avatar_invalid"]);

const checked = (name) => form.querySelector(`input[name="${name}"]:checked`)?.value ?? "";

function preview() {
  const colour = checked("colour");
  const shape = checked("shape");
  if (colour) {
    previewUse.setAttribute("fill", colour);
    for (const use of form.querySelectorAll(".shape-chip use")) use.setAttribute("fill", colour);
  }
  if (shape) previewUse.setAttribute("href", `#shape-${shape}`);
  previewName.textContent = pseudonym.value.trim();
}

function invalid(field, message) {
  field.setAttribute("aria-invalid", "true");
  error.textContent = message;
  field.focus();
  return false;
}

/** The pseudonym as the room will show it, or null (the field is marked, the reason said). */
function checkedName() {
  const result = checkPseudonym(pseudonym.value, rules);
  if (result.ok) return result.name;
  invalid(pseudonym, pseudonymMessage(result, rules, t));
  return null;
}

function validate() {
  for (const field of [accepted, pseudonym, country]) field.removeAttribute("aria-invalid");
  error.textContent = "";
  if (!accepted.checked) return invalid(accepted, t("join.rules_required"));
  if (checkedName() === null) return false;
  if (!country.value) return invalid(country, t("join.country_required"));
  return true;
}

/** Back from the room with a refusal: the choices again, and why (the fragment is then cleared). */
function restore() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  if (!params.has("p")) return;
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
  pseudonym.value = params.get("p");
  for (const [name, key] of [["colour", "c"], ["shape", "s"]]) {
    const radio = [...form.querySelectorAll(`input[name="${name}"]`)].find((r) => r.value === params.get(key));
    if (radio) radio.checked = true;
  }
  if ([...country.options].some((o) => o.value === params.get("n"))) country.value = params.get("n");
  accepted.checked = params.get("r") === "1";
  preview();
  const code = params.get("e");
  if (!REFUSALS.has(code)) return;
  if (checkedName() === null) return; // our own rules name the reason
  invalid(code === "avatar_invalid" ? form.querySelector('input[name="colour"]') : pseudonym, errorText(code));
}

async function main() {
  try {
    await loadStrings(form.dataset.lang);
  } catch {
    await loadStrings("en");
  }
  form.addEventListener("change", preview);
  pseudonym.addEventListener("input", preview);
  document.getElementById("another-name").addEventListener("click", () => {
    if (names.length === 0) return;
    pseudonym.value = names[nextName % names.length];
    nextName += 1;
    preview();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!validate()) return;
    const choice = new URLSearchParams({
      p: checkPseudonym(pseudonym.value, rules).name,
      c: checked("colour"),
      s: checked("shape"),
      n: country.value,
    });
    const room = encodeURIComponent(form.dataset.room);
    const lang = encodeURIComponent(form.dataset.lang);
    window.location.replace(`/room/${room}?lang=${lang}#${choice}`);
  });
  preview();
  restore();
}

main();
