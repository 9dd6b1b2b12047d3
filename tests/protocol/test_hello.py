"""Hellos: the signed first message inside TLS. A hello must verify on exactly
one channel binding, for exactly one hub, with exactly the key it names, and
any single flipped bit must make it a stranger's bytes. Every prefix of a
hello is an unfinished HTTP request line (the hub waits, as nginx does), and
a stranger's bytes are told apart at their first byte outside the grammar."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from ladder.protocol.hello import (
    AUTH,
    COMMAND,
    HEAD,
    JOIN,
    SIZES,
    TOKEN_SIZE,
    Hello,
    hello_size,
    make_hello,
    parse_hello,
    verify_hello,
)
from ladder.protocol.identity import public_bytes

HUB = "sha256:2f6c1b5e7d0a9c4b3e8f1a6d5c7b9e0f2a4d6c8b1e3f5a7c9d0b2e4f6a8c1d3e"
BINDING = bytes(range(12))  # tls-unique is the 12-byte Finished verify_data in TLS 1.2
TOKEN = bytes(range(100, 116))
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))

KINDS = pytest.mark.parametrize("token", [None, TOKEN], ids=["auth", "join"])


def hello(token=None, key=KEY, hub=HUB, binding=BINDING) -> bytes:
    return make_hello(key, hub, binding, token)


def verifies(data: bytes, hub: str = HUB, binding: bytes = BINDING) -> bool:
    parsed = parse_hello(data)
    return parsed is not None and verify_hello(parsed, hub, binding)


# ------------------------------------------------------------------ layout


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def test_auth_layout():
    data = hello()
    assert len(data) == SIZES[AUTH] == 134
    assert data[:6] == b"GET /a"
    fields = base64.urlsafe_b64decode(data[6:])
    assert fields[:32] == public_bytes(KEY)
    assert parse_hello(data) == Hello(AUTH, public_bytes(KEY), b"", fields[32:])
    assert len(parse_hello(data).signature) == 64


def test_join_layout():
    data = hello(TOKEN)
    assert len(data) == SIZES[JOIN] == 156
    assert data[:6] == b"GET /j"
    fields = base64.urlsafe_b64decode(data[6:] + b"==")
    assert fields[:16] == TOKEN
    assert fields[16:48] == public_bytes(KEY)
    assert parse_hello(data) == Hello(JOIN, public_bytes(KEY), TOKEN, fields[48:])


# nginx's request line: a method, a space, then a URI of bytes that do not end it
# (no space, CR, LF, NUL or other control byte). A hello is that, unfinished.
UNFINISHED_REQUEST_LINE = re.compile(rb"[A-Z]*|[A-Z]+ /[A-Za-z0-9_-]*")


@KINDS
def test_a_hello_is_an_unfinished_request_line(token):
    assert UNFINISHED_REQUEST_LINE.fullmatch(hello(token))


@KINDS
def test_every_prefix_of_a_hello_waits(token):
    data = hello(token)
    for cut in range(len(data)):
        size = hello_size(data[:cut])
        assert size is not None and size > cut, f"the hello's first {cut} bytes are not waited on"
    assert hello_size(data) == len(data)
    assert hello_size(data + b" HTTP/1.1\r\n") == len(data)  # bytes past the hello are not its


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=16, max_size=16), st.binary(max_size=200))
def test_every_prefix_of_any_hello_waits(seed, token, binding):
    key = Ed25519PrivateKey.from_private_bytes(seed)
    for data in (hello(key=key, binding=binding), hello(token, key=key, binding=binding)):
        assert all(hello_size(data[:cut]) > cut for cut in range(len(data)))


@KINDS
@pytest.mark.parametrize("byte", [b" ", b"\r", b"\n", b".", b"/", b"%", b"?", b"=", b"+", b"\x00", b"\xa1"])
def test_a_byte_outside_the_grammar_is_no_hello_at_once(token, byte):
    data = hello(token)
    for cut in range(len(data)):
        if data[cut : cut + 1] != byte:  # the space and the slash of "GET /" are the grammar's
            assert hello_size(data[:cut] + byte) is None, f"{byte!r} after {cut} bytes of a hello"


def test_bytes_that_start_no_hello():
    for data in (b"P", b"GEt", b"GET  ", b"GET /b", b"GET /A", b"HEAD /", b"\x16\x03\x01", b"\xa1", b"\xa2"):
        assert hello_size(data) is None, data


@given(st.binary(min_size=1, max_size=200))
def test_arbitrary_bytes_are_told_at_their_first_byte_outside_the_grammar(data):
    # hello_size(data) is None exactly when some prefix of data is no hello's prefix,
    # and a verdict once given never changes with more bytes.
    size = hello_size(data)
    shorter = [hello_size(data[:cut]) for cut in range(1, len(data))]
    if None in shorter:
        assert size is None
    if size is not None:
        assert all(s <= size for s in shorter)


def test_a_join_with_a_second_spelling_of_its_last_bits_is_no_hello():
    # 112 bytes leave 4 bits of the last character unused: only zero bits spell the hello.
    data = hello(TOKEN)
    assert data[-1:] in b"AQgw"
    other = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = data[:-1] + bytes([other[other.index(data[-1]) + 1]])
    assert base64.urlsafe_b64decode(twin[6:] + b"==") == base64.urlsafe_b64decode(data[6:] + b"==")
    assert hello_size(twin) is None and parse_hello(twin) is None


def test_the_head_is_a_get_of_a_path():
    assert HEAD == b"GET /"
    assert bytes([AUTH]) == b"a" and bytes([JOIN]) == b"j"


@pytest.mark.parametrize("size", [0, 1, 31, 32, 64, 96, 98, 112, 114, 200])
def test_join_token_must_be_16_bytes(size):
    if size == TOKEN_SIZE:
        return
    with pytest.raises(ValueError):
        hello(bytes(size))


def test_empty_token_is_a_join_and_is_rejected():
    # b"" is not None: the caller asked for a JOIN without a token.
    with pytest.raises(ValueError):
        hello(b"")


# ------------------------------------------------------------ verification


@KINDS
def test_hello_verifies_for_its_hub_and_binding(token):
    assert verifies(hello(token))


@KINDS
def test_signatures_are_deterministic(token):
    assert hello(token) == hello(token)  # Ed25519 (RFC 8032) needs no randomness


@KINDS
def test_other_channel_binding_fails(token):
    data = hello(token)
    assert not verifies(data, binding=BINDING[:-1] + b"\x00")
    assert not verifies(data, binding=BINDING + b"\x00")
    assert not verifies(data, binding=b"")


@KINDS
def test_other_hub_fails(token):
    data = hello(token)
    assert not verifies(data, hub=HUB[:-1] + "f")
    assert not verifies(data, hub="")


@KINDS
def test_other_key_fails(token):
    data = hello(token)
    parsed = parse_hello(data)
    swapped = data[:6] + b64(parsed.token + public_bytes(OTHER_KEY) + parsed.signature)
    assert not verifies(swapped)
    # A hello that OTHER_KEY signed does verify, under its own key only.
    assert verifies(hello(token, key=OTHER_KEY))


def test_token_is_covered_by_the_signature():
    parsed = parse_hello(hello(TOKEN))
    assert verifies(b"GET /j" + b64(parsed.token + parsed.pubkey + parsed.signature))
    assert not verifies(b"GET /j" + b64(bytes(16) + parsed.pubkey + parsed.signature))


def test_auth_signature_does_not_verify_as_join_or_the_reverse():
    auth = parse_hello(hello())
    join = parse_hello(hello(TOKEN))
    assert not verify_hello(Hello(JOIN, auth.pubkey, TOKEN, auth.signature), HUB, BINDING)
    assert not verify_hello(Hello(AUTH, join.pubkey, b"", join.signature), HUB, BINDING)


def test_a_command_hello_is_an_auth_signed_for_commands_only():
    data = make_hello(KEY, HUB, BINDING, command=True)
    assert len(data) == SIZES[COMMAND] == 134 and data[:6] == b"GET /c"
    command = parse_hello(data)
    assert command.kind == COMMAND and verify_hello(command, HUB, BINDING)
    assert not verify_hello(Hello(AUTH, command.pubkey, b"", command.signature), HUB, BINDING)
    auth = parse_hello(hello())
    assert not verify_hello(Hello(COMMAND, auth.pubkey, b"", auth.signature), HUB, BINDING)


def test_fields_do_not_slide_across_the_hub_binding_boundary():
    # Length prefixes keep ("ab", "c") and ("a", "bc") from signing the same bytes.
    data = make_hello(KEY, "hub-a", b"bc")
    assert verifies(data, hub="hub-a", binding=b"bc")
    assert not verifies(data, hub="hub-ab", binding=b"c")


@KINDS
def test_every_single_bit_flip_fails(token):
    data = hello(token)
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        assert not verifies(bytes(flipped)), f"hello with bit {i} flipped still verifies"


@KINDS
def test_truncated_or_extended_hellos_do_not_parse(token):
    data = hello(token)
    for cut in range(len(data)):
        assert parse_hello(data[:cut]) is None
    assert parse_hello(data + b"\x00") is None
    assert parse_hello(data + data) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01" + bytes(131),  # a TLS record, an AUTH's size
        b"\xa1" + bytes(96),  # the hellos of old
        b"\xa2" + bytes(112),
        b"GET /a" + b"A" * 150,  # AUTH letter with a JOIN's size
        b"GET /j" + b"A" * 128,  # JOIN letter with an AUTH's size
        b"GET /b" + b"A" * 128,  # no kind
        b"GET /a" + b"A" * 127 + b"=",  # padding is no base64url character
    ],
)
def test_other_bytes_are_not_hellos(data):
    assert parse_hello(data) is None


@given(st.binary(max_size=150))
def test_arbitrary_bytes_never_raise(data):
    parsed = parse_hello(data)
    if parsed is not None:
        assert not verify_hello(parsed, HUB, BINDING)


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=64, max_size=64))
def test_arbitrary_keys_and_signatures_never_raise(pubkey, signature):
    # Not "always False": see the small-order keys below.
    assert verify_hello(Hello(AUTH, pubkey, b"", signature), HUB, BINDING) in (True, False)
    assert verify_hello(Hello(JOIN, pubkey, TOKEN, signature), HUB, BINDING) in (True, False)


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=64, max_size=64))
def test_random_signatures_for_real_keys_fail(seed, signature):
    pubkey = public_bytes(Ed25519PrivateKey.from_private_bytes(seed))
    assert verify_hello(Hello(AUTH, pubkey, b"", signature), HUB, BINDING) is False
    assert verify_hello(Hello(JOIN, pubkey, TOKEN, signature), HUB, BINDING) is False


IDENTITY = b"\x01" + bytes(31)  # the neutral point, order 1
ZERO = bytes(32)  # y = 0, a point of order 4


@pytest.mark.parametrize("pubkey", [IDENTITY, ZERO], ids=["identity", "zero"])
@pytest.mark.parametrize("token", [None, TOKEN], ids=["auth", "join"])
def test_small_order_public_keys_never_verify(pubkey, token):
    kind = AUTH if token is None else JOIN
    forged = b"GET /" + bytes([kind]) + b64((token or b"") + pubkey + pubkey + bytes(32))  # R = key, S = 0
    assert not any(verifies(forged, hub=f"hub-{i}", binding=bytes([i]) * 12) for i in range(16))


def test_wrongly_sized_fields_fail_without_raising():
    parsed = parse_hello(hello())
    assert not verify_hello(Hello(AUTH, parsed.pubkey[:31], b"", parsed.signature), HUB, BINDING)
    assert not verify_hello(Hello(AUTH, parsed.pubkey, b"", parsed.signature[:63]), HUB, BINDING)


def test_oversized_hub_fingerprint_or_binding_fails_verification_without_raising():
    parsed = parse_hello(hello())
    assert not verify_hello(parsed, "h" * 300, BINDING)
    assert not verify_hello(parsed, HUB, bytes(300))
