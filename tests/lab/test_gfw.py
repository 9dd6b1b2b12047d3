"""The lab's censor model: the GFW's exemption rules (Wu et al. 2023), TLS record framing, protocol
banners."""

from __future__ import annotations

import random
import struct

import gfw
import pytest
from hypothesis import given
from hypothesis import strategies as st

RANDOM = random.Random(1).randbytes(1000)  # what a fully encrypted protocol's first packet looks like


def test_popcount_per_byte():
    assert gfw.popcount_per_byte(b"\x00\xff") == 4.0
    assert gfw.popcount_per_byte(b"\x01\x03\x07") == 2.0
    assert gfw.popcount_per_byte(b"") == 0.0


def test_random_bytes_are_exempt_under_no_rule():
    """The case the GFW blocks: Shadowsocks, VMess and the like look like this."""
    assert 3.4 < gfw.popcount_per_byte(RANDOM) < 4.6
    assert gfw.exemptions(RANDOM) == [] and not gfw.is_exempt(RANDOM)


def test_ex1_popcount_far_from_four():
    low = bytes([0x01, 0x02, 0x04, 0x08, 0x81]) * 20  # 1.2 bits per byte, none printable
    high = bytes([0xFF, 0xFE, 0xFD, 0xFB, 0xF7]) * 20  # 7.2 bits per byte
    assert gfw.exemptions(low) == ["Ex1"] and gfw.exemptions(high) == ["Ex1"]
    # The bounds themselves exempt (<= 3.4, >= 4.6); just inside them does not.
    assert "Ex1" in gfw.exemptions(bytes([0x0F, 0x07, 0x07, 0x07, 0x0F]))  # 17/5 = 3.4
    assert "Ex1" not in gfw.exemptions(bytes([0x0F, 0x0F, 0x07, 0x07, 0x0F]))  # 18/5 = 3.6
    assert "Ex1" not in gfw.exemptions(bytes([0x1F, 0x1F, 0x0F, 0x0F, 0x0F]))  # 22/5 = 4.4
    assert "Ex1" in gfw.exemptions(bytes([0x1F, 0x1F, 0x1F, 0x0F, 0x0F]))  # 23/5 = 4.6


def test_ex2_first_six_bytes_printable():
    assert "Ex2" in gfw.exemptions(b"abc de" + RANDOM[:200])
    assert "Ex2" not in gfw.exemptions(b"abc d\x00" + RANDOM[:200])
    assert "Ex2" not in gfw.exemptions(b"abc d\x7f" + RANDOM[:200])  # DEL is not printable


def test_ex3_more_than_half_printable():
    half = bytes([0x80]) * 50 + b"a" * 50
    assert "Ex3" not in gfw.exemptions(bytes([0x80]) + half[1:])
    assert "Ex3" in gfw.exemptions(bytes([0x80]) * 49 + b"a" * 51)


def test_ex4_more_than_twenty_contiguous_printable():
    assert "Ex4" not in gfw.exemptions(RANDOM[:100] + b"x" * 20 + RANDOM[:100])
    assert "Ex4" in gfw.exemptions(RANDOM[:100] + b"x" * 21 + RANDOM[:100])


@pytest.mark.parametrize("start, exempt", [
    (b"\x16\x03\x01", True), (b"\x16\x03\x03", True), (b"\x17\x03\x03", True), (b"\x17\x03\x00", True),
    (b"\x16\x03\x04", False), (b"\x15\x03\x03", False), (b"\x18\x03\x03", False), (b"\x16\x02\x01", False),
    (b"GET ", True), (b"POST ", True), (b"HEAD ", True), (b"PUT ", True), (b"CONNECT ", True),
    (b"GET/", False), (b"get ", False),
])
def test_ex5_tls_and_http_fingerprints(start, exempt):
    assert ("Ex5" in gfw.exemptions(start + RANDOM[:300])) == exempt


def test_a_real_tls_client_hello_is_exempt():
    hello = bytes.fromhex("16030100f5010000f10303") + RANDOM[:240]
    assert "Ex5" in gfw.exemptions(hello)


@given(st.binary(max_size=2000))
def test_a_tls_record_header_always_exempts(rest):
    assert gfw.is_exempt(b"\x17\x03\x03" + rest)


@given(st.binary(max_size=2000))
def test_exemptions_never_raise(data):
    assert set(gfw.exemptions(data)) <= {"Ex1", "Ex2", "Ex3", "Ex4", "Ex5"}


# -- TLS records ------------------------------------------------------------------------


def record(content_type: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", content_type, version, len(body)) + body


def test_a_stream_of_tls_records():
    stream = (record(22, b"h" * 200, 0x0301) + record(20, b"\x01") + record(23, b"x" * 16401)
              + record(21, b"\x02\x28"))
    assert [(r.content_type, r.version, r.length) for r in gfw.tls_records(stream)] == [
        (22, 0x0301, 200), (20, 0x0303, 1), (23, 0x0303, 16401), (21, 0x0303, 2)]


def test_a_record_cut_by_the_end_of_the_capture():
    stream = record(23, b"x" * 100) + record(23, b"y" * 100)[:50]
    assert len(gfw.tls_records(stream)) == 2
    assert len(gfw.tls_records(stream + b"\x17\x03")) == 2
    with pytest.raises(gfw.NotTLS, match="truncated"):
        gfw.tls_records(stream, partial_ok=False)


@pytest.mark.parametrize("bad, reason", [
    (b"SSH-2.0-OpenSSH_9.2p1\r\n", "content type 83"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "content type 71"),
    (record(24, b"\x01\x00"), "content type 24"),
    (record(23, b"x", 0x0304), "version 0x0304"),
    (record(23, b"x", 0x0300), "version 0x0300"),
    (record(23, b""), "record length 0"),
    (struct.pack("!BHH", 23, 0x0303, 2**14 + 2049), "record length"),
])
def test_what_is_not_tls(bad, reason):
    with pytest.raises(gfw.NotTLS, match=reason):
        gfw.tls_records(record(22, b"h" * 10) + bad)


# -- banners ------------------------------------------------------------------------------


BANNERS = [
    (b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", "SSH"),
    (b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", "SSH banner"),
    (b"xx" + b"SSH-2.0-dropbear\r\n", "SSH banner"),
    (struct.pack("!H", 14) + bytes([0x38]) + b"\x00" * 13, "OpenVPN hard reset"),
    (bytes([1, 0, 0, 0]) + b"\x00" * 144, "WireGuard"),
    (b"\xc8\x02\x00\x14" + b"\x00" * 16, "L2TP control"),
    (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "HTTP proxy CONNECT"),
    (b"HTTP/1.1 200 Connection established\r\n\r\n", "HTTP proxy reply"),
    (b"HTTP/1.1 200 OK\r\nProxy-Connection: keep-alive\r\n\r\n", "HTTP proxy header"),
    (b"\x05\x00", "SOCKS5 greeting reply"),
]


@pytest.mark.parametrize("payload, name", BANNERS, ids=[f"{name}-{i}" for i, (_, name) in enumerate(BANNERS)])
def test_banners_name_what_a_censor_recognises(payload, name):
    assert name in gfw.banners(payload)


def test_tls_and_random_bytes_carry_no_banner():
    assert gfw.banners(record(23, RANDOM)) == []
    assert gfw.banners(bytes.fromhex("16030100f5010000f10303") + RANDOM[:240]) == []
    assert gfw.banners(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n") == []
    assert gfw.banners(bytes([1, 0, 0, 0]) + b"\x00" * 100) == []  # not a WireGuard message size
