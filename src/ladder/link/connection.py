"""Drives one Mux over one real connection: the thin asyncio adapter.

`Link` is an asyncio Protocol. Bytes from the transport go into the mux;
each event goes to the `Endpoint` that owns the stream, or, for new streams,
control messages and the end of the link, to the link's `LinkOwner` (a role:
the hub's member port, an agent). Control messages are typed at this edge
(protocol/control.py): `send_control` encodes one, and each one received is
decoded once before its owner sees it; a malformed one is the peer's
protocol error and closes this link. Whatever the mux wants to send is
written once per loop turn, so many small frames become one TLS write.
One timer per link drives keepalives and dead-peer detection.

The transport's backpressure reaches the mux (pause_writing): while the
mux's backlog of answers the peer does not read is too large, the link stops
reading the peer (`Mux.reading_paused`), and past the mux's cap it drops the
link. A closed link's transport gets CLOSE_LINGER seconds to hand its last
bytes to a peer that may never read them, then it is aborted, so nothing of
a closed link stays in memory.

A link can be given a budget of control messages (`control_rate`, the
hub's side of members' links): each message costs a token, and one more
per CONTROL_TOKEN_BYTES of it; the bucket holds CONTROL_BURST. A message
that finds the bucket empty waits, with every event after it in the order
they came, and the link stops reading the peer until the bucket has
refilled. Control messages are dear to the receiver (JSON, signatures, a
line in the log) and cheap to send, so without it one member repeating
`share-status` at link speed took the hub's whole loop from the others'
downloads; with it a flood costs the hub a fixed share, and the flooder
only waits, as a slow reader would.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from typing import Protocol, cast

from ladder.protocol import control
from ladder.protocol import events as ev
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.mux import DEAD_AFTER, DEFAULT_WINDOW, KEEPALIVE_INTERVAL, Mux, StreamState

log = logging.getLogger(__name__)


class Endpoint:
    """Owner of one stream on a link; every callback is optional."""

    __slots__ = ()

    def on_accepted(self, payload: bytes, window: int) -> None: ...

    def on_refused(self, code: int, reason: str) -> None: ...

    def on_data(self, data: bytes) -> None: ...

    def on_end(self) -> None: ...

    def on_reset(self, code: int, reason: str) -> None: ...

    def on_window(self, increment: int, pending: int) -> None: ...


class Transport(Protocol):
    """What a link writes to: its connection's asyncio transport, or the channel it runs inside."""

    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class LinkOwner(Protocol):
    def stream_opened(self, link: Link, stream_id: int, payload: bytes, window: int) -> None: ...

    def control_received(self, link: Link, message: control.ControlMessage) -> None: ...

    def link_closed(self, link: Link, reason: str) -> None: ...


RECEIVE_BUFFER = 256 * 1024
# What the transport may hold unsent before the link stops handing it more
# (pause_writing); the rest waits in the mux, as plain bytes. Without a limit a
# slow peer made TLS encrypt a whole window ahead into an OpenSSL buffer that
# never shrinks again.
WRITE_BUFFER_HIGH = 1024 * 1024
# TLS decrypts into one buffer shared by every link of the process: the frame
# decoder copies each payload out (and the unfinished tail) before it returns,
# so no link keeps a view into it. One per link cost a hub 256 KiB per member.
_RECEIVE_BUFFER = memoryview(bytearray(RECEIVE_BUFFER))
WRITE_CHUNK = 16 * 16384  # sixteen full TLS records a write: fewer syscalls, no huge buffer
CLOSE_LINGER = 5.0
CONTROL_BURST = 500.0  # tokens a link's control budget holds (a burst of receipts from a busy exit)
CONTROL_TOKEN_BYTES = 512  # a control message costs a token and one more per this many of its bytes


