"""Crash safety of governance: SIGKILL the coordinator's settling process while it tallies or
enacts, restart it, and compare with a run that was never killed."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridctl.governance.audit import verify_governance
from gridctl.governance.book import Charter, Governance, base_values
from gridctl.governance.spec import GovernanceSpec
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.enrol import SyntheticCommunity
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.signing import key_from_seed, public_bytes
from tests.keys import COORDINATOR_KEY
from tests.zygote import Zygote

ROOT = Path(__file__).resolve().parents[2]
FIRST = 6_000_000
INTERVALS = 24
MEMBERS = 400
KILLS = 12
SPEC = GovernanceSpec.model_validate({"window_intervals": [1, 10], "delay_intervals": [1, 10]})
PROPOSALS = [  # (parameter, value, submitted at FIRST + k, window, delay)
    ("community_per_kwh", 0.25, 0, 3, 1),
    ("reward_tokens_per_kwh", 2.0, 1, 2, 2),
    ("fairness", "kwp", 2, 4, 1),
    ("battery_reserve_soc", 0.3, 3, 2, 1),
    ("community_per_kwh", 0.15, 5, 3, 2),
    ("flex_tokens_per_kwh", 0.5, 7, 2, 1),
    ("reward_tokens_per_kwh", 0.5, 9, 3, 1),
    ("remove", "m0007", 10, 2, 1),
    ("community_per_kwh", 0.30, 12, 3, 1),
    ("weights", "quadratic", 14, 2, 1),
]


def _charter() -> Charter:
    return Charter(SPEC, base_values(SPEC, 0.20, 1.0, 0.0), 0.32, 0.08)


# Settles every interval as the coordinator does (Coordinator._govern_and_settle: governance
# advances with the votes that arrived, then the interval is settled with the values in force),
# from the first interval not yet closed; prints "begin i" before an interval in which a
# proposal closes or is enacted and "governed i" once governance has recorded it.
IMPORTS = """import os, random, sys
from pathlib import Path
from gridctl.coordinator.service import Coordinator
from gridctl.governance.votes import sign_vote
from gridctl.settlement.aggregates import CommunityFigures
from gridctl.settlement.enrol import SyntheticCommunity
from gridctl.settlement.settle import SettlementConfig
from gridctl.settlement.signing import key_from_seed
from gridctl.transport.session import BrokerSettings
from tests.coordinator.test_gov_crash import FIRST, INTERVALS, MEMBERS, _charter
from tests.keys import COORDINATOR_KEY


def run():
    c = SyntheticCommunity(30, FIRST, seed=3)
    coord = Coordinator("oak", BrokerSettings(port=1), Path(sys.argv[1]), Path(sys.argv[2]),
                        SettlementConfig(0.20, 1.0), COORDINATOR_KEY, governance=_charter(),
                        tick_s=None, health_port=None)
    c.enrol(coord.ledger)
    batches = [c.readings(FIRST + t) for t in range(INTERVALS)]
    gov = coord.governance
    rng = random.Random(7)
    for p in gov.proposals():  # every member votes once, on a day of the window, as it arrives
        for m in range(MEMBERS):
            h = f"m{m:04d}"
            key = key_from_seed(f"member/{h}".encode())
            choice = rng.choice(["yes", "yes", "no", "abstain"] if p.proposal % 3 else ["no", "yes"])
            at = p.opens + rng.randrange(p.closes - p.opens)
            coord.inbox.add_vote(h, sign_vote(key, "oak", p.proposal, h, choice, 1), at)
    due = {p.closes for p in gov.proposals()} | {p.enact_at for p in gov.proposals()}
    advance = gov.advance
    def traced(interval, received=()):
        out = advance(interval, received)
        print("governed", interval, flush=True)
        return out
    gov.advance = traced
    closed = coord.ledger.last_closed()
    print("ready", os.getpid(), flush=True)
    for t in range(INTERVALS):
        i = FIRST + t
        if closed is not None and i <= closed:
            continue
        if i in due:
            print("begin", i, flush=True)
        coord._govern_and_settle(i, batches[t], coord.inbox.votes_through(i), CommunityFigures())
        coord.inbox.prune_votes_through(i)
    print("done", flush=True)
