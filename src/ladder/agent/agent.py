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

What the member's dashboard shows and changes is here too, as plain
methods and dicts (the page, in ladder.app, calls them in this event loop;
the agent never imports it): the front's connections and traffic
(`activity`, activity.py), the Connect / Disconnect switch (`set_connected`:
off closes the link with NO_ERROR and the run loop waits, while the proxy
keeps listening and refuses at once, saying why), the exit picker
(`choose_exit`, `exits`) and "where would this site go?" (`where`), sharing
switched and its policy applied at run time (`set_sharing`, `set_policy`,
`sharing_view`), and plain numbers for /metrics (`metrics`). What the
member chose there outlives a restart in settings.json (settings.py); a
flag given to `ladder up` wins for that run only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from ladder.config import (
    COUNTRY_CODES,
    ConfigError,
    MemberConfig,
    ProxyAuth,
    country_code,
    format_address,
    write_file,
)
from ladder.errors import UserError
from ladder.link.client import HubIdentityMismatch, LinkRefused, dial
from ladder.link.connection import Link
from ladder.protocol import control
from ladder.protocol.errors import REVOKED, ErrorCode, RemoteProtocolError
from ladder.protocol.messages import encode_target, is_service_request
from ladder.protocol.version import THIS, Speaks, mismatch
from ladder.tasks import Tasks

from .activity import Activity
from .credits import RECEIPT_TICK
from .direct import connect_direct
from .directory import Directory
from .front import ProxyConnection
from .names import ServiceListing, is_service_host
from .pool import CHANNEL_IDLE, ChannelPool
from .reconnect import Backoff, NetworkWatch, pause
from .roster import Roster
from .rules import Router, Rule, normalize_host
from .schedule import METERED_EVERY, nmcli_metered
from .services import WATCH_EVERY, Services
from .settings import Settings
from .sharer import Sharer
from .sharing import SharePolicy, Sharing
from .udp import Control, SocksAssociation

