"""The mux, h11-style: two Mux objects wired back to back, bytes moved by hand,
exact events asserted. Hostile peers are played with raw frames from
`frames.encode`. Time is always passed in; nothing sleeps."""

from __future__ import annotations

import hashlib
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ladder.protocol.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from ladder.protocol.events import (
    ConnectionTerminated,
    ControlReceived,
    DataReceived,
    PingAcknowledged,
    StreamAccepted,
    StreamEnded,
    StreamOpened,
    StreamRefused,
    StreamReset,
    WindowUpdated,
)
from ladder.protocol.frames import (
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
)
from ladder.protocol.mux import DEFAULT_WINDOW, EARLY_WINDOW, MAX_WINDOW, OUT_HIGH, Mux, StreamState

S = StreamState


# ---------------------------------------------------------------- helpers


def pair(**kwargs) -> tuple[Mux, Mux]:
    """A client (dialled the link, odd ids) and a server (even ids)."""
    return Mux(client=True, **kwargs), Mux(client=False, **kwargs)


def deliver(src: Mux, dst: Mux, now: float = 0.0) -> list:
    """Move everything `src` wants to send into `dst`; return dst's events."""
    return dst.receive_data(src.data_to_send(), now)


def on_wire(mux: Mux) -> list[Frame]:
    """Take the frames `mux` queued (they are not delivered anywhere)."""
    return FrameDecoder().feed(mux.data_to_send())


def sent_and_received(src: Mux, dst: Mux, now: float = 0.0) -> tuple[list[Frame], list]:
    """Like deliver(), but also return the frames that went over the wire."""
    data = src.data_to_send()
    return FrameDecoder().feed(data), dst.receive_data(data, now)


def data_sizes(frames: list[Frame]) -> list[int]:
    return [len(f.payload) for f in frames if f.type is FrameType.DATA]


def established(opener: Mux, acceptor: Mux, *, opener_window=None, acceptor_window=None) -> int:
    """Open a stream from `opener`, accept it on `acceptor`; return its id."""
    sid = opener.open_stream(b"open", window=opener_window)
    opened = opener.window if opener_window is None else opener_window
    assert deliver(opener, acceptor) == [StreamOpened(sid, b"open", opened)]
    acceptor.accept(sid, b"accept", window=acceptor_window)
    accepted = acceptor.window if acceptor_window is None else acceptor_window
    assert deliver(acceptor, opener) == [StreamAccepted(sid, b"accept", accepted)]
    return sid


def raw(type_: FrameType, sid: int, payload: bytes = b"", flags: int = 0) -> bytes:
    return encode(type_, sid, payload, flags)


def goaway_code(mux: Mux) -> int:
    """The code of the GOAWAY `mux` queued last (it must have queued one)."""
    last = on_wire(mux)[-1]
    assert last.type is FrameType.GOAWAY
    return decode_code(last.payload)[0]


def expect_remote_error(mux: Mux, data: bytes, code: ErrorCode = ErrorCode.PROTOCOL_ERROR) -> None:
    """Feeding `data` is a protocol error with `code`, and a GOAWAY says so."""
    with pytest.raises(RemoteProtocolError) as info:
        mux.receive_data(data, 1.0)
    assert info.value.code == code
    assert mux.terminated
    assert goaway_code(mux) == code
    assert mux.receive_data(raw(FrameType.CONTROL, 0, b"late"), 2.0) == []


# ------------------------------------------------------ opening and refusing


def test_open_and_accept_carry_payloads_and_windows():
    client, server = pair()
    sid = client.open_stream(b"route+target", window=5000)
    assert sid == 1
    assert client.state(1) is S.OPENING
    opened = client.data_to_send()
    assert FrameDecoder().feed(opened) == [Frame(FrameType.OPEN, 0, 1, encode_window(5000, b"route+target"))]

    assert server.receive_data(opened, 0.0) == [StreamOpened(1, b"route+target", 5000)]
    assert server.state(1) is S.PENDING
    server.accept(1, b"connected", window=7000)
    assert sent_and_received(server, client) == (
        [Frame(FrameType.ACCEPT, 0, 1, encode_window(7000, b"connected"))],
        [StreamAccepted(1, b"connected", 7000)],
    )


def test_accept_moves_both_sides_to_open():
    client, server = pair()
    sid = established(client, server)
    assert client.state(sid) is server.state(sid) is S.OPEN
    assert client.stream_count == server.stream_count == 1


def test_default_window_is_announced_when_none_is_given():
    client = Mux(client=True)
    client.open_stream()
    assert decode_window(on_wire(client)[0].payload) == (DEFAULT_WINDOW, b"")
    client = Mux(client=True, window=1234)
    client.open_stream(b"p")
    assert decode_window(on_wire(client)[0].payload) == (1234, b"p")


def test_client_uses_odd_ids_and_server_even_ids_on_one_link():
    client, server = pair()
    assert [client.open_stream() for _ in range(3)] == [1, 3, 5]
    assert [server.open_stream() for _ in range(3)] == [2, 4, 6]
    assert deliver(client, server) == [StreamOpened(i, b"", DEFAULT_WINDOW) for i in (1, 3, 5)]
    assert deliver(server, client) == [StreamOpened(i, b"", DEFAULT_WINDOW) for i in (2, 4, 6)]
    server.accept(3, b"s3")
    client.accept(4, b"c4")
    assert deliver(server, client) == [StreamAccepted(3, b"s3", DEFAULT_WINDOW)]
    assert deliver(client, server) == [StreamAccepted(4, b"c4", DEFAULT_WINDOW)]
    client.send_data(3, b"on the client's stream")
    client.send_data(4, b"on the server's stream")
    assert deliver(client, server) == [
        DataReceived(3, b"on the client's stream"),
        DataReceived(4, b"on the server's stream"),
    ]
    assert client.stream_count == server.stream_count == 6


def test_refuse_carries_code_and_reason_and_forgets_the_stream():
    client, server = pair()
    sid = client.open_stream(b"to nowhere")
    deliver(client, server)
    server.refuse(sid, ErrorCode.NO_ROUTE, "exit «home» is offline")
    assert server.state(sid) is S.CLOSED
    assert deliver(server, client) == [StreamRefused(sid, ErrorCode.NO_ROUTE, "exit «home» is offline")]
    assert client.state(sid) is S.CLOSED
    assert client.stream_count == server.stream_count == 0


def test_refuse_without_reason():
    client, server = pair()
    sid = client.open_stream()
    deliver(client, server)
    server.refuse(sid, ErrorCode.BUSY)
    assert deliver(server, client) == [StreamRefused(sid, ErrorCode.BUSY, "")]


def test_local_misuse_of_answers_is_a_local_error():
    client, server = pair()
    sid = established(client, server)
    with pytest.raises(LocalProtocolError):
        server.accept(sid)  # twice
    with pytest.raises(LocalProtocolError):
        server.refuse(sid, ErrorCode.CANCEL)  # after accepting
    with pytest.raises(LocalProtocolError):
        client.accept(sid)  # the opener cannot accept its own stream
    with pytest.raises(LocalProtocolError):
        client.accept(99)  # unknown
    with pytest.raises(LocalProtocolError):
        client.refuse(99, ErrorCode.CANCEL)
    other = client.open_stream()
    with pytest.raises(LocalProtocolError):
        client.refuse(other, ErrorCode.CANCEL)  # still OPENING: reset, not refuse
    with pytest.raises(LocalProtocolError):
        client.send_data(77, b"nowhere")


# --------------------------------------------------------------- early data


def test_early_data_rides_with_the_open_and_the_accept_window_counts_it():
    client, server = pair()
    sid = client.open_stream(b"open")
    client.send_data(sid, b"e" * (EARLY_WINDOW + 100), end=True)  # more than the early credit, then END
    frames, events = sent_and_received(client, server)
    assert [f.type for f in frames] == [FrameType.OPEN, FrameType.DATA]  # no END before the answer
    assert events == [StreamOpened(sid, b"open", DEFAULT_WINDOW), DataReceived(sid, b"e" * EARLY_WINDOW)]
    assert client.pending(sid) == 100 and server.state(sid) is S.PENDING
    server.acknowledge(sid, EARLY_WINDOW)  # used, but no WINDOW before the answer
    assert server.data_to_send() == b""
    server.accept(sid, window=EARLY_WINDOW + 50)  # counts from the stream's first byte
    frames, events = sent_and_received(server, client)
    assert [f.type for f in frames] == [FrameType.ACCEPT]
    assert events == [StreamAccepted(sid, b"", EARLY_WINDOW + 50)]
    frames, events = sent_and_received(client, server)
    assert data_sizes(frames) == [50] and not frames[-1].flags & Flag.END  # 50 left of the window
    server.acknowledge(sid, 50)  # the early bytes' credit comes back with these
    deliver(server, client)
    assert deliver(client, server) == [DataReceived(sid, b"e" * 50), StreamEnded(sid)]


def test_an_open_refused_with_early_data_drops_it():
    client, server = pair()
    sid = client.open_stream()
    client.send_data(sid, b"request")
    deliver(client, server)
    server.refuse(sid, ErrorCode.FORBIDDEN, "no")
    assert deliver(server, client) == [StreamRefused(sid, ErrorCode.FORBIDDEN, "no")]
    assert client.pending(sid) == 0 and client.stream_count == 0


def test_early_data_beyond_the_early_credit_is_a_flow_control_error():
    server = Mux(client=False)
    wire = encode(FrameType.OPEN, 1, encode_window(DEFAULT_WINDOW))
    wire += encode(FrameType.DATA, 1, b"x" * EARLY_WINDOW) + encode(FrameType.DATA, 1, b"y")
    with pytest.raises(RemoteProtocolError) as err:
        server.receive_data(wire, 0.0)
    assert err.value.code == ErrorCode.FLOW_CONTROL_ERROR


def test_an_answer_window_below_the_early_data_is_refused_on_both_sides():
    client, server = pair()
    sid = client.open_stream()
    client.send_data(sid, b"z" * 1000)
    deliver(client, server)
    with pytest.raises(LocalProtocolError):
        server.accept(sid, window=999)
    lying = encode(FrameType.ACCEPT, sid, encode_window(999))
    with pytest.raises(RemoteProtocolError) as err:
        client.receive_data(lying, 0.0)
    assert err.value.code == ErrorCode.FLOW_CONTROL_ERROR


