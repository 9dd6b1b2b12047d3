"""The hub's search engine: a crawler that is a member, the index beside the store, the search page.

The hub cannot read services (channels are end to end), so it searches them
as a member would: `SearchMember` is a member of its own (its keys in the
hub folder's search/, its member made from an invite like anyone's, named
after the hub), with the agent's rooms (a ChannelPool, the exit directory,
the service listing) over an in-memory link to its MemberPort, as a
device's session is. Publishers' access lists apply to it like to anyone.

It hears the listing every member hears. Each HTTP service of this hub's
members that does not opt out (`--no-index`) and lets it in is indexed from
its signed record at once, and crawled (search/crawl.py: robots.txt, one
request a second, bounded pages, bytes, depth and time) through a channel:
again whenever its record is signed anew, and every REVISIT. A service the
listing lacks (taken down, or its publisher not yet back after the hub
restarted) shows as offline for ABSENT_GRACE before it is forgotten, so a
restart costs no recrawl; ABSENT_MAX of them at most, the longest missing
forgotten first, so that a publisher renaming its services cannot fill the
index (and every listing's pass over it).
Services of other hubs are theirs to index: a query here fans out to the peer hubs
(`search` on the peer link, answered with `search-results`), waits at most
PEER_DEADLINE, and merges the hits by their normalised scores, online ones
first, each marked with its hub.

The member publishes one service itself, `search.<hub>.ladder`: the search
page and its JSON API (search/page.py), served from memory over a socket
pair, never from a listening port. Members' `ladder search` asks on a
command link (commands.py). The index is search.db in the hub's folder; the
operator delists a service there (`ladder hub search delist NAME`), which
the running hub sees at its next query.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import socket
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.agent.directory import Directory
from ladder.agent.exit import TargetRefused
from ladder.agent.names import SUFFIX, ServiceListing
from ladder.agent.pool import ChannelPool
from ladder.agent.relay import Relay
from ladder.agent.roster import Roster
from ladder.agent.services import asked_service
from ladder.config import HubConfig, MemberConfig
from ladder.errors import LadderError
from ladder.link.channel import CHANNEL_MAX_WINDOW
from ladder.link.connection import Link
from ladder.link.memory import link_pair
from ladder.protocol import control
from ladder.protocol.errors import ErrorCode
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.records import ServiceRecord, sign_service_record
from ladder.search.crawl import Crawler, Limits
from ladder.search.index import Result, SearchIndex, Service
from ladder.search.page import serve as serve_page
from ladder.store.hubdb import HubStore, Member
from ladder.tasks import Tasks

from .ports import MemberPort, PeerPort

log = logging.getLogger(__name__)
INDEX_FILE = "search.db"
IDENTITY_FOLDER = "search"  # the search member's keys and pins, in the hub's folder
PAGE_SERVICE = "search"
CRAWLERS = 2  # services crawled at once
REVISIT = 6 * 3600.0  # seconds after which a crawled service is crawled again
ABSENT_GRACE = 600.0  # seconds an indexed service may be missing from the listing before it is forgotten
ABSENT_MAX = 1000  # services kept missing at most: a publisher renaming its services flat out is bounded
PEER_DEADLINE = 1.5  # seconds a query waits for peer hubs
LIMIT_MAX = 50  # results of one query
TITLE_CUT, SNIPPET_CUT, URL_MAX = 300, 600, control.TEXT_MAX  # what one hit carries between hubs


def index_path(config: HubConfig) -> Path:
    return config.folder / INDEX_FILE


def _hit(result: Result) -> control.SearchHit | None:
    if len(result.url) > URL_MAX:
        return None
    snippet = result.snippet[:SNIPPET_CUT]
    marks = tuple(n for start, end in result.marks if end <= len(snippet) for n in (start, end))
    return control.SearchHit(result.url, result.title[:TITLE_CUT], snippet, marks,
                             max(0, min(1_000_000, round(result.score * 1_000_000))), result.hub[:255],
                             result.online, result.host[:255])


def _result(hit: control.SearchHit) -> Result:
    marks = tuple(zip(hit.marks[::2], hit.marks[1::2], strict=False))
    return Result(hit.url, hit.title, hit.snippet, marks, hit.score / 1_000_000, hit.hub, hit.online,
                  hit.host)


def seen_from_here(hit: control.SearchHit) -> control.SearchHit:
    """A peer hub's hit under the name members here reach it by: another hub's member is
    `<member>.<hub>` here (names.py), so `blog.carol.ladder` at hub c is `blog.carol.c.ladder`."""
    if not hit.host.endswith(SUFFIX):
        return hit
    host = f"{hit.host.removesuffix(SUFFIX)}.{hit.hub}{SUFFIX}"
    scheme, rest = hit.url.split("://", 1) if "://" in hit.url else ("http", hit.url)
    path = rest[len(hit.host):] if rest.startswith(hit.host) else "/"
    return dataclasses.replace(hit, host=host[:255], url=f"{scheme}://{host}{path}"[:URL_MAX])


def results(hits: list[control.SearchHit], ref: int = 0, missing: tuple[str, ...] = ()
            ) -> control.SearchResults:
    """The hits in one control message: the last ones left out if all would not fit."""
    while True:
        message = control.SearchResults(tuple(hits), ref, missing)
        if len(control.encode(message)) <= control.MAX_CONTROL or not hits:
            return message
        hits = hits[: len(hits) * 3 // 4]


def merge(hits: list[control.SearchHit], limit: int) -> list[control.SearchHit]:
    """Hits of several hubs, each hub's scores normalised to its best: online first, then by score."""
    return sorted(hits, key=lambda h: (not h.online, -h.score))[:limit]


