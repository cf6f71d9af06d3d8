"""A help press across a server restart, with the file-backed data directory: the incident
and the press's answer are saved with the room at the graceful stop, so after the restart
the person's page, resending the press it never had an answer to, gets the same incident
(not a second one), and a new press joins it; escalation goes on from where it was."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest_twisted

from hearth.client.websocket import HearthClient
from tests.support.config import config_file
from tests.support.serving import ServedHearth


@pytest_twisted.ensureDeferred
async def test_a_press_is_one_incident_across_a_restart_and_its_resend_is_answered_the_same(
        tmp_path: Path) -> None:
    config = config_file(tmp_path)
    served = ServedHearth("--config", str(config))
    try:
        served.wait_ready()
        person = await HearthClient.connect(f"ws://127.0.0.1:{served.port}/ws")
        welcome = await person.join("circle", pseudonym="Quiet Otter")
        person.send({"type": "help", "id": "press-1", "ref": "help-1"})
        incident = (await person.expect("help_received"))["incident"]
        served.proc.send_signal(signal.SIGTERM)
        code, _ = await person._with_timeout(person.closed, 10.0, "the server's close")
        assert code == 1001
        assert await served.exited() == 0
    finally:
        served.stop()

    again = ServedHearth("--config", str(config))
    try:
        again.wait_ready()
        back = await HearthClient.connect(f"ws://127.0.0.1:{again.port}/ws")
        resumed = await back.resume(welcome["token"])
        assert resumed["member"] == welcome["member"]
        # the page never had the answer: it sends the same press again
        back.send({"type": "help", "id": "press-1", "ref": "help-2"})
        assert await back.expect("help_received") == {"type": "help_received",
                                                      "incident": incident, "ref": "help-2"}
        # a new press after the restart joins the same incident: still one request
        back.send({"type": "help", "id": "press-2", "ref": "help-3"})
        assert (await back.expect("help_received"))["incident"] == incident
        await back.close()
    finally:
        assert again.stop() in (0, -15)
    assert "Traceback" not in served.output() + again.output()
