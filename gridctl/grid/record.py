"""The feeder's drawing and its power-flow states in a SQLite file of their own (``grid.sqlite``
beside a ledger): written by the simulation (each interval as run) and by the coordinator (each
interval as planned and AC-checked), read read-only by the web app.

Tables: ``meta`` (topology id, k, the voltage band and loading limit), ``buses``, ``branches``,
``households`` (the drawing, ``gridctl.grid.drawing``) and ``bus_states`` / ``branch_states``
(per interval and kind "actual" | "planned": voltage in µp.u., loading in ppm of the rating,
integers within their stored width). The reader checks every row it takes: a file is input.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gridctl.core import FeederError
from gridctl.grid import LOADING_PPM_MAX, V_UPU_MAX
from gridctl.grid.drawing import Branch, Bus, Drawing, State

GRID_FILE = "grid.sqlite"
"""The feeder states' file, beside the ledger (and in a simulation's output folder)."""
Kind = Literal["actual", "planned"]
KINDS: tuple[str, ...] = ("actual", "planned")
MAX_ELEMENTS = 5000
"""Most buses (and most branches) a drawing may have; a file with more is refused."""
MAX_HOUSEHOLDS = 100_000
MAX_NAME = 64
"""Longest bus, branch or household name kept, characters."""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS buses (pos INTEGER PRIMARY KEY, bus INTEGER NOT NULL,
    name TEXT NOT NULL, x REAL NOT NULL, y REAL NOT NULL, parent INTEGER NOT NULL,
    households INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS branches (pos INTEGER PRIMARY KEY, kind TEXT NOT NULL,
    idx INTEGER NOT NULL, name TEXT NOT NULL, frm INTEGER NOT NULL, dst INTEGER NOT NULL,
    households INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS households (pos INTEGER PRIMARY KEY, id TEXT NOT NULL,
    bus INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS bus_states (interval INTEGER NOT NULL, kind TEXT NOT NULL,
    pos INTEGER NOT NULL, v_upu INTEGER NOT NULL CHECK (v_upu BETWEEN 0 AND {V_UPU_MAX}),
    PRIMARY KEY (interval, kind, pos)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS branch_states (interval INTEGER NOT NULL, kind TEXT NOT NULL,
    pos INTEGER NOT NULL,
    loading_ppm INTEGER NOT NULL CHECK (loading_ppm BETWEEN 0 AND {LOADING_PPM_MAX}),
    PRIMARY KEY (interval, kind, pos)) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Limits:
    """What the drawing judges values against: the voltage band (p.u.), the loading limit (%)
    and k, the fewest households a public figure may cover."""

    v_min_pu: float
    v_max_pu: float
    loading_max_pct: float
    k: int


class GridRecord:
    """Writer of a ``grid.sqlite``: the drawing once (replacing any other topology's states),
    then states. keep_intervals: states older than this many intervals before the newest are
    dropped (None: all kept)."""

    def __init__(
        self, path: Path, d: Drawing, limits: Limits, keep_intervals: int | None = None
    ) -> None:
        self.path, self.drawing, self.limits, self.keep = Path(path), d, limits, keep_intervals
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        with self.db:
            self.db.executescript(SCHEMA)
            old = self.db.execute("SELECT value FROM meta WHERE key='topology'").fetchone()
            if old is None or old[0] != d.topology_id:
                _write_drawing(self.db, d)
            else:  # the same places; a household may have another id
                self.db.execute("DELETE FROM households")
                _write_households(self.db, d)
            meta = {"topology": d.topology_id, "v_min_pu": limits.v_min_pu,
                    "v_max_pu": limits.v_max_pu, "loading_max_pct": limits.loading_max_pct,
                    "k": limits.k, "geo": int(d.geo)}  # fmt: skip
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                [(k, str(v)) for k, v in meta.items()])  # fmt: skip

    def add(self, states: list[State], kind: Kind) -> None:
        """Record power-flow states (one transaction; an interval recorded again is replaced)."""
        nb, nr = len(self.drawing.buses), len(self.drawing.branches)
        with self.db:
            for s in states:
                if len(s.v_upu) != nb or len(s.loading_ppm) != nr:
                    raise FeederError(f"state of interval {s.interval} does not fit the drawing")
                self.db.executemany(
                    "INSERT OR REPLACE INTO bus_states VALUES (?, ?, ?, ?)",
                    [(s.interval, kind, k, v) for k, v in enumerate(s.v_upu)],
                )
                self.db.executemany(
                    "INSERT OR REPLACE INTO branch_states VALUES (?, ?, ?, ?)",
                    [(s.interval, kind, k, v) for k, v in enumerate(s.loading_ppm)],
                )
            if self.keep is not None and states:
                oldest = max(s.interval for s in states) - self.keep
                for table in ("bus_states", "branch_states"):
                    self.db.execute(f"DELETE FROM {table} WHERE interval < ?", (oldest,))

    def close(self) -> None:
        """Close the file."""
        self.db.close()


def _write_drawing(db: sqlite3.Connection, d: Drawing) -> None:
    for table in ("buses", "branches", "households", "bus_states", "branch_states"):
        db.execute(f"DELETE FROM {table}")
    db.executemany(
        "INSERT INTO buses VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(k, b.index, b.name[:MAX_NAME], b.x, b.y, b.parent, b.households)
         for k, b in enumerate(d.buses)],
    )  # fmt: skip
    db.executemany(
        "INSERT INTO branches VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(k, r.kind, r.index, r.name[:MAX_NAME], r.frm, r.to, r.households)
         for k, r in enumerate(d.branches)],
    )  # fmt: skip
    _write_households(db, d)


def _write_households(db: sqlite3.Connection, d: Drawing) -> None:
    db.executemany("INSERT INTO households VALUES (?, ?, ?)",
                   [(k, h[:MAX_NAME], b) for k, (h, b) in enumerate(d.households)])  # fmt: skip


@contextmanager
def _read(path: Path) -> Iterator[sqlite3.Connection]:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            yield db
    except sqlite3.Error as e:
        raise FeederError(f"cannot read {path}: {e}") from None


def read_drawing(path: Path) -> tuple[Drawing, Limits, str]:
    """The drawing, limits and topology id of a ``grid.sqlite`` (read-only). FeederError when
    it cannot be read or a row is out of bounds."""
    with _read(path) as db:
        meta = dict(db.execute("SELECT key, value FROM meta LIMIT 64"))
        buses = db.execute(f"SELECT bus, name, x, y, parent, households FROM buses ORDER BY pos "
                           f"LIMIT {MAX_ELEMENTS + 1}").fetchall()  # fmt: skip
        branches = db.execute(f"SELECT kind, idx, name, frm, dst, households FROM branches "
                              f"ORDER BY pos LIMIT {MAX_ELEMENTS + 1}").fetchall()  # fmt: skip
        hh = db.execute(f"SELECT id, bus FROM households ORDER BY pos "
                        f"LIMIT {MAX_HOUSEHOLDS + 1}").fetchall()  # fmt: skip
    n = len(buses)
    if not 0 < n <= MAX_ELEMENTS or len(branches) > MAX_ELEMENTS or len(hh) > MAX_HOUSEHOLDS:
        raise FeederError(f"{path}: too many or no elements")
    try:
        limits = Limits(_real(meta["v_min_pu"], 0, 2), _real(meta["v_max_pu"], 0, 2),
                        _real(meta["loading_max_pct"], 0, 1000), int(meta["k"]))  # fmt: skip
        d = Drawing(
            [Bus(_int(i, 0, 2**62), str(nm)[:MAX_NAME], _real(x, 0, 1), _real(y, 0, 1),
                 _int(p, -1, n - 1), _int(c, 0, MAX_HOUSEHOLDS))
             for i, nm, x, y, p, c in buses],
            [Branch(str(kd)[:8], _int(i, 0, 2**62), str(nm)[:MAX_NAME], _int(a, 0, n - 1),
                    _int(b, 0, n - 1), _int(c, 0, MAX_HOUSEHOLDS))
             for kd, i, nm, a, b, c in branches],
            [(str(h)[:MAX_NAME], _int(b, 0, n - 1)) for h, b in hh],
            meta.get("geo") == "1",
        )  # fmt: skip
        if not 1 <= limits.k <= MAX_HOUSEHOLDS:
            raise ValueError(f"k {limits.k}")
    except (KeyError, ValueError, TypeError) as e:
        raise FeederError(f"{path}: bad drawing ({e})") from None
    return d, limits, str(meta.get("topology", ""))


def read_state(path: Path, d: Drawing, interval: int | None = None) -> tuple[Kind, State] | None:
    """The state of ``interval`` (None: the newest) from ``grid.sqlite``, "actual" before
    "planned" where both are recorded; None when there is none. Values out of their stored
    width, or a state that does not cover the whole drawing, raise FeederError."""
    with _read(path) as db:
        if interval is None:
            row = db.execute("SELECT MAX(interval) FROM bus_states").fetchone()
            if row is None or row[0] is None:
                return None
            interval = int(row[0])
        kinds = [k for (k,) in db.execute(
            "SELECT DISTINCT kind FROM bus_states WHERE interval = ?", (interval,))]  # fmt: skip
        kind = next((k for k in KINDS if k in kinds), None)
        if kind is None:
            return None
        q = "SELECT {} FROM {} WHERE interval = ? AND kind = ? ORDER BY pos LIMIT ?"
        v = [r[0] for r in db.execute(q.format("v_upu", "bus_states"),
                                      (interval, kind, MAX_ELEMENTS))]  # fmt: skip
        ld = [r[0] for r in db.execute(q.format("loading_ppm", "branch_states"),
                                       (interval, kind, MAX_ELEMENTS))]  # fmt: skip
    if len(v) != len(d.buses) or len(ld) != len(d.branches):
        raise FeederError(f"{path}: interval {interval} does not cover the drawing")
    try:
        state = State(interval, [_int(x, 0, V_UPU_MAX) for x in v],
                      [_int(x, 0, LOADING_PPM_MAX) for x in ld])  # fmt: skip
    except (ValueError, TypeError) as e:
        raise FeederError(f"{path}: bad state ({e})") from None
    return kind, state  # type: ignore[return-value]


def busiest(path: Path, first: int, last: int) -> int | None:
    """The interval of ``first`` … ``last`` whose transformer was loaded most (None: none
    recorded then). FeederError when the file cannot be read."""
    with _read(path) as db:
        row = db.execute(
            "SELECT s.interval FROM branch_states s JOIN branches b ON b.pos = s.pos "
            "WHERE b.kind = 'trafo' AND s.interval BETWEEN ? AND ? "
            "ORDER BY s.loading_ppm DESC, s.interval LIMIT 1", (first, last),
        ).fetchone()  # fmt: skip
    return None if row is None else int(row[0])


def _int(v: object, lo: int, hi: int) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise ValueError(f"{v!r} is not an integer in {lo}…{hi}")
    return v


def _real(v: object, lo: float, hi: float) -> float:
    x = float(v)  # type: ignore[arg-type]
    if not (math.isfinite(x) and lo <= x <= hi):
        raise ValueError(f"{v!r} is not a number in {lo}…{hi}")
    return x
