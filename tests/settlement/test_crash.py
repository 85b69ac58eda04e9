"""Crash safety: SIGKILL the settling process at random points, restart it, and compare."""

import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridctl.settlement.audit import verify_ledger
from tests.zygote import Zygote

ROOT = Path(__file__).resolve().parents[2]
HOUSEHOLDS = 99  # + the transformer meter: 100 readings per interval
INTERVALS = 100  # 10,000 readings in all
KILLS = {0: 50, 2: 10}
"""SIGKILLs per variant: 50 in the settling process alone (the acceptance's figure); 10 more
with verification workers, which share every code path that writes but the signature check."""

# Re-feeds every reading from the start, as a restarted coordinator would: settled intervals
# are replays (no change), the rest are settled one SQLite transaction each.
SETTLE = f"""
import os
import sys
import tempfile

from gridctl.settlement.enrol import SyntheticCommunity
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.settle import SettlementConfig, Settler
from gridctl.settlement.verify import ParallelVerifier
from tests.keys import COORDINATOR_KEY

c = SyntheticCommunity({HOUSEHOLDS}, 5_000_000, seed=11)
with tempfile.TemporaryDirectory() as scratch:  # its meter keys, the seed's, to sign with
    with Ledger(os.path.join(scratch, "keys.sqlite"), COORDINATOR_KEY) as keys:
        c.enrol(keys)
batches = [c.readings(5_000_000 + t) for t in range({INTERVALS})]

def settle(db, workers):
    verifier = ParallelVerifier(workers=workers) if workers else None
    with Ledger(db, COORDINATOR_KEY) as ledger:
        c.enrol(ledger)
        settler = Settler(ledger, SettlementConfig(0.20, 1.0), verifier)
        if verifier is not None:
            verifier.start()
        print("ready", os.getpid(), flush=True)
        for t, batch in enumerate(batches):
            settler.settle(5_000_000 + t, batch)
    print("done", flush=True)
"""
CHILD = SETTLE + "settle(sys.argv[1], int(sys.argv[2]))\n"
"""A whole settling process, cold: imports, readings, ledger."""


def _start(db: Path, workers: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(workers)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _summary(db: Path) -> tuple:
    con = sqlite3.connect(db)
    out = (
        con.execute("SELECT COUNT(*), MIN(interval), MAX(interval) FROM interval_roots").fetchone(),
        con.execute("SELECT COUNT(*) FROM meter_readings").fetchone(),
        con.execute("SELECT COUNT(*), SUM(amount) FROM entries WHERE amount > 0").fetchone(),
        con.execute("SELECT hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone(),
        con.execute("SELECT group_concat(root) FROM interval_roots ORDER BY interval").fetchone(),
        con.execute("PRAGMA integrity_check").fetchone(),
    )
    con.close()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("workers", sorted(KILLS), ids=["in-process", "2-workers"])
def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    tmp_path: Path, workers: int
) -> None:
    """Signatures checked in the settling process, or in worker processes while it books."""
    ref = tmp_path / "reference.sqlite"
    proc = _start(ref, 0)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "done" in out
    want = _summary(ref)
    assert want[0] == (INTERVALS, 5_000_000, 5_000_000 + INTERVALS - 1)
    assert want[1] == ((HOUSEHOLDS + 1) * INTERVALS,) == (10_000,)

    db = tmp_path / "crashed.sqlite"
    rng = random.Random(2026)
    killed_mid_settling = 0
    t_end = time.monotonic() + 240
    # each settling process forked from a zygote that imported and signed the readings once
    run = "def run():\n    settle(sys.argv[1], int(sys.argv[2]))\n"
    zygote = Zygote(SETTLE + run, [str(db), str(workers)], ROOT)
    try:
        for _ in range(KILLS[workers]):
            pid = zygote.start()
            time.sleep(rng.uniform(0.0, 0.25))
            killed_mid_settling += "done\n" not in zygote.kill(pid)
            assert time.monotonic() < t_end, "crash test too slow"
            # whatever the moment of the kill, what is on disk is whole and verifies
            check = verify_ledger(db)
            assert check.ok, check.problem
    finally:
        zygote.close()
    proc = _start(db, workers)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "done" in out
    got = _summary(db)
    assert got == want  # same roots, entries, totals and head: nothing lost, nothing twice
    assert got[-1] == ("ok",)
    assert killed_mid_settling >= KILLS[workers] // 2
