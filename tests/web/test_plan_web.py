"""The community page's "Plan and actual" and the timeline's forecast against what happened,
over a run directory (plans.sqlite from the run), an older one without it, a plan log whose
sums cover too few homes, and a coordinator's live plan (``/live.json``)."""

from __future__ import annotations

import html as html_lib
import re
import shutil
from pathlib import Path

import anyio
from fastapi.testclient import TestClient

from gridctl.core import INTERVAL_S, W_PER_KW, interval_hours, interval_start
from gridctl.dispatch.plan_log import PLANS_FILE, PlanLog, last_plan, read_plans
from gridctl.protocol import CommunityPlanMessage, InForce
from gridctl.settlement.aggregates import AggregateRow, OpenDataMessage
from gridctl.transport.session import BrokerSettings
from gridctl.web.app import create_app
from gridctl.web.auth import Accounts
from gridctl.web.coord_view import CoordinatorView
from gridctl.web.live import Live
from gridctl.web.plan_view import ROWS, WITHHELD, actual_facts, actual_figures, plan_facts
from gridctl.web.run_view import RunView
from gridctl.web.timeline_page import FORECAST_NOTE
from tests.sim.test_plan_log_sim import NoonRun, noon_run_fixture  # noqa: F401
from tests.web.helpers import Site, sim_dir_fixture, site_fixture  # noqa: F401


def _client(view: RunView, live: Live | None = None) -> TestClient:
    return TestClient(create_app(view, Accounts(), live=live), raise_server_exceptions=False)


def _cells(html: str, side: str) -> dict[str, str]:
    """The plan's (``side`` "plan") or the actual's ("actual") cells of the page, by row key."""
    return {k: v for k, v in re.findall(rf'<td id="{side}-(\w+)">([^<]*)</td>', html)}


def _in_force(html: str) -> list[str]:
    ul = re.search(r'<ul id="plan-in-force">(.*?)</ul>', html, re.S)
    assert ul is not None
    return [html_lib.unescape(t) for t in re.findall(r"<li>([^<]*)</li>", ul.group(1))]


def test_a_runs_page_sets_its_last_plan_beside_its_last_settled_interval(site: Site) -> None:
    html = _client(site.view).get("/").text
    plan = last_plan(site.view.plans_path)
    assert plan is not None and plan.interval == site.view.last
    assert plan.households == 14 and plan.trafo_w is not None, "the default run: 14 ≥ k homes"
    got = _cells(html, "plan")
    assert set(got) == set(ROWS)
    trafo = plan.trafo_w / W_PER_KW
    assert got["trafo"] == (
        "about 0 kW" if abs(trafo) < 0.05  # the batteries carry the night
        else f"{abs(trafo):.1f} kW {'from' if trafo > 0 else 'to'} the grid"
    )  # fmt: skip
    assert got["use"] == f"{(plan.load_w + plan.ev_w) / W_PER_KW:.1f} kW"  # type: ignore[operator]
    (row,) = site.view.aggregates(site.view.last, site.view.last)
    actual = _cells(html, "actual")
    net_kw = (row.grid_import_wh - row.grid_export_wh) / interval_hours() / W_PER_KW  # type: ignore[operator]
    assert actual["trafo"] == f"{abs(net_kw):.1f} kW {'from' if net_kw > 0 else 'to'} the grid"
    assert actual["pv"] == f"{row.pv_wh / interval_hours() / W_PER_KW:.1f} kW"  # type: ignore[operator]
    start = interval_start(plan.interval).strftime("%d %b %H:%M")
    assert f'<span id="plan-when">{start}</span>' in html
    assert _in_force(html) == ["None in this interval."]
    for h in site.view.households:
        assert h not in html


def test_the_envelope_and_event_in_force_are_said_in_words(noon_run: NoonRun) -> None:
    view = RunView(noon_run.dir)
    html = _client(view).get("/").text
    assert _in_force(html) == [
        "The grid operator asks the community to keep the feeder's export at or below 12 kW "
        "(flexibility event noon-1) until 15:00 UTC (source: events)."
    ]
    day = interval_start(view.last).date()
    page = _client(view).get(f"/timeline?start={day}").text
    assert page.count('<svg class="chart"') == 6 and FORECAST_NOTE not in page
    assert "Forecast and what happened: the transformer" in page
    assert '<th scope="col">At the transformer, planned</th>' in page
    # each planned slot's cells are the plan's sums, kW (table: 5 settled columns, then 4)
    rows = dict(re.findall(r'<tr><th scope="row">(\d\d:\d\d)</th>((?:<td>[^<]*</td>)+)</tr>', page))
    for p in noon_run.plans:
        cells = re.findall(r"<td>([^<]*)</td>", rows[interval_start(p.interval).strftime("%H:%M")])
        want = [p.trafo_w / 1000, -p.pv_w / 1000, (p.load_w + p.ev_w) / 1000, p.curtail_w / 1000]  # type: ignore[operator]
        assert cells[5:9] == [f"{x:.2f}" for x in want]
    # the envelope's intervals: held at the limit in words, as planned
    limited = next(p for p in noon_run.plans if p.feeder_export_max_w == 8000)
    words = plan_facts(limited)
    assert words is not None and words["in_force"] == [
        "The grid operator limits the feeder's export to 8 kW until 14:00 UTC (source: config)."
    ]


