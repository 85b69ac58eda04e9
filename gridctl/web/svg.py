"""Line charts drawn on the server as SVG: no chart code in the browser, no inline style.

Colours and dashes come from classes (``series-0`` …, ``band``, ``axis``) styled by the app's
stylesheet; the chart is an ``img`` role with a title and a description, and the page gives the
same numbers as a table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 360, 190
"""The drawing's coordinate box (the SVG scales to its container; at a 390 px phone it is
drawn about 1:1, so its 11 px text stays legible)."""
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 20, 24
"""Margins inside the box for the axis labels, px."""


@dataclass(frozen=True)
class Series:
    """One line: its name and a value per x slot (None: unknown, drawn as a gap)."""

    name: str
    values: Sequence[float | None]


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """About ``count`` round tick values covering [lo, hi] (steps of 1, 2 or 5 × 10^n)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("tick range must be finite")
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    t = first
    while t < hi + step * 0.999:
        ticks.append(round(t, 10))
        t += step
    return ticks


def line_chart(
    series: Sequence[Series],
    x_labels: Sequence[tuple[int, str]],
    slots: int,
    unit: str,
    title: str,
    desc: str,
    band: tuple[float, float] | None = None,
) -> Markup:
    """An SVG line chart.

    series: the lines (at most 4 styles, ``series-0`` … ``series-3``), one value per slot.
    x_labels: (slot, text) pairs written under the x axis. slots: number of x slots.
    unit: of the y axis (written at its top). title / desc: the chart's accessible name and
    description. band: (low, high) drawn as a shaded band with dashed edges (e.g. the
    voltage band), in the y unit.
    Returns the ``<svg>`` element as safe markup.
    """
    known = [v for s in series for v in s.values if v is not None]
    lo, hi = (min(known), max(known)) if known else (0.0, 1.0)
    if band is not None:
        lo, hi = min(lo, band[0]), max(hi, band[1])
    if lo > 0 and not band:
        lo = 0.0  # energies and powers read best from zero
    ticks = nice_ticks(lo, hi)
    y0, y1 = ticks[0], ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(slot: float) -> float:
        return LEFT + plot_w * (slot + 0.5) / max(slots, 1)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - (v - y0) / (y1 - y0))

    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{_id(title)}-t {_id(title)}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{_id(title)}-t">{escape(title)}</title>',
        f'<desc id="{_id(title)}-d">{escape(desc)}</desc>',
    ]
    if band is not None:
        top, bottom = y(band[1]), y(band[0])
        out.append(f'<rect class="band" x="{LEFT}" y="{top:.1f}" width="{plot_w}" '
                   f'height="{bottom - top:.1f}"/>')  # fmt: skip
        out += [f'<line class="band-edge" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(b):.1f}" '
                f'y2="{y(b):.1f}"/>' for b in band]  # fmt: skip
    for t in ticks:
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(t):.1f}" '
                   f'y2="{y(t):.1f}"/>')  # fmt: skip
        out.append(f'<text class="tick" x="{LEFT - 4}" y="{y(t) + 4:.1f}" '
                   f'text-anchor="end">{_num(t)}</text>')  # fmt: skip
    if y0 < 0 < y1:
        out.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(0):.1f}" '
                   f'y2="{y(0):.1f}"/>')  # fmt: skip
    out.append(f'<text class="tick" x="{LEFT - 4}" y="11" text-anchor="end">'
               f'{escape(unit)}</text>')  # fmt: skip
    for slot, text in x_labels:
        out.append(f'<text class="tick" x="{x(slot):.1f}" y="{HEIGHT - 6}" '
                   f'text-anchor="middle">{escape(text)}</text>')  # fmt: skip
    for k, s in enumerate(series):
        for run in _runs(s.values):
            pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in run)
            if len(run) == 1:
                i, v = run[0]
                out.append(f'<circle class="series-{k}" cx="{x(i):.1f}" cy="{y(v):.1f}" r="2"/>')
            else:
                out.append(f'<polyline class="series-{k}" points="{pts}"/>')
    out.append("</svg>")
    return Markup("".join(out))


def _runs(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """The stretches of known values, each as (slot, value) pairs."""
    runs: list[list[tuple[int, float]]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((i, v))
    return [r for r in runs if r]


def _num(v: float) -> str:
    return f"{v:g}"


def _id(title: str) -> str:
    return "c-" + "".join(ch if ch.isalnum() else "-" for ch in title.lower())[:40]
