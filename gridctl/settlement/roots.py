"""Signed, chained interval roots: what the coordinator publishes and every household keeps.

When an interval closes, the ledger signs with the coordinator's Ed25519 key these bytes
(big-endian, no padding)::

    b"gridctl/root/v1"   15 bytes, domain separation
    i64 interval
    u64 size             entries in the interval's Merkle tree
    32  root             RFC 6962 Merkle root over the interval's entries
    32  head             hash of the ledger's last entry when the interval closed
    32  records          digest of the other rows recorded since the previous root
    32  prev             chain value of the previous root (32 zero bytes for the first)

A root's *chain value* is sha256 of these bytes; it is the next root's ``prev``. Holding one
chain value pins every root before it, so a ledger rewritten after a root was published no
longer reproduces the roots households keep.

``records`` covers the rows of ``COVERED`` (readings, meters, keys, key events, …): per table,
the digest of the rows added since the previous root (``table_digest``) and the last rowid
covered; ``records`` is sha256 of that table → [rowid, digest] map as canonical JSON
(``records_digest``).

Key rotations and revocations are signed by the same key over
``b"gridctl/key-event/v1" || key_id (16 ASCII) || u8 len(event) || event || i64 at_interval``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import struct
from pathlib import Path
from typing import Annotated, NamedTuple

from pydantic import Field, ValidationError

from gridctl.core import GridctlError, StrictModel, describe_validation_error
from gridctl.settlement.canonical import canonical
from gridctl.settlement.signing import key_id_of
from gridctl.settlement.tables import Table, insert_rows, select_rows
from gridctl.settlement.verify import verify_signatures

ROOT_DOMAIN = b"gridctl/root/v1"
KEY_EVENT_DOMAIN = b"gridctl/key-event/v1"
ZERO = "00" * 32
"""``prev`` of the first root."""
COVERED = (
    "meters",
    "meter_keys",
    "key_events",
    "meter_readings",
    "estimates",
    "rejects",
    "conflicts",
    "cases",
    "public_aggregates",
    "gov_config",
    "gov_members",
    "gov_removals",
    "gov_proposals",
    "gov_snapshots",
    "gov_weights",
    "gov_votes",
    "gov_tallies",
    "gov_enactments",
    "flex_events",
    "flex_baselines",
    "flex_deliveries",
    "grid_tariffs",
    "pool_shares",
)
"""Tables whose rows each root covers (the entries are covered by its Merkle root and head)."""

_ROOT = struct.Struct(">qQ32s32s32s32s")
_I64 = struct.Struct(">q")
_HEX64 = r"^[0-9a-f]{64}$"


class RootMessage(StrictModel):
    """An interval's signed root (MQTT ``coordinator/root``, retained); hex fields.

    size: entries in the interval's Merkle tree. head: the ledger's last entry hash at close.
    records: digest of the other rows covered. prev: chain value of the previous root.
    key_id: id of the coordinator key that signed. sig: Ed25519 signature over ``payload()``.
    """

    v: Annotated[int, Field(ge=1, le=1)] = 1
    interval: Annotated[int, Field(ge=0, le=2**62)]
    size: Annotated[int, Field(ge=0, le=2**63 - 1)]
    root: str = Field(pattern=_HEX64)
    head: str = Field(pattern=_HEX64)
    records: str = Field(pattern=_HEX64)
    prev: str = Field(pattern=_HEX64)
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    sig: str = Field(pattern=r"^[0-9a-f]{128}$")

    def payload(self) -> bytes:
        """The bytes the signature covers (see the module doc)."""
        return root_payload(self.interval, self.size, self.root, self.head, self.records,
                            self.prev)  # fmt: skip

    def chain(self) -> str:
        """Chain value (hex): sha256 of the payload, the next root's ``prev``."""
        return hashlib.sha256(self.payload()).hexdigest()

    def signed_by(self, public_key: bytes) -> bool:
        """True when ``public_key`` is the signing key and the signature holds."""
        return (
            self.key_id == key_id_of(public_key)
            and verify_signatures([(public_key, bytes.fromhex(self.sig), self.payload())])[0]
        )


def root_payload(interval: int, size: int, root: str, head: str, records: str, prev: str) -> bytes:
    """Canonical bytes of a root (hex digests in, raw bytes out)."""
    raw = [bytes.fromhex(h) for h in (root, head, records, prev)]
    return ROOT_DOMAIN + _ROOT.pack(interval, size, *raw)


def key_event_payload(key_id: str, event: str, at_interval: int) -> bytes:
    """Canonical bytes of a key event the coordinator signs (rotated / revoked)."""
    e = event.encode("ascii")
    return KEY_EVENT_DOMAIN + key_id.encode("ascii") + bytes((len(e),)) + e + _I64.pack(at_interval)


