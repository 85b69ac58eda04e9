"""A ledger bound to what was published: each attack on a copy of a settled ledger is named by
`ledger verify --roots` (exit 1), the intact ledger verifies (exit 0)."""

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridctl.cli import app
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.canonical import canonical
from gridctl.settlement.enrol import SyntheticCommunity, main_meter
from gridctl.settlement.ledger import GENESIS, Ledger, entry_hash, interval_entries
from gridctl.settlement.merkle import leaf_hash, root_from_leaf_hashes
from gridctl.settlement.registry import revoke_key, rotate_key
from gridctl.settlement.roots import (
    COVERED,
    ZERO,
    RootsFile,
    records_digest,
    root_payload,
    table_digest,
)
from gridctl.settlement.settle import SettlementConfig, Settler
from gridctl.settlement.signing import MeterSigner, key_from_seed, public_bytes
from tests.keys import COORDINATOR_KEY, COORDINATOR_PUBLIC_HEX

T0 = 3_000_000
INTERVALS = 5
ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A settled ledger (a key rotated, one revoked) and the roots published as it closed."""
    d = tmp_path_factory.mktemp("bound")
    db = d / "ledger.sqlite"
    roots = []
    with Ledger(db, COORDINATOR_KEY) as led:
        c = SyntheticCommunity(5, T0, seed=4)
        c.enrol(led)
        settler = Settler(led, SettlementConfig(0.20, 1.0))
        for t in range(INTERVALS):
            iv = T0 + t
            if t == 2:  # h00001 gets a new key, h00002's is revoked
                meter = main_meter("h00001")
                new = key_from_seed(b"h00001 new key")
                rotate_key(led, meter, public_bytes(new), iv)
                c.signers[meter] = MeterSigner(meter, new, c.signers[meter].seq)
                revoke_key(led, c.signers[main_meter("h00002")].key_id, iv)
            out = settler.settle(iv, c.readings(iv))
            if t >= 2:
                assert (main_meter("h00002"), "revoked_key") in out.rejected
                assert out.status[1] == "verified"  # under its new key
            roots.append(led.signed_root(iv))
    doc = RootsFile(community="oak", household="h00000", coordinator_key=COORDINATOR_PUBLIC_HEX,
                    roots=roots)  # fmt: skip
    (d / "roots.json").write_text(doc.model_dump_json())
    return db, d / "roots.json"


def _forge(src: Path, dst: Path) -> sqlite3.Connection:
    """A copy of ``src`` open for a forger, who drops every trigger in the way."""
    shutil.copy(src, dst)
    con = sqlite3.connect(dst, isolation_level=None)
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        con.execute(f"DROP TRIGGER {name}")
    return con


def _reseal(con: sqlite3.Connection) -> None:
    """What a forger holding the coordinator key does after an edit: renumber and re-chain the
    entries, then recompute every root (Merkle root, head, covered rows, chain, signature)."""
    rows = con.execute(
        "SELECT tx_id, interval, kind, account, asset, amount FROM entries ORDER BY seq"
    ).fetchall()
    con.execute("DELETE FROM entries")
    head, heads = GENESIS, {}
    for seq, r in enumerate(rows, 1):
        h = entry_hash(head, seq, *r)
        con.execute("INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?)", (seq, *r, head, h))
        head = heads[r[1]] = h
    con.execute("UPDATE meta SET value = ? WHERE key = 'head'", (head,))
    prev, marks, head = ZERO, dict.fromkeys(COVERED, 0), GENESIS
    for iv, covered in con.execute(
        "SELECT interval, covered FROM interval_roots ORDER BY interval"
    ).fetchall():
        leaves = [leaf_hash(canonical(e)) for e in interval_entries(con, iv)]
        head = heads.get(iv, head)
        spans = {t: list(table_digest(con, t, marks[t], last)) for t, (last, _) in
                 json.loads(covered).items()}  # fmt: skip
        marks = {t: s[0] for t, s in spans.items()}
        records = records_digest(spans)
        root = root_from_leaf_hashes(leaves).hex()
        payload = root_payload(iv, len(leaves), root, head, records, prev)
        con.execute(
            "UPDATE interval_roots SET size = ?, root = ?, head = ?, records = ?, covered = ?,"
            " prev = ?, sig = ? WHERE interval = ?",
            (len(leaves), root, head, records, json.dumps(spans, sort_keys=True), prev,
             COORDINATOR_KEY.sign(payload).hex(), iv),
        )  # fmt: skip
        prev = hashlib.sha256(payload).hexdigest()


def _rewrite_tail(con: sqlite3.Connection) -> None:
    """Pay every token reward from the fourth interval on a token more, all recomputed."""
    for tx_id, seq in con.execute(
        "SELECT tx_id, seq FROM entries WHERE interval >= ? AND asset = 'token'"
        " AND account LIKE 'household:%'",
        (T0 + 3,),
    ).fetchall():
        con.execute("UPDATE entries SET amount = amount + 1000000 WHERE seq = ?", (seq,))
        con.execute(
            "UPDATE entries SET amount = amount - 1000000 WHERE tx_id = ? AND seq != ?",
            (tx_id, seq),
        )
    _reseal(con)


def _remove_interval(con: sqlite3.Connection, iv: int) -> None:
    """Every trace of interval ``iv``, gone; the rest recomputed."""
    for table, col in (("entries", "interval"), ("transactions", "interval"),
                       ("interval_roots", "interval"), ("meter_readings", "interval"),
                       ("rejects", "at_interval"), ("estimates", "interval")):  # fmt: skip
        con.execute(f"DELETE FROM {table} WHERE {col} = ?", (iv,))
    _reseal(con)


def _edit_root_head(con: sqlite3.Connection) -> None:
    (earlier,) = con.execute("SELECT head FROM interval_roots WHERE interval = ?", (T0,)).fetchone()
    con.execute("UPDATE interval_roots SET head = ? WHERE interval = ?", (earlier, T0 + 2))


def _edit_root_signature(con: sqlite3.Connection) -> None:
    forged = key_from_seed(b"someone else").sign(b"anything").hex()
    con.execute("UPDATE interval_roots SET sig = ? WHERE interval = ?", (forged, T0 + 1))


def _edit_reading(con: sqlite3.Connection) -> None:
    con.execute(
        "UPDATE meter_readings SET e_export_wh = e_export_wh + 5000 WHERE meter = ?"
        " AND interval = ?",
        (main_meter("h00004"), T0 + 1),
    )


def _edit_key(con: sqlite3.Connection) -> None:
    forged = public_bytes(key_from_seed(b"forger"))
    con.execute(
        "UPDATE meter_keys SET public_key = ? WHERE meter = ?", (forged, main_meter("h00000"))
    )


def _replace_key(con: sqlite3.Connection) -> None:
    forged = public_bytes(key_from_seed(b"forger"))
    key_id, meter, _, valid_from = con.execute(
        "SELECT * FROM meter_keys WHERE meter = ?", (main_meter("h00000"),)
    ).fetchone()
    con.execute("INSERT OR REPLACE INTO meter_keys VALUES (?,?,?,?)",
                (key_id, meter, forged, valid_from))  # fmt: skip


def _replace_reading(con: sqlite3.Connection) -> None:
    row = list(
        con.execute(
            "SELECT * FROM meter_readings WHERE meter = ? AND interval = ?",
            (main_meter("h00004"), T0 + 3),
        ).fetchone()
    )
    row[4] += 5000  # e_export_wh
    con.execute(f"REPLACE INTO meter_readings VALUES ({','.join('?' * len(row))})", row)


def _backdate_revocation(con: sqlite3.Connection) -> None:
    con.execute("UPDATE key_events SET at_interval = ? WHERE event = 'revoked'", (T0 + 4,))


def _truncate(con: sqlite3.Connection) -> None:
    _remove_interval(con, T0 + INTERVALS - 1)


ATTACKS: dict[str, tuple[Callable[[sqlite3.Connection], None], str, bool]] = {
    # name: (attack, what verify --roots names, whether verify without roots still passes)
    "rewritten tail, roots recomputed and re-signed": (
        _rewrite_tail, f"interval {T0 + 3}: the ledger's root differs from the published one",
        True,
    ),
    "interval removed from the middle, the rest recomputed": (
        lambda con: _remove_interval(con, T0 + 1),
        f"interval {T0 + 1}: published, but missing from the ledger", True,
    ),
    "last interval removed": (
        _truncate, f"interval {T0 + 4}: published, but missing from the ledger", True,
    ),
    "interval_roots.head edited": (
        _edit_root_head, f"interval {T0 + 2}: its head is not the entry chain's head", False,
    ),
    "interval_roots.sig edited": (
        _edit_root_signature, f"interval {T0 + 1}: root signature does not verify", False,
    ),
    "meter_readings row edited": (
        _edit_reading, f"interval {T0 + 1}: meter_readings rows differ from what its root covers",
        False,
    ),
    "meter_keys row edited": (
        _edit_key, f"interval {T0}: meter_keys rows differ from what its root covers", False,
    ),
    "meter_keys row replaced (INSERT OR REPLACE)": (
        _replace_key, f"interval {T0}: meter_keys rows differ from what its root covers", False,
    ),
    "meter_readings row replaced (REPLACE)": (
        _replace_reading,
        f"interval {T0 + 3}: meter_readings rows differ from what its root covers", False,
    ),
    "key event edited": (
        _backdate_revocation,
        f"interval {T0 + 2}: key_events rows differ from what its root covers", False,
    ),
}  # fmt: skip


def test_the_intact_ledger_verifies_against_its_published_roots(
    published: tuple[Path, Path],
) -> None:
    db, roots = published
    doc = RootsFile.model_validate_json(roots.read_text())
    check = verify_ledger(db, doc.roots, bytes.fromhex(doc.coordinator_key), doc.roots[-1].chain())
    assert check.ok, check.problem
    assert check.published == INTERVALS and check.chain_head == doc.roots[-1].chain()


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_each_attack_is_named(published: tuple[Path, Path], tmp_path: Path, attack: str) -> None:
    db, roots = published
    forge, named, passes_alone = ATTACKS[attack]
    copy = tmp_path / "forged.sqlite"
    con = _forge(db, copy)
    forge(con)
    con.close()
    assert verify_ledger(copy).ok == passes_alone, verify_ledger(copy).problem
    res = runner.invoke(app, ["ledger", "verify", str(copy), "--roots", str(roots)])
    assert res.exit_code == 1, res.output
    line = " ".join(res.output.split())
    assert line.startswith(f"ledger broken: {named}"), line


def test_cli_as_a_process_intact_0_rewritten_1_published_head(
    published: tuple[Path, Path], tmp_path: Path
) -> None:
    db, roots = published
    doc = RootsFile.model_validate_json(roots.read_text())
    head = doc.roots[-1].chain()

    def verify(path: Path, *more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gridctl", "ledger", "verify", str(path), *more],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip

    ok = verify(db, "--roots", str(roots), "--head", head)
    assert ok.returncode == 0 and f"chain head {head}" in ok.stdout, ok.stderr
    assert f"{INTERVALS} published roots matched" in ok.stdout
    forged = tmp_path / "forged.sqlite"
    con = _forge(db, forged)
    _rewrite_tail(con)
    con.close()
    bad = verify(forged, "--roots", str(roots))
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert f"interval {T0 + 3}: the ledger's root differs" in bad.stderr
    truncated = tmp_path / "truncated.sqlite"
    con = _forge(db, truncated)
    _truncate(con)
    con.close()
    assert verify(truncated).returncode == 0  # consistent on its own ...
    cut = verify(truncated, "--head", head)  # ... but not what was published
    assert cut.returncode == 1 and f"published head {head}: not in the ledger" in cut.stderr


def test_rows_cannot_be_replaced_or_inserted_twice(published: tuple[Path, Path]) -> None:
    db, _ = published
    con = sqlite3.connect(db)
    try:
        for table in ("meter_keys", "meter_readings", "interval_roots", "entries", "key_events",
                      "transactions", "meters", "rejects"):  # fmt: skip
            row = con.execute(f"SELECT * FROM {table} LIMIT 1").fetchone()
            assert row is not None, table
            marks = ",".join("?" * len(row))
            for verb in ("INSERT OR REPLACE", "REPLACE", "INSERT OR IGNORE", "INSERT"):
                with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                    con.execute(f"{verb} INTO {table} VALUES ({marks})", row)
        # another posting into a transaction's (tx_id, account, asset): the unique index's key
        seq, *rest = con.execute("SELECT * FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute("INSERT OR REPLACE INTO entries VALUES (?,?,?,?,?,?,?,?,?)",
                        (seq + 1, *rest))  # fmt: skip
    finally:
        con.close()
    assert verify_ledger(db).ok


def test_bad_roots_files_and_old_ledgers_end_in_one_line(
    published: tuple[Path, Path], tmp_path: Path
) -> None:
    db, roots = published
    doc = json.loads(roots.read_text())
    doc["roots"][1]["sig"] = doc["roots"][0]["sig"]
    forged = tmp_path / "forged-roots.json"
    forged.write_text(json.dumps(doc))
    res = runner.invoke(app, ["ledger", "verify", str(db), "--roots", str(forged)])
    assert res.exit_code == 1
    assert f"published root of interval {T0 + 1}: not signed by the trusted key" in res.output
    other = json.loads(roots.read_text())
    other["coordinator_key"] = public_bytes(key_from_seed(b"another coordinator")).hex()
    (tmp_path / "other.json").write_text(json.dumps(other))
    res = runner.invoke(app, ["ledger", "verify", str(db), "--roots", str(tmp_path / "other.json")])
    assert res.exit_code == 1 and "not the trusted" in res.output
    cases = {"garbage.json": b"\x00\xff not json", "empty.json": b"{}"}
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
        res = runner.invoke(app, ["ledger", "verify", str(db), "--roots", str(tmp_path / name)])
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
        assert name in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["ledger", "verify", str(db), "--head", "xyz"])
    assert res.exit_code == 2 and "--head" in res.output
    old = tmp_path / "old.sqlite"
    con = sqlite3.connect(old)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    con.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    con.commit()
    con.close()
    res = runner.invoke(app, ["ledger", "verify", str(old)])
    assert res.exit_code == 2 and "schema version 2" in " ".join(res.output.split())
    assert len(res.output.strip().splitlines()) <= 2 and "Traceback" not in res.output