def test_end_without_data_before_the_answer_waits_for_it():
    client, _ = pair()
    sid = client.open_stream()
    client.end_stream(sid)
    assert [f.type for f in on_wire(client)] == [FrameType.OPEN]
    client.receive_data(encode(FrameType.ACCEPT, sid, encode_window(DEFAULT_WINDOW)), 0.0)
    (end,) = on_wire(client)
    assert end.type is FrameType.DATA and end.flags & Flag.END and client.state(sid) is S.LOCAL_ENDED


# --------------------------------------------------------------------- data


def test_data_flows_both_ways():
    client, server = pair()
    sid = established(client, server)
    client.send_data(sid, b"GET / HTTP/1.1\r\n\r\n")
    server.send_data(sid, b"HTTP/1.1 200 OK\r\n\r\n")
    assert deliver(client, server) == [DataReceived(sid, b"GET / HTTP/1.1\r\n\r\n")]
    assert deliver(server, client) == [DataReceived(sid, b"HTTP/1.1 200 OK\r\n\r\n")]


def test_empty_send_queues_nothing():
    client, server = pair()
    sid = established(client, server)
    client.send_data(sid, b"")
    assert client.data_to_send() == b""


def test_memoryview_and_bytearray_are_accepted():
    client, server = pair()
    sid = established(client, server)
    client.send_data(sid, memoryview(b"view"))
    client.send_data(sid, bytearray(b"array"))
    assert deliver(client, server) == [DataReceived(sid, b"view"), DataReceived(sid, b"array")]


def test_bytes_sent_are_the_bytes_at_the_time_of_the_call():
    client, server = pair()
    sid = established(client, server, acceptor_window=1000)
    buffer = bytearray(b"a" * 1500)  # a reused receive buffer, as BufferedProtocol has
    client.send_data(sid, memoryview(buffer))  # 1000 go now, 500 wait for credit
    buffer[:] = b"b" * 1500  # the next read lands in the same buffer
    received = [e.data for e in deliver(client, server)]
    server.acknowledge(sid, 1000)
    deliver(server, client)
    received += [e.data for e in deliver(client, server)]
    assert b"".join(received) == b"a" * 1500


@pytest.mark.parametrize("first", ["client", "server"])
def test_half_close_each_direction_then_full_close(first):
    client, server = pair()
    sid = established(client, server)
    a, b = (client, server) if first == "client" else (server, client)

    a.send_data(sid, b"last words", end=True)
    assert a.state(sid) is S.LOCAL_ENDED
    assert sent_and_received(a, b) == (
        [Frame(FrameType.DATA, Flag.END, sid, b"last words")],
        [DataReceived(sid, b"last words"), StreamEnded(sid)],
    )
    assert b.state(sid) is S.REMOTE_ENDED

    with pytest.raises(LocalProtocolError):
        a.send_data(sid, b"after END")
    b.send_data(sid, b"still talking")  # the other direction is open
    assert deliver(b, a) == [DataReceived(sid, b"still talking")]

    b.end_stream(sid)
    assert b.state(sid) is S.CLOSED  # sent END after receiving one: gone
    assert deliver(b, a) == [StreamEnded(sid)]
    assert a.state(sid) is S.CLOSED
    assert client.stream_count == server.stream_count == 0
    assert a.pending(sid) == b.pending(sid) == 0


def test_end_without_data_is_an_empty_data_frame_with_end():
    client, server = pair()
    sid = established(client, server)
    client.end_stream(sid)
    assert sent_and_received(client, server) == ([Frame(FrameType.DATA, Flag.END, sid, b"")],
                                                 [StreamEnded(sid)])


def test_end_twice_is_a_local_error():
    client, server = pair()
    sid = established(client, server)
    client.end_stream(sid)
    with pytest.raises(LocalProtocolError):
        client.end_stream(sid)


def test_simultaneous_ends_close_both_sides():
    client, server = pair()
    sid = established(client, server)
    client.end_stream(sid)
    server.end_stream(sid)
    assert deliver(client, server) == [StreamEnded(sid)]
    assert deliver(server, client) == [StreamEnded(sid)]
    assert client.stream_count == server.stream_count == 0


# ------------------------------------------------------------------- resets

# Stream situations from the opener's point of view, and how to reach them.
SITUATIONS = ["opening", "open", "opener-ended", "acceptor-ended"]


def reach(situation: str) -> tuple[Mux, Mux, int]:
    client, server = pair(window=1000)
    sid = client.open_stream(b"o")
    assert deliver(client, server) == [StreamOpened(sid, b"o", 1000)]
    if situation != "opening":
        server.accept(sid)
        assert deliver(server, client) == [StreamAccepted(sid, b"", 1000)]
    if situation == "opener-ended":
        client.end_stream(sid)
        assert deliver(client, server) == [StreamEnded(sid)]
    if situation == "acceptor-ended":
        server.end_stream(sid)
        assert deliver(server, client) == [StreamEnded(sid)]
    return client, server, sid


def something_legal(mux: Mux, sid: int) -> bytes:
    """What `mux` might have in flight on the stream while a reset travels:
    whatever its state allows, plus a WINDOW and an END that are legal once
    the stream is open (a stale frame must be ignored whatever it is)."""
    state = mux.state(sid)
    if state is S.PENDING:
        mux.accept(sid, b"too late")
    elif state in (S.OPEN, S.REMOTE_ENDED):
        mux.send_data(sid, b"in flight")  # no END: that would close the stream
    in_flight = mux.data_to_send()
    if state is not S.PENDING:
        in_flight += raw(FrameType.WINDOW, sid, encode_window(5))
    if state in (S.OPEN, S.REMOTE_ENDED):
        in_flight += raw(FrameType.DATA, sid, b"", Flag.END)
    return in_flight


@pytest.mark.parametrize("situation", SITUATIONS)
@pytest.mark.parametrize("resetter", ["opener", "acceptor"])
def test_reset_from_either_side_in_each_state(situation, resetter):
    client, server, sid = reach(situation)
    a, b = (client, server) if resetter == "opener" else (server, client)

    a.reset(sid, ErrorCode.CANCEL, "changed my mind")
    assert a.state(sid) is S.CLOSED
    assert a.stream_count == 0
    reset = a.data_to_send()
    in_flight = something_legal(b, sid)  # b has not heard of the reset yet
    assert a.receive_data(in_flight, 0.0) == []  # frames in flight after a reset are ignored
    assert a.data_to_send() == b""  # and need no answer
    assert b.receive_data(reset, 0.0) == [StreamReset(sid, ErrorCode.CANCEL, "changed my mind")]
    assert b.state(sid) is S.CLOSED
    assert client.stream_count == server.stream_count == 0
    assert not client.terminated and not server.terminated
    # Both sides still work: the link survived.
    sid2 = established(client, server)
    assert sid2 == sid + 2


def test_reset_of_an_open_that_has_not_even_arrived():
    client, server = pair()
    sid = client.open_stream(b"hi")
    client.reset(sid, ErrorCode.CANCEL, "")
    assert deliver(client, server) == [StreamOpened(sid, b"hi", DEFAULT_WINDOW),
                                       StreamReset(sid, ErrorCode.CANCEL, "")]
    assert server.stream_count == 0


def test_data_in_flight_after_reset_is_ignored_even_beyond_the_window():
    client, server = pair(window=1000)
    sid = established(client, server)
    server.send_data(sid, b"x" * 1000)
    client.reset(sid, ErrorCode.CANCEL)
    # Those bytes were sent with credit; a stale WINDOW and END follow.
    in_flight = server.data_to_send() + raw(FrameType.WINDOW, sid, encode_window(10)) + raw(
        FrameType.DATA, sid, b"", Flag.END
    )
    assert client.receive_data(in_flight, 0.0) == []


def test_resets_that_cross_are_both_ignored():
    client, server = pair()
    sid = established(client, server)
    client.reset(sid, ErrorCode.CANCEL, "client")
    server.reset(sid, ErrorCode.LINK_LOST, "server")
    assert deliver(client, server) == []
    assert deliver(server, client) == []


def test_reset_clears_pending_data():
    client, server = pair(window=100)
    sid = established(client, server)
    client.send_data(sid, b"x" * 500)
    assert client.pending(sid) == 400
    client.reset(sid, ErrorCode.CANCEL)
    assert client.pending(sid) == 0


def test_reset_of_unknown_or_closed_stream_is_a_no_op():
    client = Mux(client=True)
    client.reset(41, ErrorCode.CANCEL)
    assert client.data_to_send() == b""
    sid = client.open_stream()
    client.reset(sid, ErrorCode.CANCEL)
    client.data_to_send()
    client.reset(sid, ErrorCode.CANCEL)
    assert client.data_to_send() == b""


def test_reset_after_a_refuse_crossed_it():
    client, server = pair()
    sid = client.open_stream()
    deliver(client, server)
    server.refuse(sid, ErrorCode.FORBIDDEN, "policy")
    client.reset(sid, ErrorCode.CANCEL)
    assert deliver(server, client) == []
    assert deliver(client, server) == []


# ---------------------------------------------- what the peer may not send


@pytest.mark.parametrize("client_side", [True, False])
def test_open_with_the_wrong_parity_is_a_protocol_error(client_side):
    mux = Mux(client=client_side)
    own_parity_id = 1 if client_side else 2
    expect_remote_error(mux, raw(FrameType.OPEN, own_parity_id, encode_window(1000)))


def test_open_reusing_an_id_is_a_protocol_error():
    client, server = pair()
    client.open_stream()
    opened = client.data_to_send()
    server.receive_data(opened, 0.0)
    expect_remote_error(server, opened)


def test_open_reusing_a_closed_id_is_a_protocol_error():
    client, server = pair()
    sid = client.open_stream()
    deliver(client, server)
    server.refuse(sid, ErrorCode.BUSY)
    expect_remote_error(server, raw(FrameType.OPEN, sid, encode_window(1000)))


def test_open_ids_must_increase():
    server = Mux(client=False)
    assert server.receive_data(raw(FrameType.OPEN, 5, encode_window(10)), 0.0) == [StreamOpened(5, b"", 10)]
    expect_remote_error(server, raw(FrameType.OPEN, 3, encode_window(10)))


