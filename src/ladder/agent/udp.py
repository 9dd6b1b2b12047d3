"""UDP through the network: a UDP association is one stream, at the exit and on the proxy front.

A stream whose channel request is `UDP_REQUEST` (messages.py) carries
datagrams both ways in the Trojan UDP packet form (protocol/trojan.py),
each naming its target (towards the user: its source). The user's side is
a SOCKS5 UDP ASSOCIATE on the proxy front (`SocksAssociation`), or a
device's Trojan UDP at the hub, which passes the packets on as they are.

The exit (`ExitAssociation`) admits an association as it admits a TCP
stream (the policy's members and caps), and it holds one of its member's
stream slots. Each datagram's target passes the exit's guard on its own:
the policy's `udp_ports` (default 53 and 443), names resolved here, never
private, hub or own addresses. A refused datagram is dropped, counted, and
logged once per association. Datagrams leave from one unconnected socket
per address family, and only datagrams from an address the association
sent to come back (address-and-port-dependent filtering, as most NATs do),
as packets naming their source. Bytes are metered as a TCP stream's are;
while a member's rate is exceeded, credit towards the exit is held back
and replies are dropped.

How long and how much: an association closes (its stream is reset) after
UDP_IDLE seconds without a datagram either way. Towards the user at most
UDP_QUEUE bytes wait for the stream's credit (in the mux's queue; beyond
that datagrams are dropped, as UDP may); towards a target nothing waits
(a socket that cannot take a datagram drops it). It remembers at most
MAX_PEERS addresses for replies and MAX_NAMES resolved names (for
NAME_TTL), and holds at most MAX_RESOLVING * WAITING_PER_NAME datagrams,
WAITING_BYTES in all, while names resolve. So a busy one holds at most
UDP_QUEUE + WAITING_BYTES of datagrams, and an idle one a slot, two
sockets at most and a few KiB until it times out.

The SOCKS5 association lives as long as its TCP connection (RFC 1928
section 7). Its stream opens at once, so no hub or no exit is the
ASSOCIATE's failure reply, and again at the next datagram after the exit
closed an idle one. It takes datagrams only from the client (the first
one's source, on the TCP peer's host) and drops fragments (FRAG != 0, as
the RFC lets a relay do) and datagrams to destinations a rule blocks; all
others, `direct` and `exit:X` rules' too, go through the one exit of the
association, chosen as `--exit` says.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Any, Protocol

from ladder.link.channel import StreamRef
from ladder.link.connection import Endpoint, Link
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.messages import encode_address, read_address
from ladder.protocol.trojan import Packet, PacketDecoder, encode_packet
from ladder.tasks import Tasks

from .exit import ExitGuard, TargetRefused, check_target, resolve_allowed, sockaddr_address
from .pool import Taker
from .sharing import Sharing

log = logging.getLogger(__name__)
UDP_IDLE = 60.0  # seconds without a datagram either way before an association closes (DNS and QUIC re-send)
UDP_QUEUE = 128 * 1024  # bytes that may wait for the stream's credit; datagrams beyond are dropped
MAX_PEERS = 256  # addresses an exit's association sent to, whose replies it takes
MAX_NAMES = 64  # resolved names an exit's association remembers
NAME_TTL = 60.0  # seconds a resolved name is used before it is resolved (and checked) again
MAX_RESOLVING = 4  # names an exit's association resolves at once
WAITING_PER_NAME = 4  # datagrams that wait for their name to resolve
WAITING_BYTES = 16 * 1024  # and their bytes, all names together: credit is given back at once
READS_PER_TURN = 64  # datagrams read from one socket before other work gets the loop
MAX_DATAGRAM = 65535

Address = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]
SocketAddress = tuple[int, tuple[Any, ...]]  # (family, address as sendto takes it)


def _peer(sockaddr: tuple[Any, ...]) -> Address:
    """A socket address as one key, whatever textual form or IPv6 flow and scope it came with."""
    return sockaddr_address(sockaddr), sockaddr[1]


class Datagrams:
    """One non-blocking UDP socket read by the event loop: datagrams in go to `received`."""

    def __init__(self, family: int, received: Callable[[bytes, tuple[Any, ...]], None],
                 bind: tuple[str, int] | None = None):
        self.loop = asyncio.get_running_loop()
        self.received = received
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            if bind is not None:
                self.sock.bind(bind)
            self.loop.add_reader(self.sock.fileno(), self._readable)
        except OSError:
            self.sock.close()
            raise
        self.closed = False

    def send(self, data: bytes, address: tuple[Any, ...]) -> bool:
        """Send one datagram; False if it was dropped (a full socket buffer, an unreachable network)."""
        try:
            self.sock.sendto(data, address)
            return True
        except OSError:
            return False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def _readable(self) -> None:
        for _ in range(READS_PER_TURN):
            if self.closed:  # `received` may close it
                return
            try:
                data, address = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error reported on the socket: nothing to read
                continue
            self.received(data, address)


class ExitAssociation(Endpoint):
    """The exit's end of one UDP association: a member's datagrams to the targets the guard allows."""

    def __init__(self, link: Link, sid: int, sharing: Sharing, guard: ExitGuard, tasks: Tasks,
                 user_id: str, user_name: str):
        """Stream `sid` of `link` asked for it; `start` accepts it once it holds a slot."""
        self.link, self.sid = link, sid
        self.sharing, self.guard, self.tasks = sharing, guard, tasks
        self.user_id, self.user_name = user_id, user_name
        self.slot = False
        self.stream: StreamRef | None = None  # once accepted
        self.done = False
        self.refused = 0  # datagrams the guard refused
        self.dropped = 0  # datagrams dropped for want of credit, a socket or a resolver
        self.loop = asyncio.get_running_loop()
        self._early: list[bytes] = []  # stream bytes that came before the answer
        self._decoder = PacketDecoder()
        self._sockets: dict[int, Datagrams] = {}  # by address family
        self._peers: dict[Address, None] = {}  # where datagrams went, oldest first
        self._names: dict[tuple[str, int], tuple[float, SocketAddress | TargetRefused]] = {}
        self._resolving: dict[tuple[str, int], list[bytes]] = {}  # names being resolved → their datagrams
        self._throttled_until = 0.0
        self._last = self.loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """A slot is ours: accept the stream and pass on what came early."""
        if self.done:
            return
        self.link.accept(self.sid, self)
        self.stream = StreamRef(self.link, self.sid)
        self._last = self.loop.time()
        self._idle_timer = self.loop.call_later(UDP_IDLE, self._check_idle)
        early, self._early = self._early, []
        for data in early:
            self.on_data(data)

    def close(self, code: int, reason: str) -> None:
        """End the association: reset its stream (or refuse it, if not yet accepted)."""
        if self.done:
            return
        if self.stream is not None:
            self.stream.reset(code, reason)
        elif self.link.release(self.sid):
            self.link.refuse(self.sid, code, reason)
        self._gone()

    # ------------------------------------------------------ from the user

    def on_data(self, data: bytes) -> None:
        if self.done:
            return
        if self.stream is None:
            self._early.append(data)  # bounded by the mux's early window
            return
        self._last = self.loop.time()
        try:
            packets = self._decoder.feed(data)
        except RemoteProtocolError as exc:
            log.info("udp: %s sent a malformed packet: %s", self.user_name, exc)
            return self.close(exc.code, str(exc))
        for packet in packets:
            self._send(packet)
        delay = self.sharing.carried(self.user_id, len(data))
        if delay > 0:  # the member's rate: its credit comes back later
            self.loop.call_later(delay, self._acknowledge, len(data))
        else:
            self.stream.acknowledge(len(data))

    def on_end(self) -> None:
        self.close(ErrorCode.CANCEL, "the user ended the association")

    def on_reset(self, code: int, reason: str) -> None:
        self.stream = None  # the link has forgotten it
        if not self.done:
            self._gone()

    def _acknowledge(self, nbytes: int) -> None:
        if self.stream is not None and not self.done:
            self.stream.acknowledge(nbytes)

    def _send(self, packet: Packet) -> None:
        key = (packet.host, packet.port)
        try:
            address = check_target(packet.host, packet.port, self.guard, udp=True) or self._resolved(key)
        except TargetRefused as exc:
            return self._refuse(exc)
        if address is not None:
            self._send_to(address, packet.payload)
            return
        waiting = self._resolving.get(key)
        if waiting is None and len(self._resolving) < MAX_RESOLVING:
            waiting = self._resolving[key] = []
            self.tasks.spawn(self._resolve(key), name="udp name")
        waiting_bytes = sum(len(payload) for names in self._resolving.values() for payload in names)
        if waiting is not None and len(waiting) < WAITING_PER_NAME \
                and waiting_bytes + len(packet.payload) <= WAITING_BYTES:
            waiting.append(packet.payload)
        else:
            self.dropped += 1

    def _resolved(self, key: tuple[str, int]) -> SocketAddress | None:
        """A name's allowed address while we remember it; raises the refusal we remember."""
        known = self._names.get(key)
        if known is None or known[0] < self.loop.time():
            return None
        if isinstance(known[1], TargetRefused):
            raise known[1]
        return known[1]

    async def _resolve(self, key: tuple[str, int]) -> None:
        result: SocketAddress | TargetRefused
        try:
            result = (await resolve_allowed(*key, self.guard, udp=True))[0]
        except TargetRefused as exc:
            result = exc
        waiting = self._resolving.pop(key, [])
        if self.done:
            return
        if len(self._names) >= MAX_NAMES:
            del self._names[next(iter(self._names))]
        self._names[key] = (self.loop.time() + NAME_TTL, result)
        for payload in waiting:
            if isinstance(result, TargetRefused):
                self._refuse(result)
            else:
                self._send_to(result, payload)

    def _send_to(self, address: SocketAddress, payload: bytes) -> None:
        family, sockaddr = address
        sock = self._sockets.get(family)
        if sock is None:
            try:
                sock = self._sockets[family] = Datagrams(family, self._reply)
            except OSError as exc:  # no IPv6 here, or out of file descriptors
                log.info("udp: cannot open a socket: %s", exc)
                self.dropped += 1
                return
        peer = _peer(sockaddr)
        self._peers.pop(peer, None)
        self._peers[peer] = None
        if len(self._peers) > MAX_PEERS:
            del self._peers[next(iter(self._peers))]
        if not sock.send(payload, sockaddr):
            self.dropped += 1

    def _refuse(self, refusal: TargetRefused) -> None:
        if not self.refused:  # the reason names the rule, never the target
            log.info("udp: %s's datagrams refused: %s (each further one is counted, not logged)",
                     self.user_name, refusal)
        self.refused += 1

    # ------------------------------------------------------ from targets

    def _reply(self, data: bytes, sockaddr: tuple[Any, ...]) -> None:
        ip, port = peer = _peer(sockaddr)
        if self.done or self.stream is None or peer not in self._peers:
            return  # only answers from where the association sent
        now = self._last = self.loop.time()
        if now < self._throttled_until or self.stream.pending() > UDP_QUEUE:
            self.dropped += 1
            return
        packet = encode_packet(str(ip), port, data)
        self.stream.send(packet)
        delay = self.sharing.carried(self.user_id, len(packet))
        if delay > 0:
            self._throttled_until = now + delay

    # ------------------------------------------------------------ ending

    def _check_idle(self) -> None:
        idle = self.loop.time() - self._last
        if idle >= UDP_IDLE:
            self.close(ErrorCode.CANCEL, f"the UDP association was idle for {UDP_IDLE:g} s")
        else:
            self._idle_timer = self.loop.call_later(UDP_IDLE - idle, self._check_idle)

    def _gone(self) -> None:
        self.done = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        self._peers.clear()
        self._names.clear()
        self._early = []
        if self.refused or self.dropped:
            log.info("udp: %s's association closed: %d datagrams refused by the policy, %d dropped",
                     self.user_name, self.refused, self.dropped)
        self.sharing.release(self)


