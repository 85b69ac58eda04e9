"""Key performance indicators of a simulation run."""

from __future__ import annotations

import sqlite3

import numpy as np

from gridctl.core import MICRO, W_PER_KW, interval_hours, interval_start
from gridctl.governance.state import values_in_force
from gridctl.governance.tally import PASSED
from gridctl.public.dimming import MIN_14A_W
from gridctl.settlement import flex_records as rec_flex
from gridctl.settlement import gov_records as rec
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
    voltage_band_min_pu / voltage_band_max_pu: the scenario's voltage band, p.u.
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
    Governance (``governance_kpis``), when the scenario scripts proposals.
    Envelopes (``envelope_kpis``), when the grid operator limited the feeder; flexibility
    (``flexibility_kpis``), when it asked for (and paid) flexibility.
    §14a dimming (``dimming_kpis``), when a household was dimmed.
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
        "voltage_band_min_pu": lim.v_min_pu,
        "voltage_band_max_pu": lim.v_max_pu,
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
        **governance_kpis(r),
        **envelope_kpis(r),
        **flexibility_kpis(r),
        **dimming_kpis(r),
        "ledger_head": r.ledger_head,
    }


ENVELOPE_TOLERANCE = 0.02
"""Share above a feeder envelope the transformer's measured power may be before the interval
counts as over it (the metering and forecast error the acceptance of an envelope allows)."""


def envelope_kpis(r: SimResult) -> dict[str, float | int]:
    """How the run kept the grid operator's envelopes on the feeder (none: nothing).

    envelope_hours: hours with an import or export limit on the feeder. export_limited_intervals
    / import_limited_intervals: intervals with that limit; export_over_limit_intervals /
    import_over_limit_intervals: of those, the ones whose measured transformer power exceeded
    the limit by more than ``ENVELOPE_TOLERANCE``; max_export_over_limit_kw /
    max_import_over_limit_kw: the most it exceeded a limit by (0 when it never did).
    """
    imp_lim, exp_lim = r.feeder_import_max_w, r.feeder_export_max_w
    imp_on, exp_on = np.isfinite(imp_lim), np.isfinite(exp_lim)
    if not (imp_on.any() or exp_on.any()):
        return {}
    out: dict[str, float | int] = {
        "envelope_hours": round(float((imp_on | exp_on).sum()) * interval_hours(), 2)
    }
    for name, on, lim, p_w in (
        ("export", exp_on, exp_lim, np.maximum(-r.p_trafo_w, 0.0)),
        ("import", imp_on, imp_lim, np.maximum(r.p_trafo_w, 0.0)),
    ):
        over_w = np.where(on, p_w - np.where(on, lim, 0.0), 0.0)
        out[f"{name}_limited_intervals"] = int(on.sum())
        out[f"{name}_over_limit_intervals"] = int(
            (on & (p_w > np.where(on, lim, 0.0) * (1 + ENVELOPE_TOLERANCE))).sum()
        )
        out[f"max_{name}_over_limit_kw"] = round(max(float(over_w.max()), 0.0) / W_PER_KW, 3)
    return out


def flexibility_kpis(r: SimResult) -> dict[str, float | int]:
    """The flexibility events of a run and what they paid, from its ledger (none: nothing).

    flex_events: requests recorded with a baseline. flex_asked_kwh / flex_delivered_kwh: the
    planned and the verified response (within what was asked), kWh. flex_paid: what the grid
    operator paid, currency. flex_tokens: flexibility tokens issued. flex_households_paid:
    households that earned anything.
    """
    con = _read_only(r)
    try:
        events, done = rec_flex.events(con), rec_flex.deliveries(con)
    finally:
        con.close()
    if not events:
        return {}
    return {
        "flex_events": len(events),
        "flex_asked_kwh": round(sum(d.asked_wh for d in done) / W_PER_KW, 3),
        "flex_delivered_kwh": round(sum(d.delivered_wh for d in done) / W_PER_KW, 3),
        "flex_paid": sum(d.payment_micro for d in done) / MICRO,
        "flex_tokens": sum(d.tokens_micro for d in done) / MICRO,
        "flex_households_paid": sum(d.payment_micro > 0 for d in done),
    }


