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

Peer hubs watch each other's logs the same way: each keeps the newest
checkpoint of each peer's log that held, and `check_head` says whether the
next one the peer shows extends it. Two checkpoints of one hub that cannot
both be true (two roots for one size, or a log that shrank) are evidence
anyone can check with the hub's key alone.

`check_entries` is the whole log's audit in one pass, for the hub's own
check of its store and for anyone handed a copy: every row is there, in
order, hashes to its leaf and holds (its receipt verifies and names its
accounts; it credits only what its receipt grew by since the channel's last
one, so no byte is credited twice), and every checkpoint is the root of the
log at its size. It names the first thing that does not hold.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import envelope
from .envelope import b64
from .identity import public_bytes
from .merkle import MerkleTree, verify_consistency
from .receipts import Receipt, ReceiptRefused, verify_receipt

_CHECKPOINT_CONTEXT = b"ladder checkpoint v1\x00"
KINDS = ("transfer", "debit", "credit")
TIME_SLACK = 60  # seconds an entry's time may lie before an earlier one's (a hub's clock stepped back)
_INTEGERS = ("index", "time", "amount", "carried", "seq")
_TEXTS = ("kind", "payer", "payee", "channel")
# Which side of each kind is another hub's member ("<member id>@<hub id>"): payer, payee, and why.
_REMOTE = {
    "transfer": (False, False, "a transfer is between two members of this hub"),
    "debit": (False, True, "a debit is paid by a member of this hub to another hub's (id@hub)"),
    "credit": (True, False, "a credit is paid by another hub's member (id@hub) to one of this hub"),
}


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
        """The entry of leaf data; ValueError unless it is a JSON object of exactly its fields, well typed."""
        try:
            values = json.loads(data)
        except RecursionError:
            raise ValueError("nested too deep") from None
        if not isinstance(values, dict):
            raise ValueError("an entry is a JSON object")
        names = {field.name for field in fields(cls)}
        if values.keys() != names:
            missing, extra = sorted(names - values.keys()), sorted(values.keys() - names)
            raise ValueError(f"an entry's fields are {sorted(names)}: missing {missing}, extra {extra}")
        if not all(type(values[name]) is int for name in _INTEGERS):
            raise ValueError(f"{', '.join(_INTEGERS)} are integers")
        if not all(isinstance(values[name], str) for name in _TEXTS):
            raise ValueError(f"{', '.join(_TEXTS)} are strings")
        receipt = values["receipt"]
        if not isinstance(receipt, dict) or not all(isinstance(v, str) for v in receipt.values()):
            raise ValueError("the receipt is an envelope of strings")
        return cls(**values)


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


STALE = "stale"  # check_head: the proof is from another size than the one held; ask again


def check_head(held: Checkpoint | None, head: Checkpoint, since: int, proof: Sequence[bytes]) -> str | None:
    """Whether a hub's new checkpoint `head` extends the one of its `held` (None: it does, or none is held):
    STALE when `proof` runs from a size `since` other than the held one's, else what cannot be true."""
    if held is None:
        return None
    if held.hub != head.hub:
        return "the checkpoints are of two different hubs"
    if head.size < held.size:
        return f"its log shrank from {held.size} entries to {head.size}"
    if head.size == held.size:
        return None if head.root == held.root else f"it signed two different logs of {head.size} entries"
    if since != held.size:
        return STALE
    if not verify_consistency(held.size, head.size, held.root, head.root, proof):
        return f"its log of {head.size} entries does not extend the one of {held.size} it signed before"
    return None


# ------------------------------------------------------------------ the audit


@dataclass(frozen=True)
class Problem:
    """The first thing in a log that does not hold: an entry's (its index) or a checkpoint's (None)."""

    index: int | None
    reason: str

    def __str__(self) -> str:
        return self.reason if self.index is None else f"entry {self.index}: {self.reason}"


class _Wrong(envelope.RecordError):
    """An entry that does not hold, and why (check_entries turns it into a Problem)."""


def check_entries(entries: Iterable[tuple[int, bytes, bytes]], checkpoints: Iterable[Checkpoint],
                  hub_pubkey: bytes | None) -> Problem | None:
    """The first problem of a log, or None if it holds.

    `entries` are the log's rows in order: (index, leaf data, leaf hash) as
    stored. `checkpoints` are the hub's signed checkpoints of it, signed by
    `hub_pubkey` if given. An entry's problem comes before any checkpoint's.
    """
    tree = MerkleTree()
    channels: dict[tuple[str, str], tuple[int, Receipt]] = {}  # (channel, kind): its last entry and receipt
    latest = 0
    for row, data, stored_hash in entries:
        if row != len(tree):
            after = f"after entry {len(tree) - 1}" if tree else "at the start"
            if row < len(tree):
                return Problem(row, f"out of order (it comes {after})")
            return Problem(len(tree), f"missing (entry {row} comes {after})")
        try:
            entry = _entry(row, data, stored_hash)
            if entry.time < latest - TIME_SLACK:
                raise _Wrong(f"its time {entry.time} is {latest - entry.time} s before an earlier entry's")
            receipt = _evidence(entry)
            _credit_once(channels, row, entry, receipt)
        except _Wrong as exc:
            return Problem(row, str(exc))
        tree.append(stored_hash)
        latest = max(latest, entry.time)
    return _checkpoint_problem(tree, checkpoints, hub_pubkey)


