"""A flexibility request from the grid operator: hold a target's import (or export) at or below
a limit over a window, for a payment per kWh of flexibility delivered.

Recorded apart from the envelope it also sets (``envelope.Limit``) so the community can later
measure the response against its baseline and pay the households that made it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gridctl.public.envelope import Limit


@dataclass(frozen=True)
class FlexEvent:
    """One request of one event on one target (``envelope.FEEDER`` or a household id).

    start_s / end_s: the window the limit binds in (after any ramp), epoch s, UTC.
    import_max_w / export_max_w: the limit asked for, W ≥ 0 (``inf``: no limit that way).
    price_per_kwh: the payment per kWh delivered, currency units (≥ 0).
    """

    event_id: str
    target: str
    start_s: float
    end_s: float
    import_max_w: float = math.inf
    export_max_w: float = math.inf
    price_per_kwh: float = 0.0

    def sets(self, limit: Limit) -> bool:
        """Whether ``limit`` is the envelope this request sets (same target, window after the
        ramp, and limits)."""
        return (
            limit.target == self.target
            and limit.start_s + limit.ramp_s == self.start_s
            and limit.end_s == self.end_s
            and limit.import_max_w == self.import_max_w
            and limit.export_max_w == self.export_max_w
        )
