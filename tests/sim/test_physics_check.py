"""Settlement checks claims against the feeder in a simulated run: a dishonest household's
intervals become cases (its rewards held or its claim rejected), an honest run has none."""

import sqlite3
from pathlib import Path

import pytest

from gridctl.coordinator.assembly import assemble
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.feeder_check import FeederCheck
from gridctl.settlement.physics import BalanceCheck
from gridctl.sim.engine import simulate
from gridctl.sim.kpis import kpis
from gridctl.sim.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]


def _scenario(**fields: object) -> Scenario:
    raw = {**load_scenario(ROOT / "sim" / "community-20.yaml").model_dump(), **fields}
    return Scenario.model_validate(raw)


def test_a_community_with_a_feeder_checks_claims_by_state_estimation() -> None:
    scn = _scenario()
    assert isinstance(assemble(scn, scn.base_dir).physics, FeederCheck)
    spec = scn.model_copy(update={"feeder": None})
    assert isinstance(assemble(spec, scn.base_dir).physics, BalanceCheck)


def _cases(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    rows = con.execute("SELECT interval, household, outcome FROM cases").fetchall()
    con.close()
    return rows


@pytest.mark.slow
def test_a_cheater_is_caught_every_interval_and_an_honest_run_has_no_case(tmp_path: Path) -> None:
    cheat = [{"household": "h05", "kind": "inflate", "size_w": 2000}]
    scn = _scenario(intervals=16, meter_noise=True, cheat=cheat)
    res = simulate(scn, tmp_path / "cheat.sqlite")
    cases = _cases(res.ledger_path)
    cheating = {scn.first_interval + t for t in range(16) if res.cheats.cheating[t, 0]}
    assert len(cheating) == 16
    # every cheating interval is a case that names or holds the cheater
    assert {iv for iv, h, _ in cases if h == "h05"} == cheating
    assert verify_ledger(res.ledger_path).ok
    k = kpis(res)
    assert k["cheating_intervals"] == 16 and k["detection_delay_intervals"] == 0
    assert k["caught_kwh"] == k["at_stake_kwh"] == pytest.approx(16 * 0.5, rel=0.05)
    assert k["intervals_held"] + k["intervals_named"] >= 16
    honest = simulate(_scenario(intervals=16, meter_noise=True), tmp_path / "honest.sqlite")
    assert _cases(honest.ledger_path) == []
    h = kpis(honest)
    assert (h["intervals_held"], h["intervals_named"], h["households_named"]) == (0, 0, 0)
    assert "cheating_intervals" not in h
    # what the cheater claimed is not paid: it earned less than it would have honestly
    k = res.household_ids.index("h05")
    assert res.tokens_micro[k] <= honest.tokens_micro[k]
