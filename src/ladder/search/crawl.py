"""One service's pages, fetched politely and within bounds over whatever connections the caller opens.

`Crawler` knows one host and a way to open a connection to its HTTP server
(the hub's crawler gives it a channel through the network; tests give it a
loopback socket). It reads robots.txt first (RFC 9309, `robots.py`), then
walks the site breadth first from `/`, yielding each page it may index.

Every bound is a `Limits` field, so that no site can hold the crawler:
a request (connect, send, head and body) has `request_timeout` for the
whole exchange, so a site that answers a byte a second is dropped and the
crawl goes on; the crawl stops at `deadline`; at most `pages` requests are
made for pages (redirect hops count, robots.txt does not) and no link is
followed deeper than `depth`, so a link maze ends; the frontier knows at
most `frontier` URLs; a response head beyond `head_bytes` is refused. A body
is read up to `page_bytes` and then the connection is dropped: what was read
is indexed (an HTML parser reads a cut page as it reads a broken one), the
rest is never read. Requests start at least `interval` apart, or the site's
Crawl-delay apart if it asks more, up to `max_delay`.

One connection per request (`Connection: close`): at a request a second,
keeping connections buys nothing, and a server that misframes its body
cannot confuse the next response. Redirects are followed only within the
host, at most `redirects` in a row, each a request of its own. Only HTML and
plain text bodies are read (by Content-Type, before the body); bodies come
unencoded (`Accept-Encoding: identity`) in any of the three framings of RFC
9112 §6.3: Content-Length, chunked, or until the connection closes.

The response head is read by a small strict parser here: `ladder.protocol.
http1` reads request heads (nginx's reading of them, request lines only),
so from it only `Fields` (and the chunk-line bound) are shared.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from ladder.errors import LadderError
from ladder.protocol.http1 import MAX_CHUNK_LINE, Fields

from .robots import Robots, parse_robots
from .text import NotIndexable, Page, extract, normalise_url

USER_AGENT = "LadderBot/1.0"
READ = 64 * 1024  # one read off the connection at most
MAX_ERRORS = 100  # CrawlStats.errors keeps the first ones
CLOSE_WAIT = 1.0  # how long closing a connection may take
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_INDEXABLE = ("text/html", "application/xhtml+xml", "text/plain")

# RFC 9112 §4: HTTP-version SP status-code SP [ reason-phrase ]; some servers leave out the last SP.
_STATUS_LINE = re.compile(rb"HTTP/1\.[0-9] ([1-9][0-9]{2})(?: [\t\x20-\x7e\x80-\xff]*)?")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §5.6.2
_DIGITS = re.compile(r"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@dataclass(frozen=True)
class Limits:
    pages: int = 200  # requests for pages (redirect hops included) per crawl
    page_bytes: int = 1 << 20  # of a body; the rest is never read
    depth: int = 5  # links followed from / (depth 0)
    interval: float = 1.0  # seconds between the starts of two requests, at least
    request_timeout: float = 15.0  # for a whole exchange: connect, request, head and body
    deadline: float = 900.0  # for the whole crawl
    max_delay: float = 30.0  # the most of a site's Crawl-delay that is honoured
    redirects: int = 5  # in a row (RFC 9309 §2.3.1.2 asks at least five for robots.txt)
    frontier: int = 10_000  # URLs known (fetched or queued) at most
    head_bytes: int = 32 * 1024  # of a response head, interim heads included
    robots_bytes: int = 500 * 1024  # of robots.txt (RFC 9309 §2.5: at least 500 KiB are parsed)


@dataclass
class CrawlStats:
    requests: int = 0  # robots.txt and redirect hops included
    pages: int = 0  # yielded
    bytes: int = 0  # read off connections, heads included
    errors: list[str] = field(default_factory=list)  # the first MAX_ERRORS, "<path>: <what went wrong>"
    robots_disallowed_all: bool = False  # robots.txt disallows / for us, or could not be reached
    cut: int = 0  # bodies cut at page_bytes

    def error(self, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)


class ResponseError(LadderError):
    """A response that is not HTTP/1.x as RFC 9112 frames it, or one beyond a limit."""


@dataclass(frozen=True)
class Response:
    status: int
    fields: Fields
    body: bytes  # empty unless it was wanted; at most the limit asked
    cut: bool  # the body went on beyond the limit and was not read

    def header(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None


class Crawler:
    """Crawls the HTTP service `host` over connections from `open_connection`, within `limits`.

    `clock` and `sleep` pace the requests and keep the deadline (a test can
    pass a fake clock); timeouts of single requests run on the event loop's
    clock.
    """

    def __init__(self, host: str, open_connection: Opener, limits: Limits = Limits(),
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.host = host.lower().rstrip(".")
        self.open_connection = open_connection
        self.limits = limits
        self.clock = clock
        self.sleep = sleep
        self.stats = CrawlStats()
        self.robots: Robots | None = None  # once read
        self._deadline = 0.0
        self._last: float | None = None  # when the last request started

    async def pages(self) -> AsyncIterator[Page]:
        """robots.txt first; then each indexable page, breadth first from /, until a limit ends the crawl."""
        self._deadline = self.clock() + self.limits.deadline
        robots = self.robots = await self._read_robots()
        if not robots.allowed("/"):
            # Every page is found from /, so nothing else would be fetched either.
            self.stats.robots_disallowed_all = True
            return
        delay = max(self.limits.interval, min(robots.crawl_delay or 0.0, self.limits.max_delay))
        start = f"http://{self.host}/"
        frontier: deque[tuple[str, int, int]] = deque([(start, 0, 0)])  # URL, depth, redirects so far
        seen = {start}
        requested = 0
        while frontier and requested < self.limits.pages:
            url, depth, hops = frontier.popleft()
            target = _target(url)
            if not robots.allowed(target):
                continue
            if not await self._pace(delay):
                return
            requested += 1
            response = await self._fetch(target, self.limits.page_bytes, _wants_page)
            if response is None:
                continue
            if response.status in _REDIRECTS:
                location = self._location(url, response)
                if hops >= self.limits.redirects:
                    self.stats.error(f"{target}: more than {self.limits.redirects} redirects in a row")
                elif location is not None and location not in seen:
                    seen.add(location)
                    frontier.appendleft((location, depth, hops + 1))
                continue
            if response.status != 200:
                self.stats.error(f"{target}: HTTP {response.status}")
                continue
            try:
                # In a thread: a large page takes the parser a fraction of a second, which the event
                # loop (a hub's, relaying everyone's bytes) must not wait out in one piece.
                page = await asyncio.to_thread(extract, response.body, url, response.header("content-type"))
            except NotIndexable:
                continue
            if depth < self.limits.depth:
                for link in page.links:
                    if len(seen) >= self.limits.frontier:
                        break
                    if link not in seen:
                        seen.add(link)
                        frontier.append((link, depth + 1, 0))
            if not page.noindex:
                self.stats.pages += 1
                yield page

    async def _read_robots(self) -> Robots:
        """RFC 9309 §2.3: robots.txt, following redirects within the host; what its status means."""
        url = f"http://{self.host}/robots.txt"
        for _ in range(self.limits.redirects + 1):
            if not await self._pace(self.limits.interval):
                return Robots.disallow_all()
            response = await self._fetch(_target(url), self.limits.robots_bytes, _is_success)
            if response is None or response.status >= 500:
                return Robots.disallow_all()  # §2.3.1.4: unreachable
            if 200 <= response.status < 300:
                return parse_robots(response.body.decode("utf-8", errors="replace"))
            location = self._location(url, response) if response.status in _REDIRECTS else None
            if location is None:
                return Robots.allow_all()  # §2.3.1.3: unavailable (4xx, or a redirect we cannot follow)
            url = location
        return Robots.allow_all()  # §2.3.1.2: too many redirects is unavailable

    def _location(self, url: str, response: Response) -> str | None:
        """Where a redirect points, if it stays on this host over http."""
        location = response.header("location")
        if location is None:
            return None
        try:
            target = normalise_url(urljoin(url, location))
        except ValueError:
            target = None
        if target is None or urlsplit(target).netloc != self.host:
            self.stats.error(f"{_target(url)}: redirect off the site ignored")
            return None
        return target

    async def _pace(self, delay: float) -> bool:
        """Waits until the next request may start; False if that is past the deadline."""
        start = self.clock() if self._last is None else max(self.clock(), self._last + delay)
        if start >= self._deadline:
            return False
        wait = start - self.clock()
        if wait > 0:
            await self.sleep(wait)
        self._last = self.clock()
        return True

    async def _fetch(self, target: str, max_body: int,
                     wanted: Callable[[int, Fields], bool]) -> Response | None:
        """One GET within the request timeout (and the deadline); None, noted in stats, if it failed."""
        self.stats.requests += 1
        timeout = min(self.limits.request_timeout, self._deadline - self.clock())
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                return await self._exchange(target, max_body, wanted)
        except TimeoutError:
            self.stats.error(f"{target}: no whole answer within {timeout:.3g} s")
        except (OSError, EOFError, LadderError) as exc:
            self.stats.error(f"{target}: {exc or type(exc).__name__}")
        return None

    async def _exchange(self, target: str, max_body: int, wanted: Callable[[int, Fields], bool]) -> Response:
        reader, writer = await self.open_connection()
        try:
            writer.write(self._request(target))
            await writer.drain()
            buf = bytearray()
            status, fields = await self._read_head(reader, buf)
            if not wanted(status, fields):
                return Response(status, fields, b"", False)
            body, cut = await self._read_body(reader, buf, _framing(status, fields), max_body)
            self.stats.cut += cut
            return Response(status, fields, body, cut)
        finally:
            await _close(writer)

    def _request(self, target: str) -> bytes:
        return (f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: {USER_AGENT}\r\n"
                "Accept: text/html, text/plain;q=0.9\r\nAccept-Encoding: identity\r\n"
                "Connection: close\r\n\r\n").encode("ascii")

    async def _read(self, reader: asyncio.StreamReader, size: int) -> bytes:
        data = await reader.read(size)
        self.stats.bytes += len(data)
        return data

    async def _read_head(self, reader: asyncio.StreamReader, buf: bytearray) -> tuple[int, Fields]:
        """The final response head (interim 1xx ones skipped, §4 of RFC 9112); what follows stays in `buf`."""
        taken = 0
        while True:
            end = _HEAD_END.search(buf)
            if end is None:
                if taken + len(buf) > self.limits.head_bytes:
                    raise ResponseError(f"response head beyond {self.limits.head_bytes} bytes")
                data = await self._read(reader, READ)
                if not data:
                    raise ResponseError("connection closed before the response head ended")
                buf += data
                continue
            head = bytes(buf[:end.start()])
            taken += end.end()
            if taken > self.limits.head_bytes:
                raise ResponseError(f"response head beyond {self.limits.head_bytes} bytes")
            del buf[:end.end()]
            status, fields = _parse_head(head)
            if status >= 200 or status == 101:
                return status, fields

    async def _read_body(self, reader: asyncio.StreamReader, buf: bytearray, framing: int | None,
                         limit: int) -> tuple[bytes, bool]:
        """(up to `limit` bytes of the body, whether it went on).

        `framing` is a length, -1 for chunked, or None for until the connection closes.
        """
        if framing == -1:
            return await self._read_chunked(reader, buf, limit)
        want = limit + 1 if framing is None else min(framing, limit)
        while len(buf) < want:
            data = await self._read(reader, want - len(buf))
            if not data:
                if framing is not None:
                    raise ResponseError(f"connection closed after {len(buf)} of {framing} body bytes")
                break
            buf += data
        cut = len(buf) > limit if framing is None else framing > limit
        return bytes(buf[:min(want, limit)]), cut

    async def _read_chunked(self, reader: asyncio.StreamReader, buf: bytearray,
                            limit: int) -> tuple[bytes, bool]:
        """RFC 9112 §7.1; the trailer section is not read (the connection closes after)."""
        body = bytearray()
        while True:
            line = await self._read_line(reader, buf)
            size = line.split(b";", 1)[0].strip(b" \t")
            if not _HEX.fullmatch(size):
                raise ResponseError("malformed chunk size")
            left = int(size, 16)
            if left == 0:
                return bytes(body), False
            while left:
                if len(body) >= limit:
                    return bytes(body), True
                if not buf:
                    data = await self._read(reader, READ)
                    if not data:
                        raise ResponseError("connection closed inside a chunk")
                    buf += data
                taken = min(left, len(buf), limit - len(body))
                body += buf[:taken]
                del buf[:taken]
                left -= taken
            if await self._read_line(reader, buf):
                raise ResponseError("malformed chunk end")

    async def _read_line(self, reader: asyncio.StreamReader, buf: bytearray) -> bytes:
        while (end := buf.find(b"\n")) < 0:
            if len(buf) > MAX_CHUNK_LINE:
                raise ResponseError("chunk line too long")
            data = await self._read(reader, READ)
            if not data:
                raise ResponseError("connection closed inside a chunked body")
            buf += data
        line = bytes(buf[:end]).removesuffix(b"\r")
        del buf[:end + 1]
        return line


def _target(url: str) -> str:
    """The origin-form request target of a normalised URL (RFC 9112 §3.2.1)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _is_success(status: int, fields: Fields) -> bool:
    return 200 <= status < 300


