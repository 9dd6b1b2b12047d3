"""`connect()`: a connection through the network as asyncio streams, with no proxy socket in between.

The hub and the sharing agent are real processes; the user is an Agent in
this test process, with no proxy, calling `pool.connect` as the hub's
device ports and the crawler will: a 64 MiB fetch through the exit, the
same through a published name, and refusals that say why.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

import pytest
from harness import MARKER, free_port, ladder

from ladder.agent.agent import Agent
from ladder.agent.exit import TargetRefused
from ladder.config import MemberConfig
from ladder.protocol.errors import ErrorCode


async def get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str) -> bytes:
    """GET `path` over one connection; the body, hashed as it arrives when large."""
    writer.write(f"GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    body = await reader.readexactly(length)
    writer.close()
    await writer.wait_closed()
    return body


def run_user(folder, scenario, timeout: float = 120) -> None:
    """Run an agent for the member in `folder` in this process, and `scenario(agent)` once it sees an exit."""
    async def main():
        agent = Agent(MemberConfig.load(folder))
        running = asyncio.ensure_future(agent.run())
        try:
            await agent.wait_up(20)
            for _ in range(200):
                if agent.directory.candidates("auto"):
                    break
                await asyncio.sleep(0.05)
            await asyncio.wait_for(scenario(agent), timeout)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)

    asyncio.run(main())


def test_connect_fetches_through_an_exit_and_a_published_name_and_refusals_say_why(network, origin, caplog):
    alpha = network.exit("alpha", "AA", "--allow-private")
    ladder("publish", "--dir", str(alpha.folder), f"127.0.0.1:{origin.port}", "--name", "www")
    folder = network.join("user")

    async def scenario(agent: Agent):
        reader, writer = await agent.pool.connect("127.0.0.1", origin.port)
        body = await get(reader, writer, "127.0.0.1", "big.bin")
        assert hashlib.sha256(body).hexdigest() == origin.big_sha, "the 64 MiB file arrived altered"
        reader, writer = await agent.pool.connect("localhost", origin.port, exit="AA")  # the exit resolves it
        assert MARKER.encode() in await get(reader, writer, "localhost", "index.html")

        for _ in range(300):  # the publisher's record reaches us in a second or two (30 s when busy)
            if agent.listing.by_host:
                break
            await asyncio.sleep(0.1)
        reader, writer = await agent.pool.connect("www.alpha.ladder", 80)
        body = await get(reader, writer, "www.alpha.ladder", "big.bin")
        assert hashlib.sha256(body).hexdigest() == origin.big_sha, \
            "the file arrived altered through the service"

        closed_port = free_port()
        with pytest.raises(TargetRefused) as refused:
            await agent.pool.connect("127.0.0.1", closed_port)
        assert refused.value.code == ErrorCode.TARGET_REFUSED
        assert "refused the connection" in str(refused.value)
        with pytest.raises(TargetRefused, match="no exit online matches --exit ZZ") as refused:
            await agent.pool.connect("127.0.0.1", origin.port, exit="ZZ")
        assert refused.value.code == ErrorCode.NO_ROUTE
        with pytest.raises(TargetRefused, match="no service by that name"):
            await agent.pool.connect("nothing.alpha.ladder", 80)
        assert agent.directory.local_load == {alpha_id(agent): 0}, "every connection's end was counted"

    with caplog.at_level(logging.WARNING):
        run_user(folder, scenario)
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not problems, f"the in-process user logged: {[r.getMessage() for r in problems]}"
    assert "www.alpha.ladder" in ladder("services", "--dir", str(folder)).stdout, \
        "status.json lists the service"


def alpha_id(agent: Agent) -> str:
    (entry,) = agent.directory.entries
    return entry.id
