#!/usr/bin/env python3
"""The benchmarks' asyncio client, run in its own process (uvloop if installed).

    _loadclient.py rate --proxy-kind K --proxy-port P --target-port O --total N --concurrency C
        N fetches of /1k from the origin on port O, C at a time, each on a fresh proxied
        connection; prints one JSON line: ok, errors by kind, seconds, req/s.

    _loadclient.py hold --proxy-kind K --proxy-port P --target-port E --count N --batch B [--probe-on-open]
        opens N proxied connections to the echo server on port E, B at a time, and keeps them;
        prints one JSON line when all are open (or failed). Then reads commands from stdin, one a
        line: "check" sends a distinct payload on every open connection and checks the echo (one
        JSON line), "exit" (or end of input) closes them all and exits.

K is "socks5", "http-connect" or "direct". Errors are counted by kind ("connect refused",
"reset", "timeout", "EOF", "wrong bytes", "EMFILE", ...), never raised.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import socket
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (SMALL_BODY, SMALL_PATH, SOCKS5_ACCEPTED, SOCKS5_GREETING, get_request,  # noqa: E402
                     http_connect, raise_nofile, socks5_connect, socks5_reply_rest)


class ProxyRefused(Exception):
    pass


class WrongBytes(Exception):
    pass


def classify(exc: BaseException) -> str:
    if isinstance(exc, ProxyRefused):
        return str(exc)
    if isinstance(exc, WrongBytes):
        return "wrong bytes"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "EOF (closed early)"
    if isinstance(exc, ConnectionRefusedError):
        return "connect refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, BrokenPipeError):
        return "broken pipe"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, f"errno {exc.errno}") + " (client)" * (
            exc.errno in (errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL))
    return type(exc).__name__


async def open_tunnel(kind: str, proxy_port: int, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port if kind != "direct" else port)
    try:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if kind == "socks5":
            writer.write(SOCKS5_GREETING)
            if await reader.readexactly(2) != SOCKS5_ACCEPTED:
                raise ProxyRefused("SOCKS5 greeting refused")
            writer.write(socks5_connect(port))
            head = await reader.readexactly(4)
            if head[1] != 0:
                raise ProxyRefused(f"SOCKS5 CONNECT refused (code {head[1]})")
            rest = socks5_reply_rest(head)
            await reader.readexactly(rest if rest >= 0 else (await reader.readexactly(1))[0] + 2)
        elif kind == "http-connect":
            writer.write(http_connect(port))
            head = await reader.readuntil(b"\r\n\r\n")
            if head.split(b" ", 2)[1:2] != [b"200"]:
                raise ProxyRefused(f"HTTP CONNECT answered {head.split(b' ', 2)[1:2]}")
        return reader, writer
    except BaseException:
        writer.close()
        raise


# --------------------------------------------------------------------- rate


async def fetch(args: argparse.Namespace) -> None:
    reader, writer = await open_tunnel(args.proxy_kind, args.proxy_port, args.target_port)
    try:
        writer.write(get_request(SMALL_PATH, args.target_port))
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or b"\r\ncontent-length: 1024\r\n" not in head.lower():
            raise WrongBytes()
        if await reader.readexactly(len(SMALL_BODY)) != SMALL_BODY:
            raise WrongBytes()
    finally:
        writer.close()


async def rate(args: argparse.Namespace) -> dict:
    errors: Counter[str] = Counter()
    next_index = 0
    ok = 0

    async def worker() -> None:
        nonlocal next_index, ok
        while next_index < args.total:
            next_index += 1
            try:
                await asyncio.wait_for(fetch(args), args.timeout)
                ok += 1
            except Exception as exc:  # counted, never raised
                errors[classify(exc)] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    seconds = time.perf_counter() - started
    return {"ok": ok, "errors": dict(errors), "seconds": round(seconds, 3), "rps": round(ok / seconds, 1)}


# --------------------------------------------------------------------- hold


class Held:
    """The connections kept open: a list with None where a connection failed."""

    def __init__(self) -> None:
        self.conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = []

    def alive(self) -> list[int]:
        return [i for i, c in enumerate(self.conns) if c is not None]

    def drop(self, index: int) -> None:
        conn = self.conns[index]
        if conn is not None:
            conn[1].close()
            self.conns[index] = None


def payload(index: int, size: int) -> bytes:
    """`size` bytes (at least 9) that differ from one connection to the next."""
    head = f"{index:08d}:".encode()
    return head + bytes((index + i) % 251 for i in range(size - len(head)))


async def echo_once(conn, index: int, size: int) -> None:
    reader, writer = conn
    data = payload(index, size)
    writer.write(data)
    if await reader.readexactly(len(data)) != data:
        raise WrongBytes()


async def open_one(args: argparse.Namespace, index: int):
    conn = await open_tunnel(args.proxy_kind, args.proxy_port, args.target_port)
    try:
        if args.probe_on_open:
            await echo_once(conn, index, 1)
    except BaseException:
        conn[1].close()
        raise
    return conn


async def in_batches(indexes: list[int], batch: int, limit: float, action) -> tuple[int, Counter]:
    """Run `action(index)` on every index, `batch` at a time, within `limit` seconds in all."""
    errors: Counter[str] = Counter()
    ok = 0
    deadline = time.monotonic() + limit
    for start in range(0, len(indexes), batch):
        part = indexes[start : start + batch]
        if time.monotonic() > deadline:
            errors["not tried (time limit)"] += len(indexes) - start
            break
        results = await asyncio.gather(*(action(i) for i in part), return_exceptions=True)
        for i, result in zip(part, results):
            if isinstance(result, BaseException):
                errors[classify(result)] += 1
            else:
                ok += 1
    return ok, errors


async def hold(args: argparse.Namespace) -> None:
    held = Held()
    held.conns = [None] * args.count

    async def open_at(i: int) -> None:
        held.conns[i] = await asyncio.wait_for(open_one(args, i), args.timeout)

    started = time.perf_counter()
    ok, errors = await in_batches(list(range(args.count)), args.batch, args.limit, open_at)
    say({"event": "open", "ok": ok, "errors": dict(errors), "seconds": round(time.perf_counter() - started, 3)})
    loop = asyncio.get_running_loop()
    while True:
        command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if command == "check":
            async def check_at(i: int) -> None:
                try:
                    await asyncio.wait_for(echo_once(held.conns[i], i, args.payload_bytes), args.timeout)
                except BaseException:
                    held.drop(i)
                    raise

            started = time.perf_counter()
            ok, errors = await in_batches(held.alive(), args.batch, args.limit, check_at)
            say({"event": "check", "ok": ok, "errors": dict(errors),
                 "seconds": round(time.perf_counter() - started, 3)})
        else:  # "exit" or end of input
            for i in held.alive():
                held.drop(i)
            return


def say(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("rate", "hold"))
    parser.add_argument("--proxy-kind", choices=("socks5", "http-connect", "direct"), required=True)
    parser.add_argument("--proxy-port", type=int, default=0)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--total", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds for one fetch, open or echo")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds for opening (or checking) all")
    parser.add_argument("--probe-on-open", action="store_true", help="hold: echo one byte right after opening")
    parser.add_argument("--payload-bytes", type=int, default=64, help="hold: bytes sent on each check")
    args = parser.parse_args()
    raise_nofile()
    coro = rate(args) if args.mode == "rate" else hold(args)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(coro)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(coro)
    if result is not None:
        say(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
