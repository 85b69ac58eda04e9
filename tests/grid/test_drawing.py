"""The feeder drawing: tree layout, households downstream, what is shown publicly, geodata,
and grid.sqlite written and read back (bounds checked on reading)."""

from __future__ import annotations

import copy
import sqlite3
from pathlib import Path

import numpy as np
import pandapower as pp
import pytest

from gridctl.core import FeederError
from gridctl.grid.ac import AcFeeder
from gridctl.grid.drawing import (
    Branch,
    Bus,
    Drawing,
    State,
    drawing,
    shown,
    state,
    tree_layout,
)
from gridctl.grid.feeder import _simbench_net, resolve_buses
from gridctl.grid.record import GridRecord, Limits, read_drawing, read_state

FEEDER = "1-LV-rural1--0-sw"
# the chain bus 8 - bus 11 - bus 10 - bus 3 carries h0 … h5; h6 is alone on bus 1
HOMES = {"h0": "LV1.101 Bus 8", "h1": "LV1.101 Bus 11", "h2": "LV1.101 Bus 3",
         "h3": "LV1.101 Bus 11", "h4": "LV1.101 Bus 10", "h5": "LV1.101 Bus 10",
         "h6": "LV1.101 Bus 1"}  # fmt: skip
LIMITS = Limits(0.94, 1.06, 100.0, 5)


@pytest.fixture(scope="module", name="feeder")
def feeder_fixture():  # type: ignore[no-untyped-def]
    net = _simbench_net(FEEDER)
    return net, resolve_buses(net, list(HOMES.values()))


def test_tree_layout_puts_leaves_in_columns_and_parents_over_children() -> None:
    #      0
    #    1   2
    #   3 4   5
    parent = np.array([-1, 0, 0, 1, 1, 2])
    xy = tree_layout(parent)
    assert xy[[3, 4, 5], 0].tolist() == [0.0, 0.5, 1.0]  # leaves, left to right
    assert xy[1, 0] == 0.25 and xy[2, 0] == 1.0 and xy[0, 0] == pytest.approx(0.625)
    assert xy[:, 1].tolist() == [0.0, 0.5, 0.5, 1.0, 1.0, 1.0]  # one row per level


def test_households_downstream_decide_what_is_public(feeder) -> None:  # type: ignore[no-untyped-def]
    net, buses = feeder
    d = drawing(net, buses, list(HOMES))
    assert d.geo  # SimBench carries GeoJSON points for every bus
    assert all(0 <= b.x <= 1 and 0 <= b.y <= 1 for b in d.buses)
    by_name = {b.name: b for b in d.buses}
    assert d.buses[0].households == 7 and d.buses[0].parent == -1  # the MV side: everyone
    assert by_name["LV1.101 Bus 4"].households == 7  # the transformer's LV bus
    assert by_name["LV1.101 Bus 8"].households == 1 + 2 + 2 + 1  # itself, then down the chain
    assert by_name["LV1.101 Bus 11"].households == 2 + 2 + 1
    assert by_name["LV1.101 Bus 10"].households == 2 + 1
    assert by_name["LV1.101 Bus 1"].households == 1
    trafo = d.branches[0]
    assert trafo.kind == "trafo" and trafo.households == 7
    bus_ok, branch_ok = shown(d, 5)
    # bus 8 (6 homes) and bus 11 (5) each feed k or more, but bus 11's figure subtracted from
    # bus 8's gives h0's, and bus 8's from the transformer's gives h6's: only the top is shown
    assert [b.name for b, ok in zip(d.buses, bus_ok, strict=True) if ok] == [
        "MV1.101 Bus 4", "LV1.101 Bus 4"]  # fmt: skip
    assert branch_ok == [r.kind == "trafo" for r in d.branches]
    for k in (2, 3, 4):
        assert_groups_private(d, shown(d, k)[0], k)
    to_h6 = next(k for k, r in enumerate(d.branches)
                 if d.buses[r.to].name == "LV1.101 Bus 1")  # fmt: skip
    assert d.branches[to_h6].households == 1 and not shown(d, 2)[1][to_h6]
    assert [p for _, p in d.households] == [
        next(k for k, b in enumerate(d.buses) if b.name == n) for n in HOMES.values()
    ]


