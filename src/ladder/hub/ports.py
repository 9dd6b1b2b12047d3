"""Ports: a link and who is behind it, and the hub's routing table from destination id to port.

Every link the hub holds is a `Port`: a `MemberPort`, the link of a
member's agent, a `DevicePort`, the hub's end of an in-memory link to
the agent the hub runs for a device without one (devices.py), or a
`PeerPort`, the link to a peer hub (peers.py). Members' and devices' ports
hear the hub's control messages (`listeners`); a device's port says nothing
back, and a device is never a destination. The hub routes a stream by
the destination id its OPEN names: `Ports.route` finds the port behind that
id and the switch splices the stream onto a new stream of that port's link.
It checks, in this order: a port is there and is a destination (the hub's
`is_destination`: a member that shares or publishes), or else a peer hub
is the next hop towards it (`next_hop`, from the routes between hubs); the
opener holds fewer than `per_destination` live streams to it, so one member
cannot take the streams of an exit's link from the others (a channel per
exit or publisher it uses, a few while it reconnects); the far link can take
one more stream.

A stream from a peer hub names its destination, who opened it (a member of
another hub) and how many more hubs it may cross; at zero it is refused, so
a loop between hubs that disagree for a moment cannot circulate it. A stream
sent on to a peer is given `PEER_ANSWER` seconds to be answered: a hub on
the way that drops streams, or has no route after all, makes the route fail
(`on_route_failed`), and the next open goes another way.

A member's port hands the hub its member's control messages as the link
decoded them, typed (a malformed one closed that member's link only).

One port per id: a new link from the same member takes over, and the old
one is told it was replaced (so that its agent stops instead of taking the
link back) and closed, which ends its streams as any lost link would.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ladder.link.connection import Link
from ladder.protocol import control
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.messages import decode_peer_route, decode_route, encode_peer_route, encode_route
from ladder.protocol.routing import HOP_LIMIT
from ladder.store.hubdb import Device, Member, Peer

from .directory import Origin
from .switch import SpliceEnd, splice


class Port:
    """A link and who is behind it: where the hub routes the streams that name `id`."""

    def __init__(self, id: str, label: str, link: Link, origin: Origin):
        self.id = id
        self.label = label  # who it is, for the log
        self.link = link
        self.origin = origin  # of the records that arrive here
        # (opener's id, destination id) → live streams opened through this port; the opener is the port's
        # member, or for a peer hub's port a member of another hub
        self.held: dict[tuple[str, str], int] = {}

    def replaced(self) -> None:
        """A new port took this id: close this one, telling whoever is behind it why."""
        raise NotImplementedError


class MemberPort(Port):
    """A member's agent's link; it owns the link and hands what arrives to the hub with itself."""

    def __init__(self, member: Member, link: Link, owner: MemberPortOwner):
        super().__init__(member.id, member.name, link, Origin.member(member.id))
        self.member = member
        self.owner = owner

    def replaced(self) -> None:
        self.link.send_control(control.Replaced())  # so that its agent stops instead of taking the link back
        self.link.close(ErrorCode.NO_ERROR, "replaced by a new link from the same member")

    # LinkOwner

    def stream_opened(self, link: Link, sid: int, payload: bytes, window: int) -> None:
        self.owner.stream_opened(self, sid, payload, window)

    def control_received(self, link: Link, message: control.ControlMessage) -> None:
        self.owner.control_received(self, message)

    def link_closed(self, link: Link, reason: str) -> None:
        self.owner.port_closed(self, reason)


class DevicePort(Port):
    """The hub's end of the link to the agent it runs for a device: streams it opens are routed as a
    member's are, under the device's id."""

    def __init__(self, device: Device, link: Link, owner: MemberPortOwner):
        super().__init__(device.id, device.label, link, Origin.member(device.id))
        self.device = device
        self.owner = owner

    def replaced(self) -> None:
        self.link.close(ErrorCode.NO_ERROR, "replaced by a new session of the same device")

    # LinkOwner

    def stream_opened(self, link: Link, sid: int, payload: bytes, window: int) -> None:
        self.owner.stream_opened(self, sid, payload, window)

    def control_received(self, link: Link, message: control.ControlMessage) -> None:
        pass  # the hub's own agent for a device shares and publishes nothing

    def link_closed(self, link: Link, reason: str) -> None:
        self.owner.port_closed(self, reason)


class PeerPort(Port):
    """The link to a peer hub: routes come and go on it, and streams between members of the two sides."""

    def __init__(self, peer: Peer, hub_id: str, link: Link, owner: PeerPortOwner):
        super().__init__(hub_id, f"peer {peer.name}", link, Origin("peer", hub_id))
        self.peer = peer
        self.owner = owner

    def replaced(self) -> None:
        self.link.close(ErrorCode.NO_ERROR, "replaced by a new link from the same peer hub")

    # LinkOwner

    def stream_opened(self, link: Link, sid: int, payload: bytes, window: int) -> None:
        self.owner.stream_opened(self, sid, payload, window)

    def control_received(self, link: Link, message: control.ControlMessage) -> None:
        self.owner.peer_control(self, message)

    def link_closed(self, link: Link, reason: str) -> None:
        self.owner.peer_closed(self, reason)


class PeerPortOwner(Protocol):
    def stream_opened(self, port: Port, sid: int, payload: bytes, window: int) -> None: ...

    def peer_control(self, port: PeerPort, message: control.ControlMessage) -> None: ...

    def peer_closed(self, port: PeerPort, reason: str) -> None: ...


class MemberPortOwner(Protocol):
    """What a member's port reports to the hub."""

    def stream_opened(self, port: Port, sid: int, payload: bytes, window: int) -> None: ...

    def control_received(self, port: MemberPort, message: control.ControlMessage) -> None: ...

    def port_closed(self, port: Port, reason: str) -> None: ...


