"""How the hub passes search hits between hubs: names as members here reach them, merged by score."""

from ladder.hub.search import merge, results, seen_from_here
from ladder.protocol.control import MAX_CONTROL, SearchHit, encode


def hit(url: str, host: str, hub: str, score: int = 500_000, online: bool = True) -> SearchHit:
    return SearchHit(url, "t", "s", (), score, hub, online, host)


def test_a_peer_hubs_hit_is_named_as_members_here_reach_it():
    seen = seen_from_here(hit("http://blog.carol.ladder/a/b?q=1", "blog.carol.ladder", "c"))
    assert (seen.url, seen.host) == ("http://blog.carol.c.ladder/a/b?q=1", "blog.carol.c.ladder")
    assert seen_from_here(hit("http://blog.carol.ladder", "blog.carol.ladder", "c")).url == (
        "http://blog.carol.c.ladder")


def test_hits_of_several_hubs_are_online_first_then_by_score_and_cut_to_the_limit():
    hits = [hit("http://a/", "a", "x", 1_000_000, online=False), hit("http://b/", "b", "x", 300_000),
            hit("http://c/", "c", "y", 1_000_000), hit("http://d/", "d", "y", 200_000)]
    assert [h.url for h in merge(hits, 3)] == ["http://c/", "http://b/", "http://d/"]
    assert [h.url for h in merge(hits, 10)][-1] == "http://a/"


def test_the_hits_of_one_answer_fit_one_control_message():
    hit = SearchHit("http://a.b.ladder/" + "x" * 900, "t" * 300, "s" * 600, (0, 5), 1, "h", True, "a")
    big = [hit] * 50
    message = results(big, 7)
    assert 0 < len(message.hits) < 50 and len(encode(message)) <= MAX_CONTROL and message.ref == 7
    assert results(big[:3]).hits == tuple(big[:3])
