"""Open data: a ledger's public aggregates as a Frictionless Data Package.

``export`` writes, from a ledger file (read only):

- ``aggregates.csv`` and ``aggregates.parquet``: one row per settled interval, the ledger's
  ``public_aggregates`` rows (``gridctl.settlement.aggregates``) with the interval's start;
  figures covering fewer than k households are empty;
- ``roots.csv``: each interval's signed root and what a reader needs to check a row against it;
- ``datapackage.json``: the Data Package (v1) describing both tables (types, units,
  constraints), the licence and the source.

A reader checks a row of ``aggregates.csv`` as the ledger's audit does: the row's digest,
sha256 of the canonical JSON (``json.dumps(..., separators=(",", ":"), sort_keys=True)``) of
``[[aggregates_rowid, interval, k, households, …]]`` (the columns in ``aggregates.csv``'s order
without ``start``, empty as null), equals ``covered["public_aggregates"][1]``; ``records`` is
sha256 of the canonical ``covered``; the root's payload (``gridctl.settlement.roots``) is signed
by the coordinator key (``coordinator_key`` in ``datapackage.json``) and chains to the previous
root by ``prev``. A larger k than the ledger's (``--k``) empties more figures; a row it changes
can no longer be checked, and its ``covered`` is left empty (a digest of a figure withheld would
let a reader guess it).
"""

from __future__ import annotations

import csv
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gridctl.core import LedgerError, interval_start
from gridctl.settlement.aggregates import (
    COVERS,
    MIN_K,
    AggregateRow,
    aggregate_rows,
    suppressed,
)
from gridctl.settlement.ledger import check_version
from gridctl.settlement.roots import RootRow, root_rows
from gridctl.settlement.signing import key_id_of

LICENSE = {
    "name": "ODC-PDDL-1.0",
    "path": "https://opendatacommons.org/licenses/pddl/1-0/",
    "title": "Open Data Commons Public Domain Dedication and License v1.0",
}
"""The licence of the published data: public domain, no conditions."""

_UNITS = {"_wh": "Wh", "_mv": "mV", "_s": "s"}
_DESCRIPTIONS = {
    "interval": "Settlement interval index: seconds since 1970-01-01 UTC divided by 900.",
    "start": "Start of the interval, UTC.",
    "k": "Fewest households a figure of this row may cover (the ledger's rule when settled).",
    "households": "Households enrolled in the community.",
    "grid_import_wh": "Energy into the feeder through the transformer, from its meter.",
    "grid_export_wh": "Energy out of the feeder through the transformer, from its meter.",
    "grid_households": "Households the transformer figures cover (the enrolled households).",
    "households_import_wh": "Energy the households drew from the grid, at their verified meters.",
    "households_export_wh": "Energy the households fed into the grid, at their verified meters.",
    "shared_wh": "Energy matched between households through the community pool.",
    "metered_households": "Households whose meter reading was verified.",
    "v_min_mv": "Lowest mean voltage (phase to neutral) a verified household meter reported.",
    "v_max_mv": "Highest mean voltage (phase to neutral) a verified household meter reported.",
    "voltage_households": "Households whose verified reading carried a voltage.",
    "demand_wh": "Energy the households used (base load and EV charging), from telemetry.",
    "demand_households": "Households the demand covers.",
    "pv_wh": "PV energy produced, from telemetry.",
    "pv_households": "Households the PV figure covers (those reporting a PV inverter).",
    "curtailed_wh": "PV energy held back (not yet reported by any source).",
    "curtailed_households": "Households the curtailment covers.",
    "flex_delivered_wh": "Flexibility delivered in grid events (not yet reported by any source).",
    "flex_households": "Households the flexibility figure covers.",
    "envelope_s": "Time the grid operator's envelope on the feeder was in force.",
    "envelope_households": "Households the envelope covers (those on the feeder).",
}
_ROOT_FIELDS = {
    "interval": ("integer", "Settlement interval index (as in aggregates.csv)."),
    "start": ("datetime", "Start of the interval, UTC."),
    "size": ("integer", "Ledger entries in the interval's Merkle tree."),
    "root": ("string", "RFC 6962 Merkle root over the interval's ledger entries, hex."),
    "head": ("string", "Hash of the ledger's last entry when the interval closed, hex."),
    "records": ("string", "sha256 of covered (canonical JSON), hex."),
    "prev": ("string", "Chain value of the previous root (sha256 of its payload), hex."),
    "key_id": ("string", "Id of the coordinator key that signed the root."),
    "sig": ("string", "Ed25519 signature of the root's payload, hex."),
    "aggregates_rowid": ("integer", "Row id of the interval's aggregates row in the ledger."),
    "covered": (
        "string",
        "Per covered ledger table, [last row id, sha256 of its new rows], canonical JSON; "
        "empty where this export withheld more figures than the ledger.",
    ),
}


