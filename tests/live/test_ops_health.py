"""/livez, /readyz and /healthz: what a load balancer and a person each get to see."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.web.client import Agent, readBody

from hearth.web.redis_broker import RedisBroker
from hearth.web.service import make_hearth
from tests.support.config import make_config
from tests.support.live import start_server
from tests.support.redis_servers import free_port


async def fetch(port: int, path: str) -> tuple[int, dict[str, Any], Any]:
    response = await Agent(reactor).request(b"GET", f"http://127.0.0.1:{port}{path}".encode())
    body = json.loads(await readBody(response))
    headers = {k.decode().lower(): v[0].decode()
               for k, v in response.headers.getAllRawHeaders()}
    return response.code, body, headers


@pytest_twisted.ensureDeferred
async def test_ready_until_the_outbox_is_over_its_limit_or_the_node_drains() -> None:
    live = await start_server(make_config(crisis={"ready_pending_limit": 2}))
    alerts, readiness = live.hearth.alerts, live.hearth.readiness
    try:
        code, body, headers = await fetch(live.port, "/readyz")
        assert (code, body["status"], body["broker"]) == (200, "ready", True)
        assert headers["cache-control"] == "no-store"
        assert (await fetch(live.port, "/livez"))[0] == 200
        for n in range(2):  # two alerts nobody can deliver (no channel answers them)
            alerts.outbox.add(f"stuck-{n}", "webhook:gone", {"incident": "x"}, 0.0)
        code, body, _ = await fetch(live.port, "/readyz")
        assert (code, body["status"], body["alerts_pending"]) == (503, "unready", 2)
        code, body, _ = await fetch(live.port, "/healthz")
        assert (code, body["status"], body["checks"]["alerts_pending"]) == (200, "degraded", 2)
        for n in range(2):
            alerts.outbox.delivered(f"stuck-{n}")
        assert (await fetch(live.port, "/readyz"))[0] == 200
        readiness.draining = True  # what a graceful stop sets first (web/lifecycle.py)
        code, body, _ = await fetch(live.port, "/readyz")
        assert (code, body["draining"]) == (503, True)
        assert (await fetch(live.port, "/livez"))[0] == 200  # still alive: do not restart it
    finally:
        await live.hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_unready_while_redis_cannot_be_reached() -> None:
    broker = RedisBroker(f"redis://127.0.0.1:{free_port()}/0")  # nobody listens there
    hearth = make_hearth(make_config(), reactor, ["tcp:0:interface=127.0.0.1"], broker=broker)
    hearth.service.startService()
    try:
        await hearth.when_listening()
        port = hearth.listeners[0].port.getHost().port
        code, body, _ = await fetch(port, "/readyz")
        assert (code, body["broker"]) == (503, False)
        code, body, _ = await fetch(port, "/healthz")
        assert (code, body["status"]) == (200, "degraded")
        assert (await fetch(port, "/livez"))[0] == 200
    finally:
        await hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_graceful_stop_turns_readyz_unready_first() -> None:
    from hearth.web.lifecycle import Lifecycle
    live = await start_server(make_config())
    try:
        lifecycle = Lifecycle(live.hearth.node, reactor, None, close_wait=0.1,
                              readiness=live.hearth.readiness)
        await lifecycle.shutdown()
        code, body, _ = await fetch(live.port, "/readyz")
        assert (code, body["draining"]) == (503, True)
    finally:
        await live.hearth.service.stopService()
