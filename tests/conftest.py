"""Fixtures every layer shares: the test config, a live server, the E2EE test vectors.

The helpers behind them live in tests/support/ (no test imports another test).
"""

from __future__ import annotations

import importlib.util
import json
from types import ModuleType
from typing import Any

import pytest
import pytest_twisted
from hypothesis import HealthCheck, settings

from hearth.moderation.crisis_config import CrisisReference, load_crisis
from hearth.spaces.config import HearthConfig
from tests.support.config import make_config
from tests.support.vectors import VECTOR_FILES, VECTORS

# Property tests count examples, never wall-clock time: hypothesis' default deadline (200 ms
# per example) and its "too slow" health check fail a correct test on a busy machine.
settings.register_profile("hearth", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("hearth")


@pytest.fixture
def config() -> HearthConfig:
    return make_config()


@pytest_twisted.async_yield_fixture
async def server(config: HearthConfig) -> Any:
    from tests.support.live import start_server  # imports the reactor: not before pytest-twisted
    live = await start_server(config)
    yield live
    await live.hearth.service.stopService()


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    """Every tests/vectors/*.json file, by name."""
    return {name: json.loads((VECTORS / f"{name}.json").read_text()) for name in VECTOR_FILES}


@pytest.fixture(scope="session")
def generator() -> ModuleType:
    """tests/vectors/generate.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("e2ee_vector_generator", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def crisis() -> CrisisReference:
    """The shipped crisis config (helplines, rule packs, escalation), loaded once."""
    return load_crisis()
