"""What the ledger says about one household: its statement and the inclusion proofs of its entries.

A proof is a self-contained JSON document: the entries' fields, each entry's leaf index and
RFC 6962 audit path, the tree size and the interval's root. ``check_proof`` needs nothing but
the document (and, to trust the root, the root the coordinator published).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from gridctl.core import MICRO, LedgerError, interval_start
from gridctl.settlement.canonical import canonical
from gridctl.settlement.holds import HOLD, RELEASE
from gridctl.settlement.ledger import Entry, account_totals, interval_entries
from gridctl.settlement.merkle import inclusion_path, leaf_hash, root_from_path
from gridctl.settlement.pool import TOKEN, household_account
from gridctl.settlement.readings import household_readings
from gridctl.settlement.registry import has_household
from gridctl.settlement.roots import root_row

PROOF_VERSION = 1


def _open(path: Path) -> sqlite3.Connection:
    path = Path(path)
    if not path.is_file():
        raise LedgerError(f"no ledger file at {path}")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db.execute("SELECT 1 FROM interval_roots LIMIT 1")
    except sqlite3.Error as e:
        raise LedgerError(f"{path} is not a gridctl ledger: {e}") from None
    return db


@dataclass(frozen=True)
class StatementRow:
    """One interval of a household's statement.

    import_wh / export_wh: energy its main meter measured, Wh (None without a reading).
    status / reason: the reading's VEE outcome. paid / earned: currency into / out of the pool,
    micro-units (≥ 0). grid: currency with the grid, micro-units (> 0 received). tokens:
    micro-tokens earned (sharing and flexibility rewards, less reversals).
    held / held_tokens: currency / micro-tokens moved to the holding account while physics
    could not clear the claim (< 0: a hold paid back); a forfeited hold stays held.
    case: what physics found of the claim (``named``: rejected, ``held``), None when nothing;
    why: the case's explanation and figures (JSON), None when there is no case.
    """

    interval: int
    import_wh: int | None
    export_wh: int | None
    status: str
    reason: str | None
    paid: int
    earned: int
    grid: int
    tokens: int
    held: int = 0
    held_tokens: int = 0
    case: str | None = None
    why: str | None = None

    def as_dict(self) -> dict[str, object]:
        """Plain dict with the interval's start time, amounts in units (not micro-units)."""
        return {
            "interval": self.interval,
            "start": interval_start(self.interval).isoformat(),
            "import_wh": self.import_wh,
            "export_wh": self.export_wh,
            "status": self.status,
            "reason": self.reason,
            "paid": self.paid / MICRO,
            "earned": self.earned / MICRO,
            "grid": self.grid / MICRO,
            "tokens": self.tokens / MICRO,
            "held": self.held / MICRO,
            "held_tokens": self.held_tokens / MICRO,
            "case": self.case,
            "why": self.why,
        }


def statement(
    path: Path, household: str, first: int | None = None, last: int | None = None
) -> list[StatementRow]:
    """Per interval in [first, last] (inclusive, None: open end): what the household gave, got,
    paid and earned. Raises LedgerError for an unknown household."""
    db = _open(path)
    try:
        if not has_household(db, household):
            raise LedgerError(f"no household {household} in this ledger")
        lo = first if first is not None else -(2**62)
        hi = last if last is not None else 2**62
        rows: dict[int, dict[str, object]] = {
            r.interval: {"import_wh": r.d_import_wh, "export_wh": r.d_export_wh,
                         "status": r.status, "reason": r.reason}
            for r in household_readings(db, household, lo, hi)
        }  # fmt: skip
        money: dict[int, dict[str, int]] = {}
        for t in account_totals(db, household_account(household), lo, hi):
            m = money.setdefault(t.interval, dict.fromkeys(_MONEY, 0))
            base = t.kind.removeprefix("reversal:")
            if base in (HOLD, RELEASE):
                m["held_tokens" if t.asset == TOKEN else "held"] -= t.amount
            elif t.asset == TOKEN:
                m["tokens"] += t.amount
            elif base.startswith("grid_"):
                m["grid"] += t.amount
            elif base == "pool_payment":
                m["paid"] -= t.amount
            else:
                m["earned"] += t.amount
        q = (
            "SELECT interval, outcome, detail FROM cases"
            " WHERE household = ? AND interval BETWEEN ? AND ?"
        )
        found = {iv: {"case": o, "why": d} for iv, o, d in db.execute(q, (household, lo, hi))}
    finally:
        db.close()
    out = []
    for iv in sorted(set(rows) | set(money)):
        r = rows.get(
            iv, {"import_wh": None, "export_wh": None, "status": "missing", "reason": None}
        )
        m = money.get(iv, dict.fromkeys(_MONEY, 0))
        out.append(StatementRow(iv, **r, **m, **found.get(iv, {})))  # type: ignore[arg-type]
    return out


