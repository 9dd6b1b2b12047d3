"""Peer hubs: the links between hubs, the routes they exchange, and what this hub's directory learns.

A peering starts with a single-use invite (`ladder hub peer-invite`): the
other hub's operator redeems it (`ladder hub peer add`, a PEER_JOIN hello
signed by that hub's key), and from then on the redeeming hub keeps one
link to the inviting one (a PEER hello), dialled again after any loss with
the agent's backoff, so a hub behind NAT can peer too. Either side's link
is a `PeerPort`: streams go both ways on it, and so do routes.

Routes are the routing core's (protocol/routing.py); this is its adapter.
For each member of this hub that shares an exit or publishes services,
`Federation` signs an announcement with the hub key (protocol/records.py)
and originates it, again whenever what the member says changes and
before it expires (`REANNOUNCE`); a member gone (offline, revoked, capped)
is withdrawn. Announcements from peers are verified by the router's
`verify`, the home hub's signature and the member's own, before any is
kept. Whenever a best route changes, the directory is told what is at the
other end (`Directory.set_remote`) and the members hear it, paced as any
change. What the router wants sent goes out at most every `ROUTES_PACE`.

A stream to another hub's member goes to the peer of the best route
(`next_hop`), skipping routes whose opens failed of late (ports.py reports
failures). Peerings made or removed by the CLI are read from the store when
it changes; a removed one tells the other side (`peer-removed`), which ends
it too. The hub writes what `ladder hub peers` shows to peers.json every
second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Protocol

from ladder.agent.join import JoinFailed, answer_to
from ladder.agent.reconnect import Backoff
from ladder.config import HubConfig, InviteLink, format_address, parse_address, write_file
from ladder.link.client import PEER_DEAD_AFTER, PEER_KEEPALIVE, dial_peer
from ladder.link.connection import Link
from ladder.protocol import control
from ladder.protocol.envelope import RecordError, b64, unb64
from ladder.protocol.errors import ErrorCode
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.records import (
    MemberAnnouncement,
    announced_member,
    sign_announcement,
    verify_announcement,
)
from ladder.protocol.routing import Announcement, Route, Router
from ladder.protocol.version import THIS, Speaks, mismatch
from ladder.store.hubdb import HubStore, InviteError, InviteUnknown, Peer, StoreError
from ladder.tasks import Tasks

from .credits import PeerMessage
from .directory import Directory, ExitListing, Origin, ServiceListing
from .pacing import Pacer
from .ports import PeerPort, Port

log = logging.getLogger(__name__)
ANNOUNCE_TTL = 600  # seconds an announcement is valid
REANNOUNCE = 240  # a member's announcement is signed again this often
ROUTES_PACE = 0.1  # routes to peers go out at most this often
# The control budget of a peer's link (link/connection.py), in tokens a second (a token per 512
# bytes). A route entry of one exit is about 0.9 KB and costs two signature checks (~0.9 ms on a
# busy 2-core machine), so this is some 290 entries a second: a full table of ROUTES_PER_PEER routes
# comes in about 35 s, and a peer flooding routes waits past it. At 2,000 a second checking its
# announcements took the hub's whole loop from the members' downloads (benchmarks/abuse.py, routes).
PEER_CONTROL_RATE = 500.0
STATUS_FILE = "peers.json"
ROUTES_SIZE = control.MAX_CONTROL - 2000  # bytes of one `routes` message


async def redeem(config: HubConfig, store: HubStore, invite: InviteLink, name: str | None) -> Peer:
    """`ladder hub peer add`: redeem another hub's peer invite with this hub's key and keep the peering
    (the running hub dials it from then on); JoinFailed or StoreError with one line."""
    key = config.hub_key()
    reply = await answer_to(dial_peer(invite.address, invite.fingerprint, key, None, token=invite.token),
                            invite.address)
    if not isinstance(reply, control.PeerJoined):
        why = reply.reason if isinstance(reply, control.JoinRefused) else reply
        raise JoinFailed(f"the hub refused the peer invite: {why}")
    try:
        pubkey = unb64(reply.key)
    except ValueError:
        pubkey = b""
    if len(pubkey) != 32 or member_id(pubkey) != reply.id:
        raise JoinFailed("the hub's answer to the peer invite names a key that is not its id's")
    return store.add_peer(config.hub_id(), name or reply.hub, reply.id, pubkey,
                          format_address(*invite.address), invite.fingerprint)


class FederationOwner(Protocol):
    """What the federation needs of the hub."""

    def stream_opened(self, port: Port, sid: int, payload: bytes, window: int) -> None: ...

    def remote_changed(self) -> None: ...

    def credit_message(self, port: PeerPort, message: PeerMessage) -> None: ...

    def search_message(self, port: PeerPort,
                       message: control.SearchRequest | control.SearchResults) -> None: ...


class Federation:
    def __init__(self, config: HubConfig, store: HubStore, directory: Directory, owner: FederationOwner,
                 tasks: Tasks, clock: Callable[[], float] = time.time):
        loop = asyncio.get_running_loop()
        self.config = config
        self.store = store
        self.directory = directory
        self.owner = owner
        self.tasks = tasks
        self.clock = clock
        self.key = config.hub_key()
        self.id = config.hub_id()
        self.name = config.name
        self.router = Router(self.id, self._verify, claims=self._claims)
        self.ports: dict[str, PeerPort] = {}  # peer hub id → its link's port
        self._dialling: dict[str, asyncio.Task] = {}  # peer hub id → the loop that keeps its link
        self._gone: dict[PeerPort, asyncio.Future] = {}  # a dialled link's port → done when it closes
        self._originated: dict[str, tuple] = {}  # member id → (what was signed, when)
        self._seq = 0
        self._send = Pacer(self._flush, loop.time, loop.call_later, every=ROUTES_PACE)
        self._status = ""

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.sync_store()
        self.tasks.every(1.0, self.tick, name="routes between hubs")

    def stop(self) -> None:
        self._send.cancel()
        for task in self._dialling.values():
            task.cancel()
        for port in list(self.ports.values()):
            port.link.close(ErrorCode.NO_ERROR, "the hub is shutting down")

    def tick(self) -> None:
        now = self.clock()
        self.router.expire(now)
        self.refresh_local()
        self._flush()
        self._write_status()

    # ------------------------------------------------------------- admission

    def admit(self, pubkey: bytes, transport: asyncio.Transport, rest: bytes) -> bool:
        """A PEER hello: the link of a hub that redeemed one of our invites (False: a stranger's)."""
        peer = self.store.peer_by_key(self.id, pubkey)
        if peer is None or peer.hub_id is None:
            return False
        link = Link(None, client=False, label=f"peer {peer.name}", keepalive=PEER_KEEPALIVE,
                    dead_after=PEER_DEAD_AFTER, control_rate=PEER_CONTROL_RATE)
        transport.set_protocol(link)
        link.connection_made(transport)
        link.send_control(control.PeerWelcome(self.name, self.id, THIS.oldest, THIS.newest, THIS.release))
        self._up(peer, peer.hub_id, link)
        if rest:
            link.data_received(rest)
        return True

    def join(self, token: bytes, pubkey: bytes) -> control.PeerJoined | control.JoinRefused | None:
        """A PEER_JOIN: the answer to the redeemed invite (None: a token nobody made)."""
        try:
            peer = self.store.redeem_peer_invite(self.id, token, member_id(pubkey), pubkey)
        except InviteUnknown:
            return None
        except (InviteError, StoreError) as exc:
            return control.JoinRefused(str(exc))
        log.info("hub %s redeemed peer invite %s", peer.hub_id, peer.name)
        return control.PeerJoined(self.name, self.id, b64(public_bytes(self.key)))

    def _up(self, peer: Peer, hub_id: str, link: Link) -> PeerPort:
        old = self.ports.get(hub_id)
        port = PeerPort(peer, hub_id, link, self)
        link.owner = port
        self.ports[hub_id] = port
        if old is not None:
            old.replaced()  # its close finds a newer port in place and changes nothing
        else:
            log.info("peer hub %s is up", peer.name)
        self.directory.origin_up(port.origin)
        self.router.peer_up(hub_id, self.clock())
        self._after_routing()
        return port

    # -------------------------------------------------------- PeerPortOwner

    def stream_opened(self, port: Port, sid: int, payload: bytes, window: int) -> None:
        self.owner.stream_opened(port, sid, payload, window)

    def peer_control(self, port: PeerPort, message: control.ControlMessage) -> None:
        if isinstance(message, control.Routes):
            self.router.receive(port.id, message, self.clock())
            self._after_routing()
        elif isinstance(message, control.Version):
            problem = mismatch(Speaks.said(message.oldest, message.protocol, message.release), "this hub",
                               port.label)
            if problem:
                log.warning("%s", problem)
                port.link.close(ErrorCode.PROTOCOL_ERROR, problem)
            else:
                log.info("%s runs Ladder %s", port.label, message.release)
        elif isinstance(message, control.PeerRemoved):
            log.info("%s ended the peering: %s", port.label, message.reason[:200])
            try:
                self.store.remove_peer_by_hub(self.id, port.id)
            except StoreError as exc:
                log.warning("cannot save the end of the peering with %s: %s", port.label, exc)
            self._stop_dialling(port.id)
            port.link.close(ErrorCode.NO_ERROR, "peering ended")
        elif isinstance(message, (control.Receipts, control.Settled, control.LedgerSeen, control.LedgerHead)):
            self.owner.credit_message(port, message)
        elif isinstance(message, (control.SearchRequest, control.SearchResults)):
            self.owner.search_message(port, message)

    def peer_closed(self, port: PeerPort, reason: str) -> None:
        gone = self._gone.pop(port, None)
        if gone is not None and not gone.done():
            gone.set_result(None)
        if self.ports.get(port.id) is not port:
            return  # replaced
        del self.ports[port.id]
        log.info("peer hub %s is down: %s", port.peer.name, reason)
        self.directory.origin_down(port.origin)
        self.router.peer_down(port.id, self.clock())
        self._after_routing()

    # ------------------------------------------------------- outbound links

    def sync_store(self) -> None:
        """Peerings as the store has them now: dial the new ones we redeemed, end the removed ones."""
        try:
            peers = {p.hub_id: p for p in self.store.peers(self.id) if p.hub_id is not None}
        except StoreError as exc:
            log.warning("cannot read the peers: %s", exc)
            return
        for hub_id, peer in peers.items():
            if peer.address is not None and hub_id not in self._dialling:
                self._dialling[hub_id] = self.tasks.spawn(self._keep_link(peer), name=f"peer {peer.name}")
        for hub_id in [h for h in self._dialling if h not in peers]:
            self._stop_dialling(hub_id)
        for hub_id, port in list(self.ports.items()):
            if hub_id not in peers:
                log.info("the peering with %s was removed: telling it", port.label)
                port.link.send_control(control.PeerRemoved("the operator removed the peering"))
                port.link.close(ErrorCode.NO_ERROR, "peering removed")

    def _stop_dialling(self, hub_id: str) -> None:
        task = self._dialling.pop(hub_id, None)
        if task is not None:
            task.cancel()

    async def _keep_link(self, peer: Peer) -> None:
        """Dial the peer, and dial it again whenever its link goes, until the peering ends."""
        assert peer.address is not None and peer.fingerprint is not None and peer.hub_id is not None
        address = parse_address(peer.address)
        loop = asyncio.get_running_loop()
        backoff = Backoff(loop.time, random.Random())
        while True:
            backoff.dialling()
            try:
                early = _Early()
                link, first = await dial_peer(address, peer.fingerprint, self.key, early,
                                              control_rate=PEER_CONTROL_RATE)
            except (TimeoutError, OSError, ConnectionError, RecordError) as exc:
                log.info("cannot reach peer hub %s at %s: %s", peer.name, peer.address, exc)
            except Exception as exc:  # a refusal, a pin that does not match: logged, dialled again
                log.warning("peer hub %s at %s: %s", peer.name, peer.address, exc)
            else:
                if link.closed:
                    log.info("the link to peer hub %s closed at once", peer.name)
                elif not isinstance(first, control.PeerWelcome) or first.id != peer.hub_id:
                    log.warning("peer hub %s answered as another hub: dropping the link", peer.name)
                    link.close(ErrorCode.FORBIDDEN, "not the hub peered with")
                elif problem := mismatch(Speaks.said(first.oldest, first.protocol, first.release),
                                         "this hub", f"peer hub {peer.name}"):
                    log.warning("%s", problem)
                    link.close(ErrorCode.PROTOCOL_ERROR, problem)
                else:
                    link.send_control(control.Version(THIS.oldest, THIS.newest, THIS.release))
                    port = self._up(peer, peer.hub_id, link)
                    gone = self._gone[port] = loop.create_future()
                    early.hand_to(port)
                    await gone
            await asyncio.sleep(backoff.delay())

    # ---------------------------------------------------------------- routes

    def _claims(self, entry: control.RouteEntry) -> str | None:
        return announced_member({"record": entry.record})

    def _verify(self, entry: control.RouteEntry) -> Announcement:
        found = verify_announcement({"record": entry.record, "signature": entry.signature,
                                     "pubkey": entry.pubkey})
        return Announcement(found.member, found.home, found.seq, found.expires, found)

    def refresh_local(self) -> None:
        """Originate what this hub's members share and publish now; withdraw those who stopped."""
        now = self.clock()
        directory = self.directory
        local = {m for m, x in directory.exits.items() if x.origin.kind == "member" and x.accepting}
        local |= {m for m, s in directory.services.items()
                  if s.origin.kind == "member" and directory.is_up(s.origin)}
        for member in [m for m in self._originated if m not in local]:
            del self._originated[member]
            self.router.withdraw(member)
        for member in local:
            exit = directory.exits.get(member)
            exit = exit if exit is not None and exit.origin.kind == "member" and exit.accepting else None
            services = directory.services.get(member)
            content = (directory.names.get(member), None if exit is None else exit.record["record"],
                       tuple(s["record"] for s in services.entries) if services else ())
            before = self._originated.get(member)
            if before is not None and before[0] == content and now - before[1] < REANNOUNCE:
                continue
            entry = self._announce(member, content[0] or member, exit, services, now)
            if entry is not None:
                self._originated[member] = (content, now)
                self.router.originate(entry, now)
        self._after_routing()

    def _announce(self, member: str, name: str, exit: ExitListing | None, services: ServiceListing | None,
                  now: float) -> control.RouteEntry | None:
        pubkey = (exit.record["pubkey"] if exit is not None else services.entries[0]["pubkey"]
                  if services else None)
        if pubkey is None:
            return None
        self._seq = max(self._seq + 1, time.time_ns() // 1000)  # grows across restarts too
        entries = list(services.entries) if services else []
        while True:
            try:
                signed = sign_announcement(self.key, member, unb64(pubkey), name, self.name, self._seq,
                                           int(now) + ANNOUNCE_TTL, exit.record if exit else None, entries)
                return control.RouteEntry(signed["record"], signed["signature"], signed["pubkey"], (self.id,))
            except ValueError:
                if not entries:
                    return None
                entries = entries[: len(entries) // 2]  # too many services for one message: the first ones

    def failed(self, member: str, peer: str) -> None:
        self.router.failed(member, peer, self.clock())
        self._after_routing()

    def next_hop(self, member: str, came_from: str | None) -> Port | None:
        for route in self.router.routes(member, self.clock()):
            if route.via is not None and route.via != came_from and route.via in self.ports:
                return self.ports[route.via]
        return None

    def _after_routing(self) -> None:
        changed = self.router.take_changes()
        if changed:
            for member in changed:
                self._list(member, self.router.best(member, self.clock()))
            self.owner.remote_changed()
        self._send.request(ROUTES_PACE)

    def _list(self, member: str, route: Route | None) -> None:
        if route is None or route.via is None:
            self.directory.set_remote(member, None, None)
            return
        found: MemberAnnouncement = route.announcement.body
        label = found.name if found.hub == self.name else f"{found.name}.{found.hub}"
        origin = Origin("peer", route.via)
        exit = None
        if found.exit is not None and found.exit_record is not None:
            record = {k: found.exit[k] for k in ("record", "signature", "pubkey")}
            exit = ExitListing(member, label, found.exit_record.country, record, origin, hub=found.hub,
                               hops=route.hops)
        services = (ServiceListing(list(found.services), origin, label, found.hub, route.hops)
                    if found.services else None)
        self.directory.set_remote(member, exit, services)

    def _flush(self) -> None:
        for peer, message in self.router.take_messages():
            port = self.ports.get(peer)
            if port is not None:
                for piece in _pieces(message):
                    port.link.send_control(piece)

    # ---------------------------------------------------------------- status

    def status(self) -> list[dict]:
        """Each peering as `ladder hub peers` shows it."""
        try:
            peers = self.store.peers(self.id)
        except StoreError:
            peers = []
        out = []
        for peer in peers:
            port = self.ports.get(peer.hub_id or "")
            stats = self.router.stats.get(peer.hub_id or "")
            out.append({
                "name": peer.name, "hub_id": peer.hub_id, "pending": peer.pending,
                "dials": peer.address, "up": port is not None,
                "rtt_ms": None if port is None or port.link.rtt is None else round(port.link.rtt * 1000, 1),
                "routes": 0 if stats is None else stats.learned,
                "refused": {} if stats is None else dict(stats.dropped),
                "bytes": 0 if port is None else port.link.bytes_in + port.link.bytes_out,
            })
        return out

    def _write_status(self) -> None:
        text = json.dumps({"hub": self.name, "id": self.id, "at": int(self.clock()), "peers": self.status()})
        if text != self._status:
            self._status = text
            try:
                write_file(self.config.folder / STATUS_FILE, text.encode())
            except OSError as exc:
                log.warning("cannot write %s: %s", STATUS_FILE, exc)


def _pieces(message: control.Routes) -> list[control.Routes]:
    """`message` cut into messages of at most ROUTES_SIZE bytes each (routes first, then withdrawals)."""
    out: list[control.Routes] = []
    routes: list[control.RouteEntry] = []
    size = 0
    for entry in message.routes:
        entry_size = len(entry.record) + len(entry.signature) + len(entry.pubkey) + 30 * len(entry.path) + 80
        if routes and size + entry_size > ROUTES_SIZE:
            out.append(control.Routes(tuple(routes)))
            routes, size = [], 0
        routes.append(entry)
        size += entry_size
    if routes or not message.withdrawn:
        out.append(control.Routes(tuple(routes)))
    step = ROUTES_SIZE // 64  # member ids of 24 characters, quoted: well within one message
    withdrawn = message.withdrawn
    out.extend(control.Routes((), withdrawn[i:i + step]) for i in range(0, len(withdrawn), step))
    return out


class _Early:
    """A dialled peer link's owner until its port exists: what the peer sends right after its welcome
    (its whole table, in the same read) is kept and handed on, never dropped."""

    def __init__(self) -> None:
        self.messages: list[control.ControlMessage] = []
        self.port: PeerPort | None = None

    def hand_to(self, port: PeerPort) -> None:
        self.port = port
        for message in self.messages:
            port.control_received(port.link, message)
        self.messages = []

    def stream_opened(self, link: Link, sid: int, payload: bytes, window: int) -> None:
        link.refuse(sid, ErrorCode.NO_ROUTE, "not ready yet")

    def control_received(self, link: Link, message: control.ControlMessage) -> None:
        self.messages.append(message)

    def link_closed(self, link: Link, reason: str) -> None:
        pass  # before the port: the dial loop sees link.closed
