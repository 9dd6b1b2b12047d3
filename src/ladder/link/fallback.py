"""Handing a stranger's connection to a real web server beside the hub.

A probe that compares the hub with a real web server should find a real web
server. With `--web-backend`, a TLS connection that is not a member's is
spliced, decrypted and with every byte already read, to that server's plain
HTTP port; with `--raw-backend`, a connection that does not even start with
a TLS ClientHello is spliced, raw, to that server's TLS port, so the server
itself answers the garbage, the plain HTTP request or the silence.
"""

from __future__ import annotations

import asyncio
import logging

from ladder.tasks import Tasks

log = logging.getLogger(__name__)
HIGH_WATER = 256 * 1024
CONNECT_TIMEOUT = 5.0


class _Half(asyncio.Protocol):
    """One side of a byte pipe: what it reads, the other side writes.

    Each half is kept in `_OPEN` while its connection is open. asyncio holds
    no reference to a transport that is neither reading nor writing, and the
    two halves of a splice only refer to each other: once both have passed
    a half-close on, nothing else would keep them, and uvloop frees such a
    transport with its shutdown request still pending, which corrupts the
    heap when libuv later completes the request (seen as "double free" under
    probes).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.other: _Half | None = None
        self.pending: list[bytes] = []  # read before the other side was connected
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _OPEN.add(self)

    def data_received(self, data: bytes) -> None:
        other = self.other
        if other is None or other.transport is None:
            self.pending.append(data)
            return
        other.transport.write(data)
        if other.transport.get_write_buffer_size() > HIGH_WATER:
            assert self.transport is not None  # asyncio calls connection_made first
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        """Pass the half-close on; keep this side open only while the other can still answer.

        The other side may be gone already (the web server answered a probe
        and closed before the prober's EOF came), or have ended its direction
        before: then there is nothing left to carry, and both close. A TLS
        transport cannot stay half open (asyncio closes it whatever this
        returns, and warns about True).
        """
        self.eof = True
        other = self.other
        if other is None or other.transport is None or other.transport.is_closing():
            return False
        if other.eof:
            other.transport.close()
            return False
        if other.transport.can_write_eof():
            other.transport.write_eof()
            assert self.transport is not None  # asyncio calls connection_made first
            return self.transport.can_write_eof()
        other.transport.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        _OPEN.discard(self)
        if self.other is not None and self.other.transport is not None:
            self.other.transport.close()

    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()


def pipe_end() -> _Half:
    """A protocol for a connection to be spliced later; it keeps what it reads until then."""
    return _Half()


async def splice_to_backend(transport: asyncio.Transport, backend: tuple[str, int], first: bytes,
                            client: _Half) -> None:
    """Join `transport` to a new connection to `backend`; `first` goes out before anything else.

    `client` is the pipe_end() already driving the transport.
    """
    loop = asyncio.get_running_loop()
    transport.pause_reading()
    try:
        to_backend, server = await asyncio.wait_for(loop.create_connection(_Half, *backend), CONNECT_TIMEOUT)
    except (TimeoutError, OSError) as exc:
        log.warning("web backend %s:%d unreachable: %s", *backend, exc)
        transport.abort()
        return
    client.other, server.other = server, client
    if first:
        to_backend.write(first)
    for chunk in client.pending:
        to_backend.write(chunk)
    client.pending.clear()
    if not transport.is_closing():
        transport.resume_reading()
    else:
        to_backend.close()


def hand_to_backend(transport: asyncio.Transport, backend: tuple[str, int], first: bytes) -> None:
    """Splice soon; from now on whatever the transport reads waits for the backend."""
    client = _Half()
    transport.set_protocol(client)
    client.connection_made(transport)
    _SPLICES.spawn(splice_to_backend(transport, backend, first, client), name="splice to the web backend")


_SPLICES = Tasks(log)  # the splices being connected: a failure is logged, never lost
_OPEN: set[_Half] = set()