class RootRow(NamedTuple):
    """A row of ``interval_roots``: an interval's signed root (``RootMessage``'s fields, hex)
    and ``covered``, the covered tables' [last rowid, digest] map as canonical JSON."""

    interval: int
    size: int
    root: str
    head: str
    records: str
    covered: str
    prev: str
    key_id: str
    sig: str

    def message(self) -> RootMessage:
        """The root as published; pydantic's ValidationError (a ValueError) if malformed."""
        return RootMessage(**{k: v for k, v in self._asdict().items() if k != "covered"})

    def chain(self) -> str:
        """Chain value (hex), as ``RootMessage.chain``: the next root's ``prev``."""
        payload = root_payload(self.interval, self.size, self.root, self.head, self.records,
                               self.prev)  # fmt: skip
        return hashlib.sha256(payload).hexdigest()

    def marks(self) -> dict[str, int]:
        """Last rowid covered, per covered table."""
        return {t: int(last) for t, (last, _) in json.loads(self.covered).items()}


TABLES: dict[str, Table] = {
    # the signed, chained root of each closed interval (``roots``); ``covered``: per covered
    # table, [last rowid, digest] of the rows this root covers, as canonical JSON
    "interval_roots": Table.of(
        RootRow,
        pk="interval",
        not_null=("size", "root", "head", "records", "covered", "prev", "key_id", "sig"),
    ),
}
"""The interval roots as the ledger file holds them (append-only)."""


def add_root(db: sqlite3.Connection, row: RootRow) -> None:
    """Store a closed interval's root (inside the ledger's ``atomic()``)."""
    insert_rows(db, "interval_roots", [row])


def root_rows(db: sqlite3.Connection) -> list[RootRow]:
    """Every stored root, in interval order."""
    return select_rows(db, RootRow, "FROM interval_roots ORDER BY interval")


def root_row(db: sqlite3.Connection, interval: int | None = None) -> RootRow | None:
    """The root of ``interval`` (None: of the latest closed interval); None when there is none."""
    if interval is None:
        found = select_rows(db, RootRow, "FROM interval_roots ORDER BY interval DESC LIMIT 1")
    else:
        found = select_rows(db, RootRow, "FROM interval_roots WHERE interval = ?", (interval,))
    return found[0] if found else None


def last_closed(db: sqlite3.Connection) -> int | None:
    """The latest closed interval, None if none is."""
    (last,) = db.execute("SELECT MAX(interval) FROM interval_roots").fetchone()
    return None if last is None else int(last)


def closed_among(db: sqlite3.Connection, intervals: set[int]) -> list[int]:
    """Those of ``intervals`` that are closed, in increasing order."""
    ivs = sorted(intervals)
    if not ivs:
        return []
    q = f"SELECT interval FROM interval_roots WHERE interval IN ({','.join('?' * len(ivs))})"
    return sorted(r[0] for r in db.execute(q, ivs))


def table_digest(
    db: sqlite3.Connection, table: str, after: int, through: int | None
) -> tuple[int, str]:
    """(last rowid, sha256 hex) of ``table``'s rows with ``after`` < rowid ≤ ``through``
    (None: every later row): sha256 of the rows as one canonical JSON array, rowid first and
    blobs as lowercase hex, in rowid order. The last rowid is ``after`` when there are none.

    Rows are never deleted, so rowids run 1, 2, 3, … and stay as they are (VACUUM keeps them).
    """
    cols = [
        f"lower(hex({name}))" if kind.upper() == "BLOB" else name
        for _, name, kind, *_ in db.execute(f"PRAGMA table_info({table})")
    ]
    q = f"SELECT rowid, {', '.join(cols)} FROM {table} WHERE rowid > ?"
    args: tuple[int, ...] = (after,)
    if through is not None:
        q += " AND rowid <= ?"
        args = (after, through)
    rows = db.execute(q + " ORDER BY rowid", args).fetchall()
    last = rows[-1][0] if rows else after
    return last, hashlib.sha256(canonical(rows)).hexdigest()


def records_digest(covered: dict[str, list]) -> str:
    """``records`` of a table → [last rowid, digest] map: sha256 of its canonical JSON."""
    return hashlib.sha256(canonical(covered)).hexdigest()


def covered_since(db: sqlite3.Connection, marks: dict[str, int]) -> dict[str, list]:
    """Each covered table's [last rowid, digest] of its rows after ``marks`` (last rowid
    covered by the previous root, per table; 0 when none)."""
    out: dict[str, list] = {}
    for t in COVERED:
        last, digest = table_digest(db, t, marks.get(t, 0), None)
        out[t] = [last, digest]
    return out


class RootsFile(StrictModel):
    """The roots a household kept (``gridctl controller roots``), for ``ledger verify --roots``.

    coordinator_key: the coordinator public key (hex) the household enrolled and checked
    every root against.
    """

    community: str
    household: str
    coordinator_key: str = Field(pattern=_HEX64)
    roots: list[RootMessage]


def load_roots_file(path: Path) -> RootsFile:
    """A roots file, validated; GridctlError (one line naming the field) if it is not one."""
    try:
        text = path.read_bytes()
    except OSError as e:
        raise GridctlError(f"cannot read roots file {path}: {e.strerror}") from None
    try:
        return RootsFile.model_validate_json(text)
    except ValidationError as e:
        raise GridctlError(f"{path.name}: {describe_validation_error(e)}") from None
