"""The hub acting as the agent of devices that run none: phones and TVs with a stock Trojan app.

Theory of operation
-------------------
The doorway hands `Devices.admit` a Trojan password line's digits; the
store finds the device whose secret they are (hubdb.py: a keyed hash,
confirmed in constant time), and the connection becomes that device's.
A device with connections has a `DeviceSession`: the agent the hub runs
for it, made of the agent's own rooms under the device's identity (keys
the hub holds on the owner's behalf) — a `ChannelPool` with a `Directory`
and a `ServiceListing` fed by the control messages the hub sends, and the
device's rules. Its hub link is one end of an in-memory link pair
(link/memory.py) whose other end is the device's `DevicePort`, routed and
switched like a member's port; so a device's channel to an exit is
end-to-end encrypted from the device identity to the exit, and the switch
sees it as any other. Exits see the device as `owner/name` (the roster),
and a sharer's policy by member applies to its owner.

What the device trusts: the hub reads its Trojan requests, so it knows
which sites the device visits, as any Trojan or v2ray server does. Members
with the agent keep what they have: the hub sees neither their sites nor
their bytes.

Each Trojan connection is a `TrojanConnection` on the TLS transport: its
request (CONNECT or UDP ASSOCIATE), then a relay with backpressure both
ways (agent/relay.py), its bytes counted to the device. A session closes
DEVICE_IDLE seconds after its last connection ended. Usage is saved every
USAGE_SAVE seconds and on stop; a day's cap refuses new connections; a
rate is one token bucket for both directions of all the device's
connections. A revoked or expired device (noticed by the hub's store poll)
is cut: every connection and its session at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding

from ladder.agent.directory import Directory
from ladder.agent.names import ServiceListing, is_service_host
from ladder.agent.pool import ChannelPool
from ladder.agent.relay import MeteredRelay, abort_with_rst
from ladder.agent.roster import Roster
from ladder.agent.rules import PRESETS, Router, load_rules
from ladder.agent.sharing import TokenBucket
from ladder.config import ConfigError, HubConfig
from ladder.link.channel import CHANNEL_MAX_WINDOW
from ladder.link.connection import Link
from ladder.link.memory import link_pair
from ladder.protocol import control
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.trojan import CONNECT, Request, parse_request
from ladder.store.hubdb import Device, HubStore, StoreError, device_password, utc_day
from ladder.tasks import Tasks

from .ports import DevicePort, MemberPortOwner
from .profiles import DeviceProfile, share_link, subscription, subscription_format, userinfo_header

log = logging.getLogger(__name__)
DEVICE_IDLE = 60.0  # a session without connections this long is closed (its port and pool with it)
USAGE_SAVE = 5.0  # usage and last seen go to the store this often, and on stop
# TLS connections one device may hold at once (a Trojan app opens one per connection it proxies: a
# phone in global mode holds a few hundred); each costs the hub a TLS transport and a file descriptor.
CONNECTIONS_PER_DEVICE = 1024
REQUEST_TIMEOUT = 60.0  # from the password line to the whole request, as the web face's head timeout
# What a device's streams start with and may grow to. The hub holds what arrives for a device until
# its TLS connection takes it: a member's 2 MiB to start would be 1 GB for 500 downloads a device
# never reads. A stream whose reader keeps up doubles its window every half second (mux autotuning).
DEVICE_STREAM_WINDOW = 256 * 1024
DEVICE_STREAM_MAX_WINDOW = 4 * 1024 * 1024
# What a device's socket takes at once counts as read (agent/relay.py): its credit goes back and the
# window may grow for it. Left to autotune, the kernel took about 1 MiB towards a device that reads
# nothing, so its windows grew to the maximum, and 500 such downloads put the whole machine into TCP
# memory pressure (net.ipv4.tcp_mem), slowing every member. So the kernel keeps at most DEVICE_UNSENT
# not yet on the wire (TCP_NOTSENT_LOWAT: what is in flight does not count, so a long fast path is
# not slowed), and the TLS transport pauses its writer at DEVICE_WRITE_BUFFER (uvloop's: 512 KiB).
DEVICE_UNSENT = 128 * 1024
DEVICE_WRITE_BUFFER = 64 * 1024


class DeviceSession:
    """One device with connections: the hub's agent for it, its port, its connections and its meter."""

    def __init__(self, device: Device, port_owner: MemberPortOwner, pins_folder: Path, tasks: Tasks,
                 hub_id: str, clock: Callable[[], float] = time.monotonic):
        """`hub_id` is named in the receipts the hub signs for the device."""
        self.device = device
        self.clock = clock
        self.link = Link(self, client=True, label=f"agent of device {device.label}",
                         max_window=CHANNEL_MAX_WINDOW)
        hub_end = Link(None, client=False, label=f"device {device.label}")
        self.port = DevicePort(device, hub_end, port_owner)
        hub_end.owner = self.port
        link_pair(self.link, hub_end)
        self.roster = Roster()
        # Exit records name members: the device is served as its owner is.
        self.directory = Directory(pins_folder / f"{device.id}.json", device.id, device.owner_name, clock)
        self.listing = ServiceListing(self.directory.pins, device.id, self.roster)
        self.pool = ChannelPool(Ed25519PrivateKey.from_private_bytes(device.signing_key), device.noise_key,
                                self.directory, self.listing, tasks, self._serve,
                                windows=(DEVICE_STREAM_WINDOW, DEVICE_STREAM_MAX_WINDOW))
        self.pool.link = self.link
        self.pool.receipts.hub_id = hub_id
        self.router = Router(_rules(device), device.exit)
        self.bucket = TokenBucket(device.rate, clock) if device.rate else None
        self.connections: set[TrojanConnection] = set()
        self.idle_since = clock()
        self.day = utc_day(time.time())
        self.day_bytes = device.bytes_on(self.day)
        self.unsaved = 0  # bytes counted since the last save
        self.closed = False
        self._cutting = False  # the cap's cut is on its way
        self._until_directory: list[Callable[[], None]] | None = []  # None once the first one came

    # ------------------------------------------------------------ routing

    def when_directory(self, then: Callable[[], None]) -> None:
        """Call `then` once the hub's directory has reached the session (now, if it has)."""
        if self._until_directory is None:
            return then()
        self._until_directory.append(then)

    def exit_for(self, host: str) -> str | None:
        """Where the device's rules send `host`: an exit choice, or None when a rule blocks it.

        `direct` cannot mean the hub's own connection (the device asked
        for the network, and the hub is no exit): it goes through the
        owner's own exit when the owner shares, as the owner's own agent
        would connect it from the owner's machine; else the device's exit.
        """
        if is_service_host(host):  # a network-only service: the pool takes it to its publisher
            return "auto"
        rule = self.router.route(host)
        if rule.action == "block":
            return None
        if rule.action == "direct":
            return self.device.owner if self.directory.candidates(self.device.owner) else self.device.exit
        return rule.action.removeprefix("exit:")

    # ------------------------------------------------------------ metering

    def capped(self) -> bool:
        """Whether the device's daily cap stops new connections now."""
        self._roll()
        return self.device.daily_cap is not None and self.day_bytes >= self.device.daily_cap

    def carried(self, nbytes: int) -> float:
        """Count `nbytes` either way; how long the rate says to wait before carrying more.

        Reaching the daily cap cuts the connections still open (soon, not
        inside the read that counted the bytes).
        """
        self._roll()
        self.day_bytes += nbytes
        self.unsaved += nbytes
        if self.capped() and self.connections and not self._cutting:
            self._cutting = True
            asyncio.get_running_loop().call_soon(self._cap_reached)
        return self.bucket.take(nbytes) if self.bucket is not None else 0.0

    def _cap_reached(self) -> None:
        self._cutting = False
        log.info("device %s: its daily cap is reached: cutting its connections", self.device.label)
        for connection in list(self.connections):
            connection.cut()

    def _roll(self) -> None:
        today = utc_day(time.time())
        if today != self.day:
            self.day, self.day_bytes = today, 0

    def save(self, store: HubStore) -> None:
        if self.unsaved:
            store.add_device_usage(self.device.id, self.unsaved)
            self.unsaved = 0

    # ------------------------------------------------------------ lifetime

    def connection_done(self, connection: TrojanConnection) -> None:
        self.connections.discard(connection)
        if not self.connections:
            self.idle_since = self.clock()

    def idle(self) -> bool:
        return not self.connections and self.clock() - self.idle_since >= DEVICE_IDLE

    def close(self, reason: str) -> None:
        """Cut every connection and drop the session's link: the port goes with it, and the exits'
        ends of its channels are reset."""
        self.closed = True
        for connection in list(self.connections):
            connection.cut()
        self.link.abort(reason)

    # --------------------------------------------- LinkOwner (the agent's link)

    def control_received(self, link: Link, message: control.ControlMessage) -> None:
        if isinstance(message, control.Directory):
            self.directory.update(message.exits)
            waiting, self._until_directory = self._until_directory or [], None
            for then in waiting:
                then()
        elif isinstance(message, control.Services):
            self.listing.take(message)
        elif isinstance(message, (control.Members, control.MemberJoined)):
            self.roster.take(message)

    def stream_opened(self, link: Link, sid: int, payload: bytes, window: int) -> None:
        link.refuse(sid, ErrorCode.FORBIDDEN, "a device is not a destination")

    def link_closed(self, link: Link, reason: str) -> None:
        if not self.closed:
            self.close(reason)

    def _serve(self, link: Link, sid: int, request: bytes, member_id: str, noise_key: bytes) -> None:
        link.refuse(sid, ErrorCode.FORBIDDEN, "a device is not a destination")


