"""What the ledger costs a hub: appends per second, building the Merkle tree, proofs, checkpoints.

    python3 benchmarks/ledger.py [--entries 20000] [--leaves 1000000]

Appends real entries (signed receipts) to a fresh SQLite store in a temporary
folder, as the hub does, one write transaction each; builds a tree of
`--leaves` leaf hashes and times roots, proofs and checkpoint signing.
Prints JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.protocol.ledger import sign_checkpoint
from ladder.protocol.merkle import MerkleTree, verify_consistency, verify_inclusion
from ladder.protocol.receipts import sign_receipt
from ladder.store.hubdb import HubStore


def appends(count: int) -> dict:
    payer, exit_, hub = (Ed25519PrivateKey.generate() for _ in range(3))
    receipts = [sign_receipt(payer, exit="x" * 24, hub="h" * 24, channel=f"{i:064x}", received=1 << 20,
                             sent=500, frames=1 << 20, seq=1, time=1_800_000_000) for i in range(count)]
    with tempfile.TemporaryDirectory() as folder:
        store = HubStore(Path(folder))
        started = time.perf_counter()
        for i, receipt in enumerate(receipts):
            store.ledger_append("hub", "transfer", "payer", "exit", (1 << 20) + 500, f"{i:064x}", 1, receipt,
                                1_800_000_000, 2_000_000_000)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        tree = MerkleTree(store.ledger_leaves("hub"))
        rebuild = time.perf_counter() - started
    return {"entries": count, "append_us": round(seconds / count * 1e6, 1),
            "appends_per_s": round(count / seconds), "tree_from_store_s": round(rebuild, 3),
            "root_matches": len(tree) == count}


def tree(leaves: int) -> dict:
    hashes = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(leaves)]
    started = time.perf_counter()
    built = MerkleTree(hashes)
    build = time.perf_counter() - started
    root = built.root()
    started = time.perf_counter()
    proofs = [built.inclusion_proof(i) for i in range(0, leaves, leaves // 1000)]
    inclusion = (time.perf_counter() - started) / len(proofs)
    assert all(verify_inclusion(hashes[i * (leaves // 1000)], i * (leaves // 1000), leaves, p, root)
               for i, p in enumerate(proofs))
    old = leaves // 3
    consistency = built.consistency_proof(old)
    assert verify_consistency(old, leaves, built.root(old), root, consistency)
    key = Ed25519PrivateKey.generate()
    started = time.perf_counter()
    for _ in range(100):
        sign_checkpoint(key, leaves, root, 1_800_000_000)
    return {"leaves": leaves, "build_s": round(build, 2), "inclusion_proof_us": round(inclusion * 1e6, 1),
            "inclusion_proof_hashes": len(proofs[0]), "consistency_proof_hashes": len(consistency),
            "checkpoint_sign_us": round((time.perf_counter() - started) / 100 * 1e6, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.entries < 1 or args.leaves < 1000:
        parser.error("--entries ≥ 1, --leaves ≥ 1000")
    print(json.dumps({"appends": appends(args.entries), "tree": tree(args.leaves)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
