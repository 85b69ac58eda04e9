"""Held rewards: credits physics could not clear wait in a holding account for review.

A held household's credits of the interval (pool payout and token rewards) move to the
``community:holding`` account in a ``hold`` transaction booked with the interval, so every
transaction still sums to zero and the held amounts stay visible. A later interval resolves each
hold once: ``hold_release`` pays it to the household, ``hold_forfeit`` sends the currency to
``community:forfeited`` and the tokens back to issuance. Both name the hold they resolve
(``reverses``), so ``open_holds`` is the holds without a resolution.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from gridctl.settlement.ledger import Posting, Transaction
from gridctl.settlement.pool import CURRENCY, ISSUANCE, TOKEN, household_account
from gridctl.settlement.tables import select_rows

HOLDING = "community:holding"
FORFEITED = "community:forfeited"
HOLD, RELEASE, FORFEIT = "hold", "hold_release", "hold_forfeit"


def hold_transactions(
    interval: int,
    households: Sequence[str],
    meters: Sequence[str],
    held: Sequence[int],
    earned_micro: np.ndarray,
    tokens_micro: np.ndarray,
) -> list[Transaction]:
    """One ``hold`` per held household with credits this interval: its pool payout and tokens
    (micro-units) from its account into the holding account."""
    txs = []
    for h in sorted(held):
        legs: list[Posting] = []
        acct = household_account(households[h])
        for asset, amount in ((CURRENCY, int(earned_micro[h])), (TOKEN, int(tokens_micro[h]))):
            if amount:
                legs += [Posting(acct, asset, -amount), Posting(HOLDING, asset, amount)]
        if legs:
            m = meters[h]
            txs.append(Transaction(f"{interval}:{m}:{HOLD}", interval, HOLD, tuple(legs), meter=m))
    return txs


class OpenHold(NamedTuple):
    """A hold not yet released or forfeited: its transaction, interval, household account and
    the amounts it holds (micro-units)."""

    tx_id: str
    interval: int
    account: str
    currency_micro: int
    token_micro: int


def open_holds(db: sqlite3.Connection, through: int) -> list[OpenHold]:
    """Holds booked in intervals ≤ ``through`` that no later transaction resolved, oldest first."""
    return select_rows(
        db,
        OpenHold,
        "FROM (SELECT t.tx_id AS tx_id, t.interval AS interval,"
        " (SELECT account FROM entries e WHERE e.tx_id = t.tx_id AND e.amount < 0 LIMIT 1)"
        " AS account,"
        " (SELECT COALESCE(SUM(amount), 0) FROM entries e WHERE e.tx_id = t.tx_id"
        "  AND e.account = ? AND e.asset = ?) AS currency_micro,"
        " (SELECT COALESCE(SUM(amount), 0) FROM entries e WHERE e.tx_id = t.tx_id"
        "  AND e.account = ? AND e.asset = ?) AS token_micro"
        # kind and reverses as the ledger's partial indexes state them, so both are used
        f" FROM transactions t WHERE t.kind = '{HOLD}' AND t.interval <= ?"
        " AND NOT EXISTS (SELECT 1 FROM transactions r"
        "  WHERE r.reverses IS NOT NULL AND r.reverses = t.tx_id)"
        " ORDER BY t.interval, t.tx_id)",
        (HOLDING, CURRENCY, HOLDING, TOKEN, through),
    )


def resolution(hold: OpenHold, interval: int, release: bool) -> Transaction:
    """The transaction, booked in ``interval``, that pays a hold to its household (release) or
    forfeits it (currency to ``community:forfeited``, tokens back to issuance)."""
    legs: list[Posting] = []
    for asset, amount in ((CURRENCY, hold.currency_micro), (TOKEN, hold.token_micro)):
        if amount:
            to = hold.account if release else FORFEITED if asset == CURRENCY else ISSUANCE
            legs += [Posting(HOLDING, asset, -amount), Posting(to, asset, amount)]
    kind = RELEASE if release else FORFEIT
    return Transaction(f"{hold.tx_id}:{kind}", interval, kind, tuple(legs), reverses=hold.tx_id)
