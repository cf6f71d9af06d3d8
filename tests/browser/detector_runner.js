// Drives web/static/js/detector.js inside Chromium for test_detector_browser.py.
// Loaded by detector_page.html; the test calls window.runner.*. Returns results only:
// the texts stay in the test, as they would stay on a participant's device.

import { PackError, detect, detectParts, loadPack, toWire, tokenize } from "/js/detector.js";

/** Reject if `value` has not settled in `ms`: a stuck page fails the test, never hangs it. */
export function withTimeout(value, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([Promise.resolve(value), timeout]).finally(() => clearTimeout(timer));
}

/** detect() on each [language, text], with packs {language: pack_to_json(...)}. */
export function run(packs, items) {
  const loaded = {};
  for (const [language, json] of Object.entries(packs)) loaded[language] = loadPack(json);
  return items.map(([language, text]) => detect(loaded[language], text));
}

/** detectParts() on each [language, text]: the rules' detection, whether a rule was ruled
 * out, whether a set that quiets the model matched, and the model's integer sums and count,
 * before they are combined. */
export function parts(packs, items) {
  const loaded = {};
  for (const [language, json] of Object.entries(packs)) loaded[language] = loadPack(json);
  return items.map(([language, text]) => {
    const { rules, scores, ruledOut, quiet } = detectParts(loaded[language], text);
    return { rules, ruled_out: ruledOut, quiet, sums: scores ? scores.sums : null, count: scores ? scores.count : null };
  });
}

/** The same, with the pack given as JSON text (as fetched and cached). */
export function runFromText(packText, texts) {
  const pack = loadPack(packText);
  return texts.map((text) => detect(pack, text));
}

export function tokens(texts) {
  return texts.map((text) => tokenize(text).map((t) => [t.text, t.clause, t.sentence]));
}

export function wire(packJson, text) {
  return toWire(detect(loadPack(packJson), text));
}

/** The message of the error loadPack throws, or null if it loads. */
export function loadError(json) {
  try {
    loadPack(json);
    return null;
  } catch (err) {
    return err instanceof PackError ? `PackError: ${err.message}` : `${err.name}: ${err.message}`;
  }
}

/** Detect on big texts; returns how many were checked and how long it took in total. */
export function large(packJson, texts) {
  const pack = loadPack(packJson);
  const started = performance.now();
  const results = texts.map((text) => detect(pack, text));
  return { count: results.length, ms: performance.now() - started };
}

/** Bad arguments never throw: detect() answers null. */
export function oddArguments(packJson) {
  const pack = loadPack(packJson);
  return [detect(pack, undefined), detect(pack, 42), detect(pack, ""), detect(null, "kill myself"),
          detect({}, "kill myself"), toWire(null)];
}
