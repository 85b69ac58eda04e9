"""Settle one interval through the community pool: who shared, who drew, who pays, who earns.

Verified exports and imports of the interval meet in the pool: the energy shared is
``min(total export, total import)``; each exporter supplied a share of it in proportion to
its export, each importer received a share in proportion to its import. Importers pay the
pool at the community price, the pool pays the suppliers, and suppliers earn token rewards
per kWh shared (and, when a plan asked for it, per kWh of flexibility delivered as planned).
Integer amounts are split with the largest-remainder method, so the pool nets to exactly zero
every interval, and every transaction (one per household and kind) sums to zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridctl.core import MICRO, W_PER_KW
from gridctl.settlement.ledger import Posting, Transaction

POOL = "community:pool"
ISSUANCE = "token:issuance"
GRID = "grid"
CURRENCY = "currency"
TOKEN = "token"

_I64_MAX = 2**63 - 1


def household_account(household: str) -> str:
    """Ledger account of a household."""
    return f"household:{household}"


def allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Split a non-negative integer ``total`` in proportion to ``weights`` (≥ 0), exactly.

    Largest-remainder method; ties go to the lower index. Returns integers summing to ``total``
    (all zero when the weights are all zero and ``total`` is 0).
    """
    w = np.asarray(weights, dtype=np.int64)
    if total < 0 or (w < 0).any():
        raise ValueError("allocate needs a non-negative total and weights")
    s = int(w.sum())
    if total == 0:
        return np.zeros_like(w)
    if s == 0:
        raise ValueError("cannot allocate a positive total over zero weights")
    if type(total) is int and total * int(w.max()) <= _I64_MAX:
        exact = w * total  # fits in int64: the same integers as the Python path
        base, rem = exact // s, exact % s
    else:
        exact = [total * int(x) for x in w]  # Python ints: no overflow
        base = np.array([e // s for e in exact], dtype=np.int64)
        rem = np.array([e % s for e in exact], dtype=np.int64)
    short = total - int(base.sum())
    order = np.lexsort((np.arange(len(w)), -rem))
    base[order[:short]] += 1
    return base


@dataclass(frozen=True)
class IntervalSettlement:
    """Outcome of one interval, per household (arrays in household order).

    supplied_wh / received_wh: energy shared through the pool, Wh (≥ 0).
    paid_micro / earned_micro: currency paid into / out of the pool, micro-units (≥ 0).
    tokens_micro: token reward, micro-tokens (≥ 0). (Settlement nets out what physics holds.)
    """

    supplied_wh: np.ndarray
    received_wh: np.ndarray
    paid_micro: np.ndarray
    earned_micro: np.ndarray
    tokens_micro: np.ndarray
    transactions: tuple[Transaction, ...]


def settle_interval(
    interval: int,
    households: list[str],
    import_wh: np.ndarray,
    export_wh: np.ndarray,
    community_per_kwh: float,
    reward_tokens_per_kwh: float,
    *,
    meters: list[str] | None = None,
    flex_delivered_wh: np.ndarray | None = None,
    flex_tokens_per_kwh: float = 0.0,
    grid_import_per_kwh: float | None = None,
    grid_feed_in_per_kwh: float | None = None,
) -> IntervalSettlement:
    """Match verified imports and exports of one interval through the pool and book them.

    import_wh / export_wh: verified energy per household, integer Wh (≥ 0); a household
    whose reading was not verified enters with 0 in both.
    community_per_kwh: price importers pay suppliers, currency per kWh.
    reward_tokens_per_kwh: tokens per kWh supplied to the pool.
    meters: each household's main meter id, the first part of its transactions' idempotency key
    (default: the household id). flex_delivered_wh: flexibility each household delivered as
    planned this interval, Wh (≥ 0), rewarded at ``flex_tokens_per_kwh``.
    grid_import_per_kwh / grid_feed_in_per_kwh: when given, the energy not matched in the pool
    is booked against the ``grid`` account at these prices.

    One transaction per household and kind, ``{interval}:{meter}:{kind}``, each balanced
    (ordered by kind, then household):
    pool_payment (household → pool), pool_payout (pool → household), reward and flex_reward
    (token issuance → household), grid_import (household → grid), grid_export (grid → household).
    """
    imp = np.asarray(import_wh, dtype=np.int64)
    exp = np.asarray(export_wh, dtype=np.int64)
    ids = meters if meters is not None else households
    shared_wh = int(min(imp.sum(), exp.sum()))
    supplied = allocate(shared_wh, exp)
    received = allocate(shared_wh, imp)
    price_micro_per_kwh = round(community_per_kwh * MICRO)
    reward_micro_per_kwh = round(reward_tokens_per_kwh * MICRO)
    money = shared_wh * price_micro_per_kwh // W_PER_KW
    tokens = shared_wh * reward_micro_per_kwh // W_PER_KW
    paid = allocate(money, received)
    earned = allocate(money, supplied)
    token_split = allocate(tokens, supplied)
    zeros = np.zeros(len(households), dtype=np.int64)
    flex_tokens = zeros
    if flex_delivered_wh is not None and flex_tokens_per_kwh > 0:
        flex = np.asarray(flex_delivered_wh, dtype=np.int64)
        flex_tokens = flex * round(flex_tokens_per_kwh * MICRO) // W_PER_KW
    grid_in = grid_out = zeros
    if grid_import_per_kwh is not None:
        grid_in = (imp - received) * round(grid_import_per_kwh * MICRO) // W_PER_KW
    if grid_feed_in_per_kwh is not None:
        grid_out = (exp - supplied) * round(grid_feed_in_per_kwh * MICRO) // W_PER_KW

    txs: list[Transaction] = []
    accounts: dict[int, str] = {}
    # (kind, amounts, other account, asset, True if the household pays)
    for kind, amounts, other, asset, pays in (
        ("pool_payment", paid, POOL, CURRENCY, True),
        ("pool_payout", earned, POOL, CURRENCY, False),
        ("reward", token_split, ISSUANCE, TOKEN, False),
        ("flex_reward", flex_tokens, ISSUANCE, TOKEN, False),
        ("grid_import", grid_in, GRID, CURRENCY, True),
        ("grid_export", grid_out, GRID, CURRENCY, False),
    ):
        nonzero = np.flatnonzero(amounts).tolist()
        if not nonzero:
            continue
        values = amounts.tolist()  # Python ints, as int(amounts[k]) gives
        for k in nonzero:
            a = values[k]
            acct = accounts.get(k)
            if acct is None:
                acct = accounts[k] = household_account(households[k])
            legs = (
                (Posting(acct, asset, -a), Posting(other, asset, a))
                if pays
                else (Posting(other, asset, -a), Posting(acct, asset, a))
            )
            m = ids[k]
            txs.append(Transaction(f"{interval}:{m}:{kind}", interval, kind, legs, meter=m))
    return IntervalSettlement(
        supplied_wh=supplied,
        received_wh=received,
        paid_micro=paid,
        earned_micro=earned,
        tokens_micro=token_split + flex_tokens,
        transactions=tuple(txs),
    )
