"""Tests for ladder.search.crawl: one service crawled over real loopback connections, politely and in bounds.

Each test starts its own HTTP server on 127.0.0.1 (`Site`), whose routes are
canned answers or coroutines for the hostile ones (a tar-pit, a 1 GB page, a
link maze); the crawler opens a connection to it for every request, as it
opens a channel stream in the hub. The server records what was asked.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

import pytest
from fakeclock import FakeClock

from ladder.search.crawl import READ, USER_AGENT, Crawler, Limits

HOST = "blog.alice.ladder"
FAST = Limits(interval=0.0, request_timeout=2.0, deadline=10.0)
Handler = Callable[[asyncio.StreamWriter], Awaitable[None]]


def answer(body: bytes | str, content_type: str = "text/html; charset=utf-8", status: str = "200 OK",
           headers: str = "") -> bytes:
    data = body.encode() if isinstance(body, str) else body
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
            f"{headers}\r\n").encode() + data


def links(*targets: str, extra: str = "") -> bytes:
    anchors = "".join(f'<a href="{t}">{t}</a>' for t in targets)
    return answer(f"<html><title>links</title><body>{extra}{anchors}</body></html>")


def redirect(location: str, status: str = "301 Moved Permanently") -> bytes:
    return f"HTTP/1.1 {status}\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()


def run_async(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """The test, run on an event loop of its own and given 20 s at most."""
    @functools.wraps(test)
    def run(*args: object, **kwargs: object) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 20))
    return run


NO_ROBOTS = answer("not here", "text/plain", "404 Not Found")


class Site:
    """An HTTP server on loopback: route → canned bytes or a handler; every request's target is recorded."""

    def __init__(self, routes: dict[str, bytes | Handler], clock: FakeClock | None = None):
        self.routes = routes
        self.clock = clock
        self.targets: list[str] = []
        self.heads: list[bytes] = []
        self.times: list[float] = []  # on the fake clock, when there is one
        self.handlers: set[asyncio.Task[None]] = set()  # still answering (a hostile one may be writing on)

    async def __aenter__(self) -> Site:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    def crawler(self, limits: Limits = FAST, **kwargs) -> Crawler:
        return Crawler(HOST, self.open, limits, **kwargs)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ")[1].decode()
            self.targets.append(target)
            self.heads.append(head)
            if self.clock is not None:
                self.times.append(self.clock())
            route = self.routes.get(target, answer("no such page", "text/plain", "404 Not Found"))
            if isinstance(route, bytes):
                writer.write(route)
                await writer.drain()
            else:
                await route(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the crawler hung up, as it does on a hostile site
        except asyncio.CancelledError:
            pass  # the test is over
        finally:
            writer.close()
            self.handlers.discard(task)


async def crawl(crawler: Crawler) -> list[str]:
    return [page.url async for page in crawler.pages()]


def url(target: str) -> str:
    return f"http://{HOST}{target}"


@run_async
async def test_follows_links_within_the_host_breadth_first():
    routes = {
        "/robots.txt": NO_ROBOTS,
        "/": links("/a", "b?x=1", "http://other.ladder/", "/a#frag", f"http://{HOST.upper()}:80/c", "/pic"),
        "/a": links("/c", "/", "/a/../d"),
        "/b?x=1": answer("plain words", "text/plain"),
        "/c": links("/"),
        "/d": answer("<title>D</title>"),
        "/pic": answer(b"\x89PNG" * 100, "image/png"),
    }
    async with Site(routes) as site:
        crawler = site.crawler()
        assert await crawl(crawler) == [url("/"), url("/a"), url("/b?x=1"), url("/c"), url("/d")]
    assert site.targets == ["/robots.txt", "/", "/a", "/b?x=1", "/c", "/pic", "/d"]
    assert crawler.stats.requests == 7 and crawler.stats.pages == 5
    head = site.heads[1].decode().lower()
    for line in (f"host: {HOST}", f"user-agent: {USER_AGENT.lower()}", "accept-encoding: identity",
                 "connection: close"):
        assert line in head


@run_async
async def test_disallow_all_is_never_fetched_beyond_robots_txt():
    routes = {"/robots.txt": answer("User-agent: *\nDisallow: /\n", "text/plain"), "/": links("/a")}
    async with Site(routes) as site:
        crawler = site.crawler()
        assert await crawl(crawler) == []
    assert site.targets == ["/robots.txt"]
    assert crawler.stats.robots_disallowed_all


@run_async
async def test_disallowed_paths_are_never_requested():
    robots = "User-agent: *\nDisallow: /\nUser-agent: LadderBot\nDisallow: /private\nAllow: /private/open\n"
    routes = {"/robots.txt": answer(robots, "text/plain"),
              "/": links("/private/secret", "/private/open", "/public", "/private?x")}
    async with Site(routes) as site:
        crawler = site.crawler()
        await crawl(crawler)
    assert site.targets == ["/robots.txt", "/", "/private/open", "/public"]
    assert not crawler.stats.robots_disallowed_all


@pytest.mark.parametrize(("robots", "fetched"), [
    (answer("gone", "text/plain", "404 Not Found"), True),  # RFC 9309 §2.3.1.3: unavailable, crawl it all
    (answer("", "text/plain", "403 Forbidden"), True),
    (answer("down", "text/plain", "503 Service Unavailable"), False),  # §2.3.1.4: unreachable, fetch nothing
    (b"this is not HTTP\r\n\r\n", False),
    (redirect("/elsewhere.txt"), False),  # followed within the host, to a Disallow: /
    (redirect("http://other.ladder/robots.txt"), True),  # off the host: unavailable
])
@run_async
async def test_what_robots_txt_answers_decides(robots, fetched):
    routes = {"/robots.txt": robots, "/elsewhere.txt": answer("User-agent: *\nDisallow: /", "text/plain"),
              "/": answer("<p>home</p>")}
    async with Site(routes) as site:
        crawler = site.crawler()
        assert await crawl(crawler) == ([url("/")] if fetched else [])
    assert ("/" in site.targets) is fetched
    assert crawler.stats.robots_disallowed_all is not fetched


@run_async
async def test_an_unreachable_site_is_not_crawled():
    async with Site({}) as site:
        port = site.port
    async def refused() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", port)
    crawler = Crawler(HOST, refused, FAST)
    assert await crawl(crawler) == []
    assert crawler.stats.robots_disallowed_all and crawler.stats.requests == 1
    assert "/robots.txt" in crawler.stats.errors[0]


def chain(n: int, robots: bytes = NO_ROBOTS) -> dict[str, bytes]:
    routes: dict[str, bytes] = {"/robots.txt": robots, "/": links("/p1")}
    for i in range(1, n):
        routes[f"/p{i}"] = links(f"/p{i + 1}")
    return routes


def fake_time() -> tuple[FakeClock, Callable[[float], Awaitable[None]], list[float]]:
    clock, slept = FakeClock(), []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)
        await asyncio.sleep(0)
    return clock, sleep, slept


