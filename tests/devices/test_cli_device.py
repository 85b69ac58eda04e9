"""``gridctl device`` as a user runs it: serve in one process, scan and read from another."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from gridctl.cli import app
from gridctl.devices.virtual import free_tcp_port

runner = CliRunner()


@pytest.fixture
def served_inverter():
    """``gridctl device serve sunspec-inverter`` in its own process."""
    port = free_tcp_port()
    exe = shutil.which("gridctl") or "gridctl"
    proc = subprocess.Popen(
        [exe, "device", "serve", "sunspec-inverter", "--port", str(port)],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    line = proc.stderr.readline()  # "serving ... " once it listens
    assert "serving sunspec-inverter" in line, line
    yield port
    proc.terminate()
    proc.wait(10)


def test_scan_lists_the_model_chain_and_every_point(served_inverter: int) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gridctl", "device", "scan", "127.0.0.1", "--port", str(served_inverter), "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    models = json.loads(out.stdout)
    assert [m["id"] for m in models] == [1, 103, 120, 123]
    inverter = models[1]["points"]
    assert inverter["PhVphA"] == {"value": 230.0, "units": "V"}
    assert inverter["TmpSnk"]["value"] is None  # not implemented -> n/a
    table = runner.invoke(app, ["device", "scan", "127.0.0.1", "--port", str(served_inverter)])
    assert table.exit_code == 0 and "n/a" in table.output and "WMaxLimPct" in table.output


def test_read_through_a_profile_and_list_profiles(tmp_path) -> None:
    import asyncio

    from gridctl.devices.commands import make_virtual
    from gridctl.devices.virtual import serving

    async def run() -> str:
        async with serving(make_virtual("eastron-sdm630")) as port:
            res = await asyncio.to_thread(
                runner.invoke, app, ["device", "read", "127.0.0.1", "--profile", "eastron-sdm630",
                                     "--port", str(port), "--json"],
            )  # fmt: skip
            assert res.exit_code == 0, res.output
            return res.output

    values = json.loads(asyncio.run(run()))
    assert values["p_w"] == {"value": 1800.0, "unit": "W"}
    listed = runner.invoke(app, ["device", "profiles", "--json"])
    assert listed.exit_code == 0 and any(
        p["name"] == "eastron-sdm630" for p in json.loads(listed.output)
    )


def test_unreachable_device_and_unknown_profile_exit_2() -> None:
    port = free_tcp_port()
    t0 = time.monotonic()
    res = runner.invoke(app, ["device", "scan", "127.0.0.1", "--port", str(port)])
    assert res.exit_code == 2 and "cannot connect" in res.output and time.monotonic() - t0 < 20
    res = runner.invoke(app, ["device", "read", "127.0.0.1", "--profile", "nope"])
    assert res.exit_code == 2 and "no device profile" in res.output
    res = runner.invoke(app, ["device", "serve", "toaster"])
    assert res.exit_code == 2 and "no virtual device" in res.output


@pytest.mark.parametrize("kind", ["battery", "ev-charger"])
async def test_controllable_kinds_follow_their_setpoints(kind: str) -> None:
    """The virtual battery follows its power setpoint; the charger charges at its current."""
    from gridctl.devices.client import ModbusClient
    from gridctl.devices.commands import make_virtual
    from gridctl.devices.reader import ProfileDevice
    from gridctl.devices.virtual import serving
    from gridctl.devices.virtual_profile import CarSession

    clock = [1000.0]
    device = make_virtual(kind)
    device.clock = lambda: clock[0]
    device.t_s = clock[0]
    if kind == "ev-charger":  # the car arrives on the test's clock, not the default one
        device.car = CarSession(clock[0], clock[0] + 8 * 3600, 20_000.0)
    role, value = ("p_set_w", 2000.0) if kind == "battery" else ("charge_current_a", 10.0)
    async with serving(device) as port, ModbusClient("127.0.0.1", port, device.unit) as client:
        reader = ProfileDevice(client, device.profile)
        await reader.write(role, value)
        # the charger's setpoint would lapse after its 60 s revert timer; the battery has none
        clock[0] += 900.0 if kind == "battery" else 50.0
        poll = await reader.poll()
    values = {k: v.value for k, v in poll.values.items()}
    if kind == "battery":
        assert values["soc"] > 0.5  # charged for 15 minutes at 2 kW from half full
    else:
        assert values["p_w"] == pytest.approx(3 * 230 * 10.0, rel=0.02)


@pytest.mark.parametrize("length", [65_000, 4097])
async def test_scan_refuses_a_model_claiming_too_many_registers(length: int) -> None:
    """A device whose chain has a model claiming more registers than SunSpec allows, and that
    answers every read (zeros up to 65535), gets one clear line, not 500 reads or a traceback."""
    import asyncio

    from gridctl.devices.sunspec import MARKER, encode_model
    from gridctl.devices.virtual import VirtualDevice, serving

    dev = VirtualDevice()
    common = encode_model(1, {})
    dev.put("holding", 40000, MARKER + common)
    at = 40002 + len(common)
    dev.put("holding", at, [103, length] + [0] * (65536 - at - 2))
    async with serving(dev) as port:
        res = await asyncio.to_thread(
            runner.invoke, app, ["device", "scan", "127.0.0.1", "--port", str(port)]
        )
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert f"model 103 at {at} claims {length} registers" in res.output
    assert len(res.output.splitlines()) == 1
