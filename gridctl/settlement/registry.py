"""Meters and their keys, kept in the ledger file: register when a household joins, rotate, revoke.

Both tables are append-only: a rotation or revocation is a ``key_events`` row, never an edit.
A key signs readings of intervals ``valid_from ≤ interval < end``; after a rotation its
readings are ``superseded_key``, after a revocation ``revoked_key``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import astuple, dataclass, field
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import crypto_core_ed25519_is_valid_point

from gridctl.settlement.roots import key_event_payload
from gridctl.settlement.signing import ReadingError, check_meter_id, key_id_of
from gridctl.settlement.tables import Table, insert_rows, select_rows

if TYPE_CHECKING:  # the ledger creates these tables through this module
    from gridctl.settlement.ledger import Ledger

ROLES = ("main", "inverter", "transformer")
"""main: a household's connection meter (settled). inverter: the household's hybrid inverter's
own measurement of the same grid exchange (cross-check). transformer: the feeder head."""

COUNTER_MODULUS_WH = 10**10
"""Default roll-over of a meter's energy counters (a 7+3 digit kWh register), Wh."""


@dataclass(frozen=True)
class Meter:
    """A registered meter. rated_w: largest power it can carry (fuse, inverter rating), W.

    e_import_wh / e_export_wh: counters when it joined, Wh (None: not known); household: None
    for a transformer.
    """

    meter: str
    household: str | None
    role: str
    rated_w: float
    counter_modulus_wh: int
    joined_interval: int
    e_import_wh: int | None
    e_export_wh: int | None


@dataclass(frozen=True)
class MeterKey:
    """A meter's public key and the intervals it may sign: valid_from ≤ interval < ended_at."""

    key_id: str
    meter: str
    public_key: bytes
    valid_from: int
    rotated_at: int | None
    revoked_at: int | None


TABLES: dict[str, Table] = {
    "meters": Table.of(
        Meter, pk="meter", not_null=("role", "rated_w", "counter_modulus_wh", "joined_interval")
    ),
    "meter_keys": Table(
        {"key_id": str, "meter": str, "public_key": bytes, "valid_from": int},
        pk="key_id",
        not_null=("meter", "public_key", "valid_from"),
    ),
    # rotations and revocations; sig: the coordinator's signature (``roots.key_event_payload``)
    "key_events": Table(
        {"key_id": str, "event": str, "at_interval": int, "sig": str},
        pk=("key_id", "event"),
        not_null=("event", "at_interval", "sig"),
    ),
}
"""The meters, their keys and the key events, as the ledger file holds them (append-only)."""


@dataclass
class Registry:
    """Meters in registration order and keys by id, as read from the ledger file."""

    meters: dict[str, Meter]
    keys: dict[str, MeterKey]
    _verifiers: dict[str, Ed25519PublicKey] = field(default_factory=dict)

    def verifier(self, key_id: str) -> Ed25519PublicKey:
        """The key's verifier object (cached)."""
        v = self._verifiers.get(key_id)
        if v is None:
            v = Ed25519PublicKey.from_public_bytes(self.keys[key_id].public_key)
            self._verifiers[key_id] = v
        return v


def load_registry(db: sqlite3.Connection) -> Registry:
    """Meters and keys with their rotation / revocation events."""
    meters = {m.meter: m for m in select_rows(db, Meter, "FROM meters ORDER BY rowid")}
    events: dict[str, dict[str, int]] = {}
    for key_id, event, at in db.execute("SELECT key_id, event, at_interval FROM key_events"):
        events.setdefault(key_id, {})[event] = at
    keys = {}
    for key_id, meter, pub, valid_from in db.execute(
        "SELECT key_id, meter, public_key, valid_from FROM meter_keys ORDER BY rowid"
    ):
        ev = events.get(key_id, {})
        keys[key_id] = MeterKey(
            key_id, meter, bytes(pub), valid_from, ev.get("rotated"), ev.get("revoked")
        )
    return Registry(meters, keys)


def registry_version(db: sqlite3.Connection) -> tuple[int, int, int]:
    """Numbers of meters, keys and key events: it changes whenever the registry does."""
    q = "SELECT (SELECT COUNT(*) FROM meters), (SELECT COUNT(*) FROM meter_keys),"
    q += " (SELECT COUNT(*) FROM key_events)"
    meters, keys, events = db.execute(q).fetchone()
    return meters, keys, events


def has_household(db: sqlite3.Connection, household: str) -> bool:
    """True when a meter of ``household`` is registered."""
    q = "SELECT 1 FROM meters WHERE household = ?"
    return db.execute(q, (household,)).fetchone() is not None


