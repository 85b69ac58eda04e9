"""The ledger: balanced double-entry postings in integer micro-units, hash-chained, in SQLite.

Every posting (one row of ``entries``) is chained: ``hash = sha256(prev_hash || canonical)``
where ``canonical`` is the compact ASCII JSON array
``[seq, tx_id, interval, kind, account, asset, amount]`` and the first ``prev_hash`` is 32 zero
bytes. The head (hash of the last posting) is kept in ``meta``.

Every transaction sums to zero per asset and carries an idempotency key
``(subject, interval, kind)`` — the subject is the meter a transaction settles (its tx_id when it
belongs to no meter) — that is UNIQUE: booking the same transaction again changes nothing, booking
the same key with other postings is refused (``LedgerConflictError``) and recorded in
``conflicts``. Rows are append-only (triggers refuse UPDATE and DELETE); a correction is a new,
reversing transaction (``reversal_of``).

An interval is *closed* by storing the RFC 6962 Merkle root over its entries' canonical bytes
(``interval_roots``); a closed interval takes no more entries, and every entry of it has an
inclusion proof against the root. The file runs in WAL mode and a caller groups everything it
books for one interval in one ``atomic()`` block, so a killed process leaves either all of an
interval or none of it.

This module is the journal (append, ``atomic()``, close an interval). The other tables of the
file belong to the modules whose data they hold — meters and keys to ``registry``, readings to
``readings``, interval roots to ``roots`` — which declare and write them; the ledger creates them
when it opens a file. The bytes every hash covers are ``canonical``'s; ``audit`` checks a file.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridctl.core import LedgerError, private_file
from gridctl.settlement import (
    aggregates,
    cases,
    flex_records,
    gov_records,
    grid_records,
    readings,
    registry,
    roots,
)
from gridctl.settlement.canonical import canonical
from gridctl.settlement.merkle import leaf_hash, root_from_leaf_hashes
from gridctl.settlement.roots import (
    ZERO,
    RootMessage,
    RootRow,
    add_root,
    closed_among,
    covered_since,
    last_closed,
    records_digest,
    root_payload,
    root_row,
)
from gridctl.settlement.signing import key_id_of, public_bytes
from gridctl.settlement.tables import create_tables, insert_rows, make_append_only, select_rows

GENESIS = "00" * 32
"""prev_hash of the first posting."""

SCHEMA_VERSION = "8"
"""3: signed, chained interval roots; 4: meter readings carry their interval's voltage;
5: governance records (``gov_records``); 6: public aggregates (``aggregates``); 8: grid
tariffs and pool shares (``grid_records``)."""


class LedgerConflictError(LedgerError):
    """An idempotency key was booked again with different postings (recorded in ``conflicts``)."""

    def __init__(self, message: str, conflicts: list[tuple[str, int, str, str, str, str]]):
        super().__init__(message)
        self.conflicts = conflicts


class Posting(NamedTuple):
    """One leg of a transaction: ``amount`` micro-units of ``asset`` into ``account`` (< 0 out).

    Named tuples, as ``Transaction``: a settled interval makes thousands, and a tuple is built
    in a third of the time of a frozen dataclass.
    """

    account: str
    asset: str
    amount: int


class Transaction(NamedTuple):
    """A balanced set of postings booked together for one interval.

    meter: the meter the transaction settles; with ``interval`` and ``kind`` it forms the
    idempotency key (None: the tx_id stands in for it). reverses: tx_id this one reverses.
    """

    tx_id: str
    interval: int
    kind: str
    postings: tuple[Posting, ...]
    meter: str | None = None
    reverses: str | None = None

    @property
    def subject(self) -> str:
        """First part of the idempotency key: the meter, else the tx_id."""
        return self.meter if self.meter is not None else self.tx_id

    def unbalanced_assets(self) -> list[str]:
        """Assets whose postings do not sum to zero (empty when balanced)."""
        total: dict[str, int] = defaultdict(int)
        for p in self.postings:
            total[p.asset] += p.amount
        return sorted(a for a, v in total.items() if v != 0)

    def digest(self) -> str:
        """sha256 (hex) of what the transaction books: key, reversal link and postings."""
        parts = [canonical((self.tx_id, self.subject, self.interval, self.kind, self.reverses))]
        parts += [canonical((0, "", 0, "", *p)) for p in self.postings]  # blank seq … kind
        return hashlib.sha256(b"\n".join(parts)).hexdigest()


def _two_legs_balance(postings: Sequence[Posting]) -> bool:
    """True for the common transaction, two integer legs of one asset that cancel; False means
    "ask ``unbalanced_assets``", not "unbalanced"."""
    if len(postings) != 2:
        return False
    a, b = postings
    return (
        a.asset == b.asset
        and type(a.amount) is int
        and type(b.amount) is int
        and a.amount + b.amount == 0
    )


class Entry(NamedTuple):
    """One posting as stored in ``entries`` (without its hashes): ``canonical(entry)`` is its
    Merkle leaf data and what its chain hash covers."""

    seq: int
    tx_id: str
    interval: int
    kind: str
    account: str
    asset: str
    amount: int


class KindTotal(NamedTuple):
    """What one account booked in one interval under one kind and asset, micro-units."""

    interval: int
    kind: str
    asset: str
    amount: int


def interval_entries(db: sqlite3.Connection, interval: int) -> list[Entry]:
    """The entries of ``interval`` in chain order (the leaves of its Merkle tree)."""
    return select_rows(db, Entry, "FROM entries WHERE interval = ? ORDER BY seq", (interval,))


def account_totals(db: sqlite3.Connection, account: str, first: int, last: int) -> list[KindTotal]:
    """Sums of ``account``'s postings per interval, kind and asset, intervals first…last."""
    return select_rows(
        db,
        KindTotal,
        "FROM (SELECT interval, kind, asset, SUM(amount) AS amount FROM entries"
        " WHERE account = ? AND interval BETWEEN ? AND ? GROUP BY interval, kind, asset)",
        (account, first, last),
    )


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
    data = canonical((seq, tx_id, interval, kind, account, asset, amount))
    return hashlib.sha256(bytes.fromhex(prev_hash) + data).hexdigest()


