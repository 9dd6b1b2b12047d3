"""The routing core: what a hub accepts from its peers, which route it prefers, and what it tells them.

A fake verifier reads a small JSON announcement from `record` and refuses a
signature of "forged", so each test builds its inputs in one line; a tiny
pump carries messages between routers until they fall silent (bounded).
"""

from __future__ import annotations

import json

import pytest

from ladder.protocol.control import RouteEntry, Routes
from ladder.protocol.envelope import RecordError
from ladder.protocol.errors import LocalProtocolError
from ladder.protocol.routing import HOP_LIMIT, ROUTE_FAILURE_MEMORY, Announcement, Router

NOW = 1_000_000.0
LIFE = 3600.0


def verify(entry: RouteEntry) -> Announcement:
    if entry.signature == "forged":
        raise RecordError("the announcement's signature does not verify")
    fields = json.loads(entry.record)
    return Announcement(fields["member"], fields["home"], fields["seq"], fields["expires"])


def entry(member: str, *path: str, seq: int = 1, expires: float = NOW + LIFE,
          home: str | None = None, signature: str = "ok") -> RouteEntry:
    record = json.dumps({"member": member, "home": home or path[0], "seq": seq, "expires": expires})
    return RouteEntry(record=record, signature=signature, pubkey="key", path=tuple(path))


def router(hub: str, *peers: str) -> Router:
    r = Router(hub, verify)
    for peer in peers:
        r.peer_up(peer, NOW)
    return r


def sent(r: Router) -> dict[str, tuple[list[tuple[str, tuple[str, ...]]], list[str]]]:
    """What `r` sends now, per peer: (member, path) of each route, and the withdrawals."""
    out = {}
    for peer, message in r.take_messages():
        out[peer] = ([(verify(e).member, e.path) for e in message.routes], list(message.withdrawn))
    return out


def via(r: Router, member: str) -> tuple[str | None, int] | None:
    best = r.best(member)
    return None if best is None else (best.via, best.hops)


class Net:
    """Routers joined by links; `pump` delivers every message until none is left."""

    def __init__(self, *links: str) -> None:
        self.routers: dict[str, Router] = {}
        for link in links:
            a, b = link
            for hub in (a, b):
                self.routers.setdefault(hub, Router(hub, verify))
            self.up(a, b)

    def up(self, a: str, b: str) -> None:
        self.routers[a].peer_up(b, NOW)
        self.routers[b].peer_up(a, NOW)

    def down(self, a: str, b: str) -> None:
        self.routers[a].peer_down(b, NOW)
        self.routers[b].peer_down(a, NOW)

    def pump(self) -> int:
        delivered = 0
        for _ in range(100):
            batch = [(hub, peer, message) for hub, r in self.routers.items()
                     for peer, message in r.take_messages()]
            if not batch:
                return delivered
            for hub, peer, message in batch:
                self.routers[peer].receive(hub, message, NOW)
                delivered += 1
        raise AssertionError("the routers did not fall silent in 100 rounds")


# ------------------------------------------------------------- what is accepted


def test_a_path_that_contains_us_is_refused_and_counted() -> None:
    a = router("A", "B")
    a.receive("B", Routes(routes=(entry("m", "C", "A", "B"),)), NOW)
    assert a.best("m") is None
    assert a.stats["B"].dropped["loop"] == 1
    assert a.stats["B"].learned == 0
    assert sent(a) == {}


def test_a_path_that_repeats_a_hub_is_refused() -> None:
    a = router("A", "B")
    a.receive("B", Routes(routes=(entry("m", "C", "D", "C", "B"),)), NOW)
    assert a.best("m") is None
    assert a.stats["B"].dropped["loop"] == 1


def test_forged_entries_are_dropped_and_counted_per_peer() -> None:
    a = router("A", "B", "C")
    a.receive("B", Routes(routes=(entry("m", "H", "B", signature="forged"),)), NOW)
    a.receive("B", Routes(routes=(entry("n", "H", "B", home="X"),)), NOW)  # signed by X, path says H
    a.receive("B", Routes(routes=(entry("o", "H", "C"),)), NOW)  # the sender did not append itself
    assert a.best("m") is None and a.best("n") is None and a.best("o") is None
    assert a.stats["B"].dropped == {"forged": 3}
    assert a.stats["C"].dropped == {}
    assert sent(a) == {}


