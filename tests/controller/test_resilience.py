"""Outages on a real broker with real controllers: a killed broker loses no reading, a killed
coordinator sends every household to fallback at once and resumes without gaps or doubles."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gridctl.controller.keys import load_key_file
from gridctl.controller.loop import Controller
from gridctl.core import INTERVAL_S
from gridctl.devices.virtual import free_tcp_port
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.enrol import main_meter
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.registry import register_meter
from gridctl.settlement.signing import public_bytes
from gridctl.transport.broker import Community, write_broker_config
from gridctl.transport.launcher import running_broker
from tests.conftest import Broker, require_tool, stop_tasks, until
from tests.controller.coordinator_child import PLAN_BATTERY_W, coordinator
from tests.controller.test_controller import FastClock, House, fast_clock, house

ROOT = Path(__file__).resolve().parents[2]
HOMES = ["h01", "h02"]


@dataclass
class Homes:
    broker: Broker
    clock: FastClock
    houses: dict[str, House]
    controllers: dict[str, Controller]
    first: int
    args: dict


@asynccontextmanager
async def community(tmp_path: Path) -> AsyncIterator[Homes]:
    """Two homes with virtual devices and running controllers, enrolled in a ledger; a broker
    the test may kill (``broker.conf`` restarts it). No coordinator yet."""
    require_tool("mosquitto")
    port = free_tcp_port()
    creds = write_broker_config(Community(community="oak", households=HOMES), tmp_path / "b", port,
                                run_as=getpass.getuser())  # fmt: skip
    broker = Broker("mosquitto", port, "oak", HOMES, creds, tmp_path / "b" / "mosquitto.conf")
    clock = fast_clock()
    first = int(clock() // INTERVAL_S)
    async with AsyncExitStack() as stack:
        houses = {
            h: await stack.enter_async_context(house(broker, tmp_path / h, h, clock)) for h in HOMES
        }
        enrol(tmp_path / "ledger.sqlite", houses, first)
        controllers = {
            h: Controller(home.config, load_key_file(home.config.key_file), clock)
            for h, home in houses.items()
        }
        args = {"community": "oak", "port": port, "password": creds["coordinator"], "homes": HOMES,
                "ledger": str(tmp_path / "ledger.sqlite"), "inbox": str(tmp_path / "inbox.sqlite"),
                "start_s": clock.start_s, "t0": clock.t0}  # fmt: skip
        yield Homes(broker, clock, houses, controllers, first, args)


def enrol(ledger_path: Path, houses: dict[str, House], first: int) -> None:
    """Register each home's main meter from interval ``first`` on, with its counters as the
    meter's f32 kWh registers show them."""
    with Ledger(ledger_path) as ledger:
        for h, home in houses.items():
            key = public_bytes(load_key_file(home.config.key_file))
            imp, exp = (int(float(np.float32(home.meter.values[k] / 1000)) * 1000)
                        for k in ("e_import_wh", "e_export_wh"))  # fmt: skip
            register_meter(ledger, main_meter(h), h, "main", 17_250.0, key, first, imp, exp)


async def _until(what, timeout_s: float = 30.0) -> None:
    """Waits here are for processes and brokers: up to 30 s by default."""
    await until(what, timeout_s, poll_s=0.02)


def _closed(ledger_path: Path) -> int | None:
    con = sqlite3.connect(ledger_path)
    try:
        return con.execute("SELECT MAX(interval) FROM interval_roots").fetchone()[0]
    except sqlite3.OperationalError:
        return None
    finally:
        con.close()


