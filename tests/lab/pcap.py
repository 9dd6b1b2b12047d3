"""A small reader for classic libpcap files: IPv4 packets over Ethernet or Linux cooked capture.

Enough for the lab's border capture: packets (with their TCP or UDP ports
and payload), TCP connections grouped by their 4-tuple, and each direction's
byte stream put back in sequence order. Pure Python, no dependency.

File format: https://www.tcpdump.org/manpages/pcap-savefile.5.txt (a 24-byte
global header, then a 16-byte header per record); link types from
https://www.tcpdump.org/linktypes.html.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from pathlib import Path

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_VLAN = {0x8100, 0x88A8}
PROTO_TCP, PROTO_UDP = 6, 17

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}


class PcapError(ValueError):
    """The file is not a classic pcap file this reader understands."""


@dataclass(frozen=True)
class Packet:
    time: float
    src: str
    dst: str
    proto: int             # IP protocol number
    sport: int = 0         # TCP/UDP only
    dport: int = 0
    seq: int = 0           # TCP only
    flags: int = 0
    payload: bytes = b""

    @property
    def is_tcp(self) -> bool:
        return self.proto == PROTO_TCP


def read_pcap(path: str | Path) -> list[Packet]:
    return parse_pcap(Path(path).read_bytes())


def parse_pcap(data: bytes) -> list[Packet]:
    """Every IPv4 packet in a pcap file; other link-layer payloads are skipped.

    A record cut short by the end of the file (a capture stopped mid-write) ends the list.
    """
    if len(data) < 24 or data[:4] not in _MAGIC:
        raise PcapError("not a classic pcap file (bad magic number)")
    endian, tick = _MAGIC[data[:4]]
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    if linktype not in (LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2):
        raise PcapError(f"link type {linktype} is not Ethernet, raw IP or Linux cooked capture")
    packets, offset = [], 24
    while offset + 16 <= len(data):
        seconds, fraction, caplen, _ = struct.unpack_from(endian + "IIII", data, offset)
        offset += 16
        if offset + caplen > len(data):
            break
        frame = data[offset:offset + caplen]
        offset += caplen
        ip = _ip_of(frame, linktype)
        if ip is not None:
            packet = parse_ipv4(ip, seconds + fraction * tick)
            if packet is not None:
                packets.append(packet)
    return packets


def _ip_of(frame: bytes, linktype: int) -> bytes | None:
    """The IPv4 datagram inside a link-layer frame, or None."""
    if linktype == LINKTYPE_RAW:
        return frame
    if linktype == LINKTYPE_ETHERNET:
        offset, ethertype = 14, _u16(frame, 12)
        while ethertype in ETHERTYPE_VLAN:  # 802.1Q tags: 4 bytes each
            ethertype, offset = _u16(frame, offset + 2), offset + 4
    elif linktype == LINKTYPE_LINUX_SLL:  # 16-byte header, protocol last
        offset, ethertype = 16, _u16(frame, 14)
    else:  # SLL2: 20-byte header, protocol first
        offset, ethertype = 20, _u16(frame, 0)
    return frame[offset:] if ethertype == ETHERTYPE_IPV4 else None


def _u16(data: bytes, offset: int) -> int | None:
    return struct.unpack_from("!H", data, offset)[0] if offset + 2 <= len(data) else None


def parse_ipv4(ip: bytes, when: float = 0.0) -> Packet | None:
    """One IPv4 datagram (RFC 791) with its TCP (RFC 9293) or UDP header; None if it is not IPv4."""
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return None
    ihl = (ip[0] & 0x0F) * 4
    total = _u16(ip, 2)
    # Offloaded packets may carry 0 as their length: then the captured bytes are the datagram.
    end = total if ihl <= total <= len(ip) else len(ip)
    proto = ip[9]
    src, dst = str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))
    body = ip[ihl:end]
    fragment_offset = _u16(ip, 6) & 0x1FFF
    if fragment_offset or proto not in (PROTO_TCP, PROTO_UDP):
        return Packet(when, src, dst, proto, payload=body)
    if proto == PROTO_UDP:
        if len(body) < 8:
            return Packet(when, src, dst, proto, payload=body)
        sport, dport = struct.unpack_from("!HH", body)
        return Packet(when, src, dst, proto, sport, dport, payload=body[8:])
    if len(body) < 20:
        return Packet(when, src, dst, proto, payload=b"")
    sport, dport, seq = struct.unpack_from("!HHI", body)
    offset = (body[12] >> 4) * 4
    return Packet(when, src, dst, proto, sport, dport, seq, body[13], body[offset:])


# -- TCP connections -------------------------------------------------------------


Endpoint = tuple[str, int]


@dataclass
class Connection:
    """One TCP connection: who opened it (if the SYN was captured) and its packets."""

    client: Endpoint
    server: Endpoint
    saw_syn: bool
    packets: list[Packet] = field(default_factory=list)

    def sent_by(self, side: Endpoint) -> list[Packet]:
        return [p for p in self.packets if (p.src, p.sport) == side]

    def first_data(self, side: Endpoint) -> bytes | None:
        """The payload of the first packet carrying data from `side` (in capture order)."""
        for packet in self.sent_by(side):
            if packet.payload:
                return packet.payload
        return None

    def stream(self, side: Endpoint) -> bytes:
        """The bytes `side` sent, in sequence order, retransmissions counted once.

        Starts at the SYN's sequence number + 1 when the SYN was captured,
        otherwise at the lowest sequence number seen. A hole (a segment that
        was never captured) ends the stream there.
        """
        packets = self.sent_by(side)
        syns = [p.seq for p in packets if p.flags & SYN]
        data = [p for p in packets if p.payload]
        if not data:
            return b""
        base = (syns[0] + 1) & 0xFFFFFFFF if syns else min(p.seq for p in data)
        # Sequence numbers wrap at 2**32: offsets relative to base, modulo 2**32.
        segments = sorted(((p.seq - base) & 0xFFFFFFFF, p.payload) for p in data)
        out = bytearray()
        for offset, payload in segments:
            if offset > 0x7FFFFFFF:  # before base: a stray segment from an earlier connection
                continue
            if offset > len(out):
                break  # a hole
            out += payload[len(out) - offset:]
        return bytes(out)


def tcp_connections(packets: list[Packet]) -> list[Connection]:
    """TCP packets grouped by 4-tuple, in order of first appearance.

    The client is the sender of a SYN without ACK (or the receiver of a
    SYN-ACK); for a connection whose handshake was not captured, the side
    with the lower port is taken as the server.
    """
    by_key: dict[tuple, Connection] = {}
    for packet in packets:
        if not packet.is_tcp:
            continue
        a, b = (packet.src, packet.sport), (packet.dst, packet.dport)
        key = (min(a, b), max(a, b))
        conn = by_key.get(key)
        if conn is None:
            if packet.flags & SYN and not packet.flags & ACK:
                client, server = a, b
            elif packet.flags & SYN:  # a SYN-ACK: the sender is the server
                client, server = b, a
            else:
                client, server = (a, b) if a[1] > b[1] else (b, a)
            conn = by_key[key] = Connection(client, server, bool(packet.flags & SYN))
        conn.packets.append(packet)
    return list(by_key.values())
