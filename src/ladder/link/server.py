"""The hub's front door: every TLS connection is a member's link or a web visit.

`Doorway` reads the first bytes without answering (a web server never
speaks first). A first byte that starts a hello (0xA1/0xA2, never the start
of an HTTP request) waits for the whole fixed-size hello; a valid signature
over this connection's channel binding goes to the hub, which may take the
connection as a link. Everything else — and any hello that fails — goes,
bytes and all, to the web face, so a stranger, a prober or a replayed hello
sees the same small web site as everyone else.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Callable

from ladder.protocol.hello import Hello, hello_size, parse_hello, verify_hello

from .fallback import hand_to_backend, pipe_end, splice_to_backend
from .webface import WebFace

log = logging.getLogger(__name__)
FIRST_BYTES_TIMEOUT = 60.0  # nginx's client_header_timeout
# Silence is closed when nginx would close it (client_header_timeout), by us:
# handing it to the real server late would add our wait to its own.
PEEK_TIMEOUT = FIRST_BYTES_TIMEOUT
TLS_HANDSHAKE_TIMEOUT = FIRST_BYTES_TIMEOUT
PEEK_BYTES = 16 * 1024 + 5  # one whole TLS record and a byte past it
KEEPALIVE_TIMEOUT = 75.0  # nginx's keepalive_timeout

# (hello, binding, transport, rest) -> True if the hub took the connection.
Admit = Callable[[Hello, bytes, asyncio.Transport, bytes], bool]


class WebVisitor(asyncio.Protocol):
    """A stranger's connection, answered by the web face as nginx would."""

    def __init__(self, face: WebFace):
        self.face = face
        self.transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._rearm()

    def data_received(self, data: bytes) -> None:
        reply = self.face.receive_data(data)
        if reply:
            self.transport.write(reply)
        if self.face.closing:
            self.transport.close()
        else:
            self._rearm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()

    def _rearm(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(KEEPALIVE_TIMEOUT, self.transport.close)


class Doorway(asyncio.Protocol):
    def __init__(self, fingerprint: str, admit: Admit, web_backend: tuple[str, int] | None = None):
        self.fingerprint = fingerprint
        self.admit = admit
        self.web_backend = web_backend
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._timer = asyncio.get_running_loop().call_later(FIRST_BYTES_TIMEOUT, transport.close)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        size = hello_size(self.buffer[0])
        if size is not None and len(self.buffer) < size:
            return  # a hello in progress
        self._timer.cancel()
        if size is not None:
            hello = parse_hello(bytes(self.buffer[:size]))
            binding = self.transport.get_extra_info("ssl_object").get_channel_binding("tls-unique")
            if hello and binding and verify_hello(hello, self.fingerprint, binding):
                if self.admit(hello, binding, self.transport, bytes(self.buffer[size:])):
                    return
        self._hand_to_web()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _hand_to_web(self) -> None:
        if self.web_backend is not None:
            return hand_to_backend(self.transport, self.web_backend, bytes(self.buffer))
        visitor = WebVisitor(WebFace())
        self.transport.set_protocol(visitor)
        visitor.connection_made(self.transport)
        visitor.data_received(bytes(self.buffer))


async def listen(
    address: tuple[str, int],
    context: ssl.SSLContext,
    doorway: Callable[[], Doorway],
    raw_backend: tuple[str, int] | None = None,
):
    """Serve the hub's port: TLS into a Doorway; without a ClientHello, raw to `raw_backend`."""
    loop = asyncio.get_running_loop()
    host, port = address
    if raw_backend is None:
        return await loop.create_server(doorway, host or None, port, ssl=context,
                                        ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT, backlog=1024)
    return await SniffingServer.start(address, context, doorway, raw_backend)


class SniffingServer:
    """Accepts TCP itself, so the first byte can be peeked at before TLS reads it."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, doorway, raw_backend: tuple[str, int]):
        self.sockets = [sock]
        self.context = context
        self.doorway = doorway
        self.raw_backend = raw_backend
        self._tasks: set[asyncio.Task] = set()
        self._accepting: asyncio.Task | None = None

    @classmethod
    async def start(cls, address, context, doorway, raw_backend) -> SniffingServer:
        host, port = address
        infos = await asyncio.get_running_loop().getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)
        family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        server = cls(sock, context, doorway, raw_backend)
        server._accepting = asyncio.get_running_loop().create_task(server._accept())
        return server

    async def serve_forever(self) -> None:
        await self._accepting

    def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
        for task in self._tasks:
            task.cancel()
        self.sockets[0].close()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self.sockets[0])
            conn.setblocking(False)
            task = loop.create_task(self._route(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _route(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            first = await asyncio.wait_for(_peek(conn), PEEK_TIMEOUT)
        except (asyncio.TimeoutError, OSError):
            conn.close()
            return
        try:
            if _lone_client_hello(first):  # a fresh TLS handshake: ours to answer
                await loop.connect_accepted_socket(self.doorway, conn, ssl=self.context,
                                                   ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
            else:
                client = pipe_end()
                transport, _ = await loop.connect_accepted_socket(lambda: client, conn)
                await splice_to_backend(transport, self.raw_backend, b"", client)
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
            log.debug("connection dropped before it was routed: %s", exc)
            conn.close()


def _lone_client_hello(first: bytes) -> bool:
    """A TLS handshake record with nothing after it.

    A fresh client sends its ClientHello and waits for the server. A first
    flight with more behind the hello (a replayed handshake, early data, or
    garbage) is not a member dialling: the real web server answers it, and
    reacts as only a real server would (its handshake, then an alert).
    """
    if len(first) < 5 or first[0] != 0x16:
        return False
    return len(first) <= 5 + int.from_bytes(first[3:5], "big")


async def _peek(conn: socket.socket) -> bytes:
    """The first bytes waiting on `conn`, left in place for whoever reads next."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(conn.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(conn.fileno())
    return conn.recv(PEEK_BYTES, socket.MSG_PEEK)
