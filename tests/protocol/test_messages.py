"""Payload codecs: routes and targets (SOCKS5 address types).
Round trips, exact bytes, and "arbitrary bytes raise nothing but
RemoteProtocolError(BAD_REQUEST)"; control messages are in test_control.py."""

from __future__ import annotations

import ipaddress
import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.messages import (
    ATYP_IPV4,
    ATYP_IPV6,
    ATYP_NAME,
    decode_route,
    decode_target,
    encode_route,
    encode_target,
)

member_ids = st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=255)
ports = st.integers(1, 65535)
host_names = st.text(alphabet=string.ascii_lowercase + string.digits + "-.", min_size=1, max_size=255)


def bad_request(call, *args):
    with pytest.raises(RemoteProtocolError) as info:
        call(*args)
    assert info.value.code == ErrorCode.BAD_REQUEST


# ------------------------------------------------------------------ routes


def test_route_layout_is_length_id_inner():
    assert encode_route("abc", b"inner") == b"\x03abcinner"


@given(member_ids, st.binary(max_size=300))
def test_route_round_trips(member, inner):
    assert decode_route(encode_route(member, inner)) == (member, inner)


def test_route_with_empty_inner_payload():
    assert decode_route(encode_route("m", b"")) == ("m", b"")


def test_route_with_255_byte_member_id():
    member = "m" * 255
    assert decode_route(encode_route(member, b"x")) == (member, b"x")


@pytest.mark.parametrize("member", ["", "m" * 256, "mëmber"])
def test_route_encoder_rejects_bad_member_ids(member):
    with pytest.raises(ValueError):
        encode_route(member, b"")


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x00", b"\x00rest", b"\x05abc", b"\xff" + b"a" * 254, b"\x02a\xff", b"\x01\x80inner"],
    ids=["empty", "zero-length", "zero-length-with-rest", "short", "short-255", "non-ascii", "high-bit"],
)
def test_malformed_routes_are_bad_requests(payload):
    bad_request(decode_route, payload)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_route_raise_only_bad_request(data):
    try:
        member, inner = decode_route(data)
    except RemoteProtocolError as exc:
        assert exc.code == ErrorCode.BAD_REQUEST
    else:
        assert encode_route(member, inner) == data


# ----------------------------------------------------------------- targets


def test_target_layouts_follow_socks5():
    assert encode_target("192.0.2.1", 80) == bytes([ATYP_IPV4, 192, 0, 2, 1, 0, 80])
    assert encode_target("2001:db8::1", 443) == bytes([ATYP_IPV6]) + bytes.fromhex(
        "20010db8000000000000000000000001"
    ) + b"\x01\xbb"
    assert encode_target("example.com", 8080) == bytes([ATYP_NAME, 11]) + b"example.com" + b"\x1f\x90"


@pytest.mark.parametrize(
    "host, port, decoded",
    [
        ("192.0.2.1", 80, "192.0.2.1"),
        ("0.0.0.0", 1, "0.0.0.0"),
        ("255.255.255.255", 65535, "255.255.255.255"),
        ("::1", 22, "::1"),
        ("[::1]", 22, "::1"),  # bracketed, as in URLs
        ("2001:DB8:0:0::1", 443, "2001:db8::1"),  # normalised
        ("::ffff:192.0.2.1", 443, "::ffff:c000:201"),
        ("example.com", 443, "example.com"),
        ("localhost", 5432, "localhost"),
        ("a", 1, "a"),
        ("bücher.example", 80, "xn--bcher-kva.example"),  # IDNA on the wire
    ],
)
def test_target_round_trips(host, port, decoded):
    assert decode_target(encode_target(host, port)) == (decoded, port)


@given(st.ip_addresses(), ports)
def test_any_ip_round_trips(ip, port):
    host, got_port = decode_target(encode_target(str(ip), port))
    assert (ipaddress.ip_address(host), got_port) == (ip, port)


@given(host_names, ports)
def test_any_ascii_name_round_trips(name, port):
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        assume(False)  # that is an IP literal, not a name
    assert decode_target(encode_target(name, port)) == (name, port)


def test_names_up_to_255_bytes():
    name = ("a" * 63 + ".") * 3 + "a" * 63  # 255 bytes
    assert len(name) == 255
    assert decode_target(encode_target(name, 443)) == (name, 443)
    with pytest.raises(ValueError):
        encode_target(name + "a", 443)


@pytest.mark.parametrize("port", [0, -1, 65536, 100000])
def test_target_encoder_rejects_bad_ports(port):
    with pytest.raises(ValueError):
        encode_target("example.com", port)


def test_target_encoder_rejects_empty_names():
    with pytest.raises(ValueError):
        encode_target("", 80)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        bytes([ATYP_IPV4, 192, 0, 2]),  # truncated address
        bytes([ATYP_IPV4, 192, 0, 2, 1, 0]),  # truncated port
        bytes([ATYP_IPV4, 192, 0, 2, 1, 0, 80, 0]),  # trailing byte
        bytes([ATYP_IPV4, 192, 0, 2, 1, 0, 0]),  # port 0
        bytes([ATYP_IPV6]) + bytes(15),
        bytes([ATYP_IPV6]) + bytes(16) + b"\x00",
        bytes([ATYP_IPV6]) + bytes(16) + b"\x00\x50\x00",
        bytes([ATYP_NAME]),  # no length
        bytes([ATYP_NAME, 0, 0, 80]),  # empty name
        bytes([ATYP_NAME, 5]) + b"abc" + b"\x00\x50",  # name shorter than its length
        bytes([ATYP_NAME, 3]) + b"abc",  # no port
        bytes([ATYP_NAME, 3]) + b"abc\x00\x50\x00",  # trailing byte
        bytes([ATYP_NAME, 3]) + b"a\xffc\x00\x50",  # not ASCII
        bytes([ATYP_NAME, 3]) + b"abc\x00\x00",  # port 0
        bytes([2, 1, 2, 3, 4, 0, 80]),  # unknown address type
        bytes([0]),
        bytes([0xFF]) + bytes(10),
    ],
)
def test_malformed_targets_are_bad_requests(data):
    bad_request(decode_target, data)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_target_raise_only_bad_request(data):
    try:
        host, port = decode_target(data)
    except RemoteProtocolError as exc:
        assert exc.code == ErrorCode.BAD_REQUEST
    else:
        assert 0 < port < 65536 and host


@given(st.sampled_from([ATYP_IPV4, ATYP_NAME, ATYP_IPV6]), st.binary(max_size=40))
def test_bytes_behind_a_valid_address_type_raise_only_bad_request(atyp, rest):
    try:
        decode_target(bytes([atyp]) + rest)
    except RemoteProtocolError as exc:
        assert exc.code == ErrorCode.BAD_REQUEST
