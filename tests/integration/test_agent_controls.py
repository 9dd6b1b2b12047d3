"""The dashboard's controls on running agents: the switch, the exit picker, the connection list, sharing off.

The hub is a real process; two sharers and a user are Agents in this
test's event loop (the dashboard will call these methods in the agent's
own loop), and curl fetches through the user's proxy as a browser would.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from harness import MARKER

from ladder.agent.agent import DISCONNECTED, Agent
from ladder.agent.exit import TargetRefused
from ladder.agent.sharing import SharePolicy
from ladder.config import MemberConfig

WAIT = 20.0  # seconds any one thing may take to happen


async def until(predicate, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def curl(*args: str, timeout: float = WAIT) -> tuple[int, bytes]:
    """curl in a subprocess the event loop does not wait on: the agents serve it meanwhile."""
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", str(int(timeout)), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout + 5)
    assert process.returncode is not None
    return process.returncode, output


def test_switch_picker_connection_list_and_sharing_off(network, origin, caplog):
    folders = {name: network.join(name) for name in ("alpha", "beta", "user")}

    def sharer(name: str, country: str) -> Agent:
        return Agent(MemberConfig.load(folders[name]), share=True, country=country, allow_private=True,
                     policy=SharePolicy(ports=((1, 65535),)))

    async def main() -> None:
        alpha, beta = sharer("alpha", "DE"), sharer("beta", "FR")
        user = Agent(MemberConfig.load(folders["user"]), proxy=("127.0.0.1", 0))
        running = [asyncio.ensure_future(agent.run()) for agent in (alpha, beta, user)]
        try:
            await asyncio.wait_for(asyncio.gather(*(a.wait_up(WAIT) for a in (alpha, beta, user))), WAIT)
            await until(lambda: len(user.exits()) == 2, "the user to see both exits")
            assert user.proxy_address is not None
            socks = "socks5h://{}:{}".format(*user.proxy_address)
            http = "http://{}:{}".format(*user.proxy_address)
            page = origin.url("index.html")

            # The exit picker: the next fetch goes through the exit chosen.
            for chosen, other in ((alpha, beta), (beta, alpha)):
                user.choose_exit(chosen.config.name)
                before = chosen.sharer.sharing.served, other.sharer.sharing.served
                code, body = await curl("-x", socks, page)
                assert code == 0 and MARKER.encode() in body, body
                assert chosen.sharer.sharing.served > before[0], f"{chosen.config.name} carried nothing"
                assert other.sharer.sharing.served == before[1], f"{other.config.name} carried the fetch"
            assert {e["name"]: e["chosen"] for e in user.exits()} == {"alpha": False, "beta": True}
            assert user.exits()[0]["latency_ms"] is not None, "the channel's handshake was timed"

            # A running download is listed, with its exit, and the close button cuts it.
            download = asyncio.ensure_future(curl("-x", socks, "--limit-rate", "2M", "-o", "/dev/null",
                                                  origin.url("big.bin")))
            def downloading() -> list[dict]:  # the page fetches' connections may still be closing
                return [c for c in user.activity.connections() if c["down"] > 1024 * 1024]

            await until(downloading, "the download to be listed")
            (listed,) = downloading()
            assert listed["route"] == "exit:beta" and listed["port"] == origin.port
            assert user.activity.close(listed["id"]) is True
            code, output = await download
            assert code != 0 and b"reset" in output, f"curl did not see the download cut: {output!r}"
            await until(lambda: user.activity.connections() == [], "the list to empty")
            assert user.metrics()["connections_opened"] >= 3 and user.metrics()["bytes_down"] > 0

            # The switch: off refuses at once with the reason; on serves again.
            user.set_connected(False)
            await until(lambda: user.state == "off", "the link to close")
            code, head = await curl("-x", http, "-i", page)
            assert head.startswith(b"HTTP/1.1 503") and DISCONNECTED.encode() in head, head
            assert user.status()["connected_wanted"] is False
            user.set_connected(True)
            await user.wait_up(WAIT)
            await until(lambda: len(user.exits()) == 2, "the directory after switching on")
            code, body = await curl("-x", socks, page)
            assert code == 0 and MARKER.encode() in body, body

            # Sharing off: the exit takes no new stream; the other one still serves.
            beta.set_sharing(False)
            with pytest.raises(TargetRefused):  # by beta, or by the pool once the hub lists beta no more
                await user.pool.connect("127.0.0.1", origin.port, exit="beta")
            await until(lambda: [e["name"] for e in user.exits()] == ["alpha"], "beta to leave the list")
            user.choose_exit("auto")
            code, body = await curl("-x", socks, page)
            assert code == 0 and MARKER.encode() in body, body
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        asyncio.run(main())
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not problems, f"the in-process agents logged: {[r.getMessage() for r in problems]}"
    assert time.monotonic() - started < 30
