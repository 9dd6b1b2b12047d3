"""Ports and the hub's routing table without sockets: routing a destination, takeover, the limits."""

from __future__ import annotations

import asyncio
from collections import Counter

from fedlink import control_frame, fed_link, goaway
from hub_fakes import FakeLink, make_member

from ladder.hub.directory import Origin
from ladder.hub.hub import STREAMS_PER_DESTINATION
from ladder.hub.ports import MemberPort, Ports
from ladder.protocol import control
from ladder.protocol.errors import ErrorCode
from ladder.protocol.messages import decode_route, encode_route


class Hub:
    """The routing table wired as the hub wires it: streams are routed, a port that goes is removed."""

    def __init__(self):
        self.destinations: set[str] = set()  # who shares or publishes
        self.channels: Counter[str] = Counter()
        self.gone: list[tuple[MemberPort, bool]] = []  # (port, whether it was still routed to)
        self.said: list[tuple[MemberPort, object]] = []
        self.ports = Ports(self.destinations.__contains__, STREAMS_PER_DESTINATION, self._channel)

    def _channel(self, member_id: str, change: int) -> None:
        self.channels[member_id] += change

    def connect(self, name: str, member=None, room: bool = True, link=None) -> MemberPort:
        link = link or FakeLink(room)
        port = MemberPort(member or make_member(name), link, self)
        link.owner = port
        self.ports.add(port)
        return port

    def stream_opened(self, port, sid, payload, window):
        self.ports.route(port, sid, payload, window)

    def control_received(self, port, message):
        self.said.append((port, message))

    def port_closed(self, port, reason):
        self.gone.append((port, self.ports.remove(port)))


def open_to(port: MemberPort, target_id: str, sid: int, inner: bytes = b"noise message 1") -> None:
    port.link.owner.stream_opened(port.link, sid, encode_route(target_id, inner), 65536)


def test_a_stream_is_spliced_to_the_port_its_route_names_with_the_route_rewritten_to_the_opener():
    hub = Hub()
    user, exit_ = hub.connect("user"), hub.connect("exit")
    hub.destinations.add(exit_.id)
    open_to(user, exit_.id, 1)
    ((payload, far_end, window),) = exit_.link.opened
    assert decode_route(payload) == (user.id, b"noise message 1") and window == 65536
    assert user.link.claimed[1].other is far_end  # a reset while the exit answers reaches the splice
    assert not user.link.refused and hub.channels[exit_.id] == 1 and user.held == {(user.id, exit_.id): 1}


def test_no_route_to_a_port_that_is_not_there_or_is_no_destination_and_a_bad_route_is_refused():
    hub = Hub()
    user, other = hub.connect("user"), hub.connect("other")
    open_to(user, "nobody", 1)
    open_to(user, other.id, 3)  # online, but it neither shares nor publishes
    user.link.owner.stream_opened(user.link, 5, b"\x09short", 65536)
    assert user.link.refused == {1: (ErrorCode.NO_ROUTE, "that exit is not online"),
                                 3: (ErrorCode.NO_ROUTE, "that exit is not online"),
                                 5: (ErrorCode.BAD_REQUEST, "route shorter than its length byte says")}
    assert not other.link.opened and not hub.channels


def test_one_member_holds_at_most_the_limit_of_streams_to_one_destination():
    hub = Hub()
    mallory, alice = hub.connect("mallory"), hub.connect("alice")
    exit_, other_exit = hub.connect("exit"), hub.connect("other")
    hub.destinations.update({exit_.id, other_exit.id})
    for i in range(STREAMS_PER_DESTINATION + 1):
        open_to(mallory, exit_.id, 2 * i + 1)
    last = 2 * STREAMS_PER_DESTINATION + 1
    assert mallory.link.refused == {
        last: (ErrorCode.MEMBER_LIMIT, f"you already hold {STREAMS_PER_DESTINATION} streams to that member")}
    assert len(exit_.link.opened) == STREAMS_PER_DESTINATION
    open_to(alice, exit_.id, 1)  # the others get through
    open_to(mallory, other_exit.id, 101)  # and so does mallory, to another member
    assert not alice.link.refused and len(exit_.link.opened) == STREAMS_PER_DESTINATION + 1
    assert len(other_exit.link.opened) == 1
    # One of mallory's streams ends (the exit refuses it): it may open one more.
    exit_.link.opened[0][1].on_refused(ErrorCode.FORBIDDEN, "not for you")
    assert mallory.link.refused[1] == (ErrorCode.FORBIDDEN, "not for you")
    assert mallory.held[mallory.id, exit_.id] == STREAMS_PER_DESTINATION - 1
    assert hub.channels[exit_.id] == STREAMS_PER_DESTINATION  # mallory's 7 and alice's 1
    open_to(mallory, exit_.id, 201)
    assert 201 not in mallory.link.refused and mallory.held[mallory.id, exit_.id] == STREAMS_PER_DESTINATION


def test_a_destination_whose_link_takes_no_more_streams_is_busy():
    hub = Hub()
    user, exit_ = hub.connect("user"), hub.connect("exit", room=False)
    hub.destinations.add(exit_.id)
    open_to(user, exit_.id, 1)
    assert user.link.refused == {1: (ErrorCode.BUSY, "that exit has too many streams")}
    assert user.held == {} and not hub.channels


def test_a_new_link_from_the_same_member_takes_over_and_the_old_one_is_told_and_closed():
    hub = Hub()
    member = make_member("exit")
    old = hub.connect("exit", member)
    user = hub.connect("user")
    hub.destinations.add(member.id)
    open_to(user, member.id, 1)
    new = hub.connect("exit", member)
    assert old.link.sent == [control.Replaced()] and old.link.closed
    assert hub.gone == [(old, True)]  # it went as any port goes, before the new one came in
    assert hub.ports.get(member.id) is new and new.origin == old.origin == Origin.member(member.id)
    assert not hub.ports.remove(old)  # a late word from the old link does not unroute the new one
    assert hub.ports.get(member.id) is new
    open_to(user, member.id, 3)
    assert len(new.link.opened) == 1
    assert [p.id for p in hub.ports.listeners()] == [user.id, member.id]


def test_a_port_that_goes_is_no_longer_routed_to():
    hub = Hub()
    user, exit_ = hub.connect("user"), hub.connect("exit")
    hub.destinations.add(exit_.id)
    exit_.link.close()
    assert hub.gone == [(exit_, True)] and exit_.id not in hub.ports
    open_to(user, exit_.id, 1)
    assert user.link.refused[1][0] == ErrorCode.NO_ROUTE


def test_a_members_control_messages_reach_the_hub_from_its_port_and_a_malformed_one_closes_that_link_only():
    async def main():
        hub = Hub()
        alice, bob = hub.connect("alice"), hub.connect("bob", link=fed_link(None, "member bob")[0])
        alice.link.owner.control_received(alice.link, control.ShareStatus(accepting=False, reason="cap"))
        alice.link.owner.control_received(alice.link, control.Unknown("from-a-newer-agent"))
        bob.link.data_received(control_frame(b'{"type":"share-status","accepting":"yes","reason":""}'))
        return hub, alice, bob, goaway(bob.link.transport)

    hub, alice, bob, (code, _) = asyncio.run(main())
    assert hub.said == [(alice, control.ShareStatus(accepting=False, reason="cap")),
                        (alice, control.Unknown("from-a-newer-agent"))]
    assert code == ErrorCode.PROTOCOL_ERROR and bob.link.closed and hub.gone == [(bob, True)]
    assert not alice.link.closed and hub.ports.get(alice.id) is alice
