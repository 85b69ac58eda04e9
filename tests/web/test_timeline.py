"""The public timeline: windows and slots against the ledger's aggregates, the page's charts,
table, navigation and its 4xx answers."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest

from gridctl.core import INTERVAL_S, interval_start
from gridctl.settlement.aggregates import AggregateRow
from gridctl.web.svg import Series, line_chart, nice_ticks
from gridctl.web.timeline import band_v, slots, window

from .helpers import Site, sim_dir_fixture, site_fixture  # noqa: F401


def _ix(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, tzinfo=UTC).timestamp()) // INTERVAL_S


def test_windows_are_utc_days_iso_weeks_and_calendar_months() -> None:
    d = window("day", date(2026, 6, 21))
    assert (d.first, d.last, d.slots) == (_ix(2026, 6, 21), _ix(2026, 6, 22) - 1, 96)
    w = window("week", date(2026, 6, 21))  # a Sunday: its week began Monday the 15th
    assert w.start == date(2026, 6, 15) and w.slots == 168 and w.last == _ix(2026, 6, 22) - 1
    m = window("month", date(2026, 2, 10))
    assert m.start == date(2026, 2, 1) and m.slots == 28 and m.last == _ix(2026, 3, 1) - 1
    assert window("month", date(2026, 12, 5)).shifted(1).start == date(2027, 1, 1)
    assert window("month", date(2026, 1, 5)).shifted(-1).start == date(2025, 12, 1)
    assert window("week", date(2026, 6, 21)).shifted(-1).start == date(2026, 6, 8)


def _row(interval: int, **kw: int | None) -> AggregateRow:
    base = dict.fromkeys(AggregateRow._fields, 0)
    return AggregateRow(**(base | {"interval": interval, "k": 5, "households": 9} | kw))


def test_slots_average_power_and_keep_withheld_figures_unknown() -> None:
    w = window("week", date(2026, 6, 15))
    rows = [_row(w.first, grid_import_wh=1000, grid_export_wh=200, pv_wh=400, v_min_mv=229_000,
                 v_max_mv=240_000),
            _row(w.first + 1, grid_import_wh=0, grid_export_wh=600, pv_wh=None,
                 v_min_mv=231_000, v_max_mv=241_500)]  # fmt: skip
    s = slots(w, rows)
    assert len(s) == 168 and s[0].intervals == 2
    # 200 Wh net over half an hour: 0.4 kW drawn from the grid
    assert s[0].grid_kw == pytest.approx(0.4)
    assert s[0].pv_kw is None, "one withheld interval makes the slot's figure unknown"
    assert (s[0].v_min_v, s[0].v_max_v) == (229.0, 241.5)
    assert s[1].grid_kw is None and s[1].intervals == 0


def test_band_is_the_runs_or_says_it_is_not() -> None:
    assert band_v({"voltage_band_min_pu": 0.9, "voltage_band_max_pu": 1.1}) == (
        (pytest.approx(207.0), pytest.approx(253.0)), True)  # fmt: skip
    (lo, hi), recorded = band_v({"voltage_band_min_pu": float("nan")})
    assert not recorded and lo < 230 < hi


def test_chart_is_an_svg_image_with_gaps_and_the_band() -> None:
    assert nice_ticks(-27.3, 8.1) == [-30, -20, -10, 0, 10]
    svg = line_chart([Series("a", [1.0, 2.0, None, 3.0, 4.0])], [(0, "00:00")], 5, "kW",
                     "Test chart", "a from 1 to 4", band=(0.5, 3.5))  # fmt: skip
    assert 'role="img"' in svg and "<title" in svg and "<desc" in svg and "style=" not in svg
    assert svg.count("<polyline") == 2, "a gap splits the line"
    assert 'class="band"' in svg


def test_timeline_page_shows_the_ledgers_figures(site: Site) -> None:
    client = site.client()
    page = client.get("/timeline")
    assert page.status_code == 200
    html = page.text
    assert html.count('<svg class="chart"') == 5, (
        "transformer, energy, voltage, forecast and what happened at the transformer and of "
        "solar and use (nothing curtailed: no curtailment chart)")  # fmt: skip
    assert "Forecast and what happened: the transformer" in html
    day = interval_start(site.view.last).date()
    assert re.search(r'aria-current="page">Day<', html) and day.strftime("%d %B %Y") in html
    rows = re.findall(r"<tr><th scope=\"row\">(\d\d:\d\d)</th>((?:<td>[^<]*</td>)+)</tr>", html)
    assert len(rows) == 96
    agg = site.view.aggregates(site.view.first, site.view.last)
    by_time = {r[0]: re.findall(r"<td>([^<]*)</td>", r[1]) for r in rows}
    first = agg[0]
    cells = by_time[interval_start(first.interval).strftime("%H:%M")]
    kw = (first.grid_import_wh - first.grid_export_wh) / 0.25 / 1000
    assert cells[0] == f"{kw:.2f}" and cells[-2] == f"{first.v_min_mv / 1000:.1f}"
    settled = {interval_start(r.interval).strftime("%H:%M") for r in agg}
    assert all(c[0] == "–" for t, c in by_time.items() if t not in settled)
    assert 'rel="prev"' not in html and 'rel="next"' not in html, "a one-day run"
    assert client.get(f"/timeline?span=week&start={day}").text.count('<th scope="row"><a') == 168


@pytest.mark.parametrize(
    ("url", "status", "says"),
    [("/timeline?span=year", 400, "invalid span"), ("/timeline?start=2026-13-01", 400,
      "invalid start"), ("/timeline?start=1999-01-01", 404, "settled"),
     ("/timeline?start=9999-12-31&span=month", 404, "No settled intervals")],
)  # fmt: skip
def test_timeline_bad_input_is_a_4xx_page(site: Site, url: str, status: int, says: str) -> None:
    r = site.client().get(url)
    assert r.status_code == status and says in r.text and "Traceback" not in r.text
