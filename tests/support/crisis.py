"""Crisis test helpers: a crisis config with a webhook, someone pressing help, and the
crisis desk through a sans-IO venue (CrisisWorld)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.client.websocket import HearthClient
from hearth.spaces.addresses import ClientAddress
from hearth.spaces.connection import Connection
from hearth.spaces.effects import Dispatch, DutyBroadcast, Effect, Reply, Send
from tests.support.world import World, reply, wire

if TYPE_CHECKING:
    from tests.support.live import LiveServer

ROOT = Path(__file__).resolve().parents[2]
SECRET = "a-long-shared-webhook-secret"
SECOND_TIER = ('after = 30\nif_not = "acknowledged"\n'
               'notify = ["room_facilitators", "on_duty_facilitators"]')


def crisis(port: int, **extra: Any) -> dict[str, Any]:
    return {"webhooks": [{"name": "on-call", "url": f"http://127.0.0.1:{port}/hook",
                          "secret": SECRET}], "max_backoff_seconds": 1.0, **extra}


async def room_facilitator(live: LiveServer) -> HearthClient:
    """A facilitator (account "ana") in the circle of a live server, not on duty; a name of
    its own: a generated one may be one a test then chooses (pseudonym_taken)."""
    node = live.hearth.node
    fac = await live.client()
    await fac.join("circle", pseudonym="Ana Host",
                   ticket=node.venue.issue_ticket("facilitator", node.clock(), account="ana"))
    return fac


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


# --- the sans-IO crisis desk, through the venue ---------------------------------------------

ADDRESS_SEED = b"s" * 32


class CrisisWorld(World):
    """A venue on a fake clock, with facilitators and people who join from an address."""

    def facilitator(self, account: str = "ana") -> tuple[Connection, str]:
        ticket = self.venue.issue_ticket("facilitator", self.clock.seconds(), account=account)
        conn, welcome = self.join(ticket=ticket, pseudonym=account.title() + " Host")
        return conn, welcome["member"]

    def person(self, pseudonym: str, address: str | None = "10.0.0.7") -> tuple[Connection, str]:
        conn = self.connect()
        if address is not None:
            conn.address = ClientAddress(ADDRESS_SEED, address)
        effects = self.send(conn, {"type": "join", "room": "circle", "pseudonym": pseudonym})
        return conn, str(reply(effects, "welcome")["member"])

    def later(self, seconds: float) -> list[Effect]:
        """Time passes (in one-second ticks, as the node ticks): every effect meanwhile."""
        effects: list[Effect] = []
        for _ in range(int(seconds)):
            self.clock.advance(1)
            effects += self.tick()
        return effects


def dispatches(effects: list[Effect], channel: str = "webhook:primary") -> list[dict[str, Any]]:
    return [dict(e.payload) for e in effects if isinstance(e, Dispatch) and e.channel == channel]


def sent(effects: list[Effect], member: str, kind: str) -> list[dict[str, Any]]:
    return [m for m in (wire(e.message) for e in effects if isinstance(e, Send)
                        and e.member == member) if m["type"] == kind]


def duty(effects: list[Effect]) -> list[dict[str, Any]]:
    return [wire(e.message) for e in effects if isinstance(e, DutyBroadcast)]


def replies(effects: list[Effect], kind: str) -> list[dict[str, Any]]:
    return [m for m in (wire(e.message) for e in effects if isinstance(e, Reply))
            if m["type"] == kind]
