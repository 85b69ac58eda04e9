"""``/households/{id}``: a household's devices now and its plan (coordinator mode; followed
live through ``/households/{id}/live``, server-sent events), and its own statement, per month
(``?month=YYYY-MM``, default the last settled) with a row per day, or one day
(``?day=YYYY-MM-DD``) with its intervals and their inclusion proofs; the plain-language line of
each case and flexibility request; what it would have paid on its own. Only that household or
the operator (``authorize``).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from markupsafe import Markup

from gridctl.core import INTERVALS_PER_DAY, MICRO, W_PER_KW, interval_start
from gridctl.web.devices_now import own_state
from gridctl.web.explain import case_line, flex_line
from gridctl.web.household_live import HouseholdLive
from gridctl.web.live_routes import event_stream
from gridctl.web.on_its_own import OnItsOwn, on_its_own
from gridctl.web.run_view import RunView
from gridctl.web.security import COOKIE
from gridctl.web.statements import Totals

if TYPE_CHECKING:
    from gridctl.web.app import WebApp

HOUSEHOLD_ID = r"^[A-Za-z0-9_-]{1,32}$"
HouseholdId = Annotated[str, PathParam(pattern=HOUSEHOLD_ID)]
MONTH = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
AGE_S = 5.0
"""A household's live stream looks again at least this often, s (the telemetry's age)."""
PROOF_VIEW = Path(__file__).parent / "static" / "proof-view.js"
"""The in-browser proof check (binds every ``button[data-proof-url]``), when the app ships it."""
NOT_KNOWN = (
    "What your home would have paid on its own is not known here: this ledger was settled "
    "without the grid's prices, and gridctl does not guess them."
)
"""Said in place of the ``home`` counterfactual when the ledger has no grid price."""


def money(micro: int) -> str:
    """Micro-units as currency units with 2 decimals."""
    return f"{micro / MICRO:.2f}"


def kwh(wh: int) -> str:
    """Wh as kWh with 2 decimals."""
    return f"{wh / W_PER_KW:.2f} kWh"


def figures(t: Totals) -> list[tuple[str, str]]:
    """A statement's lines in plain words: (what, value); lines that are zero and rare left out."""
    rows = [
        ("Energy you drew from the grid", kwh(t.import_wh)),
        ("Energy you fed in (shared with neighbours first)", kwh(t.export_wh)),
        ("Paid for energy received from neighbours", money(t.pool_paid)),
        ("Earned for energy you shared", money(t.pool_earned)),
        ("Tokens for sharing", money(t.tokens_shared)),
        ("Flexibility delivered", kwh(t.flex_wh)),
        ("Paid to you for flexibility", money(t.flex_paid)),
        ("Tokens for flexibility", money(t.tokens_flex)),
    ]
    rare = [("With the grid (positive: received)", t.grid), ("Held until physics confirms "
            "your reading (negative: paid back)", t.held), ("Tokens held", t.held_tokens),
            ("Other", t.other)]  # fmt: skip
    return rows + [(what, money(v)) for what, v in rare if v]


def alone_rows(o: OnItsOwn) -> list[tuple[str, str]]:
    """The counterfactual in plain words: (what, amount paid; negative: earned)."""
    return [
        (f"On your own: {kwh(o.import_wh)} drawn, all at the grid's import price",
         money(o.alone_import)),
        (f"On your own: {kwh(o.export_wh)} fed in, all at the grid's feed-in price",
         money(-o.alone_feed_in)),
        ("On your own, in all", money(o.alone)),
        ("In the community: paid to neighbours for energy received", money(o.pool_paid)),
        ("In the community: earned from neighbours for energy shared", money(-o.pool_earned)),
        (f"In the community: the rest drawn from the grid, {kwh(o.grid_import_wh)}",
         money(o.grid_import)),
        (f"In the community: the rest fed into the grid, {kwh(o.grid_export_wh)}",
         money(-o.grid_feed_in)),
        ("In the community, in all", money(o.community)),
    ]  # fmt: skip


def cells(t: Totals) -> Markup:
    """A row's cells for a month's or a day's totals: drew and fed in (kWh), paid, earned
    (pool and flexibility), tokens, flexibility delivered (kWh)."""
    values = (kwh(t.import_wh)[:-4], kwh(t.export_wh)[:-4], money(t.pool_paid),
              money(t.pool_earned + t.flex_paid), money(t.tokens_shared + t.tokens_flex),
              kwh(t.flex_wh)[:-4])  # fmt: skip
    return Markup("".join(f"<td>{v}</td>" for v in values))


