"""Re-plans between full plans: the next few intervals, on the course the last full plan set.

A full plan looks a day ahead and takes the longest to solve. One interval later most of it
still holds; what changed is the present (measured battery energy, EV energy given, fresh
forecasts). The near re-plan solves only the next ``near`` intervals — every household, the
feeder, the AC check — and takes the full plan's long view as its boundary: each battery ends
the window with at least the energy the full plan gave it there (as far as it can still get
there), and each EV that stays plugged beyond the window gets at least what the full plan
charged it within the window.

``RollingPlanner`` runs the cycle (a full plan every few intervals, near re-plans in between)
and turns a plan's interval into device setpoints, for the simulator and the coordinator alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from gridctl.core import limit_or_none
from gridctl.dispatch.community import CommunityProblem, Plan
from gridctl.dispatch.feeder_guard import FeederGuard
from gridctl.dispatch.home import solve_each_home
from gridctl.dispatch.horizon import DEFAULT_HORIZON, Horizon
from gridctl.dispatch.spec import DEFAULT_NEAR
from gridctl.protocol import PlanStep


def near_problem(p: CommunityProblem, previous: Plan, shift: int, near: int) -> CommunityProblem:
    """The first ``near`` intervals of ``p``, bounded by ``previous``.

    p: the problem at the present interval (battery energy and EV needs as measured now).
    previous: the last full plan (with ``battery_e_wh``), made ``shift`` intervals ago; the
    window ends where it ends, if sooner. Steps of ``p`` must be intervals (scalar dt_h).
    """
    if previous.battery_e_wh is None or shift >= previous.battery_e_wh.shape[1]:
        raise ValueError(f"the previous plan does not reach interval {shift}")
    n = min(near, p.load_w.shape[1], previous.battery_e_wh.shape[1] - shift)
    end = shift + n - 1
    f = p.fleet
    dt_h = float(p.dt_h)
    reach_wh = f.bat_e0_wh + n * dt_h * f.bat_eta * f.bat_p_max_w
    top_wh = np.minimum(reach_wh, f.bat_e_max_wh)
    floor_wh = np.clip(previous.battery_e_wh[:, end], f.bat_e_min_wh, top_wh)
    sessions, needs = [], []
    for (h, a, b), need in zip(f.ev_session, f.ev_need_wh, strict=True):
        if a >= n:
            continue
        if b > n:  # plugged beyond the window: what the full plan gave it within the window
            need = min(need, float(previous.ev_w[h, shift + a : shift + n].sum()) * dt_h)
        sessions.append((h, a, min(b, n)))
        needs.append(need)
    fleet = replace(
        f,
        ev_max_w=f.ev_max_w[:, :n],
        ev_session=np.array(sessions, dtype=np.int64).reshape(-1, 3),
        ev_need_wh=np.array(needs, dtype=float),
        bat_e_end_wh=floor_wh,
    )
    envelope = None if p.envelope is None else p.envelope.first(n)
    return replace(p, load_w=p.load_w[:, :n], pv_w=p.pv_w[:, :n], fleet=fleet, envelope=envelope)


STEPS_AHEAD = 4
"""Plan steps sent to each household per interval (its controller falls back after the last)."""


class Setpoints(NamedTuple):
    """One interval's setpoints, (H,) arrays in W, load convention.

    battery_w: battery power (> 0 charging). ev_w: EV charging (≥ 0). export_max_w /
    import_max_w: the most each household may export / import (≥ 0; inf: no limit).
    """

    battery_w: np.ndarray
    ev_w: np.ndarray
    export_max_w: np.ndarray
    import_max_w: np.ndarray


@dataclass
class RollingPlanner:
    """Plans a community interval by interval.

    guard: the AC-verified feeder dispatch; None plans every household alone (no sharing, no
    feeder, no near re-plans). replan_every: intervals between full plans over the horizon.
    near: intervals of the near re-plan run every interval in between (0: none).
    ev_min_w: smallest power each household's charger can deliver, W, (H,) or one number.
    Counters: ``plans`` made, AC-check ``rounds``, violations left ``unresolved``.
    """

    guard: FeederGuard | None
    replan_every: int = 1
    near: int = DEFAULT_NEAR
    ev_min_w: np.ndarray | float = 0.0
    plan: Plan | None = None
    plan_t0: int = 0
    full: Plan | None = None
    full_t0: int = 0
    export_tight: np.ndarray | None = None
    import_held: set[int] = field(default_factory=set)
    plans: int = 0
    rounds: int = 0
    unresolved: int = 0

    def due(self, interval: int) -> bool:
        """Whether ``interval`` needs a (full or near) re-plan before its setpoints are read."""
        return self._full_due(interval) or (
            self.plan_t0 != interval and self.guard is not None and self.near > 0
        )

    def restart(self) -> None:
        """Make the next re-plan a full one, whatever the period (the planning rules changed)."""
        self.full = None

    def _full_due(self, interval: int) -> bool:
        return self.full is None or interval - self.full_t0 >= self.replan_every

    def replan(self, interval: int, problem: CommunityProblem, q_w: np.ndarray) -> None:
        """Plan from ``interval`` on: a full plan when one is due, else a near re-plan.

        problem: the horizon from ``interval`` as known now (steps of one interval).
        q_w: forecast reactive power, (H, T) like ``problem.load_w``, var, load convention.
        """
        full = self._full_due(interval)
        self.import_held = {i for i in self.import_held if i >= interval}
        if self.guard is None:
            self.plan = solve_each_home(problem)
        elif full:
            # the fine part of a full plan reaches past the last near re-plan before the next one
            horizon = Horizon(fine=max(DEFAULT_HORIZON.fine, self.replan_every - 1 + self.near))
            self._guarded(problem, interval, q_w, horizon)
        else:
            assert self.full is not None
            near = near_problem(problem, self.full, interval - self.full_t0, self.near)
            self._guarded(near, interval, q_w[:, : near.load_w.shape[1]], None)
        if full:
            self.full, self.full_t0 = self.plan, interval
        self.plan_t0 = interval
        self.plans += 1

    def _guarded(
        self, problem: CommunityProblem, interval: int, q_w: np.ndarray, horizon: Horizon | None
    ) -> None:
        assert self.guard is not None
        self.plan, report = self.guard.plan(problem, interval, q_w, horizon=horizon)
        self.export_tight = report.export_tight
        self.rounds += report.rounds
        self.unresolved += len(report.remaining)

    def hold_exports(self, interval: int) -> None:
        """Let no household export more than planned in ``interval`` (of the current plan)."""
        assert self.plan is not None
        if self.export_tight is None:
            self.export_tight = np.zeros(self.plan.net_w.shape[1], dtype=bool)
        self.export_tight[interval - self.plan_t0] = True

    def hold_imports(self, interval: int) -> None:
        """Let no household import more than planned in ``interval`` (a feeder import limit is
        in force: a load above its forecast is met by the battery or waits, not the grid)."""
        self.import_held.add(interval)

    def setpoints(self, interval: int) -> Setpoints:
        """Setpoints of ``interval`` from the current plan (which must reach it)."""
        assert self.plan is not None
        j = interval - self.plan_t0
        # export no more than planned where the plan curtails, and everywhere in an interval
        # where the feeder's export limits bind (an operating envelope per household)
        limited = self.plan.curtail_w[:, j] > 1e-3
        if self.export_tight is not None and self.export_tight[j]:
            limited[:] = True
        # + 0.0: a household planned at exactly 0 W gets 0, not -0.0
        export_max_w = np.where(limited, np.maximum(-self.plan.net_w[:, j], 0.0) + 0.0, np.inf)
        # setpoints in whole watts, as devices take them (and so exactly the same in a wire run);
        # a charger cannot go below its minimum (the linear plan does not know it), so a smaller
        # non-zero setpoint is raised to it: rounding down left cars short at departure; a
        # nearly full car takes only what it needs, and the next re-plan counts what was given
        ev_w = np.round(self.plan.ev_w[:, j])
        ev_min = np.broadcast_to(self.ev_min_w, ev_w.shape)
        low = (ev_w > 0) & (ev_w < ev_min)
        ev_w[low] = ev_min[low]
        import_max_w = np.full(ev_w.shape, np.inf)
        if interval in self.import_held:
            # the plan's import, with the charger's power as it will be told (raised to its min)
            planned_w = self.plan.net_w[:, j] + ev_w - self.plan.ev_w[:, j]
            import_max_w = np.maximum(np.round(planned_w), 0.0) + 0.0
        return Setpoints(np.round(self.plan.battery_w[:, j]), ev_w, export_max_w, import_max_w)

    def ahead(self, interval: int, k: int) -> list[Setpoints]:
        """Setpoints for ``interval`` and up to ``k`` - 1 more from the current plan."""
        assert self.plan is not None
        last = min(interval + k, self.plan_t0 + self.plan.battery_w.shape[1])
        return [self.setpoints(i) for i in range(interval, last)]

    def steps(
        self, ids: Sequence[str], interval: int, k: int = STEPS_AHEAD
    ) -> dict[str, list[PlanStep]]:
        """Each household's plan steps (by id, in the plan's order) for ``interval`` and up to
        ``k`` - 1 more: setpoints as ``setpoints`` makes them."""
        cols = self.ahead(interval, k)
        return {
            h: [
                PlanStep(
                    interval=interval + j,
                    battery_w=float(bat[n]) + 0.0,  # + 0.0: no -0.0 in messages
                    ev_w=max(0.0, float(ev[n])),
                    export_max_w=limit_or_none(float(exp[n])),
                    import_max_w=limit_or_none(float(imp[n])),
                )
                for j, (bat, ev, exp, imp) in enumerate(cols)
            ]
            for n, h in enumerate(ids)
        }
