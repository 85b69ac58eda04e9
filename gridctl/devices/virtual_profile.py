"""Serve any device profile as a virtual device with plausible, physically consistent values.

Values are held per role in role units and the load convention, and encoded through the
profile (scale factors at 0), so a client reading through the same profile must get them
back. Physics by kind: meters and inverters integrate their energy counters; a battery
follows its power setpoint within its SoC and power limits; an EV charger charges a car
session (arrival, departure, energy need) at its current setpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gridctl.core import V_NOMINAL_V, count_energy_wh
from gridctl.devices.codec import CodecError, RegType, decode, encode
from gridctl.devices.profile import Profile
from gridctl.devices.reader import encode_value
from gridctl.devices.virtual import ILLEGAL_VALUE, Clock, VirtualDevice

PHASES = 3

# Plausible starting values per role, role units, load convention.
DEFAULTS: dict[str, Any] = {
    "v_l1_v": 230.1, "v_l2_v": 229.7, "v_l3_v": 231.2, "f_hz": 50.0, "temp_c": 31.5,
    "battery_v_v": 51.2, "p_max_w": 10_000.0, "soc": 0.5, "serial": "VIRT0001", "firmware": "1.0",
    "error_code": 0, "revert_s": 60, "max_current_a": 32.0, "q_var": 0.0,
}  # fmt: skip
KIND_POWER_W = {
    "meter": 1800.0,
    "pv_inverter": -4200.0,
    "hybrid_inverter": -2600.0,
    "battery": 0.0,
    "ev_charger": 0.0,
    "io": 0.0,
}


REVERTING = ("p_set_w", "charge_current_a", "charge_enable", "p_limit_w", "p_limit_pct",
             "p_limit_enable")  # fmt: skip
"""Setpoints a device's revert timer puts back to their defaults."""


@dataclass
class CarSession:
    """A car plugged in from ``arrival_s`` to ``departure_s`` (clock s), needing ``need_wh``."""

    arrival_s: float
    departure_s: float
    need_wh: float


