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
from typing import Callable

from ladder.protocol.hello import Hello, hello_size, parse_hello, verify_hello

from .webface import WebFace

FIRST_BYTES_TIMEOUT = 60.0  # nginx's client_header_timeout
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
    def __init__(self, fingerprint: str, admit: Admit, face_factory: Callable[[], WebFace] = WebFace):
        self.fingerprint = fingerprint
        self.admit = admit
        self.face_factory = face_factory
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
        visitor = WebVisitor(self.face_factory())
        self.transport.set_protocol(visitor)
        visitor.connection_made(self.transport)
        visitor.data_received(bytes(self.buffer))
