"""Merkle trees with RFC 6962 (Certificate Transparency) hashing, and inclusion proofs.

leaf hash = sha256(0x00 || data), node hash = sha256(0x01 || left || right), the root of no
leaves is sha256(b""). A tree of n > 1 leaves splits at k, the largest power of two below n:
the left subtree holds the first k leaves (RFC 6962 §2.1; RFC 9162 §2.1.1). Built bottom-up,
an unpaired last node is carried up a level unchanged, which gives the same tree.

Pure functions on ``bytes``; nothing here touches the ledger, so a household can check a proof
with this module alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root of a tree with no leaves."""

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 hash of one leaf's data: sha256(0x00 || data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 hash of an inner node: sha256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def _levels(leaf_hashes: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first, root last (one element)."""
    levels = [list(leaf_hashes)]
    level = levels[0]
    while len(level) > 1:
        nxt = [
            _sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])  # carried up unchanged: the RFC 6962 split
        levels.append(nxt)
        level = nxt
    return levels


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """Merkle tree hash over leaf hashes (already ``leaf_hash``-ed), 32 bytes."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return _levels(leaf_hashes)[-1][0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Merkle tree hash (RFC 6962 MTH) over the leaves' data, 32 bytes."""
    return root_from_leaf_hashes([leaf_hash(d) for d in leaves])


def inclusion_path(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path (RFC 6962 PATH) of leaf ``index`` (0-based), siblings from the leaf upwards."""
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} outside a tree of {n} leaves")
    path = []
    m = index
    for level in _levels(leaf_hashes)[:-1]:
        sibling = m ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        m //= 2
    return path


def root_from_path(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes | None:
    """Root implied by a leaf hash and its audit path (RFC 9162 §2.1.3.2); None if malformed.

    index: 0-based leaf index. size: number of leaves in the tree. leaf: the leaf's hash.
    """
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0 or len(p) != 32:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """True when leaf hash ``leaf`` sits at ``index`` in the tree of ``size`` leaves, ``root``."""
    return root_from_path(index, size, leaf, path) == root
