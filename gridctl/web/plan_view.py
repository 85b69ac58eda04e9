"""The community page's "Plan and actual": the community's plan of an interval beside what its
last settled interval did, and the grid operator's envelopes and events in force, in words.

Community-level only: a plan's sums are shown as published (``CommunityPlanMessage.public``:
withheld below k households), the actual from the ledger's public aggregates (withheld the
same way), and a household's own limit only as a count of households.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gridctl.core import W_PER_KW, interval_hours, interval_start
from gridctl.dispatch.plan_log import last_plan
from gridctl.protocol import CommunityPlanMessage, InForce
from gridctl.settlement.aggregates import COVERS, AggregateRow
from gridctl.web.run_view import RunView

ROWS = {
    "trafo": "Transformer",
    "pv": "Solar",
    "use": "Use (with cars)",
    "shared": "Shared",
    "curtail": "Solar held back",
    "battery": "Batteries",
}
"""The figures of the plan-and-actual table, by key (element ids ``plan-KEY``, ``actual-KEY``)."""
WITHHELD = "withheld (too few homes)"
WHEN = "%d %b %H:%M"
"""How the table's head dates an interval (UTC, as the caption says)."""
STANDING_S = 10 * 365 * 86_400
"""A limit ending further ahead than this is a standing one ("until further notice"), s."""
UNKNOWN = "–"


def _kw(w: float) -> str:
    return f"{w / W_PER_KW:.1f} kW"


def _limit(w: float) -> str:
    return f"{w / W_PER_KW:.4g} kW"


def _trafo(w: float) -> str:
    if abs(w) < 50:
        return "about 0 kW"
    return f"{_kw(abs(w))} {'from the grid' if w > 0 else 'to the grid'}"


def _battery(w: float) -> str:
    if abs(w) < 50:
        return "idle"
    return f"{'charging' if w > 0 else 'discharging'} {_kw(abs(w))}"


def plan_figures(p: CommunityPlanMessage) -> dict[str, str]:
    """The plan's figures for people, by ``ROWS`` key (``p`` as it may be published)."""
    if p.trafo_w is None:  # the sums go together: all withheld, or all known
        return dict.fromkeys(ROWS, WITHHELD)
    assert p.pv_w is not None and p.load_w is not None and p.ev_w is not None
    assert p.shared_w is not None and p.curtail_w is not None and p.battery_w is not None
    return {
        "trafo": _trafo(p.trafo_w),
        "pv": _kw(max(-p.pv_w - p.curtail_w, 0)) + f" (forecast {_kw(-p.pv_w)})",
        "use": _kw(p.load_w + p.ev_w),
        "shared": _kw(p.shared_w),
        "curtail": _kw(p.curtail_w),
        "battery": _battery(p.battery_w),
    }


def actual_figures(r: AggregateRow) -> dict[str, str]:
    """What a settled interval did, as average powers over it, by ``ROWS`` key: a figure
    covering no household is unknown ("–"), one covering fewer than k withheld."""
    h = interval_hours()

    def kw(name: str) -> str:
        wh = getattr(r, name)
        if wh is None:
            return UNKNOWN if getattr(r, COVERS[name]) == 0 else WITHHELD
        return _kw(wh / h)

    trafo = (
        kw("grid_import_wh") if r.grid_import_wh is None or r.grid_export_wh is None
        else _trafo((r.grid_import_wh - r.grid_export_wh) / h)
    )  # fmt: skip
    return {
        "trafo": trafo, "pv": kw("pv_wh"), "use": kw("demand_wh"), "shared": kw("shared_wh"),
        "curtail": kw("curtailed_wh"), "battery": UNKNOWN,
    }  # fmt: skip


def actual_facts(row: AggregateRow | None) -> dict[str, object] | None:
    """A settled interval as the page and ``/live`` show it (JSON-ready; None without one):
    its interval and start and its figures (``actual_figures``)."""
    if row is None:
        return None
    start = interval_start(row.interval).strftime(WHEN)
    return {"interval": row.interval, "start": start, "figures": actual_figures(row)}


def _at(t_s: int, day: datetime) -> str:
    t = datetime.fromtimestamp(t_s, tz=UTC)
    return t.strftime("%H:%M UTC") if t.date() == day.date() else t.strftime("%d %b %H:%M UTC")


def in_force_words(item: InForce, interval: int) -> str:
    """One envelope or event in force in ``interval``, in plain words."""
    day = interval_start(interval)
    standing = item.end_s - day.timestamp() > STANDING_S
    until = "until further notice" if standing else f"until {_at(item.end_s, day)}"
    src = f" (source: {item.source})"
    if item.households:
        homes = f"{item.households} home{'s' if item.households > 1 else ''}"
        if item.kind == "event":
            return (f"The grid operator asks {homes} to use less from the grid or send less to "
                    f"it (event {item.event_id}) {until}{src}.")  # fmt: skip
        return f"The grid operator limits the connections of {homes} {until}{src}."
    limits = [(way, w) for way, w in (("export", item.export_max_w),
                                       ("import", item.import_max_w)) if w is not None]  # fmt: skip
    sentences = []
    if item.kind == "event":
        held = " and ".join(f"{way} at or below {_limit(w)}" for way, w in limits) or "power down"
        sentences.append(f"The grid operator asks the community to keep the feeder's {held} "
                         f"(flexibility event {item.event_id}) {until}{src}.")  # fmt: skip
    elif limits:
        to = " and its ".join(f"{way} to {_limit(w)}" for way, w in limits)
        sentences.append(f"The grid operator limits the feeder's {to} {until}{src}.")
    if item.controllable_max_w is not None:
        sentences.append(f"The grid operator dims every home's chargers and batteries "
                         f"(§14a) to {_limit(item.controllable_max_w)} {until}{src}.")  # fmt: skip
    return " ".join(sentences) or f"The grid operator has an envelope in force {until}{src}."


def plan_facts(p: CommunityPlanMessage | None) -> dict[str, object] | None:
    """A plan as the page and ``/live`` show it (JSON-ready; None without one): its interval
    and start, its figures (``plan_figures``) and what is in force, in words."""
    if p is None:
        return None
    p = p.public()
    return {
        "interval": p.interval,
        "start": interval_start(p.interval).strftime(WHEN),
        "households": p.households,
        "figures": plan_figures(p),
        "in_force": [in_force_words(i, p.interval) for i in p.in_force],
    }


def section(view: RunView, live: CommunityPlanMessage | None) -> dict[str, object]:
    """What the page's "Plan and actual" shows: the plan (``live``, the coordinator's latest,
    else the plan log's last), the last settled interval's figures and the rows' names."""
    plan = live or last_plan(view.plans_path)
    last = view.last
    rows = view.aggregates(last, last) if last is not None else []
    return {
        "plan": plan_facts(plan),
        "actual": actual_facts(rows[0] if rows else None),
        "rows": ROWS,
        "logged": view.plans_path.is_file(),
    }  # fmt: skip