def _create_schema(db: sqlite_utils.Database) -> None:
    """The journal's tables, then those of the modules that own the rest (idempotent)."""
    t = db.table
    t("entries").create(
        {
            "seq": int,
            "tx_id": str,
            "interval": int,
            "kind": str,
            "account": str,
            "asset": str,
            "amount": int,
            "prev_hash": str,
            "hash": str,
        },
        pk="seq",
        not_null=["tx_id", "interval", "kind", "account", "asset", "amount", "prev_hash", "hash"],
        if_not_exists=True,
    )
    t("transactions").create(
        {
            "tx_id": str,
            "subject": str,
            "interval": int,
            "kind": str,
            "reverses": str,
            "digest": str,
            "first_seq": int,
            "postings": int,
        },
        pk="tx_id",
        not_null=["subject", "interval", "kind", "digest", "first_seq", "postings"],
        if_not_exists=True,
    )
    t("conflicts").create(
        {
            "id": int,
            "subject": str,
            "interval": int,
            "kind": str,
            "tx_id": str,
            "booked_digest": str,
            "offered_digest": str,
        },
        pk="id",
        if_not_exists=True,
    )
    t("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
    t("entries").create_index(["tx_id", "account", "asset"], unique=True, if_not_exists=True)
    t("entries").create_index(["interval"], if_not_exists=True)
    # the idempotency key; interval first so one interval's keys are one index range
    t("transactions").create_index(["interval", "subject", "kind"], unique=True, if_not_exists=True)
    # holds and what resolved them (``holds.open_holds`` every interval): partial, so the
    # interval's thousands of other transactions cost these indexes nothing
    db.conn.execute(
        "CREATE INDEX IF NOT EXISTS transactions_holds ON transactions(interval)"
        " WHERE kind = 'hold'"
    )
    db.conn.execute(
        "CREATE INDEX IF NOT EXISTS transactions_reverses ON transactions(reverses)"
        " WHERE reverses IS NOT NULL"
    )
    make_append_only(db.conn, ("entries", "transactions", "conflicts"))
    owners = (registry, readings, cases, gov_records, flex_records, aggregates, grid_records,
              roots)  # fmt: skip
    for tables in (m.TABLES for m in owners):
        create_tables(db, tables)
    readings.create_views(db)
    db.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))


