"""Tamper evidence, inclusion proofs, statements and the ledger commands."""

import json
import random
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridctl.cli import app
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.enrol import SyntheticCommunity
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.settle import SettlementConfig, Settler
from gridctl.settlement.statement import check_proof, inclusion_proof, statement
from tests.keys import COORDINATOR_KEY

T0 = 2_000_000
runner = CliRunner()
COLUMNS = ("tx_id", "interval", "kind", "account", "asset", "amount", "prev_hash", "hash")


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("audit") / "ledger.sqlite"
    with Ledger(db, COORDINATOR_KEY) as led:
        c = SyntheticCommunity(6, T0, seed=21)
        c.enrol(led)
        settler = Settler(led, SettlementConfig(0.20, 1.0))
        for t in range(4):
            settler.settle(T0 + t, c.readings(T0 + t))
    return db


def _copy(src: Path, dst: Path) -> Path:
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    a.backup(b)
    a.close()
    # a forger with write access drops whatever constraint stands in the way
    b.executescript("DROP TRIGGER entries_no_update; DROP INDEX idx_entries_tx_id_account_asset;")
    b.close()
    return dst


def _flip(value: object, rng: random.Random) -> object:
    """The value with one byte of its stored form changed."""
    if isinstance(value, int):
        raw = bytearray(str(value).encode())
        k = rng.randrange(len(raw))
        raw[k] = ord("7") if raw[k] != ord("7") else ord("3")
        if raw[0] == ord("-") and k == 0:
            raw[0] = ord("1")
        return int(raw)
    raw = bytearray(str(value).encode())
    k = rng.randrange(len(raw))
    raw[k] ^= 0x01
    return raw.decode("latin-1")


def test_changing_any_byte_of_any_entry_is_named(settled: Path, tmp_path: Path) -> None:
    assert verify_ledger(settled).ok
    con = sqlite3.connect(settled)
    rows = con.execute(f"SELECT seq, {', '.join(COLUMNS)} FROM entries ORDER BY seq").fetchall()
    con.close()
    rng = random.Random(6)
    cases = 0
    for row in rows:
        seq = row[0]
        for col, value in zip(COLUMNS, row[1:], strict=True):
            db = _copy(settled, tmp_path / f"t{seq}-{col}.sqlite")
            con = sqlite3.connect(db)
            con.execute(f"UPDATE entries SET {col} = ? WHERE seq = ?", (_flip(value, rng), seq))
            con.commit()
            con.close()
            check = verify_ledger(db)
            assert not check.ok, (seq, col)
            assert check.problem is not None and check.problem.startswith(f"entry {seq} "), (
                seq, col, check.problem,
            )  # fmt: skip
            db.unlink()
            cases += 1
    assert cases == len(rows) * len(COLUMNS) > 100


def test_tampered_root_or_renumbered_entry_is_found(settled: Path, tmp_path: Path) -> None:
    db = _copy(settled, tmp_path / "r.sqlite")
    con = sqlite3.connect(db)
    con.executescript("DROP TRIGGER interval_roots_no_update;")
    con.execute("UPDATE interval_roots SET root = ? WHERE interval = ?", ("00" * 32, T0 + 2))
    con.commit()
    assert verify_ledger(db).problem == f"interval {T0 + 2}: Merkle root does not match its entries"
    db2 = _copy(settled, tmp_path / "s.sqlite")
    con = sqlite3.connect(db2)
    con.execute("UPDATE entries SET seq = 10000 WHERE seq = 5")
    con.commit()
    assert (verify_ledger(db2).problem or "").startswith("entry 5: missing or renumbered")


def test_inclusion_proofs_verify_on_their_own(settled: Path) -> None:
    con = sqlite3.connect(settled)
    (root,) = con.execute(
        "SELECT root FROM interval_roots WHERE interval = ?", (T0 + 1,)
    ).fetchone()
    con.close()
    proven = 0
    for h in [f"h{k:05d}" for k in range(6)]:
        doc = json.loads(json.dumps(inclusion_proof(settled, h, T0 + 1)))
        ok, msg = check_proof(doc, root)
        assert ok, msg
        proven += len(doc["entries"])
        if doc["entries"]:
            forged = json.loads(json.dumps(doc))
            forged["entries"][0]["entry"]["amount"] += 1
            assert not check_proof(forged)[0]
            assert not check_proof(doc, "11" * 32)[0]
    assert proven > 0


def test_statement_adds_up_to_the_balances(settled: Path) -> None:
    rows = statement(settled, "h00001")
    assert [r.interval for r in rows] == [T0, T0 + 1, T0 + 2, T0 + 3]
    with Ledger(settled, COORDINATOR_KEY) as led:
        bal = led.balances()
    assert sum(r.tokens for r in rows) == bal.get(("household:h00001", "token"), 0)
    money = sum(r.earned - r.paid for r in rows)
    assert money == bal.get(("household:h00001", "currency"), 0)
    assert all(r.status == "verified" for r in rows)
    assert statement(settled, "h00001", T0 + 1, T0 + 2)[0].interval == T0 + 1


def test_ledger_commands(settled: Path, tmp_path: Path) -> None:
    ok = runner.invoke(app, ["ledger", "verify", str(settled)])
    assert ok.exit_code == 0 and "4 interval roots" in ok.output
    st = runner.invoke(app, ["ledger", "statement", str(settled), "h00002", "--csv"])
    assert st.exit_code == 0, st.output
    lines = st.output.strip().splitlines()
    assert lines[0].startswith("interval,start,import_wh,export_wh,status") and len(lines) == 5
    ranged = runner.invoke(
        app, ["ledger", "statement", str(settled), "h00002", "--from", str(T0 + 2), "--json"]
    )
    assert [r["interval"] for r in json.loads(ranged.output)] == [T0 + 2, T0 + 3]
    table = runner.invoke(app, ["ledger", "statement", str(settled), "h00002"])
    assert table.exit_code == 0 and "total" in table.output
    proof = runner.invoke(app, ["ledger", "proof", str(settled), "h00002", str(T0 + 3)])
    assert proof.exit_code == 0
    path = tmp_path / "proof.json"
    path.write_text(proof.output)
    good = runner.invoke(app, ["ledger", "check-proof", str(path)])
    assert good.exit_code == 0 and "proof holds" in good.output
    doc = json.loads(proof.output)
    doc["root"] = "22" * 32
    path.write_text(json.dumps(doc))
    bad = runner.invoke(app, ["ledger", "check-proof", str(path)])
    assert bad.exit_code == 1 and "proof fails" in bad.output
    nobody = runner.invoke(app, ["ledger", "statement", str(settled), "h99"])
    assert nobody.exit_code == 2 and "no household h99" in nobody.output
    open_iv = runner.invoke(app, ["ledger", "proof", str(settled), "h00002", str(T0 + 9)])
    assert open_iv.exit_code == 2 and "not settled" in open_iv.output
