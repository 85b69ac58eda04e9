"""In-process simulation: plan, act, measure, power flow, verify and settle every interval.

The community is assembled as the coordinator assembles it (``gridctl.coordinator.assembly``)
and its planner plans from telemetry only (``telemetry``: what the devices show), never from
the world's hidden state; the world (device physics, meters, feeder) and the clock are the
only simulated parts.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from gridctl.controller.limits import ev_min_w
from gridctl.coordinator.assembly import Community, DispatchMode, Feeder, assemble
from gridctl.core import INTERVAL_S, interval_hours, interval_start, limit_or_inf
from gridctl.dispatch.fleet import build_fleet
from gridctl.dispatch.plan_log import PlanLog
from gridctl.governance.effect import govern_planner, govern_settler
from gridctl.grid.ac import AcFeeder
from gridctl.grid.record import GRID_FILE
from gridctl.public.dimming import dimmed_household_w, ev_floor_w
from gridctl.public.figures import interval_figures
from gridctl.public.flexibility import book_due, record_baselines
from gridctl.settlement.aggregates import CommunityFigures
from gridctl.settlement.enrol import (
    TRANSFORMER_METER,
    enrol_simulated,
    main_meter,
    simulated_coordinator_key,
)
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.pool import IntervalSettlement
from gridctl.settlement.settle import IntervalOutcome, Settler
from gridctl.settlement.signing import MeterSigner, SignedReading
from gridctl.sim.clock import SimClock
from gridctl.sim.devices import Devices, make_devices, meter_voltages_mv, show, telemetry
from gridctl.sim.governance import Script
from gridctl.sim.grid_record import record_run
from gridctl.sim.households import build_series
from gridctl.sim.meters import CheatTruth, Meters
from gridctl.sim.openadr import sim_ven
from gridctl.sim.scenario import Scenario
from gridctl.sim.world import World

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
DIMMING = "dimming"
"""Envelope source name of a scenario's coordinator-sourced §14a dimming windows."""


@dataclass(frozen=True)
class SimResult:
    """Everything a run produced. Time series are (T,) or (T, H); powers in W, load convention.

    p_household_w: household grid power. demand_w: base load plus EV charging (≥ 0).
    pv_w: PV output after curtailment (≤ 0). curtailed_w: PV held back (≥ 0).
    p_trafo_w: transformer power into the feeder (> 0 import). losses_w: feeder losses.
    vm_min_pu / vm_max_pu: lowest / highest bus voltage. line_loading_max_pct /
    trafo_loading_max_pct: most loaded line / transformer, %.
    shared_wh: energy shared through the pool per interval, Wh. pool_micro: currency paid
    through the pool per interval (what the sharers earned), micro-units.
    supplied_wh / received_wh / tokens_micro / paid_micro / earned_micro: per-household totals.
    ev_unmet_wh: EV energy not delivered by departures within the run, Wh.
    dispatch: the dispatch mode. plans / plan_rounds: plans made and AC-check rounds they took;
    plan_violations_left: violations the AC check of planned intervals could not remove.
    feeder_import_max_w / feeder_export_max_w: the grid operator's envelope on the feeder each
    interval was planned with, W (inf: none).
    ev_set_w: each charger's setpoint, W, (T, H); ev_demand_w: what its car could take in the
    interval (the charger's limit, or the energy it still needed spread over the interval), W,
    (T, H); dimmed: households under §14a dimming, (T, H) bool.
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
    pool_micro: np.ndarray
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
    cheats: CheatTruth
    """What the scenario's dishonest households claimed beyond what they measured."""
    feeder_import_max_w: np.ndarray
    feeder_export_max_w: np.ndarray
    ev_set_w: np.ndarray
    ev_demand_w: np.ndarray
    dimmed: np.ndarray