def test_a_peer_offering_more_destinations_than_it_may_is_refused_past_the_cap_and_counted() -> None:
    """A peer announcing ever new members (benchmarks/abuse.py, routes) grew the table without end."""
    a = Router("A", verify, per_peer=3)
    a.peer_up("B", NOW)
    a.peer_up("C", NOW)
    a.receive("B", Routes(routes=tuple(entry(f"m{i}", "B") for i in range(5))), NOW)
    assert [via(a, f"m{i}") for i in range(5)] == [("B", 1)] * 3 + [None] * 2
    assert a.stats["B"].learned == 3 and a.stats["B"].dropped == {"full": 2}
    a.receive("B", Routes(routes=(entry("m0", "B", seq=2),)), NOW)  # what it holds may still be renewed
    assert a.best("m0").announcement.seq == 2 and a.stats["B"].dropped == {"full": 2}
    a.receive("C", Routes(routes=(entry("m4", "C"),)), NOW)  # another peer's share is its own
    assert via(a, "m4") == ("C", 1)


def test_a_full_peer_offering_a_new_destination_is_refused_before_its_signatures_are_checked() -> None:
    """Past the cap, each new member of a flooding peer still cost two signature checks, to be refused."""
    verified: list[str] = []

    def claims(e: RouteEntry) -> str | None:
        try:
            return json.loads(e.record)["member"]
        except ValueError:
            return None

    def counting(e: RouteEntry) -> Announcement:
        verified.append(claims(e) or "?")
        if claims(e) is None:
            raise RecordError("malformed announcement")
        return verify(e)

    a = Router("A", counting, per_peer=2, claims=claims)
    a.peer_up("B", NOW)
    a.receive("B", Routes(routes=(entry("m0", "B"), entry("m1", "B"))), NOW)
    verified.clear()
    a.receive("B", Routes(routes=(entry("m2", "B"), entry("m3", "B", signature="forged"))), NOW)
    assert verified == [] and a.stats["B"].dropped == {"full": 2} and a.best("m2") is None
    a.receive("B", Routes(routes=(entry("m0", "B", seq=2),)), NOW)  # what it holds is checked and renewed
    assert verified == ["m0"] and a.best("m0").announcement.seq == 2
    a.receive("B", Routes(routes=(RouteEntry("not json", "ok", "key", ("B",)),)), NOW)
    assert verified == ["m0", "?"]  # unreadable: verified, and refused as ever
    assert a.stats["B"].dropped == {"full": 2, "forged": 1}


def test_what_an_expired_or_withdrawn_announcement_said_is_let_go_of_and_its_number_kept() -> None:
    """A flooding peer's 10,000 members kept their records in the hub for ten minutes after its link
    went: the number of each announcement must be kept that long (replays), what it said need not."""
    import gc
    import weakref

    class Body:
        pass

    bodies = {1: Body(), 2: Body()}  # what each announcement said, by its number

    def with_body(e: RouteEntry) -> Announcement:
        ann = verify(e)
        return Announcement(ann.member, ann.home, ann.seq, ann.expires, bodies.get(ann.seq, Body()))

    a = Router("A", with_body)
    a.peer_up("B", NOW)
    a.receive("B", Routes(routes=(entry("m", "H", "B", seq=1),)), NOW)
    a.receive("B", Routes(routes=(entry("m", "H", "B", seq=2),)), NOW)
    gone = [weakref.ref(body) for body in bodies.values()]
    bodies.clear()
    a.peer_down("B", NOW)
    gc.collect()
    assert [ref() for ref in gone] == [None, None]
    a.peer_up("B", NOW)
    a.receive("B", Routes(routes=(entry("m", "H", "B", seq=1),)), NOW)  # a replay of the older one
    assert a.best("m") is None and a.stats["B"].dropped == {"stale": 1}


def test_a_path_longer_than_the_hop_limit_is_refused() -> None:
    a = router("A", "B")
    longest = [f"h{i}" for i in range(HOP_LIMIT - 1)] + ["B"]
    a.receive("B", Routes(routes=(entry("ok", *longest), entry("long", "h", *longest))), NOW)
    assert via(a, "ok") == ("B", HOP_LIMIT)
    assert a.best("long") is None
    assert a.stats["B"].dropped == {"too long": 1}


def test_an_expired_announcement_is_refused() -> None:
    a = router("A", "B")
    a.receive("B", Routes(routes=(entry("m", "H", "B", expires=NOW),)), NOW)
    assert a.best("m") is None
    assert a.stats["B"].dropped == {"expired": 1}


def test_routes_from_a_peer_that_is_not_up_are_a_caller_error() -> None:
    with pytest.raises(LocalProtocolError):
        router("A").receive("B", Routes(routes=(entry("m", "B"),)), NOW)


