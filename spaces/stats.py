"""Counters the core keeps for /metrics (web/metrics.py reads them at scrape time).

Keyed only by message type and error code: never by member, pseudonym or
address. One dict increment per client message; nothing per recipient.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Stats:
    received: Counter[str] = field(default_factory=Counter)  # well-formed client messages, by type
    refused: Counter[str] = field(default_factory=Counter)  # error replies, by code
    frames_dropped: int = 0  # frames over a connection's rate limit (not answered one by one)
