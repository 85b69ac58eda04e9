"""What the ledger records for each household's ``home`` counterfactual (what it would have
paid on its own): the grid's import and feed-in prices in force, recorded by the settlement at
the first interval it settles and whenever they change, and each household's share of the pool
per interval (Wh it received from and supplied to its neighbours; rows only where either is
not zero). Append-only like the rest of the file and covered by each interval's signed root
(``settlement.roots.COVERED``), so the counterfactual rests on audited figures only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from gridctl.core import MICRO
from gridctl.settlement.tables import Table, insert_rows, select_rows


class TariffRow(NamedTuple):
    """The grid's prices in force from ``at_interval`` on, micro-units of currency per kWh:
    what a household pays for energy drawn from the grid and earns for energy fed in."""

    at_interval: int
    import_micro_per_kwh: int
    feed_in_micro_per_kwh: int


class ShareRow(NamedTuple):
    """One household's energy through the community pool in one interval, Wh (≥ 0): received
    from neighbours (of its import) and supplied to them (of its export)."""

    household: str
    interval: int
    received_wh: int
    supplied_wh: int


TABLES: dict[str, Table] = {
    "grid_tariffs": Table.of(
        TariffRow, pk="at_interval", not_null=("import_micro_per_kwh", "feed_in_micro_per_kwh")
    ),
    "pool_shares": Table.of(
        # keyed by household first: a statement reads one household's range of intervals
        ShareRow,
        pk=("household", "interval"),
        not_null=("received_wh", "supplied_wh"),
    ),
}


def tariff_row(at_interval: int, import_per_kwh: float, feed_in_per_kwh: float) -> TariffRow:
    """The row of prices in currency per kWh, rounded to the micro-unit as the pool rounds."""
    return TariffRow(at_interval, round(import_per_kwh * MICRO), round(feed_in_per_kwh * MICRO))


def tariffs(db: sqlite3.Connection) -> list[TariffRow]:
    """Every recorded change of the grid's prices, in interval order."""
    return select_rows(db, TariffRow, "FROM grid_tariffs ORDER BY at_interval")


def shared_wh(db: sqlite3.Connection, household: str, first: int, last: int) -> tuple[int, int]:
    """(received, supplied) Wh through the pool by ``household`` in intervals first…last."""
    q = ("SELECT COALESCE(SUM(received_wh), 0), COALESCE(SUM(supplied_wh), 0) FROM pool_shares"
         " WHERE household = ? AND interval BETWEEN ? AND ?")  # fmt: skip
    return db.execute(q, (household, first, last)).fetchone()


def add_tariff(db: sqlite3.Connection, row: TariffRow) -> None:
    """Record ``row`` unless the prices in force at its interval are the same already."""
    last = select_rows(db, TariffRow, "FROM grid_tariffs WHERE at_interval <= ? "
                       "ORDER BY at_interval DESC LIMIT 1", (row.at_interval,))  # fmt: skip
    if not last or last[0][1:] != row[1:]:
        insert_rows(db, "grid_tariffs", [row])


def share_rows(
    interval: int, households: Sequence[str], received_wh: np.ndarray, supplied_wh: np.ndarray
) -> list[ShareRow]:
    """The pool shares of one interval, one row per household that received or supplied."""
    rec, sup = received_wh.tolist(), supplied_wh.tolist()
    return [ShareRow(households[k], interval, rec[k], sup[k])
            for k in np.flatnonzero((received_wh != 0) | (supplied_wh != 0)).tolist()]  # fmt: skip


def add_shares(db: sqlite3.Connection, rows: Sequence[ShareRow]) -> None:
    """Record an interval's pool shares."""
    insert_rows(db, "pool_shares", rows)
