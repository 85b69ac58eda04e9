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
from gridctl.web.statements import Totals, read_ledger

_ROWS = (
    "SELECT COALESCE(r.d_import_wh, 0), COALESCE(r.d_export_wh, 0),"
    " COALESCE(s.received_wh, 0), COALESCE(s.supplied_wh, 0),"
    " (SELECT import_micro_per_kwh FROM grid_tariffs t WHERE t.at_interval <= r.interval"
    "  ORDER BY t.at_interval DESC LIMIT 1),"
    " (SELECT feed_in_micro_per_kwh FROM grid_tariffs t WHERE t.at_interval <= r.interval"
    "  ORDER BY t.at_interval DESC LIMIT 1)"
    " FROM readings r LEFT JOIN pool_shares s"
    " ON s.interval = r.interval AND s.household = r.household"
    " WHERE r.household = ? AND r.interval BETWEEN ? AND ?"
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
    totals of the same intervals; None when the ledger holds no grid price for one of its
    readings (a ledger settled without them: nothing is guessed)."""
    imp = exp = g_imp = g_exp = a_in = a_out = c_in = c_out = 0
    with read_ledger(ledger) as db:
        for i, e, rec, sup, p_in, p_out in db.execute(_ROWS, (household, first, last)):
            if p_in is None or p_out is None:
                return None
            imp, exp, g_imp, g_exp = imp + i, exp + e, g_imp + i - rec, g_exp + e - sup
            a_in, a_out = a_in + i * p_in, a_out + e * p_out
            c_in, c_out = c_in + (i - rec) * p_in, c_out + (e - sup) * p_out
    k = W_PER_KW
    return OnItsOwn(imp, exp, a_in // k, a_out // k, g_imp, g_exp, c_in // k, c_out // k,
                    t.pool_paid, t.pool_earned - t.held)  # fmt: skip