class Link(asyncio.BufferedProtocol):
    """One mux over one connection: a member's TLS link to the hub, or a channel inside one.

    A channel's link runs inside a stream of its `parent` (link/channel.py):
    the parent already carries keepalives and notices a dead peer, so it has
    none, and the parent's flush writes what it has queued first, in the same
    loop turn.
    """

    def __init__(self, owner: LinkOwner | None, *, client: bool, label: str = "link",
                 parent: Link | None = None, window: int = DEFAULT_WINDOW, max_window: int | None = None,
                 keepalive: float = KEEPALIVE_INTERVAL, dead_after: float = DEAD_AFTER,
                 control_rate: float | None = None):
        """`window`: what streams this side receives on start with; `max_window`: let those windows grow
        up to it (mux autotuning).

        A member's side grows them, so a fast stream over a long path gets the
        credit it needs; the hub's side never does: it passes on the credit
        the far member gave. A link between peer hubs pings more often and is
        given up sooner (`keepalive`, `dead_after`), so that routes around a
        dead hub are found in seconds. `control_rate`: tokens a second of the
        control budget (None: none), for links whose peer must not take the
        receiver's loop.
        """
        self.owner = owner
        self.label = label
        self.loop = asyncio.get_running_loop()
        nested = parent is not None  # no timers of its own: the parent's cover the connection
        self.mux = Mux(client=client, now=self.loop.time(), window=window, max_window=max_window,
                       keepalive=math.inf if nested else keepalive,
                       dead_after=math.inf if nested else dead_after)
        self.parent = parent
        self._children_to_flush: list[Link] = []
        self.transport: Transport | None = None
        self.endpoints: dict[int, Endpoint] = {}
        self.closed = False
        self.error: RemoteProtocolError | None = None  # how the peer broke the protocol, if that closed it
        self.rtt: float | None = None
        self.bytes_in = self.bytes_out = 0  # on the connection, frames and all
        self._flush_scheduled = False
        self._write_paused = False
        self._read_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self.control_rate = control_rate
        self._tokens = CONTROL_BURST
        self._tokens_at = self.loop.time()
        self._held: collections.deque[ev.Event] = collections.deque()  # events waiting for the budget
        self._held_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ stream API

    def greet(self, hello: bytes) -> None:
        """Start a link this side dialled: `hello`, then a PING (the first RTT sample), in one write."""
        assert self.transport is not None, "greet before connection_made"
        self.mux.ping(self.loop.time())
        self.transport.write(hello + self.mux.data_to_send())

    def open_stream(self, payload: bytes, endpoint: Endpoint, window: int | None = None) -> int:
        sid = self.mux.open_stream(payload, window)
        self.endpoints[sid] = endpoint
        self._flush_soon()
        return sid

    def accept(self, sid: int, endpoint: Endpoint, payload: bytes = b"", window: int | None = None) -> None:
        self.mux.accept(sid, payload, window)
        self.endpoints[sid] = endpoint
        self._flush_soon()

    def refuse(self, sid: int, code: int, reason: str) -> None:
        if not self.closed:
            self.mux.refuse(sid, code, reason)
            self._flush_soon()

    def send(self, sid: int, data: bytes | memoryview | list[bytes], end: bool = False) -> None:
        self.mux.send_data(sid, data, end)
        self._flush_soon()

    def end(self, sid: int) -> None:
        if not self.closed and sid in self.endpoints:
            self.mux.end_stream(sid)
            self._flush_soon()

    def reset(self, sid: int, code: int, reason: str = "") -> None:
        self.endpoints.pop(sid, None)
        if not self.closed:
            self.mux.reset(sid, code, reason)
            self._flush_soon()

    def acknowledge(self, sid: int, nbytes: int) -> None:
        if not self.closed:
            self.mux.acknowledge(sid, nbytes)
            self._flush_soon()

    def credit(self, sid: int, nbytes: int) -> None:
        if not self.closed:
            self.mux.credit(sid, nbytes)
            self._flush_soon()

    def pending(self, sid: int) -> int:
        return self.mux.pending(sid)

    def claim(self, sid: int, endpoint: Endpoint) -> None:
        """Send stream `sid`'s events to `endpoint` before it is answered (early data, a reset meanwhile)."""
        self.endpoints[sid] = endpoint

    def release(self, sid: int) -> bool:
        """Stop sending stream `sid`'s events anywhere; False if nobody held it (it was reset meanwhile)."""
        return self.endpoints.pop(sid, None) is not None

    def can_open(self) -> bool:
        """Whether a new stream may be opened now (the peer's limit on streams still opening)."""
        return not self.closed and self.mux.can_open()

    def stream_state(self, sid: int) -> StreamState:
        return self.mux.state(sid)

    @property
    def stream_count(self) -> int:
        return self.mux.stream_count

    def send_control(self, message: control.ControlMessage) -> None:
        if not self.closed:
            self.mux.send_control(control.encode(message))
            self._flush_soon()

    def close(self, code: int = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """Say GOAWAY, flush, and close the transport."""
        if self.closed:
            return
        self._flush_children()  # what nested links queued joins our mux before the GOAWAY
        self.mux.close(code, reason)
        self._write_paused = False  # the last words go out whatever the buffer holds
        self._flush()
        if self.transport is not None:
            self.transport.close()
            if self.parent is None:  # a peer that does not read would keep the buffer forever
                self.loop.call_later(CLOSE_LINGER, self.transport.abort)
        self._shutdown(reason or "closed")

    def abort(self, reason: str, code: int = ErrorCode.LINK_LOST) -> None:
        """Drop the connection at once; every open stream is reset with `code` and `reason`."""
        if self.transport is not None:
            self.transport.abort()
        self._shutdown(reason, code)

    # ------------------------------------------------------ asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport | Transport) -> None:
        """asyncio hands a link its connection's transport; a channel hands its nested link itself."""
        self.transport = cast(Transport, transport)
        if self.parent is None:
            cast(asyncio.Transport, transport).set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        self._arm_timer()

    def pause_writing(self) -> None:
        self._write_paused = True
        self.mux.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        self.mux.resume_writing(self.loop.time())
        self._flush_soon()

    # TLS decrypts straight into a reused buffer: reading into fresh 256 KiB
    # bytes objects cost more than the decryption itself (malloc trims and
    # page faults). The decoder copies each payload out once.
    def get_buffer(self, sizehint: int) -> memoryview:
        return _RECEIVE_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_RECEIVE_BUFFER[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        self.bytes_in += len(data)
        try:
            events = self.mux.receive_data(data, self.loop.time())
        except RemoteProtocolError as exc:
            self._protocol_error(exc)
            return
        if self.control_rate is None:
            self._dispatch(events)
        else:
            self._held.extend(events)
            if self._held_timer is None:  # else the timer dispatches them, in order, when it can pay
                self._dispatch_held()
        self._flush_soon()
        self._follow_backlog()

    def connection_lost(self, exc: Exception | None) -> None:
        self._shutdown(f"connection lost: {exc}" if exc else "connection closed")

    # --------------------------------------------------------------- inside

    def _dispatch_held(self) -> None:
        """Dispatch held events in order until one is a control message the budget cannot pay for yet."""
        self._held_timer = None
        held = self._held
        ready: list[ev.Event] = []
        while held and not self.closed:
            event = held[0]
            if type(event) is ev.ControlReceived:
                wait = self._take_tokens(1 + len(event.payload) // CONTROL_TOKEN_BYTES)
                if wait > 0:
                    self._held_timer = self.loop.call_later(wait, self._resume_held)
                    break
            ready.append(held.popleft())
        if ready:
            self._dispatch(ready, forget=not held)

    def _take_tokens(self, cost: int) -> float:
        """Pay `cost` from the control budget: 0.0, or the seconds until it can be paid (nothing taken)."""
        now = self.loop.time()
        rate = cast(float, self.control_rate)
        self._tokens = min(CONTROL_BURST, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens < cost:
            return (cost - self._tokens) / rate
        self._tokens -= cost
        return 0.0

    def _resume_held(self) -> None:
        self._dispatch_held()
        self._flush_soon()
        self._follow_backlog()

    def _dispatch(self, events: list[ev.Event], forget: bool = True) -> None:
        endpoints = self.endpoints
        for event in events:
            if type(event) is ev.DataReceived:
                endpoint = endpoints.get(event.stream_id)
                if endpoint is not None:
                    endpoint.on_data(event.data)
            elif type(event) is ev.WindowUpdated:
                endpoint = endpoints.get(event.stream_id)
                if endpoint is not None:
                    endpoint.on_window(event.increment, event.pending)
            elif type(event) is ev.StreamEnded:
                endpoint = endpoints.get(event.stream_id)
                if endpoint is not None:
                    endpoint.on_end()
            elif type(event) is ev.StreamOpened:
                if self.mux.terminated:
                    continue  # opened just before the peer's GOAWAY: there is no link left to answer on
                if self.owner is None:
                    self.mux.refuse(event.stream_id, ErrorCode.FORBIDDEN, "no streams accepted here")
                else:
                    self.owner.stream_opened(self, event.stream_id, event.payload, event.window)
            elif type(event) is ev.StreamAccepted:
                endpoint = endpoints.get(event.stream_id)
                if endpoint is not None:
                    endpoint.on_accepted(event.payload, event.window)
            elif type(event) is ev.StreamRefused:
                endpoint = endpoints.pop(event.stream_id, None)
                if endpoint is not None:
                    endpoint.on_refused(event.code, event.reason)
            elif type(event) is ev.StreamReset:
                endpoint = endpoints.pop(event.stream_id, None)
                if endpoint is not None:
                    endpoint.on_reset(event.code, event.reason)
            elif type(event) is ev.ControlReceived:
                self._on_control(event.payload)
            elif type(event) is ev.PingAcknowledged:
                self.rtt = event.rtt
            elif type(event) is ev.ConnectionTerminated:
                self.close(ErrorCode.NO_ERROR, f"peer closed the link: {event.reason or event.code}")
            if self.closed:
                return
        if forget:  # not while held events may still name a stream the mux has closed
            self._forget_closed_streams()

    def _forget_closed_streams(self) -> None:
        # Streams both sides have ended leave the mux; drop their endpoints too.
        if len(self.endpoints) > self.mux.stream_count:
            for sid in [s for s in self.endpoints if self.mux.state(s) is StreamState.CLOSED]:
                del self.endpoints[sid]

    def _on_control(self, payload: bytes) -> None:
        # Decoded once, here: the owner gets a typed message, and a malformed one closes this link only.
        try:
            message = control.decode(payload)
        except RemoteProtocolError as exc:
            self._protocol_error(exc)
            return
        if self.owner is not None:
            self.owner.control_received(self, message)

    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        self.error = exc
        log.warning("%s: protocol error from peer: %s", self.label, exc)
        if exc.code == ErrorCode.QUEUE_LIMIT:
            self.abort(str(exc))  # it does not read: a GOAWAY would only join the queue
        else:
            self.close(exc.code, str(exc))

    def _flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            if self.parent is not None:
                self.parent._children_to_flush.append(self)
                self.parent._flush_soon()
            else:
                self.loop.call_soon(self._flush)

    def _flush_children(self) -> None:
        if self._children_to_flush:  # their bytes become ours: write them in this same turn
            children, self._children_to_flush = self._children_to_flush, []
            for child in children:
                child._flush()

    def _flush(self) -> None:
        self._flush_children()
        self._flush_scheduled = False
        transport = self.transport
        if transport is None or transport.is_closing():
            self.mux.data_to_send()  # nowhere to go
            return
        # Written in chunks of whole TLS records: one write of everything queued
        # made TLS allocate (and the kernel fault in) a fresh large buffer.
        while not self._write_paused and (data := self.mux.data_to_send(WRITE_CHUNK)):
            self.bytes_out += len(data)
            transport.write(data)  # may call pause_writing()
        if drained := self.mux.drained():  # streams whose sources paused while their DATA waited
            self._dispatch(drained, forget=not self._held)
        self._follow_backlog()

    def _follow_backlog(self) -> None:
        """Stop or resume reading the peer as the mux's backlog of unread answers, or held events, ask."""
        paused = self.mux.reading_paused or bool(self._held)
        if paused != self._read_paused and self.parent is None and not self.closed:
            self._read_paused = paused
            transport = cast(asyncio.Transport, self.transport)  # a connection's: the link has no parent
            if paused:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _arm_timer(self) -> None:
        when = self.mux.get_timer()
        if when is not None and not self.closed:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        events = self.mux.handle_timer(self.loop.time())
        self._flush()
        if events:  # the peer went silent
            log.info("%s: %s", self.label, events[0].reason)
            self.abort(events[0].reason)
            return
        self._arm_timer()

    def _shutdown(self, reason: str, code: int = ErrorCode.LINK_LOST) -> None:
        if self.closed:
            return
        self.closed = True
        self.mux.terminated = True
        self.mux.data_to_send()  # what never went out is dropped, not kept with the link
        if self._timer is not None:
            self._timer.cancel()
        if self._held_timer is not None:
            self._held_timer.cancel()
        self._held.clear()
        endpoints, self.endpoints = self.endpoints, {}
        for endpoint in endpoints.values():
            try:
                endpoint.on_reset(code, reason)
            except Exception:  # one endpoint's bug must not keep the others open
                log.exception("%s: endpoint failed while the link closed", self.label)
        if self.owner is not None:
            self.owner.link_closed(self, reason)

