"""End-to-end checks on a full simulated day of the default scenario."""

import sqlite3
from pathlib import Path

import numpy as np

from gridctl.core import MICRO
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.ledger import GENESIS
from gridctl.settlement.pool import ISSUANCE, POOL
from gridctl.sim.engine import SimResult, simulate
from gridctl.sim.kpis import kpis
from gridctl.sim.run import with_overrides
from gridctl.sim.scenario import Scenario, load_scenario

CLOSURE_TOLERANCE = 0.005


def test_energy_closes_every_interval(default_day: SimResult) -> None:
    """Household powers + losses equal the transformer's power from the same power flow (0.5 %)."""
    r = default_day
    assert len(r.times) == 96
    lhs = r.p_household_w.sum(axis=1) + r.losses_w
    scale = np.maximum(np.abs(r.p_trafo_w), 100.0)
    rel = np.abs(lhs - r.p_trafo_w) / scale
    assert rel.max() < CLOSURE_TOLERANCE, f"worst interval {rel.argmax()}: {rel.max():.4%}"
    assert (r.losses_w > 0).all()


def test_day_shares_energy_and_exports_and_imports(default_day: SimResult) -> None:
    k = kpis(default_day)
    assert k["shared_kwh"] > 10 and k["grid_export_kwh"] > 0 and k["grid_import_kwh"] > 0
    assert 0 < k["self_sufficiency"] < 1
    for key in (
        "self_sufficiency",
        "shared_kwh",
        "grid_import_kwh",
        "grid_export_kwh",
        "peak_import_kw",
        "losses_kwh",
        "voltage_violations",
        "line_overloads",
        "tokens_issued",
        "ledger_head",
        "intervals",
        "households",
    ):
        assert key in k
    assert k["intervals"] == 96 and k["households"] == 14


def test_ledger_conserves_money_and_tokens(default_day: SimResult) -> None:
    r = default_day
    assert verify_ledger(r.ledger_path).ok
    con = sqlite3.connect(r.ledger_path)
    per_tx = con.execute(
        "SELECT tx_id, asset, SUM(amount) FROM entries GROUP BY tx_id, asset"
    ).fetchall()
    assert per_tx and all(total == 0 for _, _, total in per_tx)
    bal = dict(
        ((a, s), v)
        for a, s, v in con.execute("SELECT account, asset, SUM(amount) FROM entries GROUP BY 1, 2")
    )
    household_tokens = sum(
        v for (a, s), v in bal.items() if s == "token" and a.startswith("household:")
    )
    assert household_tokens == -bal[(ISSUANCE, "token")] == int(r.tokens_micro.sum()) > 0
    assert bal[(POOL, "currency")] == 0
    assert kpis(r)["tokens_issued"] == household_tokens / MICRO
    readings = con.execute("SELECT COUNT(*), SUM(status = 'verified') FROM readings").fetchone()
    assert readings == (96 * 14, 96 * 14)
    # every meter, the transformer's too, signed its interval's mean voltage (bus voltage, mV)
    volts = con.execute("SELECT meter, v_mv FROM meter_readings").fetchall()
    assert len(volts) == 96 * 15 and len({m for m, _ in volts}) == 15
    assert all(0.9 * 230_000 < v < 1.1 * 230_000 for _, v in volts), min(volts, key=lambda r: r[1])


def _head(tmp: Path, seed: int) -> str:
    """Ledger head of four sunny hours (10:00-14:00 UTC) of the default scenario."""
    noon = Scenario.model_validate(
        {**load_scenario().model_dump(), "start": "2026-06-21T10:00:00Z"}
    )
    scn = with_overrides(noon, seed=seed, intervals=16)
    return simulate(scn, tmp / f"l{seed}-{len(list(tmp.iterdir()))}.sqlite").ledger_head


def test_same_seed_same_head_other_seed_other_head(tmp_path: Path) -> None:
    first = _head(tmp_path, 42)
    assert first != GENESIS
    assert _head(tmp_path, 42) == first
    assert _head(tmp_path, 7) != first


def test_tampered_sim_ledger_fails_verification(default_day: SimResult, tmp_path: Path) -> None:
    copy = tmp_path / "copy.sqlite"
    src = sqlite3.connect(default_day.ledger_path)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.executescript("DROP TRIGGER entries_no_update;")
    seq = dst.execute("SELECT MAX(seq) / 2 FROM entries").fetchone()[0]
    dst.execute("UPDATE entries SET amount = amount + 1 WHERE seq = ?", (seq,))
    dst.commit()
    dst.close()
    check = verify_ledger(copy)
    assert not check.ok and check.problem.startswith(f"entry {seq} ")
