#!/usr/bin/env python3
"""Child processes of the benchmarks: a TCP echo server, and the Python origin used without nginx.

    python benchmarks/_servers.py echo            # prints "READY PORT"
    python benchmarks/_servers.py origin BYTES [SNDBUF]
                                                  # prints "READY PORT SHA256"; serves /1k and /256m,
                                                  # each socket's send buffer capped at SNDBUF if > 0

Both listen on a free loopback port, use uvloop if it is installed, and run until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import BIG_PATH, CHUNK, SMALL_BODY, SMALL_PATH, raise_nofile  # noqa: E402


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def http_handler(big: bytes):
    files = {BIG_PATH.encode(): memoryview(big), SMALL_PATH.encode(): memoryview(SMALL_BODY)}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = files.get(head.split(b" ", 2)[1])
                if body is None:
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
                for offset in range(0, len(body), 4 * CHUNK):
                    writer.write(body[offset : offset + 4 * CHUNK])
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    return serve


async def serve(handler, ready_extra: str, sndbuf: int = 0) -> None:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, backlog=4096)
    if sndbuf:  # accepted sockets inherit it, as nginx's `listen ... sndbuf=` gives them
        server.sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    print(f"READY {server.sockets[0].getsockname()[1]}{ready_extra}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> int:
    raise_nofile()
    if sys.argv[1:2] == ["echo"]:
        coro = serve(echo, "")
    elif sys.argv[1:2] == ["origin"] and len(sys.argv) in (3, 4):
        big = os.urandom(int(sys.argv[2]))
        sndbuf = int(sys.argv[3]) if len(sys.argv) == 4 else 0
        coro = serve(http_handler(big), " " + hashlib.sha256(big).hexdigest(), sndbuf)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
