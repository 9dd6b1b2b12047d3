"""The services board without a hub: records and members in, the messages the hub sends out."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hub_fakes import make_member

from ladder.hub.directory import Directory, Origin
from ladder.hub.services import EVERYONE, Outbox, ServiceBoard
from ladder.protocol import control
from ladder.protocol.noise import generate_keypair
from ladder.protocol.records import sign_service_record, verify_service_record

RYAN, BOB = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()


class Members:
    """The members' inboxes as the hub fills them from the board's outboxes (pushes unpaced)."""

    def __init__(self, *keys_and_names):
        self.directory = Directory()
        self.board = ServiceBoard(self.directory)
        self.members = [make_member(name, key) for key, name in keys_and_names]
        self.inbox: dict[str, list[control.ControlMessage]] = {}
        self.pushes = 0
        self.board.roster_changed({m.id: m.name for m in self.members})
        for member in self.members:
            self.online(member)

    def online(self, member) -> None:
        self.inbox[member.id] = []
        self.directory.origin_up(Origin.member(member.id))
        self.deliver(self.board.member_online(member.id))

    def offline(self, member) -> None:
        del self.inbox[member.id]
        self.directory.origin_down(Origin.member(member.id))
        self.deliver(self.board.member_offline(member.id))

    def publish(self, member, *records, more=False) -> Outbox:
        message = control.Publish(tuple(control.SignedService(**r) for r in records), more)
        outbox = self.board.publish(member, message, Origin.member(member.id))
        self.deliver(outbox)
        return outbox

    def deliver(self, outbox: Outbox) -> None:
        for recipient, message in outbox.sends:
            for member_id in self.inbox if recipient is EVERYONE else [recipient]:
                self.inbox[member_id].append(message)
        if outbox.listing_changed:
            self.pushes += 1
            for inbox in self.inbox.values():
                inbox.extend(self.board.services_messages())

    def received(self, member, *types) -> list[control.ControlMessage]:
        return [m for m in self.inbox[member.id] if isinstance(m, types)]


def service(key, name, kind="http"):
    return sign_service_record(key, name, "", "", kind, generate_keypair()[1], [], 1)


def test_board_lists_only_records_the_member_signed_and_keeps_offline_publishers():
    net = Members((RYAN, "ryan"), (BOB, "bob"))
    ryan, bob = net.members
    good = service(RYAN, "blog")
    bobs = service(BOB, "evil")  # sent over ryan's link
    net.publish(ryan, good, {"record": "junk", "signature": "junk"}, bobs, good)
    (entry,) = net.board.entries()
    assert entry["name"] == "ryan" and entry["online"] is True and net.directory.publishes(ryan.id)
    last = net.inbox[bob.id][-1]
    assert isinstance(last, control.Services) and len(last.services) == 1 and last.more is False
    net.offline(ryan)
    assert net.board.entries()[0]["online"] is False and not net.directory.publishes(ryan.id)
    assert net.received(bob, control.Services)[-1].services[0].online is False  # the others hear of it


def test_board_gathers_pieces_and_an_empty_publish_withdraws():
    net = Members((RYAN, "ryan"))
    (ryan,) = net.members
    assert net.publish(ryan, service(RYAN, "a"), more=True) == Outbox()
    assert net.board.entries() == []
    net.publish(ryan, service(RYAN, "b", "tcp"))
    assert len(net.board.entries()) == 2
    assert net.publish(ryan).listing_changed
    assert net.board.entries() == []
    assert net.publish(ryan) == Outbox()  # nothing was listed and nothing is: no news


def test_a_publish_cut_short_by_going_offline_is_forgotten():
    net = Members((RYAN, "ryan"))
    (ryan,) = net.members
    net.publish(ryan, service(RYAN, "a"), more=True)
    net.offline(ryan)
    net.online(ryan)
    net.publish(ryan, service(RYAN, "b"))
    assert [verify_service_record(e).name for e in net.board.entries()] == ["b"]


def test_members_are_pushed_and_revoked_publishers_disappear():
    net = Members((RYAN, "ryan"), (BOB, "bob"))
    ryan, bob = net.members
    net.publish(ryan, service(RYAN, "blog"))
    pushed = net.received(bob, control.Members)[-1]
    assert {m.name for m in pushed.members} == {"ryan", "bob"}
    pushes = net.pushes
    net.deliver(net.board.roster_changed({bob.id: "bob"}))  # ryan was revoked
    assert net.board.entries() == [] and net.directory.names == {bob.id: "bob"}
    assert net.pushes == pushes + 1  # its services are gone: everyone hears it
    assert net.received(bob, control.Members)[-1].members == (control.MemberName(bob.id, "bob"),)


def test_a_join_reaches_the_others_as_one_member_and_the_newcomer_gets_the_list():
    net = Members((RYAN, "ryan"), (BOB, "bob"))
    carol = make_member("carol")
    for inbox in net.inbox.values():
        inbox.clear()
    net.inbox[carol.id] = []  # its link is up: it hears what everyone hears
    net.deliver(net.board.roster_changed({**net.directory.names, carol.id: "carol"}))
    net.online(carol)
    for member in net.members:  # not the whole list again: that cost N² entries per join
        joins = net.received(member, control.MemberJoined, control.Members)
        assert joins == [control.MemberJoined(carol.id, "carol")]
    full = net.received(carol, control.Members)[-1]
    assert {m.name for m in full.members} == {"ryan", "bob", "carol"}


def test_a_newcomer_gets_the_listing_itself_and_a_returning_publisher_makes_it_a_push():
    net = Members((RYAN, "ryan"), (BOB, "bob"))
    ryan, bob = net.members
    net.publish(ryan, service(RYAN, "blog"))
    net.offline(ryan)
    outbox = net.board.member_online(bob.id)  # nothing of bob's is listed: only bob needs the listing
    assert not outbox.listing_changed and {r for r, _ in outbox.sends} == {bob.id}
    assert [type(m) for _, m in outbox.sends] == [control.Members, control.Services]
    net.directory.origin_up(Origin.member(ryan.id))
    outbox = net.board.member_online(ryan.id)  # its services are online again: everyone hears it
    assert outbox.listing_changed and [type(m) for _, m in outbox.sends] == [control.Members]
