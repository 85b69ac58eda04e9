"""Wire mode: the same scenario over a real broker, real Modbus and real controllers gives the
same energy, tokens and ledger as the in-process run."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from gridctl.dispatch.plan_log import PLANS_FILE, read_plans
from gridctl.sim.run import run_sim
from gridctl.sim.scenario import load_scenario
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
ENERGY = ("demand_kwh", "pv_kwh", "shared_kwh", "grid_import_kwh", "grid_export_kwh",
          "losses_kwh", "curtailed_kwh", "tokens_issued")  # fmt: skip


@pytest.mark.slow
def test_community_20_over_the_wire_matches_the_in_process_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    require_tool("mosquitto")
    scenario = ROOT / "sim" / "community-20.yaml"
    assert len(load_scenario(scenario).households) == 20
    inproc = run_sim(scenario, tmp_path / "inproc").kpis
    with caplog.at_level(logging.WARNING):
        wire = run_sim(scenario, tmp_path / "wire", wire=True)
    # every controller's telemetry reached the coordinator before the simulated clock moved on
    refused = [r.getMessage() for r in caplog.records if "message refused" in r.getMessage()]
    assert refused == []
    kpis = json.loads(wire.kpis_path.read_text())
    assert kpis["intervals"] == 96 and kpis["households"] == 20
    for k in ENERGY:
        assert kpis[k] == pytest.approx(inproc[k], rel=0.01, abs=1e-3), k
    assert kpis["ev_unmet_kwh"] == pytest.approx(inproc["ev_unmet_kwh"], abs=0.1)
    assert kpis["voltage_violations"] == inproc["voltage_violations"] == 0
    assert wire.report_path.is_file() and wire.ledger_path.is_file()


def test_the_embedded_broker_gives_the_in_process_kpis_and_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from gridctl.cli import app
    from gridctl.transport import launcher

    scenario = ROOT / "sim" / "default.yaml"
    inproc_run = run_sim(scenario, tmp_path / "inproc", intervals=8)
    inproc = inproc_run.kpis
    monkeypatch.setattr(launcher, "mosquitto_path", lambda: None)  # as on a machine without it
    res = CliRunner().invoke(app, ["sim", str(scenario), "--out", str(tmp_path / "wire"),
                                   "--intervals", "8", "--wire", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "broker: embedded Python broker (amqtt, MQTT 3.1.1)" in res.stderr
    kpis = json.loads((tmp_path / "wire" / "kpis.json").read_text())
    assert kpis["intervals"] == 8 and kpis["shared_kwh"] > 1.0  # households did share
    for k in ENERGY:
        assert kpis[k] == pytest.approx(inproc[k], rel=0.01, abs=1e-3), k
    assert kpis["ledger_head"] == inproc["ledger_head"]  # the same entries, signed readings and all
    # the controllers signed, from the meters' voltage registers, the voltages the in-process
    # run signs from the world (every household's bus, the transformer's LV bus; whole mV)
    q = "SELECT meter, interval, v_mv FROM meter_readings ORDER BY meter, interval"
    wire_v = sqlite3.connect(tmp_path / "wire" / "ledger.sqlite").execute(q).fetchall()
    assert len(wire_v) == 8 * 15 and all(0.9 * 230_000 < v < 1.1 * 230_000 for *_, v in wire_v)
    assert wire_v == sqlite3.connect(inproc_run.ledger_path).execute(q).fetchall()
    # the coordinator takes demand and PV from the telemetry the controllers sent as the
    # in-process run takes them from its devices: the same public aggregates, the same roots
    for q in (
        "SELECT * FROM public_aggregates ORDER BY interval",
        "SELECT interval, root, records, prev FROM interval_roots ORDER BY interval",
    ):
        wire_rows = sqlite3.connect(tmp_path / "wire" / "ledger.sqlite").execute(q).fetchall()
        assert len(wire_rows) == 8
        assert wire_rows == sqlite3.connect(inproc_run.ledger_path).execute(q).fetchall()
    # and the coordinator logs the community's plans as the in-process run does: the same ones
    wire_plans = read_plans(tmp_path / "wire" / PLANS_FILE, 0, 2**40)
    assert len(wire_plans) == 8 and wire_plans[0].households == 14
    assert wire_plans == read_plans(tmp_path / "inproc" / PLANS_FILE, 0, 2**40)
    # the same feeder power flows, recorded for the web app's diagram
    for q in ("SELECT * FROM bus_states ORDER BY 1, 2, 3",
              "SELECT * FROM branch_states ORDER BY 1, 2, 3"):  # fmt: skip
        wire_rows = sqlite3.connect(tmp_path / "wire" / "grid.sqlite").execute(q).fetchall()
        assert len(wire_rows) > 8 * 10
        assert (
            wire_rows == sqlite3.connect(tmp_path / "inproc" / "grid.sqlite").execute(q).fetchall()
        )


def test_a_broker_is_chosen_automatically_or_as_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from gridctl.transport import launcher

    monkeypatch.setattr(launcher, "mosquitto_path", lambda: "/usr/sbin/mosquitto")
    assert [launcher.choose_broker(c) for c in ("auto", "mosquitto", "embedded")] == [
        "mosquitto", "mosquitto", "embedded"]  # fmt: skip
    monkeypatch.setattr(launcher, "mosquitto_path", lambda: None)
    assert launcher.choose_broker("auto") == launcher.choose_broker("embedded") == "embedded"
    with pytest.raises(launcher.BrokerError, match="not installed"):
        launcher.choose_broker("mosquitto")
    with pytest.raises(launcher.BrokerError, match="must be one of"):
        launcher.choose_broker("hivemq")


def test_wire_mode_runs_a_few_intervals_with_readings_settled_through_the_broker(
    tmp_path: Path,
) -> None:
    require_tool("mosquitto")
    from gridctl.settlement.audit import verify_ledger
    from gridctl.settlement.ledger import Ledger

    out = run_sim(None, tmp_path, intervals=6, wire=True)
    check = verify_ledger(out.ledger_path)
    assert check.ok and check.intervals_closed == 6
    with Ledger(out.ledger_path) as ledger:
        statuses = ledger.db.execute(
            "SELECT status, COUNT(*) FROM meter_readings GROUP BY status"
        ).fetchall()
    assert dict(statuses).get("verified", 0) == 6 * 15  # 14 homes + the transformer, every interval