def register_meter(
    ledger: Ledger,
    meter: str,
    household: str | None,
    role: str,
    rated_w: float,
    public_key: bytes,
    joined_interval: int,
    e_import_wh: int | None = 0,
    e_export_wh: int | None = 0,
    counter_modulus_wh: int = COUNTER_MODULUS_WH,
) -> str:
    """Register a meter with its first key; returns the key id. Registering the same again is a
    no-op; the same meter id with other data is refused (ReadingError).

    rated_w: W (> 0). e_import_wh / e_export_wh: counters at ``joined_interval``'s start, Wh;
    None when not known (a household enrolled from the coordinator's config): the meter's first
    authentic reading then sets them (VEE's ``baseline``).
    """
    check_meter_id(meter)
    if role not in ROLES:
        raise ReadingError(f"meter {meter}: role must be one of {', '.join(ROLES)}")
    if (role == "transformer") != (household is None):
        raise ReadingError(f"meter {meter}: a transformer meter has no household, others do")
    if not rated_w > 0:
        raise ReadingError(f"meter {meter}: rated_w must be > 0")
    new = Meter(meter, household, role, float(rated_w), counter_modulus_wh, joined_interval,
                e_import_wh, e_export_wh)  # fmt: skip
    key_id = key_id_of(public_key)
    with ledger.atomic() as db:
        old = select_rows(db, Meter, "FROM meters WHERE meter = ?", (meter,))
        if old:
            if old[0] != new:
                raise ReadingError(f"meter {meter} is already registered with other data")
            return key_id
        insert_rows(db, "meters", [astuple(new)])
        _add_key(db, meter, public_key, joined_interval)
    return key_id


def _add_key(db: sqlite3.Connection, meter: str, public_key: bytes, valid_from: int) -> str:
    if len(public_key) != 32:
        raise ReadingError(f"meter {meter}: an Ed25519 public key has 32 bytes")
    # a small-order or non-canonical key would let anyone forge "signatures" under it
    if not crypto_core_ed25519_is_valid_point(public_key):
        raise ReadingError(f"meter {meter}: not a valid Ed25519 public key (weak or malformed)")
    key_id = key_id_of(public_key)
    if db.execute("SELECT 1 FROM meter_keys WHERE key_id = ?", (key_id,)).fetchone():
        raise ReadingError(f"key {key_id} is already registered")
    db.execute("INSERT INTO meter_keys VALUES (?,?,?,?)", (key_id, meter, public_key, valid_from))
    return key_id


def rotate_key(ledger: Ledger, meter: str, public_key: bytes, at_interval: int) -> str:
    """Give ``meter`` a new key from ``at_interval`` on; its current keys sign only before it.

    Returns the new key id.
    """
    with ledger.atomic() as db:
        if not db.execute("SELECT 1 FROM meters WHERE meter = ?", (meter,)).fetchone():
            raise ReadingError(f"no meter {meter} to rotate a key of")
        current = [
            k
            for (k,) in db.execute(
                "SELECT key_id FROM meter_keys WHERE meter = ? AND key_id NOT IN"
                " (SELECT key_id FROM key_events)",
                (meter,),
            )
        ]
        new = _add_key(db, meter, public_key, at_interval)
        for k in current:
            _key_event(ledger, db, k, "rotated", at_interval)
        return new


def revoke_key(ledger: Ledger, key_id: str, at_interval: int) -> bool:
    """Revoke a key (lost, compromised): its readings of ``at_interval`` on are refused.
    Returns False when it was revoked already (nothing changes)."""
    with ledger.atomic() as db:
        if not db.execute("SELECT 1 FROM meter_keys WHERE key_id = ?", (key_id,)).fetchone():
            raise ReadingError(f"no key {key_id} to revoke")
        if db.execute(
            "SELECT 1 FROM key_events WHERE key_id = ? AND event = 'revoked'", (key_id,)
        ).fetchone():
            return False
        _key_event(ledger, db, key_id, "revoked", at_interval)
        return True


def _key_event(
    ledger: Ledger, db: sqlite3.Connection, key_id: str, event: str, at_interval: int
) -> None:
    """Record a key event signed by the coordinator key; ``at_interval`` must be open."""
    closed = ledger.last_closed()
    if closed is not None and at_interval <= closed:
        raise ReadingError(
            f"interval {at_interval} is settled already: a key changes from interval "
            f"{closed + 1} on at the earliest"
        )
    sig = ledger.sign(key_event_payload(key_id, event, at_interval)).hex()
    db.execute("INSERT INTO key_events VALUES (?,?,?,?)", (key_id, event, at_interval, sig))
