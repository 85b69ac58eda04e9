"""The coordinator's planner: forecast from profiles and telemetry, AC-verified dispatch, plans.

Each interval, for every household of the feeder:

- **Base load**: the household's standard load profile scaled to its annual energy, corrected by
  persistence: the base load measured in fresh telemetry at the interval's start (grid power
  minus the powers of PV, battery and EV charger) differs from the profile's value for the
  interval before by some amount; that amount is added to the profile from the present
  interval on, fading out with a half-life of ``LOAD_HALF_LIFE`` intervals (the profile's own
  rise and fall, such as the evening ramp, is kept).
- **PV**: the PV profile times the installed kWp, scaled by the ratio of measured PV to the
  profile's value for the interval before
  (smoothed over recent intervals, learnt while the sun is up; while a household exports at
  its plan's export limit its measured PV is only a lower bound and can only raise the ratio),
  fading back to the profile with a half-life of ``PV_HALF_LIFE`` intervals.
- **Battery**: the energy now from the telemetry's ``soc``; without it, what the last plan
  expected, else ``soc0``.
- **EV**: plugged in during its configured daily session; a car drawing power outside it is
  taken as having arrived early (plugged in from now to the session's departure). A session
  needs its configured energy less what the telemetry showed it take: the EV power at each
  interval start, held for the interval before; a car that draws nothing although the last
  plan asked it to charge is full and needs nothing more this session.

Telemetry older than ``STALE_S`` counts as unknown. Then ``RollingPlanner`` plans with the
feeder guard (a full plan every ``replan_every`` intervals, near re-plans in between, each
AC-checked) and the steps of the next intervals are returned per household.

A household the grid operator dims under §14a EnWG (an ``Envelopes`` limit on its controllable
devices) gets plan steps that say so and keep its charger at no less than the §14a minimum while
its car needs energy (``gridctl.coordinator.dimming``).

Two parameters the community governs (``set_parameters``) shape the plan: the battery reserve
kept for outages and the rule curtailment is shared by; a change makes the next plan a full one.

A forecast can be wrong, and PV above it is what breaks a sunny feeder: the plan's next
interval is AC-checked once more with every household that may export freely producing
``PV_HIGH`` times its profile; if that breaks a limit, no household may export more than
planned in that interval (PV above the forecast is curtailed rather than exported).
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandapower as pp

from gridctl.controller.limits import ev_min_w
from gridctl.coordinator.dimming import dim_steps
from gridctl.core import INTERVALS_PER_DAY as DAY
from gridctl.core import Tariff, interval_hours, interval_start, limit_or_inf, limit_or_none
from gridctl.dispatch.community import (
    FAIRNESS_RULES,
    CommunityProblem,
    EnvelopeLimits,
    Fairness,
    Fleet,
    Plan,
    held_w,
)
from gridctl.dispatch.feeder_guard import TRAFO_HEADROOM, FeederGuard, FeederLimits
from gridctl.dispatch.fleet import build_fleet, profile_forecast, tan_phi, window
from gridctl.dispatch.home import solve_each_home
from gridctl.dispatch.plan_log import community_plan
from gridctl.dispatch.rolling import STEPS_AHEAD, RollingPlanner
from gridctl.dispatch.spec import DispatchSpec, HouseholdSpec
from gridctl.grid.ac import AcResult
from gridctl.grid.feeder import Profiles
from gridctl.protocol import CommunityPlanMessage, PlanStep, Telemetry
from gridctl.public.envelope import FEEDER, Envelopes, Limit
from gridctl.public.flex_event import FlexEvent
from gridctl.public.flexibility import Baseline
from gridctl.public.flexibility import key as flex_key
from gridctl.public.flexibility import window as flex_window
from gridctl.public.in_force import in_force

log = logging.getLogger(__name__)

STALE_S = 300.0
"""Telemetry older than this at an interval's start is not used, s."""
LOAD_HALF_LIFE = 2.0
"""Intervals over which a measured base-load deviation from the profile halves."""
PV_HALF_LIFE = 4.0
"""Intervals over which a measured PV-to-profile ratio fades halfway back to one."""
PV_MIN_SHARE = 0.05
"""The ratio is learnt only while the profile expects at least this share of kWp."""
PV_RATIO_MAX = 1.5
"""Largest PV-to-profile ratio believed (a sensor or profile glitch otherwise)."""
PV_SMOOTHING = 0.5
"""Weight of the newest measured ratio in the smoothed PV ratio."""
PV_HIGH = PV_RATIO_MAX
"""PV, as a multiple of the profile, the export check of the next interval allows for."""
CAP_REACHED_W = 50.0
"""A household exporting within this of its export limit is taken as held back by it, W."""
EV_ON_W = 100.0
"""An EV charger drawing more than this is charging a car, W."""