class ProfileVirtual(VirtualDevice):
    """A device that speaks ``profile``'s register map.

    battery_wh / battery_w: battery capacity (Wh) and power limit (W), for battery kinds.
    car: the EV session, for chargers (default: plugged in now for 8 h, needing 20 kWh).
    measured_w: for a meter, the power it measures at a clock time, W, load convention
    (e.g. a household's base load plus its other virtual devices); None: a constant.
    """

    def __init__(
        self,
        profile: Profile,
        unit: int | None = None,
        clock: Clock = time.monotonic,
        battery_wh: float = 10_000.0,
        battery_w: float = 5_000.0,
        car: CarSession | None = None,
        measured_w: Callable[[float], float] | None = None,
    ):
        super().__init__(profile.transport.unit if unit is None else unit, clock)
        self.profile = profile
        self.max_read = profile.max_read_registers
        self.battery_wh, self.battery_w = battery_wh, battery_w
        self.car = car or CarSession(self.t_s, self.t_s + 8 * 3600, 20_000.0)
        self.measured_w = measured_w
        self.last_write_s: float | None = None
        """Clock time of the last setpoint write (the revert timer runs from it)."""
        self.values: dict[str, Any] = {}
        for r in profile.registers:
            self.values[r.role] = self._initial(r.role, r.map)
            self.put(r.function, r.address, [0] * r.count)
            if r.scale_register is not None:
                self.put(r.function, r.scale_register, encode(0, RegType.SUNSSF))
            if r.access != "r" and r.function == "holding":
                self.writable.update(range(r.address, r.address + r.count))
        self._settle()
        self._publish()

    def _initial(self, role: str, mapping: dict[int, str] | None) -> Any:
        if mapping is not None:
            return next(iter(mapping.values()))
        p_w = KIND_POWER_W[self.profile.kind]
        by_role = {
            "p_w": p_w, "p_l1_w": p_w / 3, "p_l2_w": p_w / 3, "p_l3_w": p_w / 3,
            "grid_p_w": 350.0, "pv_p_w": min(p_w, 0.0), "battery_p_w": 0.0, "p_set_w": 0.0,
            "e_import_wh": 1_234_567.0, "e_export_wh": 654_321.0, "e_charge_wh": 100_000.0,
            "e_discharge_wh": 90_000.0, "e_session_wh": 0.0, "p_limit_w": 10_000.0,
            "p_limit_pct": 1.0, "p_limit_enable": 0, "charge_current_a": 16.0, "charge_enable": 1,
        }  # fmt: skip
        return by_role.get(role, DEFAULTS.get(role, 0.0))

    def set_values(self, **values: Any) -> None:
        """Set roles (role units, load convention) and show them in the registers at once."""
        self.values.update(values)
        self._settle()
        self._publish()

    def _settle(self) -> None:
        """Make derived roles agree with the primary ones (phase powers, currents)."""
        v = self.values
        if "p_w" in v:
            for ph in ("p_l1_w", "p_l2_w", "p_l3_w"):
                if ph in v:
                    v[ph] = v["p_w"] / PHASES
            for ph in ("i_l1_a", "i_l2_a", "i_l3_a"):
                if ph in v:
                    v[ph] = abs(v["p_w"]) / PHASES / V_NOMINAL_V

    def _publish(self) -> None:
        for r in self.profile.registers:
            value = self.values[r.role]
            if r.map is not None and value not in r.map.values():
                value = next(iter(r.map.values()))
            try:
                regs = encode_value(self.profile, r, value)
            except (CodecError, ValueError):
                regs = encode_value(self.profile, r, 0)
            self.put(r.function, r.address, regs)

    def check_write(self, address: int, values: list[int]) -> int | None:
        for r in self.profile.registers:
            if r.function == "holding" and r.address == address and len(values) == r.count:
                raw = decode(values, r.type, r.word_order or self.profile.word_order, sunspec=False)
                value = raw * r.scale if isinstance(raw, int | float) and r.map is None else raw
                if (r.min is not None and value < r.min) or (r.max is not None and value > r.max):
                    return ILLEGAL_VALUE
                return None
        return ILLEGAL_VALUE  # partial writes of a value are refused

    def on_written(self, address: int, values: list[int]) -> None:
        for r in self.profile.registers:
            if r.function == "holding" and r.address == address:
                if r.role in REVERTING:
                    self.last_write_s = self.t_s
                raw = decode(values, r.type, r.word_order or self.profile.word_order, sunspec=False)
                if r.map is not None:
                    self.values[r.role] = r.map.get(int(raw), raw)
                elif isinstance(raw, int | float):
                    self.values[r.role] = -raw * r.scale if r.sign == "generator" else raw * r.scale
                else:
                    self.values[r.role] = raw

    def step(self, now_s: float, dt_s: float) -> None:
        self._revert(now_s)
        kind = self.profile.kind
        if kind == "battery" or "p_set_w" in self.values:
            self._battery(dt_s)
        if kind == "ev_charger":
            self._charger(now_s, dt_s)
        if kind == "pv_inverter":
            self._limit_pv()
        if self.measured_w is not None:
            self.values["p_w"] = self.measured_w(now_s)
        self._settle()
        self._count(dt_s)
        self._publish()

    def _revert(self, now_s: float) -> None:
        """Setpoints go back to their defaults once ``revert_s`` passes without a new write."""
        revert_s = float(self.values.get("revert_s") or 0.0)
        if revert_s <= 0 or self.last_write_s is None or now_s < self.last_write_s + revert_s:
            return
        for role in REVERTING:
            if role in self.values:
                self.values[role] = self._initial(role, None)
        self.last_write_s = None

    def _battery(self, dt_s: float) -> None:
        v = self.values
        p_w = float(v.get("p_set_w", v.get("battery_p_w", 0.0)) or 0.0)
        soc = float(v.get("soc", 0.5))
        room_w = (1.0 - soc) * self.battery_wh * 3600.0 / dt_s if dt_s else self.battery_w
        avail_w = soc * self.battery_wh * 3600.0 / dt_s if dt_s else self.battery_w
        p_w = min(max(p_w, -min(self.battery_w, avail_w)), min(self.battery_w, room_w))
        if "soc" in v:
            v["soc"] = min(max(soc + p_w * dt_s / 3600.0 / self.battery_wh, 0.0), 1.0)
        if "battery_p_w" in v:
            v["battery_p_w"] = p_w
        if self.profile.kind == "battery" and "p_w" in v:
            v["p_w"] = p_w

    def _charger(self, now_s: float, dt_s: float) -> None:
        v, car = self.values, self.car
        present = car.arrival_s <= now_s < car.departure_s
        amps = float(v.get("charge_current_a", 16.0) or 0.0)
        enabled = bool(v.get("charge_enable", 1)) and amps >= 6.0
        need_wh = car.need_wh - float(v.get("e_session_wh", 0.0))
        p_w = PHASES * V_NOMINAL_V * amps if present and enabled and need_wh > 0 else 0.0
        if "e_session_wh" in v:
            v["e_session_wh"] = float(v["e_session_wh"]) + p_w * dt_s / 3600.0
        v["p_w"] = p_w
        state = "charging" if p_w > 0 else "connected" if present else "idle"
        if "status" in v:
            words = self.profile.register("status").map or {}
            if state in words.values():
                v["status"] = state

    def _limit_pv(self) -> None:
        v = self.values
        limit_w = float("inf")
        if "p_limit_w" in v and v.get("p_limit_enable", 1):
            limit_w = float(v["p_limit_w"])
        if "p_limit_pct" in v and v.get("p_limit_enable", 1):
            limit_w = min(limit_w, float(v["p_limit_pct"]) * float(v.get("p_max_w", 10_000.0)))
        v["p_w"] = max(KIND_POWER_W["pv_inverter"], -limit_w)

    def _count(self, dt_s: float) -> None:
        v = self.values
        p_w = float(v.get("p_w", 0.0) or 0.0)
        e_import_wh, e_export_wh = count_energy_wh(
            float(v.get("e_import_wh", 0.0)), float(v.get("e_export_wh", 0.0)), p_w * dt_s / 3600.0
        )
        if "e_import_wh" in v:
            v["e_import_wh"] = float(e_import_wh)
        if "e_export_wh" in v:
            v["e_export_wh"] = float(e_export_wh)
