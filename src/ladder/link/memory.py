"""Two links joined in memory: a connection within one process, with no socket under it.

The hub acts as the agent of a device that runs none: the device's side (a
channel pool under the device's identity) and the hub's side (the device's
port) are two real `Link`s, so everything between them is the ordinary
link protocol, and the switch, the pool and their flow control work as
they do over TLS. Each `MemoryTransport` hands what its link writes to the
other link once per loop turn (never from inside the writer's own call, so
neither mux is re-entered), and holds it while the reader has paused
reading; the muxes' windows bound what can pile up.
"""

from __future__ import annotations

import asyncio

from .connection import Link


class MemoryTransport(asyncio.Transport):
    """One direction's writer: what its link writes is delivered to `peer`'s link."""

    def __init__(self, loop: asyncio.AbstractEventLoop, reader: Link):
        super().__init__()
        self.loop = loop
        self.reader = reader  # the link that receives what is written here
        self.peer: MemoryTransport  # the other direction, set by link_pair
        self._queued: list[bytes] = []
        self._delivery: asyncio.Handle | None = None
        self._closing = False
        self._reading_paused = False  # our own link paused reading: the peer holds its bytes for it
        self._lost = False

    # -- what the writing link calls --------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        self._queued.append(bytes(data))
        self._deliver_soon()

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Deliver what was written, then end both links' connections."""
        if not self._closing:
            self._closing = True
            self._deliver_soon()

    def abort(self) -> None:
        self._closing = True
        self._queued = []
        self._end()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass  # nothing buffers here beyond one loop turn and what the peer's pause holds

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self._queued))

    def pause_reading(self) -> None:
        self.peer._reading_paused_by_reader(True)

    def resume_reading(self) -> None:
        self.peer._reading_paused_by_reader(False)

    def is_reading(self) -> bool:
        return not self.peer._reading_paused

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    # -- delivery ----------------------------------------------------------

    def _reading_paused_by_reader(self, paused: bool) -> None:
        self._reading_paused = paused
        if not paused:
            self._deliver_soon()

    def _deliver_soon(self) -> None:
        if self._delivery is None and not self._lost:
            self._delivery = self.loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        self._delivery = None
        if self._queued and not self._reading_paused:
            data, self._queued = b"".join(self._queued), []
            self.reader.data_received(data)
        if self._closing and not self._queued:
            self._end()

    def _end(self) -> None:
        """The connection is over for both links, as a closed socket is for both ends (told on the next
        turn, as asyncio tells a protocol, so a link that aborts sees its own reason first)."""
        for transport in (self, self.peer):
            if not transport._lost:
                transport._lost = True
                transport._closing = True
                if transport._delivery is not None:
                    transport._delivery.cancel()
                self.loop.call_soon(transport.reader.connection_lost, None)


def link_pair(first: Link, second: Link) -> None:
    """Connect two links made but not yet connected, each writing to the other."""
    loop = asyncio.get_running_loop()
    to_second, to_first = MemoryTransport(loop, second), MemoryTransport(loop, first)
    to_second.peer, to_first.peer = to_first, to_second
    first.connection_made(to_second)
    second.connection_made(to_first)
