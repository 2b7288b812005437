"""Per-source-IP token buckets for `/postback`, in process memory.

Off by default (a rate of 0): an advertiser's server may fire in bursts, and a refused
postback is a lost sale unless it is retried. With a rate R, each IP may send R per
second with bursts of up to 2 s worth; buckets idle for a minute are forgotten.
"""

from __future__ import annotations

import math


class RateLimiter:
    def __init__(self, per_second: float):
        self.rate = per_second
        self.burst = max(1.0, per_second * 2)
        self._buckets: dict[str, tuple[float, int]] = {}  # ip -> (tokens, at_us)
        self._swept_at = 0

    def allow(self, ip: str, now_us: int) -> bool:
        if self.rate <= 0:
            return True
        tokens, at = self._buckets.get(ip, (self.burst, now_us))
        tokens = min(self.burst, tokens + (now_us - at) / 1_000_000 * self.rate)
        allowed = tokens >= 1
        self._buckets[ip] = (tokens - 1 if allowed else tokens, now_us)
        if now_us - self._swept_at > 60_000_000:
            self._sweep(now_us)
        return allowed

    def retry_after(self) -> int:
        """Whole seconds until one more postback is allowed."""
        return max(1, math.ceil(1 / self.rate)) if self.rate > 0 else 0

    def _sweep(self, now_us: int) -> None:
        self._swept_at = now_us
        stale = [ip for ip, (_, at) in self._buckets.items() if now_us - at > 60_000_000]
        for ip in stale:
            del self._buckets[ip]
