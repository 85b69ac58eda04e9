"""The ``home`` counterfactual on a household's statement: exact micro-unit figures computed
here by hand, the page of a simulated run against the ledger's own rows, and a ledger without
grid prices, where nothing is guessed."""

import sqlite3
from pathlib import Path

from fastapi.testclient import TestClient

from gridctl.core import INTERVAL_S, INTERVALS_PER_DAY, W_PER_KW, interval_start
from gridctl.settlement.settle import SettlementConfig
from gridctl.web.app import create_app
from gridctl.web.auth import HOUSEHOLD, Accounts
from gridctl.web.coord_view import CoordinatorView
from gridctl.web.household_page import NOT_KNOWN, money
from gridctl.web.on_its_own import OnItsOwn, on_its_own
from gridctl.web.statements import StatementIndex, Totals
from tests.settlement.test_grid_records import T0, settled
from tests.web.helpers import Site, login, sim_dir_fixture, site_fixture  # noqa: F401


def _totals(ledger: Path, household: str) -> Totals:
    t = Totals()
    for x in StatementIndex(ledger).intervals(household, T0, T0 + 2).values():
        t.add(x)
    return t


def test_exact_figures_of_three_households(tmp_path: Path) -> None:
    path = settled(tmp_path / "l.sqlite").path
    got = {h: on_its_own(path, h, T0, T0 + 2, _totals(path, h)) for h in ("h0", "h1", "h2")}
    # prices (micro per kWh): import 320_000 at T0 and T0+1, 300_000 at T0+2; feed-in 80_000;
    # community 200_000. h0 drew 1000 + 400 Wh and received 500 + 300 Wh of them from the pool
    assert got["h0"] == OnItsOwn(
        import_wh=1400, export_wh=0, alone_import=(1000 + 400) * 320, alone_feed_in=0,
        grid_import_wh=500 + 100, grid_export_wh=0, grid_import=(500 + 100) * 320,
        grid_feed_in=0, pool_paid=(500 + 300) * 200, pool_earned=0,
    )  # fmt: skip
    assert (got["h0"].alone, got["h0"].community, got["h0"].saved) == (448_000, 352_000, 96_000)
    # h1 fed 600 Wh, all to its neighbours
    assert (got["h1"].alone, got["h1"].community, got["h1"].saved) == (-48_000, -120_000, 72_000)
    # h2 drew 200 Wh (100 from the pool) at T0 and fed 300 Wh (all to h0) at T0+1
    assert got["h2"].alone == 200 * 320 - 300 * 80 == 40_000
    assert got["h2"].community == 100 * 200 - 300 * 200 + 100 * 320 == -8_000
    assert got["h2"].saved == 48_000
    # what the community saved its members is what the pool moved at (import - community) for
    # the receivers plus (community - feed-in) for the suppliers: 900 Wh × 0.12 each side
    assert sum(o.saved for o in got.values()) == 900 * 120 * 2


def test_without_grid_prices_in_the_ledger_nothing_is_guessed(tmp_path: Path) -> None:
    path = settled(tmp_path / "l.sqlite", SettlementConfig(0.20, 1.0)).path
    assert on_its_own(path, "h0", T0, T0 + 2, _totals(path, "h0")) is None
    accounts = Accounts()
    accounts.add("h0", HOUSEHOLD, "h0-password")
    app = create_app(CoordinatorView(path, lambda: (T0 + 3) * INTERVAL_S), accounts)
    c = TestClient(app, raise_server_exceptions=False)
    login(c, "h0", "h0-password")
    for url in (f"/households/h0?day={interval_start(T0).date()}", "/households/h0"):
        page = c.get(url).text.replace("&#39;", "'")
        assert NOT_KNOWN in page and "Sharing with your neighbours" not in page, url


def _by_hand(ledger: Path, household: str, first: int, last: int) -> tuple[int, int]:
    """(paid alone, paid in the community), micro-units, from the ledger's rows in Python."""
    con = sqlite3.connect(ledger)
    (p_in, p_out), = con.execute("SELECT import_micro_per_kwh, feed_in_micro_per_kwh"
                                 " FROM grid_tariffs").fetchall()  # fmt: skip
    rows = con.execute(
        "SELECT r.interval, r.d_import_wh, r.d_export_wh FROM meter_readings r JOIN meters m"
        " ON m.meter = r.meter WHERE m.household = ? AND m.role = 'main' AND r.interval"
        " BETWEEN ? AND ?", (household, first, last)).fetchall()  # fmt: skip
    shares = {iv: (rec, sup) for iv, rec, sup in con.execute(
        "SELECT interval, received_wh, supplied_wh FROM pool_shares WHERE household = ?",
        (household,))}  # fmt: skip
    pool = dict(con.execute(
        "SELECT kind, SUM(amount) FROM entries WHERE account = ? AND interval BETWEEN ? AND ?"
        " GROUP BY kind", (f"household:{household}", first, last)).fetchall())  # fmt: skip
    con.close()
    imp = sum(i for _, i, _ in rows)
    exp = sum(e for _, _, e in rows)
    rec = sum(shares.get(iv, (0, 0))[0] for iv, _, _ in rows)
    sup = sum(shares.get(iv, (0, 0))[1] for iv, _, _ in rows)
    alone = imp * p_in // W_PER_KW - exp * p_out // W_PER_KW
    rest = (imp - rec) * p_in // W_PER_KW - (exp - sup) * p_out // W_PER_KW
    return alone, -pool.get("pool_payment", 0) - pool.get("pool_payout", 0) + rest


def test_the_page_shows_the_counterfactual_of_the_run(site: Site) -> None:
    ledger, view = site.view.ledger, site.view
    assert view.first // INTERVALS_PER_DAY == view.last // INTERVALS_PER_DAY  # one day: = month
    first = view.last // INTERVALS_PER_DAY * INTERVALS_PER_DAY
    day = interval_start(first).date()
    c = site.client()
    savings = []
    for h in view.households:
        c.cookies.clear()
        login(c, h, site.passwords[h])
        alone, community = _by_hand(ledger, h, first, first + INTERVALS_PER_DAY - 1)
        saved = alone - community
        savings.append(saved)
        for url in (f"/households/{h}?day={day}", f"/households/{h}?month={day:%Y-%m}"):
            page = c.get(url).text
            words = f"saved you {money(saved)}" if saved >= 0 else f"cost you {money(-saved)}"
            assert f"Sharing with your neighbours {words}" in page, (h, url)
            assert f"on your own you would have paid {money(alone)}, in the community you " \
                   f"paid {money(community)}" in page  # fmt: skip
            assert "gridctl sim --dispatch home" in page
    print(f"saved per household, micro-units: {savings}")
    assert any(savings) and min(savings) >= 0  # the pool price lies between the grid's
