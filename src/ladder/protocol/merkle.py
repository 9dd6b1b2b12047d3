"""The ledger's Merkle tree: roots, inclusion and consistency proofs, as RFC 9162 section 2.1 defines them.

The tree hashes leaf hashes (ledger.leaf_hash: SHA-256(0x00 · data)) into
nodes, SHA-256(0x01 · left · right), splitting n leaves at the largest power
of two below n (2.1.1). A hub appends one leaf per entry and signs the root
of every checkpoint, and members ask it for proofs against the roots they
hold: an inclusion proof (2.1.3) shows an entry is in the log, a
consistency proof (2.1.4) that a later log only appended to an earlier one.

`MerkleTree` keeps every completed perfect subtree: level h holds the hashes
of leaves [i·2^h, (i+1)·2^h). Every subtree the RFC's recursion names
starts on a multiple of its own perfect left part, so each is at most
log n stored hashes folded together: `append` costs O(log n) at worst (O(1)
on average), so does the root of any size, and a proof O(log² n).

The verifiers follow the RFC's iterative algorithms (2.1.3.2, 2.1.4.2) to
the step, so that the proofs they accept are exactly the RFC's. They answer
False to anything that is not a proof, never an exception.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}), the root of the empty tree


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 2.1.1: the hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(width: int) -> int:
    """The largest power of two smaller than `width` (> 1): where the RFC splits a tree."""
    return 1 << ((width - 1).bit_length() - 1)


class MerkleTree:
    """An append-only list of leaf hashes and the RFC 9162 tree over every prefix of it."""

    def __init__(self, leaves: Iterable[bytes] = ()):
        self._levels: list[list[bytes]] = [[]]  # _levels[h][i]: the perfect subtree of 2^h leaves from i·2^h
        for leaf in leaves:
            self.append(leaf)

    def __len__(self) -> int:
        return len(self._levels[0])

    def append(self, leaf_hash: bytes) -> None:
        """Add a leaf (its hash, ledger.leaf_hash) and the perfect subtrees it completes."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes")
        node, level = leaf_hash, 0
        while True:
            row = self._levels[level]
            row.append(node)
            if len(row) % 2:
                return
            node, level = node_hash(row[-2], row[-1]), level + 1
            if level == len(self._levels):
                self._levels.append([])

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first `size` leaves (all of them by default)."""
        return self._subtree(0, self._size(size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) (2.1.3.1): the siblings from the leaf up to the root."""
        size = self._size(size)
        if not 0 <= index < size:
            raise ValueError(f"no leaf {index} in a tree of {size}")
        siblings = []  # from the root down
        start, end = 0, size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                siblings.append(self._subtree(start + k, end))
                end = start + k
            else:
                siblings.append(self._subtree(start, start + k))
                start += k
        return siblings[::-1]

    def consistency_proof(self, old_size: int, size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[0:size]) (2.1.4.1); empty when there is nothing to prove (old_size 0 or size)."""
        size = self._size(size)
        if not 0 <= old_size <= size:
            raise ValueError(f"no consistency proof from size {old_size} to {size}")
        if old_size in (0, size):
            return []
        nodes = []  # from the root down
        start, end, known, m = 0, size, True, old_size  # SUBPROOF(m, D[start:end], known)
        while m != end - start:
            k = _split(end - start)
            if m <= k:
                nodes.append(self._subtree(start + k, end))
                end = start + k
            else:
                nodes.append(self._subtree(start, start + k))
                start, m, known = start + k, m - k, False
        if not known:
            nodes.append(self._subtree(start, end))
        return nodes[::-1]

    def _size(self, size: int | None) -> int:
        if size is None:
            return len(self)
        if not 0 <= size <= len(self):
            raise ValueError(f"a tree of {len(self)} leaves has no size {size}")
        return size

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range of the RFC's recursion: its perfect left parts, folded."""
        if start == end:
            return EMPTY_ROOT
        lefts = []
        while (width := end - start) & (width - 1):
            k = _split(width)
            lefts.append(self._perfect(start, k))
            start += k
        node = self._perfect(start, end - start)
        for left in reversed(lefts):
            node = node_hash(left, node)
        return node

    def _perfect(self, start: int, width: int) -> bytes:
        level = width.bit_length() - 1
        return self._levels[level][start >> level]


def _climb(fn: int, sn: int) -> tuple[int, int]:
    """Right-shift both until LSB(fn) is set or fn is 0: past the levels where the node has no sibling."""
    while fn and not fn & 1:
        fn, sn = fn >> 1, sn >> 1
    return fn, sn


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether `proof` shows leaf `index` of the tree of `size` with `root` is `leaf_hash` (2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            fn, sn = _climb(fn, sn)
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, size: int, old_root: bytes, root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """Whether `proof` shows the tree of `size` with `root` extends the one of `old_size` with `old_root`
    (2.1.4.2). The empty tree is a prefix of every tree, and a tree of its own: no proof for either."""
    if not 0 <= old_size <= size:
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT and (size > 0 or root == EMPTY_ROOT)
    if old_size == size:
        return not proof and old_root == root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # the old tree is a perfect subtree, which the proof leaves out
        path.insert(0, old_root)
    fn, sn = old_size - 1, size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            fn, sn = _climb(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == root and sn == 0
