"""§14a EnWG dimming in the coordinator's plans (``gridctl.public.dimming``).

The dispatch does not know the dimming; its plan steps are dimmed afterwards, household by
household and step by step: while a household is dimmed its charger and battery charging
follow the rule (capped, but each at least min(4.2 kW, its wish)), and a car that is plugged
in and still needs energy is asked at least its §14a minimum, min(4.2 kW, what it can take),
even where the plan would have let it wait (the charger is never held at 0 through a dimming).
A step's import limit the plan set itself rises by what the charger was raised; the household's
own envelope is applied afterwards, as to every plan.
"""

from __future__ import annotations

import numpy as np

from gridctl.core import limit_or_inf, limit_or_none
from gridctl.dispatch.community import Fleet
from gridctl.protocol import PlanStep
from gridctl.public.dimming import dimmed_household_w, ev_floor_w


def dim_steps(
    steps: dict[str, list[PlanStep]],
    cap_w: np.ndarray,
    fleet: Fleet,
    ev_min_w: np.ndarray,
    dt_h: float,
) -> dict[str, list[PlanStep]]:
    """Every household's plan steps (in the plan's order) with the §14a dimming applied.

    cap_w: each household's cap on its controllable devices, W, (H, ≥ steps) from the first
    step's interval (``inf``: not dimmed). fleet: the devices as the plan saw them, from the
    same interval (its sessions' needs as they stood then). ev_min_w: each charger's minimum,
    W, (H,). dt_h: interval length, h.
    """
    ids = list(steps)
    n_t = min(len(s) for s in steps.values())
    n_h = len(ids)
    session_at = np.full((n_h, n_t), -1)
    for s, (h, a, b) in enumerate(fleet.ev_session):
        session_at[h, max(a, 0) : min(b, n_t)] = s
    left_wh = fleet.ev_need_wh.astype(float).copy()
    cols = [[steps[h][j] for h in ids] for j in range(n_t)]
    for j, col in enumerate(cols):
        ev_w = np.array([s.ev_w for s in col])
        sid = session_at[:, j]
        on = np.isfinite(cap_w[:, j])
        if on.any():
            bat_w = np.array([s.battery_w for s in col])
            need_wh = np.where(sid >= 0, left_wh[np.maximum(sid, 0)], 0.0)
            floor = ev_floor_w(fleet.ev_max_w[:, j], need_wh, ev_min_w, dt_h)
            cap = np.where(on, cap_w[:, j], 0.0)
            dim_ev, dim_bat = dimmed_household_w(ev_w, floor, bat_w, cap)
            for k in np.flatnonzero(on):
                s, ev_k = col[k], float(np.round(dim_ev[k]))
                imp = limit_or_inf(s.import_max_w) + max(ev_k - ev_w[k], 0.0)
                col[k] = s.model_copy(update={
                    "ev_w": ev_k, "battery_w": float(np.round(dim_bat[k])) + 0.0,
                    "import_max_w": limit_or_none(imp), "controllable_max_w": float(cap[k]),
                })  # fmt: skip
                ev_w[k] = ev_k
        got = sid >= 0
        np.subtract.at(left_wh, sid[got], ev_w[got] * dt_h)
    return {h: [cols[j][k] for j in range(n_t)] for k, h in enumerate(ids)}
