"""Feeder-safe dispatch: plans that the AC power flow proves, and the fairness rule."""

from pathlib import Path

import numpy as np
import pytest

from gridctl.dispatch.community import CommunityProblem, Fleet, solve
from gridctl.dispatch.feeder_guard import FeederGuard, FeederLimits
from gridctl.grid.feeder import load_feeder

N_T = 6


@pytest.fixture(scope="module")
def rural():
    net, _ = load_feeder("1-LV-rural1--0-sw", None, Path("."))
    return net


def _sunny_problem(n_h: int, pv_w: np.ndarray) -> CommunityProblem:
    zeros = np.zeros(n_h)
    return CommunityProblem(
        load_w=np.full((n_h, N_T), 300.0),
        pv_w=pv_w,
        fleet=Fleet(
            bat_e_min_wh=zeros, bat_e_max_wh=zeros, bat_e0_wh=zeros, bat_p_max_w=zeros,
            bat_eta=np.ones(n_h), ev_max_w=np.zeros((n_h, N_T)), ev_session=np.zeros((0, 3), dtype=np.int64),
            ev_need_wh=np.zeros(0), conn_max_w=np.full(n_h, 60_000.0),
        ),
        feeder_max_w=1e9, dt_h=0.25, import_per_kwh=0.3, feed_in_per_kwh=0.08,
    )  # fmt: skip


def _far_buses(net, n: int) -> np.ndarray:
    """The n low-voltage buses electrically farthest from the transformer (by AC voltage rise)."""
    from gridctl.grid.network import radial_network

    rn = radial_network(net)
    depth = np.zeros(rn.n)
    for k in range(1, rn.n):
        depth[k] = depth[rn.parent[k]] + rn.r_pu[k]
    return rn.bus[np.argsort(-depth)[:n]]


def test_plan_that_would_overvolt_is_tightened_until_ac_proves_it(rural) -> None:
    buses = np.repeat(_far_buses(rural, 3), 2)  # two homes on each of the three far buses
    n_h = len(buses)
    pv = np.tile(np.array([-30_000.0, -18_000.0] * 3)[:, None], (1, N_T))
    problem = _sunny_problem(n_h, pv)
    guard = FeederGuard(rural, buses, [f"h{k}" for k in range(n_h)], FeederLimits())
    q = np.zeros((n_h, N_T))
    naive = solve(problem)  # no feeder model: exports everything
    assert guard.check(0, naive.net_w[:, 0], q[:, 0], None)  # the AC flow finds violations
    plan, report = guard.plan(problem, 1000, q, check_ahead=N_T)
    assert report.remaining == [] and report.checked >= N_T
    for j in range(N_T):
        assert guard.check(2000 + j, plan.net_w[:, j], q[:, j], None) == []
    assert plan.curtail_w.sum() > 0
    # curtail no more than needed: the plan is at a limit, not far inside it
    guard.ac.run(plan.net_w[:, 0], q[:, 0])
    assert guard.ac.vm_pu(guard.network.bus).max() > 1.06 - 0.015
    # fairness: homes on the same bus give up the same share of their PV
    share = plan.curtail_w[:, 0] / -pv[:, 0]
    np.testing.assert_allclose(share[0::2], share[1::2], atol=1e-6)
    assert share.max() > 0.05


def test_transformer_overload_is_planned_away(rural) -> None:
    buses = rural.load.bus.to_numpy()
    n_h = len(buses)
    pv = np.full((n_h, N_T), -20_000.0)  # 260 kW of PV on a 160 kVA transformer
    problem = _sunny_problem(n_h, pv)
    guard = FeederGuard(rural, buses, [f"h{k}" for k in range(n_h)], FeederLimits())
    plan, report = guard.plan(problem, 0, np.zeros((n_h, N_T)), check_ahead=N_T)
    assert report.remaining == []
    guard.ac.run(plan.net_w[:, 0], np.zeros(n_h))
    assert guard.ac.loading_pct(guard.network.branch).max() <= 100.0


def test_what_the_guard_learnt_about_past_intervals_is_dropped(rural) -> None:
    """A coordinator plans for months: offsets and limits learnt for intervals already past go."""
    buses = np.repeat(_far_buses(rural, 3), 2)
    n_h = len(buses)
    problem = _sunny_problem(n_h, np.tile(np.array([-30_000.0, -18_000.0] * 3)[:, None], (1, N_T)))
    guard = FeederGuard(rural, buses, [f"h{k}" for k in range(n_h)], FeederLimits())
    q = np.zeros((n_h, N_T))
    naive = solve(problem)  # overvolts: the check learns an offset for interval 100
    assert guard.check(100, naive.net_w[:, 0], q[:, 0], np.zeros(guard.network.n))
    assert list(guard._offset) == [100]
    guard.plan(problem, 103, q, check_ahead=1)
    assert min(guard._offset | guard._flow_cap, default=103) >= 103
