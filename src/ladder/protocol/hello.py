"""The first message inside TLS: a member proving its key, or joining with an invite.

A member speaks first, as a browser would. Its hello is one fixed-size
message whose first byte (0xA1 or 0xA2) can never start an HTTP request, so
the hub tells members from strangers by that byte without reading further.

    AUTH  0xA1 | member public key (32) | signature (64)
    JOIN  0xA2 | invite token (16) | member public key (32) | signature (64)

The Ed25519 signature covers a context string, the hub's key fingerprint and
the TLS channel binding (OpenSSL's tls-unique: the client's Finished
message, which is unique per connection under TLS 1.3 too, although RFC 9266
defines no tls-unique there; Python offers no tls-exporter), so a hello is
valid on exactly one TLS connection to exactly one hub: a replay on
another connection, or through a man in the middle, fails like a stranger's
bytes. No secret that could be replayed ever crosses the wire.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

AUTH = 0xA1
JOIN = 0xA2
TOKEN_SIZE = 16
SIZES = {AUTH: 1 + 32 + 64, JOIN: 1 + TOKEN_SIZE + 32 + 64}
_CONTEXT = {AUTH: b"ladder link auth v1\x00", JOIN: b"ladder link join v1\x00"}


@dataclass(frozen=True)
class Hello:
    kind: int
    pubkey: bytes
    token: bytes  # empty for AUTH
    signature: bytes


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def member_id(pubkey: bytes) -> str:
    """A member's stable id, derived from its public key (24 base32 chars)."""
    digest = hashlib.sha256(b"ladder member id\x00" + pubkey).digest()
    return base64.b32encode(digest[:15]).decode().lower()


def _signed(kind: int, hub_fingerprint: str, binding: bytes, token: bytes, pubkey: bytes) -> bytes:
    fp = hub_fingerprint.encode()
    return _CONTEXT[kind] + bytes([len(fp)]) + fp + bytes([len(binding)]) + binding + token + pubkey


def make_hello(
    key: Ed25519PrivateKey, hub_fingerprint: str, binding: bytes, token: bytes | None = None
) -> bytes:
    """AUTH when token is None, else JOIN with that invite token."""
    kind = AUTH if token is None else JOIN
    token = token or b""
    if kind == JOIN and len(token) != TOKEN_SIZE:
        raise ValueError(f"invite token must be {TOKEN_SIZE} bytes")
    pubkey = public_bytes(key)
    signature = key.sign(_signed(kind, hub_fingerprint, binding, token, pubkey))
    return bytes([kind]) + token + pubkey + signature


def hello_size(first_byte: int) -> int | None:
    """How long a hello starting with this byte is; None if it is no hello."""
    return SIZES.get(first_byte)


def parse_hello(data: bytes) -> Hello | None:
    """The hello in `data` (exactly one, whole), or None if it is not one."""
    if not data or SIZES.get(data[0]) != len(data):
        return None
    kind = data[0]
    token_size = TOKEN_SIZE if kind == JOIN else 0
    token = data[1 : 1 + token_size]
    pubkey = data[1 + token_size : 33 + token_size]
    return Hello(kind, pubkey, token, data[33 + token_size :])


def _y(hex_le: str) -> bytes:
    return bytes.fromhex(hex_le)


# Encodings of the Ed25519 points of small order (with the x sign bit cleared),
# including the non-canonical ones: such a key "verifies" forged signatures
# (the identity with S = 0 verifies anything), so no member may hold one.
_P = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
_SMALL_ORDER = frozenset({
    bytes(32),  # y = 0, order 4
    b"\x01" + bytes(31),  # the identity
    _y("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),  # order 8
    _y("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),  # order 8
    _y("ec" + _P[2:]),  # y = p - 1, order 2
    _y("ed" + _P[2:]),  # y = p, non-canonical 0
    _y("ee" + _P[2:]),  # y = p + 1, non-canonical 1
})


def is_weak_key(pubkey: bytes) -> bool:
    """True for a public key of small order, whatever its sign bit."""
    return len(pubkey) != 32 or pubkey[:31] + bytes([pubkey[31] & 0x7F]) in _SMALL_ORDER


def verify_hello(hello: Hello, hub_fingerprint: str, binding: bytes) -> bool:
    if is_weak_key(hello.pubkey) or is_weak_key(hello.signature[:32]):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(hello.pubkey).verify(
            hello.signature, _signed(hello.kind, hub_fingerprint, binding, hello.token, hello.pubkey)
        )
    except (InvalidSignature, ValueError):
        return False
    return True