@dataclass
class _Crawl:
    """What the crawler knows of one service it indexes."""

    service: Service
    online: bool


class Search:
    """The hub's search: its member, the index, the crawl queue, and queries here and across hubs."""

    def __init__(self, config: HubConfig, store: HubStore, hub: SearchOwner, tasks: Tasks):
        self.config = config
        self.store = store
        self.hub = hub
        self.tasks = tasks
        self.name = config.name
        self.index: SearchIndex | None = None
        self.member: SearchMember | None = None
        self.known: dict[str, _Crawl] = {}  # service key → what the listing said of it last
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.queued: set[str] = set()
        self.crawling: set[str] = set()
        self._absent: dict[str, float] = {}  # service key → since when the listing lacks it
        self._refs = itertools.count(1)
        self._asked: dict[tuple[str, int], asyncio.Future[control.SearchResults]] = {}

    # ------------------------------------------------------------ lifetime

    def start(self) -> None:
        """Open the index and bring the search member online (logged and skipped when it cannot be)."""
        folder = self.config.folder / IDENTITY_FOLDER
        try:
            self.index = SearchIndex(index_path(self.config))
            key = MemberConfig.load_or_create_key(folder)
            noise_key = MemberConfig.load_or_create_noise_key(folder)
            member = self._member(public_bytes(key))
        except (OSError, LadderError) as exc:  # the index's file, the keys, the store
            log.warning("search is off: %s", exc)
            return
        if member is None:
            return
        self.member = SearchMember(self, member, key, noise_key, folder)
        self.member.port = self.hub.member_online(member, self.member.hub_end, None, "search")
        self.member.publish()
        for _ in range(CRAWLERS):
            self.tasks.spawn(self._crawler(), name="search crawler")
        self.tasks.every(60.0, self._revisit, name="search revisits")
        self.tasks.every(0.5, self.member.pool.receipts.tick, name="search member's receipts")

    def stop(self) -> None:
        if self.member is not None:
            self.member.link.abort("the hub is shutting down")
        if self.index is not None:
            self.index.close()

    def _member(self, pubkey: bytes) -> Member | None:
        """The search member: made from an invite on first start, named after the hub if it can be."""
        member = self.store.member_by_pubkey(pubkey)
        if member is None:
            for name in (self.name, f"{self.name}-search", "search"):
                if self.store.member_by_name(name) is None:
                    token = self.store.create_invite(name)
                    member = self.store.redeem_invite(token, member_id(pubkey), pubkey)
                    log.info("search: made member %s, the crawler and the search page", member.name)
                    break
            else:
                log.warning("search is off: no free name for its member")
                return None
        if member.revoked:
            log.warning("search is off: the operator removed its member %s", member.name)
            return None
        return member

    # ------------------------------------------------------------ the listing

    def listing_changed(self, listing: ServiceListing, own_id: str) -> None:
        """The network's services as the search member hears them: index what is new, crawl it. An index
        that cannot be written (a full disk) is a warning; the next revisit tries again."""
        if self.index is None:
            return
        try:
            self._index_listing(listing, own_id)
        except sqlite3.Error as exc:
            log.warning("search: cannot index the services: %s", exc)

    def _index_listing(self, listing: ServiceListing, own_id: str) -> None:
        assert self.index is not None
        now: dict[str, _Crawl] = {}
        seen: set[int] = set()
        for entry, record in listing.by_host.values():
            if id(entry) in seen or entry.hub or not _indexable(record, own_id):
                continue  # another hub's service is for that hub's index to hold
            seen.add(id(entry))
            host = f"{record.name}.{entry.name}{SUFFIX}".lower()
            service = Service(f"{record.id}/{record.name}", host, self.name, record.title, record.description,
                              record.keywords, record.lang, record.issued)
            now[service.key] = _Crawl(service, entry.online)
        for key, crawl in now.items():
            before = self.known.get(key)
            changed = before is None or before.service != crawl.service
            if changed and self.index.put_service(crawl.service):
                self._queue(key)
            if before is None or before.online != crawl.online:
                self.index.set_online(key, crawl.online)
        clock = time.monotonic()
        for state in self.index.services():
            if state.key in now:
                self._absent.pop(state.key, None)
            elif clock - self._absent.setdefault(state.key, clock) >= ABSENT_GRACE:
                self.index.remove_service(state.key)  # taken down, or opted out
                del self._absent[state.key]
            elif state.online:  # not listed (yet: its publisher back to a restarted hub?): offline a while
                self.index.set_online(state.key, False)
        excess = max(0, len(self._absent) - ABSENT_MAX)
        for key in sorted(self._absent, key=self._absent.__getitem__)[:excess]:
            self.index.remove_service(key)  # the longest gone first: renamed services cannot fill the index
            del self._absent[key]
        self.known = now

    def _queue(self, key: str) -> None:
        if key not in self.queued:
            self.queued.add(key)
            self.queue.put_nowait(key)

    def _revisit(self) -> None:
        if self.index is None:
            return
        if self.member is not None:
            self.listing_changed(self.member.listing, self.member.member.id)  # the absent, forgotten in time
        now = time.time()
        for state in self.index.services():
            crawl = self.known.get(state.key)
            if crawl is not None and crawl.online and not state.delisted and (
                    state.crawled is None or now - state.crawled > REVISIT):
                self._queue(state.key)

    async def _crawler(self) -> None:
        while True:
            key = await self.queue.get()
            self.queued.discard(key)
            crawl = self.known.get(key)
            if crawl is None or not crawl.online or key in self.crawling or self.member is None:
                continue
            self.crawling.add(key)
            try:
                await self._crawl(crawl.service, self.member.pool)
            except (sqlite3.Error, LadderError) as exc:  # the index failed: this crawl, not the crawler
                log.warning("search: crawling %s failed: %s", crawl.service.host, exc)
            finally:
                self.crawling.discard(key)

    async def _crawl(self, service: Service, pool: ChannelPool) -> None:
        assert self.index is not None
        host = service.host
        crawler = Crawler(host, lambda: pool.connect(host, 80), Limits())
        urls: set[str] = set()
        started = time.monotonic()
        async for page in crawler.pages():
            if self.known.get(service.key, None) is None:
                return  # withdrawn while crawled
            self.index.put_page(service.key, page.url, page.title, page.headings, page.body, page.lang,
                                time.time())
            urls.add(page.url)
        stats = crawler.stats
        if urls or stats.robots_disallowed_all:
            self.index.keep_pages(service.key, urls)
        self.index.mark_crawled(service.key, time.time())
        log.info("search: crawled %s: %d pages, %d requests, %d bytes in %.1f s%s", host, len(urls),
                 stats.requests, stats.bytes, time.monotonic() - started,
                 f" ({len(stats.errors)} errors, first: {stats.errors[0]})" if stats.errors else "")

    # ------------------------------------------------------------ queries

    def local(self, query: str, limit: int) -> list[control.SearchHit]:
        if self.index is None or not query.strip():
            return []
        try:
            results = self.index.search(query, min(limit, LIMIT_MAX))
        except sqlite3.Error as exc:  # a disk that failed, say: no results, and the operator hears why
            log.warning("search: the index failed: %s", exc)
            return []
        return [hit for hit in map(_hit, results) if hit is not None]

    async def query(self, query: str, limit: int) -> control.SearchResults:
        """Hits here and at every peer hub up now (those that do not answer in time are `missing`)."""
        limit = max(1, min(limit, LIMIT_MAX))
        hits = self.local(query, limit)
        asked: dict[tuple[str, int], tuple[str, asyncio.Future[control.SearchResults]]] = {}
        loop = asyncio.get_running_loop()
        for port in self.hub.peer_ports():
            ref = next(self._refs)
            future: asyncio.Future[control.SearchResults] = loop.create_future()
            asked[(port.id, ref)] = (port.peer.name, future)
            self._asked[(port.id, ref)] = future
            port.link.send_control(control.SearchRequest(query, limit, ref))
        try:
            if asked:
                await asyncio.wait([future for _, future in asked.values()], timeout=PEER_DEADLINE)
        finally:
            for key in asked:
                del self._asked[key]
        missing = []
        for name, future in asked.values():
            if future.done():
                hits.extend(seen_from_here(hit) for hit in future.result().hits)
            else:
                future.cancel()
                missing.append(name)
        return results(merge(hits, limit), 0, tuple(missing))

    async def page_query(self, query: str, limit: int) -> list[Result]:
        return [_result(hit) for hit in (await self.query(query, limit)).hits]

    def from_peer(self, port: PeerPort, message: control.SearchRequest | control.SearchResults) -> None:
        """A peer hub's query (answered from this hub's index alone: no hop further) or its answer."""
        if isinstance(message, control.SearchRequest):
            port.link.send_control(results(self.local(message.query, message.limit), message.ref))
            return
        future = self._asked.get((port.id, message.ref))
        if future is not None and not future.done():
            future.set_result(message)


