"""Meter key changes the coordinator records: rotate a household's key, revoke it.

Each is a key event in the ledger, signed by the coordinator key and covered by the next
interval root; readings signed with a revoked or rotated key are refused from its interval on.
"""

from __future__ import annotations

from gridctl.coordinator.config import CoordinatorConfig, coordinator_key
from gridctl.core import GridctlError
from gridctl.settlement.enrol import main_meter
from gridctl.settlement.ledger import Ledger
from gridctl.settlement.registry import load_registry, revoke_key, rotate_key


def _current_keys(ledger: Ledger, household: str) -> list[str]:
    """Ids of the household main meter's keys neither rotated nor revoked."""
    registry = load_registry(ledger.db)
    meter = main_meter(household)
    if meter not in registry.meters:
        raise GridctlError(f"household {household} is not enrolled in {ledger.path}")
    return [
        k.key_id
        for k in registry.keys.values()
        if k.meter == meter and k.rotated_at is None and k.revoked_at is None
    ]


def rotate(cfg: CoordinatorConfig, household: str, public_key_hex: str, at_interval: int) -> str:
    """Give the household's meter a new public key (64 hex) from ``at_interval`` on; its
    current key signs only before. Returns the new key id."""
    try:
        public_key = bytes.fromhex(public_key_hex)
    except ValueError:
        raise GridctlError("--public-key: 64 hex digits (as `controller keygen` prints)") from None
    with Ledger(cfg.ledger, coordinator_key(cfg)) as ledger:
        _current_keys(ledger, household)
        return rotate_key(ledger, main_meter(household), public_key, at_interval)


def revoke(cfg: CoordinatorConfig, household: str, at_interval: int) -> list[str]:
    """Revoke the household meter's current keys from ``at_interval`` on (lost or
    compromised); returns their ids (empty: none was current)."""
    with Ledger(cfg.ledger, coordinator_key(cfg)) as ledger:
        keys = _current_keys(ledger, household)
        with ledger.atomic():
            for k in keys:
                revoke_key(ledger, k, at_interval)
        return keys
