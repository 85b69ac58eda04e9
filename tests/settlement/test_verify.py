"""Signature checks in worker processes: same verdicts, same ledger, no orphaned workers."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.enrol import SyntheticCommunity
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.settle import SettlementConfig, Settler
from gridctl.settlement.signing import SignedReading, key_from_seed, public_bytes, reading_payload
from gridctl.settlement.verify import ParallelVerifier, verify_signatures
from tests.keys import COORDINATOR_KEY

ROOT = Path(__file__).resolve().parents[2]
T0 = 4_000_000


def _jobs() -> tuple[list[tuple[bytes, bytes, bytes]], list[bool]]:
    """Signature checks libsodium must accept or refuse, and the verdict each must get."""
    key = key_from_seed(b"verify-test")
    pub = public_bytes(key)
    payload = reading_payload("h0/main", T0, 1, 100, 0)
    sig = key.sign(payload)
    identity = bytes([1]) + bytes(31)  # small-order key: OpenSSL takes R = identity, s = 0
    s_plus_l = int.from_bytes(sig[32:], "little") + 2**252 + 27742317777372353535851937790883648493
    cases = [
        ((pub, sig, payload), True),
        ((pub, sig, reading_payload("h0/main", T0, 1, 101, 0)), False),  # payload changed
        ((public_bytes(key_from_seed(b"other")), sig, payload), False),  # other key
        ((identity, bytes([1]) + bytes(63), payload), False),
        ((pub, sig[:32] + s_plus_l.to_bytes(32, "little"), payload), False),  # non-canonical s
        ((pub, b"", payload), False),
        ((pub, sig[:63], payload), False),
        ((pub[:31], sig, payload), False),
    ]
    jobs = [job for job, _ in cases] * 20
    return jobs, [ok for _, ok in cases] * 20


def test_workers_give_the_verdicts_libsodium_gives_here() -> None:
    jobs, expected = _jobs()
    assert verify_signatures(jobs) == expected
    with ParallelVerifier(workers=2, min_batch=1) as verifier:
        assert verifier(jobs) == expected
        assert len(verifier.pids) == 2 and os.getpid() not in verifier.pids
        pids = verifier.pids
        for pid in pids:  # Ctrl-C in a terminal reaches the workers too: it is the parent's
            os.kill(pid, signal.SIGINT)
        assert verifier(jobs) == expected and verifier.pids == pids
        assert verifier(jobs[:1]) == expected[:1]  # one worker idle


def test_a_dead_worker_is_replaced_and_its_share_checked_here() -> None:
    jobs, expected = _jobs()
    with ParallelVerifier(workers=2, min_batch=1) as verifier:
        verifier.start()
        first = verifier.pids
        ticket = verifier.submit(jobs)
        os.kill(first[1], signal.SIGKILL)
        assert ticket.result() == expected
        assert verifier(jobs) == expected
        assert len(verifier.pids) == 2 and verifier.pids[0] == first[0]
        assert verifier.pids[1] != first[1]


def _settle_all(db: Path, parallel: bool) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """Settle 6 intervals of 40 households, with a forged reading in the fourth: the
    intervals' roots and rejections."""
    with Ledger(db, COORDINATOR_KEY) as ledger:
        c = SyntheticCommunity(40, T0, seed=3)
        c.enrol(ledger)
        batches = [c.readings(T0 + t) for t in range(6)]
        r = batches[3][5]
        batches[3][5] = SignedReading(
            r.meter, r.interval, r.seq, r.e_import_wh + 1, r.e_export_wh, r.key_id, r.signature
        )
        verifier = ParallelVerifier(workers=2, min_batch=8) if parallel else None
        try:
            settler = Settler(ledger, SettlementConfig(0.20, 1.0), verifier)
            outs = [settler.settle(T0 + t, b) for t, b in enumerate(batches)]
        finally:
            if verifier is not None:
                verifier.close()
    assert verify_ledger(db).ok
    return [o.root for o in outs], [o.rejected for o in outs]


def test_settling_with_workers_books_what_settling_here_books(tmp_path: Path) -> None:
    roots_here, rejected_here = _settle_all(tmp_path / "here.sqlite", parallel=False)
    roots_par, rejected_par = _settle_all(tmp_path / "par.sqlite", parallel=True)
    assert roots_par == roots_here
    assert rejected_par == rejected_here
    assert rejected_here == [[], [], [], [("h00005/main", "bad_signature")], [], []]
    with (
        Ledger(tmp_path / "here.sqlite", COORDINATOR_KEY) as a,
        Ledger(tmp_path / "par.sqlite", COORDINATOR_KEY) as b,
    ):
        assert a.head == b.head


CHILD = """
import os, sys, time
from gridctl.settlement.verify import ParallelVerifier

verifier = ParallelVerifier(workers=2)
verifier.start()
holder = os.fork() if sys.argv[1] == "forked" else 0  # a process holding our end of the pipes
if holder == 0 and sys.argv[1] == "forked":
    time.sleep(600)
print(holder, *verifier.pids, flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody reaps has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("how", ["alone", "forked"])
def test_workers_exit_when_the_settling_process_is_killed(how: str) -> None:
    """SIGKILL the process that started the workers: they exit, at once when their pipe
    closes, within a second or so when a forked child still holds the other end."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, how], stdout=subprocess.PIPE, text=True, env=env
    )
    holder = 0
    try:
        assert child.stdout is not None
        holder, *pids = [int(p) for p in child.stdout.readline().split()]
        assert len(pids) == 2 and all(_running(p) for p in pids)
    finally:
        child.kill()
        child.wait()
    try:
        deadline = time.monotonic() + 10.0
        while any(_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_running(p) for p in pids)
        assert how == "alone" or _running(holder)  # the pipes were still open
    finally:
        if holder:
            os.kill(holder, signal.SIGKILL)
