"""Crisis alerts end to end: help reaches facilitators and on-call, durably, in order."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.web.client import Agent, readBody

from hearth.client.websocket import HearthClient
from hearth.spaces.config import to_toml as toml_of
from tests.support.config import BASE, make_config
from tests.support.crisis import SECRET, asks_for_help, crisis, room_facilitator
from tests.support.live import caught_up, start_server, until
from tests.support.serving import ServedHearth
from tests.support.webhook_receiver import Receiver


@pytest_twisted.ensureDeferred
async def test_help_alerts_the_room_facilitator_and_on_call_and_nobody_else() -> None:
    receiver = Receiver(SECRET)
    port = receiver.listen()
    live = await start_server(make_config(crisis=crisis(port)))
    try:
        fac = await room_facilitator(live)
        person = await live.client()
        await person.join("circle", pseudonym="Quiet Otter")
        bystander = await live.client()
        await bystander.join("circle")
        person.send({"type": "help", "ref": "h"})
        received = await person.expect("help_received")
        alert = await fac.next(lambda m: m["type"] == "incident" and m.get("reason") == "alert")
        assert alert["incident"]["pseudonym"] == "Quiet Otter"
        assert alert["incident"]["trigger"] == "help_button"
        await until(lambda: receiver.calls, what="the webhook")
        call = receiver.calls[0]
        assert receiver.verify(call) and call.headers["idempotency-key"]
        assert call.body["incident"] == received["incident"] and call.body["event"] == "incident.alert"
        assert "Quiet Otter" not in call.raw.decode() and "pseudonym" not in call.body
        # the acknowledgement callback from on-call
        response = await Agent(reactor).request(b"POST", call.body["ack_url"].encode())
        assert response.code == 200 and json.loads(await readBody(response))["state"] == "acknowledged"
        status = await person.expect("help_status")
        assert status["status"] == "acknowledged"
        forged = call.body["ack_url"][:-4] + "0000"
        response = await Agent(reactor).request(b"POST", forged.encode())
        assert response.code == 404
        await readBody(response)
        await caught_up(bystander)
        assert [m for m in bystander.inbox
                if m["type"] in ("incident", "help_status", "help_received")] == []
        for client in (fac, person, bystander):
            await client.close()
    finally:
        await live.hearth.service.stopService()
        await receiver.stop()


@pytest_twisted.ensureDeferred
async def test_a_receiver_that_fails_for_a_while_gets_everything_in_order() -> None:
    receiver = Receiver(SECRET, fail_first=3)
    port = receiver.listen()
    live = await start_server(make_config(crisis=crisis(port)))
    try:
        fac = await room_facilitator(live)
        people = []
        for name in ("Quiet Otter", "Calm Heron", "Brave Lark"):
            person = await live.client()
            await person.join("circle", pseudonym=name)
            person.send({"type": "help"})
            people.append((await person.expect("help_received"))["incident"])
        await until(lambda: len({c.headers["idempotency-key"] for c in receiver.calls}) == 3,
                    timeout=30, what="three deliveries")
        assert receiver.refused == 3
        assert [c.body["incident"] for c in receiver.calls] == people  # in order
        keys = [c.headers["idempotency-key"] for c in receiver.calls]
        assert len(keys) == len(set(keys))  # no duplicates here (at-least-once allows them)
        assert live.hearth.alerts.outbox.pending() == []
        await fac.close()
    finally:
        await live.hearth.service.stopService()
        await receiver.stop()


@pytest_twisted.ensureDeferred
async def test_a_pending_webhook_survives_kill_9_and_is_delivered_after_restart(
        tmp_path: Path) -> None:
    receiver = Receiver(SECRET)
    port = receiver.listen()
    await receiver.stop()  # the receiver is down when help is asked for
    config = tmp_path / "hearth.toml"
    data = {**BASE, "server": {**BASE["server"], "data_dir": str(tmp_path / "data")},
            "crisis": crisis(port)}
    config.write_text(toml_of(data))
    served = ServedHearth("--config", str(config))
    try:
        served.wait_ready()
        _, incident = await asks_for_help(f"ws://127.0.0.1:{served.port}/ws")
        journal = tmp_path / "data" / "outbox.jsonl"
        await until(lambda: journal.exists() and incident in journal.read_text(),
                    what="the outbox record")
        served.proc.send_signal(signal.SIGKILL)
        served.proc.wait(10)
    finally:
        served.stop()
    receiver.listen(port)
    again = ServedHearth("--config", str(config))
    try:
        again.wait_ready()
        await until(lambda: receiver.calls, timeout=20, what="delivery after the restart")
        assert receiver.calls[0].body["incident"] == incident and receiver.verify(receiver.calls[0])
        from hearth.moderation.journal import read_records
        from hearth.moderation.outbox import Outbox
        await until(lambda: Outbox().restore(read_records(journal), 0) == 0,
                    what="the journal to mark it done")
    finally:
        again.stop()
        await receiver.stop()


@pytest_twisted.ensureDeferred
async def test_detector_flags_carry_no_text_and_exports_hold_no_text_address_or_token(
        tmp_path: Path) -> None:
    from tests.support.live import record_frames
    said = "I have 40 pills saved and tonight is the night"
    config = make_config(server={"data_dir": str(tmp_path / "data")})
    live = await start_server(config)
    try:
        frames = record_frames(live)
        fac = await room_facilitator(live)
        person = await live.client(source_address="127.0.0.5")
        welcome = await person.join("circle", pseudonym="Quiet Otter")
        # the person's own client detector fired and the person agreed to talk
        person.send({"type": "flag", "category": "means_method", "severity": "high",
                     "pack": "en:1"})
        await person.expect("flag_received")
        alert = await fac.next(lambda m: m["type"] == "incident")
        assert alert["incident"]["trigger"] == "self_detector"
        assert alert["incident"]["rule_pack"] == "en:1"
        fac.send({"type": "incident", "incident": alert["incident"]["id"], "action": "resolve",
                  "outcome": "de_escalated"})
        await fac.next(lambda m: m["type"] == "incident" and m.get("reason") == "resolve")
        for client in (fac, person):
            await client.close()
    finally:
        await live.hearth.service.stopService()
    assert all(said.encode() not in f and b"pills" not in f for f in frames)
    out = tmp_path / "hearth.toml"
    out.write_text(toml_of({**BASE, "server": {**BASE["server"],
                                               "data_dir": str(tmp_path / "data")}}))
    result = subprocess.run([sys.executable, "-m", "hearth.web.cli", "incidents", "export", "--config",
                             str(out)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    [exported] = [json.loads(line) for line in result.stdout.splitlines()]
    assert exported["state"] == "resolved" and exported["outcome"] == "de_escalated"
    assert "member" not in exported
    raw = result.stdout + (tmp_path / "data" / "incidents.jsonl").read_text()
    for needle in ("pills", "tonight", "127.0.0.5", welcome["token"]):
        assert needle not in raw


def test_drill_passes_against_a_receiver_and_names_the_failing_hop_without_one(
        tmp_path: Path) -> None:
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    calls: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            calls.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    config = tmp_path / "hearth.toml"
    data = {**BASE, "server": {**BASE["server"], "data_dir": str(tmp_path / "data")},
            "crisis": crisis(port)}
    config.write_text(toml_of(data))
    try:
        ok = subprocess.run([sys.executable, "-m", "hearth.web.cli", "drill", "--config", str(config)],
                            capture_output=True, text=True, timeout=120)
    finally:
        httpd.shutdown()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "webhook:on-call" in ok.stdout and "Drill passed" in ok.stdout
    assert json.loads(calls[0])["test"] is True
    # now nobody listens on that port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    data["crisis"] = {**crisis(dead)}
    config.write_text(toml_of(data))
    failed = subprocess.run([sys.executable, "-m", "hearth.web.cli", "drill", "--config", str(config)],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode != 0
    assert "FAIL webhook:on-call" in failed.stdout and "Drill FAILED at: webhook:on-call" in failed.stdout


@pytest_twisted.ensureDeferred
async def test_on_call_and_admin_e_mail_through_smtp() -> None:
    from tests.support.smtp_receiver import SMTPReceiver
    smtp = SMTPReceiver()
    port = smtp.listen()
    live = await start_server(make_config(crisis={
        "email": {"smtp_host": "127.0.0.1", "smtp_port": port, "tls": "none",
                  "sender": "hearth@example.org",
                  "on_call": ["oncall@example.org"], "admin": ["admin@example.org"]}}))
    try:
        person = await live.client()
        await person.join("circle", pseudonym="Quiet Otter")
        person.send({"type": "help"})
        incident = (await person.expect("help_received"))["incident"]
        await until(lambda: smtp.messages, what="the on-call e-mail")
        mail = smtp.messages[0].decode()
        assert f"incident {incident}" in mail and "oncall@example.org" in mail
        assert "Quiet Otter" not in mail  # no identity in alerts
        await person.close()
    finally:
        await live.hearth.service.stopService()
        await smtp.stop()


# --- issue 14 -----------------------------------------------------------------------------------


def statuses(client: HearthClient) -> list[str]:
    return [m["status"] for m in client.inbox if m["type"] == "help_status"]


@pytest_twisted.ensureDeferred
async def test_each_path_says_told_only_after_a_console_received_it() -> None:
    """The detector's yes, the button, "I'm worried": "received" at once, "delivered" (a
    facilitator has been told) only after the facilitator's console says it received it."""
    live = await start_server(make_config())
    try:
        fac = await room_facilitator(live)
        person = await live.client(source_address="127.0.0.7")
        await person.join("circle", pseudonym="Quiet Otter")
        peer = await live.client(source_address="127.0.0.8")
        await peer.join("circle", pseudonym="Calm Heron")
        other = await live.client(source_address="127.0.0.9")
        await other.join("circle", pseudonym="Brave Lark")

        person.send({"type": "flag", "category": "intent", "severity": "medium",
                     "pack": "hearth-en:1.0.0"})
        incident = (await person.expect("flag_received"))["incident"]
        await fac.next(lambda m: m["type"] == "incident" and m.get("reason") == "alert")
        await caught_up(person)
        assert statuses(person) == []
        fac.send({"type": "alert_seen", "incident": incident})
        assert (await person.expect("help_status"))["status"] == "delivered"

        person.send({"type": "help"})  # the same incident, raised: a new receipt is needed
        assert (await person.expect("help_received"))["incident"] == incident
        pressed = await fac.next(lambda m: m["type"] == "incident" and m.get("cause") == "press")
        assert pressed["sound"] is True and pressed["incident"]["trigger"] == "help_button"
        await caught_up(person)
        assert statuses(person) == []
        fac.send({"type": "alert_seen", "incident": incident})
        assert (await person.expect("help_status"))["status"] == "delivered"

        peer.send({"type": "worried", "member": other.member})
        concern = (await peer.expect("concern_received"))["incident"]
        await fac.next(lambda m: m["type"] == "incident" and m["incident"]["id"] == concern)
        await caught_up(peer, other)
        assert statuses(peer) == [] and statuses(other) == []
        fac.send({"type": "alert_seen", "incident": concern})
        assert (await peer.expect("help_status")) == {"type": "help_status", "incident": concern,
                                                      "status": "delivered"}
        await caught_up(other)
        assert statuses(other) == []  # someone else's concern: not told
        for client in (fac, person, peer, other):
            await client.close()
    finally:
        await live.hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_an_empty_room_sends_a_detection_and_a_concern_to_on_call_at_once() -> None:
    receiver = Receiver(SECRET)
    port = receiver.listen()
    live = await start_server(make_config(crisis=crisis(port)))
    try:
        person = await live.client(source_address="127.0.0.7")
        await person.join("circle", pseudonym="Quiet Otter")
        peer = await live.client(source_address="127.0.0.8")
        await peer.join("circle", pseudonym="Calm Heron")
        person.send({"type": "flag", "category": "farewell", "severity": "medium"})
        flagged = (await person.expect("flag_received"))["incident"]
        await until(lambda: receiver.calls, what="the webhook for the detection")
        assert receiver.calls[0].body["incident"] == flagged
        assert (receiver.calls[0].body["cause"], receiver.calls[0].body["tier"]) == (
            "no_facilitator", 0)
        other = await live.client(source_address="127.0.0.9")
        await other.join("circle", pseudonym="Brave Lark")
        peer.send({"type": "worried", "member": other.member})
        concern = (await peer.expect("concern_received"))["incident"]
        await until(lambda: len(receiver.calls) == 2, what="the webhook for the concern")
        assert receiver.calls[1].body["incident"] == concern
        assert statuses(person) == [] and statuses(peer) == []  # nobody has received it yet
        for client in (person, peer, other):
            await client.close()
    finally:
        await live.hearth.service.stopService()
        await receiver.stop()


@pytest_twisted.ensureDeferred
async def test_join_help_leave_in_a_loop_pages_on_call_once() -> None:
    receiver = Receiver(SECRET)
    port = receiver.listen()
    live = await start_server(make_config(crisis=crisis(port)))
    try:
        incidents = set()
        for n in range(6):
            person = await live.client(source_address="127.0.0.66")
            await person.join("circle", pseudonym=f"Loop Person {n}")
            person.send({"type": "help"})
            incidents.add((await person.expect("help_received"))["incident"])
            await person.close()
        assert len(incidents) == 1
        fresh = await live.client(source_address="127.0.0.7")  # another address: at once
        await fresh.join("circle", pseudonym="Quiet Otter")
        fresh.send({"type": "help"})
        own = (await fresh.expect("help_received"))["incident"]
        await until(lambda: own in {c.body["incident"] for c in receiver.calls},
                    what="the other address's first press")
        looped = [c for c in receiver.calls if c.body["incident"] in incidents]
        assert len(looped) == 1, [c.body for c in receiver.calls]
        await fresh.close()
    finally:
        await live.hearth.service.stopService()
        await receiver.stop()