def _rules(device: Device) -> list:
    """The device's rules: a preset's, or its own text; an unreadable text routes all through its exit."""
    if device.rules is None:
        return []
    try:
        return load_rules(device.rules if device.rules in PRESETS else device.rules.splitlines())
    except ConfigError as exc:  # checked when added (add_device); a preset may have changed since
        log.warning("device %s: its rules do not parse (%s); everything goes through its exit",
                    device.label, exc)
        return []


class TrojanConnection(MeteredRelay):
    """One connection of a device's app: its Trojan request, then a relay through the device's pool."""

    def __init__(self, session: DeviceSession):
        super().__init__()
        self.session = session
        self.exit_id: str | None = None  # set by the pool while an exit carries it
        self.request = bytearray()  # the request, until it is whole
        self.requested = False
        self._request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        try:
            if sock is not None and hasattr(socket, "TCP_NOTSENT_LOWAT"):  # Linux and macOS have it
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, DEVICE_UNSENT)
        except (OSError, ValueError):  # gone already (uvloop's socket then has no descriptor)
            pass
        self.transport.set_write_buffer_limits(high=DEVICE_WRITE_BUFFER)
        self.session.connections.add(self)
        self._request_timer = asyncio.get_running_loop().call_later(REQUEST_TIMEOUT, self.cut)

    def cut(self) -> None:
        """End the connection at once (a revoked device, a malformed or late request)."""
        if not self.done:
            self.done = True
            if self.stream is not None:
                self.stream.reset(ErrorCode.CANCEL, "the device's connection was cut")
            abort_with_rst(self.transport)
            self.stream_gone()

    # -- the device's side --------------------------------------------------

    def data_received(self, data: bytes | memoryview) -> None:
        if self.requested:
            return super().data_received(data)
        self.request += data
        try:
            parsed = parse_request(self.request)
        except RemoteProtocolError as exc:
            log.info("device %s: %s", self.session.device.label, exc)
            return self.cut()
        if parsed is None:
            return
        request, size = parsed
        self.requested = True
        assert self._request_timer is not None  # armed on connection_made
        self._request_timer.cancel()
        rest, self.request = bytes(self.request[size:]), bytearray()
        session = self.session
        if session.capped():
            log.info("device %s: its daily cap is reached", session.device.label)
            return self.cut()
        if rest:
            super().data_received(rest)  # no stream yet: kept as early data, and reading pauses
        else:
            self._pause_reading()
        session.when_directory(lambda: self._open(request))

    def _open(self, request: Request) -> None:
        session = self.session
        if self.done:
            return
        if request.command == CONNECT:
            exit_choice = session.exit_for(request.host)
            if exit_choice is None:
                log.info("device %s: a destination blocked by its rules", session.device.label)  # not which
                return self.cut()
            session.pool.open(request.host, request.port, self, exit_choice)
        else:  # UDP ASSOCIATE: the stream carries the Trojan packets as they are, both ways
            session.pool.open_udp(self, session.device.exit)

    def carried(self, nbytes: int) -> float:
        return self.session.carried(nbytes)

    # -- the pool's answer (a Taker) -------------------------------------------

    def on_accepted(self, payload: bytes, window: int) -> None:
        pass  # Trojan answers nothing: the device's bytes already went as early data

    def on_refused(self, code: int, reason: str) -> None:
        log.info("device %s: refused: %s", self.session.device.label, reason)
        self.cut()

    # TLS has no half-close (asyncio's TLS transport writes no EOF), so an end either way ends both.

    def on_end(self) -> None:
        """The target is done: the device hears it as the connection's close, after what was written."""
        self.got_end = True
        if not self.done:
            self.done = True
            if self.stream is not None and not self.sent_end:
                self.stream.end()
            self.transport.close()
            self.stream_gone()

    def eof_received(self) -> bool:
        super().eof_received()
        return False  # after the device's close_notify the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
        super().connection_lost(exc)
        # uvloop's SSLProtocol keeps a buffered protocol's get_buffer and buffer_updated after the
        # connection is lost: with this reference to its transport, that is a cycle, and the TLS
        # connection's buffers (all a device left unread: MiBs per download) would wait for the
        # cyclic GC, which an idle hub seldom runs. Nothing writes or reads after this.
        self._transport = None

    def stream_gone(self) -> None:
        self.session.pool.stream_done(self)
        self.session.connection_done(self)


