"""The feeder's one-line diagram, drawn on the server as SVG from ``grid.sqlite``.

Each bus is a circle, each line and the transformer a stroke, classed by its state: voltage
within the band, near a limit (within ``NEAR_V_PU``) or outside it; loading below 80 %, 80–100 %
or above 100 %. The classes change more than the colour (stroke width, dashes, rings: see the
stylesheet and the legend), each element has a title with its figure, and the page gives the
same figures as a table. A figure covering fewer than k households, or singling out fewer when
subtracted from another (``gridctl.grid.drawing.shown``), is withheld on the public page (drawn
grey and dotted); the operator sees every figure and which household is where.
Element ids (``fd-b3``, ``fd-r5``, ``fd-v-b3``, ``fd-s-r5``) let ``static/live.js`` update the
diagram in place from the coordinator's ``FeederMessage`` (public figures), or on the operator's
page (``data-full``) from ``/feeder.json`` (every figure, ``feeder_values``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup, escape

from gridctl.core import FeederError, interval_start
from gridctl.grid.drawing import Drawing, State, shown
from gridctl.grid.record import GRID_FILE, Limits, busiest, read_drawing, read_state

log = logging.getLogger(__name__)
WIDTH, MAX_HEIGHT, PAD = 360, 480, 14
"""The drawing's coordinate box, px (scaled to the page's width by its viewBox)."""
NEAR_V_PU = 0.01
"""A voltage within this of a band edge is drawn as near the limit, p.u."""
HIGH_PCT, OVER_PCT = 80.0, 100.0
"""Loadings from which a branch is drawn as high, and as overloaded, %."""
V_CLASSES = {"v-ok": "within the band", "v-near": "near a limit", "v-out": "outside the band"}
LOADING_CLASSES = {"ld-ok": "below 80 %", "ld-high": "80 to 100 %", "ld-over": "above 100 %"}
WITHHELD = "withheld"
STATES = V_CLASSES | LOADING_CLASSES | {WITHHELD: "not shown"}
"""Each state class in words (the table's State column)."""


@dataclass(frozen=True)
class Row:
    """One element as the page shows it: its id, name, figure (text), state class and, for the
    operator, the households at a bus."""

    key: str
    name: str
    figure: str
    cls: str
    homes: str


@dataclass(frozen=True)
class FeederFigure:
    """What the community page shows of the feeder: the diagram, its rows, the interval (and
    its start, UTC) and whether the values are as run ("actual") or as the coordinator
    planned them."""

    svg: Markup
    buses: list[Row]
    branches: list[Row]
    interval: int | None
    start: str | None
    kind: str | None
    k: int
    band: tuple[float, float]
    geo: bool


def v_class(v_pu: float, limits: Limits) -> str:
    """The voltage's state class (``V_CLASSES``)."""
    if v_pu < limits.v_min_pu or v_pu > limits.v_max_pu:
        return "v-out"
    if v_pu < limits.v_min_pu + NEAR_V_PU or v_pu > limits.v_max_pu - NEAR_V_PU:
        return "v-near"
    return "v-ok"


def loading_class(pct: float) -> str:
    """The loading's state class (``LOADING_CLASSES``)."""
    return "ld-over" if pct > OVER_PCT else "ld-high" if pct >= HIGH_PCT else "ld-ok"


def feeder_figure(
    run_dir: Path, operator: bool, interval: int | None = None
) -> FeederFigure | None:
    """The feeder of ``run_dir/grid.sqlite`` at ``interval`` (None: its newest state), every
    figure for the operator, only those covering k households or more otherwise; None when
    there is no readable file (an unreadable one is logged)."""
    path = run_dir / GRID_FILE
    if not path.is_file():
        return None
    try:
        d, limits, topology = read_drawing(path)
        found = read_state(path, d, interval)
        if found is None and interval is not None:
            found = read_state(path, d)
    except FeederError as e:
        log.warning("web: feeder drawing unavailable: %s", e)
        return None
    kind, state = found if found is not None else (None, None)
    buses, branches = _rows(d, limits, state, operator)
    svg = _svg(d, limits, topology, buses, branches, state, operator)
    start = None if state is None else interval_start(state.interval).strftime("%H:%M UTC")
    return FeederFigure(svg, buses, branches, state.interval if state else None, start, kind,
                        limits.k, (limits.v_min_pu, limits.v_max_pu), d.geo)  # fmt: skip


def feeder_values(run_dir: Path, operator: bool) -> dict[str, object] | None:
    """The newest recorded state as ``FeederMessage`` fields (``/feeder.json``): every figure
    for the operator, publicly None where ``shown`` withholds it; None without a readable one."""
    path = run_dir / GRID_FILE
    if not path.is_file():
        return None
    try:
        d, limits, topology = read_drawing(path)
        found = read_state(path, d)
    except FeederError as e:
        log.warning("web: feeder state unavailable: %s", e)
        return None
    if found is None:
        return None
    kind, s = found
    bus_ok, branch_ok = shown(d, limits.k)
    if operator:
        bus_ok, branch_ok = [True] * len(bus_ok), [True] * len(branch_ok)
    return {
        "interval": s.interval, "kind": kind, "topology": topology,
        "v_upu": [v if ok else None for v, ok in zip(s.v_upu, bus_ok, strict=True)],
        "loading_ppm": [x if ok else None for x, ok in zip(s.loading_ppm, branch_ok, strict=True)],
    }  # fmt: skip


def busiest_figure(run_dir: Path, operator: bool, first: int, last: int) -> FeederFigure | None:
    """The feeder at the interval of ``first`` … ``last`` whose transformer was loaded most
    (``feeder_figure``); None without one recorded."""
    path = run_dir / GRID_FILE
    if not path.is_file():
        return None
    try:
        at = busiest(path, first, last)
    except FeederError as e:
        log.warning("web: feeder drawing unavailable: %s", e)
        return None
    return None if at is None else feeder_figure(run_dir, operator, at)


def _rows(
    d: Drawing, limits: Limits, state: State | None, operator: bool
) -> tuple[list[Row], list[Row]]:
    homes: dict[int, list[str]] = {}
    for h, b in d.households:
        homes.setdefault(b, []).append(h)

    bus_ok, branch_ok = shown(d, limits.k)

    def figure(ok: bool, value: tuple[str, str] | None) -> tuple[str, str]:
        """(figure, class): withheld publicly unless ``ok``, else the value if known."""
        if not (operator or ok):
            return WITHHELD, WITHHELD
        return ("no value yet", WITHHELD) if value is None else value

    buses = []
    for k, b in enumerate(d.buses):
        v = None if state is None else state.v_upu[k] / 1e6
        fig, cls = figure(bus_ok[k], None if v is None else (f"{v:.4f} p.u.",
                                                                 v_class(v, limits)))  # fmt: skip
        at = ", ".join(homes.get(k, [])) if operator else ""
        buses.append(Row(f"b{k}", b.name, fig, cls, at))
    branches = []
    for k, r in enumerate(d.branches):
        pct = None if state is None else state.loading_ppm[k] / 1e4
        fig, cls = figure(branch_ok[k], None if pct is None else (f"{pct:.1f} %",
                                                                   loading_class(pct)))  # fmt: skip
        name = f"transformer {r.name}" if r.kind == "trafo" else r.name
        branches.append(Row(f"r{k}", name, fig, cls, ""))
    return buses, branches


def _svg(
    d: Drawing, limits: Limits, topology: str, buses: list[Row], branches: list[Row],
    state: State | None, full: bool,
) -> Markup:  # fmt: skip
    xs, ys = [b.x for b in d.buses], [b.y for b in d.buses]
    x0, y0 = min(xs), min(ys)
    span_x, span_y = max(max(xs) - x0, 1e-9), max(max(ys) - y0, 1e-9)
    scale = min((WIDTH - 2 * PAD) / span_x, (MAX_HEIGHT - 2 * PAD) / span_y)
    width = round(span_x * scale + 2 * PAD)
    height = round(span_y * scale + 2 * PAD)

    def at(k: int) -> tuple[float, float]:
        b = d.buses[k]
        return PAD + (b.x - x0) * scale, PAD + (b.y - y0) * scale

    when = "no power flow recorded yet" if state is None else f"interval {state.interval}"
    desc = (f"{len(d.buses)} buses and {len(d.branches)} lines and transformers, {when}. "
            "The table below gives every figure.")  # fmt: skip
    out = [
        f'<svg class="feeder" id="feeder-svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="feeder-t feeder-d" xmlns="http://www.w3.org/2000/svg" '
        f'data-topology="{escape(topology)}" data-v-min="{limits.v_min_pu}" '
        f'data-v-max="{limits.v_max_pu}" data-near="{NEAR_V_PU}" data-high="{HIGH_PCT}" '
        f'data-over="{OVER_PCT}" data-full="{int(full)}">',
        '<title id="feeder-t">One-line diagram of the feeder</title>',
        f'<desc id="feeder-d">{escape(desc)}</desc>',
    ]
    for r, row in zip(d.branches, branches, strict=True):
        (x1, y1), (x2, y2) = at(r.frm), at(r.to)
        kind = " trafo" if r.kind == "trafo" else ""
        out.append(
            f'<line id="fd-{row.key}" class="br{kind} {row.cls}" data-name="{escape(row.name)}" '
            f'x1="{x1:.1f}" y1="{y1:.1f}" '
            f'x2="{x2:.1f}" y2="{y2:.1f}"><title>{escape(row.name)}: {escape(row.figure)}'
            "</title></line>"
        )
    for r in d.branches:
        if r.kind == "trafo":  # named on the drawing: where the feeder meets the town's grid
            (x1, y1), (x2, y2) = at(r.frm), at(r.to)
            anchor = "end" if (x1 + x2) / 2 > width / 2 else "start"
            dx = -8 if anchor == "end" else 8
            out.append(
                f'<text class="lbl" x="{(x1 + x2) / 2 + dx:.1f}" y="{(y1 + y2) / 2 + 4:.1f}" '
                f'text-anchor="{anchor}">transformer</text>'
            )
    for k, row in enumerate(buses):
        x, y = at(k)
        homes = f" (homes: {row.homes})" if row.homes else ""
        out.append(
            f'<circle id="fd-{row.key}" class="bus {row.cls}" data-name="{escape(row.name)}" '
            f'data-homes="{escape(row.homes)}" cx="{x:.1f}" cy="{y:.1f}" r="4">'
            f"<title>{escape(row.name)}: {escape(row.figure)}{escape(homes)}</title></circle>"
        )
    out.append("</svg>")
    return Markup("".join(out))
