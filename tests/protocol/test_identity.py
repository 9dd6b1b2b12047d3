"""Member identity: ids derived from keys (pinned: hub databases store them), keys of small order refused."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from ladder.protocol.identity import is_weak_key, member_id, public_bytes

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def test_member_id_is_stable_and_24_lowercase_base32_chars():
    mid = member_id(public_bytes(KEY))
    assert mid == member_id(public_bytes(KEY))
    assert len(mid) == 24
    assert set(mid) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert base64.b32decode(mid.upper())  # decodes: no padding needed for 15 bytes


def test_member_id_is_pinned():
    # Ids are stored in hub databases: changing the derivation orphans every member.
    # sha256("ladder member id\0" + key)[:15] in lowercase base32.
    assert member_id(bytes(32)) == "mw7kjmxzdqc3kon7bqnsnsih"
    assert member_id(public_bytes(KEY)) != member_id(public_bytes(OTHER_KEY))


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_member_ids_differ_per_key(a, b):
    assert len(member_id(a)) == 24
    assert (member_id(a) == member_id(b)) == (a == b)


def test_many_fresh_keys_have_distinct_ids():
    ids = {member_id(public_bytes(Ed25519PrivateKey.generate())) for _ in range(200)}
    assert len(ids) == 200


_HIGH = b"\xff" * 30 + b"\x7f"  # p = 2^255 - 19, little-endian, is b"\xed" + _HIGH


@pytest.mark.parametrize("pubkey", [bytes(32), b"\x01" + bytes(31), b"\xec" + _HIGH, b"\xed" + _HIGH,
                                    b"\xee" + _HIGH, bytes(31)],
                         ids=["zero", "identity", "p-1 (order 2)", "p (non-canonical 0)",
                              "p+1 (non-canonical 1)", "short"])
def test_keys_of_small_order_are_weak_whatever_their_sign_bit(pubkey):
    assert is_weak_key(pubkey)
    if len(pubkey) == 32:
        assert is_weak_key(pubkey[:31] + bytes([pubkey[31] | 0x80]))


def test_real_keys_are_not_weak():
    assert not is_weak_key(public_bytes(KEY)) and not is_weak_key(public_bytes(OTHER_KEY))
