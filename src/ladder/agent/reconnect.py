"""When to dial the hub again: jittered exponential backoff, cut short when the network changes.

A dropped link is dialled again after a delay that doubles from
BACKOFF_MIN up to BACKOFF_MAX (a hub back from an outage is used within
seconds), each drawn between half and all of it so that members dropped
together do not come back in one burst; a link that lasted GOOD_LINK
seconds starts the doubling over. When this machine's links, addresses or
routes change (Wi-Fi joined, a laptop woken, a cable plugged in) the wait
ends at once: on Linux a netlink route socket says so, for free.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)
BACKOFF_MIN, BACKOFF_MAX = 0.5, 4.0
GOOD_LINK = 10.0  # a link up this long was not a flap: the next wait is short again
NETWORK_SETTLE = 0.5  # after a network change, dial this soon: addresses and routes come in bursts


class Backoff:
    """The wait before each dial; `clock` gives monotonic seconds, `rng` draws the jitter."""

    def __init__(self, clock: Callable[[], float], rng: random.Random):
        self._clock = clock
        self._rng = rng
        self._next = BACKOFF_MIN
        self._dialled = clock()

    def dialling(self) -> None:
        """A dial starts now: how long its link lasts decides the next wait."""
        self._dialled = self._clock()

    def delay(self) -> float:
        """Seconds to wait before the next dial, now that the last link (or dial) is over."""
        if self._clock() - self._dialled > GOOD_LINK:
            self._next = BACKOFF_MIN
        delay = self._next * self._rng.uniform(0.5, 1.0)
        self._next = min(self._next * 2, BACKOFF_MAX)
        return delay


async def pause(delay: float, network_changed: asyncio.Event) -> None:
    """Wait `delay` before dialling again, or only a moment if the network changes meanwhile."""
    log.info("reconnecting in %.1f s", delay)
    try:
        await asyncio.wait_for(network_changed.wait(), max(0.0, delay - NETWORK_SETTLE))
    except TimeoutError:
        pass
    else:
        log.info("the network changed: dialling the hub now")
    await asyncio.sleep(min(delay, NETWORK_SETTLE))


# Netlink route multicast groups (linux/rtnetlink.h): links, IPv4/IPv6 addresses and routes.
_RTMGRP = 0x1 | 0x10 | 0x40 | 0x100 | 0x400


class NetworkWatch:
    """Calls `on_change` whenever this machine's links, addresses or routes change (Linux).

    A netlink route socket is the kernel's own notice (what `ip monitor`
    reads): no polling, nothing sent. Where there is none, `start` returns
    None and the capped backoff alone brings the link back.
    """

    def __init__(self, sock: socket.socket, on_change: Callable[[], None]):
        self.sock, self.on_change = sock, on_change
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    def start(cls, on_change: Callable[[], None]) -> NetworkWatch | None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                 socket.NETLINK_ROUTE)
        except (AttributeError, OSError):
            return None
        try:
            sock.bind((0, _RTMGRP))
        except OSError:
            sock.close()
            return None
        return cls(sock, on_change)

    def _readable(self) -> None:
        try:
            while self.sock.recv(65536):
                pass
        except OSError:  # EAGAIN: all read; ENOBUFS: more changes than the buffer held, still a change
            pass
        self.on_change()

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
