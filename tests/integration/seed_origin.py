"""An origin whose content every client can check: ask `SEED SIZE\n`, get exactly SIZE bytes, then EOF.

The bytes are a stream derived from the seed (SHAKE-128 of seed and block
number, 64 KiB a block), with no framing: a client that knows what it asked
for can tell a whole answer from a short one (truncated) or a wrong one
(corrupted) at the exact byte. A client that hangs up early is this
server's ordinary case and is not logged.

Run as a separate process: python seed_origin.py PORT ADDRESS [ADDRESS...]
(the same port on each loopback address, so routing rules can send each
address through a different exit).
"""

from __future__ import annotations

import hashlib
import socketserver
import sys
import threading

BLOCK = 64 * 1024
MAX_SIZE = 1 << 30
MAX_LINE = 64


def block(seed: int, index: int) -> bytes:
    return hashlib.shake_128(b"%d:%d" % (seed, index)).digest(BLOCK)


def expected(seed: int, offset: int, length: int) -> bytes:
    """The content's bytes at [offset, offset + length)."""
    first, last = offset // BLOCK, (offset + length - 1) // BLOCK
    data = b"".join(block(seed, i) for i in range(first, last + 1))
    start = offset - first * BLOCK
    return data[start:start + length]


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            self.answer()
        except OSError:
            return  # the client hung up or was cut off

    def answer(self) -> None:
        line = b""
        while not line.endswith(b"\n") and len(line) < MAX_LINE:
            chunk = self.request.recv(MAX_LINE - len(line))
            if not chunk:
                return
            line += chunk
        try:
            seed, size = (int(field) for field in line.split())
        except ValueError:
            return
        if 0 <= size <= MAX_SIZE:
            for index in range((size + BLOCK - 1) // BLOCK):
                self.request.sendall(block(seed, index)[:size - index * BLOCK])


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv: list[str]) -> int:
    port = int(argv[1])
    servers = [Server((address, port), Handler) for address in argv[2:]]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