def test_open_ids_may_skip():
    server = Mux(client=False)
    assert server.receive_data(raw(FrameType.OPEN, 9, encode_window(10)), 0.0) == [StreamOpened(9, b"", 10)]
    # Ids below the highest are implicitly used: their stray frames are ignored.
    assert server.receive_data(raw(FrameType.RESET, 3, encode_code(16, "")), 0.0) == []


@pytest.mark.parametrize(
    "frame",
    [
        raw(FrameType.DATA, 7, b"x"),
        raw(FrameType.DATA, 7, b"", Flag.END),
        raw(FrameType.WINDOW, 7, encode_window(10)),
        raw(FrameType.ACCEPT, 7, encode_window(10)),
        raw(FrameType.REFUSE, 7, encode_code(17, "")),
        raw(FrameType.RESET, 7, encode_code(16, "")),
    ],
    ids=["data", "end", "window", "accept", "refuse", "reset"],
)
@pytest.mark.parametrize("whose", ["peer-parity", "own-parity"])
def test_frames_for_never_opened_streams_are_protocol_errors(frame, whose):
    # Stream 7 is odd: the client's parity. A server has never seen it opened
    # (peer parity); a client that opened only stream 1 never allocated it.
    mux = Mux(client=(whose == "own-parity"))
    if whose == "own-parity":
        mux.open_stream()
        mux.data_to_send()
    expect_remote_error(mux, frame)


@pytest.mark.parametrize(
    "frame",
    [
        raw(FrameType.DATA, 0, b"x"),
        raw(FrameType.OPEN, 0, encode_window(10)),
        raw(FrameType.ACCEPT, 0, encode_window(10)),
        raw(FrameType.REFUSE, 0, encode_code(1, "")),
        raw(FrameType.RESET, 0, encode_code(1, "")),
        raw(FrameType.WINDOW, 0, encode_window(10)),
        raw(FrameType.PING, 1, b"12345678"),
        raw(FrameType.GOAWAY, 1, encode_code(0, "")),
        raw(FrameType.CONTROL, 1, b"{}"),
    ],
    ids=["data-0", "open-0", "accept-0", "refuse-0", "reset-0", "window-0",
         "ping-1", "goaway-1", "control-1"],
)
def test_stream_frames_on_stream_0_and_link_frames_on_streams_are_errors(frame):
    client, server = pair()
    established(client, server)  # stream 1 exists, so only the id placement is wrong
    expect_remote_error(server, frame)


def test_end_before_accept_is_a_protocol_error():
    client, server = pair()
    sid = client.open_stream()
    deliver(client, server)
    expect_remote_error(server, encode(FrameType.DATA, sid, b"early and final", Flag.END))


def test_data_to_an_opener_before_it_was_accepted_is_a_protocol_error():
    client = Mux(client=True)
    sid = client.open_stream()
    expect_remote_error(client, raw(FrameType.DATA, sid, b"eager"))


def test_data_after_the_peers_end_is_a_protocol_error():
    client, server = pair()
    sid = established(client, server)
    client.end_stream(sid)
    deliver(client, server)
    expect_remote_error(server, raw(FrameType.DATA, sid, b"zombie"))


def test_second_end_is_a_protocol_error():
    client, server = pair()
    sid = established(client, server)
    client.end_stream(sid)
    deliver(client, server)
    expect_remote_error(server, raw(FrameType.DATA, sid, b"", Flag.END))


def test_accept_twice_is_a_protocol_error():
    client, server = pair()
    sid = established(client, server)
    expect_remote_error(client, raw(FrameType.ACCEPT, sid, encode_window(10)))


def test_refuse_after_accept_is_a_protocol_error():
    client, server = pair()
    sid = established(client, server)
    expect_remote_error(client, raw(FrameType.REFUSE, sid, encode_code(17, "")))


def test_accept_or_refuse_of_a_stream_the_peer_opened_is_a_protocol_error():
    client, server = pair()
    sid = client.open_stream()
    deliver(client, server)
    expect_remote_error(server, raw(FrameType.ACCEPT, sid, encode_window(10)))
    client, server = pair()
    sid = client.open_stream()
    deliver(client, server)
    expect_remote_error(server, raw(FrameType.REFUSE, sid, encode_code(17, "")))


@pytest.mark.parametrize(
    "frame",
    [
        raw(FrameType.OPEN, 2, b"\x00\x01"),
        raw(FrameType.ACCEPT, 1, b"\x00"),
        raw(FrameType.WINDOW, 1, b""),
        raw(FrameType.REFUSE, 1, b"\x00"),
        raw(FrameType.RESET, 1, b""),
        raw(FrameType.GOAWAY, 0, b"\x07"),
        raw(FrameType.PING, 0, b"1234567"),
        raw(FrameType.PING, 0, b"123456789"),
    ],
    ids=["open", "accept", "window", "refuse", "reset", "goaway", "ping-short", "ping-long"],
)
def test_truncated_payloads_are_remote_errors(frame):
    client = Mux(client=True)
    client.open_stream()
    client.data_to_send()
    with pytest.raises(RemoteProtocolError):
        client.receive_data(frame, 0.0)
    assert client.terminated


def test_events_before_a_bad_frame_are_lost_but_the_goaway_names_the_error():
    client, server = pair()
    client.open_stream(b"fine")
    data = client.data_to_send() + raw(FrameType.DATA, 0, b"bad")
    with pytest.raises(RemoteProtocolError):
        server.receive_data(data, 0.0)
    assert goaway_code(server) == ErrorCode.PROTOCOL_ERROR


# ------------------------------------------------------------ flow control


def test_sender_never_exceeds_the_window_the_acceptor_declared():
    client, server = pair()
    sid = established(client, server, acceptor_window=1000)
    client.send_data(sid, b"x" * 2500)
    assert client.pending(sid) == 1500
    sent, events = sent_and_received(client, server)
    assert data_sizes(sent) == [1000]
    assert events == [DataReceived(sid, b"x" * 1000)]


# ------------------------------------------------------- window autotuning


def test_a_fast_reader_s_window_doubles_up_to_the_maximum():
    client, server = Mux(client=True), Mux(client=False, window=4096, max_window=16384)
    sid = established(client, server)
    sizes = [server._streams[sid].recv_size]
    for step in range(40):  # the app uses every byte as it arrives, a window every 10 ms
        client.send_data(sid, b"e" * 4096)
        for event in server.receive_data(client.data_to_send(), step * 0.01):
            server.acknowledge(sid, len(event.data))
        client.receive_data(server.data_to_send(), step * 0.01)
        sizes.append(server._streams[sid].recv_size)
    assert sorted(set(sizes)) == [4096, 8192, 16384] and sizes == sorted(sizes)  # doubled, then capped
    assert client.pending(sid) == 0  # the sender used the larger credit


def test_a_slow_reader_keeps_its_window():
    client, server = Mux(client=True), Mux(client=False, window=4096, max_window=16384)
    sid = established(client, server)
    client.send_data(sid, b"s" * 40960)
    now = 0.0
    for _ in range(40):  # a window arrives at once, but the app uses only 1 KiB every 0.25 s
        for event in server.receive_data(client.data_to_send(), now):
            assert isinstance(event, DataReceived)
        server.acknowledge(sid, 1024)
        client.receive_data(server.data_to_send(), now)
        now += 0.25
    assert server._streams[sid].recv_size == 4096 and client.pending(sid) < 40960 - 4096


def test_credit_passes_on_a_grown_window_as_given():
    """The hub's switch: the far member grew its window, so the hub's grows by as much."""
    client, server = pair(window=4096)
    sid = established(client, server)
    client.send_data(sid, b"c" * 20000)
    deliver(client, server)  # 4096 arrive; the rest waits for credit
    server.credit(sid, 4096 + 8192)  # the far end used 4096 and grew its window by 8192
    frames, _ = sent_and_received(server, client)
    assert [decode_window(f.payload)[0] for f in frames] == [12288]
    assert data_sizes(on_wire(client)) == [12288]  # a window of 12288 now, not 4096
    assert server._streams[sid].recv_size == 12288


def test_windows_do_not_grow_unless_the_mux_is_told_a_maximum():
    client, server = pair(window=4096)  # a hub link: its credit is mirrored end to end
    sid = established(client, server)
    for step in range(20):
        client.send_data(sid, b"h" * 4096)
        for event in server.receive_data(client.data_to_send(), step * 0.001):
            server.acknowledge(sid, len(event.data))
        client.receive_data(server.data_to_send(), step * 0.001)
    assert server._streams[sid].recv_size == 4096


def test_sender_never_exceeds_the_window_the_opener_declared():
    client, server = pair()
    sid = established(client, server, opener_window=1000)
    server.send_data(sid, b"y" * 5000)
    assert server.pending(sid) == 4000
    assert data_sizes(sent_and_received(server, client)[0]) == [1000]


def test_held_data_flows_after_the_receiver_acknowledges():
    client, server = pair()
    sid = established(client, server, acceptor_window=1000)
    client.send_data(sid, bytes(range(250)) * 10)
    first = deliver(client, server)
    assert first == [DataReceived(sid, (bytes(range(250)) * 10)[:1000])]
    server.acknowledge(sid, 1000)
    assert sent_and_received(server, client) == (
        [Frame(FrameType.WINDOW, 0, sid, encode_window(1000))],
        [WindowUpdated(sid, 1000, 500)],
    )
    assert client.pending(sid) == 500
    second = deliver(client, server)
    server.acknowledge(sid, 1000)
    assert deliver(server, client) == [WindowUpdated(sid, 1000, 0)]
    third = deliver(client, server)
    got = b"".join(e.data for e in first + second + third)
    assert got == bytes(range(250)) * 10
    assert client.pending(sid) == 0


def test_acknowledge_is_batched_into_quarter_windows():
    client, server = pair()
    sid = established(client, server, acceptor_window=1000)
    client.send_data(sid, b"z" * 1000)
    deliver(client, server)
    server.acknowledge(sid, 100)
    server.acknowledge(sid, 149)
    assert server.data_to_send() == b""  # 249 < 1000 / 4
    server.acknowledge(sid, 1)
    assert on_wire(server) == [Frame(FrameType.WINDOW, 0, sid, encode_window(250))]
    server.acknowledge(sid, 249)
    assert server.data_to_send() == b""
    server.acknowledge(sid, 400)
    assert on_wire(server) == [Frame(FrameType.WINDOW, 0, sid, encode_window(649))]


