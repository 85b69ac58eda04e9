"""Household time series and device parameters for a scenario, as (H, T) arrays.

Forecasts are the SimBench profiles scaled to each household; actuals add seeded noise
(multiplicative load noise per household and interval, a community-wide cloud factor on PV),
so the plan never sees the future exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from gridctl.core import ScenarioError, interval_hours
from gridctl.dispatch.community import Fleet
from gridctl.grid.feeder import Profiles
from gridctl.sim.scenario import Scenario

PROFILE_YEAR = 2016
"""The SimBench profile year (leap, 366 x 96 rows); scenario dates map onto it by day and time."""
LOAD_NOISE_SIGMA = 0.15
"""Standard deviation of the log-normal load noise per household and interval."""
CLOUD_NOISE_SIGMA = 0.08
"""Innovation of the AR(1) community-wide PV cloud factor, per interval."""


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


def profile_rows(start: datetime, n_t: int) -> np.ndarray:
    """Rows of the SimBench year for ``n_t`` intervals from ``start`` (same day and time, wraps)."""
    day = start.astimezone(UTC)
    first = datetime(PROFILE_YEAR, day.month, day.day, tzinfo=UTC)
    row0 = (first - datetime(PROFILE_YEAR, 1, 1, tzinfo=UTC)) // timedelta(minutes=15)
    row0 += (day.hour * 60 + day.minute) // 15
    return (row0 + np.arange(n_t)) % (366 * 96)


def _columns(table_name: str, names: list[str], table, field: str) -> np.ndarray:
    missing = [(k, n) for k, n in enumerate(names) if n not in table.columns]
    if missing:
        k, n = missing[0]
        have = ", ".join(table.columns)
        raise ScenarioError(f"households[{k}].{field}: unknown {table_name} profile {n!r} ({have})")
    return table[names].to_numpy().T


def build_series(
    scn: Scenario, profiles: Profiles, rng: np.random.Generator, n_t: int
) -> HouseholdSeries:
    """Forecast and actual base load and PV for every household, ``n_t`` intervals from the start.

    n_t may exceed the scenario's intervals: a rolling plan looks beyond the last one.
    """
    rows = profile_rows(scn.start, n_t)
    hh = scn.households
    load_shape = _columns("load", [h.load.profile for h in hh], profiles.load, "load.profile")
    annual_wh = np.array([h.load.annual_kwh * 1000.0 for h in hh])
    year_wh_per_unit = load_shape.sum(axis=1) * interval_hours()
    load_fc = load_shape[:, rows] * (annual_wh / year_wh_per_unit)[:, None]

    pv_names = [h.pv.profile if h.pv else profiles.pv.columns[0] for h in hh]
    pv_shape = _columns("PV", pv_names, profiles.pv, "pv.profile")
    kwp = np.array([h.pv.kwp if h.pv else 0.0 for h in hh])
    pv_fc = -pv_shape[:, rows] * kwp[:, None] * 1000.0

    n_h, n_t = load_fc.shape
    load = load_fc * rng.lognormal(-(LOAD_NOISE_SIGMA**2) / 2, LOAD_NOISE_SIGMA, (n_h, n_t))
    cloud = np.empty(n_t)
    level = 0.0
    for t, shock in enumerate(rng.normal(0.0, CLOUD_NOISE_SIGMA, n_t)):
        level = 0.9 * level + shock
        cloud[t] = level
    pv = pv_fc * np.clip(1.0 + cloud, 0.2, 1.1)[None, :]
    tan_phi = np.tan(np.arccos([h.load.power_factor for h in hh]))
    return HouseholdSeries(load_fc_w=load_fc, load_w=load, pv_fc_w=pv_fc, pv_w=pv, tan_phi=tan_phi)


def ev_sessions(scn: Scenario, n_t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Daily EV sessions clipped to the horizon.

    Returns (ev_max_w (H, T), session (S, 3) of household/first/end-exclusive interval,
    need_wh (S,)); a session cut by the horizon needs energy in proportion to the part inside.
    """
    ev_max = np.zeros((len(scn.households), n_t))
    sessions: list[tuple[int, int, int]] = []
    needs: list[float] = []
    day0 = scn.start.replace(hour=0, minute=0)
    n_days = (scn.start - day0 + timedelta(minutes=15 * n_t)).days + 1
    for k, h in enumerate(scn.households):
        if h.ev is None:
            continue
        for d in range(-1, n_days + 1):
            arrive = day0 + timedelta(days=d, hours=h.ev.arrival.hour, minutes=h.ev.arrival.minute)
            depart = day0 + timedelta(
                days=d, hours=h.ev.departure.hour, minutes=h.ev.departure.minute
            )
            if depart <= arrive:
                depart += timedelta(days=1)
            t0 = (arrive - scn.start) // timedelta(minutes=15)
            t1 = -((scn.start - depart) // timedelta(minutes=15))  # ceil
            a, b = max(t0, 0), min(t1, n_t)
            if a >= b:
                continue
            sessions.append((k, a, b))
            needs.append(h.ev.kwh * 1000.0 * (b - a) / (t1 - t0))
            ev_max[k, a:b] = h.ev.kw * 1000.0
    session = np.array(sessions, dtype=np.int64).reshape(-1, 3)
    return ev_max, session, np.array(needs, dtype=float)


def build_fleet(scn: Scenario, n_t: int) -> Fleet:
    """Device parameters of every household of ``scn`` over ``n_t`` intervals from the start."""
    hh = scn.households

    def bat(attr: str, default: float = 0.0) -> np.ndarray:
        return np.array([getattr(h.battery, attr) if h.battery else default for h in hh])

    cap_wh = bat("kwh") * 1000.0
    ev_max, session, need = ev_sessions(scn, n_t)
    return Fleet(
        bat_e_min_wh=cap_wh * bat("soc_min"),
        bat_e_max_wh=cap_wh,
        bat_e0_wh=cap_wh * bat("soc0"),
        bat_p_max_w=bat("kw") * 1000.0,
        bat_eta=bat("efficiency", 1.0),
        ev_max_w=ev_max,
        ev_session=session,
        ev_need_wh=need,
        conn_max_w=np.array([h.connection_kw * 1000.0 for h in hh]),
    )


def window(fleet: Fleet, t0: int, n_t: int, e_now_wh: np.ndarray, ev_left_wh: np.ndarray) -> Fleet:
    """The fleet as a plan starting at interval ``t0`` for ``n_t`` intervals sees it.

    e_now_wh: battery energy now, Wh. ev_left_wh: energy each session of ``fleet`` needs, Wh.
    Sessions are clipped to the window; one that runs past its end needs energy in proportion
    to the part inside.
    """
    t1 = t0 + n_t
    rows, needs = [], []
    for s, (h, a, b) in enumerate(fleet.ev_session):
        lo, hi = max(a, t0), min(b, t1)
        if lo >= hi or ev_left_wh[s] <= 0:
            continue
        rows.append((h, lo - t0, hi - t0))
        needs.append(ev_left_wh[s] * (hi - lo) / (b - lo))
    return Fleet(
        bat_e_min_wh=fleet.bat_e_min_wh,
        bat_e_max_wh=fleet.bat_e_max_wh,
        bat_e0_wh=np.clip(e_now_wh, fleet.bat_e_min_wh, fleet.bat_e_max_wh),
        bat_p_max_w=fleet.bat_p_max_w,
        bat_eta=fleet.bat_eta,
        ev_max_w=fleet.ev_max_w[:, t0:t1],
        ev_session=np.array(rows, dtype=np.int64).reshape(-1, 3),
        ev_need_wh=np.array(needs, dtype=float),
        conn_max_w=fleet.conn_max_w,
    )