# ------------------------------------------------------- sequence numbers, expiry


def test_a_newer_announcement_replaces_the_older_and_an_older_one_is_stale() -> None:
    a = router("A", "B", "C")
    a.receive("B", Routes(routes=(entry("m", "H", "B", seq=5),)), NOW)
    a.take_messages()
    a.take_changes()
    a.receive("B", Routes(routes=(entry("m", "H", "B", seq=6),)), NOW)
    assert a.best("m").announcement.seq == 6
    assert a.take_changes() == {"m"}
    assert sent(a) == {"C": ([("m", ("H", "B", "A"))], [])}
    a.receive("C", Routes(routes=(entry("m", "H", "C", seq=5),)), NOW)  # a replay from another peer
    assert a.stats["C"].dropped == {"stale": 1}
    assert [r.via for r in a.routes("m")] == ["B"]
    assert sent(a) == {}


def test_the_same_announcement_again_is_ignored_silently() -> None:
    a = router("A", "B", "C")
    a.receive("B", Routes(routes=(entry("m", "H", "B"),)), NOW)
    a.take_messages()
    a.take_changes()
    a.receive("B", Routes(routes=(entry("m", "H", "B"),)), NOW)
    assert sent(a) == {}
    assert a.take_changes() == set()
    assert a.stats["B"].learned == 1
    assert a.stats["B"].dropped == {}


def test_a_reannounced_route_outlives_its_first_expiry_and_a_silent_one_is_dropped() -> None:
    a = router("A", "B", "C")
    a.receive("B", Routes(routes=(entry("kept", "H", "B", expires=NOW + 10),
                                  entry("silent", "J", "B", expires=NOW + 10))), NOW)
    a.receive("B", Routes(routes=(entry("kept", "H", "B", seq=2, expires=NOW + 20),)), NOW + 5)
    a.take_messages()
    assert a.best("silent", NOW + 10) is None  # best(now) never hands out an expired route
    a.expire(NOW + 10)
    assert a.best("kept") is not None
    assert a.best("silent") is None
    assert set(a.destinations()) == {"kept"}
    assert a.stats["B"].learned == 1
    assert sent(a) == {"C": ([], ["silent"])}


def test_an_originated_route_is_best_and_goes_to_every_peer_as_signed() -> None:
    a = router("A", "B", "C")
    a.receive("B", Routes(routes=(entry("m", "A2", "B"),)), NOW)  # the member's old home still says so
    a.originate(entry("m", "A"), NOW)
    assert via(a, "m") == (None, 0)
    assert sent(a) == {"B": ([("m", ("A",))], []), "C": ([("m", ("A",))], [])}
    a.withdraw("m")
    assert via(a, "m") == ("B", 2)
    assert sent(a) == {"C": ([("m", ("A2", "B", "A"))], []), "B": ([], ["m"])}


def test_originating_with_a_path_not_ours_is_a_caller_error() -> None:
    with pytest.raises(LocalProtocolError):
        router("A").originate(entry("m", "B"), NOW)


# ----------------------------------------------------------------- preference


def test_the_shortest_path_is_preferred_and_the_alternatives_kept() -> None:
    a = router("A", "B", "C", "D")
    a.receive("B", Routes(routes=(entry("m", "H", "X", "B"),)), NOW)
    a.receive("C", Routes(routes=(entry("m", "H", "C"),)), NOW)
    a.receive("D", Routes(routes=(entry("m", "H", "Y", "D"),)), NOW)
    assert [(r.via, r.hops) for r in a.routes("m")] == [("C", 2), ("B", 3), ("D", 3)]  # ties: lower id


def test_a_higher_seq_breaks_a_tie_in_length() -> None:
    a = router("A", "B", "C")
    a.receive("B", Routes(routes=(entry("m", "H", "B", seq=1),)), NOW)
    a.receive("C", Routes(routes=(entry("m", "H", "C", seq=2),)), NOW)
    assert via(a, "m") == ("C", 2)


def test_a_route_whose_open_failed_goes_last_then_recovers() -> None:
    a = router("A", "B", "C", "D")
    a.receive("B", Routes(routes=(entry("m", "H", "B"),)), NOW)
    a.receive("C", Routes(routes=(entry("m", "H", "X", "C"),)), NOW)
    a.take_messages()
    a.take_changes()
    a.failed("m", "B", NOW + 1)
    assert via(a, "m") == ("C", 3)
    assert a.take_changes() == {"m"}
    assert sent(a)["D"] == ([("m", ("H", "X", "C", "A"))], [])  # peers follow the route used
    a.expire(NOW + ROUTE_FAILURE_MEMORY)  # not yet
    assert via(a, "m") == ("C", 3)
    a.expire(NOW + 1 + ROUTE_FAILURE_MEMORY)
    assert via(a, "m") == ("B", 2)
    assert sent(a)["D"] == ([("m", ("H", "B", "A"))], [])


