"""The ledger: balanced double-entry postings in integer micro-units, hash-chained, in SQLite.

Every posting (one row of ``entries``) is chained: ``hash = sha256(prev_hash || canonical)``
where ``canonical`` is the compact JSON array of the posting's fields and the first
``prev_hash`` is 32 zero bytes. The head (hash of the last posting) is kept in ``meta``.
Every transaction sums to zero per asset. Rows are append-only (triggers refuse
UPDATE and DELETE); a correction is a new, reversing transaction.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gridctl.core import LedgerError

GENESIS = "00" * 32
"""prev_hash of the first posting."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq       INTEGER PRIMARY KEY,
    tx_id     TEXT    NOT NULL,
    interval  INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    account   TEXT    NOT NULL,
    asset     TEXT    NOT NULL,
    amount    INTEGER NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    UNIQUE (tx_id, account, asset)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS readings (
    household   TEXT    NOT NULL,
    interval    INTEGER NOT NULL,
    e_import_wh INTEGER,
    e_export_wh INTEGER,
    status      TEXT    NOT NULL,
    reason      TEXT,
    PRIMARY KEY (household, interval)
);
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
"""


@dataclass(frozen=True)
class Posting:
    """One leg of a transaction: ``amount`` micro-units of ``asset`` into ``account`` (< 0 out)."""

    account: str
    asset: str
    amount: int


@dataclass(frozen=True)
class Transaction:
    """A balanced set of postings booked together for one interval."""

    tx_id: str
    interval: int
    kind: str
    postings: tuple[Posting, ...]

    def unbalanced_assets(self) -> list[str]:
        """Assets whose postings do not sum to zero (empty when balanced)."""
        total: dict[str, int] = defaultdict(int)
        for p in self.postings:
            total[p.asset] += p.amount
        return sorted(a for a, v in total.items() if v != 0)


def entry_hash(
    prev_hash: str,
    seq: int,
    tx_id: str,
    interval: int,
    kind: str,
    account: str,
    asset: str,
    amount: int,
) -> str:
    """sha256 (hex) over the previous hash and the canonical bytes of one posting."""
    canonical = json.dumps(
        [seq, tx_id, interval, kind, account, asset, amount],
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode()
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical).hexdigest()


class Ledger:
    """An open ledger file; use as a context manager."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        self._seq, self._head = (row[0], row[1]) if row else (0, GENESIS)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    @property
    def head(self) -> str:
        """Hash of the last posting (hex); GENESIS when empty."""
        return self._head

    def append(self, txs: Sequence[Transaction]) -> None:
        """Book transactions atomically; refuses any that does not balance per asset."""
        for tx in txs:
            bad = tx.unbalanced_assets()
            if bad:
                raise LedgerError(f"transaction {tx.tx_id} does not balance in {', '.join(bad)}")
        rows = []
        seq, head = self._seq, self._head
        for tx in txs:
            for p in tx.postings:
                seq += 1
                h = entry_hash(
                    head, seq, tx.tx_id, tx.interval, tx.kind, p.account, p.asset, p.amount
                )
                rows.append(
                    (seq, tx.tx_id, tx.interval, tx.kind, p.account, p.asset, p.amount, head, h)
                )
                head = h
        try:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?)", rows)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('head', ?)", (head,))
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            self._db.execute("ROLLBACK")
            raise LedgerError(f"ledger write failed: {e}") from None
        self._seq, self._head = seq, head

    def record_readings(
        self, rows: Iterable[tuple[str, int, int | None, int | None, str, str | None]]
    ) -> None:
        """Store meter readings (household, interval, import Wh, export Wh, status, reason)."""
        with self._db:
            self._db.executemany("INSERT INTO readings VALUES (?,?,?,?,?,?)", list(rows))

    def balances(self) -> dict[tuple[str, str], int]:
        """Balance per (account, asset), micro-units."""
        q = "SELECT account, asset, SUM(amount) FROM entries GROUP BY account, asset"
        return {(a, s): int(v) for a, s, v in self._db.execute(q)}


@dataclass(frozen=True)
class LedgerCheck:
    """Outcome of ``verify_ledger``: ``problem`` names the first bad entry, None when intact."""

    entries: int
    transactions: int
    head: str
    problem: str | None

    @property
    def ok(self) -> bool:
        """True when the chain, the head and every transaction check out."""
        return self.problem is None


def verify_ledger(path: Path) -> LedgerCheck:
    """Recompute the hash chain, compare the stored head, and check every transaction balances."""
    path = Path(path)
    if not path.is_file():
        raise LedgerError(f"no ledger file at {path}")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        rows = db.execute(
            "SELECT seq, tx_id, interval, kind, account, asset, amount, prev_hash, hash"
            " FROM entries ORDER BY seq"
        ).fetchall()
        stored = db.execute("SELECT value FROM meta WHERE key = 'head'").fetchone()
        db.close()
    except sqlite3.Error as e:
        raise LedgerError(f"{path} is not a gridctl ledger: {e}") from None

    chain_problem: str | None = None
    head = GENESIS
    sums: dict[tuple[str, str], int] = defaultdict(int)
    first_seq: dict[str, int] = {}
    for k, (seq, tx_id, interval, kind, account, asset, amount, prev, h) in enumerate(rows, 1):
        if chain_problem is None:
            where = f"entry {seq} (tx {tx_id}, {account}, {asset})"
            if seq != k:
                chain_problem = f"{where}: sequence gap, expected {k}"
            elif prev != head:
                chain_problem = f"{where}: prev_hash does not match the previous entry"
            elif entry_hash(head, seq, tx_id, interval, kind, account, asset, amount) != h:
                chain_problem = f"{where}: hash mismatch (content changed)"
        head = h
        sums[(tx_id, asset)] += amount
        first_seq.setdefault(tx_id, seq)
    unbalanced = sorted((first_seq[t], t, a, v) for (t, a), v in sums.items() if v != 0)
    # the first entry whose hash breaks is the most precise pointer; a forger who re-chained
    # every hash is still caught by the balance check, and a swapped head by the last test
    problem = chain_problem
    if problem is None and unbalanced:
        seq, tx_id, asset, total = unbalanced[0]
        problem = f"entry {seq} (tx {tx_id}): {asset} sums to {total}, not 0"
    if problem is None and (stored[0] if stored else GENESIS) != head:
        problem = "stored head does not match the last entry"
    return LedgerCheck(
        entries=len(rows),
        transactions=len(first_seq),
        head=head,
        problem=problem,
    )
