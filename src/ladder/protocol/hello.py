"""The first message inside TLS: a member proving its key, or joining with an invite.

A member speaks first, as a browser would, and its hello reads as the start
of an HTTP request whose line has not ended: `GET /`, a kind letter, then
base64url (RFC 4648 §5, no padding) of the fields, and no space, CR or LF.

    AUTH  "GET /a" base64url(member public key (32) | signature (64))                       134 bytes
    JOIN  "GET /j" base64url(invite token (16) | member public key (32) | signature (64))  156 bytes
    COMMAND "GET /c" as AUTH, signed in its own context                                     134 bytes
    PEER  "GET /p" as AUTH, from a peer hub's key (hub to hub)                              134 bytes
    PEER_JOIN "GET /q" as JOIN, with a peer invite's token                                  156 bytes

A COMMAND link carries one request and its answer (control.py: a member
asking for a device), so that it never takes over the member's agent link. A peer hub keeps one
link to the hub it peers with (PEER, signed by the hub key that redeemed the
peer invite, PEER_JOIN): to a prober it is one more member's link.

nginx reads such a URI on until the line ends or its header timer fires, so
a prober who sends any prefix of a hello, of any length, sees the hub wait
exactly where nginx waits. A stranger's bytes part from the grammar at some
byte (a space, a dot, a line end, a byte no request line holds), and
`hello_size` says so at that byte: the hub hands them to the web face at
once, which answers what nginx answers to the same bytes. Only bytes of the
exact hello shape wait for the whole hello; the last character must be the
canonical one (JOIN's 112 bytes leave 4 unused bits), so one hello has one
spelling.

The Ed25519 signature covers a context string, the hub's key fingerprint and
the TLS channel binding (OpenSSL's tls-unique: the client's Finished
message, which is unique per connection under TLS 1.3 too, although RFC 9266
defines no tls-unique there; Python offers no tls-exporter), so a hello is
valid on exactly one TLS connection to exactly one hub: a replay on
another connection, or through a man in the middle, fails like a stranger's
bytes. No secret that could be replayed ever crosses the wire. The encoding
is not signed: a hello's fields decode to one value, and that is signed.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .identity import is_weak_key, public_bytes

AUTH = ord("a")  # a hello's kind is its letter after HEAD
JOIN = ord("j")
COMMAND = ord("c")
PEER = ord("p")
PEER_JOIN = ord("q")
TOKEN_SIZE = 16
HEAD = b"GET /"
_FIELDS = {AUTH: 32 + 64, JOIN: TOKEN_SIZE + 32 + 64, COMMAND: 32 + 64, PEER: 32 + 64,
           PEER_JOIN: TOKEN_SIZE + 32 + 64}  # bytes before encoding
SIZES = {kind: len(HEAD) + 1 + (4 * size + 2) // 3 for kind, size in _FIELDS.items()}
_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_CONTEXT = {AUTH: b"ladder link auth v1\x00", JOIN: b"ladder link join v1\x00",
            COMMAND: b"ladder link command v1\x00", PEER: b"ladder link peer v1\x00",
            PEER_JOIN: b"ladder link peer join v1\x00"}
_WITH_TOKEN = (JOIN, PEER_JOIN)


@dataclass(frozen=True)
class Hello:
    kind: int
    pubkey: bytes
    token: bytes  # empty for AUTH, COMMAND and PEER
    signature: bytes


def _signed(kind: int, hub_fingerprint: str, binding: bytes, token: bytes, pubkey: bytes) -> bytes:
    fp = hub_fingerprint.encode()
    return _CONTEXT[kind] + bytes([len(fp)]) + fp + bytes([len(binding)]) + binding + token + pubkey


def _encode(fields: bytes) -> bytes:
    return base64.urlsafe_b64encode(fields).rstrip(b"=")


def _decode(text: bytes) -> bytes | None:
    """The bytes `text` (base64url, a whole hello's length) spells, or None unless it is their
    one canonical spelling."""
    fields = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    return fields if _encode(fields) == text else None


def make_hello(
    key: Ed25519PrivateKey, hub_fingerprint: str, binding: bytes, token: bytes | None = None,
    command: bool = False, peer: bool = False,
) -> bytes:
    """AUTH when token is None, else JOIN with that invite token; COMMAND if `command`; PEER (PEER_JOIN
    with a token) if `peer`."""
    if command and (token is not None or peer):
        raise ValueError("a COMMAND hello carries no invite token")
    if peer:
        kind = PEER if token is None else PEER_JOIN
    else:
        kind = COMMAND if command else AUTH if token is None else JOIN
    token = token or b""
    if kind in _WITH_TOKEN and len(token) != TOKEN_SIZE:
        raise ValueError(f"invite token must be {TOKEN_SIZE} bytes")
    pubkey = public_bytes(key)
    signature = key.sign(_signed(kind, hub_fingerprint, binding, token, pubkey))
    return HEAD + bytes([kind]) + _encode(token + pubkey + signature)


def hello_size(data: bytes | bytearray) -> int | None:
    """How long the hello that `data` starts is, or None if `data` starts none.

    None as soon as one byte of `data` parts from the hello grammar (bytes
    past the hello's end are not looked at). Otherwise the hello's size
    as far as `data` tells it: more than len(data) while the hello is still
    coming (before its kind letter, one byte more than `data` has).
    """
    if not HEAD.startswith(data[: len(HEAD)]):
        return None
    if len(data) <= len(HEAD):
        return len(data) + 1
    size = SIZES.get(data[len(HEAD)])
    if size is None:
        return None
    text = bytes(data[len(HEAD) + 1 : size])
    if text.translate(None, _BASE64URL):  # a byte outside base64url's alphabet
        return None
    if len(text) == size - len(HEAD) - 1 and _decode(text) is None:
        return None
    return size


def parse_hello(data: bytes) -> Hello | None:
    """The hello in `data` (exactly one, whole), or None if it is not one."""
    size = hello_size(data)
    if size != len(data):
        return None
    kind = data[len(HEAD)]
    fields = _decode(bytes(data[len(HEAD) + 1 :]))
    assert fields is not None  # hello_size decoded the whole hello
    token_size = TOKEN_SIZE if kind in _WITH_TOKEN else 0
    token = fields[:token_size]
    pubkey = fields[token_size : token_size + 32]
    return Hello(kind, pubkey, token, fields[token_size + 32 :])


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
