"""The switch: splices a stream on one port's link onto a new stream on another port's link.

Which port a stream goes to is the routing table's choice (ports.py); the
switch joins any two links.

The hub forwards frames; it never reads what they carry. Flow control runs
end to end: the hub grants the opener exactly the window the far end
granted, and gives credit back to one side only when the other side's
WINDOW frames arrive (the same increments, so a window the far member grows
grows here too), so the hub holds at most one window per direction per
stream however slowly either end reads.
"""

from __future__ import annotations

from collections.abc import Callable

from ladder.link.connection import Endpoint, Link
from ladder.protocol.errors import ErrorCode
from ladder.protocol.mux import StreamState


class SpliceEnd(Endpoint):
    """One side of a splice: what arrives here leaves on `other`."""

    __slots__ = ("link", "sid", "other", "opener", "accepted", "on_close", "on_failed", "carried")

    # The stream on `link`: splice() sets it, the far end's as soon as open_stream returns,
    # before any frame can reach this end.
    sid: int

    def __init__(self, link: Link, opener: bool):
        self.link = link
        self.other: SpliceEnd = self
        self.opener = opener  # the member who asked for the stream
        self.accepted = False
        self.on_close: Callable[[], None] | None = None
        self.on_failed: Callable[[], None] | None = None  # the far end: its route did not answer
        self.carried = 0  # bytes that arrived here and left on `other` (what receipts are checked by)

    def on_data(self, data: bytes) -> None:
        self.carried += len(data)
        self.other.link.send(self.other.sid, data)

    def on_window(self, increment: int, pending: int) -> None:
        self.other.link.credit(self.other.sid, increment)  # as given, growth included

    def on_end(self) -> None:
        self.other.link.end(self.other.sid)
        self._maybe_closed()

    def on_reset(self, code: int, reason: str) -> None:
        other = self.other
        if code == ErrorCode.LINK_LOST:
            reason = "the far end's link to the hub went down"
        if other.opener and not other.accepted:  # it still waits for an answer
            other.link.refuse(other.sid, ErrorCode.NO_ROUTE if code == ErrorCode.LINK_LOST else code, reason)
        else:
            other.link.reset(other.sid, code, reason)
        self._closed()

    # The exit side's answer to the open the hub forwarded:

    def on_accepted(self, payload: bytes, window: int) -> None:
        user = self.other
        self.accepted = user.accepted = True
        user.link.accept(user.sid, user, payload, window)

    def on_refused(self, code: int, reason: str) -> None:
        if code == ErrorCode.NO_ROUTE and self.on_failed is not None:
            self.on_failed()  # a hub further on has no route: the next open tries another
        self.other.link.refuse(self.other.sid, code, reason)
        self._closed()

    def unanswered(self) -> None:
        """The far end has not answered in time (a hub on the way drops streams): give up on it."""
        if self.accepted or self.on_close is None:
            return
        if self.on_failed is not None:
            self.on_failed()
        self.link.reset(self.sid, ErrorCode.NO_ROUTE, "no answer")
        self.other.link.refuse(self.other.sid, ErrorCode.NO_ROUTE, "the route to that member did not answer")
        self._closed()

    def _maybe_closed(self) -> None:
        if self.link.stream_state(self.sid) is StreamState.CLOSED:
            self._closed()

    def _closed(self) -> None:
        if self.on_close is not None:
            callback, self.on_close = self.on_close, None
            self.other.on_close = None
            callback()


def splice(opener: Link, opener_sid: int, opener_window: int, far: Link, payload: bytes,
           on_close: Callable[[], None], on_failed: Callable[[], None] | None = None,
           answer_within: float | None = None) -> tuple[SpliceEnd, SpliceEnd]:
    """Open a stream on `far` for the opener's pending stream and join the two.

    Through a peer hub, `on_failed` hears that the route failed: a hub on the way
    had none, or nothing answered within `answer_within` seconds (the opener is
    refused then, so its agent tries again, and the next open goes another way).
    Returns the opener's end and the far one.
    """
    a, b = SpliceEnd(opener, opener=True), SpliceEnd(far, opener=False)
    a.sid = opener_sid
    a.other, b.other = b, a
    a.on_close = b.on_close = on_close
    b.on_failed = on_failed
    opener.claim(opener_sid, a)  # so a reset while the far end answers reaches us
    b.sid = far.open_stream(payload, b, window=opener_window)
    if answer_within is not None:
        far.loop.call_later(answer_within, b.unanswered)
    return a, b
