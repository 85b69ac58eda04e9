"""What the governance page reads of a ledger (read-only, through ``governance.report``), and
the check of a member's signed vote before the web app relays it.

Public: each proposal, its window, state, the weights counted so far behind yes / no / abstain
(the snapshot's total, quorum and threshold), its tally and enactment. Who voted what and each
household's weight (under ``contribution`` weights: its verified sharing) are a household's
own: a household sees its own, the operator everyone's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from gridctl.core import LedgerError
from gridctl.governance.report import (
    Count,
    ProposalView,
    count_so_far,
    open_read_only,
    proposal_views,
)
from gridctl.governance.state import vote_reason
from gridctl.governance.votes import VoteMessage
from gridctl.settlement import gov_records as rec
from gridctl.settlement.verify import verify_signatures

REASONS = {
    "wrong_community": "the vote names another community",
    "unknown_proposal": "there is no such proposal",
    "other_household": "the vote is for another household than yours",
    "unknown_key": "its key is not an enrolled member key (did you load your own key file?)",
    "other_key": "its key is another household's member key",
    "removed_key": "its member key was removed",
    "bad_signature": "its signature does not hold (the vote was altered or signed with "
                     "another key)",
    "not_open": "the proposal is not open for votes yet",
    "closed": "the proposal's vote has closed",
    "not_eligible": "your household is not in the proposal's weight snapshot",
}  # fmt: skip
"""Plain words for ``governance.state.vote_reason``'s reasons."""


@dataclass(frozen=True)
class ProposalLine:
    """A proposal as the page shows it: its view (row, state, tally), the count so far (None
    before it opened), its enactment, the snapshot's weights by household and the viewer's
    own recorded votes (empty for an anonymous viewer)."""

    view: ProposalView
    count: Count | None
    enactment: rec.EnactmentRow | None
    weights: dict[str, int]
    mine: list[rec.VoteRow]


@contextmanager
def _ledger(path: Path) -> Iterator[sqlite3.Connection]:
    """The ledger read-only; a failing read as LedgerError (the app answers 503)."""
    with closing(open_read_only(path)) as db:
        try:
            yield db
        except sqlite3.Error as e:
            raise LedgerError(f"{path}: cannot read its governance records: {e}") from None


def proposal_lines(path: Path, interval: int, viewer: str | None) -> list[ProposalLine]:
    """Every proposal of the ledger at ``path`` as of ``interval``, newest first; ``viewer``:
    the household whose own votes to include (None: nobody's)."""
    out = []
    with _ledger(path) as db:
        enacted = rec.enactments(db)
        for v in proposal_views(db, interval):
            pid = v.proposal.proposal
            count = count_so_far(db, pid, interval) if rec.snapshot(db, pid) else None
            mine = [r for _, r in rec.votes(db, pid) if viewer is not None and r.sender == viewer]
            out.append(ProposalLine(v, count, enacted.get(pid), rec.weights(db, pid), mine))
    return out[::-1]


def vote_refusal(path: Path, community: str, vote: VoteMessage, sender: str,
                 interval: int) -> str | None:  # fmt: skip
    """Why the coordinator would not count ``vote`` sent by household ``sender`` in
    ``interval`` (a reason of ``REASONS``), None when it would as far as the ledger shows now
    (a proposal whose snapshot is not recorded yet is left to the coordinator)."""
    with _ledger(path) as db:
        proposal = next((p for p in rec.proposals(db) if p.proposal == vote.proposal), None)
        member = next((m for m in rec.members(db) if m.key_id == vote.key_id), None)
        removed = rec.removals(db).get(vote.key_id)
        snapshot = rec.snapshot(db, vote.proposal)
        eligible = rec.weights(db, vote.proposal)
    row = rec.VoteRow(vote.digest(), vote.community, vote.proposal, vote.household, sender,
                      vote.choice, vote.seq, vote.key_id, vote.sig, interval, None)  # fmt: skip
    why = vote_reason(
        row, community, proposal, member, removed, eligible,
        lambda: verify_signatures(
            [(member.public_key, bytes.fromhex(vote.sig), vote.payload())]  # type: ignore[union-attr]
        )[0],
    )  # fmt: skip
    if why == "not_eligible" and snapshot is None:
        return None
    return why
