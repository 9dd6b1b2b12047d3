"""The mux: many flow-controlled streams over one link, as a sans-IO state machine.

Theory of operation. A `Mux` sits on one side of one link. Bytes from the
peer go in through `receive_data(data, now)`, which returns events; calls such
as `open_stream()` or `send_data()` queue frames, and `data_to_send()` hands
back the bytes to write. Time is passed in (`now`), and `get_timer()` /
`handle_timer(now)` drive keepalives and dead-peer detection, so tests never
sleep. It knows streams, windows and the link; it knows nothing of hubs,
exits or members. Two rules, borrowed from h11: everything that changes a
stream's state goes through the table `_TRANSITIONS` below, and the mux does
not care which role it plays except for the parity of the stream ids it
allocates (the side that dialled the link uses odd ids, the other even).

Flow control is per stream and credit based. OPEN and ACCEPT each carry the
sender's receive window; a side never sends more DATA than the credit it
holds, and gives credit back with WINDOW once the application says it has
used the bytes (`acknowledge()`), so memory per stream is bounded by the
window however slowly the far end reads. `send_data()` never refuses bytes:
what exceeds the credit waits in the stream's outbox (`pending()` tells how
much) and leaves as WINDOW frames arrive; the application pauses its source
while anything is pending. Before the ACCEPT the opener already holds
EARLY_WINDOW of credit (the window in ACCEPT counts from the stream's first
byte), so a request can travel with its OPEN. With `max_window`, a stream's
window grows while its application keeps up (`_autotune`); `credit()` passes
on a far end's credit as given, as the hub's switch needs.

Limits: frames larger than MAX_PAYLOAD, more than `max_streams` live streams
opened by the peer, more than `max_pending_opens` unanswered opens, or DATA
beyond the granted credit are protocol errors: the mux queues a GOAWAY with
the code and raises RemoteProtocolError; the adapter writes and closes.

The backlog. DATA waits for credit, and while the transport takes no
bytes (below) it waits unframed in its stream, counted by `pending()`: the
application's source pauses then, as for credit, so a stalled link holds
each stream's outbox, never all of their windows. Every other frame leaves at once, whether the peer
reads or not: PING ACKs, WINDOW, ACCEPT, REFUSE and RESET answering its
streams, CONTROL. `backlog` counts those bytes while they wait in the
queue. The adapter says when its transport stops taking bytes
(`pause_writing()` / `resume_writing()`); while it does, a backlog above
`pause_backlog` sets `reading_paused` (the adapter stops reading the peer
until the backlog drains, so a peer that pings without reading gets no
more answers queued), and input that finds a backlog above `max_backlog`
is a protocol error (QUEUE_LIMIT: the adapter drops the link). Only the
side that was dialled (the hub) pauses: if both ends stopped reading while
their writes wait, a link carrying bulk both ways could wedge for good;
with one side pausing, the other always reads, so the paused side's queue
drains. The dialling side has the cap alone. Reading never pauses on DATA.
While the peer is not read, its silence proves nothing: a peer is alive
while it sends or while a paused transport drains (`resume_writing(now)`),
and is dropped after `dead_after` without either.
Small frames share one buffer in the queue, so memory follows the bytes,
not the frame count.
"""

from __future__ import annotations

import enum
import math
import struct
from collections import deque
from typing import TypeVar, cast

from . import events as ev
from .errors import ErrorCode, LocalProtocolError, ProtocolError, RemoteProtocolError
from .frames import (
    HEADER_SIZE,
    LINK_FRAMES,
    MAX_PAYLOAD,
    Flag,
    Frame,
    FrameDecoder,
    FrameType,
    decode_code,
    decode_window,
    encode,
    encode_code,
    encode_window,
    header,
)

