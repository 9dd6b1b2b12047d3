"""The exit side of a member that shares: its signed exit record, and the connections others open through it.

On every link the sharer signs which members it serves in its exit record
(`share`), so users know before asking. Each connection another member
opens in a channel to us is admitted by the policy (`Sharing.admit`: who,
and the caps), waits for one of its member's slots, is checked and
connected by the guard (exit.py), and is relayed, metered, by an
`ExitRelay`. A UDP association (udp.py) is admitted and holds a slot the
same way; its guard checks each datagram. While a cap holds the hub is told (`share-status`), so it
lists the exit as not accepting until the cap lifts. The guard never lets
the exit reach the hub's own addresses, nor the sharer's public address as
the hub sees it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

from ladder.config import MemberConfig
from ladder.link.connection import Link
from ladder.protocol import control
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.messages import UDP_REQUEST, decode_target
from ladder.protocol.records import sign_exit_record

from .exit import ExitGuard, Refusal, connect_target, sockaddr_address
from .pool import ChannelPool
from .roster import Roster
from .sharing import ExitRelay, Sharing
from .udp import ExitAssociation


class Sharer:
    """The exit role of one agent: what it announces, and each connection others open through it."""

    def __init__(self, config: MemberConfig, country: str, sharing: Sharing, guard: ExitGuard,
                 pool: ChannelPool, roster: Roster):
        """`country` goes in the exit record; `roster` names the members a policy lists by name."""
        self.config = config
        self.country = country
        self.sharing = sharing
        self.guard = guard
        self.pool = pool
        self.roster = roster
        self.link: Link | None = None
        self._told: Refusal | None = None  # the cap the hub last heard of on this link

    async def block_hub_addresses(self) -> None:
        """The exit never connects to the hub's own addresses."""
        host, port = self.config.hub_address
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return
        for info in infos:
            self.guard.hub.add((sockaddr_address(info[4]), port))

    def link_up(self, link: Link, own_address: object) -> None:
        """Announce the exit on a new link.

        `own_address` is this machine's public address as the hub sees it.
        """
        try:
            self.guard.own = {ipaddress.ip_address(str(own_address))}
        except ValueError:
            pass
        record = sign_exit_record(self.config.key, self.country, self.pool.noise_public, int(time.time()),
                                  self.sharing.policy.members)
        link.send_control(control.Share(**record))
        self.link, self._told = link, None
        self.tick()

    def link_down(self) -> None:
        self.link = None

    def withdraw(self, reason: str) -> None:
        """Sharing switched off: the hub lists the exit no more (as while a cap holds); no stream is cut."""
        self._told = Refusal(ErrorCode.BUSY, reason)
        if self.link is not None:
            self.link.send_control(control.ShareStatus(False, reason))

    def resume(self) -> None:
        """Sharing switched on again on this link: the hub hears that the exit takes streams (or why not)."""
        self._told = Refusal(ErrorCode.BUSY, "withdrawn")  # whatever holds now differs: tick tells the hub
        self.tick()

    def tick(self) -> None:
        """While linked, every few seconds: tell the hub when a cap is reached or lifted; keep usage saved."""
        if self.link is None:
            return
        capped = self.sharing.stopped()
        if capped != self._told:
            self._told = capped
            self.link.send_control(control.ShareStatus(capped is None, capped.reason if capped else ""))
        self.sharing.save()

    def serve(self, link: Link, sid: int, request: bytes, member_id: str) -> None:
        """A connection through this exit in `member_id`'s channel: admit it, take a slot, connect, accept.

        A UDP association is admitted alike and accepted once it holds its slot.
        """
        udp = request == bytes([UDP_REQUEST])
        try:
            host, port = ("", 0) if udp else decode_target(request)
        except RemoteProtocolError as exc:
            link.refuse(sid, exc.code, str(exc))
            return
        member_id, user_name = self.roster.owner_of(member_id)  # a member's devices count as the member
        refusal = self.sharing.admit(member_id, user_name)
        if refusal is not None:
            link.refuse(sid, refusal.code, refusal.reason)
            return

        def refuse(why: str) -> None:
            if link.release(sid):
                link.refuse(sid, ErrorCode.BUSY, why)

        if udp:
            association = ExitAssociation(link, sid, self.sharing, self.guard, self.pool.tasks, member_id,
                                          user_name)
            link.claim(sid, association)  # early datagrams and a withdrawal reach it while it waits
            return self.sharing.take_slot(association, association.start, refuse)
        relay = ExitRelay(self.sharing, member_id, user_name)
        link.claim(sid, relay)  # early data and a withdrawal reach it while it waits for a slot

        def start() -> None:
            connecting = connect_target(host, port, self.guard, lambda: relay)
            self.pool.answer_when_connected(link, sid, relay, connecting,
                                            "the stream was cancelled while the exit connected")

        self.sharing.take_slot(relay, start, refuse)
