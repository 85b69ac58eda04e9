"""Every household's statement summed per UTC day, kept in memory and brought up to the
ledger's last settled interval when asked (only the intervals settled since are read).

The ledger has no index by account, so one household's statement read from it scans every
posting (seconds for 1,000 households × 30 days); summing all households per day once, in one
pass, and then only what is new keeps a household's page fast. Read-only: a connection with
``mode=ro``.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, fields
from datetime import date
from pathlib import Path

from gridctl.core import INTERVALS_PER_DAY, LedgerError, interval_start
from gridctl.settlement.holds import FORFEIT, HOLD, RELEASE
from gridctl.settlement.pool import TOKEN

HOUSEHOLD_PREFIX = "household:"


@dataclass
class Totals:
    """A household's sums over some intervals. Energies at its main meter, Wh; amounts in
    micro-units.

    import_wh / export_wh: drawn from / fed into the grid connection. pool_paid: paid into the
    pool for energy received from neighbours (≥ 0 in normal use). pool_earned: earned from the
    pool for energy shared. flex_paid: paid by the grid operator for flexibility delivered.
    grid: with the grid account (> 0 received). tokens_shared / tokens_flex: tokens for sharing
    and for flexibility. held / held_tokens: moved to the holding account while physics could
    not confirm a claim (< 0: paid back). other: any other posting of currency.
    flex_wh: flexibility delivered (booked in these intervals), Wh.
    """

    import_wh: int = 0
    export_wh: int = 0
    pool_paid: int = 0
    pool_earned: int = 0
    flex_paid: int = 0
    grid: int = 0
    tokens_shared: int = 0
    tokens_flex: int = 0
    held: int = 0
    held_tokens: int = 0
    other: int = 0
    flex_wh: int = 0

    def add(self, other: Totals) -> None:
        """Add ``other``'s sums into these."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def post(self, kind: str, asset: str, amount: int) -> None:
        """Add a sum of postings of ``kind`` in ``asset`` to the household's account (micro)."""
        base = kind.removeprefix("reversal:")
        if base in (HOLD, RELEASE, FORFEIT):
            if base != FORFEIT:  # a forfeited hold stays held
                if asset == TOKEN:
                    self.held_tokens -= amount
                else:
                    self.held -= amount
        elif asset == TOKEN:
            if base.startswith("flex"):
                self.tokens_flex += amount
            else:
                self.tokens_shared += amount
        elif base.startswith("grid_"):
            self.grid += amount
        elif base == "pool_payment":
            self.pool_paid -= amount
        elif base == "pool_payout":
            self.pool_earned += amount
        elif base == "flex_payment":
            self.flex_paid += amount
        else:
            self.other += amount


class StatementIndex:
    """Per household and UTC day, its ``Totals``; ``refresh`` reads what was settled since."""

    def __init__(self, ledger: Path) -> None:
        self.ledger = ledger
        self.upto: int | None = None
        """The last interval summed (None: nothing yet)."""
        self.days: dict[str, dict[date, Totals]] = {}
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Sum the intervals settled since the last refresh (every one at the first)."""
        with self._lock:
            try:
                db = sqlite3.connect(f"file:{self.ledger}?mode=ro", uri=True)
            except sqlite3.Error as e:
                raise LedgerError(f"cannot open {self.ledger}: {e}") from None
            try:
                self._read(db)
            except sqlite3.Error as e:
                raise LedgerError(f"{self.ledger} is not a gridctl ledger: {e}") from None
            finally:
                db.close()

    def _read(self, db: sqlite3.Connection) -> None:
        (last,) = db.execute("SELECT MAX(interval) FROM interval_roots").fetchone()
        if last is None or (self.upto is not None and last <= self.upto):
            return
        lo = -(2**62) if self.upto is None else self.upto + 1
        span = (lo, last)
        per = INTERVALS_PER_DAY
        q = (
            f"SELECT account, interval / {per}, kind, asset, SUM(amount) FROM entries"
            " WHERE interval BETWEEN ? AND ? AND account >= ? AND account < ?"
            f" GROUP BY account, interval / {per}, kind, asset"
        )
        # "household;" is the first string after every "household:…" (';' follows ':')
        for account, day, kind, asset, amount in db.execute(q, (*span, HOUSEHOLD_PREFIX,
                                                                 "household;")):  # fmt: skip
            self._at(account.removeprefix(HOUSEHOLD_PREFIX), day).post(kind, asset, amount)
        q = (
            f"SELECT household, interval / {per}, SUM(d_import_wh), SUM(d_export_wh)"
            f" FROM readings WHERE interval BETWEEN ? AND ? GROUP BY household, interval / {per}"
        )
        for household, day, imp, exp in db.execute(q, span):
            t = self._at(household, day)
            t.import_wh += imp or 0
            t.export_wh += exp or 0
        q = (
            f"SELECT household, booked / {per}, SUM(delivered_wh) FROM flex_deliveries"
            f" WHERE booked BETWEEN ? AND ? GROUP BY household, booked / {per}"
        )
        for household, day, wh in db.execute(q, span):
            self._at(household, day).flex_wh += wh
        self.upto = last

    def _at(self, household: str, day_ix: int) -> Totals:
        day = interval_start(day_ix * INTERVALS_PER_DAY).date()
        return self.days.setdefault(household, {}).setdefault(day, Totals())

    def household(self, household: str) -> dict[date, Totals]:
        """The household's totals per day, in day order (after a refresh)."""
        self.refresh()
        days = self.days.get(household, {})
        return {d: days[d] for d in sorted(days)}
