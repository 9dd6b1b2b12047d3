"""The hub's front door: every connection is a member's link or a web visit, decided as nginx would.

`FrontDoor` accepts TCP itself and keeps each new connection as a bare
socket — no TLS objects, no protocol, no timer of its own — until its first
bytes arrive, then peeks at them as nginx does on an HTTPS port: a first
byte of 0x16 (a TLS handshake record) or with the high bit set (SSLv2) is
TLS; anything else is plain HTTP, which the web face answers as nginx
answers plain HTTP on its HTTPS port. A first flight OpenSSL refuses gets
what OpenSSL says (its alert) and a close, as nginx would send it: the
asyncio TLS transport would drop that alert. With `--raw-backend`, what is
not a fresh ClientHello ours to answer goes, raw, to the real server.

Inside TLS, `Doorway` reads the first bytes without answering (a web server
never speaks first). A hello reads as an HTTP request line in progress
(protocol/hello.py), so while the bytes can still become one the Doorway
waits, as nginx waits on the same bytes; at the first byte that parts from
the hello grammar they go, bytes and all, to the web face (or
`--web-backend`), which answers them as nginx would. A whole hello with a
valid signature over this connection's channel binding goes to the hub,
which may take the connection as a link, with the bytes after the hello as
the link's first; a hello that fails goes to the web face too, and so, at
once and unverified, does one followed by a byte no frame starts with (a
stranger's request line going on). A refused hello is handed over
HELLO_ANSWER_DELAY after it arrived, whatever was wrong with it, so its
answer's timing does not tell a bad signature from an unknown key.

A device's app speaking Trojan (protocol/trojan.py) starts with 56 hex
digits and CRLF. nginx answers a request line starting so with a 400 at
its first byte (a method is upper-case letters), so the Doorway cannot
wait for such a line: the line must come whole in the first read, as
every Trojan client sends it (the line, the request and the first
payload in one write, one TLS record). A whole line goes to the hub's
`admit_device`, which takes the connection if the digits are a device's
secret, with the bytes after the line; anything else — a wrong or revoked
secret, a part of a line, random hex — goes to the web face at once with
all its bytes, as nginx would answer them. The lookup is one keyed hash
and one indexed query, the same work for every wrong line.

A request whose line starts `GET /s/` may be a device's app fetching its
subscription: the Doorway holds it until its head has ended (nginx answers
only then too) and asks the hub's `subscription` for the target; the hub
answers it if the path holds a device's token, and the web face (or the
real web server) gets it, whole, otherwise.

nginx's timers (measured with Debian's nginx 1.22): one client_header_timeout
runs from accept through the TLS handshake to the end of the first request's
head; a request's first byte starts a fixed header deadline that later bytes
do not extend; keepalive_timeout runs only between requests. Strangers cost
little and are bounded, the oldest going first when a bound is reached: bare
sockets (MAX_WAITING), TLS handshakes in progress (MAX_HANDSHAKES; a
member's takes one round trip, a staller's waits for its deadline, so the
oldest is the likeliest staller), visitors past the handshake (MAX_VISITORS;
the longest idle goes). Members' links are not counted. The limits are
module constants, so tests can shrink them.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from ladder.protocol.frames import could_start_frame
from ladder.protocol.hello import Hello, hello_size, parse_hello, verify_hello
from ladder.protocol.http1 import HeadReader, RequestError
from ladder.protocol.trojan import PASSWORD_LINE, password_line
from ladder.tasks import Tasks

from .fallback import hand_to_backend, pipe_end, splice_to_backend
from .webface import WebFace, response_head

log = logging.getLogger(__name__)
HEAD_TIMEOUT = 60.0  # nginx's client_header_timeout
KEEPALIVE_TIMEOUT = 75.0  # nginx's keepalive_timeout
BODY_TIMEOUT = 60.0  # nginx's client_body_timeout, between two reads of a body
LINGERING_TIMEOUT = 5.0  # nginx's lingering_timeout: a lingering close waits this long for more bytes
LINGERING_TIME = 30.0  # nginx's lingering_time: and reads for this long at most
# Above the work a hello costs (a signature check, a lookup: ~0.4 ms); short, as nginx answers at once.
HELLO_ANSWER_DELAY = 0.003
HELLO_SPIN = 0.002  # its last stretch, waited on a fine clock (event loops wake in whole milliseconds)
SHUTDOWN_WAIT = 0.001  # nginx sends close_notify and closes; it does not wait for the peer's
PEEK_BYTES = 16 * 1024 + 5  # one whole TLS record and a byte past it
MAX_WAITING = 60_000  # bare connections that have sent nothing yet
MAX_HANDSHAKES = 256  # TLS handshakes at once
MAX_SUBSCRIPTION_HEAD = 8192  # bytes of a request head under SUBSCRIPTION the Doorway holds
MAX_VISITORS = 2_000  # strangers past the first byte (web visits, doorways awaiting a hello)
ACCEPTS_PER_TURN = 256  # one wake-up of the listening socket takes at most this many
ACCEPT_PAUSE = 0.5  # out of file descriptors: accept again after this (nginx waits 500 ms too)
SWEEP_EVERY = 0.25  # how often bare sockets past their deadline are closed

# (hello, binding, transport, rest) -> True if the hub took the connection.
Admit = Callable[[Hello, bytes, asyncio.Transport, bytes], bool]
# (the password line's 56 hex digits, transport, rest) -> True if the hub took it as a device's.
AdmitDevice = Callable[[bytes, asyncio.Transport, bytes], bool]
# (a request target under SUBSCRIPTION) -> (content type, body, more header fields), or None for a stranger's.
Subscription = Callable[[str], tuple[str, bytes, list[tuple[str, str]]] | None]
SUBSCRIPTION = b"GET /s/"  # the one path prefix whose requests the hub reads before the web face does


@dataclass
class DoorCounts:
    """What the front door has seen since it opened, for the hub's metrics: plain counts, none of them
    about any one connection."""

    connections: int = 0  # accepted
    handshakes: int = 0  # TLS handshakes completed
    hellos_accepted: int = 0  # hellos the hub took a link for
    hellos_refused: int = 0  # hello-shaped bytes that did not verify, or that the hub did not take
    devices: int = 0  # device password lines the hub took
    web: int = 0  # connections the web face (or the web backend) answered


def hang_up(transport: asyncio.Transport) -> None:
    """Close a stranger's connection as nginx does: close_notify (under TLS) and FIN, at once.

    asyncio's TLS transport would wait up to 30 s for the peer's
    close_notify first; members' links keep that courtesy.
    """
    transport.close()
    asyncio.get_running_loop().call_later(SHUTDOWN_WAIT, transport.abort)


def is_tls_start(first_byte: int) -> bool:
    """nginx's test (ngx_http_ssl_handshake): a handshake record or an SSLv2 hello."""
    return first_byte == 0x16 or bool(first_byte & 0x80)