class Devices:
    """The hub's devices with connections now, by id: admission, metering and cuts."""

    def __init__(self, store: HubStore, device_key: bytes, pins_folder: Path, port_owner: MemberPortOwner,
                 on_session: Callable[[DeviceSession], None], tasks: Tasks, hub_id: str):
        """`on_session` is called with each new session, whose port the hub then routes to; `hub_id`
        is the hub's, which the receipts of its devices name."""
        self.store = store
        self.device_key = device_key
        self.pins_folder = pins_folder
        self.port_owner = port_owner
        self.on_session = on_session
        self.tasks = tasks
        self.hub_id = hub_id
        self.sessions: dict[str, DeviceSession] = {}

    def admit(self, digits: bytes, transport: asyncio.Transport, rest: bytes) -> bool:
        """The doorway's call for a whole password line: take the connection if it is a device's."""
        try:
            device = self.store.device_by_door(self.device_key, digits)
        except StoreError as exc:
            log.warning("cannot read the device store: %s", exc)
            return False
        if device is None:
            return False  # answered as any stranger is
        session = self.sessions.get(device.id)
        if session is not None and session.closed:  # its link went down under it: start afresh
            self._end(device.id, session, "closed")
            session = None
        if session is None:
            session = self.sessions[device.id] = DeviceSession(device, self.port_owner, self.pins_folder,
                                                               self.tasks, self.hub_id)
            self.on_session(session)
            log.info("device %s is online", device.label)
        if len(session.connections) >= CONNECTIONS_PER_DEVICE:
            log.info("device %s holds %d connections already: refusing one more", device.label,
                     CONNECTIONS_PER_DEVICE)
            abort_with_rst(transport)
            return True  # it proved its secret: no web face for it
        connection = TrojanConnection(session)
        transport.set_protocol(connection)
        connection.connection_made(transport)
        if rest:
            connection.data_received(rest)
        return True

    def tick(self) -> None:
        """Every USAGE_SAVE: usage to the store, idle sessions closed."""
        for device_id, session in list(self.sessions.items()):
            self._save(session)
            if session.idle() or session.closed:
                self._end(device_id, session, "idle")

    def close_idle_channels(self) -> None:
        for session in list(self.sessions.values()):
            session.pool.close_idle()

    def sign_receipts(self) -> None:
        """The receipts of devices' channels that went quiet (the rest are signed as bytes arrive)."""
        for session in list(self.sessions.values()):
            session.pool.receipts.tick()

    def cut(self, device_ids: set[str]) -> None:
        """Devices revoked or expired, or whose owner was removed: every connection of theirs ends now."""
        for device_id in device_ids & self.sessions.keys():
            log.info("device %s was revoked or expired: cutting its connections",
                     self.sessions[device_id].device.label)
            self._end(device_id, self.sessions[device_id], "revoked")

    def expire(self, now: float) -> None:
        self.cut({device_id for device_id, session in self.sessions.items() if session.device.expired(now)})

    def stop(self) -> None:
        for device_id, session in list(self.sessions.items()):
            self._end(device_id, session, "the hub is shutting down")

    def _end(self, device_id: str, session: DeviceSession, reason: str) -> None:
        del self.sessions[device_id]
        session.close(reason)
        self._save(session)
        try:
            self.store.set_device_online(device_id, False)
        except StoreError as exc:
            log.warning("cannot save device %s: %s", session.device.label, exc)

    def _save(self, session: DeviceSession) -> None:
        try:
            session.save(self.store)
        except StoreError as exc:
            log.warning("cannot save the usage of device %s: %s", session.device.label, exc)


