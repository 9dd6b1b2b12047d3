"""Error codes carried on the wire, and the two kinds of protocol error.

As in h11: `RemoteProtocolError` means the peer broke the protocol (the link
closes with the code in a GOAWAY); `LocalProtocolError` means this side
misused the API (a bug in the caller, never the peer's fault).
"""

from __future__ import annotations

import enum

from ladder.errors import LadderError


class ErrorCode(enum.IntEnum):
    """Codes in GOAWAY, REFUSE and RESET frames (16 bits on the wire)."""

    # Link level: why a link closes.
    NO_ERROR = 0
    PROTOCOL_ERROR = 1
    FLOW_CONTROL_ERROR = 2
    FRAME_SIZE_ERROR = 3
    STREAM_LIMIT = 4
    LINK_TIMEOUT = 5
    QUEUE_LIMIT = 6  # the peer made this side queue too much without reading it
    # Stream level: why a stream was refused or reset.
    CANCEL = 16  # the opener no longer wants the stream
    NO_ROUTE = 17  # the exit or service is not online
    FORBIDDEN = 18  # the exit's policy refused the target
    UNREACHABLE = 19  # no route to the target
    NAME_NOT_RESOLVED = 20  # the exit could not resolve the target's name
    TARGET_TIMEOUT = 21  # the target did not answer in time
    LINK_LOST = 22  # a link on the stream's path went down mid-stream
    BAD_REQUEST = 23  # the open payload could not be understood
    BUSY = 24  # too many streams on the far side
    INTERNAL = 25  # the far side failed; details in the reason
    TARGET_REFUSED = 26  # the target refused the connection
    MEMBER_LIMIT = 27  # this member already holds as many streams there as one member may


# The reason in the GOAWAY a hub closes a revoked member's link with: the agent then takes the refusal of
# its next hello at its word at once, where a refusal out of the blue is tried again (agent.py).
REVOKED = "membership revoked"


class ProtocolError(LadderError):
    """Base of both protocol errors; carries the code for the wire."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.PROTOCOL_ERROR):
        super().__init__(message)
        self.code = code


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""


class LocalProtocolError(ProtocolError):
    """This side called the API in a way the protocol forbids."""
