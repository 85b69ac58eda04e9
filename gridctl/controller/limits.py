"""Local limits: every setpoint a controller writes is bounded by the minimum of all limits.

Powers in W, load convention (> 0 drawn from the grid). ``other_w`` is the household's grid
power without the device being set. Envelope bounds are ≥ 0; ``math.inf`` means none.
"""

from __future__ import annotations

import math

from gridctl.controller.config import Limits
from gridctl.core import V_NOMINAL_V, ev_phases
from gridctl.protocol import PlanStep

EV_MIN_A = 6.0
"""Smallest charging current IEC 61851 allows; below it a car pauses."""


def ev_min_w(p_max_w: float | None) -> float:
    """Smallest charging power of a ``p_max_w`` (W) charger (IEC 61851: 6 A per phase), W (0:
    none)."""
    return 0.0 if p_max_w is None else EV_MIN_A * V_NOMINAL_V * ev_phases(p_max_w)


def _min(*values: float | None) -> float:
    return min((v for v in values if v is not None), default=math.inf)


def envelope_w(limits: Limits, step: PlanStep | None) -> tuple[float, float]:
    """(import_max_w, export_max_w) at the connection: the smallest of main fuse, standing
    grid-operator envelope and the plan step's envelope."""
    fuse_w = limits.fuse_w
    imp = _min(fuse_w, limits.import_max_w, step.import_max_w if step else None)
    exp = _min(fuse_w, limits.export_max_w, step.export_max_w if step else None)
    return imp, exp


def battery_setpoint_w(
    wanted_w: float, rated_w: float, other_w: float | None, import_max_w: float, export_max_w: float
) -> float:
    """The battery power closest to ``wanted_w`` within its rating and the envelope.

    With the rest of the household unknown (``other_w`` None) the battery stays idle: its
    effect on the connection could not be bounded.
    """
    if other_w is None:
        return 0.0
    lo = max(-rated_w, -export_max_w - other_w)
    hi = min(rated_w, import_max_w - other_w)
    if lo > hi:  # the rest of the household alone breaks the envelope: push back hardest
        return -rated_w if other_w > import_max_w else rated_w
    return min(max(wanted_w, lo), hi)


def ev_current_a(
    wanted_w: float,
    max_current_a: float,
    other_w: float | None,
    import_max_w: float,
    phases: int = 3,
) -> float:
    """Charging current per phase, A: the wanted power within the station's maximum and the
    import envelope (unknown rest of the household: the envelope counts as fully used by it
    only if finite); 0 when that leaves less than the 6 A minimum."""
    room_w = import_max_w - (other_w if other_w is not None else 0.0)
    if other_w is None and math.isfinite(import_max_w):
        room_w = 0.0
    amps = min(wanted_w, room_w) / (phases * V_NOMINAL_V)
    amps = min(amps, max_current_a)
    return amps if amps >= EV_MIN_A else 0.0


def pv_limit_w(other_w: float | None, export_max_w: float) -> float:
    """Largest PV output, W (≥ 0), that keeps the export within the envelope; ``other_w`` is
    the household without PV (unknown: counted as 0, so export stays bounded)."""
    if math.isinf(export_max_w):
        return math.inf
    return max(export_max_w + (0.0 if other_w is None else other_w), 0.0)
