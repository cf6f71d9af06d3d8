"""Token buckets with injected time: how every per-connection and per-op limit is counted."""

from __future__ import annotations


class TokenBucket:
    """`rate` tokens per second, holding at most `burst`; `allow(now)` spends one."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def allow(self, now: float, cost: float = 1.0) -> bool:
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False