# Credit per stream: at least the bandwidth-delay product of the slowest path
# expected (2 MiB carries ~6 MB/s over a 300 ms round trip across a border).
# It is credit, not memory: idle streams hold nothing.
DEFAULT_WINDOW = 2 * 1024 * 1024
# Window autotuning (a Mux with max_window above window): a stream whose app
# used a whole window within GROW_PERIOD gets twice the window, up to
# max_window. It settles near what GROW_PERIOD carries at the stream's speed:
# a fast reader over a long path gets the credit it needs, while a slow
# reader, the only kind that makes data pile up, keeps the small window.
GROW_PERIOD = 0.5
# Credit every new stream starts with, before its ACCEPT: a request or a TLS
# ClientHello travels with the OPEN instead of one round trip later.
EARLY_WINDOW = 16 * 1024
MAX_WINDOW = (1 << 31) - 1
MAX_STREAM_ID = (1 << 32) - 1
MAX_STREAMS = 32768
MAX_PENDING_OPENS = 8192
KEEPALIVE_INTERVAL = 5.0
DEAD_AFTER = 15.0
MAX_PINGS_OUT = 16
# The backlog (frames other than DATA waiting while the transport is paused):
# above PAUSE_BACKLOG the peer is not read; input that finds more than
# MAX_BACKLOG ends the link. A hub's directory and member lists for a member
# whose link is busy with a download fit well under the pause mark; a read of
# pings (256 KiB) queues as much in answers, so pausing keeps a flood under the cap.
PAUSE_BACKLOG = 256 * 1024
# Framed DATA the queue holds at most: past it, or while the transport takes
# nothing, a stream's DATA waits unframed in its outbox (seen by pending(),
# so its application pauses its source) and data_to_send() frames the
# waiting streams a frame each in turn. So a link that writes slowly holds
# this much framed plus a read per stream, not every stream's window, and
# shares what it writes between its streams.
OUT_HIGH = 1024 * 1024
MAX_BACKLOG = 4 * 1024 * 1024
_PING = struct.Struct("!d")
_SMALL_FRAME = 1024  # frames up to this size share a buffer in the queue,
_SMALL_BUFFER = 64 * 1024  # of at most about this size (data_to_send() cuts buffers by copying)


class StreamState(enum.Enum):
    OPENING = "opening"  # we sent OPEN, no answer yet
    PENDING = "pending"  # the peer sent OPEN, we have not answered
    OPEN = "open"
    LOCAL_ENDED = "local-ended"  # we sent END, the peer may still send
    REMOTE_ENDED = "remote-ended"  # the peer sent END, we may still send
    CLOSED = "closed"


class _Action(enum.Enum):
    SEND_ACCEPT = "send ACCEPT"
    RECV_ACCEPT = "receive ACCEPT"
    SEND_END = "send END"
    RECV_END = "receive END"


S, A = StreamState, _Action
# Every legal transition; anything else is an error of whoever caused it.
# OPEN/REFUSE/RESET create or destroy streams and are handled where they occur.
_TRANSITIONS: dict[tuple[StreamState, _Action], StreamState] = {
    (S.OPENING, A.RECV_ACCEPT): S.OPEN,
    (S.PENDING, A.SEND_ACCEPT): S.OPEN,
    (S.OPEN, A.SEND_END): S.LOCAL_ENDED,
    (S.OPEN, A.RECV_END): S.REMOTE_ENDED,
    (S.LOCAL_ENDED, A.RECV_END): S.CLOSED,
    (S.REMOTE_ENDED, A.SEND_END): S.CLOSED,
}
# Early data: before the answer the opener may send up to EARLY_WINDOW bytes
# (END waits for the answer), which the acceptor holds until it decides.
_CAN_SEND = frozenset({S.OPENING, S.OPEN, S.REMOTE_ENDED})
_CAN_RECEIVE = frozenset({S.PENDING, S.OPEN, S.LOCAL_ENDED})
_GIVES_CREDIT = frozenset({S.OPEN, S.LOCAL_ENDED})  # WINDOW frames only once accepted
del S, A