def dimming_kpis(r: SimResult) -> dict[str, float | int]:
    """How the run dimmed households under §14a EnWG (none dimmed: nothing).

    dimmed_intervals: intervals in which any household was dimmed; dimmed_households: households
    dimmed at least once; dimmed_charger_intervals: (interval, household) pairs with a dimmed
    charger whose car wanted power; min_dimmed_charger_kw: the smallest setpoint of those, kW;
    dimmed_chargers_short: those set below min(4.2 kW, what the car could take) (the guarantee
    broken: should be 0).
    """
    if not r.dimmed.any():
        return {}
    wanting = r.dimmed & (r.ev_demand_w > 0)
    guaranteed_w = np.minimum(MIN_14A_W, r.ev_demand_w)
    return {
        "dimmed_intervals": int(r.dimmed.any(axis=1).sum()),
        "dimmed_households": int(r.dimmed.any(axis=0).sum()),
        "dimmed_charger_intervals": int(wanting.sum()),
        "min_dimmed_charger_kw": round(float(r.ev_set_w[wanting].min(initial=np.inf)) / W_PER_KW, 3)
        if wanting.any()
        else 0.0,
        "dimmed_chargers_short": int((wanting & (r.ev_set_w < guaranteed_w - 1.0)).sum()),
    }


def _read_only(r: SimResult) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{r.ledger_path}?mode=ro", uri=True)


def verification_kpis(r: SimResult) -> dict[str, float | int]:
    """What the physics check found in a run (see ``kpis``), from its ledger's cases."""
    con = _read_only(r)
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


def governance_kpis(r: SimResult) -> dict[str, float | int | str]:
    """What a run's governance decided, from its ledger (no proposals: nothing).

    proposals / proposals_passed: submitted, and passed by their tally. enacted_1, …: each
    enactment, what it set and from when. Around the first enactment: community_per_kwh_before /
    _after: the community price in force just before it and from it on, currency/kWh;
    earned_per_shared_kwh_before / _after: what sharers earned per kWh shared through the pool
    before it and from it on, currency/kWh (omitted for a side with nothing shared).
    """
    con = _read_only(r)
    try:
        proposals, tallies = rec.proposals(con), rec.tallies(con)
        enacted = sorted(rec.enactments(con).values(), key=lambda e: (e.at_interval, e.proposal))
        configs = rec.configs(con)
    finally:
        con.close()
    if not proposals:
        return {}
    out: dict[str, float | int | str] = {
        "proposals": len(proposals),
        "proposals_passed": sum(t.outcome == PASSED for t in tallies.values()),
    }
    for k, e in enumerate(enacted, 1):
        out[f"enacted_{k}"] = (
            f"{e.parameter} = {e.value} from {interval_start(e.at_interval):%Y-%m-%d %H:%M} UTC"
            f" (proposal {e.proposal})"
        )
    if not enacted:
        return out
    at = enacted[0].at_interval
    split = at - r.scenario.first_interval
    schedule = [(e.at_interval, e.proposal, e.parameter, e.value) for e in enacted]
    sides = (("before", at - 1, slice(None, split)), ("after", at, slice(split, None)))
    for side, iv, part in sides:
        out[f"community_per_kwh_{side}"] = float(
            values_in_force(configs, schedule, iv)["community_per_kwh"]  # type: ignore[arg-type]
        )
        shared_kwh = float(r.shared_wh[part].sum()) / W_PER_KW
        if shared_kwh > 0:
            earned = float(r.pool_micro[part].sum()) / MICRO
            out[f"earned_per_shared_kwh_{side}"] = round(earned / shared_kwh, 4)
    return out
