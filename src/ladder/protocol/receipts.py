"""Receipts: a payer's signed word of how much an exit carried for it, and the checks on it.

Credits move only on a receipt the payer signed (the user's agent, or the
hub for a device it serves). A receipt is cumulative, for one channel:

    payer, exit, hub (the payer's home hub), channel, received, sent,
    frames, seq, time

`channel` is the hex of the channel's first 32 bytes of Noise message 1 (the
opener's ephemeral key), which the payer, the exit and every hub on the
path see and nobody can choose for another channel. `received` and `sent`
count DATA payload of the channel's nested link, the bytes of connections
the payer opened; pings, padding and control messages the exit sends are in
no receipt, so they earn nothing. `frames` counts every nested byte the
payer got: it paces the exit (below) and is never credited.

Pacing (`ReceiptClock` on the payer's side, `ExitGate` on the exit's): the
payer signs a receipt each time `frames` has grown by the current interval
(1 MiB at first, doubling to RECEIPT_INTERVAL_MAX) and, once a channel goes
quiet, one more for what the last one did not cover. The exit stops sending
on a channel once it has written two intervals past the last receipt, and
resumes when the next arrives: a payer that signs nothing gets at most that
much for nothing.

`ReceiptChecker` is a hub's (or an exit's) memory of one channel: the next
receipt must name the same payer, exit and channel, a higher seq, counters
that never shrink and never exceed what the checker saw relayed. It returns
the growth to credit. Nothing here does I/O; time is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import envelope
from .envelope import RecordError, b64
from .identity import public_bytes

_CONTEXT = b"ladder receipt v1\x00"
RECEIPT_INTERVAL = 1024 * 1024  # nested bytes between the first receipts
RECEIPT_INTERVAL_MAX = 16 * 1024 * 1024  # the interval doubles up to this
RECEIPT_QUIET = 1.0  # seconds without traffic before a channel's last bytes get their receipt
CHANNEL_ID_BYTES = 32
_COUNTERS = ("received", "sent", "frames", "seq", "time")
_COUNTER_MAX = 2**62


class ReceiptRefused(RecordError):
    """A receipt that does not hold: forged, another channel's, replayed, reordered, shrinking, too large."""


def channel_id(message1: bytes) -> str:
    """The channel's id from its Noise message 1 (what every hub on the path sees in the OPEN)."""
    if len(message1) < CHANNEL_ID_BYTES:
        raise ValueError("a Noise message 1 is at least 32 bytes")
    return message1[:CHANNEL_ID_BYTES].hex()


def interval(seq: int) -> int:
    """How many nested bytes receipt `seq + 1` follows receipt `seq` by (receipt 0: the channel's start)."""
    return RECEIPT_INTERVAL << seq if seq < 4 else RECEIPT_INTERVAL_MAX


@dataclass(frozen=True)
class Receipt:
    payer: str
    exit: str
    hub: str
    channel: str
    received: int
    sent: int
    frames: int
    seq: int
    time: int
    envelope: dict[str, str]  # record, signature, pubkey: the evidence, as the payer signed it

    @property
    def carried(self) -> int:
        """What this receipt says was carried in all (the credited units)."""
        return self.received + self.sent


def sign_receipt(key: Ed25519PrivateKey, *, exit: str, hub: str, channel: str, received: int, sent: int,
                 frames: int, seq: int, time: int) -> dict[str, str]:
    """A receipt's envelope: record, signature and the payer's public key (base64)."""
    fields = {"exit": exit, "hub": hub, "channel": channel, "received": received, "sent": sent,
              "frames": frames, "seq": seq, "time": time}
    return {**envelope.sign(_CONTEXT, fields, key), "pubkey": b64(public_bytes(key))}


