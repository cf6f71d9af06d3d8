"""What a person reads about their own request (or about someone they worried about) says
nothing before it is true: until a person has acknowledged, no status line in any language
says or implies that a facilitator knows, has been told or is coming."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

CATALOGS = Path(__file__).resolve().parents[2] / "web" / "static" / "i18n"
# The lines shown before anyone acknowledged: while sending, once received, once a
# console has the alert on its screen (help_status "delivered"), and when it failed.
BEFORE_ACK = ("help.sending", "help.queued", "help.received", "help.reopened", "help.delivered",
              "help.offline", "help.not_sent", "concern.received", "concern.delivered")
# What would claim a person knows, or is on the way.
CLAIMS = {
    "en": r"has been told|been notified|\bknows\b|\baware\b|is coming|will be with you|"
          r"on (?:their|the) way|has seen|saw your",
    "es": r"se le avisó|se avisó|\bya sabe|\bsabe que|está al tanto|\bviene\b|"
          r"estará contigo|en camino|\bvio\b|ha visto",
}


@pytest.mark.parametrize("language", sorted(CLAIMS))
def test_no_line_before_an_acknowledgement_says_someone_knows(language: str) -> None:
    catalog = json.loads((CATALOGS / f"{language}.json").read_text(encoding="utf-8"))
    claims = re.compile(CLAIMS[language], re.IGNORECASE)
    for key in BEFORE_ACK:
        assert not claims.search(catalog[key]), (language, key, catalog[key])


@pytest.mark.parametrize("language", sorted(CLAIMS))
def test_the_acknowledged_line_does_say_someone_has_it(language: str) -> None:
    """(The check above would pass on empty lines: the acknowledged one is the claim.)"""
    catalog = json.loads((CATALOGS / f"{language}.json").read_text(encoding="utf-8"))
    assert re.search(CLAIMS[language], catalog["help.acknowledged"], re.IGNORECASE)
    for key in BEFORE_ACK:
        assert catalog[key].strip(), (language, key)
