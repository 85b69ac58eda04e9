"""What a ledger file says about governance, read without changing it (``gridctl gov status``,
``tally`` and ``verify``): each proposal and its state, the count so far of a proposal's
recorded votes, and the audit with what it covered.

The coordinator records the votes it received when it settles the interval they arrived in,
so a count so far lags the votes on the wire by up to an interval and the settling delay.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from gridctl.core import LedgerError
from gridctl.governance.audit import verify_governance
from gridctl.governance.params import GovernanceError
from gridctl.governance.state import proposal_state
from gridctl.governance.tally import Ballot, Tally, counted, tally
from gridctl.settlement import gov_records as rec
from gridctl.settlement.ledger import check_version


def open_read_only(path: Path) -> sqlite3.Connection:
    """The ledger file at ``path``, opened read-only (SQLite refuses every write through it);
    LedgerError if it is missing, not a ledger, or of another schema version."""
    path = Path(path)
    if not path.is_file():
        raise LedgerError(f"no ledger file at {path}")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        check_version(db, path)
        db.execute("SELECT 1 FROM gov_proposals LIMIT 1")
    except sqlite3.Error as e:
        raise LedgerError(f"{path} is not a gridctl ledger with governance records: {e}") from None
    return db


@dataclass(frozen=True)
class ProposalView:
    """A proposal, its state at some interval, and its tally (None before its close)."""

    proposal: rec.ProposalRow
    state: str
    tally: rec.TallyRow | None


def proposal_views(db: sqlite3.Connection, interval: int) -> list[ProposalView]:
    """Every proposal in id order, with its state at ``interval`` as the records show it."""
    tallies = rec.tallies(db)
    return [
        ProposalView(
            p, proposal_state(p, tallies.get(p.proposal), interval), tallies.get(p.proposal)
        )
        for p in rec.proposals(db)
    ]


@dataclass(frozen=True)
class Count:
    """The count of a proposal's valid recorded votes with its snapshot's weights.

    count: weights yes / no / abstain, the snapshot's total and the outcome were it closed
    now (at its close, the recorded tally). voters: households whose vote counts. quorum_ppm,
    threshold_ppm: the snapshot's, parts per million."""

    view: ProposalView
    count: Tally
    voters: int
    quorum_ppm: int
    threshold_ppm: int

    @property
    def turnout(self) -> float:
        """Share of the total weight that voted (yes, no or abstain), 0–1."""
        c = self.count
        return (c.yes + c.no + c.abstain) / c.total if c.total else 0.0


def count_so_far(db: sqlite3.Connection, pid: int, interval: int) -> Count:
    """Count proposal ``pid``'s valid recorded votes (the last of each household) with its
    weight snapshot; GovernanceError if there is no such proposal or it has not opened."""
    view = next((v for v in proposal_views(db, interval) if v.proposal.proposal == pid), None)
    if view is None:
        raise GovernanceError("unknown_proposal", f"there is no proposal {pid} in this ledger")
    snap = rec.snapshot(db, pid)
    if snap is None:
        raise GovernanceError(
            "not_open",
            f"proposal {pid} opens at interval {view.proposal.opens}: no votes are counted before",
        )
    ballots = [Ballot(v.household, v.choice, v.seq, rowid)
               for rowid, v in rec.votes(db, pid) if v.reason is None]  # fmt: skip
    choices = counted(ballots)
    t = tally(rec.weights(db, pid), choices, snap.quorum_ppm, snap.threshold_ppm)
    return Count(view, t, len(choices), snap.quorum_ppm, snap.threshold_ppm)


@dataclass(frozen=True)
class GovernanceCheck:
    """What ``gov verify`` covered, and the first record that does not follow (None: none)."""

    proposals: int
    votes: int
    tallies: int
    enactments: int
    problem: str | None


def check_governance(path: Path) -> GovernanceCheck:
    """Recompute every governance record of the ledger file at ``path`` (``verify_governance``),
    read-only."""
    db = open_read_only(path)
    try:
        problems = verify_governance(db)
        n = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
             for t in ("gov_proposals", "gov_votes", "gov_tallies", "gov_enactments")}  # fmt: skip
    except sqlite3.Error as e:
        raise LedgerError(f"{path}: cannot read its governance records: {e}") from None
    finally:
        db.close()
    return GovernanceCheck(n["gov_proposals"], n["gov_votes"], n["gov_tallies"],
                           n["gov_enactments"], problems[0] if problems else None)  # fmt: skip
