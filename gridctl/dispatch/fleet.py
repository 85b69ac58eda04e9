"""Households as arrays: base-load and PV forecasts from standard profiles, device limits.

Turns household specs (``gridctl.dispatch.spec``) into what the community dispatch takes: (H, T)
forecasts scaled from the SimBench profiles, and the ``Fleet`` of batteries, EV sessions and
connection limits, for ``n_t`` intervals from a start time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from gridctl.core import INTERVAL_S, INTERVALS_PER_DAY, FeederError, interval_hours
from gridctl.dispatch.community import Fleet
from gridctl.dispatch.spec import HouseholdSpec
from gridctl.grid.feeder import Profiles

PROFILE_YEAR = 2016
"""The SimBench profile year (leap, 366 x 96 rows); dates map onto it by day and time."""


def profile_rows(start: datetime, n_t: int) -> np.ndarray:
    """Rows of the SimBench year for ``n_t`` intervals from ``start`` (same day and time, wraps)."""
    at = start.astimezone(UTC).replace(year=PROFILE_YEAR, second=0, microsecond=0)
    row0 = (at - datetime(PROFILE_YEAR, 1, 1, tzinfo=UTC)) // timedelta(seconds=INTERVAL_S)
    return (row0 + np.arange(n_t)) % (366 * INTERVALS_PER_DAY)


def _columns(table_name: str, names: list[str], table: pd.DataFrame, field: str) -> np.ndarray:
    missing = [(k, n) for k, n in enumerate(names) if n not in table.columns]
    if missing:
        k, n = missing[0]
        have = ", ".join(table.columns)
        raise FeederError(f"households[{k}].{field}: unknown {table_name} profile {n!r} ({have})")
    return table[names].to_numpy().T


def profile_forecast(
    households: Sequence[HouseholdSpec], profiles: Profiles, start: datetime, n_t: int
) -> tuple[np.ndarray, np.ndarray]:
    """Base load and PV from the standard profiles, ``n_t`` intervals from ``start``.

    Base load: the household's load profile scaled so a year of it is ``load.annual_kwh``.
    PV: the PV profile (per kWp) times ``pv.kwp``.
    Returns (load_w ≥ 0, pv_w ≤ 0), each (H, n_t), W, load convention.
    """
    rows = profile_rows(start, n_t)
    hh = households
    load_shape = _columns("load", [h.load.profile for h in hh], profiles.load, "load.profile")
    annual_wh = np.array([h.load.annual_wh for h in hh])
    year_wh_per_unit = load_shape.sum(axis=1) * interval_hours()
    load_w = load_shape[:, rows] * (annual_wh / year_wh_per_unit)[:, None]
    pv_names = [h.pv.profile if h.pv else profiles.pv.columns[0] for h in hh]
    pv_shape = _columns("PV", pv_names, profiles.pv, "pv.profile")
    peak_w = np.array([h.pv.peak_w if h.pv else 0.0 for h in hh])
    pv_w = -pv_shape[:, rows] * peak_w[:, None]
    return load_w, pv_w


def tan_phi(households: Sequence[HouseholdSpec]) -> np.ndarray:
    """Reactive-to-active power ratio of each household's base load, (H,)."""
    return np.tan(np.arccos([h.load.power_factor for h in households]))


