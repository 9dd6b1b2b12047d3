"""Splicing a stranger to the real web server: half-closes pass through, and a finished splice closes."""

from __future__ import annotations

import asyncio

from ladder.link import fallback


class _Door(asyncio.Protocol):
    """Hands every connection to the backend, as the hub's doorway does with a stranger."""

    def __init__(self, backend_port: int):
        self.backend = ("127.0.0.1", backend_port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        fallback.hand_to_backend(transport, self.backend, b"")


def test_both_half_closes_pass_through_and_then_both_connections_close():
    """The web server answers and half-closes, the prober half-closes: nothing is left open in the hub.

    Left open, the two halves would be garbage that only refer to each
    other, which uvloop frees with a shutdown still pending (a heap
    corruption, seen under probes).
    """

    async def main():
        backend_done = asyncio.get_running_loop().create_future()

        async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
            request = await reader.readexactly(5)
            writer.write(b"answer to " + request)
            writer.write_eof()
            rest = await reader.read()  # the prober's half-close, passed on
            backend_done.set_result(rest)
            await reader.read()

        web = await asyncio.start_server(backend, "127.0.0.1", 0)
        door = await asyncio.get_running_loop().create_server(
            lambda: _Door(web.sockets[0].getsockname()[1]), "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", door.sockets[0].getsockname()[1])
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.read(), 5) == b"answer to hello"  # up to the server's EOF
        writer.write_eof()
        assert await asyncio.wait_for(backend_done, 5) == b""
        for _ in range(200):  # bounded: 2 s
            if not fallback._OPEN:
                break
            await asyncio.sleep(0.01)
        open_halves = len(fallback._OPEN)
        writer.close()
        door.close()
        web.close()
        return open_halves

    assert asyncio.run(main()) == 0
