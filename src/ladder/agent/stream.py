"""One connection through the network as an asyncio transport, for code that wants streams, not a socket.

`ChannelTransport` is both sides of the splice a proxy connection's
`Relay` makes, with no TCP socket in between: towards asyncio it is the
transport of a `StreamReaderProtocol` (so `asyncio.StreamReader` and
`StreamWriter` work on it unchanged); towards the link it is the stream's
`Endpoint`. Backpressure holds both ways as in the relay: while the
stream's credit is used up the writer is paused (`drain` waits), and
while the reader's buffer is full (it pauses reading) the stream's credit
is held back. Until the stream is answered it is what `ChannelPool.open`
opens for, and `opened` fails with the refusal if there is one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ladder.link.connection import Endpoint
from ladder.protocol.errors import ErrorCode

from .exit import TargetRefused


class ChannelTransport(asyncio.Transport, Endpoint):
    """A stream of a channel, seen by asyncio as a connected socket's transport."""

    def __init__(self, protocol: asyncio.Protocol, peer: tuple[str, int],
                 on_done: Callable[[ChannelTransport], None]):
        """`peer` is the target, as `get_extra_info("peername")` gives it.

        `on_done` is told once the connection is over.
        """
        super().__init__({"peername": peer})
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.stream: Any = None  # what is written to: the opening stream, then the answered one
        self.done = False  # over, or no longer wanted (the opener resets it if it is answered after all)
        self.exit_id: str | None = None  # the exit carrying it, set by the opener (for the exits' load)
        self._protocol = protocol
        self._on_done = on_done
        self._reading = True
        self._unacked = 0  # credit held back while the reader is full
        self._write_paused = False
        self._sent_end = self._got_end = False

    def abandon(self) -> None:
        """The caller stopped waiting for the answer: a stream answered later is reset."""
        self.done = True

    # ------------------------------------------------- what the opener calls

    def attach(self, stream: Any) -> None:
        self.stream = stream  # the opening stream: the caller has nothing to send before the answer

    def answered(self, stream: Any) -> None:
        self.stream = stream

    def on_accepted(self, payload: bytes, window: int) -> None:
        self._protocol.connection_made(self)
        self.opened.set_result(None)

    def on_refused(self, code: int, reason: str) -> None:
        self.done = True
        self.opened.set_exception(TargetRefused(code, reason))

    # ------------------------------------------------------- the stream's side

    def on_data(self, data: bytes) -> None:
        if self.done:
            return
        self._protocol.data_received(data)
        if self._reading:
            self.stream.acknowledge(len(data))
        else:
            self._unacked += len(data)

    def on_end(self) -> None:
        self._got_end = True
        if not self._protocol.eof_received():
            self.close()
        self._maybe_over()

    def on_reset(self, code: int, reason: str) -> None:
        self._over(ConnectionResetError(f"the stream was reset: {reason}"))

    def on_window(self, increment: int, pending: int) -> None:
        if pending == 0 and self._write_paused:
            self._write_paused = False
            self._protocol.resume_writing()

    # ------------------------------------------------------- asyncio's side

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._sent_end:
            raise RuntimeError("write() after write_eof()")
        if self.done:
            return  # as a closed socket's transport: the bytes have nowhere to go
        self.stream.send(bytes(data))
        if not self._write_paused and self.stream.pending():
            self._write_paused = True
            self._protocol.pause_writing()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if not self.done and not self._sent_end:
            self._sent_end = True
            self.stream.end()
            self._maybe_over()

    def get_write_buffer_size(self) -> int:
        return 0 if self.done else self.stream.pending()

    def is_closing(self) -> bool:
        return self.done

    def close(self) -> None:
        """As a TCP socket closes: a clean end once the far side has ended too, else a reset."""
        if self.done:
            return
        if self._got_end:
            self.write_eof()
            return
        self.abort()

    def abort(self) -> None:
        if not self.done:
            self.stream.reset(ErrorCode.CANCEL, "the stream was closed")
            self._over(None)

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        self._reading = True
        if self._unacked and not self.done:
            self.stream.acknowledge(self._unacked)
            self._unacked = 0

    def is_reading(self) -> bool:
        return self._reading

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    # --------------------------------------------------------------- inside

    def _maybe_over(self) -> None:
        if self._sent_end and self._got_end:
            self._over(None)

    def _over(self, exc: Exception | None) -> None:
        if self.done:
            return
        self.done = True
        self._on_done(self)
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, exc)