@pytest.mark.parametrize(("delay_line", "gap"), [
    ("", 1.0),  # at most a request a second
    ("Crawl-delay: 2.5\n", 2.5),  # the site asks more
    ("Crawl-delay: 0.1\n", 1.0),  # or less, which is not taken
    ("Crawl-delay: 3600\n", 4.0),  # up to max_delay
])
@run_async
async def test_requests_are_spaced(delay_line, gap):
    clock, sleep, slept = fake_time()
    robots = answer(f"User-agent: *\n{delay_line}Disallow: /nothing\n", "text/plain")
    limits = Limits(interval=1.0, max_delay=4.0, request_timeout=2.0)
    async with Site(chain(5, robots), clock) as site:
        crawler = site.crawler(limits, clock=clock, sleep=sleep)
        assert len(await crawl(crawler)) == 5
    # robots.txt, /, /p1 … /p4 and /p5 (not found): the delay holds from robots.txt on.
    gaps = [b - a for a, b in zip(site.times, site.times[1:], strict=False)]
    assert gaps == pytest.approx([gap] * 6)
    assert sum(slept) == pytest.approx(site.times[-1] - site.times[0])


@run_async
async def test_the_deadline_ends_the_crawl():
    clock, sleep, _ = fake_time()
    async with Site(chain(50), clock) as site:
        crawler = site.crawler(Limits(interval=1.0, deadline=4.5), clock=clock, sleep=sleep)
        pages = await crawl(crawler)
    assert len(site.targets) == 5  # robots.txt at 0 s, pages at 1, 2, 3, 4; the next would start at 5
    assert len(pages) == 4


