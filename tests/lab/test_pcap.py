"""The lab's pcap reader, on capture files built here byte by byte (no root, no tcpdump needed)."""

from __future__ import annotations

import ipaddress
import struct

import pcap
import pytest
from pcap import ACK, FIN, PSH, SYN

CLIENT, SERVER = ("10.200.4.10", 40000), ("10.200.1.10", 443)


def ipv4(src: str, dst: str, proto: int, body: bytes, *, total: int | None = None, frag: int = 0) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body) if total is None else total, 1, frag, 64,
                         proto, 0, ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return header + body


def tcp(src, dst, seq: int, flags: int, payload: bytes = b"", *, options: bytes = b"") -> bytes:
    offset = (20 + len(options)) // 4
    body = struct.pack("!HHIIBBHHH", src[1], dst[1], seq, 0, offset << 4, flags, 65535, 0, 0) + options
    body += payload
    return ipv4(src[0], dst[0], pcap.PROTO_TCP, body)


def udp(src, dst, payload: bytes) -> bytes:
    return ipv4(src[0], dst[0], pcap.PROTO_UDP,
                struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload)


def ethernet(ip: bytes, ethertype: int = 0x0800, vlan: bool = False) -> bytes:
    macs = b"\x02" * 6 + b"\x04" * 6
    tag = struct.pack("!HH", 0x8100, 7) if vlan else b""
    return macs + tag + struct.pack("!H", ethertype) + ip


def cooked(ip: bytes) -> bytes:  # LINUX_SLL: packet type, ARPHRD, address length, address (8), protocol
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 6, 0x0800) + ip


def cooked2(ip: bytes) -> bytes:  # LINUX_SLL2: protocol, reserved, ifindex, ARPHRD, type, length, address
    return struct.pack("!HHIHBB8s", 0x0800, 0, 3, 1, 0, 6, b"\x02" * 6) + ip


def pcap_file(frames: list[bytes], linktype: int = pcap.LINKTYPE_ETHERNET, endian: str = "<",
              nanoseconds: bool = False) -> bytes:
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)
    for i, frame in enumerate(frames):
        out += struct.pack(endian + "IIII", 1_700_000_000 + i, 500, len(frame), len(frame)) + frame
    return out


def test_reads_tcp_over_ethernet_with_fields_and_payload():
    data = pcap_file([ethernet(tcp(CLIENT, SERVER, 1000, SYN)),
                      ethernet(tcp(SERVER, CLIENT, 5000, SYN | ACK)),
                      ethernet(tcp(CLIENT, SERVER, 1001, PSH | ACK, b"\x16\x03\x01hello",
                                   options=b"\x01" * 12))])
    packets = pcap.parse_pcap(data)
    assert [(p.src, p.sport, p.dst, p.dport, p.flags) for p in packets] == [
        (*CLIENT, *SERVER, SYN), (*SERVER, *CLIENT, SYN | ACK), (*CLIENT, *SERVER, PSH | ACK)]
    assert packets[2].payload == b"\x16\x03\x01hello" and packets[2].seq == 1001
    assert packets[0].time == pytest.approx(1_700_000_000.0005)


@pytest.mark.parametrize("linktype, wrap", [
    (pcap.LINKTYPE_LINUX_SLL, cooked), (pcap.LINKTYPE_LINUX_SLL2, cooked2),
    (pcap.LINKTYPE_RAW, lambda ip: ip),
    (pcap.LINKTYPE_ETHERNET, lambda ip: ethernet(ip, vlan=True)),
])
def test_reads_cooked_captures_raw_ip_and_vlan_tags(linktype, wrap):
    packets = pcap.parse_pcap(pcap_file([wrap(tcp(CLIENT, SERVER, 7, PSH | ACK, b"abc"))], linktype))
    assert [(p.src, p.dport, p.payload) for p in packets] == [(CLIENT[0], 443, b"abc")]


@pytest.mark.parametrize("endian, nanoseconds", [(">", False), ("<", True), (">", True)])
def test_reads_either_byte_order_and_nanosecond_files(endian, nanoseconds):
    packets = pcap.parse_pcap(pcap_file([ethernet(tcp(CLIENT, SERVER, 7, ACK, b"x"))], endian=endian,
                                        nanoseconds=nanoseconds))
    expected = 1_700_000_000 + (500e-9 if nanoseconds else 500e-6)
    assert len(packets) == 1 and packets[0].time == pytest.approx(expected)


