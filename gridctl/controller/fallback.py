"""Local policy a household runs without a community plan: self-consumption.

The battery charges from surplus and discharges into the household's own demand; the EV
charges as soon as it is plugged in; nothing is curtailed.
"""

from __future__ import annotations

import numpy as np


def self_consumption_battery_w(
    load_w: np.ndarray, pv_w: np.ndarray, ev_w: np.ndarray
) -> np.ndarray:
    """Battery setpoint that brings the household's grid power to zero where it can.

    load_w, ev_w: base load and EV charging, W (≥ 0). pv_w: PV output, W (≤ 0).
    Returns the battery power to request, W, load convention (> 0 charge); devices limit it.
    """
    return -(load_w + pv_w + ev_w)
