"""Search end to end: members publish sites, the hub's crawler reads them through channels, and a user
finds a page by a word of its body with `ladder search`, the JSON API and the search page in Chromium.

Real processes (hubs, publishers' and users' agents), curl and Chromium; the sites run in this test
process on loopback and record every request they get, so that what the crawler fetched is known.
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.parse

import pytest
from harness import Network, curl, ladder, peer, peers, wait_for

CHROMIUM = shutil.which("chromium")


class Site:
    """A small web site on loopback: `pages` path → HTML (or text for robots.txt); requests recorded."""

    def __init__(self, pages: dict[str, str]):
        self.pages = pages
        self.requests: list[str] = []
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                site.requests.append(self.path)
                body = site.pages.get(self.path)
                kind = "text/plain" if self.path == "/robots.txt" else "text/html; charset=utf-8"
                data = (body or "<html><body>not here</body></html>").encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a visitor gone mid-answer (its publisher stopped, say) is no news here

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def html(title: str, body: str, links: tuple[str, ...] = ()) -> str:
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    return (f"<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>"
            f"<p>{body}</p><nav>{anchors}</nav></body></html>")


@pytest.fixture
def sites():
    made: list[Site] = []

    def make(pages: dict[str, str]) -> Site:
        made.append(Site(pages))
        return made[-1]

    yield make
    for site in made:
        site.close()


def search(member, words: str) -> list[dict]:
    return json.loads(ladder("search", words, "--dir", str(member.folder), "--json").stdout)


def publish(member, site: Site, name: str, *args: str) -> None:
    ladder("publish", "--dir", str(member.folder), site.address, "--name", name, *args)


def found(member, words: str, url: str) -> dict | None:
    return next((r for r in search(member, words) if r["url"] == url), None)


def test_three_sites_a_body_word_found_by_the_cli_the_json_api_and_the_search_page(network, sites):
    alice, bob, carol = (network.user(n) for n in ("alice", "bob", "carol"))
    blog = sites({"/": html("Alice's garden", "Tomatoes and beans.", ("/deep.html",)),
                  "/deep.html": html("Compost notes", "A heap turned quixotically every week.")})
    recipes = sites({"/": html("Bob's kitchen", "Dumplings, noodles and a garden salad.")})
    poems = sites({"/": html("诗社", "我们的诗歌俱乐部每周见面。", ("/search.html",)),
                   "/search.html": html("关于本站", "本站的搜索引擎可以找到两个字的词。")})
    user = network.user("user")
    started = time.monotonic()
    publish(alice, blog, "blog", "--title", "Alice's garden", "--keywords", "garden,compost")
    publish(bob, recipes, "kitchen", "--title", "Bob's kitchen", "--lang", "en")
    publish(carol, poems, "poems", "--title", "诗社", "--lang", "zh-CN")

    deep = "http://blog.alice.ladder/deep.html"
    hit = wait_for(lambda: found(user, "quixotically", deep), 60, "the body word to be searchable")
    took = time.monotonic() - started
    print(f"\na new site was searchable by a word of its second page after {took:.1f} s")
    assert hit["title"] == "Compost notes" and hit["hub"] == "testhub" and hit["online"] is True
    assert "quixotically" in hit["snippet"] and 0 < hit["score"] <= 1
    assert {"url", "title", "snippet", "score", "hub", "online"} <= hit.keys()
    assert wait_for(lambda: found(user, "搜索", "http://poems.carol.ladder/search.html"), 60,
                    "a two-character Chinese word to find its page")
    # "garden" is in the kitchen's body only: wait for its crawl too, which may end last.
    wait_for(lambda: found(user, "garden", "http://kitchen.bob.ladder/"), 60, "the kitchen to be crawled")
    garden = [r["url"] for r in search(user, "garden")]
    assert "http://blog.alice.ladder/" in garden and "http://kitchen.bob.ladder/" in garden
    assert garden.index("http://blog.alice.ladder/") < garden.index("http://kitchen.bob.ladder/")  # title

    api = curl("-s", "-x", user.socks, "http://search.testhub.ladder/api/search?q=quixotically")
    results = json.loads(api.stdout)
    assert [r["url"] for r in results][:1] == [deep] and results[0]["hub"] == "testhub"
    assert results[0] == found(user, "quixotically", deep)  # `ladder search --json` says the same

    if CHROMIUM is None:
        pytest.fail("Debian's chromium is required by the search page test (.ci/run installs it)")
    host, port = user.proxy
    page = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--proxy-server=socks5://{host}:{port}", f"--user-data-dir={network.root / 'chromium'}",
         "--dump-dom", "http://search.testhub.ladder/?q=" + urllib.parse.quote("quixotically")],
        check=False, capture_output=True, text=True, timeout=60)
    assert f'href="{deep}"' in page.stdout, page.stdout[-2000:] + page.stderr[-2000:]
    assert "Compost notes" in page.stdout

    assert blog.requests[0] == "/robots.txt" and "/deep.html" in blog.requests


def test_no_index_and_robots_disallow_keep_the_crawler_out_and_offline_sinks(network, sites):
    alice, bob, carol = (network.user(n) for n in ("alice", "bob", "carol"))
    private = sites({"/": html("Private", "Nobody should find this zeppelin.")})
    closed = sites({"/robots.txt": "User-agent: *\nDisallow: /\n",
                    "/": html("Closed", "A robots file keeps this zeppelin out.")})
    first = sites({"/": html("Airships one", "A zeppelin over the lake.")})
    second = sites({"/": html("Airships two", "A zeppelin over the hills.")})
    user = network.user("user")
    publish(alice, private, "private", "--no-index")
    publish(alice, closed, "closed")
    publish(bob, first, "one")
    publish(carol, second, "two")

    wait_for(lambda: len(search(user, "zeppelin")) >= 2, 60, "both open sites to be crawled")
    wait_for(lambda: closed.requests, 30, "the closed site's robots.txt to be read")
    time.sleep(2)  # twice the crawler's interval: time for its next request, had it made one
    assert private.requests == []  # --no-index: never fetched at all
    assert closed.requests == ["/robots.txt"]
    urls = [r["url"] for r in search(user, "zeppelin")]
    assert "http://private.alice.ladder/" not in urls and "http://closed.alice.ladder/" not in urls

    carol.proc.stop()  # its site goes offline with its publisher
    wait_for(lambda: [r["online"] for r in search(user, "zeppelin")] == [True, False], 30,
             "the offline site to sink below the online one")
    assert search(user, "zeppelin")[1]["url"] == "http://two.carol.ladder/"

    ladder("hub", "search", "delist", "one.bob", "--dir", str(network.hub_dir))
    assert "http://one.bob.ladder/" not in [r["url"] for r in search(user, "zeppelin")]
    listed = json.loads(ladder("hub", "search", "--dir", str(network.hub_dir), "--json").stdout)
    assert {r["host"]: r["delisted"] for r in listed}["one.bob.ladder"] is True


def test_a_query_at_one_hub_finds_pages_of_both_peered_hubs_each_marked_with_its_hub(tmp_path, sites):
    a, c = Network(tmp_path / "a", name="a"), Network(tmp_path / "c", name="c")
    try:
        peer(a, c, "c")
        wait_for(lambda: all(p["up"] for p in peers(a).values()) and peers(a), 20, "the peer link")
        here, there = a.user("alice"), c.user("carol")
        publish(here, sites({"/": html("Lighthouse at a", "The lighthouse keeper's log.")}), "log")
        publish(there, sites({"/": html("Lighthouse at c", "A lighthouse on the far coast.")}), "coast")
        user = a.user("user")
        wait_for(lambda: {r["hub"] for r in search(user, "lighthouse")} == {"a", "c"}, 60,
                 "results from both hubs")
        by_hub = {r["hub"]: r["url"] for r in search(user, "lighthouse")}
        # Each under the name it is reached by from hub a: carol is "carol.c" here.
        assert by_hub == {"a": "http://log.alice.ladder/", "c": "http://coast.carol.c.ladder/"}
        page = curl("-s", "-x", user.socks, by_hub["c"])
        assert "A lighthouse on the far coast." in page.stdout.decode()
    finally:
        for net in (a, c):
            net.close()


def test_no_words_too_many_words_and_a_hub_that_is_down_are_each_one_line(network):
    alice = str(network.join("alice"))
    for words, says in (("", "give the words to search for"), ("  ", "give the words to search for"),
                        ("x" * 1001, "1,001 characters long: at most 1,000")):
        refused = ladder("search", words, "--dir", alice, "--json", check=False)
        assert (refused.returncode, refused.stdout) == (1, ""), refused
        assert len(refused.stderr.splitlines()) == 1 and refused.stderr.startswith("ladder: error: ")
        assert says in refused.stderr, refused.stderr
    assert ladder("search", "x" * 1000, "--dir", alice, "--json").stdout.strip() == "[]"
    network.hub.stop()
    down = ladder("search", "garden", "--dir", alice, check=False)
    assert down.returncode == 1 and len(down.stderr.splitlines()) == 1, down.stderr
    assert "connection refused (is the hub running?)" in down.stderr, down.stderr
