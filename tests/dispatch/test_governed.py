"""The planner parameters a community votes: the battery reserve and the fairness rule."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gridctl.dispatch.community import CommunityProblem, Fleet, build, solve
from gridctl.dispatch.feeder_guard import FeederGuard, FeederLimits
from gridctl.dispatch.fleet import window
from gridctl.grid.feeder import load_feeder
from tests.dispatch.test_feeder_guard import N_T, _far_buses, _sunny_problem

CAP_WH = 10_000.0


def _evening_then_sun(reserve_soc: float) -> tuple[Fleet, np.ndarray]:
    """Three 10 kWh batteries facing two evening hours of load, then four sunny hours.

    h0: own minimum 5 %, 6 kWh now. h1: own minimum 70 %, 8 kWh now. h2: own minimum 5 %,
    2 kWh now (below a 50 % reserve). Returns the fleet as a plan sees it and its energy, Wh.
    """
    n_h, n_t = 3, 8
    fleet = Fleet(
        bat_e_min_wh=CAP_WH * np.array([0.05, 0.7, 0.05]), bat_e_max_wh=np.full(n_h, CAP_WH),
        bat_e0_wh=np.zeros(n_h), bat_p_max_w=np.full(n_h, 5_000.0), bat_eta=np.full(n_h, 0.95),
        ev_max_w=np.zeros((n_h, n_t)), ev_session=np.zeros((0, 3), dtype=np.int64),
        ev_need_wh=np.zeros(0), conn_max_w=np.full(n_h, 17_250.0),
    )  # fmt: skip
    fleet = window(fleet, 0, n_t, np.array([6_000.0, 8_000.0, 2_000.0]), np.zeros(0), reserve_soc)
    load_w = np.full((n_h, n_t), 500.0)
    load_w[:, :2] = 2_000.0
    pv_w = np.zeros((n_h, n_t))
    pv_w[:, 2:6] = -5_000.0
    problem = CommunityProblem(
        load_w=load_w, pv_w=pv_w, fleet=fleet, feeder_max_w=1e9, dt_h=1.0,
        import_per_kwh=0.3, feed_in_per_kwh=0.08,
    )  # fmt: skip
    e_wh = solve(problem).battery_e_wh
    assert e_wh is not None
    return fleet, e_wh


def test_no_reserve_leaves_each_battery_its_own_minimum() -> None:
    fleet, e_wh = _evening_then_sun(0.0)
    np.testing.assert_array_equal(fleet.bat_e_min_wh, CAP_WH * np.array([0.05, 0.7, 0.05]))
    # the evening is served from the batteries, down to their own minimum
    assert e_wh[0].min() < 0.5 * CAP_WH and e_wh[2].min() < 2_000.0 - 1.0
    assert (e_wh >= fleet.bat_e_min_wh[:, None] - 1e-6).all()


def test_a_reserve_is_kept_and_never_lowers_a_battery_s_own_minimum() -> None:
    fleet, e_wh = _evening_then_sun(0.5)
    tol_wh = 1e-6 * CAP_WH
    assert e_wh[0].min() >= 0.5 * CAP_WH - tol_wh  # reserve above its own 5 %
    assert e_wh[1].min() >= 0.7 * CAP_WH - tol_wh  # its own 70 % stays the floor
    # below the reserve: not forced to charge (the plan stays feasible), never discharged
    assert fleet.bat_e_min_wh[2] == 2_000.0 and e_wh[2].min() >= 2_000.0 - tol_wh
    assert e_wh[0].min() < 0.5 * CAP_WH + 100.0  # the reserve is what stopped it


@pytest.fixture(scope="module")
def rural():
    net, _ = load_feeder("1-LV-rural1--0-sw", None, Path("."))
    return net


def _shares(plan_curtail_w: np.ndarray, pv_w: np.ndarray) -> np.ndarray:
    """Share of its PV each household gives up in the first interval."""
    return plan_curtail_w[:, 0] / -pv_w[:, 0]


def test_kwp_fairness_curtails_every_roof_in_the_same_proportion(rural) -> None:
    # two homes on each of three far buses and one near the transformer, different roofs
    far = _far_buses(rural, 8)
    buses = np.concatenate([np.repeat(far[:3], 2), far[-1:]])
    n_h = len(buses)
    kwp = np.array([30.0, 18.0, 30.0, 18.0, 25.0, 12.0, 30.0])
    pv = np.tile(-1000.0 * kwp[:, None], (1, N_T))
    q = np.zeros((n_h, N_T))
    ids = [f"h{k}" for k in range(n_h)]
    shares, curtailed_w = {}, {}
    for rule in ("bus", "kwp"):
        guard = FeederGuard(rural, buses, ids, FeederLimits())
        problem = replace(_sunny_problem(n_h, pv), fairness=rule)
        plan, report = guard.plan(problem, 1000, q, check_ahead=2)
        assert report.remaining == []
        for j in range(2):
            assert guard.check(2000 + j, plan.net_w[:, j], q[:, j], None) == []
        shares[rule] = _shares(plan.curtail_w, pv)
        curtailed_w[rule] = plan.curtail_w[:, 0].sum()
    bus, kwp_share = shares["bus"], shares["kwp"]
    np.testing.assert_allclose(bus[0:6:2], bus[1:6:2], atol=1e-6)  # same bus, same share
    assert np.ptp(bus) > 0.05  # between buses it differs
    assert kwp_share.min() > 0.05
    np.testing.assert_allclose(kwp_share, kwp_share[0], atol=1e-6)
    # the price of the feeder-wide rule: roofs nearer the transformer, which help the far end
    # less, give up PV too, so more is curtailed in all
    assert curtailed_w["kwp"] > curtailed_w["bus"] + 1_000.0


def test_kwp_fairness_shares_a_transformer_export_limit_without_a_feeder_model() -> None:
    n_h = 3
    pv = np.tile(np.array([[-10_000.0], [-5_000.0], [-2_000.0]]), (1, N_T))
    pv[2, 1] = 0.0  # no sun on one roof in one interval: the others stay equal
    problem = replace(_sunny_problem(n_h, pv), feeder_max_w=6_000.0, fairness="kwp")
    plan = solve(problem)
    share = plan.curtail_w / np.where(pv < 0, -pv, 1.0)
    assert share[0, 0] > 0.3
    np.testing.assert_allclose(share[:, 0], share[0, 0], atol=1e-6)
    np.testing.assert_allclose(share[:2, 1], share[0, 1], atol=1e-6)
    assert plan.curtail_w[2, 1] == 0.0
    assert "share" in build(problem).cols.sizes
    assert "share" not in build(replace(problem, fairness="bus")).cols.sizes
