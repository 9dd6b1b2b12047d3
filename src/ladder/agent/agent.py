"""The agent role: one member's link to its hub, its proxy front and its exit.

The agent keeps one outbound link to the hub (this is why NAT does not
matter), dialling again whenever it drops: with jittered exponential
backoff capped at a few seconds (a hub back from an outage is used within
seconds), and at once when this machine's links, addresses or routes
change (on Linux a netlink route socket tells, for free: Wi-Fi joined, a
laptop woken, a cable plugged in). One agent runs per member: a second one
on the same folder stops at once (the folder's lock); one elsewhere with a
copy of the key takes over the link at the hub, which tells this one why,
so this one stops instead of taking the link back in a loop.

As a user it serves the proxy front and opens each stream towards an exit
chosen from the hub's directory (`--exit auto`, a country code or a member
name) among those whose signed policy serves this member, trying the next
candidate when one is gone or refuses this member. As a sharer it
announces itself, signing which members it serves, and serves the streams
the hub splices to it. Its state is written to status.json in the member's
folder for `ladder status`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import random
import socket
import time

from ladder.config import MemberConfig, format_address, write_file
from ladder.errors import UserError
from ladder.link.channel import Channel, StreamRef
from ladder.link.client import HubIdentityMismatch, dial
from ladder.link.connection import Endpoint, Link, LinkRefused
from ladder.protocol.channel import CHANNEL_REQUEST, Initiator, Responder
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.messages import (
    decode_route, decode_target, encode_target, is_service_request,
)
from ladder.protocol.noise import public_key_of
from ladder.protocol.records import ExitRecord, sign_exit_record

from .direct import connect_direct
from .directory import Directory
from .exit import TargetRefused, connect_target
from .front import ProxyConnection
from .relay import Relay
from .rules import Router, Rule
from .services import Services, is_service_host
from .sharing import ExitRelay, SharePolicy, Sharing

log = logging.getLogger(__name__)
OPEN_TIMEOUT = 30.0  # the exit gives up on a target after 10 s; this covers a silent hub
BACKOFF_MIN, BACKOFF_MAX = 0.5, 4.0
NETWORK_SETTLE = 0.5  # after a network change, dial this soon: addresses and routes come in bursts
RETRYABLE = {ErrorCode.NO_ROUTE, ErrorCode.BUSY, ErrorCode.LINK_LOST, ErrorCode.TARGET_TIMEOUT}
STATUS_EVERY = 2.0
# Channels one member may hold to this agent at once: it needs one, a few
# while its link or ours comes back; more would let it take the streams of
# our hub link (and the memory of their channels) from the others.
CHANNELS_PER_MEMBER = 8
CHANNEL_IDLE = 30.0  # a channel without streams this long is closed (it costs nothing to open again)
MEMBERS_ONLY = "listed members only"  # in an exit's refusal when its policy does not serve this member


class AgentFatal(UserError):
    """The agent cannot go on (wrong hub key, membership refused, port in use)."""


class Agent:
    def __init__(
        self,
        config: MemberConfig,
        *,
        proxy: tuple[str, int] | None = None,
        share: bool = False,
        country: str | None = None,
        exit_choice: str = "auto",
        allow_private: bool = False,
        rules: list[Rule] = (),
        policy: SharePolicy | None = None,
    ):
        self.config = config
        self.proxy = proxy
        self.share = share
        self.country = (country or "??").upper()
        self.exit_choice = exit_choice
        self.router = Router(list(rules), exit_choice)
        policy = policy or SharePolicy()
        self.guard = policy.guard(allow_private)
        self.sharing = Sharing(policy, config.folder / "share-usage.json") if share else None
        self.noise_private = config.noise_key()
        self.directory = Directory(config.pins_path, config.id, config.name)
        self.services = Services(self)  # published here, and others' by name
        self.channels: dict[tuple[str, bytes], Channel] = {}  # (member id, Noise key) → our channel to it
        self.visiting: dict[str, int] = {}  # member id → channels it holds to us
        self.link: Link | None = None
        self.state = "starting"
        self.error = ""
        self.since = time.time()
        self.proxy_server: asyncio.AbstractServer | None = None
        self.proxy_address: tuple[str, int] | None = None
        self._tasks: set[asyncio.Task] = set()
        self._link_down: asyncio.Future | None = None
        self._up = asyncio.Event()
        self._network_changed = asyncio.Event()
        self._replaced = False  # the hub said another agent with our key took the link
        self.exit_warning = ""  # which --exit or rule matches no exit online, once the directory came

    # -------------------------------------------------------------- running

    async def start_proxy(self) -> None:
        if self.proxy is None or self.proxy_server is not None:
            return
        loop = asyncio.get_running_loop()
        host, port = self.proxy
        try:
            self.proxy_server = await loop.create_server(
                lambda: ProxyConnection(self.open, self._stream_done, self.pac), host, port, backlog=1024
            )
        except OSError as exc:
            raise AgentFatal(f"cannot listen on {format_address(host, port)}: {exc.strerror or exc}") from None
        self.proxy_address = self.proxy_server.sockets[0].getsockname()[:2]
        log.info("proxy on %s (SOCKS5, SOCKS4a and HTTP; PAC at /proxy.pac)", format_address(*self.proxy_address))

    async def run(self) -> None:
        """Serve until cancelled; raises AgentFatal when going on makes no sense."""
        lock = self.config.lock()
        watcher = NetworkWatch.start(self._network_changed.set)
        try:
            await self.start_proxy()
            await self._block_hub_addresses()
            backoff = BACKOFF_MIN
            while True:
                started = time.monotonic()
                self._network_changed.clear()
                await self._connect_once()
                if self._replaced:
                    raise AgentFatal("another agent with this member's key connected to the hub and took "
                                     "the link, so this one stops: run one agent per member (a copy of "
                                     f"{self.config.folder} elsewhere?), or join again for a second device")
                if time.monotonic() - started > 10:
                    backoff = BACKOFF_MIN
                await self._pause(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, BACKOFF_MAX)
        except AgentFatal as exc:
            self.error = str(exc)  # for `ladder status`
            raise
        finally:
            if watcher is not None:
                watcher.close()
            self.state = "stopped"
            if self.sharing is not None:
                self.sharing.save()
            self.write_status()
            if self.proxy_server is not None:
                self.proxy_server.close()
            if self.link is not None:
                self.link.close(ErrorCode.NO_ERROR, "agent stopping")
            if lock is not None:
                lock.close()

    async def _pause(self, delay: float) -> None:
        """Wait `delay` before dialling again, or only a moment if the network changes meanwhile."""
        log.info("reconnecting in %.1f s", delay)
        try:
            await asyncio.wait_for(self._network_changed.wait(), max(0.0, delay - NETWORK_SETTLE))
        except asyncio.TimeoutError:
            pass
        else:
            log.info("the network changed: dialling the hub now")
        await asyncio.sleep(min(delay, NETWORK_SETTLE))

    async def wait_up(self, timeout: float) -> None:
        await asyncio.wait_for(self._up.wait(), timeout)

    async def _connect_once(self) -> None:
        self.state = "connecting"
        self.write_status()
        try:
            link, welcome = await dial(self.config.hub_address, self.config.fingerprint, self.config.key, self)
        except HubIdentityMismatch as exc:
            raise AgentFatal(str(exc)) from None
        except LinkRefused:
            raise AgentFatal(
                f"the hub {self.config.hub_name} did not accept this member's key "
                "(membership revoked, or this folder belongs to another hub)"
            ) from None
        except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
            self.error = f"cannot reach the hub at {format_address(*self.config.hub_address)}: {exc or 'timeout'}"
            log.warning("%s", self.error)
            self.state = "down"
            self.write_status()
            return
        self.link, self.error = link, ""
        self._link_down = asyncio.get_running_loop().create_future()
        self.state, self.since = "up", time.time()
        log.info("link up to hub %s as %s", welcome.get("hub"), welcome.get("member"))
        self._note_own_address(welcome.get("address"))
        if self.share:
            record = sign_exit_record(self.config.key, self.country, public_key_of(self.noise_private),
                                      int(time.time()), self.sharing.policy.members)
            link.send_control({"type": "share", **record})
        self.services.link_up(link)
        self.write_status()
        self._up.set()
        loop = asyncio.get_running_loop()
        tickers = [loop.create_task(self._close_idle_channels(link))]
        if self.sharing:
            tickers.append(loop.create_task(self._share_ticker(link)))
        reason = await self._link_down
        for ticker in tickers:
            ticker.cancel()
        self._up.clear()
        self.link = None
        self.directory.clear()
        self.state, self.error = "down", f"link lost: {reason}"
        self.write_status()

    async def _close_idle_channels(self, link: Link) -> None:
        """Close our channels that carried no stream for CHANNEL_IDLE seconds.

        Then the hub's count of members on an exit is of members using it
        lately, and no exit holds a channel for a member gone quiet. Opening
        one again costs nothing extra: a connection's first message carries
        the handshake.
        """
        idle: set[tuple[str, bytes]] = set()
        while not link.closed:
            await asyncio.sleep(CHANNEL_IDLE / 2)
            quiet = {key for key, channel in self.channels.items() if channel.inner.stream_count == 0}
            for key in quiet & idle:  # idle at two looks in a row
                self.channels[key].inner.close(ErrorCode.NO_ERROR, "idle")
            idle = quiet - idle

    async def _share_ticker(self, link: Link) -> None:
        """While sharing: keep status.json current and tell the hub when a cap is reached or lifted."""
        capped = None
        while not link.closed:
            now_capped = self.sharing.capped()
            if now_capped != capped:
                capped = now_capped
                link.send_control({"type": "share-status", "accepting": capped is None, "reason": capped or ""})
            self.sharing.save()
            self.write_status()
            await asyncio.sleep(STATUS_EVERY)

    async def _block_hub_addresses(self) -> None:
        """The exit never connects to the hub's own addresses."""
        host, port = self.config.hub_address
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return
        for info in infos:
            self.guard.hub.add((ipaddress.ip_address(info[4][0].split("%")[0]), port))

    # ---------------------------------------------------------- LinkOwner

    def control_received(self, link: Link, message: dict) -> None:
        if self.services.control_received(message):
            self.write_status()
        elif message["type"] == "directory":
            self.directory.update(message.get("exits") or [])
            self._check_exit_choice()
            self.write_status()
        elif message["type"] == "replaced" and link is self.link:
            self._replaced = True

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
        """Another member opens a channel to us through the hub (to this exit, or to a service)."""
        try:
            member_id, message1 = decode_route(payload)
            if self.visiting.get(member_id, 0) >= CHANNELS_PER_MEMBER:  # before any work for it
                link.refuse(sid, ErrorCode.MEMBER_LIMIT,
                            f"you already hold {CHANNELS_PER_MEMBER} channels to this member")
                return
            responder = Responder(self.noise_private, member_id, self.config.id)
            request = responder.read_first(message1)
        except RemoteProtocolError as exc:  # ChannelError included
            link.refuse(sid, exc.code, str(exc))
            return
        if not request.startswith(CHANNEL_REQUEST):
            link.refuse(sid, ErrorCode.PROTOCOL_ERROR, "not a channel request")
            return
        message2, sealed = responder.answer()
        self.visiting[member_id] = self.visiting.get(member_id, 0) + 1  # until its nested link closes
        visitor = _Visitor(self, member_id, responder.opener_key)
        Channel.answer(link, sid, message2, sealed, request[len(CHANNEL_REQUEST):], visitor,
                       f"channel from {member_id}")

    def serve(self, link: Link, sid: int, request: bytes, member_id: str, noise_key: bytes) -> None:
        """A stream in another member's channel: a connection through this exit, or to a service."""
        if is_service_request(request):
            return self.services.serve(link, sid, member_id, noise_key, request)
        if not self.share:
            link.refuse(sid, ErrorCode.FORBIDDEN, "this member does not share its connection")
            return
        try:
            host, port = decode_target(request)
        except RemoteProtocolError as exc:
            link.refuse(sid, exc.code, str(exc))
            return
        user_name = self.services.listing.members.get(member_id, member_id)  # names come with the services
        why = self.sharing.admit(member_id, user_name)
        if why is not None:
            link.refuse(sid, ErrorCode.FORBIDDEN if "cap" not in why else ErrorCode.BUSY, why)
            return
        relay = ExitRelay(self.sharing, member_id, user_name)
        link.claim(sid, relay)  # early data and a withdrawal reach it while it waits for a slot

        def start() -> None:
            self.answer_when_connected(link, sid, relay, connect_target(host, port, self.guard, lambda: relay),
                                       "the stream was cancelled while the exit connected")

        def refuse(why: str) -> None:
            if link.release(sid):
                link.refuse(sid, ErrorCode.BUSY, why)

        self.sharing.take_slot(relay, start, refuse)

    def answer_when_connected(self, link: Link, sid: int, relay: Relay, connecting, withdrawn: str) -> None:
        """Accept stream `sid` for `relay` once `connecting` reached the target.

        `connecting` connects the relay and raises TargetRefused with a reason
        for the opener; `withdrawn` is the refusal if the opener withdrew while
        it connected. The exit and the services both answer so.
        """
        link.claim(sid, relay)  # a reset while we connect reaches the relay
        self._spawn(self._answer(link, sid, relay, connecting, withdrawn))

    async def _answer(self, link: Link, sid: int, relay: Relay, connecting, withdrawn: str) -> None:
        try:
            await connecting
        except TargetRefused as exc:
            if link.release(sid):
                link.refuse(sid, exc.code, str(exc))
            relay.stream_gone()
            return
        if relay.done or link.closed:
            relay.transport.abort()
            relay.stream_gone()
            if link.release(sid):
                link.refuse(sid, ErrorCode.NO_ROUTE, withdrawn)
            return
        link.accept(sid, relay)
        relay.attach(StreamRef(link, sid))

    # ------------------------------------------------------ the user's side

    def open(self, host: str, port: int, relay: ProxyConnection) -> None:
        """Open a stream to (host, port) for the proxy front, where the rules say."""
        if is_service_host(host):  # a network-only service: never DNS, never an exit
            return self.services.open(host, port, relay)
        rule = self.router.route(host)
        if rule.action == "block":
            relay.on_refused(ErrorCode.FORBIDDEN, f"blocked by your rule `{rule.text}`")
            return
        if rule.action == "direct":
            self._spawn(self._open_direct(host, port, relay))
            return
        choice = rule.action.removeprefix("exit:")
        if self.link is None:
            relay.on_refused(ErrorCode.NO_ROUTE, "not connected to the hub")
            return
        candidates = [record for _, record in self.directory.candidates(choice)]
        if not candidates:
            relay.on_refused(ErrorCode.NO_ROUTE, self.directory.why_none(choice))
            return
        _Opening(self, encode_target(host, port), relay, candidates).try_next()

    async def _open_direct(self, host: str, port: int, relay: ProxyConnection) -> None:
        try:
            stream = await connect_direct(host, port, relay)
        except ConnectionRefusedError:
            return relay.on_refused(ErrorCode.TARGET_REFUSED, "refused the direct connection")
        except asyncio.TimeoutError:
            return relay.on_refused(ErrorCode.TARGET_TIMEOUT, "no answer to the direct connection")
        except OSError as exc:
            return relay.on_refused(ErrorCode.UNREACHABLE, f"direct connection failed: {exc.strerror or exc}")
        if relay.done:
            stream.transport.abort()
            return
        relay.attach(stream)
        relay.on_accepted(b"", 0)

    def channel_to(self, record: ExitRecord) -> Channel | None:
        """The channel to the member of `record` (an exit or a publisher): open, or opened now."""
        key = (record.id, record.noise_key)
        channel = self.channels.get(key)
        if channel is not None:
            return channel
        link = self.link
        if link is None or link.closed:
            return None
        initiator = Initiator(self.noise_private, record.noise_key, self.config.id, record.id)
        channel = self.channels[key] = Channel.dial(link, initiator, record.id, f"channel to {record.id}")
        channel.on_ready = lambda: self.directory.pin(record)
        channel.on_close = lambda gone: self.channels.pop(key, None) if self.channels.get(key) is gone else None
        return channel

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _note_own_address(self, address) -> None:
        """The exit never connects to the sharer's own public address (as the hub sees it)."""
        try:
            self.guard.own = {ipaddress.ip_address(str(address))}
        except ValueError:
            pass

    def pac(self) -> str:
        return self.router.pac(self.proxy_address)

    def _stream_done(self, conn: ProxyConnection) -> None:
        if conn.exit_id is not None:
            self.directory.opened(conn.exit_id, -1)
            conn.exit_id = None

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
            "sharing": self.country if self.share else None,
            "exit_choice": self.exit_choice,
            "exit_warning": self.exit_warning,
            "exits": [{"id": e["id"], "name": e.get("name"), "country": e.get("country"),
                       "streams": self.directory.local_load.get(e["id"], 0), "users": e.get("users"),
                       "admits_me": self.directory.admits_me(e["id"])}
                      for e in self.directory.entries if e["id"] in self.directory.records],
            "refused_exits": self.directory.rejected,
            "services": self.services.status(),
            "share": self.sharing.status() if self.sharing else None,
        }

    def write_status(self) -> None:
        try:
            write_file(self.config.status_path, json.dumps(self.status(), indent=1).encode())
        except OSError as exc:
            log.warning("cannot write %s: %s", self.config.status_path, exc)


