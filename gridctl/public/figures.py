"""Community figures the ledger cannot derive from readings, estimated from telemetry.

The coordinator and the in-process simulation call ``interval_figures`` with the telemetry
the controllers reported at an interval's end, and pass what it returns to the settler for the
interval's public aggregates (``gridctl.settlement.aggregates``). Telemetry shows powers, not
energies: each household's power as reported within one interval of the interval's end is
taken as held over the interval (the in-process run shows the ended interval's powers at its
end, as its devices do; a real controller's snapshot is an estimate). Curtailment is not in
telemetry (a PV inverter does not report the power it could have produced), so it stays None.
The time the feeder's envelope was in force comes from the limits the caller knows the interval
had (the simulation: those its planner planned it with; the coordinator: its envelopes);
flexibility delivered has no source yet (None).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from gridctl.core import INTERVAL_S, interval_start
from gridctl.protocol import Telemetry
from gridctl.settlement.aggregates import CommunityFigures, Figure


def demand_w(t: Telemetry) -> float | None:
    """Power the household's base load and EV charging draw, W (≥ 0): grid power less PV and
    battery powers (a device not reported draws nothing). None when the grid power is unknown."""
    if t.grid_p_w is None:
        return None
    return max(t.grid_p_w - (t.pv_p_w or 0.0) - (t.battery_p_w or 0.0), 0.0)


def interval_figures(
    telemetry: Iterable[Telemetry],
    interval: int,
    feeder_limits_w: tuple[float, float],
    households: int,
    interval_s: int = INTERVAL_S,
) -> CommunityFigures:
    """The community figures of ``interval`` the ledger cannot derive from readings.

    Parameters
    ----------
    telemetry: each household's latest telemetry. Demand and PV energy, Wh (≥ 0), come from
        that dated within one interval of the interval's end, each with the number of
        households it covers (PV: those reporting a PV inverter's power); telemetry older or
        newer, or from a controller with a faulted device (its powers unsure), is not counted.
    feeder_limits_w: the feeder envelope's (import, export) limit in the interval, W (≥ 0;
        ``inf``: none). The envelope was in force the whole interval if either is finite.
    households: the households on the feeder (which its envelope covers).
    """
    end_s = interval_start(interval + 1, interval_s).timestamp()
    now = [t for t in telemetry if abs(t.t.timestamp() - end_s) <= interval_s and not t.faulted]
    dt_h = interval_s / 3600.0
    demand = [p for p in map(demand_w, now) if p is not None]
    pv = [-t.pv_p_w for t in now if t.pv_p_w is not None]
    envelope_s = interval_s if any(math.isfinite(x) for x in feeder_limits_w) else 0
    return CommunityFigures(
        demand_wh=Figure(round(sum(demand) * dt_h), len(demand)),
        pv_wh=Figure(round(sum(pv) * dt_h), len(pv)),
        envelope_s=Figure(envelope_s, households),
    )
