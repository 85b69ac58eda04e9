"""Physics cases: the ledger's record of claims the physics check did not accept.

``cases`` keeps, per interval and household, what the check found (``named``: its claim was
rejected; ``held``: its rewards were held because physics could not clear it) with the
residuals and the interval's case record as canonical JSON; the rows are covered by the
interval's signed root, and a household's statement shows them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

from gridctl.settlement.canonical import canonical
from gridctl.settlement.tables import Table, insert_rows

NAMED, HELD = "named", "held"


class CaseRow(NamedTuple):
    """A row of ``cases``: what physics found of one household's claim in one interval.

    outcome: ``named`` or ``held``. method: which check found it. rn: normalised residual of
    its claim (None when the check has none). deviation_w: claimed minus estimated power, W,
    load convention (< 0: it claimed more export than physics supports; None when unknown).
    detail: the interval's case record, canonical JSON.
    """

    interval: int
    household: str
    outcome: str
    method: str
    rn: float | None
    deviation_w: float | None
    detail: str


TABLES: dict[str, Table] = {
    "cases": Table.of(
        CaseRow, pk=("interval", "household"), not_null=("outcome", "method", "detail")
    )
}
"""The cases as the ledger file holds them (append-only)."""


def add_cases(db: sqlite3.Connection, rows: Sequence[CaseRow]) -> None:
    """Store case rows (inside the ledger's ``atomic()``)."""
    insert_rows(db, "cases", rows)


def case_detail(case: dict[str, object]) -> str:
    """A case record as canonical JSON (what ``cases.detail`` stores)."""
    return canonical(case).decode("ascii")


def households_in_cases(db: sqlite3.Connection, first: int, outcome: str | None = None) -> set[str]:
    """Households with a case (of ``outcome``, None: any) in an interval ≥ ``first``."""
    q = "SELECT DISTINCT household FROM cases WHERE interval >= ?"
    args: tuple = (first,)
    if outcome is not None:
        q, args = q + " AND outcome = ?", (first, outcome)
    return {r[0] for r in db.execute(q, args)}


def case_outcomes(db: sqlite3.Connection) -> list[tuple[int, str, str]]:
    """Every case as (interval, household, outcome), in interval order."""
    q = "SELECT interval, household, outcome FROM cases ORDER BY interval, household"
    return [(int(i), str(h), str(o)) for i, h, o in db.execute(q)]
