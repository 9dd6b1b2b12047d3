"""A query across hubs at the hub's Search: this hub's hits and those of the peers that answer in time,
merged and each marked with its hub; a peer that stays silent is named as missing, not waited for; a
peer's query is answered from this hub's index alone (one hop)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from ladder.hub import search
from ladder.protocol import control
from ladder.search.index import SearchIndex, Service


class Peer:
    """A peer hub's port as Search sees it: what it was sent, and an answer it gives or not."""

    def __init__(self, name: str, found: search.Search, hits: tuple[control.SearchHit, ...] | None):
        self.id, self.peer = f"id-{name}", SimpleNamespace(name=name)
        self.link = SimpleNamespace(send_control=self.send_control)
        self.found, self.hits = found, hits
        self.sent: list[control.ControlMessage] = []

    def send_control(self, message: control.ControlMessage) -> None:
        self.sent.append(message)
        if self.hits is not None and isinstance(message, control.SearchRequest):
            answer = control.SearchResults(self.hits, message.ref)
            asyncio.get_running_loop().call_soon(self.found.from_peer, self, answer)


@pytest.fixture
def hub_search(tmp_path):
    peers: list[Peer] = []
    found = search.Search(SimpleNamespace(name="tokyo", folder=tmp_path), None,
                          SimpleNamespace(peer_ports=lambda: peers), None)
    found.index = SearchIndex(tmp_path / "search.db")
    blog = Service("alice/blog", "blog.alice.ladder", "tokyo", "Alice's blog", "", (), "en", 1)
    found.index.put_service(blog)
    found.index.put_page(blog.key, "http://blog.alice.ladder/keeper", "Keeper", "", "a lighthouse keeper",
                         "en", 1.0)
    found.peers = peers
    yield found
    found.index.close()


def hit(host: str, hub: str, score: int, online: bool = True) -> control.SearchHit:
    return control.SearchHit(f"http://{host}/", "t", "a lighthouse", (2, 12), score, hub, online, host)


def test_hits_of_peers_that_answer_are_merged_and_a_silent_peer_is_named_missing(hub_search, monkeypatch):
    monkeypatch.setattr(search, "PEER_DEADLINE", 0.2)
    osaka = Peer("osaka", hub_search, (hit("coast.carol.ladder", "osaka", 1_000_000),
                                       hit("old.dave.ladder", "osaka", 1_000_000, online=False)))
    silent = Peer("kyoto", hub_search, None)
    hub_search.peers.extend([osaka, silent])
    answer = asyncio.run(asyncio.wait_for(hub_search.query("lighthouse", 10), 10))
    assert [(h.url, h.hub, h.online) for h in answer.hits] == [
        ("http://blog.alice.ladder/keeper", "tokyo", True),
        ("http://coast.carol.osaka.ladder/", "osaka", True),  # the name members of tokyo reach it by
        ("http://old.dave.osaka.ladder/", "osaka", False),  # offline sinks, whatever its score
    ]
    assert answer.missing == ("kyoto",)
    assert [m.query for m in osaka.sent + silent.sent] == ["lighthouse", "lighthouse"]
    assert hub_search._asked == {}  # nothing left waiting for the silent peer


def test_a_late_answer_is_dropped_and_a_peers_query_is_answered_from_here_alone(hub_search, monkeypatch):
    monkeypatch.setattr(search, "PEER_DEADLINE", 0.05)
    late = Peer("kyoto", hub_search, None)
    hub_search.peers.append(late)
    answer = asyncio.run(asyncio.wait_for(hub_search.query("lighthouse", 10), 10))
    assert answer.missing == ("kyoto",)
    hub_search.from_peer(late, control.SearchResults((hit("x.y.ladder", "kyoto", 1),), late.sent[0].ref))
    asking = Peer("osaka", hub_search, None)
    hub_search.from_peer(asking, control.SearchRequest("lighthouse", 5, 9))
    (reply,) = asking.sent
    assert isinstance(reply, control.SearchResults) and reply.ref == 9
    assert [h.url for h in reply.hits] == ["http://blog.alice.ladder/keeper"]
    assert late.sent == [control.SearchRequest("lighthouse", 10, late.sent[0].ref)]  # not asked on
