"""Wire mode: the same scenario over a real broker, real Modbus and real controllers gives the
same energy, tokens and ledger as the in-process run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridctl.sim.run import run_sim
from gridctl.sim.scenario import load_scenario
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
ENERGY = ("demand_kwh", "pv_kwh", "shared_kwh", "grid_import_kwh", "grid_export_kwh",
          "losses_kwh", "curtailed_kwh", "tokens_issued")  # fmt: skip


@pytest.mark.slow
def test_community_20_over_the_wire_matches_the_in_process_run(tmp_path: Path) -> None:
    require_tool("mosquitto")
    scenario = ROOT / "sim" / "community-20.yaml"
    assert len(load_scenario(scenario).households) == 20
    inproc = run_sim(scenario, tmp_path / "inproc").kpis
    wire = run_sim(scenario, tmp_path / "wire", wire=True)
    kpis = json.loads(wire.kpis_path.read_text())
    assert kpis["intervals"] == 96 and kpis["households"] == 20
    for k in ENERGY:
        assert kpis[k] == pytest.approx(inproc[k], rel=0.01, abs=1e-3), k
    assert kpis["ev_unmet_kwh"] == pytest.approx(inproc["ev_unmet_kwh"], abs=0.1)
    assert kpis["voltage_violations"] == inproc["voltage_violations"] == 0
    assert wire.report_path.is_file() and wire.ledger_path.is_file()


def test_wire_mode_runs_a_few_intervals_with_readings_settled_through_the_broker(
    tmp_path: Path,
) -> None:
    require_tool("mosquitto")
    from gridctl.settlement.ledger import Ledger, verify_ledger

    out = run_sim(None, tmp_path, intervals=6, wire=True)
    check = verify_ledger(out.ledger_path)
    assert check.ok and check.intervals_closed == 6
    with Ledger(out.ledger_path) as ledger:
        statuses = ledger.db.execute(
            "SELECT status, COUNT(*) FROM meter_readings GROUP BY status"
        ).fetchall()
    assert dict(statuses).get("verified", 0) == 6 * 15  # 14 homes + the transformer, every interval
