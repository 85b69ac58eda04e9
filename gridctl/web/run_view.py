"""What the web app reads of a finished simulation's output directory (``gridctl sim --out``):
the ledger (read-only), ``kpis.json`` and the community plots. Only community-level figures
leave ``community``, ``aggregates`` and ``kpis``; a household's figures leave only
``statements``, ``flex``, ``cases`` and ``proof``."""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from gridctl.core import MAX_FILE_BYTES, LedgerError
from gridctl.dispatch.plan_log import PLANS_FILE, read_plans
from gridctl.protocol import CommunityPlanMessage
from gridctl.settlement.aggregates import COVERS, AggregateRow, aggregate_rows
from gridctl.settlement.flex_records import DeliveryRow, FlexEventRow
from gridctl.settlement.flex_records import events as flex_events
from gridctl.settlement.roots import root_row
from gridctl.settlement.statement import inclusion_proof
from gridctl.settlement.tables import select_rows
from gridctl.web.statements import StatementIndex, read_ledger

COMMUNITY_KPIS = (
    "scenario", "households", "intervals", "self_sufficiency", "demand_kwh", "pv_kwh",
    "shared_kwh", "grid_import_kwh", "grid_export_kwh", "peak_import_kw", "curtailed_kwh",
    "min_voltage_pu", "max_voltage_pu", "voltage_band_min_pu", "voltage_band_max_pu",
    "max_line_loading_pct", "max_trafo_loading_pct",
    "voltage_violations", "line_overloads", "trafo_overloads", "tokens_issued",
)  # fmt: skip
"""KPIs of ``kpis.json`` shown publicly: each covers the whole community (not a household)."""
LABELS = {
    "grid_import_wh": "Energy from the grid (transformer)",
    "grid_export_wh": "Energy to the grid (transformer)",
    "households_import_wh": "Energy the homes drew",
    "households_export_wh": "Energy the homes fed in",
    "shared_wh": "Energy shared between homes",
    "v_min_mv": "Lowest voltage at a meter",
    "v_max_mv": "Highest voltage at a meter",
    "demand_wh": "Energy the homes used",
    "pv_wh": "Solar energy produced",
    "curtailed_wh": "Solar energy held back",
    "flex_delivered_wh": "Flexibility delivered",
    "envelope_s": "Time the grid operator's limit was in force",
}
"""Plain names of the public aggregates (``public_aggregates`` columns)."""
FIGURES = ("feeder_power.png", "voltage.png")
"""The run's plots shown publicly (``households.png`` shows single households: not public)."""


@dataclass(frozen=True)
class Community:
    """The public summary: households enrolled, intervals settled, the last one and its root,
    each aggregate summed over the run with the fewest households it covered (None: withheld
    in some interval), and the community KPIs."""

    households: int
    settled: int
    first: int | None
    last: int | None
    last_root: str | None
    totals: dict[str, tuple[int | None, int]]
    kpis: dict[str, object]


