"""The hub's directory without a hub: exit and service records with their origins, the roster, the message."""

from __future__ import annotations

import json
import random

from ladder.hub.directory import Directory, ExitListing, Origin
from ladder.protocol import control

ALICE, BOB = Origin.member("alice-id"), Origin.member("bob-id")


def record(n: int) -> dict:
    return {"record": f"r{n}", "signature": f"s{n}", "pubkey": "k"}


def exit_of(origin: Origin, n: int = 1, country: str = "AA") -> ExitListing:
    return ExitListing(origin.port, origin.port.removesuffix("-id"), country, record(n), origin)


def test_an_exit_is_listed_replaced_and_the_same_record_again_is_no_news():
    directory = Directory()
    assert directory.list_exit(exit_of(ALICE))
    assert not directory.list_exit(exit_of(ALICE))  # said again: nothing for anyone to hear
    assert directory.list_exit(exit_of(ALICE, 2, "BB"))
    assert directory.exits_message() == control.Directory((
        control.ExitEntry("alice-id", "alice", "BB", 0, **record(2)),))


def test_the_message_keeps_the_wire_order_of_fields_and_counts_channels():
    directory = Directory()
    directory.list_exit(exit_of(ALICE))
    for _ in range(3):
        directory.count_channel("alice-id", 1)
    directory.count_channel("alice-id", -1)
    directory.count_channel("bob-id", 1)  # a publisher's channels count too, listed as an exit or not
    (entry,) = json.loads(control.encode(directory.exits_message()))["exits"]
    assert list(entry) == ["id", "name", "country", "users", "record", "signature", "pubkey", "hub", "hops"]
    assert entry["users"] == 2
    directory.count_channel("bob-id", -1)
    assert "bob-id" not in directory.users  # nothing kept for members nobody uses


def test_a_capped_exit_is_left_out_until_it_accepts_again_and_a_new_record_keeps_its_cap():
    directory = Directory()
    directory.list_exit(exit_of(ALICE))
    directory.list_exit(exit_of(BOB))
    directory.set_accepting("alice-id", False)
    assert [x.id for x in directory.exits_message().exits] == ["bob-id"]
    assert "alice-id" in directory.exits  # still a destination: the exit refuses new streams itself
    directory.list_exit(exit_of(ALICE, 2))
    assert [x.id for x in directory.exits_message().exits] == ["bob-id"]
    directory.set_accepting("alice-id", True)
    assert [x.id for x in directory.exits_message().exits] == ["alice-id", "bob-id"]


def test_an_origin_going_down_withdraws_its_exits_only_and_shows_its_services_offline():
    directory = Directory()
    for origin in (ALICE, BOB):
        directory.origin_up(origin)
        directory.list_exit(exit_of(origin))
        directory.list_services(origin.port, [{"id": origin.port, "record": "x"}], origin)
    assert directory.publishes("alice-id") and directory.publishes("bob-id")
    assert directory.origin_down(ALICE)
    assert list(directory.exits) == ["bob-id"]
    assert "alice-id" in directory.services and not directory.publishes("alice-id")
    assert directory.services["alice-id"].origin == ALICE and not directory.is_up(ALICE)
    assert not directory.origin_down(ALICE)  # nothing more to withdraw
    directory.origin_up(ALICE)
    assert directory.publishes("alice-id")  # back: its services are online again
    assert "alice-id" not in directory.exits  # its exit only once it shares again


def test_a_publisher_withdraws_by_listing_nothing():
    directory = Directory()
    assert not directory.list_services("alice-id", [], ALICE)  # nothing was listed and nothing is
    assert directory.list_services("alice-id", [{"id": "alice-id"}], ALICE)
    assert directory.list_services("alice-id", [], ALICE)
    assert directory.services == {}


def test_the_roster_drops_the_services_of_members_no_longer_in_it():
    directory = Directory()
    directory.list_services("alice-id", [{"id": "alice-id"}], ALICE)
    directory.list_services("bob-id", [{"id": "bob-id"}], BOB)
    assert directory.set_roster({"alice-id": "alice", "bob-id": "bob"}) == set()
    assert directory.set_roster({"bob-id": "bob"}) == {"alice-id"}
    assert list(directory.services) == ["bob-id"] and directory.names == {"bob-id": "bob"}


