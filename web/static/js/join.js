// The join page: ground rules accepted, a pseudonym, an avatar, a helpline country.
//
// Nothing is sent to the server from here. The choices travel to the room page in the URL
// fragment (which browsers never send), and the room page removes them from the address bar
// at once. location.replace keeps Hearth to one entry in the tab's history.

import { loadStrings, t } from "./i18n.js";

const form = document.getElementById("join-form");
const pseudonym = document.getElementById("pseudonym");
const rules = document.getElementById("accept-rules");
const country = document.getElementById("country");
const error = document.getElementById("join-error");
const previewUse = document.getElementById("preview-use");
const previewName = document.getElementById("preview-name");
const names = JSON.parse(form.dataset.names || "[]");
const maxLength = Number(form.dataset.maxLength) || 24;
let nextName = 0;

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

function validate() {
  for (const field of [rules, pseudonym, country]) field.removeAttribute("aria-invalid");
  error.textContent = "";
  if (!rules.checked) return invalid(rules, t("join.rules_required"));
  const name = pseudonym.value.trim();
  if (name.length < 2 || name.length > maxLength) {
    return invalid(pseudonym, t("join.pseudonym_length", { min: 2, max: maxLength }));
  }
  if (!country.value) return invalid(country, t("join.country_required"));
  return true;
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
      p: pseudonym.value.trim(),
      c: checked("colour"),
      s: checked("shape"),
      n: country.value,
    });
    const room = encodeURIComponent(form.dataset.room);
    const lang = encodeURIComponent(form.dataset.lang);
    window.location.replace(`/room/${room}?lang=${lang}#${choice}`);
  });
  preview();
}

main();
