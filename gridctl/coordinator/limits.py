"""Per-household rate limits on what the coordinator takes in (token buckets, real time).

Each enrolled household has one bucket per message kind: a reading costs a token of the
household's ``reading`` bucket, anything else one of its ``other`` bucket, so a flood of
telemetry cannot starve the same household's readings, and no household can use up another's
share. A message that finds its bucket empty is refused (``rate_limited``) before it is parsed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """Sustained rate (messages/s) and burst (messages) of one kind of message."""

    per_s: float
    burst: float


READINGS = RateLimit(per_s=1.0, burst=500.0)
"""Default for readings: a backlog of five days (480 intervals) resent at once is taken in."""
OTHER = RateLimit(per_s=5.0, burst=100.0)
"""Default for telemetry and status (a controller publishes telemetry every poll, 2 s)."""


class _Bucket:
    __slots__ = ("at_s", "tokens")

    def __init__(self, tokens: float, at_s: float):
        self.tokens = tokens
        self.at_s = at_s


class RateLimiter:
    """Token buckets per (household, kind); ``clock`` is monotonic seconds."""

    def __init__(
        self,
        readings: RateLimit = READINGS,
        other: RateLimit = OTHER,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.limits = {"reading": readings, "other": other}
        self.clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def allow(self, household: str, kind: str) -> bool:
        """Take a token for one message of ``kind`` from ``household``; False: refuse it.

        Call it for enrolled households only: the buckets are kept per household."""
        k = "reading" if kind == "reading" else "other"
        limit = self.limits[k]
        now_s = self.clock()
        b = self._buckets.get((household, k))
        if b is None:
            b = self._buckets[(household, k)] = _Bucket(limit.burst, now_s)
        b.tokens = min(limit.burst, b.tokens + (now_s - b.at_s) * limit.per_s)
        b.at_s = now_s
        if b.tokens < 1.0:
            return False
        b.tokens -= 1.0
        return True
