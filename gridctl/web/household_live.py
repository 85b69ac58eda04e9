"""Each enrolled household's live telemetry and plan, as the web app receives them over MQTT
(broker user ``web`` reads both, retained), kept in memory only and shown to that household
(and the operator) alone, never on a public page or stream.

Bounded: only the households enrolled in the coordinator's configuration are kept (at most
``MAX_HOUSEHOLDS``), one telemetry and one plan each; a message for any other household, one
that ``protocol.decode`` refuses (too large, not JSON, NaN, a bad field, another household's
on a topic) or a telemetry timestamp too far ahead of the clock is refused and counted, and the
service goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gridctl.protocol import Decoded, PlanMessage, RejectCounter, Telemetry
from gridctl.web.wakeup import Wakeup

MAX_HOUSEHOLDS = 100_000
"""Households whose live state is kept at most (the configuration's limit)."""
MAX_AHEAD_S = 300.0
"""A telemetry stamped further ahead of the web's clock than this, s, is refused."""
UNKNOWN = "unknown_household"
"""Reject reason: a household the coordinator's configuration does not enrol."""
FUTURE = "clock_skew"
"""Reject reason: a telemetry stamped too far ahead of the clock."""


class HouseholdLive:
    """The latest telemetry and plan of each enrolled household, and a wake-up on change.

    enrolled: the households to keep (others are refused). clock: epoch seconds now.
    rejects: where refused messages are counted."""

    def __init__(self, enrolled: Iterable[str], clock: Callable[[], float],
                 rejects: RejectCounter) -> None:  # fmt: skip
        self.enrolled = frozenset(enrolled)
        if len(self.enrolled) > MAX_HOUSEHOLDS:
            raise ValueError(f"{len(self.enrolled)} households > {MAX_HOUSEHOLDS}")
        self.clock, self.rejects = clock, rejects
        self.telemetry: dict[str, Telemetry] = {}
        self.plans: dict[str, PlanMessage] = {}
        self.changed = Wakeup()
        """Set when some household's state changes (``start`` it in the event loop)."""

    def clear(self, household: str, kind: str) -> None:
        """Forget a household's retained ``kind`` (an empty retained message clears it)."""
        store = self.telemetry if kind == "telemetry" else self.plans
        if store.pop(household, None) is not None:
            self.changed.set()

    def take(self, topic: str, d: Decoded) -> bool:
        """Keep a decoded telemetry or plan of an enrolled household unless it is older than
        the one kept; False (counted) for any other household or a telemetry stamped too far
        ahead."""
        h, m = d.household, d.message
        if h is None or not isinstance(m, Telemetry | PlanMessage):
            return False
        if h not in self.enrolled:
            self.rejects.refuse(UNKNOWN, topic, f"{h!r} is not enrolled in this community")
            return False
        if isinstance(m, Telemetry):
            ahead_s = m.t.timestamp() - self.clock()
            if ahead_s > MAX_AHEAD_S:
                self.rejects.refuse(FUTURE, topic, f"telemetry {ahead_s:.0f} s in the future")
                return False
            old = self.telemetry.get(h)
            if old is not None and m.t < old.t:  # QoS 0 may arrive out of order
                return False
            self.telemetry[h] = m
        else:
            old_plan = self.plans.get(h)
            if old_plan is not None and m.issued < old_plan.issued:
                return False
            self.plans[h] = m
        self.changed.set()
        return True
