"""The Trojan protocol, as the stock phone apps speak it (trojan-gfw's protocol document).

Inside TLS a client sends, in its first flight:

    hex(SHA224(password)) CRLF  CMD ATYP DST.ADDR DST.PORT CRLF  payload

CMD is CONNECT (1) or UDP ASSOCIATE (3); the address is SOCKS5's form
(messages.py). After a CONNECT the payload is the connection's bytes; after
a UDP ASSOCIATE it is a sequence of packets, each

    ATYP DST.ADDR DST.PORT LENGTH(u16) CRLF payload

in both directions (to the client, the address is the one the datagram came
from). The same packet form carries UDP inside a channel between a user's
side and the exit (`UDP_REQUEST` in messages.py), so one codec serves both.

The hub's doorway must tell a device's first line from a stranger's bytes
without answering differently from nginx: `password_line` says as soon as
the bytes can no longer be one, and only a whole line of 56 hex digits and
CRLF is ever looked up.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from .errors import ErrorCode, RemoteProtocolError
from .messages import encode_address, read_address

HASH_SIZE = 56  # hex digits of a SHA-224
PASSWORD_LINE = HASH_SIZE + 2
CONNECT, UDP_ASSOCIATE = 1, 3
CRLF = b"\r\n"
MAX_UDP_PAYLOAD = 65535  # the length field's limit, and UDP's
_HEX = frozenset(b"0123456789abcdefABCDEF")
_LENGTH = struct.Struct("!H")


def password_hash(password: str) -> bytes:
    """The first line's 56 hex digits for `password`, in lower case as the apps write them."""
    return hashlib.sha224(password.encode()).hexdigest().encode("ascii")


def password_line(data: bytes | bytearray) -> bytes | None:
    """The 56 hex digits if `data` starts with a whole password line; b"" while it may; None once not."""
    head = data[:HASH_SIZE]
    if not _HEX.issuperset(head):
        return None
    if len(data) <= HASH_SIZE:
        return b""
    if not CRLF.startswith(data[HASH_SIZE:PASSWORD_LINE]):
        return None
    return bytes(head) if len(data) >= PASSWORD_LINE else b""


@dataclass(frozen=True, slots=True)
class Request:
    """What a device asks after its password line."""

    command: int  # CONNECT or UDP_ASSOCIATE
    host: str
    port: int  # 0 is allowed for UDP ASSOCIATE, where the address is not used


def parse_request(data: bytes | bytearray) -> tuple[Request, int] | None:
    """The request at the start of `data` and its size (CRLF included), or None while more must come.

    Raises RemoteProtocolError (BAD_REQUEST) for a command, address or line
    end the protocol does not allow.
    """
    if not data:
        return None
    command = data[0]
    if command not in (CONNECT, UDP_ASSOCIATE):
        raise RemoteProtocolError(f"unknown Trojan command {command}", ErrorCode.BAD_REQUEST)
    address = read_address(data, 1)
    if address is None:
        return None
    host, port, end = address
    if len(data) < end + 2:
        return None
    if data[end:end + 2] != CRLF:
        raise RemoteProtocolError("Trojan request not ended by CRLF", ErrorCode.BAD_REQUEST)
    if port == 0 and command == CONNECT:
        raise RemoteProtocolError("Trojan CONNECT to port 0", ErrorCode.BAD_REQUEST)
    return Request(command, host, port), end + 2


def request(command: int, host: str, port: int) -> bytes:
    """A request as a client writes it (for tests and for clients of our own)."""
    return bytes([command]) + encode_address(host, port) + CRLF


@dataclass(frozen=True, slots=True)
class Packet:
    """One UDP datagram: where it goes to (or, towards the client, where it came from) and its bytes."""

    host: str
    port: int
    payload: bytes


def encode_packet(host: str, port: int, payload: bytes) -> bytes:
    """One packet in the Trojan UDP form; ValueError for an address or a size it cannot carry."""
    if len(payload) > MAX_UDP_PAYLOAD:
        raise ValueError(f"a datagram carries at most {MAX_UDP_PAYLOAD} bytes")
    return encode_address(host, port) + _LENGTH.pack(len(payload)) + CRLF + payload


class PacketDecoder:
    """Packets out of a byte stream, incrementally; it holds at most one unfinished packet.

    As the frame decoder does, it gives the good packets before a malformed
    one, and raises at the next feed.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._error: RemoteProtocolError | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """The packets `data` completes; RemoteProtocolError (BAD_REQUEST) for a malformed one."""
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        buffer += data
        packets = []
        start = 0
        try:
            while True:
                address = read_address(buffer, start)
                if address is None:
                    break
                host, port, end = address
                if len(buffer) < end + 4:
                    break
                (length,) = _LENGTH.unpack_from(buffer, end)
                if buffer[end + 2:end + 4] != CRLF:
                    raise RemoteProtocolError("Trojan UDP packet without its CRLF", ErrorCode.BAD_REQUEST)
                if len(buffer) < end + 4 + length:
                    break
                packets.append(Packet(host, port, bytes(buffer[end + 4:end + 4 + length])))
                start = end + 4 + length
        except RemoteProtocolError as exc:
            if not packets:
                raise
            self._error = exc
        del buffer[:start]
        return packets
