"""The sun at a place and time: the most a PV system can deliver, and a clear sky's irradiance.

A PV system produces nothing at night and little at dawn and dusk, whatever its rating. Its
output is bounded by the light that reaches it: at most the beam normal to the panel (DNI), the
whole sky's diffuse (DHI) and the ground's reflection of global irradiance (GHI, albedo ≤ 1) —
``DNI + DHI + GHI`` is an upper bound of the plane-of-array irradiance of *any* orientation.
The sun's position is NREL's SPA and the clear sky Ineichen–Perez's, as pvlib implements them
(Reda & Andreas 2004; Ineichen & Perez 2002), at a Linke turbidity of 1: a dry, clean
atmosphere with Rayleigh scattering only, clearer than any real sky, so its irradiance is an
upper bound of every real clear sky's.

Times are UTC epoch seconds; powers are shares of the system's rating (AC ≈ kWp).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

STC_W_PER_M2 = 1000.0
"""Irradiance at which a panel delivers its rated power (standard test conditions), W/m²."""
CLEANEST_LINKE_TURBIDITY = 1.0
"""Linke turbidity of a dry, clean atmosphere (Rayleigh only): no real sky is clearer."""
CLOUD_ENHANCEMENT = 1.5
"""How far a 15-min mean of irradiance may exceed the clear sky's under broken clouds, relative
(edge-of-cloud enhancement: seconds-long peaks reach about 1.5, 15-min means stay below 1.3 in
the measurement campaigns — Järvelä et al. 2020, Solar Energy 199; Gueymard 2017)."""
COLD_MODULE_GAIN = 1.2
"""A cold module's gain over its rating, relative (about 0.4 %/K below 25 °C: +20 % at −25 °C)."""
TWILIGHT_SHARE = 0.01
"""Share of its rating a system is allowed while the sun is below the horizon but above
``TWILIGHT_ELEVATION_DEG`` (civil twilight's diffuse light; refraction near the horizon)."""
TWILIGHT_ELEVATION_DEG = -6.0
"""Sun elevation below which there is no light to convert, degrees (end of civil twilight)."""
TIME_TOLERANCE_S = 5400.0
"""How far from an interval the sun is looked for, s, each side: what a PV profile shows may
run up to 90 min ahead of or behind the sun at the place it is simulated for (SimBench's
German profiles are composites of many sites: at any one German place some days produce up to
an hour before sunrise or after sunset), and a community's configured place is approximate."""
SAMPLE_S = 180.0
"""Spacing of the instants at which the sun is placed, s (both ends included): the sun's
elevation rises or falls monotonically except at transit, where it is flat, so the highest
sampled elevation is the window's highest to within 0.01°."""


@dataclass(frozen=True)
class Place:
    """Where a community is: latitude_deg (−90..90, north > 0), longitude_deg (−180..180,
    east > 0), altitude_m (height above sea level, m)."""

    latitude_deg: float
    longitude_deg: float
    altitude_m: float = 0.0


def clear_sky_w_per_m2(place: Place, t_s: np.ndarray) -> dict[str, np.ndarray]:
    """The cleanest possible clear sky's irradiance at ``place`` at instants ``t_s`` (UTC
    epoch s): ``ghi``, ``dni``, ``dhi``, W/m² (0 with the sun below the horizon), and the sun's
    apparent ``elevation_deg``."""
    import pvlib  # here, not at the top: 0.8 s that configuration readers need not wait for

    t_s = np.asarray(t_s, dtype=float)
    times = pd.DatetimeIndex(pd.to_datetime(t_s.ravel(), unit="s", utc=True))
    pos = pvlib.solarposition.get_solarposition(
        times, place.latitude_deg, place.longitude_deg, altitude=place.altitude_m
    )
    zenith = pos["apparent_zenith"].to_numpy()
    am_rel = pvlib.atmosphere.get_relative_airmass(zenith)
    am_abs = pvlib.atmosphere.get_absolute_airmass(
        am_rel, pvlib.atmosphere.alt2pres(place.altitude_m)
    )
    with np.errstate(divide="ignore", invalid="ignore"):  # night: no air mass (NaN), 0 out
        sky = pvlib.clearsky.ineichen(
            zenith, am_abs, CLEANEST_LINKE_TURBIDITY, altitude=place.altitude_m,
            dni_extra=pvlib.irradiance.get_extra_radiation(times).to_numpy(),
        )  # fmt: skip
    out = {k: np.nan_to_num(np.asarray(sky[k], dtype=float)).reshape(t_s.shape) for k in sky}
    out["elevation_deg"] = (90.0 - zenith).reshape(t_s.shape)
    return out


def pv_share_now(place: Place, t_s: np.ndarray) -> np.ndarray:
    """The most a PV system of any orientation at ``place`` can deliver at instants ``t_s``
    (UTC epoch s), share of its rating (0–1): the cleanest sky's ``DNI + DHI + GHI`` times the
    cloud enhancement and a cold module's gain; ``TWILIGHT_SHARE`` at least while the sun is
    above ``TWILIGHT_ELEVATION_DEG``; 0 at night."""
    sky = clear_sky_w_per_m2(place, t_s)
    poa_w_per_m2 = sky["dni"] + sky["dhi"] + sky["ghi"]
    share = poa_w_per_m2 / STC_W_PER_M2 * CLOUD_ENHANCEMENT * COLD_MODULE_GAIN
    lit = sky["elevation_deg"] > TWILIGHT_ELEVATION_DEG
    return np.minimum(np.where(lit, np.maximum(share, TWILIGHT_SHARE), share), 1.0)


def pv_share_max(place: Place, start_s: np.ndarray | float, dt_s: float) -> np.ndarray:
    """The largest mean output, share of its rating (0–1), a PV system at ``place`` can
    deliver over each interval of ``dt_s`` s from ``start_s`` (UTC epoch s, (N,)): the
    brightest ``pv_share_now`` from ``TIME_TOLERANCE_S`` before the interval to as long after
    it. Instants shared by neighbouring intervals are placed once."""
    start_s = np.atleast_1d(np.asarray(start_s, dtype=float))
    span_s = dt_s + 2 * TIME_TOLERANCE_S
    offsets_s = np.linspace(
        -TIME_TOLERANCE_S, dt_s + TIME_TOLERANCE_S, int(np.ceil(span_s / SAMPLE_S)) + 1
    )
    t_s, where = np.unique(start_s[:, None] + offsets_s[None, :], return_inverse=True)
    return pv_share_now(place, t_s)[where.reshape(len(start_s), -1)].max(axis=1)
