"""RFC 6962 Merkle trees: the Certificate Transparency reference vectors and random trees."""

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from gridctl.settlement.merkle import (
    EMPTY_ROOT,
    inclusion_path,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_path,
    verify_inclusion,
)

# Known-answer vectors of the Certificate Transparency reference implementation:
# google/certificate-transparency, cpp/merkletree/merkle_tree_test.cc (kInputs, kSHA256Roots,
# kSHA256Paths; also used by RFC 6962 implementations such as transparency-dev/merkle).
CT_INPUTS = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
CT_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf, tree size, path): leaves are 1-based in the CT test
CT_PATHS = [
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
DATA = [bytes.fromhex(x) for x in CT_INPUTS]


def test_ct_root_vectors() -> None:
    assert EMPTY_ROOT.hex() == CT_EMPTY == merkle_root([]).hex()
    for n in range(1, 9):
        assert merkle_root(DATA[:n]).hex() == CT_ROOTS[n - 1], n


def test_ct_path_vectors_and_their_verification() -> None:
    for leaf, size, path in CT_PATHS:
        leaves = [leaf_hash(d) for d in DATA[:size]]
        assert [h.hex() for h in inclusion_path(leaves, leaf - 1)] == path
        root = bytes.fromhex(CT_ROOTS[size - 1])
        proof = [bytes.fromhex(h) for h in path]
        assert verify_inclusion(leaf - 1, size, leaves[leaf - 1], proof, root)
        # wrong index, wrong size, wrong leaf, wrong root, truncated or padded path: all fail
        assert not verify_inclusion(leaf, size, leaves[leaf - 1], proof, root)
        assert not verify_inclusion(leaf - 1, size * 2, leaves[leaf - 1], proof, root)
        assert not verify_inclusion(leaf - 1, size, leaf_hash(b"WrongLeaf"), proof, root)
        assert not verify_inclusion(leaf - 1, size, leaves[leaf - 1], proof, EMPTY_ROOT)
        assert not verify_inclusion(leaf - 1, size, leaves[leaf - 1], proof[:-1], root)
        assert not verify_inclusion(leaf - 1, size, leaves[leaf - 1], [*proof, root], root)


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, recursively, straight from the definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_reference_root(leaves[:k]), _reference_root(leaves[k:]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=70), st.data())
def test_random_trees_match_the_definition_and_every_proof_verifies(
    leaves: list[bytes], data: st.DataObject
) -> None:
    root = merkle_root(leaves)
    assert root == _reference_root(leaves)
    hashes = [leaf_hash(x) for x in leaves]
    i = data.draw(st.integers(0, len(leaves) - 1))
    path = inclusion_path(hashes, i)
    assert root_from_path(i, len(leaves), hashes[i], path) == root
    if path:
        j = data.draw(st.integers(0, len(path) - 1))
        bad = [*path]
        bad[j] = bytes(32)
        assert not verify_inclusion(i, len(leaves), hashes[i], bad, root)
