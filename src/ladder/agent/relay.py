"""Splices one TCP connection onto one stream of a link, with backpressure both ways.

TCP → stream: bytes go into the mux; while the stream's credit is used up
(`stream.pending()` > 0) the socket stops being read, and reading resumes
when WINDOW frames drain the outbox. Stream → TCP: bytes are written to the
socket and their credit is given back at once, unless the socket's write
buffer is full (asyncio's pause_writing), in which case credit waits until
it drains. So a slow reader on either side holds at most one window.
Half-closes pass through (TCP FIN ⇄ stream END) and a reset aborts the socket.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Protocol

from ladder.link.connection import Endpoint
from ladder.protocol.errors import ErrorCode

log = logging.getLogger(__name__)
_LINGER_NOW, _LINGER_OFF = struct.pack("ii", 1, 0), struct.pack("ii", 0, 0)


def abort_with_rst(transport: asyncio.Transport) -> None:
    """Close with a TCP RST, so a client cannot take a cut-off download for a whole one."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_NOW)
        except (OSError, ValueError):  # closed already (uvloop's socket then has no descriptor)
            pass
    transport.abort()


def reset_if_dropped(transport: asyncio.Transport, reset: bool = True) -> None:
    """With `reset`, the socket's close is a TCP RST until told otherwise, whoever closes it: the kernel
    too, when this process is killed (a FIN then would end a cut-off download as if it were whole).
    Without, it closes with a FIN again, after what is written (before a clean end)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_NOW if reset else _LINGER_OFF)
        except (OSError, ValueError):  # closed already (uvloop's socket then has no descriptor)
            pass


READ_BUFFER = 256 * 1024
# One read buffer for every relay in the process. A read lands in it and
# `data_received` passes it on at once: the mux copies the views it queues,
# an opening stream copies what it keeps for a retry, DirectStream copies
# before writing and the front copies what it parses or holds back. Nothing
# keeps a view, so the next read, of any connection, may overwrite it. A
# buffer per connection cost 256 KiB for each one, idle or not.
_READ_BUFFER = memoryview(bytearray(READ_BUFFER))


class Stream(Protocol):
    """What a relay sends through: a stream in a channel (an opening one too), or a direct connection."""

    def send(self, data: bytes | memoryview) -> None: ...

    def end(self) -> None: ...

    def reset(self, code: int, reason: str = "") -> None: ...

    def acknowledge(self, nbytes: int) -> None: ...

    def pending(self) -> int: ...


class Relay(asyncio.BufferedProtocol, Endpoint):
    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None  # the TCP side, once connected
        self.stream: Stream | None = None  # a stream in a channel (an opening one until it is answered)
        self.backlog: list[bytes] = []  # TCP bytes that arrived before the stream was ready
        self.early: list[bytes] = []  # stream bytes (early data) that arrived before the TCP side was
        self.sent_end = False  # TCP FIN passed on as stream END
        self.got_end = False  # stream END passed on as TCP FIN
        self.done = False
        self._write_paused = False
        self._read_paused = False
        self._unacked = 0

    @property
    def transport(self) -> asyncio.Transport:
        """The TCP side. A relay made before its connection (the exit's, a service's) is given
        its stream only once connected, so all that writes or reads runs after connection_made."""
        assert self._transport is not None, "the relay's TCP connection is not made yet"
        return self._transport

    @property
    def connected(self) -> bool:
        return self._transport is not None

    # --------------------------------------------------------- stream ready

    def attach(self, stream: Stream) -> None:
        """The stream is open: start relaying, first whatever TCP already sent."""
        self.stream = stream
        if self.backlog:
            stream.send(b"".join(self.backlog))
            self.backlog = []
        early, self.early = self.early, []
        for data in early:
            self.on_data(data)
        if self.sent_end:
            stream.end()
        self._check_pending()

    def answered(self, stream: Stream) -> None:
        """The stream, attached while it was opening, was accepted: go on through `stream`."""
        self.stream = stream
        self._check_pending()

    # -------------------------------------------------------------- TCP side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP connection's transport is an asyncio.Transport; asyncio types the callback with its base.
        self._transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        # A reused buffer: fresh 256 KiB bytes per read cost more in malloc and
        # page faults than the copy the mux makes anyway.
        return _READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_READ_BUFFER[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        """Bytes from TCP; `data` may be a view of the reused buffer, so keep none of it."""
        if self.stream is None:
            self.backlog.append(bytes(data))
            self._pause_reading()
            return
        self.stream.send(data)
        self._check_pending()

    def eof_received(self) -> bool:
        self.sent_end = True
        if self.stream is not None:
            self.stream.end()
            self._maybe_done()
        return True  # keep the socket open for the other direction

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done:
            self.done = True
            if self.stream is not None and not (self.sent_end and self.got_end):
                self.stream.reset(ErrorCode.CANCEL, "the TCP connection closed")
            self.stream_gone()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._unacked and self.stream is not None:
            self.stream.acknowledge(self._unacked)
            self._unacked = 0

    # ----------------------------------------------------------- stream side

    def on_data(self, data: bytes) -> None:
        if self.stream is None:  # early data, while the exit or service still connects
            self.early.append(data)
            return
        self.transport.write(data)
        if self._write_paused:
            self._unacked += len(data)
        else:
            self.stream.acknowledge(len(data))

    def on_end(self) -> None:
        self.got_end = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._maybe_done()

    def on_reset(self, code: int, reason: str) -> None:
        log.debug("stream reset: %s %s", code, reason)
        self.done = True
        if self._transport is not None:
            abort_with_rst(self._transport)
        self.stream_gone()

    def on_window(self, increment: int, pending: int) -> None:
        if pending == 0 and self._read_paused:
            self._resume_reading()

    def stream_gone(self) -> None:
        """Hook: the stream is over (subclasses count it)."""

    # --------------------------------------------------------------- helpers

    def _check_pending(self) -> None:
        assert self.stream is not None  # called with a stream attached
        if self.stream.pending():
            self._pause_reading()
        elif self._read_paused:
            self._resume_reading()

    def _resume_reading(self) -> None:
        self._read_paused = False
        if not self.held():
            self.transport.resume_reading()

    def held(self) -> bool:
        """Hook: True while something else (a rate limit) keeps the socket paused."""
        return False

    def _pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    def _maybe_done(self) -> None:
        if self.sent_end and self.got_end and not self.done:
            self.done = True
            self.transport.close()
            self.stream_gone()


class MeteredRelay(Relay):
    """A relay whose bytes are counted both ways and slowed by a rate: the exit's, and a device's at the hub.

    `carried(nbytes)` counts bytes and says how long to wait before
    carrying more. From the socket, reading pauses that long; from the
    stream, the bytes are written at once and their credit goes back that
    much later (as a paused socket's would: not while the socket does not
    drain), so the far side sends no faster than the rate.
    """

    def __init__(self) -> None:
        super().__init__()
        self._throttled = False  # the rate holds the socket paused
        self._held = 0  # credit held back from the stream while throttled

    def carried(self, nbytes: int) -> float:
        raise NotImplementedError

    def held(self) -> bool:
        return self._throttled

    def data_received(self, data: bytes | memoryview) -> None:  # socket → stream
        super().data_received(data)
        delay = self.carried(len(data))
        if delay > 0 and self.connected and not self._throttled:
            self._throttled = True
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(delay, self._unthrottle)

    def _unthrottle(self) -> None:
        self._throttled = False
        if not self.done and not self._read_paused:
            self.transport.resume_reading()

    def on_data(self, data: bytes) -> None:  # stream → socket
        if self.stream is None:
            return super().on_data(data)  # early data: kept, and counted when it is written
        delay = self.carried(len(data))
        if delay <= 0:
            return super().on_data(data)
        self.transport.write(data)
        self._held += len(data)
        asyncio.get_running_loop().call_later(delay, self._release)

    def _release(self) -> None:
        if self._held and self.stream is not None and not self.done:
            if self._write_paused:  # the socket does not drain: its credit waits with the rest
                self._unacked += self._held
            else:
                self.stream.acknowledge(self._held)
        self._held = 0

