import numpy as np
import pytest

from gridctl.core import DispatchError
from gridctl.dispatch.community import CommunityProblem, Fleet, solve


def _problem(n_t: int = 4, load_w=None, pv_w=None, **kw) -> CommunityProblem:
    fleet = dict(
        bat_e_min_wh=np.zeros(2),
        bat_e_max_wh=np.zeros(2),
        bat_e0_wh=np.zeros(2),
        bat_p_max_w=np.zeros(2),
        bat_eta=np.ones(2),
        ev_max_w=np.zeros((2, n_t)),
        ev_session=np.zeros((0, 3), dtype=np.int64),
        ev_need_wh=np.zeros(0),
        conn_max_w=np.full(2, 17_250.0),
    )
    fleet.update(kw)
    return CommunityProblem(
        load_w=np.array([[500.0] * n_t, [2000.0] * n_t]) if load_w is None else load_w,
        pv_w=np.array([[-3000.0] * n_t, [0.0] * n_t]) if pv_w is None else pv_w,
        fleet=Fleet(**fleet),
        feeder_max_w=100_000.0,
        dt_h=0.25,
        import_per_kwh=0.30,
        feed_in_per_kwh=0.08,
    )


def test_surplus_covers_neighbour_before_export() -> None:
    plan = solve(_problem())
    np.testing.assert_allclose(plan.net_w[0], -2500.0, atol=1e-6)
    np.testing.assert_allclose(plan.net_w[1], 2000.0, atol=1e-6)
    np.testing.assert_allclose(plan.grid_w, -500.0, atol=1e-6)  # only the remainder leaves
    assert plan.curtail_w.max() < 1e-6


def test_battery_shifts_surplus_to_the_evening() -> None:
    pv = np.array([[-4000.0, -4000.0, 0.0, 0.0], [0.0] * 4])
    load = np.array([[0.0, 0.0, 2000.0, 2000.0], [0.0] * 4])
    plan = solve(
        _problem(
            load_w=load,
            pv_w=pv,
            bat_e_max_wh=np.array([10_000.0, 0.0]),
            bat_p_max_w=np.array([5000.0, 0.0]),
            bat_eta=np.array([0.95, 1.0]),
        )
    )
    charged_wh = plan.battery_w[0, :2].sum() * 0.25
    # charges from PV exactly what the evening needs, after losses both ways
    assert charged_wh == pytest.approx(2 * 2000.0 * 0.25 / 0.95**2, rel=1e-6)
    np.testing.assert_allclose(plan.battery_w[0, 2:], -2000.0, atol=1e-6)
    np.testing.assert_allclose(plan.grid_w[2:], 0.0, atol=1e-6)


def test_ev_gets_its_energy_inside_its_window() -> None:
    ev_max = np.zeros((2, 4))
    ev_max[1, 1:3] = 11_000.0
    plan = solve(
        _problem(ev_max_w=ev_max, ev_session=np.array([[1, 1, 3]]), ev_need_wh=np.array([4000.0]))
    )
    assert plan.ev_w[1, [0, 3]].max() == pytest.approx(0.0, abs=1e-6)
    assert plan.ev_w[1].sum() * 0.25 == pytest.approx(4000.0, rel=1e-6)
    assert plan.ev_unmet_wh[0] == pytest.approx(0.0, abs=1e-6)


def test_impossible_ev_need_becomes_unmet_energy_not_infeasibility() -> None:
    ev_max = np.zeros((2, 4))
    ev_max[1, 0] = 3_000.0
    plan = solve(
        _problem(ev_max_w=ev_max, ev_session=np.array([[1, 0, 1]]), ev_need_wh=np.array([2000.0]))
    )
    assert plan.ev_unmet_wh[0] == pytest.approx(2000.0 - 750.0, rel=1e-6)


def test_export_beyond_connection_limit_is_curtailed() -> None:
    plan = solve(
        _problem(pv_w=np.array([[-9000.0] * 4, [0.0] * 4]), conn_max_w=np.array([5000.0, 17_250.0]))
    )
    assert plan.net_w[0].min() >= -5000.0 - 1e-6
    np.testing.assert_allclose(plan.curtail_w[0], 9000.0 - 500.0 - 5000.0, atol=1e-6)


def test_highs_and_the_or_tools_backends_agree() -> None:
    p = _problem(pv_w=np.array([[-9000.0] * 4, [0.0] * 4]), conn_max_w=np.array([5000.0, 17_250.0]))
    costs = {name: solve(p, name).cost for name in ("highs", "glop")}
    assert costs["glop"] == pytest.approx(costs["highs"], rel=1e-6, abs=1e-9)
    with pytest.raises(DispatchError, match="not available"):
        solve(p, "no-such-solver")
