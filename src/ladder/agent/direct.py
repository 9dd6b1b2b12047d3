"""Direct connections: what a `direct` rule sends past the network.

`DirectStream` is a TCP connection to the destination that a proxy
connection's Relay uses exactly like a channel (send, end, reset,
acknowledge, pending): the relay needs no second code path, and
backpressure still holds both ways.
"""

from __future__ import annotations

import asyncio

from ladder.link.connection import Endpoint
from ladder.protocol.errors import ErrorCode

WINDOW = 256 * 1024  # bytes read from the destination and not yet written to the client
CONNECT_TIMEOUT = 10.0


class DirectStream(asyncio.Protocol):
    # Set by connection_made, before connect_direct hands the stream to anyone.
    transport: asyncio.Transport

    def __init__(self, relay: Endpoint):
        self.relay = relay
        self.unacked = 0
        self.paused = False
        self.write_paused = False
        self.eof = False  # the destination ended its direction
        self.ended = False  # we ended ours

    # --- what the relay calls (the stream API)

    def send(self, data: bytes | memoryview) -> None:
        # The relay hands over a view of its shared read buffer, and a transport
        # keeps what it cannot send at once as given (uvloop does not copy it):
        # so a copy, or the next read would overwrite the bytes still queued.
        self.transport.write(bytes(data))

    def end(self) -> None:
        """Pass the client's half-close on; once both directions are over, close.

        Left half-closed both ways, the connection would stay open with
        nothing referring to it but its relay (and uvloop frees a transport
        that nobody holds with its shutdown pending: a heap corruption).
        """
        self.ended = True
        if self.eof:
            self.transport.close()
        elif self.transport.can_write_eof():
            self.transport.write_eof()

    def reset(self, code: int, reason: str = "") -> None:
        self.transport.abort()

    def acknowledge(self, nbytes: int) -> None:
        self.unacked -= nbytes
        if self.paused and self.unacked < WINDOW:
            self.paused = False
            self.transport.resume_reading()

    def pending(self) -> int:
        """Non-zero while the destination's socket buffer is over its high-water mark."""
        return 1 if self.write_paused else 0

    # --- the destination's socket

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP connection's transport is an asyncio.Transport; asyncio types the callback with its base.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.unacked += len(data)
        if self.unacked >= WINDOW and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self.relay.on_data(data)

    def eof_received(self) -> bool:
        self.eof = True
        self.relay.on_end()
        return not self.ended  # open while the client's direction still carries bytes

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.relay.on_reset(ErrorCode.CANCEL, f"the destination's connection failed: {exc}")
        elif not self.eof:
            self.eof = True
            self.relay.on_end()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.relay.on_window(0, 0)


async def connect_direct(host: str, port: int, relay: Endpoint) -> DirectStream:
    loop = asyncio.get_running_loop()
    _, stream = await asyncio.wait_for(loop.create_connection(lambda: DirectStream(relay), host, port),
                                       CONNECT_TIMEOUT)
    return stream
