"""The simulated physical community: devices, meters and the feeder, one interval at a time.

``World.step`` takes what the households' devices were told to do for one interval (battery
and EV setpoints, a PV limit or an export limit), applies device physics (SoC and efficiency,
the car's need, the panels' availability), runs the AC power flow and advances every meter.
The in-process simulation and the wire-mode simulation both drive this same world; they differ
only in how setpoints reach it and how readings leave it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gridctl.controller.fallback import self_consumption_battery_w
from gridctl.core import interval_hours
from gridctl.dispatch.community import Fleet
from gridctl.grid.ac import AcFeeder, AcResult
from gridctl.sim.households import HouseholdSeries
from gridctl.sim.physics import battery_step, ev_step, meter_step, pv_step


@dataclass
class Interval:
    """What happened in one interval; (H,) arrays in W, load convention. v_pu: each household's
    bus voltage, p.u., (H,); trafo_v_pu: the transformer's LV bus voltage, p.u."""

    p_w: np.ndarray
    load_w: np.ndarray
    pv_w: np.ndarray
    pv_avail_w: np.ndarray
    battery_w: np.ndarray
    ev_w: np.ndarray
    ac: AcResult
    v_pu: np.ndarray
    trafo_v_pu: float


@dataclass(frozen=True)
class Shown:
    """What every household's devices show at an interval's start, (H,) arrays, load convention:
    powers of the interval that ended as the live values now (W; before the first one, base
    load and PV with the battery and charger idle; a charger whose car has just left shows 0),
    battery SoC (0–1, NaN: no battery), car plugged in."""

    p_w: np.ndarray
    pv_w: np.ndarray
    battery_w: np.ndarray
    ev_w: np.ndarray
    soc: np.ndarray
    plugged: np.ndarray


