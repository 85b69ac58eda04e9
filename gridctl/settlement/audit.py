"""The auditor: everything a ledger file claims, recomputed from the file alone (read-only).

``verify_ledger`` walks the entries once: the hash chain and the stored head, every closed
interval's Merkle root, each transaction's balance per asset and its index row, the pool per
interval and the token supply against issuance (accounts as ``pool`` names them); then the
signed root chain (``_RootChain``) and, when given, the roots households kept. The bytes it
hashes are ``canonical``'s, as the ledger's.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gridctl.core import LedgerError
from gridctl.settlement.canonical import canonical
from gridctl.settlement.ledger import GENESIS, check_version
from gridctl.settlement.merkle import leaf_hash, root_from_leaf_hashes
from gridctl.settlement.pool import ISSUANCE, POOL, TOKEN
from gridctl.settlement.roots import (
    COVERED,
    ZERO,
    RootMessage,
    RootRow,
    key_event_payload,
    records_digest,
    root_rows,
    table_digest,
)
from gridctl.settlement.signing import key_id_of
from gridctl.settlement.verify import verify_signatures


@dataclass(frozen=True)
class LedgerCheck:
    """Outcome of ``verify_ledger``: ``problem`` names the first bad entry, None when intact.

    token_supply: micro-tokens held outside token issuance; equals the tokens issued when intact.
    """

    entries: int
    transactions: int
    head: str
    problem: str | None
    intervals_closed: int = 0
    token_supply: int = 0
    issued: int = 0
    notes: list[str] = field(default_factory=list)
    chain_head: str = ZERO
    """Chain value of the last interval root (what a household holding it can compare)."""
    published: int = 0
    """Published roots the ledger was checked against."""

    @property
    def ok(self) -> bool:
        """True when the chain, the head, the roots and every transaction check out."""
        return self.problem is None


def verify_ledger(
    path: Path,
    published: Sequence[RootMessage] = (),
    trusted_key: bytes | None = None,
    published_head: str | None = None,
) -> LedgerCheck:
    """Recompute the hash chain, the stored head, every closed interval's Merkle root, and the
    balances (every transaction per asset, the pool per interval, token supply vs issuance);
    then the signed root chain (``_RootChain``) against ``published`` roots households
    kept, signed by ``trusted_key`` (None: the key the ledger records), and a published chain
    value ``published_head``."""
    path = Path(path)
    if not path.is_file():
        raise LedgerError(f"no ledger file at {path}")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        check_version(db, path)
        stored = db.execute("SELECT value FROM meta WHERE key = 'head'").fetchone()
        stored_roots = root_rows(db)
        txs = dict(db.execute("SELECT tx_id, postings FROM transactions").fetchall())
        rows = db.execute(
            "SELECT seq, tx_id, interval, kind, account, asset, amount, prev_hash, hash"
            " FROM entries ORDER BY seq"
        )
        closed = {r.interval for r in stored_roots}
        leaves: dict[int, list[bytes]] = {iv: [] for iv in closed}
        last_seq: dict[int, int] = {}  # each closed interval's last entry
        heads = {r.head for r in stored_roots}
        head_seq: dict[str, int] = {GENESIS: 0}  # where each root's head sits in the chain
        chain_problem: str | None = None
        head = GENESIS
        prev_raw = bytes(32)
        pool: dict[int, int] = defaultdict(int)
        # a transaction's entries are consecutive: check each one as its run ends
        seen: set[str] = set()
        unbalanced: str | None = None
        index_problem: str | None = None
        cur_tx: str | None = None
        cur_sums: dict[str, int] = {}
        cur_n = cur_first = 0

        def finish() -> None:
            nonlocal unbalanced, index_problem
            if cur_tx is None:
                return
            if unbalanced is None:
                for asset_, total in sorted(cur_sums.items()):
                    if total != 0:
                        unbalanced = (
                            f"entry {cur_first} (tx {cur_tx}): {asset_} sums to {total}, not 0"
                        )
                        break
            if index_problem is None and txs is not None and txs.get(cur_tx) != cur_n:
                index_problem = f"entry {cur_first} (tx {cur_tx}): not in the transaction index"

        sha = hashlib.sha256
        fromhex = bytes.fromhex
        issued = supply = 0
        k = 0
        for k, (seq, tx_id, interval, kind, account, asset, amount, prev, h) in enumerate(rows, 1):
            data = canonical((seq, tx_id, interval, kind, account, asset, amount))
            raw = sha(prev_raw + data).digest()
            intact = raw.hex() == h
            if chain_problem is None:
                if seq != k:
                    chain_problem = f"entry {k}: missing or renumbered (next stored entry is {seq})"
                elif prev != head:
                    chain_problem = (
                        f"entry {seq} (tx {tx_id}, {account}, {asset}):"
                        " prev_hash does not match the previous entry"
                    )
                elif not intact:
                    chain_problem = (
                        f"entry {seq} (tx {tx_id}, {account}, {asset}):"
                        " hash mismatch (content changed)"
                    )
            head = h
            if intact:
                prev_raw = raw
            else:  # the next entry chains from the stored hash
                try:
                    prev_raw = fromhex(h)
                except (ValueError, TypeError):
                    prev_raw = b""
            lv = leaves.get(interval)
            if lv is not None:
                lv.append(leaf_hash(data))
                last_seq[interval] = seq
            if h in heads:
                head_seq[h] = seq
            if tx_id != cur_tx:
                finish()
                if tx_id in seen and index_problem is None:
                    index_problem = f"entry {seq} (tx {tx_id}): its transaction is split"
                seen.add(tx_id)
                cur_tx, cur_sums, cur_n, cur_first = tx_id, {}, 0, seq
            cur_n += 1
            try:
                cur_sums[asset] = cur_sums.get(asset, 0) + amount
                if account == POOL:
                    pool[interval] += amount
                if asset == TOKEN:
                    if account == ISSUANCE:
                        issued -= amount
                    else:
                        supply += amount
            except TypeError:
                cur_sums[asset] = cur_sums.get(asset, 0) + 1  # a non-integer never balances
        finish()
        n_entries = k
        chain = _RootChain(db, stored_roots, head_seq, last_seq, trusted_key)
        db.close()
    except sqlite3.Error as e:
        raise LedgerError(f"{path} is not a gridctl ledger: {e}") from None

    problem = chain_problem
    # the first entry whose hash breaks is the most precise pointer; a forger who re-chained
    # every hash is still caught by the balance check, the roots and the stored head
    if problem is None:
        problem = unbalanced
    if problem is None and (stored[0] if stored else GENESIS) != head:
        problem = "stored head does not match the last entry"
    if problem is None:
        for r in stored_roots:
            got = root_from_leaf_hashes(leaves[r.interval])
            if len(leaves[r.interval]) != r.size or got.hex() != r.root:
                problem = f"interval {r.interval}: Merkle root does not match its entries"
                break
    if problem is None:
        for iv in sorted(closed):
            if pool.get(iv, 0) != 0:
                problem = f"interval {iv}: the pool does not net to zero ({pool[iv]})"
                break
    if problem is None:
        problem = index_problem
    if problem is None and txs is not None and len(txs) != len(seen):
        missing = sorted(set(txs) - seen)[0]
        problem = f"transaction {missing}: indexed but its entries are missing"
    if problem is None and supply != issued:
        problem = f"token supply {supply} differs from tokens issued {issued}"
    if problem is None:
        problem = chain.problem or chain.against(published, published_head)
    return LedgerCheck(
        entries=n_entries,
        transactions=len(seen),
        head=head,
        problem=problem,
        intervals_closed=len(stored_roots),
        token_supply=supply,
        issued=issued,
        chain_head=chain.head,
        published=len(published),
    )


class _RootChain:
    """The ledger's signed roots, checked in interval order: each one's head sits in the entry
    chain (after its interval's entries and the previous root's head), the rows it covers
    hash to its records digest, it chains to the previous root, and its signature holds under
    the trusted key (the ledger's own without one); then the key events' signatures.
    ``problem``: the first that fails (None: all hold); ``head``: the last chain value."""

    def __init__(
        self,
        db: sqlite3.Connection,
        rows: list[RootRow],
        head_seq: dict[str, int],
        last_seq: dict[int, int],
        trusted_key: bytes | None,
    ):
        self.chains: dict[int, str] = {}
        self.head = ZERO
        stored = db.execute("SELECT value FROM meta WHERE key = 'root_key'").fetchone()
        self.key = trusted_key or (bytes.fromhex(stored[0]) if stored else None)
        self.problem = self._check(db, rows, head_seq, last_seq, stored[0] if stored else None)

    def _check(self, db: sqlite3.Connection, rows: list[RootRow], head_seq: dict[str, int],
               last_seq: dict[int, int], stored: str | None) -> str | None:  # fmt: skip
        key = self.key
        if key is None:
            return "interval roots are signed by no recorded coordinator key" if rows else None
        if stored is not None and stored != key.hex():
            return (
                f"the ledger's roots are signed by coordinator key "
                f"{key_id_of(bytes.fromhex(stored))}, not the trusted {key_id_of(key)}"
            )
        prev, pos = ZERO, 0
        marks = dict.fromkeys(COVERED, 0)
        for row in rows:
            iv = row.interval
            try:
                msg = row.message()
                covered = json.loads(row.covered)
                spans = {t: (int(covered[t][0]), str(covered[t][1])) for t in COVERED}
            except (ValueError, TypeError, KeyError, IndexError):
                return f"interval {iv}: its interval_roots row is malformed"
            at = head_seq.get(msg.head)
            if at is None or at < max(pos, last_seq.get(iv, 0)):
                return f"interval {iv}: its head is not the entry chain's head when it closed"
            pos = at
            for t in COVERED:
                if table_digest(db, t, marks[t], spans[t][0]) != spans[t]:
                    return f"interval {iv}: {t} rows differ from what its root covers"
                marks[t] = spans[t][0]
            if records_digest({t: list(v) for t, v in spans.items()}) != msg.records:
                return f"interval {iv}: its covered rows do not match its signed records digest"
            if msg.prev != prev:
                return f"interval {iv}: its root does not chain to the previous root"
            if not msg.signed_by(key):
                return f"interval {iv}: root signature does not verify (key {key_id_of(key)})"
            prev = self.chains[iv] = msg.chain()
        self.head = prev
        events = db.execute("SELECT key_id, event, at_interval, sig FROM key_events ORDER BY rowid")
        for key_id, event, at_interval, sig in events:
            payload = key_event_payload(str(key_id), str(event), int(at_interval))
            try:
                ok = verify_signatures([(key, bytes.fromhex(sig), payload)])[0]
            except (ValueError, TypeError):
                ok = False
            if not ok:
                return f"key event ({key_id} {event}): signature does not verify"
        return None

    def against(self, published: Sequence[RootMessage], head: str | None) -> str | None:
        """The first published root the ledger does not reproduce, or a published chain value
        ``head`` not in its chain (None: all match)."""
        key = self.key
        for p in sorted(published, key=lambda r: r.interval):
            if key is None or not p.signed_by(key):
                return f"published root of interval {p.interval}: not signed by the trusted key"
            mine = self.chains.get(p.interval)
            if mine is None:
                return f"interval {p.interval}: published, but missing from the ledger"
            if mine != p.chain():
                return f"interval {p.interval}: the ledger's root differs from the published one"
        if head is not None and head not in self.chains.values():
            return f"published head {head}: not in the ledger's root chain"
        return None
