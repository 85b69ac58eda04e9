"""The interval roots a household keeps: each one the coordinator publishes, checked first.

A root is kept (table ``roots`` of the controller's state file, beside the outbox) only if it
is signed by the coordinator key enrolled in the controller's configuration and chains to the
roots of the neighbouring intervals already kept; anything else is refused and counted by
reason, never stored. The household hands what it keeps to an auditor (``gridctl controller
roots``), who checks the coordinator's ledger still reproduces it (``ledger verify --roots``).
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from pathlib import Path

from pydantic import ValidationError

from gridctl.core import GridctlError
from gridctl.settlement.roots import RootMessage, RootsFile

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS roots (
    interval INTEGER PRIMARY KEY, chain TEXT NOT NULL, message TEXT NOT NULL);
"""
REASONS = ("no_coordinator_key", "bad_signature", "broken_chain", "conflicting_root")


class RootStore:
    """Roots kept in ``db`` (the controller's state file), checked against ``coordinator_key``
    (32 bytes; None: none enrolled, so every root is refused)."""

    def __init__(self, db: sqlite3.Connection, coordinator_key: bytes | None):
        self.db = db
        self.key = coordinator_key
        self.refused: Counter[str] = Counter()
        db.executescript(SCHEMA)

    def add(self, root: RootMessage) -> str | None:
        """Keep ``root``; the reason it is refused (counted and logged), None when kept (or
        already held)."""
        why = self._check(root)
        if why is None:
            self.db.execute(
                "INSERT OR IGNORE INTO roots VALUES (?, ?, ?)",
                (root.interval, root.chain(), root.model_dump_json()),
            )
            return None
        self.refused[why] += 1
        log.warning("root refused interval=%d reason=%s", root.interval, why)
        return why

    def _check(self, root: RootMessage) -> str | None:
        if self.key is None:
            return "no_coordinator_key"
        if not root.signed_by(self.key):
            return "bad_signature"
        same = self.db.execute(
            "SELECT chain FROM roots WHERE interval = ?", (root.interval,)
        ).fetchone()
        if same is not None:
            return None if same[0] == root.chain() else "conflicting_root"
        before = self.db.execute(
            "SELECT chain FROM roots WHERE interval = ?", (root.interval - 1,)
        ).fetchone()
        after = self.db.execute(
            "SELECT message FROM roots WHERE interval = ?", (root.interval + 1,)
        ).fetchone()
        if before is not None and root.prev != before[0]:
            return "broken_chain"
        if after is not None and RootMessage.model_validate_json(after[0]).prev != root.chain():
            return "broken_chain"
        return None

    def roots(self) -> list[RootMessage]:
        """Every root kept, in interval order."""
        return _kept(self.db)


def _kept(db: sqlite3.Connection) -> list[RootMessage]:
    return [
        RootMessage.model_validate_json(m)
        for (m,) in db.execute("SELECT message FROM roots ORDER BY interval")
    ]


def export_roots(
    state_db: Path, community: str, household: str, coordinator_key: str | None
) -> RootsFile:
    """What a household hands to an auditor: the roots kept in its state file."""
    if coordinator_key is None:
        raise GridctlError("coordinator_key is not set in the controller's config")
    if not state_db.is_file():
        raise GridctlError(f"no controller state file at {state_db}")
    try:
        db = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True)
        try:
            has = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'roots'").fetchone()
            roots = _kept(db) if has else []
        finally:
            db.close()
    except (sqlite3.Error, ValidationError) as e:
        raise GridctlError(f"state_db {state_db}: cannot read its roots ({e})") from None
    return RootsFile(
        community=community, household=household, coordinator_key=coordinator_key, roots=roots
    )
