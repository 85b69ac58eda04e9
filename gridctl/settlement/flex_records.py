"""Flexibility events in the ledger file, written by ``gridctl.public.flexibility``: each event
the grid operator asked of the community, the baseline recorded before it started, and what
each household delivered and was paid. Append-only like the rest of the file and covered by
each interval's signed root (``settlement.roots.COVERED``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

from gridctl.settlement.readings import VERIFIED
from gridctl.settlement.tables import Table, select_rows


class FlexEventRow(NamedTuple):
    """An event as accepted: its id, where it came from, its target (``feeder`` or a household),
    direction (``import`` or ``export``: which the event holds down), limit (W), first and last
    interval of its window, price (micro-units of currency per kWh) and the interval in which
    it was recorded (before ``first``: the baseline is the plan before the event)."""

    event: str
    source: str
    target: str
    direction: str
    limit_w: int
    first: int
    last: int
    price_micro_per_kwh: int
    recorded: int


class BaselineRow(NamedTuple):
    """One household's planned grid energy in one interval of an event's window, Wh, load
    convention: ``baseline_wh`` without the event, ``planned_wh`` with it."""

    event: str
    household: str
    interval: int
    baseline_wh: int
    planned_wh: int


class DeliveryRow(NamedTuple):
    """What one household delivered over an event's window and earned for it.

    asked_wh: its planned response (baseline minus plan, in the event's direction, ≥ 0).
    response_wh: baseline minus verified metered energy, in the event's direction (may be < 0).
    delivered_wh: the response within [0, asked_wh]. payment_micro / tokens_micro: its share
    of the event's payment and its flexibility tokens. booked: interval whose root covers it."""

    event: str
    household: str
    asked_wh: int
    response_wh: int
    delivered_wh: int
    payment_micro: int
    tokens_micro: int
    booked: int


TABLES: dict[str, Table] = {
    "flex_events": Table.of(FlexEventRow, pk="event", not_null=("target", "direction", "first")),
    "flex_baselines": Table.of(
        BaselineRow, pk=("event", "household", "interval"), not_null=("baseline_wh", "planned_wh")
    ),
    "flex_deliveries": Table.of(
        DeliveryRow, pk=("event", "household"), not_null=("delivered_wh", "payment_micro")
    ),
}
"""Flexibility tables as the ledger file holds them (append-only, covered by the roots)."""


def events(db: sqlite3.Connection) -> list[FlexEventRow]:
    """Every recorded event, in the order recorded."""
    return select_rows(db, FlexEventRow, "FROM flex_events ORDER BY rowid")


def has_event(db: sqlite3.Connection, event: str) -> bool:
    """Whether an event of that key is recorded."""
    return db.execute("SELECT 1 FROM flex_events WHERE event = ?", (event,)).fetchone() is not None


def unbooked(db: sqlite3.Connection, through: int) -> list[FlexEventRow]:
    """Recorded events whose window ends at or before interval ``through`` and that have no
    delivery rows yet, in the order recorded."""
    tail = (
        "FROM flex_events WHERE last <= ?"
        " AND event NOT IN (SELECT DISTINCT event FROM flex_deliveries) ORDER BY rowid"
    )
    return select_rows(db, FlexEventRow, tail, (through,))


def verified_net_wh(
    db: sqlite3.Connection, households: Sequence[str], first: int, last: int
) -> dict[tuple[str, int], int]:
    """(household, interval) → verified net energy of its main meter, Wh, load convention, over
    intervals ``first`` … ``last`` (absent: no verified reading)."""
    marks = ",".join("?" * len(households))
    cur = db.execute(
        "SELECT household, interval, d_import_wh - d_export_wh FROM readings"
        f" WHERE status = ? AND interval BETWEEN ? AND ? AND household IN ({marks})",
        (VERIFIED, first, last, *households),
    )
    return {(h, i): int(wh) for h, i, wh in cur}


def baselines(db: sqlite3.Connection, event: str) -> list[BaselineRow]:
    """An event's baseline rows, by household and interval."""
    tail = "FROM flex_baselines WHERE event = ? ORDER BY household, interval"
    return select_rows(db, BaselineRow, tail, (event,))


def deliveries(db: sqlite3.Connection, event: str | None = None) -> list[DeliveryRow]:
    """What was delivered and paid (of one event, or of all), in the order booked."""
    if event is None:
        return select_rows(db, DeliveryRow, "FROM flex_deliveries ORDER BY rowid")
    return select_rows(
        db, DeliveryRow, "FROM flex_deliveries WHERE event = ? ORDER BY rowid", (event,)
    )
