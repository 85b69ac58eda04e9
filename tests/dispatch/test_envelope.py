"""Grid-operator envelopes as hard limits of the community dispatch."""

from dataclasses import replace

import numpy as np
import pytest

from gridctl.dispatch.community import EnvelopeLimits, solve
from gridctl.dispatch.home import solve_each_home
from gridctl.dispatch.horizon import Horizon
from tests.dispatch.test_community import _problem

INF = np.inf


def _env(n_t=4, imp=INF, exp=INF, f_imp=INF, f_exp=INF) -> EnvelopeLimits:
    def hh(x):
        return np.broadcast_to(np.asarray(x, float), (2, n_t)).copy()

    def ff(x):
        return np.broadcast_to(np.asarray(x, float), (n_t,)).copy()

    return EnvelopeLimits(hh(imp), hh(exp), ff(f_imp), ff(f_exp))


def test_feeder_export_limit_curtails_only_in_its_intervals() -> None:
    p = _problem(pv_w=np.array([[-9000.0] * 4, [0.0] * 4]))
    free = solve(p)
    np.testing.assert_allclose(free.grid_w, -6500.0, atol=1e-6)  # 9000 - 500 - 2000
    plan = solve(replace(p, envelope=_env(f_exp=[INF, 3000.0, 0.0, INF])))
    # the limit bounds what the exporters send, whatever the importer takes: h0 exports 3 kW,
    # h1 takes 2 kW of it, so the feeder exports 1 kW (and would export 3 kW if h1 took none)
    np.testing.assert_allclose(plan.net_w[0], [-8500.0, -3000.0, 0.0, -8500.0], atol=1e-6)
    np.testing.assert_allclose(plan.grid_w, [-6500.0, -1000.0, 2000.0, -6500.0], atol=1e-6)
    np.testing.assert_allclose(plan.curtail_w[0], [0.0, 5500.0, 8500.0, 0.0], atol=1e-6)


def test_battery_takes_what_the_export_limit_holds_back() -> None:
    p = _problem(
        pv_w=np.array([[-9000.0] * 4, [0.0] * 4]),
        bat_e_max_wh=np.array([10_000.0, 0.0]),
        bat_p_max_w=np.array([4000.0, 0.0]),
    )
    plan = solve(replace(p, envelope=_env(f_exp=[1000.0] * 4)))
    assert plan.grid_w.min() >= -1000.0 - 1e-6
    # the battery charges rather than the PV being thrown away, as far as it can
    np.testing.assert_allclose(plan.battery_w[0, :2], 4000.0, atol=1e-6)


def test_household_envelope_bounds_its_connection() -> None:
    p = _problem(pv_w=np.array([[-9000.0] * 4, [0.0] * 4]))
    plan = solve(replace(p, envelope=_env(exp=[[1500.0] * 4, [INF] * 4])))
    np.testing.assert_allclose(plan.net_w[0], -1500.0, atol=1e-6)


def test_import_limit_moves_ev_charging_out_of_the_event() -> None:
    ev_max = np.zeros((2, 4))
    ev_max[1, :] = 11_000.0
    p = _problem(
        pv_w=np.zeros((2, 4)),
        ev_max_w=ev_max,
        ev_session=np.array([[1, 0, 4]]),
        ev_need_wh=np.array([4000.0]),
    )
    plan = solve(replace(p, envelope=_env(f_imp=[3000.0, 3000.0, INF, INF])))
    # base load 2500 W leaves 500 W for the car under the limit; the rest comes later
    assert plan.grid_w[:2].max() <= 3000.0 + 1e-6
    assert plan.ev_w[1].sum() * 0.25 == pytest.approx(4000.0, rel=1e-6)
    assert plan.ev_w[1, 2:].sum() > plan.ev_w[1, :2].sum()


def test_import_limit_below_the_base_load_is_penalised_not_infeasible() -> None:
    p = _problem(pv_w=np.zeros((2, 4)))
    plan = solve(replace(p, envelope=_env(f_imp=1000.0, imp=100.0)))
    np.testing.assert_allclose(plan.net_w, p.load_w, atol=1e-6)  # base load is a fact


def test_coarse_horizon_keeps_the_tightest_limit_of_each_block() -> None:
    p = _problem(n_t=8, load_w=np.full((2, 8), 500.0), pv_w=np.full((2, 8), -5000.0))
    env = _env(n_t=8, f_exp=[INF, INF, INF, INF, INF, 2000.0, INF, INF])
    coarse = Horizon(fine=2, block=4).problem(replace(p, envelope=env))
    assert coarse.envelope.feeder_export_w.tolist() == [INF, INF, 2000.0, INF]


def test_each_home_keeps_its_own_envelope_only() -> None:
    p = _problem(pv_w=np.array([[-9000.0] * 4, [0.0] * 4]))
    plan = solve_each_home(replace(p, envelope=_env(exp=[[1500.0] * 4, [INF] * 4], f_exp=0.0)))
    np.testing.assert_allclose(plan.net_w[0], -1500.0, atol=1e-6)
