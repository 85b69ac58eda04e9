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
from gridctl.web.svg import Series, line_chart
from gridctl.web.timeline import (
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
    "This run's ledger records no community forecast, so there is no forecast to set against "
    "what happened."
)
"""Said in place of a forecast-vs-actual chart (the ledger holds forecasts only per household,
as flexibility baselines, which are not public)."""


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
        data = slots(w, view.aggregates(w.first, w.last))
        return web.render(
            request, "timeline.html", w=w, span=span, day=day, title=title(w), charts=charts(
                w, data, view.kpis()), rows=[(slot_label(w, s), s) for s in data],
            prev=w.shifted(-1) if w.first > view.first else None,
            next=w.shifted(1) if w.last < view.last else None, series=POWER_SERIES, fmt=cell,
        )  # fmt: skip

    return r


def charts(w: Window, data: list[Slot], kpis: dict[str, object]) -> list[dict[str, object]]:
    """The page's charts: heading, SVG and a note each."""
    labels = axis_labels(w)
    n = len(data)

    def series(*names: str) -> list[Series]:
        return [Series(POWER_SERIES[k], [getattr(s, k) for s in data]) for k in names]

    def extremes(ss: list[Series], unit: str) -> str:
        parts = []
        for s in ss:
            known = [v for v in s.values if v is not None]
            parts.append(f"{s.name}: from {min(known):.1f} to {max(known):.1f} {unit}"
                         if known else f"{s.name}: not known")  # fmt: skip
        return "; ".join(parts) + "."

    grid = series("grid_kw")
    energy = series("pv_kw", "demand_kw", "shared_kw")
    held = series("curtailed_kw")
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
    if any(v is not None for v in held[0].values):
        out.append({"heading": "Solar held back (curtailment)", "series": held,
                    "svg": line_chart(held, labels, n, "kW", "Solar held back",
                                      extremes(held, "kW")),
                    "note": "Solar power the community asked panels to hold back to keep the "
                            "cable within its limits."})  # fmt: skip
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
    out.append({"heading": "Forecast and what happened", "series": [], "svg": None,
                "note": FORECAST_NOTE})  # fmt: skip
    return out
