"""Interval meter readings: their tables in the ledger file, and a first VEE check of them.

A reading is a pair of cumulative energy counters (import, export) in integer Wh at the end
of an interval, and optionally the interval's mean voltage in mV. The energy of the interval
is the difference to the previous reading.
``meter_readings`` keeps every authentic reading with its VEE outcome, ``rejects`` the
readings refused before VEE, ``estimates`` the energy of intervals a main meter missed; the
``readings`` view is each household's settled main-meter outcome per interval.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import sqlite_utils

from gridctl.settlement.tables import Table, insert_rows, select_rows

VERIFIED = "verified"
REJECTED = "rejected"
PLAUSIBILITY_MARGIN = 1.05
"""An interval may carry at most this factor times rated power x interval length."""


def create_views(db: sqlite_utils.Database) -> None:
    """The ``readings`` view, if not there yet (after the meters' and the readings' tables)."""
    # one row per household and interval it has energy for: the settled outcome of its main meter
    db.conn.execute(
        "CREATE VIEW IF NOT EXISTS readings AS"
        " SELECT m.household AS household, r.interval AS interval, r.e_import_wh AS e_import_wh,"
        " r.e_export_wh AS e_export_wh, r.status AS status, r.reason AS reason,"
        " r.meter AS meter, r.d_import_wh AS d_import_wh, r.d_export_wh AS d_export_wh"
        " FROM meter_readings r JOIN meters m ON m.meter = r.meter WHERE m.role = 'main'"
        " UNION ALL"
        " SELECT m.household, e.interval, NULL, NULL, 'estimated', e.reason, e.meter,"
        " e.d_import_wh, e.d_export_wh"
        " FROM estimates e JOIN meters m ON m.meter = e.meter"
    )


class ReadingRow(NamedTuple):
    """A row of ``meter_readings``: an authentic reading as signed and its VEE outcome.

    e_*_wh: the counters, Wh. d_*_wh: the interval's energy, Wh. advanced: 1 when the reading
    is the meter's new reference. ema_*_wh: the meter's smoothed interval energy, Wh; n: how
    many readings it has advanced by. v_mv: the interval's mean voltage as signed, mV (None: the
    reading carried none).
    """

    meter: str
    interval: int
    seq: int
    e_import_wh: int
    e_export_wh: int
    key_id: str
    signature: bytes
    digest: str
    status: str
    reason: str | None
    d_import_wh: int
    d_export_wh: int
    advanced: int
    ema_import_wh: float
    ema_export_wh: float
    n: int
    v_mv: int | None


class RejectRow(NamedTuple):
    """A row of ``rejects``: a reading refused before VEE, while settling ``at_interval``."""

    digest: str
    meter: str
    interval: int
    at_interval: int
    reason: str


class EstimateRow(NamedTuple):
    """A row of ``estimates``: energy a main meter's gap-closing reading gave a missed interval."""

    meter: str
    interval: int
    d_import_wh: int
    d_export_wh: int
    reason: str


TABLES: dict[str, Table] = {
    # the signed readings as received (authentic ones), every meter, with their VEE outcome
    "meter_readings": Table.of(
        ReadingRow,
        pk=("meter", "interval"),
        not_null=("seq", "e_import_wh", "e_export_wh", "key_id", "signature", "digest", "status"),
    ),
    # readings refused before VEE (forged, replayed, late, conflicting), once per distinct reading
    "rejects": Table.of(RejectRow, pk="digest", not_null=("reason",)),
    # energy of intervals a main meter missed, filled in from the reading after the gap
    "estimates": Table.of(
        EstimateRow, pk=("meter", "interval"), not_null=("d_import_wh", "d_export_wh", "reason")
    ),
}
"""The readings as the ledger file holds them (append-only), a column per row type field."""


class LastReading(NamedTuple):
    """A meter's latest reference reading (the last that advanced it)."""

    meter: str
    interval: int
    seq: int
    e_import_wh: int
    e_export_wh: int
    ema_import_wh: float
    ema_export_wh: float
    n: int


class HouseholdReading(NamedTuple):
    """A household's settled main-meter outcome of one interval (a row of the ``readings``
    view). d_*_wh: energy, Wh (None when it has none)."""

    interval: int
    d_import_wh: int | None
    d_export_wh: int | None
    status: str
    reason: str | None


