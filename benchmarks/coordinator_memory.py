"""Coordinator memory over a long run: resident memory per settled interval stays flat.

    python benchmarks/coordinator_memory.py [--households 500] [--intervals 2000] [--json FILE]

One coordinator (no broker connection: messages are handed to its own ``on_message``, so the
whole ingest path runs: rate limits, decoding, clock, key and signature checks, the inbox) takes
every household's signed reading for each interval and settles it into a real SQLite ledger.
Resident memory (RSS) is sampled as it goes; the slope is fitted over the second half of the run
(after caches have filled). The baseline, measured in the same run, is the same coordinator
keeping every interval's outcome in memory (what it did before ``outcome_window``), for a tenth
of the intervals.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from gridctl.coordinator.limits import RateLimit
from gridctl.coordinator.service import Coordinator
from gridctl.core import INTERVAL_S
from gridctl.protocol import household_topic
from gridctl.settlement.enrol import enrol_simulated, main_meter
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.settle import SettlementConfig
from gridctl.settlement.signing import key_from_seed
from gridctl.transport.session import BrokerSettings

FIRST = 1_990_000
UNLIMITED = RateLimit(per_s=1e12, burst=1e12)


def rss_mib() -> float:
    """This process's resident memory now, MiB (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


class Clock:
    def __init__(self, t_s: float):
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s


async def run(households: int, intervals: int, window: int | None, every: int) -> dict:
    """Settle ``intervals`` intervals of ``households`` readings; RSS samples and timings."""
    ids = [f"h{k:04d}" for k in range(households)]
    with tempfile.TemporaryDirectory(prefix="gridctl-mem-") as tmp_name:
        tmp = Path(tmp_name)
        with Ledger(tmp / "ledger.sqlite") as ledger:
            signers = enrol_simulated(ledger, ids, [17_250.0] * households, FIRST, seed=1)
        clock = Clock(FIRST * INTERVAL_S)
        coord = Coordinator(
            "mem", BrokerSettings(port=1, username="coordinator", password="x"),
            tmp / "ledger.sqlite", tmp / "inbox.sqlite", SettlementConfig(0.20, 1.0),
            key_from_seed(b"benchmark/coordinator"), clock=clock, tick_s=None,
            readings_limit=UNLIMITED, other_limit=UNLIMITED,
            outcome_window=window if window is not None else 10**9,
        )  # fmt: skip
        topics = [household_topic("mem", h, "reading") for h in ids]
        rng = np.random.default_rng(1)
        imp = np.zeros(households, dtype=np.int64)
        samples: list[tuple[int, float]] = []
        t0 = time.perf_counter()
        try:
            for k in range(intervals):
                iv = FIRST + k
                imp += rng.integers(0, 800, households)
                clock.t_s = (iv + 1) * INTERVAL_S + 1
                for h, topic, e in zip(ids, topics, imp.tolist(), strict=True):
                    r = signers[main_meter(h)].sign(iv, e, 0)
                    await coord.on_message(topic, json.dumps(r.to_message()).encode())
                await coord.tick()
                if coord.last_closed != iv:
                    raise RuntimeError(f"interval {iv} not settled: {coord.rejects.by_reason}")
                if k % every == 0 or k == intervals - 1:
                    samples.append((k, rss_mib()))
        finally:
            coord.inbox.close()
            coord.ledger.close()
        elapsed_s = time.perf_counter() - t0
    return {"samples": samples, "s_per_interval": elapsed_s / intervals,
            "refused": sum(coord.rejects.by_reason.values())}  # fmt: skip


def slope_kib(samples: list[tuple[int, float]]) -> float:
    """Least-squares RSS slope over the second half of the samples, KiB per interval."""
    half = samples[len(samples) // 2 :]
    x = np.array([k for k, _ in half], dtype=float)
    y = np.array([m for _, m in half]) * 1024
    return float(np.polyfit(x, y, 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--households", type=int, default=500)
    ap.add_argument("--intervals", type=int, default=2000)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    console = Console(width=140)
    base_n = max(a.intervals // 10, 40)
    console.print(f"baseline: every outcome kept, {base_n} intervals × {a.households} households")
    base = asyncio.run(run(a.households, base_n, None, max(base_n // 20, 1)))
    console.print(f"gridctl: last 96 outcomes kept, {a.intervals} intervals")
    new = asyncio.run(run(a.households, a.intervals, 96, max(a.intervals // 40, 1)))
    s_base, s_new = slope_kib(base["samples"]), slope_kib(new["samples"])
    table = Table(title=f"coordinator memory, {a.households} households")
    for col in ("run", "intervals", "RSS first, MiB", "RSS last, MiB", "slope, KiB/interval",
                "s/interval", "refused"):  # fmt: skip
        table.add_column(col, justify="right")
    for name, res, n, s in (("baseline (all outcomes)", base, base_n, s_base),
                            ("gridctl (window 96)", new, a.intervals, s_new)):  # fmt: skip
        first, last = res["samples"][0][1], res["samples"][-1][1]
        table.add_row(name, str(n), f"{first:.1f}", f"{last:.1f}", f"{s:.2f}",
                      f"{res['s_per_interval']:.3f}", str(res["refused"]))  # fmt: skip
    console.print(table)
    ratio = s_new / s_base if s_base else float("nan")
    console.print(f"slope ratio gridctl / baseline: {ratio:.3f}")
    if a.json:
        slopes = {"baseline": s_base, "gridctl": s_new}
        doc = {"households": a.households, "baseline": base, "gridctl": new,
               "slope_kib_per_interval": slopes}  # fmt: skip
        a.json.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
