"""Modbus client faults against real sockets: down, silent, exceptions, truncated, garbled."""

import asyncio
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU

from gridctl.devices.client import (
    EXCEPTION_CODES,
    ModbusClient,
    ModbusError,
    ModbusExceptionError,
    ModbusTimeoutError,
    WriteVerifyError,
    backoff_s,
    response_registers,
)
from gridctl.devices.profile import load_profile
from gridctl.devices.reader import ProfileDevice
from gridctl.devices.virtual import VirtualDevice, free_tcp_port, serving
from tests.devices.fault_server import exception_reply, fault_server, truncated_reply


def _client(port: int, **kw) -> ModbusClient:
    return ModbusClient(
        "127.0.0.1", port, timeout_s=kw.pop("timeout_s", 0.3), backoff_base_s=0.01, **kw
    )


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff_s(k, 0.5) for k in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_s(30, 0.5) == 60.0


async def test_server_down_is_a_clear_error_and_faults_the_device() -> None:
    port = free_tcp_port()
    client = _client(port, retries=0)
    with pytest.raises(ModbusTimeoutError, match="cannot connect"):
        await client.read("holding", 0, 1)
    device = ProfileDevice(client, load_profile("eastron-sdm630"))
    polls = [await device.poll() for _ in range(3)]
    assert [p.faulted for p in polls] == [False, False, True]
    assert all(v.value is None for p in polls for v in p.values.values())  # never 0
    assert "cannot connect" in (polls[-1].error or "")


async def test_silent_device_times_out_after_bounded_retries() -> None:
    async with fault_server(lambda req: None) as port:
        client = _client(port, retries=2, timeout_s=0.2)
        t0 = time.monotonic()
        with pytest.raises(ModbusTimeoutError, match="no answer"):
            await client.read("holding", 40000, 2)
        assert time.monotonic() - t0 < 3 * 0.2 * 1.5 + 1.0
        client.close()


@pytest.mark.parametrize("code", [1, 2, 3, 4, 6])
async def test_exception_codes_become_named_errors(code: int) -> None:
    async with fault_server(exception_reply(code)) as port, _client(port) as client:
        with pytest.raises(ModbusExceptionError) as err:
            await client.read("input", 0, 4)
    assert err.value.code == code
    assert EXCEPTION_CODES[code] in str(err.value)


@pytest.mark.parametrize(
    "respond", [truncated_reply, lambda req: b"\x13\x37garbage!!"], ids=["truncated", "garbled"]
)
async def test_truncated_or_garbled_answers_are_errors_not_values(respond) -> None:
    async with fault_server(respond) as port:
        client = _client(port, retries=1, timeout_s=0.2)
        with pytest.raises(ModbusError):
            await client.read("holding", 0, 2)
        client.close()


class _Clamping(VirtualDevice):
    """Accepts writes but stores at most 100, as devices that clamp setpoints do."""

    def __init__(self) -> None:
        super().__init__()
        self.put("holding", 0, [0, 0])
        self.writable = {0, 1}

    def on_written(self, address: int, values: list[int]) -> None:
        self.put("holding", address, [min(v, 100) for v in values])


async def test_every_write_is_read_back() -> None:
    dev = _Clamping()
    async with serving(dev) as port, _client(port) as client:
        await client.write(0, [50])
        with pytest.raises(WriteVerifyError, match="read back"):
            await client.write(1, [500])
        with pytest.raises(ModbusExceptionError):  # not mapped
            await client.write(7, [1])


async def test_read_count_is_bounded() -> None:
    with pytest.raises(ModbusError, match=r"1\.\.125"):
        await _client(free_tcp_port()).read("holding", 0, 126)


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=40), st.integers(1, 125))
def test_random_frames_never_crash_the_client_decoding(frame: bytes, count: int) -> None:
    """10,000 random answers through pymodbus's framer and gridctl's response check."""
    framer = FramerSocket(DecodePDU(False))
    try:
        _used, pdu = framer.handleFrame(frame, 0, 0)
    except Exception:  # pymodbus may reject a frame by raising; the client then times out
        return
    if pdu is None:
        return
    try:
        regs = response_registers(pdu, "fuzz")
    except ModbusError:
        return
    assert regs is None or all(0 <= r <= 0xFFFF for r in regs)


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=30))
def test_random_answers_over_tcp_raise_modbus_errors_only(answer: bytes) -> None:
    async def run() -> None:
        async with fault_server(lambda req: answer) as port:
            client = _client(port, retries=0, timeout_s=0.1)
            try:
                regs = await client.read("holding", 0, 2)
            except ModbusError:
                return
            finally:
                client.close()
            assert len(regs) == 2

    asyncio.run(run())


def test_a_client_made_before_the_event_loop_runs_connects_inside_it() -> None:
    """pymodbus binds its clients to the running loop: ours makes it on first use, so a
    client built outside any loop (as a service's constructor does) works in the loop, and
    again in a later one after close."""
    client = _client(free_tcp_port())  # no event loop runs here

    device = VirtualDevice()
    device.put("holding", 0, [7, 8])

    async def read_once() -> list[int]:
        async with serving(device) as port:
            client.port = port
            async with client:
                return await client.read("holding", 0, 2)

    assert asyncio.run(read_once()) == [7, 8]
    assert asyncio.run(read_once()) == [7, 8]
