"""Intervals, the sign convention, shared small types and the error family.

Time: timezone-aware UTC ``datetime`` at the edges; inside, an interval index
``interval = floor(epoch_s / interval_s)`` with ``interval_s = 900`` by default.

Sign (load convention, everywhere): positive power is drawn from the household bus
or from the grid. PV producing 3 kW has ``p_w = -3000``; a charging battery is
positive; a household exporting is negative. A household's grid power is the sum
of its devices and its base load.

Limits (export, import, PV output) are W, ≥ 0. No limit is ``None`` in configs, messages and
other single values, and ``inf`` in per-household numpy arrays (and in bounds computed by
combining limits, so ``min`` and arithmetic need no special case).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import numpy as np
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

INTERVAL_S = 900
"""Default settlement and dispatch interval, s."""
INTERVALS_PER_DAY = 24 * 3600 // INTERVAL_S
"""Intervals in one day (96 at 900 s)."""

W_PER_KW = 1000
"""W per kW, and Wh per kWh: kW and kWh appear only where specs, prices and reports are read or
written; inside, power is W and energy Wh."""

V_NOMINAL_V = 230.0
"""Nominal phase-to-neutral voltage of the low-voltage grid, V."""
EV_MAX_A = 32.0
"""Most current an EV charger delivers per phase (IEC 61851, type 2), A."""

MV_PER_PU = V_NOMINAL_V * 1000.0
"""Millivolts per p.u. of the nominal phase-to-neutral voltage (what signed readings carry)."""


def ev_phases(p_max_w: float) -> int:
    """Phases a charger of ``p_max_w`` (W) uses: one up to 7.4 kW (32 A), else three."""
    return 1 if p_max_w <= 7400.0 else 3


AccuracyClass = Literal["A", "B", "C"]
"""An active-energy meter's accuracy class (MID, EN 50470-3)."""
ACCURACY_CLASS_MPE: dict[AccuracyClass, float] = {"A": 0.02, "B": 0.01, "C": 0.005}
"""Maximum permissible error of each accuracy class, relative (MID annex MI-003 at and above the
transitional current, reference conditions): A 2 %, B 1 %, C 0.5 %. The simulated meters draw
their errors within it, and settlement derives its feeder-balance tolerance from it."""

MICRO = 1_000_000
"""Micro-units per unit of currency or token; ledger amounts are integers in micro-units."""

MAX_FILE_BYTES = 4 * 1024 * 1024
"""Largest configuration or scenario file read; anything bigger is refused, not parsed."""


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


