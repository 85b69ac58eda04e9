"""The public timeline: the community's figures over a day, a week or a month.

Everything comes from the ledger's ``public_aggregates`` (community-level, each figure covering
at least k households, else withheld), the plan log's community plans (``plans.sqlite``: the
forecast and plan each interval was run with, summed over the households, withheld below k) and
the run's voltage band; nothing about one household.
Energies are shown as the average power over each slot (15 min for a day, 1 h for a week, a
day for a month), kW; voltages as the lowest / highest a meter reported in the slot, V.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from gridctl.core import INTERVAL_S, INTERVALS_PER_DAY, MV_PER_PU, W_PER_KW, interval_hours
from gridctl.protocol import CommunityPlanMessage
from gridctl.settlement.aggregates import AggregateRow

Span = Literal["day", "week", "month"]
SLOT_INTERVALS: dict[str, int] = {"day": 1, "week": 4, "month": INTERVALS_PER_DAY}
"""Intervals per plotted slot of each span."""
DEFAULT_BAND_PU = (0.94, 1.06)
"""Voltage band when the run does not record its own (the scenarios' default), p.u."""
POWER_SERIES = {
    "grid_kw": "At the transformer (+ drawn from the grid, − sent to it)",
    "pv_kw": "Solar produced",
    "demand_kw": "Used by the homes",
    "shared_kw": "Shared between homes",
    "curtailed_kw": "Solar held back",
}
"""Each average-power series of a slot, kW, and its plain name."""
PLAN_SERIES = {
    "plan_grid_kw": "At the transformer, planned",
    "plan_pv_kw": "Solar, forecast",
    "plan_demand_kw": "Use, forecast (with planned car charging)",
    "plan_curtailed_kw": "Solar held back, planned",
}
"""Each series of the community's plans, kW (average over the slot's planned intervals)."""


@dataclass(frozen=True)
class Window:
    """The intervals a page shows: the span, its first day, the interval range [first, last]
    and the intervals per slot."""

    span: Span
    start: date
    first: int
    last: int
    per_slot: int

    @property
    def slots(self) -> int:
        """Number of slots in the window."""
        return (self.last - self.first + 1) // self.per_slot

    def shifted(self, step: int) -> Window:
        """The window ``step`` spans later (earlier when negative)."""
        if self.span == "month":
            m = self.start.year * 12 + self.start.month - 1 + step
            return window("month", date(m // 12, m % 12 + 1, 1))
        days = 7 if self.span == "week" else 1
        return window(self.span, self.start + timedelta(days=days * step))


def window(span: Span, day: date) -> Window:
    """The UTC day, ISO week (from Monday) or calendar month holding ``day``."""
    if span == "day":
        start, end = day, day + timedelta(days=1)
    elif span == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    return Window(span, start, _interval(start), _interval(end) - 1, SLOT_INTERVALS[span])


def _interval(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) // INTERVAL_S


@dataclass(frozen=True)
class Slot:
    """One slot's community figures: average powers, kW (None: withheld or not recorded), and
    the lowest / highest meter voltage, V."""

    start: datetime
    intervals: int
    grid_kw: float | None
    pv_kw: float | None
    demand_kw: float | None
    shared_kw: float | None
    curtailed_kw: float | None
    v_min_v: float | None
    v_max_v: float | None
    plan_grid_kw: float | None = None
    plan_pv_kw: float | None = None
    plan_demand_kw: float | None = None
    plan_curtailed_kw: float | None = None


def slots(
    w: Window, rows: Sequence[AggregateRow], plans: Sequence[CommunityPlanMessage] = ()
) -> list[Slot]:
    """The window's slots from its settled rows (a slot without rows: every figure None) and
    its plans (a slot without plans: every plan figure None)."""
    by_slot: dict[int, list[AggregateRow]] = {}
    for r in rows:
        if w.first <= r.interval <= w.last:
            by_slot.setdefault((r.interval - w.first) // w.per_slot, []).append(r)
    planned: dict[int, list[CommunityPlanMessage]] = {}
    for p in plans:
        if w.first <= p.interval <= w.last:
            planned.setdefault((p.interval - w.first) // w.per_slot, []).append(p)
    return [
        replace(_slot(w, k, by_slot.get(k, [])), **_planned(planned.get(k, [])))
        for k in range(w.slots)
    ]


def _planned(plans: list[CommunityPlanMessage]) -> dict[str, float | None]:
    """The plan series of one slot: averages over its planned intervals, kW (None: none, or
    a sum withheld)."""

    def avg_kw(get: Callable[[CommunityPlanMessage], int | None]) -> float | None:
        values = [get(p) for p in plans]
        if not values or None in values:
            return None
        return sum(v for v in values if v is not None) / len(values) / W_PER_KW

    def use(p: CommunityPlanMessage) -> int | None:
        return None if p.load_w is None or p.ev_w is None else p.load_w + p.ev_w

    return {
        "plan_grid_kw": avg_kw(lambda p: p.trafo_w),
        "plan_pv_kw": avg_kw(lambda p: None if p.pv_w is None else -p.pv_w),
        "plan_demand_kw": avg_kw(use),
        "plan_curtailed_kw": avg_kw(lambda p: p.curtail_w),
    }


def _slot(w: Window, k: int, rows: list[AggregateRow]) -> Slot:
    hours = len(rows) * interval_hours()

    def avg_kw(get: Callable[[AggregateRow], int | None]) -> float | None:
        values = [get(r) for r in rows]
        if not values or None in values:
            return None
        return sum(v for v in values if v is not None) / hours / W_PER_KW

    def volts(name: str, pick: Callable[[list[int]], int]) -> float | None:
        values = [getattr(r, name) for r in rows]
        known = [v for v in values if v is not None]
        return pick(known) / 1000 if known else None

    def net(r: AggregateRow) -> int | None:
        if r.grid_import_wh is None or r.grid_export_wh is None:
            return None
        return r.grid_import_wh - r.grid_export_wh

    start = datetime.fromtimestamp((w.first + k * w.per_slot) * INTERVAL_S, tz=UTC)
    return Slot(
        start, len(rows), avg_kw(net), avg_kw(lambda r: r.pv_wh),
        avg_kw(lambda r: r.demand_wh), avg_kw(lambda r: r.shared_wh),
        avg_kw(lambda r: r.curtailed_wh), volts("v_min_mv", min), volts("v_max_mv", max),
    )  # fmt: skip


def band_v(kpis: dict[str, object]) -> tuple[tuple[float, float], bool]:
    """The run's voltage band in V, and whether the run recorded it (else the default)."""
    lo, hi = kpis.get("voltage_band_min_pu"), kpis.get("voltage_band_max_pu")
    if isinstance(lo, int | float) and isinstance(hi, int | float) and 0 < lo < hi < 2:
        return (lo * MV_PER_PU / 1000, hi * MV_PER_PU / 1000), True
    lo, hi = DEFAULT_BAND_PU
    return (lo * MV_PER_PU / 1000, hi * MV_PER_PU / 1000), False


def slot_label(w: Window, s: Slot) -> str:
    """A slot's start as a table row names it."""
    if w.span == "day":
        return s.start.strftime("%H:%M")
    if w.span == "week":
        return s.start.strftime("%a %d %H:%M")
    return s.start.strftime("%a %d %b")


def cell(s: Slot, name: str) -> str:
    """A slot's figure ``name`` for the table: kW with 2 decimals, V with 1, a dash if unknown."""
    v = getattr(s, name)
    if v is None:
        return "–"
    return f"{v:.1f}" if name.startswith("v_") else f"{v:.2f}"


def axis_labels(w: Window) -> list[tuple[int, str]]:
    """(slot, text) pairs for the x axis: every 6 h of a day, each day of a week, every 7th
    day of a month."""
    if w.span == "day":
        return [(k * 24, f"{k * 6:02d}:00") for k in range(4)]
    if w.span == "week":
        return [(k * 24, (w.start + timedelta(days=k)).strftime("%a")) for k in range(7)]
    return [(k, str(k + 1)) for k in range(0, w.slots, 7)]


def title(w: Window) -> str:
    """The window in words."""
    if w.span == "day":
        return w.start.strftime("%A %d %B %Y")
    if w.span == "week":
        end = w.start + timedelta(days=6)
        return f"Week of {w.start.strftime('%d %b')} to {end.strftime('%d %b %Y')}"
    return w.start.strftime("%B %Y")
