"""The hub's ledger: entries that move credits, in an append-only Merkle log with signed checkpoints.

Each entry records one receipt's growth (protocol/receipts.py) moving
credits from a payer to an exit's owner:

    index, time, kind, payer, payee, amount, carried, channel, seq, receipt

`kind` is "transfer" when both are members of this hub, "debit" when the
payee is another hub's member (the payer's hub writes it), "credit" when the
payer is (the exit's hub writes it, once the payer's hub has debited).
Another hub's member is the account "<member id>@<hub id>". `carried` is
what the receipt's growth says the exit carried; `amount` is what moved,
less when the payer was past its credit limit. The receipt, signed by the
payer, is the evidence.

The log has the shape of RFC 9162 (Certificate Transparency v2) section
2.1: the leaf of an entry is SHA-256(0x00 · canonical JSON of the entry),
the tree and its proofs are merkle.py's. The hub signs checkpoints (size,
root, time) with its own key; a member keeps the last it verified and asks
for a consistency proof from it, so a hub that rewrites or forks its log
is caught.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import envelope
from .envelope import b64
from .identity import public_bytes

_CHECKPOINT_CONTEXT = b"ladder checkpoint v1\x00"
KINDS = ("transfer", "debit", "credit")


@dataclass(frozen=True)
class Entry:
    index: int
    time: int
    kind: str
    payer: str
    payee: str
    amount: int
    carried: int
    channel: str
    seq: int
    receipt: dict[str, str]  # the payer's signed receipt: record, signature, pubkey

    def data(self) -> bytes:
        """The entry's leaf data: canonical JSON (sorted keys, no spaces, ASCII)."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_data(cls, data: bytes) -> Entry:
        """The entry of leaf data; ValueError if it is not one."""
        fields = json.loads(data)
        if not isinstance(fields, dict):
            raise ValueError("an entry is a JSON object")
        return cls(**fields)


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 2.1.1: the hash of a leaf."""
    return hashlib.sha256(b"\x00" + data).digest()


@dataclass(frozen=True)
class Checkpoint:
    hub: str  # the signing hub's id
    size: int
    root: bytes
    time: int
    pubkey: bytes
    envelope: dict[str, str]


def sign_checkpoint(key: Ed25519PrivateKey, size: int, root: bytes, time: int) -> dict[str, str]:
    """A checkpoint's envelope, signed by the hub's key."""
    fields = {"size": size, "root": root.hex(), "time": time}
    return {**envelope.sign(_CHECKPOINT_CONTEXT, fields, key), "pubkey": b64(public_bytes(key))}


def verify_checkpoint(entry: dict[str, Any]) -> Checkpoint:
    """The checkpoint in an envelope; envelope.RecordError unless the key in it signed it."""
    signed = {**entry, "id": envelope.signer(entry)}
    fields, pubkey = envelope.verify(_CHECKPOINT_CONTEXT, signed, "checkpoint")
    try:
        size, root, time = fields["size"], bytes.fromhex(fields["root"]), fields["time"]
    except (KeyError, TypeError, ValueError) as exc:
        raise envelope.RecordError(f"malformed checkpoint ({exc})") from None
    if type(size) is not int or size < 0 or type(time) is not int or len(root) != 32:
        raise envelope.RecordError("malformed checkpoint (size, root or time)")
    return Checkpoint(fields["id"], size, root, time, pubkey,
                      {k: entry[k] for k in ("record", "signature", "pubkey")})


# TEMP stub: the merkle branch writes the real check_entries (and Problem); drop this commit at merge.
@dataclass(frozen=True)
class Problem:
    index: int | None
    reason: str

    def __str__(self) -> str:
        return self.reason if self.index is None else f"entry {self.index}: {self.reason}"


def check_entries(entries: Iterable[tuple[int, bytes, bytes]], checkpoints: Iterable[Checkpoint],
                  hub_pubkey: bytes | None) -> Problem | None:
    for expected, (index, data, leaf) in enumerate(entries):
        if index != expected:
            return Problem(expected, "is missing")
        if leaf != leaf_hash(data):
            return Problem(index, "its leaf hash does not match its data")
    return None
