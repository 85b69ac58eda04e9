"""Intervals, the sign convention, shared small types and the error family.

Time: timezone-aware UTC ``datetime`` at the edges; inside, an interval index
``interval = floor(epoch_s / interval_s)`` with ``interval_s = 900`` by default.

Sign (load convention, everywhere): positive power is drawn from the household bus
or from the grid. PV producing 3 kW has ``p_w = -3000``; a charging battery is
positive; a household exporting is negative. A household's grid power is the sum
of its devices and its base load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

INTERVAL_S = 900
"""Default settlement and dispatch interval, s."""

MICRO = 1_000_000
"""Micro-units per unit of currency or token; ledger amounts are integers in micro-units."""


class GridctlError(Exception):
    """Base of every error gridctl raises on purpose (bad input, broken invariants)."""


class ScenarioError(GridctlError):
    """A scenario file is missing, malformed or refers to something that does not exist."""


class FeederError(GridctlError):
    """A feeder cannot be loaded or a power flow does not converge."""


class DispatchError(GridctlError):
    """The dispatch model could not be solved."""


class LedgerError(GridctlError):
    """The ledger is unreadable or an entry would break its invariants."""


def describe_validation_error(err: ValidationError) -> str:
    """One line naming the first failing field (``households[3].pv.kwp``) and why."""
    first = err.errors()[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where.lstrip('.') or '(top level)'}: {msg}{more}"


M = TypeVar("M", bound=BaseModel)


def read_yaml(path: Path, error: type[GridctlError], what: str = "") -> object:
    """The parsed YAML of ``path``; ``error`` (one line naming the file) if it cannot be read
    or parsed. what: a word for the message ("scenario " → "cannot read scenario …")."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise error(f"cannot read {what}{path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise error(f"{path.name}: not valid YAML ({str(e).splitlines()[0]})") from None


def validated(model: type[M], raw: object, error: type[GridctlError], name: str) -> M:
    """``raw`` as a ``model``; ``error`` with ``name`` and the first failing field if not."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise error(f"{name}: {describe_validation_error(e)}") from None


def interval_of(t: datetime, interval_s: int = INTERVAL_S) -> int:
    """Index of the interval containing ``t``: floor(epoch_s / interval_s).

    t: timezone-aware datetime; a naive datetime is rejected.
    """
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t.isoformat()} (gridctl needs timezone-aware UTC)")
    return math.floor(t.timestamp()) // interval_s


def interval_start(interval: int, interval_s: int = INTERVAL_S) -> datetime:
    """Start of interval ``interval`` as a UTC datetime."""
    return datetime.fromtimestamp(interval * interval_s, tz=UTC)


def interval_hours(interval_s: int = INTERVAL_S) -> float:
    """Length of one interval, h (0.25 for 900 s)."""
    return interval_s / 3600.0


def import_export_wh(p_w: float, dt_h: float) -> tuple[float, float]:
    """Split one interval's constant power into imported and exported energy.

    p_w: power at the connection, load convention (> 0 import), W.
    dt_h: duration, h.
    Returns (import_wh, export_wh), both ≥ 0, Wh.
    """
    e_wh = p_w * dt_h
    return (e_wh, 0.0) if e_wh >= 0 else (0.0, -e_wh)


@dataclass(frozen=True)
class Tariff:
    """Prices in currency per kWh: grid import, grid feed-in, and community sharing."""

    import_per_kwh: float
    feed_in_per_kwh: float
    community_per_kwh: float


__all__ = [
    "INTERVAL_S",
    "MICRO",
    "DispatchError",
    "FeederError",
    "GridctlError",
    "LedgerError",
    "ScenarioError",
    "Tariff",
    "describe_validation_error",
    "import_export_wh",
    "interval_hours",
    "interval_of",
    "interval_start",
    "read_yaml",
    "validated",
]
