"""The exit: a sharer's agent resolving, checking and connecting targets for others.

Names are resolved here, at the exit, never by the user. Every resolved
address is checked before the connection is made, and the connection goes to
that checked address (not the name again), so a DNS answer that changes
between check and connect (rebinding) gains nothing. By default only
globally routable unicast addresses are allowed: no loopback, private,
link-local, CGNAT, multicast, reserved or unspecified addresses, nor the
hub's own, so nobody reaches the sharer's router or LAN. An IPv6 address
that embeds an IPv4 one (IPv4-compatible, -mapped and -translated forms,
NAT64's well-known prefix, 6to4, Teredo) is checked as that IPv4 address
too: Python calls most of these forms global, yet a NAT64 or 6to4 gateway
beside the sharer turns them into the IPv4 address inside. NAT64's
local-use prefix (RFC 8215) is refused outright: where it leads is up to
the local network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field

from ladder.errors import LadderError
from ladder.protocol.errors import ErrorCode

CONNECT_TIMEOUT = 10.0
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Refusal:
    """Why a stream is refused: the code on the wire and the reason the opener reads."""

    code: int  # an ErrorCode, or a code of a newer peer's
    reason: str


class TargetRefused(LadderError):
    """A stream cannot reach its target (the exit's guard, the target, or the network said why)."""

    def __init__(self, code: int, reason: str):
        """`code` goes on the wire: an ErrorCode, or the code a far end refused with."""
        super().__init__(reason)
        self.code = code


DEFAULT_PORTS = ((80, 80), (443, 443))  # like a cautious Tor exit policy
DEFAULT_UDP_PORTS = ((53, 53), (443, 443))  # DNS and QUIC
# IPv6 forms whose last 32 bits are an IPv4 address: IPv4-compatible (RFC 4291),
# IPv4-mapped, IPv4-translated (RFC 2765) and NAT64's well-known prefix (RFC 6052).
_LOW_32_IS_IPV4 = tuple(ipaddress.ip_network(n) for n in ("::/96", "::ffff:0:0/96", "::ffff:0:0:0/96",
                                                          "64:ff9b::/96"))
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
_LOCAL = "the exit does not connect to private, loopback or local addresses"


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries (6to4 one, Teredo two: server and client)."""
    if any(address in network for network in _LOW_32_IS_IPV4):
        return (ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF),)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    return address.teredo or ()


@dataclass
class ExitGuard:
    """Where the exit may connect: ports, names and addresses. Reasons name the rule.

    The sharer's own lists (`deny_domains`, `deny_networks`) come on top of
    the fixed ones, which only --allow-private (demos, labs) lifts.
    """

    allow_private: bool = False
    hub: set[tuple[IPAddress, int]] = field(default_factory=set)  # the hub's own addresses
    own: set[IPAddress] = field(default_factory=set)  # the sharer's public address, as the hub sees it
    ports: tuple[tuple[int, int], ...] = DEFAULT_PORTS
    udp_ports: tuple[tuple[int, int], ...] = DEFAULT_UDP_PORTS  # for the datagrams of UDP associations
    deny_domains: tuple[str, ...] = ()  # each also covers its subdomains
    deny_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def port_refusal(self, port: int, udp: bool = False) -> str | None:
        ports = self.udp_ports if udp else self.ports
        if any(low <= port <= high for low, high in ports):
            return None
        allowed = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ports)
        return f"the exit's policy allows {'UDP ' if udp else ''}ports {allowed} only"

    def name_refusal(self, host: str) -> str | None:
        name = host.lower().rstrip(".")
        for domain in self.deny_domains:
            if name == domain or name.endswith("." + domain):
                return f"the exit's policy denies {domain}"
        return None

    def refusal(self, address: IPAddress, port: int) -> str | None:
        """Why the exit must not connect to this address, or None.

        --allow-private still keeps the hub's own port out of reach, but not
        other services on the hub's machine.
        """
        if isinstance(address, ipaddress.IPv6Address):
            if address in _LOCAL_NAT64 and not self.allow_private:
                return _LOCAL
            for inner in embedded_ipv4(address):
                why = self.refusal(inner, port)
                if why is not None:
                    return why
        if address.is_multicast or address.is_unspecified:
            return "the exit does not connect to multicast or unspecified addresses"
        if not self.allow_private and not address.is_global:
            return _LOCAL
        if (address, port) in self.hub or (not self.allow_private
                                           and any(address == ip for ip, _ in self.hub)):
            return "the exit does not connect to the hub's own address"
        if address in self.own and not self.allow_private:
            return "the exit does not connect to its own public address"
        for network in self.deny_networks:
            if address.version == network.version and address in network:
                return f"the exit's policy denies {network}"
        return None


def sockaddr_address(sockaddr: tuple[object, ...]) -> IPAddress:
    """The IP address of a getaddrinfo stream address, without an IPv6 zone (`%eth0`)."""
    host = sockaddr[0]
    assert isinstance(host, str)  # an AF_INET or AF_INET6 address starts with the host as text
    return ipaddress.ip_address(host.split("%")[0])


def check_target(host: str, port: int, guard: ExitGuard, udp: bool = False) -> tuple[int, tuple] | None:
    """What the guard can say before any resolver: the port, the name, an address literal.

    Returns (family, socket address) for an allowed literal and None for a
    name still to resolve; raises TargetRefused with the rule.
    """
    why = guard.port_refusal(port, udp) or guard.name_refusal(host)
    if why is not None:
        raise TargetRefused(ErrorCode.FORBIDDEN, why)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return None
    why = guard.refusal(literal, port)
    if why is not None:
        raise TargetRefused(ErrorCode.FORBIDDEN, why)
    return (socket.AF_INET if literal.version == 4 else socket.AF_INET6), (host, port)


async def resolve_allowed(host: str, port: int, guard: ExitGuard, udp: bool = False) -> list[tuple]:
    """Socket addresses for (host, port) that the guard allows, in resolver order."""
    literal = check_target(host, port, guard, udp)
    if literal is not None:  # an address literal needs no resolver thread
        return [literal]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise TargetRefused(ErrorCode.NAME_NOT_RESOLVED, "the exit could not resolve the name") from None
    allowed, reason = [], ""
    for family, _, _, _, sockaddr in infos:
        why = guard.refusal(sockaddr_address(sockaddr), port)
        if why is None:
            allowed.append((family, sockaddr))
        else:
            reason = why
    if not allowed:
        raise TargetRefused(ErrorCode.FORBIDDEN, reason)
    return allowed


async def connect_target(host: str, port: int, guard: ExitGuard, protocol_factory) -> asyncio.Protocol:
    """Connect to the first reachable allowed address; raise TargetRefused with the reason.

    Reasons never name the target: they cross the hub in clear.
    """
    loop = asyncio.get_running_loop()
    addresses = await resolve_allowed(host, port, guard)
    error = TargetRefused(ErrorCode.UNREACHABLE, "the target is unreachable from the exit")
    deadline = loop.time() + CONNECT_TIMEOUT
    for family, sockaddr in addresses:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(protocol_factory, sockaddr[0], sockaddr[1], family=family),
                remaining,
            )
            return protocol
        except ConnectionRefusedError:
            error = TargetRefused(ErrorCode.TARGET_REFUSED, "the target refused the connection")
        except TimeoutError:
            error = TargetRefused(ErrorCode.TARGET_TIMEOUT, "the target did not answer in time")
        except OSError:
            pass
    raise error
