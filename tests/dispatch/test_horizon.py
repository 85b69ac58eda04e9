"""A coarser far horizon and near re-plans: energy kept, the near-term plan barely changed."""

from dataclasses import replace

import numpy as np
import pytest

from gridctl.dispatch.community import CommunityProblem, Fleet, solve
from gridctl.dispatch.horizon import Horizon
from gridctl.dispatch.rolling import near_problem

N_T = 96
DT_H = 0.25


def _day(n_h: int = 6, seed: int = 3) -> CommunityProblem:
    """Homes with PV at noon, evening load, batteries on half of them and two EVs overnight."""
    rng = np.random.default_rng(seed)
    t = np.arange(N_T)
    sun = np.clip(np.sin((t - 28) / 40 * np.pi), 0, None)
    evening = 400 + 1600 * np.exp(-(((t - 76) / 8) ** 2))
    load = evening[None, :] * rng.uniform(0.7, 1.3, (n_h, 1))
    pv = -sun[None, :] * rng.uniform(3000, 8000, (n_h, 1))
    has_bat = np.arange(n_h) % 2 == 0
    ev_max = np.zeros((n_h, N_T))
    ev_max[1, 70:] = 11_000.0
    ev_max[3, 72:90] = 7_400.0
    return CommunityProblem(
        load_w=load,
        pv_w=pv,
        fleet=Fleet(
            bat_e_min_wh=np.where(has_bat, 1000.0, 0.0), bat_e_max_wh=np.where(has_bat, 10_000.0, 0.0),
            bat_e0_wh=np.where(has_bat, 3000.0, 0.0), bat_p_max_w=np.where(has_bat, 5000.0, 0.0),
            bat_eta=np.full(n_h, 0.95), ev_max_w=ev_max,
            ev_session=np.array([[1, 70, 96], [3, 72, 90]]), ev_need_wh=np.array([20_000.0, 9_000.0]),
            conn_max_w=np.full(n_h, 17_250.0),
        ),
        feeder_max_w=1e9, dt_h=DT_H, import_per_kwh=0.30, feed_in_per_kwh=0.08,
    )  # fmt: skip


def test_block_averages_keep_every_blocks_energy() -> None:
    h = Horizon(fine=5, block=4)
    assert h.lengths(15).tolist() == [1, 1, 1, 1, 1, 4, 4, 2]
    x = np.random.default_rng(1).normal(size=(3, 15))
    coarse = h.coarsen(x)
    assert coarse.shape == (3, 8)
    np.testing.assert_allclose((coarse * h.lengths(15)).sum(axis=1), x.sum(axis=1))
    np.testing.assert_allclose(h.expand(coarse, 15)[:, :5], x[:, :5])


def test_coarse_far_horizon_plans_the_near_term_like_the_full_lp() -> None:
    p = _day()
    fine = solve(p)
    h = Horizon(fine=16, block=4)
    coarse_p = h.problem(p)
    assert coarse_p.load_w.shape[1] == 16 + 20
    coarse = h.plan(solve(coarse_p), N_T)
    assert coarse.net_w.shape == fine.net_w.shape
    # the day costs within 5 % (hour averages smooth the peaks a little) and every EV still
    # gets its energy
    assert coarse.cost == pytest.approx(fine.cost, rel=0.05)
    assert coarse.ev_unmet_wh.max() < 1e-6
    delivered = (coarse.ev_w * DT_H).sum(axis=1)[[1, 3]]
    np.testing.assert_allclose(delivered, [20_000.0, 9_000.0], rtol=1e-6)
    # battery energy follows its power in every step, fine or coarse
    e0 = p.fleet.bat_e0_wh[0]
    bat = coarse.battery_w[0]
    flows = np.where(bat > 0, bat * 0.95, bat / 0.95) * DT_H
    np.testing.assert_allclose(e0 + np.cumsum(flows), coarse.battery_e_wh[0], atol=1e-3)


def test_near_replan_follows_the_full_plan_and_keeps_its_batteries_course() -> None:
    p = _day()
    full = solve(p)
    # one interval later: the world went as planned; re-plan the next 12 intervals
    shift, near = 1, 12
    ev_left = p.fleet.ev_need_wh.copy()
    later = replace(
        p,
        load_w=p.load_w[:, shift:],
        pv_w=p.pv_w[:, shift:],
        fleet=replace(
            p.fleet,
            bat_e0_wh=full.battery_e_wh[:, 0],
            ev_max_w=p.fleet.ev_max_w[:, shift:],
            ev_session=p.fleet.ev_session - [0, shift, shift],
            ev_need_wh=ev_left,
        ),
    )
    nearp = near_problem(later, full, shift, near)
    assert nearp.load_w.shape[1] == near and len(nearp.fleet.ev_need_wh) == 0  # EVs come later
    again = solve(nearp)
    ends = full.battery_e_wh[:, shift + near - 1]
    assert (again.battery_e_wh[:, -1] >= ends - 1e-6).all()
    # the full plan's own course is one of the near problem's choices: it does no worse
    assert again.cost <= _cost(full, slice(shift, shift + near)) + 1e-6


def _cost(plan, window: slice) -> float:
    """The LP objective of ``plan`` over ``window`` (grid energy, battery cycling, curtailment)."""
    from gridctl.dispatch.community import CURTAIL_COST_PER_KWH, CYCLE_COST_PER_KWH

    g = plan.grid_w[window]
    kwh = DT_H / 1000.0
    grid = (np.maximum(g, 0) * 0.30 - np.maximum(-g, 0) * 0.08).sum() * kwh
    cycle = np.abs(plan.battery_w[:, window]).sum() * kwh * CYCLE_COST_PER_KWH / 2
    return grid + cycle + plan.curtail_w[:, window].sum() * kwh * CURTAIL_COST_PER_KWH


def test_near_replan_asks_an_ev_for_what_the_full_plan_gave_it_in_the_window() -> None:
    p = _day()
    full = solve(p)
    shift = 72  # both cars are plugged in
    later = replace(
        p,
        load_w=p.load_w[:, shift:],
        pv_w=p.pv_w[:, shift:],
        fleet=replace(
            p.fleet,
            bat_e0_wh=full.battery_e_wh[:, shift - 1],
            ev_max_w=p.fleet.ev_max_w[:, shift:],
            ev_session=np.array([[1, 0, 24], [3, 0, 18]]),
            ev_need_wh=p.fleet.ev_need_wh - (full.ev_w[[1, 3], :shift] * DT_H).sum(axis=1),
        ),
    )
    nearp = near_problem(later, full, shift, 8)
    given = (full.ev_w[[1, 3], shift : shift + 8] * DT_H).sum(axis=1)
    np.testing.assert_allclose(nearp.fleet.ev_need_wh, given)
    assert nearp.fleet.ev_session[:, 2].tolist() == [8, 8]
    assert near_problem(later, full, 90, 12).load_w.shape[1] == 6  # the full plan ends sooner
    with pytest.raises(ValueError, match="does not reach"):
        near_problem(later, full, 96, 8)
