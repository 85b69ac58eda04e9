"""Governance records in the ledger file, written by ``gridctl.governance``: member keys,
proposals, weight snapshots, every vote received, tallies and enactments.
Append-only like the rest of the file, and covered by each interval's signed root
(``settlement.roots.COVERED``), so they are as tamper-evident as money.
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

from gridctl.settlement.tables import Table, select_rows


class ConfigRow(NamedTuple):
    """The governed values and bounds the operator's configuration gave from ``at_interval``
    on (recorded when they change): the community's name, settings, {parameter: value}, and
    bounds, {parameter: [lo, hi]} of each number, as canonical JSON."""

    at_interval: int
    community: str
    settings: str
    bounds: str


class MemberRow(NamedTuple):
    """A member key enrolled for a household, valid from ``valid_from``. proposal: the
    admission that enrolled it (None: enrolled by the operator's configuration)."""

    key_id: str
    household: str
    public_key: bytes
    valid_from: int
    proposal: int | None


class RemovalRow(NamedTuple):
    """A member key removed from ``at_interval`` on, by ``proposal``."""

    key_id: str
    at_interval: int
    proposal: int


class ProposalRow(NamedTuple):
    """A proposal as submitted. value: canonical JSON. bounds: canonical JSON [lo, hi] it was
    checked against (None for a non-number). Open from ``opens`` to before ``closes``;
    enacted at ``enact_at`` if passed. klass: ordinary / membership / constitutional."""

    proposal: int
    parameter: str
    value: str
    bounds: str | None
    rationale: str
    proposer: str
    submitted: int
    opens: int
    closes: int
    enact_at: int
    klass: str


class SnapshotRow(NamedTuple):
    """How a proposal's votes are weighed, fixed when it opens: the weight mode, cap, the
    window of verified contribution (intervals first…last), quorum and threshold (ppm), and
    the total weight."""

    proposal: int
    mode: str
    cap_ppm: int
    first: int
    last: int
    quorum_ppm: int
    threshold_ppm: int
    total: int


class WeightRow(NamedTuple):
    """One member's weight in a proposal's snapshot and the contribution it came from, Wh."""

    proposal: int
    household: str
    contribution_wh: int
    weight: int


class VoteRow(NamedTuple):
    """A vote as received (every one, valid or not). sender: the household whose topic (or
    CLI) delivered it. received: interval of receipt. reason: why it does not count (None: it
    is valid). digest: sha256 of payload and signature."""

    digest: str
    community: str
    proposal: int
    household: str
    sender: str
    choice: str
    seq: int
    key_id: str
    sig: str
    received: int
    reason: str | None


class TallyRow(NamedTuple):
    """A proposal's count at its close: weights yes / no / abstain, total, outcome."""

    proposal: int
    at_interval: int
    yes: int
    no: int
    abstain: int
    total: int
    outcome: str


class EnactmentRow(NamedTuple):
    """A passed proposal taking effect from ``at_interval`` (value: canonical JSON)."""

    proposal: int
    at_interval: int
    parameter: str
    value: str


TABLES: dict[str, Table] = {
    "gov_config": Table.of(
        ConfigRow, pk="at_interval", not_null=("community", "settings", "bounds")
    ),
    "gov_members": Table.of(MemberRow, pk="key_id", not_null=("household", "public_key")),
    "gov_removals": Table.of(RemovalRow, pk="key_id", not_null=("at_interval", "proposal")),
    "gov_proposals": Table.of(ProposalRow, pk="proposal", not_null=("parameter", "value")),
    "gov_snapshots": Table.of(SnapshotRow, pk="proposal", not_null=("mode", "total")),
    "gov_weights": Table.of(WeightRow, pk=("proposal", "household"), not_null=("weight",)),
    "gov_votes": Table.of(VoteRow, pk="digest", not_null=("proposal", "household", "sig")),
    "gov_tallies": Table.of(TallyRow, pk="proposal", not_null=("outcome",)),
    "gov_enactments": Table.of(EnactmentRow, pk="proposal", not_null=("parameter", "value")),
}
"""Governance tables as the ledger file holds them (append-only, covered by the roots)."""


def configs(db: sqlite3.Connection) -> list[ConfigRow]:
    """Every recorded configuration, in interval order."""
    return select_rows(db, ConfigRow, "FROM gov_config ORDER BY at_interval")


def proposals(db: sqlite3.Connection) -> list[ProposalRow]:
    """Every proposal, in id order."""
    return select_rows(db, ProposalRow, "FROM gov_proposals ORDER BY proposal")


def members(db: sqlite3.Connection) -> list[MemberRow]:
    """Every member key, in enrolment order."""
    return select_rows(db, MemberRow, "FROM gov_members ORDER BY rowid")


def removals(db: sqlite3.Connection) -> dict[str, int]:
    """Removed member keys → interval of removal."""
    return {r.key_id: r.at_interval for r in select_rows(db, RemovalRow, "FROM gov_removals")}


def snapshot(db: sqlite3.Connection, proposal: int) -> SnapshotRow | None:
    """A proposal's snapshot, None before it opened."""
    rows = select_rows(db, SnapshotRow, "FROM gov_snapshots WHERE proposal = ?", (proposal,))
    return rows[0] if rows else None


def weights(db: sqlite3.Connection, proposal: int) -> dict[str, int]:
    """Household → weight in a proposal's snapshot."""
    q = "SELECT household, weight FROM gov_weights WHERE proposal = ? ORDER BY rowid"
    return {h: int(w) for h, w in db.execute(q, (proposal,))}


def votes(db: sqlite3.Connection, proposal: int | None = None) -> list[tuple[int, VoteRow]]:
    """(rowid, vote) of every received vote (of ``proposal``), in order of receipt."""
    names = ", ".join(VoteRow._fields)
    q = f"SELECT rowid, {names} FROM gov_votes"
    args: tuple = ()
    if proposal is not None:
        q, args = q + " WHERE proposal = ?", (proposal,)
    return [(int(r[0]), VoteRow(*r[1:])) for r in db.execute(q + " ORDER BY rowid", args)]


def tallies(db: sqlite3.Connection) -> dict[int, TallyRow]:
    """Proposal → its tally."""
    return {t.proposal: t for t in select_rows(db, TallyRow, "FROM gov_tallies")}


def enactments(db: sqlite3.Connection) -> dict[int, EnactmentRow]:
    """Proposal → its enactment."""
    return {e.proposal: e for e in select_rows(db, EnactmentRow, "FROM gov_enactments")}
