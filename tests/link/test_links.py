"""Links over real Link objects: channels carrying many connections in one sealed stream, backpressure,
and control messages typed at the link's edge."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket

import pytest
from fedlink import control_frame, fed_link, goaway, sent_controls

from ladder.link import connection
from ladder.link.channel import CHANNEL_WINDOW, CHANNEL_WRITE_HIGH, Channel, StreamRef
from ladder.link.connection import Endpoint, Link
from ladder.protocol import control
from ladder.protocol.channel import CHANNEL_REQUEST, Initiator, Responder
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.frames import FrameDecoder, FrameType, encode, encode_code, encode_window
from ladder.protocol.messages import decode_route
from ladder.protocol.noise import generate_keypair

USER, EXIT = "user-id", "exit-id"


class Pipe:
    """A transport that hands what one link writes to the other on the next loop turn."""

    def __init__(self, loop, tamper=None):
        self.loop, self.peer, self.closing, self.tamper = loop, None, False, tamper

    def write(self, data: bytes) -> None:
        data = bytes(data)
        if self.tamper is not None:
            data = self.tamper(data)
        self.loop.call_soon(self.peer.data_received, data)

    def is_closing(self) -> bool:
        return self.closing

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass  # everything is handed over at once

    def close(self) -> None:
        self.closing = True

    abort = close


class Echo:
    """The exit's side of the channel: accepts every stream and echoes it (LinkOwner of the nested link)."""

    def __init__(self):
        self.opened: list[bytes] = []

    def stream_opened(self, link, sid, payload, window):
        self.opened.append(payload)
        link.accept(sid, EchoEnd(link, sid))

    def control_received(self, link, message): ...

    def link_closed(self, link, reason): ...


class EchoEnd(Endpoint):
    def __init__(self, link, sid):
        self.ref = StreamRef(link, sid)

    def on_data(self, data):
        self.ref.send(data)
        self.ref.acknowledge(len(data))

    def on_end(self):
        self.ref.end()


class Exit:
    """Owner of the exit's hub link: answers each channel as the agent does."""

    def __init__(self, private: bytes):
        self.private, self.echo, self.channels = private, Echo(), []

    def stream_opened(self, link, sid, payload, window):
        _, message1 = decode_route(payload)  # the hub would have put the user's id in the route
        responder = Responder(self.private, USER, EXIT)
        request = responder.read_first(message1)
        assert request.startswith(CHANNEL_REQUEST)
        message2, sealed = responder.answer()
        self.channels.append(Channel.answer(link, sid, message1, message2, sealed, request[1:], self.echo,
                                             "from user"))
        self.opened_with_the_channel = list(self.echo.opened)

    def control_received(self, link, message): ...

    def link_closed(self, link, reason): ...


class Client(Endpoint):
    """A connection inside the channel, as the proxy front would hold it."""

    def __init__(self):
        self.accepted = asyncio.get_running_loop().create_future()
        self.ended = asyncio.get_running_loop().create_future()
        self.received = bytearray()
        self.reset: tuple[int, str] | None = None

    def on_accepted(self, payload, window):
        self.accepted.set_result(window)

    def on_data(self, data):
        self.received += data

    def on_end(self):
        self.ended.set_result(bytes(self.received))

    def on_reset(self, code, reason):
        self.reset = (code, reason)
        for future in (self.accepted, self.ended):
            if not future.done():
                future.set_exception(ConnectionResetError(reason))

    on_refused = on_reset


def linked(tamper=None):
    """A user's link and an exit's link back to back (the hub's switch left out), and the exit."""
    loop = asyncio.get_running_loop()
    exit_private, exit_public = generate_keypair()
    user_private, _ = generate_keypair()
    exit_ = Exit(exit_private)
    user_link, exit_link = Link(None, client=True), Link(exit_, client=False)
    to_exit, to_user = Pipe(loop, tamper), Pipe(loop)
    to_exit.peer, to_user.peer = exit_link, user_link
    user_link.connection_made(to_exit)
    exit_link.connection_made(to_user)
    channel = Channel.dial(user_link, Initiator(user_private, exit_public, USER, EXIT), EXIT, "to exit")
    return channel, exit_, user_link


async def fetch(channel: Channel, target: bytes, body: bytes) -> bytes:
    client = Client()
    sid = channel.inner.open_stream(target, client)
    await asyncio.wait_for(client.accepted, 5)
    ref = StreamRef(channel.inner, sid)
    ref.send(body)
    ref.end()
    return await asyncio.wait_for(client.ended, 5)