class StrictModel(BaseModel):
    """Base of every validated file or wire model: unknown keys refused, immutable, finite floats
    only."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _usable_path(p: Path) -> Path:
    text = str(p)
    if "\0" in text or len(text) > 4096:
        raise ValueError("not a usable file path (NUL byte or over 4096 characters)")
    return p


FilePath = Annotated[Path, AfterValidator(_usable_path)]
"""A file named in a configuration: no NUL byte, at most 4096 characters (PATH_MAX)."""

Host = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:%\[\]-]{1,253}$")]
"""A host name, IPv4 or IPv6 address: at most 253 characters, no spaces."""


def _one_line(text: object, limit: int = 80) -> str:
    """``text`` as at most ``limit`` printable characters on one line (repr when it is not)."""
    s = str(text)
    if not s.isprintable():
        s = repr(s)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def private_file(path: Path) -> None:
    """Keep a file of household data from other users before SQLite opens it: create it mode
    0600 whatever the umask (SQLite gives the -wal and -shm files it makes the database's mode),
    or, if it exists and is ours, take others' access away from it and its -wal and -shm files
    (its group keeps what the owner gave it, e.g. for a web app reading it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for f in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
            with contextlib.suppress(FileNotFoundError, PermissionError):
                mode = stat.S_IMODE(f.stat().st_mode)
                if mode & 0o007:
                    f.chmod(mode & ~0o007)
        return
    os.fchmod(fd, 0o600)
    os.close(fd)


def describe_validation_error(err: ValidationError) -> str:
    """One line naming the first failing field (``households[3].pv.kwp``) and why."""
    first = err.errors()[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{_one_line(p)}" for p in first["loc"])
    msg = _one_line(first["msg"].removeprefix("Value error, "), 300)
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where.lstrip('.') or '(top level)'}: {msg}{more}"


M = TypeVar("M", bound=BaseModel)
C = TypeVar("C", int, float, np.ndarray)


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: configuration files need none, and nested aliases ("billion
    laughs") make a few hundred bytes expand into more nodes than anything can check."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
        return super().compose_node(parent, index)  # type: ignore[arg-type]


def read_yaml(path: Path, error: type[GridctlError], what: str = "") -> object:
    """The parsed YAML of ``path``; ``error`` (one line naming the file) if it cannot be read
    or parsed. what: a word for the message ("scenario " → "cannot read scenario …")."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        reason = e.strerror if isinstance(e, OSError) else str(e)
        raise error(f"cannot read {what}{_one_line(path, 300)}: {reason}") from None
    if len(data) > MAX_FILE_BYTES:
        raise error(f"{path.name}: larger than {MAX_FILE_BYTES // 1024 // 1024} MiB")
    try:
        return yaml.load(data.decode("utf-8"), Loader=_NoAliasLoader)  # a SafeLoader
    except UnicodeDecodeError as e:
        raise error(
            f"{path.name}: not UTF-8 text (byte {e.start} is {data[e.start]:#04x})"
        ) from None
    except yaml.YAMLError as e:
        raise error(
            f"{path.name}: not valid YAML ({_one_line(str(e).splitlines()[0], 200)})"
        ) from None
    except RecursionError:
        raise error(f"{path.name}: nested too deeply") from None


def read_secret(path: Path, error: type[GridctlError], what: str) -> str:
    """The stripped text of a small secret file (a password); ``error`` starting with ``what``
    if it cannot be read, is over 4 KiB or is not UTF-8 text."""
    try:
        with path.open("rb") as f:
            data = f.read(4097)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise error(f"{what}: {e.strerror if isinstance(e, OSError) else e}") from None
    if len(data) > 4096:
        raise error(f"{what}: {_one_line(path, 300)} is over 4 KiB, not a password")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise error(f"{what}: {_one_line(path, 300)} is not UTF-8 text") from None


def validated(model: type[M], raw: object, error: type[GridctlError], name: str) -> M:
    """``raw`` as a ``model``; ``error`` with ``name`` and the first failing field if not."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise error(f"{name}: {describe_validation_error(e)}") from None


def interval_at(t_s: float, interval_s: int = INTERVAL_S) -> int:
    """Index of the interval containing epoch second ``t_s``: floor(t_s / interval_s)."""
    return int(t_s // interval_s)


def interval_of(t: datetime, interval_s: int = INTERVAL_S) -> int:
    """Index of the interval containing ``t``: floor(epoch_s / interval_s).

    t: timezone-aware datetime; a naive datetime is rejected.
    """
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t.isoformat()} (gridctl needs timezone-aware UTC)")
    return interval_at(t.timestamp(), interval_s)


def raise_if_cancelled() -> None:
    """Stop a service loop whose cancellation a library swallowed (asyncio.wait_for on 3.11
    can, when the awaited result and the cancellation arrive together)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


TIME_SCALE_ENV = "GRIDCTL_TIME_SCALE"
"""Environment variable that speeds up the services' clock, for demos and tests:
``SPEED@ORIGIN`` runs epoch time SPEED times faster than the wall clock from ORIGIN (epoch s,
where the two meet). Processes given the same value share one clock."""


def service_clock() -> Callable[[], float]:
    """Epoch seconds for ``controller run``, ``coordinator run`` and ``device serve``: the wall
    clock, or the sped-up one ``GRIDCTL_TIME_SCALE`` asks for (GridctlError if malformed)."""
    raw = os.environ.get(TIME_SCALE_ENV, "").strip()
    if not raw:
        return time.time
    speed_s, _, origin_s = raw.partition("@")
    try:
        speed, origin = float(speed_s), float(origin_s or time.time())
    except ValueError:
        speed = origin = math.nan
    if not (1 <= speed <= 10_000 and abs(origin - time.time()) < 86_400):
        raise GridctlError(
            f"{TIME_SCALE_ENV}={_one_line(raw)}: use SPEED@ORIGIN, SPEED 1-10000, ORIGIN epoch "
            "seconds within a day of now"
        )

    def clock() -> float:
        return origin + speed * (time.time() - origin)

    return clock


def interval_start(interval: int, interval_s: int = INTERVAL_S) -> datetime:
    """Start of interval ``interval`` as a UTC datetime."""
    return datetime.fromtimestamp(interval * interval_s, tz=UTC)


def interval_hours(interval_s: int = INTERVAL_S) -> float:
    """Length of one interval, h (0.25 for 900 s)."""
    return interval_s / 3600.0


def count_energy_wh(e_import_wh: C, e_export_wh: C, e_wh: C) -> tuple[C, C]:
    """Advance a meter's import and export counters by the energy through it since.

    e_import_wh, e_export_wh: counters now, Wh (≥ 0); numbers or numpy arrays (one per meter).
    e_wh: energy through the meter since, load convention (> 0 imported, < 0 exported), Wh.
    Returns the counters after (import, export), Wh, each grown by its part of ``e_wh`` only.
    """
    return e_import_wh + np.maximum(e_wh, 0), e_export_wh + np.maximum(-e_wh, 0)


def limit_or_none(limit_w: float) -> float | None:
    """A limit as configs and messages give it: ``None`` for ``inf`` (no limit), else W ≥ 0."""
    return limit_w if math.isfinite(limit_w) else None


def limit_or_inf(limit_w: float | None) -> float:
    """A limit for arithmetic: ``inf`` for ``None`` (no limit), else W ≥ 0."""
    return math.inf if limit_w is None else limit_w


@dataclass(frozen=True)
class Tariff:
    """Prices in currency per kWh: grid import, grid feed-in, and community sharing."""

    import_per_kwh: float
    feed_in_per_kwh: float
    community_per_kwh: float


__all__ = [
    "ACCURACY_CLASS_MPE",
    "INTERVAL_S",
    "MAX_FILE_BYTES",
    "MICRO",
    "MV_PER_PU",
    "W_PER_KW",
    "AccuracyClass",
    "DispatchError",
    "FeederError",
    "FilePath",
    "GridctlError",
    "Host",
    "LedgerError",
    "ScenarioError",
    "StrictModel",
    "Tariff",
    "count_energy_wh",
    "describe_validation_error",
    "ev_phases",
    "interval_at",
    "interval_hours",
    "interval_of",
    "interval_start",
    "limit_or_inf",
    "limit_or_none",
    "read_secret",
    "read_yaml",
    "validated",
]
