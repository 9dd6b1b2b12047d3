"""Receipts on a member's channels: signed for the channels it opens, checked on those opened to it.

A member pays for what members it reaches carry for it (an exit, a
publisher) by signing receipts (protocol/receipts.py) on its channel to
them: one each time an interval of nested bytes has arrived, and one when
the channel goes quiet. The far member checks each receipt against what it
wrote and read on that channel, lets the channel write on by the exit's
gate, and hands the receipt to its hub, which records it (hub/credits.py).
Nothing else is paid: a member never signs what it did not receive.

`LADDER_RECEIPTS=off` in the environment turns both sides off, for the
benchmark that measures what receipts cost (docs/PERFORMANCE.md); the
default is on, and a member whose receipts are off gets two intervals from
each member whose receipts are on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.config import MemberConfig, write_file
from ladder.link.channel import Channel
from ladder.link.connection import Link
from ladder.protocol import control
from ladder.protocol.envelope import RecordError, b64
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.ledger import Checkpoint, Entry, leaf_hash, verify_checkpoint
from ladder.protocol.merkle import verify_consistency, verify_inclusion
from ladder.protocol.receipts import (
    ExitGate,
    ReceiptChecker,
    ReceiptClock,
    ReceiptRefused,
    sign_receipt,
    verify_receipt,
)

from .command import RequestFailed, ask

log = logging.getLogger(__name__)
RECEIPT_TICK = 0.5  # seconds between looks for quiet channels to sign for
REFUSALS_LOGGED = 5  # refusals from one source logged one line each, in each REFUSALS_SUMMED
REFUSALS_SUMMED = 60.0  # seconds: past the first few, a source's refusals are one line per this


class RefusalLog:
    """What is refused, logged so that a flood cannot fill the disk.

    A source's first `first` refusals in each `every` seconds get a line each,
    the last of them saying the rest will be summed; the rest get one line at
    the end of those seconds (`flush`, from a tick), with how many there were
    and the last reason. So one source writes at most first + 1 lines per
    `every` seconds, however fast it sends. Counting stays the caller's: this
    decides only what is written, never what is counted.
    """

    def __init__(self, logger: logging.Logger, what: str, clock: Callable[[], float],
                 first: int = REFUSALS_LOGGED, every: float = REFUSALS_SUMMED):
        """`what` names a refused thing in a line ("receipt", "checkpoint")."""
        self.log, self.what, self.clock, self.first, self.every = logger, what, clock, first, every
        self._windows: dict[str, list[Any]] = {}  # source → [start, refusals in the window, last reason]

    def refused(self, source: str, reason: object) -> None:
        now = self.clock()
        window = self._windows.get(source)
        if window is not None and now - window[0] >= self.every:
            self._close(source, window)
            window = None
        if window is None:
            window = self._windows[source] = [now, 0, ""]
        window[1] += 1
        window[2] = str(reason)
        if window[1] < self.first:
            self.log.info("%s from %s refused: %s", self.what, source, reason)
        elif window[1] == self.first:
            self.log.info("%s from %s refused: %s (any more in the next %.0f s are summed up in one line)",
                          self.what, source, reason, self.every - (now - window[0]))

    def flush(self) -> None:
        """Every second or so: one line for each source whose window ended with refusals not logged."""
        now = self.clock()
        for source, window in list(self._windows.items()):
            if now - window[0] >= self.every:
                self._close(source, window)

    def _close(self, source: str, window: list[Any]) -> None:
        del self._windows[source]
        start, count, last = window
        if count > self.first:
            self.log.info("%d more %ss from %s refused in %.0f s (the last: %s)", count - self.first,
                          self.what, source, self.clock() - start, last)


def receipts_on() -> bool:
    return os.environ.get("LADDER_RECEIPTS", "on") != "off"


class Receipts:
    """One member's receipts: the clocks of the channels it opened, the gates of those opened to it."""

    def __init__(self, key: Ed25519PrivateKey, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, enabled: bool | None = None):
        """`clock` (monotonic seconds) finds quiet channels; `wall` dates receipts."""
        self.key = key
        self.id = member_id(public_bytes(key))
        self.clock, self.wall = clock, wall
        self.enabled = receipts_on() if enabled is None else enabled
        self.hub_id = ""  # the member's hub, which every receipt names (from its welcome)
        self.link: Link | None = None  # the hub link, where checked receipts go
        self._clocks: dict[Channel, ReceiptClock] = {}
        self._gates: dict[Channel, tuple[ReceiptChecker, ExitGate]] = {}
        self.refused = 0  # receipts that did not hold
        self._refusals = RefusalLog(log, "receipt", clock)

    # ------------------------------------------------ channels we opened

    def opened(self, channel: Channel) -> None:
        """A channel this member opened: it signs receipts for what arrives in it."""
        if self.enabled:
            self._clocks[channel] = ReceiptClock()
            channel.on_received = self._arrived

    def _arrived(self, channel: Channel) -> None:
        self._sign_if_due(channel, self._clocks.get(channel))

    def tick(self) -> None:
        """Every half second or so: the receipts of channels that went quiet; forget closed channels."""
        for channel, clock in list(self._clocks.items()):
            if channel.closed:
                del self._clocks[channel]
            else:
                self._sign_if_due(channel, clock)
        for channel in [c for c in self._gates if c.closed]:
            del self._gates[channel]
        self._refusals.flush()

    def _sign_if_due(self, channel: Channel, clock: ReceiptClock | None) -> None:
        mux = channel.inner.mux
        counters = mux.data_received, mux.data_sent, channel.frames_in
        if clock is None or not channel.id or not clock.due(*counters, self.clock()):
            return
        seq = clock.take(*counters)
        envelope = sign_receipt(self.key, exit=channel.peer, hub=self.hub_id, channel=channel.id,
                                received=counters[0], sent=counters[1], frames=counters[2], seq=seq,
                                time=int(self.wall()))
        channel.inner.send_control(control.Receipt(**envelope))

    # --------------------------------------------- channels opened to us

    def answered(self, channel: Channel, payer: str) -> None:
        """A channel another member opened to us: it writes two intervals ahead of its receipts."""
        if self.enabled:
            gate = ExitGate()
            self._gates[channel] = (ReceiptChecker(payer, self.id, channel.id), gate)
            channel.allowance = gate.allowance

    def receipt(self, channel: Channel, message: control.Receipt) -> None:
        """A receipt from the payer of `channel`: checked, the channel let on, the hub told."""
        pair = self._gates.get(channel)
        if pair is None:
            return
        checker, gate = pair
        envelope = {"record": message.record, "signature": message.signature, "pubkey": message.pubkey}
        try:
            receipt = verify_receipt(envelope)
            checker.check(receipt, channel.frames_out, channel.frames_in)
        except ReceiptRefused as exc:
            self.refused += 1
            self._refusals.refused(channel.inner.label, exc)
            return
        gate.receipt(receipt)
        channel.allow(gate.allowance)
        if self.link is not None:
            self.link.send_control(control.Receipts((control.Envelope(**envelope),)))


