"""config/crisis/: the shipped files load, match the reference, and bad files are named precisely.

Wrong crisis data hurts people: a stale number, an unsourced one, or a rule pack
that silently fails to load. So every problem names the file, the key and what
was expected, and all of them are reported at once.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from hearth.moderation.crisis_config import (
    CONFIDENCE,
    SHIPPED_CRISIS,
    CrisisReference,
    config_warnings,
    helplines_to_json,
    load_crisis,
    missing_helplines,
    pack_to_json,
    stale_entries,
)
from hearth.moderation.incidents import Escalation, Tier
from hearth.spaces.config import TEXT_LOCALES, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
RETIRED_DIGITS = "8002738255"  # the pre-988 US Lifeline number, in any punctuation

# Every row of the reference's helpline table (November 2026), as (country, service, dial strings).
REFERENCE_ROWS = [
    ("US", "988 Suicide & Crisis Lifeline", ["988"]),
    ("US", "Crisis Text Line", ["741741"]),
    ("GB", "Samaritans", ["116123"]),
    ("GB", "Shout", ["85258"]),
    ("IE", "Samaritans", ["116123"]),
    ("IE", "Pieta", ["1800247247", "51444"]),
    ("IE", "50808", ["50808"]),
    ("CA", "9-8-8 Suicide Crisis Helpline", ["988"]),
    ("AU", "Lifeline", ["131114", "0477131114"]),
    ("NZ", "1737 Need to talk?", ["1737"]),
    ("DE", "TelefonSeelsorge", ["08001110111", "08001110222"]),
    ("FR", "3114", ["3114"]),
    ("ES", "Línea 024", ["024"]),
    ("MX", "Línea de la Vida", ["8009112000"]),
    ("BR", "CVV (Centro de Valorização da Vida)", ["188"]),
    ("IN", "Tele-MANAS", ["14416", "18008914416"]),
    ("AR", "Línea 135 (Centro de Asistencia al Suicida)", ["135", "01152751135"]),
    ("AR", "Ministerio de Salud: línea de salud mental", ["08009990091"]),
    ("CL", "Línea de Prevención del Suicidio (Minsal)", ["*4141"]),
    ("CL", "Salud Responde", ["6003607777"]),
    ("PE", "Línea 113, opción 5 (Minsa)", ["113"]),
    ("CO", "Línea 106 «El poder de ser escuchado»", ["106", "+573007548933"]),
]
EMERGENCY = {"US": "911", "CA": "911", "GB": "999", "AU": "000", "NZ": "111", "IE": "112",
             "DE": "112", "FR": "112", "ES": "112", "MX": "911", "IN": "112", "BR": "192",
             "AR": "911", "CL": "131", "PE": "106", "CO": "123"}
# The reference says "verify" for these (and Germany's 116 123, which is left out).
UNVERIFIED = {("IE", "Pieta"), ("MX", "Línea de la Vida"), ("BR", "CVV (Centro de Valorização da Vida)"),
              ("IN", "Tele-MANAS"), ("AR", "Línea 135 (Centro de Asistencia al Suicida)"),
              ("AR", "Ministerio de Salud: línea de salud mental"), ("CL", "Salud Responde")}
UNVERIFIED_EMERGENCY = {"BR", "AR", "CL", "PE"}


def test_shipped_crisis_config_loads(crisis: CrisisReference) -> None:
    assert crisis.directory == str(SHIPPED_CRISIS)
    assert set(crisis.packs) == {"en", "es"}
    assert {p.id for p in crisis.packs.values()} == {"hearth-en", "hearth-es"}
    assert set(crisis.helplines.countries) == set(EMERGENCY)


def test_every_reference_row_is_shipped_with_its_numbers(crisis: CrisisReference) -> None:
    for code, name, dials in REFERENCE_ROWS:
        services = {s.name: s for s in crisis.helplines.countries[code].services}
        assert name in services, (code, name)
        assert [c.dial for c in services[name].contacts] == dials
        assert services[name].hours == "24/7"
        assert (services[name].confidence == "unverified") == ((code, name) in UNVERIFIED)
    for code, number in EMERGENCY.items():
        emergency = crisis.helplines.countries[code].emergency
        assert emergency is not None and emergency.dial == number
        assert (emergency.confidence == "unverified") == (code in UNVERIFIED_EMERGENCY)
    assert [s.name for s in crisis.helplines.international.services] == [
        "Find A Helpline", "Befrienders Worldwide"]
    assert crisis.helplines.for_country("UY") is crisis.helplines.international
    us = {s.name: s for s in crisis.helplines.countries["US"].services}
    assert us["988 Suicide & Crisis Lifeline"].languages == ("en", "es")  # 988 en español


def test_every_number_has_a_source_and_a_verified_month(crisis: CrisisReference) -> None:
    helplines = crisis.helplines
    for country in (*helplines.countries.values(), helplines.international):
        dated = [country.emergency] if country.emergency else []
        for item in (*dated, *country.services):
            for locale in TEXT_LOCALES:  # in the participant's language, whichever it is
                assert item.source[locale].strip()
            assert item.last_verified == "2026-11"
            assert item.confidence in CONFIDENCE
        for locale in TEXT_LOCALES:
            assert country.name[locale]


def test_the_retired_lifeline_number_is_nowhere(crisis: CrisisReference) -> None:
    shipped = [p for p in SHIPPED_CRISIS.rglob("*") if p.is_file()] + [ROOT / "docs" / "crisis.md"]
    for path in shipped:
        digits = "".join(c for c in path.read_text(encoding="utf-8") if c.isdigit())
        assert RETIRED_DIGITS not in digits, path
    served = json.dumps([helplines_to_json(crisis.helplines),
                         *(pack_to_json(p) for p in crisis.packs.values())])
    assert RETIRED_DIGITS not in "".join(c for c in served if c.isdigit())


def test_participant_facing_text_follows_safe_messaging(crisis: CrisisReference) -> None:
    text = json.dumps(helplines_to_json(crisis.helplines), ensure_ascii=False).lower()
    assert "commit" not in text and "cometi" not in text
    for path in (SHIPPED_CRISIS / "helplines.toml", ROOT / "docs" / "crisis.md"):
        assert "committed suicide" not in path.read_text(encoding="utf-8").replace(
            "never \"committed suicide\"", "").replace("never 'committed suicide'", "").lower()


def test_escalation_defaults_follow_the_reference_table(crisis: CrisisReference) -> None:
    """The shipped escalation.toml, as the desk runs it (a tier whose participant_prompt is
    "call_helpline_now" tells "participant_prompt"; the first tier's stop_when never matters,
    it fires at once), against the reference table written out here."""
    assert crisis.escalation == Escalation(
        help_button=(
            Tier(after=0, notify=("room_facilitators", "on_call_webhook")),
            Tier(after=30, notify=("room_facilitators", "on_duty_facilitators"),
                 stop_when="acknowledged", sound=True),
            Tier(after=120, notify=("secondary_on_call",), stop_when="acknowledged"),
            Tier(after=300, notify=("admin", "participant_prompt"), stop_when="engaged"),
        ),
        default=(
            Tier(after=0, notify=("room_facilitators",)),
            Tier(after=60, notify=("on_duty_facilitators",), stop_when="acknowledged"),
            Tier(after=120, notify=("on_call_webhook",), stop_when="acknowledged"),
            Tier(after=300, notify=("admin", "participant_prompt"), stop_when="engaged"),
        ),
        high_severity="help_button",
        confirm_within=600, confirm_notify=("on_call_webhook", "room_facilitators",
                                            "on_duty_facilitators"),
        press_window=600, realert_every=30, concerns_per_window=3)


def test_the_shipped_timings_are_the_ones_the_desk_runs(crisis: CrisisReference) -> None:
    from hearth.moderation.incidents import DEFAULT_ESCALATION
    assert crisis.escalation == DEFAULT_ESCALATION


def test_helplines_json_gives_the_card_in_each_language(crisis: CrisisReference) -> None:
    data = json.loads(json.dumps(helplines_to_json(crisis.helplines)))
    assert data["format"] == 1
    us = data["countries"]["US"]
    assert us["emergency"]["dial"] == "911"
    lifeline, text_line = us["services"]
    assert lifeline["contacts"][0]["label"] == {"en": "Call or text 988",
                                               "es": "Llama o escribe al 988"}
    assert text_line["contacts"][0] == {
        "kind": "text", "number": "741741", "dial": "741741", "keyword": "HOME",
        "label": {"en": "Text HOME to 741741", "es": "Escribe HOME al 741741"}}
    assert data["countries"]["GB"]["services"][0]["contacts"][0]["dial"] == "116123"
    finder = data["international"]["services"][0]
    assert finder["contacts"][0]["href"] == "https://findahelpline.com"
    assert finder["hours_label"] == {"en": "Hours vary", "es": "El horario varía"}
    assert finder["source"] == {"en": "the directory's own site",
                                "es": "el sitio del propio directorio"}
    assert data["international"]["emergency"] is None
    bogota = data["countries"]["CO"]["services"][0]["contacts"][1]
    assert bogota["href"] == "https://wa.me/573007548933"
    assert bogota["label"]["es"] == "WhatsApp +57 300 754 8933"


def test_participants_get_only_verified_entries_and_the_console_gets_them_all(
        crisis: CrisisReference) -> None:
    people = helplines_to_json(crisis.helplines)
    console = helplines_to_json(crisis.helplines, everything=True)
    shown = {(code, s["name"]) for code, card in people["countries"].items()
             for s in card["services"]}
    every = {(code, s["name"]) for code, card in console["countries"].items()
             for s in card["services"]}
    assert every - shown == UNVERIFIED
    assert all(s["confidence"] != "unverified" for card in people["countries"].values()
               for s in card["services"])
    assert {code for code, card in people["countries"].items() if card["emergency"] is None} \
        == UNVERIFIED_EMERGENCY
    assert [s["name"] for s in people["countries"]["MX"]["services"]] == []  # until confirmed
    assert people["countries"]["MX"]["emergency"]["number"] == "911"
    # every text on a participant's card, in Spanish, is Spanish (or a service's own name)
    for card in people["countries"].values():
        for service in card["services"]:
            assert service["source"]["es"] != service["source"]["en"]
            if service["note"]:
                assert service["note"]["es"] != service["note"]["en"]


def test_check_config_warns_about_each_unverified_entry(crisis: CrisisReference) -> None:
    warnings = config_warnings(load_config(), crisis)
    unverified = [w for w in warnings if ": unverified, so participants do not see it" in w]
    assert len(unverified) == len(UNVERIFIED) + len(UNVERIFIED_EMERGENCY)
    assert any("MX Línea de la Vida: unverified" in w for w in unverified)
    assert not [w for w in warnings if "public_url" in w]  # no alerts configured: no links


def test_every_offered_country_has_a_card_and_others_are_listed(crisis: CrisisReference) -> None:
    offered = load_config().organisation.helpline_countries
    assert {"AR", "CO", "CL", "PE"} <= set(offered)
    assert missing_helplines(crisis.helplines, offered) == []
    assert missing_helplines(crisis.helplines, ["GB", "US", "UY"]) == ["UY"]


def test_stale_entries_warn_after_six_months(crisis: CrisisReference) -> None:
    assert stale_entries(crisis.helplines, date(2027, 5, 1)) == []
    stale = stale_entries(crisis.helplines, date(2027, 6, 1))
    assert "US 988 Suicide & Crisis Lifeline: last verified 2026-11; check it again" in stale
    assert len(stale) == len(EMERGENCY) + len(REFERENCE_ROWS) + 2


def test_pack_json_is_plain_data(crisis: CrisisReference) -> None:
    data = json.loads(json.dumps(pack_to_json(crisis.packs["es"]), ensure_ascii=False))
    assert (data["format"], data["id"], data["language"], data["version"]) == (
        6, "hearth-es", "es", "3.5.0")
    death_wish = next(r for r in data["rules"] if r["id"] == "es.intent.death_wish")
    assert death_wish["patterns"][0] == "quiero|quisiera ~1 morir|morirme"  # one line a pattern
    assert "verguenza" in {w for p in data["exceptions"]["verguenza"]["patterns"]
                           for slot in p.split(" ") for w in slot.split("|")}  # accents stripped
    assert data["aliases"]["kiero"] == ["quiero"] and data["aliases"]["xq"] == ["porque"]
    assert "suicidarme" in data["typos"]["words"] and "suicidarse" in data["typos"]["not"]
    taken = next(r for r in data["rules"] if r["id"] == "es.means.taken")
    assert taken["min_severity"] == "high" and "requires" not in taken  # a default is left out
    assert "negatable" not in taken and "quiets_model" not in data["exceptions"]["pasado"]
    euphemism = next(r for r in data["rules"] if r["id"] == "es.intent.euphemism")
    assert "es.time.soon" in euphemism["requires"] and euphemism["min_severity"] == "high"


# ---- bad files --------------------------------------------------------------

def copy_shipped(tmp_path: Path) -> Path:
    target = tmp_path / "crisis"
    shutil.copytree(SHIPPED_CRISIS, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def problems_after(tmp_path: Path, file: str, old: str, new: str) -> list[str]:
    directory = copy_shipped(tmp_path)
    edit(directory / file, old, new)
    with pytest.raises(ConfigError) as caught:
        load_crisis(directory)
    return caught.value.problems


HELPLINES = "helplines.toml"
EN = "rules/en.toml"
ESCALATION = "escalation.toml"


@pytest.mark.parametrize("file,old,new,fragment", [
    (HELPLINES, 'contacts = [{ kind = "call_or_text", number = "988" }]',
     'contacts = [{ kind = "call", number = "1-800-273-8255" }]',
     "countries.US.services[0].contacts[0].number: expected a current number, not the former US "
     "National Suicide Prevention Lifeline"),
    (HELPLINES, 'languages = ["en", "fr"]', 'languages = ["en", "fr"]\nnote = { en = "Or '
     '800 273 8255", es = "O 800 273 8255" }', "contains a retired number"),
    (HELPLINES, "[countries.GB]", "[countries.UK]",
     "countries.UK: expected ISO 3166-1 alpha-2 code GB"),
    (HELPLINES, "[countries.IN]", "[countries.india]",
     "countries.india: expected an ISO 3166-1 alpha-2 country code"),
    (HELPLINES, 'source = { en = "state government page", es = "página de un gobierno estatal" }\n',
     "", "countries.US.services[0].source: expected a table { en = \"...\", es = \"...\" } "
     "(this key is required)"),
    (HELPLINES, 'source = { en = "state government page", es = "página de un gobierno estatal" }',
     'source = "state government page"',
     "countries.US.services[0].source: expected a table, got a string"),
    (HELPLINES, 'source = { en = "state government page", es = "página de un gobierno estatal" }',
     'source = { en = "state government page" }',
     "countries.US.services[0].source.es: expected a string (this key is required)"),
    (HELPLINES, 'es = "página de un gobierno estatal" }\nlast_verified = "2026-11"',
     'es = "página de un gobierno estatal" }\nlast_verified = "Nov 2026"',
     "countries.US.services[0].last_verified: expected a year and month like \"2026-11\""),
    (HELPLINES, '{ kind = "whatsapp", number = "+57 300 754 8933" }',
     '{ kind = "whatsapp", number = "300 754 8933" }',
     "countries.CO.services[0].contacts[1].number: expected the number with its country code"),
    (HELPLINES, '{ kind = "call", number = "*4141" }', '{ kind = "call", number = "4141*" }',
     "countries.CL.services[0].contacts[0].number: expected a phone number"),
    (HELPLINES, 'last_verified = "2026-11"\nconfidence = "official"\n\n[[countries.US.services]]',
     'last_verified = "2026-11"\nconfidence = "sure"\n\n[[countries.US.services]]',
     "countries.US.services[0].confidence: expected one of official, reported, unverified"),
    (HELPLINES, 'hours = "24/7"\nlanguages = ["de"]', 'hours = "24/7"\nlanguages = ["de"]\nwebsite = "x"',
     "countries.DE.services[0].website: unknown key"),
    (HELPLINES, '{ kind = "call", number = "3114" }', '{ kind = "call", number = "3114", keyword = "X" }',
     "countries.FR.services[0].contacts[0].keyword: expected no keyword for a contact of kind 'call'"),
    (HELPLINES, 'url = "findahelpline.com"', 'url = "https://findahelpline.com"',
     "international.services[0].contacts[0].url: expected a bare domain"),
    (HELPLINES, '{ kind = "call", number = "188" }', '{ kind = "fax", number = "188" }',
     "countries.BR.services[0].contacts[0].kind: expected one of call, text, call_or_text, "
     "whatsapp, web"),
    (HELPLINES, '{ kind = "call", number = "024" }', '{ kind = "call", number = "0-2-4 ext. 1" }',
     "countries.ES.services[0].contacts[0].number: expected a phone number"),
    (HELPLINES, 'note = { en = "Support in 20 languages.", es = "Atiende en 20 idiomas." }',
     'note = { en = "For anyone who has lost someone who committed suicide.", es = "Para todos." }',
     "countries.IN.services[0].note.en: expected safe-messaging language"),
    (HELPLINES, 'name = { en = "Mexico", es = "México" }', 'name = { en = "Mexico" }',
     "countries.MX.name.es: expected a string (this key is required)"),
    (HELPLINES, 'emergency = { number = "111", source = { en = "public sources, November 2026", '
     'es = "fuentes públicas, noviembre de 2026" }, last_verified = "2026-11", '
     'confidence = "reported" }\n', "",
     "countries.NZ.emergency: expected a table { number = \"112\""),
    (EN, 'patterns = ["suicidal"]', 'patterns = ["suicidal-feelings"]',
     "rules/en.toml: rules[3].patterns[0]: expected one word per slot, got 'suicidal-feelings'"),
    (EN, 'patterns = ["suicidal"]', 'patterns = ["suicidal ~9 feelings"]',
     "rules[3].patterns[0]: expected a gap from ~1 to ~5, got '~9'"),
    (EN, 'patterns = ["suicidal"]', 'patterns = "suicidal"',
     "rules[3].patterns: expected a non-empty list of patterns"),
    (EN, 'category = "intent"\nweight = 3\npatterns = ["suicidal"]',
     'category = "ideas"\nweight = 3\npatterns = ["suicidal"]',
     "rules[3].category: expected one of intent, means_method, harm_from_others, farewell, timeframe"),
    (EN, 'category = "intent"\nweight = 3\npatterns = ["suicidal"]',
     'category = "intent"\nweight = 0\npatterns = ["suicidal"]',
     "rules[3].weight: expected a whole number from 1 to 100, got 0"),
    (EN, 'unless = ["past", "recovery", "others", "helping", "denial", "quoting", "topic"]',
     'unless = ["past", "recovery", "other", "helping", "denial", "quoting", "topic"]',
     "rules[3].unless[2]: expected the name of an [exceptions.NAME] set in this file, got 'other'"),
    (EN, 'id = "en.intent.topic_word"', 'id = "en.intent.explicit"',
     "rules[4].id: expected a unique rule id, but 'en.intent.explicit' is used twice"),
    (EN, 'id = "en.intent.topic_word"', 'id = "en.intent.topic_word"\nnegate = false',
     "rules[4].negate: unknown key"),
    (EN, 'language = "en"', 'language = "es"', "language: expected 'en', the name of the file"),
    (EN, 'version = "3.5.0"', 'version = "one"', "version: expected a version like \"1.0.0\""),
    (EN, "window = 6", "window = 40", "negation.window: expected a whole number from 0 to 8"),
    (EN, 'breaks = ["but",', 'breaks = ["but but",', "negation.breaks[0]: expected one word per"),
    (EN, 'unless = [\n  "dont|didnt', 'unless = [\n  "dont ~7 x",\n  "dont|didnt',
     "negation.unless[0]: expected a gap from ~1 to ~5"),
    (EN, '"i am" = ["im", "iam"]', '"i am" = ["im", "iam", "im"]\n"one" = ["im"]',
     "aliases.one: expected each variant once, but 'im' is also an alias of 'i am'"),
    (EN, '"i have" = ["ive"]', '"i have" = ["ive"]\n"a b c d e" = ["abcde"]',
     "aliases.a b c d e: expected a reading of 1 to 4 words"),
    (EN, '"i have" = ["ive"]', '"i have" = ["ive"]\n"im" = ["imm"]',
     "aliases.im: expected readings made of words that are not variants themselves"),
    (EN, '"myself", "suicide",', '"myself", "kill", "suicide",',
     "typos.words[1]: expected a word of 5 to 32 letters, got 'kill'"),
    (EN, 'not = ["meditation",', 'nope = ["meditation",', "typos.nope: unknown key"),
    (EN, 'patterns = ["suicidal"]', 'patterns = ["suicidal", "gonna die"]',
     "rules.en.intent.suicidal: expected 'going to', not 'gonna': an alias variant is read as its "
     "reading before matching"),
    (EN, 'category = "intent"\nweight = 3\npatterns = ["suicidal"]',
     'category = "intent"\nweight = 3\nrequires = ["en.time.never"]\npatterns = ["suicidal"]',
     "rules[3].requires[0]: expected a category (intent, means_method, harm_from_others, farewell, "
     "timeframe) or a rule id of this pack, got 'en.time.never'"),
    (EN, 'category = "intent"\nweight = 3\npatterns = ["suicidal"]',
     'category = "intent"\nweight = 3\nmin_severity = "urgent"\npatterns = ["suicidal"]',
     "rules[3].min_severity: expected one of low, medium, high, got 'urgent'"),
    (EN, "low = 3\nmedium = 5", "low = 6\nmedium = 5", "severity.medium: expected low <= medium <= high"),
    (EN, "category_cap = 6", "category_cap = 2", "severity.category_cap: expected at least low (3)"),
    (EN, '{ categories = ["intent", "means_method"], severity = "high" }',
     '{ categories = ["intent", "means"], severity = "urgent" }',
     "severity.combos[0].categories[1]: expected one of intent"),
    (EN, 'scope = "message"\nquiets_model = true\npatterns = [\n  "see you',
     'scope = "session"\nquiets_model = true\npatterns = [\n  "see you',
     "exceptions.see_you.scope: expected one of clause, sentence, message, got 'session'"),
    (EN, 'quiets_model = true\npatterns = [\n  "see you', 'quiets_model = "yes"\npatterns = [\n  "see you',
     "exceptions.see_you.quiets_model: expected true or false"),
    (EN, 'patterns = ["laughing|laugh|', 'patterns = ["la*|laugh|',
     "exceptions.laughter.patterns[0]: expected at least 3 letters before '*'"),
    (EN, "[negation]", "[negations]", "negations: unknown key"),
    (ESCALATION, 'notify = ["secondary_on_call"]', 'notify = ["police"]',
     "help_button.tiers[2].notify[0]: expected one of room_facilitators, on_duty_facilitators, "
     "on_call_webhook, secondary_on_call, admin, got 'police'"),
    (ESCALATION, "after = 120\nif_not = \"acknowledged\"\nnotify = [\"secondary_on_call\"]",
     "after = 20\nif_not = \"acknowledged\"\nnotify = [\"secondary_on_call\"]",
     "help_button.tiers[2].after: expected more than the previous tier's 30 seconds, got 20"),
    (ESCALATION, "[[help_button.tiers]]\nafter = 0", "[[help_button.tiers]]\nafter = 5",
     "help_button.tiers[0].after: expected 0 for the first tier"),
    (ESCALATION, 'after = 60\nif_not = "acknowledged"\n', "after = 60\n",
     "detector_or_flag.tiers[1].if_not: expected acknowledged or engaged"),
    (ESCALATION, 'after = 60\nif_not = "acknowledged"\n', 'after = 60\nif_not = "claimed"\n',
     "detector_or_flag.tiers[1].if_not: expected one of acknowledged, engaged, got 'claimed'"),
    (ESCALATION, 'notify = ["on_call_webhook"]', 'notify = ["on_duty_facilitators"]',
     "detector_or_flag.tiers: expected on_call_webhook in some tier"),
    (ESCALATION, 'participant_prompt = "helpline_card"', "",
     "help_button.tiers[0].participant_prompt: expected \"helpline_card\""),
    (ESCALATION, 'participant_prompt = "helpline_card"', 'participant_prompt = "call_911"',
     "help_button.tiers[0].participant_prompt: expected one of helpline_card, call_helpline_now"),
    (ESCALATION, "sound = true\n", "sound = \"loud\"\n",
     "help_button.tiers[1].sound: expected true or false"),
    (ESCALATION, "[detector_or_flag]", "[detector]", "detector: unknown key"),
    (ESCALATION, 'high_severity = "help_button"', 'high_severity = "fastest"',
     "detector_or_flag.high_severity: expected one of help_button, detector_or_flag"),
    (ESCALATION, "[help_button]\n", '[help_button]\nhigh_severity = "help_button"\n',
     "help_button.high_severity: unknown key"),
    (ESCALATION, "confirm_within = 600", "confirm_within = 5",
     "external_help.confirm_within: expected a whole number from 60 to 86400, got 5"),
    (ESCALATION, 'notify = ["on_call_webhook", "room_facilitators", "on_duty_facilitators"]',
     'notify = ["room_facilitators"]', "external_help.notify: expected on_call_webhook among them"),
    (ESCALATION, "realert_every = 30", "realert_every = 0",
     "presses.realert_every: expected a whole number from 5 to 3600, got 0"),
    (ESCALATION, "concerns_per_window = 3", "concerns_per_window = 3\nlimit = 1",
     "presses.limit: unknown key"),
])
def test_each_bad_file_names_the_file_and_the_key(tmp_path: Path, file: str, old: str, new: str,
                                                  fragment: str) -> None:
    problems = problems_after(tmp_path, file, old, new)
    matching = [p for p in problems if fragment in p]
    assert matching, "\n".join(problems)
    assert all(p.startswith(str(tmp_path / "crisis" / file) + ":") for p in matching)


def test_every_problem_in_every_file_is_reported_at_once(tmp_path: Path) -> None:
    directory = copy_shipped(tmp_path)
    edit(directory / HELPLINES, "[countries.GB]", "[countries.UK]")
    edit(directory / EN, 'patterns = ["suicidal"]', 'patterns = ["self-harm"]')
    edit(directory / EN, "window = 6", "window = 40")
    edit(directory / "rules" / "es.toml", 'version = "3.5.0"', 'version = "uno"')
    edit(directory / ESCALATION, 'notify = ["admin"]', 'notify = ["mayor"]')
    with pytest.raises(ConfigError) as caught:
        load_crisis(directory)
    files = {p.split(":", 1)[0] for p in caught.value.problems}
    assert files == {str(directory / f) for f in (HELPLINES, EN, "rules/es.toml", ESCALATION)}
    assert len(caught.value.problems) >= 5


@pytest.mark.parametrize("file,content,fragment", [
    (HELPLINES, "[countries\n", "helplines.toml: not valid TOML"),
    (EN, "id = \"x\"\n\xff", "not valid TOML"),
    (ESCALATION, "", "escalation.toml: help_button.tiers: expected a non-empty list"),
])
def test_unreadable_files_are_named(tmp_path: Path, file: str, content: str, fragment: str) -> None:
    directory = copy_shipped(tmp_path)
    (directory / file).write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_crisis(directory)
    assert any(fragment in p for p in caught.value.problems), caught.value.problems


def test_the_international_directories_are_required(tmp_path: Path) -> None:
    directory = copy_shipped(tmp_path)
    path = directory / HELPLINES
    text = path.read_text(encoding="utf-8")
    path.write_text(text[:text.index("[international]")], encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_crisis(directory)
    assert caught.value.problems == [
        f"{path}: international: expected an [international] table with worldwide directories "
        "(the card for any country not listed)"]


def test_missing_files_are_named(tmp_path: Path) -> None:
    directory = copy_shipped(tmp_path)
    (directory / ESCALATION).unlink()
    shutil.rmtree(directory / "rules")
    with pytest.raises(ConfigError) as caught:
        load_crisis(directory)
    problems = "\n".join(caught.value.problems)
    assert f"{directory / ESCALATION}: cannot read the file" in problems
    assert f"{directory / 'rules'}: expected at least one rule pack like en.toml" in problems
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_crisis(tmp_path / "nowhere")


def test_older_escalation_files_without_the_new_sections_keep_the_defaults(tmp_path: Path) -> None:
    directory = copy_shipped(tmp_path)
    path = directory / ESCALATION
    text = path.read_text(encoding="utf-8")
    text = text[:text.index("# After \"external help requested\"")]
    path.write_text(text.replace('high_severity = "help_button"\n', ""), encoding="utf-8")
    policy = load_crisis(directory).escalation
    assert (policy.high_severity, policy.confirm_within, policy.press_window) == (
        "help_button", 600, 600)


# ---- hearth.toml: alerts that can be opened, an ack link that does not travel in clear ----

def _with_webhook(tmp_path: Path, url: str, extra: dict[str, object] | None = None,
                  public_url: str = "") -> Path:
    from hearth.spaces.config import to_toml
    from tests.support.config import BASE
    path = tmp_path / "hearth.toml"
    hook = {"name": "on-call", "url": url, "secret": "s" * 32, **(extra or {})}
    path.write_text(to_toml({**BASE, "crisis": {"public_url": public_url, "webhooks": [hook]}}),
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("url", ["http://oncall.example.org/hook", "http://10.0.0.5:8080/hook"])
def test_a_plain_http_webhook_to_another_machine_is_refused_unless_allowed(
        tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_with_webhook(tmp_path, url))
    assert any("crisis.webhooks[0].url: expected an https:// URL" in p and "allow_plain_http" in p
               for p in caught.value.problems), caught.value.problems
    allowed = load_config(_with_webhook(tmp_path, url, {"allow_plain_http": True}))
    assert allowed.crisis.webhooks[0].allow_plain_http


@pytest.mark.parametrize("url", ["https://oncall.example.org/hook", "http://127.0.0.1:9000/hook",
                                 "http://localhost/hook", "http://[::1]:9000/hook"])
def test_https_and_loopback_webhooks_are_accepted(tmp_path: Path, url: str) -> None:
    assert load_config(_with_webhook(tmp_path, url)).crisis.webhooks[0].url == url


def test_alerts_without_a_public_url_are_warned_about(tmp_path: Path,
                                                      crisis: CrisisReference) -> None:
    config = load_config(_with_webhook(tmp_path, "https://oncall.example.org/hook"))
    [warning] = [w for w in config_warnings(config, crisis) if "public_url" in w]
    assert "crisis.public_url is empty" in warning and "127.0.0.1" in warning
    fixed = load_config(_with_webhook(tmp_path, "https://oncall.example.org/hook",
                                      public_url="https://support.example.org"))
    assert not [w for w in config_warnings(fixed, crisis) if "public_url" in w]


def test_check_config_prints_the_warnings_and_refuses_plain_http(tmp_path: Path) -> None:
    import subprocess
    import sys
    ok = subprocess.run([sys.executable, "-m", "hearth.web.cli", "check-config",
                         str(_with_webhook(tmp_path, "https://oncall.example.org/hook"))],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "crisis.public_url is empty" in ok.stderr
    assert "MX Línea de la Vida: unverified" in ok.stderr
    refused = subprocess.run([sys.executable, "-m", "hearth.web.cli", "check-config",
                              str(_with_webhook(tmp_path, "http://oncall.example.org/hook"))],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "expected an https:// URL" in refused.stderr
