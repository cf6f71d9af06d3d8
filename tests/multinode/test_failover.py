"""Failover without loss, with real processes: three `hearth serve` nodes on one
redis-server, E2EE members who stay (they resume and send again what was not
acknowledged), and a fault — the room's node killed (with a help press just before,
the on-call webhook failing at first), Redis killed and restarted empty, Redis paused.
The fault suite (python -m bench.faults) runs the same thing bigger and repeated."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from bench import faults


def no_loss(result: dict[str, Any]) -> None:
    assert result["said"] > 30, result  # traffic actually flowed
    assert result["lost"] == 0 and result["duplicated"] == 0 and result["unacked"] == 0, result
    assert result["reordered"] == 0 and result["gone"] == [], result  # nobody shut out


@pytest.mark.parametrize("offset_ms", [0, 10, 100, 1000])
@pytest_twisted.ensureDeferred
async def test_the_room_s_node_killed_after_a_help_press_loses_nothing(offset_ms: int) -> None:
    """SIGKILL of the node that runs the room 0, 10, 100 or 1,000 ms after a member on
    another node presses help, while the webhook answers 503 to its first calls: every
    member is back with the same pseudonym (or the run reports it gone), no message is lost
    or shown twice, the alert is delivered once by Idempotency-Key, and its second tier
    fires on time from the node that took the room over."""
    result = await faults.run("node", offset_ms, rooms=1, per_node=2, after=4.0)
    no_loss(result)
    assert result["resumes"] >= 6  # the killed node's members, and the room's on the others
    alerts = result["alerts"]
    assert alerts["webhook_refused"] == faults.HOOK_FAILS
    assert alerts["first_alert_keys"] == 1 and len(alerts["incidents"]) == 1, alerts
    assert alerts["second_tier_keys"] == 1, alerts
    # the second tier is due 8 s after the press; give the takeover and a loaded machine 6 s
    assert faults.SECOND_TIER - 0.5 <= alerts["second_tier_after_s"] <= faults.SECOND_TIER + 6
    # measured; the goal on an idle loopback is 2 s (docs/scaling.md has the figures)
    assert result["recovery_s"] < 8, result


@pytest.mark.parametrize("fault", ["redis", "partition"])
@pytest_twisted.ensureDeferred
async def test_redis_restarted_empty_or_paused_loses_nobody(fault: str) -> None:
    """Redis killed and restarted empty (or paused, a partition between every node and
    Redis) for two seconds, members on every node talking meanwhile: nobody is shut out
    (never session_expired), what was said meanwhile is delivered, and they keep talking."""
    result = await faults.run(fault, rooms=1, per_node=2, after=5.0)
    no_loss(result)
    assert result["recovery_s"] < 10, result
