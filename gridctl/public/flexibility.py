"""Flexibility events: the baseline recorded before an event starts, the response measured
after it from verified meter readings, and the event's payment split among the households who
delivered it, exactly.

1. ``record``, before the event's first interval: the event and, per household and interval of
   its window, the planned grid energy without the event (the **baseline**: the plan the
   community would have run) and with it. Ledger rows, covered by the next interval's root.
2. ``book_due``, when settling the first interval after the window (every interval of it
   closed): per household, the planned response ``asked`` (baseline minus plan, in the event's
   direction, ≥ 0) and the measured one (baseline minus the verified metered energy; an interval
   without a verified reading counts as no response). A household delivers its measured
   response within [0, asked]: one asked for nothing (no battery, no car) or that did not
   respond earns nothing, and noise in a load beyond what it was asked is not paid. The event's
   payment (price x delivered kWh, micro-units, rounded down) is split in proportion to what
   each delivered (largest remainder: the parts sum to it exactly), paid by the grid operator's
   account, with flexibility tokens (``flex_tokens_per_kwh``) issued to each. Ledger rows and
   balanced transactions in the same SQLite transaction, inside that interval's root.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gridctl.core import INTERVAL_S, MICRO, W_PER_KW, interval_hours
from gridctl.public.flex_event import FlexEvent
from gridctl.settlement import flex_records as rec
from gridctl.settlement.ledger import Ledger, Posting, Transaction
from gridctl.settlement.pool import CURRENCY, ISSUANCE, TOKEN, allocate, household_account
from gridctl.settlement.tables import insert_rows

OPERATOR = "grid_operator"
"""Account the grid operator pays events from (its balance: what the community earned)."""
IMPORT, EXPORT = "import", "export"


@dataclass(frozen=True)
class Baseline:
    """A flexibility request's (from ``source``) baseline, made at ``interval``: every
    household's planned grid power without the request and with it, W, (H, n) over the first n
    intervals of its window."""

    event: FlexEvent
    source: str
    interval: int
    baseline_w: np.ndarray
    planned_w: np.ndarray


class Baselines(Protocol):
    """A planner that makes baselines (``gridctl.coordinator.planner.CommunityPlanner``)."""

    ids: list[str]

    def take_baselines(self) -> list[Baseline]: ...


def record_baselines(ledger: Ledger, planner: Baselines, interval: int) -> None:
    """Record, in (open) ``interval``, the baselines ``planner`` made since it was last asked."""
    for b in planner.take_baselines():
        record(ledger, b.event, b.source, interval, planner.ids, b.baseline_w, b.planned_w)


def window(ev: FlexEvent, interval_s: int = INTERVAL_S) -> tuple[int, int]:
    """First and last interval an event's window touches."""
    return math.floor(ev.start_s / interval_s), math.ceil(ev.end_s / interval_s) - 1


def key(ev: FlexEvent, interval_s: int = INTERVAL_S) -> str:
    """The ledger's name for one request (an event may ask several targets and windows)."""
    return f"{ev.event_id}/{ev.target}/{window(ev, interval_s)[0]}"


def event_row(ev: FlexEvent, source: str, recorded: int) -> rec.FlexEventRow:
    """The row of ``ev`` (a request holding import down if it limits import, else export)."""
    direction = IMPORT if math.isfinite(ev.import_max_w) else EXPORT
    limit_w = ev.import_max_w if direction == IMPORT else ev.export_max_w
    if not math.isfinite(limit_w):
        raise ValueError(f"flexibility event {ev.event_id!r} limits neither import nor export")
    first, last = window(ev)
    price = round(ev.price_per_kwh * MICRO)
    if not 0 <= price <= 100 * MICRO:
        raise ValueError(f"flexibility event {ev.event_id!r}: price {ev.price_per_kwh!r}")
    return rec.FlexEventRow(
        key(ev), source, ev.target, direction, round(limit_w), first, last, price, recorded
    )


