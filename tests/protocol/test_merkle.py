"""The Merkle tree against RFC 9162's recursive definitions, for every tree of up to 300 leaves.

The reference below is written from the RFC's own text (2.1.1 MTH, 2.1.3.1
PATH, 2.1.4.1 SUBPROOF), recursion and all, over slices of one list of leaf
data; only a cache keeps it quick. The tree under test must give the same
roots and the same proofs for every size, index and old size, its
verifiers must accept them, and refuse them once anything is changed.
"""

from __future__ import annotations

import hashlib
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ladder.protocol.ledger import leaf_hash
from ladder.protocol.merkle import EMPTY_ROOT, MerkleTree, node_hash, verify_consistency, verify_inclusion

MAX = 300
DATA = [f"entry {i}".encode() for i in range(MAX)]
LEAVES = [hashlib.sha256(b"\x00" + d).digest() for d in DATA]
TREE = MerkleTree(LEAVES)


def _k(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@cache
def mth(start: int, end: int) -> bytes:
    """MTH(D[start:end])."""
    n = end - start
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + DATA[start]).digest()
    k = _k(n)
    return hashlib.sha256(b"\x01" + mth(start, start + k) + mth(start + k, end)).digest()


def path(m: int, start: int, end: int) -> list[bytes]:
    """PATH(m, D[start:end]), m relative to start."""
    n = end - start
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return path(m, start, start + k) + [mth(start + k, end)]
    return path(m - k, start + k, end) + [mth(start, start + k)]


def subproof(m: int, start: int, end: int, b: bool) -> list[bytes]:
    """SUBPROOF(m, D[start:end], b), m relative to start."""
    n = end - start
    if m == n:
        return [] if b else [mth(start, end)]
    k = _k(n)
    if m <= k:
        return subproof(m, start, start + k, b) + [mth(start + k, end)]
    return subproof(m - k, start + k, end, False) + [mth(start, start + k)]


def proof(m: int, n: int) -> list[bytes]:
    """PROOF(m, D[n]), defined for 0 < m < n."""
    return subproof(m, 0, n, True)


def tampered(nodes: list[bytes]) -> list[list[bytes]]:
    """Each node with a bit flipped, and the proof a node short at either end and one too long."""
    flipped = [nodes[:i] + [bytes([node[0] ^ 1]) + node[1:]] + nodes[i + 1:] for i, node in enumerate(nodes)]
    shorter = [nodes[:-1], nodes[1:]] if nodes else []
    return flipped + shorter + [nodes + [nodes[-1] if nodes else LEAVES[0]]]


# ------------------------------------------------------------------ roots


def test_the_hashes_are_the_rfcs():
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert leaf_hash(DATA[0]) == LEAVES[0]
    assert node_hash(LEAVES[0], LEAVES[1]) == hashlib.sha256(b"\x01" + LEAVES[0] + LEAVES[1]).digest()


def test_the_root_of_every_size_is_the_rfcs_mth():
    grown = MerkleTree()
    assert grown.root() == EMPTY_ROOT and len(grown) == 0
    for n in range(1, MAX + 1):
        grown.append(LEAVES[n - 1])
        assert len(grown) == n
        assert grown.root() == mth(0, n), n
    assert [TREE.root(n) for n in range(MAX + 1)] == [mth(0, n) for n in range(MAX + 1)]


# ------------------------------------------------------------------ inclusion


def test_every_inclusion_proof_is_the_rfcs_path_and_verifies():
    for n in range(1, MAX + 1):
        root = mth(0, n)
        for m in range(n):
            nodes = TREE.inclusion_proof(m, n)
            assert nodes == path(m, 0, n), (m, n)
            assert verify_inclusion(LEAVES[m], m, n, nodes, root), (m, n)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 100, 255, 256, 257, MAX])
def test_a_changed_inclusion_proof_or_claim_is_refused(n: int):
    root = mth(0, n)
    for m in range(n):
        nodes = TREE.inclusion_proof(m, n)
        assert not verify_inclusion(LEAVES[m], m, n, nodes, mth(0, n - 1))  # another root
        assert not verify_inclusion(bytes(32), m, n, nodes, root)  # another leaf
        assert not verify_inclusion(LEAVES[m], m, n, nodes, bytes(32))
        if n > 1:
            assert not verify_inclusion(LEAVES[m], (m + 1) % n, n, nodes, root)  # another index
        assert not verify_inclusion(LEAVES[m], m, 2 * n, nodes, root)  # too short for the size it claims
        for bad in tampered(nodes):
            assert not verify_inclusion(LEAVES[m], m, n, bad, root), (m, n)
    assert not verify_inclusion(LEAVES[0], n, n, [], root)  # no leaf n in a tree of n
    assert not verify_inclusion(LEAVES[0], -1, n, TREE.inclusion_proof(0, n), root)


