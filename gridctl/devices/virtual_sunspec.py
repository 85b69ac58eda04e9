"""Virtual SunSpec devices: a PV inverter (models 1, 103, 120, 123) and a meter (1, 203).

The inverter follows an availability profile, obeys WMaxLimPct (model 123) after a random
delay within WMaxLimPct_WinTms, ramps over WMaxLimPct_RmpTms, and reverts to no limit when
WMaxLimPct_RvrtTms passes without a new write. Energy counters integrate power over time.
Powers inside are in the load convention; SunSpec inverters report output positive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gridctl.core import V_NOMINAL_V, count_energy_wh
from gridctl.devices.codec import decode, encode
from gridctl.devices.sunspec import END_ID, MARKER, encode_model, point_layout
from gridctl.devices.virtual import Clock, VirtualDevice, clear_sky

BASE = 40000
LIFETIME_WH = 1_234_567.0
"""Energy counters start here, as on a device that has run a while (0 is "not implemented")."""
_PHV = round(V_NOMINAL_V * 10)
"""Phase voltage as the models store it (V_SF = -1): V_NOMINAL_V in 0.1 V."""
DEFAULT_RAMP_PCT_PER_S = 20.0
"""Ramp rate when WMaxLimPct_RmpTms is 0, % of WMax per second."""


class SunSpecDevice(VirtualDevice):
    """A SunSpec model chain at 40000 in the holding table, with point access by name."""

    def __init__(
        self,
        models: list[tuple[int, Mapping[str, Any]]],
        unit: int = 1,
        clock: Clock = time.monotonic,
    ):
        super().__init__(unit, clock)
        self.addr: dict[int, int] = {}
        self.put("holding", BASE, MARKER)
        a = BASE + 2
        for model_id, values in models:
            regs = encode_model(model_id, values)
            self.addr[model_id] = a
            self.put("holding", a, regs)
            a += len(regs)
        self.put("holding", a, [END_ID, 0])

    def _where(self, model_id: int, point: str) -> tuple[int, Any, int]:
        off, rtype, size = point_layout(model_id)[point]
        return self.addr[model_id] + off, rtype, size

    def set_point(self, model_id: int, point: str, raw: Any) -> None:
        """Write a raw point value into the image (None = not implemented)."""
        a, rtype, size = self._where(model_id, point)
        self.put("holding", a, encode(raw, rtype, size))

    def point(self, model_id: int, point: str) -> Any:
        """A raw point value from the image (None = not implemented)."""
        a, rtype, size = self._where(model_id, point)
        return decode(self.get("holding", a, size) or [], rtype)

    def allow_writes(self, model_id: int, points: tuple[str, ...]) -> None:
        """Make points writable by clients."""
        for p in points:
            a, _, size = self._where(model_id, p)
            self.writable.update(range(a, a + size))


def _common(model: str, serial: str, unit: int) -> dict[str, Any]:
    return {"Mn": "gridctl", "Md": model, "Vr": "0.1", "SN": serial, "DA": unit}


class SunSpecInverter(SunSpecDevice):
    """A three-phase PV inverter (int + scale factor models).

    w_max_w: rated power, W. availability: PV availability 0–1 as a function of time, s.
    seed: for the random delay within the limit's time window.
    """

    CONTROLS = (
        "WMaxLimPct",
        "WMaxLimPct_WinTms",
        "WMaxLimPct_RvrtTms",
        "WMaxLimPct_RmpTms",
        "WMaxLim_Ena",
    )

    def __init__(
        self,
        w_max_w: float = 10_000.0,
        availability: Callable[[float], float] = lambda t: clear_sky(time.time()),
        unit: int = 1,
        clock: Clock = time.monotonic,
        seed: int = 0,
    ):
        super().__init__(
            [
                (1, _common("virtual-inverter", "VINV-0001", unit)),
                (103, {"PhVphA": _PHV, "PhVphB": _PHV, "PhVphC": _PHV, "V_SF": -1, "A_SF": -2,
                       "W_SF": 0, "Hz_SF": -2, "VA_SF": 0, "VAr_SF": 0, "PF_SF": -2, "WH_SF": 0,
                       "DCA_SF": -2, "DCV_SF": -1, "DCW_SF": 0, "Tmp_SF": -1, "VAr": 0}),
                (120, {"DERTyp": 4, "WRtg": int(w_max_w), "WRtg_SF": 0, "VARtg": int(w_max_w),
                       "VARtg_SF": 0}),
                (123, {"WMaxLimPct": 1000, "WMaxLimPct_WinTms": 0, "WMaxLimPct_RvrtTms": 0,
                       "WMaxLimPct_RmpTms": 0, "WMaxLim_Ena": 0, "Conn": 1, "WMaxLimPct_SF": -1}),
            ],
            unit,
            clock,
        )  # fmt: skip
        self.allow_writes(123, self.CONTROLS)
        self.w_max_w = w_max_w
        self.availability = availability
        self.p_w = 0.0  # load convention: ≤ 0 while producing
        self.e_wh = LIFETIME_WH
        self.limit_pct = 100.0  # limit in force (after the window delay)
        self._pending: tuple[float, float] | None = None  # (effective at, pct)
        self._revert_at: float | None = None
        self._rng = np.random.default_rng(seed)
        self.p_w = -self._target_w(self.t_s)[0]  # starts settled
        self.step(self.t_s, 0.0)

    def on_written(self, address: int, values: list[int]) -> None:
        now = self.clock()
        if self.point(123, "WMaxLim_Ena") == 1:
            pct = (self.point(123, "WMaxLimPct") or 0) / 10.0
            window = self.point(123, "WMaxLimPct_WinTms") or 0
            self._pending = (now + float(self._rng.uniform(0, window)), pct)
            rvrt = self.point(123, "WMaxLimPct_RvrtTms") or 0
            self._revert_at = now + rvrt if rvrt > 0 else None
        else:
            self._pending, self._revert_at = (now, 100.0), None

    def step(self, now_s: float, dt_s: float) -> None:
        if self._revert_at is not None and now_s >= self._revert_at:
            self.set_point(123, "WMaxLim_Ena", 0)
            self._pending, self._revert_at = (now_s, 100.0), None
        if self._pending is not None and now_s >= self._pending[0]:
            self.limit_pct = self._pending[1]
            self._pending = None
        target_w, available_w = self._target_w(now_s)
        ramp_s = self.point(123, "WMaxLimPct_RmpTms") or 0
        rate_w_s = (
            self.w_max_w / ramp_s if ramp_s > 0 else self.w_max_w * DEFAULT_RAMP_PCT_PER_S / 100
        )
        before_w = -self.p_w
        out_w = before_w + float(np.clip(target_w - before_w, -rate_w_s * dt_s, rate_w_s * dt_s))
        self.e_wh += (before_w + out_w) / 2 * dt_s / 3600.0  # exact for a linear ramp
        self.p_w = -out_w
        throttled = target_w < available_w - 1.0
        self._publish(out_w, 4 if out_w > 0 and not throttled else 5 if out_w > 0 else 2)

    def _target_w(self, now_s: float) -> tuple[float, float]:
        """(output the inverter heads for, output available from the panels), W (≥ 0)."""
        available_w = self.w_max_w * min(max(self.availability(now_s), 0.0), 1.0)
        return min(available_w, self.w_max_w * self.limit_pct / 100.0), available_w

    def _publish(self, out_w: float, state: int) -> None:
        amps = out_w / (3 * V_NOMINAL_V)
        for ph in ("AphA", "AphB", "AphC"):
            self.set_point(103, ph, round(amps * 100))
        self.set_point(103, "A", round(3 * amps * 100))
        self.set_point(103, "W", round(out_w))
        self.set_point(103, "VA", round(out_w))
        self.set_point(103, "PF", 100)
        self.set_point(103, "Hz", 5000)
        self.set_point(103, "WH", int(self.e_wh))
        self.set_point(103, "DCW", round(out_w * 1.03))
        self.set_point(103, "DCV", 6000)
        self.set_point(103, "DCA", round(out_w * 1.03 / 600.0 * 100))
        self.set_point(103, "TmpCab", 350)
        self.set_point(103, "St", state)


class SunSpecMeter(SunSpecDevice):
    """A three-phase wye meter (model 203) at a grid connection.

    power_w: metered power as a function of time, W, load convention (> 0 import).
    """

    def __init__(
        self,
        power_w: Callable[[float], float] = lambda t: 1500.0,
        unit: int = 1,
        clock: Clock = time.monotonic,
    ):
        super().__init__(
            [
                (1, _common("virtual-meter", "VMTR-0001", unit)),
                (203, {"PhV": _PHV, "PhVphA": _PHV, "PhVphB": _PHV, "PhVphC": _PHV, "V_SF": -1,
                       "A_SF": -2, "Hz": 5000, "Hz_SF": -2, "W_SF": 0, "VA_SF": 0, "VAR_SF": 0,
                       "PF_SF": -2, "TotWh_SF": 0}),
            ],
            unit,
            clock,
        )  # fmt: skip
        self.power_w = power_w
        self.p_w = power_w(self.t_s)
        self.e_import_wh = LIFETIME_WH
        self.e_export_wh = LIFETIME_WH / 2
        self.step(self.t_s, 0.0)

    def step(self, now_s: float, dt_s: float) -> None:
        # the power held since the last update counts for the elapsed time
        e_wh = self.p_w * dt_s / 3600.0
        p_w = self.p_w = self.power_w(now_s)
        self.e_import_wh, self.e_export_wh = count_energy_wh(
            self.e_import_wh, self.e_export_wh, e_wh
        )
        for ph in ("WphA", "WphB", "WphC"):
            self.set_point(203, ph, round(p_w / 3))
        self.set_point(203, "W", round(p_w))
        amps = abs(p_w) / (3 * V_NOMINAL_V)
        for ph in ("AphA", "AphB", "AphC"):
            self.set_point(203, ph, round(amps * 100))
        self.set_point(203, "A", round(3 * amps * 100))
        self.set_point(203, "TotWhImp", int(self.e_import_wh))
        self.set_point(203, "TotWhExp", int(self.e_export_wh))
