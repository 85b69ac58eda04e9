"""Ed25519 keys made once at install time and kept in a private PEM file: the household meter's
and the community coordinator's."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from gridctl.core import GridctlError
from gridctl.settlement.signing import key_id_of, public_bytes


class KeyFileError(GridctlError):
    """A key file is missing, unreadable or not an Ed25519 private key."""


def generate_key_file(path: Path) -> bytes:
    """Write a new private key to ``path`` (mode 0600; refuses to overwrite); returns the
    32-byte public key to enrol (a meter's with the coordinator, the coordinator's with every
    controller)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} exists: a key is never overwritten") from None
    except OSError as e:
        raise KeyFileError(f"cannot write key {path}: {e.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return public_bytes(key)


def load_key_file(path: Path) -> Ed25519PrivateKey:
    """The private key in ``path``."""
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise KeyFileError(f"cannot read key {path}: {e.strerror}") from None
    except ValueError as e:
        raise KeyFileError(f"{path}: not a PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return key


def describe_public_key(public_key: bytes) -> str:
    """``key_id public_hex``: what a household hands to the coordinator to enrol (and the
    coordinator to every household)."""
    return f"{key_id_of(public_key)} {public_key.hex()}"