class RunView:
    """Read-only view of a run directory. LedgerError when it holds no readable ledger."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        self.ledger = self.dir / "ledger.sqlite"
        if not self.ledger.is_file():
            raise LedgerError(f"no ledger.sqlite in {self.dir} (run `gridctl sim --out DIR`)")
        with self._db() as db:
            q = "SELECT DISTINCT household FROM meters WHERE household IS NOT NULL"
            self.households = sorted(h for (h,) in db.execute(q))
            self.first, self.last = db.execute(
                "SELECT MIN(interval), MAX(interval) FROM interval_roots"
            ).fetchone()
        self.statements = StatementIndex(self.ledger)
        """Every household's totals per day (``household``'s page reads them)."""

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return read_ledger(self.ledger)

    def settled(self, interval: int) -> bool:
        """True when ``interval`` has a Merkle root in this ledger."""
        return self.first is not None and self.first <= interval <= self.last

    def current_interval(self) -> int:
        """The interval the pages speak of as now: the one after the run's last."""
        return 0 if self.last is None else self.last + 1

    def community(self) -> Community:
        """The public summary (community-level figures only)."""
        with self._db() as db:
            settled, last_root = db.execute(
                "SELECT COUNT(*), (SELECT root FROM interval_roots ORDER BY interval DESC LIMIT 1)"
                " FROM interval_roots"
            ).fetchone()
            rows = [r for _, r in aggregate_rows(db)]
        totals: dict[str, tuple[int | None, int]] = {}
        for fig, count in COVERS.items():
            values = [getattr(r, fig) for r in rows]
            least = min((getattr(r, count) for r in rows), default=0)
            total = None if not values or None in values else sum(values)
            if fig.startswith("v_"):
                total = None if total is None else (min if fig == "v_min_mv" else max)(values)
            totals[fig] = (total, least)
        return Community(
            len(self.households), settled, self.first, self.last, last_root, totals,
            self.kpis(),
        )  # fmt: skip

    def aggregates(self, first: int, last: int) -> list[AggregateRow]:
        """The public aggregates of the settled intervals first…last, in interval order."""
        names = ", ".join(AggregateRow._fields)
        q = f"SELECT {names} FROM public_aggregates WHERE interval BETWEEN ? AND ?"
        q += " ORDER BY interval"
        with self._db() as db:
            return [AggregateRow(*r) for r in db.execute(q, (first, last))]

    @property
    def plans_path(self) -> Path:
        """The plan log beside the ledger (``gridctl.dispatch.plan_log``; older runs have none)."""
        return self.dir / PLANS_FILE

    def plans(self, first: int, last: int) -> list[CommunityPlanMessage]:
        """The community's plans of intervals first…last (community-level sums, withheld below
        k households), in interval order; [] without a plan log."""
        return [p.public() for p in read_plans(self.plans_path, first, last)]

    def kpis(self) -> dict[str, object]:
        """The community KPIs of ``kpis.json`` (community-level only; {} when unreadable)."""
        path = self.dir / "kpis.json"
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                return {}
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(doc, dict):
            return {}
        return {k: doc[k] for k in COMMUNITY_KPIS if isinstance(doc.get(k), str | int | float)}

    def flex(self, household: str) -> list[tuple[FlexEventRow, DeliveryRow]]:
        """The flexibility requests the household's deliveries were booked for, by window."""
        with self._db() as db:
            events = {e.event: e for e in flex_events(db)}
            rows = select_rows(db, DeliveryRow, "FROM flex_deliveries WHERE household = ?",
                               (household,))  # fmt: skip
        pairs = [(events[d.event], d) for d in rows if d.event in events]
        return sorted(pairs, key=lambda p: p[0].first)

    def cases(self, household: str) -> list[tuple[int, str, str, float | None]]:
        """The household's physics cases: interval, outcome, method, deviation (W)."""
        with self._db() as db:
            return db.execute(
                "SELECT interval, outcome, method, deviation_w FROM cases WHERE household = ?"
                " ORDER BY interval", (household,),
            ).fetchall()  # fmt: skip

    def roots(self, first: int = 0, last: int = 2**62) -> dict[int, str]:
        """The published Merkle root (hex) of every settled interval first…last."""
        with self._db() as db:
            q = "SELECT interval, root FROM interval_roots WHERE interval BETWEEN ? AND ?"
            return dict(db.execute(q, (first, last)))

    def root(self, interval: int) -> dict[str, object]:
        """A settled interval's published root: interval, tree size, root (hex)."""
        with self._db() as db:
            row = root_row(db, interval)
        if row is None:
            raise LedgerError(f"interval {interval} is not settled (no Merkle root)")
        return {"interval": row.interval, "tree_size": row.size, "root": row.root}

    def proof(self, household: str, interval: int) -> dict[str, object]:
        """The inclusion proof of the household's entries in a settled interval."""
        return inclusion_proof(self.ledger, household, interval)


def shown(figure: str, value: int | None) -> str:
    """An aggregate for people: kWh, V or h, or ``withheld`` (covering too few households)."""
    if value is None:
        return "withheld"
    if figure.endswith("_wh"):
        return f"{value / 1000:.1f} kWh"
    if figure.endswith("_mv"):
        return f"{value / 1000:.1f} V"
    return f"{value / 3600:.1f} h"