def device_profile(config: HubConfig, device: Device, password: str) -> DeviceProfile:
    """What the device's app is given: the hub's public address, and a pin when its certificate is
    self-signed (no app would verify it otherwise)."""
    host, port = config.public_address
    try:
        ipaddress.ip_address(host)
        sni = None
    except ValueError:
        sni = host
    cert = x509.load_pem_x509_certificate(config.cert.read_bytes())
    self_signed = cert.issuer == cert.subject
    return DeviceProfile(
        label=f"{device.label} · {config.name}", password=password, host=host, port=port, sni=sni,
        cert_sha256=hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest() if self_signed else None,
        cert_pem=cert.public_bytes(Encoding.PEM).decode() if self_signed else None)


def subscription_url(config: HubConfig, token: str) -> str:
    host, port = config.public_address
    host = f"[{host}]" if ":" in host else host
    return f"https://{host}{'' if port == 443 else f':{port}'}/s/{token}"


def trust_note(profile: DeviceProfile) -> str:
    """What an app must be told to trust a hub whose certificate is self-signed; nothing for a public CA's."""
    if not profile.cert_sha256:
        return ""
    return ("this hub's certificate is self-signed: the sing-box and Clash profiles pin it; for the "
            "share link or the subscription URL an app needs \"skip certificate verification\" "
            f"(allowInsecure), or the pin SHA-256 {profile.cert_sha256}")