def _check_books(ledger_path: Path, first: int, last: int) -> None:
    """Every interval first..last closed once, every home's reading verified once in each."""
    assert verify_ledger(ledger_path).ok
    con = sqlite3.connect(ledger_path)
    roots = [iv for (iv,) in con.execute("SELECT interval FROM interval_roots ORDER BY interval")]
    assert roots[: last - first + 1] == list(range(first, last + 1))
    rows = con.execute(
        "SELECT meter, interval, status FROM meter_readings WHERE interval BETWEEN ? AND ?",
        (first, last),
    ).fetchall()
    con.close()
    got = {(m, iv): s for m, iv, s in rows}
    assert len(rows) == len(got)  # nothing counted twice
    want = {(main_meter(h), iv) for h in HOMES for iv in range(first, last + 1)}
    assert set(got) == want  # nothing lost
    assert {s for s in got.values()} == {"verified"}, sorted(set(got.values()))


async def test_a_broker_killed_mid_run_loses_no_reading(tmp_path: Path) -> None:
    async with community(tmp_path) as c, AsyncExitStack() as stack:
        proc = stack.enter_context(running_broker(c.broker.conf, c.broker.port))
        coord = coordinator(c.args)
        tasks = [asyncio.create_task(x.run()) for x in (coord, *c.controllers.values())]
        try:
            await _until(lambda: (coord.last_closed or 0) >= c.first + 1)
            # the broker dies just before a boundary (~0.3 s real) and stays down about 1 s:
            # long enough for the boundary's readings to wait in the outboxes (no plan, no root
            # can acknowledge them), short enough for every client to be back well before its
            # reconnect backoff or the coordinator's overdue settlement (3 s real) could matter
            await _until(lambda: c.clock() % INTERVAL_S > INTERVAL_S - 90)
            proc.send_signal(signal.SIGKILL)  # no goodbye, no persistence save
            proc.wait(5)
            down_at = int(c.clock() // INTERVAL_S)
            await _until(lambda: any(ctl.outbox.pending() for ctl in c.controllers.values()), 5)
            await asyncio.sleep(0.5)
            with running_broker(c.broker.conf, c.broker.port):
                await _until(lambda: (coord.last_closed or 0) >= down_at + 2)
                last = coord.last_closed
        finally:
            await stop_tasks(*tasks)
    assert last is not None
    _check_books(tmp_path / "ledger.sqlite", c.first, last)


async def test_a_killed_coordinator_means_fallback_at_once_and_a_restart_without_gaps(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = [sys.executable, "-m", "tests.controller.coordinator_child"]
    async with community(tmp_path) as c:
        with running_broker(c.broker.conf, c.broker.port):
            tasks = [asyncio.create_task(ctl.run()) for ctl in c.controllers.values()]
            proc = subprocess.Popen([*child, json.dumps(c.args)], env=env, cwd=ROOT)
            try:
                ledger = tmp_path / "ledger.sqlite"
                await _until(lambda: all(ctl.mode == "plan" for ctl in c.controllers.values()))
                await _until(
                    lambda: all(
                        h.battery.values["p_set_w"] == PLAN_BATTERY_W for h in c.houses.values()
                    )
                )
                await _until(lambda: (_closed(ledger) or 0) >= c.first + 1)
                proc.send_signal(signal.SIGKILL)
                t_kill = time.monotonic()
                await _until(
                    lambda: all(ctl.mode == "fallback" for ctl in c.controllers.values()), 10
                )
                fallback_s = time.monotonic() - t_kill
                assert fallback_s * 300 < INTERVAL_S, fallback_s  # well within one interval
                # the batteries leave the plan's 1 kW charge for self-consumption
                await _until(
                    lambda: all(
                        h.battery.values["p_set_w"] != PLAN_BATTERY_W for h in c.houses.values()
                    ),
                    10,
                )
                await asyncio.sleep(3.5)  # more than an interval passes without a coordinator
                proc = subprocess.Popen([*child, json.dumps(c.args)], env=env, cwd=ROOT)
                now = int(c.clock() // INTERVAL_S)
                await _until(lambda: (_closed(ledger) or 0) >= now, 40)
                await _until(lambda: all(ctl.mode == "plan" for ctl in c.controllers.values()))
            finally:
                proc.kill()
                proc.wait(10)
                await stop_tasks(*tasks)
    _check_books(ledger, c.first, now)