def test_origins_are_equal_by_kind_and_port():
    assert Origin.member("x") == Origin("member", "x") and Origin.member("x") != Origin("peer", "x")
    assert len({Origin.member("x"), Origin.member("x")}) == 1


def test_an_exit_saying_its_cap_again_is_no_news():
    """A member repeating share-status made the hub log a line and push the directory each time."""
    directory = Directory()
    directory.list_exit(exit_of(ALICE))
    assert directory.set_accepting("alice-id", False)
    assert not directory.set_accepting("alice-id", False)
    assert directory.set_accepting("alice-id", True)
    assert not directory.set_accepting("bob-id", False)  # not listed: nothing to say it of


def test_a_directory_of_more_exits_than_one_message_holds_keeps_the_nearest_that_fit():
    """A peer hub offering thousands of exits made every directory push raise (larger than a frame), so
    members heard no directory any more (benchmarks/abuse.py, routes)."""
    directory = Directory()
    big = {"record": "r" * 400, "signature": "s" * 88, "pubkey": "k" * 44}
    directory.list_exit(ExitListing("alice-id", "alice", "AA", big, ALICE))
    for i in range(400):
        far = Origin("peer", f"hub{i % 3}")
        directory.list_exit(ExitListing(f"far{i}-id", f"far{i}", "BB", big, far, hub="far", hops=1 + i % 3))
    message = directory.exits_message()
    assert len(control.encode(message)) <= control.MAX_CONTROL
    kept = [x.id for x in message.exits]
    assert kept[0] == "alice-id" and 50 < len(kept) < 401
    hops = [x.hops for x in message.exits]
    assert max(hops[1:]) - min(hops[1:]) <= 1  # nearer hubs' exits go first


def test_the_message_is_made_again_only_when_what_it_shows_changes():
    """Every push and every member coming online made the message anew: with a peer's 10,000 exits,
    most of a second of the hub's loop each time (benchmarks/abuse.py, routes)."""
    directory = Directory()
    directory.list_exit(exit_of(ALICE))
    first = directory.exits_message()
    assert directory.exits_message() is first
    directory.list_exit(exit_of(ALICE))  # the same record again
    directory.count_channel("bob-id", 1)  # a member that is not listed as an exit
    directory.set_accepting("bob-id", False)
    assert directory.exits_message() is first
    directory.count_channel("alice-id", 1)
    assert directory.exits_message().exits[0].users == 1
    directory.set_accepting("alice-id", False)
    assert directory.exits_message().exits == ()
    directory.set_accepting("alice-id", True)
    carol = ExitListing("carol-id", "carol.far", "CC", record(3), Origin("peer", "hub1"), hub="far", hops=1)
    directory.set_remote("carol-id", carol, None)
    assert [x.id for x in directory.exits_message().exits] == ["alice-id", "carol-id"]
    directory.set_remote("carol-id", None, None)
    assert [x.id for x in directory.exits_message().exits] == ["alice-id"]
    directory.origin_down(ALICE)
    assert directory.exits_message().exits == ()


def test_a_message_made_from_kept_entries_is_the_one_a_fresh_directory_makes():
    big = {"record": "r" * 400, "signature": "s" * 88, "pubkey": "k" * 44}
    directory = Directory()
    rng = random.Random(7)
    for step in range(300):  # listings, replacements, counts, caps and withdrawals, of ever more exits
        i = rng.randrange(min(10 + step, 180))
        kind = rng.randrange(6)
        if kind < 2:
            listing = ExitListing(f"x{i}", f"x{i}", "BB", {**big, "record": f"{step}" + "r" * 400},
                                  Origin("peer", f"hub{i % 3}"), hub="far", hops=1 + i % 4)
            directory.set_remote(listing.id, listing, None)
        elif kind < 4:
            directory.count_channel(f"x{i}", 1 if kind == 2 or not directory.users[f"x{i}"] else -1)
        elif kind == 4:
            directory.set_accepting(f"x{i}", rng.random() < 0.7)
        else:
            directory.set_remote(f"x{i}", None, None)
        fresh = Directory()
        for listing in directory.exits.values():
            fresh.list_exit(ExitListing(listing.id, listing.name, listing.country, dict(listing.record),
                                        listing.origin, listing.accepting, listing.hub, listing.hops))
        fresh.users = directory.users.copy()
        assert directory.exits_message() == fresh.exits_message(), f"step {step}"
    assert len(control.encode(directory.exits_message())) <= control.MAX_CONTROL
