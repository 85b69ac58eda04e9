"""Community aggregates of each settled interval: the ledger's public record.

``public_aggregates`` holds one row per settled interval, written in the transaction that
settles it and covered by the interval's signed root, so what the community publishes (``gridctl
opendata export``, the coordinator's ``opendata`` broadcast) is a table of the audited ledger,
row for row.

Every figure is community-level and comes with the number of households it covers; a figure
covering fewer than ``k`` households is stored as None (NULL), never its value, so no row holds
a figure about fewer than k households. All figures are magnitudes (≥ 0):

- from the verified readings the interval settled: energy through the transformer
  (``grid_*``, its meter; covers every enrolled household), the households' metered import and
  export and the energy shared through the pool (cover the households whose main meter reading
  was verified), the lowest and highest voltage their meters reported (cover those that
  reported one);
- from the settler's caller (``CommunityFigures``; None: not known): demand, PV produced and PV
  curtailed (the coordinator and the simulation estimate the first two from the controllers'
  telemetry, ``gridctl.public.figures``; curtailment has no source yet), the time the feeder's
  envelope was in force (covers the enrolled households) and flexibility delivered (no source
  yet: None until flexibility events pass it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, NamedTuple

from pydantic import Field

from gridctl.core import StrictModel
from gridctl.settlement.tables import Table, insert_rows, select_rows

DEFAULT_K = 5
"""Fewest households a published figure may cover, unless the community configures another."""
MIN_K = 2
"""The smallest k a community may configure (k = 1 would publish single households)."""


class Figure(NamedTuple):
    """One community figure: its value (Wh or s, ≥ 0) and how many households it covers."""

    value: int
    households: int


@dataclass(frozen=True)
class CommunityFigures:
    """Figures settlement cannot derive from readings, from whoever settles (None: unknown).

    demand_wh: energy the households used (base load and EV charging), Wh (≥ 0).
    pv_wh: PV energy produced, Wh (≥ 0). curtailed_wh: PV energy held back, Wh (≥ 0).
    flex_delivered_wh: flexibility delivered in events, Wh (≥ 0; no source yet). envelope_s:
    time the feeder's operating envelope was in force in the interval, s (≥ 0).
    """

    demand_wh: Figure | None = None
    pv_wh: Figure | None = None
    curtailed_wh: Figure | None = None
    flex_delivered_wh: Figure | None = None
    envelope_s: Figure | None = None


class AggregateRow(NamedTuple):
    """A row of ``public_aggregates`` (see the module doc); energies Wh, voltages mV, times s.

    k: the rule the row was written with. households: households enrolled.
    grid_import_wh / grid_export_wh: through the transformer (its meter), into / out of the
    feeder. households_import_wh / households_export_wh: at the households' meters.
    shared_wh: matched through the community pool. v_min_mv / v_max_mv: lowest / highest
    voltage a household meter reported. Each ``*_households``: how many households the
    figures before it cover.
    """

    interval: int
    k: int
    households: int
    grid_import_wh: int | None
    grid_export_wh: int | None
    grid_households: int
    households_import_wh: int | None
    households_export_wh: int | None
    shared_wh: int | None
    metered_households: int
    v_min_mv: int | None
    v_max_mv: int | None
    voltage_households: int
    demand_wh: int | None
    demand_households: int
    pv_wh: int | None
    pv_households: int
    curtailed_wh: int | None
    curtailed_households: int
    flex_delivered_wh: int | None
    flex_households: int
    envelope_s: int | None
    envelope_households: int


COVERS: dict[str, str] = {
    "grid_import_wh": "grid_households",
    "grid_export_wh": "grid_households",
    "households_import_wh": "metered_households",
    "households_export_wh": "metered_households",
    "shared_wh": "metered_households",
    "v_min_mv": "voltage_households",
    "v_max_mv": "voltage_households",
    "demand_wh": "demand_households",
    "pv_wh": "pv_households",
    "curtailed_wh": "curtailed_households",
    "flex_delivered_wh": "flex_households",
    "envelope_s": "envelope_households",
}
"""Each figure's column → the column counting the households it covers."""

