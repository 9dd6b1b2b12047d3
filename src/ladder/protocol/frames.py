"""Frame codec of the link protocol: the 9-byte header and its payloads.

Every frame on a link is

    +----------------+--------+--------+------------------+---------
    | length (24 bit)| type 8 | flags 8| stream id (32)   | payload
    +----------------+--------+--------+------------------+---------

all big-endian, like HTTP/2 (RFC 9113 section 4.1). Stream 0 is the link
itself (PING, GOAWAY, CONTROL); every other frame names a stream. The decoder
is incremental: feed it bytes, take whole frames out; anything malformed
raises RemoteProtocolError and nothing else.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ErrorCode, RemoteProtocolError

HEADER = struct.Struct("!I B I")  # length<<8|type as one u32, flags, stream id
HEADER_SIZE = 9
MAX_PAYLOAD = 4 * 65536  # largest payload either side may send
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


class FrameType(enum.IntEnum):
    DATA = 0  # stream bytes; flag END half-closes the sender's side
    OPEN = 1  # window u32 + opaque open payload
    ACCEPT = 2  # window u32 + opaque accept payload
    REFUSE = 3  # code u16 + UTF-8 reason
    RESET = 4  # code u16 + UTF-8 reason
    WINDOW = 5  # increment u32
    PING = 6  # 8 opaque bytes; flag ACK marks the answer
    GOAWAY = 7  # code u16 + UTF-8 reason
    CONTROL = 8  # opaque message for the roles on top


class Flag(enum.IntFlag):
    NONE = 0
    END = 0x1  # DATA: no more data from this sender
    ACK = 0x1  # PING: this is the answer


LINK_FRAMES = frozenset({FrameType.PING, FrameType.GOAWAY, FrameType.CONTROL})
_TYPES = tuple(FrameType(i) if i in FrameType._value2member_map_ else None for i in range(256))


@dataclass(frozen=True, slots=True)
class Frame:
    type: FrameType
    flags: int
    stream_id: int
    payload: bytes


def encode(type_: FrameType, stream_id: int, payload: bytes = b"", flags: int = 0) -> bytes:
    return HEADER.pack(len(payload) << 8 | type_, flags, stream_id) + payload


def header(type_: FrameType, stream_id: int, length: int, flags: int = 0) -> bytes:
    """Just the header, for callers that write the payload separately."""
    return HEADER.pack(length << 8 | type_, flags, stream_id)


def encode_code(code: int, reason: str) -> bytes:
    return _U16.pack(code) + reason.encode("utf-8", "replace")[:1024]


def could_start_frame(first_byte: int) -> bool:
    """Whether a frame may begin with this byte: its length's top byte, at most MAX_PAYLOAD's."""
    return first_byte <= MAX_PAYLOAD >> 16


def decode_code(payload: bytes) -> tuple[int, str]:
    if len(payload) < 2:
        raise RemoteProtocolError("code payload shorter than 2 bytes")
    (code,) = _U16.unpack_from(payload)
    return code, payload[2:].decode("utf-8", "replace")


def encode_window(window: int, rest: bytes = b"") -> bytes:
    return _U32.pack(window) + rest


def decode_window(payload: bytes) -> tuple[int, bytes]:
    if len(payload) < 4:
        raise RemoteProtocolError("window payload shorter than 4 bytes", ErrorCode.FLOW_CONTROL_ERROR)
    return _U32.unpack_from(payload)[0], payload[4:]


class Reassembly:
    """The unfinished tail of a stream of length-prefixed messages, kept between feeds.

    `prefix` bytes of a message tell its whole size, through `size_of(view)`.
    Whole messages are parsed in place, from the caller's bytes, so a payload
    is copied once; only the one message cut by a read boundary is gathered,
    and only as many bytes as it lacks are taken from the next read (never a
    whole read appended to a buffer: that cost a large allocation per read).
    """

    def __init__(self, prefix: int, size_of: Callable[[memoryview | bytearray], int]) -> None:
        self._prefix = prefix
        self._size_of = size_of
        self._pending = bytearray()

    def complete(self, data: bytes | memoryview) -> tuple[memoryview | None, memoryview]:
        """Finish the pending message from the head of `data`.

        Returns that message (None while it is still incomplete, or if none was
        pending) and the rest of `data`, which starts at a message boundary.
        """
        view = memoryview(data)
        pending = self._pending
        if not pending:
            return None, view
        if len(pending) < self._prefix:
            taken = self._prefix - len(pending)
            pending += view[:taken]
            view = view[taken:]
            if len(pending) < self._prefix:
                return None, view
        size = self._size_of(pending)
        taken = size - len(pending)
        pending += view[:taken]
        view = view[taken:]
        if len(pending) < size:
            return None, view
        self._pending = bytearray()
        return memoryview(pending), view

    def keep(self, view: memoryview, consumed: int) -> None:
        """Keep what follows `consumed` in `view` for the next feed."""
        if consumed < len(view):
            self._pending = bytearray(view[consumed:])


class FrameDecoder:
    """Turns a byte stream into Frames; keeps at most one partial frame.

    A malformed header stops decoding: the frames before it are returned and
    the error is kept in `error`, so the caller can act on them first (a
    GOAWAY followed by garbage is still a clean GOAWAY).
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD):
        self._tail = Reassembly(HEADER_SIZE, self._frame_size)
        self._max_payload = max_payload
        self.error: RemoteProtocolError | None = None

    def _frame_size(self, head: memoryview | bytearray) -> int:
        length = HEADER.unpack_from(head)[0] >> 8
        # An oversized length is reported by _parse; gather no more than the header for it.
        return HEADER_SIZE + length if length <= self._max_payload else HEADER_SIZE

    def feed(self, data: bytes | memoryview) -> list[Frame]:
        if self.error is not None:
            raise self.error
        frames: list[Frame] = []
        head, rest = self._tail.complete(data)
        if head is not None:
            self._parse(head, frames)
        if self.error is None:
            self._tail.keep(rest, self._parse(rest, frames))
        if self.error is not None and not frames:
            raise self.error
        return frames

    def _parse(self, source: memoryview, frames: list[Frame]) -> int:
        """Append the whole frames in `source` to `frames`; return the bytes consumed."""
        offset = 0
        end = len(source)
        while end - offset >= HEADER_SIZE:
            word, flags, stream_id = HEADER.unpack_from(source, offset)
            length = word >> 8
            if length > self._max_payload:
                self.error = RemoteProtocolError(
                    f"frame of {length} bytes exceeds the {self._max_payload}-byte limit",
                    ErrorCode.FRAME_SIZE_ERROR,
                )
                break
            type_ = _TYPES[word & 0xFF]
            if type_ is None:
                self.error = RemoteProtocolError(f"unknown frame type {word & 0xFF}")
                break
            start = offset + HEADER_SIZE
            if end - start < length:
                break
            frames.append(Frame(type_, flags, stream_id, source[start : start + length].tobytes()))
            offset = start + length
        return offset
