"""Stream handles: what a relay writes to, plain or sealed end to end.

A relay never talks to the link directly; it holds a handle with send, end,
reset, acknowledge and pending. `StreamRef` passes bytes straight to the
link. `Channel` seals them into Noise transport messages and, as the link's
endpoint for the stream, opens what arrives before handing the plaintext on.
Credit stays exact: the relay acknowledges the plaintext it has written and
the channel acknowledges the framing and tags itself, so every stream byte
is given back once.
"""

from __future__ import annotations

import logging

from ladder.protocol.channel import ChannelError, SealedStream

from .connection import Endpoint, Link

log = logging.getLogger(__name__)


class StreamRef:
    __slots__ = ("link", "sid")

    def __init__(self, link: Link, sid: int):
        self.link = link
        self.sid = sid

    def send(self, data: bytes | memoryview) -> None:
        self.link.send(self.sid, data)

    def end(self) -> None:
        self.link.end(self.sid)

    def reset(self, code: int, reason: str = "") -> None:
        self.link.reset(self.sid, code, reason)

    def acknowledge(self, nbytes: int) -> None:
        self.link.acknowledge(self.sid, nbytes)

    def pending(self) -> int:
        return self.link.pending(self.sid)


class Channel(StreamRef, Endpoint):
    """An end-to-end encrypted stream; the hub in between sees only ciphertext."""

    __slots__ = ("sealed", "inner")

    def __init__(self, link: Link, sid: int, sealed: SealedStream, inner: Endpoint):
        super().__init__(link, sid)
        self.sealed = sealed
        self.inner = inner

    def send(self, data: bytes | memoryview) -> None:
        self.link.send(self.sid, self.sealed.seal(data))

    # Endpoint: the link delivers ciphertext here.

    def on_data(self, data: bytes) -> None:
        try:
            plaintexts, overhead = self.sealed.open(data)
        except ChannelError as exc:
            log.warning("stream %d: %s; resetting it", self.sid, exc)
            self.link.reset(self.sid, exc.code, "channel integrity failure")
            self.inner.on_reset(exc.code, f"end-to-end channel broken: {exc}")
            return
        if overhead:
            self.link.acknowledge(self.sid, overhead)
        for plaintext in plaintexts:
            self.inner.on_data(plaintext)

    def on_end(self) -> None:
        self.inner.on_end()

    def on_reset(self, code: int, reason: str) -> None:
        self.inner.on_reset(code, reason)

    def on_window(self, increment: int, pending: int) -> None:
        self.inner.on_window(increment, pending)

