"""The simulated households' devices: what the world shows on their registers, and the
telemetry a controller reads from them.

Every household has a main meter and, as its spec says, a battery, an EV charger and a PV
inverter, each speaking a real device profile (``PROFILES``). The world puts its state on the
registers at each interval's start (``show``; a main meter's phase voltages are its household's
bus voltage in the interval that ended, as its meter reports it); the wire-mode simulation
serves these devices over Modbus TCP to real controllers, and the in-process simulation decodes
the same registers with the controller's codec (``telemetry``), so both plan from exactly the
same numbers.
"""

from __future__ import annotations

import numpy as np

from gridctl.controller.loop import PHASE_V, measured
from gridctl.core import INTERVAL_S, MV_PER_PU, V_NOMINAL_V, ev_phases
from gridctl.devices.profile import load_profile
from gridctl.devices.reader import Table, decode_roles
from gridctl.devices.virtual_profile import ProfileVirtual
from gridctl.dispatch.spec import HouseholdSpec
from gridctl.protocol import Telemetry
from gridctl.sim.meters import Meters
from gridctl.sim.world import Shown, World

PROFILES = {
    "meter": "eastron-sdm630",
    "battery": "kostal-plenticore",
    "ev": "alfen-eve",
    "pv": "sma-sunny-tripower",
}
"""The device profile each simulated device speaks."""

Devices = dict[tuple[str, str], ProfileVirtual]
"""Virtual devices by (household, role)."""


def roles(spec: HouseholdSpec) -> list[str]:
    """The device roles a household has: always its meter, then what it owns."""
    owned = (("battery", spec.battery), ("ev", spec.ev), ("pv", spec.pv))
    return ["meter"] + [r for r, on in owned if on]


def make_devices(households: list[HouseholdSpec]) -> Devices:
    """A virtual device per (household, role), its own physics off: the world moves it."""
    profiles = {role: load_profile(name) for role, name in PROFILES.items()}
    return {
        (h.id, role): ProfileVirtual(profiles[role], clock=lambda: 0.0)
        for h in households
        for role in roles(h)
    }


def show(
    devices: Devices, households: list[HouseholdSpec], world: World, meters: Meters, t: int
) -> None:
    """Put the world's state at interval t's start on every device's registers; a main meter
    shows what it reports (its error, or its household's cheat, included)."""
    v_mv = meter_voltages_mv(world, meters)
    for k, h in enumerate(households):
        meter = {"e_import_wh": float(meters.imp_wh[k]), "e_export_wh": float(meters.exp_wh[k])}
        if v_mv is not None:  # whole mV, so the controller signs what the in-process run signs
            meter.update(dict.fromkeys(PHASE_V, float(v_mv[0][k]) / 1000))
        devices[(h.id, "meter")].set_values(**meter)
    show_powers(devices, households, world, meters, t, world.shown(t))


def show_powers(
    devices: Devices,
    households: list[HouseholdSpec],
    world: World,
    meters: Meters,
    t: int,
    shown: Shown,
) -> None:
    """Put the live values ``shown`` (powers, SoC, car plugged) of interval t on the devices'
    registers; a main meter shows its error (or its household's cheat) too."""
    for k, h in enumerate(households):
        devices[(h.id, "meter")].set_values(p_w=float(shown.p_w[k] + meters.offset_w[k]))
        if h.battery:
            devices[(h.id, "battery")].set_values(
                soc=float(shown.soc[k]), p_w=float(shown.battery_w[k])
            )
        if h.ev:
            p_w, plugged = float(shown.ev_w[k]), bool(shown.plugged[k])
            state = "charging" if plugged and p_w > 0 else "connected" if plugged else "idle"
            volts = ev_phases(h.ev.p_max_w) * V_NOMINAL_V
            devices[(h.id, "ev")].set_values(
                p_w=p_w, max_current_a=float(world.fleet.ev_max_w[k, t]) / volts, status=state
            )
        if h.pv:
            devices[(h.id, "pv")].set_values(p_w=float(shown.pv_w[k]))


def volts_mv(v_pu: np.ndarray | float) -> np.ndarray:
    """Phase-to-neutral voltages in whole mV (int64) of voltages ``v_pu``, p.u. of 230 V."""
    return np.round(np.asarray(v_pu) * MV_PER_PU).astype(np.int64)


def meter_voltages_mv(world: World, meters: Meters) -> tuple[np.ndarray, int] | None:
    """The last interval's mean voltages the meters report, whole mV: each household's main
    meter, (H,) int64, and the transformer meter's (its LV bus), their errors included; None
    before the first interval."""
    v_pu, trafo_v_pu = world.household_v_pu(), world.trafo_v_pu()
    if v_pu is None or trafo_v_pu is None:
        return None
    return reported_voltages_mv(meters, len(world.history) - 1, v_pu, trafo_v_pu)


def reported_voltages_mv(
    meters: Meters, t: int, v_pu: np.ndarray, trafo_v_pu: float
) -> tuple[np.ndarray, int]:
    """The voltages the meters report for interval t, whole mV, given the true ones (p.u.):
    each household's main meter, (H,) int64, and the transformer meter's."""
    reported = meters.household_v_pu(t, v_pu), meters.trafo_v_pu(t, trafo_v_pu)
    return volts_mv(reported[0]), int(volts_mv(reported[1]))


def _table(device: ProfileVirtual) -> Table:
    return {(f, a): v for f, regs in device.tables.items() for a, v in regs.items()}


def telemetry(
    devices: Devices, households: list[HouseholdSpec], interval: int, mode: str
) -> dict[str, Telemetry]:
    """Each household's telemetry at ``interval``'s start as its controller reports it: the
    devices' registers decoded with the controller's codec."""
    out = {}
    for h in households:
        values = {}
        for role in roles(h):
            device = devices[(h.id, role)]
            decoded = decode_roles(device.profile, _table(device))
            values[role] = {
                name: float(v.value) if isinstance(v.value, int | float) else None
                for name, v in decoded.items()
            }
        out[h.id] = measured(h.id, interval * INTERVAL_S, mode, values)
    return out