@dataclass
class World:
    """Device states and meter counters of every household, and the feeder's meter.

    e_bat_wh: battery energy, Wh. ev_left_wh: energy each EV session still needs, Wh.
    imp_wh / exp_wh: household meter counters (exact), Wh. trafo_wh: transformer meter
    (import, export), Wh.
    """

    series: HouseholdSeries
    fleet: Fleet
    ac: AcFeeder
    ev_min_w: np.ndarray | float = 0.0
    """Smallest power each household's charger can deliver, W (see ``ev_min_w``)."""
    e_bat_wh: np.ndarray = field(init=False)
    ev_left_wh: np.ndarray = field(init=False)
    imp_wh: np.ndarray = field(init=False)
    exp_wh: np.ndarray = field(init=False)
    trafo_wh: tuple[np.ndarray, np.ndarray] = field(init=False)
    history: list[Interval] = field(default_factory=list)

    def __post_init__(self) -> None:
        n_h = self.fleet.bat_e0_wh.shape[0]
        self.e_bat_wh = self.fleet.bat_e0_wh.copy()
        self.ev_left_wh = self.fleet.ev_need_wh.copy()
        self.imp_wh, self.exp_wh = np.zeros(n_h), np.zeros(n_h)
        self.trafo_wh = (np.zeros(1), np.zeros(1))
        self._session_of = np.full(self.fleet.ev_max_w.shape, -1)
        for s, (h, a, b) in enumerate(self.fleet.ev_session):
            self._session_of[h, a:b] = s

    def ev_need_wh(self, t: int) -> np.ndarray:
        """Energy each household's plugged-in car still needs at interval t, Wh (0: no car)."""
        sid = self._session_of[:, t]
        need = np.zeros(sid.shape[0])
        need[sid >= 0] = self.ev_left_wh[sid[sid >= 0]]
        return need

    def shown(self, t: int) -> Shown:
        """What the devices show at interval t's start (the world's observable state)."""
        f = self.fleet
        if self.history:
            last = self.history[-1]
            p_w, pv_w, battery_w, ev_w = last.p_w, last.pv_w, last.battery_w, last.ev_w
        else:
            load_w, pv_w = self.series.load_w[:, t], self.series.pv_w[:, t]
            p_w, battery_w, ev_w = load_w + pv_w, np.zeros_like(pv_w), np.zeros_like(pv_w)
        plugged = f.ev_max_w[:, t] > 0
        return Shown(p_w - ev_w * ~plugged, pv_w, battery_w, ev_w * plugged, self._soc(), plugged)

    def preview(
        self, t: int, battery_set_w: np.ndarray, ev_set_w: np.ndarray, pv_limit_w: np.ndarray
    ) -> Shown:
        """What the devices show seconds into interval t, at these setpoints (W; PV limit ≥ 0,
        inf: none): the interval's base load and PV, the battery and charger at their setpoints
        within their physics. Nothing runs (the world's state is unchanged)."""
        dt_h = interval_hours()
        f = self.fleet
        p_ev = ev_step(ev_set_w, f.ev_max_w[:, t], self.ev_need_wh(t), dt_h, self.ev_min_w)
        p_bat, _ = battery_step(
            battery_set_w, self.e_bat_wh, f.bat_e_min_wh, f.bat_e_max_wh, f.bat_p_max_w,
            f.bat_eta, dt_h,
        )  # fmt: skip
        p_pv = pv_step(self.series.pv_w[:, t], pv_limit_w)
        p_w = self.series.load_w[:, t] + p_pv + p_bat + p_ev
        plugged = f.ev_max_w[:, t] > 0
        return Shown(p_w, p_pv, p_bat, p_ev, self._soc(), plugged)

    def _soc(self) -> np.ndarray:
        """Each battery's state of charge, 0–1 (NaN: no battery)."""
        f = self.fleet
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(f.bat_e_max_wh > 0, self.e_bat_wh / f.bat_e_max_wh, np.nan)

    def step(
        self,
        t: int,
        battery_set_w: np.ndarray | None,
        ev_set_w: np.ndarray,
        export_max_w: np.ndarray | None = None,
        pv_limit_w: np.ndarray | None = None,
    ) -> Interval:
        """Run interval t.

        battery_set_w: battery setpoints, W (None: each battery runs self-consumption).
        ev_set_w: EV charging setpoints, W (≥ 0). export_max_w: the most each household may
        export, W (≥ 0, inf: no limit; PV is curtailed to keep to it). pv_limit_w: largest PV
        output the inverters were set to, W (≥ 0, inf: no limit). None: no limit anywhere.
        """
        dt_h = interval_hours()
        load_w, pv_avail_w = self.series.load_w[:, t], self.series.pv_w[:, t]
        sid = self._session_of[:, t]
        plugged = sid >= 0
        f = self.fleet
        p_ev = ev_step(ev_set_w, f.ev_max_w[:, t], self.ev_need_wh(t), dt_h, self.ev_min_w)
        self.ev_left_wh[sid[plugged]] -= p_ev[plugged] * dt_h
        if battery_set_w is None:
            battery_set_w = self_consumption_battery_w(load_w, pv_avail_w, p_ev)
        p_bat, self.e_bat_wh = battery_step(
            battery_set_w, self.e_bat_wh, f.bat_e_min_wh, f.bat_e_max_wh, f.bat_p_max_w,
            f.bat_eta, dt_h,
        )  # fmt: skip
        p_pv = pv_avail_w
        if export_max_w is not None:
            p_pv = pv_step(p_pv, np.maximum(export_max_w + load_w + p_bat + p_ev, 0.0))
        if pv_limit_w is not None:
            p_pv = pv_step(p_pv, pv_limit_w)
        p_w = load_w + p_pv + p_bat + p_ev
        res = self.ac.run(p_w, load_w * self.series.tan_phi)
        self.imp_wh, self.exp_wh = meter_step(self.imp_wh, self.exp_wh, p_w, dt_h)
        self.trafo_wh = meter_step(*self.trafo_wh, np.array([res.p_trafo_w]), dt_h)
        v_pu = self.ac.vm_pu(self.ac.household_bus)
        trafo_v_pu = float(self.ac.vm_pu(self.ac.trafo_lv_bus).mean())
        out = Interval(p_w, load_w, p_pv, pv_avail_w, p_bat, p_ev, res, v_pu, trafo_v_pu)
        self.history.append(out)
        return out

    def household_v_pu(self) -> np.ndarray | None:
        """Each household's bus voltage in the last interval's power flow, p.u., (H,) (None
        before the first interval)."""
        return self.history[-1].v_pu if self.history else None

    def trafo_v_pu(self) -> float | None:
        """The transformer's LV bus voltage in the last interval's power flow, p.u. (None
        before the first interval)."""
        return self.history[-1].trafo_v_pu if self.history else None

    def trafo_counters_wh(self) -> tuple[int, int]:
        """The transformer meter's counters now, whole Wh."""
        return int(self.trafo_wh[0][0]), int(self.trafo_wh[1][0])

    def household_counters_wh(self) -> tuple[np.ndarray, np.ndarray]:
        """Every household meter's counters now, whole Wh (floored), (H,) int64."""
        return np.floor(self.imp_wh).astype(np.int64), np.floor(self.exp_wh).astype(np.int64)

    def ev_unmet_wh(self, n_t: int) -> float:
        """Energy missing from EV sessions that ended within the first n_t intervals, Wh."""
        return float(self.ev_left_wh[self.fleet.ev_session[:, 2] <= n_t].sum())