TABLES: dict[str, Table] = {
    "public_aggregates": Table.of(
        AggregateRow, pk="interval", not_null=("k", "households", *dict.fromkeys(COVERS.values()))
    )
}
"""The aggregates as the ledger file holds them (append-only)."""


def suppressed(row: AggregateRow, k: int) -> AggregateRow:
    """``row`` with every figure covering fewer than ``k`` households set to None."""
    d = row._asdict()
    for figure, count in COVERS.items():
        if d[count] < k:
            d[figure] = None
    return AggregateRow(**d)


def aggregate_row(
    interval: int,
    k: int,
    households: int,
    grid_wh: tuple[int, int] | None,
    metered_wh: tuple[int, int, int],
    metered: int,
    v_mv: Sequence[int],
    figures: CommunityFigures,
) -> AggregateRow:
    """An interval's row, figures covering fewer than k households suppressed.

    grid_wh: the transformer meter's verified (import, export), Wh (None: none verified).
    metered_wh: (import, export, shared) of the ``metered`` households verified, Wh.
    v_mv: the voltages those households' meters reported, mV.
    """
    grid = (*grid_wh, households) if grid_wh is not None else (None, None, 0)
    volts = (min(v_mv), max(v_mv), len(v_mv)) if len(v_mv) else (None, None, 0)

    def given(f: Figure | None) -> tuple[int | None, int]:
        return (None, 0) if f is None else (f.value, f.households)

    c = figures
    row = AggregateRow(
        interval, k, households, *grid, *metered_wh, metered, *volts, *given(c.demand_wh),
        *given(c.pv_wh), *given(c.curtailed_wh), *given(c.flex_delivered_wh),
        *given(c.envelope_s),
    )  # fmt: skip
    return suppressed(row, k)


def add_aggregate(db: sqlite3.Connection, row: AggregateRow) -> None:
    """Store an interval's aggregates (inside the ledger's ``atomic()``)."""
    insert_rows(db, "public_aggregates", [row])


def aggregate_rows(db: sqlite3.Connection) -> list[tuple[int, AggregateRow]]:
    """Every stored row with its rowid, in interval order."""
    names = ", ".join(AggregateRow._fields)
    q = f"SELECT rowid, {names} FROM public_aggregates ORDER BY interval"
    return [(int(r[0]), AggregateRow(*r[1:])) for r in db.execute(q)]


def aggregate_at(db: sqlite3.Connection, interval: int) -> AggregateRow | None:
    """The row of ``interval``, None while it is not settled."""
    found = select_rows(db, AggregateRow, "FROM public_aggregates WHERE interval = ?", (interval,))
    return found[0] if found else None


_Count = Annotated[int, Field(ge=0, le=10**9)]
_Wh = Annotated[int, Field(ge=0, le=2**53)] | None


class OpenDataMessage(StrictModel):
    """An interval's public aggregates (MQTT ``coordinator/opendata``, retained): an
    ``AggregateRow`` as published, figures covering fewer than ``k`` households None."""

    v: Annotated[int, Field(ge=1, le=1)] = 1
    interval: Annotated[int, Field(ge=0, le=2**62)]
    k: Annotated[int, Field(ge=MIN_K, le=10**9)]
    households: _Count
    grid_import_wh: _Wh
    grid_export_wh: _Wh
    grid_households: _Count
    households_import_wh: _Wh
    households_export_wh: _Wh
    shared_wh: _Wh
    metered_households: _Count
    v_min_mv: Annotated[int, Field(ge=0, le=10**7)] | None
    v_max_mv: Annotated[int, Field(ge=0, le=10**7)] | None
    voltage_households: _Count
    demand_wh: _Wh
    demand_households: _Count
    pv_wh: _Wh
    pv_households: _Count
    curtailed_wh: _Wh
    curtailed_households: _Count
    flex_delivered_wh: _Wh
    flex_households: _Count
    envelope_s: Annotated[int, Field(ge=0, le=10**6)] | None
    envelope_households: _Count

    @classmethod
    def of(cls, row: AggregateRow) -> OpenDataMessage:
        """The message of a stored row."""
        return cls(**row._asdict())
