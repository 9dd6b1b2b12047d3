"""The hub role: admission, and the wiring between ports, the directory, the switch and the board.

One `Hub` listens on one TLS port. The doorway hands it each valid hello:
an AUTH from a current member becomes a `MemberPort` (ports.py), a JOIN
redeems an invite, a COMMAND carries one request of the member's
(commands.py: its devices) and is no port. A stream a port opens is routed to the port its route
names and spliced there (`Ports.route`, within STREAMS_PER_DESTINATION per
member and destination). What a member says of itself, `share` and
`share-status` for its exit and `publish` for its services (services.py),
goes into the directory (directory.py) once its signature checks, and the
directory is pushed to every member when it changes, paced (pacing.py), and
only if what members would hear differs from what they heard last: routes
churning behind the exits that fit one message, or a route replaced by an
equal one, cost no push.
Revocations made by the CLI in the store are noticed within a second and
drop the member's link. A device's Trojan password line, recognised by the
doorway, goes to `Devices` (devices.py), which runs an agent for the device
behind a `DevicePort`; that port hears the directory, the services and the
members as a member's does, and the roster lists devices as `owner/name`;
a device's app fetching `/s/<token>` gets its subscription (`Subscriptions`).
A PEER hello is a peer hub's link and a PEER_JOIN redeems a peer invite
(peers.py: `Federation`, which also dials the peers this hub redeemed at);
the routes between hubs list other hubs' exits and services in the
directory, and streams to them go to the peer of the best route.
Background work runs under one `Tasks`, stopped with the hub.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ladder.agent.credits import RECEIPT_TICK
from ladder.agent.pool import CHANNEL_IDLE
from ladder.config import HubConfig
from ladder.link.connection import Link
from ladder.link.server import FrontDoor, listen
from ladder.link.tls import fingerprint_of_cert_file, server_context
from ladder.protocol import control
from ladder.protocol.envelope import RecordError, b64
from ladder.protocol.errors import REVOKED, ErrorCode
from ladder.protocol.hello import COMMAND, JOIN, PEER, PEER_JOIN, Hello
from ladder.protocol.identity import member_id
from ladder.protocol.records import verify_exit_record
from ladder.protocol.version import THIS, Speaks, mismatch
from ladder.store.hubdb import HubStore, InviteError, InviteUnknown, Member, StoreError
from ladder.tasks import Tasks

from .commands import COMMAND_TIMEOUT, CommandLink
from .credits import Credits, PeerMessage
from .devices import USAGE_SAVE, Devices, DeviceSession, Subscriptions
from .directory import Directory, ExitListing
from .pacing import Pacer
from .peers import Federation
from .ports import MemberPort, PeerPort, Port, Ports
from .search import Search
from .services import EVERYONE, Outbox, ServiceBoard

log = logging.getLogger(__name__)
REVOCATION_POLL = 1.0
DIRECTORY_PUSH = 2.0  # load figures are pushed at most this often
STREAMS_PER_DESTINATION = 8  # live streams one member may hold to one other member
# A member link's control budget (link/connection.py), in tokens a second: an agent sends a few
# messages a minute, a busy exit a receipt per channel per MiB or more; a flood waits past it.
MEMBER_CONTROL_RATE = 200.0


class Hub:
    """One hub: made on the loop it serves on (its pushes run on that loop's clock and timers)."""

    def __init__(self, config: HubConfig, store: HubStore):
        loop = asyncio.get_running_loop()
        self.config = config
        self.store = store
        self.id = config.hub_id()
        self.fingerprint = fingerprint_of_cert_file(config.cert)
        self.directory = Directory()
        self.services = ServiceBoard(self.directory)  # published services and member names
        self.server: FrontDoor | None = None
        self.tasks = Tasks(log)
        self.federation = Federation(config, store, self.directory, self, self.tasks)
        self.credits = Credits(store, config.hub_key(), self.id, config.credit_limit)
        self.ports = Ports(self._is_destination, STREAMS_PER_DESTINATION, self._channel_changed,
                           self.federation.next_hop, self.federation.failed, self.credits.spliced)
        device_key = store.device_key(config.device_key)
        self.devices = Devices(store, device_key, config.folder / "device-pins", self,
                               self._device_online, self.tasks, self.id)
        self.subscriptions = Subscriptions(config, store, device_key)
        self.search = Search(config, store, self, self.tasks)
        self._directory_push = Pacer(self._push_directory, loop.time, loop.call_later)
        self._services_push = Pacer(self._push_services, loop.time, loop.call_later)
        # What every listener holds now, from the last push (None: some may hold another): a push of
        # the same again is skipped. 60 KB to each member twice a second, each parsed and verified,
        # while a peer hub's routes changed behind what one message holds (benchmarks/abuse.py, routes).
        self._directory_heard: control.Directory | None = None
        self._services_heard: list[control.Services] | None = None
        self._data_version = -1
        self.started = time.time()

    async def start(self) -> None:
        self.started = time.time()
        self.store.clear_online()
        self.server = await listen(self.config.listen, server_context(self.config.cert, self.config.key),
                                   self.fingerprint, self.admit, web_backend=self.config.web_backend,
                                   raw_backend=self.config.raw_backend, admit_device=self.devices.admit,
                                   subscription=self.subscriptions.page)
        self._data_version = self.store.data_version()
        self.tasks.every(REVOCATION_POLL, self._poll_store, name="revocation poll")
        self.tasks.every(USAGE_SAVE, self.devices.tick, name="device usage")
        self.tasks.every(CHANNEL_IDLE / 2, self.devices.close_idle_channels, name="devices' idle channels")
        self.tasks.every(RECEIPT_TICK, self.devices.sign_receipts, name="devices' receipts")
        self.tasks.every(1.0, self._credits_tick, name="credits")
        self.federation.start()
        self.search.start()

    @property
    def port(self) -> int:
        assert self.server is not None, "the hub listens once start() returned"
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, close every link, and end the pushes and the background work."""
        if self.server is not None:
            self.server.close()
        self.devices.stop()
        self.search.stop()
        self.federation.stop()
        for port in self.ports:
            port.link.close(ErrorCode.NO_ERROR, "the hub is shutting down")
        self._directory_push.cancel()
        self._services_push.cancel()
        await self.tasks.stop()

    # ----------------------------------------------------------- admission

    def admit(self, hello: Hello, binding: bytes, transport: asyncio.Transport, rest: bytes) -> bool:
        """Called by the doorway for a correctly signed hello on this connection."""
        if hello.kind == JOIN:
            return self._join(hello, transport)
        if hello.kind == PEER:
            return self.federation.admit(hello.pubkey, transport, rest)
        if hello.kind == PEER_JOIN:
            reply = self.federation.join(hello.token, hello.pubkey)
            if reply is None:
                return False  # a stranger guessing tokens sees the web site
            return self._answer(transport, "joining peer hub", reply)
        member = self.store.member_by_pubkey(hello.pubkey)
        if member is None or member.revoked:
            return False  # looks like any stranger's bytes
        if hello.kind == COMMAND:
            return self._command(member, transport, rest)
        link = self._take(transport, f"member {member.name}", MEMBER_CONTROL_RATE)
        peer = transport.get_extra_info("peername")
        self.member_online(member, link, peer[0] if peer else None)
        if rest:
            link.data_received(rest)
        return True

    def member_online(self, member: Member, link: Link, address: str | None,
                      role: str = "user") -> MemberPort:
        """A member's link, up: its port routes, and it hears what members hear (the search member's
        in-memory link too, online as "search")."""
        if member.id in self.ports:
            log.info("%s connected again: replacing its previous link", member.name)
        port = MemberPort(member, link, self)
        link.owner = port
        self.ports.add(port)
        self.directory.origin_up(port.origin)
        self._set_online(port, role)
        link.send_control(control.Welcome(self.config.name, member.name, member.id, address, self.id,
                                           THIS.oldest, THIS.newest, THIS.release))
        self._send_directory(port)
        if member.id not in self.directory.names:  # it just joined: the others hear of it
            self._read_roster()
        self._deliver(self.services.member_online(member.id))
        self._services_heard = None  # it may have heard a newer listing than the others
        log.info("%s is online", member.name)
        return port

    def _device_online(self, session: DeviceSession) -> None:
        """A device's first connection: route to its port, which hears what members hear."""
        port = session.port
        self.ports.add(port)
        self.directory.origin_up(port.origin)
        try:
            self.store.set_device_online(port.id, True)
        except StoreError as exc:
            log.warning("cannot save device %s: %s", port.label, exc)
        if port.id not in self.directory.names:  # added just now: exits must know whose it is first
            self._read_roster()
        self._send_directory(port)
        self._deliver(self.services.member_online(port.id))
        self._services_heard = None  # it may have heard a newer listing than the others

    def _command(self, member: Member, transport: asyncio.Transport, rest: bytes) -> bool:
        """A member's one request on a link of its own (commands.py), answered, then closed."""
        link = self._take(transport, f"command link of {member.name}")
        link.owner = CommandLink(member, self.config, self.store, lambda id: id in self.devices.sessions,
                                 self._device_removed, self.credits, self.search.query)
        link.loop.call_later(COMMAND_TIMEOUT, link.close, ErrorCode.NO_ERROR, "no request")
        if rest:
            link.data_received(rest)
        return True

    def _device_removed(self, device_id: str) -> None:
        self.devices.cut({device_id})
        self._read_roster()

    def _join(self, hello: Hello, transport: asyncio.Transport) -> bool:
        try:
            member = self.store.redeem_invite(hello.token, member_id(hello.pubkey), hello.pubkey)
        except InviteUnknown:
            return False  # a stranger guessing tokens sees the web site
        except (InviteError, StoreError) as exc:
            reply: control.Joined | control.JoinRefused = control.JoinRefused(str(exc))
        else:
            log.info("%s joined", member.name)
            reply = control.Joined(self.config.name, member.name, member.id)
        return self._answer(transport, "joining member", reply)

    def _answer(self, transport: asyncio.Transport, label: str, reply: control.ControlMessage) -> bool:
        """A join's one answer, on a link that closes after it."""
        link = self._take(transport, label)
        link.send_control(reply)
        link.close(ErrorCode.NO_ERROR, "join done")
        return True

    def _take(self, transport: asyncio.Transport, label: str, control_rate: float | None = None) -> Link:
        link = Link(None, client=False, label=label, control_rate=control_rate)
        transport.set_protocol(link)
        link.connection_made(transport)
        return link

    # ---------------------------------------------- what ports report (MemberPortOwner)

    def stream_opened(self, port: Port, sid: int, payload: bytes, window: int) -> None:
        self.ports.route(port, sid, payload, window)

    def control_received(self, port: MemberPort, message: control.ControlMessage) -> None:
        if isinstance(message, control.ShareStatus):
            if not self.directory.set_accepting(port.id, message.accepting):
                return  # said again: a repeat costs neither a log line nor a push
            log.info("%s %s new streams %s", port.label, "accepts" if message.accepting else "refuses",
                     message.reason[:200])
            self.directory_changed(urgent=True)
        elif isinstance(message, control.Publish):
            self._deliver(self.services.publish(port.member, message, port.origin))
        elif isinstance(message, control.Share):
            self._share(port, message)
        elif isinstance(message, control.Receipts):
            self.credits.from_exit(port, message)
        elif isinstance(message, control.Version):
            self._version(port, message)
        # anything else a member says (or a newer agent's Unknown) changes nothing here

    def _version(self, port: MemberPort, message: control.Version) -> None:
        """What the member's agent speaks: kept for the operator (`ladder hub members`), or, if this hub
        speaks none of it, the link closed with the line that says so (the agent shows it)."""
        theirs = Speaks.said(message.oldest, message.protocol, message.release)
        problem = mismatch(theirs, "this hub", f"{port.label}'s agent")
        if problem:
            log.warning("%s", problem)
            port.link.close(ErrorCode.PROTOCOL_ERROR, problem)
            return
        try:
            self.store.set_release(port.id, theirs.release)
        except StoreError as exc:
            log.warning("cannot save which Ladder %s runs: %s", port.label, exc)

    def port_closed(self, port: Port, reason: str) -> None:
        log.info("%s went offline: %s", port.label, reason)
        if not self.ports.remove(port):
            return  # replaced: the new port is online
        if isinstance(port, MemberPort):
            self._set_online(port, None)
        exit_withdrawn = self.directory.origin_down(port.origin)
        self._deliver(self.services.member_offline(port.id))
        if exit_withdrawn:
            self.directory_changed(urgent=True)

    def _set_online(self, port: MemberPort, role: str | None) -> None:
        """Keep who is online as what, for `ladder hub members`. A store that cannot be written (a full
        disk) costs that line only: the link still comes up, and a port that went is still withdrawn."""
        try:
            self.store.set_online(port.id, role)
        except StoreError as exc:
            state = f"online as {role}" if role else "offline"
            log.warning("cannot save that %s is %s: %s", port.label, state, exc)

    def _share(self, port: MemberPort, message: control.Share) -> None:
        # The key this hub vouched for at join time, not the one the member sent:
        record = {"record": message.record, "signature": message.signature, "pubkey": b64(port.member.pubkey)}
        try:
            verified = verify_exit_record({"id": port.id, **record})
        except RecordError as exc:
            log.warning("%s sent an exit record that does not verify: %s", port.label, exc)
            return
        listing = ExitListing(port.id, port.member.name, verified.country, record, port.origin)
        listed = port.id in self.directory.exits
        if not self.directory.list_exit(listing):
            return  # said again: nothing for anyone to hear
        if not listed:  # a new record of a listed exit is pushed, not written to the store nor logged
            self._set_online(port, "exit")
            log.info("%s shares as an exit in %s", port.label, verified.country)
        self.directory_changed(urgent=True)

    # ----------------------------------------------------------- directory

    def _is_destination(self, member_id: str) -> bool:
        """Streams may be spliced to a member that shares (capped or not: the exit says so) or publishes."""
        return member_id in self.directory.exits or self.directory.publishes(member_id)

    def credit_message(self, port: PeerPort, message: PeerMessage) -> None:
        """Receipts, settlements and ledger checkpoints between hubs (credits.py)."""
        self.credits.from_peer(port, message)

    def search_message(self, port: PeerPort, message: control.SearchRequest | control.SearchResults) -> None:
        """Queries between hubs and their answers (search.py)."""
        self.search.from_peer(port, message)

    def peer_ports(self) -> list[PeerPort]:
        return list(self.federation.ports.values())

    def _credits_tick(self) -> None:
        self.credits.tick([port for port in self.ports.listeners() if isinstance(port, MemberPort)],
                          self.peer_ports())

    def _channel_changed(self, member_id: str, change: int) -> None:
        self.directory.count_channel(member_id, change)
        self.directory_changed(urgent=False)

    def directory_message(self) -> control.Directory:
        return self.directory.exits_message()

    def directory_changed(self, urgent: bool) -> None:
        """Push the directory now (exits came or went) or soon (only load changed), paced."""
        self._directory_push.request(0.0 if urgent else DIRECTORY_PUSH)

    def remote_changed(self) -> None:
        """The routes between hubs changed what is listed of other hubs' members."""
        self.directory_changed(urgent=True)
        self._services_push.request()

    def _send_directory(self, port: Port) -> None:
        """A listener's first directory: the current one, which may be newer than the others heard."""
        message = self.directory_message()
        port.link.send_control(message)
        if message != self._directory_heard:
            self._directory_heard = None

    def _push_directory(self) -> None:
        self.federation.refresh_local()
        message = self.directory_message()
        if message == self._directory_heard:
            return  # every listener holds it already
        self._directory_heard = message
        for port in self.ports.listeners():
            port.link.send_control(message)

    def _push_services(self) -> None:
        self.federation.refresh_local()
        messages = self.services.services_messages()
        if messages == self._services_heard:
            return  # every listener holds it already
        self._services_heard = messages
        for port in self.ports.listeners():
            for message in messages:
                port.link.send_control(message)

    def _deliver(self, outbox: Outbox) -> None:
        """Send what the board said to whom it said, in order; the listing itself goes out paced."""
        for recipient, message in outbox.sends:
            ports = self.ports.listeners() if recipient is EVERYONE else [self.ports.get(recipient)]
            for port in ports:
                if port is not None:
                    port.link.send_control(message)
        if outbox.listing_changed:
            self._services_push.request()

    # ----------------------------------------------------- store and roster

    def _read_roster(self) -> None:
        """The active members as the store has them; whoever must hear of a change hears of it."""
        try:
            names = {m.id: m.name for m in self.store.members() if not m.revoked}
            now = time.time()
            names.update({d.id: d.label for d in self.store.devices()
                          if not d.revoked and not d.expired(now) and d.owner in names})
        except StoreError as exc:
            log.warning("cannot read the member store: %s", exc)
            return
        self._deliver(self.services.roster_changed(names))

    def _poll_store(self) -> None:
        """Noticed within REVOCATION_POLL: joins and devices added (relabel), revocations (their links
        drop, devices' connections are cut) and devices expiring."""
        self.devices.expire(time.time())
        try:
            version = self.store.data_version()
            if version == self._data_version:
                return
            self._data_version = version
            self.federation.sync_store()
            revoked = self.store.active_revoked_ids()
            self._read_roster()
            for port in [p for p in self.ports if p.id in revoked]:
                log.info("%s was revoked: dropping its link", port.label)
                port.link.close(ErrorCode.NO_ERROR, REVOKED)
            self.devices.cut(self.store.unusable_device_ids())
        except StoreError as exc:
            log.warning("cannot read the member store: %s", exc)