def test_udp_other_protocols_and_non_ip_frames():
    arp = ethernet(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\x00" * 20, ethertype=0x0806)
    icmp = ethernet(ipv4("10.200.0.1", "10.200.0.2", 1, b"\x08\x00\x00\x00"))
    wg = ethernet(udp(("10.200.4.10", 51820), ("10.200.129.10", 51820), b"\x01\x00\x00\x00" + b"\x00" * 144))
    packets = pcap.parse_pcap(pcap_file([arp, icmp, wg]))
    assert [(p.proto, p.is_tcp) for p in packets] == [(1, False), (17, False)]
    assert packets[1].dport == 51820 and len(packets[1].payload) == 148


def test_ethernet_padding_is_not_payload():
    frame = ethernet(tcp(CLIENT, SERVER, 7, ACK)) + b"\x00" * 6  # a minimum-size frame, padded
    assert pcap.parse_pcap(pcap_file([frame]))[0].payload == b""


def test_a_record_cut_short_ends_the_list_and_bad_files_raise():
    data = pcap_file([ethernet(tcp(CLIENT, SERVER, 7, ACK, b"one")),
                      ethernet(tcp(CLIENT, SERVER, 10, ACK, b"two"))])
    assert [p.payload for p in pcap.parse_pcap(data[:-2])] == [b"one"]
    with pytest.raises(pcap.PcapError, match="magic"):
        pcap.parse_pcap(b"\x0a\x0d\x0d\x0a" + b"\x00" * 40)  # a pcapng file
    with pytest.raises(pcap.PcapError, match="link type"):
        pcap.parse_pcap(pcap_file([], linktype=105))


def test_connections_know_client_and_server_and_put_streams_in_order():
    c, s = CLIENT, SERVER
    frames = [
        tcp(c, s, 100, SYN), tcp(s, c, 900, SYN | ACK), tcp(c, s, 101, ACK),
        tcp(c, s, 101, PSH | ACK, b"hello "),
        tcp(c, s, 113, PSH | ACK, b"again"),      # out of order
        tcp(c, s, 107, PSH | ACK, b"world "),
        tcp(c, s, 107, PSH | ACK, b"world "),     # a retransmission
        tcp(c, s, 110, PSH | ACK, b"ld again"),  # an overlapping retransmission
        tcp(s, c, 901, PSH | ACK, b"reply"),
        tcp(c, s, 118, FIN | ACK),
        tcp(("10.200.4.10", 40001), s, 5, ACK, b"mid-stream"),  # its handshake was not captured
    ]
    connections = pcap.tcp_connections(pcap.parse_pcap(pcap_file([ethernet(f) for f in frames])))
    first, second = connections
    assert (first.client, first.server, first.saw_syn) == (c, s, True)
    assert first.stream(c) == b"hello world again" and first.stream(s) == b"reply"
    assert first.first_data(c) == b"hello " and first.first_data(s) == b"reply"
    assert (second.client, second.server, second.saw_syn) == (("10.200.4.10", 40001), s, False)
    assert second.stream(second.client) == b"mid-stream"


def test_streams_survive_sequence_wraparound_and_stop_at_a_hole():
    c, s = CLIENT, SERVER
    start = 0xFFFFFFFF - 3
    frames = [tcp(c, s, start, SYN), tcp(c, s, start + 1, ACK, b"abc"),
              tcp(c, s, 0, ACK, b"defg"), tcp(c, s, 10, ACK, b"after a hole")]
    conn, = pcap.tcp_connections(pcap.parse_pcap(pcap_file([ethernet(f) for f in frames])))
    assert conn.stream(c) == b"abcdefg"


def test_a_syn_ack_seen_first_still_names_the_client():
    frames = [tcp(SERVER, CLIENT, 900, SYN | ACK), tcp(CLIENT, SERVER, 101, ACK, b"x")]
    conn, = pcap.tcp_connections(pcap.parse_pcap(pcap_file([ethernet(f) for f in frames])))
    assert (conn.client, conn.server) == (CLIENT, SERVER)
