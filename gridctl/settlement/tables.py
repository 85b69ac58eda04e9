"""SQLite helpers for the modules that own the ledger file's tables: batched inserts,
append-only tables, rows read into named types."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TypeVar, get_args, get_type_hints

import sqlite_utils

R = TypeVar("R")


def insert_rows(db: sqlite3.Connection, table: str, rows: Sequence[tuple]) -> None:
    """``INSERT INTO table VALUES (?, …)`` of every row, in order, as ``executemany`` would,
    but up to 128 rows per statement: one step (and one bind call) per chunk, not per row,
    cuts the cost of a large insert by about a quarter."""
    if not rows:
        return
    width = len(rows[0])
    per = max(1, min(128, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    full = len(rows) - len(rows) % per if len(rows) >= per else 0
    if full:
        many = f"INSERT INTO {table} VALUES " + ",".join([f"({','.join('?' * width)})"] * per)
        flat = itertools.chain.from_iterable
        for k in range(0, full, per):
            db.execute(many, list(flat(rows[k : k + per])))
    if full < len(rows):
        db.executemany(f"INSERT INTO {table} VALUES ({','.join('?' * width)})", rows[full:])


@dataclass(frozen=True)
class Table:
    """A table's declared schema: its columns (name → Python type, in order), primary key and
    the columns that may not be NULL."""

    columns: dict[str, type]
    pk: str | tuple[str, ...]
    not_null: tuple[str, ...] = ()

    @classmethod
    def of(cls, row_type: type, pk: str | tuple[str, ...], not_null: tuple[str, ...] = ()) -> Table:
        """The schema of a table whose rows are ``row_type`` (a NamedTuple or dataclass): a
        column per field, in order, of the field's type (``X | None``: X)."""
        hints = get_type_hints(row_type)
        columns = {}
        for name in _field_names(row_type):
            kinds = [k for k in get_args(hints[name]) if k is not type(None)]
            columns[name] = kinds[0] if kinds else hints[name]
        return cls(columns, pk, not_null)


def create_tables(db: sqlite_utils.Database, tables: dict[str, Table]) -> None:
    """Create the declared tables that are not there yet, append-only (see ``make_append_only``).

    Rowids must follow the order rows are added (a root covers a table's rows by rowid range),
    so a key of one integer column is made a unique index, never the rowid itself (SQLite's
    ``INTEGER PRIMARY KEY``), which would order rows by key."""
    for name, t in tables.items():
        if isinstance(t.pk, str) and t.columns[t.pk] is int:
            db.table(name).create(t.columns, not_null=(*t.not_null, t.pk), if_not_exists=True)
            db.table(name).create_index([t.pk], unique=True, if_not_exists=True)
        else:
            db.table(name).create(t.columns, pk=t.pk, not_null=t.not_null, if_not_exists=True)
    make_append_only(db.conn, tuple(tables))


def make_append_only(con: sqlite3.Connection, tables: Sequence[str]) -> None:
    """Triggers that refuse UPDATE, DELETE and REPLACE of any row of ``tables`` (idempotent);
    create their indexes first, as a replaced row is found by its unique keys."""
    for name in tables:
        con.execute(
            f"CREATE TRIGGER IF NOT EXISTS {name}_no_update BEFORE UPDATE ON {name} "
            "BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END"
        )
        con.execute(
            f"CREATE TRIGGER IF NOT EXISTS {name}_no_delete BEFORE DELETE ON {name} "
            "BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END"
        )
        # INSERT OR REPLACE / REPLACE delete the row in the way without firing delete triggers
        # (unless a connection turns recursive_triggers on): refuse any row whose key exists
        taken = " OR ".join(
            f"EXISTS (SELECT 1 FROM {name} WHERE "
            + " AND ".join(f"{c} = NEW.{c}" for c in cols)
            + ")"
            for cols in _unique_keys(con, name)
        )
        con.execute(
            f"CREATE TRIGGER IF NOT EXISTS {name}_no_replace BEFORE INSERT ON {name} "
            f"WHEN {taken} BEGIN SELECT RAISE(ABORT, 'ledger rows are append-only: "
            f"{name} already has this key'); END"
        )


def _unique_keys(con: sqlite3.Connection, table: str) -> list[list[str]]:
    """Column lists of the table's primary key and unique indexes."""
    pk = [r[1] for r in sorted(con.execute(f"PRAGMA table_info({table})"), key=lambda r: r[5])
          if r[5]]  # fmt: skip
    keys = [pk] if pk else []
    for _, index, unique, *_ in con.execute(f"PRAGMA index_list({table})").fetchall():
        cols = [r[2] for r in con.execute(f"PRAGMA index_info({index})")]
        if unique and cols not in keys:
            keys.append(cols)
    return keys


def select_rows(
    db: sqlite3.Connection, row_type: type[R], tail: str, args: Sequence = ()
) -> list[R]:
    """``SELECT <row_type's fields> <tail>`` as ``row_type`` objects: a NamedTuple or dataclass
    whose field names are the columns, so a query and the type that reads it cannot drift."""
    names = ", ".join(_field_names(row_type))
    return [row_type(*r) for r in db.execute(f"SELECT {names} {tail}", args)]


def _field_names(row_type: type) -> list[str]:
    """Field names of a NamedTuple or dataclass, in order."""
    return list(getattr(row_type, "_fields", None) or [f.name for f in fields(row_type)])
