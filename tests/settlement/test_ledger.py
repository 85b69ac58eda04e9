import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gridctl.cli import app
from gridctl.core import LedgerError
from gridctl.settlement.audit import verify_ledger
from gridctl.settlement.ledger import GENESIS, Ledger, Posting, Transaction
from tests.keys import COORDINATOR_KEY


def _tx(n: int, amount: int = 5) -> Transaction:
    return Transaction(
        f"{n}:t",
        n,
        "test",
        (Posting("household:a", "currency", -amount), Posting("pool", "currency", amount)),
    )


def _book(path: Path, txs: list[Transaction]) -> str:
    with Ledger(path, COORDINATOR_KEY) as led:
        led.append(txs)
        return led.head


def test_intact_ledger_verifies(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    head = _book(db, [_tx(1), _tx(2, 7)])
    check = verify_ledger(db)
    assert check.ok and check.entries == 4 and check.transactions == 2 and check.head == head
    assert head != GENESIS


def test_unbalanced_transaction_is_refused_and_nothing_written(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    bad = Transaction("x", 1, "test", (Posting("a", "token", 3), Posting("b", "token", -2)))
    with (
        Ledger(db, COORDINATOR_KEY) as led,
        pytest.raises(LedgerError, match="does not balance in token"),
    ):
        led.append([_tx(1), bad])
    assert verify_ledger(db).entries == 0


def test_entries_are_append_only(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    _book(db, [_tx(1)])
    con = sqlite3.connect(db)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE entries SET amount = 1 WHERE seq = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM entries")


def _tamper(db: Path, sql: str) -> None:
    con = sqlite3.connect(db)
    con.executescript("DROP TRIGGER entries_no_update; DROP TRIGGER entries_no_delete;")
    con.execute(sql)
    con.commit()
    con.close()


def test_changed_amount_is_named(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    _book(db, [_tx(1), _tx(2), _tx(3)])
    _tamper(db, "UPDATE entries SET amount = amount + 1 WHERE seq = 4")
    check = verify_ledger(db)
    assert not check.ok
    assert check.problem is not None and check.problem.startswith("entry 4 ")


def test_rechained_forgery_is_caught_by_balance(tmp_path: Path) -> None:
    """A forger who rewrites every hash after changing an amount still breaks the balance."""
    from gridctl.settlement.ledger import entry_hash

    db = tmp_path / "l.sqlite"
    _book(db, [_tx(1), _tx(2)])
    _tamper(db, "UPDATE entries SET amount = -4 WHERE seq = 1")
    con = sqlite3.connect(db)
    head = GENESIS
    for row in con.execute(
        "SELECT seq, tx_id, interval, kind, account, asset, amount FROM entries ORDER BY seq"
    ).fetchall():
        h = entry_hash(head, *row)
        con.execute("UPDATE entries SET prev_hash = ?, hash = ? WHERE seq = ?", (head, h, row[0]))
        head = h
    con.execute("UPDATE meta SET value = ? WHERE key = 'head'", (head,))
    con.commit()
    check = verify_ledger(db)
    assert not check.ok and "currency sums to 1" in (check.problem or "")


def test_deleted_entry_is_found(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    _book(db, [_tx(1), _tx(2)])
    _tamper(db, "DELETE FROM entries WHERE seq = 2")
    assert not verify_ledger(db).ok


def test_cli_verify_exit_codes(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    _book(db, [_tx(1), _tx(2)])
    runner = CliRunner()
    ok = runner.invoke(app, ["ledger", "verify", str(db)])
    assert ok.exit_code == 0 and "ledger intact" in ok.output
    _tamper(db, "UPDATE entries SET amount = 99 WHERE seq = 3")
    bad = runner.invoke(app, ["ledger", "verify", str(db)])
    assert bad.exit_code == 1 and "entry 3" in bad.output
    missing = runner.invoke(app, ["ledger", "verify", str(tmp_path / "nope.sqlite")])
    assert missing.exit_code == 2 and "no ledger file" in missing.output


amounts = st.lists(st.integers(min_value=-(10**12), max_value=10**12), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(st.lists(amounts, min_size=1, max_size=8))
def test_random_balanced_transactions_conserve(
    tmp_path_factory, legs_per_tx: list[list[int]]
) -> None:
    db = tmp_path_factory.mktemp("h") / "l.sqlite"
    txs = []
    for n, legs in enumerate(legs_per_tx):
        postings = [Posting(f"household:h{k}", "token", a) for k, a in enumerate(legs)]
        postings.append(Posting("token:issuance", "token", -sum(legs)))
        txs.append(Transaction(f"{n}:r", n, "reward", tuple(postings)))
    with Ledger(db, COORDINATOR_KEY) as led:
        led.append(txs)
        balances = led.balances()
    assert sum(balances.values()) == 0
    assert verify_ledger(db).ok
