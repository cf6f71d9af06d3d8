"""Config loading: the shipped file is good; every bad key is named with what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.spaces.config import SHIPPED_CONFIG, ConfigError, load_config


def test_shipped_config_loads_with_a_demo_room() -> None:
    config = load_config()
    assert config.source == str(SHIPPED_CONFIG)
    demo = config.room("demo")
    assert demo is not None and demo.layout.seats and demo.layout.corners
    assert config.server.listen == ("tcp:8080:interface=127.0.0.1",)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


ROOM = """
[[rooms]]
id = "r"
title = "R"
[rooms.layout]
hearth = { x = 7.0, y = 5.0, radius = 0.8 }
circle = { x = 7.0, y = 5.0, radius = 2.6, seats = 8 }
spawn = [[1.0, 1.0]]
"""


@pytest.mark.parametrize("text,fragment", [
    ("[limits]\nmessages_per_second = 'fast'\n" + ROOM,
     "limits.messages_per_second: expected a number from 1 to 10000, got a string ('fast')"),
    ("[limits]\nmax_frame_bytes = 10\n" + ROOM, "limits.max_frame_bytes: expected a whole number"),
    ("[limits]\nmesages_per_second = 3\n" + ROOM, "limits.mesages_per_second: unknown key"),
    ("[session]\nresume_grace_seconds = -1\n" + ROOM, "session.resume_grace_seconds"),
    ("[server]\nallowed_origins = ['evil']\n" + ROOM, "server.allowed_origins[0]: expected an origin"),
    ("", "rooms: expected at least one [[rooms]] table"),
    (ROOM.replace('id = "r"', 'id = "Bad Id!"'), "rooms[0].id: expected lowercase"),
    (ROOM.replace("spawn = [[1.0, 1.0]]", "spawn = [[7.0, 5.0]]"),
     "rooms[0].layout: spawn[0]: expected a point inside the room and outside the hearth"),
    (ROOM.replace("radius = 2.6", "radius = 0.5"), "circle.radius: expected larger than hearth"),
    (ROOM.replace('circle = { x = 7.0, y = 5.0, radius = 2.6, seats = 8 }\n', ''),
     "rooms[0].layout.circle: expected a table"),
    ("[rooms\n", "not valid TOML"),
    ("[login]\nlockout_after_failures = 0\n" + ROOM,
     "login.lockout_after_failures: expected a whole number from 1 to 1000, got 0"),
    ("[login]\nsession_idle_seconds = 7200\nsession_max_seconds = 3600\n" + ROOM,
     "login.session_max_seconds: expected at least login.session_idle_seconds (7200)"),
    ("[login]\nlockout = 60\n" + ROOM, "login.lockout: unknown key"),
    ("[organisation]\nquick_exit_url = 'javascript:alert(1)'\n" + ROOM,
     "organisation.quick_exit_url: expected an absolute http(s) URL"),
    ("[organisation]\nhelpline_countries = ['gb']\n" + ROOM,
     "organisation.helpline_countries[0]: expected an ISO 3166-1 alpha-2 country code"),
    ("[organisation]\nhelpline_countries = []\n" + ROOM,
     "organisation.helpline_countries: expected at least one"),
    ("[organisation]\nhelpline_countries = ['GB', 'GB']\n" + ROOM,
     "organisation.helpline_countries: expected each country code once"),
    ("[organisation.texts.fr]\nground_rules = ['Soyez gentils.']\n" + ROOM,
     "organisation.texts.fr: unknown key"),
    ("[organisation.texts.en]\nground_rule = ['Be kind.']\n" + ROOM,
     "organisation.texts.en.ground_rule: unknown key"),
    ("[organisation.texts.en]\nground_rules = []\n[organisation.texts.es]\nground_rules = []\n" + ROOM,
     "organisation.texts.en.ground_rules: expected a list of 1 to 20 paragraphs"),
    ("[organisation.texts.en]\nprivacy_kept = ['Nothing.']\n" + ROOM,
     "organisation.texts.es.privacy_kept: expected a translation too, "
     "since organisation.texts.en.privacy_kept is set"),
    ("[server]\ntrusted_proxies = ['proxy.example']\n" + ROOM,
     "server.trusted_proxies[0]: expected an IP address or network like '127.0.0.1'"),
    ("[server]\ntrusted_proxies = ['10.0.0.0/99']\n" + ROOM,
     "server.trusted_proxies[0]: expected an IP address or network"),
    # every address a proxy: any client could forge its address (bans, limits) and HTTPS
    ("[server]\ntrusted_proxies = ['0.0.0.0/0']\n" + ROOM,
     "server.trusted_proxies[0]: expected the proxies' own addresses or network, not every "
     "address ('0.0.0.0/0')"),
    ("[server]\ntrusted_proxies = ['127.0.0.1', '::/0']\n" + ROOM,
     "server.trusted_proxies[1]: expected the proxies' own addresses or network, not every"),
    (ROOM.split("[rooms.layout]")[0], "rooms[0].layout: expected a table, got nothing (this key "
     "is required)"),
    ("rooms = [5]\n", "rooms[0]: expected a table, got a number (5)"),
    ("[metrics]\ntoken = 'short'\n" + ROOM,
     "metrics.token: expected a bearer token of at least 16 characters"),
    ("[metrics]\nenabled = 'yes'\n" + ROOM, "metrics.enabled: expected true or false"),
    ("[crisis]\ndetector_model = 'on'\n" + ROOM,
     "crisis.detector_model: expected true or false, got a string"),
    ("[crisis]\ndetector_model = 1\n" + ROOM,
     "crisis.detector_model: expected true or false, got"),
    ("[metrics]\npassword = 'x'\n" + ROOM, "metrics.password: unknown key"),
    ("[retention]\naudit_days = 0\n" + ROOM,
     "retention.audit_days: expected a whole number from 1 to 3650, got 0"),
    ("[retention]\nreports_days = 'forever'\n" + ROOM, "retention.reports_days: expected a whole"),
    ("[retention]\nlogs_days = 3\n" + ROOM, "retention.logs_days: unknown key"),
    ("[session]\nclosing_grace_seconds = 600\n" + ROOM,
     "session.closing_grace_seconds: expected a number from 0 to 60, got 600"),
    (ROOM.replace('title = "R"', 'title = { en = "R", fr = "Salle" }'),
     "rooms[0].title.fr: expected a page language (en or es) as the key"),
    (ROOM.replace('title = "R"', 'title = {}'), "rooms[0].title: expected a string, or a table of en"),
    (ROOM.replace('title = "R"', 'title = { es = 3 }'), "rooms[0].title.es: expected a non-empty string"),
    (ROOM.replace('title = "R"', 'title = "R"\nschedule = { en = "' + "x" * 201 + '" }'),
     "rooms[0].schedule.en: expected a string of at most 200 characters"),
    (ROOM + '[[rooms.layout.corners]]\nid = "c"\ntitle = { de = "Ecke" }\n',
     "rooms[0].layout.corners[0].title.de: expected a page language (en or es)"),
])
def test_each_problem_names_file_key_and_expectation(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(fragment in p and p.startswith(str(path)) for p in caught.value.problems), \
        caught.value.problems


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "[limits]\nburst = 1\nmoves_per_second = 0\n" + ROOM)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert len(caught.value.problems) == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "nope.toml")


def test_organisation_texts_override_every_language(tmp_path: Path) -> None:
    path = write(tmp_path, "[organisation]\nquick_exit_url = 'http://127.0.0.1:9/weather'\n"
                 "[organisation.texts.en]\nground_rules = ['Listen.']\n"
                 "[organisation.texts.es]\nground_rules = ['Escucha.']\n" + ROOM)
    organisation = load_config(path).organisation
    assert organisation.quick_exit_url == "http://127.0.0.1:9/weather"
    assert organisation.texts_for("es").ground_rules == ("Escucha.",)
    assert organisation.texts_for("xx").ground_rules == ("Listen.",)
    # Keys not overridden keep the shipped default of their own language.
    assert organisation.texts_for("es").privacy_kept[0].startswith("Un registro")


def test_operations_sections(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\ntrusted_proxies = ['127.0.0.1', '10.0.0.0/8', '::1']\n"
                 "[metrics]\nenabled = false\ntoken = 'a-long-enough-token'\n"
                 "[retention]\naudit_days = 30\nincidents_days = 60\nreports_days = 7\n" + ROOM)
    config = load_config(path)
    assert config.server.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")
    assert (config.metrics.enabled, config.metrics.token) == (False, "a-long-enough-token")
    assert (config.retention.audit_days, config.retention.incidents_days,
            config.retention.reports_days) == (30, 60, 7)
    shipped = load_config()
    assert shipped.metrics.enabled and not shipped.metrics.token
    assert shipped.server.trusted_proxies == ()


def test_the_detector_model_is_off_unless_the_config_turns_it_on(tmp_path: Path) -> None:
    assert not load_config().crisis.detector_model  # the shipped hearth.toml
    assert not load_config(write(tmp_path, ROOM)).crisis.detector_model  # the key left out
    assert load_config(write(tmp_path, "[crisis]\ndetector_model = true\n" + ROOM)
                       ).crisis.detector_model


def test_room_titles_schedules_and_corner_names_per_language(tmp_path: Path) -> None:
    path = write(tmp_path, ROOM.replace('title = "R"', 'title = { en = "Evening circle", '
                                        'es = "Círculo de la tarde" }\nlanguage = "es"\n'
                                        'schedule = { en = "Tuesdays" }')
                 + '[[rooms.layout.corners]]\nid = "west"\n'
                 'title = { en = "Quiet corner", es = "Rincón tranquilo" }\n'
                 '[[rooms.layout.corners]]\nid = "east"\ntitle = "Nook"\nx = 10.0\n')
    room = load_config(path).rooms[0]
    # The plain title is the room's own language; each page language gets its own text.
    assert (room.title, room.title_in("en"), room.title_in("es")) == (
        "Círculo de la tarde", "Evening circle", "Círculo de la tarde")
    assert (room.schedule_in("en"), room.schedule_in("es")) == ("Tuesdays", "Tuesdays")
    west, east = room.layout.corners
    assert (west.title_in("en"), west.title_in("es")) == ("Quiet corner", "Rincón tranquilo")
    assert (east.title_in("en"), east.title_in("es")) == ("Nook", "Nook")
    wire = room.layout.to_wire()["corners"]
    assert wire[0]["titles"] == {"en": "Quiet corner", "es": "Rincón tranquilo"}  # type: ignore[index]
    assert wire[1]["titles"] == {}  # type: ignore[index]