def verify_receipt(entry: dict[str, Any]) -> Receipt:
    """The receipt in an envelope; ReceiptRefused unless its payer signed it and its fields are sound."""
    try:
        fields, _ = envelope.verify(_CONTEXT, {**entry, "id": envelope.signer(entry)}, "receipt")
    except RecordError as exc:
        raise ReceiptRefused(str(exc)) from None
    try:
        counters = [fields[name] for name in _COUNTERS]
        texts = [fields[name] for name in ("exit", "hub", "channel")]
    except KeyError as exc:
        raise ReceiptRefused(f"malformed receipt (no {exc})") from None
    if not all(type(v) is int and 0 <= v < _COUNTER_MAX for v in counters):
        raise ReceiptRefused("malformed receipt (counters must be integers from 0)")
    if not all(isinstance(t, str) and len(t) <= 255 for t in texts) or not texts[0] or not texts[2]:
        raise ReceiptRefused("malformed receipt (exit and channel are names, hub one or empty)")
    received, sent, frames, seq, time = counters
    if seq < 1:
        raise ReceiptRefused("malformed receipt (seq starts at 1)")
    envelope_ = {k: entry[k] for k in ("record", "signature", "pubkey")}
    return Receipt(fields["id"], texts[0], texts[1], texts[2], received, sent, frames, seq, time, envelope_)


# ------------------------------------------------------------------ pacing


class ReceiptClock:
    """The payer's side of one channel: when a receipt is due, and its counters."""

    def __init__(self) -> None:
        self.seq = 0
        self.covered = (0, 0, 0)  # received, sent, frames of the last receipt
        self.changed_at = 0.0  # when the counters last moved
        self._last_seen = (0, 0, 0)  # the counters at the last look

    def due(self, received: int, sent: int, frames: int, now: float) -> bool:
        """Whether to sign now: an interval's worth of frames since the last, or a quiet channel's rest."""
        counters = (received, sent, frames)
        if counters == self.covered:
            return False
        if frames - self.covered[2] >= interval(self.seq):
            return True
        if self._last_seen != counters:
            self._last_seen, self.changed_at = counters, now
            return False
        return now - self.changed_at >= RECEIPT_QUIET

    def take(self, received: int, sent: int, frames: int) -> int:
        """The next receipt covers these counters: its seq."""
        self.seq += 1
        self.covered = self._last_seen = (received, sent, frames)
        return self.seq


class ExitGate:
    """The exit's side of one channel: how many nested bytes it may write before the next receipt."""

    def __init__(self) -> None:
        self.frames = 0  # covered by the last receipt
        self.seq = 0

    @property
    def allowance(self) -> int:
        """Nested bytes written in all up to which the exit goes on: two intervals past the last receipt."""
        return self.frames + 2 * interval(self.seq)

    def receipt(self, receipt: Receipt) -> None:
        """A receipt the exit checked (ReceiptChecker) moves the allowance on."""
        self.frames, self.seq = max(self.frames, receipt.frames), max(self.seq, receipt.seq)


class ReceiptChecker:
    """One channel as a hub (or the exit) saw it: the receipts it accepted, and what it relayed.

    `to_payer` and `from_payer` are the bytes relayed each way on the
    channel's stream (sealed, framing and all), which the payer's DATA
    counters can never exceed.
    """

    def __init__(self, payer: str, exit: str, channel: str):
        self.payer, self.exit, self.channel = payer, exit, channel
        self.seq = 0
        self.received = self.sent = self.frames = 0

    def check(self, receipt: Receipt, to_payer: int, from_payer: int) -> int:
        """The growth `receipt` credits (0 or more); ReceiptRefused if it does not hold. Accepting it
        moves the channel on."""
        if receipt.payer != self.payer:
            raise ReceiptRefused("the receipt is signed by another member than the channel's opener")
        if receipt.exit != self.exit or receipt.channel != self.channel:
            raise ReceiptRefused("the receipt is for another exit or channel")
        if receipt.seq <= self.seq:
            raise ReceiptRefused(f"receipt {receipt.seq} replayed or out of order (last was {self.seq})")
        if receipt.received < self.received or receipt.sent < self.sent or receipt.frames < self.frames:
            raise ReceiptRefused("the receipt's counters went down")
        if receipt.frames > to_payer or receipt.received > receipt.frames or receipt.sent > from_payer:
            raise ReceiptRefused(f"the receipt claims more than was relayed ({receipt.received} and "
                                 f"{receipt.sent} bytes; {to_payer} and {from_payer} relayed)")
        growth = receipt.carried - (self.received + self.sent)
        self.seq, self.frames = receipt.seq, receipt.frames
        self.received, self.sent = receipt.received, receipt.sent
        return growth