class Control(Protocol):
    """The SOCKS5 connection a `SocksAssociation` lives as long as (front.py's ProxyConnection)."""

    def udp_ready(self) -> None:
        """The association's stream is on its way: answer the ASSOCIATE."""

    def on_refused(self, code: int, reason: str) -> None:
        """No stream: a failure reply if the ASSOCIATE is unanswered, else the connection is cut."""


class SocksAssociation(Endpoint):
    """A SOCKS5 UDP ASSOCIATE: the client's datagrams ⇄ one stream to an exit (RFC 1928 section 7)."""

    def __init__(self, control: Control, local_host: str, client_host: str,
                 open_stream: Callable[[Taker], None], stream_done: Callable[[Taker], None],
                 blocked: Callable[[str], bool]):
        """Binds a UDP socket on `local_host`, where the client reached the front (`address`).

        `open_stream` opens the association's stream through an exit,
        `stream_done` is told when one is over, `blocked` says which
        destinations a rule blocks. Raises OSError if no socket can be had.
        """
        self.control = control
        self.client_host = ipaddress.ip_address(client_host.split("%")[0])
        self.open_stream, self.stream_done, self.blocked = open_stream, stream_done, blocked
        self.client: tuple[Any, ...] | None = None  # the client's UDP address, from its first datagram
        self.stream: Any = None  # the opening stream, then the answered one; None between streams
        self.done = False
        self.exit_id: str | None = None
        self.dropped = 0
        local = ipaddress.ip_address(local_host.split("%")[0])
        family = socket.AF_INET6 if local.version == 6 else socket.AF_INET
        self._socket = Datagrams(family, self._from_client, (local_host, 0))
        self.address: tuple[str, int] = self._socket.sock.getsockname()[:2]
        self._decoder = PacketDecoder()
        self._answered = False

    def start(self) -> None:
        self._open()

    def close(self) -> None:
        """The SOCKS connection is gone, and the association with it."""
        if self.done:
            return
        self.done = True
        self._socket.close()
        if self.stream is not None:
            self.stream.reset(ErrorCode.CANCEL, "the SOCKS client closed the association")
            self._stream_over()

    def _open(self) -> None:
        self._decoder = PacketDecoder()
        self.open_stream(self)

    # ------------------------------------------------ what the opener calls

    def attach(self, stream: Any) -> None:
        self.stream = stream
        if not self._answered:
            self._answered = True
            self.control.udp_ready()

    def answered(self, stream: StreamRef) -> None:
        self.stream = stream

    def on_refused(self, code: int, reason: str) -> None:
        self.stream = None
        self.control.on_refused(code, reason)

    # ----------------------------------------------------- from the exit

    def on_data(self, data: bytes) -> None:
        try:
            packets = self._decoder.feed(data)
        except RemoteProtocolError as exc:
            log.info("udp: the exit sent a malformed packet: %s", exc)
            self.stream.reset(exc.code, str(exc))
            return self._stream_over()
        for packet in packets:
            if self.client is not None:  # RSV RSV FRAG, the source address, the data
                self._socket.send(b"\0\0\0" + encode_address(packet.host, packet.port) + packet.payload,
                                  self.client)
        self.stream.acknowledge(len(data))

    def on_end(self) -> None:
        self.stream.reset(ErrorCode.CANCEL, "the exit ended the association")
        self._stream_over()

    def on_reset(self, code: int, reason: str) -> None:
        log.debug("udp: the association's stream was reset: %s", reason)
        self._stream_over()

    def _stream_over(self) -> None:
        """The stream is over; the next datagram opens another."""
        self.stream_done(self)
        self.stream = None

    # --------------------------------------------------- from the client

    def _from_client(self, data: bytes, sockaddr: tuple[Any, ...]) -> None:
        if self.client is None:
            if _peer(sockaddr)[0] != self.client_host:
                return  # not from the host whose connection asked
            self.client = sockaddr
        elif _peer(sockaddr) != _peer(self.client):
            return
        packet = self._packet(data)
        if packet is None or self.blocked(packet[0]):
            self.dropped += 1
            return
        if self.stream is None:
            self._open()
            if self.stream is None:  # refused at once: the connection is cut
                return
        if self.stream.pending() > UDP_QUEUE:
            self.dropped += 1
            return
        self.stream.send(packet[1])

    @staticmethod
    def _packet(data: bytes) -> tuple[str, bytes] | None:
        """A SOCKS5 UDP request header and data → (destination host, the packet for the exit), or None."""
        if len(data) < 4 or data[2] != 0:  # too short, or a fragment
            return None
        try:
            address = read_address(data, 3)
            if address is None:
                return None
            host, port, end = address
            return host, encode_packet(host, port, data[end:])
        except (RemoteProtocolError, ValueError):  # a malformed address, or too long a datagram
            return None
