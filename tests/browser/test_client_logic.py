"""The room page's own logic in Chromium, against the server's: pseudonym rules, reactions, away.

- web/static/js/pseudonym.js checks a pseudonym with the rules spaces/pseudonyms.py serves
  (`client_rules`): on every case below — the issue's `<b>Hi</b>`, reserved words in
  disguise (look-alike letters from other scripts too), invisible characters, every kind of
  space and digit Python knows, random mixes of scripts — the page never refuses what the
  server accepts, refuses for the same reason whenever the server refuses for a reason the
  page checks (the look-alike rule: for names in the letters it is given), and names the
  same pseudonym when both accept.
- web/static/js/presence.js on a fake clock: a reaction shows for exactly REACTION_MS, a new
  one starts afresh, content kinds never pass as chat, and away times count in minutes.

The page is served on 127.0.0.1 with web/static and driven through tests/browser/runner.py,
as the detector's and the E2EE vectors' browser tests are.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hearth.spaces.pseudonyms import (
    MESSAGES,
    PAGE_REASONS,
    RESERVED,
    PseudonymRefused,
    client_rules,
    normalise,
)
from tests.browser.runner import RunnerPage, runner_page

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
TEST_FILES = {"client_page.html", "client_runner.js"}
MAX = 24


@pytest.fixture(scope="module")
def browser() -> Iterator[RunnerPage]:
    with runner_page(HERE, TEST_FILES, "client_page.html") as page:
        yield page


def server_says(name: str) -> dict[str, Any]:
    try:
        return {"ok": True, "name": normalise(name, MAX)}
    except PseudonymRefused as refused:
        return {"ok": False, "reason": refused.reason, "code": refused.code}


FIXED = [
    "<b>Hi</b>", "Quiet Otter", "  Quiet   Otter  ", "Q", "ab", "a" * MAX, "a" * (MAX + 1),
    "12", "1a", "O'Brien", "Ana-María", "Dr. Who", "Zoë", "Ñandú", "李小龙", "محمد", "Ölçek",
    "Ⅻ Rose", "x²", "①②", "٣٤ab", "tab\tname", "line\nbreak", "nb\u00a0sp", "zero\u200bwidth",
    "e\u0301clair", "\u0301ab", "Fac ili tator", "F.a-c i l i t a t o r", "STAFF", "Staﬀ Room",
    "\u017ftaff", "moderadora", "Policía Amable", "mister admin", "\uff21\uff44\uff4d\uff49\uff4e",
    "A\u2028B",
    "a\x1cb", "a\x1fb", "a\u180eb", "a\u3000b", "emoji 😀", "smart \u2019quote", "dots...", "--",
    "Ǳemal", "ǅabc", "İstanbul", "Straße", "ßtaff", "\uff21\uff22", "🅰🅱",
    "\u0405taff Ana", "\u0430dmin", "Sta1ff", "Adrnin", "M0derator", "Ana\u200d", "\u3164Ana",
    "\u13daoctor", "Nur\u0455e",
]


def corpus(seed: int = 21, count: int = 400) -> list[str]:
    rng = random.Random(seed)
    pool = ("abcXYZ ñéüçØß李小محمد Ѯ ٣٤½²③ -'\u2019.,!?<>_\t\u00a0\u2009\u200b\u0301\u0308"
            "\u180e\u2028\x1c😀\uff21\uff22Ⅻ\u0430\u0435\u043e\u0455\u13da10rnI|")
    words = [*RESERVED, "quiet", "otter", "Ana", "Luz"]
    out = []
    for _ in range(count):
        parts = [rng.choice(words) if rng.random() < 0.3 else
                 "".join(rng.choice(pool) for _ in range(rng.randint(1, 8)))
                 for _ in range(rng.randint(1, 4))]
        out.append(rng.choice(["", " ", ".", "-"]).join(parts))
    return out


def page_letters(rules: dict[str, Any]) -> set[str]:
    return {entry[0] for entry in rules["keys"].split("|") if entry}


def test_the_join_form_refuses_what_the_server_refuses_for_the_same_reason(browser: RunnerPage) -> None:
    rules = client_rules(MAX)
    letters = page_letters(rules)
    names = FIXED + corpus()
    in_browser = browser.call("checkAll", names, rules)
    refused_here = 0
    for name, page, server in zip(names, in_browser, map(server_says, names), strict=True):
        if not page["ok"]:
            refused_here += 1
            # Never stricter than the server, never a different reason.
            assert not server["ok"], (name, page)
            assert (page["reason"], page["code"]) == (server["reason"], server["code"]), name
        elif server["ok"]:
            assert page["name"] == server["name"], name
        else:
            # Only a rule the page cannot check may refuse what the page let through: one it
            # is not given, or the look-alike rule for a name in other letters.
            shown = " ".join(unicodedata.normalize("NFC", name).split())
            assert server["reason"] not in PAGE_REASONS or (
                server["reason"] == "reserved" and not set(shown) <= letters), (name, server)
    assert refused_here > 100  # the corpus exercises every rule
    reasons = {page["reason"] for page in in_browser if not page["ok"]}
    assert reasons == set(PAGE_REASONS)
    assert in_browser[0] == {"ok": False, "reason": "characters", "code": "pseudonym_invalid"}  # <b>Hi</b>


def test_every_reason_the_page_checks_has_the_servers_sentence() -> None:
    import json
    strings = json.loads((HERE.parents[1] / "web/static/i18n/en.json").read_text())
    for reason in PAGE_REASONS:
        code, sentence = MESSAGES[reason]
        assert strings[f"pseudonym.{reason}"].replace("{min}", "2").replace("{max}", str(MAX)) \
            == sentence.format(min=2, max=MAX)
        assert client_rules(MAX)["codes"][reason] == code


def test_a_reaction_shows_for_its_time_on_the_senders_avatar(browser: RunnerPage) -> None:
    result = browser.call("reactionTimeline")
    ms = result["reactionMs"]
    assert 2000 <= ms <= 8000  # "a few seconds"
    assert result["taken"] == [True, False]  # a reaction is not chat; plain words are
    assert result["log"] == [
        ["show", "a", "heart", 0], ["say", "reaction.said.heart:Alice", 0],
        ["show", "b", "nod", ms - 1], ["say", "reaction.said.nod:Bruno", ms - 1],
        ["clear", "a", ms],
        ["show", "b", "wave", ms], ["say", "reaction.said.wave:Bruno", ms],  # afresh: the nod's end is gone
        ["clear", "b", 2 * ms],
        ["show", "me", "metoo", 2 * ms], ["say", "reaction.sent.metoo:", 2 * ms],
        ["clear", "me", 3 * ms],
    ]


def test_content_kinds_are_never_chat(browser: RunnerPage) -> None:
    texts = ["hello", "\u0000reaction:heart", "\u0000reaction:shout", "\u0000poll:1",
             "\u0000", "\u0000reaction:heart:extra", " \u0000reaction:heart is chat"]
    assert browser.call("contents", texts) == [
        None, {"kind": "reaction", "reaction": "heart"}, {"kind": "unknown"}, {"kind": "unknown"},
        {"kind": "unknown"}, {"kind": "unknown"}, None]


def test_away_times_count_whole_minutes_on_the_pages_clock(browser: RunnerPage) -> None:
    assert browser.call("awayTimeline") == [None, "away", 0, 1, None, 3, "back", None, False]
