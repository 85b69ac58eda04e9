"""§14a dimming: every controllable device keeps 4.2 kW (or its whole wish), never 0; a cap
on the household's sum is water-filled among its devices."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridctl.public.dimming import MIN_14A_W, allowed_w, dimmed_household_w, shares_w
from gridctl.public.envelope import FEEDER, Envelopes, Limit


def test_dimmed_to_the_guarantee_each_device_keeps_4_2_kw_or_its_wish() -> None:
    got = allowed_w(np.array([11_000.0, 3_000.0, 0.0]), 0.0)
    assert got.tolist() == [MIN_14A_W, 3_000.0, 0.0]


def test_a_cap_is_water_filled_and_never_cuts_below_the_guarantee() -> None:
    # 12 kW between a 11 kW charger and a 2 kW battery: the battery keeps its wish
    assert shares_w(np.array([11_000.0, 2_000.0]), 12_000.0).tolist() == [10_000.0, 2_000.0]
    assert allowed_w(np.array([11_000.0, 2_000.0]), 12_000.0).tolist() == [10_000.0, 2_000.0]
    # 6 kW for two 11 kW chargers: 3 kW shares, raised to 4.2 kW each (the EMS total of
    # BK6-22-300, 7.56 kW, is not used: it would leave one of them under 4.2 kW)
    assert allowed_w(np.array([11_000.0, 11_000.0]), 6_000.0).tolist() == [MIN_14A_W] * 2


@given(
    st.lists(st.floats(0, 50_000), min_size=1, max_size=5),
    st.floats(0, 100_000),
)
def test_rule_holds_for_any_wishes_and_cap(wishes: list[float], cap_w: float) -> None:
    wish = np.array(wishes)
    share = shares_w(wish, cap_w)
    got = allowed_w(wish, cap_w)
    assert share.sum() == pytest.approx(min(cap_w, wish.sum()), abs=1e-6)
    assert (got <= wish + 1e-9).all()
    assert (got >= np.minimum(wish, MIN_14A_W) - 1e-9).all()  # the guarantee
    assert ((wish <= 0) | (got > 0)).all()  # never 0 for a device that wants power
    # the sum keeps to the cap, or to the guarantees where they need more
    guaranteed_w = np.minimum(wish, MIN_14A_W).sum()
    assert got.sum() <= max(min(cap_w, wish.sum()), guaranteed_w) + 1e-6


def test_a_dimmed_household_raises_a_waiting_car_to_its_minimum() -> None:
    ev, bat = dimmed_household_w(
        ev_w=np.array([0.0, 11_000.0, 0.0, 2_000.0]),
        ev_floor_w=np.array([MIN_14A_W, MIN_14A_W, 0.0, 2_000.0]),
        battery_w=np.array([5_000.0, -3_000.0, 5_000.0, 0.0]),
        cap_w=0.0,
    )
    # the plan's 0 for a car that wants power becomes 4.2 kW; a car that wants nothing stays
    # at 0; a car that can take only 2 kW gets its 2 kW; a discharging battery is not dimmed
    assert ev.tolist() == [MIN_14A_W, MIN_14A_W, 0.0, 2_000.0]
    assert bat.tolist() == [MIN_14A_W, -3_000.0, MIN_14A_W, 0.0]


def test_envelopes_dim_households_and_the_feeder_dims_them_all() -> None:
    env = Envelopes()
    env.update("vtn", [Limit("h1", 900.0, 2700.0, controllable_max_w=8000.0),
                       Limit(FEEDER, 1800.0, 3600.0, controllable_max_w=0.0),
                       Limit("h2", 0.0, 3600.0, import_max_w=5000.0)], now_s=0.0, poll_s=10.0)  # fmt: skip
    cap = env.dimming(["h1", "h2"], interval=0, n_t=5, now_s=0.0, interval_s=900)
    inf = math.inf
    assert cap.tolist() == [[inf, 8000.0, 0.0, 0.0, inf], [inf, inf, 0.0, 0.0, inf]]
    # an import limit is not a dimming, and a dimming limits no import
    assert env.limits("h1", 900.0, 1800.0, now_s=0.0) == (inf, inf)
    # a silent source dims nobody
    assert np.isinf(env.dimming(["h1"], 0, 5, now_s=100.0, interval_s=900)).all()
    with pytest.raises(ValueError, match="≥ 0"):
        Limit("h1", 0.0, 1.0, controllable_max_w=-1.0)
