"""A venue with moderation plugged in: the one way the shell, tests and benchmarks build one.

The room core (spaces/venue.py) takes its crisis desk, facilitator controls,
ban list and report queue as spaces/ports.py Protocols and never imports
moderation/; this is where moderation's own are made and handed to it.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable

from hearth.moderation.bans import BanList
from hearth.moderation.controls import facilitate
from hearth.moderation.crisis import CrisisDesk
from hearth.moderation.incidents import DEFAULT_ESCALATION, Escalation, IncidentDesk
from hearth.moderation.reports import ReportQueue
from hearth.spaces.config import HearthConfig
from hearth.spaces.venue import Venue, new_member_id, new_token


def new_incident_id() -> str:
    return secrets.token_hex(6)


def moderated_venue(config: HearthConfig, *, franking_key: bytes,
                    escalation: Escalation = DEFAULT_ESCALATION, public_url: str = "",
                    rng: random.Random | None = None,
                    make_token: Callable[[], str] = new_token,
                    make_member_id: Callable[[], str] = new_member_id,
                    ticket_key: bytes | None = None) -> Venue:
    """Every room of `config`, with a crisis desk escalating by `escalation` (its alerts'
    links under `public_url`), the facilitator controls, an empty ban list and an empty
    report queue."""
    crisis = CrisisDesk(IncidentDesk(escalation), new_id=new_incident_id,
                        public_url=public_url)
    return Venue(config, franking_key=franking_key, crisis=crisis, bans=BanList(),
                 reports=ReportQueue(), controls=facilitate, rng=rng, make_token=make_token,
                 make_member_id=make_member_id, ticket_key=ticket_key)