def record(
    ledger: Ledger,
    ev: FlexEvent,
    source: str,
    interval: int,
    households: Sequence[str],
    baseline_w: np.ndarray,
    planned_w: np.ndarray,
) -> rec.FlexEventRow:
    """Record ``ev`` with its baseline at ``interval`` (before its window starts).

    baseline_w / planned_w: each household's planned grid power, W, (H, n) over the first n
    intervals of the window (n ≤ its length: what the plan's horizon reached), without and with
    the event. Raises ValueError if the window has begun or ``ev`` was recorded before."""
    row = event_row(ev, source, interval)
    if row.first <= interval:
        raise ValueError(f"{row.event}: its window began before a baseline could be recorded")
    if rec.has_event(ledger.db, row.event):
        raise ValueError(f"{row.event} is recorded already")
    n = min(baseline_w.shape[1], row.last - row.first + 1)
    to_wh = interval_hours()
    rows = [
        rec.BaselineRow(
            row.event, h, row.first + j,
            round(float(baseline_w[k, j]) * to_wh), round(float(planned_w[k, j]) * to_wh),
        )
        for k, h in enumerate(households)
        for j in range(n)
    ]  # fmt: skip
    with ledger.atomic() as db:
        insert_rows(db, "flex_events", [row])
        insert_rows(db, "flex_baselines", rows)
    return row


def book_due(ledger: Ledger, interval: int, flex_tokens_per_kwh: float) -> list[rec.DeliveryRow]:
    """Measure, pay and record every event whose window has ended and closed before
    ``interval`` and is not yet booked, inside ``interval`` (call it before settling it).
    Returns the delivery rows booked."""
    closed = ledger.last_closed()
    if closed is None:
        return []
    out: list[rec.DeliveryRow] = []
    for ev in rec.unbooked(ledger.db, min(interval - 1, closed)):
        out += _book(ledger, ev, interval, flex_tokens_per_kwh)
    return out


def _book(
    ledger: Ledger, ev: rec.FlexEventRow, interval: int, flex_tokens_per_kwh: float
) -> list[rec.DeliveryRow]:
    base = rec.baselines(ledger.db, ev.event)
    households = sorted({b.household for b in base})
    measured = rec.verified_net_wh(ledger.db, households, ev.first, ev.last)
    sign = 1 if ev.direction == IMPORT else -1
    asked = dict.fromkeys(households, 0)
    response = dict.fromkeys(households, 0)
    for b in base:
        asked[b.household] += max(0, sign * (b.baseline_wh - b.planned_wh))
        got = measured.get((b.household, b.interval))
        response[b.household] += 0 if got is None else sign * (b.baseline_wh - got)
    delivered = np.array([min(max(response[h], 0), asked[h]) for h in households], dtype=np.int64)
    total = ev.price_micro_per_kwh * int(delivered.sum()) // W_PER_KW
    payments = allocate(total, delivered) if total else np.zeros_like(delivered)
    tokens = delivered * round(flex_tokens_per_kwh * MICRO) // W_PER_KW
    rows = [
        rec.DeliveryRow(ev.event, h, asked[h], response[h], int(d), int(p), int(t), interval)
        for h, d, p, t in zip(households, delivered, payments, tokens, strict=True)
    ]
    txs = []
    for r in rows:
        acct = household_account(r.household)
        subject = f"{interval}:flex:{ev.event}:{r.household}"
        if r.payment_micro:
            legs = (Posting(OPERATOR, CURRENCY, -r.payment_micro),
                    Posting(acct, CURRENCY, r.payment_micro))  # fmt: skip
            txs.append(Transaction(f"{subject}:payment", interval, "flex_payment", legs))
        if r.tokens_micro:
            legs = (Posting(ISSUANCE, TOKEN, -r.tokens_micro), Posting(acct, TOKEN, r.tokens_micro))
            txs.append(Transaction(f"{subject}:tokens", interval, "flex_reward", legs))
    with ledger.atomic() as db:
        insert_rows(db, "flex_deliveries", rows)
        ledger.append(txs)
    return rows
