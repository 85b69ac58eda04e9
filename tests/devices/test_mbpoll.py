"""An independent Modbus client (mbpoll) reads the virtual inverter; raw registers agree."""

import asyncio
import re

from gridctl.devices.client import ModbusClient
from gridctl.devices.codec import decode
from gridctl.devices.sunspec import scan
from gridctl.devices.virtual import serving
from gridctl.devices.virtual_sunspec import SunSpecInverter
from tests.conftest import require_tool


async def _mbpoll(mbpoll: str, port: int, address: int, count: int) -> list[int]:
    proc = await asyncio.create_subprocess_exec(
        mbpoll, "-m", "tcp", "-p", str(port), "-a", "1", "-t", "4", "-0", "-1",
        "-r", str(address), "-c", str(count), "127.0.0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    regs = {int(a): int(v) for a, v in re.findall(r"^\[(\d+)\]:\s+(-?\d+)", out.decode(), re.M)}
    assert sorted(regs) == list(range(address, address + count))
    return [regs[a] % 65536 for a in range(address, address + count)]


async def test_mbpoll_reads_what_gridctl_decodes() -> None:
    mbpoll = require_tool("mbpoll")
    frozen = [1000.0]
    inv = SunSpecInverter(w_max_w=8000, availability=lambda t: 0.55, clock=lambda: frozen[0])
    async with serving(inv) as port:
        async with ModbusClient("127.0.0.1", port) as client:
            models = await scan(client.read_holding)
        assert await _mbpoll(mbpoll, port, 40000, 2) == [0x5375, 0x6E53]  # "SunS"
        checked = 0
        for m in models:
            regs = await _mbpoll(mbpoll, port, m.address, m.length + 2)
            assert regs[:2] == [m.id, m.length]
            for p in m.root.points.values():
                raw = decode(regs[p.offset : p.offset + p.size], p.type)
                assert raw == p.raw, (m.id, p.name)
                checked += 1
        assert checked > 100
        w = models[1].root.points["W"]
        assert w.value == 4400.0  # the inverter output both clients see
