"""The agent role: one member's link to its hub, and what it runs over it.

`Agent` is a supervisor. It keeps one outbound link to the hub (this is
why NAT does not matter), dialling again whenever it drops (reconnect.py:
backoff capped at a few seconds, at once on a network change), and
composes what runs over it: the proxy front (front.py) whose connections
go where the rules say, the channel pool (pool.py) that opens them
through exits or to publishers and answers other members' channels, the
exit side when sharing (sharer.py), this member's published services
(services.py), and what the hub lists: exits (directory.py), services
(names.py) and members (roster.py). Its background work runs under one
`Tasks`, stopped with it.

One agent runs per member: a second one on the same folder stops at once
(the folder's lock); one elsewhere with a copy of the key takes over the
link at the hub, which tells this one why, so this one stops instead of
taking the link back in a loop. Its state is written to status.json in the
member's folder for `ladder status`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence

from ladder.config import MemberConfig, ProxyAuth, format_address, write_file
from ladder.errors import UserError
from ladder.link.client import HubIdentityMismatch, LinkRefused, dial
from ladder.link.connection import Link
from ladder.protocol import control
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.messages import is_service_request
from ladder.tasks import Tasks

from .credits import RECEIPT_TICK
from .direct import connect_direct
from .directory import Directory
from .front import ProxyConnection
from .names import ServiceListing, is_service_host
from .pool import CHANNEL_IDLE, ChannelPool
from .reconnect import Backoff, NetworkWatch, pause
from .roster import Roster
from .rules import Router, Rule
from .services import WATCH_EVERY, Services
from .sharer import Sharer
from .sharing import SharePolicy, Sharing
from .udp import Control, SocksAssociation

log = logging.getLogger(__name__)
STATUS_EVERY = 2.0


class AgentFatal(UserError):
    """The agent cannot go on (wrong hub key, membership refused, port in use)."""


class Agent:
    def __init__(
        self,
        config: MemberConfig,
        *,
        proxy: tuple[str, int] | None = None,
        proxy_auth: ProxyAuth | None = None,
        on_proxy_listening: Callable[[tuple[str, int]], None] | None = None,
        share: bool = False,
        country: str | None = None,
        exit_choice: str = "auto",
        allow_private: bool = False,
        rules: Sequence[Rule] = (),
        policy: SharePolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ):
        """`clock` (monotonic seconds) ages exit failures and drives rates and backoff;
        `rng` jitters the backoff; `on_proxy_listening` hears the proxy's address once it listens."""
        self.config = config
        self.proxy = proxy
        self.proxy_auth = proxy_auth
        self.on_proxy_listening = on_proxy_listening
        self.country = (country or "??").upper()
        self.exit_choice = exit_choice
        self.router = Router(list(rules), exit_choice)
        self.clock = clock
        self.rng = rng or random.Random()
        self.tasks = Tasks(log)
        self.roster = Roster()
        self.directory = Directory(config.pins_path, config.id, config.name, clock)
        self.listing = ServiceListing(self.directory.pins, config.id, self.roster)
        self.pool = ChannelPool(config.key, config.noise_key(), self.directory, self.listing, self.tasks,
                                self.serve)
        self.services = Services(config, self.pool, self.write_status)
        self.sharer: Sharer | None = None
        if share:
            policy = policy or SharePolicy()
            sharing = Sharing(policy, config.folder / "share-usage.json", clock)
            self.sharer = Sharer(config, self.country, sharing, policy.guard(allow_private), self.pool,
                                 self.roster)
        self.link: Link | None = None
        self.state = "starting"
        self.error = ""
        self.since = time.time()
        self.proxy_server: asyncio.AbstractServer | None = None
        self.proxy_address: tuple[str, int] | None = None
        self._link_down: asyncio.Future | None = None
        self._up = asyncio.Event()
        self.started = asyncio.Event()  # run() holds the folder and its proxy listens
        self._replaced = False  # the hub said another agent with our key took the link
        self.exit_warning = ""  # which --exit or rule matches no exit online, once the directory came
        self.balance: control.Balance | None = None  # this member's account, as the hub last said

    # -------------------------------------------------------------- running

    async def start_proxy(self) -> None:
        if self.proxy is None or self.proxy_server is not None:
            return
        loop = asyncio.get_running_loop()
        host, port = self.proxy
        try:
            self.proxy_server = await loop.create_server(
                lambda: ProxyConnection(self.open, self.pool.stream_done, self.pac, self.proxy_auth,
                                        self.associate),
                host, port, backlog=1024)
        except OSError as exc:
            raise AgentFatal(f"cannot listen on {format_address(host, port)}: "
                             f"{exc.strerror or exc}") from None
        self.proxy_address = self.proxy_server.sockets[0].getsockname()[:2]
        log.info("proxy on %s (%s; PAC at /proxy.pac)", format_address(*self.proxy_address),
                 "SOCKS5 and HTTP, with a password" if self.proxy_auth else "SOCKS5, SOCKS4a and HTTP")
        if self.on_proxy_listening is not None:
            self.on_proxy_listening(self.proxy_address)

    async def run(self) -> None:
        """Serve until cancelled; raises AgentFatal when going on makes no sense."""
        lock = self.config.lock()
        network_changed = asyncio.Event()
        watcher = NetworkWatch.start(network_changed.set)
        backoff = Backoff(self.clock, self.rng)
        try:
            await self.start_proxy()
            self.started.set()
            if self.sharer is not None:
                await self.sharer.block_hub_addresses()
                self.tasks.every(STATUS_EVERY, self._share_tick, name="share status")
            self.tasks.every(CHANNEL_IDLE / 2, self.pool.close_idle, name="idle channels")
            self.tasks.every(RECEIPT_TICK, self.pool.receipts.tick, name="receipts")
            self.tasks.every(WATCH_EVERY, self.services.watch, name="services.json")
            while True:
                network_changed.clear()
                backoff.dialling()
                await self._connect_once()
                if self._replaced:
                    raise AgentFatal("another agent with this member's key connected to the hub and took "
                                     "the link, so this one stops: run one agent per member (a copy of "
                                     f"{self.config.folder} elsewhere?), or join again for a second device")
                await pause(backoff.delay(), network_changed)
        except AgentFatal as exc:
            self.error = str(exc)  # for `ladder status`
            raise
        finally:
            if watcher is not None:
                watcher.close()
            self.state = "stopped"
            if self.sharer is not None:
                self.sharer.sharing.save()
            self.write_status()
            if self.proxy_server is not None:
                self.proxy_server.close()
            if self.link is not None:
                self.link.close(ErrorCode.NO_ERROR, "agent stopping")
            if lock is not None:
                lock.close()
            await self.tasks.stop()

    async def wait_up(self, timeout: float) -> None:
        await asyncio.wait_for(self._up.wait(), timeout)

    async def _connect_once(self) -> None:
        self.state = "connecting"
        self.write_status()
        try:
            link, welcome = await dial(self.config.hub_address, self.config.fingerprint, self.config.key,
                                       self)
            if not isinstance(welcome, control.Welcome):
                link.close(ErrorCode.PROTOCOL_ERROR, "the first message is not a welcome")
                raise RemoteProtocolError("the hub's first message is not a welcome")
        except HubIdentityMismatch as exc:
            raise AgentFatal(str(exc)) from None
        except LinkRefused:
            raise AgentFatal(
                f"the hub {self.config.hub_name} did not accept this member's key "
                "(membership revoked, or this folder belongs to another hub)"
            ) from None
        except (TimeoutError, OSError, ConnectionError, RemoteProtocolError) as exc:
            self.error = (f"cannot reach the hub at {format_address(*self.config.hub_address)}: "
                          f"{exc or 'timeout'}")
            log.warning("%s", self.error)
            self.state = "down"
            self.write_status()
            return
        self.link, self.error = link, ""
        self._link_down = asyncio.get_running_loop().create_future()
        self.state, self.since = "up", time.time()
        log.info("link up to hub %s as %s", welcome.hub, welcome.member)
        self.pool.link = link
        self.pool.receipts.hub_id = welcome.hub_id
        self.roster.new_link()
        self.listing.new_link()
        if self.sharer is not None:
            self.sharer.link_up(link, welcome.address)
        self.services.link_up(link)
        self.write_status()
        self._up.set()
        reason = await self._link_down
        self._up.clear()
        self.link = self.pool.link = None
        self.services.link_down()
        if self.sharer is not None:
            self.sharer.link_down()
        self.directory.clear()
        self.state, self.error = "down", f"link lost: {reason}"
        self.write_status()

    def _share_tick(self) -> None:
        """While sharing and linked: the hub hears of caps, usage is saved, status.json stays current."""
        assert self.sharer is not None  # run() starts this tick for a sharer only
        if self.link is not None:
            self.sharer.tick()
            self.write_status()

    # ---------------------------------------------------------- LinkOwner

    def control_received(self, link: Link, message: control.ControlMessage) -> None:
        if isinstance(message, control.Directory):
            self.directory.update(message.exits)
            self._check_exit_choice()
        elif isinstance(message, control.Services):
            self.listing.take(message)
        elif isinstance(message, (control.Members, control.MemberJoined)):
            self.roster.take(message)
        elif isinstance(message, control.Balance):
            self.balance = message
        elif isinstance(message, control.Standing):
            if self.sharer is not None:
                self.sharer.sharing.set_balances({m.id: m.balance for m in message.members}, message.limit)
            return
        else:
            if isinstance(message, control.Replaced) and link is self.link:
                self._replaced = True
            return  # what else the hub says (or a newer hub's Unknown) changes nothing here
        self.write_status()

    def _check_exit_choice(self) -> None:
        """Say once, as soon as the directory comes, when --exit or a rule names no exit online."""
        warnings = {}
        for rule in self.router.rules:
            choice = rule.action.removeprefix("exit:")
            if choice in ("auto", rule.action) or choice in warnings or self.directory.candidates(choice):
                continue
            where = f"--exit {choice}" if rule.line == 0 else f"`{rule.text}` (line {rule.line} of the rules)"
            warnings[choice] = f"{where}: {self.directory.why_none(choice)}"
        warning = "; ".join(warnings.values())
        if warning and warning != self.exit_warning:
            log.warning("%s", warning)
        self.exit_warning = warning

    def link_closed(self, link: Link, reason: str) -> None:
        if self._link_down is not None and not self._link_down.done():
            self._link_down.set_result(reason)

    def stream_opened(self, link: Link, sid: int, payload: bytes, window: int) -> None:
        self.pool.stream_opened(link, sid, payload, window)

    def serve(self, link: Link, sid: int, request: bytes, member_id: str, noise_key: bytes) -> None:
        """A stream in another member's channel: a connection through this exit, or to a service."""
        if is_service_request(request):
            return self.services.serve(link, sid, member_id, noise_key, request)
        if self.sharer is None:
            link.refuse(sid, ErrorCode.FORBIDDEN, "this member does not share its connection")
            return
        self.sharer.serve(link, sid, request, member_id)

    # ------------------------------------------------------ the user's side

    def open(self, host: str, port: int, relay: ProxyConnection) -> None:
        """Open a stream to (host, port) for the proxy front, where the rules say."""
        if is_service_host(host):  # a network-only service: no rule applies
            return self.pool.open(host, port, relay)
        rule = self.router.route(host)
        if rule.action == "block":
            relay.on_refused(ErrorCode.FORBIDDEN, f"blocked by your rule `{rule.text}`")
            return
        if rule.action == "direct":
            self.tasks.spawn(self._open_direct(host, port, relay))
            return
        self.pool.open(host, port, relay, rule.action.removeprefix("exit:"))

    def associate(self, control: Control, here: str, client: str) -> SocksAssociation:
        """A SOCKS5 UDP association for the proxy front, through the exit --exit chooses (udp.py)."""
        return SocksAssociation(control, here, client,
                                lambda taker: self.pool.open_udp(taker, self.exit_choice),
                                self.pool.stream_done, self._udp_blocked)

    def _udp_blocked(self, host: str) -> bool:
        """Datagrams to a network-only name (services are TCP) or where a rule says block are dropped."""
        return is_service_host(host) or self.router.route(host).action == "block"

    async def _open_direct(self, host: str, port: int, relay: ProxyConnection) -> None:
        try:
            stream = await connect_direct(host, port, relay)
        except ConnectionRefusedError:
            return relay.on_refused(ErrorCode.TARGET_REFUSED, "refused the direct connection")
        except TimeoutError:
            return relay.on_refused(ErrorCode.TARGET_TIMEOUT, "no answer to the direct connection")
        except OSError as exc:
            return relay.on_refused(ErrorCode.UNREACHABLE, f"direct connection failed: {exc.strerror or exc}")
        if relay.done:
            stream.transport.abort()
            return
        relay.attach(stream)
        relay.on_accepted(b"", 0)

    def pac(self, reached: tuple[str, int]) -> str:
        """The PAC file for a client that reached the proxy at `reached` (a LAN address, or loopback)."""
        return self.router.pac(reached, socks5=self.proxy_auth is None)

    # --------------------------------------------------------------- status

    def status(self) -> dict:
        return {
            "pid": os.getpid(),
            "state": self.state,
            "since": self.since,
            "error": self.error,
            "hub": self.config.hub_name,
            "hub_address": format_address(*self.config.hub_address),
            "member": self.config.name,
            "member_id": self.config.id,
            "proxy": format_address(*self.proxy_address) if self.proxy_address else None,
            "sharing": self.country if self.sharer else None,
            "exit_choice": self.exit_choice,
            "exit_warning": self.exit_warning,
            "exits": [{"id": e.id, "name": e.name, "country": e.country,
                       "streams": self.directory.local_load.get(e.id, 0), "users": e.users,
                       "admits_me": self.directory.admits_me(e.id), "hub": e.hub or None, "hops": e.hops}
                      for e in self.directory.entries if e.id in self.directory.records],
            "refused_exits": self.directory.rejected,
            "services": {"listed": self.listing.status(), "refused": self.listing.rejected,
                         "members": self.roster.names, **self.services.status()},
            "share": self.sharer.sharing.status() if self.sharer else None,
            "credits": None if self.balance is None else {
                "balance": self.balance.balance, "earned": self.balance.earned, "spent": self.balance.spent,
                "month_earned": self.balance.month_earned, "month_spent": self.balance.month_spent,
                "limit": self.balance.limit, "receipts_refused": self.pool.receipts.refused},
        }

    def write_status(self) -> None:
        try:
            write_file(self.config.status_path, json.dumps(self.status(), indent=1).encode())
        except OSError as exc:
            log.warning("cannot write %s: %s", self.config.status_path, exc)
