"""Frame codec: exact header bytes, round trips, incremental decoding, and the
"arbitrary bytes raise nothing but RemoteProtocolError" property, both for the
decoder alone and for a whole Mux fed garbage."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.frames import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    Flag,
    Frame,
    FrameDecoder,
    FrameType,
    could_start_frame,
    decode_code,
    decode_window,
    encode,
    encode_code,
    encode_window,
    header,
)
from ladder.protocol.mux import Mux, StreamState

frame_types = st.sampled_from(list(FrameType))
stream_ids = st.integers(0, 2**32 - 1)
flag_bytes = st.integers(0, 255)
payloads = st.binary(max_size=3000)
frames = st.builds(Frame, frame_types, flag_bytes, stream_ids, payloads)


def wire(*fs: Frame) -> bytes:
    return b"".join(encode(f.type, f.stream_id, f.payload, f.flags) for f in fs)


def feed_in_pieces(data: bytes, cuts: list[int]) -> list[Frame]:
    """Feed `data` cut at the given offsets; return every frame that came out."""
    decoder = FrameDecoder()
    out: list[Frame] = []
    start = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        out += decoder.feed(data[start:cut])
        start = cut
    return out


# ------------------------------------------------------------------ layout


def test_header_layout_is_length_type_flags_stream_big_endian():
    data = encode(FrameType.DATA, 5, b"abc", Flag.END)
    assert data == bytes.fromhex("000003" "00" "01" "00000005") + b"abc"
    assert encode(FrameType.GOAWAY, 0, b"") == bytes.fromhex("000000" "07" "00" "00000000")
    assert len(encode(FrameType.PING, 0, b"")) == HEADER_SIZE


def test_header_alone_matches_the_start_of_the_encoded_frame():
    payload = b"x" * 300
    full = encode(FrameType.CONTROL, 0, payload, 0)
    assert header(FrameType.CONTROL, 0, len(payload)) + payload == full
    assert header(FrameType.DATA, 7, 0, Flag.END) == encode(FrameType.DATA, 7, b"", Flag.END)


def test_frame_types_have_their_wire_numbers():
    # The numbers are the protocol; renumbering breaks every deployed peer.
    assert [(t.name, t.value) for t in FrameType] == [
        ("DATA", 0), ("OPEN", 1), ("ACCEPT", 2), ("REFUSE", 3), ("RESET", 4),
        ("WINDOW", 5), ("PING", 6), ("GOAWAY", 7), ("CONTROL", 8),
    ]  # fmt: skip


# ------------------------------------------------------------- round trips


@pytest.mark.parametrize("type_", list(FrameType))
def test_each_type_round_trips(type_):
    frame = Frame(type_, 0x01, 9, b"payload of " + type_.name.encode())
    assert FrameDecoder().feed(wire(frame)) == [frame]


@given(frames)
def test_any_frame_round_trips(frame):
    assert FrameDecoder().feed(wire(frame)) == [frame]


@given(st.lists(frames, max_size=8))
def test_many_frames_in_one_chunk_round_trip(fs):
    assert FrameDecoder().feed(wire(*fs)) == fs


def test_largest_allowed_payload_round_trips():
    frame = Frame(FrameType.DATA, 0, 1, bytes(range(256)) * (MAX_PAYLOAD // 256))
    assert len(frame.payload) == MAX_PAYLOAD
    assert FrameDecoder().feed(wire(frame)) == [frame]


def test_empty_payload_round_trips():
    frame = Frame(FrameType.DATA, Flag.END, 3, b"")
    assert FrameDecoder().feed(wire(frame)) == [frame]


# ------------------------------------------------------ incremental feeding


def test_byte_by_byte_gives_the_same_frames():
    fs = [
        Frame(FrameType.OPEN, 0, 1, encode_window(1000, b"hello")),
        Frame(FrameType.DATA, 0, 1, b"some data"),
        Frame(FrameType.PING, Flag.ACK, 0, b"12345678"),
        Frame(FrameType.DATA, Flag.END, 1, b""),
    ]
    data = wire(*fs)
    decoder = FrameDecoder()
    got: list[Frame] = []
    for i in range(len(data)):
        got += decoder.feed(data[i : i + 1])
    assert got == fs


def test_partial_frame_yields_nothing_until_complete():
    data = wire(Frame(FrameType.DATA, 0, 1, b"abcdef"))
    decoder = FrameDecoder()
    assert decoder.feed(data[:5]) == []  # half a header
    assert decoder.feed(data[5:12]) == []  # header and part of the payload
    assert decoder.feed(b"") == []
    assert decoder.feed(data[12:]) == [Frame(FrameType.DATA, 0, 1, b"abcdef")]
    assert decoder.feed(b"") == []


@given(st.lists(frames, max_size=6), st.data())
def test_random_splits_give_the_same_frames(fs, data):
    raw = wire(*fs)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=20))
    assert feed_in_pieces(raw, cuts) == fs


# ----------------------------------------------------------------- errors


def test_oversize_frame_is_a_frame_size_error_as_soon_as_the_header_arrives():
    raw = struct.pack("!I B I", (MAX_PAYLOAD + 1) << 8 | FrameType.DATA, 0, 1)
    with pytest.raises(RemoteProtocolError) as info:
        FrameDecoder().feed(raw)  # no payload yet: the header alone is enough
    assert info.value.code == ErrorCode.FRAME_SIZE_ERROR


def test_decoder_limit_is_configurable():
    decoder = FrameDecoder(max_payload=10)
    assert decoder.feed(encode(FrameType.DATA, 1, b"x" * 10)) == [Frame(FrameType.DATA, 0, 1, b"x" * 10)]
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(encode(FrameType.DATA, 1, b"x" * 11))
    assert info.value.code == ErrorCode.FRAME_SIZE_ERROR


@pytest.mark.parametrize("type_byte", [9, 10, 0x7F, 0xFF])
def test_unknown_frame_type_is_a_protocol_error(type_byte):
    raw = struct.pack("!I B I", 3 << 8 | type_byte, 0, 1) + b"abc"
    with pytest.raises(RemoteProtocolError) as info:
        FrameDecoder().feed(raw)
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


def test_frames_before_a_bad_header_are_returned_and_the_error_kept():
    # So a GOAWAY followed by garbage is still a clean GOAWAY.
    good = encode(FrameType.CONTROL, 0, b"ok")
    bad = struct.pack("!I B I", 0 << 8 | 42, 0, 0)
    decoder = FrameDecoder()
    assert decoder.feed(good + bad + good) == [Frame(FrameType.CONTROL, 0, 0, b"ok")]
    assert isinstance(decoder.error, RemoteProtocolError)
    assert decoder.error.code == ErrorCode.PROTOCOL_ERROR
    with pytest.raises(RemoteProtocolError):
        decoder.feed(b"")  # the error sticks
    with pytest.raises(RemoteProtocolError):
        decoder.feed(good)


def test_an_error_sticks_even_when_it_came_alone():
    decoder = FrameDecoder()
    with pytest.raises(RemoteProtocolError):
        decoder.feed(b"\xff" * HEADER_SIZE)
    with pytest.raises(RemoteProtocolError):
        decoder.feed(encode(FrameType.CONTROL, 0, b"ok"))


def test_input_buffers_are_not_kept_by_reference():
    data = bytearray(encode(FrameType.DATA, 1, b"abcdef"))
    decoder = FrameDecoder()
    assert decoder.feed(data[:12]) == []
    rest = bytearray(data[12:])
    frames = decoder.feed(rest)
    rest[:] = b"XXX"
    assert frames == [Frame(FrameType.DATA, 0, 1, b"abcdef")]
    whole = bytearray(encode(FrameType.DATA, 1, b"abcdef") + encode(FrameType.DATA, 1, b"gh")[:5])
    frames = decoder.feed(whole)
    whole[:] = bytes(len(whole))  # the caller reuses its buffer
    assert frames == [Frame(FrameType.DATA, 0, 1, b"abcdef")]
    assert decoder.feed(encode(FrameType.DATA, 1, b"gh")[5:]) == [Frame(FrameType.DATA, 0, 1, b"gh")]


# ------------------------------------------------------ payload helpers


@given(st.integers(0, 0xFFFF), st.text(max_size=200))
def test_code_payload_round_trips(code, reason):
    assert decode_code(encode_code(code, reason)) == (code, reason)


def test_code_reason_is_capped_at_1024_bytes():
    code, reason = decode_code(encode_code(ErrorCode.INTERNAL, "r" * 5000))
    assert (code, reason) == (ErrorCode.INTERNAL, "r" * 1024)


@pytest.mark.parametrize("payload", [b"", b"\x00"])
def test_short_code_payload_is_a_protocol_error(payload):
    with pytest.raises(RemoteProtocolError):
        decode_code(payload)


def test_invalid_utf8_reason_is_replaced_not_raised():
    assert decode_code(b"\x00\x11\xff\xfe") == (17, "\ufffd\ufffd")


@given(st.integers(0, 2**32 - 1), st.binary(max_size=100))
def test_window_payload_round_trips(window, rest):
    assert decode_window(encode_window(window, rest)) == (window, rest)


@pytest.mark.parametrize("payload", [b"", b"\x00\x00\x00"])
def test_short_window_payload_is_an_error(payload):
    with pytest.raises(RemoteProtocolError):
        decode_window(payload)


# ------------------------------------------- arbitrary bytes: only our error


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_to_the_decoder_raise_only_remote_protocol_error(data):
    try:
        FrameDecoder().feed(data)
    except RemoteProtocolError:
        pass


@given(st.lists(st.binary(max_size=300), max_size=10))
def test_arbitrary_chunks_to_the_decoder_raise_only_remote_protocol_error(chunks):
    decoder = FrameDecoder()
    for chunk in chunks:
        try:
            decoder.feed(chunk)
        except RemoteProtocolError:
            assert decoder.error is not None


def _feed_mux(mux: Mux, chunks: list[bytes], react: bool = False) -> None:
    """Feed chunks; only RemoteProtocolError may escape, and then the link is closed.

    With `react`, behave like an application: accept every other open (refuse
    the rest), echo and acknowledge data, end streams the peer ended, so the
    garbage reaches streams in every state.
    """
    now = 0.0
    for i, chunk in enumerate(chunks):
        now += 0.5
        try:
            events = mux.receive_data(chunk, now)
        except RemoteProtocolError as exc:
            assert mux.terminated
            goaway = FrameDecoder().feed(mux.data_to_send())[-1]
            assert goaway.type is FrameType.GOAWAY
            assert decode_code(goaway.payload)[0] == exc.code
            assert mux.receive_data(chunk, now) == []  # a closed link ignores input
            return
        if react:
            _react(mux, events, i)
        mux.handle_timer(now)


def _react(mux: Mux, events: list, i: int) -> None:
    for event in events:
        sid = getattr(event, "stream_id", None)
        if sid is None or mux.terminated:
            continue
        state = mux.state(sid)
        name = type(event).__name__
        if name == "StreamOpened":
            if i % 2:
                mux.accept(sid, b"ok", window=8)
            else:
                mux.refuse(sid, ErrorCode.NO_ROUTE, "no")
        elif name == "DataReceived":
            mux.acknowledge(sid, len(event.data))
            if state in (StreamState.OPEN, StreamState.REMOTE_ENDED):
                mux.send_data(sid, event.data * 3)
        elif name == "StreamEnded" and state is StreamState.REMOTE_ENDED:
            mux.end_stream(sid)


@pytest.mark.parametrize("client", [True, False])
@given(chunks=st.lists(st.binary(max_size=300), max_size=10))
def test_arbitrary_bytes_to_a_mux_raise_only_remote_protocol_error(client, chunks):
    _feed_mux(Mux(client=client, window=1000), chunks)


# Frames with valid headers get much further into the mux than random bytes:
# small stream ids of both parities, every type, payloads that are often the
# right size for a window, a code or a ping.
_small_payloads = st.one_of(
    st.binary(max_size=12),
    st.builds(encode_window, st.integers(0, 2**32 - 1), st.binary(max_size=8)),
    st.builds(encode_code, st.integers(0, 0xFFFF), st.text(max_size=5)),
)
_plausible_frames = st.builds(
    Frame, frame_types, st.integers(0, 3), st.integers(0, 9), _small_payloads
)


@pytest.mark.parametrize("client", [True, False])
@given(fs=st.lists(_plausible_frames, max_size=25), opens=st.integers(0, 3), react=st.booleans())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_plausible_frame_sequences_raise_only_remote_protocol_error(client, fs, opens, react):
    mux = Mux(client=client, window=1000, max_streams=3, max_pending_opens=2)
    for _ in range(opens):
        if mux.can_open():
            mux.open_stream(b"x", window=16)
    mux.data_to_send()
    _feed_mux(mux, [wire(f) for f in fs], react)


def test_the_bytes_a_frame_can_start_with_are_its_length_s_top_bytes():
    # The front door tells a stranger's request line going on past a hello from a link's first
    # frame by this byte: a space, CR or LF never starts a frame.
    firsts = {encode(FrameType.DATA, 1, bytes(n))[0] for n in (0, 1, 65535, 65536, 3 * 65536, MAX_PAYLOAD)}
    assert firsts == {0, 1, 3, 4} and all(could_start_frame(b) for b in firsts)
    assert [b for b in range(256) if could_start_frame(b)] == [0, 1, 2, 3, 4]
