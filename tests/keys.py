"""The coordinator key tests sign interval roots and key events with (fixed, so repeatable)."""

from gridctl.settlement.signing import key_from_seed, public_bytes

COORDINATOR_KEY = key_from_seed(b"gridctl-tests/coordinator")
COORDINATOR_PUBLIC_HEX = public_bytes(COORDINATOR_KEY).hex()
