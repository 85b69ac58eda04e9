"""Operating envelopes: the import and export limits a grid operator sets for a connection
point (a household) or for the whole feeder (its transformer), as a time series.

A limit is W, ≥ 0 (``inf``: none), in force over ``[start_s, end_s)`` (epoch s, UTC) once its
ramp has passed: ``ramp_s`` is the time the operator gives the community to get there, so the
limit binds from ``start_s + ramp_s``. Several sources (an OpenADR VTN, the configuration's
standing envelopes, a §14a signal) may each limit a target; the most restrictive limit in force
wins, as every other limit in gridctl combines by minimum.

A limit may also cap a household's *controllable* devices (charger, battery charging) under
§14a EnWG (``controllable_max_w``; ``gridctl.public.dimming``): the household is dimmed while it
is in force, its connection's import is not limited by it. One on the feeder dims every
household.

A source that has fallen silent for ``SILENT_POLLS`` of its poll periods is no longer trusted
to be current: in its place the **default envelope** applies (the configuration's, per target
kind; CSIP-AUS calls it the default DER control), until the source is heard again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gridctl.core import INTERVAL_S

FEEDER = "feeder"
"""Target name of the feeder's (transformer's) envelope; households are targeted by id."""
SILENT_POLLS = 3
"""Poll periods a source may miss before its limits give way to the default envelope."""


@dataclass(frozen=True)
class Limit:
    """One limit of one source on one target (see the module doc). W, s."""

    target: str
    start_s: float
    end_s: float
    import_max_w: float = math.inf
    export_max_w: float = math.inf
    ramp_s: float = 0.0
    controllable_max_w: float = math.inf
    """§14a: cap on the sum of the target's controllable devices, W (0: each at its
    guaranteed minimum; ``inf``: not dimmed)."""

    def __post_init__(self) -> None:
        for name in ("start_s", "end_s", "ramp_s", "import_max_w", "export_max_w",
                     "controllable_max_w"):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or math.isnan(v):
                raise ValueError(f"{name} must be a number, got {v!r}")
        if not (math.isfinite(self.start_s) and math.isfinite(self.end_s)):
            raise ValueError("start_s and end_s must be finite")
        if self.end_s <= self.start_s:
            raise ValueError(f"ends ({self.end_s:g}) at or before it starts ({self.start_s:g})")
        if min(self.import_max_w, self.export_max_w, self.controllable_max_w) < 0:
            raise ValueError("a limit is ≥ 0 W")
        if not 0 <= self.ramp_s < math.inf:
            raise ValueError(f"ramp_s must be finite and ≥ 0, got {self.ramp_s:g}")

    def binds(self, t0_s: float, t1_s: float) -> bool:
        """Whether it is in force at any moment of ``[t0_s, t1_s)`` after its ramp."""
        return self.start_s + self.ramp_s < t1_s and t0_s < self.end_s


@dataclass(frozen=True)
class DefaultEnvelope:
    """Limits that apply in place of a silent source, W (``inf``: none): one pair for the
    feeder, one for every household."""

    feeder_import_max_w: float = math.inf
    feeder_export_max_w: float = math.inf
    household_import_max_w: float = math.inf
    household_export_max_w: float = math.inf

    def of(self, target: str) -> tuple[float, float]:
        """(import_max_w, export_max_w) for ``target``."""
        if target == FEEDER:
            return self.feeder_import_max_w, self.feeder_export_max_w
        return self.household_import_max_w, self.household_export_max_w


@dataclass
class _Source:
    limits: tuple[Limit, ...]
    poll_s: float | None  # None: a standing source that never falls silent
    heard_s: float


class Envelopes:
    """The envelopes in force, from every source (see the module doc)."""

    def __init__(self, default: DefaultEnvelope | None = None):
        self.default = default or DefaultEnvelope()
        self._sources: dict[str, _Source] = {}

    def update(
        self, source: str, limits: Iterable[Limit], now_s: float, poll_s: float | None = None
    ) -> None:
        """Replace what ``source`` says with ``limits`` and note it was heard at ``now_s``.
        poll_s: how often it is asked, s (None: a standing source, never silent)."""
        if poll_s is not None and not 0 < poll_s < math.inf:
            raise ValueError(f"poll_s must be finite and > 0, got {poll_s!r}")
        self._sources[source] = _Source(tuple(limits), poll_s, now_s)

    def heard(self, source: str, now_s: float) -> None:
        """``source`` answered at ``now_s`` and its limits stand (it said nothing new)."""
        if source in self._sources:
            self._sources[source].heard_s = now_s

    def silent(self, now_s: float) -> list[str]:
        """Sources not heard for ``SILENT_POLLS`` of their poll periods at ``now_s``."""
        return [
            name
            for name, s in self._sources.items()
            if s.poll_s is not None and now_s - s.heard_s > SILENT_POLLS * s.poll_s
        ]

    def limits(self, target: str, t0_s: float, t1_s: float, now_s: float) -> tuple[float, float]:
        """(import_max_w, export_max_w) on ``target`` over ``[t0_s, t1_s)``, as known at
        ``now_s``: the most restrictive limit in force at any moment of it (``inf``: none)."""
        imp = exp = math.inf
        if self.silent(now_s):
            imp, exp = self.default.of(target)
        for lim in self._live(now_s):
            if lim.target == target and lim.binds(t0_s, t1_s):
                imp, exp = min(imp, lim.import_max_w), min(exp, lim.export_max_w)
        return imp, exp

    def binding(
        self, interval: int, now_s: float, interval_s: int = INTERVAL_S
    ) -> list[tuple[str, Limit]]:
        """(source, limit) of every limit in force at any moment of ``interval`` as known at
        ``now_s``; a silent source's place taken by the default envelope (source "default")."""
        t0, t1 = interval * interval_s, (interval + 1) * interval_s
        out = []
        if self.silent(now_s):
            imp, exp = self.default.of(FEEDER)
            if math.isfinite(imp) or math.isfinite(exp):
                out.append(("default", Limit(FEEDER, t0, t1, imp, exp)))
        silent = set(self.silent(now_s))
        for name, s in self._sources.items():
            if name not in silent:
                out += [(name, lim) for lim in s.limits if lim.binds(t0, t1)]
        return out

    def series(
        self,
        targets: Sequence[str],
        interval: int,
        n_t: int,
        now_s: float,
        interval_s: int = INTERVAL_S,
        without: Callable[[Limit], bool] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Import and export limits of each target over ``n_t`` intervals from ``interval``,
        W, each (len(targets), n_t) (``inf``: none): ``limits`` of every interval. without:
        leaves out the limits it is true for (what the plan would be without an event)."""
        imp = np.full((len(targets), n_t), math.inf)
        exp = np.full((len(targets), n_t), math.inf)
        if self.silent(now_s):
            for k, target in enumerate(targets):
                imp[k], exp[k] = self.default.of(target)
        row = {t: k for k, t in enumerate(targets)}
        t0_s = (interval + np.arange(n_t)) * float(interval_s)
        for lim in self._live(now_s):
            k = row.get(lim.target)
            if k is None or (without is not None and without(lim)):
                continue
            on = (lim.start_s + lim.ramp_s < t0_s + interval_s) & (t0_s < lim.end_s)
            imp[k, on] = np.minimum(imp[k, on], lim.import_max_w)
            exp[k, on] = np.minimum(exp[k, on], lim.export_max_w)
        return imp, exp

    def dimming(
        self,
        households: Sequence[str],
        interval: int,
        n_t: int,
        now_s: float,
        interval_s: int = INTERVAL_S,
    ) -> np.ndarray:
        """§14a caps on each household's controllable devices over ``n_t`` intervals from
        ``interval``, W, (len(households), n_t) (``inf``: not dimmed): the smallest of the
        household's own and the feeder's in force at any moment of each interval."""
        cap = np.full((len(households), n_t), math.inf)
        row = {h: k for k, h in enumerate(households)}
        t0_s = (interval + np.arange(n_t)) * float(interval_s)
        for lim in self._live(now_s):
            if math.isinf(lim.controllable_max_w):
                continue
            rows = slice(None) if lim.target == FEEDER else row.get(lim.target)
            if rows is None:
                continue
            on = (lim.start_s + lim.ramp_s < t0_s + interval_s) & (t0_s < lim.end_s)
            cap[rows, on] = np.minimum(cap[rows, on], lim.controllable_max_w)
        return cap

    def _live(self, now_s: float) -> list[Limit]:
        silent = set(self.silent(now_s))
        return [lim for n, s in self._sources.items() if n not in silent for lim in s.limits]

    def in_force(self, interval: int, now_s: float, interval_s: int = INTERVAL_S) -> bool:
        """Whether any finite limit applies to any target during ``interval``."""
        t0 = interval * interval_s
        targets = {lim.target for s in self._sources.values() for lim in s.limits} | {FEEDER}
        return any(
            math.isfinite(x)
            for target in targets
            for x in self.limits(target, t0, t0 + interval_s, now_s)
        )

    def sources(self) -> Mapping[str, tuple[Limit, ...]]:
        """Each source's limits, as last updated."""
        return {name: s.limits for name, s in self._sources.items()}
