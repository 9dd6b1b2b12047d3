"""Receipts: what a payer signs holds only as signed, a checker credits each byte once and no more than it
relayed, and the pacing (the payer's clock, the exit's gate) keeps what an exit risks to two intervals."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.protocol import envelope
from ladder.protocol.envelope import b64, unb64
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.ledger import sign_checkpoint
from ladder.protocol.receipts import (
    RECEIPT_QUIET,
    ExitGate,
    Receipt,
    ReceiptChecker,
    ReceiptClock,
    ReceiptRefused,
    channel_id,
    interval,
    sign_receipt,
    verify_receipt,
)

ALICE = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"ladder test alice").digest())
MALLORY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"ladder test mallory").digest())
ALICE_ID = member_id(public_bytes(ALICE))
EXIT = "exitmemberid"
CHANNEL = "ab" * 32
CONTEXT = b"ladder receipt v1\x00"  # on the wire: pinned here, not imported
MiB = 1024 * 1024
FIELDS: dict[str, Any] = {"exit": EXIT, "hub": "home", "channel": CHANNEL, "received": 1000, "sent": 200,
                          "frames": 1500, "seq": 1, "time": 1_700_000_000}


def signed(key: Ed25519PrivateKey = ALICE, **changes: Any) -> dict[str, str]:
    return sign_receipt(key, **{**FIELDS, **changes})


def receipt(**changes: Any) -> Receipt:
    return verify_receipt(signed(**changes))


def with_byte_flipped(text: str) -> str:
    data = bytearray(unb64(text))
    data[0] ^= 1
    return b64(bytes(data))


# ------------------------------------------------------------------ signing


def test_a_receipt_verifies_as_its_payer_signed_it():
    env = signed()
    r = verify_receipt(env)
    assert r == Receipt(ALICE_ID, EXIT, "home", CHANNEL, 1000, 200, 1500, 1, 1_700_000_000, env)
    assert r.carried == 1200
    assert set(env) == {"record", "signature", "pubkey"}


def test_a_channel_is_named_by_the_openers_ephemeral_key():
    message1 = bytes(range(32)) + b"payload"
    assert channel_id(message1) == bytes(range(32)).hex()
    with pytest.raises(ValueError):
        channel_id(bytes(31))


def _malformed(**fields: Any) -> dict[str, str]:
    """A receipt its payer signed, whatever its fields."""
    return {**envelope.sign(CONTEXT, fields, ALICE), "pubkey": b64(public_bytes(ALICE))}


@pytest.mark.parametrize(("entry", "why"), [
    ({**signed(), "pubkey": b64(public_bytes(MALLORY))}, "names another member"),
    ({**signed(), "signature": with_byte_flipped(signed()["signature"])}, "signature does not verify"),
    ({**signed(), "record": b64(unb64(signed()["record"]).replace(b'"received":1000', b'"received":9000'))},
     "signature does not verify"),
    ({**signed(MALLORY), "record": signed()["record"]}, "names another member"),
    ({k: v for k, v in signed().items() if k != "signature"}, "malformed"),
    (sign_checkpoint(ALICE, 1, bytes(32), 1), "signature does not verify"),  # another kind of record
    (_malformed(**{k: v for k, v in FIELDS.items() if k != "sent"}), "no 'sent'"),
    (_malformed(**{**FIELDS, "received": -1}), "counters"),
    (_malformed(**{**FIELDS, "sent": True}), "counters"),
    (_malformed(**{**FIELDS, "frames": 1.5}), "counters"),
    (_malformed(**{**FIELDS, "time": 2**62}), "counters"),
    (_malformed(**{**FIELDS, "seq": 0}), "seq starts at 1"),
    (_malformed(**{**FIELDS, "exit": ""}), "names"),
    (_malformed(**{**FIELDS, "hub": "h" * 256}), "names"),
    (_malformed(**{**FIELDS, "channel": 7}), "names"),
], ids=["other key", "flipped signature", "raised count", "another's record", "no signature",
        "a checkpoint", "no sent", "negative", "bool", "float", "huge", "seq 0", "empty exit", "long hub",
        "channel not text"])
def test_a_forged_or_malformed_receipt_is_refused(entry: dict[str, str], why: str):
    with pytest.raises(ReceiptRefused, match=why):
        verify_receipt(entry)


# ------------------------------------------------------------------ the checker


def checker() -> ReceiptChecker:
    return ReceiptChecker(ALICE_ID, EXIT, CHANNEL)


def test_the_checker_credits_each_receipts_growth():
    c = checker()
    assert c.check(receipt(), 2000, 300) == 1200
    assert c.check(receipt(received=5000, sent=250, frames=6000, seq=2), 7000, 400) == 4050
    assert c.check(receipt(received=5000, sent=250, frames=6100, seq=3), 7000, 400) == 0  # pings only


@pytest.mark.parametrize(("changes", "why"), [
    ({}, "replayed or out of order"),  # receipt 2 again
    ({"seq": 1, "received": 3000, "frames": 4000}, "replayed or out of order"),  # reordered
    ({"seq": 3, "received": 1999}, "went down"),
    ({"seq": 3, "sent": 299}, "went down"),
    ({"seq": 3, "frames": 2999}, "went down"),
    ({"seq": 3, "frames": 9001}, "more than was relayed"),
    ({"seq": 3, "sent": 901}, "more than was relayed"),
    ({"seq": 3, "received": 5000, "frames": 4000}, "more than was relayed"),
    ({"seq": 3, "channel": "cd" * 32}, "another exit or channel"),
    ({"seq": 3, "exit": "anotherexit"}, "another exit or channel"),
], ids=["replayed", "reordered", "received down", "sent down", "frames down", "more frames than relayed",
        "more sent than relayed", "more received than frames", "other channel", "other exit"])
def test_the_checker_refuses_what_does_not_follow(changes: dict[str, Any], why: str):
    c = checker()
    second = {"received": 2000, "sent": 300, "frames": 3000, "seq": 2}
    c.check(receipt(), 2000, 300)
    c.check(receipt(**second), 3000, 300)
    with pytest.raises(ReceiptRefused, match=why):
        c.check(receipt(**{**second, **changes}), 9000, 900)
    # A refused receipt moves nothing: the next sound one credits its growth since receipt 2.
    assert c.check(receipt(received=2500, sent=300, frames=3600, seq=3), 9000, 900) == 500


def test_the_checker_refuses_a_receipt_of_another_payer():
    with pytest.raises(ReceiptRefused, match="another member than the channel's opener"):
        checker().check(verify_receipt(signed(MALLORY)), 2000, 300)


# ------------------------------------------------------------------ pacing


def test_the_interval_doubles_from_one_mib_to_sixteen():
    assert [interval(seq) for seq in range(8)] == [1 * MiB, 2 * MiB, 4 * MiB, 8 * MiB, 16 * MiB, 16 * MiB,
                                                   16 * MiB, 16 * MiB]


def test_a_busy_channel_gets_a_receipt_at_each_interval():
    clock, covered, now, frames = ReceiptClock(), [], 0.0, 0
    for _ in range(2000):  # 64 KiB a look, 10 ms apart: never quiet
        frames, now = frames + 64 * 1024, now + 0.01
        received = frames - frames // 10
        if clock.due(received, 100, frames, now):
            assert clock.take(received, 100, frames) == len(covered) + 1
            covered.append(frames)
    gaps = [b - a for a, b in zip([0, *covered], covered, strict=False)]
    assert gaps[:7] == [1 * MiB, 2 * MiB, 4 * MiB, 8 * MiB, 16 * MiB, 16 * MiB, 16 * MiB]


def test_a_quiet_channel_gets_one_receipt_for_its_rest():
    clock = ReceiptClock()
    assert not clock.due(0, 0, 0, 0.0)  # nothing yet
    assert not clock.due(500, 20, 600, 10.0)  # less than an interval: wait for quiet
    assert not clock.due(500, 20, 600, 10.0 + RECEIPT_QUIET - 0.01)
    assert not clock.due(700, 20, 800, 10.5)  # it moved: quiet counts from now
    assert not clock.due(700, 20, 800, 10.5 + RECEIPT_QUIET - 0.01)
    assert clock.due(700, 20, 800, 10.5 + RECEIPT_QUIET)
    assert clock.take(700, 20, 800) == 1
    assert not clock.due(700, 20, 800, 100.0)  # covered: no second receipt for the same bytes
    assert not clock.due(700, 20, 900, 200.0)  # pings only since: wait, then one receipt
    assert clock.due(700, 20, 900, 200.0 + RECEIPT_QUIET)


def test_the_exit_goes_on_two_intervals_past_the_last_receipt():
    gate = ExitGate()
    assert gate.allowance == 2 * MiB
    gate.receipt(receipt(received=MiB, frames=MiB, seq=1))
    assert gate.allowance == MiB + 2 * 2 * MiB
    gate.receipt(receipt(received=20 * MiB, frames=40 * MiB, seq=5))
    assert gate.allowance == 40 * MiB + 2 * 16 * MiB
    gate.receipt(receipt(received=MiB, frames=2 * MiB, seq=2))  # a late one moves nothing back
    assert gate.allowance == 40 * MiB + 2 * 16 * MiB
