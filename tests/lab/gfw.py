"""What a censor's passive classifier sees in a connection's bytes.

`exemptions()` implements the rules by which the Great Firewall of China
lets a connection go *without* suspecting it of being fully encrypted
(Wu et al., "How the Great Firewall of China Detects and Blocks Fully
Encrypted Traffic", USENIX Security 2023, section 4). The GFW looks at the
first data packet a client sends; a connection is exempt if any rule holds:

  Ex1  the average number of set bits per byte is <= 3.4 or >= 4.6
  Ex2  the first six bytes are printable ASCII (0x20-0x7e)
  Ex3  more than 50% of the bytes are printable ASCII
  Ex4  more than 20 contiguous bytes are printable ASCII
  Ex5  the bytes match a protocol fingerprint: a TLS record header
       ([\\x16-\\x17]\\x03[\\x00-\\x03]) or an HTTP method followed by a space

A packet with no exemption is what the GFW would flag as possibly fully
encrypted (and then block with some probability).

`tls_records()` checks that a byte stream is a sequence of TLS records
(RFC 8446 section 5.1), and `banners()` names the tell-tale signatures of
protocols a censor recognises at once (SSH, OpenVPN, WireGuard, L2TP, an
HTTP proxy).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

POPCOUNT_LOW, POPCOUNT_HIGH = 3.4, 4.6
PRINTABLE = range(0x20, 0x7F)
_TLS_HEADER = re.compile(rb"[\x16-\x17]\x03[\x00-\x03]")
_HTTP_METHOD = re.compile(rb"(GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH) ")
_PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]{21,}")
_BITS = bytes(bin(i).count("1") for i in range(256))


def popcount_per_byte(data: bytes) -> float:
    return sum(data.translate(_BITS)) / len(data) if data else 0.0


def exemptions(first_packet: bytes) -> list[str]:
    """The names of the rules (Ex1..Ex5) that exempt this first data packet; empty if none does."""
    if not first_packet:
        return []
    rules = []
    average = popcount_per_byte(first_packet)
    if average <= POPCOUNT_LOW or average >= POPCOUNT_HIGH:
        rules.append("Ex1")
    if len(first_packet) >= 6 and all(b in PRINTABLE for b in first_packet[:6]):
        rules.append("Ex2")
    if sum(b in PRINTABLE for b in first_packet) * 2 > len(first_packet):
        rules.append("Ex3")
    if _PRINTABLE_RUN.search(first_packet):
        rules.append("Ex4")
    if _TLS_HEADER.match(first_packet) or _HTTP_METHOD.match(first_packet):
        rules.append("Ex5")
    return rules


def is_exempt(first_packet: bytes) -> bool:
    return bool(exemptions(first_packet))


# -- TLS records -------------------------------------------------------------------

TLS_CONTENT_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}
TLS_VERSIONS = {0x0301, 0x0303}  # a first ClientHello may say TLS 1.0; everything else says TLS 1.2
MAX_RECORD = 2**14 + 2048  # RFC 5246 section 6.2.3; TLS 1.3 allows less (2**14 + 256)


@dataclass(frozen=True)
class Record:
    content_type: int
    version: int
    length: int


class NotTLS(ValueError):
    """The bytes are not a sequence of TLS records."""


def tls_records(stream: bytes, *, partial_ok: bool = True) -> list[Record]:
    """Split a byte stream into TLS records; raise NotTLS naming the offset of the first bad header.

    A record cut short at the very end is accepted when `partial_ok` (a
    capture stops in the middle of a transfer).
    """
    records, offset = [], 0
    while offset < len(stream):
        header = stream[offset:offset + 5]
        if len(header) < 5:
            if partial_ok:
                break
            raise NotTLS(f"a truncated record header at offset {offset}: {header.hex()}")
        content_type, version, length = struct.unpack("!BHH", header)
        if content_type not in TLS_CONTENT_TYPES:
            raise NotTLS(f"content type {content_type} at offset {offset} (header {header.hex()})")
        if version not in TLS_VERSIONS:
            raise NotTLS(f"version 0x{version:04x} at offset {offset} (header {header.hex()})")
        if length == 0 or length > MAX_RECORD:
            raise NotTLS(f"record length {length} at offset {offset} (header {header.hex()})")
        if offset + 5 + length > len(stream) and not partial_ok:
            raise NotTLS(f"a truncated record at offset {offset}")
        records.append(Record(content_type, version, length))
        offset += 5 + length
    return records


# -- signatures a censor recognises ---------------------------------------------------

# Found anywhere in a payload (long enough not to occur by chance in ciphertext).
_ANYWHERE = {
    "SSH banner": re.compile(rb"SSH-(2\.0|1\.99|1\.5)-"),
    "HTTP proxy CONNECT": re.compile(rb"(^|\r\n)CONNECT [^ \r\n]+:\d+ HTTP/1\.[01]\r\n"),
    "HTTP proxy reply": re.compile(rb"HTTP/1\.[01] 200 Connection established", re.IGNORECASE),
    "HTTP proxy header": re.compile(rb"\r\n(Proxy-Agent|Proxy-Connection|Proxy-Authorization|Via):",
                                    re.IGNORECASE),
    "SOCKS5 greeting reply": re.compile(rb"^\x05[\x00\x02]$"),
}
# Found at the start of a payload.
_AT_START = {
    "SSH": re.compile(rb"SSH-"),
    # OpenVPN over TCP: a 2-byte length, then opcode<<3|key id; hard reset opcodes are 1, 7, 8, 10.
    "OpenVPN hard reset": re.compile(rb"..[\x08-\x0f\x38-\x47\x50-\x57]", re.DOTALL),
    # WireGuard: message type 1..4 as a little-endian u32 (three zero bytes), fixed sizes.
    "WireGuard": re.compile(rb"[\x01-\x04]\x00\x00\x00", re.DOTALL),
    # L2TP control message: T=1, L=1, S=1, version 2 (RFC 2661 section 3.1).
    "L2TP control": re.compile(rb"\xc8\x02", re.DOTALL),
}
# Sizes an OpenVPN hard reset or WireGuard handshake message has.
_WIREGUARD_SIZES = {148, 92, 64}


def banners(payload: bytes) -> list[str]:
    """Names of recognisable non-TLS protocols in one packet's payload."""
    found = [name for name, pattern in _ANYWHERE.items() if pattern.search(payload)]
    if _AT_START["SSH"].match(payload):
        found.append("SSH")
    if _AT_START["L2TP control"].match(payload):
        found.append("L2TP control")
    if _AT_START["WireGuard"].match(payload) and len(payload) in _WIREGUARD_SIZES:
        found.append("WireGuard")
    if (_AT_START["OpenVPN hard reset"].match(payload) and len(payload) >= 3
            and struct.unpack("!H", payload[:2])[0] == len(payload) - 2):
        found.append("OpenVPN hard reset")
    return found
