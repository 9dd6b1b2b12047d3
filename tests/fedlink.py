"""A real Link whose peer is the test: frames go in as bytes, what the link writes is kept.

For tests of the link's edge (control messages decoded once, a malformed one
closing the link) with a role as the link's owner. Make one inside a running
event loop, as a Link needs.
"""

from __future__ import annotations

from ladder.link.connection import Link, LinkOwner
from ladder.protocol.frames import FrameDecoder, FrameType, decode_code, encode


class KeptWrites:
    """A transport that keeps every byte written and never pushes back."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closing = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    abort = close

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def fed_link(owner: LinkOwner | None, label: str = "test link", control_rate: float | None = None
             ) -> tuple[Link, KeptWrites]:
    link, transport = Link(owner, client=False, label=label, control_rate=control_rate), KeptWrites()
    link.connection_made(transport)
    return link, transport


def control_frame(payload: bytes) -> bytes:
    """A CONTROL frame as the peer would send it, whatever `payload` holds."""
    return encode(FrameType.CONTROL, 0, payload)


def goaway(transport: KeptWrites) -> tuple[int, str] | None:
    """The code and reason of the GOAWAY the link wrote, if it wrote one."""
    for frame in FrameDecoder().feed(bytes(transport.written)):
        if frame.type is FrameType.GOAWAY:
            return decode_code(frame.payload)
    return None


def sent_controls(transport: KeptWrites) -> list[bytes]:
    """The payloads of the CONTROL frames the link wrote, in order."""
    return [f.payload for f in FrameDecoder().feed(bytes(transport.written)) if f.type is FrameType.CONTROL]
