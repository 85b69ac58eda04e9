"""Issue 14, acceptance 5: over a real broker with real controllers, a dishonest controller of a
household without PV or battery, claiming export while it imports, is named by the export
capability check in every interval; its readings are rejected, nobody is held, and the honest
households are paid what the physics of the run they were in gives them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.holds import HOLDING
from gridctl.sim.engine import simulate
from gridctl.sim.scenario import Scenario, load_scenario
from gridctl.sim.wire import simulate_wire
from tests.conftest import require_tool

CHEATER = "h03"  # default scenario: no PV, no battery, no EV
INTERVALS = 8


def _scenario(cheat: bool) -> Scenario:
    raw = load_scenario().model_dump()
    raw.update(intervals=INTERVALS, meter_noise=True)
    if cheat:
        raw["cheat"] = [{"household": CHEATER, "kind": "reverse", "size_w": 1000}]
    return Scenario.model_validate(raw)


def _amounts(db: Path) -> dict[tuple[int, str, str], int]:
    """Each household's booked amount per interval and asset, micro-units."""
    q = """SELECT interval, account, asset, SUM(amount) FROM entries
           WHERE account LIKE 'household:%' GROUP BY 1, 2, 3"""
    with sqlite3.connect(db) as con:
        return {
            (iv, acc.removeprefix("household:"), asset): a for iv, acc, asset, a in con.execute(q)
        }


def _readings(db: Path) -> dict[tuple[int, str], tuple[int, int, str, str | None]]:
    """Each meter's reading per interval: counters (Wh), status and reason."""
    q = "SELECT interval, meter, e_import_wh, e_export_wh, status, reason FROM meter_readings"
    with sqlite3.connect(db) as con:
        return {(iv, m): rest for iv, m, *rest in con.execute(q)}  # type: ignore[misc]


@pytest.mark.slow
def test_a_dishonest_controller_is_named_every_interval_and_honest_households_are_not_held(
    tmp_path: Path,
) -> None:
    require_tool("mosquitto")
    scn = _scenario(cheat=True)
    cheat = simulate_wire(scn, tmp_path, broker="mosquitto")
    honest = simulate(_scenario(cheat=False), tmp_path / "honest.sqlite")
    first = scn.first_interval
    intervals = list(range(first, first + INTERVALS))
    assert cheat.cheats.cheating.all()  # h03 imports all night and claims 1 kW of export

    # named in every cheating interval, by capability (0 W of generation or storage), and
    # nobody held: the estimation without its claim finds the others consistent
    with sqlite3.connect(cheat.ledger_path) as con:
        cases = con.execute("SELECT interval, household, outcome, method FROM cases").fetchall()
        held = con.execute("SELECT COUNT(*) FROM entries WHERE account = ?", (HOLDING,)).fetchone()[
            0
        ]
    assert sorted(cases) == [(iv, CHEATER, "named", "capability") for iv in intervals]
    assert held == 0
    readings = _readings(cheat.ledger_path)
    for iv in intervals:
        *_, status, reason = readings[(iv, f"{CHEATER}/main")]
        assert (status, reason) == ("rejected", "physics_inconsistent")
    assert {r[2] for (_, m), r in readings.items() if m != f"{CHEATER}/main"} == {"verified"}
    assert verify_ledger(cheat.ledger_path).ok

    got, want = _amounts(cheat.ledger_path), _amounts(honest.ledger_path)
    # the cheater is booked nothing; honestly it bought from the pool every interval
    assert not [k for k in got if k[1] == CHEATER]
    assert all(want[(iv, CHEATER, "currency")] < 0 for iv in intervals)

    # first interval: the world is the honest run's (the planner has not yet seen the
    # cheater's telemetry), so every honest meter reads the same
    honest_readings = _readings(honest.ledger_path)
    same = [k for k in readings if k[0] == first and k[1] != f"{CHEATER}/main"]
    assert len(same) == 14 and all(readings[k] == honest_readings[k] for k in same)
    # the pool is short of supply at night: the suppliers sell all of it either way, so their
    # tokens and earnings are exactly the honest run's; the community energy the cheater
    # bought honestly goes to the other buyers instead, each paying for its pro-rata share,
    # so the buyers pay in total exactly what the cheater paid in the honest run
    diff = {k: got.get(k, 0) - want.get(k, 0) for k in got.keys() | want.keys()
            if k[0] == first and k[1] != CHEATER}  # fmt: skip
    suppliers = {k for k, a in want.items() if k[0] == first and a > 0}
    assert suppliers and all(diff[k] == 0 for k in suppliers)
    assert all(diff[k] == 0 for k in diff if k[2] == "token")
    buyers = {k: d for k, d in diff.items() if d}
    assert buyers and all(want[k] < 0 and d < 0 for k, d in buyers.items())
    assert sum(buyers.values()) == want[(first, CHEATER, "currency")]

    # later intervals: the planner dispatches on every controller's telemetry, the cheater's
    # claimed export included, so batteries and EV charging follow the lie and the honest
    # households' energy (and so their money) is not the honest run's
    later = [k for k in readings if k[0] > first and k[1] != f"{CHEATER}/main"]
    assert any(readings[k][:2] != honest_readings[k][:2] for k in later)