@dataclass(frozen=True)
class ExportSummary:
    """What ``export`` wrote: intervals, rows a reader can check against their root, figures
    left empty (covering fewer than k households, or without a source), and the smallest k
    applied to a row (None: no rows and no k given)."""

    intervals: int
    checkable: int
    empty: int
    k: int | None


def export(ledger_path: Path, out: Path, k: int | None = None) -> ExportSummary:
    """Write the open data of the ledger at ``ledger_path`` into the folder ``out``.

    k: fewest households a figure may cover (None: the ledger's own; a smaller k than a row's
    cannot bring back what its ledger withheld). LedgerError (one line) for a file that is not
    a ledger of this version, or a k below ``MIN_K``.
    """
    if k is not None and k < MIN_K:
        raise LedgerError(f"k must be at least {MIN_K}, got {k}")
    rows, roots, key = _read(ledger_path)
    by_interval = {r.interval: r for r in roots}
    published, root_lines, checkable, empty, rules = [], [], 0, 0, set()
    for rowid, row in rows:
        rule = max(row.k, k or row.k)
        pub = suppressed(row, rule)
        rules.add(rule)
        empty += sum(getattr(pub, f) is None for f in COVERS)
        published.append(pub)
        root = by_interval.get(row.interval)
        if root is None:
            raise LedgerError(f"{ledger_path}: interval {row.interval} has aggregates but no root")
        same = pub == row
        checkable += same
        root_lines.append(_root_line(root, rowid, same))
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "aggregates.csv", _aggregate_header(), [_aggregate_line(r) for r in published])
    _write_parquet(out / "aggregates.parquet", published)
    _write_csv(out / "roots.csv", list(_ROOT_FIELDS), root_lines)
    least = min(rules, default=k)
    package = datapackage(ledger_path.name, key, least)
    (out / "datapackage.json").write_text(json.dumps(package, indent=2) + "\n")
    return ExportSummary(len(rows), checkable, empty, least)


def _read(path: Path) -> tuple[list[tuple[int, AggregateRow]], list[RootRow], str | None]:
    """(aggregate rows with rowids, roots, coordinator key hex) of a ledger, read only."""
    if not path.is_file():
        raise LedgerError(f"no ledger at {path}")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise LedgerError(f"cannot open ledger {path}: {e}") from None
    try:
        check_version(db, path)
        rows = aggregate_rows(db)
        roots = root_rows(db)
        key = db.execute("SELECT value FROM meta WHERE key = 'root_key'").fetchone()
    except sqlite3.Error as e:
        raise LedgerError(f"{path} is not a gridctl ledger: {e}") from None
    finally:
        db.close()
    return rows, roots, key[0] if key else None


def _aggregate_header() -> list[str]:
    names = list(AggregateRow._fields)
    return [names[0], "start", *names[1:]]


def _aggregate_line(row: AggregateRow) -> list[object]:
    return [row.interval, _iso(row.interval), *row[1:]]


def _iso(interval: int) -> str:
    return interval_start(interval).strftime("%Y-%m-%dT%H:%M:%SZ")


def _root_line(root: RootRow, rowid: int, checkable: bool) -> list[object]:
    return [
        root.interval, _iso(root.interval), root.size, root.root, root.head, root.records,
        root.prev, root.key_id, root.sig, rowid, root.covered if checkable else None,
    ]  # fmt: skip