class _Visitor:
    """Owner of the nested link of a channel another member opened to us."""

    def __init__(self, agent: Agent, member_id: str, noise_key: bytes):
        self.agent, self.member_id, self.noise_key = agent, member_id, noise_key

    def stream_opened(self, link: Link, sid: int, payload: bytes, window: int) -> None:
        self.agent.serve(link, sid, payload, self.member_id, self.noise_key)

    def control_received(self, link: Link, message: dict) -> None:
        pass  # channels carry streams only

    def link_closed(self, link: Link, reason: str) -> None:
        visiting = self.agent.visiting
        visiting[self.member_id] -= 1
        if not visiting[self.member_id]:
            del visiting[self.member_id]


class _Opening(Endpoint):
    """A stream being opened for the front, moving on to the next exit if one is gone.

    Until the answer it is also the relay's stream: what the client sends
    meanwhile leaves at once as early data (so a request travels with the
    OPEN), and a copy is kept to send again through the next exit.
    """

    def __init__(self, agent: Agent, request: bytes, relay: ProxyConnection, candidates: list[ExitRecord]):
        """`request` opens the stream inside the channel; each candidate needs .id and .noise_key."""
        self.agent = agent
        self.request = request
        self.relay = relay
        self.candidates = candidates
        self.exit: ExitRecord | None = None
        self.link: Link | None = None
        self.sid = 0
        self.timer: asyncio.TimerHandle | None = None
        self.sent: list[bytes] = []  # early data, for the next exit
        self.ended = False

    def try_next(self) -> None:
        self.exit = self.candidates.pop(0)
        channel = self.agent.channel_to(self.exit)
        if channel is None:
            return self._give_up(ErrorCode.NO_ROUTE, "not connected to the hub")
        if not channel.inner.can_open():
            return self._give_up(ErrorCode.BUSY, "too many connections are opening to that exit at once")
        self.link = link = channel.inner
        self.sid = link.open_stream(self.request, self)
        for data in self.sent:
            link.send(self.sid, data)
        if self.ended:
            link.end(self.sid)
        self.started = link.loop.time()
        self.timer = link.loop.call_later(OPEN_TIMEOUT, self._timeout)
        if self.relay.stream is None:
            self.relay.attach(self)

    # The relay's stream until the answer:

    def send(self, data: bytes | memoryview) -> None:
        data = bytes(data)
        self.sent.append(data)
        self.link.send(self.sid, data)

    def end(self) -> None:
        self.ended = True
        self.link.end(self.sid)

    def reset(self, code: int, reason: str = "") -> None:
        self.timer.cancel()
        self.link.reset(self.sid, code, reason)

    def acknowledge(self, nbytes: int) -> None:
        pass  # nothing arrives before the answer

    def pending(self) -> int:
        return self.link.pending(self.sid)

    # The answer:

    def on_accepted(self, payload: bytes, window: int) -> None:
        self.timer.cancel()
        self.sent = []
        relay, link = self.relay, self.link
        if relay.done:
            link.reset(self.sid, ErrorCode.CANCEL, "the client went away")
            return
        directory = self.agent.directory
        directory.observe(self.exit.id, link.loop.time() - self.started)
        directory.opened(self.exit.id, +1)
        relay.exit_id = self.exit.id
        link.claim(self.sid, relay)
        relay.answered(StreamRef(link, self.sid))
        relay.on_accepted(b"", window)

    def on_refused(self, code: int, reason: str) -> None:
        self.timer.cancel()
        directory = self.agent.directory
        refused_me = code == ErrorCode.FORBIDDEN and MEMBERS_ONLY in reason
        if refused_me:
            directory.refused(self.exit.id)
        elif code in RETRYABLE:
            directory.failed(self.exit.id)
        if (code in RETRYABLE or refused_me) and self.candidates and not self.relay.done:
            log.info("exit %s unavailable (%s); trying the next one", self.exit.id, reason)
            return self.try_next()
        self._give_up(code, reason)

    on_reset = on_refused  # a link lost while opening counts as a refusal

    def _timeout(self) -> None:
        self.link.reset(self.sid, ErrorCode.CANCEL, "open timed out")
        self._give_up(ErrorCode.TARGET_TIMEOUT, f"no answer from the exit within {OPEN_TIMEOUT:g} s")

    def _give_up(self, code: int, reason: str) -> None:
        if not self.relay.done:
            self.relay.on_refused(code, reason)


# Netlink route multicast groups (linux/rtnetlink.h): links, IPv4/IPv6 addresses and routes.
_RTMGRP = 0x1 | 0x10 | 0x40 | 0x100 | 0x400


class NetworkWatch:
    """Calls `on_change` whenever this machine's links, addresses or routes change (Linux).

    A netlink route socket is the kernel's own notice (what `ip monitor`
    reads): no polling, nothing sent. Where there is none, `start` returns
    None and the capped backoff alone brings the link back.
    """

    def __init__(self, sock: socket.socket, on_change):
        self.sock, self.on_change = sock, on_change
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    def start(cls, on_change) -> NetworkWatch | None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
        except (AttributeError, OSError):
            return None
        try:
            sock.bind((0, _RTMGRP))
        except OSError:
            sock.close()
            return None
        return cls(sock, on_change)

    def _readable(self) -> None:
        try:
            while self.sock.recv(65536):
                pass
        except OSError:  # EAGAIN: all read; ENOBUFS: more changes than the buffer held, still a change
            pass
        self.on_change()

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
