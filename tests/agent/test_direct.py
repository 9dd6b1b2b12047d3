"""A direct connection: the client's half-close passes on, and a connection ended both ways closes."""

from __future__ import annotations

import asyncio

from ladder.agent.direct import connect_direct


class _Relay:
    """What a proxy connection's relay sees of the destination."""

    def __init__(self):
        self.data = b""
        self.ended = asyncio.get_running_loop().create_future()

    def on_data(self, data: bytes) -> None:
        self.data += data

    def on_end(self) -> None:
        self.ended.set_result(True)

    def on_reset(self, code: int, reason: str) -> None:
        self.ended.set_exception(ConnectionError(reason))

    def on_window(self, increment: int, pending: int) -> None:
        pass


def test_a_connection_ended_both_ways_is_closed():
    async def main():
        got = asyncio.get_running_loop().create_future()

        async def destination(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
            writer.write(b"banner")
            writer.write_eof()  # the destination ends its direction first
            got.set_result(await reader.read())  # then the client's bytes, up to its half-close

        server = await asyncio.start_server(destination, "127.0.0.1", 0)
        relay = _Relay()
        stream = await connect_direct("127.0.0.1", server.sockets[0].getsockname()[1], relay)
        await asyncio.wait_for(relay.ended, 5)
        assert not stream.transport.is_closing()  # the client may still send
        stream.send(b"request")
        stream.end()
        assert await asyncio.wait_for(got, 5) == b"request"
        closing = stream.transport.is_closing()
        server.close()
        return relay.data, closing

    data, closing = asyncio.run(main())
    assert data == b"banner" and closing
