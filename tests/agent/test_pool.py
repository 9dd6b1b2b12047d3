"""The channel pool in one process: a user's, exits' behind a switch reduced to routing, a real origin.

The user's hub link runs back to back with a link whose owner plays the
hub's switch for channels only: it reads the route, hands the channel to
the exit it names with the route rewritten to say who opens it (as the
hub does), and refuses a route to no exit as the hub refuses one to a
member offline. The exits are real `Sharer`s; the origin is a TCP server.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.agent.directory import Directory
from ladder.agent.exit import TargetRefused
from ladder.agent.names import ServiceListing
from ladder.agent.pool import CHANNELS_PER_MEMBER, ChannelPool
from ladder.agent.roster import Roster
from ladder.agent.sharer import Sharer
from ladder.agent.sharing import MEMBERS_ONLY, SharePolicy, Sharing
from ladder.config import MemberConfig
from ladder.link.connection import Link
from ladder.link.memory import link_pair
from ladder.protocol.control import ExitEntry
from ladder.protocol.errors import ErrorCode
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.messages import decode_route, encode_route
from ladder.protocol.noise import generate_keypair
from ladder.protocol.records import sign_exit_record
from ladder.tasks import Tasks

ANY_PORT = ((1, 65535),)


class Member:
    """One member's pool and what it reads: its directory, the listing, the roster."""

    def __init__(self, name: str, folder: Path, tasks: Tasks):
        self.name = name
        self.key = Ed25519PrivateKey.generate()
        self.id = member_id(public_bytes(self.key))
        self.noise_private, self.noise_public = generate_keypair()
        self.folder = folder / name
        self.folder.mkdir()
        self.roster = Roster()
        self.directory = Directory(self.folder / "pins.json", self.id, name)
        self.listing = ServiceListing(self.directory.pins, self.id, self.roster)
        self.pool = ChannelPool(self.key, self.noise_private, self.directory, self.listing, tasks, self.serve)
        self.sharer: Sharer | None = None

    def share(self, policy: SharePolicy) -> Member:
        config = MemberConfig(self.folder, self.key, ("127.0.0.1", 9), "fp", "hub", self.name)
        sharing = Sharing(policy, self.folder / "share-usage.json")
        self.sharer = Sharer(config, "ZZ", sharing, policy.guard(allow_private=True), self.pool, self.roster)
        return self

    def serve(self, link, sid, request, opener_id, opener_key) -> None:
        self.sharer.serve(link, sid, request, opener_id)

    def entry(self, users: int = 0) -> dict:
        """This exit as the hub's directory lists it (a record that names no members)."""
        return ExitEntry(id=self.id, name=self.name, country="ZZ", users=users,
                         **sign_exit_record(self.key, "ZZ", self.noise_public, 1))


class Switch:
    """Owner of the far end of the user's hub link: routes each channel to the exit it names."""

    def __init__(self, user: Member, exits: list[Member]):
        self.user, self.exits = user, {e.id: e for e in exits}

    def stream_opened(self, link, sid, payload, window) -> None:
        target, inner = decode_route(payload)
        exit_ = self.exits.get(target)
        if exit_ is None:
            return link.refuse(sid, ErrorCode.NO_ROUTE, "that member is not online")
        exit_.pool.stream_opened(link, sid, encode_route(self.user.id, inner), window)

    def control_received(self, link, message) -> None: ...

    def link_closed(self, link, reason) -> None: ...


def link_up(user: Member, exits: list[Member]) -> None:
    """The user's pool gets a hub link (in memory); behind it, the exits, listed in the user's
    directory as the hub lists them on a new link; everyone knows the user by name."""
    user_link = Link(None, client=True)
    link_pair(user_link, Link(Switch(user, exits), client=False))
    user.pool.link = user_link
    user.directory.update([exit_.entry() for exit_ in exits])
    for exit_ in exits:
        exit_.roster.names[user.id] = user.name


async def echo_origin() -> tuple[asyncio.AbstractServer, int]:
    """A TCP server that answers everything a client sent, once it ended, and closes."""
    async def serve(reader, writer):
        writer.write(await reader.read())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def round_trip(pool: ChannelPool, port: int, data: bytes, exit: str = "auto") -> bytes:
    reader, writer = await pool.connect("127.0.0.1", port, exit)
    writer.write(data)
    await writer.drain()
    writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    return answer


def scenario(tmp_path, body) -> None:
    """Run `body(tasks, origin_port)` in a fresh loop; the pools' background work is stopped after it."""
    async def main():
        tasks = Tasks(logging.getLogger("test.pool"))
        server, port = await echo_origin()
        try:
            await asyncio.wait_for(body(tasks, port), 30)
        finally:
            await tasks.stop()
            server.close()

    asyncio.run(main())


def test_connect_carries_bytes_both_ways_and_connections_share_one_channel(tmp_path):
    async def body(tasks, port):
        user = Member("user", tmp_path, tasks)
        exit_ = Member("exit", tmp_path, tasks).share(SharePolicy(ports=ANY_PORT))
        link_up(user, [exit_])
        # The last one needs credit back.
        payloads = [os.urandom(size) for size in (1, 100_000, 3 * 1024 * 1024)]
        answers = await asyncio.gather(*(round_trip(user.pool, port, data) for data in payloads))
        assert [hashlib.sha256(a).digest() for a in answers] == [hashlib.sha256(p).digest() for p in payloads]
        assert len(user.pool.channels) == 1 and user.pool.link.stream_count == 1  # one stream on the hub link
        assert user.directory.local_load[exit_.id] == 0, "each connection's end was counted"
        assert exit_.sharer.sharing.usage["users"][user.id] >= 2 * sum(map(len, payloads)), \
            "the exit metered both ways"

    scenario(tmp_path, body)


