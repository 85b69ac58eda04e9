"""The household's §14a EnWG dimming: the signal in force, and the record of every window.

While dimmed, the controller's charger and battery charging follow ``gridctl.public.dimming``
(a charger whose car is connected never below min(4.2 kW, what it takes)). Each window — from
the first poll that finds the household dimmed to the first that finds it no longer dimmed,
with the signal's source and cap — is kept in table ``dimming`` of the controller's state file,
for the household's own statement (``gridctl controller dimming``). A window left open by a
stop is continued if the household is still dimmed at the next poll, else closed then.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from gridctl.core import GridctlError
from gridctl.public.dimming import allowed_w

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS dimming (
    start_s REAL PRIMARY KEY, end_s REAL, source TEXT NOT NULL, cap_w REAL NOT NULL);
"""


def dimmed(
    wanted: Mapping[str, float], floors: Mapping[str, float], cap_w: float
) -> dict[str, float]:
    """Chargers' and batteries' powers (W, load convention, by device name) under a §14a cap
    (W): each charger asked at least its floor (W), then every controllable consumer (the
    chargers, the batteries that charge) held to ``gridctl.public.dimming.allowed_w``; a
    discharging battery stays as it was."""
    names = [n for n, w in wanted.items() if n in floors or w > 0]
    wish = np.array([max(wanted[n], floors.get(n, 0.0)) for n in names])
    got = allowed_w(wish, cap_w) if names else wish
    return {**wanted, **{n: float(g) for n, g in zip(names, got, strict=True)}}


@dataclass(frozen=True)
class Window:
    """One dimming window: from ``start_s`` to ``end_s`` (epoch s; None: still dimmed), its
    source (``coordinator`` or ``input``) and its cap on the controllable devices, W."""

    start_s: float
    end_s: float | None
    source: str
    cap_w: float

    def as_dict(self) -> dict[str, float | str | None]:
        """As a JSON object."""
        return asdict(self)


class DimmingLog:
    """The windows kept in ``db`` (the controller's state file); ``note`` each poll's state."""

    def __init__(self, db: sqlite3.Connection, household: str):
        self.db, self.household = db, household
        db.executescript(SCHEMA)
        self.open = _open_window(db)

    def note(self, now_s: float, cap_w: float | None, source: str) -> None:
        """The household is dimmed to ``cap_w`` (W) by ``source`` at ``now_s``, or not (None)."""
        w = self.open
        if w is not None and (cap_w is None or (cap_w, source) != (w.cap_w, w.source)):
            self.db.execute("UPDATE dimming SET end_s = ? WHERE start_s = ?", (now_s, w.start_s))
            log.info("dimming ends household=%s source=%s cap_w=%g", self.household, w.source,
                     w.cap_w)  # fmt: skip
            self.open = None
        if cap_w is not None and self.open is None:
            self.db.execute(
                "INSERT OR REPLACE INTO dimming VALUES (?, NULL, ?, ?)", (now_s, source, cap_w)
            )
            log.info("dimming starts household=%s source=%s cap_w=%g", self.household, source,
                     cap_w)  # fmt: skip
            self.open = Window(now_s, None, source, cap_w)

    def windows(self) -> list[Window]:
        """Every window kept, oldest first."""
        return _windows(self.db)


def _windows(db: sqlite3.Connection) -> list[Window]:
    rows = db.execute("SELECT start_s, end_s, source, cap_w FROM dimming ORDER BY start_s")
    return [Window(*row) for row in rows]


def _open_window(db: sqlite3.Connection) -> Window | None:
    row = db.execute(
        "SELECT start_s, end_s, source, cap_w FROM dimming WHERE end_s IS NULL "
        "ORDER BY start_s DESC LIMIT 1"
    ).fetchone()
    return None if row is None else Window(*row)


def describe(w: Window) -> str:
    """One line for a person: when (UTC), how long, from which source, to what cap."""
    start = datetime.fromtimestamp(w.start_s, UTC)
    if w.end_s is None:
        until = "ongoing"
    else:
        hours = (w.end_s - w.start_s) / 3600
        until = f"{datetime.fromtimestamp(w.end_s, UTC):%Y-%m-%d %H:%M:%S}Z ({hours:.2f} h)"
    cap = "each device at most 4.2 kW" if w.cap_w == 0 else f"{w.cap_w / 1000:g} kW in all"
    return f"{start:%Y-%m-%d %H:%M:%S}Z to {until} source={w.source} cap: {cap}"


def read_windows(state_db: Path) -> list[Window]:
    """The windows a controller kept in its state file (read-only)."""
    if not state_db.is_file():
        raise GridctlError(f"no controller state file at {state_db}")
    try:
        db = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True)
        try:
            has = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'dimming'").fetchone()
            return _windows(db) if has else []
        finally:
            db.close()
    except sqlite3.Error as e:
        raise GridctlError(f"state_db {state_db}: cannot read its dimming windows ({e})") from None