def test_an_older_run_without_a_plan_log_says_so(site: Site, tmp_path: Path) -> None:
    shutil.copy(site.view.ledger, tmp_path / "ledger.sqlite")
    view = RunView(tmp_path)
    html = _client(view).get("/").text
    assert "no plan log (plans.sqlite)" in html and set(_cells(html, "plan").values()) == {"–"}
    assert _cells(html, "actual")["trafo"].endswith("the grid"), "the actual is in the ledger"
    day = interval_start(view.last).date()  # type: ignore[arg-type]
    page = _client(view).get(f"/timeline?start={day}").text
    assert FORECAST_NOTE in page and "At the transformer, planned" not in page


def test_sums_covering_fewer_than_k_homes_are_withheld(site: Site, tmp_path: Path) -> None:
    shutil.copy(site.view.ledger, tmp_path / "ledger.sqlite")
    log = PlanLog(tmp_path / PLANS_FILE)
    for p in read_plans(site.view.plans_path, 0, 2**40):
        log.add(p.model_copy(update={"k": 15}))  # 14 homes: too few for k = 15
    log.close()
    view = RunView(tmp_path)
    html = _client(view).get("/").text
    assert set(_cells(html, "plan").values()) == {WITHHELD}
    day = interval_start(view.last).date()  # type: ignore[arg-type]
    page = _client(view).get(f"/timeline?start={day}").text
    assert "At the transformer, planned" not in page and "No plan was recorded" in page


def test_a_coordinators_live_plan_is_on_the_page_and_in_live_json(site: Site) -> None:
    view = CoordinatorView(site.view.ledger, lambda: (site.view.last + 2) * INTERVAL_S)
    # a broker nobody listens on: the page shows what Live kept
    live = Live("oak", BrokerSettings(port=1, username="web", password="x"))
    client = _client(view, live)
    logged = last_plan(site.view.plans_path)
    assert logged is not None
    assert _cells(client.get("/").text, "plan") == plan_facts(logged)["figures"]  # type: ignore[index]
    feeder = InForce(kind="envelope", source="openadr", export_max_w=40_000,
                     start_s=0, end_s=(site.view.last + 5) * INTERVAL_S)  # fmt: skip
    live.plan = CommunityPlanMessage(
        interval=site.view.last + 1, households=14, k=5, load_w=3000, pv_w=-41_000,
        trafo_w=-40_000, battery_w=2000, ev_w=0, shared_w=2500, curtail_w=4000,
        feeder_export_max_w=40_000, in_force=[feeder],
    )  # fmt: skip
    html = client.get("/").text
    assert _cells(html, "plan") == {
        "trafo": "40.0 kW to the grid", "pv": "37.0 kW (forecast 41.0 kW)", "use": "3.0 kW",
        "shared": "2.5 kW", "curtail": "4.0 kW", "battery": "charging 2.0 kW",
    }  # fmt: skip
    until = interval_start(site.view.last + 5).strftime("%H:%M UTC")
    said = f"The grid operator limits the feeder's export to 40 kW until {until} (source: openadr)."
    assert _in_force(html) == [said]
    snap = client.get("/live.json").json()
    assert snap["plan"] == plan_facts(live.plan) and snap["plan"]["in_force"] == [said]
    # the coordinator's opendata broadcast: the last settled interval, live
    assert snap["actual"] is None
    (row,) = site.view.aggregates(site.view.last, site.view.last)
    topic = "gridctl/v1/oak/coordinator/opendata"
    anyio.run(live._on_message, topic, OpenDataMessage.of(row).model_dump_json().encode())
    assert client.get("/live.json").json()["actual"] == actual_facts(row)
    assert actual_facts(row)["figures"] == _cells(client.get("/").text, "actual")  # type: ignore[index]


def test_an_actual_figure_is_unknown_without_homes_and_withheld_below_k() -> None:
    row = AggregateRow(**(dict.fromkeys(AggregateRow._fields, 0) | {
        "interval": 1, "k": 5, "households": 9, "grid_import_wh": 1500, "grid_export_wh": 250,
        "grid_households": 9, "pv_wh": None, "pv_households": 0, "demand_wh": None,
        "demand_households": 3, "shared_wh": 500, "metered_households": 9,
        "curtailed_wh": None, "curtailed_households": 0,
    }))  # fmt: skip
    assert actual_figures(row) == {
        "trafo": "5.0 kW from the grid", "pv": "–", "use": WITHHELD, "shared": "2.0 kW",
        "curtail": "–", "battery": "–",
    }  # fmt: skip
