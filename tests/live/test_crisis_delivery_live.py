"""Escalation reaches on-call within seconds or says it did not: an on-call alert that does
not get through is told, at its first failed try, to the facilitators who have the incident
in front of them — the room's as well as those on duty — and again when it keeps failing;
when it gets through at last, they hear that too (the person hears nothing of on-call)."""

from __future__ import annotations

import pytest_twisted

from tests.support.config import make_config
from tests.support.crisis import SECRET, asks_for_help, crisis, room_facilitator
from tests.support.live import start_server, until
from tests.support.webhook_receiver import Receiver


@pytest_twisted.ensureDeferred
async def test_an_on_call_alert_that_fails_is_told_to_the_room_s_facilitator_at_once() -> None:
    receiver = Receiver(SECRET, fail_first=1000)  # on-call's receiver answers 503
    port = receiver.listen()
    live = await start_server(make_config(crisis=crisis(port)))
    try:
        fac = await room_facilitator(live)
        person, incident = await asks_for_help(live.ws_url)
        first = await fac.next(lambda m: m["type"] == "delivery_failing", timeout=5)
        assert (first["incident"], first["channel"], first["attempts"]) == (
            incident, "webhook:on-call", 1)
        # it goes on failing (1 s backoff here): told again, once, when it keeps failing
        again = await fac.next(lambda m: m["type"] == "delivery_failing", timeout=15)
        assert (again["incident"], again["attempts"]) == (incident, 5)
        await until(lambda: receiver.refused >= 6, what="a sixth try")
        assert not [m for m in fac.inbox if m["type"] == "delivery_failing"]
        # the person is never told anything about on-call
        assert not [m for m in person.inbox if m["type"] == "delivery_failing"]
        for client in (fac, person):
            await client.close()
    finally:
        await live.hearth.service.stopService()
        await receiver.stop()


@pytest_twisted.ensureDeferred
async def test_an_on_call_step_with_nowhere_to_go_is_said_at_once() -> None:
    """No webhook, no PagerDuty, no e-mail: the on-call step pages nobody — and the
    facilitators hear so at once, instead of believing on-call was told."""
    config = make_config()
    assert not config.crisis.webhooks and not config.crisis.pagerduty
    assert config.crisis.email is None
    live = await start_server(config)
    try:
        fac = await room_facilitator(live)
        person, incident = await asks_for_help(live.ws_url)
        told = await fac.next(lambda m: m["type"] == "delivery_failing", timeout=5)
        assert (told["incident"], told["channel"], told["attempts"]) == (
            incident, "webhook:primary", 0)
        for client in (fac, person):
            await client.close()
    finally:
        await live.hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_an_on_call_alert_that_failed_then_got_through_is_told_to_the_consoles() -> None:
    receiver = Receiver(SECRET, fail_first=2)  # 503 twice, then on-call takes it
    port = receiver.listen()
    live = await start_server(make_config(crisis=crisis(port)))
    try:
        fac = await room_facilitator(live)
        person, incident = await asks_for_help(live.ws_url)
        failing = await fac.next(lambda m: m["type"] == "delivery_failing", timeout=5)
        assert (failing["incident"], failing["attempts"]) == (incident, 1)
        restored = await fac.next(lambda m: m["type"] == "delivery_restored", timeout=15)
        assert restored == {"type": "delivery_restored", "channel": "webhook:on-call",
                            "incident": incident, "attempts": 2}
        assert [c.body["incident"] for c in receiver.calls] == [incident]
        # nothing false to the person: nothing about on-call at all, and no "told"
        person.send({"type": "no_such_type", "ref": "sync-1"})  # a round trip: all is in
        await person.next(lambda m: m.get("ref") == "sync-1")
        assert not [m for m in person.inbox if m["type"].startswith("delivery_")]
        assert not [m for m in person.inbox if m["type"] == "help_status"]
        for client in (fac, person):
            await client.close()
    finally:
        await live.hearth.service.stopService()
        await receiver.stop()
