"""Virtual SunSpec devices over real Modbus TCP: scan, limits, ramps, reversion, counters."""

import asyncio

import pytest

from gridctl.devices.client import ModbusClient, ModbusExceptionError
from gridctl.devices.sunspec import point_layout, scan
from gridctl.devices.virtual import serving
from gridctl.devices.virtual_sunspec import SunSpecInverter, SunSpecMeter


class FakeClock:
    """A clock the test moves by hand (the server still runs on real sockets)."""

    def __init__(self) -> None:
        self.t_s = 1000.0

    def __call__(self) -> float:
        return self.t_s


async def _inverter_w(client: ModbusClient, inv: SunSpecInverter) -> float:
    off, _, _ = point_layout(103)["W"]
    (w,) = await client.read_holding(inv.addr[103] + off, 1)
    return float(w)


async def _write_limit(
    client: ModbusClient, inv: SunSpecInverter, pct: float, rvrt_s: int, win_s: int = 0
) -> None:
    base = inv.addr[123] + point_layout(123)["WMaxLimPct"][0]
    # WMaxLimPct (SF -1), WinTms, RvrtTms, RmpTms, WMaxLim_Ena: five contiguous registers
    await client.write(base, [round(pct * 10), win_s, rvrt_s, 0, 1])


async def test_scan_decodes_every_point_of_every_model() -> None:
    inv = SunSpecInverter(availability=lambda t: 0.6)
    async with serving(inv) as port, ModbusClient("127.0.0.1", port) as client:
        models = await scan(client.read_holding)
    assert [m.id for m in models] == [1, 103, 120, 123]
    for m in models:
        assert m.root is not None
        assert set(m.root.points) == set(point_layout(m.id))  # every point decoded
    inverter = models[1].root.points
    assert inverter["W"].value == pytest.approx(6000.0) and inverter["W"].units == "W"
    assert inverter["St"].value == "MPPT"
    assert inverter["TmpSnk"].value is None  # sentinel: not implemented
    assert models[0].root.points["Md"].value == "virtual-inverter"


async def test_limit_is_obeyed_with_a_ramp_and_reverts_when_writes_stop() -> None:
    clock = FakeClock()
    inv = SunSpecInverter(w_max_w=10_000, availability=lambda t: 0.8, clock=clock)
    async with serving(inv) as port, ModbusClient("127.0.0.1", port) as client:
        assert await _inverter_w(client, inv) == 8000
        await _write_limit(client, inv, 30.0, rvrt_s=10)
        clock.t_s += 1.0  # default ramp: 20 % of WMax per second
        assert await _inverter_w(client, inv) == 6000
        clock.t_s += 5.0
        assert await _inverter_w(client, inv) == 3000
        clock.t_s += 3.0  # 9 s after the write: still limited
        assert await _inverter_w(client, inv) == 3000
        await _write_limit(client, inv, 30.0, rvrt_s=10)  # a fresh write re-arms the timer
        clock.t_s += 9.0
        assert await _inverter_w(client, inv) == 3000
        clock.t_s += 2.0  # 11 s without a write: reverted to no limit, ramping up
        await _inverter_w(client, inv)
        ena = inv.addr[123] + point_layout(123)["WMaxLim_Ena"][0]
        assert await client.read_holding(ena, 1) == [0]
        clock.t_s += 5.0
        assert await _inverter_w(client, inv) == 8000


async def test_revert_lapses_in_real_time() -> None:
    """Without a fake clock: a 1 s reversion timer lapses about a second after the last write."""
    inv = SunSpecInverter(w_max_w=10_000, availability=lambda t: 1.0)
    async with serving(inv) as port, ModbusClient("127.0.0.1", port) as client:
        await _write_limit(client, inv, 10.0, rvrt_s=1)
        ena = inv.addr[123] + point_layout(123)["WMaxLim_Ena"][0]
        await asyncio.sleep(0.5)
        assert await client.read_holding(ena, 1) == [1]
        await asyncio.sleep(0.8)
        assert await client.read_holding(ena, 1) == [0]


async def test_window_delays_the_limit() -> None:
    clock = FakeClock()
    inv = SunSpecInverter(w_max_w=10_000, availability=lambda t: 0.5, clock=clock, seed=3)
    async with serving(inv) as port, ModbusClient("127.0.0.1", port) as client:
        await _write_limit(client, inv, 10.0, rvrt_s=0, win_s=60)
        delay = inv._pending[0] - clock.t_s
        assert 0 <= delay <= 60
        clock.t_s += 60.0
        await _inverter_w(client, inv)
        clock.t_s += 10.0
        assert await _inverter_w(client, inv) == 1000


async def test_read_only_points_refuse_writes() -> None:
    inv = SunSpecInverter()
    async with serving(inv) as port, ModbusClient("127.0.0.1", port) as client:
        with pytest.raises(ModbusExceptionError) as err:
            await client.write(inv.addr[103] + point_layout(103)["W"][0], [5])
    assert err.value.code == 3


async def test_meter_counters_integrate_power() -> None:
    clock = FakeClock()
    meter = SunSpecMeter(power_w=lambda t: 3600.0 if t < 1000 + 3600 else -1800.0, clock=clock)
    async with serving(meter) as port, ModbusClient("127.0.0.1", port) as client:
        first = (await scan(client.read_holding))[1].root.points
        clock.t_s += 3600.0
        await client.read_holding(40000, 2)
        clock.t_s += 3600.0
        last = (await scan(client.read_holding))[1].root.points
    assert last["TotWhImp"].value - first["TotWhImp"].value == pytest.approx(3600.0, abs=1)
    assert last["TotWhExp"].value - first["TotWhExp"].value == pytest.approx(1800.0, abs=1)
    assert last["W"].value == -1800.0
