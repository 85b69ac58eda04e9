"""Async Modbus client on pymodbus: timeouts, bounded retries with backoff, read-back of writes.

A request that fails is retried ``retries`` times with exponential backoff; Modbus exception
responses are not retried (the device answered; asking again gives the same answer) and
become a ``ModbusExceptionError`` naming the code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Literal

from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from gridctl.core import GridctlError
from gridctl.devices.codec import MAX_READ_REGISTERS

log = logging.getLogger(__name__)
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # its errors are ours to report

Function = Literal["holding", "input"]

EXCEPTION_CODES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
BACKOFF_MAX_S = 60.0
"""Upper bound of any wait between attempts, s."""


class ModbusError(GridctlError):
    """A Modbus request failed."""


class ModbusTimeoutError(ModbusError):
    """The device did not answer in time, or the connection failed."""


class ModbusExceptionError(ModbusError):
    """The device answered with a Modbus exception code."""

    def __init__(self, code: int, what: str):
        self.code = code
        super().__init__(
            f"{what}: Modbus exception {code} ({EXCEPTION_CODES.get(code, 'unknown')})"
        )


class WriteVerifyError(ModbusError):
    """A written value did not read back as written."""


def response_registers(resp: object, what: str) -> list[int] | None:
    """Registers carried by a decoded pymodbus response; ModbusExceptionError for an exception."""
    if resp is None:
        raise ModbusError(f"{what}: no decodable response")
    if resp.isError():  # type: ignore[attr-defined]
        raise ModbusExceptionError(getattr(resp, "exception_code", 0), what)
    regs = getattr(resp, "registers", None)
    if regs is not None and any(not 0 <= r <= 0xFFFF for r in regs):
        raise ModbusError(f"{what}: register value out of range")
    return regs


def backoff_s(attempt: int, base_s: float) -> float:
    """Wait before retry ``attempt`` (0-based): base x 2^attempt, capped at 60 s."""
    return min(base_s * (2**attempt), BACKOFF_MAX_S)


class ModbusClient:
    """One Modbus TCP or RTU connection to one unit; use as ``async with``.

    host: IP / host name (TCP) or serial port path (RTU). timeout_s: per request, s.
    retries: extra attempts after a failure. backoff_base_s: first wait between attempts, s.
    Nothing is opened here: pymodbus binds its clients to the running event loop, so the
    connection is made by ``connect`` (or the first request), inside that loop.
    """

    def __init__(
        self,
        host: str,
        port: int = 502,
        unit: int = 1,
        *,
        rtu: bool = False,
        baudrate: int = 9600,
        parity: str = "N",
        timeout_s: float = 1.0,
        retries: int = 2,
        backoff_base_s: float = 0.1,
    ):
        self.host, self.port, self.unit = host, port, unit
        self.retries, self.backoff_base_s, self.timeout_s = retries, backoff_base_s, timeout_s
        self.serial = (baudrate, parity) if rtu else None
        """(baudrate, parity) of an RTU line; None for TCP."""
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None

    @property
    def where(self) -> str:
        """Human-readable address of the device."""
        return f"{self.host}:{self.port} unit {self.unit}"

    async def __aenter__(self) -> ModbusClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def _pymodbus(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        """The pymodbus client, made on first use (needs the running event loop)."""
        if self._client is None:
            if self.serial is not None:
                baudrate, parity = self.serial
                self._client = AsyncModbusSerialClient(
                    self.host, framer=FramerType.RTU, baudrate=baudrate, parity=parity,
                    timeout=self.timeout_s, retries=0,
                )  # fmt: skip
            else:
                self._client = AsyncModbusTcpClient(
                    self.host, port=self.port, timeout=self.timeout_s, retries=0,
                    reconnect_delay=0,
                )  # fmt: skip
        return self._client

    async def connect(self) -> None:
        """Open the connection; ModbusTimeoutError if the device cannot be reached."""
        client = self._pymodbus()
        if client.connected:
            return
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            async with asyncio.timeout(self.timeout_s * 2):
                ok = await client.connect()
        except (TimeoutError, OSError):
            ok = False
        if not ok:
            raise ModbusTimeoutError(f"cannot connect to {self.where}")

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def _once(self, call, what: str) -> list[int] | None:
        await self.connect()
        try:
            async with asyncio.timeout(self.timeout_s * 1.5):
                resp = await call()
        except (TimeoutError, ModbusIOException):
            raise ModbusTimeoutError(
                f"{what}: no answer from {self.where} in {self.timeout_s} s"
            ) from None
        except ModbusException as e:
            raise ModbusError(f"{what}: bad answer from {self.where}: {e}") from None
        return response_registers(resp, f"{what} at {self.where}")

    async def _with_retries(self, call, what: str) -> list[int] | None:
        for attempt in range(self.retries + 1):
            try:
                return await self._once(call, what)
            except ModbusExceptionError:
                raise
            except ModbusError as e:
                if attempt == self.retries:
                    raise
                log.debug("retry what=%s attempt=%d error=%s", what, attempt + 1, e)
                self.close()
                await asyncio.sleep(backoff_s(attempt, self.backoff_base_s))
        raise AssertionError("unreachable")

    async def read(self, function: Function, address: int, count: int) -> list[int]:
        """Read ``count`` registers (1..``MAX_READ_REGISTERS``) from ``address`` of ``function``."""
        if not 1 <= count <= MAX_READ_REGISTERS:
            raise ModbusError(f"read of {count} registers: Modbus allows 1..{MAX_READ_REGISTERS}")
        what = f"read {function} {address}+{count}"

        def call():  # the client of this attempt (a failed one is replaced)
            c = self._pymodbus()
            fn = c.read_holding_registers if function == "holding" else c.read_input_registers
            return fn(address, count=count, device_id=self.unit)

        regs = await self._with_retries(call, what)
        if regs is None or len(regs) != count:
            got = 0 if regs is None else len(regs)
            raise ModbusError(f"{what} at {self.where}: got {got} registers")
        return list(regs)

    async def read_holding(self, address: int, count: int) -> list[int]:
        """Holding registers (function 3)."""
        return await self.read("holding", address, count)

    async def write(self, address: int, values: Sequence[int], verify: bool = True) -> None:
        """Write holding registers (function 16) and read them back (WriteVerifyError if different).

        verify: read back (set False only for write-only registers the device cannot read).
        """
        what = f"write holding {address}+{len(values)}"
        await self._with_retries(
            lambda: self._pymodbus().write_registers(address, list(values), device_id=self.unit),
            what,
        )
        if not verify:
            return
        back = await self.read("holding", address, len(values))
        if back != list(values):
            raise WriteVerifyError(
                f"{what} at {self.where}: wrote {list(values)}, read back {back}"
            )
