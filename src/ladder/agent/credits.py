"""Receipts on a member's channels: signed for the channels it opens, checked on those opened to it.

A member pays for what members it reaches carry for it (an exit, a
publisher) by signing receipts (protocol/receipts.py) on its channel to
them: one each time an interval of nested bytes has arrived, and one when
the channel goes quiet. The far member checks each receipt against what it
wrote and read on that channel, lets the channel write on by the exit's
gate, and hands the receipt to its hub, which records it (hub/credits.py).
Nothing else is paid: a member never signs what it did not receive.

`LADDER_RECEIPTS=off` in the environment turns both sides off, for the
benchmark that measures what receipts cost (benchmarks/receipts.py); the
default is on, and a member whose receipts are off gets two intervals from
each member whose receipts are on.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.link.channel import Channel
from ladder.link.connection import Link
from ladder.protocol import control
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.receipts import (
    ExitGate,
    ReceiptChecker,
    ReceiptClock,
    ReceiptRefused,
    sign_receipt,
    verify_receipt,
)

log = logging.getLogger(__name__)
RECEIPT_TICK = 0.5  # seconds between looks for quiet channels to sign for


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
            log.info("%s: receipt refused: %s", channel.inner.label, exc)
            return
        gate.receipt(receipt)
        channel.allow(gate.allowance)
        if self.link is not None:
            self.link.send_control(control.Receipts((control.Envelope(**envelope),)))
