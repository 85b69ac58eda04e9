"""The controller's outbox: signed readings kept in SQLite until the coordinator has them.

A reading is signed and stored in one transaction with its meter's sequence number, so a
restart neither reuses a sequence number nor loses a reading. Rows stay until the coordinator
acknowledges them (``ack_through``); until then they are (re)sent, and a duplicate on the
coordinator's side is harmless (settlement is idempotent).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridctl.core import GridctlError, private_file
from gridctl.settlement.signing import MeterSigner, SignedReading

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    meter TEXT NOT NULL, interval INTEGER NOT NULL, seq INTEGER NOT NULL,
    message TEXT NOT NULL, sent_at REAL, PRIMARY KEY (meter, interval));
CREATE TABLE IF NOT EXISTS signer (meter TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""


class OutboxError(GridctlError):
    """The controller's state file cannot be opened."""


class Outbox:
    """Signed readings waiting for the coordinator, in the SQLite file ``path``."""

    def __init__(self, path: Path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            private_file(path)
            self.db = sqlite3.connect(path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise OutboxError(f"state_db {path}: cannot open ({e})") from None

    def close(self) -> None:
        """Close the file."""
        self.db.close()

    def signer(self, meter: str, key: Ed25519PrivateKey) -> MeterSigner:
        """A signer for ``meter`` continuing from its last stored sequence number."""
        row = self.db.execute("SELECT seq FROM signer WHERE meter = ?", (meter,)).fetchone()
        return MeterSigner(meter, key, row[0] if row else 0)

    def add(
        self,
        signer: MeterSigner,
        interval: int,
        e_import_wh: int,
        e_export_wh: int,
        v_mv: int | None = None,
    ) -> SignedReading | None:
        """Sign and store the counters (Wh) at the end of ``interval`` and its mean voltage
        (mV, None: unknown); None if that interval already has a reading (a restart within the
        same boundary)."""
        have = self.db.execute(
            "SELECT 1 FROM readings WHERE meter = ? AND interval = ?", (signer.meter, interval)
        ).fetchone()
        if have:
            return None
        reading = signer.sign(interval, e_import_wh, e_export_wh, v_mv)
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO readings (meter, interval, seq, message) VALUES (?, ?, ?, ?)",
                (reading.meter, interval, reading.seq, json.dumps(reading.to_message())),
            )
            self.db.execute(
                "INSERT INTO signer (meter, seq) VALUES (?, ?) "
                "ON CONFLICT (meter) DO UPDATE SET seq = excluded.seq",
                (reading.meter, reading.seq),
            )
        return reading

    def due(self, now_s: float, resend_after_s: float) -> list[tuple[str, int, bytes]]:
        """(meter, interval, message) never sent, or sent over ``resend_after_s`` ago and not
        yet acknowledged, oldest first."""
        rows = self.db.execute(
            "SELECT meter, interval, message FROM readings "
            "WHERE sent_at IS NULL OR sent_at < ? ORDER BY interval, meter",
            (now_s - resend_after_s,),
        ).fetchall()
        return [(m, i, msg.encode()) for m, i, msg in rows]

    def mark_sent(self, meter: str, interval: int, now_s: float) -> None:
        """Record that the broker took the reading at ``now_s``."""
        self.db.execute(
            "UPDATE readings SET sent_at = ? WHERE meter = ? AND interval = ?",
            (now_s, meter, interval),
        )

    def resend_all(self) -> None:
        """Make every unacknowledged reading due at once."""
        self.db.execute("UPDATE readings SET sent_at = NULL")

    def ack_through(self, interval: int) -> int:
        """Drop readings up to ``interval`` (the coordinator has them); returns how many."""
        return self.db.execute("DELETE FROM readings WHERE interval <= ?", (interval,)).rowcount

    def pending(self) -> int:
        """Readings not yet acknowledged."""
        return int(self.db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
