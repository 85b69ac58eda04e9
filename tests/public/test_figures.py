"""Demand and PV of an interval from the telemetry reported at its end; its envelope time."""

import math
from datetime import timedelta

from gridctl.core import INTERVAL_S, interval_start
from gridctl.protocol import Telemetry
from gridctl.public.figures import demand_w, interval_figures
from gridctl.settlement.aggregates import Figure

IV = 1_980_000
END = interval_start(IV + 1)


def _t(h: str, dt_s: float = 0.0, **kw: object) -> Telemetry:
    return Telemetry(household=h, t=END + timedelta(seconds=dt_s), mode="plan", **kw)  # type: ignore[arg-type]


def test_demand_is_grid_less_pv_and_battery() -> None:
    # exporting 1 kW while PV makes 4 kW and the battery charges 1 kW: 2 kW of demand
    assert demand_w(_t("a", grid_p_w=-1000.0, pv_p_w=-4000.0, battery_p_w=1000.0)) == 2000.0
    assert demand_w(_t("a", grid_p_w=300.0)) == 300.0  # no devices reported: the grid power
    assert demand_w(_t("a", pv_p_w=-4000.0)) is None  # grid power unknown


def test_figures_count_the_households_that_reported_at_the_interval_end() -> None:
    tel = [
        _t("a", grid_p_w=1000.0),
        _t("b", 60.0, grid_p_w=-2000.0, pv_p_w=-3000.0),
        _t("c", -INTERVAL_S, grid_p_w=400.0, pv_p_w=-400.0, ev_p_w=0.0),
        _t("d", INTERVAL_S + 1, grid_p_w=9000.0, pv_p_w=-9000.0),  # after the next interval
        _t("e", -INTERVAL_S - 1, grid_p_w=9000.0),  # before the interval
        _t("f", grid_p_w=9000.0, pv_p_w=-9000.0, faulted=["battery"]),  # its powers unsure
        _t("g", pv_p_w=-1000.0),  # grid power unknown: PV only
    ]
    f = interval_figures(tel, IV, (math.inf, math.inf), 7)
    # a 1000 W, b 1000 W, c 800 W, held for 0.25 h
    assert f.demand_wh == Figure(round(2800 * 0.25), 3)
    assert f.pv_wh == Figure(round(4400 * 0.25), 3)
    assert f.curtailed_wh is None and f.flex_delivered_wh is None
    assert f.envelope_s == Figure(0, 7)  # no envelope on the feeder
    none = interval_figures([], IV, (math.inf, 8000.0), 7)
    assert none.demand_wh == Figure(0, 0) and none.envelope_s == Figure(INTERVAL_S, 7)