@dataclass(frozen=True, eq=False)
class Splice:
    """A channel the hub spliced: who opened it through which port, where it went, and its two ends."""

    source: Port
    source_id: str  # the opener: a member, a device, or another hub's member
    target: Port
    target_id: str  # the member it goes to (here, or beyond the peer hub `target`)
    message1: bytes  # the channel's Noise message 1, whose first bytes name it (receipts.channel_id)
    opener_end: SpliceEnd  # what arrives here came from the opener
    far_end: SpliceEnd  # what arrives here goes to the opener


OnSpliced = Callable[[Splice], Callable[[], None]]
PEER_ANSWER = 8.0  # seconds a stream sent on to a peer hub may wait for its answer


class Ports:
    """The hub's routing table: destination id → the port behind it (or the peer hub towards it)."""

    def __init__(self, is_destination: Callable[[str], bool], per_destination: int,
                 on_channel: Callable[[str, int], None],
                 next_hop: Callable[[str, str | None], Port | None] = lambda target, came_from: None,
                 on_route_failed: Callable[[str, str], None] = lambda target, peer: None,
                 on_spliced: OnSpliced | None = None):
        """`on_channel(id, ±1)`: a stream to `id` was spliced or has closed. `next_hop(id, came_from)`: the
        peer hub's port towards a member of another hub (not the peer hub it came from);
        `on_route_failed(id, peer hub id)`: a stream sent that way was not answered; `on_spliced`:
        a channel was spliced (the credits' record of it), returning what to call once it closed."""
        self._ports: dict[str, Port] = {}
        self._is_destination = is_destination
        self.per_destination = per_destination
        self._on_channel = on_channel
        self._next_hop = next_hop
        self._on_route_failed = on_route_failed
        self._on_spliced = on_spliced
        # For the hub's metrics: streams refused here by reason, spliced, and the bytes they carried
        # (of closed splices; open ones are added up when asked, from their ends).
        self.refused: collections.Counter[str] = collections.Counter()
        self.spliced = 0
        self._open: dict[SpliceEnd, SpliceEnd] = {}  # opener's end -> far end
        self._carried = [0, 0]  # by closed splices: from openers, to openers

    def __iter__(self) -> Iterator[Port]:
        return iter(list(self._ports.values()))  # a port may go while the caller sends to each

    def __contains__(self, port_id: str) -> bool:
        return port_id in self._ports

    def listeners(self) -> list[MemberPort | DevicePort]:
        """The ports of agents, members' and the hub's own for devices: who hears the hub's control
        messages."""
        return [port for port in self._ports.values() if isinstance(port, (MemberPort, DevicePort))]

    def get(self, port_id: str) -> Port | None:
        return self._ports.get(port_id)

    def add(self, port: Port) -> None:
        """Route `port.id` to `port`; a port already there is told it was replaced, and closes, first."""
        old = self._ports.get(port.id)
        if old is not None:
            old.replaced()  # its link's close reports it to the hub as any port that goes
        self._ports[port.id] = port

    def remove(self, port: Port) -> bool:
        """Stop routing to `port`; False if it was not the current port of its id (replaced already)."""
        if self._ports.get(port.id) is not port:
            return False
        del self._ports[port.id]
        return True

    def open_streams(self) -> int:
        return len(self._open)

    def carried(self) -> tuple[int, int]:
        """Bytes relayed since the hub started: (from openers to where they went, back to openers)."""
        up, down = self._carried
        for opener, far in self._open.items():
            up, down = up + opener.carried, down + far.carried
        return up, down

    def _refuse(self, link: Link, sid: int, code: ErrorCode, reason: str) -> None:
        self.refused[code.name.lower()] += 1
        link.refuse(sid, code, reason)

    def route(self, source: Port, sid: int, payload: bytes, window: int) -> None:
        """A stream `source` opened: splice it onto the port its route names, or refuse it."""
        link = source.link
        try:
            if isinstance(source, PeerPort):
                hops, target_id, source_id, inner = decode_peer_route(payload)
            else:
                hops, (target_id, inner), source_id = HOP_LIMIT, decode_route(payload), source.id
        except RemoteProtocolError as exc:
            return self._refuse(link, sid, exc.code, str(exc))
        target = self._ports.get(target_id)
        on_failed = None
        if target is not None and self._is_destination(target_id):
            forward = encode_route(source_id, inner)
        elif hops == 0:
            return self._refuse(link, sid, ErrorCode.NO_ROUTE, "the stream crossed too many hubs")
        elif (target := self._next_hop(target_id, source.id if isinstance(source, PeerPort) else None)):
            forward = encode_peer_route(hops - 1, target_id, source_id, inner)
            peer_id = target.id

            def on_failed() -> None:
                self._on_route_failed(target_id, peer_id)
        else:
            return self._refuse(link, sid, ErrorCode.NO_ROUTE, "that exit is not online")
        key = source_id, target_id
        held = source.held.get(key, 0)
        if held >= self.per_destination:
            return self._refuse(link, sid, ErrorCode.MEMBER_LIMIT,
                                f"you already hold {held} streams to that member")
        if not target.link.can_open():
            return self._refuse(link, sid, ErrorCode.BUSY, "that exit has too many streams")
        source.held[key] = held + 1
        self._on_channel(target_id, 1)

        gone: Callable[[], None] | None = None

        def closed() -> None:
            if source.held[key] == 1:
                del source.held[key]
            else:
                source.held[key] -= 1
            self._on_channel(target_id, -1)
            opener, far = ends
            self._open.pop(opener, None)
            self._carried[0] += opener.carried
            self._carried[1] += far.carried
            if gone is not None:
                gone()

        ends = splice(link, sid, window, target.link, forward, closed, on_failed,
                      None if on_failed is None else PEER_ANSWER)
        self._open[ends[0]] = ends[1]
        self.spliced += 1
        if self._on_spliced is not None:
            gone = self._on_spliced(Splice(source, source_id, target, target_id, inner, *ends))