def _entry(row: int, data: bytes, stored_hash: bytes) -> Entry:
    """The entry a row stores, if its leaf hash, its index and its numbers hold."""
    if stored_hash != leaf_hash(data):
        raise _Wrong("its leaf hash does not match its data")
    try:
        entry = Entry.from_data(data)
    except ValueError as exc:
        raise _Wrong(f"its data is not an entry ({exc})") from None
    if entry.index != row:
        raise _Wrong(f"its data is entry {entry.index}'s")
    if entry.kind not in KINDS:
        raise _Wrong(f"it is of no known kind ({entry.kind!r})")
    if not 0 <= entry.amount <= entry.carried:
        raise _Wrong(f"it moves {entry.amount} credits for {entry.carried} bytes carried")
    return entry


def _evidence(entry: Entry) -> Receipt:
    """The entry's receipt, if it verifies and is the entry's: its channel, seq, payer and exit."""
    try:
        receipt = verify_receipt(entry.receipt)
    except ReceiptRefused as exc:
        raise _Wrong(f"its receipt does not verify ({exc})") from None
    if (receipt.channel, receipt.seq) != (entry.channel, entry.seq):
        raise _Wrong("its receipt is for another channel or seq")
    payer, _, payer_hub = entry.payer.partition("@")
    payee = entry.payee.partition("@")[0]
    remote_payer, remote_payee, shape = _REMOTE[entry.kind]
    if ("@" in entry.payer, "@" in entry.payee) != (remote_payer, remote_payee):
        raise _Wrong(f"{shape}, not {entry.payer} to {entry.payee}")
    if receipt.payer != payer or receipt.exit != payee:
        raise _Wrong(f"its receipt is {receipt.payer}'s for exit {receipt.exit}, not {payer}'s for {payee}")
    if remote_payer and payer_hub != receipt.hub:
        raise _Wrong(f"its payer is of hub {payer_hub}, its receipt's of {receipt.hub}")
    return receipt


def _credit_once(channels: dict[tuple[str, str], tuple[int, Receipt]], row: int, entry: Entry,
                 receipt: Receipt) -> None:
    """Check the entry credits exactly what its receipt grew by since the channel's last, and note it."""
    key = (entry.channel, entry.kind)
    if key in channels:
        last_row, last = channels[key]
        if receipt.seq <= last.seq:
            raise _Wrong(f"receipt {receipt.seq} replayed or out of order (entry {last_row} had {last.seq})")
        if (receipt.payer, receipt.exit) != (last.payer, last.exit):
            raise _Wrong(f"its channel is entry {last_row}'s, of another payer or exit")
        if receipt.received < last.received or receipt.sent < last.sent:
            raise _Wrong(f"its receipt's counters went down since entry {last_row}'s")
        growth = receipt.carried - last.carried
    else:
        growth = receipt.carried
    if entry.carried != growth:
        raise _Wrong(f"it says {entry.carried} bytes were carried, its receipt {growth}")
    channels[key] = (row, receipt)


def _checkpoint_problem(tree: MerkleTree, checkpoints: Iterable[Checkpoint],
                        hub_pubkey: bytes | None) -> Problem | None:
    """The first checkpoint, by size, that is not the hub's signed root of the log at its size."""
    for checkpoint in sorted(checkpoints, key=lambda c: c.size):
        what = f"checkpoint of size {checkpoint.size} (time {checkpoint.time})"
        try:
            signed = verify_checkpoint(checkpoint.envelope)
        except envelope.RecordError as exc:
            return Problem(None, f"{what} does not verify ({exc})")
        if signed != checkpoint:
            return Problem(None, f"{what} is not what its envelope says")
        if hub_pubkey is not None and checkpoint.pubkey != hub_pubkey:
            return Problem(None, f"{what} is signed by another key than the hub's")
        if checkpoint.size > len(tree):
            return Problem(None, f"{what} does not match the log: the log has {len(tree)} entries")
        if checkpoint.root != tree.root(checkpoint.size):
            return Problem(None, f"{what} does not match the log: its root is {checkpoint.root.hex()}, "
                                 f"the log's {tree.root(checkpoint.size).hex()}")
    return None
