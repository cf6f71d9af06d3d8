"""`hearth drill`: a labelled test incident through the whole alert chain, hop by hop.

It runs its own short-lived Hearth on loopback with this config's crisis
wiring (webhooks, secrets, e-mail) and a throw-away data directory, so a
running deployment is not touched and its outbox never sees the drill. Each
hop is timed; a hop that does not complete in time fails the drill, named.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer

HOP_TIMEOUT = 20.0


async def run_drill(config: Any, reactor: Any, out: Any) -> int:
    from hearth.client.websocket import HearthClient
    from hearth.web.service import make_hearth

    scratch = Path(tempfile.mkdtemp(prefix="hearth-drill-"))
    source = Path(config.server.data_dir) / "secrets.json"
    if source.exists():
        shutil.copy(source, scratch / "secrets.json")
    drill_config = dataclasses.replace(
        config, server=dataclasses.replace(config.server, data_dir=str(scratch)))
    hearth = make_hearth(drill_config, reactor, ["tcp:0:interface=127.0.0.1"])
    hearth.service.startService()
    failures: list[str] = []
    start = time.monotonic()

    def hop(name: str, ok: bool, detail: str = "") -> None:
        ms = (time.monotonic() - start) * 1000
        out.write(f"  {'ok  ' if ok else 'FAIL'} {name:<34} {ms:8.0f} ms  {detail}\n")
        if not ok:
            failures.append(name)

    try:
        await hearth.when_listening()
        port = hearth.listeners[0].port.getHost().port
        url = f"ws://127.0.0.1:{port}/ws"
        node = hearth.node
        room = drill_config.rooms[0].id
        out.write(f"Hearth drill: a TEST incident in room {room!r}\n")
        facilitator = await HearthClient.connect(url)
        await facilitator.join(room, ticket=node.venue.issue_ticket("facilitator", node.clock(),
                                                                    account="drill"))
        on_duty = await HearthClient.connect(url)
        await on_duty.join(room, ticket=node.venue.issue_ticket("facilitator", node.clock(),
                                                                account="drill-on-duty"))
        on_duty.send({"type": "duty", "on": True})
        await on_duty.expect("duty")
        person = await HearthClient.connect(url)
        await person.join(room, pseudonym="Drill Participant")
        hop("participant and facilitators joined", True)

        delivered: dict[str, float] = {}
        waiters: dict[str, defer.Deferred[None]] = {}

        def on_delivered(item: Any, _: float) -> None:
            delivered.setdefault(item.channel, time.monotonic())
            d = waiters.pop(item.channel, None)
            if d is not None:
                d.callback(None)
        hearth.alerts.on_delivered = on_delivered

        venue = node.venue
        member = venue.rooms[room].members[person.member or ""]
        started = time.monotonic()
        node.apply(None, venue.crisis.open(venue.rooms[room], member, trigger="drill",
                                           severity="high", category="help_request",
                                           rule_pack=None, now=node.clock(), ref=None, test=True))
        for client, name in ((facilitator, "console alert (room facilitators)"),
                             (on_duty, "on-duty facilitators")):
            try:
                message = await client.next(lambda m: m["type"] == "incident", HOP_TIMEOUT)
                hop(name, message["incident"]["test"] is True)
            except Exception as err:
                hop(name, False, type(err).__name__)
        crisis = drill_config.crisis
        channels = [f"webhook:{h.name}" for h in crisis.webhooks]
        channels += [f"pagerduty:{s.name}" for s in crisis.pagerduty]
        if crisis.email is not None:
            channels += [c for c, wanted in (("email:primary", crisis.email.on_call),
                                             ("email:secondary", crisis.email.on_call),
                                             ("email:admin", crisis.email.admin)) if wanted]
        if not crisis.webhooks and not crisis.pagerduty:
            hop("on-call webhook", False,
                "none configured in [[crisis.webhooks]] or [[crisis.pagerduty]]")
        for channel in channels:
            if channel not in delivered:
                waiters[channel] = d = defer.Deferred()
                d.addTimeout(HOP_TIMEOUT, reactor)
                try:
                    await d
                except defer.TimeoutError:
                    pending = hearth.alerts.outbox.pending(channel)
                    tries = pending[0].attempts if pending else 0
                    hop(channel, False, f"not delivered after {HOP_TIMEOUT:.0f} s "
                                        f"({tries} failed attempts)")
                    continue
            hop(channel, True, f"{(delivered[channel] - started) * 1000:.0f} ms after opening")
        incident = next(iter(venue.crisis.desk.incidents))
        facilitator.send({"type": "incident", "incident": incident, "action": "resolve",
                          "outcome": "test"})
        resolved = await facilitator.next(lambda m: m["type"] == "incident"
                                          and m.get("reason") == "resolve", HOP_TIMEOUT)
        hop("resolved as a test", resolved["incident"]["outcome"] == "test")
        for client in (facilitator, on_duty, person):
            await client.close()
    finally:
        await hearth.service.stopService()
        shutil.rmtree(scratch, ignore_errors=True)
    if failures:
        out.write(f"Drill FAILED at: {', '.join(failures)}\n")
        return 1
    out.write("Drill passed: every hop answered.\n")
    return 0