def test_acknowledge_of_nothing_or_unknown_streams_is_a_no_op():
    client, server = pair(window=4)
    sid = established(client, server)
    server.acknowledge(sid, 0)
    server.acknowledge(sid, -5)
    server.acknowledge(999, 100)
    assert server.data_to_send() == b""


def test_no_window_update_once_the_peer_has_ended():
    client, server = pair()
    sid = established(client, server, acceptor_window=1000)
    client.send_data(sid, b"q" * 1000, end=True)
    assert deliver(client, server) == [DataReceived(sid, b"q" * 1000), StreamEnded(sid)]
    server.acknowledge(sid, 1000)
    assert server.data_to_send() == b""  # nothing more can come: no credit to give


def test_window_updated_reports_increment_and_what_is_still_pending():
    client, server = pair()
    sid = established(client, server, acceptor_window=400)
    client.send_data(sid, b"w" * 1000)
    deliver(client, server)
    server.acknowledge(sid, 100)
    assert deliver(server, client) == [WindowUpdated(sid, 100, 500)]
    server.acknowledge(sid, 300)
    assert deliver(server, client) == [WindowUpdated(sid, 300, 200)]


def test_window_update_with_nothing_pending():
    client, server = pair()
    sid = established(client, server, acceptor_window=400)
    client.send_data(sid, b"w" * 400)
    deliver(client, server)
    server.acknowledge(sid, 400)
    assert deliver(server, client) == [WindowUpdated(sid, 400, 0)]
    assert client.data_to_send() == b""


def test_streams_have_independent_windows():
    client, server = pair()
    blocked = established(client, server, acceptor_window=10)
    free = established(client, server, acceptor_window=1000)
    client.send_data(blocked, b"b" * 100)
    client.send_data(free, b"f" * 100)
    assert deliver(client, server) == [DataReceived(blocked, b"b" * 10), DataReceived(free, b"f" * 100)]
    assert client.pending(blocked) == 90
    assert client.pending(free) == 0


def test_end_is_sent_only_after_the_outbox_drains():
    client, server = pair()
    sid = established(client, server, acceptor_window=1000)
    client.send_data(sid, b"e" * 2500, end=True)
    assert client.state(sid) is S.OPEN  # END is queued, not sent
    with pytest.raises(LocalProtocolError):
        client.send_data(sid, b"more")  # but nothing may follow it
    assert sent_and_received(client, server) == (
        [Frame(FrameType.DATA, 0, sid, b"e" * 1000)],
        [DataReceived(sid, b"e" * 1000)],
    )
    server.acknowledge(sid, 1000)
    deliver(server, client)
    assert client.state(sid) is S.OPEN
    assert sent_and_received(client, server) == (
        [Frame(FrameType.DATA, 0, sid, b"e" * 1000)],
        [DataReceived(sid, b"e" * 1000)],
    )
    server.acknowledge(sid, 1000)
    deliver(server, client)
    assert client.state(sid) is S.LOCAL_ENDED
    assert sent_and_received(client, server) == (
        [Frame(FrameType.DATA, Flag.END, sid, b"e" * 500)],
        [DataReceived(sid, b"e" * 500), StreamEnded(sid)],
    )


def test_end_stream_while_data_is_pending_waits_for_it():
    client, server = pair()
    sid = established(client, server, acceptor_window=100)
    client.send_data(sid, b"p" * 150)
    client.end_stream(sid)
    assert [f.flags for f in on_wire(client)] == [0]
    client.receive_data(raw(FrameType.WINDOW, sid, encode_window(100)), 0.0)
    assert on_wire(client) == [Frame(FrameType.DATA, Flag.END, sid, b"p" * 50)]


def test_end_with_exactly_the_remaining_credit_rides_on_the_last_data():
    client, server = pair()
    sid = established(client, server, acceptor_window=100)
    client.send_data(sid, b"k" * 100, end=True)
    assert on_wire(client) == [Frame(FrameType.DATA, Flag.END, sid, b"k" * 100)]


def test_end_with_no_credit_left_is_still_sent():
    # END carries no bytes, so it needs no credit.
    client, server = pair()
    sid = established(client, server, acceptor_window=100)
    client.send_data(sid, b"k" * 100)
    client.end_stream(sid)
    assert [(f.flags, len(f.payload)) for f in on_wire(client)] == [(0, 100), (Flag.END, 0)]