@dataclass(frozen=True)
class NewDevice:
    """A device just added, with what its app is given: shown once, since the hub keeps no secret."""

    device: Device
    password: str
    link: str
    subscription: str
    note: str
    cert_sha256: str | None


def add_device(config: HubConfig, store: HubStore, owner: str, name: str, *, exit: str = "auto",
               rules: str | None = None, rate: int | None = None, daily_cap: int | None = None,
               expires_in: float | None = None) -> NewDevice:
    """Add device `name` for member `owner`, for the hub's CLI and for a member's own request alike."""
    if rules is not None:
        try:
            load_rules(rules if rules in PRESETS else rules.splitlines())
        except ConfigError as exc:
            raise StoreError(f"the device's rules: {exc}") from None
    device_key = store.device_key(config.device_key)
    device, token = store.add_device(owner, name, device_key, exit=exit, rules=rules, rate=rate,
                                     daily_cap=daily_cap, expires_in=expires_in)
    profile = device_profile(config, device, device_password(device_key, token))
    return NewDevice(device, profile.password, share_link(profile), subscription_url(config, token),
                     trust_note(profile), profile.cert_sha256)


class Subscriptions:
    """Answers a device's app fetching `/s/<token>?format=…`: its profile, with its usage in a header."""

    def __init__(self, config: HubConfig, store: HubStore, device_key: bytes):
        self.config = config
        self.store = store
        self.device_key = device_key

    def page(self, target: str) -> tuple[str, bytes, list[tuple[str, str]]] | None:
        """The doorway's call for a request under /s/: the subscription, or None (the web face answers)."""
        url = urllib.parse.urlsplit(target)
        token = url.path.removeprefix("/s/")
        try:
            form = subscription_format(urllib.parse.parse_qs(url.query).get("format", [None])[0])
            device = self.store.device_by_token(self.device_key, token)
        except ValueError:
            return None  # an unknown format: as any path nobody serves
        except StoreError as exc:
            log.warning("cannot read the device store: %s", exc)
            return None
        if device is None:
            return None
        try:
            profile = device_profile(self.config, device, device_password(self.device_key, token))
        except (OSError, ValueError) as exc:  # the certificate file, gone or unreadable
            log.warning("cannot make device %s's subscription: %s", device.label, exc)
            return None
        content_type, body = subscription(profile, form, _rules(device))
        usage = userinfo_header(0, device.bytes_on(utc_day(time.time())), device.daily_cap,
                                device.expires_at)
        log.info("device %s fetched its subscription (%s)", device.label, form)
        return content_type, body, [("subscription-userinfo", usage), ("profile-update-interval", "24")]