def assert_groups_private(d: Drawing, on: list[bool], k: int) -> None:
    """Every shown bus feeds k or more, and what subtraction of shown figures reaches (the
    households below a shown bus and below none of its nearest shown descendants) is 0 or ≥ k."""
    n = len(d.buses)
    nearest: list[list[int]] = [[] for _ in range(n)]
    for m in range(n - 1, 0, -1):
        nearest[d.buses[m].parent] += [m] if on[m] else nearest[m]
    for m, b in enumerate(d.buses):
        if on[m]:
            rest = b.households - sum(d.buses[x].households for x in nearest[m])
            assert b.households >= k and (rest == 0 or rest >= k), (m, rest)


def test_no_subtraction_of_shown_figures_singles_out_fewer_than_k_homes() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(2, 40))
        parent = [-1] + [int(rng.integers(0, m)) for m in range(1, n)]
        homes = rng.integers(0, 4, n) * (rng.random(n) < 0.6)
        cover = homes.copy()
        for m in range(n - 1, 0, -1):
            cover[parent[m]] += cover[m]
        d = Drawing([Bus(m, f"b{m}", 0.0, 0.0, parent[m], int(cover[m])) for m in range(n)],
                    [Branch("line", m, f"l{m}", parent[m], m, int(cover[m]))
                     for m in range(1, n)], [], False)  # fmt: skip
        k = int(rng.integers(2, 6))
        on, branch_on = shown(d, k)
        assert_groups_private(d, on, k)
        assert branch_on == on[1:]
        if cover[0] >= k:
            assert on[0]  # the top always stays (its own group is what is left)


def test_a_meshed_feeder_cannot_be_drawn(feeder) -> None:  # type: ignore[no-untyped-def]
    net, buses = feeder
    meshed = copy.deepcopy(net)  # a second path between two homes' buses closes a loop
    pp.create_line(meshed, int(buses[0]), int(buses[-1]), 0.1, "NAYY 4x50 SE")
    with pytest.raises(FeederError, match="is meshed"):
        drawing(meshed, buses, list(HOMES))


def test_states_round_trip_through_grid_sqlite(feeder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    net, buses = feeder
    d = drawing(net, buses, list(HOMES))
    ac = AcFeeder(net, buses, list(HOMES))
    p_w = np.array([2000.0, 1500.0, -4000.0, 800.0, 3000.0, 2500.0, 6000.0])
    res = ac.run(p_w, np.zeros(7))
    s = state(d, ac.net, 42, res)
    assert min(s.v_upu) == round(res.vm_pu.min() * 1e6)
    assert max(s.v_upu) == round(res.vm_pu.max() * 1e6)
    assert max(s.loading_ppm[1:]) == round(res.line_loading_pct.max() * 1e4)
    assert s.loading_ppm[0] == round(res.trafo_loading_pct[0] * 1e4)
    path = tmp_path / "grid.sqlite"
    rec = GridRecord(path, d, LIMITS, keep_intervals=2)
    rec.add([s, state(d, ac.net, 43, res)], "actual")
    rec.add([state(d, ac.net, 46, res)], "planned")  # 42 and 43 now older than 2 intervals
    rec.close()
    d2, limits, topology = read_drawing(path)
    assert d2 == d and limits == LIMITS and topology == d.topology_id
    assert read_state(path, d2, 42) is None
    assert read_state(path, d2) == ("planned", state(d, ac.net, 46, res))
    # opened again with the same places under other ids: the states stay, the ids follow
    renamed = drawing(net, buses, [f"x{h}" for h in HOMES])
    assert renamed.topology_id == d.topology_id
    GridRecord(path, renamed, LIMITS).close()
    d3, _, _ = read_drawing(path)
    assert d3 == renamed and read_state(path, d3) == ("planned", state(d, ac.net, 46, res))
    # a file is input: a value beyond its stored width is refused on reading
    with sqlite3.connect(path) as db:
        db.execute("UPDATE buses SET x = 7.5 WHERE pos = 0")
    with pytest.raises(FeederError, match="bad drawing"):
        read_drawing(path)
    with pytest.raises(FeederError, match="cannot read"):
        read_drawing(tmp_path / "missing.sqlite")


def test_a_state_that_does_not_fit_the_drawing_is_refused(feeder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    net, buses = feeder
    d = drawing(net, buses, list(HOMES))
    rec = GridRecord(tmp_path / "grid.sqlite", d, LIMITS)
    with pytest.raises(FeederError, match="does not fit"):
        rec.add([State(1, [1_000_000], [0])], "actual")
    rec.close()
