"""The ``home`` counterfactual of a household's statement: what it would have paid on its own
with the same meter readings, against what it paid in the community, from the ledger only (the
grid's prices in force per interval and its pool shares, ``settlement.grid_records``).

On its own, every Wh it drew is bought at the grid's import price and every Wh it fed in sold
at the feed-in price. In the community it paid its neighbours for what it received through the
pool and was paid for what it supplied, and bought or sold only the rest with the grid. Each
sum of Wh × micro-units per kWh is rounded down to the micro-unit once per period.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gridctl.core import W_PER_KW
from gridctl.settlement.grid_records import shared_wh, tariffs
from gridctl.web.statements import Totals, read_ledger

_ENERGY = (
    "SELECT COUNT(*), COALESCE(SUM(d_import_wh), 0), COALESCE(SUM(d_export_wh), 0) FROM readings"
    " WHERE household = ? AND interval BETWEEN ? AND ?"
)


@dataclass(frozen=True)
class OnItsOwn:
    """A household's money over a period on its own and in the community, micro-units
    (positive: paid by the household); energies in Wh at its main meter.

    import_wh / export_wh: drawn from / fed into the grid connection.
    alone_import / alone_feed_in: all of it at the grid's import / feed-in price.
    grid_import_wh / grid_export_wh: what the pool did not cover (bought / sold with the grid
    in the community), and grid_import / grid_feed_in: its price.
    pool_paid: paid to neighbours for energy received. pool_earned: earned for energy shared,
    less what is held while physics cannot confirm its reading.
    """

    import_wh: int
    export_wh: int
    alone_import: int
    alone_feed_in: int
    grid_import_wh: int
    grid_export_wh: int
    grid_import: int
    grid_feed_in: int
    pool_paid: int
    pool_earned: int

    @property
    def alone(self) -> int:
        """Paid on its own, micro-units (< 0: earned)."""
        return self.alone_import - self.alone_feed_in

    @property
    def community(self) -> int:
        """Paid in the community, micro-units (< 0: earned)."""
        return self.pool_paid - self.pool_earned + self.grid_import - self.grid_feed_in

    @property
    def saved(self) -> int:
        """What the community saved the household, micro-units (< 0: it cost it)."""
        return self.alone - self.community


def on_its_own(ledger: Path, household: str, first: int, last: int, t: Totals) -> OnItsOwn | None:
    """The counterfactual over intervals first…last, with ``t`` the household's statement
    totals of the same intervals (its energies are the meter's over them); None when the ledger
    holds no grid price for one of its readings (settled without them: nothing is guessed).

    Prices change rarely: the period is cut where they change, and each part's energies and
    pool shares are summed in SQLite (one part, the usual case: the statement's own energies).
    """
    with read_ledger(ledger) as db:
        prices = [p for p in tariffs(db) if p.at_interval <= last]
        head = prices[0].at_interval if prices else last + 1
        if head > first and db.execute(_ENERGY, (household, first, head - 1)).fetchone()[0]:
            return None  # readings before any price was recorded
        bounds = [max(p.at_interval, first) for p in prices] + [last + 1]
        keep = [k for k in range(len(prices)) if bounds[k + 1] > first]
        a_in = a_out = c_in = c_out = rec = sup = 0
        for k in keep:
            lo, hi = bounds[k], bounds[k + 1] - 1
            if len(keep) == 1:
                i, e = t.import_wh, t.export_wh
            else:
                _, i, e = db.execute(_ENERGY, (household, lo, hi)).fetchone()
            r, s = shared_wh(db, household, lo, hi)
            _, p_in, p_out = prices[k]
            a_in, a_out = a_in + i * p_in, a_out + e * p_out
            c_in, c_out = c_in + (i - r) * p_in, c_out + (e - s) * p_out
            rec, sup = rec + r, sup + s
    w = W_PER_KW
    return OnItsOwn(t.import_wh, t.export_wh, a_in // w, a_out // w, t.import_wh - rec,
                    t.export_wh - sup, c_in // w, c_out // w, t.pool_paid,
                    t.pool_earned - t.held)  # fmt: skip
