"""What the web app reads of a running coordinator: its ledger, opened read-only on every
request (SQLite's WAL lets it read while the coordinator writes), so the pages follow the
settlement as it goes and a web crash can never touch it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gridctl.core import LedgerError, interval_at
from gridctl.web.run_view import RunView
from gridctl.web.statements import StatementIndex


class CoordinatorView(RunView):
    """RunView over a live ledger: households, first and last settled interval are read anew
    each time. LedgerError when the ledger does not exist yet.

    ledger: the coordinator's ledger file. clock: epoch seconds (the coordinator's clock)."""

    def __init__(self, ledger: Path, clock: Callable[[], float]) -> None:
        self.dir = Path(ledger).parent
        self.ledger = Path(ledger)
        self.clock = clock
        if not self.ledger.is_file():
            raise LedgerError(
                f"no ledger at {self.ledger}: `gridctl coordinator run CONFIG` makes it"
            )
        self.statements = StatementIndex(self.ledger)
        """Every household's totals per day, summed as intervals are settled."""

    def _one(self, query: str) -> tuple:
        with self._db() as db:
            return db.execute(query).fetchone()

    @property
    def households(self) -> list[str]:  # type: ignore[override]
        """Households with a meter in the ledger, sorted."""
        with self._db() as db:
            q = "SELECT DISTINCT household FROM meters WHERE household IS NOT NULL"
            return sorted(h for (h,) in db.execute(q))

    @property
    def first(self) -> int | None:  # type: ignore[override]
        """The first settled interval, None before any."""
        return self._one("SELECT MIN(interval) FROM interval_roots")[0]

    @property
    def last(self) -> int | None:  # type: ignore[override]
        """The last settled interval, None before any."""
        return self._one("SELECT MAX(interval) FROM interval_roots")[0]

    def current_interval(self) -> int:
        """The interval the coordinator's clock is in now."""
        return interval_at(self.clock())
