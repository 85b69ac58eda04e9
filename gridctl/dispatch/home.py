"""Per-home optimisation: every household plans alone at the tariff, no sharing, no feeder."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gridctl.dispatch.community import CommunityProblem, Fleet, Plan, solve


def _one(fleet: Fleet, h: int) -> Fleet:
    keep = fleet.ev_session[:, 0] == h
    sessions = fleet.ev_session[keep].copy()
    sessions[:, 0] = 0
    return Fleet(
        bat_e_min_wh=fleet.bat_e_min_wh[h : h + 1],
        bat_e_max_wh=fleet.bat_e_max_wh[h : h + 1],
        bat_e0_wh=fleet.bat_e0_wh[h : h + 1],
        bat_p_max_w=fleet.bat_p_max_w[h : h + 1],
        bat_eta=fleet.bat_eta[h : h + 1],
        ev_max_w=fleet.ev_max_w[h : h + 1],
        ev_session=sessions,
        ev_need_wh=fleet.ev_need_wh[keep],
        conn_max_w=fleet.conn_max_w[h : h + 1],
        bat_e_end_wh=None if fleet.bat_e_end_wh is None else fleet.bat_e_end_wh[h : h + 1],
    )


def solve_each_home(p: CommunityProblem) -> Plan:
    """One LP per household with its own connection as the only grid: what home energy
    managers do today. Returns the plans stacked as one community plan (no feeder model)."""
    plans = [
        solve(
            replace(
                p,
                load_w=p.load_w[h : h + 1],
                pv_w=p.pv_w[h : h + 1],
                fleet=_one(p.fleet, h),
                feeder_max_w=np.inf,
                feeder=None,
                envelope=None if p.envelope is None else p.envelope.one(h),
            )
        )
        for h in range(p.load_w.shape[0])
    ]

    def stack(name: str) -> np.ndarray:
        return np.concatenate([getattr(q, name) for q in plans])

    net = stack("net_w")
    return Plan(
        battery_w=stack("battery_w"),
        ev_w=stack("ev_w"),
        curtail_w=stack("curtail_w"),
        net_w=net,
        grid_w=net.sum(axis=0),
        ev_unmet_wh=stack("ev_unmet_wh"),
        cost=sum(q.cost for q in plans),
        battery_e_wh=stack("battery_e_wh"),
    )