def test_data_larger_than_a_frame_is_split():
    client, server = pair()
    sid = established(client, server)  # 2 MiB windows
    data = bytes(range(256)) * (MAX_PAYLOAD * 25 // 8 // 256)  # 3.125 frames
    client.send_data(sid, data)
    wire = client.data_to_send()
    assert data_sizes(FrameDecoder().feed(wire)) == [MAX_PAYLOAD] * 3 + [len(data) - 3 * MAX_PAYLOAD]
    assert b"".join(e.data for e in server.receive_data(wire, 0.0)) == data


def test_queued_pieces_share_frames_up_to_the_frame_limit():
    client, server = pair()
    sid = established(client, server)
    sizes = [2, MAX_PAYLOAD - 2, 2, MAX_PAYLOAD - 2, 2, 100]
    pieces = [bytes([i]) * size for i, size in enumerate(sizes)]
    client.send_data(sid, pieces)  # a sealed channel's (length, message) pairs
    wire = client.data_to_send()
    assert data_sizes(FrameDecoder().feed(wire)) == [MAX_PAYLOAD, MAX_PAYLOAD, 102]
    assert b"".join(e.data for e in server.receive_data(wire, 0.0)) == b"".join(pieces)


def test_a_view_of_a_reused_buffer_is_copied_when_queued():
    client, server = pair()
    sid = established(client, server, acceptor_window=10)
    buffer = bytearray(b"a" * 30)
    client.send_data(sid, memoryview(buffer))
    buffer[:] = b"b" * 30  # the caller reuses its buffer before the credit arrives
    received = b"".join(e.data for e in server.receive_data(client.data_to_send(), 0.0))
    server.acknowledge(sid, 10)
    deliver(server, client)
    received += b"".join(e.data for e in server.receive_data(client.data_to_send(), 0.0))
    assert received == b"a" * 20


@given(amount=st.integers(1, 70_000), sizes=st.lists(st.integers(0, 150_000), min_size=1, max_size=6))
@settings(max_examples=60, deadline=None)
def test_bounded_data_to_send_gives_the_same_bytes_in_pieces(amount, sizes):
    whole, bounded = pair(), pair()
    for mux, server in (whole, bounded):
        sid = established(mux, server, acceptor_window=1 << 20)
        for i, size in enumerate(sizes):
            mux.send_data(sid, bytes([i]) * size)
        mux.send_control(b"{}")
    chunks = []
    while chunk := bounded[0].data_to_send(amount):
        chunks.append(chunk)
    assert all(len(c) == amount for c in chunks[:-1]) and 0 < len(chunks[-1]) <= amount
    assert b"".join(chunks) == whole[0].data_to_send()


def test_split_respects_both_the_frame_limit_and_the_window():
    client, server = pair()
    sid = established(client, server, acceptor_window=MAX_PAYLOAD + 10)
    client.send_data(sid, b"s" * (3 * MAX_PAYLOAD))
    assert data_sizes(on_wire(client)) == [MAX_PAYLOAD, 10]
    assert client.pending(sid) == 2 * MAX_PAYLOAD - 10


def _transfer(total: int, window: int, chunk: int, split: int | None = None) -> tuple[bytes, list[int]]:
    """Send `total` bytes through `window`, acknowledging every DataReceived."""
    client, server = pair()
    sid = established(client, server, acceptor_window=window)
    data = hashlib.shake_256(b"ladder").digest(total)
    sizes: list[int] = []
    received = bytearray()
    ended = False
    offset = 0
    for _round in range(100_000):
        if offset < total and client.pending(sid) == 0:
            piece = data[offset : offset + chunk]
            offset += len(piece)
            client.send_data(sid, piece, end=offset == total)
        out = client.data_to_send()
        sizes += data_sizes(FrameDecoder().feed(out))
        step = split or len(out) or 1
        for i in range(0, len(out), step):
            for event in server.receive_data(out[i : i + step], 0.0):
                if isinstance(event, DataReceived):
                    received += event.data
                    server.acknowledge(sid, len(event.data))
                elif isinstance(event, StreamEnded):
                    ended = True
        deliver(server, client)
        if ended:
            break
    else:
        pytest.fail(f"transfer stalled at {len(received)} of {total} bytes")
    assert client.state(sid) is S.LOCAL_ENDED and client.pending(sid) == 0
    assert server.state(sid) is S.REMOTE_ENDED
    return bytes(received), sizes


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_one_megabyte_through_a_4k_window_completes():
    received, sizes = _transfer(1 << 20, 4096, 64 * 1024)
    assert digest(received) == digest(hashlib.shake_256(b"ladder").digest(1 << 20))
    assert max(sizes) <= 4096


def test_one_megabyte_through_a_4k_window_in_odd_splits_completes():
    received, sizes = _transfer(1 << 20, 4096, 10_000, split=777)
    assert digest(received) == digest(hashlib.shake_256(b"ladder").digest(1 << 20))
    assert max(sizes) <= 4096


@given(
    total=st.integers(1, 20_000),
    window=st.integers(1, 3000),
    chunk=st.integers(1, 5000),
    split=st.one_of(st.none(), st.integers(1, 500)),
)
@settings(max_examples=60, deadline=None)
def test_any_window_and_chunking_delivers_everything(total, window, chunk, split):
    received, sizes = _transfer(total, window, chunk, split)
    assert received == hashlib.shake_256(b"ladder").digest(total)
    assert max(sizes) <= window


def test_data_beyond_credit_is_a_flow_control_error():
    client, server = pair()
    sid = client.open_stream()
    deliver(client, server)
    server.accept(sid, window=1000)
    server.data_to_send()
    expect_remote_error(server, raw(FrameType.DATA, sid, b"x" * 1001), ErrorCode.FLOW_CONTROL_ERROR)


def test_credit_is_cumulative_across_frames():
    client, server = pair()
    sid = client.open_stream()
    deliver(client, server)
    server.accept(sid, window=1000)
    server.data_to_send()
    assert server.receive_data(raw(FrameType.DATA, sid, b"x" * 600), 0.0) == [DataReceived(sid, b"x" * 600)]
    assert server.receive_data(raw(FrameType.DATA, sid, b"x" * 400), 0.0) == [DataReceived(sid, b"x" * 400)]
    expect_remote_error(server, raw(FrameType.DATA, sid, b"x"), ErrorCode.FLOW_CONTROL_ERROR)


def test_credit_returned_by_window_may_be_used():
    client, server = pair()
    sid = client.open_stream()
    deliver(client, server)
    server.accept(sid, window=1000)
    server.receive_data(raw(FrameType.DATA, sid, b"x" * 1000), 0.0)
    server.acknowledge(sid, 1000)
    assert on_wire(server)[-1] == Frame(FrameType.WINDOW, 0, sid, encode_window(1000))
    assert server.receive_data(raw(FrameType.DATA, sid, b"y" * 1000), 0.0) == [DataReceived(sid, b"y" * 1000)]


def test_opener_enforces_its_own_window_too():
    client = Mux(client=True)
    sid = client.open_stream(window=10)
    client.receive_data(raw(FrameType.ACCEPT, sid, encode_window(10)), 0.0)
    expect_remote_error(client, raw(FrameType.DATA, sid, b"x" * 11), ErrorCode.FLOW_CONTROL_ERROR)


def test_largest_window_is_allowed():
    server = Mux(client=False)
    assert server.receive_data(raw(FrameType.OPEN, 1, encode_window(MAX_WINDOW)), 0.0) == [
        StreamOpened(1, b"", MAX_WINDOW)]


def test_open_window_above_2_31_is_a_flow_control_error():
    expect_remote_error(
        Mux(client=False), raw(FrameType.OPEN, 1, encode_window(MAX_WINDOW + 1)), ErrorCode.FLOW_CONTROL_ERROR
    )


def test_accept_window_above_2_31_is_a_flow_control_error():
    client = Mux(client=True)
    sid = client.open_stream()
    expect_remote_error(
        client, raw(FrameType.ACCEPT, sid, encode_window(2**32 - 1)), ErrorCode.FLOW_CONTROL_ERROR
    )


def test_window_increments_overflowing_2_31_are_a_flow_control_error():
    client = Mux(client=True)
    sid = client.open_stream()
    client.receive_data(raw(FrameType.ACCEPT, sid, encode_window(MAX_WINDOW - 10)), 0.0)
    assert client.receive_data(raw(FrameType.WINDOW, sid, encode_window(10)), 0.0) == [
        WindowUpdated(sid, 10, 0)
    ]
    expect_remote_error(client, raw(FrameType.WINDOW, sid, encode_window(1)), ErrorCode.FLOW_CONTROL_ERROR)


def test_largest_window_works_end_to_end():
    client, server = pair()
    sid = established(client, server, opener_window=MAX_WINDOW, acceptor_window=MAX_WINDOW)
    client.send_data(sid, b"big credit")
    assert deliver(client, server) == [DataReceived(sid, b"big credit")]


@pytest.mark.parametrize("window", [MAX_WINDOW + 1, 2**32], ids=["2^31", "2^32"])
@pytest.mark.parametrize("who", ["open", "accept"])
def test_window_above_the_maximum_is_a_local_error(who, window):
    client, server = pair()
    if who == "open":
        with pytest.raises(LocalProtocolError):
            client.open_stream(window=window)
        assert client.stream_count == 0
        assert client.data_to_send() == b""
    else:
        sid = client.open_stream()
        deliver(client, server)
        with pytest.raises(LocalProtocolError):
            server.accept(sid, window=window)
        assert server.state(sid) is S.PENDING
        assert server.data_to_send() == b""


def test_largest_open_and_accept_payloads_fit_in_a_frame():
    client, server = pair()
    big = b"r" * (MAX_PAYLOAD - 4)  # the window takes 4 bytes
    sid = client.open_stream(big)
    assert deliver(client, server) == [StreamOpened(sid, big, DEFAULT_WINDOW)]
    server.accept(sid, big)
    assert deliver(server, client) == [StreamAccepted(sid, big, DEFAULT_WINDOW)]


@pytest.mark.parametrize("who", ["open", "accept"])
def test_payload_too_large_for_a_frame_is_a_local_error(who):
    client, server = pair()
    big = b"r" * (MAX_PAYLOAD - 3)
    if who == "open":
        with pytest.raises(LocalProtocolError):
            client.open_stream(big)
        assert client.stream_count == 0
        assert client.data_to_send() == b""
    else:
        sid = client.open_stream()
        deliver(client, server)
        with pytest.raises(LocalProtocolError):
            server.accept(sid, big)
        assert server.state(sid) is S.PENDING
        assert server.data_to_send() == b""


def test_window_update_for_a_stream_we_ended_is_reported():
    client, server = pair()
    sid = established(client, server, acceptor_window=100)
    client.send_data(sid, b"x" * 100, end=True)
    deliver(client, server)
    server.send_data(sid, b"reply")
    assert deliver(server, client) == [DataReceived(sid, b"reply")]
    assert client.receive_data(raw(FrameType.WINDOW, sid, encode_window(100)), 0.0) == [
        WindowUpdated(sid, 100, 0)
    ]
    assert client.data_to_send() == b""


# ------------------------------------------------------------------ limits


def test_peer_exceeding_max_streams_is_a_stream_limit_error():
    client = Mux(client=True)
    server = Mux(client=False, max_streams=2)
    for _ in range(2):
        client.open_stream()
    assert len(deliver(client, server)) == 2
    client.open_stream()
    expect_remote_error(server, client.data_to_send(), ErrorCode.STREAM_LIMIT)


def test_peer_exceeding_max_pending_opens_is_a_stream_limit_error():
    client = Mux(client=True)
    server = Mux(client=False, max_pending_opens=2)
    client.open_stream()
    client.open_stream()
    deliver(client, server)
    client.open_stream()
    expect_remote_error(server, client.data_to_send(), ErrorCode.STREAM_LIMIT)


@pytest.mark.parametrize("answer", ["accept", "refuse", "reset"])
def test_answering_an_open_frees_a_pending_slot(answer):
    client = Mux(client=True)
    server = Mux(client=False, max_pending_opens=2)
    first = client.open_stream()
    client.open_stream()
    deliver(client, server)
    if answer == "accept":
        server.accept(first)
    elif answer == "refuse":
        server.refuse(first, ErrorCode.BUSY)
    else:
        server.reset(first, ErrorCode.BUSY)
    client.open_stream()
    assert deliver(client, server) == [StreamOpened(5, b"", DEFAULT_WINDOW)]


def test_the_opener_cancelling_frees_the_acceptors_pending_slot():
    client = Mux(client=True)
    server = Mux(client=False, max_pending_opens=1)
    sid = client.open_stream()
    client.reset(sid, ErrorCode.CANCEL)
    client.open_stream()
    assert deliver(client, server) == [
        StreamOpened(1, b"", DEFAULT_WINDOW),
        StreamReset(1, ErrorCode.CANCEL, ""),
        StreamOpened(3, b"", DEFAULT_WINDOW),
    ]


def test_closing_streams_frees_live_slots_on_both_sides():
    client, server = pair(max_streams=1)
    sid = established(client, server)
    assert not client.can_open()
    client.end_stream(sid)
    server.end_stream(sid)
    deliver(client, server)
    deliver(server, client)
    assert client.can_open()
    established(client, server)


def test_local_max_streams():
    client = Mux(client=True, max_streams=2, max_pending_opens=10)
    client.open_stream()
    assert client.can_open()
    sid = client.open_stream()
    assert not client.can_open()
    with pytest.raises(LocalProtocolError) as info:
        client.open_stream()
    assert info.value.code == ErrorCode.STREAM_LIMIT
    assert FrameDecoder().feed(client.data_to_send()) == [
        Frame(FrameType.OPEN, 0, 1, encode_window(DEFAULT_WINDOW)),
        Frame(FrameType.OPEN, 0, 3, encode_window(DEFAULT_WINDOW)),
    ]
    client.reset(sid, ErrorCode.CANCEL)
    assert client.can_open()


def test_local_max_pending_opens_and_answers_free_them():
    client = Mux(client=True, max_streams=10, max_pending_opens=2)
    server = Mux(client=False)
    a = client.open_stream()
    b = client.open_stream()
    assert not client.can_open()
    with pytest.raises(LocalProtocolError) as info:
        client.open_stream()
    assert info.value.code == ErrorCode.STREAM_LIMIT
    deliver(client, server)
    server.accept(a)
    deliver(server, client)
    assert client.can_open()
    c = client.open_stream()
    assert not client.can_open()
    deliver(client, server)
    server.refuse(b, ErrorCode.BUSY)
    deliver(server, client)
    assert client.can_open()
    server.reset(c, ErrorCode.BUSY)
    deliver(server, client)
    client.open_stream()
    assert client.can_open()


def test_live_streams_count_toward_the_limit_after_being_accepted():
    client = Mux(client=True, max_streams=2)
    server = Mux(client=False, max_streams=2)
    established(client, server)
    established(client, server)
    assert not client.can_open()
    with pytest.raises(LocalProtocolError):
        client.open_stream()


# ---------------------------------------------------------- control, ping


def test_control_round_trip():
    client, server = pair()
    client.send_control(b'{"type":"hello"}')
    server.send_control(b"")
    assert deliver(client, server) == [ControlReceived(b'{"type":"hello"}')]
    assert deliver(server, client) == [ControlReceived(b"")]


def test_control_up_to_a_frame_and_no_larger():
    client, server = pair()
    client.send_control(b"c" * MAX_PAYLOAD)
    assert deliver(client, server) == [ControlReceived(b"c" * MAX_PAYLOAD)]
    with pytest.raises(LocalProtocolError):
        client.send_control(b"c" * (MAX_PAYLOAD + 1))


def test_ping_is_answered_automatically_and_reports_the_rtt():
    client, server = pair()
    client.ping(now=10.0)
    ping, events = sent_and_received(client, server, now=10.1)
    assert [(f.type, f.flags, f.stream_id, len(f.payload)) for f in ping] == [(FrameType.PING, 0, 0, 8)]
    assert events == []
    ack, events = sent_and_received(server, client, now=10.25)
    assert ack == [Frame(FrameType.PING, Flag.ACK, 0, ping[0].payload)]
    assert events == [PingAcknowledged(pytest.approx(0.25))]


def test_unsolicited_ping_ack_is_ignored():
    client = Mux(client=True)
    assert client.receive_data(raw(FrameType.PING, 0, b"8 bytes!", Flag.ACK), 1.0) == []
    assert client.data_to_send() == b""


def test_a_ping_ack_counts_once():
    client, server = pair()
    client.ping(0.0)
    deliver(client, server)
    ack = server.data_to_send()
    assert client.receive_data(ack, 1.0) == [PingAcknowledged(1.0)]
    assert client.receive_data(ack, 2.0) == []


def test_overlapping_pings_each_report_their_own_rtt():
    client = Mux(client=True, keepalive=5, dead_after=15)
    server = Mux(client=False, keepalive=5, dead_after=15)
    client.ping(0.0)
    client.handle_timer(5.0)  # idle since 0: the keepalive pings again
    deliver(client, server, now=5.5)  # both pings arrive late
    assert deliver(server, client, now=6.0) == [PingAcknowledged(6.0), PingAcknowledged(1.0)]


# ----------------------------------------------------------------- backlog


def ping_flood(count: int, start: int = 0) -> bytes:
    return b"".join(raw(FrameType.PING, 0, i.to_bytes(8, "big")) for i in range(start, start + count))


PING_SIZE = 9 + 8
READ = 256 * 1024 // PING_SIZE  # the pings one 256 KiB read of the adapter holds


def test_a_peer_that_pings_without_reading_is_paused_then_cut():
    mux = Mux(client=False, pause_backlog=64 * 1024, max_backlog=1024 * 1024)
    mux.pause_writing()  # the peer does not read: the transport is full
    fed = 0
    while not mux.reading_paused:
        mux.receive_data(ping_flood(1000, fed), 1.0)
        fed += 1000
        assert fed < 10_000, "the backlog never paused reading"
    assert mux.backlog == fed * PING_SIZE and mux.backlog > 64 * 1024
    # An adapter that went on reading anyway: the link is cut past the cap, not before.
    with pytest.raises(RemoteProtocolError) as info:
        for _ in range(100):
            fed += READ
            mux.receive_data(ping_flood(READ, fed - READ), 2.0)
            assert mux.backlog == fed * PING_SIZE <= 1024 * 1024
    assert info.value.code == ErrorCode.QUEUE_LIMIT
    assert 1024 * 1024 < fed * PING_SIZE <= 1024 * 1024 + READ * PING_SIZE
    assert goaway_code(mux) == ErrorCode.QUEUE_LIMIT


def test_the_dialling_side_never_pauses_reading_but_is_cut_past_the_cap():
    """If both ends of a link could pause, bulk both ways could wedge it: only the hub's side pauses."""
    mux = Mux(client=True, pause_backlog=1024, max_backlog=64 * 1024)
    mux.pause_writing()
    with pytest.raises(RemoteProtocolError) as info:
        for step in range(100):
            mux.receive_data(ping_flood(1000, step * 1000), 1.0)
            assert not mux.reading_paused
    assert info.value.code == ErrorCode.QUEUE_LIMIT and step == 3


def test_a_peer_not_read_lives_while_it_reads_and_is_dropped_when_it_stops():
    """A slow member whose answers wait behind its download is not read meanwhile, but it is there."""
    mux = Mux(client=False, now=0.0, pause_backlog=1024, keepalive=5, dead_after=15)
    mux.pause_writing()
    mux.receive_data(ping_flood(100), 0.0)
    assert mux.reading_paused
    for now in range(10, 100, 10):  # the transport drains now and then, then is full again
        assert mux.handle_timer(float(now)) == []
        mux.resume_writing(float(now))
        mux.pause_writing()
        assert mux.reading_paused and not mux.terminated
    assert mux.handle_timer(95.0) == [] and mux.handle_timer(104.9) == []  # it pings, unanswered
    assert mux.get_timer() == 105.0
    (event,) = mux.handle_timer(105.0)
    assert event == ConnectionTerminated(ErrorCode.QUEUE_LIMIT, "the peer read none of its answers for 15 s")
    assert mux.terminated


def test_a_peer_read_again_after_a_long_pause_is_not_taken_for_dead():
    mux = Mux(client=False, now=0.0, pause_backlog=1024, keepalive=5, dead_after=15)
    mux.pause_writing()
    mux.receive_data(ping_flood(100), 0.0)
    mux.resume_writing(20.0)  # 20 s later the peer read it all: nothing was heard from it meanwhile
    mux.data_to_send()
    assert not mux.reading_paused
    assert mux.handle_timer(21.0) == [] and not mux.terminated
    (event,) = mux.handle_timer(35.0)  # and then silence, with nothing to drain
    assert event == ConnectionTerminated(ErrorCode.LINK_TIMEOUT, "no frames from the peer for 15 s")


def test_a_peer_that_reads_its_answers_is_never_paused_nor_cut():
    mux = Mux(client=False, pause_backlog=1024, max_backlog=8192)
    answered = 0
    for step in range(50):  # 50 x 1000 pings: many times the cap in answers, all taken away
        mux.receive_data(ping_flood(1000, step * 1000), 1.0)
        assert mux.backlog == 1000 * PING_SIZE  # before the adapter writes them
        answered += len(FrameDecoder().feed(mux.data_to_send()))
        assert mux.backlog == 0 and not mux.reading_paused
    assert answered == 50_000 and not mux.terminated


def test_while_the_transport_takes_bytes_a_big_backlog_is_no_error():
    """Right after admission a hub queues lists larger than the pause mark; the transport takes them."""
    mux = Mux(client=False, pause_backlog=1024, max_backlog=8192)
    for _ in range(20):
        mux.send_control(b"x" * 1000)
    mux.receive_data(ping_flood(10), 1.0)
    assert mux.backlog > 8192 and not mux.reading_paused and not mux.terminated
    mux.pause_writing()
    assert mux.reading_paused
    mux.resume_writing(1.0)
    assert not mux.reading_paused


def test_data_waiting_for_the_transport_is_no_backlog():
    """DATA is bounded by credit: a bulk sender whose transport is full keeps reading its peer."""
    client, server = pair(pause_backlog=1024, max_backlog=8192)
    sid = established(client, server)
    server.send_data(sid, b"d" * DEFAULT_WINDOW)  # a whole window in the queue
    server.pause_writing()
    assert server.backlog == 0 and not server.reading_paused
    client.send_data(sid, b"u" * 600_000)
    assert sum(len(e.data) for e in deliver(client, server)) == 600_000
    server.acknowledge(sid, 600_000)  # a quarter window used: a WINDOW frame, which is backlog
    assert 0 < server.backlog < 1024 and not server.reading_paused


def test_the_backlog_drains_as_its_last_bytes_leave():
    mux = Mux(client=False, pause_backlog=100 * PING_SIZE, max_backlog=10_000 * PING_SIZE)
    mux.pause_writing()
    mux.receive_data(ping_flood(200), 1.0)
    assert mux.reading_paused and mux.backlog == 200 * PING_SIZE
    mux.resume_writing(1.0)
    mux.pause_writing()  # one write's worth left, then the transport is full again
    taken = mux.data_to_send(150 * PING_SIZE + 5)
    assert len(taken) == 150 * PING_SIZE + 5
    assert mux.backlog == 200 * PING_SIZE  # the merged run of answers has not left yet
    mux.data_to_send(50 * PING_SIZE - 5)
    assert mux.backlog == 0 and not mux.reading_paused
    assert len(FrameDecoder().feed(taken + b"")) == 150


def test_refusals_of_the_peer_s_opens_are_backlog():
    """A peer that opens streams it knows are refused and never reads the refusals is paused too."""
    mux = Mux(client=False, pause_backlog=4096, max_backlog=65536)
    mux.pause_writing()
    sid = 1
    while not mux.reading_paused:
        (opened,) = mux.receive_data(raw(FrameType.OPEN, sid, encode_window(0)), 1.0)
        mux.refuse(opened.stream_id, ErrorCode.FORBIDDEN, "no streams accepted here")
        sid += 2
        assert sid < 2000, "refusals never paused reading"
    assert mux.stream_count == 0 and mux.backlog > 4096


def test_queued_answers_take_about_as_much_memory_as_their_bytes():
    import tracemalloc

    mux = Mux(client=False, max_backlog=1 << 30)
    mux.pause_writing()
    flood = [ping_flood(READ, i * READ) for i in range(2)]  # 512 KiB of pings
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for data in flood:
            mux.receive_data(data, 1.0)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert mux.backlog == 2 * READ * PING_SIZE
    assert held < 1.5 * mux.backlog, f"{held} bytes of memory for {mux.backlog} bytes of answers"


# --------------------------------------------------------------- keepalive


def pings(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.type is FrameType.PING and not f.flags & Flag.ACK]


def test_first_timer_is_the_keepalive_interval():
    mux = Mux(client=True, now=100.0, keepalive=5, dead_after=15)
    assert mux.get_timer() == 105.0


def test_keepalive_pings_when_idle():
    mux = Mux(client=True, keepalive=5, dead_after=15)
    assert mux.handle_timer(4.9) == []
    assert mux.data_to_send() == b""
    assert mux.handle_timer(5.0) == []
    assert len(pings(on_wire(mux))) == 1
    assert mux.get_timer() == 10.0
    assert mux.handle_timer(10.0) == []
    assert len(pings(on_wire(mux))) == 1
    assert mux.get_timer() == 15.0  # death comes before the next ping


def test_receiving_resets_the_idle_clock():
    client, server = pair(keepalive=5, dead_after=15)
    client.send_control(b"{}")
    deliver(client, server, now=3.0)
    assert server.get_timer() == 8.0
    assert server.handle_timer(5.0) == []
    assert server.data_to_send() == b""  # not idle: no ping
    assert server.handle_timer(8.0) == []
    assert len(pings(on_wire(server))) == 1
    assert server.get_timer() == 13.0


def test_the_answer_to_a_keepalive_ping_keeps_the_link_alive():
    client, server = pair(keepalive=5, dead_after=15)
    now = 0.0
    for _ in range(20):
        now = client.get_timer()
        assert client.handle_timer(now) == []
        deliver(client, server, now + 0.125)  # binary fractions: exact sums
        events = deliver(server, client, now + 0.25)
        assert events == [PingAcknowledged(0.25)]
    assert now > 60
    assert not client.terminated


def test_an_idle_stream_outlives_ten_minutes_of_keepalives():
    """Nothing closes a stream for being idle: both ends keep it as long as they like."""
    client, server = pair()  # the default keepalive and dead-peer times
    sid = established(client, server)
    now = 0.0
    for _ in range(1000):  # bounded; about 150 turns of both timers reach 11 minutes
        if now > 11 * 60:
            break
        now = min(client.get_timer(), server.get_timer())
        for mux, peer in ((client, server), (server, client)):
            assert mux.handle_timer(now) == []
            deliver(mux, peer, now)
        deliver(client, server, now)
    assert now > 11 * 60
    assert client.state(sid) is S.OPEN and server.state(sid) is S.OPEN
    client.send_data(sid, b"still here")
    assert deliver(client, server, now) == [DataReceived(sid, b"still here")]


def test_a_channel_mux_has_no_timers():
    nested = Mux(client=True, keepalive=math.inf, dead_after=math.inf)  # as link/channel.py makes it
    assert nested.get_timer() is None
    assert nested.handle_timer(1e9) == [] and not nested.terminated


def test_silent_peer_is_declared_dead():
    mux = Mux(client=True, keepalive=5, dead_after=15)
    for t in (5.0, 10.0):
        assert mux.handle_timer(t) == []
    mux.data_to_send()
    assert mux.get_timer() == 15.0
    [terminated] = mux.handle_timer(15.0)
    assert terminated == ConnectionTerminated(ErrorCode.LINK_TIMEOUT, terminated.reason)
    assert "15" in terminated.reason
    assert mux.terminated
    assert goaway_code(mux) == ErrorCode.LINK_TIMEOUT
    assert mux.get_timer() is None
    assert mux.handle_timer(20.0) == []


def test_late_timer_declares_death_at_once():
    mux = Mux(client=True, keepalive=5, dead_after=15)
    [event] = mux.handle_timer(100.0)
    assert event.code == ErrorCode.LINK_TIMEOUT
    assert [f.type for f in on_wire(mux)] == [FrameType.GOAWAY]  # no ping first


def test_hearing_from_the_peer_postpones_death():
    mux = Mux(client=True, keepalive=5, dead_after=15)
    mux.receive_data(raw(FrameType.CONTROL, 0, b"{}"), 14.0)
    assert mux.handle_timer(15.0) == []
    assert mux.get_timer() == 19.0
    assert mux.handle_timer(28.9) == []
    [event] = mux.handle_timer(29.0)
    assert event.code == ErrorCode.LINK_TIMEOUT


def test_partial_frames_count_as_hearing_from_the_peer():
    mux = Mux(client=True, keepalive=5, dead_after=15)
    mux.receive_data(raw(FrameType.CONTROL, 0, b"{}")[:4], 14.0)
    assert mux.handle_timer(15.0) == []


def test_get_timer_then_handle_timer_drives_pings_then_death():
    # What an adapter does: sleep until get_timer(), call handle_timer(), write.
    mux = Mux(client=True, keepalive=5, dead_after=15)
    log = []
    for _ in range(10):
        now = mux.get_timer()
        if now is None:
            break
        events = mux.handle_timer(now)
        log.append((now, [f.type.name for f in on_wire(mux)], [type(e).__name__ for e in events]))
    assert log == [
        (5.0, ["PING"], []),
        (10.0, ["PING"], []),
        (15.0, ["GOAWAY"], ["ConnectionTerminated"]),
    ]


def test_handle_timer_at_the_keepalive_deadline_pings():
    mux = Mux(client=True, keepalive=5, dead_after=15)
    mux.receive_data(raw(FrameType.CONTROL, 0, b"{}"), 3.04)
    deadline = mux.get_timer()
    assert deadline == 3.04 + 5
    mux.handle_timer(deadline)
    assert len(pings(on_wire(mux))) == 1


def test_handle_timer_at_the_dead_deadline_terminates():
    mux = Mux(client=True, keepalive=5, dead_after=15)
    mux.receive_data(raw(FrameType.CONTROL, 0, b"{}"), 1.06)
    for _ in range(10):  # pings at the keepalive deadlines, then death
        deadline = mux.get_timer()
        if mux.handle_timer(deadline):
            break
    assert deadline == 1.06 + 15
    assert mux.terminated


# -------------------------------------------------------- goaway, closing


def test_goaway_from_the_peer_terminates_with_its_code_and_reason():
    client, server = pair()
    sid = established(client, server)
    server.close(ErrorCode.INTERNAL, "hub restarting")
    assert sent_and_received(server, client) == (
        [Frame(FrameType.GOAWAY, 0, 0, encode_code(ErrorCode.INTERNAL, "hub restarting"))],
        [ConnectionTerminated(ErrorCode.INTERNAL, "hub restarting")],
    )
    assert client.terminated
    assert client.get_timer() is None
    # Further input, even garbage, is ignored.
    assert client.receive_data(raw(FrameType.DATA, sid, b"x"), 1.0) == []
    assert client.receive_data(b"\xff" * 50, 1.0) == []


def test_frames_after_goaway_in_the_same_chunk_are_ignored():
    client = Mux(client=True)
    data = raw(FrameType.GOAWAY, 0, encode_code(0, "bye")) + raw(FrameType.CONTROL, 0, b"after")
    assert client.receive_data(data, 0.0) == [ConnectionTerminated(0, "bye")]
    assert client.data_to_send() == b""


def test_garbage_after_goaway_is_ignored_however_the_bytes_were_split():
    goaway = raw(FrameType.GOAWAY, 0, encode_code(ErrorCode.INTERNAL, "hub restarting"))
    garbage = b"\xff" * 20  # a header announcing 16 MiB of an unknown type
    apart = Mux(client=True)
    assert apart.receive_data(goaway, 0.0) == [ConnectionTerminated(ErrorCode.INTERNAL, "hub restarting")]
    assert apart.receive_data(garbage, 0.0) == []
    together = Mux(client=True)
    assert together.receive_data(goaway + garbage, 0.0) == [
        ConnectionTerminated(ErrorCode.INTERNAL, "hub restarting")
    ]


def test_events_before_goaway_in_the_same_chunk_are_kept():
    client = Mux(client=True)
    data = raw(FrameType.CONTROL, 0, b"first") + raw(FrameType.GOAWAY, 0, encode_code(0, ""))
    assert client.receive_data(data, 0.0) == [ControlReceived(b"first"), ConnectionTerminated(0, "")]


def test_a_closed_mux_refuses_local_actions():
    client, server = pair()
    sid = established(client, server)
    pending = server.open_stream()
    deliver(server, client)
    client.close()
    assert on_wire(client) == [Frame(FrameType.GOAWAY, 0, 0, encode_code(ErrorCode.NO_ERROR, ""))]
    assert not client.can_open()
    for action in (
        client.open_stream,
        lambda: client.accept(pending),
        lambda: client.refuse(pending, ErrorCode.BUSY),
        lambda: client.send_data(sid, b"x"),
        lambda: client.end_stream(sid),
        lambda: client.send_control(b"{}"),
        lambda: client.ping(1.0),
    ):
        with pytest.raises(LocalProtocolError):
            action()
    # Resets and acknowledgements are harmless after the end: no-ops.
    client.reset(sid, ErrorCode.CANCEL)
    client.acknowledge(sid, 10**6)
    client.close(ErrorCode.INTERNAL, "again")
    assert client.data_to_send() == b""
    assert client.receive_data(raw(FrameType.CONTROL, 0, b"{}"), 1.0) == []
    assert client.handle_timer(100.0) == []


def test_a_mux_that_received_goaway_refuses_local_actions():
    client, server = pair()
    server.close()
    deliver(server, client)
    with pytest.raises(LocalProtocolError):
        client.open_stream()
    with pytest.raises(LocalProtocolError):
        client.send_control(b"{}")


# ----------------------------------------------- random splits, same events


def _conversation() -> tuple[bytes, bytes]:
    """A client's bytes in two parts: before and after the server's answers.

    Part two can only be written once part one's answers came back, so no
    split on a real link ever mixes the two.
    """
    client, server = pair(window=3000)
    a = client.open_stream(b"a")
    b = client.open_stream(b"b")
    client.send_control(b'{"type":"x"}')
    client.ping(0.0)
    first = client.data_to_send()
    server.receive_data(first, 0.0)
    server.accept(a, b"ok")
    server.refuse(b, ErrorCode.NO_ROUTE, "no")
    client.receive_data(server.data_to_send(), 0.0)
    client.send_data(a, bytes(range(256)) * 20, end=True)  # more than the window
    client.open_stream(b"c")
    client.reset(5, ErrorCode.CANCEL, "never mind")
    return first, client.data_to_send()


def _replay(parts: tuple[bytes, bytes], cuts: list[int]) -> tuple[list, bytes]:
    """Feed the parts to a fresh server, each cut at `cuts`; answer opens as
    they appear. Returns the events and everything the server wrote."""
    server = Mux(client=False, window=3000)
    events: list = []
    for part in parts:
        start = 0
        for cut in sorted({c for c in cuts if 0 < c < len(part)}) + [len(part)]:
            got = server.receive_data(part[start:cut], 0.0)
            start = cut
            for event in got:
                if isinstance(event, StreamOpened) and event.payload == b"a":
                    server.accept(event.stream_id, b"ok")
                elif isinstance(event, StreamOpened) and event.payload == b"b":
                    server.refuse(event.stream_id, ErrorCode.NO_ROUTE, "no")
            events += got
    return events, server.data_to_send()


def test_whole_conversation_events():
    events, answers = _replay(_conversation(), [])
    assert events == [
        StreamOpened(1, b"a", 3000),
        StreamOpened(3, b"b", 3000),
        ControlReceived(b'{"type":"x"}'),
        DataReceived(1, (bytes(range(256)) * 20)[:3000]),
        StreamOpened(5, b"c", 3000),
        StreamReset(5, ErrorCode.CANCEL, "never mind"),
    ]
    assert [f.type for f in FrameDecoder().feed(answers)] == [
        FrameType.PING,  # the ACK
        FrameType.ACCEPT,
        FrameType.REFUSE,
    ]


def _same_outcome(a: tuple[list, bytes], b: tuple[list, bytes]) -> bool:
    # The ping ACK goes out as the PING is read, the ACCEPT when the app
    # answers, so their order follows the splits; the frames do not.
    def key(f: Frame):
        return (f.type, f.stream_id, f.payload)

    return a[0] == b[0] and sorted(FrameDecoder().feed(a[1]), key=key) == sorted(
        FrameDecoder().feed(b[1]), key=key
    )


@given(st.lists(st.integers(0, 6000), max_size=30))
def test_random_splits_give_the_same_events_and_answers(cuts):
    parts = _conversation()
    assert _same_outcome(_replay(parts, cuts), _replay(parts, []))


def test_byte_by_byte_gives_the_same_events_and_answers():
    parts = _conversation()
    assert _same_outcome(_replay(parts, list(range(6000))), _replay(parts, []))


# ------------------------------------------- a random conversation (stateful)


class TwoMuxes(RuleBasedStateMachine):
    """Random legal use of both ends, random delivery splits, and the checks
    that bytes arrive whole and in order, windows are never overrun (the
    receiver would raise), and everything still pending drains at the end."""

    def __init__(self):
        super().__init__()
        self.mux = {"c": Mux(client=True, window=2000), "s": Mux(client=False, window=2000)}
        self.inflight = {"c": b"", "s": b""}  # bytes on the wire from that side
        self.sent: dict[tuple[str, int], bytearray] = {}  # (sender, sid) -> bytes
        self.got: dict[tuple[str, int], bytearray] = {}  # (receiver, sid) -> bytes
        self.unacked: dict[tuple[str, int], int] = {}
        self.ended: set[tuple[str, int]] = set()  # (sender, sid) queued END
        self.end_seen: set[tuple[str, int]] = set()  # (receiver, sid) saw END
        self.pending_opens: dict[str, list[int]] = {"c": [], "s": []}
        self.dead: set[int] = set()  # streams reset or refused
        self.known: dict[str, set[int]] = {"c": set(), "s": set()}  # ids each side has seen
        self.now = 0.0

    @staticmethod
    def other(side: str) -> str:
        return "s" if side == "c" else "c"

    def pump(self, side: str) -> None:
        self.inflight[side] += self.mux[side].data_to_send()

    def handle(self, side: str, events: list) -> None:
        last_window: dict[int, WindowUpdated] = {}
        for event in events:
            assert not isinstance(event, ConnectionTerminated)
            if isinstance(event, StreamOpened):
                self.pending_opens[side].append(event.stream_id)
                self.known[side].add(event.stream_id)
            elif isinstance(event, (StreamRefused, StreamReset)):
                self.dead.add(event.stream_id)
            elif isinstance(event, DataReceived):
                key = (side, event.stream_id)
                self.got.setdefault(key, bytearray()).extend(event.data)
                self.unacked[key] = self.unacked.get(key, 0) + len(event.data)
                sent = self.sent[(self.other(side), event.stream_id)]
                assert sent.startswith(self.got[key])
            elif isinstance(event, StreamEnded):
                key = (side, event.stream_id)
                assert key not in self.end_seen
                self.end_seen.add(key)
                assert self.got.get(key, b"") == self.sent.get((self.other(side), event.stream_id), b"")
            elif isinstance(event, WindowUpdated):
                last_window[event.stream_id] = event
        # `pending` is a snapshot: later frames in the same chunk may have sent
        # more, so only the last update per stream must match what is left.
        for sid, event in last_window.items():
            if self.mux[side].state(sid) is not S.CLOSED:
                assert event.pending == self.mux[side].pending(sid)

    @rule(side=st.sampled_from("cs"), window=st.sampled_from([None, 1, 100, 5000]))
    def open(self, side, window):
        mux = self.mux[side]
        if mux.can_open():
            self.known[side].add(mux.open_stream(b"hi", window=window))
            self.pump(side)

    @precondition(lambda self: self.pending_opens["c"] or self.pending_opens["s"])
    @rule(side=st.sampled_from("cs"), accept=st.booleans(), window=st.sampled_from([None, 7, 300]))
    def answer(self, side, accept, window):
        if not self.pending_opens[side]:
            return
        sid = self.pending_opens[side].pop(0)
        mux = self.mux[side]
        if mux.state(sid) is not S.PENDING:
            return
        if accept:
            mux.accept(sid, window=window)
        else:
            mux.refuse(sid, ErrorCode.BUSY)
            self.dead.add(sid)
        self.pump(side)

    def sendable(self, side: str) -> list[int]:
        mux = self.mux[side]
        return sorted(
            sid
            for sid in self.known[side]
            if mux.state(sid) in (S.OPEN, S.REMOTE_ENDED) and (side, sid) not in self.ended
        )

    @precondition(lambda self: self.sendable("c") or self.sendable("s"))
    @rule(side=st.sampled_from("cs"), pick=st.integers(0, 10), size=st.integers(0, 3000), end=st.booleans())
    def send(self, side, pick, size, end):
        sids = self.sendable(side)
        if not sids:
            return
        sid = sids[pick % len(sids)]
        key = (side, sid)
        sent = self.sent.setdefault(key, bytearray())
        data = bytes((len(sent) + i) % 251 for i in range(size))
        self.mux[side].send_data(sid, data, end=end)
        sent.extend(data)
        if end:
            self.ended.add(key)
        self.pump(side)

    @precondition(lambda self: any(self.unacked.values()))
    @rule(side=st.sampled_from("cs"), pick=st.integers(0, 10), fraction=st.sampled_from([0.3, 1.0]))
    def acknowledge(self, side, pick, fraction):
        keys = sorted(k for k, n in self.unacked.items() if k[0] == side and n)
        if not keys:
            return
        key = keys[pick % len(keys)]
        n = max(1, int(self.unacked[key] * fraction))
        self.unacked[key] -= n
        self.mux[side].acknowledge(key[1], n)
        self.pump(side)

    @rule(side=st.sampled_from("cs"), pick=st.integers(0, 10))
    def reset(self, side, pick):
        sids = sorted(sid for sid in self.known[side] if self.mux[side].state(sid) is not S.CLOSED)
        if not sids:
            return
        sid = sids[pick % len(sids)]
        self.mux[side].reset(sid, ErrorCode.CANCEL)
        self.dead.add(sid)
        self.pump(side)

    @precondition(lambda self: self.inflight["c"] or self.inflight["s"])
    @rule(side=st.sampled_from("cs"), cut=st.integers(0, 5000))
    def deliver(self, side, cut):
        data = self.inflight[side]
        cut = min(cut, len(data))
        self.inflight[side] = data[cut:]
        self.now += 0.01
        peer = self.other(side)
        self.handle(peer, self.mux[peer].receive_data(data[:cut], self.now))
        self.pump(peer)

    @invariant()
    def nothing_terminated(self):
        assert not self.mux["c"].terminated and not self.mux["s"].terminated

    def teardown(self):
        # Drain: answer every open, acknowledge everything, deliver everything.
        for _ in range(10_000):
            for side in "cs":
                for sid in self.pending_opens[side]:
                    if self.mux[side].state(sid) is S.PENDING:
                        self.mux[side].accept(sid)
                self.pending_opens[side].clear()
                for key, n in list(self.unacked.items()):
                    if key[0] == side and n:
                        self.mux[side].acknowledge(key[1], n)
                        self.unacked[key] = 0
                self.pump(side)
            if not self.inflight["c"] and not self.inflight["s"]:
                break
            for side in "cs":
                self.deliver(side, len(self.inflight[side]))
        else:
            raise AssertionError("the links never went quiet")
        for (sender, sid), data in self.sent.items():
            if sid in self.dead:
                continue
            assert self.mux[sender].pending(sid) == 0, f"{sender}:{sid} stuck with pending data"
            receiver = self.other(sender)
            assert bytes(self.got.get((receiver, sid), b"")) == bytes(data)
            if (sender, sid) in self.ended:
                assert (receiver, sid) in self.end_seen


TestTwoMuxes = TwoMuxes.TestCase
TestTwoMuxes.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# ---------------------------------------------------- a transport that takes nothing


def test_data_waits_unframed_in_its_stream_while_the_transport_is_paused():
    client, server = pair()
    sid = established(client, server)
    client.pause_writing()
    client.send_data(sid, b"x" * 100_000)
    assert client.pending(sid) == 100_000  # the application sees it and pauses its source
    client.ping(0.0)  # frames other than DATA still leave
    assert [f.type for f in on_wire(client)] == [FrameType.PING]
    client.resume_writing(1.0)
    assert data_sizes(on_wire(client)) == [100_000]
    assert client.pending(sid) == 0
    assert client.drained() == [WindowUpdated(sid, 0, 0)]  # so the source resumes
    assert client.drained() == []


def test_framed_data_is_bounded_and_waiting_streams_take_turns():
    client, server = pair()
    big = 4 * MAX_PAYLOAD
    sids = [established(client, server) for _ in range(8)]
    for sid in sids:
        client.send_data(sid, b"y" * big)
    # More than OUT_HIGH was sent: the first stream's data was framed at once, the rest waits its turn.
    assert sum(client.pending(sid) for sid in sids) >= 8 * big - OUT_HIGH
    order = []
    for _ in range(100):
        data = client.data_to_send()
        if not data:
            break
        assert len(data) <= OUT_HIGH + 8 * 16  # framed: OUT_HIGH at most, and its frames' headers
        order += [f.stream_id for f in FrameDecoder().feed(data) if f.type is FrameType.DATA]
    assert order[:4] == [sids[0]] * 4  # it came first, when nothing waited
    assert order[4:] == sids[1:] * 4  # the others, a frame each in turn
    assert all(client.pending(sid) == 0 for sid in sids)
    assert {event.stream_id for event in client.drained()} == set(sids[1:])