def tls_refusal(context: ssl.SSLContext, first: bytes) -> bytes | None:
    """What OpenSSL sends to a first flight it refuses (its alert, after its own flight if it got
    that far), or None while the flight may still lead somewhere.

    Runs the flight through a throwaway TLS object in memory, as nginx's
    OpenSSL would read it from the socket (nginx turns read-ahead on, so it
    takes everything that arrived).
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    probe = context.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(first)
    try:
        probe.do_handshake()
    except ssl.SSLWantReadError:
        return None
    except ssl.SSLError:
        return outgoing.read()
    return None


def lone_client_hello(first: bytes) -> bool:
    """A TLS handshake record with nothing after it.

    A fresh client sends its ClientHello and waits for the server. A first
    flight with more behind the hello (a replayed handshake, early data, or
    garbage) is not a member dialling: with a raw backend, the real web
    server answers it, and reacts as only a real server would.
    """
    if len(first) < 5 or first[0] != 0x16:
        return False
    return len(first) <= 5 + int.from_bytes(first[3:5], "big")


class Visitors:
    """Strangers past their first byte, least recently active first; the oldest go under pressure."""

    def __init__(self) -> None:
        self._order: collections.OrderedDict[object, asyncio.Transport] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._order)

    def add(self, visitor: object, transport: asyncio.Transport) -> None:
        self._order[visitor] = transport
        while len(self._order) > MAX_VISITORS:  # read here, so tests can shrink it
            _, oldest = self._order.popitem(last=False)
            hang_up(oldest)

    def touch(self, visitor: object) -> None:
        if visitor in self._order:
            self._order.move_to_end(visitor)

    def replace(self, old: object, new: object, transport: asyncio.Transport) -> None:
        self._order.pop(old, None)
        self.add(new, transport)

    def remove(self, visitor: object) -> None:
        self._order.pop(visitor, None)


class WebVisitor(asyncio.Protocol):
    """A stranger's connection, answered by the web face as nginx would, on nginx's timers."""

    transport: asyncio.Transport  # from connection_made, which comes first

    def __init__(self, face: WebFace, deadline: float, visitors: Visitors):
        self.face = face
        self.deadline = deadline  # the first request's head is due by then (from accept)
        self.visitors = visitors
        self._timer: asyncio.TimerHandle | None = None
        self._between_requests = False
        self._lingering_until: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._arm(self.deadline)

    def data_received(self, data: bytes) -> None:
        if self._lingering_until is not None:  # read and thrown away
            now = asyncio.get_running_loop().time()
            return self._arm(min(now + LINGERING_TIMEOUT, self._lingering_until))
        reply = self.face.receive_data(data)
        if reply:
            self.transport.write(reply)
        if self.face.closing:
            # nginx's lingering close: read on, so that bytes still coming do
            # not meet a reset; a body still to come first, then FIN and read
            # on. TLS cannot half-close here, so after the body it closes.
            now = asyncio.get_running_loop().time()
            if self.face.lingers and self.face.body_to_come:
                self._lingering_until = now + LINGERING_TIME
                self._arm(now + LINGERING_TIMEOUT)
            elif self.face.lingers and self.transport.can_write_eof():
                self.transport.write_eof()
                self._lingering_until = now + LINGERING_TIME
                self._arm(now + LINGERING_TIMEOUT)
            else:
                hang_up(self.transport)
            return
        self.visitors.touch(self)
        now = asyncio.get_running_loop().time()
        if self.face.awaiting_request:
            self._between_requests = True
            self._arm(now + KEEPALIVE_TIMEOUT)
        elif self.face.reading_body:
            self._arm(now + BODY_TIMEOUT)
        elif self._between_requests:  # this request's first bytes: its head is due in HEAD_TIMEOUT
            self._between_requests = False
            self._arm(now + HEAD_TIMEOUT)

    def eof_received(self) -> bool:
        return False  # the visitor is done: close, as nginx does on a read of 0

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.visitors.remove(self)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(when, hang_up, self.transport)


class Doorway(asyncio.Protocol):
    """The first bytes inside TLS: a member's hello or a device's password for the hub, or a stranger's
    for the web face."""

    transport: asyncio.Transport  # from connection_made, which comes first
    _timer: asyncio.TimerHandle  # the head's deadline, likewise

    def __init__(self, fingerprint: str, admit: Admit, deadline: float, visitors: Visitors,
                 web_backend: tuple[str, int] | None = None, admit_device: AdmitDevice | None = None,
                 subscription: Subscription | None = None, counts: DoorCounts | None = None):
        self.counts = DoorCounts() if counts is None else counts
        self.fingerprint = fingerprint
        self.admit = admit
        self.admit_device = admit_device
        self.subscription = subscription
        self.deadline = deadline
        self.web_backend = web_backend
        self.visitors = visitors
        self.buffer = bytearray()
        self._refused = False  # a hello failed: bytes only gather until the hand-over

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._timer = asyncio.get_running_loop().call_at(self.deadline, hang_up, self.transport)
        self.visitors.add(self, self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self._refused:
            return
        size = hello_size(self.buffer)
        if size is None:
            return self._device_line()
        if len(self.buffer) < size:
            self.visitors.touch(self)  # active, as a web visitor sending its request line is
            return  # a hello in progress: an unfinished request line, on which nginx waits too
        if len(self.buffer) > size and not could_start_frame(self.buffer[size]):
            # A request line going on past a hello's shape (" HTTP/1.1", a line end): a stranger's,
            # since a link's first frame cannot start so. Answered at once, as nginx answers, and
            # unverified, so its timing says nothing of the hello.
            return self._hand_to_web()
        arrived = time.perf_counter()
        hello = parse_hello(bytes(self.buffer[:size]))
        binding = self.transport.get_extra_info("ssl_object").get_channel_binding("tls-unique")
        if hello and binding and verify_hello(hello, self.fingerprint, binding):
            self._timer.cancel()
            self.visitors.remove(self)
            if self.admit(hello, binding, self.transport, bytes(self.buffer[size:])):
                self.counts.hellos_accepted += 1
                return
            self.visitors.add(self, self.transport)
        self.counts.hellos_refused += 1
        self._refuse(arrived)

    def _device_line(self) -> None:
        """Bytes that cannot be a hello: a device's whole password line in the first read, or a stranger's."""
        digits = None if self.admit_device is None else password_line(self.buffer)
        if not digits:  # none, or a part only: nginx has answered at the first byte already
            return self._subscription_request()
        self._timer.cancel()
        self.visitors.remove(self)
        assert self.admit_device is not None  # digits were looked for
        if self.admit_device(digits, self.transport, bytes(self.buffer[PASSWORD_LINE:])):
            self.counts.devices += 1
            return
        self.visitors.add(self, self.transport)
        self._hand_to_web()

    def _subscription_request(self) -> None:
        """Bytes that are no hello and no password line: a subscription's request, whole or coming, or
        a stranger's."""
        buffer = self.buffer
        if self.subscription is None or not SUBSCRIPTION.startswith(bytes(buffer[:len(SUBSCRIPTION)])):
            return self._hand_to_web()
        try:  # read as the web face reads it, so that it waits exactly where nginx waits
            head = HeadReader(MAX_SUBSCRIPTION_HEAD).read_head(bytearray(buffer)) \
                if len(buffer) >= len(SUBSCRIPTION) else None
        except RequestError:
            return self._hand_to_web()
        if head is None:
            self.visitors.touch(self)
            return  # a request's head still coming, on which nginx waits too
        line, _ = head
        page = None
        if line.version in ((1, 0), (1, 1)) and line.target.isascii():
            page = self.subscription(line.target.decode("ascii"))
        if page is None:
            return self._hand_to_web()
        content_type, body, fields = page
        self._timer.cancel()
        self.visitors.remove(self)
        self.transport.write(response_head(200, "nginx", time.time(), [
            ("Content-Type", content_type), ("Content-Length", str(len(body))), ("Connection", "close"),
            *fields]) + body)
        self.transport.close()  # after what was written, which hang_up's abort could cut short

    def _refuse(self, arrived: float) -> None:
        """Hand the bytes to the web face HELLO_ANSWER_DELAY after they arrived, whatever was wrong."""
        self._refused = True
        # An event loop waits whole milliseconds counted from when it starts
        # waiting, after this work: a timer alone would answer late by a
        # fraction of the work (measured: 0.15 ms in the median). So the timer
        # wakes early, and the rest is waited on a fine clock.
        asyncio.get_running_loop().call_later(HELLO_ANSWER_DELAY - HELLO_SPIN, self._answer_refused,
                                              arrived + HELLO_ANSWER_DELAY)

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()
        self.visitors.remove(self)

    def _answer_refused(self, at: float) -> None:
        while time.perf_counter() < at:  # at most HELLO_SPIN, for strangers' hello-shaped bytes only
            pass
        self._hand_to_web()

    def _hand_to_web(self) -> None:
        if self.transport.is_closing():
            return
        self._timer.cancel()
        self.counts.web += 1
        if self.web_backend is not None:
            self.visitors.remove(self)
            return hand_to_backend(self.transport, self.web_backend, bytes(self.buffer))
        visitor = WebVisitor(WebFace(), self.deadline, self.visitors)
        self.visitors.replace(self, visitor, self.transport)
        self.transport.set_protocol(visitor)
        visitor.connection_made(self.transport)
        visitor.data_received(bytes(self.buffer))


