"""`ladder demo`: a hub, a sharer, a user and a web site on loopback, proven to work.

Everything runs in this one process, on real TLS and TCP sockets on
127.0.0.1, with the same roles `ladder hub run` and `ladder up` use. The
self-check fetches a page through the user's HTTP proxy and a 16 MiB file
through its SOCKS5 side and compares sha256 digests.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import struct
import tempfile
import time
from pathlib import Path

from ladder.agent.agent import Agent
from ladder.agent.join import join
from ladder.agent.sharing import SharePolicy
from ladder.config import HubConfig, InviteLink, MemberConfig
from ladder.hub.hub import Hub
from ladder.link.tls import generate_self_signed
from ladder.store.hubdb import HubStore

FILE_SIZE = 16 * 1024 * 1024
PAGE = b"<!doctype html><title>Ladder demo</title><h1>Hello through the ladder</h1>\n"


class Origin:
    """A tiny web site: '/' is a page, '/file.bin' a 16 MiB file of fixed random bytes."""

    def __init__(self, size: int = FILE_SIZE):
        self.files = {"/": (b"text/html", PAGE), "/file.bin": (b"application/octet-stream",
                                                            random.Random(7).randbytes(size))}
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                kind, body = self.files.get(path, (b"text/plain", b"not found\n"))
                status = b"200 OK" if path in self.files else b"404 Not Found"
                writer.write(b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                             % (status, kind, len(body)))
                writer.write(body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def fetch(proxy: tuple[str, int], url_host: str, url_port: int, path: str, socks: bool) -> bytes:
    """GET http://url_host:url_port/path through the proxy (SOCKS5 or HTTP); the body."""
    reader, writer = await asyncio.open_connection(*proxy)
    try:
        if socks:
            name = url_host.encode()
            writer.write(b"\x05\x01\x00" + b"\x05\x01\x00\x03" + bytes([len(name)]) + name
                         + struct.pack("!H", url_port))
            greeting = await reader.readexactly(2)
            reply = await reader.readexactly(10)
            if greeting != b"\x05\x00" or reply[1] != 0:
                raise RuntimeError(f"SOCKS5 proxy answered code {reply[1]}")
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {url_host}\r\n\r\n".encode())
        else:
            writer.write(f"GET http://{url_host}:{url_port}{path} HTTP/1.1\r\n"
                         f"Host: {url_host}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.split(b"\r\n")[0].decode(errors="replace") + " "
                               + (await reader.read(500)).decode(errors="replace").strip())
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        return await reader.readexactly(length)
    finally:
        writer.close()


async def enroll(hub: Hub, store: HubStore, folder: Path, name: str) -> MemberConfig:
    """Invite and join a member the way `ladder hub invite` + `ladder join` do."""
    invite = InviteLink(store.create_invite(name), ("127.0.0.1", hub.port), hub.fingerprint, hub.config.name)
    return await join(invite, folder)


async def run_demo(check: bool, port: int, echo=print) -> int:
    with tempfile.TemporaryDirectory(prefix="ladder-demo-") as tmp:
        root = Path(tmp)
        hub_dir = root / "hub"
        hub_dir.mkdir()
        cert, key = hub_dir / "tls.crt", hub_dir / "tls.key"
        generate_self_signed(cert, key, "localhost", ["localhost", "127.0.0.1"])
        config = HubConfig(hub_dir, "demo", ("127.0.0.1", 0), ("127.0.0.1", 0), cert, key)
        tasks: list[asyncio.Task] = []
        with HubStore(config.store_target) as store:
            hub = Hub(config, store)
            await hub.start()
            origin = Origin()
            origin_port = await origin.start()
            echo(f"hub 'demo' on 127.0.0.1:{hub.port} (TLS), web site on 127.0.0.1:{origin_port}")
            sharer = Agent(await enroll(hub, store, root / "sharer", "sharer"), share=True, country="ZZ",
                           allow_private=True, policy=SharePolicy(ports=((1, 65535),)))
            user_config = await enroll(hub, store, root / "user", "user")
            for proxy_port in (port, 0):
                user = Agent(user_config, proxy=("127.0.0.1", proxy_port))
                try:
                    await user.start_proxy()
                    break
                except Exception:
                    continue
            for agent in (sharer, user):
                tasks.append(asyncio.ensure_future(agent.run()))
            try:
                code = await _self_check(hub, sharer, user, origin, origin_port, echo)
                if check or code:
                    return code
                assert user.proxy_address is not None  # the self-check went through the proxy
                host, pport = user.proxy_address
                echo(f"\ntry it:  curl -x socks5h://{host}:{pport} http://127.0.0.1:{origin_port}/")
                echo(f"    or:  curl -x http://{host}:{pport} http://127.0.0.1:{origin_port}/")
                echo("running until Ctrl-C")
                await asyncio.Event().wait()
                return 0
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await hub.stop()


async def _self_check(hub, sharer, user, origin, origin_port, echo) -> int:
    try:
        await sharer.wait_up(10)
        await user.wait_up(10)
        deadline = time.monotonic() + 10
        while not user.directory.candidates("auto") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        echo("sharer and user joined with invites and linked up; "
             f"exits online: {len(user.directory.records)}")
        proxy = user.proxy_address
        page = await asyncio.wait_for(fetch(proxy, "127.0.0.1", origin_port, "/", socks=False), 30)
        if page != PAGE:
            raise RuntimeError("the page arrived altered")
        echo(f"fetched / through the HTTP proxy {proxy[0]}:{proxy[1]}: {len(page)} bytes, intact")
        started = time.monotonic()
        body = await asyncio.wait_for(fetch(proxy, "127.0.0.1", origin_port, "/file.bin", socks=True), 60)
        seconds = time.monotonic() - started
        want = hashlib.sha256(origin.files["/file.bin"][1]).hexdigest()
        got = hashlib.sha256(body).hexdigest()
        if got != want:
            raise RuntimeError(f"sha256 mismatch: sent {want}, received {got}")
        echo(f"fetched a 16 MiB file through SOCKS5 in {seconds:.2f} s "
             f"({len(body) / seconds / 1e6:.0f} MB/s), sha256 {got[:16]}… matches")
        echo("demo check passed: user → hub → sharer's exit → web site, over TLS, end to end encrypted")
        return 0
    except Exception as exc:  # the demo reports any failure as one line
        echo(f"demo check FAILED: {type(exc).__name__}: {exc}")
        return 1
