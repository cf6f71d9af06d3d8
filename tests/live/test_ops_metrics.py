"""/metrics during a live session: the named series move, no label names a person or an
address, and only loopback (or a bearer token) may scrape."""

from __future__ import annotations

import ipaddress
import re
import urllib.error
import urllib.request
from typing import Any

import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from hearth.client.websocket import HearthClient
from hearth.spaces.voice import build_frame
from hearth.web.service import make_hearth
from tests.support.config import make_config

BODY = "U2VjcmV0IHRoaW5ncyBzYWlkIGluIHRoZSBjaXJjbGU="
COMMIT = "D" * 43 + "="
IPV4 = re.compile(r"(?<![0-9])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9])")
IPV6 = re.compile(r"(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}")
PSEUDONYMS = ("Quiet Otter", "Brave Heron", "Calm Lynx")


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def live(**sections: Any) -> Any:
    hearth = make_hearth(make_config(**sections), reactor, ["tcp:0:interface=127.0.0.1"])
    hearth.service.startService()
    await hearth.when_listening()
    return hearth


@pytest_twisted.ensureDeferred
async def test_a_scrape_during_a_session_shows_the_series_and_no_person() -> None:
    hearth = await live(limits={"messages_per_second": 5, "message_burst": 10,
                                "flood_strikes": 1000})
    port = hearth.listeners[0].port.getHost().port
    url = f"ws://127.0.0.1:{port}/ws"
    clients = []
    try:
        node = hearth.node
        host = await HearthClient.connect(url)
        await host.join("circle", pseudonym=PSEUDONYMS[0],
                        ticket=node.venue.issue_ticket("facilitator", node.clock()))
        alice = await HearthClient.connect(url)
        await alice.join("circle", pseudonym=PSEUDONYMS[1])
        bob = await HearthClient.connect(url)
        await bob.join("circle", pseudonym=PSEUDONYMS[2])
        clients = [host, alice, bob]
        alice.envelope(BODY, COMMIT)  # one chat message, relayed
        await bob.expect("envelope")
        alice.send({"type": "remove", "member": bob.member})  # a refused op
        assert (await alice.next("error"))["code"] == "forbidden"
        alice.send_voice(build_frame(b"\0" * 40, seq=1, level=10))
        bob.send({"type": "help"})  # an incident opens
        await bob.expect("help_received")
        bob.drop()  # away, inside the grace period
        for _ in range(40):  # over the rate limit: most are dropped
            alice.send({"type": "stand"})
        await alice.next(lambda m: m.get("code") == "rate_limited")
        for _ in range(100):  # the server notices bob's dropped socket on its own time
            if hearth.node.link_count == 2:
                break
            await deferLater(reactor, 0.05, lambda: None)

        status, text = await deferToThread(get, f"http://127.0.0.1:{port}/metrics")
        assert status == 200, text
        found = samples(text)
        assert value(found, "hearth_connections") == 2
        assert value(found, "hearth_room_members", room="circle", state="present") == 2
        assert value(found, "hearth_room_members", room="circle", state="away") == 1
        assert value(found, "hearth_room_members", room="other", state="present") == 0
        assert value(found, "hearth_client_messages_total", type="envelope") == 1
        assert value(found, "hearth_client_messages_total", type="join") == 3
        assert value(found, "hearth_refusals_total", code="forbidden") == 1
        assert value(found, "hearth_refusals_total", code="rate_limited") >= 1
        assert value(found, "hearth_frames_dropped_total") >= 1
        assert ("hearth_voice_frames_forwarded_total", ()) in found
        assert ("hearth_voice_frames_dropped_total", (("reason", "slow_listener"),)) in found
        assert value(found, "hearth_incidents", state="open") == 1
        assert value(found, "hearth_incidents", state="resolved") == 0
        assert value(found, "hearth_alerts_pending") == 0
        assert value(found, "hearth_broker_connected") == 1
        assert value(found, "hearth_broker_dropped_total") == 0
        assert ("hearth_info", (("broker", "memory"), ("protocol", "hearth.v1"))) in found
        assert ("process_resident_memory_bytes", ()) in found

        members = {m for c in clients for m in [c.member] if m}
        for (name, labels), _ in found.items():
            for key, label in labels:
                assert not IPV4.search(label), f"{name}{{{key}={label!r}}} looks like an IPv4"
                assert not IPV6.fullmatch(label), f"{name}{{{key}={label!r}}} looks like an IPv6"
                try:
                    ipaddress.ip_address(label)
                except ValueError:
                    pass
                else:
                    raise AssertionError(f"{name}{{{key}={label!r}}} is an address")
                assert label not in PSEUDONYMS and label not in members, (name, key, label)
        for secret in (*PSEUDONYMS, *members, "127.0.0.1", BODY):
            assert secret not in text
    finally:
        for client in clients:
            client.drop()
        await hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_alert_deliveries_are_timed_and_failures_counted() -> None:
    hearth = await live()
    try:
        hearth.metrics.observe("webhook:on-call", 0.12)
        hearth.metrics.observe("webhook:on-call", None)
        port = hearth.listeners[0].port.getHost().port
        status, text = await deferToThread(get, f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        found = samples(text)
        assert value(found, "hearth_alert_delivery_seconds_count", channel="webhook:on-call") == 1
        assert value(found, "hearth_alert_delivery_failures_total", channel="webhook:on-call") == 1
        # The Alerts shell feeds the same observer (web/alerts.py watchers).
        assert hearth.metrics.observe in hearth.alerts.watchers
    finally:
        await hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_who_may_scrape() -> None:
    hearth = await live()
    try:
        base = f"http://127.0.0.1:{hearth.listeners[0].port.getHost().port}/metrics"
        assert (await deferToThread(get, base))[0] == 200
        # Through a proxy on the same machine: anyone on the internet may have sent it.
        status, why = await deferToThread(get, base, {"X-Forwarded-For": "203.0.113.7"})
        assert status == 403 and "loopback" in why
    finally:
        await hearth.service.stopService()

    token = "a-long-scrape-token-0123456789"
    hearth = await live(metrics={"token": token})
    try:
        base = f"http://127.0.0.1:{hearth.listeners[0].port.getHost().port}/metrics"
        assert (await deferToThread(get, base))[0] == 401
        assert (await deferToThread(get, base, {"Authorization": "Bearer wrong"}))[0] == 401
        status, text = await deferToThread(get, base, {"Authorization": f"Bearer {token}"})
        assert status == 200 and "hearth_connections" in text
    finally:
        await hearth.service.stopService()

    hearth = await live(metrics={"enabled": False})
    try:
        base = f"http://127.0.0.1:{hearth.listeners[0].port.getHost().port}/metrics"
        assert (await deferToThread(get, base))[0] == 404
    finally:
        await hearth.service.stopService()