def ev_sessions(
    households: Sequence[HouseholdSpec], start: datetime, n_t: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Daily EV sessions (``ev.arrival`` to ``ev.departure``) clipped to ``n_t`` intervals from
    ``start``.

    Returns (ev_max_w (H, T), session (S, 3) of household/first/end-exclusive interval,
    need_wh (S,)); a session cut by the horizon needs energy in proportion to the part inside.
    """
    ev_max = np.zeros((len(households), n_t))
    sessions: list[tuple[int, int, int]] = []
    needs: list[float] = []
    day0 = start.replace(hour=0, minute=0)
    n_days = (start - day0 + n_t * timedelta(seconds=INTERVAL_S)).days + 1
    for k, h in enumerate(households):
        if h.ev is None:
            continue
        for d in range(-1, n_days + 1):
            arrive = day0 + timedelta(days=d, hours=h.ev.arrival.hour, minutes=h.ev.arrival.minute)
            depart = day0 + timedelta(
                days=d, hours=h.ev.departure.hour, minutes=h.ev.departure.minute
            )
            if depart <= arrive:
                depart += timedelta(days=1)
            t0 = (arrive - start) // timedelta(seconds=INTERVAL_S)
            t1 = -((start - depart) // timedelta(seconds=INTERVAL_S))  # ceil
            a, b = max(t0, 0), min(t1, n_t)
            if a >= b:
                continue
            sessions.append((k, a, b))
            needs.append(h.ev.need_wh * (b - a) / (t1 - t0))
            ev_max[k, a:b] = h.ev.p_max_w
    session = np.array(sessions, dtype=np.int64).reshape(-1, 3)
    return ev_max, session, np.array(needs, dtype=float)


def build_fleet(households: Sequence[HouseholdSpec], start: datetime, n_t: int) -> Fleet:
    """Device parameters of ``households`` over ``n_t`` intervals from ``start`` (batteries at
    their ``soc0``, every EV session needing its energy)."""
    hh = households

    def bat(attr: str, default: float = 0.0) -> np.ndarray:
        return np.array([getattr(h.battery, attr) if h.battery else default for h in hh])

    cap_wh = bat("e_wh")
    ev_max, session, need = ev_sessions(hh, start, n_t)
    return Fleet(
        bat_e_min_wh=cap_wh * bat("soc_min"),
        bat_e_max_wh=cap_wh,
        bat_e0_wh=cap_wh * bat("soc0"),
        bat_p_max_w=bat("p_max_w"),
        bat_eta=bat("efficiency", 1.0),
        ev_max_w=ev_max,
        ev_session=session,
        ev_need_wh=need,
        conn_max_w=np.array([h.connection_w for h in hh]),
    )


def window(
    fleet: Fleet,
    t0: int,
    n_t: int,
    e_now_wh: np.ndarray,
    ev_left_wh: np.ndarray,
    reserve_soc: float = 0.0,
) -> Fleet:
    """The fleet as a plan starting at interval ``t0`` for ``n_t`` intervals sees it.

    e_now_wh: battery energy now, Wh. ev_left_wh: energy each session of ``fleet`` needs, Wh.
    Sessions are clipped to the window; one that runs past its end needs energy in proportion
    to the part inside.
    reserve_soc: share of each battery's capacity kept for outages (0–1): the plan's floor on
    battery energy is the larger of it and the battery's own minimum. A battery below the
    reserve is kept from discharging further but never made to charge up to it (a connection,
    feeder or transformer at its limit may not allow that, and the plan must stay feasible);
    planned afresh from the measured energy, its floor rises with every Wh it gains until it
    reaches the reserve.
    """
    t1 = t0 + n_t
    rows, needs = [], []
    for s, (h, a, b) in enumerate(fleet.ev_session):
        lo, hi = max(a, t0), min(b, t1)
        if lo >= hi or ev_left_wh[s] <= 0:
            continue
        rows.append((h, lo - t0, hi - t0))
        needs.append(ev_left_wh[s] * (hi - lo) / (b - lo))
    e0_wh = np.clip(e_now_wh, fleet.bat_e_min_wh, fleet.bat_e_max_wh)
    reserve_wh = np.minimum(reserve_soc * fleet.bat_e_max_wh, e0_wh)
    return Fleet(
        bat_e_min_wh=np.maximum(fleet.bat_e_min_wh, reserve_wh),
        bat_e_max_wh=fleet.bat_e_max_wh,
        bat_e0_wh=e0_wh,
        bat_p_max_w=fleet.bat_p_max_w,
        bat_eta=fleet.bat_eta,
        ev_max_w=fleet.ev_max_w[:, t0:t1],
        ev_session=np.array(rows, dtype=np.int64).reshape(-1, 3),
        ev_need_wh=np.array(needs, dtype=float),
        conn_max_w=fleet.conn_max_w,
    )
