"""The Trojan codec: the password line as the doorway classifies it, requests, and UDP packets."""

import hashlib

import pytest

from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.trojan import (
    CONNECT,
    PASSWORD_LINE,
    UDP_ASSOCIATE,
    Packet,
    PacketDecoder,
    Request,
    encode_packet,
    parse_request,
    password_hash,
    password_line,
    request,
)

LINE = password_hash("correct horse") + b"\r\n"


def test_password_hash_is_sha224_in_lower_case_hex():
    assert password_hash("x") == hashlib.sha224(b"x").hexdigest().encode()
    assert len(LINE) == PASSWORD_LINE


def test_a_whole_line_gives_its_digits_at_any_split():
    for cut in range(PASSWORD_LINE):
        assert password_line(LINE[:cut]) == b""  # may still become one
    assert password_line(LINE) == LINE[:56]
    assert password_line(LINE + b"\x01rest") == LINE[:56]


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n",  # a web request: not hex at once
    b"g" + LINE[1:],
    LINE[:55] + b"z",  # the last digit is not hex
    LINE[:56] + b"\n",  # a bare LF
    LINE[:56] + b"\r\r",
    LINE[:56] + b"0",  # a 57th digit: random hex goes on
    b"\x16\x03\x01",
])
def test_bytes_that_cannot_be_a_line_are_known_at_once(data):
    assert password_line(data) is None


def test_requests_parse_with_their_size_and_wait_for_more():
    for host, port in (("example.com", 443), ("192.0.2.1", 80), ("2001:db8::1", 53)):
        raw = request(CONNECT, host, port)
        assert parse_request(raw + b"payload") == (Request(CONNECT, host, port), len(raw))
        for cut in range(len(raw)):
            assert parse_request(raw[:cut]) is None
    udp = request(UDP_ASSOCIATE, "0.0.0.0", 0)
    assert parse_request(udp) == (Request(UDP_ASSOCIATE, "0.0.0.0", 0), len(udp))


@pytest.mark.parametrize("raw", [
    b"\x02" + request(CONNECT, "a.b", 1)[1:],  # BIND: not in the protocol
    b"\x01\x05" + bytes(6) + b"\r\n",  # an unknown address type
    b"\x01\x03\x00\x00\x50\r\n",  # an empty name
    b"\x01\x03\x02\xff\xfe\x00\x50\r\n",  # a name that is not ASCII
    request(CONNECT, "a.b", 1)[:-2] + b"\n\n",
    b"\x01" + request(UDP_ASSOCIATE, "a.b", 0)[1:],  # CONNECT to port 0
])
def test_malformed_requests_are_bad_requests(raw):
    with pytest.raises(RemoteProtocolError) as caught:
        parse_request(raw)
    assert caught.value.code == ErrorCode.BAD_REQUEST


def test_packets_round_trip_byte_by_byte_and_in_one_piece():
    packets = [Packet("1.1.1.1", 53, b"query"), Packet("example.com", 443, b""),
               Packet("::1", 9, bytes(65535))]
    stream = b"".join(encode_packet(p.host, p.port, p.payload) for p in packets)
    assert PacketDecoder().feed(stream) == packets
    decoder, out = PacketDecoder(), []
    for i in range(0, len(stream), 7):
        out += decoder.feed(stream[i:i + 7])
    assert out == packets


def test_a_packet_without_its_crlf_is_refused_after_the_good_ones_before_it():
    bad = encode_packet("1.1.1.1", 53, b"q").replace(b"\r\n", b"xx")
    with pytest.raises(RemoteProtocolError):
        PacketDecoder().feed(bad)
    decoder = PacketDecoder()
    assert decoder.feed(encode_packet("1.1.1.1", 53, b"good") + bad) == [Packet("1.1.1.1", 53, b"good")]
    with pytest.raises(RemoteProtocolError):
        decoder.feed(b"")


def test_a_datagram_too_big_for_the_length_field_cannot_be_encoded():
    with pytest.raises(ValueError):
        encode_packet("1.1.1.1", 53, bytes(65536))
