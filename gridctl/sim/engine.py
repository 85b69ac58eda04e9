"""In-process simulation: plan, act, measure, power flow, verify and settle every interval."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from gridctl.core import interval_hours, interval_start
from gridctl.dispatch.community import CommunityProblem, Fleet, Plan, solve
from gridctl.grid.ac import AcFeeder
from gridctl.grid.feeder import load_feeder, resolve_buses
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.pool import settle_interval
from gridctl.settlement.readings import check_readings
from gridctl.sim.households import HouseholdSeries, build_fleet, build_series
from gridctl.sim.physics import battery_step, ev_step, meter_step, pv_step
from gridctl.sim.scenario import Scenario

log = logging.getLogger(__name__)

TRAFO_HEADROOM = 0.9
"""Share of the transformer rating (kVA) the dispatch may use for active power."""

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SimResult:
    """Everything a run produced. Time series are (T,) or (T, H); powers in W, load convention.

    p_household_w: household grid power. demand_w: base load plus EV charging (≥ 0).
    pv_w: PV output after curtailment (≤ 0). curtailed_w: PV held back (≥ 0).
    p_trafo_w: transformer power into the feeder (> 0 import). losses_w: feeder losses.
    vm_min_pu / vm_max_pu: lowest / highest bus voltage. line_loading_max_pct /
    trafo_loading_max_pct: most loaded line / transformer, %.
    shared_wh: energy shared through the pool per interval, Wh.
    supplied_wh / received_wh / tokens_micro / paid_micro / earned_micro: per-household totals.
    ev_unmet_wh: EV energy not delivered by departure (or by the end of the run), Wh.
    """

    scenario: Scenario
    times: list[datetime]
    household_ids: list[str]
    p_household_w: np.ndarray
    demand_w: np.ndarray
    pv_w: np.ndarray
    curtailed_w: np.ndarray
    p_trafo_w: np.ndarray
    losses_w: np.ndarray
    vm_min_pu: np.ndarray
    vm_max_pu: np.ndarray
    line_loading_max_pct: np.ndarray
    trafo_loading_max_pct: np.ndarray
    shared_wh: np.ndarray
    supplied_wh: np.ndarray
    received_wh: np.ndarray
    tokens_micro: np.ndarray
    paid_micro: np.ndarray
    earned_micro: np.ndarray
    ev_unmet_wh: float
    ledger_head: str
    ledger_path: Path


def _problem(
    scn: Scenario, series: HouseholdSeries, fleet: Fleet, feeder_max_w: float
) -> CommunityProblem:
    return CommunityProblem(
        load_w=series.load_fc_w,
        pv_w=series.pv_fc_w,
        fleet=fleet,
        feeder_max_w=feeder_max_w,
        dt_h=interval_hours(),
        import_per_kwh=scn.tariff.import_per_kwh,
        feed_in_per_kwh=scn.tariff.feed_in_per_kwh,
    )


def simulate(scn: Scenario, ledger_path: Path, progress: Progress | None = None) -> SimResult:
    """Run ``scn`` end to end, booking settlement into a new ledger at ``ledger_path``.

    progress: called with (intervals done, intervals total) after each interval.
    """
    net, profiles = load_feeder(scn.feeder.simbench, scn.feeder.file, scn.base_dir)
    buses = resolve_buses(net, [h.bus for h in scn.households])
    ids = [h.id for h in scn.households]
    rng = np.random.default_rng(scn.seed)
    series = build_series(scn, profiles, rng)
    fleet = build_fleet(scn)
    feeder_max_w = TRAFO_HEADROOM * float(net.trafo.sn_mva.sum()) * 1e6
    plan = solve(_problem(scn, series, fleet, feeder_max_w))
    log.info("plan solved households=%d intervals=%d cost=%.2f", len(ids), scn.intervals, plan.cost)
    ac = AcFeeder(net, buses, ids)
    with Ledger(ledger_path) as ledger:
        return _run(scn, ids, series, fleet, plan, ac, ledger, progress)


def _run(
    scn: Scenario,
    ids: list[str],
    series: HouseholdSeries,
    fleet: Fleet,
    plan: Plan,
    ac: AcFeeder,
    ledger: Ledger,
    progress: Progress | None,
) -> SimResult:
    n_h, n_t = series.load_w.shape
    dt_h = interval_hours()
    session_of = np.full((n_h, n_t), -1)
    for s, (h, a, b) in enumerate(fleet.ev_session):
        session_of[h, a:b] = s
    ev_left_wh = fleet.ev_need_wh.copy()
    e_bat_wh = fleet.bat_e0_wh.copy()
    ctr_imp = np.zeros(n_h)
    ctr_exp = np.zeros(n_h)
    prev_read = (np.zeros(n_h), np.zeros(n_h))
    max_wh = fleet.conn_max_w * dt_h
    rec: dict[str, list] = {k: [] for k in ("p", "demand", "pv", "curt", "ac", "shared")}
    totals = {k: np.zeros(n_h, dtype=np.int64) for k in ("sup", "rec", "tok", "paid", "earn")}
    for t in range(n_t):
        interval = scn.first_interval + t
        p_bat, e_bat_wh = battery_step(
            plan.battery_w[:, t],
            e_bat_wh,
            fleet.bat_e_min_wh,
            fleet.bat_e_max_wh,
            fleet.bat_p_max_w,
            fleet.bat_eta,
            dt_h,
        )
        sid = session_of[:, t]
        plugged = sid >= 0
        ev_need_wh = np.zeros(n_h)
        ev_need_wh[plugged] = ev_left_wh[sid[plugged]]
        p_ev = ev_step(plan.ev_w[:, t], fleet.ev_max_w[:, t], ev_need_wh, dt_h)
        ev_left_wh[sid[plugged]] -= p_ev[plugged] * dt_h
        curtail = plan.curtail_w[:, t] > 1e-3
        pv_limit_w = np.where(curtail, -(series.pv_fc_w[:, t] + plan.curtail_w[:, t]), np.inf)
        p_pv = pv_step(series.pv_w[:, t], pv_limit_w)
        p_w = series.load_w[:, t] + p_pv + p_bat + p_ev
        res = ac.run(p_w, series.load_w[:, t] * series.tan_phi)

        ctr_imp, ctr_exp = meter_step(ctr_imp, ctr_exp, p_w, dt_h)
        reading = (np.floor(ctr_imp), np.floor(ctr_exp))
        check = check_readings(*prev_read, *reading, max_wh)
        prev_read = reading
        st = settle_interval(
            interval,
            ids,
            check.import_wh,
            check.export_wh,
            scn.tariff.community_per_kwh,
            scn.reward_tokens_per_kwh,
        )
        ledger.record_readings(
            (h, interval, int(i), int(e), s, r)
            for h, i, e, s, r in zip(ids, *reading, check.status, check.reason, strict=True)
        )
        ledger.append(st.transactions)
        for key, arr in zip(
            totals,
            (st.supplied_wh, st.received_wh, st.tokens_micro, st.paid_micro, st.earned_micro),
            strict=True,
        ):
            totals[key] += arr
        rec["p"].append(p_w)
        rec["demand"].append(series.load_w[:, t] + p_ev)
        rec["pv"].append(p_pv)
        rec["curt"].append(p_pv - series.pv_w[:, t])
        rec["ac"].append(res)
        rec["shared"].append(st.supplied_wh.sum())
        if progress:
            progress(t + 1, n_t)
    acs = rec["ac"]
    return SimResult(
        scenario=scn,
        times=[interval_start(scn.first_interval + t) for t in range(n_t)],
        household_ids=ids,
        p_household_w=np.array(rec["p"]),
        demand_w=np.array(rec["demand"]),
        pv_w=np.array(rec["pv"]),
        curtailed_w=np.array(rec["curt"]),
        p_trafo_w=np.array([r.p_trafo_w for r in acs]),
        losses_w=np.array([r.losses_w for r in acs]),
        vm_min_pu=np.array([r.vm_pu.min() for r in acs]),
        vm_max_pu=np.array([r.vm_pu.max() for r in acs]),
        line_loading_max_pct=np.array([r.line_loading_pct.max(initial=0.0) for r in acs]),
        trafo_loading_max_pct=np.array([r.trafo_loading_pct.max(initial=0.0) for r in acs]),
        shared_wh=np.array(rec["shared"], dtype=float),
        supplied_wh=totals["sup"],
        received_wh=totals["rec"],
        tokens_micro=totals["tok"],
        paid_micro=totals["paid"],
        earned_micro=totals["earn"],
        ev_unmet_wh=float(ev_left_wh.sum()),
        ledger_head=ledger.head,
        ledger_path=ledger.path,
    )
