"""Key performance indicators of a simulation run."""

from __future__ import annotations

import sqlite3

import numpy as np

from gridctl.core import MICRO, W_PER_KW, interval_hours
from gridctl.settlement.cases import HELD, NAMED, case_outcomes
from gridctl.sim.engine import SimResult


def _kwh(p_w: np.ndarray) -> float:
    """Energy of a power series held one interval per value, kWh."""
    return float(np.sum(p_w) * interval_hours() / W_PER_KW)


def kpis(r: SimResult) -> dict[str, float | int | str]:
    """Community KPIs of a run.

    self_sufficiency: 1 - transformer import / demand (base load + EV), 0–1.
    shared_kwh: verified energy shared through the community pool.
    grid_import_kwh / grid_export_kwh / peak_import_kw: at the transformer (feeder losses included).
    voltage_violations: intervals in which any bus leaves the scenario's voltage band.
    line_overloads / trafo_overloads: intervals in which any line / transformer exceeds its limit.
    grid_cost: the community's bill at the transformer, import at the tariff minus feed-in,
        currency (negative = earns).
    households_cost: the sum of the households' own bills: each pays import and earns feed-in
        at its meter, except for energy it shared through the community pool (which cancels
        between households), currency.
    tokens_issued: token rewards booked, tokens (what physics held not included).
    Verification (``verification_kpis``): intervals_held / intervals_named: intervals in which
    physics held or named a household; households_named: households whose claim it rejected at
    least once; cheating_intervals / detection_delay_intervals / at_stake_kwh /
    caught_kwh: the scenario's cheats (first cheat), when it has any.
    """
    scn = r.scenario
    lim = scn.limits
    imp_w = np.maximum(r.p_trafo_w, 0.0)
    exp_w = np.maximum(-r.p_trafo_w, 0.0)
    demand_kwh = _kwh(r.demand_w)
    grid_import_kwh = _kwh(imp_w)
    grid_export_kwh = _kwh(exp_w)
    voltage_bad = (r.vm_min_pu < lim.v_min_pu) | (r.vm_max_pu > lim.v_max_pu)
    own_import_kwh = _kwh(np.maximum(r.p_household_w, 0.0))
    own_export_kwh = _kwh(np.maximum(-r.p_household_w, 0.0))
    shared_kwh = float(r.supplied_wh.sum()) / W_PER_KW
    return {
        "scenario": scn.name,
        "intervals": len(r.times),
        "households": len(r.household_ids),
        "self_sufficiency": round(float(np.clip(1.0 - grid_import_kwh / demand_kwh, 0.0, 1.0)), 4)
        if demand_kwh > 0
        else 1.0,
        "demand_kwh": round(demand_kwh, 3),
        "pv_kwh": round(-_kwh(r.pv_w), 3),
        "shared_kwh": round(shared_kwh, 3),
        "grid_import_kwh": round(grid_import_kwh, 3),
        "grid_export_kwh": round(grid_export_kwh, 3),
        "peak_import_kw": round(float(imp_w.max(initial=0.0)) / W_PER_KW, 3),
        "losses_kwh": round(_kwh(r.losses_w), 3),
        "curtailed_kwh": round(_kwh(r.curtailed_w), 3),
        "ev_unmet_kwh": round(r.ev_unmet_wh / W_PER_KW, 3),
        "grid_cost": round(
            grid_import_kwh * scn.tariff.import_per_kwh
            - grid_export_kwh * scn.tariff.feed_in_per_kwh,
            2,
        ),
        "min_voltage_pu": round(float(r.vm_min_pu.min()), 4),
        "max_voltage_pu": round(float(r.vm_max_pu.max()), 4),
        "max_line_loading_pct": round(float(r.line_loading_max_pct.max()), 2),
        "max_trafo_loading_pct": round(float(r.trafo_loading_max_pct.max()), 2),
        "voltage_violations": int(voltage_bad.sum()),
        "line_overloads": int((r.line_loading_max_pct > lim.loading_max_pct).sum()),
        "trafo_overloads": int((r.trafo_loading_max_pct > lim.loading_max_pct).sum()),
        "households_cost": round(
            (own_import_kwh - shared_kwh) * scn.tariff.import_per_kwh
            - (own_export_kwh - shared_kwh) * scn.tariff.feed_in_per_kwh,
            2,
        ),
        "dispatch": r.dispatch,
        "plans": r.plans,
        "plan_rounds": r.plan_rounds,
        "plan_violations_left": r.plan_violations_left,
        "tokens_issued": float(r.tokens_micro.sum()) / MICRO,
        **verification_kpis(r),
        "ledger_head": r.ledger_head,
    }


def verification_kpis(r: SimResult) -> dict[str, float | int]:
    """What the physics check found in a run (see ``kpis``), from its ledger's cases."""
    con = sqlite3.connect(f"file:{r.ledger_path}?mode=ro", uri=True)
    try:
        cases = case_outcomes(con)
    finally:
        con.close()
    out: dict[str, float | int] = {
        "intervals_held": len({iv for iv, _, o in cases if o == HELD}),
        "intervals_named": len({iv for iv, _, o in cases if o == NAMED}),
        "households_named": len({h for _, h, o in cases if o == NAMED}),
    }
    c = r.cheats
    if len(c.household):
        who = r.household_ids[int(c.household[0])]
        first = r.scenario.first_interval
        caught = np.zeros(len(r.times), dtype=bool)
        caught[[iv - first for iv, h, _ in cases if h == who]] = True
        cheating = c.cheating[:, 0]
        hits = np.flatnonzero(caught & cheating)
        start = np.flatnonzero(cheating)
        stake_kwh = c.at_stake_wh[:, 0] / W_PER_KW
        out |= {
            "cheating_intervals": int(cheating.sum()),
            "detection_delay_intervals": int(hits[0] - start[0]) if len(hits) else -1,
            "at_stake_kwh": round(float(stake_kwh[cheating].sum()), 3),
            "caught_kwh": round(float(stake_kwh[cheating & caught].sum()), 3),
        }
    return out
