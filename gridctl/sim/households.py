"""Household time series for a scenario, as (H, T) arrays.

Forecasts are the SimBench profiles scaled to each household (``dispatch.fleet``, as in
production); actuals add seeded noise
(multiplicative load noise per household and interval, a community-wide cloud factor on PV),
so the plan never sees the future exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridctl.dispatch.fleet import profile_forecast, tan_phi
from gridctl.grid.feeder import Profiles
from gridctl.sim.scenario import Scenario

LOAD_NOISE_SIGMA = 0.15
"""Standard deviation of the log-normal load noise per household and interval."""
CLOUD_NOISE_SIGMA = 0.08
"""Innovation of the AR(1) community-wide PV cloud factor, per interval."""
CLOUD_FACTOR_RANGE = (0.2, 1.1)
"""Least and most the cloud factor scales the PV profile's output by."""


@dataclass(frozen=True)
class HouseholdSeries:
    """Per-household inputs, (H, T) unless noted, load convention, W.

    load_fc_w / load_w: base load forecast / actual (≥ 0).
    pv_fc_w / pv_w: PV output forecast / available actual (≤ 0).
    tan_phi: reactive-to-active ratio of the base load, shape (H,).
    """

    load_fc_w: np.ndarray
    load_w: np.ndarray
    pv_fc_w: np.ndarray
    pv_w: np.ndarray
    tan_phi: np.ndarray


def build_series(
    scn: Scenario, profiles: Profiles, rng: np.random.Generator, n_t: int
) -> HouseholdSeries:
    """Forecast and actual base load and PV for every household, ``n_t`` intervals from the start.

    n_t may exceed the scenario's intervals: a rolling plan looks beyond the last one.
    """
    load_fc, pv_fc = profile_forecast(scn.households, profiles, scn.start, n_t)
    n_h, n_t = load_fc.shape
    load = load_fc * rng.lognormal(-(LOAD_NOISE_SIGMA**2) / 2, LOAD_NOISE_SIGMA, (n_h, n_t))
    cloud = np.empty(n_t)
    level = 0.0
    for t, shock in enumerate(rng.normal(0.0, CLOUD_NOISE_SIGMA, n_t)):
        level = 0.9 * level + shock
        cloud[t] = level
    pv = pv_fc * np.clip(1.0 + cloud, *CLOUD_FACTOR_RANGE)[None, :]
    return HouseholdSeries(load_fc_w=load_fc, load_w=load, pv_fc_w=pv_fc, pv_w=pv,
                           tan_phi=tan_phi(scn.households))  # fmt: skip