@dataclass
class _Cursor:
    seq: int
    head: str


def check_version(db: sqlite3.Connection, path: Path) -> None:
    """LedgerError unless the file holds a ledger of this schema version (or none yet)."""
    has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
    row = has_meta and db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row and row[0] != SCHEMA_VERSION:
        raise LedgerError(
            f"{path} is a ledger of schema version {row[0]}; this gridctl reads version "
            f"{SCHEMA_VERSION} (with grid tariffs and pool shares): settle into a new ledger"
        )


class Ledger:
    """An open ledger file; use as a context manager.

    root_key: the coordinator's key, which signs each interval's root and key events (None:
    the ledger can be read and booked into, but not close intervals).
    """

    def __init__(self, path: Path, root_key: Ed25519PrivateKey | None = None):
        self.path = Path(path)
        self.root_key = root_key
        try:
            private_file(self.path)
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA busy_timeout=10000")
            self.db.execute("BEGIN IMMEDIATE")
            check_version(self.db, self.path)
            _create_schema(sqlite_utils.Database(self.db))
            self.db.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            raise LedgerError(f"cannot open ledger {self.path}: {e}") from None
        except LedgerError:
            self.db.close()
            raise
        row = self.db.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        self._cur = _Cursor(*(row if row else (0, GENESIS)))
        self._depth = 0
        self._saved: _Cursor | None = None
        self._leaves: dict[int, list[bytes]] = {}  # leaf hashes written by this process

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self.db.close()

    @property
    def in_transaction(self) -> bool:
        """True inside an ``atomic()`` block (what is booked now commits with the outermost)."""
        return self._depth > 0

    @property
    def head(self) -> str:
        """Hash of the last posting (hex); GENESIS when empty."""
        return self._cur.head

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """One SQLite transaction around everything booked inside (nests; the outermost commits).

        On an exception nothing inside is kept; a ``LedgerConflictError`` is then recorded in
        ``conflicts`` in a transaction of its own and raised on.
        """
        if self._depth:
            self._depth += 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._saved = _Cursor(self._cur.seq, self._cur.head)
        self._depth = 1
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException as e:
            self.db.execute("ROLLBACK")
            self._cur = self._saved
            self._leaves.clear()
            if isinstance(e, LedgerConflictError):
                with self.db:
                    self.db.executemany(
                        "INSERT INTO conflicts (subject, interval, kind, tx_id, booked_digest,"
                        " offered_digest) VALUES (?,?,?,?,?,?)",
                        e.conflicts,
                    )
            if isinstance(e, sqlite3.Error):
                raise LedgerError(f"ledger write failed: {e}") from None
            raise
        finally:
            self._depth = 0

    def append(self, txs: Sequence[Transaction]) -> int:
        """Book transactions atomically; returns how many were new.

        Refuses any that does not balance per asset. A transaction whose idempotency key is
        already booked with the same postings is skipped; with other postings the whole call
        is refused with ``LedgerConflictError`` and the conflict recorded.
        """
        for tx in txs:
            if not _two_legs_balance(tx.postings):
                bad = tx.unbalanced_assets()
                if bad:
                    raise LedgerError(
                        f"transaction {tx.tx_id} does not balance in {', '.join(bad)}"
                    )
        if not txs:
            return 0
        with self.atomic() as db:
            by_key, by_id = self._booked(db, txs)
            fresh: list[tuple[Transaction, str]] = []
            conflicts = []
            for tx in txs:
                digest = tx.digest()
                key = (tx.subject, tx.interval, tx.kind)
                old = by_key.get(key) or by_id.get(tx.tx_id)
                if old is None:
                    fresh.append((tx, digest))
                    by_key[key] = by_id[tx.tx_id] = digest
                elif old != digest:
                    conflicts.append((*key, tx.tx_id, old, digest))
            closed = closed_among(db, {tx.interval for tx, _ in fresh})
            if closed:
                raise LedgerError(
                    f"interval {min(closed)} is closed: correct it by a reversal in an open one"
                )
            if conflicts:
                s, i, k, tx_id, _, _ = conflicts[0]
                raise LedgerConflictError(
                    f"idempotency conflict: ({s}, {i}, {k}) is booked with other amounts"
                    f" (tx {tx_id}); {len(conflicts)} conflicting transaction(s) refused",
                    conflicts,
                )
            self._write(db, fresh)
        return len(fresh)

    def _booked(
        self, db: sqlite3.Connection, txs: Sequence[Transaction]
    ) -> tuple[dict[tuple[str, int, str], str], dict[str, str]]:
        """Digests of booked transactions sharing an interval or a tx_id with ``txs``:
        (by idempotency key, by tx_id)."""
        by_key: dict[tuple[str, int, str], str] = {}
        by_id: dict[str, str] = {}
        q = "SELECT tx_id, subject, interval, kind, digest FROM transactions WHERE interval = ?"
        for iv in sorted({tx.interval for tx in txs}):
            for tx_id, subject, interval, kind, digest in db.execute(q, (iv,)):
                by_key[(subject, interval, kind)] = by_id[tx_id] = digest
        ids = [tx.tx_id for tx in txs if tx.tx_id not in by_id]
        for k in range(0, len(ids), 500):
            chunk = ids[k : k + 500]
            marks = ",".join("?" * len(chunk))
            for tx_id, digest in db.execute(
                f"SELECT tx_id, digest FROM transactions WHERE tx_id IN ({marks})", chunk
            ):
                by_id[tx_id] = digest
        return by_key, by_id

    def _write(self, db: sqlite3.Connection, fresh: list[tuple[Transaction, str]]) -> None:
        rows: list[tuple] = []
        tx_rows = []
        seq, head = self._cur.seq, self._cur.head
        prev = bytes.fromhex(head)
        sha = hashlib.sha256
        for tx, digest in fresh:
            tx_id, interval, kind, postings, _, reverses = tx
            leaves = self._leaves.setdefault(interval, [])
            tx_rows.append(
                (tx_id, tx.subject, interval, kind, reverses, digest, seq + 1, len(postings))
            )
            for account, asset, amount in postings:
                seq += 1
                data = canonical((seq, tx_id, interval, kind, account, asset, amount))
                prev = sha(prev + data).digest()
                leaves.append(leaf_hash(data))
                h = prev.hex()
                rows.append((seq, tx_id, interval, kind, account, asset, amount, head, h))
                head = h
        try:
            insert_rows(db, "transactions", tx_rows)
            insert_rows(db, "entries", rows)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('head', ?)", (head,))
        except sqlite3.IntegrityError as e:
            raise LedgerError(f"ledger write refused: {e}") from None
        self._cur = _Cursor(seq, head)

    def checkpoint(self) -> None:
        """Copy what the write-ahead log holds into the database file now (a passive SQLite
        checkpoint), so that the next commit need not: call it while other work goes on.
        Does nothing inside ``atomic()``."""
        if not self._depth:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close_interval(self, interval: int) -> str:
        """Store the Merkle root over the interval's entries; returns it (hex).

        Closing an interval again returns the stored root and changes nothing.
        """
        with self.atomic() as db:
            done = root_row(db, interval)
            if done is not None:
                return done.root
            leaves = self._leaves.pop(interval, [])
            (stored,) = db.execute(
                "SELECT COUNT(*) FROM entries WHERE interval = ?", (interval,)
            ).fetchone()
            if stored != len(leaves):  # entries booked by another process: read them back
                leaves = [leaf_hash(canonical(e)) for e in interval_entries(db, interval)]
            root = root_from_leaf_hashes(leaves).hex()
            last = root_row(db)
            covered = covered_since(db, last.marks() if last else {})
            records = records_digest(covered)
            prev = last.chain() if last else ZERO
            payload = root_payload(interval, len(leaves), root, self._cur.head, records, prev)
            add_root(db, RootRow(interval, len(leaves), root, self._cur.head, records,
                                 canonical(covered).decode(), prev, self._root_key_id(db),
                                 self.sign(payload).hex()))  # fmt: skip
        return root

    def sign(self, payload: bytes) -> bytes:
        """The coordinator key's signature of ``payload``; LedgerError without the key."""
        if self.root_key is None:
            raise LedgerError("no coordinator key: this ledger cannot sign (open it with one)")
        return self.root_key.sign(payload)

    def _root_key_id(self, db: sqlite3.Connection) -> str:
        """Id of the signing key, recorded in ``meta`` on first use; LedgerError if the ledger
        is already signed by another key."""
        if self.root_key is None:
            raise LedgerError("no coordinator key: an interval root cannot be signed")
        public = public_bytes(self.root_key)
        row = db.execute("SELECT value FROM meta WHERE key = 'root_key'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('root_key', ?)", (public.hex(),))
        elif row[0] != public.hex():
            old = key_id_of(bytes.fromhex(row[0]))
            raise LedgerError(
                f"this ledger's roots are signed by coordinator key {old}, not {key_id_of(public)}"
            )
        return key_id_of(public)

    def signed_root(self, interval: int) -> RootMessage | None:
        """The signed root of a closed interval, None while it is open."""
        row = root_row(self.db, interval)
        return None if row is None else row.message()

    def interval_root(self, interval: int) -> tuple[int, str] | None:
        """(number of leaves, root hex) of a closed interval, None while it is open."""
        row = root_row(self.db, interval)
        return None if row is None else (row.size, row.root)

    def last_closed(self) -> int | None:
        """The latest closed interval, None if none is."""
        return last_closed(self.db)

    def reversal_of(self, tx_id: str, interval: int) -> Transaction:
        """A transaction that reverses ``tx_id`` exactly, to be booked in (open) ``interval``."""
        meta = self.db.execute(
            "SELECT subject, kind FROM transactions WHERE tx_id = ?", (tx_id,)
        ).fetchone()
        if meta is None:
            raise LedgerError(f"no transaction {tx_id} to reverse")
        legs = self.db.execute(
            "SELECT account, asset, amount FROM entries WHERE tx_id = ? ORDER BY seq", (tx_id,)
        ).fetchall()
        return Transaction(
            f"{tx_id}~reversal",
            interval,
            f"reversal:{meta[1]}",
            tuple(Posting(a, s, -v) for a, s, v in legs),
            meter=meta[0],
            reverses=tx_id,
        )

    def balances(self) -> dict[tuple[str, str], int]:
        """Balance per (account, asset), micro-units."""
        q = "SELECT account, asset, SUM(amount) FROM entries GROUP BY account, asset"
        return {(a, s): int(v) for a, s, v in self.db.execute(q)}

    def conflicts(self) -> list[tuple[str, int, str, str, str, str]]:
        """Recorded idempotency conflicts: (subject, interval, kind, tx_id, booked, offered)."""
        return self.db.execute(
            "SELECT subject, interval, kind, tx_id, booked_digest, offered_digest FROM conflicts"
            " ORDER BY id"
        ).fetchall()