class _Stream:
    __slots__ = (
        "id", "state", "local", "send_window", "recv_window", "recv_size",
        "unacked", "outbox", "outbox_bytes", "end_queued", "epoch", "used",
    )  # fmt: skip

    def __init__(self, stream_id: int, state: StreamState, local: bool, recv_size: int, now: float):
        self.id = stream_id
        self.state = state
        self.local = local  # opened by this side
        self.send_window = 0
        self.recv_window = recv_size  # credit the peer still holds
        self.recv_size = recv_size
        self.unacked = 0  # bytes used by the app, not yet given back
        # None while nothing waits: an empty deque is 760 bytes, and most of a proxy's streams are
        # idle most of the time (1,000 idle connections held ~0.75 MB of empty outboxes in each agent).
        self.outbox: deque[memoryview] | None = None
        self.outbox_bytes = 0
        self.end_queued = False
        self.epoch = now  # when the app began using the current window (autotuning)
        self.used = 0  # bytes the app has used since then


class Mux:
    def __init__(
        self,
        *,
        client: bool,
        now: float = 0.0,
        window: int = DEFAULT_WINDOW,
        max_window: int | None = None,
        max_streams: int = MAX_STREAMS,
        max_pending_opens: int = MAX_PENDING_OPENS,
        keepalive: float = KEEPALIVE_INTERVAL,
        dead_after: float = DEAD_AFTER,
        pause_backlog: int = PAUSE_BACKLOG,
        max_backlog: int = MAX_BACKLOG,
    ):
        self.window = window
        self.max_window = max_window  # None: windows never grow
        self.max_streams = max_streams
        self.max_pending_opens = max_pending_opens
        self.keepalive = keepalive
        self.dead_after = dead_after
        self.pause_backlog = pause_backlog
        self.max_backlog = max_backlog
        self.terminated = False
        # DATA payload that left and that arrived, every stream's: what receipts count (receipts.py)
        self.data_sent = self.data_received = 0
        self._decoder = FrameDecoder()
        self._out: deque[bytes | bytearray | memoryview] = deque()
        self._out_bytes = 0  # the length of everything in _out
        self._taken = 0  # bytes data_to_send() has handed out, ever
        # The frames other than DATA in _out: [offset just past them, their size],
        # runs of adjacent frames merged; offsets count from the link's first byte.
        self._runs: deque[list[int]] = deque()
        self.backlog = 0  # their total size
        self._writes_paused = False
        self._last_drained = now  # when the transport last took bytes again after a pause
        self._waiting: dict[int, None] = {}  # streams whose DATA waits its turn (OUT_HIGH), in order
        self._drained: list[ev.Event] = []  # of streams that waited, once all of it is framed
        self._streams: dict[int, _Stream] = {}
        self._parity = 1 if client else 0
        self._next_id = 1 if client else 2
        self._last_peer_id = 0
        self._local_live = 0  # live streams we opened
        self._peer_live = 0  # live streams the peer opened
        self._opening = 0  # our OPENs without an answer
        self._pending = 0  # the peer's OPENs we have not answered
        self._last_received = now
        self._next_ping = now + keepalive
        self._pings: set[bytes] = set()  # payloads of our pings not yet answered

    # ------------------------------------------------------------------ queries

    def state(self, stream_id: int) -> StreamState:
        st = self._streams.get(stream_id)
        return st.state if st else StreamState.CLOSED

    def pending(self, stream_id: int) -> int:
        """Bytes accepted by send_data() that still wait for credit."""
        st = self._streams.get(stream_id)
        return st.outbox_bytes if st else 0

    def can_open(self) -> bool:
        return (
            not self.terminated
            and self._local_live < self.max_streams
            and self._opening < self.max_pending_opens
        )

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    @property
    def reading_paused(self) -> bool:
        """Whether the adapter should stop reading the peer: its answers wait unread."""
        return not self._parity and self._writes_paused and self.backlog > self.pause_backlog

    # ---------------------------------------------------------- the transport

    def pause_writing(self) -> None:
        """The transport takes no more bytes for now: what is queued waits, DATA in its stream."""
        self._writes_paused = True

    def resume_writing(self, now: float) -> None:
        """The transport takes bytes again: the peer reads (which counts while it is not read)."""
        self._writes_paused = False
        self._last_drained = now

    def drained(self) -> list[ev.Event]:
        """Streams whose waiting DATA was all framed since the last call: a WindowUpdated of 0 each,
        so their applications resume their sources as they would on credit."""
        events, self._drained = self._drained, []
        return events

    # ----------------------------------------------------------- local actions

    def open_stream(self, payload: bytes = b"", window: int | None = None) -> int:
        self._check_usable()
        if not self.can_open():
            raise LocalProtocolError("stream limit reached on this link", ErrorCode.STREAM_LIMIT)
        size = self._checked_local_window(window, payload)
        sid = self._next_id
        if sid > MAX_STREAM_ID:
            raise LocalProtocolError("stream ids exhausted on this link: open a new link")
        self._next_id += 2
        self._streams[sid] = st = _Stream(sid, StreamState.OPENING, True, size, self._last_received)
        st.send_window = EARLY_WINDOW
        self._local_live += 1
        self._opening += 1
        self._emit(FrameType.OPEN, sid, encode_window(size, payload))
        return sid

    def accept(self, stream_id: int, payload: bytes = b"", window: int | None = None) -> None:
        st = self._local_stream(stream_id)
        size = self._checked_local_window(window, payload)
        early = EARLY_WINDOW - st.recv_window  # received before this answer; the window counts it
        if size < early:
            raise LocalProtocolError(f"window {size} is smaller than the {early} bytes already received")
        self._transition(st, _Action.SEND_ACCEPT)
        self._pending -= 1
        st.recv_size, st.recv_window = size, size - early
        self._emit(FrameType.ACCEPT, stream_id, encode_window(size, payload))

    def refuse(self, stream_id: int, code: int, reason: str = "") -> None:
        st = self._local_stream(stream_id)
        if st.state is not StreamState.PENDING:
            raise LocalProtocolError(f"cannot refuse stream {stream_id} in state {st.state.value}")
        self._forget(st)
        self._emit(FrameType.REFUSE, stream_id, encode_code(code, reason))

    def send_data(self, stream_id: int, data: bytes | memoryview | list[bytes], end: bool = False) -> None:
        """Queue `data` (a buffer, or a list of bytes sent one after the other) on the stream."""
        st = self._local_stream(stream_id)
        if st.state not in _CAN_SEND or st.end_queued:
            raise LocalProtocolError(f"cannot send on stream {stream_id} in state {st.state.value}")
        outbox = st.outbox
        if outbox is None:
            outbox = st.outbox = deque()
        if type(data) is list:
            for piece in data:
                outbox.append(memoryview(piece))
                st.outbox_bytes += len(piece)
        elif type(data) is bytes:
            if data:
                outbox.append(memoryview(data))
                st.outbox_bytes += len(data)
        else:
            # A view of a buffer the caller may reuse: keep copies, a frame's worth
            # each, since one large copy would be a fresh mapping of memory per call.
            view = memoryview(cast(memoryview, data))  # `type() is` narrows no else branch
            for start in range(0, len(view), MAX_PAYLOAD):
                outbox.append(memoryview(view[start : start + MAX_PAYLOAD].tobytes()))
            st.outbox_bytes += len(view)
        st.end_queued = end
        self._flush(st)

    def end_stream(self, stream_id: int) -> None:
        self.send_data(stream_id, b"", end=True)

    def reset(self, stream_id: int, code: int, reason: str = "") -> None:
        """Abort a stream in any state; unknown or closed streams are ignored."""
        st = self._streams.get(stream_id)
        if st is None or self.terminated:
            return
        self._forget(st)
        self._emit(FrameType.RESET, stream_id, encode_code(code, reason))

    def acknowledge(self, stream_id: int, nbytes: int) -> None:
        """The app has used `nbytes` received on the stream: give the credit back."""
        st = self._streams.get(stream_id)
        if st is None or self.terminated or nbytes <= 0:
            return
        # Never give back more than was received: the peer's credit stays <= the window.
        credit = min(nbytes, st.recv_size - st.recv_window - st.unacked)
        st.unacked += credit
        if self.max_window is not None and st.recv_size < self.max_window:
            self._autotune(st, credit, self.max_window)
        # Batch credit into quarter windows: fewer frames, and no deadlock, since
        # the peer still holds at least three quarters of the window.
        if st.unacked >= (st.recv_size >> 2 or 1) and st.state in _GIVES_CREDIT:
            st.recv_window += st.unacked
            self._emit(FrameType.WINDOW, stream_id, encode_window(st.unacked))
            st.unacked = 0

    def credit(self, stream_id: int, nbytes: int) -> None:
        """Give the peer `nbytes` of credit now, as much as the far end of a splice gave.

        Unlike acknowledge(), this may exceed what was received: the far end's
        window grew, and so does this one. Nothing is batched here, since the
        far end already did.
        """
        st = self._streams.get(stream_id)
        if st is None or self.terminated or nbytes <= 0 or st.state not in _GIVES_CREDIT:
            return
        st.recv_window = self._checked_window(st.recv_window + nbytes, LocalProtocolError)
        st.recv_size = max(st.recv_size, st.recv_window)
        self._emit(FrameType.WINDOW, stream_id, encode_window(nbytes))

    def _autotune(self, st: _Stream, credit: int, max_window: int) -> None:
        """Double the window of a stream whose app used a whole window within GROW_PERIOD.

        The clock is the time of the latest receive_data(): an app gives credit
        back while it handles what arrived.
        """
        st.used += credit
        if st.used < st.recv_size:
            return
        now = self._last_received
        if now - st.epoch < GROW_PERIOD:
            grow = min(st.recv_size, max_window - st.recv_size)
            st.recv_size += grow
            st.unacked += grow  # the growth leaves with this credit
        st.epoch, st.used = now, 0

    def send_control(self, payload: bytes) -> None:
        self._check_usable()
        if len(payload) > MAX_PAYLOAD:
            raise LocalProtocolError("control message larger than a frame")
        self._emit(FrameType.CONTROL, 0, payload)

    def ping(self, now: float) -> None:
        self._check_usable()
        payload = _PING.pack(now)
        if len(self._pings) < MAX_PINGS_OUT:
            self._pings.add(payload)
        self._emit(FrameType.PING, 0, payload)

    def close(self, code: int = ErrorCode.NO_ERROR, reason: str = "") -> None:
        if not self.terminated:
            self._emit(FrameType.GOAWAY, 0, encode_code(code, reason))
            self.terminated = True

    def data_to_send(self, amount: int | None = None) -> bytes:
        """The bytes to write to the link: all of them, or at most `amount`."""
        if self._waiting and not self._writes_paused:
            self._refill()
        out = self._out
        if amount is None or self._out_bytes <= amount:
            data = b"".join(out)
            out.clear()
            self._out_bytes = 0
        else:
            parts, size = _take(out, amount)
            self._out_bytes -= size
            data = b"".join(parts)
        self._taken += len(data)
        runs = self._runs
        while runs and runs[0][0] <= self._taken:  # a run counts until its last byte leaves
            self.backlog -= runs.popleft()[1]
        return data

    # ------------------------------------------------------------------- timers

    def get_timer(self) -> float | None:
        """When to call handle_timer(); None if never (terminated, or keepalive and dead_after infinite)."""
        if self.terminated:
            return None
        when = min(self._alive() + self.dead_after, self._next_ping)
        return None if when == math.inf else when

    def _alive(self) -> float:
        """When the peer last showed it is there: it sent, or it took bytes a paused transport held.

        The second counts because a peer that is not read cannot be heard, and
        must not be taken for dead the moment it is read again.
        """
        return max(self._last_received, self._last_drained)

    def handle_timer(self, now: float) -> list[ev.ConnectionTerminated]:
        if self.terminated:
            return []
        # Compare against the very deadlines get_timer() returned, so a timer
        # that fires exactly on time acts (no float rounding in between).
        if now >= self._alive() + self.dead_after:
            silence = f"for {self.dead_after:g} s"
            if self.reading_paused:
                code, reason = ErrorCode.QUEUE_LIMIT, f"the peer read none of its answers {silence}"
            else:
                code, reason = ErrorCode.LINK_TIMEOUT, f"no frames from the peer {silence}"
            self.close(code, reason)
            return [ev.ConnectionTerminated(code, reason)]
        if now >= self._next_ping:
            self._next_ping = now + self.keepalive
            self.ping(now)
        return []

    # -------------------------------------------------------------------- input

    def receive_data(self, data: bytes | memoryview, now: float) -> list[ev.Event]:
        if self.terminated:
            return []
        self._last_received = now
        self._next_ping = now + self.keepalive
        events: list[ev.Event] = []
        try:
            for frame in self._decoder.feed(data):
                self._handle(frame, now, events)
                if self.terminated:
                    return events
            if self._decoder.error is not None:
                raise self._decoder.error
            if self._writes_paused and self.backlog > self.max_backlog:
                raise RemoteProtocolError(
                    f"{self.backlog} bytes of answers queued for a peer that does not read",
                    ErrorCode.QUEUE_LIMIT,
                )
        except RemoteProtocolError as exc:
            self.close(exc.code, str(exc))
            raise
        return events

    def _handle(self, frame: Frame, now: float, events: list[ev.Event]) -> None:
        type_, sid = frame.type, frame.stream_id
        if (sid == 0) != (type_ in LINK_FRAMES):
            raise RemoteProtocolError(f"{type_.name} frame on stream {sid}")
        if type_ is FrameType.DATA:
            self.data_received += len(frame.payload)  # of streams closed meanwhile too: they were asked for
            st = self._peer_stream(sid)
            if st is not None:
                self._on_data(st, frame, events)
        elif type_ is FrameType.WINDOW:
            st = self._peer_stream(sid)
            if st is not None:
                self._on_window(st, frame.payload, events)
        elif type_ is FrameType.OPEN:
            self._on_open(sid, frame.payload, events)
        elif type_ is FrameType.ACCEPT:
            st = self._peer_stream(sid)
            if st is not None:
                window, payload = decode_window(frame.payload)
                self._transition(st, _Action.RECV_ACCEPT, RemoteProtocolError)
                self._opening -= 1
                early = EARLY_WINDOW - st.send_window  # sent before the answer; the window counts it
                if window < early:
                    raise RemoteProtocolError(f"ACCEPT window {window} below the {early} bytes of early data",
                                              ErrorCode.FLOW_CONTROL_ERROR)
                st.send_window = self._checked_window(window) - early
                events.append(ev.StreamAccepted(sid, payload, window))
                self._flush(st)
        elif type_ is FrameType.REFUSE:
            st = self._peer_stream(sid)
            if st is not None:
                if st.state is not StreamState.OPENING:
                    raise RemoteProtocolError(f"REFUSE for stream {sid} in state {st.state.value}")
                self._forget(st)
                events.append(ev.StreamRefused(sid, *decode_code(frame.payload)))
        elif type_ is FrameType.RESET:
            st = self._peer_stream(sid)
            if st is not None:
                self._forget(st)
                events.append(ev.StreamReset(sid, *decode_code(frame.payload)))
        elif type_ is FrameType.PING:
            if len(frame.payload) != 8:
                raise RemoteProtocolError("PING payload must be 8 bytes")
            if frame.flags & Flag.ACK:
                if frame.payload in self._pings:  # our own timestamp, echoed
                    self._pings.remove(frame.payload)
                    events.append(ev.PingAcknowledged(now - _PING.unpack(frame.payload)[0]))
            else:
                self._emit(FrameType.PING, 0, frame.payload, Flag.ACK)
        elif type_ is FrameType.CONTROL:
            events.append(ev.ControlReceived(frame.payload))
        elif type_ is FrameType.GOAWAY:
            code, reason = decode_code(frame.payload)
            self.terminated = True
            events.append(ev.ConnectionTerminated(code, reason))

    def _on_open(self, sid: int, payload: bytes, events: list[ev.Event]) -> None:
        if sid & 1 == self._parity or sid <= self._last_peer_id:
            raise RemoteProtocolError(f"OPEN with stream id {sid} out of order or of the wrong parity")
        if self._peer_live >= self.max_streams:
            raise RemoteProtocolError("peer exceeded the stream limit", ErrorCode.STREAM_LIMIT)
        if self._pending >= self.max_pending_opens:
            raise RemoteProtocolError("peer exceeded the pending-open limit", ErrorCode.STREAM_LIMIT)
        window, rest = decode_window(payload)
        self._last_peer_id = sid
        st = _Stream(sid, StreamState.PENDING, False, EARLY_WINDOW, self._last_received)
        st.send_window = self._checked_window(window)
        self._streams[sid] = st
        self._peer_live += 1
        self._pending += 1
        events.append(ev.StreamOpened(sid, rest, window))

    def _on_data(self, st: _Stream, frame: Frame, events: list[ev.Event]) -> None:
        if st.state not in _CAN_RECEIVE:
            raise RemoteProtocolError(f"DATA on stream {st.id} in state {st.state.value}")
        size = len(frame.payload)
        if size > st.recv_window:
            raise RemoteProtocolError(
                f"DATA of {size} bytes beyond the {st.recv_window}-byte credit on stream {st.id}",
                ErrorCode.FLOW_CONTROL_ERROR,
            )
        st.recv_window -= size
        if size:
            events.append(ev.DataReceived(st.id, frame.payload))
        if frame.flags & Flag.END:
            self._transition(st, _Action.RECV_END, RemoteProtocolError)
            events.append(ev.StreamEnded(st.id))

    def _on_window(self, st: _Stream, payload: bytes, events: list[ev.Event]) -> None:
        increment, _ = decode_window(payload)
        st.send_window = self._checked_window(st.send_window + increment)
        if st.state in _CAN_SEND:
            self._flush(st)
        events.append(ev.WindowUpdated(st.id, increment, st.outbox_bytes))

    # ----------------------------------------------------------------- helpers

    def _emit(self, type_: FrameType, sid: int, payload: bytes, flags: int = 0) -> None:
        """Queue a frame other than DATA: it counts in the backlog until it leaves."""
        frame = encode(type_, sid, payload, flags)
        out, size = self._out, len(frame)
        start = self._taken + self._out_bytes
        # Small frames go into one buffer: a flood of 17-byte PING ACKs as
        # separate bytes objects cost over three times its size in memory.
        if out and type(out[-1]) is bytearray and size <= _SMALL_FRAME and len(out[-1]) < _SMALL_BUFFER:
            out[-1] += frame
        else:
            out.append(bytearray(frame) if size <= _SMALL_FRAME else frame)
        self._out_bytes += size
        runs = self._runs
        if runs and runs[-1][0] == start:
            runs[-1][0] += size
            runs[-1][1] += size
        else:
            runs.append([start + size, size])
        self.backlog += size

    def _flush(self, st: _Stream) -> None:
        """Frame what `st` has credit for, unless DATA must wait its turn (OUT_HIGH)."""
        if self._writes_paused or self._waiting or self._out_bytes >= OUT_HIGH:
            if st.outbox or st.end_queued:
                self._waiting[st.id] = None
            return
        self._frame(st, -1)

    def _refill(self) -> None:
        """Frame waiting streams, a frame each in turn, until the queue holds OUT_HIGH again."""
        waiting = self._waiting
        while waiting and self._out_bytes < OUT_HIGH:
            sid = next(iter(waiting))
            del waiting[sid]
            st = self._streams.get(sid)
            if st is None or st.state not in _CAN_SEND:
                continue
            self._frame(st, 1)
            if not st.outbox:
                self._drained.append(ev.WindowUpdated(sid, 0, 0))
            elif st.send_window > 0:
                waiting[sid] = None  # to the back of the line
            # else it waits for credit: WINDOW flushes it again

    def _frame(self, st: _Stream, frames: int) -> None:
        """Queue up to `frames` DATA frames of `st` (all it has credit for if negative), then END
        once the outbox is empty, if the app ended the stream."""
        out, outbox = self._out, st.outbox
        may_end = st.end_queued and st.state is not StreamState.OPENING  # END waits for the answer
        while outbox and st.send_window > 0 and frames != 0:
            frames -= 1
            # One DATA frame: as many queued pieces as credit and frame size allow.
            parts, size = _take(outbox, min(st.send_window, MAX_PAYLOAD, st.outbox_bytes))
            st.outbox_bytes -= size
            st.send_window -= size
            self.data_sent += size
            if not outbox:
                st.outbox = None  # all of it left: an idle stream holds no deque (see _Stream)
            last = may_end and not outbox
            out.append(header(FrameType.DATA, st.id, size, Flag.END if last else 0))
            out.extend(parts)
            self._out_bytes += HEADER_SIZE + size
            if last:
                self._transition(st, _Action.SEND_END)
                return
        if may_end and not outbox:
            out.append(header(FrameType.DATA, st.id, 0, Flag.END))
            self._out_bytes += HEADER_SIZE
            self._transition(st, _Action.SEND_END)

    def _transition(self, st: _Stream, action: _Action,
                    error: type[ProtocolError] = LocalProtocolError) -> None:
        new = _TRANSITIONS.get((st.state, action))
        if new is None:
            raise error(f"cannot {action.value} on stream {st.id} in state {st.state.value}")
        st.state = new
        if new is StreamState.CLOSED:
            self._forget(st)

    def _forget(self, st: _Stream) -> None:
        if self._streams.pop(st.id, None) is None:
            return
        if st.state is StreamState.OPENING:
            self._opening -= 1
        elif st.state is StreamState.PENDING:
            self._pending -= 1
        if st.local:
            self._local_live -= 1
        else:
            self._peer_live -= 1
        st.state = StreamState.CLOSED
        st.outbox = None

    def _local_stream(self, sid: int) -> _Stream:
        self._check_usable()
        st = self._streams.get(sid)
        if st is None:
            raise LocalProtocolError(f"stream {sid} is not open")
        return st

    def _peer_stream(self, sid: int) -> _Stream | None:
        """The stream a peer frame names; None if it was closed (frames in flight)."""
        st = self._streams.get(sid)
        if st is not None:
            return st
        opened = sid < self._next_id if sid & 1 == self._parity else sid <= self._last_peer_id
        if not opened:
            raise RemoteProtocolError(f"frame for stream {sid}, which was never opened")
        return None

    def _check_usable(self) -> None:
        if self.terminated:
            raise LocalProtocolError("the link is closed")

    def _checked_local_window(self, window: int | None, payload: bytes) -> int:
        size = self.window if window is None else window
        if not 0 <= size <= MAX_WINDOW:
            raise LocalProtocolError(f"window {size} outside 0..2^31-1")
        if len(payload) + 4 > MAX_PAYLOAD:
            raise LocalProtocolError("open or accept payload larger than a frame")
        return size

    @staticmethod
    def _checked_window(window: int, error: type[ProtocolError] = RemoteProtocolError) -> int:
        if window > MAX_WINDOW:
            raise error("flow-control window above 2^31-1", ErrorCode.FLOW_CONTROL_ERROR)
        return window


_Pieces = TypeVar("_Pieces", memoryview, bytes | bytearray | memoryview)  # a stream's outbox, the link's


def _take(pieces: deque[_Pieces], amount: int) -> tuple[list[_Pieces], int]:
    """Pop pieces worth `amount` bytes from the front of `pieces`, cutting the last; and their size."""
    parts: list[_Pieces] = []
    size = 0
    while size < amount and pieces:
        piece = pieces[0]
        if size + len(piece) <= amount:
            pieces.popleft()
        else:
            piece, pieces[0] = piece[: amount - size], piece[amount - size :]
        parts.append(piece)
        size += len(piece)
    return parts, size