@dataclass(frozen=True)
class Setup:
    """A run's community (assembled as the coordinator assembles it), its simulated world,
    what its meters report of it, the devices that show it to the controllers (and so to the
    planner), and its scenario."""

    community: Community
    world: World
    meters: Meters
    devices: Devices
    scenario: Scenario
    feeder_limits_w: list[tuple[float, float]] = field(default_factory=list)
    """The feeder's envelope (import, export), W, each interval was planned with."""
    chargers: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    """Each interval's charger setpoints and car demands, W, and who was dimmed, (H,) each."""

    def step(
        self,
        t: int,
        battery_set_w: np.ndarray | None,
        ev_set_w: np.ndarray,
        export_max_w: np.ndarray | None = None,
        dimmed: np.ndarray | None = None,
        *,
        pv_limit_w: np.ndarray | None = None,
    ) -> None:
        """Run interval t in the world (``World.step``, same arguments) and have every meter
        measure it. dimmed: the households under §14a dimming in it, (H,) bool (None: none)."""
        w = self.world
        demand_w = np.minimum(w.fleet.ev_max_w[:, t], w.ev_need_wh(t) / interval_hours())
        on = np.zeros(len(demand_w), dtype=bool) if dimmed is None else dimmed
        self.chargers.append((np.asarray(ev_set_w, dtype=float).copy(), demand_w, on))
        out = self.world.step(t, battery_set_w, ev_set_w, export_max_w, pv_limit_w)
        self.meters.step(t, out.p_w, out.ac.p_trafo_w)
        planner = self.community.planner
        self.feeder_limits_w.append(
            planner.feeder_limits_w() if planner is not None else (math.inf, math.inf)
        )

    @property
    def feeder(self) -> Feeder:
        """The scenario's feeder (a scenario always has one)."""
        assert self.community.feeder is not None
        return self.community.feeder


def prepare(scn: Scenario, dispatch: DispatchMode = "community") -> Setup:
    """Assemble the community of ``scn`` and build its world."""
    community = assemble(scn, scn.base_dir, dispatch)
    feeder = community.feeder
    assert feeder is not None  # a scenario names its feeder
    rng = np.random.default_rng(scn.seed)
    n_all = scn.intervals + scn.dispatch.horizon
    series = build_series(scn, feeder.profiles, rng, n_all)
    fleet = build_fleet(scn.households, scn.start, n_all)
    ev_min = np.array([ev_min_w(h.ev.p_max_w if h.ev else None) for h in scn.households])
    world = World(series, fleet, AcFeeder(feeder.net, feeder.buses, community.ids), ev_min)
    if community.planner is not None and scn.dimming:
        community.planner.envelopes.update(DIMMING, scn.dimming_limits(), now_s=0.0)
    return Setup(community, world, Meters(scn, community.ids), make_devices(scn.households), scn)


def planned(
    setup: Setup, interval: int, t: int
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None, np.ndarray]:
    """(battery W or None for the local policy, EV W, export limit W ≥ 0 or None, dimmed
    (H,) bool) for interval t: the first step of each household's plan, made from telemetry as
    in production; without a planner, every home's local policy (self-consumption, the car at
    its charger's rating). A household whose relay asks to dim (``Scenario.relays_on``) is
    dimmed as its controller would dim it (``relay_dimmed``)."""
    planner, world = setup.community.planner, setup.world
    relays = setup.scenario.relays_on(t)
    if planner is None:
        bat, ev, exp, dimmed = None, world.fleet.ev_max_w[:, t], None, relays
    else:
        households = setup.community.spec.households
        show(setup.devices, households, world, setup.meters, t)
        tel = telemetry(setup.devices, households, interval, "plan")
        steps = [s[0] for s in planner.plan(interval, tel).values()]
        bat = np.array([s.battery_w for s in steps])
        ev = np.array([s.ev_w for s in steps])
        exp = np.array([limit_or_inf(s.export_max_w) for s in steps])
        dimmed = relays | np.array([s.controllable_max_w is not None for s in steps])
    if relays.any():
        ev, bat = relay_dimmed(world, t, relays, ev, bat)
    return bat, ev, exp, dimmed


