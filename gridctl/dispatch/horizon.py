"""A coarser far horizon: the plan's first intervals one by one, the rest in blocks.

Only the next few intervals of a rolling plan are ever executed before it is re-planned; the
far end only has to place battery and EV energy sensibly. Planning it in hour blocks instead of
quarter hours cuts a 96-interval LP to about a third of its size with the same near-term plan.
Block values are averages of power (W), so every block keeps its energy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from gridctl.core import INTERVAL_S
from gridctl.dispatch.community import CommunityProblem, Plan


@dataclass(frozen=True)
class Horizon:
    """``fine`` single intervals, then blocks of ``block`` intervals (the last may be shorter)."""

    fine: int = 4 * 3600 // INTERVAL_S
    block: int = 3600 // INTERVAL_S

    def __post_init__(self) -> None:
        if self.fine < 1 or self.block < 1:
            raise ValueError("a horizon needs at least one fine interval and blocks of one or more")

    def lengths(self, n_t: int) -> np.ndarray:
        """Intervals per step for a horizon of ``n_t`` intervals."""
        fine = min(self.fine, n_t)
        rest = n_t - fine
        tail = [self.block] * (rest // self.block) + [rest % self.block] * bool(rest % self.block)
        return np.array([1] * fine + tail, dtype=np.int64)

    def step_of(self, n_t: int) -> np.ndarray:
        """Step index of every interval, (n_t,)."""
        n = self.lengths(n_t)
        return np.repeat(np.arange(len(n)), n)

    def _starts(self, n_t: int) -> np.ndarray:
        """First interval of every step."""
        return np.concatenate([[0], np.cumsum(self.lengths(n_t))[:-1]])

    def coarsen(self, x: np.ndarray) -> np.ndarray:
        """Block averages along the last axis: (..., n_t) -> (..., steps)."""
        n_t = x.shape[-1]
        return np.add.reduceat(x, self._starts(n_t), axis=-1) / self.lengths(n_t)

    def expand(self, y: np.ndarray, n_t: int) -> np.ndarray:
        """Each step's value repeated over its intervals: (..., steps) -> (..., n_t)."""
        return np.repeat(y, self.lengths(n_t), axis=-1)

    def problem(self, p: CommunityProblem) -> CommunityProblem:
        """``p`` on this horizon's steps (its ``dt_h`` must be one interval's length)."""
        n_t = p.load_w.shape[1]
        step = self.step_of(n_t)
        f = p.fleet
        sessions = f.ev_session.copy()
        if len(sessions):
            sessions[:, 1] = step[sessions[:, 1]]
            sessions[:, 2] = step[sessions[:, 2] - 1] + 1
        fleet = replace(f, ev_max_w=self.coarsen(f.ev_max_w), ev_session=sessions)
        feeder = p.feeder
        if feeder is not None:
            feeder = replace(
                feeder,
                q_w=self.coarsen(feeder.q_w),
                offset_v2=self.coarsen(feeder.offset_v2),
                flow_max_kw=self._weakest(feeder.flow_max_kw),
            )
        return replace(
            p,
            load_w=self.coarsen(p.load_w),
            pv_w=self.coarsen(p.pv_w),
            fleet=fleet,
            dt_h=p.dt_h * self.lengths(n_t),
            feeder=feeder,
            envelope=None if p.envelope is None else p.envelope.map(self._weakest),
        )

    def _energy(self, e_wh: np.ndarray, n_t: int) -> np.ndarray:
        """Energy at the end of each interval: within a block it moves linearly (constant power)."""
        n = self.lengths(n_t)
        # energy at the start of each step; the first step is one interval, so its end is exact
        before = np.concatenate([e_wh[:, :1], e_wh[:, :-1]], axis=1)
        frac = np.concatenate([np.arange(1, k + 1) / k for k in n])
        return self.expand(before, n_t) + frac * self.expand(e_wh - before, n_t)

    def _weakest(self, x: np.ndarray) -> np.ndarray:
        """Block minima along the last axis (the tightest limit of each block)."""
        return np.minimum.reduceat(x, self._starts(x.shape[-1]), axis=-1)

    def plan(self, plan: Plan, n_t: int) -> Plan:
        """A plan over the steps spread back onto ``n_t`` intervals."""

        def spread(y: np.ndarray | None) -> np.ndarray | None:
            return None if y is None else self.expand(y, n_t)

        e_wh = plan.battery_e_wh
        return replace(
            plan,
            battery_w=spread(plan.battery_w),
            ev_w=spread(plan.ev_w),
            curtail_w=spread(plan.curtail_w),
            net_w=spread(plan.net_w),
            grid_w=spread(plan.grid_w),
            battery_e_wh=e_wh if e_wh is None else self._energy(e_wh, n_t),
            v2_lin=spread(plan.v2_lin),
            flow_kw=spread(plan.flow_kw),
        )


DEFAULT_HORIZON = Horizon()
"""Four hours interval by interval, then hour blocks: at 1,000 homes x 96 intervals the LP has
36 steps instead of 96 (``benchmarks/dispatch.py``)."""
