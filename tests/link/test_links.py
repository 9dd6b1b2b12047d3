"""Links over real Link objects: channels carrying many connections in one sealed stream, backpressure."""

from __future__ import annotations

import asyncio

from ladder.link.channel import Channel, StreamRef
from ladder.link.connection import Endpoint, Link
from ladder.protocol.channel import CHANNEL_REQUEST, Initiator, Responder
from ladder.protocol.errors import ErrorCode
from ladder.protocol.frames import FrameDecoder, FrameType
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
        self.channels.append(Channel.answer(link, sid, message2, sealed, request[1:], self.echo, "from user"))
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
        results = await asyncio.gather(*(fetch(channel, b"target %d" % i, b"x" * (i * 5000)) for i in range(40)))
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
        channel, exit_, user_link = linked()
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
            link.send_control({"pad": str(i) * 60_000})
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
