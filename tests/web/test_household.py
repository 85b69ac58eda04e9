"""A household's page: its statement per month and per day equals the ledger, each
flexibility request explained from what the ledger records (a real evening event on
stress-evening), no invented counterfactual, and bad input answered with a 4xx page."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from gridctl.core import INTERVAL_S, MICRO, interval_start
from gridctl.settlement import flex_records as rec
from gridctl.settlement.flex_records import DeliveryRow, FlexEventRow
from gridctl.settlement.statement import statement
from gridctl.sim.run import run_sim
from gridctl.web.explain import flex_line
from gridctl.web.run_view import RunView
from gridctl.web.serve import run_logins
from gridctl.web.statements import StatementIndex
from tests.web.helpers import Site, login, read_passwords, sim_dir_fixture, site_fixture  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
EVENT = {"id": "evening-1", "target": "feeder", "start": "2026-01-12T17:00:00Z",
         "end": "2026-01-12T20:00:00Z", "import_max_kw": 100.0, "price_per_kwh": 0.30}  # fmt: skip


def test_the_index_sums_every_households_statement(site: Site) -> None:
    idx = StatementIndex(site.view.ledger)
    idx.refresh()
    idx.refresh()  # nothing new: nothing counted twice
    for h in site.view.households:
        rows = statement(site.view.ledger, h)
        (day,) = idx.days(h)
        t = idx.days(h)[day]
        per_interval = idx.intervals(h, site.view.first, site.view.last)
        assert list(per_interval) == [r.interval for r in rows]
        for r in rows:
            i = per_interval[r.interval]
            assert (i.import_wh, i.pool_paid, i.tokens_shared) == (r.import_wh, r.paid, r.tokens)
        assert day == interval_start(rows[0].interval).date()
        assert t.import_wh == sum(r.import_wh or 0 for r in rows)
        assert t.export_wh == sum(r.export_wh or 0 for r in rows)
        assert t.pool_paid == sum(r.paid for r in rows)
        assert t.pool_earned + t.flex_paid + t.other == sum(r.earned for r in rows)
        assert t.tokens_shared + t.tokens_flex == sum(r.tokens for r in rows)
    assert any(idx.days(h)[day].tokens_shared > 0 for h in site.view.households)


@pytest.mark.parametrize(
    ("url", "status", "says"),
    [("?month=2026-13", 400, "invalid month"), ("?month=1999-01", 404, "no settled statement"),
     ("?day=2026-02-30", 400, "invalid day"), ("?day=1999-01-01", 404, "no settled statement"),
     ("?day=9999-12-31", 404, "no settled statement")],
)  # fmt: skip
def test_bad_month_or_day_is_a_4xx_page(site: Site, url: str, status: int, says: str) -> None:
    client = site.client()
    login(client, "h01", site.passwords["h01"])
    r = client.get(f"/households/h01{url}")
    assert r.status_code == status and says in r.text and "Traceback" not in r.text


def _event(
    direction: str = "import", first: int = 1_964_708, last: int = 1_964_719
) -> FlexEventRow:
    return FlexEventRow("ev/feeder/1", "events", "feeder", direction, 100_000, first, last,
                        300_000, first - 8)  # fmt: skip


def test_a_flexibility_request_in_plain_words() -> None:
    line = flex_line(_event(), DeliveryRow("ev/feeder/1", "h02", 4221, 8381, 4221, 1_266_300,
                                           8_442_000, 1_964_720))  # fmt: skip
    assert line.startswith("12 Jan from 17:00 to 20:00 UTC: your home's plan was changed to "
                           "draw 4.2 kWh less from the grid because the grid operator limited "
                           "how much the street's cable may draw from the grid to 100.0 kW")  # fmt: skip
    assert line.endswith("so 4.2 kWh counted as delivered: you received 1.27 and 8.44 tokens.")
    nothing = flex_line(_event(), DeliveryRow("ev/feeder/1", "h04", 0, -20, 0, 0, 0, 1_964_720))
    assert "nothing was asked of it" in nothing and "received" not in nothing.split(".")[-2]
    export = flex_line(_event("export", 1_964_700, 1_964_800),
                       DeliveryRow("e", "h01", 2000, -300, 0, 0, 0, 1_964_801))  # fmt: skip
    assert "feed 2.0 kWh less into the grid" in export and "nothing was paid" in export
    assert export.startswith("from 12 Jan 15:00 to 13 Jan 16:15 UTC")


@pytest.fixture(scope="module")
def flex_run(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """stress-evening 15:00-21:00 with the grid operator holding the feeder's import to
    100 kW from 17:00 to 20:00, served with its logins."""
    raw = yaml.safe_load((ROOT / "sim" / "stress-evening.yaml").read_text(encoding="utf-8"))
    raw |= {"start": "2026-01-12T15:00:00Z", "intervals": 24, "flex_tokens_per_kwh": 2.0,
            "envelopes": {"events": [EVENT]}}  # fmt: skip
    tmp = tmp_path_factory.mktemp("flex_web")
    (tmp / "scenario.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    run_sim(tmp / "scenario.yaml", tmp / "run")
    view = RunView(tmp / "run")
    accounts, operator, path = run_logins(view)
    return Site(view, accounts, {**read_passwords(path), "operator": operator})


@pytest.mark.slow
def test_each_request_is_explained_with_the_ledgers_figures(flex_run: Site) -> None:
    con = sqlite3.connect(flex_run.view.ledger)
    (ev,) = rec.events(con)
    rows = {d.household: d for d in rec.deliveries(con, ev.event)}
    con.close()
    paid = max(rows.values(), key=lambda d: d.payment_micro)
    idle = next(d for d in rows.values() if d.asked_wh == 0)
    day = interval_start(ev.first).date()
    for d in (paid, idle):
        client = flex_run.client()
        login(client, d.household, flex_run.passwords[d.household])
        for url in (f"/households/{d.household}", f"/households/{d.household}?day={day}"):
            page = client.get(url).text.replace("&#39;", "'")
            assert flex_line(ev, d) in page, url
            assert f"<td>{d.delivered_wh / 1000:.2f} kWh</td>" in page
            assert f"<td>{d.payment_micro / MICRO:.2f}</td>" in page
            assert f"<td>{d.tokens_micro / MICRO:.2f}</td>" in page
        assert client.get(f"/households/{d.household}?day={day + timedelta(days=1)}"
                          ).status_code == 404  # fmt: skip
    assert paid.payment_micro > 0 and "you received" in flex_line(ev, paid)
    # another household's request is not on this one's page
    client = flex_run.client()
    login(client, idle.household, flex_run.passwords[idle.household])
    assert flex_line(ev, paid) not in client.get(f"/households/{idle.household}").text


@pytest.fixture(scope="module")
def two_months(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """6 synthetic households settled from 31 May 23:00 to 1 June 01:00 UTC (8 intervals)."""
    from gridctl.settlement.enrol import SyntheticCommunity, simulated_coordinator_key
    from gridctl.settlement.ledger import Ledger
    from gridctl.settlement.settle import SettlementConfig, Settler

    run = tmp_path_factory.mktemp("two_months")
    first = int(datetime(2026, 5, 31, 23, tzinfo=UTC).timestamp()) // INTERVAL_S
    with Ledger(run / "ledger.sqlite", simulated_coordinator_key(0)) as ledger:
        community = SyntheticCommunity(6, first, seed=3)
        community.enrol(ledger)
        settler = Settler(ledger, SettlementConfig(0.20, 1.0))
        for t in range(8):
            settler.settle(first + t, community.readings(first + t))
    view = RunView(run)
    accounts, operator, path = run_logins(view)
    return Site(view, accounts, {**read_passwords(path), "operator": operator})


def test_a_statement_per_month_and_per_day(two_months: Site) -> None:
    h = two_months.view.households[0]
    client = two_months.client()
    login(client, h, two_months.passwords[h])
    rows = statement(two_months.view.ledger, h)
    by_month: dict[str, list] = {}
    for r in rows:
        by_month.setdefault(f"{interval_start(r.interval):%Y-%m}", []).append(r)
    assert sorted(by_month) == ["2026-05", "2026-06"] and len(rows) == 8
    page = client.get(f"/households/{h}").text
    assert "Month 2026-06" in page and "Month by month" in page
    months = re.findall(r'\?month=(\d{4}-\d\d)">\1</a></th>((?:<td>[^<]*</td>)+)', page)
    assert [m for m, _ in months] == ["2026-05", "2026-06"]
    for m, cells in months:
        drew, _, paid, earned, *_ = re.findall(r"<td>([^<]*)</td>", cells)
        assert drew == f"{sum(r.import_wh or 0 for r in by_month[m]) / 1000:.2f}"
        assert paid == f"{sum(r.paid for r in by_month[m]) / MICRO:.2f}"
        assert earned == f"{sum(r.earned for r in by_month[m]) / MICRO:.2f}"
    may = client.get(f"/households/{h}?month=2026-05").text
    assert "Month 2026-05" in may and "?day=2026-05-31" in may and "?day=2026-06-01" not in may
    day = client.get(f"/households/{h}?day=2026-05-31").text
    assert day.count(f'href="/households/{h}/proofs/') == len(by_month["2026-05"]) == 4


def test_a_household_page_before_the_first_interval_is_settled(tmp_path: Path) -> None:
    """A coordinator's ledger with its meters enrolled and nothing settled yet: the statement
    is empty, not an error (the page answered 503 when the index had no table yet)."""
    from gridctl.settlement.enrol import SyntheticCommunity
    from gridctl.settlement.ledger import Ledger
    from tests.keys import COORDINATOR_KEY

    ledger = tmp_path / "ledger.sqlite"
    with Ledger(ledger, COORDINATOR_KEY) as db:
        SyntheticCommunity(3, 5_000_000, seed=1).enrol(db)
    index = StatementIndex(ledger)
    assert index.days("h00000") == {} and index.intervals("h00000", 0, 2**40) == {}
    assert index.upto is None
