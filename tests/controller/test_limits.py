"""Local limits combine by minimum; setpoints never leave rating or envelope when they can stay."""

import math

from hypothesis import given
from hypothesis import strategies as st

from gridctl.controller.config import Limits
from gridctl.controller.limits import (
    EV_MIN_A,
    battery_setpoint_w,
    envelope_w,
    ev_current_a,
    pv_limit_w,
)
from gridctl.controller.loop import mean_phase_v, voltage_mv
from gridctl.protocol import PlanStep

powers = st.floats(-20_000, 20_000)
bounds = st.floats(0, 20_000) | st.just(math.inf)


def test_envelope_is_the_minimum_of_fuse_standing_envelope_and_plan() -> None:
    limits = Limits(fuse_a=25, phases=3, export_max_w=7000)
    assert envelope_w(limits, None) == (3 * 230 * 25, 7000)
    step = PlanStep(interval=1, export_max_w=3000, import_max_w=20_000)
    assert envelope_w(limits, step) == (3 * 230 * 25, 3000)
    assert envelope_w(Limits(), None) == (math.inf, math.inf)


@given(powers, st.floats(100, 10_000), powers, bounds, bounds)
def test_battery_stays_within_rating_and_envelope(wanted, rated, other, imp, exp) -> None:
    p = battery_setpoint_w(wanted, rated, other, imp, exp)
    assert -rated <= p <= rated
    lo, hi = max(-rated, -exp - other), min(rated, imp - other)
    if lo <= hi:  # the battery can keep the connection inside the envelope, so it does
        assert -exp - 1e-6 <= other + p <= imp + 1e-6
        assert p == min(max(wanted, lo), hi)  # as close to the wish as allowed
    elif other > imp:
        assert p == -rated  # it cannot: discharge hardest to relieve the over-import
    else:
        assert p == rated  # or charge hardest against the over-export


def test_battery_is_idle_when_the_rest_of_the_house_is_unknown() -> None:
    assert battery_setpoint_w(3000, 5000, None, math.inf, math.inf) == 0.0


@given(st.floats(0, 22_000), st.floats(6, 32), powers, bounds)
def test_ev_current_respects_station_envelope_and_minimum(wanted, max_a, other, imp) -> None:
    a = ev_current_a(wanted, max_a, other, imp)
    assert a == 0 or EV_MIN_A <= a <= max_a
    assert a * 3 * 230 <= wanted + 1e-6
    if a > 0:
        assert other + a * 3 * 230 <= imp + 1e-6


def test_ev_pauses_when_the_house_is_unknown_under_a_finite_envelope() -> None:
    assert ev_current_a(11_000, 16, None, 17_000) == 0.0
    assert ev_current_a(11_000, 16, None, math.inf) == 11_000 / 690


def test_pv_limit_keeps_export_inside_the_envelope() -> None:
    assert pv_limit_w(1000, 4000) == 5000  # 1 kW of own use + 4 kW export
    assert pv_limit_w(None, 4000) == 4000
    assert pv_limit_w(-1000, 500) == 0  # the battery alone already exports 1 kW
    assert pv_limit_w(0, math.inf) == math.inf


class _Meter:
    """A polled meter's values by role (what ``mean_phase_v`` reads)."""

    def __init__(self, **values: float | None):
        self.values = values

    def value(self, role: str) -> float | None:
        return self.values.get(role)


def test_a_reading_s_voltage_is_the_mean_of_known_phases_and_unknown_is_none() -> None:
    assert mean_phase_v(_Meter(v_l1_v=230.0, v_l2_v=232.0, v_l3_v=0.0)) == 231.0  # L3 not wired
    assert mean_phase_v(_Meter(v_l1_v=229.5)) == 229.5  # a single-phase meter
    assert mean_phase_v(_Meter(v_l1_v=math.nan, v_l2_v=None, v_l3_v=-5.0)) is None
    assert mean_phase_v(_Meter(p_w=800.0)) is None  # no voltage role
    assert voltage_mv((690.0, 3)) == 230_000 and voltage_mv((230.0004, 1)) == 230_000
    assert voltage_mv(None) is None and voltage_mv((2_000.0, 1)) is None  # beyond a reading