def within_envelope(
    steps: dict[str, list[PlanStep]], env: EnvelopeLimits
) -> dict[str, list[PlanStep]]:
    """Each household's plan steps with its own envelope (``env``, from the first step's
    interval) as their export and import limits where it is tighter."""
    out = {}
    for h, (hid, ss) in enumerate(steps.items()):
        out[hid] = [
            s.model_copy(
                update={
                    "export_max_w": limit_or_none(
                        min(limit_or_inf(s.export_max_w), float(env.export_w[h, j]))
                    ),
                    "import_max_w": limit_or_none(
                        min(limit_or_inf(s.import_max_w), float(env.import_w[h, j]))
                    ),
                }
            )
            for j, s in enumerate(ss)
        ]
    return out


def _same_envelope(
    a: EnvelopeLimits | None, a_t0: int, b: EnvelopeLimits | None, b_t0: int
) -> bool:
    """Whether envelopes over horizons from intervals ``a_t0`` and ``b_t0`` (≤ ``a_t0``) agree
    where both reach (a limit newly entering the far end counts as a change too)."""
    if a is None or b is None:
        return a is b
    d = a_t0 - b_t0
    n = b.feeder_import_w.shape[0] - d
    if d < 0 or n <= 0 or a.import_w.shape[0] != b.import_w.shape[0]:
        return False
    return all(
        np.array_equal(x[..., :n], y[..., d : d + n])
        for x, y in zip(_fields(a), _fields(b), strict=True)
    ) and all(np.isinf(x[..., n:]).all() for x in _fields(a))


def _fields(e: EnvelopeLimits) -> tuple[np.ndarray, ...]:
    return e.import_w, e.export_w, e.feeder_import_w, e.feeder_export_w


def decay(half_life: float, n_t: int) -> np.ndarray:
    """Weights 1, …, fading with ``half_life`` intervals, over ``n_t`` intervals, (n_t,)."""
    return 0.5 ** (np.arange(n_t) / half_life)


def fresh(t: Telemetry | None, interval: int) -> Telemetry | None:
    """``t`` if it is at most ``STALE_S`` older than ``interval``'s start, else None."""
    if t is None:
        return None
    age_s = (interval_start(interval) - t.t).total_seconds()
    return t if age_s <= STALE_S else None


def base_load_w(t: Telemetry, spec: HouseholdSpec) -> float | None:
    """Base load in ``t``: grid power less PV, battery and EV powers, W (≥ 0), load convention.

    None when the grid power, or the power of a device the household has, is unknown; a device
    it does not have counts only if reported.
    """
    if t.grid_p_w is None:
        return None
    out = t.grid_p_w
    for p_w, owned in ((t.pv_p_w, spec.pv), (t.battery_p_w, spec.battery), (t.ev_p_w, spec.ev)):
        if p_w is None and owned is not None:
            return None
        out -= p_w or 0.0  # a device not owned and not reported draws nothing
    return max(out, 0.0)


