"""The index on small hand-made corpora: what ranks above what, what is never returned, and what a
stranger's query cannot break."""

from __future__ import annotations

import pytest

from ladder.search.index import SearchIndex, Service

T = 1_800_000_000.0


def service(name: str, member: str = "alice", title: str = "", keywords: tuple[str, ...] = (),
            description: str = "", seq: int = 1) -> Service:
    return Service(f"{member}/{name}", f"{name}.{member}.ladder", "tokyo", title, description, keywords, "",
                   seq)


@pytest.fixture
def index(tmp_path):
    made = SearchIndex(tmp_path / "search.db")
    yield made
    made.close()


def page(index, svc: Service, path: str, title: str = "", headings: str = "", body: str = "") -> str:
    url = f"http://{svc.host}{path}"
    index.put_page(svc.key, url, title, headings, body, None, T)
    return url


def urls(index, query: str) -> list[str]:
    return [r.url for r in index.search(query)]


def test_a_record_is_searchable_at_once_and_its_root_page_takes_its_row(index):
    blog = service("blog", title="Alice's garden", keywords=("compost",), description="Beans and peas.")
    assert index.put_service(blog)
    assert urls(index, "compost") == urls(index, "peas") == ["http://blog.alice.ladder/"]
    page(index, blog, "/", "Welcome", body="Tomatoes grow here.")
    assert urls(index, "tomatoes") == ["http://blog.alice.ladder/"]
    assert urls(index, "compost") == ["http://blog.alice.ladder/"]  # the record's words stay with its root
    assert len(index.search("compost tomatoes")) == 1


def test_a_new_seq_says_recrawl_and_the_same_record_does_not(index):
    assert index.put_service(service("blog"))
    assert not index.put_service(service("blog", title="changed, same seq"))
    assert index.put_service(service("blog", seq=2))


def test_title_beats_headings_beats_body(index):
    svc = service("a")
    index.put_service(svc)
    body = page(index, svc, "/body", "one", body="lanterns " + "filler words " * 20)
    heading = page(index, svc, "/heading", "two", headings="lanterns", body="filler words " * 20)
    title = page(index, svc, "/title", "lanterns", body="filler words " * 20)
    assert urls(index, "lanterns") == [title, heading, body]


def test_every_word_first_then_any_and_words_are_stemmed(index):
    svc = service("a")
    index.put_service(svc)
    both = page(index, svc, "/both", body="red kites over the hill")
    one = page(index, svc, "/one", body="red paint")
    assert urls(index, "red kites") == [both]
    assert urls(index, "red kiting") == [both]  # Porter: kites, kiting → kite
    assert set(urls(index, "red balloons")) == {both, one}
    assert urls(index, "kites or the hill") == [both]  # stop words are not required of a page...
    assert urls(index, "the") == [both]  # ... nor dropped when there is nothing else


def test_an_offline_service_sinks_below_every_online_one_and_a_delisted_one_is_gone(index):
    strong, weak = service("strong", title="zeppelin zeppelin"), service("weak", member="bob")
    for svc in (strong, weak):
        index.put_service(svc)
    page(index, strong, "/z", "zeppelin", body="zeppelin zeppelin zeppelin")
    page(index, weak, "/z", body="one zeppelin among many other words here")
    assert urls(index, "zeppelin")[0].startswith("http://strong.")
    index.set_online(strong.key, False)
    results = index.search("zeppelin")
    assert results[-1].host == "strong.alice.ladder" and not results[-1].online
    assert all(r.online for r in results if r.host == "weak.bob.ladder")
    assert index.delist("strong.alice") and not index.delist("nothing.here")
    assert all(r.host != "strong.alice.ladder" for r in index.search("zeppelin"))
    assert [s.delisted for s in index.services() if s.host == "strong.alice.ladder"] == [True]
    assert index.relist("strong.alice.ladder") and not index.relist("strong.alice.ladder")


def test_chinese_two_character_words_match_inside_longer_ones_and_are_marked(index):
    svc = service("poems", member="carol")
    index.put_service(svc)
    url = page(index, svc, "/s", "关于本站", body="我们的搜索引擎可以找到两个字的词。")
    hit = index.search("搜索")[0]
    assert hit.url == url and hit.snippet == "我们的搜索引擎可以找到两个字的词。"
    assert (3, 5) in hit.marks and hit.snippet[3:5] == "搜索"
    assert urls(index, "搜索引擎") == [url] and urls(index, "引擎 search") == [url]


def test_scores_are_normalised_to_the_best_and_snippets_mark_the_words(index):
    svc = service("a")
    index.put_service(svc)
    page(index, svc, "/1", "otters", body="otters play")
    page(index, svc, "/2", body="a river with otters in it and much else besides")
    results = index.search("otters")
    assert results[0].score == 1.0 and 0 < results[1].score < 1.0
    second = results[1]
    assert [second.snippet[a:b].lower() for a, b in second.marks] == ["otters"]
    assert set(second.json()) == {"url", "title", "snippet", "marks", "score", "hub", "online", "host"}


@pytest.mark.parametrize("query", ['"', "AND", "*", "NEAR(", "a OR", "title:x", "-", "^x", "((", "\x00", ""])
def test_fts_syntax_from_a_stranger_never_raises(index, query):
    svc = service("a")
    index.put_service(svc)
    page(index, svc, "/", body="and or near title")
    assert isinstance(index.search(query), list)


def test_a_crawl_forgets_pages_it_did_not_find_and_removal_forgets_the_service(index):
    svc = service("a", title="Alpha site")
    index.put_service(svc)
    kept, gone = page(index, svc, "/kept", body="walrus"), page(index, svc, "/gone", body="walrus")
    index.keep_pages(svc.key, {kept})
    assert urls(index, "walrus") == [kept] and urls(index, "alpha") == ["http://a.alice.ladder/"]
    assert gone not in urls(index, "walrus")
    index.mark_crawled(svc.key, T)
    assert [(s.pages, s.crawled) for s in index.services()] == [(1, T)]
    index.remove_service(svc.key)
    assert index.search("walrus") == [] and index.services() == []


def test_a_page_cannot_mark_words_of_its_own(index):
    svc = service("a")
    index.put_service(svc)
    page(index, svc, "/", body="plain \x02fake\x03 highlight and the word otter")
    hit = index.search("otter")[0]
    assert [hit.snippet[a:b] for a, b in hit.marks] == ["otter"]
