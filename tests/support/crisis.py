"""Crisis test helpers: a crisis config with a webhook, and someone pressing help."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hearth.spaces.client import HearthClient

ROOT = Path(__file__).resolve().parents[2]
SECRET = "a-long-shared-webhook-secret"
SECOND_TIER = ('after = 30\nif_not = "acknowledged"\n'
               'notify = ["room_facilitators", "on_duty_facilitators"]')


def crisis(port: int, **extra: Any) -> dict[str, Any]:
    return {"webhooks": [{"name": "on-call", "url": f"http://127.0.0.1:{port}/hook",
                          "secret": SECRET}], "max_backoff_seconds": 1.0, **extra}


async def asks_for_help(url: str, pseudonym: str = "Quiet Otter") -> tuple[HearthClient, str]:
    """Someone joins the circle at `url` and presses help: the client and the incident id."""
    person = await HearthClient.connect(url)
    await person.join("circle", pseudonym=pseudonym)
    person.send({"type": "help"})
    return person, (await person.expect("help_received"))["incident"]


def quick_crisis(tmp: Path, second_tier: str = SECOND_TIER.replace("30", "1", 1)) -> str:
    """The shipped crisis data, with the help button's second tier replaced (by default:
    on-duty facilitators told after 1 s instead of 30 s)."""
    target = tmp / "crisis"
    shutil.copytree(ROOT / "config" / "crisis", target)
    escalation = target / "escalation.toml"
    text = escalation.read_text()
    assert SECOND_TIER in text
    escalation.write_text(text.replace(SECOND_TIER, second_tier, 1))
    return str(target)