def test_failed_and_back_between_two_takes_sends_nothing() -> None:
    a = router("A", "B", "C", "D")
    a.receive("B", Routes(routes=(entry("m", "H", "B"),)), NOW)
    a.receive("C", Routes(routes=(entry("m", "H", "X", "C"),)), NOW)
    a.take_messages()
    a.failed("m", "B", NOW)
    a.expire(NOW + ROUTE_FAILURE_MEMORY)
    assert via(a, "m") == ("B", 2)
    assert sent(a) == {}


# ------------------------------------------------------------ what peers hear


def test_split_horizon_the_peer_in_the_path_is_not_told() -> None:
    a = router("A", "B", "C")
    a.receive("B", Routes(routes=(entry("m", "H", "B"),)), NOW)
    assert sent(a) == {"C": ([("m", ("H", "B", "A"))], [])}


def test_split_horizon_a_peer_that_was_told_gets_a_withdrawal_when_it_enters_the_path() -> None:
    a = router("A", "B", "C")
    a.receive("B", Routes(routes=(entry("m", "H", "B"),)), NOW)
    a.take_messages()
    a.failed("m", "B", NOW)  # C was told our route via B; then C's own route wins
    a.receive("C", Routes(routes=(entry("m", "H", "C"),)), NOW)
    assert via(a, "m") == ("C", 2)
    assert sent(a) == {"B": ([("m", ("H", "C", "A"))], []), "C": ([], ["m"])}


def test_a_peer_coming_up_is_told_the_whole_table_except_what_it_is_in() -> None:
    a = router("A", "B")
    a.originate(entry("own", "A"), NOW)
    a.receive("B", Routes(routes=(entry("m", "H", "B"), entry("n", "C", "B"))), NOW)
    a.take_messages()
    a.peer_up("C", NOW)
    assert sent(a) == {"C": ([("own", ("A",)), ("m", ("H", "B", "A"))], [])}


def test_an_announcement_then_a_withdrawal_between_takes_cancel_out() -> None:
    a = router("A", "B", "C")
    a.receive("B", Routes(routes=(entry("m", "H", "B"),)), NOW)
    a.receive("B", Routes(withdrawn=("m",)), NOW)
    assert sent(a) == {}
    assert a.best("m") is None


def test_a_later_announcement_replaces_a_queued_one() -> None:
    a = router("A", "B", "C", "D")
    a.receive("B", Routes(routes=(entry("m", "H", "X", "B"),)), NOW)
    a.receive("C", Routes(routes=(entry("m", "H", "C"),)), NOW)
    assert sent(a)["D"] == ([("m", ("H", "C", "A"))], [])


def test_a_withdrawal_from_a_peer_removes_only_its_route() -> None:
    a = router("A", "B", "C", "D")
    a.receive("B", Routes(routes=(entry("m", "H", "B"),)), NOW)
    a.receive("C", Routes(routes=(entry("m", "H", "X", "C"),)), NOW)
    a.take_messages()
    a.receive("C", Routes(withdrawn=("m", "unknown")), NOW)
    assert [r.via for r in a.routes("m")] == ["B"]
    assert sent(a) == {}  # the best did not change
    a.receive("B", Routes(withdrawn=("m",)), NOW)
    assert a.routes("m") == []
    assert sent(a) == {"C": ([], ["m"]), "D": ([], ["m"])}
    assert a.take_changes() == {"m"}


def test_peer_down_withdraws_its_routes_and_uses_the_alternative() -> None:
    a = router("A", "B", "C", "D")
    a.receive("B", Routes(routes=(entry("m", "H", "B"), entry("only", "J", "B"))), NOW)
    a.receive("C", Routes(routes=(entry("m", "H", "X", "C"),)), NOW)
    a.take_messages()
    a.take_changes()
    a.peer_down("B", NOW)
    assert via(a, "m") == ("C", 3)
    assert a.best("only") is None
    assert a.take_changes() == {"m", "only"}
    assert a.stats["B"].learned == 0
    assert sent(a) == {"C": ([], ["m", "only"]), "D": ([("m", ("H", "X", "C", "A"))], ["only"])}


# ------------------------------------------------------------ several routers