# ------------------------------------------------------ a member's view


class LedgerMismatch(RequestFailed):
    """The hub's ledger does not hold for this member: a proof fails, or the log was rewritten."""


CREDITS_PAGES_MAX = 1000  # pages of entries read at most (16 entries each)


async def credits_of(config: MemberConfig, verify: bool = False) -> dict[str, Any]:
    """This member's account at its hub; with `verify`, its entries checked against the signed log.

    Verifying checks the checkpoint's signature and that its key is the one
    seen first (kept in ledger.json), that the log only grew since the
    checkpoint seen last (a consistency proof), and that each of this
    member's entries is in it (an inclusion proof) and carries a receipt
    signed by its payer. The checkpoint then becomes the one seen last.
    Either way all of its entries are read (16 to a page), for the
    newest (`recent`) and the totals per exit or member dealt with (`involved`).
    """
    saved = _load_seen(config.ledger_path)
    since = saved["size"] if verify and saved else 0
    answer = await _ask_credits(config, control.CreditsRequest(since=since))
    try:
        checkpoint = verify_checkpoint({"record": answer.checkpoint.record,
                                        "signature": answer.checkpoint.signature,
                                        "pubkey": answer.checkpoint.pubkey})
    except RecordError as exc:
        raise LedgerMismatch(f"the hub's checkpoint does not verify: {exc}") from None
    report: dict[str, Any] = {
        "balance": answer.balance, "earned": answer.earned, "spent": answer.spent,
        "month_earned": answer.month_earned, "month_spent": answer.month_spent, "limit": answer.limit,
        "entries": answer.total, "log_size": checkpoint.size, "checkpoint_time": checkpoint.time}
    items = await _all_entries(config, answer, checkpoint.size)
    if not verify:
        entries = [_read(item) for item in items]
    else:
        if saved:
            if b64(checkpoint.pubkey) != saved["key"]:
                raise LedgerMismatch("the hub signs its checkpoints with another key than the one seen first")
            old_root = bytes.fromhex(saved["root"])
            if checkpoint.size < saved["size"] or not verify_consistency(
                    saved["size"], checkpoint.size, old_root, checkpoint.root,
                    [bytes.fromhex(h) for h in answer.consistency]):
                raise LedgerMismatch(f"the hub's log of {checkpoint.size} entries is not an extension of the "
                                     f"{saved['size']} it showed before: it rewrote or forked its history")
        entries = [_checked(item, checkpoint, config.id) for item in items]
        if len(entries) < answer.total:
            raise LedgerMismatch(f"the hub showed {len(entries)} of this member's {answer.total} entries")
        _save_seen(config.ledger_path, checkpoint)
        report["verified"] = len(entries)
    report["recent"] = _entries(entries[-PAGE_SHOWN:], config.id)
    report["involved"] = _involved(entries, config.id)
    return report


