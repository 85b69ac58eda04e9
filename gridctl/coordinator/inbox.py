"""The coordinator's inbox: every authentic-looking reading and every vote received, kept in
SQLite.

Readings are stored as they arrive (exact duplicates collapse on their digest), so a restarted
coordinator settles from what it had received before it died; settlement itself is idempotent.
Readings of settled intervals are pruned (the ledger keeps what counted).
``through(meter)`` is the acknowledgement sent back in plans: the last interval up to which the
coordinator holds the meter's readings, counting intervals already settled as held.
Votes are kept with the household whose topic delivered them and the interval they arrived in,
until governance has recorded them in the ledger (valid or not).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from gridctl.core import private_file
from gridctl.governance.book import Received
from gridctl.governance.votes import VoteMessage
from gridctl.settlement.signing import SignedReading, parse_reading

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    meter TEXT NOT NULL, interval INTEGER NOT NULL, digest TEXT NOT NULL, message TEXT NOT NULL,
    PRIMARY KEY (meter, interval, digest));
CREATE TABLE IF NOT EXISTS votes (
    digest TEXT PRIMARY KEY, sender TEXT NOT NULL, received INTEGER NOT NULL,
    message TEXT NOT NULL);
"""


class Inbox:
    """Received readings in the SQLite file ``path``."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        private_file(path)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        self._through: dict[str, int] = {}

    def close(self) -> None:
        """Close the file."""
        self.db.close()

    def add(self, reading: SignedReading) -> bool:
        """Keep a reading; False when exactly this one was already here."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO inbox VALUES (?, ?, ?, ?)",
            (reading.meter, reading.interval, reading.digest(), json.dumps(reading.to_message())),
        )
        return cur.rowcount == 1

    def count(self, meter: str, interval: int) -> int:
        """Distinct readings kept of ``meter`` for ``interval``."""
        q = "SELECT COUNT(*) FROM inbox WHERE meter = ? AND interval = ?"
        return int(self.db.execute(q, (meter, interval)).fetchone()[0])

    def has(self, reading: SignedReading) -> bool:
        """Whether exactly this reading is kept."""
        q = "SELECT 1 FROM inbox WHERE meter = ? AND interval = ? AND digest = ?"
        row = self.db.execute(q, (reading.meter, reading.interval, reading.digest())).fetchone()
        return row is not None

    def prune_through(self, interval: int) -> None:
        """Forget readings up to ``interval`` (settled: the ledger holds what counted)."""
        self.db.execute("DELETE FROM inbox WHERE interval <= ?", (interval,))

    def add_vote(self, sender: str, vote: VoteMessage, received: int) -> bool:
        """Keep a vote that ``sender``'s topic delivered in interval ``received``; False when
        exactly this one was already here."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO votes VALUES (?, ?, ?, ?)",
            (vote.digest(), sender, received, vote.model_dump_json()),
        )
        return cur.rowcount == 1

    def votes_from(self, sender: str, received: int) -> int:
        """Distinct votes kept that ``sender``'s topic delivered in interval ``received``."""
        q = "SELECT COUNT(*) FROM votes WHERE sender = ? AND received = ?"
        return int(self.db.execute(q, (sender, received)).fetchone()[0])

    def votes_through(self, interval: int) -> list[Received]:
        """Votes that arrived in intervals up to ``interval``, in order of arrival."""
        q = "SELECT sender, message, received FROM votes WHERE received <= ? ORDER BY rowid"
        return [
            Received(s, VoteMessage.model_validate_json(m), r)
            for s, m, r in self.db.execute(q, (interval,))
        ]

    def prune_votes_through(self, interval: int) -> None:
        """Forget votes that arrived up to ``interval`` (the ledger has recorded them)."""
        self.db.execute("DELETE FROM votes WHERE received <= ?", (interval,))

    def readings(self, interval: int) -> list[SignedReading]:
        """Every reading received for ``interval``."""
        rows = self.db.execute("SELECT message FROM inbox WHERE interval = ?", (interval,))
        return [parse_reading(m) for (m,) in rows]

    def meters_in(self, interval: int) -> set[str]:
        """Meters with at least one reading for ``interval``."""
        rows = self.db.execute("SELECT DISTINCT meter FROM inbox WHERE interval = ?", (interval,))
        return {m for (m,) in rows}

    def through(self, meter: str, first: int, settled: int | None) -> int | None:
        """Last interval up to which the coordinator holds ``meter``'s readings (from ``first``;
        intervals up to ``settled`` count as held: a late reading can no longer change them)."""
        t = self._through.get(meter, first - 1)
        if settled is not None:
            t = max(t, settled)
        while self.db.execute(
            "SELECT 1 FROM inbox WHERE meter = ? AND interval = ? LIMIT 1", (meter, t + 1)
        ).fetchone():
            t += 1
        self._through[meter] = t
        return t if t >= first else None