class FrontDoor:
    """The hub's listening socket: bare connections until their first bytes, then TLS or the web face."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, fingerprint: str, admit: Admit,
                 web_backend: tuple[str, int] | None, raw_backend: tuple[str, int] | None,
                 admit_device: AdmitDevice | None = None, subscription: Subscription | None = None):
        self.sockets = [sock]
        self.context = context
        self.fingerprint = fingerprint
        self.admit = admit
        self.admit_device = admit_device
        self.subscription = subscription
        self.web_backend = web_backend
        self.raw_backend = raw_backend
        self.loop = asyncio.get_running_loop()
        # fd -> (socket, deadline), in order of arrival: the oldest are first to go.
        self.bare: collections.OrderedDict[int, tuple[socket.socket, float]] = collections.OrderedDict()
        self.handshakes: collections.OrderedDict[asyncio.Task[Any], None] = collections.OrderedDict()
        self.visitors = Visitors()
        self.counts = DoorCounts()
        self.tasks = Tasks(log)
        self._closed = asyncio.Event()

    @classmethod
    async def start(cls, address: tuple[str, int], context: ssl.SSLContext, fingerprint: str, admit: Admit,
                    web_backend: tuple[str, int] | None = None, raw_backend: tuple[str, int] | None = None,
                    admit_device: AdmitDevice | None = None, subscription: Subscription | None = None
                    ) -> FrontDoor:
        host, port = address
        infos = await asyncio.get_running_loop().getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)
        family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
            sock.listen(4096)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        door = cls(sock, context, fingerprint, admit, web_backend, raw_backend, admit_device, subscription)
        door.loop.add_reader(sock.fileno(), door._accept)
        door.tasks.every(SWEEP_EVERY, door._sweep, name="sweep silent connections")
        return door

    async def serve_forever(self) -> None:
        await self._closed.wait()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.loop.remove_reader(self.sockets[0].fileno())
        self.sockets[0].close()
        for fd in list(self.bare):
            self._drop(fd)
        self.tasks.cancel()

    # -- bare sockets ----------------------------------------------------------

    def _accept(self) -> None:
        deadline = self.loop.time() + HEAD_TIMEOUT
        for _ in range(ACCEPTS_PER_TURN):
            try:
                conn, _ = self.sockets[0].accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of file descriptors, say: the socket stays readable, so
                # pause instead of spinning, and let the oldest silent one go.
                log.warning("cannot accept connections for %.1f s: %s", ACCEPT_PAUSE, exc)
                self.loop.remove_reader(self.sockets[0].fileno())
                self.loop.call_later(ACCEPT_PAUSE, self._resume_accepting)
                if self.bare:
                    self._drop(next(iter(self.bare)))
                return
            conn.setblocking(False)
            self.counts.connections += 1
            fd = conn.fileno()
            self.bare[fd] = (conn, deadline)
            self.loop.add_reader(fd, self._first_bytes, fd)
            while len(self.bare) > MAX_WAITING:
                self._drop(next(iter(self.bare)))

    def _resume_accepting(self) -> None:
        if not self._closed.is_set():
            self.loop.add_reader(self.sockets[0].fileno(), self._accept)

    def _sweep(self) -> None:
        now = self.loop.time()
        while self.bare:
            fd, (_, deadline) = next(iter(self.bare.items()))
            if deadline > now:
                break
            self._drop(fd)  # silence: nginx closes it at client_header_timeout, with a FIN

    def _drop(self, fd: int) -> None:
        conn, _ = self.bare.pop(fd)
        self.loop.remove_reader(fd)
        conn.close()

    def _first_bytes(self, fd: int) -> None:
        conn, deadline = self.bare[fd]
        try:
            first = conn.recv(PEEK_BYTES, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            first = b""
        if not first:
            return self._drop(fd)
        self.loop.remove_reader(fd)
        if is_tls_start(first[0]):
            if self.raw_backend is not None and not lone_client_hello(first):
                self.tasks.spawn(self._raw(self._take(fd), self.raw_backend))
                return
            refusal = tls_refusal(self.context, first)
            if refusal is not None:
                if self.raw_backend is not None:
                    self.tasks.spawn(self._raw(self._take(fd), self.raw_backend))
                    return
                return self._refuse(self._take(fd), first, refusal)
            conn, deadline = self.bare.pop(fd)
            while len(self.handshakes) >= MAX_HANDSHAKES:
                self.handshakes.popitem(last=False)[0].cancel()
            self.handshakes[self.tasks.spawn(self._tls(conn, deadline))] = None
            return
        conn = self._take(fd)
        if self.raw_backend is not None:
            self.tasks.spawn(self._raw(conn, self.raw_backend))
            return
        self.tasks.spawn(self._plain(conn, deadline))

    def _take(self, fd: int) -> socket.socket:
        conn, _ = self.bare.pop(fd)
        return conn

    def _refuse(self, conn: socket.socket, first: bytes, refusal: bytes) -> None:
        """Say what OpenSSL said and close with a FIN, as nginx does.

        The FIN goes first (shutdown), then what has arrived is read and
        dropped: the rest of a flight longer than the first read may still
        be arriving, and closing with it unread would send a reset instead.
        """
        try:
            conn.recv(len(first))
            conn.send(refusal)
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):
                pass
        except OSError:  # nothing more to read now (BlockingIOError), or the prober is gone
            pass
        conn.close()

    # -- past the first byte ---------------------------------------------------

    async def _tls(self, conn: socket.socket, deadline: float) -> None:
        try:
            await self.loop.connect_accepted_socket(
                lambda: Doorway(self.fingerprint, self.admit, deadline, self.visitors, self.web_backend,
                                self.admit_device, self.subscription, self.counts),
                conn, ssl=self.context, ssl_handshake_timeout=max(deadline - self.loop.time(), 0.001))
            self.counts.handshakes += 1
        # The transport owns the socket now and has closed it: closing `conn`
        # again could close a newer connection that got the same descriptor.
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake failed: %s", exc)
        except asyncio.CancelledError:  # shed for a newer one, or the door closes
            pass
        finally:
            self.handshakes.pop(cast("asyncio.Task[None]", asyncio.current_task()), None)

    async def _plain(self, conn: socket.socket, deadline: float) -> None:
        self.counts.web += 1
        visitor = WebVisitor(WebFace(plain_on_https_port=True), deadline, self.visitors)
        try:
            transport, _ = await self.loop.connect_accepted_socket(lambda: visitor, conn)
        except OSError:
            conn.close()
            return
        self.visitors.add(visitor, transport)

    async def _raw(self, conn: socket.socket, backend: tuple[str, int]) -> None:
        """Splice, untouched, to the real server's TLS port: its answers are a real server's."""
        client = pipe_end()
        try:
            transport, _ = await self.loop.connect_accepted_socket(lambda: client, conn)
            await splice_to_backend(transport, backend, b"", client)
        except OSError as exc:
            log.debug("connection dropped before it was spliced: %s", exc)
            conn.close()


async def listen(address: tuple[str, int], context: ssl.SSLContext, fingerprint: str, admit: Admit,
                 web_backend: tuple[str, int] | None = None, raw_backend: tuple[str, int] | None = None,
                 admit_device: AdmitDevice | None = None, subscription: Subscription | None = None
                 ) -> FrontDoor:
    """Serve the hub's port: members' links, devices, and the web face (or the real web server) for
    everyone else."""
    return await FrontDoor.start(address, context, fingerprint, admit, web_backend, raw_backend, admit_device,
                                 subscription)