log = logging.getLogger(__name__)
STATUS_EVERY = 2.0
ACTIVITY_TICK = 1.0  # the traffic graph's resolution
# Hellos refused in a row before the agent believes the hub and stops: a hello that reached the door late
# (a path that stalled mid-dial) can be handed to the web face like a stranger's.
REFUSALS_BELIEVED = 3
DISCONNECTED = "Ladder is disconnected (the dashboard's switch)"


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
        share: bool | None = None,
        country: str | None = None,
        exit_choice: str | None = None,
        allow_private: bool = False,
        rules: Sequence[Rule] = (),
        policy: SharePolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        metered: Callable[[], Awaitable[bool | None]] = nmcli_metered,
    ):
        """`clock` (monotonic seconds) ages exit failures and drives rates and backoff;
        `rng` jitters the backoff; `on_proxy_listening` hears the proxy's address once it listens;
        `metered` says whether this machine's network is metered (None: cannot say), for a policy's
        pause_on_metered.

        `share` and `exit_choice` left None (no --share, no --exit given) take what the dashboard last
        chose (settings.json), else not sharing and "auto"; given, they win for this run without
        changing what is kept.
        """
        self.config = config
        self.settings = Settings.load(config.folder / "settings.json")
        self.proxy = proxy
        self.proxy_auth = proxy_auth
        self.on_proxy_listening = on_proxy_listening
        self.country = (country or self.settings.get("country") or "??").upper()
        self.exit_choice = exit_choice if exit_choice is not None else self.settings.get("exit", "auto")
        self.rules = list(rules)
        self.router = Router(self.rules, self.exit_choice)
        self.allow_private = allow_private
        self.policy = policy or SharePolicy()
        self.activity = Activity(time.time, config.folder / "traffic.json")
        self.activity.exit_name = self._exit_name
        self.connected_wanted: bool = self.settings.get("connected", True)
        self._switched_on = asyncio.Event()
        self._wake = asyncio.Event()  # the network changed, or the member switched Ladder on: dial now
        self.hub_handshakes = 0  # links made to the hub by this process
        self.metered_probe = metered
        self._own_address: object = None  # this machine's public address, as the hub last said
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
        if share or (share is None and self.settings.get("sharing", False) and self.country != "??"):
            self.sharer = self._new_sharer()
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
        self._refused = 0  # hellos refused in a row (one can be a race at the hub's door)
        self._revoked = False  # the hub closed the last link saying the membership was revoked
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
        watcher = NetworkWatch.start(self._wake.set)
        backoff = Backoff(self.clock, self.rng)
        try:
            await self.start_proxy()
            self.started.set()
            if self.sharer is not None:
                await self.sharer.block_hub_addresses()
            self.tasks.every(STATUS_EVERY, self._share_tick, name="share status")
            self.tasks.every(ACTIVITY_TICK, self.activity.tick, name="activity")
            self.tasks.every(METERED_EVERY, self.probe_metered, name="metered network")
            self.tasks.every(CHANNEL_IDLE / 2, self.pool.close_idle, name="idle channels")
            self.tasks.every(RECEIPT_TICK, self.pool.receipts.tick, name="receipts")
            self.tasks.every(WATCH_EVERY, self.services.watch, name="services.json")
            while True:
                if not self.connected_wanted:
                    await self._stay_off()
                self._wake.clear()
                backoff.dialling()
                await self._connect_once()
                if self._replaced:
                    raise AgentFatal("another agent with this member's key connected to the hub and took "
                                     "the link, so this one stops: run one agent per member (a copy of "
                                     f"{self.config.folder} elsewhere?), or join again for a second device")
                if self.connected_wanted:
                    await pause(backoff.delay(), self._wake)
        except AgentFatal as exc:
            self.error = str(exc)  # for `ladder status`
            raise
        finally:
            if watcher is not None:
                watcher.close()
            self.state = "stopped"
            if self.sharer is not None:
                self.sharer.sharing.save()
            self.activity.save()
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

    async def _stay_off(self) -> None:
        """Switched off: no link until the member switches Ladder on again; the proxy refuses meanwhile."""
        self.state, self.error = "off", ""
        self.write_status()
        log.info("switched off: the link stays closed until switched on")
        self._switched_on.clear()
        while not self.connected_wanted:
            await self._switched_on.wait()
            self._switched_on.clear()
        log.info("switched on: dialling the hub")

    def set_connected(self, on: bool) -> None:
        """The dashboard's switch: off closes the link and the proxy refuses new connections saying so;
        on dials at once. Remembered across restarts (settings.json)."""
        if on == self.connected_wanted:
            return
        self.connected_wanted = on
        self.settings.set(connected=on)
        if on:
            self._switched_on.set()
            self._wake.set()  # a reconnect wait ends now
        elif self.link is not None:
            self.link.close(ErrorCode.NO_ERROR, "switched off by the member")
        self.write_status()

    async def _connect_once(self) -> None:
        self.state = "connecting"
        self.write_status()
        try:
            link, welcome = await dial(self.config.hub_address, self.config.fingerprint, self.config.key,
                                       self)
            if not isinstance(welcome, control.Welcome):
                link.close(ErrorCode.PROTOCOL_ERROR, "the first message is not a welcome")
                raise RemoteProtocolError("the hub's first message is not a welcome")
            problem = mismatch(Speaks.said(welcome.oldest, welcome.protocol, welcome.release),
                               "this agent", f"the hub {self.config.hub_name}")
            if problem:
                link.close(ErrorCode.PROTOCOL_ERROR, problem)
                raise AgentFatal(problem)
            link.send_control(control.Version(THIS.oldest, THIS.newest, THIS.release))
        except HubIdentityMismatch as exc:
            raise AgentFatal(str(exc)) from None
        except LinkRefused:
            self._refused += 1
            if self._revoked or self._refused >= REFUSALS_BELIEVED:
                raise AgentFatal(
                    f"the hub {self.config.hub_name} did not accept this member's key "
                    "(membership revoked, or this folder belongs to another hub)"
                ) from None
            self.error = (f"the hub {self.config.hub_name} did not accept this member's key; trying again "
                          f"({self._refused} of {REFUSALS_BELIEVED})")
            log.warning("%s", self.error)
            self.state = "down"
            self.write_status()
            return
        except (TimeoutError, OSError, ConnectionError, RemoteProtocolError) as exc:
            self.error = (f"cannot reach the hub at {format_address(*self.config.hub_address)}: "
                          f"{exc or 'timeout'}")
            log.warning("%s", self.error)
            self.state = "down"
            self.write_status()
            return
        if not self.connected_wanted:  # switched off while the dial went on
            link.close(ErrorCode.NO_ERROR, "switched off by the member")
            return
        self.link, self.error, self._refused = link, "", 0
        self._link_down = asyncio.get_running_loop().create_future()
        self.state, self.since = "up", time.time()
        self.hub_handshakes += 1
        log.info("link up to hub %s as %s", welcome.hub, welcome.member)
        self.pool.link = link
        self.pool.receipts.hub_id = welcome.hub_id
        self._own_address = welcome.address
        self.roster.new_link()
        self.listing.new_link()
        if self.sharer is not None:
            self.sharer.link_up(link, welcome.address)
        self.services.link_up(link)
        self.write_status()
        self._up.set()
        reason = await self._link_down
        self._revoked = reason.endswith(REVOKED)
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
        if self.sharer is not None and self.link is not None:
            self.sharer.sharing.measure_rates()
            self.sharer.tick()
            self.write_status()

    def _new_sharer(self) -> Sharer:
        sharing = Sharing(self.policy, self.config.folder / "share-usage.json", self.clock)
        return Sharer(self.config, self.country, sharing, self.policy.guard(self.allow_private), self.pool,
                      self.roster)

    async def probe_metered(self) -> None:
        """Every METERED_EVERY seconds, for a sharer that pauses on a metered network: ask whether it is."""
        sharer = self.sharer
        if sharer is None or not sharer.sharing.policy.pause_on_metered:
            return
        metered = bool(await self.metered_probe())  # unknown counts as not metered
        if metered != sharer.sharing.metered:
            log.info("the network is %s: sharing %s", "metered" if metered else "not metered",
                     "pauses" if metered else "goes on")
        sharer.sharing.metered = metered
        if self.sharer is sharer and self.link is not None:
            sharer.tick()  # the hub hears of the pause now, not at the next status tick

    def set_sharing(self, on: bool, country: str | None = None) -> None:
        """The dashboard's sharing switch. On: share from `country` (else the last one; UserError without
        any); off: the hub lists this exit no more and new streams are refused, open ones may finish.
        Remembered across restarts (settings.json)."""
        if not on:
            if self.sharer is not None:
                self.sharer.withdraw("sharing is switched off")
                self.sharer.sharing.save()
                self.sharer = None
            self.settings.set(sharing=False)
            return self.write_status()
        given = country or (self.country if self.country != "??" else None)
        if given is None:
            raise UserError("sharing needs the country your exit is in (a two-letter code such as DE)")
        code = country_code(given)
        if self.sharer is not None and self.sharer.country == code:
            return
        self.country = code
        if self.sharer is not None:
            self.sharer.country = code  # a new record, signed on the link below
        else:
            self.sharer = self._new_sharer()
            self.tasks.spawn(self.sharer.block_hub_addresses(), name="hub addresses")
        if self.link is not None:
            self.sharer.link_up(self.link, self._own_address)
            self.sharer.resume()
        self.settings.set(sharing=True, country=code)
        self.write_status()

    def set_policy(self, table: dict) -> None:
        """Apply a [share] table now (over ladder.toml's [share]) and keep it for `ladder up` (settings.json).

        ConfigError (one line) for a bad table, and nothing changes."""
        if not isinstance(table, dict):
            raise ConfigError("the sharing policy must be a table of [share] keys")
        policy = SharePolicy.from_table({**self.config.share, **table})
        self.policy = policy
        self.settings.set(share=table)
        sharer = self.sharer
        if sharer is not None:
            sharer.sharing.set_policy(policy)
            fresh = policy.guard(self.allow_private)  # the hub's and our own addresses stay refused
            guard = sharer.guard
            guard.ports, guard.udp_ports = fresh.ports, fresh.udp_ports
            guard.deny_domains, guard.deny_networks = fresh.deny_domains, fresh.deny_networks
            if self.link is not None:
                sharer.link_up(self.link, self._own_address)  # its record names the members it serves
                sharer.resume()
        self.write_status()

    def sharing_view(self) -> dict:
        """What the sharing panel shows: on or off, the policy, who uses the exit now, bytes per member today
        and this month, credits earned."""
        sharer = self.sharer
        view: dict = {"on": sharer is not None, "country": self.country if self.country != "??" else None,
                      "paused": None, "policy": self.settings.get("share", dict(self.config.share)),
                      "users": [], "members": {},
                      "earned": self.balance.earned if self.balance else None,
                      "month_earned": self.balance.month_earned if self.balance else None}
        if sharer is None:
            return view
        sharing = sharer.sharing
        stopped = sharing.stopped()
        view["paused"] = stopped.reason if stopped else None
        names = {uid: user.name for uid, user in sharing.users.items()}
        view["users"] = [{"name": user.name, "streams": user.streams, "rate": sharing.user_rates.get(uid, 0)}
                         for uid, user in sharing.users.items() if user.streams]
        usage = sharing.usage
        for uid in {*usage["users"], *usage["month_users"]}:
            view["members"][names.get(uid) or self.roster.names.get(uid, uid)] = {
                "today": usage["users"].get(uid, 0), "month": usage["month_users"].get(uid, 0)}
        return view

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
        if not self.connected_wanted:
            self.activity.refused("disconnected")
            return relay.on_refused(ErrorCode.NO_ROUTE, DISCONNECTED)
        if is_service_host(host):  # a network-only service: no rule applies
            self._track(host, port, relay, "service")
            return self.pool.open(host, port, relay)
        rule = self.router.route(host)
        if rule.action == "block":
            self.activity.refused("blocked")
            relay.on_refused(ErrorCode.FORBIDDEN, f"blocked by your rule `{rule.text}`")
            return
        if rule.action == "direct":
            self._track(host, port, relay, "direct")
            self.tasks.spawn(self._open_direct(host, port, relay))
            return
        self._track(host, port, relay, "exit")  # "exit:<name>" once the pool picked one
        self.pool.open(host, port, relay, rule.action.removeprefix("exit:"))

    def _track(self, host: str, port: int, relay: ProxyConnection, route: str) -> None:
        """List the connection in the Activity; an HTTP client moving on to another host moves its entry."""
        tracked = relay.tracked
        if tracked is None:
            relay.tracked = self.activity.opened(host, port, route, relay.cut)
        else:
            tracked.host, tracked.port, tracked.route, tracked.exit_id = host, port, route, None

    def _exit_name(self, exit_id: str) -> str:
        for entry in self.directory.entries:
            if entry.id == exit_id:
                return entry.name or exit_id
        return self.roster.names.get(exit_id, exit_id)

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

    # ------------------------------------------------------ the dashboard's

    def choose_exit(self, choice: str) -> None:
        """The exit the next connection takes (the default rule and UDP): "auto", a country code, or an
        exit's member name or id. Remembered across restarts (settings.json); UserError if it names
        nothing known."""
        choice = choice.strip()
        if choice.upper() in COUNTRY_CODES:
            choice = choice.upper()
        elif choice != "auto" and not self._names_a_member(choice):
            online = self.directory.online()
            raise UserError(f"the exit {choice!r} is not auto, a country code, nor a member this hub "
                            f"lists (exits online: {online})")
        self.exit_choice = choice
        self.router = Router(self.rules, choice)
        self.settings.set(exit=choice)
        self._check_exit_choice()
        self.write_status()

    def _names_a_member(self, text: str) -> bool:
        return (any(text in (entry.id, entry.name) for entry in self.directory.entries)
                or text in self.roster.names or text.lower() in self.roster.names.values())

    def exits(self) -> list[dict]:
        """The verified exits of the directory, with what the picker shows of each; `chosen` is the one
        the next connection would take."""
        candidates = self.directory.candidates(self.exit_choice)
        next_id = candidates[0][1].id if candidates else None
        handshakes = self.pool.handshakes
        exits = []
        for entry in self.directory.entries:
            if entry.id not in self.directory.records or entry.id == self.config.id:
                continue
            latency = handshakes.get(entry.id)
            exits.append({
                "id": entry.id, "name": entry.name, "country": entry.country, "hub": entry.hub or None,
                "hops": entry.hops, "latency_ms": None if latency is None else round(latency * 1000, 1),
                "streams": self.directory.local_load.get(entry.id, 0), "users": entry.users,
                "admits_me": self.directory.admits_me(entry.id), "chosen": entry.id == next_id})
        return exits

    def where(self, host: str) -> dict:
        """Where a connection to `host` would go now: the deciding rule, and the exit that would carry it."""
        name = normalize_host(host)
        try:
            encode_target(name, 443)
        except ValueError as exc:
            raise UserError(f"{host!r} is not a host name or address: {exc}") from None
        if is_service_host(name):
            return {"host": name, "rule": "", "line": 0, "action": "service", "exit": None,
                    "reason": "a network-only name: it goes to its publisher, whatever the rules say"}
        rule = self.router.route(name)
        action, _, choice = rule.action.partition(":")
        where = f"line {rule.line} of the rules" if rule.line else "the default: everything through the exit"
        found = {"host": name, "rule": rule.text, "line": rule.line, "action": action, "exit": None,
                 "reason": where}
        if action == "exit":
            candidates = self.directory.candidates(choice)
            if candidates:
                entry, record = candidates[0]
                found["exit"] = entry.name or record.id
            else:
                found["reason"] = f"{where}; {self.directory.why_none(choice)}"
        return found

    def metrics(self) -> dict:
        """Plain numbers for /metrics: the link, channels and streams, the front's traffic, the directory,
        and what this exit serves."""
        activity = self.activity.counters()
        sharing = self.sharer.sharing if self.sharer is not None else None
        return {
            "link_up": int(self.link is not None),
            "link_since": self.since if self.link is not None else 0,
            "hub_handshakes": self.hub_handshakes,
            "channels_open": len(self.pool.channels) + sum(self.pool.visiting.values()),
            "streams_open": sum(channel.inner.stream_count for channel in self.pool.channels.values()),
            "bytes_up": activity["bytes_up"],
            "bytes_down": activity["bytes_down"],
            "connections_opened": activity["connections_opened"],
            "connections_open": activity["connections_open"],
            "refusals": activity["refusals"],
            "exits_listed": len(self.directory.records),
            "services_listed": len(self.listing.status()),
            "sharing_streams": sum(user.streams for user in sharing.users.values()) if sharing else 0,
            "sharing_bytes": sharing.served if sharing else 0,
        }

    # --------------------------------------------------------------- status

    def status(self) -> dict:
        return {
            "pid": os.getpid(),
            "state": self.state,
            "connected_wanted": self.connected_wanted,
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
