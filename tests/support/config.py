"""The test config: a small deployment with two rooms, and overrides per test."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from hearth.spaces.config import HearthConfig, parse_config
from hearth.spaces.config import to_toml as toml_of

BASE: dict[str, Any] = {
    "server": {"listen": ["tcp:0:interface=127.0.0.1"]},
    "organisation": {"name": "Test Hearth"},
    "session": {"resume_grace_seconds": 60},
    "limits": {"messages_per_second": 200, "message_burst": 400, "flood_strikes": 200},
    "rooms": [
        {"id": "circle", "title": "Test circle", "capacity": 8,
         "layout": {"width": 14.0, "height": 10.0,
                    "hearth": {"x": 7.0, "y": 5.0, "radius": 0.8},
                    "circle": {"x": 7.0, "y": 5.0, "radius": 2.6, "seats": 8},
                    "spawn": [[2.0, 8.5], [12.0, 8.5], [7.0, 9.2]],
                    "corners": [{"id": "corner-west", "x": 0.0, "y": 0.0,
                                 "width": 3.0, "height": 3.0}]}},
        {"id": "other", "title": "Another room", "capacity": 3,
         "layout": {"width": 10.0, "height": 8.0,
                    "hearth": {"x": 5.0, "y": 4.0, "radius": 0.6},
                    "circle": {"x": 5.0, "y": 4.0, "radius": 2.0, "seats": 6},
                    "spawn": [[1.0, 7.0]]}},
    ],
}


def make_config(**sections: dict[str, Any] | list[dict[str, Any]]) -> HearthConfig:
    """The test config, with some sections' keys overridden (a list, like `rooms`, replaces)."""
    data = copy.deepcopy(BASE)
    data["server"]["data_dir"] = tempfile.mkdtemp(prefix="hearth-test-")
    for name, values in sections.items():
        if isinstance(values, list):
            data[name] = values
        else:
            data.setdefault(name, {}).update(values)
    return parse_config(data, "test.toml")


def base_rooms(**changes: Any) -> list[dict[str, Any]]:
    """The test rooms, a fresh copy, with the first room's keys changed."""
    rooms = copy.deepcopy(BASE["rooms"])
    rooms[0].update(changes)
    return list(rooms)


def config_file(tmp_path: Path) -> Path:
    """The test config as `hearth.toml` in `tmp_path`, its data directory `tmp_path/data`
    (kept across a restart of a served Hearth)."""
    path = tmp_path / "hearth.toml"
    data: dict[str, Any] = {**BASE, "server": {**BASE["server"],
                                               "data_dir": str(tmp_path / "data")}}
    path.write_text(toml_of(data))
    return path