def _write_csv(path: Path, header: list[str], lines: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows([["" if v is None else v for v in line] for line in lines])


def _write_parquet(path: Path, rows: list[AggregateRow]) -> None:
    columns: dict[str, pa.Array] = {
        "interval": pa.array([r.interval for r in rows], pa.int64()),
        "start": pa.array([interval_start(r.interval) for r in rows], pa.timestamp("s", "UTC")),
    }
    for name in AggregateRow._fields[1:]:
        columns[name] = pa.array([getattr(r, name) for r in rows], pa.int64())
    pq.write_table(pa.table(columns), path)


def _field(name: str) -> dict[str, object]:
    """A Table Schema field of ``aggregates``: type, unit, constraints."""
    if name == "start":
        return {"name": name, "type": "datetime", "format": "default",
                "description": _DESCRIPTIONS[name], "constraints": {"required": True}}  # fmt: skip
    unit = next((u for s, u in _UNITS.items() if name.endswith(s)), None)
    description = _DESCRIPTIONS[name] + (f" Unit: {unit}." if unit else "")
    if name in COVERS:
        description += f" Empty when it covers fewer than k households ({COVERS[name]} < k)."
    field: dict[str, object] = {"name": name, "type": "integer", "description": description}
    if unit:
        field["unit"] = unit
    field["constraints"] = {"minimum": 0} | ({} if name in COVERS else {"required": True})
    return field


def datapackage(source: str, coordinator_key: str | None, k: int | None) -> dict[str, object]:
    """The ``datapackage.json`` of an export (Frictionless Data Package v1).

    source: the ledger's file name. coordinator_key: the key that signs its roots, hex.
    k: the fewest households a published figure covers.
    """
    hex64 = {"pattern": "^[0-9a-f]{64}$"}
    key_id = key_id_of(bytes.fromhex(coordinator_key)) if coordinator_key else None
    roots = []
    for name, (kind, description) in _ROOT_FIELDS.items():
        f: dict[str, object] = {"name": name, "type": kind, "description": description}
        if name in ("root", "head", "records", "prev"):
            f["constraints"] = {"required": True, **hex64}
        elif name != "covered":
            f["constraints"] = {"required": True}
        roots.append(f)
    fields = [_field(n) for n in _aggregate_header()]
    return {
        "profile": "tabular-data-package",
        "name": "gridctl-community-aggregates",
        "title": "Energy community: per-interval aggregates from its audited ledger",
        "description": (
            "Community-level figures of each 15-minute settlement interval, as the community's "
            "ledger records them and its signed interval roots cover them. No figure covers "
            f"fewer than k = {k} households; no household's own figure is published. "
            "aggregates.parquet holds the same table as aggregates.csv."
        ),
        "licenses": [LICENSE],
        "sources": [{"title": f"gridctl settlement ledger ({source})"}],
        "coordinator_key": coordinator_key,
        "coordinator_key_id": key_id,
        "k": k,
        "resources": [
            {
                "name": "aggregates",
                "path": "aggregates.csv",
                "profile": "tabular-data-resource",
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "schema": {"fields": fields, "primaryKey": ["interval"]},
            },
            {
                "name": "aggregates-parquet",
                "path": "aggregates.parquet",
                "profile": "tabular-data-resource",
                "format": "parquet",
                "mediatype": "application/vnd.apache.parquet",
                # a reader through pandas (frictionless's) sees an empty integer as NaN
                "schema": {
                    "fields": fields,
                    "primaryKey": ["interval"],
                    "missingValues": ["", "nan"],
                },
            },
            {
                "name": "roots",
                "path": "roots.csv",
                "profile": "tabular-data-resource",
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "schema": {
                    "fields": roots,
                    "primaryKey": ["interval"],
                    "foreignKeys": [
                        {
                            "fields": ["interval"],
                            "reference": {"resource": "aggregates", "fields": ["interval"]},
                        }
                    ],
                },
            },
        ],
    }