def test_a_line_learns_every_destination_and_loses_it_when_the_home_withdraws() -> None:
    net = Net("AB", "BC", "CD")
    net.routers["A"].originate(entry("m", "A"), NOW)
    net.pump()
    assert [via(net.routers[h], "m") for h in "BCD"] == [("A", 1), ("B", 2), ("C", 3)]
    net.routers["A"].withdraw("m")
    net.pump()
    assert [net.routers[h].best("m") for h in "BCD"] == [None, None, None]


def test_withdrawal_on_peer_loss_reaches_hubs_further_away() -> None:
    net = Net("AB", "BC", "CD")
    net.routers["A"].originate(entry("m", "A"), NOW)
    net.pump()
    net.down("A", "B")
    net.pump()
    assert [net.routers[h].best("m") for h in "BCD"] == [None, None, None]
    assert all(r.stats[p].learned == 0 for r in net.routers.values() for p in r.stats)


def test_a_square_converges_and_routes_around_a_lost_link() -> None:
    net = Net("AB", "BC", "AD", "DC")
    for hub in "ABCD":
        net.routers[hub].originate(entry(f"m{hub}", hub), NOW)
    net.pump()
    a, b = net.routers["A"], net.routers["B"]
    assert via(a, "mC") == ("B", 2)  # B and D tie at two hops: the lower id
    assert [r.via for r in a.routes("mC")] == ["B", "D"]
    assert via(a, "mB") == ("B", 1) and via(a, "mD") == ("D", 1)
    assert via(b, "mD") == ("A", 2)  # through A or C: the lower id
    net.down("C", "B")
    net.pump()
    assert via(a, "mC") == ("D", 2)
    assert a.best("mC").entry.path == ("C", "D")
    assert via(net.routers["B"], "mC") == ("A", 3)
    assert via(net.routers["C"], "mB") == ("D", 3)
    net.up("C", "B")
    net.pump()
    assert via(a, "mC") == ("B", 2)
    assert via(net.routers["B"], "mC") == ("C", 1)


def test_a_ring_settles_on_shortest_paths_after_a_hub_dies() -> None:
    hubs = "ABCDEF"
    net = Net(*(hubs[i] + hubs[(i + 1) % len(hubs)] for i in range(len(hubs))))
    for hub in hubs:
        net.routers[hub].originate(entry(f"m{hub}", hub), NOW)
    net.pump()
    assert via(net.routers["A"], "mD") == ("B", 3)
    net.down("B", "C")
    net.down("A", "B")
    del net.routers["B"]
    net.pump()
    a = net.routers["A"]
    assert via(a, "mC") == ("F", 4)
    assert a.best("mB") is None
    assert all("B" not in r.entry.path for hub, x in net.routers.items()
               for m in x.destinations() for r in x.routes(m))


def test_a_refused_update_withdraws_what_that_peer_offered_before() -> None:
    a = router("A", "B", "C")
    too_long = [f"h{i}" for i in range(HOP_LIMIT - 1)] + ["B"]
    a.receive("B", Routes(routes=(entry("m", "H", "B"), entry("n", "H", "B"),
                                  entry("o", "H", "B", seq=3))), NOW)
    a.take_messages()
    a.receive("B", Routes(routes=(entry("m", "H", *too_long),  # its path grew past the hop limit
                                  entry("n", "H", "A", "B"),  # it goes through us now
                                  entry("o", "H", "B", seq=2))), NOW)  # it fell back to an older one
    assert a.best("m") is None and a.best("n") is None and a.best("o") is None
    assert a.stats["B"].dropped == {"too long": 1, "loop": 1, "stale": 1}
    assert a.stats["B"].learned == 0
    assert sent(a) == {"C": ([], ["m", "n", "o"])}


def test_a_peer_that_comes_up_again_starts_afresh() -> None:
    a = router("A", "B", "C")
    a.receive("B", Routes(routes=(entry("m", "H", "B"),)), NOW)
    a.take_messages()
    a.peer_up("B", NOW + 1)  # a new link without a peer_down first: what the old one said is gone
    assert a.best("m") is None
    assert a.stats["B"].learned == 0
    assert sent(a) == {"C": ([], ["m"])}


def test_our_own_expired_announcement_is_dropped_too() -> None:
    a = router("A", "B")
    a.originate(entry("m", "A", expires=NOW + 10), NOW)
    a.take_messages()
    a.expire(NOW + 10)
    assert a.best("m") is None
    assert sent(a) == {"B": ([], ["m"])}
    assert list(a.destinations()) == []