@run_async
async def test_noindex_pages_are_followed_not_yielded_and_nofollow_pages_yielded_not_followed():
    routes = {
        "/robots.txt": NO_ROBOTS,
        "/": links("/hidden", "/shy", extra='<meta name="robots" content="noindex">'),
        "/hidden": links("/from-hidden", extra='<meta name="LadderBot" content="noindex">'),
        "/shy": links("/from-shy", extra='<meta name="robots" content="nofollow">'),
        "/from-hidden": answer("<p>found</p>"),
    }
    async with Site(routes) as site:
        assert await crawl(site.crawler()) == [url("/shy"), url("/from-hidden")]
    assert "/from-shy" not in site.targets


@run_async
async def test_redirects_within_the_host_are_followed_at_most_five_in_a_row():
    routes = {
        "/robots.txt": NO_ROBOTS,
        "/": redirect("/home"),
        "/home": links("/away", "/loop1", "/r1", "/again"),
        "/away": redirect("http://other.ladder/x", "302 Found"),
        "/loop1": redirect("/loop2", "307 Temporary Redirect"), "/loop2": redirect("/loop1"),
        "/again": redirect("/home", "308 Permanent Redirect"),
    }
    for i in range(1, 9):
        routes[f"/r{i}"] = redirect(f"/r{i + 1}")
    routes["/r9"] = answer("<p>too far</p>")
    async with Site(routes) as site:
        crawler = site.crawler()
        assert await crawl(crawler) == [url("/home")]
    assert site.targets == ["/robots.txt", "/", "/home", "/away", "/loop1", "/loop2",
                            "/r1", "/r2", "/r3", "/r4", "/r5", "/r6", "/again"]
    assert any("off the site" in e for e in crawler.stats.errors)
    assert any("/r6: more than 5 redirects" in e for e in crawler.stats.errors)


def chunked(body: bytes, size: int = 7) -> bytes:
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                      for i in range(0, len(body), size))
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + (
        b"0\r\nX-Trailer: t\r\n\r\n")


@run_async
async def test_the_three_body_framings_read_alike():
    html = b"<title>Same</title><p>one body, three ways</p>"
    routes = {"/robots.txt": NO_ROBOTS, "/": links("/length", "/chunked", "/close"),
              "/length": answer(html), "/chunked": chunked(html),
              "/close": b"HTTP/1.1 200 OK\ncontent-type: text/html\n\n" + html,
              "/interim": b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + answer(html)}
    routes["/"] = links("/length", "/chunked", "/close", "/interim")
    async with Site(routes) as site:
        pages = [page async for page in site.crawler().pages()][1:]
    assert [(p.title, p.body) for p in pages] == [("Same", "one body, three ways")] * 4


@run_async
async def test_broken_responses_are_noted_and_the_crawl_goes_on():
    routes = {
        "/robots.txt": NO_ROBOTS,
        "/": links("/garbage", "/big-head", "/two-lengths", "/short", "/bad-chunk", "/folded", "/ok"),
        "/garbage": b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        "/big-head": b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 100_000 + b"\r\n\r\n",
        "/two-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "/short": b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 500\r\n\r\n<p>only this",
        "/bad-chunk": b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"zz\r\n",
        "/folded": b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n folded\r\n\r\n<p>x",
        "/ok": answer("<p>fine</p>"),
    }
    async with Site(routes) as site:
        crawler = site.crawler()
        assert await crawl(crawler) == [url("/"), url("/ok")]
    assert [e.split(":")[0] for e in crawler.stats.errors] == [
        "/garbage", "/big-head", "/two-lengths", "/short", "/bad-chunk", "/folded"]


# The hostile sites.

async def tar_pit(writer: asyncio.StreamWriter) -> None:
    """Answers one byte a second, for ever (bounded here at a minute, so the test cannot hang)."""
    for byte in (answer("<p>" + "slow " * 100) * 2)[:60]:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(1.0)


