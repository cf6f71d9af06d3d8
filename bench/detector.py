"""`python -m bench.detector`: the on-device detector's cost in the browser, as JSON.

Serves web/static/js/detector.js and the shipped rule packs (pack_to_json) on
127.0.0.1, opens them in Debian's Chromium, and times detect() there on
500-character messages of two kinds: ordinary ones made of evaluation-corpus
lines, and dense near-misses made of the packs' own words (the worst case for
the matcher). Also loadPack() and the bytes a page downloads: detector.js plus
one language's pack, raw and gzipped. The budget (docs/crisis.md) is about
300 KB and 2 ms per 500-character message.

The browser rounds performance.now(), so each message is detected `--repeat`
times and the average is taken, in three rounds of which the fastest is kept
(a round the machine's other work interrupted says nothing about the
detector); the figures are per message. The load average is printed with them:
on a busy machine the tail still grows.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from hearth.moderation.crisis_config import load_crisis, pack_to_json
from hearth.moderation.detector import RulePack
from hearth.moderation.detector_eval import DEFAULT_CORPUS, load_corpus
from tests.browser.runner import serving

CHROMIUM = "/usr/bin/chromium"
DETECTOR_JS = Path(__file__).resolve().parents[1] / "web" / "static" / "js" / "detector.js"
MESSAGE_CHARS = 500
BUDGET_BYTES = 300_000
BUDGET_MS = 2.0
PAGE = b"<!doctype html><meta charset='utf-8'><title>detector bench</title>"

# Runs in the page: load each pack, then time detect() per message.
BENCH_JS = """async ({packs, messages, repeat}) => {
  const {loadPack, detect} = await import('/js/detector.js');
  const out = {};
  for (const [language, json] of Object.entries(packs)) {
    const text = JSON.stringify(json);
    let started = performance.now();
    for (let i = 0; i < 20; i++) loadPack(text);
    const loadMs = (performance.now() - started) / 20;
    const pack = loadPack(text);
    const timings = {};
    for (const [kind, texts] of Object.entries(messages[language])) {
      for (const t of texts) detect(pack, t);  // warm up the JIT
      const perMessage = texts.map((t) => {
        let best = Infinity;
        for (let round = 0; round < 3; round++) {
          const begin = performance.now();
          for (let i = 0; i < repeat; i++) detect(pack, t);
          best = Math.min(best, (performance.now() - begin) / repeat);
        }
        return best;
      });
      timings[kind] = perMessage;
    }
    out[language] = {loadMs, timings};
  }
  return out;
}"""


class _Handler(BaseHTTPRequestHandler):
    files: dict[str, tuple[bytes, str]] = {}

    def do_GET(self) -> None:
        body, kind = self.files.get(self.path.split("?")[0], (b"not found", "text/plain"))
        self.send_response(200 if self.path.split("?")[0] in self.files else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def messages(pool: Sequence[str], count: int, rng: random.Random) -> list[str]:
    """Messages of exactly MESSAGE_CHARS characters made of random pieces of `pool`."""
    out = []
    for _ in range(count):
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < MESSAGE_CHARS:
            parts.append(rng.choice(pool))
        out.append(" ".join(parts)[:MESSAGE_CHARS])
    return out


def vocabulary(pack: RulePack) -> list[str]:
    """The pack's own words, negations and alias variants: as near-misses, every one a candidate."""
    return sorted({w for rule in pack.rules for p in rule.patterns for s in p.slots
                   for w in s.words} | set(pack.negation_cues) | set(pack.aliases))


def _summary(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median_ms": round(ordered[len(ordered) // 2], 4),
            "p95_ms": round(ordered[int(len(ordered) * 0.95)], 4),
            "max_ms": round(ordered[-1], 4)}


def run(count: int, repeat: int, seed: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    crisis = load_crisis()
    rng = random.Random(seed)
    lines = load_corpus([DEFAULT_CORPUS])
    packs = {lang: pack_to_json(pack) for lang, pack in sorted(crisis.packs.items())}
    texts = {lang: {"corpus": messages([x.text for x in lines if x.language == lang], count, rng),
                    "near_misses": messages(vocabulary(crisis.packs[lang]), count, rng)}
             for lang in packs}
    script = DETECTOR_JS.read_bytes()
    handler = type("Handler", (_Handler,), {"files": {
        "/": (PAGE, "text/html"), "/js/detector.js": (script, "text/javascript")}})
    with serving(handler, "bench-detector") as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.goto(url + "/")
            measured = page.evaluate(BENCH_JS, {"packs": packs, "messages": texts,
                                                "repeat": repeat})
            version = browser.version
        finally:
            browser.close()
    result: dict[str, Any] = {"chromium": version, "message_chars": MESSAGE_CHARS,
                              "messages": count, "repeat": repeat,
                              "load_average": [round(x, 1) for x in os.getloadavg()],
                              "detector_js_bytes": len(script), "languages": {}}
    slowest_p95 = 0.0
    for lang, pack_json in packs.items():
        text = json.dumps(pack_json).encode()  # as web/crisis_data.py serves it
        page_bytes = len(script) + len(text)
        timings = measured[lang]["timings"]
        slowest_p95 = max(slowest_p95, *(_summary(v)["p95_ms"] for v in timings.values()))
        result["languages"][lang] = {
            "pack_bytes": len(text), "pack_gzip_bytes": len(gzip.compress(text)),
            "page_bytes": page_bytes,
            "page_gzip_bytes": len(gzip.compress(script)) + len(gzip.compress(text)),
            "load_pack_ms": round(measured[lang]["loadMs"], 3),
            **{kind: _summary(values) for kind, values in timings.items()},
        }
    result["within_budget"] = {
        "bytes": all(v["page_bytes"] <= BUDGET_BYTES for v in result["languages"].values()),
        "p95_ms": slowest_p95 <= BUDGET_MS}
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detector", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200, help="messages of each kind (default 200)")
    parser.add_argument("--repeat", type=int, default=20, help="detections averaged per message")
    parser.add_argument("--seed", type=int, default=20261202)
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return 2
    print(json.dumps(run(args.messages, args.repeat, args.seed), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
