"""Channels: a link inside one stream of the hub link, sealed end to end.

A member keeps one channel to each exit or publisher it uses. The channel
is one stream through the hub, sealed with Noise (protocol/channel.py);
inside it runs a second `Link`, whose streams carry the member's
connections. So a new connection costs one OPEN frame inside the channel,
not a handshake, and the hub sees one stream per pair of members: never a
target, nor when a connection starts or how many bytes it carries.

`Channel` is both the hub stream's endpoint (ciphertext in) and the nested
link's transport (plaintext out). Flow control stays per connection: the
nested link's streams have their own windows, given back as relays drain.
The hub stream's credit goes back as soon as a message is opened, since
what it carries is already bounded by those windows. Towards the hub the
channel acts as a transport with a buffer: once CHANNEL_WRITE_HIGH bytes
wait for the hub stream's credit, the nested link is paused (its mux then
bounds the answers a far member makes it queue without reading, and drops
the nested link past its cap) until credit comes back.

A channel counts the nested bytes it writes and reads (`frames_out`,
`frames_in`), which the credit receipts pace by: the opener's side hears
`on_received` after each arrival, and the answering side may be held to an
`allowance` of nested bytes written, past which the nested link is paused
as for the hub stream's credit, until a receipt moves it on (agent/credits.py).

`StreamRef` is the handle a relay writes to: one stream of a link.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ladder.protocol.channel import CHANNEL_REQUEST, FIRST_BYTES_MAX, ChannelError, Initiator, SealedStream
from ladder.protocol.errors import ErrorCode
from ladder.protocol.messages import encode_route
from ladder.protocol.mux import DEFAULT_WINDOW
from ladder.protocol.receipts import channel_id

from .connection import Endpoint, Link, LinkOwner

log = logging.getLogger(__name__)

# Credit of the hub stream under a channel, at first and at most: it grows as
# fast as the member's link to the hub delivers (mux autotuning), so the hub
# holds a lot in flight only for a member that takes it away quickly.
CHANNEL_WINDOW = 4 * 1024 * 1024
CHANNEL_MAX_WINDOW = 32 * 1024 * 1024
# The same for each connection in a channel (they start at the mux's 2 MiB).
STREAM_MAX_WINDOW = 16 * 1024 * 1024
# A member's connections: what their windows start with and may grow to.
STREAM_WINDOWS = (DEFAULT_WINDOW, STREAM_MAX_WINDOW)
# What may wait for the hub stream's credit before the nested link is paused.
CHANNEL_WRITE_HIGH = 1024 * 1024
HANDSHAKE_TIMEOUT = 30.0


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


class Channel(Endpoint):
    """One sealed stream of `link` and the nested link it carries (`inner`)."""

    def __init__(self, link: Link, owner: LinkOwner | None, *, opener: bool, label: str,
                 windows: tuple[int, int] = STREAM_WINDOWS):
        """`windows`: what the nested link's streams we receive on start with and may grow to."""
        self.link = link  # the hub link
        self.sid: int | None = None
        self.sealed: SealedStream | None = None
        self.closed = False
        self.on_ready: Callable[[], None] | None = None  # called once the handshake has finished (opener)
        self.on_close: Callable[[Channel], None] | None = None  # called once, when the channel is gone
        self.on_received: Callable[[Channel], None] | None = None  # after each arrival of nested bytes
        self.id = ""  # receipts.channel_id of its Noise message 1, once that exists
        self.frames_in = self.frames_out = 0  # nested bytes read and written
        self.allowance: int | None = None  # nested bytes it may write in all; None: no limit
        self._initiator: Initiator | None = None
        self.peer = ""  # the member at the far end: the one dialled, or the opener
        self._held: list[bytes] = []  # nested bytes written before the handshake finished
        self._paused = False  # the nested link was told to stop writing: hub credit or allowance
        self._timer: asyncio.TimerHandle | None = None
        self.inner = Link(owner, client=opener, label=label, parent=link, window=windows[0],
                          max_window=windows[1])
        self.inner.connection_made(self)

    @classmethod
    def dial(cls, link: Link, initiator: Initiator, member_id: str, label: str,
             windows: tuple[int, int] = STREAM_WINDOWS) -> Channel:
        """A channel to `member_id`; its stream opens with the nested link's first bytes."""
        channel = cls(link, None, opener=True, label=label, windows=windows)
        channel._initiator, channel.peer = initiator, member_id
        return channel

    @classmethod
    def answer(cls, link: Link, sid: int, message1: bytes, message2: bytes, sealed: SealedStream,
               first: bytes, owner: LinkOwner, label: str) -> Channel:
        """Accept another member's channel; `first` is what rode in its message 1."""
        channel = cls(link, owner, opener=False, label=label)
        channel.sid, channel.sealed, channel.id = sid, sealed, channel_id(message1)
        link.accept(sid, channel, message2, window=CHANNEL_WINDOW)
        if first:
            channel.frames_in += len(first)  # as the opener counted them out: receipts compare the two
            channel.inner.data_received(first)
        return channel

    # ------------------------------------------- transport of the nested link

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self.frames_out += len(data)
        if self.sealed is not None:
            assert self.sid is not None  # sealed once its stream is open
            self.link.send(self.sid, self.sealed.seal(data))
            if not self._paused and self._held_back():
                self._paused = True
                self.inner.pause_writing()
        elif self.sid is None:
            self._open(data[:FIRST_BYTES_MAX])
            if len(data) > FIRST_BYTES_MAX:
                self._held.append(data[FIRST_BYTES_MAX:])
        else:
            self._held.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        """The nested link said GOAWAY: end the stream after what is queued."""
        if not self.closed:
            self.closed = True
            if self.sid is not None:
                self.link.end(self.sid)
            self._gone()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            if self.sid is not None:
                self.link.reset(self.sid, ErrorCode.CANCEL, "channel closed")
            self._gone()

    # ------------------------------------------------ endpoint on the hub link

    def on_accepted(self, payload: bytes, window: int) -> None:
        assert self._timer is not None and self._initiator is not None  # _open set both
        self._timer.cancel()
        try:
            self.sealed = self._initiator.finish(payload)
        except ChannelError as exc:
            return self._broken(ErrorCode.FORBIDDEN, f"{exc}: the hub may be impersonating the exit")
        self._initiator = None
        if self.on_ready is not None:
            self.on_ready()
        if self._held:
            held, self._held = b"".join(self._held), []
            self.write(held)

    def on_data(self, data: bytes) -> None:
        if self.closed:
            return
        assert self.sealed is not None and self.sid is not None  # data comes once accepted
        try:
            plaintexts, _ = self.sealed.open(data)
        except ChannelError as exc:
            return self._broken(exc.code, f"end-to-end channel broken: {exc}")
        self.link.acknowledge(self.sid, len(data))
        for plaintext in plaintexts:
            self.frames_in += len(plaintext)
            self.inner.data_received(plaintext)
        if self.on_received is not None and not self.closed:
            self.on_received(self)

    def on_window(self, increment: int, pending: int) -> None:
        self._maybe_resume()

    def allow(self, allowance: int) -> None:
        """Let the nested link write up to `allowance` nested bytes in all (a receipt came)."""
        self.allowance = allowance
        self._maybe_resume()

    def _held_back(self) -> bool:
        assert self.sid is not None
        return (self.link.pending(self.sid) > CHANNEL_WRITE_HIGH
                or (self.allowance is not None and self.frames_out >= self.allowance))

    def _maybe_resume(self) -> None:
        if self._paused and not self.closed and not self._held_back():
            self._paused = False
            self.inner.resume_writing()

    def on_end(self) -> None:
        if not self.closed and self.sid is not None:
            self.link.end(self.sid)
        self.on_reset(ErrorCode.NO_ERROR, "the far end closed the channel")

    def on_reset(self, code: int, reason: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self.closed:
            self.closed = True
            self.inner.abort(reason, code)
            self._gone()

    on_refused = on_reset

    # ---------------------------------------------------------------- inside

    def _open(self, first: bytes) -> None:
        if not self.link.can_open():
            return self.on_reset(ErrorCode.NO_ROUTE, "not connected to the hub")
        assert self._initiator is not None  # the opener's, from dial()
        message1 = self._initiator.first_message(CHANNEL_REQUEST + first)  # targets travel encrypted
        self.id = channel_id(message1)
        self.sid = self.link.open_stream(encode_route(self.peer, message1), self, window=CHANNEL_WINDOW)
        self._timer = self.link.loop.call_later(HANDSHAKE_TIMEOUT, self._broken, ErrorCode.TARGET_TIMEOUT,
                                                f"no answer from the member within {HANDSHAKE_TIMEOUT:g} s")

    def _broken(self, code: int, reason: str) -> None:
        """Reset the hub stream (its reason crosses the hub in clear) and close the channel."""
        log.warning("%s: %s; closing it", self.inner.label, reason)
        if self.sid is not None:
            self.link.reset(self.sid, code, "channel failure")
        self.on_reset(code, reason)

    def _gone(self) -> None:
        if self.on_close is not None:
            callback, self.on_close = self.on_close, None
            callback(self)