class CommunityPlanner:
    """The coordinator's ``Planner`` for one feeder (see the module doc).

    households: the planned households (ids, buses, devices, connections), in order.
    net / profiles: the feeder and its standard profiles. buses: each household's bus index.
    transformer_rated_w: the feeder's transformer rating, W.
    limits: the feeder's operating limits (with dispatch's margin and AC-check rounds); None
    plans every household alone (no sharing, the feeder unchecked).
    dispatch: horizon, full re-plan period and near re-plan length, intervals.
    tariff: grid prices the dispatch minimises.
    """

    def __init__(
        self,
        households: Sequence[HouseholdSpec],
        net: pp.pandapowerNet,
        profiles: Profiles,
        buses: np.ndarray,
        transformer_rated_w: float,
        limits: FeederLimits | None,
        dispatch: DispatchSpec,
        tariff: Tariff,
    ):
        self.households = list(households)
        self.ids = [h.id for h in self.households]
        self.profiles = profiles
        self.horizon = dispatch.horizon
        self.tariff = tariff
        self.feeder_max_w = TRAFO_HEADROOM * transformer_rated_w
        self.tan_phi = tan_phi(self.households)
        self.pv_peak_w = np.array([h.pv.peak_w if h.pv else 0.0 for h in self.households])
        self.bat_wh = np.array([h.battery.e_wh if h.battery else 0.0 for h in households])
        ev_min = np.array([ev_min_w(h.ev.p_max_w if h.ev else None) for h in self.households])
        guard = None if limits is None else FeederGuard(net, buses, self.ids, limits)
        self.rolling = RollingPlanner(guard, dispatch.replan_every, dispatch.near, ev_min)
        self.pv_ratio = np.ones(len(self.ids))
        self.ev_given_wh: dict[tuple[int, int], float] = {}  # (household, session end) -> Wh
        self.counted_through: int | None = None  # last interval whose EV energy was counted
        self._ev_asked_w = np.zeros(len(self.ids))  # the last plan's EV power for its interval
        self._export_cap_w = np.full(len(self.ids), np.inf)  # the last plan's export limits, W
        self.pv_profile_w = np.zeros((len(self.ids), self.horizon))  # the last forecast's, W
        self._reserve_soc = 0.0
        self._fairness: Fairness = "bus"
        self.envelopes = Envelopes()
        """The grid operator's envelopes (the coordinator's sources update this object)."""
        self._envelope: EnvelopeLimits | None = None  # the last plan's, from _envelope_t0
        self._envelope_t0 = 0
        self._expected: dict[str, tuple[FlexEvent, str]] = {}  # requests awaiting a baseline
        # every request expected (key -> last interval of its window), kept a day after it
        # ends so a source still listing an ended request does not bring it back
        self._seen: dict[str, int] = {}
        self._baselines: list[Baseline] = []  # made, not yet taken
        self._events: dict[str, tuple[FlexEvent, str]] = {}  # every request until it ends
        # the interval last planned, its time and its forecast (base load, PV), W, (H,) each
        self._forecast: tuple[int, float, np.ndarray, np.ndarray] | None = None
        self._q_w0 = np.zeros(len(self.ids))  # the last plan's reactive power forecast, var

    @property
    def battery_reserve_soc(self) -> float:
        """Share of each battery's capacity the plan keeps for outages, 0–1."""
        return self._reserve_soc

    @property
    def fairness(self) -> Fairness:
        """How curtailment is shared: "bus" or "kwp" (``gridctl.dispatch.community.Fairness``)."""
        return self._fairness

    def set_parameters(
        self, battery_reserve_soc: float | None = None, fairness: str | None = None
    ) -> None:
        """Set the governed parameters from the next ``plan()`` on; None leaves one as it is.

        battery_reserve_soc: share of each battery's capacity kept for outages, 0–1; the floor
        on a battery's energy is the larger of it and the battery's own ``soc_min`` (one below
        the reserve is kept from discharging further, see ``gridctl.dispatch.fleet.window``).
        fairness: "bus" or "kwp" (``gridctl.dispatch.community.Fairness``).
        Raises ValueError naming the parameter for a value out of range (then nothing changes).
        """
        reserve = self._reserve_soc if battery_reserve_soc is None else battery_reserve_soc
        if isinstance(reserve, bool) or not isinstance(reserve, numbers.Real):
            raise ValueError(f"battery_reserve_soc must be a number, got {reserve!r}")
        if not 0.0 <= reserve <= 1.0:  # NaN too
            raise ValueError(f"battery_reserve_soc must be within 0 and 1, got {reserve!r}")
        rule = self._fairness if fairness is None else fairness
        if rule not in FAIRNESS_RULES:
            have = ", ".join(FAIRNESS_RULES)
            raise ValueError(f"fairness must be one of {have}, got {rule!r}")
        if (float(reserve), rule) != (self._reserve_soc, self._fairness):
            self.rolling.restart()  # a near re-plan would follow the full plan's old course
            log.info("planner parameters battery_reserve_soc=%s fairness=%s", reserve, rule)
        self._reserve_soc, self._fairness = float(reserve), rule

    def plan(
        self, interval: int, telemetry: Mapping[str, Telemetry], now_s: float | None = None
    ) -> dict[str, list[PlanStep]]:
        """Every household's plan steps from ``interval`` (blocking: solves an LP and AC power
        flows; the coordinator runs it in a worker thread). now_s: the time the envelopes are
        judged at (a silent source gives way to the default), s; default the interval's start."""
        tel = [fresh(telemetry.get(h), interval) for h in self.ids]
        load_w, pv_w = self.forecast(interval, tel)
        now = interval_start(interval).timestamp() if now_s is None else now_s
        self._forecast = (interval, now, load_w[:, 0].copy(), pv_w[:, 0].copy())
        self._events = {k: e for k, e in self._events.items() if flex_window(e[0])[1] >= interval}
        fleet = self.fleet(interval, tel)
        envelope = self._envelope_at(interval, load_w.shape[1], now_s)
        problem = CommunityProblem(
            load_w=load_w, pv_w=pv_w, fleet=fleet, feeder_max_w=self.feeder_max_w,
            dt_h=interval_hours(), import_per_kwh=self.tariff.import_per_kwh,
            feed_in_per_kwh=self.tariff.feed_in_per_kwh, fairness=self._fairness,
            envelope=envelope,
        )  # fmt: skip
        q_w = load_w * self.tan_phi[:, None]
        self._q_w0 = q_w[:, 0]
        if self._expected:
            self._make_baselines(interval, problem, q_w, now_s)
        if self.rolling.due(interval):
            self.rolling.replan(interval, problem, q_w)
        if envelope is not None:
            self._hold_at_feeder_limits(interval, envelope)
        steps = self.rolling.steps(self.ids, interval)
        if self._export_unsafe(interval, steps, pv_w[:, 0], q_w[:, 0]):
            self.rolling.hold_exports(interval)
            steps = self.rolling.steps(self.ids, interval)
        steps = self._dimmed(interval, steps, fleet, now_s)
        if envelope is not None:
            steps = within_envelope(steps, envelope)
        self._export_cap_w = np.array([limit_or_inf(s[0].export_max_w) for s in steps.values()])
        self._ev_asked_w = np.array([s[0].ev_w for s in steps.values()])
        log.info(
            "planned interval=%d households=%d rounds=%d violations_left=%d",
            interval, len(steps), self.rolling.rounds, self.rolling.unresolved,
        )  # fmt: skip
        return steps

    def community_plan(self, interval: int, k: int) -> CommunityPlanMessage:
        """The community's plan of ``interval``, the one ``plan`` made last: its forecast and
        plan summed over the households, with the envelopes and events in force
        (``gridctl.dispatch.plan_log``). k: fewest households a published sum may cover.
        ValueError when ``interval`` is not the interval last planned."""
        r = self.rolling
        if self._forecast is None or self._forecast[0] != interval or r.plan is None:
            raise ValueError(f"interval {interval} is not the interval last planned")
        _, now, load_w, pv_w = self._forecast
        events = [(ev, src) for ev, src in self._events.values()
                  if flex_window(ev)[0] <= interval <= flex_window(ev)[1]]  # fmt: skip
        return community_plan(
            interval, r.plan, interval - r.plan_t0, load_w, pv_w, k, self.feeder_limits_w(),
            in_force(self.envelopes.binding(interval, now), events),
        )  # fmt: skip

    def planned_flow(self, interval: int) -> AcResult | None:
        """The AC power flow of the current plan's ``interval`` as the households can hold it
        (``held_w``; reactive power as forecast), or None without a feeder-checked plan
        reaching it. Blocking (a power flow): the coordinator runs it in a worker thread."""
        r = self.rolling
        if r.guard is None or r.plan is None:
            return None
        j = interval - r.plan_t0
        if not 0 <= j < r.plan.net_w.shape[1]:
            return None
        return r.guard.ac.run(held_w(r.plan, j), self._q_w0)

    def _dimmed(
        self, interval: int, steps: dict[str, list[PlanStep]], fleet: Fleet, now_s: float | None
    ) -> dict[str, list[PlanStep]]:
        """``steps`` with the §14a dimming in force applied (``gridctl.coordinator.dimming``)."""
        now = interval_start(interval).timestamp() if now_s is None else now_s
        n_t = min(len(s) for s in steps.values())
        cap_w = self.envelopes.dimming(self.ids, interval, n_t, now)
        if np.isinf(cap_w).all():
            return steps
        ev_min_w = np.broadcast_to(self.rolling.ev_min_w, (len(self.ids),))
        return dim_steps(steps, cap_w, fleet, ev_min_w, interval_hours())

    def feeder_limits_w(self) -> tuple[float, float]:
        """(import_max_w, export_max_w) of the feeder's envelope in the interval last planned
        (``inf``: none)."""
        env = self._envelope
        if env is None:
            return math.inf, math.inf
        return float(env.feeder_import_w[0]), float(env.feeder_export_w[0])

    def _envelope_at(self, interval: int, n_t: int, now_s: float | None) -> EnvelopeLimits | None:
        """The envelopes over the horizon (None when no limit applies in it); a change from
        the last plan's makes the next re-plan a full one."""
        env = self._limits(interval, n_t, now_s)
        if not _same_envelope(env, interval, self._envelope, self._envelope_t0):
            self.rolling.restart()
            log.info("envelopes changed interval=%d in_force=%s", interval, env is not None)
        self._envelope, self._envelope_t0 = env, interval
        return env

    def _limits(
        self,
        interval: int,
        n_t: int,
        now_s: float | None,
        without: Callable[[Limit], bool] | None = None,
    ) -> EnvelopeLimits | None:
        """The envelopes over ``n_t`` intervals from ``interval`` as known at ``now_s`` (default
        the interval's start), leaving out what ``without`` is true for; None when none binds."""
        now = interval_start(interval).timestamp() if now_s is None else now_s
        imp, exp = self.envelopes.series([*self.ids, FEEDER], interval, n_t, now, without=without)
        if not (np.isfinite(imp).any() or np.isfinite(exp).any()):
            return None
        return EnvelopeLimits(imp[:-1], exp[:-1], imp[-1], exp[-1])

    def expect(self, ev: FlexEvent, source: str) -> None:
        """Make a baseline for flexibility request ``ev`` (from ``source``) at the next plan that
        sees its window (once; a request whose window has begun gets none)."""
        k = flex_key(ev)
        if flex_window(ev)[1] >= (self._forecast[0] if self._forecast else 0):
            self._events[k] = (ev, source)
        if k not in self._seen:
            self._seen[k] = flex_window(ev)[1]
            self._expected[k] = (ev, source)

    def take_baselines(self) -> list[Baseline]:
        """The baselines made since the last call."""
        out, self._baselines = self._baselines, []
        return out

    def _make_baselines(
        self, interval: int, problem: CommunityProblem, q_w: np.ndarray, now_s: float | None
    ) -> None:
        """For every expected request whose window lies ahead within the horizon: the plan
        without it (the baseline) and with it, over its window."""
        n_t = problem.load_w.shape[1]
        self._seen = {k: last for k, last in self._seen.items() if last >= interval - DAY}
        for k, (ev, source) in list(self._expected.items()):
            first, last = flex_window(ev)
            if first <= interval:
                del self._expected[k]
                log.warning("flexibility request %s began before a baseline was made", k)
                continue
            if first - interval >= n_t:
                continue  # beyond the horizon yet
            without = replace(problem, envelope=self._limits(interval, n_t, now_s, ev.sets))
            j0, n = first - interval, min(last - first + 1, n_t - (first - interval))
            base, planned = (self._solve(p, interval, q_w).net_w[:, j0 : j0 + n]
                             for p in (without, problem))  # fmt: skip
            self._baselines.append(Baseline(ev, source, interval, base, planned))
            del self._expected[k]
            log.info("baseline made request=%s intervals=%d", k, n)

    def _solve(self, problem: CommunityProblem, interval: int, q_w: np.ndarray) -> Plan:
        """A plan of ``problem`` apart from the rolling one (AC-checked where the feeder is)."""
        guard = self.rolling.guard
        if guard is None:
            return solve_each_home(problem)
        return guard.plan(problem, interval, q_w)[0]

    def _hold_at_feeder_limits(self, interval: int, env: EnvelopeLimits) -> None:
        """Where the feeder's export (import) is limited in the next plan steps, no household
        exports (imports) more than planned, so a forecast error cannot break the limit."""
        r = self.rolling
        assert r.plan is not None
        reach = r.plan_t0 + r.plan.net_w.shape[1]
        for j in range(min(STEPS_AHEAD, len(env.feeder_export_w))):
            if interval + j >= reach:
                break
            if math.isfinite(env.feeder_export_w[j]):
                r.hold_exports(interval + j)
            if math.isfinite(env.feeder_import_w[j]):
                r.hold_imports(interval + j)

    def _export_unsafe(
        self, interval: int, steps: dict[str, list[PlanStep]], pv_w: np.ndarray, q_w: np.ndarray
    ) -> bool:
        """Whether ``interval`` breaks a feeder limit when every household without an export
        limit produces ``PV_HIGH`` times its profile (pv_w: the forecast, W; q_w: var)."""
        r = self.rolling
        if r.guard is None or r.plan is None or not self.pv_peak_w.any():
            return False
        free = np.array([s[0].export_max_w is None for s in steps.values()])
        profile_w = self.pv_profile_w[:, 0]
        more_w = np.where(free, np.minimum(PV_HIGH * profile_w - pv_w, 0.0), 0.0)
        if not (more_w < 0).any():
            return False
        found = r.guard.violations(interval, held_w(r.plan, interval - r.plan_t0) + more_w, q_w)
        if found:
            log.info("export held at plan interval=%d violations_with_more_pv=%d",
                     interval, len(found))  # fmt: skip
        return bool(found)

    def forecast(
        self, interval: int, tel: Sequence[Telemetry | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(base load W ≥ 0, PV W ≤ 0), (H, horizon), from ``interval``, load convention."""
        # the profiles from the interval before, which the telemetry at this one's start measured
        load_w, pv_w = profile_forecast(
            self.households, self.profiles, interval_start(interval - 1), self.horizon + 1
        )
        was_load_w, was_pv_w = load_w[:, 0], pv_w[:, 0]
        load_w, pv_w = load_w[:, 1:], pv_w[:, 1:]
        hh = self.households
        base = [None if t is None else base_load_w(t, h) for t, h in zip(tel, hh, strict=True)]
        # an unknown base load keeps the profile
        measured = np.array([was_load_w[k] if b is None else b for k, b in enumerate(base)])
        load_w = np.clip(
            load_w + (measured - was_load_w)[:, None] * decay(LOAD_HALF_LIFE, self.horizon),
            0.0,
            None,
        )
        self.pv_profile_w = pv_w
        self._learn_pv_ratio(was_pv_w, tel)
        scale = 1.0 + (self.pv_ratio - 1.0)[:, None] * decay(PV_HALF_LIFE, self.horizon)
        return load_w, pv_w * scale

    def _learn_pv_ratio(self, expected_w: np.ndarray, tel: Sequence[Telemetry | None]) -> None:
        pv_now = np.array([np.nan if t is None or t.pv_p_w is None else t.pv_p_w for t in tel])
        sunny = -expected_w >= PV_MIN_SHARE * self.pv_peak_w
        seen = sunny & np.isfinite(pv_now) & (self.pv_peak_w > 0)
        ratio = np.clip(pv_now / np.where(seen, expected_w, 1.0), 0.0, PV_RATIO_MAX)
        smoothed = (1 - PV_SMOOTHING) * self.pv_ratio + PV_SMOOTHING * ratio
        # PV held back at the export limit is only a lower bound on what the sun gave
        grid_w = np.array([np.nan if t is None or t.grid_p_w is None else t.grid_p_w for t in tel])
        export_w = -grid_w
        held = ~(export_w < self._export_cap_w - CAP_REACHED_W)  # at the limit, or unknown
        bound = np.maximum(self.pv_ratio, ratio)
        self.pv_ratio = np.where(seen, np.where(held, bound, smoothed), self.pv_ratio)

    def fleet(self, interval: int, tel: Sequence[Telemetry | None]) -> Fleet:
        """Devices as they stand at ``interval``'s start, over the horizon (see the module doc)."""
        # from a day back, so that the session under way is whole
        n_all = DAY + max(self.horizon, DAY)
        full = build_fleet(self.households, interval_start(interval - DAY), n_all)
        ev_w = np.array([np.nan if t is None or t.ev_p_w is None else t.ev_p_w for t in tel])
        full = self._early_arrivals(full, ev_w > EV_ON_W)
        left_wh = full.ev_need_wh.copy()
        for s, (k, a, b) in enumerate(full.ev_session):
            if a <= DAY < b:  # under way: what it still needs
                self._count_ev(interval, int(k), interval - DAY + int(b), ev_w[k])
                left_wh[s] = max(left_wh[s] - self.ev_given_wh.get((k, interval - DAY + b), 0), 0)
        self.counted_through = interval
        self.ev_given_wh = {key: e for key, e in self.ev_given_wh.items() if key[1] > interval}
        e_now_wh = self._battery_wh(interval, tel)
        return window(full, DAY, self.horizon, e_now_wh, left_wh, self._reserve_soc)

    def _early_arrivals(self, full: Fleet, charging: np.ndarray) -> Fleet:
        """``full`` with the next session of each car charging outside its sessions begun now."""
        plugged = full.ev_max_w[:, DAY] > 0
        sessions = full.ev_session.copy()
        ev_max_w = full.ev_max_w.copy()
        for k in np.flatnonzero(charging & ~plugged):
            later = np.flatnonzero((sessions[:, 0] == k) & (sessions[:, 1] > DAY))
            if len(later):
                s = later[np.argmin(sessions[later, 1])]
                ev_max_w[k, DAY : sessions[s, 1]] = self.households[k].ev.p_max_w  # type: ignore[union-attr]
                sessions[s, 1] = DAY
        return replace(full, ev_session=sessions, ev_max_w=ev_max_w)

    def _count_ev(self, interval: int, k: int, end: int, ev_w: float) -> None:
        """Book the EV power seen at ``interval``'s start as the energy of the interval before;
        a car that draws nothing although the last plan asked it to charge is full."""
        if np.isfinite(ev_w) and self.counted_through != interval:
            key = (k, end)
            if ev_w < EV_ON_W <= self._ev_asked_w[k]:
                self.ev_given_wh[key] = math.inf
            self.ev_given_wh[key] = self.ev_given_wh.get(key, 0.0) + ev_w * interval_hours()

    def _battery_wh(self, interval: int, tel: Sequence[Telemetry | None]) -> np.ndarray:
        """Battery energy at ``interval``'s start, Wh: telemetry's soc, else the last plan's
        expectation, else ``soc0``."""
        soc0 = np.array([h.battery.soc0 if h.battery else 0.0 for h in self.households])
        e_wh = soc0 * self.bat_wh
        r = self.rolling
        if r.plan is not None and r.plan.battery_e_wh is not None:
            j = interval - 1 - r.plan_t0
            if 0 <= j < r.plan.battery_e_wh.shape[1]:
                e_wh = r.plan.battery_e_wh[:, j].copy()
        soc = np.array([np.nan if t is None or t.soc is None else t.soc for t in tel])
        return np.where(np.isfinite(soc), soc * self.bat_wh, e_wh)
