"""Public aggregates: the k rule, and the row each settled interval books under its root."""

from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from gridctl.settlement.aggregates import (
    COVERS,
    AggregateRow,
    CommunityFigures,
    Figure,
    aggregate_at,
    aggregate_row,
    suppressed,
)
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.enrol import SyntheticCommunity
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.settle import SettlementConfig, Settler
from tests.keys import COORDINATOR_KEY

T0 = 1_000_000
counts = st.integers(0, 40)
wh = st.integers(0, 10**7)
figure = st.one_of(st.none(), st.builds(Figure, wh, counts))


@given(
    k=st.integers(2, 30),
    households=counts,
    grid=st.one_of(st.none(), st.tuples(wh, wh)),
    metered_wh=st.tuples(wh, wh, wh),
    metered=counts,
    v_mv=st.lists(st.integers(200_000, 260_000), max_size=40),
    figures=st.builds(CommunityFigures, figure, figure, figure, figure, figure),
)
def test_no_figure_covers_fewer_than_k_households(
    k: int,
    households: int,
    grid: tuple[int, int] | None,
    metered_wh: tuple[int, int, int],
    metered: int,
    v_mv: list[int],
    figures: CommunityFigures,
) -> None:
    row = aggregate_row(T0, k, households, grid, metered_wh, metered, v_mv, figures)
    for name, count in COVERS.items():
        n = getattr(row, count)
        assert n >= 0
        if getattr(row, name) is not None:
            assert n >= k, (name, n, k)
    # what covers enough households is kept as it was given
    given_figures = {"demand_wh": figures.demand_wh, "pv_wh": figures.pv_wh,
                     "curtailed_wh": figures.curtailed_wh,
                     "flex_delivered_wh": figures.flex_delivered_wh,
                     "envelope_s": figures.envelope_s}  # fmt: skip
    for name, f in given_figures.items():
        expect = f.value if f is not None and f.households >= k else None
        assert getattr(row, name) == expect
    if grid is not None and households >= k:
        assert (row.grid_import_wh, row.grid_export_wh) == grid
    if len(v_mv) >= k:
        assert (row.v_min_mv, row.v_max_mv) == (min(v_mv), max(v_mv))
    assert (row.shared_wh is not None) == (metered >= k)
    # a larger k withholds at least as much; the same k changes nothing
    assert suppressed(row, k) == row
    more = suppressed(row, k + 1)
    assert all(getattr(more, f) in (None, getattr(row, f)) for f in COVERS)


def _settled(path: Path, n: int, k: int, intervals: int) -> list[AggregateRow]:
    community = SyntheticCommunity(n, T0, seed=3)
    with Ledger(path, COORDINATOR_KEY) as led:
        community.enrol(led)
        settler = Settler(led, SettlementConfig(0.20, 1.0, public_k=k))
        rows = []
        for iv in range(T0, T0 + intervals):
            figures = CommunityFigures(demand_wh=Figure(1000 + iv - T0, n), pv_wh=Figure(500, 2))
            out = settler.settle(iv, community.readings(iv), figures=figures)
            row = aggregate_at(led.db, iv)
            assert row is not None and out.settlement is not None
            verified = np.array([s == "verified" for s in out.status])
            assert row.metered_households == int(verified.sum()) == n
            if n >= k:  # the verified energies settlement booked
                assert row.households_import_wh == int(out.import_wh.sum())
                assert row.households_export_wh == int(out.export_wh.sum())
                assert row.shared_wh == int(out.settlement.supplied_wh.sum())
            rows.append(row)
    return rows


def test_each_settled_interval_books_its_aggregates_under_its_root(tmp_path: Path) -> None:
    rows = _settled(tmp_path / "l.sqlite", n=6, k=5, intervals=6)
    assert [r.interval for r in rows] == list(range(T0, T0 + 6))
    for r in rows:
        assert r.k == 5 and r.households == 6 and r.grid_households == 6
        assert r.grid_import_wh is not None and r.grid_export_wh is not None
        assert r.demand_wh == 1000 + r.interval - T0 and r.demand_households == 6
        assert r.pv_wh is None and r.pv_households == 2  # two households: withheld
        assert r.v_min_mv is None and r.voltage_households == 0  # no voltage in these readings
        assert r.flex_delivered_wh is None and r.envelope_s is None
    assert verify_ledger(tmp_path / "l.sqlite").ok
    # the root covers the row: a changed figure breaks the audit
    with Ledger(tmp_path / "l.sqlite") as led:
        led.db.execute("DROP TRIGGER public_aggregates_no_update")
        led.db.execute("UPDATE public_aggregates SET demand_wh = demand_wh + 1 WHERE rowid = 3")
    check = verify_ledger(tmp_path / "l.sqlite")
    assert not check.ok and "public_aggregates rows differ" in check.problem


def test_a_community_smaller_than_k_publishes_only_counts(tmp_path: Path) -> None:
    rows = _settled(tmp_path / "l.sqlite", n=3, k=5, intervals=2)
    for r in rows:
        assert all(getattr(r, f) is None for f in COVERS)
        assert r.metered_households == 3 and r.demand_households == 3
