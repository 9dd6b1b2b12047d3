"""What the hub's search indexes from the listing its member hears: this hub's HTTP services that let it
in, crawls queued for new records only, and a service missing from the listing kept a while as offline."""

from __future__ import annotations

import logging
import sqlite3
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.agent.names import ServiceListing
from ladder.agent.roster import Roster
from ladder.hub import search
from ladder.protocol.control import ServiceEntry
from ladder.protocol.envelope import b64
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.noise import generate_keypair
from ladder.protocol.records import sign_service_record
from ladder.search.index import SearchIndex

CRAWLER = "c" * 24
ALICE = Ed25519PrivateKey.generate()


def entry(name: str, issued: int = 1, online: bool = True, hub: str = "", kind: str = "http",
          index: bool = True, access: tuple[str, ...] = ()) -> ServiceEntry:
    signed = sign_service_record(ALICE, name, name.title(), "", kind, generate_keypair()[1], list(access),
                                 issued, index=index)
    return ServiceEntry(member_id(public_bytes(ALICE)), signed["record"], signed["signature"],
                        b64(public_bytes(ALICE)), "alice", online, hub)


@pytest.fixture
def hub_search(tmp_path):
    found = search.Search(SimpleNamespace(name="tokyo", folder=tmp_path), None, None, None)
    found.index = SearchIndex(tmp_path / "search.db")
    yield found
    found.index.close()


def hear(found: search.Search, *entries: ServiceEntry) -> list[str]:
    """The listing `entries` reaches the search; the keys it queued for a crawl."""
    listing = ServiceListing({}, CRAWLER, Roster())
    listing.update(entries)
    found.listing_changed(listing, CRAWLER)
    queued = []
    while not found.queue.empty():
        queued.append(found.queue.get_nowait().split("/")[1])
    found.queued.clear()
    return queued


def hosts(found: search.Search) -> dict[str, bool]:
    return {s.host: s.online for s in found.index.services()}


def test_only_this_hubs_http_services_that_let_the_crawler_in_are_indexed(hub_search):
    queued = hear(hub_search, entry("blog"), entry("ssh", kind="tcp"), entry("far", hub="osaka"),
                  entry("private", index=False), entry("club", access=("someone" + "x" * 17,)))
    assert queued == ["blog"] and hosts(hub_search) == {"blog.alice.ladder": True}


def test_a_new_record_is_crawled_again_and_the_same_one_is_not(hub_search):
    assert hear(hub_search, entry("blog", issued=1)) == ["blog"]
    assert hear(hub_search, entry("blog", issued=1, online=False)) == []
    assert hosts(hub_search) == {"blog.alice.ladder": False}
    assert hear(hub_search, entry("blog", issued=2)) == ["blog"]


def test_a_service_missing_from_the_listing_is_offline_a_while_then_forgotten(hub_search, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(search.time, "monotonic", lambda: now[0])
    hear(hub_search, entry("blog"))
    assert hear(hub_search) == [] and hosts(hub_search) == {"blog.alice.ladder": False}
    assert hear(hub_search, entry("blog")) == []  # back (a restarted hub's publisher): no crawl again
    assert hosts(hub_search) == {"blog.alice.ladder": True}
    hear(hub_search)
    now[0] += search.ABSENT_GRACE
    hear(hub_search)
    assert hosts(hub_search) == {}



def test_services_renamed_flat_out_leave_at_most_absent_max_behind(hub_search, monkeypatch):
    """A publisher replacing its services with new names (benchmarks/abuse.py, records) once grew the
    index by every name it ever used for ABSENT_GRACE, and each listing walked all of them."""
    monkeypatch.setattr(search, "ABSENT_MAX", 5)
    for round_ in range(4):
        hear(hub_search, *(entry(f"s{round_}x{i}") for i in range(3)))
    kept = hosts(hub_search)
    assert len(kept) == 3 + 5, kept
    assert all(kept[f"s3x{i}.alice.ladder"] for i in range(3))  # the listed ones, online
    assert not any(host.startswith("s0x") for host in kept)  # the longest missing went first


def test_a_service_is_crawled_again_after_revisit_unless_offline_or_delisted(hub_search, monkeypatch):
    now = [2_000_000_000.0]
    monkeypatch.setattr(search.time, "time", lambda: now[0])
    assert hear(hub_search, entry("blog"), entry("shop"), entry("gone")) == ["blog", "shop", "gone"]
    for key in [s.key for s in hub_search.index.services()]:
        hub_search.index.mark_crawled(key, now[0])

    def revisited() -> list[str]:
        hub_search._revisit()
        queued = []
        while not hub_search.queue.empty():
            queued.append(hub_search.queue.get_nowait().split("/")[1])
        hub_search.queued.clear()
        return sorted(queued)

    now[0] += search.REVISIT - 1
    assert revisited() == []
    assert hear(hub_search, entry("blog"), entry("shop"), entry("gone", online=False)) == []
    assert hub_search.index.delist("shop.alice")
    now[0] += 2
    assert revisited() == ["blog"]


def test_an_index_that_cannot_be_written_is_a_warning_and_the_next_listing_indexes_it(hub_search, monkeypatch,
                                                                                      caplog):
    """A full disk under the index raised out of the search member's link (a traceback, every listing)."""
    def full(*args):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(hub_search.index, "put_service", full)
    with caplog.at_level(logging.WARNING, logger="ladder.hub.search"):
        assert hear(hub_search, entry("blog")) == []
    assert caplog.messages == ["search: cannot index the services: database or disk is full"]
    monkeypatch.undo()
    assert hear(hub_search, entry("blog")) == ["blog"] and hosts(hub_search) == {"blog.alice.ladder": True}
