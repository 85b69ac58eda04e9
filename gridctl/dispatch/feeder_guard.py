"""Feeder-safe planning: linear feeder constraints in the LP, proved by AC power flows.

The LP sees the feeder through LinDistFlow rows (``gridctl.grid.network``) plus, per bus and
interval, an offset that brings the linear |V|^2 onto pandapower's AC result. Offsets start
from a no-load power flow and are recalibrated at the planned operating point whenever the
AC check of a planned interval finds a violation; violated branches get a tighter flow limit.
The plan is re-solved until the checked intervals are clean or the rounds run out.

The LP carries the feeder with its unbranched runs merged (``merge_chains``) and, by default,
a horizon whose far end is planned in hour blocks (``Horizon``); the AC check looks at every
bus and branch of the real feeder and maps what it finds onto the merged branches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import pandapower as pp

from gridctl.core import W_PER_KW
from gridctl.dispatch.community import CommunityProblem, FeederModel, Plan, held_w, solve
from gridctl.dispatch.horizon import DEFAULT_HORIZON, Horizon
from gridctl.grid.ac import AcFeeder
from gridctl.grid.network import W_PER_PU, merge_chains, prune, radial_network

log = logging.getLogger(__name__)


TRAFO_HEADROOM = 0.9
"""Share of the transformer rating (kVA) the dispatch may use for active power."""


@dataclass(frozen=True)
class FeederLimits:
    """Operating limits and how the planner keeps them.

    v_min_pu, v_max_pu: allowed voltage band, p.u. loading_max_pct: branch loading limit, %.
    margin_v_pu: safety margin the plan keeps inside the band (forecast error, model error), p.u.
    margin_loading_pct: margin the AC check of a plan keeps below ``loading_max_pct`` (forecast
    error), percentage points.
    flow_factor: share of a branch's rating the plan may use for active power (reactive power,
    voltage below nominal), 0–1. rounds: most AC-check / re-solve rounds per plan.
    """

    v_min_pu: float = 0.94
    v_max_pu: float = 1.06
    loading_max_pct: float = 100.0
    margin_v_pu: float = 0.006
    margin_loading_pct: float = 3.0
    flow_factor: float = 0.92
    rounds: int = 5


@dataclass(frozen=True)
class Violation:
    """A limit the AC power flow found broken: kind "v_high" | "v_low" | "loading"."""

    interval: int
    kind: str
    where: str
    value: float


@dataclass
class GuardReport:
    """What the AC verification of one plan did.

    export_tight: per planned interval, True where an export-side feeder limit binds (a branch
    carries reverse flow near its limit, or a voltage sits near the top of its band): there,
    households must not export more than planned, whatever their PV does.
    """

    rounds: int = 0
    checked: int = 0
    remaining: list[Violation] = field(default_factory=list)
    export_tight: np.ndarray | None = None


class FeederGuard:
    """Verifies plans of one feeder with pandapower and tightens the LP until they hold."""

    def __init__(
        self, net: pp.pandapowerNet, household_bus: np.ndarray, ids: list[str], limits: FeederLimits
    ):
        self.limits = limits
        self.full = prune(radial_network(net), household_bus)
        chains = merge_chains(self.full, self.full.position(household_bus))
        self.network = chains.network
        self._owner = chains.owner
        self._kept = self.full.position(self.network.bus)
        self.pos = self.network.position(household_bus)
        self.ac = AcFeeder(net, household_bus, ids)
        n_h = len(ids)
        self.ac.run(np.zeros(n_h), np.zeros(n_h))
        vm0 = self.ac.vm_pu(self.network.bus)
        zero = np.zeros(self.network.n)
        self.offset0 = vm0**2 - self.network.voltage_sq(zero, zero)
        rating_kw = self.network.s_max_pu * W_PER_PU / W_PER_KW * limits.loading_max_pct / 100.0
        self.flow_max_kw = np.where(np.isfinite(rating_kw), rating_kw * limits.flow_factor, np.inf)
        self._offset: dict[int, np.ndarray] = {}  # interval -> learned offset (N,)
        self._flow_cap: dict[int, np.ndarray] = {}  # interval -> tightened flow limit (N,)

    def model(self, first_interval: int, q_w: np.ndarray) -> FeederModel:
        """Feeder constraints for a horizon starting at ``first_interval`` (q_w: (H, T), var)."""
        n_t = q_w.shape[1]
        ivs = range(first_interval, first_interval + n_t)
        offset = np.stack([self._offset.get(i, self.offset0) for i in ivs], axis=1)
        flow = np.stack([self._flow_cap.get(i, self.flow_max_kw) for i in ivs], axis=1)
        lim = self.limits
        return FeederModel(
            network=self.network,
            household_pos=self.pos,
            q_w=q_w,
            v_min_pu=lim.v_min_pu + lim.margin_v_pu,
            v_max_pu=lim.v_max_pu - lim.margin_v_pu,
            offset_v2=offset,
            flow_max_kw=flow,
        )

    def _flow(self, p_w: np.ndarray, q_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """AC power flow of household powers (W / var, load convention): every bus's voltage
        (p.u.) and every branch's loading (%) of the real feeder."""
        self.ac.run(p_w, q_w)
        return self.ac.vm_pu(self.full.bus), self.ac.loading_pct(self.full.branch)

    def _violations(
        self, interval: int, vm_full: np.ndarray, loading_full: np.ndarray, loading_max_pct: float
    ) -> list[Violation]:
        lim, full = self.limits, self.full
        out = [
            Violation(interval, "v_high" if v > lim.v_max_pu else "v_low", f"bus {b}", float(v))
            for b, v in zip(full.bus, vm_full, strict=True)
            if v > lim.v_max_pu or v < lim.v_min_pu
        ]
        return out + [
            Violation(
                interval, "loading", f"{full.branch[k][0]} {full.branch[k][1]}", loading_full[k]
            )
            for k in np.flatnonzero(loading_full > loading_max_pct)
        ]

    def violations(
        self, interval: int, p_w: np.ndarray, q_w: np.ndarray, margin_loading_pct: float = 0.0
    ) -> list[Violation]:
        """The limits an AC power flow of household powers ``p_w`` / ``q_w`` (W / var, load
        convention) breaks at ``interval``, branch loadings counted from ``margin_loading_pct``
        below the limit; nothing is learnt from it."""
        loading_max_pct = self.limits.loading_max_pct - margin_loading_pct
        return self._violations(interval, *self._flow(p_w, q_w), loading_max_pct)

    def check(
        self, interval: int, p_w: np.ndarray, q_w: np.ndarray, v2_lin: np.ndarray | None
    ) -> list[Violation]:
        """AC power flow of one planned interval; learn from it; return the violations (branch
        loadings within ``margin_loading_pct`` of the limit count).

        p_w, q_w: planned household powers, W / var, load convention. v2_lin: the plan's linear
        |V|^2 per bus for this interval (None: offsets are left as they are).
        """
        loading_max_pct = self.limits.loading_max_pct - self.limits.margin_loading_pct
        vm_full, loading_full = self._flow(p_w, q_w)
        out = self._violations(interval, vm_full, loading_full, loading_max_pct)
        if out and v2_lin is not None:  # recalibrate at the planned point
            self._offset[interval] = vm_full[self._kept] ** 2 - v2_lin
        loading = np.zeros(self.network.n)  # worst original branch of each merged one
        np.maximum.at(loading, self._owner[1:], loading_full[1:])
        over = loading > loading_max_pct
        if over.any():
            cap = self._flow_cap.get(interval, self.flow_max_kw).copy()
            cap[over] *= loading_max_pct / loading[over] * 0.98
            self._flow_cap[interval] = cap
        return out

    def plan(
        self,
        problem: CommunityProblem,
        first_interval: int,
        q_w: np.ndarray,
        check_ahead: int = 1,
        horizon: Horizon | None = DEFAULT_HORIZON,
    ) -> tuple[Plan, GuardReport]:
        """Solve ``problem`` within the feeder limits; AC-check its first intervals.

        horizon: how the far end is coarsened (None: every interval on its own); its fine part
        must cover ``check_ahead`` and whatever is executed before the next plan.
        """
        report = GuardReport()
        n_t = problem.load_w.shape[1]
        for learned in (self._offset, self._flow_cap):  # the past is not planned again
            for interval in [i for i in learned if i < first_interval]:
                del learned[interval]
        for _ in range(self.limits.rounds):
            report.rounds += 1
            feeder = self.model(first_interval, q_w)
            fine = replace(problem, feeder=feeder)
            if horizon is None:
                plan = solve(fine)
            else:
                plan = horizon.plan(solve(horizon.problem(fine)), n_t)
            report.export_tight = export_tight(plan, feeder)
            found: list[Violation] = []
            for j in range(min(check_ahead, n_t)):
                p_w = held_w(plan, j)  # as the households can hold it
                found += self.check(first_interval + j, p_w, q_w[:, j], plan.v2_lin[:, j])
            report.checked += min(check_ahead, n_t)
            report.remaining = found
            if not found:
                break
            log.info(
                "ac check round=%d violations=%d interval=%d",
                report.rounds,
                len(found),
                first_interval,
            )
        return plan, report


TIGHT_SHARE = 0.97
"""A limit counts as binding once the plan uses this share of it."""


def export_tight(plan: Plan, feeder: FeederModel) -> np.ndarray:
    """Intervals (T,) where the plan presses against an export-side feeder limit."""
    assert plan.flow_kw is not None and plan.v2_lin is not None
    reverse = (plan.flow_kw < -TIGHT_SHARE * feeder.flow_max_kw).any(axis=0)
    v_top = feeder.v_max_pu**2 - feeder.offset_v2
    high = (plan.v2_lin > v_top - (1 - TIGHT_SHARE) * 0.01).any(axis=0)
    return reverse | high
