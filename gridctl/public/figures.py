"""Community figures the ledger cannot derive from readings, estimated from telemetry.

The coordinator and the in-process simulation call ``telemetry_figures`` with the telemetry
the controllers reported at an interval's end, and pass what it returns to the settler for the
interval's public aggregates (``gridctl.settlement.aggregates``). Telemetry shows powers, not
energies: each household's power as reported within one interval of the interval's end is
taken as held over the interval (the in-process run shows the ended interval's powers at its
end, as its devices do; a real controller's snapshot is an estimate). Curtailment is not in
telemetry (a PV inverter does not report the power it could have produced), so it stays None.
"""

from __future__ import annotations

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


def telemetry_figures(
    telemetry: Iterable[Telemetry], interval: int, interval_s: int = INTERVAL_S
) -> CommunityFigures:
    """Demand and PV energy of ``interval`` from each household's telemetry dated within one
    interval of its end, Wh (≥ 0), with the number of households each covers (PV: those
    reporting a PV inverter's power). Telemetry older or newer, or from a controller with a
    faulted device (whose power is then unknown), is not counted."""
    end_s = interval_start(interval + 1, interval_s).timestamp()
    now = [t for t in telemetry if abs(t.t.timestamp() - end_s) <= interval_s and not t.faulted]
    dt_h = interval_s / 3600.0
    demand = [p for p in map(demand_w, now) if p is not None]
    pv = [-t.pv_p_w for t in now if t.pv_p_w is not None]
    return CommunityFigures(
        demand_wh=Figure(round(sum(demand) * dt_h), len(demand)),
        pv_wh=Figure(round(sum(pv) * dt_h), len(pv)),
    )