def _wants_page(status: int, fields: Fields) -> bool:
    """A page's body is read only if it is a 200 of a kind `extract` indexes (or of no stated kind)."""
    media = (fields.get("content-type") or [""])[0].split(";", 1)[0].strip().lower()
    return status == 200 and (not media or media in _INDEXABLE)


def _parse_head(head: bytes) -> tuple[int, Fields]:
    """The status and fields of a response head without its final empty line; ResponseError if malformed."""
    status_line, *lines = head.split(b"\n")
    match = _STATUS_LINE.fullmatch(status_line.removesuffix(b"\r"))
    if match is None:
        raise ResponseError("malformed status line")
    fields: list[tuple[bytes, bytes]] = []
    for line in lines:
        # RFC 9112 §5.1, §5.2: no whitespace before the colon, no obs-fold; RFC 9110 §5.5: no NUL or CR.
        name, colon, value = line.removesuffix(b"\r").partition(b":")
        value = value.strip(b" \t")
        if not colon or not _TOKEN.fullmatch(name) or b"\0" in value or b"\r" in value:
            raise ResponseError("malformed header field")
        fields.append((name, value))
    return int(match.group(1)), Fields(fields)


def _framing(status: int, fields: Fields) -> int | None:
    """RFC 9112 §6.3 for a response to GET: a length, -1 for chunked, None for until the connection closes."""
    if status < 200 or status in (204, 304):
        return 0
    codings = [c.strip().lower() for v in fields.get("transfer-encoding") for c in v.split(",")]
    if codings:
        return -1 if codings[-1] == "chunked" else None
    lengths = {n.strip() for v in fields.get("content-length") for n in v.split(",")}
    if not lengths:
        return None
    length = lengths.pop()
    if lengths or not _DIGITS.fullmatch(length):
        raise ResponseError("bad Content-Length")
    return int(length)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_WAIT):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        pass
