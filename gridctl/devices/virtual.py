"""Virtual devices: Modbus TCP servers (pymodbus) whose registers behave physically.

Physics advance lazily: on every request the device integrates from its last update to now
(power is piecewise constant between requests), so idle devices cost nothing and energy
counters are exact. A register the device does not map answers exception 2 (illegal data
address); a write to a read-only register or an out-of-range setpoint answers exception 3.
"""

from __future__ import annotations

import asyncio
import functools
import math
import socket
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gridctl.devices.codec import MAX_READ_REGISTERS
from gridctl.sun import STC_W_PER_M2, Place, clear_sky_w_per_m2

Clock = Callable[[], float]
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3


class VirtualDevice:
    """A register image (holding and input tables) plus physics; subclasses add the physics."""

    def __init__(self, unit: int = 1, clock: Clock = time.monotonic):
        self.unit = unit
        self.clock = clock
        self.tables: dict[str, dict[int, int]] = {"holding": {}, "input": {}}
        self.writable: set[int] = set()
        self.max_read = MAX_READ_REGISTERS
        """Longest read request answered; a longer one gets exception 3 (illegal data value)."""
        self.t_s = clock()

    def put(self, function: str, address: int, regs: list[int]) -> None:
        """Set registers of the holding or input table."""
        table = self.tables[function]
        for k, v in enumerate(regs):
            table[address + k] = v

    def get(self, function: str, address: int, count: int) -> list[int] | None:
        """Registers, or None when any of them is not mapped."""
        table = self.tables[function]
        try:
            return [table[a] for a in range(address, address + count)]
        except KeyError:
            return None

    def advance(self, now_s: float) -> None:
        """Integrate the physics from the last update to ``now_s``."""
        if now_s <= self.t_s:
            return  # no time has passed: nothing moves
        dt_s = now_s - self.t_s
        self.t_s = now_s
        self.step(now_s, dt_s)

    def step(self, now_s: float, dt_s: float) -> None:
        """Physics over ``dt_s`` seconds ending at ``now_s``; the default holds still."""

    def write(self, address: int, values: list[int]) -> int | None:
        """Apply a write from a client; returns a Modbus exception code or None when accepted."""
        if any(a not in self.tables["holding"] for a in range(address, address + len(values))):
            return ILLEGAL_ADDRESS
        if any(a not in self.writable for a in range(address, address + len(values))):
            return ILLEGAL_VALUE
        code = self.check_write(address, values)
        if code is None:
            self.put("holding", address, values)
            self.on_written(address, values)
        return code

    def check_write(self, address: int, values: list[int]) -> int | None:
        """Refuse a write the device would refuse (exception code), or None."""
        return None

    def on_written(self, address: int, values: list[int]) -> None:
        """React to an accepted write (setpoints, timers)."""


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _blocks(device: VirtualDevice) -> tuple[list[SimData], ...]:
    def span(function: str) -> list[SimData]:
        addrs = device.tables[function]
        if not addrs:
            return [SimData(0, values=0, count=1, datatype=DataType.REGISTERS)]
        lo, hi = min(addrs), max(addrs)
        return [SimData(lo, values=0, count=hi - lo + 1, datatype=DataType.REGISTERS)]

    bits = [SimData(0, values=False, datatype=DataType.BITS)]
    return (bits, list(bits), span("holding"), span("input"))


def _sim_device(device: VirtualDevice) -> SimDevice:
    async def action(
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[Any],
        set_values: list[Any] | None,
    ) -> ExcCodes | None:
        device.advance(device.clock())
        if set_values is not None:
            code = device.write(address, [int(v) for v in set_values])
            return None if code is None else ExcCodes(code)
        if count > device.max_read:
            return ExcCodes.ILLEGAL_VALUE
        function = "input" if function_code == 4 else "holding"
        regs = device.get(function, address, count)
        if regs is None:
            return ExcCodes.ILLEGAL_ADDRESS
        current_registers[address - start_address : address - start_address + count] = regs
        return None

    return SimDevice(device.unit, simdata=_blocks(device), action=action)


@asynccontextmanager
async def serving(
    devices: VirtualDevice | list[VirtualDevice], port: int | None = None, host: str = "127.0.0.1"
):
    """Serve one device (or several units on one port) over Modbus TCP while the block runs.

    Yields the port. The server is shut down on exit.
    """
    devs = devices if isinstance(devices, list) else [devices]
    port = port or free_tcp_port()
    server = ModbusTcpServer([_sim_device(d) for d in devs], address=(host, port))
    task = asyncio.create_task(server.serve_forever())
    try:
        for _ in range(100):  # wait until it accepts connections
            try:
                _, w = await asyncio.open_connection(host, port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.02)
        yield port
    finally:
        await server.shutdown()
        task.cancel()


VIRTUAL_PLACE = Place(51.32, 9.50, 160.0)
"""Where a virtual inverter's panels are (Kassel, as the scenarios' communities)."""
SUN_STEP_S = 300
"""A virtual inverter's availability holds for this long, s (the sun's position is computed
once per step)."""


def clear_sky_share(t_s: np.ndarray) -> np.ndarray:
    """A horizontal panel's clear-sky output at ``VIRTUAL_PLACE`` (share of its rating, 0–1)
    at each step start ``t_s`` (UTC epoch s): the cleanest sky's global irradiance over the
    panels' rated 1,000 W/m²; 0 at night."""
    ghi = clear_sky_w_per_m2(VIRTUAL_PLACE, np.asarray(t_s, dtype=float))["ghi"]
    return np.minimum(ghi / STC_W_PER_M2, 1.0)


@functools.lru_cache(maxsize=64)
def _share_at_step(step: int) -> float:
    return float(clear_sky_share(np.array([step * SUN_STEP_S]))[0])


def clear_sky(t_s: float) -> float:
    """A clear-sky PV availability (0–1) at UTC epoch ``t_s``: ``clear_sky_share`` at the
    start of its ``SUN_STEP_S`` step (the real sun: nothing at night)."""
    return _share_at_step(math.floor(t_s / SUN_STEP_S))
