"""Payloads that ride inside OPEN frames: routes, targets and service requests.

A user's OPEN to the hub carries a *route* (which member the stream is for)
wrapped around an opaque inner payload that only the far end reads; the hub
rewrites the route to say who the stream comes from and forwards the inner
payload untouched. The inner payload names the *target* the exit connects
to, or the published service the opener wants. (CONTROL frames carry the
messages of control.py.)
"""

from __future__ import annotations

import ipaddress
import struct

from .errors import ErrorCode, RemoteProtocolError
from .routing import HOP_LIMIT

_PORT = struct.Struct("!H")
# Address types as in SOCKS5 (RFC 1928 section 5), so the proxy front can
# pass a client's address through without re-encoding it.
ATYP_IPV4, ATYP_NAME, ATYP_IPV6 = 1, 3, 4


def encode_route(member_id: str, inner: bytes) -> bytes:
    raw = member_id.encode("ascii")
    if not 0 < len(raw) < 256:
        raise ValueError("member id must be 1-255 ASCII bytes")
    return bytes([len(raw)]) + raw + inner


def decode_route(payload: bytes) -> tuple[str, bytes]:
    if not payload or len(payload) < 1 + payload[0] or payload[0] == 0:
        raise RemoteProtocolError("route shorter than its length byte says", ErrorCode.BAD_REQUEST)
    end = 1 + payload[0]
    try:
        member_id = payload[1:end].decode("ascii")
    except UnicodeDecodeError:
        raise RemoteProtocolError("route is not ASCII", ErrorCode.BAD_REQUEST) from None
    return member_id, payload[end:]


def encode_peer_route(hops: int, destination: str, source: str, inner: bytes) -> bytes:
    """What a hub's OPEN to a peer hub carries: hops left, the destination, who opened it, and the
    inner payload untouched. The hop limit falls by one at every hub, so a transient loop between
    hubs that disagree for a moment cannot circulate a stream."""
    if not 0 <= hops < 256:
        raise ValueError("hops must fit one byte")
    return bytes([hops]) + encode_route(destination, encode_route(source, inner))


def decode_peer_route(payload: bytes) -> tuple[int, str, str, bytes]:
    """(hops left, destination, source, inner); RemoteProtocolError (BAD_REQUEST) if malformed."""
    if not payload:
        raise RemoteProtocolError("empty peer route", ErrorCode.BAD_REQUEST)
    destination, rest = decode_route(payload[1:])
    source, inner = decode_route(rest)
    return min(payload[0], HOP_LIMIT), destination, source, inner


def encode_target(host: str, port: int) -> bytes:
    """The SOCKS5 address form of (host, port); ValueError (never another error) for what it cannot be."""
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return encode_address(host, port)


def encode_address(host: str, port: int) -> bytes:
    """As encode_target, port 0 allowed (a UDP association names no target)."""
    if not 0 <= port < 65536:
        raise ValueError(f"port {port} out of range")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        try:
            name = host.encode("ascii") if host.isascii() else host.encode("idna")
        except UnicodeError:  # not a name IDNA can write in ASCII (undecodable bytes, forbidden characters)
            raise ValueError("host name is not a valid domain name") from None
        if not 0 < len(name) < 256:
            raise ValueError("host name must be 1-255 bytes") from None
        return bytes([ATYP_NAME, len(name)]) + name + _PORT.pack(port)
    atyp = ATYP_IPV4 if ip.version == 4 else ATYP_IPV6
    return bytes([atyp]) + ip.packed + _PORT.pack(port)


def read_address(data: bytes | bytearray, start: int = 0) -> tuple[str, int, int] | None:
    """The SOCKS5-form address at `data[start:]`: (host, port, where it ends), or None while it is unfinished.

    Raises RemoteProtocolError (BAD_REQUEST) for an unknown address type, an
    empty name or one that is not ASCII.
    """
    if len(data) <= start:
        return None
    atyp = data[start]
    if atyp == ATYP_IPV4:
        end = start + 5
        host = str(ipaddress.IPv4Address(bytes(data[start + 1:end]))) if len(data) >= end else ""
    elif atyp == ATYP_IPV6:
        end = start + 17
        host = str(ipaddress.IPv6Address(bytes(data[start + 1:end]))) if len(data) >= end else ""
    elif atyp == ATYP_NAME:
        if len(data) < start + 2:
            return None
        end = start + 2 + data[start + 1]
        raw = bytes(data[start + 2:end])
        if not raw.isascii() or data[start + 1] == 0:
            raise RemoteProtocolError("malformed target address", ErrorCode.BAD_REQUEST)
        host = raw.decode("ascii")
    else:
        raise RemoteProtocolError("malformed target address", ErrorCode.BAD_REQUEST)
    if len(data) < end + 2:
        return None
    (port,) = _PORT.unpack_from(data, end)
    return host, port, end + 2


def decode_target(data: bytes) -> tuple[str, int]:
    """Host (a name or an IP literal) and port; raises on anything malformed."""
    address = read_address(data)
    if address is None or address[2] != len(data) or address[1] == 0:
        raise RemoteProtocolError("malformed target address", ErrorCode.BAD_REQUEST)
    return address[0], address[1]


# A channel request for a published service instead of a target: this first
# byte is no SOCKS5 address type. Then the service name (u8 length, ASCII)
# and the opener's proof of membership (fixed size, protocol/records.py).
SERVICE_REQUEST = 0x10
SERVICE_PROOF_SIZE = 32 + 64


# A channel request for UDP: this one byte, then packets in the Trojan UDP form both ways
# (protocol/trojan.py), each naming its own target (towards the user: its source).
UDP_REQUEST = 0x11


def is_service_request(data: bytes) -> bool:
    return data[:1] == bytes([SERVICE_REQUEST])


def encode_service_request(name: str, proof: bytes) -> bytes:
    raw = name.encode("ascii")
    if not 0 < len(raw) < 256 or len(proof) != SERVICE_PROOF_SIZE:
        raise ValueError("service name must be 1-255 ASCII bytes and the proof 96 bytes")
    return bytes([SERVICE_REQUEST, len(raw)]) + raw + proof


def decode_service_request(data: bytes) -> tuple[str, bytes]:
    """The service name and the opener's proof; raises on anything malformed."""
    size = 2 + data[1] + SERVICE_PROOF_SIZE if len(data) >= 2 else -1
    if data[:1] != bytes([SERVICE_REQUEST]) or len(data) != size or not data[1]:
        raise RemoteProtocolError("malformed service request", ErrorCode.BAD_REQUEST)
    try:
        name = data[2 : 2 + data[1]].decode("ascii")
    except UnicodeDecodeError:
        raise RemoteProtocolError("malformed service request", ErrorCode.BAD_REQUEST) from None
    return name, bytes(data[2 + data[1] :])
