"""Issue 14, acceptance 5: over a real broker with real controllers, a dishonest controller of a
household without PV or battery, claiming export while it imports, is named by the export
capability check in every interval; its readings are rejected, nobody is held, and the honest
households are paid what the physics of the run they were in gives them.

The cheater's rejected reading takes its (real) import out of the pool: at night, short of
supply, the other buyers get its share; at noon, in surplus, the suppliers sell that much less.
"""

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


NIGHT, NOON = "2026-06-21T00:00:00Z", "2026-06-21T12:00:00Z"


def _scenario(start: str, cheat: bool) -> Scenario:
    raw = load_scenario().model_dump()
    raw.update(start=start, intervals=INTERVALS, meter_noise=True)
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
@pytest.mark.parametrize("start", [NIGHT, NOON])
def test_a_dishonest_controller_is_named_every_interval_and_honest_households_are_not_held(
    tmp_path: Path, start: str
) -> None:
    require_tool("mosquitto")
    scn = _scenario(start, cheat=True)
    cheat = simulate_wire(scn, tmp_path, broker="mosquitto")
    honest = simulate(_scenario(start, cheat=False), tmp_path / "honest.sqlite")
    first = scn.first_interval
    intervals = list(range(first, first + INTERVALS))
    assert cheat.cheats.cheating.all()  # h03 always imports, and claims 1 kW of export

    # named in every cheating interval, by capability (0 W of generation or storage), and
    # nobody held: the estimation without its claim finds the others consistent
    with sqlite3.connect(cheat.ledger_path) as con:
        cases = con.execute("SELECT interval, household, outcome, method FROM cases").fetchall()
        q = "SELECT COUNT(*) FROM entries WHERE account = ?"
        (held,) = con.execute(q, (HOLDING,)).fetchone()
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

    # the cheater's lie reaches the planner only with its telemetry: the world of the first
    # interval is the honest run's (every honest meter reads the same); at night the planner
    # then dispatches batteries and EV charging on the claimed export (the honest households'
    # energy, and so their money, is no longer the honest run's), at noon it does not
    honest_readings = _readings(honest.ledger_path)
    same = [iv for iv in intervals
            if all(readings[k] == honest_readings[k] for k in readings
                   if k[0] == iv and k[1] != f"{CHEATER}/main")]  # fmt: skip
    assert same == ([first] if start == NIGHT else intervals)
    for iv in same:
        _pool_without(iv, got, want, start, scn)


def _pool_without(
    iv: int, got: dict[tuple[int, str, str], int], want: dict[tuple[int, str, str], int],
    start: str, scn: Scenario,
) -> None:  # fmt: skip
    """In an interval of the same world, the honest households' amounts (``got``) differ from
    the honest run's (``want``) exactly as the cheater's import leaving the pool explains."""
    diff = {k: got.get(k, 0) - want.get(k, 0) for k in got.keys() | want.keys()
            if k[0] == iv and k[1] != CHEATER}  # fmt: skip
    buyers = {k for k, a in want.items() if k[0] == iv and k[1] != CHEATER and a < 0}
    suppliers = {k for k, a in want.items() if k[0] == iv and a > 0 and k[2] == "currency"}
    paid = want[(iv, CHEATER, "currency")]  # what the cheater paid the pool honestly, < 0
    tokens = round(paid / scn.tariff.community_per_kwh * scn.reward_tokens_per_kwh)
    assert buyers and suppliers
    if start == NIGHT:
        # short of supply: the suppliers sell all of it either way (tokens and earnings exactly
        # the honest run's); the cheater's share goes to the other buyers pro rata, who pay
        # for it in total exactly what the cheater paid in the honest run
        assert all(diff[k] == 0 for k in diff if k not in buyers)
        assert all(diff[k] <= 0 for k in buyers) and sum(diff[k] for k in buyers) == paid
    else:
        # surplus: every buyer gets all it imports from the pool either way (its payment
        # exactly the honest run's); the suppliers sell what the cheater bought less, so
        # they earn in total exactly what it paid less, and lose the tokens of that energy
        assert all(diff[k] == 0 for k in buyers)
        assert sum(diff[k] for k in suppliers) == paid
        assert sum(d for k, d in diff.items() if k[2] == "token") == tokens < 0
