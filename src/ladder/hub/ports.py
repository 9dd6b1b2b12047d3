"""Ports: a link and who is behind it, and the hub's routing table from destination id to port.

Every link the hub holds is a `Port`: a `MemberPort`, the link of a
member's agent, or a `DevicePort`, the hub's end of an in-memory link to
the agent the hub runs for a device without one (devices.py); a peer hub
(issue 14) will be a kind of its own. Both kinds hear the hub's control
messages (`listeners`); a device's port says nothing back, and a device
is never a destination. The hub routes a stream by
the destination id its OPEN names: `Ports.route` finds the port behind that
id and the switch splices the stream onto a new stream of that port's link.
It checks, in this order: a port is there and is a destination (the hub's
`is_destination`: today, a member that shares or publishes); the opener
holds fewer than `per_destination` live streams to it, so one member
cannot take the streams of an exit's link from the others (a channel per
exit or publisher it uses, a few while it reconnects); the far link can take
one more stream.

A member's port hands the hub its member's control messages as the link
decoded them, typed (a malformed one closed that member's link only).

One port per id: a new link from the same member takes over, and the old
one is told it was replaced (so that its agent stops instead of taking the
link back) and closed, which ends its streams as any lost link would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from ladder.link.connection import Link
from ladder.protocol import control
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.messages import decode_route, encode_route
from ladder.store.hubdb import Device, Member

from .directory import Origin
from .switch import splice


class Port:
    """A link and who is behind it: where the hub routes the streams that name `id`."""

    def __init__(self, id: str, label: str, link: Link, origin: Origin):
        self.id = id
        self.label = label  # who it is, for the log
        self.link = link
        self.origin = origin  # of the records that arrive here
        self.held: dict[str, int] = {}  # destination id → live streams this port opened to it

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


class MemberPortOwner(Protocol):
    """What a member's port reports to the hub."""

    def stream_opened(self, port: Port, sid: int, payload: bytes, window: int) -> None: ...

    def control_received(self, port: MemberPort, message: control.ControlMessage) -> None: ...

    def port_closed(self, port: Port, reason: str) -> None: ...


class Ports:
    """The hub's routing table: destination id → the port behind it."""

    def __init__(self, is_destination: Callable[[str], bool], per_destination: int,
                 on_channel: Callable[[str, int], None]):
        """`on_channel(id, ±1)`: a stream to `id` was spliced or has closed."""
        self._ports: dict[str, Port] = {}
        self._is_destination = is_destination
        self.per_destination = per_destination
        self._on_channel = on_channel

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

    def route(self, source: Port, sid: int, payload: bytes, window: int) -> None:
        """A stream `source` opened: splice it onto the port its route names, or refuse it."""
        link = source.link
        try:
            target_id, inner = decode_route(payload)
        except RemoteProtocolError as exc:
            link.refuse(sid, exc.code, str(exc))
            return
        target = self._ports.get(target_id)
        if target is None or not self._is_destination(target_id):
            link.refuse(sid, ErrorCode.NO_ROUTE, "that exit is not online")
            return
        held = source.held.get(target_id, 0)
        if held >= self.per_destination:
            link.refuse(sid, ErrorCode.MEMBER_LIMIT, f"you already hold {held} streams to that member")
            return
        if not target.link.can_open():
            link.refuse(sid, ErrorCode.BUSY, "that exit has too many streams")
            return
        source.held[target_id] = held + 1
        self._on_channel(target_id, 1)

        def closed() -> None:
            if source.held[target_id] == 1:
                del source.held[target_id]
            else:
                source.held[target_id] -= 1
            self._on_channel(target_id, -1)

        splice(link, sid, window, target.link, encode_route(source.id, inner), closed)