"""
CHILD = IMPORTS + "run()\n"
"""A settling process, cold: imports, community, votes, ledger."""


def _setup(db: Path) -> None:
    """Meters, members (enrolled the interval before the first) and the proposals."""
    with Ledger(db, COORDINATOR_KEY) as ledger:
        SyntheticCommunity(30, FIRST, seed=3).enrol(ledger)
        gov = Governance(ledger, "oak", _charter())
        for m in range(MEMBERS):
            h = f"m{m:04d}"
            gov.enrol_member(h, public_bytes(key_from_seed(f"member/{h}".encode())), FIRST - 1)
        for name, value, k, window, delay in PROPOSALS:
            gov.propose(name, value, "", "operator", window, delay, FIRST + k)


def _start(db: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    inbox = db.with_suffix(".inbox")
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(inbox)], stdout=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip


def _governance(db: Path) -> tuple:
    con = sqlite3.connect(db)
    tables = ("gov_snapshots", "gov_weights", "gov_votes", "gov_tallies", "gov_enactments",
              "gov_removals")  # fmt: skip
    out = (
        *(con.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables),
        con.execute("SELECT group_concat(root) FROM interval_roots ORDER BY interval").fetchone(),
        con.execute("SELECT hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone(),
    )
    con.close()
    return out


def _states(db: Path) -> dict[int, str]:
    """Each proposal's state at the last closed interval (one each, by construction)."""
    with Ledger(db) as ledger:
        gov = Governance(ledger, "oak", _charter())
        closed = ledger.last_closed()
        assert closed is not None
        return {p.proposal: gov.state(p.proposal, closed) for p in gov.proposals()}


def _check(db: Path) -> None:
    check = verify_ledger(db)
    assert check.ok, check.problem
    con = sqlite3.connect(db)
    try:
        assert verify_governance(con) == []
    finally:
        con.close()


@pytest.mark.slow
def test_sigkill_while_tallying_or_enacting_loses_and_doubles_nothing(tmp_path: Path) -> None:
    ref = tmp_path / "reference.sqlite"
    _setup(ref)
    proc = _start(ref)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "done" in out
    want = _governance(ref)
    states = _states(ref)
    assert set(states.values()) >= {"enacted", "failed"}, states
    assert len(want[4]) == sum(s == "enacted" for s in states.values())  # one enactment each

    db = tmp_path / "crashed.sqlite"
    _setup(db)
    rng = random.Random(2026)
    mid_governance = 0
    t_end = time.monotonic() + 300
    # each settling process forked from a zygote that imported the coordinator's modules once
    zygote = Zygote(IMPORTS, [str(db), str(db.with_suffix(".inbox"))], ROOT)
    try:
        for _ in range(KILLS):
            pid = zygote.start()
            lines = ["ready"]
            begins = rng.randrange(1, 4)  # the 1st to 3rd interval with a close or an enactment
            while begins and lines[-1] and not lines[-1].startswith("done"):
                lines.append(zygote.readline())
                begins -= lines[-1].startswith("begin")
            time.sleep(rng.uniform(0.0, 0.01))
            rest = zygote.kill(pid)
            started = lines[-1].split()
            if started and started[0] == "begin":
                mid_governance += f"governed {started[1]}\n" not in rest
            assert time.monotonic() < t_end, "crash test too slow"
            _check(db)  # whatever the moment of the kill, what is on disk is whole and verifies
            if (
                Path(db).exists()
                and sqlite3.connect(db).execute("SELECT COUNT(*) FROM interval_roots").fetchone()[0]
            ):
                assert set(_states(db).values()) <= {"draft", "open", "closed", "passed",
                                                      "enacted", "failed", "expired"}  # fmt: skip
    finally:
        zygote.close()
    proc = _start(db)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "done" in out
    assert _governance(db) == want  # same snapshots, votes, tallies, enactments, roots, head
    assert _states(db) == states
    _check(db)
    print(f"{KILLS} kills, {mid_governance} while governance was recording an interval")
    assert mid_governance >= KILLS // 2, mid_governance
