"""Events the mux hands to the layer above, one per thing that happened."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer asks for a stream; answer with accept() or refuse().

    `window` is the credit the peer granted: what may be sent before its
    first WINDOW frame (a relay that mirrors windows needs it).
    """

    stream_id: int
    payload: bytes
    window: int


@dataclass(frozen=True, slots=True)
class StreamAccepted:
    stream_id: int
    payload: bytes
    window: int


@dataclass(frozen=True, slots=True)
class StreamRefused:
    stream_id: int
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Bytes for a stream; give the credit back with acknowledge() once used."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer will send no more data on this stream (half-close)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    stream_id: int
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class WindowUpdated:
    """The peer granted more credit; `pending` is what still waits to be sent."""

    stream_id: int
    increment: int
    pending: int


@dataclass(frozen=True, slots=True)
class ControlReceived:
    payload: bytes


@dataclass(frozen=True, slots=True)
class PingAcknowledged:
    rtt: float


@dataclass(frozen=True, slots=True)
class ConnectionTerminated:
    """The link is over: the peer said GOAWAY, or it went silent too long."""

    code: int
    reason: str


Event = (
    StreamOpened
    | StreamAccepted
    | StreamRefused
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowUpdated
    | ControlReceived
    | PingAcknowledged
    | ConnectionTerminated
)
