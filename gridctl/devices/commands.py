"""What the ``gridctl device`` commands do: scan, read and serve devices."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gridctl.devices.client import ModbusClient
from gridctl.devices.profile import Profile, ProfileError, load_profile, profile_names
from gridctl.devices.reader import Poll, ProfileDevice
from gridctl.devices.sunspec import Model, scan
from gridctl.devices.virtual import VirtualDevice, serving
from gridctl.devices.virtual_profile import ProfileVirtual
from gridctl.devices.virtual_sunspec import SunSpecInverter, SunSpecMeter

log = logging.getLogger(__name__)

VIRTUAL_KINDS = ("sunspec-inverter", "sunspec-meter", "battery", "ev-charger")
"""Built-in virtual devices besides the profiles."""
_CONTROL_ROLE = {
    "battery": ("battery", "p_set_w", "soc"),
    "ev-charger": ("ev_charger", "charge_current_a", "p_w"),
}


def control_profile(kind: str) -> str:
    """The first packaged profile of a kind with a writable setpoint and the state it moves."""
    device_kind, setpoint, state = _CONTROL_ROLE[kind]
    for name in profile_names():
        p = load_profile(name)
        roles = {r.role: r.access for r in p.registers}
        controllable = roles.get(setpoint, "r") != "r" and roles.get(state, "w") != "w"
        if p.kind == device_kind and controllable:
            return name
    raise ProfileError(f"no {device_kind} profile with writable {setpoint} and readable {state}")


async def scan_device(
    host: str, port: int = 502, unit: int = 1, timeout_s: float = 2.0
) -> list[Model]:
    """Every SunSpec model of the device at ``host``, decoded."""
    async with ModbusClient(host, port, unit, timeout_s=timeout_s) as client:
        return await scan(client.read_holding)


async def read_device(
    host: str, profile: Profile, port: int | None = None, unit: int | None = None
) -> Poll:
    """One read of every role of ``profile`` from the device at ``host``."""
    port = port or profile.transport.port
    unit = profile.transport.unit if unit is None else unit
    async with ModbusClient(host, port, unit) as client:
        return await ProfileDevice(client, profile).poll()


def make_virtual(
    what: str, unit: int | None = None, clock: Callable[[], float] = time.monotonic
) -> VirtualDevice:
    """A virtual device by kind (see VIRTUAL_KINDS) or by profile name; ``clock``: s."""
    if what == "sunspec-inverter":
        return SunSpecInverter(unit=unit or 1, clock=clock)
    if what == "sunspec-meter":
        return SunSpecMeter(unit=unit or 1, clock=clock)
    name = control_profile(what) if what in _CONTROL_ROLE else what
    try:
        return ProfileVirtual(load_profile(name), unit=unit, clock=clock)
    except ProfileError:
        kinds = ", ".join(VIRTUAL_KINDS)
        raise ProfileError(f"no virtual device {what!r}: use {kinds} or a profile name") from None


async def serve_forever(
    device: VirtualDevice, port: int, host: str = "127.0.0.1", ready=None
) -> None:
    """Serve ``device`` until cancelled; ``ready(port)`` is called once it accepts connections."""
    async with serving(device, port, host) as bound:
        if ready:
            ready(bound)
        await asyncio.Event().wait()
