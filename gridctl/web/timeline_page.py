"""``/timeline``: the public timeline page (community figures only), charts drawn on the server.

``?span=day|week|month`` (default day) and ``?start=YYYY-MM-DD`` (any day inside the span;
default the last settled day). A day outside the settled run is a 404 naming the settled days.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from gridctl.core import interval_start
from gridctl.web.feeder_svg import STATES, busiest_figure
from gridctl.web.svg import Series, line_chart
from gridctl.web.timeline import (
    PLAN_SERIES,
    POWER_SERIES,
    Slot,
    Span,
    Window,
    axis_labels,
    band_v,
    cell,
    slot_label,
    slots,
    title,
    window,
)

if TYPE_CHECKING:
    from gridctl.web.app import WebApp

FORECAST_NOTE = (
    "This run has no plan log (plans.sqlite: runs made before it was added have none), so "
    "there is no forecast to set against what happened."
)
"""Said in place of the forecast-vs-actual charts without a plan log (the ledger holds
forecasts only per household, as flexibility baselines, which are not public)."""
NO_PLANS_NOTE = "No plan was recorded for these days."
"""Said in place of the forecast-vs-actual charts when the plan log has none in the window."""


def router(web: WebApp) -> APIRouter:
    """The timeline's routes over ``web``'s run."""
    r = APIRouter()

    @r.get("/timeline")
    def timeline(
        request: Request,
        span: Annotated[Span, Query()] = "day",
        start: Annotated[date | None, Query()] = None,
    ) -> Response:
        view = web.view
        if view.first is None or view.last is None:
            return web.render(request, "timeline.html", w=None, span=span)
        first_day = interval_start(view.first).date()
        last_day = interval_start(view.last).date()
        day = start or last_day
        if not first_day <= day <= last_day:
            settled = f"{first_day.isoformat()} to {last_day.isoformat()}"
            raise HTTPException(404, f"No settled intervals on {day.isoformat()}: this run "
                                f"settled {settled}.")  # fmt: skip
        w = window(span, day)
        data = slots(w, view.aggregates(w.first, w.last), view.plans(w.first, w.last))
        planned = any(getattr(s, k) is not None for s in data for k in PLAN_SERIES)
        operator = web.operator(request)
        feeder = busiest_figure(view.dir, operator, w.first, w.last) if span == "day" else None
        return web.render(
            request, "timeline.html", w=w, span=span, day=day, title=title(w), charts=charts(
                w, data, view.kpis(), view.plans_path.is_file()),
            rows=[(slot_label(w, s), s) for s in data],
            prev=w.shifted(-1) if w.first > view.first else None,
            next=w.shifted(1) if w.last < view.last else None,
            series=POWER_SERIES | PLAN_SERIES if planned else POWER_SERIES, fmt=cell,
            feeder=feeder, operator=operator, states=STATES, busiest=True,
        )  # fmt: skip

    return r


def charts(
    w: Window, data: list[Slot], kpis: dict[str, object], logged: bool
) -> list[dict[str, object]]:
    """The page's charts: heading, SVG and a note each. logged: the run has a plan log."""
    labels = axis_labels(w)
    n = len(data)
    names = POWER_SERIES | PLAN_SERIES

    def series(*keys: str) -> list[Series]:
        return [Series(names[k], [getattr(s, k) for s in data]) for k in keys]

    def known(ss: list[Series]) -> list[Series]:
        return [s for s in ss if any(v is not None for v in s.values)]

    grid = series("grid_kw")
    energy = series("pv_kw", "demand_kw", "shared_kw")
    # planned curtailment only where the plan held some back (a line at zero says nothing)
    held = known(series("curtailed_kw")) + [
        s for s in series("plan_curtailed_kw") if any(v for v in s.values)
    ]
    (lo, hi), recorded = band_v(kpis)
    volts = [Series("Lowest at a meter", [s.v_min_v for s in data]),
             Series("Highest at a meter", [s.v_max_v for s in data])]  # fmt: skip
    out: list[dict[str, object]] = [
        {"heading": "Power through the transformer", "series": grid,
         "svg": line_chart(grid, labels, n, "kW", "Power through the transformer",
                           extremes(grid, "kW")),
         "note": "Above zero the street draws power from the town's grid; below zero it sends "
                 "its spare solar power out."},
        {"heading": "Solar, use and sharing", "series": energy,
         "svg": line_chart(energy, labels, n, "kW", "Solar, use and sharing",
                           extremes(energy, "kW")),
         "note": "Average power over each slot. Gaps: a figure withheld because it would cover "
                 "too few homes, or not recorded."},
    ]  # fmt: skip
    if held:
        out.append({"heading": "Solar held back (curtailment)", "series": held,
                    "svg": line_chart(held, labels, n, "kW", "Solar held back",
                                      extremes(held, "kW")),
                    "note": "Solar power the community asked panels to hold back to keep the "
                            "cable within its limits (what the plan held back, and what was "
                            "recorded where the ledger has it)."})  # fmt: skip
    else:
        out.append({"heading": "Solar held back (curtailment)", "series": [], "svg": None,
                    "note": "Not recorded in this run's ledger for these days."})  # fmt: skip
    band_note = "the run's band" if recorded else "the usual band (the run does not record its own)"
    out.append(
        {"heading": "Voltage", "series": volts,
         "svg": line_chart(volts, labels, n, "V", "Voltage at the meters",
                           extremes(volts, "V") + f" Band {lo:.1f} to {hi:.1f} V.",
                           band=(lo, hi)),
         "note": f"Lowest and highest voltage the homes' meters reported; the shaded band is "
                 f"{band_note}, {lo:.1f} to {hi:.1f} V."}
    )  # fmt: skip
    return out + forecast_charts(w, data, logged)


def forecast_charts(w: Window, data: list[Slot], logged: bool) -> list[dict[str, object]]:
    """The forecast and plan of each interval against what was settled: the transformer, and
    solar and use; a note in their place without plans."""
    labels, n = axis_labels(w), len(data)
    if not any(getattr(s, k) is not None for s in data for k in PLAN_SERIES):
        return [{"heading": "Forecast and what happened", "series": [], "svg": None,
                 "note": NO_PLANS_NOTE if logged else FORECAST_NOTE}]  # fmt: skip
    names = POWER_SERIES | PLAN_SERIES
    out = []
    for heading, keys in (
        ("Forecast and what happened: the transformer", ("plan_grid_kw", "grid_kw")),
        ("Forecast and what happened: solar and use",
         ("plan_pv_kw", "pv_kw", "plan_demand_kw", "demand_kw")),
    ):  # fmt: skip
        ss = [Series(names[k], [getattr(s, k) for s in data]) for k in keys]
        desc = extremes(ss, "kW")
        out.append({"heading": heading, "series": ss,
                    "svg": line_chart(ss, labels, n, "kW", heading, desc),
                    "note": "The forecast and plan made as each interval began, summed over "
                            "every home, against what was settled (solar: what the panels "
                            "could give; use: with the cars' planned charging)."})  # fmt: skip
    return out


def extremes(ss: list[Series], unit: str) -> str:
    """Each series' lowest and highest value in words (a chart's description)."""
    parts = []
    for s in ss:
        known = [v for v in s.values if v is not None]
        parts.append(f"{s.name}: from {min(known):.1f} to {max(known):.1f} {unit}"
                     if known else f"{s.name}: not known")  # fmt: skip
    return "; ".join(parts) + "."