def _indexable(record: ServiceRecord, own_id: str) -> bool:
    return record.kind == "http" and record.index and record.admits(own_id) and record.id != own_id


class SearchOwner(Protocol):
    """What the search needs of the hub."""

    def member_online(self, member: Member, link: Link, address: str | None, role: str) -> MemberPort: ...

    def peer_ports(self) -> list[PeerPort]: ...


class SearchMember:
    """The search member's agent, in the hub: its link, its rooms, its published search page."""

    def __init__(self, search: Search, member: Member, key: Ed25519PrivateKey, noise_key: bytes,
                 folder: Path, clock: Callable[[], float] = time.monotonic):
        self.search = search
        self.member = member
        self.key = key
        self.link = Link(self, client=True, label="search member", max_window=CHANNEL_MAX_WINDOW)
        self.hub_end = Link(None, client=False, label=f"member {member.name} (search)")
        link_pair(self.link, self.hub_end)
        self.port: MemberPort | None = None
        self.roster = Roster()
        self.directory = Directory(folder / "pins.json", member.id, member.name, clock)
        self.listing = ServiceListing(self.directory.pins, member.id, self.roster)
        self.pool = ChannelPool(key, noise_key, self.directory, self.listing, search.tasks, self._serve)
        self.pool.link = self.link
        self.pages: set[asyncio.Task] = set()

    def publish(self) -> None:
        """The search page, as the service `search` of this member."""
        signed = sign_service_record(self.key, PAGE_SERVICE, f"Search {self.search.name}",
                                     "Find the sites that exist only inside this network.", "http",
                                     self.pool.noise_public, [], int(time.time()),
                                     ("search", "搜索"), "", index=False)
        self.link.send_control(control.Publish((control.SignedService(**signed),)))

    # ---------------------------------------------- LinkOwner (its end of the link)

    def control_received(self, link: Link, message: control.ControlMessage) -> None:
        if isinstance(message, control.Directory):
            self.directory.update(message.exits)
        elif isinstance(message, control.Services):
            before = self.listing.entries
            self.listing.take(message)
            if self.listing.entries is not before:
                self.search.listing_changed(self.listing, self.member.id)
        elif isinstance(message, (control.Members, control.MemberJoined)):
            self.roster.take(message)

    def stream_opened(self, link: Link, sid: int, payload: bytes, window: int) -> None:
        self.pool.stream_opened(link, sid, payload, window)  # a member's channel, to the search page

    def link_closed(self, link: Link, reason: str) -> None:
        pass  # only the hub's stop closes it

    def _serve(self, link: Link, sid: int, request: bytes, opener_id: str, noise_key: bytes) -> None:
        """A stream to the search page: its own socket pair, the page on the far end."""
        try:
            asked_service(request, opener_id, noise_key, self.member.id, (PAGE_SERVICE,))
        except TargetRefused as exc:
            return link.refuse(sid, exc.code, str(exc))
        relay = Relay()
        self.pool.answer_when_connected(link, sid, relay, _connect_page(self.search, relay),
                                        "the search page closed")


async def _connect_page(search: Search, relay: Relay) -> None:
    """`relay` on one end of a socket pair, the search page on the other."""
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    try:
        await loop.create_connection(lambda: relay, sock=ours)
        reader, writer = await asyncio.open_connection(sock=theirs)
    except OSError as exc:
        ours.close()
        theirs.close()
        raise TargetRefused(ErrorCode.NO_ROUTE, f"the search page cannot be served: {exc}") from None
    search.tasks.spawn(serve_page(reader, writer, search.page_query, search.name), name="search page")
