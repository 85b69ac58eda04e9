"""gridctl device roles: the normalised quantities a device profile maps its registers to.

A role's name carries its unit (``p_w`` in W, ``e_import_wh`` in Wh, ``soc`` 0–1). A
profile's register is decoded, multiplied by its ``scale`` and, for powers, turned into the
load convention; the result is the role's value in the role's unit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    """A normalised quantity: its unit, the device units a register may carry, and what it means."""

    unit: str
    device_units: tuple[str, ...]
    doc: str
    signed_power: bool = False


_POWER = ("W", "kW")
_ENERGY = ("Wh", "kWh", "MWh")
ROLES: dict[str, Role] = {
    "p_w": Role("W", _POWER, "active power at the device terminals, load convention", True),
    "p_l1_w": Role("W", _POWER, "active power phase L1, load convention", True),
    "p_l2_w": Role("W", _POWER, "active power phase L2, load convention", True),
    "p_l3_w": Role("W", _POWER, "active power phase L3, load convention", True),
    "q_var": Role("var", ("var", "kvar"), "reactive power, load convention", True),
    "pv_p_w": Role("W", _POWER, "DC power from the PV strings, load convention (≤ 0)", True),
    "battery_p_w": Role("W", _POWER, "battery power, load convention (> 0 charging)", True),
    "grid_p_w": Role(
        "W", _POWER, "power at the grid connection, load convention (> 0 import)", True
    ),
    "e_import_wh": Role("Wh", _ENERGY, "energy counter, imported / consumed"),
    "e_export_wh": Role("Wh", _ENERGY, "energy counter, exported / produced"),
    "e_charge_wh": Role("Wh", _ENERGY, "energy counter, battery charged"),
    "e_discharge_wh": Role("Wh", _ENERGY, "energy counter, battery discharged"),
    "e_session_wh": Role("Wh", _ENERGY, "energy charged in the current EV session"),
    "v_l1_v": Role("V", ("V", "kV"), "voltage phase L1 to neutral"),
    "v_l2_v": Role("V", ("V", "kV"), "voltage phase L2 to neutral"),
    "v_l3_v": Role("V", ("V", "kV"), "voltage phase L3 to neutral"),
    "i_l1_a": Role("A", ("A", "mA"), "current phase L1"),
    "i_l2_a": Role("A", ("A", "mA"), "current phase L2"),
    "i_l3_a": Role("A", ("A", "mA"), "current phase L3"),
    "f_hz": Role("Hz", ("Hz",), "grid frequency"),
    "soc": Role("1", ("%", "1"), "battery state of charge, 0–1"),
    "battery_v_v": Role("V", ("V",), "battery DC voltage"),
    "temp_c": Role("degC", ("degC",), "device temperature"),
    "p_max_w": Role("W", _POWER, "rated active power"),
    "p_limit_w": Role("W", _POWER, "active power limit setpoint (≥ 0)"),
    "p_limit_pct": Role("1", ("%", "1"), "active power limit as a fraction of rated power, 0–1"),
    "p_limit_enable": Role("1", ("1",), "active power limit enabled (1) or not (0)"),
    "p_set_w": Role("W", _POWER, "battery power setpoint, load convention (> 0 charge)", True),
    "charge_current_a": Role("A", ("A", "mA"), "EV charging current setpoint per phase"),
    "charge_enable": Role("1", ("1",), "EV charging allowed (1) or paused (0)"),
    "max_current_a": Role("A", ("A", "mA"), "largest charging current the station offers"),
    "status": Role("1", ("1",), "operating state, mapped to a word by the register's map"),
    "error_code": Role("1", ("1",), "vendor error code (0 = none)"),
    "serial": Role("1", ("1",), "serial number"),
    "firmware": Role("1", ("1",), "firmware version"),
    "dim_request": Role(
        "1", ("1",), "§14a EnWG dimming asked by the grid operator's relay (1) or not (0)"
    ),
    "revert_s": Role("s", ("s",), "fallback time after which setpoints revert if not rewritten"),
}
"""Every role a profile may use, by name."""

ENUM_STATUS = ("idle", "connected", "charging", "producing", "standby", "fault", "off", "other")
"""Words a ``status`` map may use (the value side of a register's ``map``)."""
