"""Settle one interval through the community pool: who shared, who drew, who pays, who earns.

Verified exports and imports of the interval meet in the pool: the energy shared is
``min(total export, total import)``; each exporter supplied a share of it in proportion to
its export, each importer received a share in proportion to its import. Importers pay the
pool at the community price, the pool pays the suppliers, and suppliers earn token rewards
per kWh shared. Integer amounts are split with the largest-remainder method, so every
transaction sums to exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridctl.core import MICRO
from gridctl.settlement.ledger import Posting, Transaction

POOL = "community:pool"
ISSUANCE = "token:issuance"
CURRENCY = "currency"
TOKEN = "token"


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
    tokens_micro: token reward, micro-tokens (≥ 0).
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
) -> IntervalSettlement:
    """Match verified imports and exports of one interval through the pool and book them.

    import_wh / export_wh: verified energy per household, integer Wh (≥ 0); a household
    whose reading was not verified enters with 0 in both.
    community_per_kwh: price importers pay suppliers, currency per kWh.
    reward_tokens_per_kwh: tokens per kWh supplied to the pool.
    """
    imp = np.asarray(import_wh, dtype=np.int64)
    exp = np.asarray(export_wh, dtype=np.int64)
    shared_wh = int(min(imp.sum(), exp.sum()))
    supplied = allocate(shared_wh, exp)
    received = allocate(shared_wh, imp)
    price_micro_per_kwh = round(community_per_kwh * MICRO)
    reward_micro_per_kwh = round(reward_tokens_per_kwh * MICRO)
    money = shared_wh * price_micro_per_kwh // 1000
    tokens = shared_wh * reward_micro_per_kwh // 1000
    paid = allocate(money, received)
    earned = allocate(money, supplied)
    token_split = allocate(tokens, supplied)

    def legs(amounts: np.ndarray, sign: int, asset: str) -> list[Posting]:
        return [
            Posting(household_account(h), asset, sign * int(a))
            for h, a in zip(households, amounts, strict=True)
            if a
        ]

    txs: list[Transaction] = []
    if money:
        txs.append(
            Transaction(
                f"{interval}:pool-in",
                interval,
                "pool_payment",
                (*legs(paid, -1, CURRENCY), Posting(POOL, CURRENCY, money)),
            )
        )
        txs.append(
            Transaction(
                f"{interval}:pool-out",
                interval,
                "pool_payout",
                (Posting(POOL, CURRENCY, -money), *legs(earned, 1, CURRENCY)),
            )
        )
    if tokens:
        txs.append(
            Transaction(
                f"{interval}:reward",
                interval,
                "reward",
                (Posting(ISSUANCE, TOKEN, -tokens), *legs(token_split, 1, TOKEN)),
            )
        )
    return IntervalSettlement(
        supplied_wh=supplied,
        received_wh=received,
        paid_micro=paid,
        earned_micro=earned,
        tokens_micro=token_split,
        transactions=tuple(txs),
    )