async def _all_entries(config: MemberConfig, first: control.Credits, size: int) -> list[control.LedgerItem]:
    """This member's entries in the log of `size` entries, oldest first: the first answer's page and the
    pages after it (CREDITS_PAGES_MAX at most)."""
    items = list(first.entries)
    for _ in range(CREDITS_PAGES_MAX):
        if len(items) >= first.total:
            break
        page = await _ask_credits(config, control.CreditsRequest(at=size, start=len(items)))
        if not page.entries:
            break
        items.extend(page.entries)
    return items


PAGE_SHOWN = 16


def _read(item: control.LedgerItem) -> Entry:
    try:
        return Entry.from_data(item.data.encode())
    except (ValueError, TypeError) as exc:
        raise LedgerMismatch(f"entry {item.index} does not hold: {exc}") from None


def _checked(item: control.LedgerItem, checkpoint: Checkpoint, me: str) -> Entry:
    data = item.data.encode()
    try:
        entry = Entry.from_data(data)
        receipt = verify_receipt(entry.receipt)
    except (ValueError, TypeError, ReceiptRefused) as exc:
        raise LedgerMismatch(f"entry {item.index} does not hold: {exc}") from None
    if entry.index != item.index or not verify_inclusion(
            leaf_hash(data), item.index, checkpoint.size, [bytes.fromhex(h) for h in item.proof],
            checkpoint.root):
        raise LedgerMismatch(f"entry {item.index} is not in the log the hub signed")
    if me not in (entry.payer.partition("@")[0], entry.payee.partition("@")[0]):
        raise LedgerMismatch(f"entry {item.index} is not this member's")
    if entry.channel != receipt.channel or entry.seq != receipt.seq:
        raise LedgerMismatch(f"entry {item.index} does not match the receipt it carries")
    return entry


def _entries(entries: list[Entry], me: str) -> list[dict[str, Any]]:
    return [{"index": e.index, "time": e.time, "kind": e.kind,
             "amount": -e.amount if e.payer.partition("@")[0] == me else e.amount,
             "with": e.payee if e.payer.partition("@")[0] == me else e.payer, "carried": e.carried}
            for e in entries]


def _involved(entries: list[Entry], me: str) -> dict[str, dict[str, int]]:
    """Per exit or member dealt with: credits earned from it and spent on it."""
    involved: dict[str, dict[str, int]] = {}
    for e in entries:
        paid = e.payer.partition("@")[0] == me
        other = involved.setdefault(e.payee if paid else e.payer, {"earned": 0, "spent": 0})
        other["spent" if paid else "earned"] += e.amount
    return involved


async def _ask_credits(config: MemberConfig, request: control.CreditsRequest) -> control.Credits:
    answer = await ask(config, request)
    if not isinstance(answer, control.Credits):
        raise RequestFailed(f"the hub answered {type(answer).__name__} instead of credits "
                            "(a hub too old for credits?)")
    return answer


def _load_seen(path: Path) -> dict[str, Any] | None:
    try:
        saved = json.loads(path.read_text())
        if isinstance(saved, dict) and {"key", "size", "root"} <= saved.keys():
            return saved
    except (OSError, ValueError):
        pass
    return None


def _save_seen(path: Path, checkpoint: Checkpoint) -> None:
    write_file(path, json.dumps({"key": b64(checkpoint.pubkey), "size": checkpoint.size,
                                 "root": checkpoint.root.hex(), "time": checkpoint.time}).encode())