def test_a_refusal_raises_with_its_code_and_reason(tmp_path):
    async def body(tasks, port):
        user = Member("user", tmp_path, tasks)
        exit_ = Member("exit", tmp_path, tasks).share(SharePolicy(ports=((80, 80),)))
        link_up(user, [exit_])
        with pytest.raises(TargetRefused) as refused:
            await user.pool.connect("127.0.0.1", port)
        assert refused.value.code == ErrorCode.FORBIDDEN and "allows ports 80 only" in str(refused.value)
        assert user.directory.admits_me(exit_.id), "a refused target is no refusal of this member"

        user.pool.link = None
        with pytest.raises(TargetRefused, match="not connected to the hub") as refused:
            await user.pool.connect("127.0.0.1", port)
        assert refused.value.code == ErrorCode.NO_ROUTE
        link_up(user, [exit_])
        with pytest.raises(TargetRefused, match="no exit online matches --exit DE"):
            await user.pool.connect("127.0.0.1", port, exit="DE")
        with pytest.raises(TargetRefused, match="no service by that name"):
            await user.pool.connect("blog.nobody.ladder", 80)

    scenario(tmp_path, body)


def test_an_exit_that_refuses_this_member_or_is_gone_is_passed_over_for_the_next(tmp_path):
    async def body(tasks, port):
        user = Member("user", tmp_path, tasks)
        only_alice = SharePolicy(members=frozenset({"alice"}), ports=ANY_PORT)
        strict = Member("strict", tmp_path, tasks).share(only_alice)
        gone = Member("gone", tmp_path, tasks)  # listed by the directory, but not behind the switch
        open_ = Member("open", tmp_path, tasks).share(SharePolicy(ports=ANY_PORT))
        link_up(user, [strict, open_])
        user.directory.update([strict.entry(users=0), gone.entry(users=1), open_.entry(users=5)])
        assert [r.id for _, r in user.directory.candidates("auto")] == [strict.id, gone.id, open_.id]
        assert await round_trip(user.pool, port, b"through the third") == b"through the third"
        assert not user.directory.admits_me(strict.id), f"{MEMBERS_ONLY.reason!r} is remembered"
        assert [r.id for _, r in user.directory.candidates("auto")] == [open_.id, gone.id], \
            "gone failed lately"
        assert open_.sharer.sharing.usage["users"] and not strict.sharer.sharing.usage["users"]

    scenario(tmp_path, body)


def test_a_refusal_by_policy_alone_says_so(tmp_path):
    async def body(tasks, port):
        user = Member("user", tmp_path, tasks)
        only_alice = SharePolicy(members=frozenset({"alice"}), ports=ANY_PORT)
        strict = Member("strict", tmp_path, tasks).share(only_alice)
        link_up(user, [strict])
        with pytest.raises(TargetRefused) as refused:
            await user.pool.connect("127.0.0.1", port)
        assert (refused.value.code, str(refused.value)) == (MEMBERS_ONLY.code, MEMBERS_ONLY.reason)

    scenario(tmp_path, body)


def test_idle_channels_close_at_the_second_quiet_look_and_busy_ones_stay(tmp_path):
    async def body(tasks, port):
        user = Member("user", tmp_path, tasks)
        exit_ = Member("exit", tmp_path, tasks).share(SharePolicy(ports=ANY_PORT))
        link_up(user, [exit_])
        reader, writer = await user.pool.connect("127.0.0.1", port)  # held open
        user.pool.close_idle()
        user.pool.close_idle()
        assert len(user.pool.channels) == 1, "a channel carrying a connection is not idle"
        writer.write_eof()
        assert await reader.read() == b""
        writer.close()
        await asyncio.sleep(0.01)  # the stream's end reaches the mux
        user.pool.close_idle()
        assert len(user.pool.channels) == 1, "one quiet look is not enough"
        user.pool.close_idle()
        await asyncio.sleep(0.01)
        assert user.pool.channels == {} and exit_.pool.visiting == {}, "closed at both ends"
        assert await round_trip(user.pool, port, b"again") == b"again", "a new channel opens on demand"

    scenario(tmp_path, body)


def test_a_member_holding_its_share_of_channels_is_refused_another(tmp_path):
    async def body(tasks, port):
        user = Member("user", tmp_path, tasks)
        exit_ = Member("exit", tmp_path, tasks).share(SharePolicy(ports=ANY_PORT))
        link_up(user, [exit_])
        exit_.pool.visiting[user.id] = CHANNELS_PER_MEMBER  # as if it held them already
        with pytest.raises(TargetRefused) as refused:
            await user.pool.connect("127.0.0.1", port)
        assert refused.value.code == ErrorCode.MEMBER_LIMIT
        assert f"already hold {CHANNELS_PER_MEMBER} channels" in str(refused.value)

    scenario(tmp_path, body)
