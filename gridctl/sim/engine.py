"""In-process simulation: plan, act, measure, power flow, verify and settle every interval."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np

from gridctl.controller.limits import ev_min_w
from gridctl.core import interval_hours, interval_start
from gridctl.dispatch.community import CommunityProblem, Fleet
from gridctl.dispatch.feeder_guard import TRAFO_HEADROOM, FeederGuard, FeederLimits
from gridctl.dispatch.fleet import build_fleet, window
from gridctl.dispatch.rolling import RollingPlanner
from gridctl.grid.ac import AcFeeder
from gridctl.grid.feeder import load_feeder, resolve_buses, transformer_rating_w
from gridctl.settlement.enrol import (
    TRANSFORMER_METER,
    enrol_simulated,
    main_meter,
    simulated_coordinator_key,
)
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.pool import IntervalSettlement
from gridctl.settlement.settle import IntervalOutcome, SettlementConfig, Settler
from gridctl.settlement.signing import MeterSigner
from gridctl.settlement.vee import VeeConfig
from gridctl.sim.households import HouseholdSeries, build_series
from gridctl.sim.scenario import Scenario
from gridctl.sim.world import World

log = logging.getLogger(__name__)

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
    ev_unmet_wh: EV energy not delivered by departures within the run, Wh.
    dispatch: the dispatch mode. plans / plan_rounds: plans made and AC-check rounds they took;
    plan_violations_left: violations the AC check of planned intervals could not remove.
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
    dispatch: str
    plans: int
    plan_rounds: int
    plan_violations_left: int
    ledger_head: str
    ledger_path: Path


DispatchMode = Literal["none", "home", "community"]
DISPATCH_MODES: tuple[str, ...] = ("none", "home", "community")


@dataclass
class _Planner:
    """Plans the scenario's households from its forecasts and the simulated device state, per
    dispatch mode (``rolling`` None: mode "none", no plans)."""

    mode: DispatchMode
    scn: Scenario
    series: HouseholdSeries
    fleet: Fleet
    feeder_max_w: float
    rolling: RollingPlanner | None

    def setpoints(
        self, t: int, e_bat_wh: np.ndarray, ev_left_wh: np.ndarray
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """(battery W or None for the local policy, EV W, export limit W or None) for interval t."""
        if self.rolling is None:
            return None, self.fleet.ev_max_w[:, t], None
        self.update(t, e_bat_wh, ev_left_wh)
        return self.rolling.setpoints(self.scn.first_interval + t)

    def update(self, t: int, e_bat_wh: np.ndarray, ev_left_wh: np.ndarray) -> None:
        """Re-plan if interval t needs it (modes with a plan), from the battery energy (Wh) and
        the energy each EV session still needs (Wh) at its start."""
        r = self.rolling
        assert r is not None
        interval = self.scn.first_interval + t
        if not r.due(interval):
            return
        n = self.scn.dispatch.horizon
        s = self.series
        problem = CommunityProblem(
            load_w=s.load_fc_w[:, t : t + n],
            pv_w=s.pv_fc_w[:, t : t + n],
            fleet=window(self.fleet, t, n, e_bat_wh, ev_left_wh),
            feeder_max_w=self.feeder_max_w,
            dt_h=interval_hours(),
            import_per_kwh=self.scn.tariff.import_per_kwh,
            feed_in_per_kwh=self.scn.tariff.feed_in_per_kwh,
        )
        r.replan(interval, problem, s.load_fc_w[:, t : t + n] * s.tan_phi[:, None])


@dataclass(frozen=True)
class Setup:
    """What a run needs besides its clock: feeder, households, planner, meters, settlement."""

    ids: list[str]
    world: World
    planner: _Planner
    rated_w: np.ndarray
    transformer_rated_w: float
    settlement: SettlementConfig


def prepare(scn: Scenario, dispatch: DispatchMode = "community") -> Setup:
    """Load the feeder and households of ``scn`` and build its world, planner and settlement."""
    net, profiles = load_feeder(scn.feeder.simbench, scn.feeder.file, scn.base_dir)
    buses = resolve_buses(net, [h.bus for h in scn.households])
    ids = [h.id for h in scn.households]
    rng = np.random.default_rng(scn.seed)
    n_all = scn.intervals + scn.dispatch.horizon
    series = build_series(scn, profiles, rng, n_all)
    fleet = build_fleet(scn.households, scn.start, n_all)
    lim = scn.limits
    guard = None
    if dispatch == "community":
        limits = FeederLimits(
            v_min_pu=lim.v_min_pu,
            v_max_pu=lim.v_max_pu,
            loading_max_pct=lim.loading_max_pct,
            margin_v_pu=scn.dispatch.margin_v_pu,
            rounds=scn.dispatch.rounds,
        )
        guard = FeederGuard(net, buses, ids, limits)
    ev_min = np.array([ev_min_w(h.ev.p_max_w if h.ev else None) for h in scn.households])
    d = scn.dispatch
    rolling = None if dispatch == "none" else RollingPlanner(guard, d.replan_every, d.near, ev_min)
    trafo_w = transformer_rating_w(net)
    planner = _Planner(dispatch, scn, series, fleet, TRAFO_HEADROOM * trafo_w, rolling)
    config = SettlementConfig(
        community_per_kwh=scn.tariff.community_per_kwh,
        reward_tokens_per_kwh=scn.reward_tokens_per_kwh,
        pooled=dispatch == "community",  # without a community, nothing goes through a pool
        vee=VeeConfig(no_load_loss_w=float(net.trafo.pfe_kw.sum()) * 1e3),
    )
    world = World(series, fleet, AcFeeder(net, buses, ids), ev_min)
    return Setup(ids, world, planner, fleet.conn_max_w, trafo_w, config)


def simulate(
    scn: Scenario,
    ledger_path: Path,
    progress: Progress | None = None,
    dispatch: DispatchMode = "community",
) -> SimResult:
    """Run ``scn`` end to end, booking settlement into a new ledger at ``ledger_path``.

    dispatch: "none" (every home self-consumes, no coordination), "home" (each household
    optimised alone, no sharing) or "community" (gridctl's feeder-aware dispatch).
    progress: called with (intervals done, intervals total) after each interval.
    """
    s = prepare(scn, dispatch)
    with Ledger(ledger_path, simulated_coordinator_key(scn.seed)) as ledger:
        # every meter signs its readings; settlement verifies them as in production
        signers = enrol_simulated(
            ledger, s.ids, s.rated_w, scn.first_interval, scn.seed,
            transformer_rated_w=s.transformer_rated_w,
        )  # fmt: skip
        settler = Settler(ledger, s.settlement)
        return _run(scn, s.ids, s.world, s.planner, ledger, progress, settler, signers)


def _run(
    scn: Scenario,
    ids: list[str],
    world: World,
    planner: _Planner,
    ledger: Ledger,
    progress: Progress | None,
    settler: Settler,
    signers: dict[str, MeterSigner],
) -> SimResult:
    meters = [signers[main_meter(h)] for h in ids]
    totals = SettledTotals(len(ids))
    for t in range(scn.intervals):
        interval = scn.first_interval + t
        bat_set_w, ev_set_w, export_max_w = planner.setpoints(t, world.e_bat_wh, world.ev_left_wh)
        world.step(t, bat_set_w, ev_set_w, export_max_w)
        imp, exp = world.household_counters_wh()
        readings = [
            m.sign(interval, int(i), int(e)) for m, i, e in zip(meters, imp, exp, strict=True)
        ]
        readings.append(signers[TRANSFORMER_METER].sign(interval, *world.trafo_counters_wh()))
        st = settler.settle(interval, readings).settlement
        assert st is not None  # a new interval is always settled
        totals.add(st)
        if progress:
            progress(t + 1, scn.intervals)
    return sim_result(scn, ids, world, totals, planner, ledger.head, ledger.path)


class SettledTotals:
    """Per-household settlement totals over a run, (H,) int64, and the pool per interval."""

    def __init__(self, n_h: int):
        self.supplied_wh = np.zeros(n_h, dtype=np.int64)
        self.received_wh = np.zeros(n_h, dtype=np.int64)
        self.tokens_micro = np.zeros(n_h, dtype=np.int64)
        self.paid_micro = np.zeros(n_h, dtype=np.int64)
        self.earned_micro = np.zeros(n_h, dtype=np.int64)
        self.shared_wh: list[float] = []

    def add(self, st: IntervalSettlement) -> None:
        """Add one interval's pool outcome."""
        self.supplied_wh += st.supplied_wh
        self.received_wh += st.received_wh
        self.tokens_micro += st.tokens_micro
        self.paid_micro += st.paid_micro
        self.earned_micro += st.earned_micro
        self.shared_wh.append(float(st.supplied_wh.sum()))

    def add_outcome(self, outcome: IntervalOutcome) -> None:
        """Add a settled interval's pool outcome (an already closed one adds nothing)."""
        if outcome.settlement is not None:
            self.add(outcome.settlement)


def sim_result(
    scn: Scenario,
    ids: list[str],
    world: World,
    totals: SettledTotals,
    planner: _Planner,
    ledger_head: str,
    ledger_path: Path,
) -> SimResult:
    """A run's result from the world's history, the settled totals and the ledger."""
    h = world.history
    acs = [i.ac for i in h]
    return SimResult(
        scenario=scn,
        times=[interval_start(scn.first_interval + t) for t in range(len(h))],
        household_ids=ids,
        p_household_w=np.array([i.p_w for i in h]),
        demand_w=np.array([i.load_w + i.ev_w for i in h]),
        pv_w=np.array([i.pv_w for i in h]),
        curtailed_w=np.array([i.pv_w - i.pv_avail_w for i in h]),
        p_trafo_w=np.array([r.p_trafo_w for r in acs]),
        losses_w=np.array([r.losses_w for r in acs]),
        vm_min_pu=np.array([r.vm_pu.min() for r in acs]),
        vm_max_pu=np.array([r.vm_pu.max() for r in acs]),
        line_loading_max_pct=np.array([r.line_loading_pct.max(initial=0.0) for r in acs]),
        trafo_loading_max_pct=np.array([r.trafo_loading_pct.max(initial=0.0) for r in acs]),
        shared_wh=np.array(totals.shared_wh, dtype=float),
        supplied_wh=totals.supplied_wh,
        received_wh=totals.received_wh,
        tokens_micro=totals.tokens_micro,
        paid_micro=totals.paid_micro,
        earned_micro=totals.earned_micro,
        ev_unmet_wh=world.ev_unmet_wh(len(h)),
        dispatch=planner.mode,
        plans=planner.rolling.plans if planner.rolling else 0,
        plan_rounds=planner.rolling.rounds if planner.rolling else 0,
        plan_violations_left=planner.rolling.unresolved if planner.rolling else 0,
        ledger_head=ledger_head,
        ledger_path=ledger_path,
    )
