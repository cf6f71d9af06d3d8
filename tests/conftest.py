"""Shared fixtures: a small config, a live server on an ephemeral loopback port, clients."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_twisted

from spaces.config import HearthConfig, parse_config

IN_CI = os.environ.get("CI") == "true"

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


def make_config(**sections: dict[str, Any]) -> HearthConfig:
    """The test config, with some sections' keys overridden."""
    data = copy.deepcopy(BASE)
    data["server"]["data_dir"] = tempfile.mkdtemp(prefix="hearth-test-")
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data, "test.toml")


@pytest.fixture
def config() -> HearthConfig:
    return make_config()


@dataclass
class LiveServer:
    hearth: Any
    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def client(self, **kwargs: Any) -> Any:
        from spaces.client import HearthClient
        return await HearthClient.connect(self.ws_url, **kwargs)


async def start_server(config: HearthConfig) -> LiveServer:
    from twisted.internet import reactor

    from web.service import make_hearth
    hearth = make_hearth(config, reactor, ["tcp:0:interface=127.0.0.1"])
    hearth.service.startService()
    await hearth.when_listening()
    return LiveServer(hearth, hearth.listeners[0].port.getHost().port)


@pytest_twisted.async_yield_fixture
async def server(config: HearthConfig) -> Any:
    live = await start_server(config)
    yield live
    await live.hearth.service.stopService()


def need_binary(path: str, what: str) -> str:
    """A system binary a test needs: a failure in CI, a skip on a developer's machine."""
    found = shutil.which(path) or (path if os.path.exists(path) else None)
    if found is None:
        if IN_CI:
            pytest.fail(f"{what} ({path}) is missing in CI: .ci/run must install it")
        pytest.skip(f"{what} ({path}) is not installed here")
    return found
