"""Pure governance arithmetic: weights from contribution, the cap, which vote counts, the tally.

Weights are integers: 1 per member (``member``), verified Wh shared (``contribution``) or its
integer square root (``quadratic``); under the last two no household may hold more than
``cap`` of the total (``cap_weights``). Shares (cap, quorum, threshold) are integers in parts
per million, so every tally is exact and anyone recomputes the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

PPM = 1_000_000
PASSED, FAILED, EXPIRED = "passed", "failed", "expired"
"""Tally outcomes: passed; failed (quorum met, threshold not); expired (quorum not met)."""


def ppm(share: float) -> int:
    """A share 0–1 in parts per million (rounded)."""
    return round(share * PPM)


def cap_weights(weights: Mapping[str, int], cap_ppm: int) -> dict[str, int]:
    """``weights`` with the largest lowered so that none exceeds ``cap_ppm`` of the total.

    The capped households share one level m = cap x (k m + rest) (k capped, rest the others'
    sum), rounded down, so after capping each holds at most the cap. Fewer than 1/cap
    households with weight cannot all meet it: every household with weight then weighs 1.
    """
    order = sorted(weights, key=lambda h: (-weights[h], h))
    rest = sum(weights.values())
    for k, h in enumerate(order):
        w = weights[h]
        if w == 0 or cap_ppm * k >= PPM:
            break
        level = cap_ppm * rest // (PPM - cap_ppm * k)
        if w <= level:
            return {g: (level if j < k else weights[g]) for j, g in enumerate(order)}
        rest -= w
    return {h: min(w, 1) for h, w in weights.items()}


def weights_for(mode: str, contribution_wh: Mapping[str, int], cap_ppm: int) -> dict[str, int]:
    """Each member's weight under ``mode`` from its verified contribution, Wh (≥ 0)."""
    if mode == "member":
        return {h: 1 for h in contribution_wh}
    raw = {h: (math.isqrt(e) if mode == "quadratic" else e) for h, e in contribution_wh.items()}
    return cap_weights(raw, cap_ppm)


@dataclass(frozen=True)
class Ballot:
    """A valid vote received before the close. order: its place among received votes."""

    household: str
    choice: str
    seq: int
    order: int


def counted(ballots: Iterable[Ballot]) -> dict[str, str]:
    """The choice that counts for each household: its vote with the highest seq (a later
    receipt breaks a tie)."""
    best: dict[str, Ballot] = {}
    for b in ballots:
        cur = best.get(b.household)
        if cur is None or (b.seq, b.order) > (cur.seq, cur.order):
            best[b.household] = b
    return {h: b.choice for h, b in best.items()}


@dataclass(frozen=True)
class Tally:
    """Weights behind each choice, the snapshot's total, and the outcome."""

    yes: int
    no: int
    abstain: int
    total: int
    outcome: str


def tally(weights: Mapping[str, int], choices: Mapping[str, str], quorum_ppm: int,
          threshold_ppm: int) -> Tally:  # fmt: skip
    """Count ``choices`` (household → yes / no / abstain) with ``weights``: expired without a
    quorum of the total weight, passed when yes x 10^6 > threshold x (yes + no), else failed.
    A choice of a household outside ``weights`` weighs nothing."""
    sums = {"yes": 0, "no": 0, "abstain": 0}
    for h, c in choices.items():
        sums[c] += weights.get(h, 0)
    total = sum(weights.values())
    voted = sums["yes"] + sums["no"] + sums["abstain"]
    if total == 0 or voted * PPM < quorum_ppm * total:
        outcome = EXPIRED
    elif sums["yes"] * PPM > threshold_ppm * (sums["yes"] + sums["no"]):
        outcome = PASSED
    else:
        outcome = FAILED
    return Tally(sums["yes"], sums["no"], sums["abstain"], total, outcome)
