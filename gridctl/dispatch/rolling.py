"""Re-plans between full plans: the next few intervals, on the course the last full plan set.

A full plan looks a day ahead and takes the longest to solve. One interval later most of it
still holds; what changed is the present (measured battery energy, EV energy given, fresh
forecasts). The near re-plan solves only the next ``near`` intervals — every household, the
feeder, the AC check — and takes the full plan's long view as its boundary: each battery ends
the window with at least the energy the full plan gave it there (as far as it can still get
there), and each EV that stays plugged beyond the window gets at least what the full plan
charged it within the window.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gridctl.dispatch.community import CommunityProblem, Plan


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
    return replace(p, load_w=p.load_w[:, :n], pv_w=p.pv_w[:, :n], fleet=fleet)


DEFAULT_NEAR = 12
"""Intervals a near re-plan covers (3 h): at 1,000 homes it solves in about a second."""
