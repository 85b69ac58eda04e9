"""A scenario's scripted governance: the community votes to raise its price mid-run, and
settlement uses the old price before the enactment interval and the new one from it on, in
process and over the wire (the same ledger)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gridctl.core import MICRO, W_PER_KW, ScenarioError, interval_of
from gridctl.governance.audit import verify_governance
from gridctl.settlement import gov_records as rec
from gridctl.settlement.audit import verify_ledger
from gridctl.sim.governance import Script
from gridctl.sim.run import run_sim, with_overrides
from gridctl.sim.scenario import load_scenario
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "sim" / "governance-price.yaml"
OLD, NEW = 0.20, 0.24


def _raw() -> dict[str, Any]:
    return yaml.safe_load(SCENARIO.read_text())


def _load(tmp_path: Path, raw: dict[str, Any]) -> None:
    path = tmp_path / "scn.yaml"
    path.write_text(yaml.safe_dump(raw))
    load_scenario(path)


def test_the_study_scripts_a_price_vote_enacted_halfway() -> None:
    scn = load_scenario(SCENARIO)
    (p,) = scn.governance.proposals
    enact_at = interval_of(p.at) + 1 + p.window + p.delay
    assert enact_at - scn.first_interval == scn.intervals // 2
    assert (p.parameter, p.value, scn.tariff.community_per_kwh) == ("community_per_kwh", NEW, OLD)
    # YAML reads the keys yes and no as booleans: the script takes them as the choices
    assert p.votes.ballots() == [("h01", "yes"), ("h05", "yes"), ("h06", "yes"), ("h03", "no"),
                                 ("h07", "abstain")]  # fmt: skip
    assert Script.of(load_scenario(ROOT / "sim" / "default.yaml")) is None  # no governance


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        ({"votes": {"yes": ["h01", "h99"]}}, "proposals[0].votes.yes: 'h99' is not a household"),
        ({"votes": {"yes": ["h01"], "no": ["h01"]}}, "'h01' votes more than once"),
        ({"proposer": "h99"}, "proposals[0].proposer: 'h99' is not a household"),
        ({"at": "2026-06-24T05:00:00Z"}, "proposals[0].at: 2026-06-24T05:00:00+00:00 lies outside"),
        ({"at": "2026-06-24T07:05:00Z"}, "proposals[0].at: must fall on an interval boundary"),
        (
            {"vote_at": "2026-06-24T07:00:00Z"},
            "proposals[0].vote_at: 2026-06-24T07:00:00+00:00 must come after at",
        ),
        ({"value": 0.40}, "community_per_kwh = 0.4 currency/kWh lies outside its bound [0.1, 0.3]"),
        ({"parameter": "v_max_pu"}, "not_governable: v_max_pu is a physical safety limit"),
        (
            {"window": 2},
            "proposals[0].window: 2 intervals lies outside governance.window_intervals [4, 96]",
        ),
        ({"parameter": "remove", "value": "h42"}, "proposals[0].value: 'h42' is not a household"),
    ],
)
def test_a_bad_script_is_refused_naming_the_field(
    tmp_path: Path, edit: dict[str, Any], error: str
) -> None:
    raw = _raw()
    raw["governance"]["proposals"][0].update(edit)
    with pytest.raises(ScenarioError, match="governance") as e:
        _load(tmp_path, raw)
    assert error in str(e.value)


def test_a_shorter_run_that_ends_before_the_proposal_is_refused() -> None:
    with pytest.raises(ScenarioError, match=r"proposals\[0\]\.at: .* lies outside the run"):
        with_overrides(load_scenario(SCENARIO), None, 4)


def _prices_micro_per_wh(ledger: Path) -> dict[int, tuple[int, int]]:
    """Per interval: (what sharers earned, micro-units; energy shared in the pool, Wh), the
    energy recomputed from the verified main-meter readings."""
    db = sqlite3.connect(ledger)
    shared = dict(db.execute(
        "SELECT r.interval, MIN(SUM(r.d_import_wh), SUM(r.d_export_wh)) FROM meter_readings r"
        " JOIN meters m ON m.meter = r.meter WHERE m.role = 'main' AND r.status = 'verified'"
        " GROUP BY r.interval"
    ))  # fmt: skip
    earned = dict(db.execute(
        "SELECT interval, SUM(amount) FROM entries WHERE kind = 'pool_payout'"
        " AND account LIKE 'household:%' AND asset = 'currency' GROUP BY interval"
    ))  # fmt: skip
    return {iv: (earned.get(iv, 0), e) for iv, e in shared.items()}


def _check_ledger(ledger: Path, first: int, intervals: int, enact_at: int) -> None:
    """Old price before ``enact_at``, new from it on; tally and enactment recorded; audits pass."""
    pool = _prices_micro_per_wh(ledger)
    assert sorted(pool) == list(range(first, first + intervals))
    for iv, (earned_micro, shared_wh) in pool.items():
        price = OLD if iv < enact_at else NEW
        assert earned_micro == shared_wh * round(price * MICRO) // W_PER_KW, iv
    before = [iv for iv, (_, e) in pool.items() if e > 0 and iv < enact_at]
    after = [iv for iv, (_, e) in pool.items() if e > 0 and iv >= enact_at]
    assert len(before) >= 4 and len(after) >= 4  # the community shared on both sides
    db = sqlite3.connect(ledger)
    (t,) = rec.tallies(db).values()
    assert (t.yes, t.no, t.abstain, t.total, t.outcome) == (3, 1, 1, 6, "passed")
    assert list(rec.enactments(db).values()) == [
        rec.EnactmentRow(t.proposal, enact_at, "community_per_kwh", "0.24")
    ]
    assert [(v.household, v.sender, v.choice, v.reason) for _, v in rec.votes(db)] == [
        ("h01", "h01", "yes", None), ("h05", "h05", "yes", None), ("h06", "h06", "yes", None),
        ("h03", "h03", "no", None), ("h07", "h07", "abstain", None),
    ]  # fmt: skip
    assert verify_governance(db) == []
    assert verify_ledger(ledger).ok


@pytest.mark.slow
def test_the_price_vote_in_process_and_over_the_wire(tmp_path: Path) -> None:
    require_tool("mosquitto")
    scn = load_scenario(SCENARIO)
    first, enact_at = scn.first_interval, scn.first_interval + scn.intervals // 2
    # in process, as a user runs it
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [shutil.which("gridctl") or "gridctl", "sim", str(SCENARIO), "--out", "inproc"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "community_per_kwh = 0.24 from 2026-06-24 09:00 UTC (proposal 1)" in proc.stdout
    kpis = json.loads((tmp_path / "inproc" / "kpis.json").read_text())
    assert kpis["proposals"] == kpis["proposals_passed"] == 1
    assert (kpis["community_per_kwh_before"], kpis["community_per_kwh_after"]) == (OLD, NEW)
    assert kpis["earned_per_shared_kwh_before"] == pytest.approx(OLD, abs=1e-3)
    assert kpis["earned_per_shared_kwh_after"] == pytest.approx(NEW, abs=1e-3)
    _check_ledger(tmp_path / "inproc" / "ledger.sqlite", first, scn.intervals, enact_at)
    # over the wire: each vote on its voter's own topic; the coordinator records the same
    wire = run_sim(SCENARIO, tmp_path / "wire", wire=True, broker="mosquitto")
    _check_ledger(wire.ledger_path, first, scn.intervals, enact_at)
    assert wire.kpis["ledger_head"] == kpis["ledger_head"]
    assert {k: v for k, v in wire.kpis.items() if "kwh" in k} == pytest.approx(
        {k: v for k, v in kpis.items() if "kwh" in k}, rel=0.01, abs=1e-3
    )
