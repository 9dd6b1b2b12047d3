"""A TCP relay between a member's agent and its hub that a test can cut and restore with a signal.

SIGUSR1 cuts: every relayed connection is aborted (a reset both ways, as a
router that lost its route answers) and the port refuses new ones.
SIGHUP pauses: nothing is passed on either way and nothing is said, as on a
path whose packets vanish; each side only sees silence.
SIGUSR2 restores: the port accepts again and bytes flow again. SIGTERM ends it.

Run as a separate process: python cutrelay.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys

from ladder.agent.relay import abort_with_rst

CHUNK = 256 * 1024


class Relay:
    def __init__(self, listen: tuple[str, int], target: tuple[str, int]):
        self.listen, self.target = listen, target
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def open(self) -> None:
        self.flowing.set()
        if self.server is None:
            self.server = await asyncio.start_server(self.serve, *self.listen)

    def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            abort_with_rst(writer.transport)
        self.writers.clear()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            abort_with_rst(writer.transport)
            return
        pair = {writer, up_writer}
        self.writers |= pair
        pipes = [asyncio.ensure_future(self.pipe(reader, up_writer)),
                 asyncio.ensure_future(self.pipe(up_reader, writer))]
        clean = False
        try:
            # A reset either way is passed on at once, as a router passes it: waiting for the other
            # direction to end too held it while that side had nothing to say (a client waiting for
            # its download saw 30 s of silence instead of the hub's reset).
            for finished in asyncio.as_completed(pipes):
                if not await finished:
                    break
            else:
                clean = True
        finally:
            for pipe in pipes:
                pipe.cancel()
            self.writers -= pair
            for each in pair:
                if clean:
                    each.close()
                else:  # a reset on one side is passed on as a reset, never as a clean end
                    abort_with_rst(each.transport)


    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Copy until EOF and pass the EOF on (True), or stop at a reset or an abort (False); while
        paused, what was read waits (and the reader's buffer, once full, stops the socket)."""
        try:
            while chunk := await reader.read(CHUNK):
                await self.flowing.wait()
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            return True
        except OSError:
            return False


async def main(argv: list[str]) -> int:
    relay = Relay((argv[1], int(argv[2])), (argv[3], int(argv[4])))
    await relay.open()
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, relay.cut)
    loop.add_signal_handler(signal.SIGHUP, relay.flowing.clear)
    loop.add_signal_handler(signal.SIGUSR2, lambda: loop.create_task(relay.open()))
    loop.add_signal_handler(signal.SIGTERM, lambda: done.done() or done.set_result(None))
    print("relaying", flush=True)
    await done
    relay.cut()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv)))
