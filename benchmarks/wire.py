"""Wire benchmark: many controllers' telemetry and readings into one coordinator over Mosquitto.

    python benchmarks/wire.py [--controllers 1000] [--seconds 45] [--speed 30] [--json FILE]

A load generator in this process keeps ``--controllers`` MQTT connections (one per household,
each with its own credentials) and publishes telemetry from each at 1 Hz, and at every interval
boundary of a clock running ``--speed`` times faster than real time a signed reading per
household (QoS 1). Two subscribers are measured in turn, each in a process of its own under the
same load:

- baseline: a bare aiomqtt subscriber that only parses each message's JSON;
- coordinator: gridctl's coordinator (protocol checks, inbox, settlement of every interval).

Latency is from the telemetry's timestamp (set when published) to its arrival in the
subscriber; CPU is the subscriber's own CPU time over the run (100 % = one core); memory its
peak resident set. The table gives each and its ratio to the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

INTERVAL_S = 900


def _summary(latencies_s: list[float], wall_s: float) -> dict[str, float]:
    use = resource.getrusage(resource.RUSAGE_SELF)
    q = (
        statistics.quantiles(latencies_s, n=100, method="inclusive")
        if len(latencies_s) > 1
        else [0.0] * 99
    )
    return {
        "received": len(latencies_s),
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "cpu_pct": 100 * (use.ru_utime + use.ru_stime) / wall_s,
        "rss_mb": use.ru_maxrss / 1024,
    }


def _subscriber(args: argparse.Namespace) -> None:
    """Child process: the baseline or the coordinator, until SIGTERM; writes its summary."""
    from gridctl.transport.session import BrokerSettings

    conf = json.loads(Path(args.child_conf).read_text())
    broker = BrokerSettings(port=conf["port"], username="coordinator", password=conf["password"])
    latencies: list[float] = []
    t0 = time.time()

    def record(payload: bytes) -> None:
        if payload.startswith(b'{"v":1,"household"') and b'"mode"' in payload:
            sent = json.loads(payload)["t"]
            latencies.append(time.time() - _epoch(sent))

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        if args.role == "baseline":
            from gridctl.transport.session import Session

            async def handler(topic: str, payload: bytes) -> None:
                json.loads(payload)  # the least any subscriber does
                record(payload)

            task = asyncio.create_task(
                Session(
                    broker, "bench-baseline", [f"gridctl/v1/{conf['community']}/#"], handler
                ).run()
            )
        else:
            from gridctl.coordinator.service import Coordinator
            from gridctl.settlement.enrol import simulated_coordinator_key
            from gridctl.settlement.settle import SettlementConfig

            class Measured(Coordinator):
                async def on_message(self, topic: str, payload: bytes) -> None:
                    await super().on_message(topic, payload)
                    record(payload)

            clock_start, clock_t0, speed = conf["clock"]
            coordinator = Measured(
                conf["community"],
                broker,
                Path(conf["ledger"]),
                Path(conf["inbox"]),
                SettlementConfig(0.20, 1.0),
                simulated_coordinator_key(1),
                clock=lambda: clock_start + speed * (time.time() - clock_t0),
                tick_s=0.2,
                settle_after_s=60.0,
            )
            task = asyncio.create_task(coordinator.run())
        print("ready", flush=True)
        await stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        out = _summary(latencies, time.time() - t0)
        if args.role == "coordinator":
            out["intervals_settled"] = len(coordinator.outcomes)
            statuses = [s for o in coordinator.outcomes for s in o.status]
            out["readings_settled"] = {k: statuses.count(k) for k in sorted(set(statuses))}
        Path(args.result).write_text(json.dumps(out))

    asyncio.run(run())


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


async def _load(conf: dict, signers: dict, seconds: float) -> dict[str, int]:
    """Publish telemetry at 1 Hz from every household and readings at each boundary."""
    from datetime import UTC, datetime

    from gridctl.protocol import Telemetry, encode, household_topic
    from gridctl.settlement.enrol import main_meter
    from gridctl.transport.session import BrokerSettings, Session

    async def ignore(topic: str, payload: bytes) -> None:
        return None

    homes = conf["households"]
    sessions = {
        h: Session(
            BrokerSettings(port=conf["port"], username=h, password=conf["creds"][h]),
            f"bench-{h}",
            [],
            ignore,
            keepalive_s=60,
        )
        for h in homes
    }
    tasks = [asyncio.create_task(s.run()) for s in sessions.values()]
    async with asyncio.timeout(120):
        while not all(s.connected.is_set() for s in sessions.values()):
            await asyncio.sleep(0.05)
    clock_start, clock_t0, speed = conf["clock"]
    counts = {"telemetry": 0, "readings": 0}
    counters = dict.fromkeys(homes, 0)

    async def household(k: int, h: str) -> None:
        await asyncio.sleep(k / len(homes))  # spread the households over each second
        topic = household_topic(conf["community"], h, "telemetry")
        last_iv = int((clock_start + speed * (time.time() - clock_t0)) // INTERVAL_S)
        end = time.time() + seconds
        while time.time() < end:
            msg = Telemetry(household=h, t=datetime.now(UTC), mode="plan", grid_p_w=500.0 + k)
            if await sessions[h].publish(topic, encode(msg), qos=0):
                counts["telemetry"] += 1
            iv = int((clock_start + speed * (time.time() - clock_t0)) // INTERVAL_S)
            if iv > last_iv:
                counters[h] += 100
                r = signers[main_meter(h)].sign(iv - 1, counters[h], 0)
                if await sessions[h].publish(
                    household_topic(conf["community"], h, "reading"),
                    json.dumps(r.to_message()).encode(),
                ):
                    counts["readings"] += 1
                last_iv = iv
            await asyncio.sleep(1.0)

    await asyncio.gather(*(household(k, h) for k, h in enumerate(homes)))
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return counts


def _phase(
    role: str, conf_path: Path, conf: dict, signers: dict, seconds: float, tmp: Path
) -> dict:
    result = tmp / f"{role}.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--role",
            role,
            "--child-conf",
            str(conf_path),
            "--result",
            str(result),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"{role} did not start")
    time.sleep(1.0)
    sent = asyncio.run(_load(conf, signers, seconds))
    time.sleep(2.0)  # let the last messages arrive
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    out = json.loads(result.read_text())
    out.update(sent_telemetry=sent["telemetry"], sent_readings=sent["readings"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--controllers", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=45.0)
    ap.add_argument("--speed", type=float, default=30.0, help="clock speed-up for readings")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("--child-conf", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role:
        _subscriber(args)
        return

    from gridctl.devices.virtual import free_tcp_port
    from gridctl.settlement.enrol import enrol_simulated
    from gridctl.settlement.ledger import Ledger
    from gridctl.transport.broker import Community, write_broker_config
    from gridctl.transport.launcher import running_broker

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # a socket per home
    homes = [f"h{k:04d}" for k in range(args.controllers)]
    console = Console()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="gridctl-bench-wire-") as name:
        tmp = Path(name)
        port = free_tcp_port()
        creds = write_broker_config(
            Community(community="bench", households=homes),
            tmp / "broker",
            port,
            run_as=getpass.getuser(),
        )
        with running_broker(tmp / "broker" / "mosquitto.conf", port):
            for role in ("baseline", "coordinator"):
                clock_t0 = time.time()
                first = int(clock_t0 // INTERVAL_S)
                ledger = tmp / f"{role}-ledger.sqlite"
                with Ledger(ledger) as led:
                    signers = enrol_simulated(led, homes, [17_250.0] * len(homes), first, seed=1)
                conf = {
                    "community": "bench",
                    "port": port,
                    "password": creds["coordinator"],
                    "households": homes,
                    "creds": creds,
                    "ledger": str(ledger),
                    "inbox": str(tmp / f"{role}-inbox.sqlite"),
                    "clock": [first * INTERVAL_S, clock_t0, args.speed],
                }
                conf_path = tmp / f"{role}-conf.json"
                conf_path.write_text(json.dumps(conf))
                console.print(
                    f"[dim]{role}: {len(homes)} controllers for {args.seconds:.0f} s ...[/]"
                )
                rows[role] = _phase(role, conf_path, conf, signers, args.seconds, tmp)
    base, coord = rows["baseline"], rows["coordinator"]
    title = f"wire benchmark: {args.controllers} controllers, telemetry at 1 Hz, readings every "
    title += f"interval (clock x{args.speed:g}), {os.cpu_count()} cores"
    table = Table(title=title)
    for col in ("what", "baseline", "coordinator", "x baseline"):
        table.add_column(col, justify="left" if col == "what" else "right")
    labels = {
        "p50_ms": "latency p50, ms",
        "p99_ms": "latency p99, ms",
        "cpu_pct": "CPU, % of one core",
        "rss_mb": "memory (peak RSS), MB",
        "received": "telemetry received",
        "sent_telemetry": "telemetry sent",
    }
    for key, label in labels.items():
        ratio = coord[key] / base[key] if base[key] else float("nan")
        table.add_row(label, f"{base[key]:,.1f}", f"{coord[key]:,.1f}", f"{ratio:.2f}")
    console.print(table)
    settled = ", ".join(f"{n:,} {k}" for k, n in coord.get("readings_settled", {}).items())
    console.print(
        f"readings sent {coord['sent_readings']:,}; {coord.get('intervals_settled', 0)} intervals "
        f"settled: {settled or 'none'} (a household's first interval and any left unsettled at "
        "the end count as missing)"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "controllers": args.controllers,
                    **{f"{role}_{k}": v for role, r in rows.items() for k, v in r.items()},
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