_MONEY = ("paid", "earned", "grid", "tokens", "held", "held_tokens")


def inclusion_proof(path: Path, household: str, interval: int) -> dict[str, object]:
    """The proof that every entry of ``household`` in ``interval`` is in the interval's tree."""
    db = _open(path)
    try:
        root = root_row(db, interval)
        if root is None:
            raise LedgerError(f"interval {interval} is not settled (no Merkle root)")
        entries = interval_entries(db, interval)
        known = has_household(db, household)
    finally:
        db.close()
    if not known:
        raise LedgerError(f"no household {household} in this ledger")
    size, root_hex = root.size, root.root
    if len(entries) != size:
        raise LedgerError(f"interval {interval}: {len(entries)} entries but the root covers {size}")
    leaves = [leaf_hash(canonical(e)) for e in entries]
    account = household_account(household)
    mine = [
        {
            "entry": e._asdict(),
            "leaf_index": k,
            "path": [h.hex() for h in inclusion_path(leaves, k)],
        }
        for k, e in enumerate(entries)
        if e.account == account
    ]
    return {
        "version": PROOF_VERSION,
        "hashing": "RFC 6962: leaf = sha256(0x00 || entry), node = sha256(0x01 || left || right)",
        "household": household,
        "interval": interval,
        "tree_size": size,
        "root": root_hex,
        "entries": mine,
    }


def check_proof(doc: dict[str, object], root: str | None = None) -> tuple[bool, str]:
    """Check a proof document on its own: every entry hashes up its path to the stated root
    (and that root equals ``root`` when given, e.g. the root the coordinator published).

    Returns (ok, one line saying what was checked or what failed).
    """
    try:
        if doc.get("version") != PROOF_VERSION:
            return False, f"unknown proof version {doc.get('version')!r}"
        size = int(doc["tree_size"])  # type: ignore[call-overload]
        stated = bytes.fromhex(str(doc["root"]))
        if root is not None and stated != bytes.fromhex(root):
            return False, "the proof's root is not the published root"
        entries = doc["entries"]
        assert isinstance(entries, list)
        for e in entries:
            f = Entry(*(e["entry"][name] for name in Entry._fields))
            data = canonical(f)
            if f.interval != doc["interval"] or f.account != household_account(
                str(doc["household"])
            ):
                return False, f"entry {f.seq}: not the household's entry in this interval"
            path = [bytes.fromhex(h) for h in e["path"]]
            got = root_from_path(int(e["leaf_index"]), size, leaf_hash(data), path)
            if got != stated:
                return False, f"entry {f.seq} ({f.kind}): not included under the root"
    except (KeyError, TypeError, ValueError, AssertionError) as err:
        return False, f"malformed proof: {err!r}"
    n = len(entries)
    return True, (
        f"{n} entr{'y' if n == 1 else 'ies'} of {doc['household']} included in interval "
        f"{doc['interval']} under root {doc['root']} ({size} leaves)"
    )
