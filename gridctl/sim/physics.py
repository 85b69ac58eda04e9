"""Device physics for the simulator: what a setpoint actually does to a battery, EV or PV.

All functions are vectorised over households; powers in W, load convention.
"""

from __future__ import annotations

import numpy as np

from gridctl.core import count_energy_wh


def battery_step(
    p_set_w: np.ndarray,
    e_wh: np.ndarray,
    e_min_wh: np.ndarray,
    e_max_wh: np.ndarray,
    p_max_w: np.ndarray,
    eta: np.ndarray,
    dt_h: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a battery setpoint for one interval.

    p_set_w: requested power, W (> 0 charging). e_wh: stored energy now, Wh.
    e_min_wh, e_max_wh: energy limits, Wh. p_max_w: power limit, W. eta: one-way efficiency.
    Returns (p_w actually drawn, W; stored energy after the interval, Wh).
    """
    room_w = np.maximum(e_max_wh - e_wh, 0.0) / (eta * dt_h)
    avail_w = np.maximum(e_wh - e_min_wh, 0.0) * eta / dt_h
    p_w = np.clip(p_set_w, -np.minimum(p_max_w, avail_w), np.minimum(p_max_w, room_w))
    e_next = e_wh + np.where(p_w > 0, p_w * eta, p_w / eta) * dt_h
    return p_w, np.clip(e_next, e_min_wh, e_max_wh)


def ev_step(
    p_set_w: np.ndarray,
    p_max_w: np.ndarray,
    remaining_wh: np.ndarray,
    dt_h: float,
    p_min_w: np.ndarray | float = 0.0,
) -> np.ndarray:
    """EV charging power for one interval: the setpoint within charger limit and the car's need.

    p_set_w: requested power, W (≥ 0). p_max_w: charger limit now, W (0 if no car).
    remaining_wh: energy the car still needs, Wh. p_min_w: smallest power the charger can
    deliver (IEC 61851: 6 A per phase), W; a setpoint below it charges nothing.
    Returns power drawn, W (≥ 0).
    """
    p_w = np.clip(p_set_w, 0.0, p_max_w)
    p_w = np.where(p_w < p_min_w - 1e-9, 0.0, p_w)
    return np.minimum(p_w, np.maximum(remaining_wh, 0.0) / dt_h)


def pv_step(pv_avail_w: np.ndarray, pv_limit_w: np.ndarray) -> np.ndarray:
    """PV output under an export-side limit.

    pv_avail_w: what the panels could give now, W (≤ 0).
    pv_limit_w: largest output allowed, W (≥ 0).
    Returns PV power, W (≤ 0).
    """
    return np.maximum(pv_avail_w, -pv_limit_w)


def meter_step(
    e_import_wh: np.ndarray, e_export_wh: np.ndarray, p_w: np.ndarray, dt_h: float
) -> tuple[np.ndarray, np.ndarray]:
    """Advance import and export energy counters by one interval of constant power.

    e_import_wh, e_export_wh: counters now, Wh (exact, not rounded). p_w: power at the meter,
    W, load convention. Returns the counters after the interval, Wh.
    """
    return count_energy_wh(e_import_wh, e_export_wh, p_w * dt_h)