def test_many_connections_share_one_hub_stream_and_the_first_costs_no_extra_round_trip():
    async def main():
        channel, exit_, user_link = linked()
        results = await asyncio.gather(*(fetch(channel, b"target %d" % i, b"x" * (i * 5000))
                                         for i in range(40)))
        assert results == [b"x" * (i * 5000) for i in range(40)]
        assert sorted(exit_.echo.opened) == sorted(b"target %d" % i for i in range(40))
        assert len(exit_.channels) == 1 and len(user_link.endpoints) == 1  # one stream on the hub link
        assert user_link.mux.stream_count == 1

    asyncio.run(main())


def test_the_first_targets_ride_inside_noise_message_1():
    async def main():
        channel, exit_, _ = linked()
        client = Client()
        channel.inner.open_stream(b"first target", client)
        await asyncio.wait_for(client.accepted, 5)
        assert exit_.opened_with_the_channel == [b"first target"]

    asyncio.run(main())


def test_a_tampered_message_closes_the_channel_and_resets_its_connections():
    flipped = []

    def tamper(data: bytes) -> bytes:
        # After the handshake, flip one byte of the first large DATA frame's sealed message.
        if len(data) > 1000 and not flipped:
            flipped.append(True)
            return data[:-20] + bytes([data[-20] ^ 1]) + data[-19:]
        return data

    async def main():
        channel, exit_, user_link = linked(tamper)
        client = Client()
        sid = channel.inner.open_stream(b"target", client)
        await asyncio.wait_for(client.accepted, 5)
        StreamRef(channel.inner, sid).send(b"y" * 5000)
        await asyncio.sleep(0.05)
        assert flipped
        (exit_channel,) = exit_.channels
        assert exit_channel.closed and exit_channel.inner.closed
        # The exit reset the hub stream; the user's side of the channel and its connection went with it.
        assert channel.closed and client.reset is not None and client.reset[0] == ErrorCode.PROTOCOL_ERROR
        assert user_link.endpoints == {}

    asyncio.run(main())


def test_a_channel_the_far_end_refuses_resets_its_waiting_connections_with_the_reason():
    async def main():
        channel, exit_, _ = linked()
        closed = []
        channel.on_close = closed.append
        exit_.stream_opened = lambda link, sid, payload, window: link.refuse(sid, ErrorCode.NO_ROUTE, "gone")
        clients = [Client() for _ in range(3)]
        for client in clients:
            channel.inner.open_stream(b"target", client)
        await asyncio.sleep(0.05)
        assert [c.reset for c in clients] == [(ErrorCode.NO_ROUTE, "gone")] * 3
        assert closed == [channel] and channel.closed

    asyncio.run(main())


def test_a_paused_transport_gets_nothing_more_until_it_resumes():
    """Backpressure from the socket: what the link has not handed over waits in the mux, as bytes."""

    class Full:
        """A transport whose buffer is over its high-water mark after every write."""

        def __init__(self):
            self.written: list[bytes] = []
            self.protocol: Link | None = None
            self.high = None

        def write(self, data: bytes) -> None:
            self.written.append(bytes(data))
            self.protocol.pause_writing()

        def is_closing(self) -> bool:
            return False

        def set_write_buffer_limits(self, high=None, low=None) -> None:
            self.high = high

    async def main():
        link, transport = Link(None, client=True), Full()
        transport.protocol = link
        link.connection_made(transport)
        for i in range(6):  # 6 x ~60 KB: more than one write's worth
            link.send_control(control.Share(str(i) * 59_000, "", ""))
        await asyncio.sleep(0)
        assert len(transport.written) == 1 and transport.high is not None
        link.resume_writing()
        await asyncio.sleep(0)
        assert len(transport.written) == 2
        for _ in range(10):
            link.resume_writing()
            await asyncio.sleep(0)
        frames = FrameDecoder().feed(b"".join(transport.written))
        assert [f.type for f in frames] == [FrameType.CONTROL] * 6

    asyncio.run(main())


class Bulk(Endpoint):
    """One stream carrying `size` bytes each way: sent as credit allows, received and hashed."""

    CHUNK = 256 * 1024

    def __init__(self, size: int):
        self.size, self.link, self.sid = size, None, None
        self.sent, self.received = 0, 0
        self.digest = hashlib.sha256()
        self.done = asyncio.get_running_loop().create_future()

    def start(self, link: Link, sid: int) -> None:
        self.link, self.sid = link, sid
        self.pump()

    def pump(self) -> None:
        while self.sent < self.size and self.link.pending(self.sid) < 2 * self.CHUNK:
            piece = _pattern(self.sent, min(self.CHUNK, self.size - self.sent))
            self.sent += len(piece)
            self.link.send(self.sid, piece, end=self.sent == self.size)

    def on_accepted(self, payload, window):
        self.pump()

    def on_window(self, increment, pending):
        self.pump()

    def on_data(self, data):
        self.digest.update(data)
        self.received += len(data)
        self.link.acknowledge(self.sid, len(data))

    def on_end(self):
        self.done.set_result(self.digest.hexdigest())

    def on_reset(self, code, reason):
        if not self.done.done():
            self.done.set_exception(ConnectionResetError(reason))


