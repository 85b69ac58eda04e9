"""Every household's postings summed per interval, in an index of the web app's own, brought up
to the ledger's last settled interval when asked (only the intervals settled since are read).

The ledger has no index by account, so one household's statement read from it scans every
posting of its intervals (0.2-0.3 s for a day of 1,000 households; seconds for a month):
summing all households' postings once, in one pass in SQLite, and then only what is new keeps
a household's page fast. The ledger is attached read-only (``mode=ro``); the index lives in a
temporary directory and goes with the process.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
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
    flex_wh: flexibility delivered (booked in these intervals), Wh. readings: meter readings
    counted (0: none, so import_wh / export_wh are unknown, not zero).
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
    readings: int = 0

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


@contextmanager
def read_ledger(ledger: Path, index: Path | None = None) -> Iterator[sqlite3.Connection]:
    """A connection to ``ledger`` read-only, or to ``index`` with the ledger attached read-only
    as ``l``; LedgerError when it cannot be opened or read."""
    try:
        if index is None:
            db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
        else:
            db = sqlite3.connect(f"file:{index}", uri=True, check_same_thread=False)
            db.execute("ATTACH DATABASE ? AS l", (f"file:{ledger}?mode=ro",))
    except sqlite3.Error as e:
        raise LedgerError(f"cannot open {ledger}: {e}") from None
    try:
        yield db
    except sqlite3.Error as e:
        raise LedgerError(f"{ledger} is not a gridctl ledger: {e}") from None
    finally:
        db.close()


class StatementIndex:
    """Every household's postings summed per interval, kind and asset, in a SQLite file of the
    web app's own (a temporary directory) indexed by account: ``refresh`` adds what was settled
    since; ``days`` and ``intervals`` read one household's totals from it and its meter
    readings and flexibility deliveries from the ledger (both indexed by meter / small)."""

    def __init__(self, ledger: Path) -> None:
        self.ledger = ledger
        self.upto: int | None = None
        """The last interval summed (None: nothing yet)."""
        self._dir = tempfile.TemporaryDirectory(prefix="gridctl-web-index-")
        self._path = Path(self._dir.name) / "postings.sqlite"
        self._lock = threading.Lock()

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        """The index, with the ledger attached read-only as ``l``."""
        return read_ledger(self.ledger, self._path)

    def refresh(self) -> None:
        """Sum the intervals settled since the last refresh (every one at the first)."""
        with self._lock, self._db() as db:
            if self.upto is None:  # the table exists before the first interval is settled
                db.execute("PRAGMA journal_mode=WAL")  # pages read while a refresh writes
                db.execute(
                    "CREATE TABLE IF NOT EXISTS postings (account TEXT NOT NULL, interval"
                    " INTEGER NOT NULL, kind TEXT NOT NULL, asset TEXT NOT NULL,"
                    " amount INTEGER NOT NULL)"
                )
                db.execute("CREATE INDEX IF NOT EXISTS by_account ON postings (account, interval)")
                db.commit()
            (last,) = db.execute("SELECT MAX(interval) FROM l.interval_roots").fetchone()
            if last is None or (self.upto is not None and last <= self.upto):
                return
            lo = -(2**62) if self.upto is None else self.upto + 1
            # "household;" is the first string after every "household:…" (';' follows ':')
            db.execute(
                "INSERT INTO postings SELECT account, interval, kind, asset, SUM(amount)"
                " FROM l.entries WHERE interval BETWEEN ? AND ? AND account >= ? AND account < ?"
                " GROUP BY account, interval, kind, asset",
                (lo, last, HOUSEHOLD_PREFIX, "household;"),
            )
            db.commit()
            self.upto = last

    def days(self, household: str) -> dict[date, Totals]:
        """The household's totals per UTC day, in day order."""
        per = INTERVALS_PER_DAY
        return {
            interval_start(k * per).date(): t
            for k, t in self._totals(household, f"interval / {per}", -(2**62), 2**62).items()
        }

    def intervals(self, household: str, first: int, last: int) -> dict[int, Totals]:
        """The household's totals per interval first…last, in interval order."""
        return self._totals(household, "interval", first, last)

    def _totals(self, household: str, key: str, first: int, last: int) -> dict[int, Totals]:
        """Totals grouped by ``key`` (an SQL expression of ``interval`` / ``booked``)."""
        self.refresh()
        out: dict[int, Totals] = {}
        span = (first, last)
        with self._db() as db:
            q = (f"SELECT {key}, kind, asset, SUM(amount) FROM postings WHERE account = ?"
                 f" AND interval BETWEEN ? AND ? GROUP BY {key}, kind, asset")  # fmt: skip
            for k, kind, asset, amount in db.execute(q, (HOUSEHOLD_PREFIX + household, *span)):
                out.setdefault(k, Totals()).post(kind, asset, amount)
            q = (f"SELECT {key}, COUNT(*), SUM(d_import_wh), SUM(d_export_wh) FROM l.readings"
                 f" WHERE household = ? AND interval BETWEEN ? AND ? GROUP BY {key}")  # fmt: skip
            for k, n, imp, exp in db.execute(q, (household, *span)):
                t = out.setdefault(k, Totals())
                t.readings, t.import_wh, t.export_wh = n, imp or 0, exp or 0
            booked = key.replace("interval", "booked")
            q = (f"SELECT {booked}, SUM(delivered_wh) FROM l.flex_deliveries WHERE household = ?"
                 f" AND booked BETWEEN ? AND ? GROUP BY {booked}")  # fmt: skip
            for k, wh in db.execute(q, (household, *span)):
                out.setdefault(k, Totals()).flex_wh += wh
        return {k: out[k] for k in sorted(out)}
