"""Crash safety: SIGKILL the settling process at random points, restart it, and compare."""

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridctl.settlement.audit import verify_ledger

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
ZYGOTE = (
    SETTLE
    + """
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        settle(sys.argv[1], int(sys.argv[2]))
        os._exit(0)
    print("exit", os.waitpid(pid, 0)[1], flush=True)
"""
)
"""Imports and signs the readings once, then forks a settling process per line read: each
fork is a process of its own on the ledger file (its SIGKILL is a real crash), without the
two seconds a cold start spends importing and signing."""


def _start(db: Path, workers: int, code: str = CHILD) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, str(db), str(workers)],
        stdin=subprocess.PIPE if code == ZYGOTE else None,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _kill_one(zygote: subprocess.Popen, delay_s: float) -> bool:
    """Have the zygote fork a settling process, SIGKILL it ``delay_s`` after it is ready;
    True when it was killed before it had settled everything."""
    assert zygote.stdin is not None and zygote.stdout is not None
    zygote.stdin.write("go\n")
    zygote.stdin.flush()
    ready = zygote.stdout.readline().split()
    assert ready[:1] == ["ready"], ready
    time.sleep(delay_s)
    with contextlib.suppress(ProcessLookupError):  # it may have finished and been reaped
        os.kill(int(ready[1]), signal.SIGKILL)
    lines = []
    while not (lines and lines[-1].startswith("exit")):
        lines.append(zygote.stdout.readline())
        assert lines[-1], "the zygote ended"
    return "done\n" not in lines


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
    zygote = _start(db, workers, ZYGOTE)
    try:
        for _ in range(KILLS[workers]):
            killed_mid_settling += _kill_one(zygote, rng.uniform(0.0, 0.25))
            assert time.monotonic() < t_end, "crash test too slow"
            # whatever the moment of the kill, what is on disk is whole and verifies
            check = verify_ledger(db)
            assert check.ok, check.problem
    finally:
        zygote.kill()
        zygote.wait(timeout=30)
    proc = _start(db, workers)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "done" in out
    got = _summary(db)
    assert got == want  # same roots, entries, totals and head: nothing lost, nothing twice
    assert got[-1] == ("ok",)
    assert killed_mid_settling >= KILLS[workers] // 2