@run_async
async def test_a_tar_pit_times_out_and_the_crawl_goes_on():
    # Without the request timeout the pit would hold the crawl for a minute, beyond run_async's 20 s.
    routes = {"/robots.txt": NO_ROBOTS, "/": links("/slow", "/ok"), "/slow": tar_pit,
              "/ok": answer("<p>ok</p>")}
    async with Site(routes) as site:
        crawler = site.crawler(Limits(interval=0.0, request_timeout=1.0, deadline=10.0))
        assert await crawl(crawler) == [url("/"), url("/ok")]
        assert site.targets == ["/robots.txt", "/", "/slow", "/ok"]
    assert crawler.stats.errors == ["/slow: no whole answer within 1 s"]


GIB = 1 << 30
CHUNK = 64 * 1024


def huge(framing: str) -> tuple[Handler, list[int]]:
    """A 1 GiB page, generated as it is sent; the list holds how much the server managed to write."""
    sent = [0]
    heads = {"length": f"Content-Length: {GIB}\r\n", "chunked": "Transfer-Encoding: chunked\r\n", "close": ""}
    piece = b"<p>" + b"words and words " * (CHUNK // 16 - 1) + b"</p>\n"
    piece = piece[:CHUNK]
    frame = b"%x\r\n%s\r\n" % (len(piece), piece) if framing == "chunked" else piece

    async def handler(writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n{heads[framing]}\r\n".encode())
        for _ in range(GIB // CHUNK):
            writer.write(frame)
            await writer.drain()
            sent[0] += len(frame)
    return handler, sent


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
@run_async
async def test_a_1_gib_page_is_read_to_page_bytes_and_dropped(framing):
    handler, sent = huge(framing)
    routes = {"/robots.txt": NO_ROBOTS, "/": links("/huge", "/after"), "/huge": handler,
              "/after": answer("<p>after</p>")}
    limits = Limits(interval=0.0, page_bytes=256 * 1024, request_timeout=5.0, deadline=10.0)
    async with Site(routes) as site:
        crawler = site.crawler(limits)
        pages = [page async for page in crawler.pages()]
    assert [p.url for p in pages] == [url("/"), url("/huge"), url("/after")]
    assert pages[1].body.startswith("words and words") and len(pages[1].body) <= limits.page_bytes
    assert crawler.stats.cut == 1
    others = sum(len(r) for r in routes.values() if isinstance(r, bytes))
    assert crawler.stats.bytes <= limits.page_bytes + READ + others
    assert sent[0] < 64 << 20, "the server went on writing long after the crawler stopped reading"


@run_async
async def test_an_infinite_link_maze_stops_at_the_page_limit():
    routes: dict[str, bytes | Handler] = {"/robots.txt": NO_ROBOTS, "/": links("/m1", "/m2")}
    routes.update({f"/m{n}": links(f"/m{2 * n + 1}", f"/m{2 * n + 2}") for n in range(1, 2000)})
    async with Site(routes) as site:
        crawler = site.crawler(Limits(interval=0.0, pages=40, depth=100))
        assert len(await crawl(crawler)) == 40
    assert len(site.targets) == 41


@run_async
async def test_an_infinite_link_maze_stops_at_the_depth_limit():
    routes: dict[str, bytes | Handler] = {"/robots.txt": NO_ROBOTS, "/": links("/m1", "/m2")}
    routes.update({f"/m{n}": links(f"/m{2 * n + 1}", f"/m{2 * n + 2}") for n in range(1, 2000)})
    async with Site(routes) as site:
        crawler = site.crawler(Limits(interval=0.0, pages=1000, depth=3))
        assert len(await crawl(crawler)) == 1 + 2 + 4 + 8
    assert max(int(t[2:]) for t in site.targets if t.startswith("/m")) == 14


@run_async
async def test_the_frontier_is_bounded():
    routes: dict[str, bytes | Handler] = {"/robots.txt": NO_ROBOTS,
                                          "/": links(*(f"/p{i}" for i in range(500)))}
    async with Site(routes) as site:
        crawler = site.crawler(Limits(interval=0.0, frontier=20))
        await crawl(crawler)
    assert len(site.targets) == 1 + 20  # robots.txt, / and the first 19 links it gave