def _pattern(offset: int, size: int) -> bytes:
    block = hashlib.sha256(offset.to_bytes(8, "big")).digest() * 8192  # 256 KiB, different per offset
    return block[:size]


def _expected(size: int) -> str:
    digest = hashlib.sha256()
    for offset in range(0, size, Bulk.CHUNK):
        digest.update(_pattern(offset, min(Bulk.CHUNK, size - offset)))
    return digest.hexdigest()


class BulkServer:
    """The hub's side: answers each stream with a Bulk of its own (LinkOwner)."""

    def __init__(self, size: int):
        self.size, self.streams = size, []

    def stream_opened(self, link, sid, payload, window):
        bulk = Bulk(self.size)
        self.streams.append(bulk)
        link.accept(sid, bulk)
        bulk.start(link, sid)

    def control_received(self, link, message): ...

    def link_closed(self, link, reason): ...


def test_bulk_both_ways_through_real_sockets_never_wedges_even_when_any_backlog_pauses_reading():
    """Both ends run the same Link; with the hub's side pausing on the smallest backlog of answers
    (WINDOW frames that wait while its writes are paused), both directions still finish."""
    size, streams = 24 * 1024 * 1024, 3

    async def main():
        loop = asyncio.get_running_loop()
        server_owner = BulkServer(size)
        links = []

        def tight(link: Link) -> Link:
            link.mux.pause_backlog = 0  # any unread answer at all pauses reading
            links.append(link)
            return link

        def small_buffers(transport) -> None:
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            transport.set_write_buffer_limits(high=64 * 1024)

        server = await loop.create_server(lambda: tight(Link(server_owner, client=False)), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, client_link = await loop.create_connection(lambda: tight(Link(None, client=True)),
                                                              "127.0.0.1", port)
        (hub_side,) = [link for link in links if link is not client_link]
        small_buffers(transport)
        small_buffers(hub_side.transport)
        mine = [Bulk(size) for _ in range(streams)]
        for bulk in mine:
            bulk.start(client_link, client_link.open_stream(b"bulk", bulk))
        paused_reading = 0

        async def watch():
            nonlocal paused_reading
            while True:
                paused_reading += hub_side._read_paused
                await asyncio.sleep(0.005)

        watcher = loop.create_task(watch())
        try:
            results = await asyncio.wait_for(asyncio.gather(*(b.done for b in mine)), 60)
            theirs = await asyncio.wait_for(asyncio.gather(*(b.done for b in server_owner.streams)), 60)
        finally:
            watcher.cancel()
            client_link.close()
            server.close()
        expected = _expected(size)
        assert results == [expected] * streams and theirs == [expected] * streams
        assert paused_reading > 0, "the hub's side never paused reading: the test proved nothing"

    asyncio.run(main())


def test_a_member_pinging_inside_its_channel_without_reading_loses_that_channel_only():
    """Answers inside a channel wait for the hub stream's credit; the exit drops the channel past its cap."""
    async def main():
        channel, exit_, _ = linked()
        await fetch(channel, b"target", b"hello")
        (exit_channel,) = exit_.channels
        exit_channel.inner.mux.max_backlog = 256 * 1024
        channel.on_data = lambda data: None  # the attacker never reads: no credit goes back to the exit
        ping = encode(FrameType.PING, 0, bytes(8))
        sent = 0
        for _ in range(400):  # bounded: 400 x 1,000 pings
            channel.write(ping * 1000)
            sent += 1000
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            if exit_channel.closed:
                break
        assert exit_channel.closed and exit_channel.inner.closed, f"still open after {sent} pings"
        exit_link = exit_channel.link
        # What waited for the attacker is bounded by the channel's window, the mark and the cap.
        assert sent * len(ping) < CHANNEL_WINDOW + CHANNEL_WRITE_HIGH + 2 * 256 * 1024 + 1000 * len(ping)
        assert not exit_link.closed and exit_link.mux.stream_count == 0

    asyncio.run(main())


# ------------------------------------------------------- control messages


class Said:
    """A link's owner that keeps what it is told."""

    def __init__(self):
        self.messages: list[control.ControlMessage] = []
        self.closed: list[str] = []

    def stream_opened(self, link, sid, payload, window): ...

    def control_received(self, link, message):
        self.messages.append(message)

    def link_closed(self, link, reason):
        self.closed.append(reason)


def test_control_messages_reach_the_owner_typed_and_unknown_types_as_unknown():
    async def main():
        owner = Said()
        link, _ = fed_link(owner)
        link.data_received(control_frame(b'{"type":"share-status","accepting":false,"reason":"cap","new":1}')
                           + control_frame(b'{"type":"from-a-newer-peer","x":[1]}'))
        return owner, link

    owner, link = asyncio.run(main())
    assert owner.messages == [control.ShareStatus(False, "cap"), control.Unknown("from-a-newer-peer")]
    assert not link.closed and link.error is None


def test_control_messages_past_the_budget_wait_in_order_and_the_link_stops_reading_meanwhile(monkeypatch):
    """One member repeating share-status at link speed once took the hub's whole loop (benchmarks/abuse.py):
    past its budget a link holds the rest, reads nothing more, and hands them over as tokens come."""
    monkeypatch.setattr(connection, "CONTROL_BURST", 3.0)
    said = [control.ShareStatus(i % 2 == 0, f"flood {i}") for i in range(6)]

    async def main():
        owner = Said()
        link, transport = fed_link(owner, control_rate=100.0)
        link.data_received(b"".join(control_frame(control.encode(m)) for m in said))
        first, reading_while_held = list(owner.messages), transport.reading
        for _ in range(200):
            if len(owner.messages) == len(said):
                break
            await asyncio.sleep(0.01)
        return first, reading_while_held, owner.messages, transport.reading, link

    first, reading_while_held, messages, reading_after, link = asyncio.run(main())
    assert first == said[:3] and not reading_while_held
    assert messages == said and reading_after
    assert not link.closed


class Refuser(Said):
    """An owner that refuses every stream, as the hub does one to a member not online."""

    def stream_opened(self, link, sid, payload, window):
        link.refuse(sid, ErrorCode.NO_ROUTE, "that exit is not online")


def test_streams_opened_just_before_the_peers_goaway_are_left_unanswered(caplog):
    """A member closing its link right after a burst of opens (benchmarks/abuse.py, streams) made the hub
    refuse them on a mux already closed by the GOAWAY: a traceback, "Fatal error on SSL protocol"."""
    async def main():
        owner = Refuser()
        link, _ = fed_link(owner)
        link.data_received(encode(FrameType.OPEN, 1, encode_window(1000, b"route"))
                           + encode(FrameType.GOAWAY, 0, encode_code(ErrorCode.NO_ERROR, "bye")))
        return owner, link

    owner, link = asyncio.run(main())
    assert link.closed and owner.closed == ["peer closed the link: bye"]


def test_send_control_puts_the_encoded_message_on_the_wire():
    message = control.Welcome("tokyo", "alice", "a" * 24, None)

    async def main():
        link, transport = fed_link(None)
        link.send_control(message)
        await asyncio.sleep(0)  # written once per loop turn
        return sent_controls(transport)

    assert asyncio.run(main()) == [control.encode(message)]


@pytest.mark.parametrize("payload,named", [
    (b'{"type":"share-status","accepting":"yes","reason":""}', "share-status.accepting"),
    (b'{"type":"directory","exits":[{"id":"a","users":"many"}]}', "directory.exits[0]"),
    (b"not json", "not JSON"),
    (b'{"no":"type"}', "without a type"),
])
def test_a_malformed_control_message_is_a_protocol_error_that_closes_the_link(payload, named, caplog):
    async def main():
        owner = Said()
        link, transport = fed_link(owner)
        link.data_received(control_frame(payload) + control_frame(b'{"type":"replaced"}'))
        return owner, link, goaway(transport)

    with caplog.at_level(logging.WARNING, logger="ladder.link.connection"):
        owner, link, (code, reason) = asyncio.run(main())
    assert code == ErrorCode.PROTOCOL_ERROR and named in reason
    assert link.closed and owner.closed == [reason] and owner.messages == []  # nothing after it either
    assert isinstance(link.error, RemoteProtocolError) and str(link.error) == reason
    assert [r.getMessage() for r in caplog.records] == [f"test link: protocol error from peer: {reason}"]


class IntoStream:
    """A nested link's transport: what it writes goes on one stream of its parent."""

    def __init__(self, parent, sid):
        self.parent, self.sid = parent, sid

    def write(self, data):
        self.parent.send(self.sid, data)

    def is_closing(self):
        return False

    def close(self):
        pass

    abort = close


def test_closing_a_link_sends_what_its_nested_links_queued_before_its_goaway():
    async def main():
        parent, written = fed_link(None)
        sid = parent.open_stream(b"", Endpoint())
        child = Link(None, client=True, parent=parent)
        child.connection_made(IntoStream(parent, sid))
        child.send_control(control.Replaced())  # queued: flushed with the parent's next write
        parent.close()
        return [frame.type for frame in FrameDecoder().feed(bytes(written.written))]

    types = asyncio.run(main())
    assert FrameType.DATA in types and types.index(FrameType.DATA) < types.index(FrameType.GOAWAY)
