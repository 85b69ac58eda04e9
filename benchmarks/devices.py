"""Device benchmark: full SunSpec read latency, and CPU needed to poll 200 devices at 1 Hz.

    python benchmarks/devices.py [--json FILE] [--devices 200] [--seconds 20] [--reads 300]

Virtual SunSpec inverters run in a separate server process on loopback. The baseline, measured
in the same run against the same servers, is pysunspec2 (the SunSpec Alliance's own Python
client) doing the same full read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


async def _serve(n: int, base_port: int) -> None:
    from gridctl.devices.virtual import serving
    from gridctl.devices.virtual_sunspec import SunSpecInverter

    async def one(k: int) -> None:
        async with serving(SunSpecInverter(availability=lambda t: 0.7), base_port + k):
            await asyncio.Event().wait()

    tasks = [asyncio.create_task(one(k)) for k in range(n)]
    await asyncio.sleep(0.5)
    print("ready", flush=True)
    await asyncio.gather(*tasks)


def _start_servers(n: int, base_port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(n), "--base-port", str(base_port)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("virtual devices did not start")
    return proc


def _percentiles(samples_s: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples_s, n=100, method="inclusive")
    return q[49] * 1000, q[98] * 1000


async def _gridctl_latency(port: int, reads: int) -> list[float]:
    from gridctl.devices.client import ModbusClient
    from gridctl.devices.sunspec import scan

    out = []
    async with ModbusClient("127.0.0.1", port) as client:
        for _ in range(reads):
            t0 = time.perf_counter()
            models = await scan(client.read_holding)
            out.append(time.perf_counter() - t0)
    assert [m.id for m in models] == [1, 103, 120, 123]
    return out


def _pysunspec_latency(port: int, reads: int) -> list[float]:
    import sunspec2.modbus.client as ssc

    out = []
    dev = ssc.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port)
    dev.connect()
    try:
        for _ in range(reads):
            t0 = time.perf_counter()
            dev.models.clear()
            dev.model_list.clear()
            dev.scan(full_model_read=True)
            out.append(time.perf_counter() - t0)
    finally:
        dev.disconnect()
    return out


async def _poll_many(ports: list[int], seconds: float) -> dict[str, float]:
    """Poll every device once a second (a full SunSpec read each); CPU share of this process."""
    from gridctl.devices.client import ModbusClient
    from gridctl.devices.sunspec import scan

    clients = [ModbusClient("127.0.0.1", p, timeout_s=2.0) for p in ports]
    for c in clients:
        await c.connect()
    late = 0
    polls = 0

    async def poll_loop(c: ModbusClient) -> None:
        nonlocal late, polls
        start = time.monotonic()
        k = 0
        while time.monotonic() - start < seconds:
            await scan(c.read_holding)
            polls += 1
            k += 1
            wait = start + k - time.monotonic()
            if wait < 0:
                late += 1
            await asyncio.sleep(max(wait, 0))

    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(poll_loop(c) for c in clients))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    for c in clients:
        c.close()
    return {"cpu_share": cpu / wall, "polls_per_s": polls / wall, "late_polls": late}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--reads", type=int, default=300)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--base-port", type=int, default=21000, help="first port for virtual devices")
    args = ap.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.base_port))
        return

    console = Console()
    servers = _start_servers(args.devices, args.base_port)
    try:
        g = asyncio.run(_gridctl_latency(args.base_port, args.reads))
        b = _pysunspec_latency(args.base_port + 1, args.reads)
        ports = [args.base_port + k for k in range(args.devices)]
        poll = asyncio.run(_poll_many(ports, args.seconds))
    finally:
        servers.terminate()
        servers.wait(10)
    g50, g99 = _percentiles(g)
    b50, b99 = _percentiles(b)
    results = {
        "full_read_models": [1, 103, 120, 123],
        "gridctl_p50_ms": round(g50, 3), "gridctl_p99_ms": round(g99, 3),
        "pysunspec2_p50_ms": round(b50, 3), "pysunspec2_p99_ms": round(b99, 3),
        "p50_ratio_vs_pysunspec2": round(g50 / b50, 3),
        "p99_ratio_vs_pysunspec2": round(g99 / b99, 3),
        "devices": args.devices, "poll_seconds": args.seconds,
        "poll_cpu_share_of_one_core": round(poll["cpu_share"], 4),
        "polls_per_s": round(poll["polls_per_s"], 1), "late_polls": poll["late_polls"],
        "cpus": os.cpu_count(),
    }  # fmt: skip
    table = Table(title="gridctl device benchmark (loopback, virtual SunSpec inverters)")
    for col in ("measure", "gridctl", "baseline pysunspec2", "ratio"):
        table.add_column(col)
    table.add_row("full SunSpec read p50 (ms)", f"{g50:.2f}", f"{b50:.2f}", f"{g50 / b50:.2f}")
    table.add_row("full SunSpec read p99 (ms)", f"{g99:.2f}", f"{b99:.2f}", f"{g99 / b99:.2f}")
    table.add_row(
        f"CPU share polling {args.devices} devices at 1 Hz", f"{poll['cpu_share']:.1%}", "", ""
    )
    table.add_row("polls per second achieved", f"{poll['polls_per_s']:.1f}", "", "")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
