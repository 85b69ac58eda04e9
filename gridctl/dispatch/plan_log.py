"""The plan log: the community's plan of every interval, community-level, in a SQLite file of
its own (``plans.sqlite`` beside the coordinator's ledger and in a ``gridctl sim --out``
directory).

The planner's caller (the coordinator, and the simulator the same way) adds one row per
interval it plans: the forecast the plan was made with and what it planned, summed over the
households (``CommunityPlanMessage``), and the envelopes and events in force. A re-plan of the
same interval (a restarted coordinator) replaces its row. Readers (the web app) open the file
read-only and validate every row as a message, so a damaged row is skipped, never shown.
Rows hold the full sums; what may be published is ``CommunityPlanMessage.public()``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import TypeAdapter, ValidationError

from gridctl.protocol import MAX_COMMUNITY_W, CommunityPlanMessage, InForce
from gridctl.settlement.canonical import canonical

if TYPE_CHECKING:  # readers (the web app) need not load the LP solvers
    from gridctl.dispatch.community import Plan

log = logging.getLogger(__name__)

PLANS_FILE = "plans.sqlite"
"""The plan log's file name, beside the ledger."""
_PLANS = TypeAdapter(list[CommunityPlanMessage])
_COLUMNS = (
    "interval", "households", "k", "load_w", "pv_w", "trafo_w", "battery_w", "ev_w", "shared_w",
    "curtail_w", "feeder_import_max_w", "feeder_export_max_w", "in_force",
)  # fmt: skip
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS community_plans (interval INTEGER PRIMARY KEY, "
    "households INTEGER NOT NULL, k INTEGER NOT NULL, load_w INTEGER, pv_w INTEGER, "
    "trafo_w INTEGER, battery_w INTEGER, ev_w INTEGER, shared_w INTEGER, curtail_w INTEGER, "
    "feeder_import_max_w INTEGER, feeder_export_max_w INTEGER, in_force TEXT NOT NULL)"
)


def community_plan(
    interval: int,
    plan: Plan,
    j: int,
    load_w: np.ndarray,
    pv_w: np.ndarray,
    k: int,
    feeder_w: tuple[float, float],
    in_force: Sequence[InForce] = (),
) -> CommunityPlanMessage:
    """The community's plan of ``interval``: column ``j`` of ``plan``, summed over households.

    load_w / pv_w: each household's forecast base load (≥ 0) and PV (≤ 0) the plan was made
    with, W, (H,). k: fewest households a published sum may cover. feeder_w: the feeder's
    (import_max_w, export_max_w) in force, W (inf: none). Planned sharing is the power
    households export that others import at the same time: min(Σ import, Σ export), W.
    """
    net_w = plan.net_w[:, j]
    shared_w = min(np.maximum(net_w, 0.0).sum(), np.maximum(-net_w, 0.0).sum())
    return CommunityPlanMessage(
        interval=interval, households=len(net_w), k=k,
        load_w=_w(load_w.sum()), pv_w=_w(pv_w.sum()), trafo_w=_w(plan.grid_w[j]),
        battery_w=_w(plan.battery_w[:, j].sum()), ev_w=_w(plan.ev_w[:, j].sum()),
        shared_w=_w(shared_w), curtail_w=_w(plan.curtail_w[:, j].sum()),
        feeder_import_max_w=_limit(feeder_w[0]), feeder_export_max_w=_limit(feeder_w[1]),
        in_force=list(in_force),
    )  # fmt: skip


def _w(x: float) -> int:
    """A sum in whole W (+ 0: no -0), clipped to what a message may state."""
    return int(np.clip(round(float(x)), -MAX_COMMUNITY_W, MAX_COMMUNITY_W)) + 0


def _limit(x: float) -> int | None:
    return None if not np.isfinite(x) else _w(x)


class PlanLog:
    """The plan log, written by one process (the coordinator or the simulator).

    path: the SQLite file (created with its table on the first ``add``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None

    def add(self, plan: CommunityPlanMessage) -> None:
        """Store (or replace) the plan of ``plan.interval``."""
        if self._db is None:
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
        d = plan.model_dump()
        d["in_force"] = canonical(d["in_force"]).decode()
        with self._db:
            self._db.execute(
                f"INSERT OR REPLACE INTO community_plans ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                [d[c] for c in _COLUMNS],
            )

    def close(self) -> None:
        """Close the file (a later ``add`` opens it again)."""
        if self._db is not None:
            self._db.close()
            self._db = None


def read_plans(path: Path, first: int, last: int) -> list[CommunityPlanMessage]:
    """The plans of intervals first…last in interval order, read-only ([] without the file);
    a row that is no valid plan is logged and left out."""
    return _read(path, "WHERE interval BETWEEN ? AND ? ORDER BY interval", (first, last))


def last_plan(path: Path, through: int | None = None) -> CommunityPlanMessage | None:
    """The latest plan (of an interval ≤ ``through``, if given), None without one."""
    found = _read(path, "WHERE interval <= ? ORDER BY interval DESC LIMIT 1",
                  (2**62 if through is None else through,))  # fmt: skip
    return found[0] if found else None


def _read(path: Path, tail: str, args: tuple[int, ...]) -> list[CommunityPlanMessage]:
    if not Path(path).is_file():
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as e:
        log.warning("plan log %s cannot be opened: %s", path, e)
        return []
    try:
        # fast path: SQLite writes the rows as one JSON array that pydantic validates whole
        # (a month of plans in ~15 ms against ~60 ms row by row); any bad row: row by row
        fields = ", ".join(
            f"'{c}', json({c})" if c == "in_force" else f"'{c}', {c}" for c in _COLUMNS
        )
        rows_q = f"SELECT * FROM community_plans {tail}"
        q = f"SELECT json_group_array(json_object({fields})) FROM ({rows_q})"
        with contextlib.suppress(sqlite3.Error, ValidationError):
            plans = _PLANS.validate_json(db.execute(q, args).fetchone()[0])
            return sorted(plans, key=lambda p: p.interval)  # one row, or first…last
        rows = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM community_plans {tail}", args)
        out = []
        for r in rows:
            d = dict(zip(_COLUMNS, r, strict=True))
            try:
                d["in_force"] = json.loads(d["in_force"])
                out.append(CommunityPlanMessage.model_validate(d))
            except (ValueError, TypeError, ValidationError) as e:
                log.warning("plan log %s: interval %s refused: %s", path, d["interval"],
                            str(e)[:200])  # fmt: skip
        return out
    except sqlite3.Error as e:
        log.warning("plan log %s cannot be read: %s", path, e)
        return []
    finally:
        db.close()