def router(web: WebApp) -> APIRouter:
    """The household page's route over ``web``'s run."""
    r = APIRouter()

    @r.get("/households/{household}")
    def household_page(
        request: Request,
        household: HouseholdId,
        month: Annotated[str | None, Query(pattern=MONTH)] = None,
        day: Annotated[date | None, Query()] = None,
    ) -> Response:
        web.authorize(request, household)
        view = web.view
        days = view.statements.days(household)
        months = _months(days)
        store = _own_live(request)
        ctx: dict[str, object] = {
            "household": household, "figures": figures, "months": months, "cells": cells,
            "not_known": NOT_KNOWN, "alone_rows": alone_rows, "money": money,
            "proof_js": PROOF_VIEW.is_file(), "start": _hhmm,
            "own": None if store is None else _own(store, household),
        }  # fmt: skip
        if day is not None:
            if day not in days:
                raise HTTPException(404, f"{household} has no settled statement on {day}.")
            first = _interval(day)
            rows = view.statements.intervals(household, first, first + INTERVALS_PER_DAY - 1)
            roots = view.roots(first, first + INTERVALS_PER_DAY - 1)
            alone = on_its_own(view.ledger, household, first, first + INTERVALS_PER_DAY - 1,
                               days[day])  # fmt: skip
            return web.render(
                request, "household.html", **ctx, day=day, total=days[day], rows=rows,
                roots=roots, lines=_lines(view, household, day, day), month=day.strftime("%Y-%m"),
                alone=alone,
            )  # fmt: skip
        if not days:
            return web.render(request, "household.html", **ctx, day=None, month=None, total=None)
        month = month or max(days).strftime("%Y-%m")
        in_month = {d: t for d, t in days.items() if d.strftime("%Y-%m") == month}
        if not in_month:
            raise HTTPException(404, f"{household} has no settled statement in {month}.")
        total = months[month]
        lo, hi = _interval(min(in_month)), _interval(max(in_month) + timedelta(days=1)) - 1
        return web.render(
            request, "household.html", **ctx, day=None, month=month, total=total,
            month_days=in_month, lines=_lines(view, household, min(in_month), max(in_month)),
            alone=on_its_own(view.ledger, household, lo, hi, total),
        )  # fmt: skip

    @r.get("/households/{household}/live")
    async def household_live(request: Request, household: HouseholdId) -> Response:
        s = web.authorize(request, household)
        store = _own_live(request)
        if store is None:
            raise HTTPException(404, "No devices now: this server shows a finished simulation.")
        return event_stream(
            request, "household", lambda: _own(store, household), store.changed, AGE_S,
            allowed=lambda: web.sessions.get(request.cookies.get(COOKIE)) is s,
        )  # fmt: skip

    return r


def _own_live(request: Request) -> HouseholdLive | None:
    """The households' live state (coordinator mode), None for a finished simulation."""
    live = getattr(request.app.state, "live", None)
    return None if live is None else live.households


def _own(store: HouseholdLive, household: str) -> dict:
    """The household's devices now and plan (``devices_now.own_state``)."""
    return own_state(store.telemetry.get(household), store.plans.get(household), store.clock())


def _interval(d: date) -> int:
    return (d - date(1970, 1, 1)).days * INTERVALS_PER_DAY


def _hhmm(interval: int) -> str:
    return interval_start(interval).strftime("%H:%M")


def _months(days: dict[date, Totals]) -> dict[str, Totals]:
    """The household's totals per month (YYYY-MM), in month order."""
    out: dict[str, Totals] = {}
    for d, t in days.items():
        out.setdefault(d.strftime("%Y-%m"), Totals()).add(t)
    return {m: out[m] for m in sorted(out)}


def _lines(view: RunView, household: str, first: date, last: date) -> list[tuple[date, str]]:
    """The plain-language lines of the household's cases and flexibility requests whose
    interval (a request: the start of its window) falls on a day first…last, in time order."""
    lo, hi = _interval(first), _interval(last + timedelta(days=1)) - 1
    out = [(ev.first, flex_line(ev, d)) for ev, d in view.flex(household)
           if lo <= ev.first <= hi]  # fmt: skip
    out += [(iv, case_line(iv, o, m, dev)) for iv, o, m, dev in view.cases(household)
            if lo <= iv <= hi]  # fmt: skip
    return [(interval_start(iv).date(), line) for iv, line in sorted(out)]