def relay_dimmed(
    world: World, t: int, relays: np.ndarray, ev_w: np.ndarray, battery_w: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Charger and battery setpoints (W) with the households of ``relays`` (H,) bool dimmed as
    a controller dims on its relay input: to the guarantee alone, each plugged-in car's charger
    at no less than min(4.2 kW, its limit) (the controller cannot see what the car needs).
    battery_w None (the local policy) stays None: it charges only from surplus PV."""
    max_w = np.where(relays, world.fleet.ev_max_w[:, t], 0.0)
    floor_w = ev_floor_w(max_w, math.inf, world.ev_min_w, 1.0)
    bat = np.zeros_like(ev_w) if battery_w is None else battery_w
    dim_ev, dim_bat = dimmed_household_w(ev_w, floor_w, bat, 0.0)
    ev = np.where(relays, np.round(dim_ev), ev_w)
    return ev, None if battery_w is None else np.where(relays, np.round(dim_bat), battery_w)


def ended(setup: Setup, interval: int, t: int) -> CommunityFigures:
    """The community figures of interval t (``interval``), just run, as the coordinator takes
    them (``interval_figures``): from the telemetry its devices show at its end, and the
    feeder envelope it was planned with."""
    households = setup.community.spec.households
    show(setup.devices, households, setup.world, setup.meters, t + 1)
    tel = telemetry(setup.devices, households, interval + 1, "plan")
    return interval_figures(tel.values(), interval, setup.feeder_limits_w[t], len(households))


def simulate(
    scn: Scenario,
    ledger_path: Path,
    progress: Progress | None = None,
    dispatch: DispatchMode = "community",
    plans_path: Path | None = None,
) -> SimResult:
    """Run ``scn`` end to end, booking settlement into a new ledger at ``ledger_path``.

    dispatch: "none" (every home self-consumes, no coordination), "home" (each household
    optimised alone, no sharing) or "community" (gridctl's feeder-aware dispatch).
    progress: called with (intervals done, intervals total) after each interval.
    plans_path: the plan log to add each interval's community plan to, as the coordinator
    does (``gridctl.dispatch.plan_log``; None: none).
    A scenario that scripts proposals is governed as the coordinator governs
    (``gridctl.sim.governance``): each interval planned with the reserve and fairness rule in
    force, the scripted proposals submitted and votes received, governance advanced before the
    interval is settled, and settled with the prices and rates in force.
    """
    s = prepare(scn, dispatch)
    c = s.community
    clock = SimClock(scn.first_interval * INTERVAL_S)
    plans = PlanLog(plans_path) if plans_path is not None and c.planner is not None else None
    with (
        Ledger(ledger_path, simulated_coordinator_key(scn.seed)) as ledger,
        sim_ven(scn.openadr, c, scn.base_dir, clock) as ven,
        contextlib.closing(plans) if plans is not None else contextlib.nullcontext(),
    ):
        # every meter signs its readings; settlement verifies them as in production
        signers = enrol_simulated(
            ledger, c.ids, c.connection_w, scn.first_interval, scn.seed,
            transformer_rated_w=s.feeder.transformer_rated_w,
        )  # fmt: skip
        settler = Settler(ledger, c.settlement, physics=c.physics)
        meters = [signers[main_meter(h)] for h in c.ids]
        totals = SettledTotals(len(c.ids))
        script = Script.of(scn)
        gov = script.open(ledger) if script is not None else None
        for t in range(scn.intervals):
            interval = scn.first_interval + t
            clock.t_s = interval * INTERVAL_S
            if ven is not None:
                ven.poll_at(clock.t_s)
            if script is not None and gov is not None:
                script.propose_due(gov, interval)
                if c.planner is not None:
                    govern_planner(c.planner, gov.values_at(interval))
            s.step(t, *planned(s, interval, t))
            if c.planner is not None:
                record_baselines(ledger, c.planner, interval)
            if plans is not None and c.planner is not None:
                plans.add(c.planner.community_plan(interval, c.settlement.public_k))
            volts = meter_voltages_mv(s.world, s.meters)
            assert volts is not None  # the world has run an interval
            readings = sign_interval(interval, meters, signers[TRANSFORMER_METER], s.meters, volts)
            if ven is not None:
                ven.measured(readings[-1])
            if script is not None and gov is not None:
                govern_settler(gov, settler, c.settlement, interval, script.received(interval))
            book_due(ledger, interval, settler.config.flex_tokens_per_kwh)
            st = settler.settle(interval, readings, figures=ended(s, interval, t)).settlement
            assert st is not None  # a new interval is always settled
            totals.add(st)
            if progress:
                progress(t + 1, scn.intervals)
        record_run(ledger_path.parent / GRID_FILE, scn, s.world, c.ids, scn.first_interval)
        return sim_result(scn, s, totals, ledger.head, ledger.path)


def sign_interval(
    interval: int,
    mains: list[MeterSigner],
    transformer: MeterSigner,
    meters: Meters,
    volts_mv: tuple[np.ndarray, int],
) -> list[SignedReading]:
    """Every meter's signed reading at the end of ``interval``: what ``meters`` counted and the
    voltages (mV) they report, household mains in order, then the transformer meter."""
    imp, exp = meters.household_counters_wh()
    readings = [
        m.sign(interval, int(i), int(e), int(v))
        for m, i, e, v in zip(mains, imp, exp, volts_mv[0], strict=True)
    ]
    readings.append(transformer.sign(interval, *meters.trafo_counters_wh(), volts_mv[1]))
    return readings


class SettledTotals:
    """Per-household settlement totals over a run, (H,) int64, and the pool per interval."""

    def __init__(self, n_h: int):
        self.supplied_wh = np.zeros(n_h, dtype=np.int64)
        self.received_wh = np.zeros(n_h, dtype=np.int64)
        self.tokens_micro = np.zeros(n_h, dtype=np.int64)
        self.paid_micro = np.zeros(n_h, dtype=np.int64)
        self.earned_micro = np.zeros(n_h, dtype=np.int64)
        self.shared_wh: list[float] = []
        self.pool_micro: list[int] = []

    def add(self, st: IntervalSettlement) -> None:
        """Add one interval's pool outcome."""
        self.supplied_wh += st.supplied_wh
        self.received_wh += st.received_wh
        self.tokens_micro += st.tokens_micro
        self.paid_micro += st.paid_micro
        self.earned_micro += st.earned_micro
        self.shared_wh.append(float(st.supplied_wh.sum()))
        self.pool_micro.append(int(st.earned_micro.sum()))

    def add_outcome(self, outcome: IntervalOutcome) -> None:
        """Add a settled interval's pool outcome (an already closed one adds nothing)."""
        if outcome.settlement is not None:
            self.add(outcome.settlement)


def sim_result(
    scn: Scenario, setup: Setup, totals: SettledTotals, ledger_head: str, ledger_path: Path
) -> SimResult:
    """A run's result from the world's history, the planner's counters, the settled totals
    and the ledger."""
    world, ids = setup.world, setup.community.ids
    rolling = setup.community.planner.rolling if setup.community.planner else None
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
        pool_micro=np.array(totals.pool_micro, dtype=np.int64),
        supplied_wh=totals.supplied_wh,
        received_wh=totals.received_wh,
        tokens_micro=totals.tokens_micro,
        paid_micro=totals.paid_micro,
        earned_micro=totals.earned_micro,
        ev_unmet_wh=world.ev_unmet_wh(len(h)),
        dispatch=setup.community.mode,
        plans=rolling.plans if rolling else 0,
        plan_rounds=rolling.rounds if rolling else 0,
        plan_violations_left=rolling.unresolved if rolling else 0,
        ledger_head=ledger_head,
        ledger_path=ledger_path,
        cheats=setup.meters.truth(),
        feeder_import_max_w=np.array([x[0] for x in setup.feeder_limits_w]),
        feeder_export_max_w=np.array([x[1] for x in setup.feeder_limits_w]),
        ev_set_w=np.array([c[0] for c in setup.chargers]).reshape(len(h), len(ids)),
        ev_demand_w=np.array([c[1] for c in setup.chargers]).reshape(len(h), len(ids)),
        dimmed=np.array([c[2] for c in setup.chargers], dtype=bool).reshape(len(h), len(ids)),
    )