# ------------------------------------------------------------------ consistency


def test_every_consistency_proof_is_the_rfcs_subproof_and_verifies():
    for n in range(MAX + 1):
        root = mth(0, n)
        assert TREE.consistency_proof(0, n) == [] and TREE.consistency_proof(n, n) == []
        assert verify_consistency(0, n, EMPTY_ROOT, root, [])
        assert verify_consistency(n, n, root, root, [])
        for m in range(1, n):
            nodes = TREE.consistency_proof(m, n)
            assert nodes == proof(m, n), (m, n)
            assert verify_consistency(m, n, mth(0, m), root, nodes), (m, n)


@pytest.mark.parametrize("n", [2, 3, 7, 8, 9, 100, 255, 256, 257, MAX])
def test_a_changed_consistency_proof_or_claim_is_refused(n: int):
    root = mth(0, n)
    for m in range(1, n):
        old_root, nodes = mth(0, m), TREE.consistency_proof(m, n)
        assert not verify_consistency(m, n, mth(0, m - 1), root, nodes)  # a forked old tree
        assert not verify_consistency(m, n, old_root, mth(0, n - 1), nodes)  # a forked new tree
        assert not verify_consistency(m, n, old_root, bytes(32), nodes)
        assert not verify_consistency(n, m, root, old_root, nodes)  # the sizes the other way round
        assert not verify_consistency(m, 2 * n, old_root, root, nodes)  # too short for the size it claims
        assert not verify_consistency(m, n, old_root, root, [])
        for bad in tampered(nodes):
            assert not verify_consistency(m, n, old_root, root, bad), (m, n)


def test_the_trivial_consistency_cases_hold_only_for_the_trees_they_name():
    one, two = mth(0, 1), mth(0, 2)
    assert not verify_consistency(0, 2, one, two, [])  # the empty tree's root is SHA-256("")
    assert not verify_consistency(0, 0, EMPTY_ROOT, one, [])
    assert not verify_consistency(0, 2, EMPTY_ROOT, two, [one])  # nothing to prove: no proof
    assert not verify_consistency(2, 2, two, one, [])
    assert not verify_consistency(2, 2, two, two, [two])
    assert not verify_consistency(-1, 2, EMPTY_ROOT, two, [])


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("call", [
    lambda: TREE.root(MAX + 1),
    lambda: TREE.root(-1),
    lambda: TREE.inclusion_proof(MAX),
    lambda: TREE.inclusion_proof(5, 5),
    lambda: TREE.inclusion_proof(-1),
    lambda: TREE.inclusion_proof(0, MAX + 1),
    lambda: TREE.consistency_proof(6, 5),
    lambda: TREE.consistency_proof(-1, 5),
    lambda: TREE.consistency_proof(1, MAX + 1),
    lambda: MerkleTree().append(b"short"),
    lambda: MerkleTree().inclusion_proof(0),
])
def test_a_question_the_tree_cannot_answer_is_a_value_error(call):
    with pytest.raises(ValueError):
        call()


@given(size=st.integers(1, MAX), data=st.data())
def test_arbitrary_proofs_never_raise_and_verify_only_when_they_are_the_proof(size, data):
    index = data.draw(st.integers(-2, size + 2))
    old_size = data.draw(st.integers(-2, size + 2))
    nodes = data.draw(st.lists(st.sampled_from([*LEAVES[:4], mth(0, 2), mth(2, 4), bytes(32), b""]),
                               max_size=12))
    old_root, root = mth(0, min(max(old_size, 0), size)), mth(0, size)
    if verify_inclusion(LEAVES[index % MAX], index, size, nodes, root):
        assert nodes == path(index, 0, size)
    if verify_consistency(old_size, size, old_root, root, nodes):
        assert nodes == ([] if old_size in (0, size) else proof(old_size, size))
