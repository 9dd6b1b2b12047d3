"""RFC 9162 2.1.1's Merkle Tree Hash, straight from its recursive definition, for tests that need the root
of a ledger without trusting the code under test."""

import hashlib


def mth(leaves: list[bytes]) -> bytes:
    """The root over these leaf hashes: split at the largest power of two below n (the empty tree: SHA-256
    of nothing)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << (len(leaves) - 1).bit_length() - 1
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()
