"""Who a member is: its Ed25519 key, the id derived from it, and the keys no member may hold.

A member is an Ed25519 key pair; its name at a hub is a label on the key.
Its id is derived from the public key alone, so everyone who holds the key
(the hub at join time, a user checking a record the hub relays) derives the
same id, and nobody claims an id without the key. A key of small order
"verifies" forged signatures, so every check of a member's signature
(hello.py, records.py) refuses such keys first. The member's second key,
the X25519 key of its channels, is a Noise key (noise.py).
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32 bytes of a member key's public half: what ids derive from and hellos carry."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def member_id(pubkey: bytes) -> str:
    """A member's stable id, derived from its public key (24 base32 chars)."""
    digest = hashlib.sha256(b"ladder member id\x00" + pubkey).digest()
    return base64.b32encode(digest[:15]).decode().lower()


def _y(hex_le: str) -> bytes:
    return bytes.fromhex(hex_le)


# Encodings of the Ed25519 points of small order (with the x sign bit cleared),
# including the non-canonical ones: such a key "verifies" forged signatures
# (the identity with S = 0 verifies anything), so no member may hold one.
_P = "ff" * 30 + "7f"  # p = 2^255 - 19 little-endian is "ed" + _P
_SMALL_ORDER = frozenset({
    bytes(32),  # y = 0, order 4
    b"\x01" + bytes(31),  # the identity
    _y("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),  # order 8
    _y("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),  # order 8
    _y("ec" + _P),  # y = p - 1, order 2
    _y("ed" + _P),  # y = p, non-canonical 0
    _y("ee" + _P),  # y = p + 1, non-canonical 1
})


def is_weak_key(pubkey: bytes) -> bool:
    """True for a public key of small order, whatever its sign bit."""
    return len(pubkey) != 32 or pubkey[:31] + bytes([pubkey[31] & 0x7F]) in _SMALL_ORDER