_ADD_REJECT = (
    "INSERT INTO rejects SELECT ?,?,?,?,? WHERE NOT EXISTS (SELECT 1 FROM rejects WHERE digest = ?)"
)
"""Keep a refused reading once (the table refuses a row whose digest it has)."""


def add_readings(db: sqlite3.Connection, rows: Sequence[ReadingRow]) -> None:
    """Store authentic readings with their VEE outcome (inside the ledger's ``atomic()``)."""
    insert_rows(db, "meter_readings", rows)


def add_rejects(db: sqlite3.Connection, rows: Sequence[RejectRow]) -> None:
    """Store refused readings, each distinct one once (inside the ledger's ``atomic()``)."""
    db.executemany(_ADD_REJECT, [(*r, r.digest) for r in rows])


def add_estimates(db: sqlite3.Connection, rows: Sequence[EstimateRow]) -> None:
    """Store the estimated energy of missed intervals (inside the ledger's ``atomic()``)."""
    insert_rows(db, "estimates", rows)


def last_readings(db: sqlite3.Connection) -> list[LastReading]:
    """Each meter's latest reading that advanced it (meters without one left out)."""
    return select_rows(
        db,
        LastReading,
        "FROM meter_readings WHERE (meter, interval) IN"
        " (SELECT meter, MAX(interval) FROM meter_readings WHERE advanced = 1 GROUP BY meter)",
    )


def is_recorded(db: sqlite3.Connection, meter: str, interval: int, digest: str) -> bool:
    """True when the reading of this digest is stored, as settled or as refused."""
    q = "SELECT 1 FROM meter_readings WHERE meter = ? AND interval = ? AND digest = ?"
    if db.execute(q, (meter, interval, digest)).fetchone():
        return True
    return db.execute("SELECT 1 FROM rejects WHERE digest = ?", (digest,)).fetchone() is not None


def household_readings(
    db: sqlite3.Connection, household: str, first: int, last: int
) -> list[HouseholdReading]:
    """The household's settled readings of intervals first…last, in no particular order."""
    return select_rows(
        db,
        HouseholdReading,
        "FROM readings WHERE household = ? AND interval BETWEEN ? AND ?",
        (household, first, last),
    )


@dataclass(frozen=True)
class ReadingCheck:
    """Per-household outcome for one interval (arrays in household order).

    import_wh / export_wh: energy of the interval, Wh; 0 where the reading was not verified.
    status: ``verified`` or ``rejected``. reason: why a reading was rejected, else None.
    """

    import_wh: np.ndarray
    export_wh: np.ndarray
    status: list[str]
    reason: list[str | None]


def check_readings(
    prev_import_wh: np.ndarray,
    prev_export_wh: np.ndarray,
    import_wh: np.ndarray,
    export_wh: np.ndarray,
    max_wh: np.ndarray,
) -> ReadingCheck:
    """Verify one interval's counters against the previous ones.

    prev_import_wh, prev_export_wh, import_wh, export_wh: counters, Wh; NaN where unknown.
    max_wh: largest plausible energy in one interval per household, Wh.
    Rejects (reason): ``missing`` counter, ``counter_decrease``, ``implausible`` energy.
    """
    d_imp = np.asarray(import_wh, float) - np.asarray(prev_import_wh, float)
    d_exp = np.asarray(export_wh, float) - np.asarray(prev_export_wh, float)
    limit = np.asarray(max_wh, float) * PLAUSIBILITY_MARGIN
    missing = np.isnan(d_imp) | np.isnan(d_exp)
    with np.errstate(invalid="ignore"):
        decrease = ~missing & ((d_imp < 0) | (d_exp < 0))
        implausible = ~missing & ~decrease & ((d_imp > limit) | (d_exp > limit))
    reason: list[str | None] = [
        "missing" if m else "counter_decrease" if d else "implausible" if i else None
        for m, d, i in zip(missing, decrease, implausible, strict=True)
    ]
    ok = ~(missing | decrease | implausible)
    return ReadingCheck(
        import_wh=np.where(ok, d_imp, 0.0).astype(np.int64),
        export_wh=np.where(ok, d_exp, 0.0).astype(np.int64),
        status=[VERIFIED if k else REJECTED for k in ok],
        reason=reason,
    )
