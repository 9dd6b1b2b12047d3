"""The search index: services and their pages in SQLite FTS5, ranked by bm25, in a file of its own.

A service's signed record is a document at once (its root URL, its title,
its keywords and description in a column of their own), so a site is found
the moment it is published; the crawl then brings its pages, and the root
page takes the record's place in the same row. Every row is one URL.

Columns and their bm25 weights: title 10, headings 5, keywords 6 (the
publisher's words for the service), body 1, and the shorter Chinese words
inside the title's and body's words (segment.py) at 4 and 0.7. The
tokenizer is unicode61 (case and diacritics folded) under the Porter
stemmer, splitting on segment.py's zero-width separator too.

A query is its words, each quoted (nothing a stranger types is FTS5
syntax), all of them required; if that finds nothing, any of them. Online
services come before offline ones, whatever their scores; delisted hosts
(the operator's `ladder hub search delist`) are never returned. Scores are
normalised so that results of several hubs can be merged: a query's best
result here scores 1.0, the others their bm25 relative to it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ladder.errors import UserError

from .segment import SEPARATOR, is_han, query_words, segment, subwords, unsegment

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS services (
    key         TEXT PRIMARY KEY,
    host        TEXT NOT NULL,
    hub         TEXT NOT NULL,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    keywords    TEXT NOT NULL,
    lang        TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    online      INTEGER NOT NULL DEFAULT 1,
    crawled     REAL
);
CREATE INDEX IF NOT EXISTS services_by_host ON services (host);
CREATE TABLE IF NOT EXISTS delisted (host TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS pages USING fts5(
    key UNINDEXED, url UNINDEXED, lang UNINDEXED, fetched UNINDEXED,
    title, headings, keywords, body, title_sub, body_sub,
    tokenize = "porter unicode61 remove_diacritics 2 separators '{SEPARATOR}'"
);
"""
_WEIGHTS = "10.0, 5.0, 6.0, 1.0, 4.0, 0.7"  # title, headings, keywords, body, title_sub, body_sub
_BODY = 7  # the body's column, counted from 0, for snippets
MARK_START, MARK_END = "\x02", "\x03"
SNIPPET_TOKENS = 24
LIMIT_MAX = 100
# English words too common to require of a page: a query of nothing else keeps them.
STOP_WORDS = frozenset("a an and are as at be by for from how i in is it of on or that the to was what "
                       "when where which who why with".split())


class IndexFailed(UserError):
    """The index file cannot be used (`ladder hub search` says so in one line)."""


@dataclass(frozen=True)
class Service:
    key: str  # "<publisher member id>/<service name>"
    host: str  # "blog.alice.ladder"
    hub: str  # the hub it is listed at
    title: str
    description: str
    keywords: tuple[str, ...]
    lang: str
    seq: int  # the record's: a new one means the site may have changed

    @property
    def root(self) -> str:
        return f"http://{self.host}/"


@dataclass(frozen=True)
class ServiceState:
    key: str
    host: str
    seq: int
    crawled: float | None
    pages: int
    online: bool
    delisted: bool


@dataclass(frozen=True)
class Result:
    url: str
    title: str
    snippet: str
    marks: tuple[tuple[int, int], ...]  # highlighted spans of `snippet`: (start, end)
    score: float
    hub: str
    online: bool
    host: str

    def json(self) -> dict:
        return {"url": self.url, "title": self.title, "snippet": self.snippet,
                "marks": [list(m) for m in self.marks], "score": self.score, "hub": self.hub,
                "online": self.online, "host": self.host}


def host_of(name: str) -> str:
    """A service's host from what an operator types: "blog.alice", "blog.alice.ladder", "Blog.Alice."."""
    host = name.strip().lower().rstrip(".")
    return host if host.endswith(".ladder") else f"{host}.ladder"


class SearchIndex:
    def __init__(self, path: Path):
        try:
            self.db = sqlite3.connect(path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode = WAL")
            # As the hub's store: a commit is not an fsync (the index can be crawled again), so a
            # publisher replacing its services cannot hold the hub's loop in fdatasync.
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("PRAGMA busy_timeout = 5000")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise IndexFailed(f"cannot open the search index {path}: {exc}") from None
        path.chmod(0o600)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ services

    def put_service(self, service: Service) -> bool:
        """Index a service's record; True if it is new or its record changed (time to crawl it)."""
        row = self.db.execute("SELECT seq FROM services WHERE key = ?", (service.key,)).fetchone()
        self.db.execute(
            "INSERT INTO services (key, host, hub, title, description, keywords, lang, seq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET host = excluded.host,"
            " hub = excluded.hub, title = excluded.title, description = excluded.description,"
            " keywords = excluded.keywords, lang = excluded.lang, seq = excluded.seq",
            (service.key, service.host, service.hub, service.title, service.description,
             json.dumps(list(service.keywords), ensure_ascii=False), service.lang, service.seq))
        root = self._row(service.key, service.root)
        if root is None:
            self._insert(service.key, service.root, service.title, "", service.description, service.lang,
                         None, service)
        else:
            rowid, title, headings, body, lang, fetched = root
            self.db.execute("DELETE FROM pages WHERE rowid = ?", (rowid,))
            self._insert(service.key, service.root, unsegment(title) or service.title, unsegment(headings),
                         unsegment(body), lang, fetched, service)
        return row is None or row[0] != service.seq

    def remove_service(self, key: str) -> None:
        self.db.execute("DELETE FROM pages WHERE key = ?", (key,))
        self.db.execute("DELETE FROM services WHERE key = ?", (key,))

    def set_online(self, key: str, online: bool) -> None:
        self.db.execute("UPDATE services SET online = ? WHERE key = ?", (int(online), key))

    def mark_crawled(self, key: str, at: float) -> None:
        self.db.execute("UPDATE services SET crawled = ? WHERE key = ?", (at, key))

    def services(self) -> list[ServiceState]:
        rows = self.db.execute(
            "SELECT s.key, s.host, s.seq, s.crawled, s.online, d.host IS NOT NULL,"
            " (SELECT count(*) FROM pages p WHERE p.key = s.key AND p.fetched IS NOT NULL)"
            " FROM services s LEFT JOIN delisted d ON d.host = s.host ORDER BY s.host").fetchall()
        return [ServiceState(key, host, seq, crawled, pages, bool(online), bool(delisted))
                for key, host, seq, crawled, online, delisted, pages in rows]

    def delist(self, name: str) -> bool:
        """Leave a service out of every result from now on; False if no indexed service has that name."""
        host = host_of(name)
        if self.db.execute("SELECT 1 FROM services WHERE host = ?", (host,)).fetchone() is None:
            return False
        self.db.execute("INSERT OR REPLACE INTO delisted (host, at) VALUES (?, ?)", (host, time.time()))
        return True

    def relist(self, name: str) -> bool:
        return self.db.execute("DELETE FROM delisted WHERE host = ?", (host_of(name),)).rowcount > 0

    # --------------------------------------------------------------- pages

    def put_page(self, key: str, url: str, title: str, headings: str, body: str, lang: str | None,
                 fetched: float) -> None:
        """A page the crawl brought: it replaces what the index held for its URL."""
        service = self._service(key)
        if service is None:
            return
        old = self._row(key, url)
        if old is not None:
            self.db.execute("DELETE FROM pages WHERE rowid = ?", (old[0],))
        self._insert(key, url, title or (service.title if url == service.root else ""), headings, body,
                     lang or service.lang, fetched, service if url == service.root else None)

    def keep_pages(self, key: str, urls: set[str]) -> None:
        """After a crawl: forget the pages it did not find (the record's row stays, as the record says)."""
        service = self._service(key)
        for rowid, url in self.db.execute("SELECT rowid, url FROM pages WHERE key = ?", (key,)).fetchall():
            if url not in urls:
                self.db.execute("DELETE FROM pages WHERE rowid = ?", (rowid,))
        if service is not None and service.root not in urls:
            self._insert(key, service.root, service.title, "", service.description, service.lang, None,
                         service)

    def _insert(self, key: str, url: str, title: str, headings: str, body: str, lang: str,
                fetched: float | None, service: Service | None) -> None:
        keywords = "" if service is None else " ".join((*service.keywords, service.description))
        title, headings, keywords, body = (_unmarked(t) for t in (title, headings, keywords, body))
        self.db.execute(
            "INSERT INTO pages (key, url, lang, fetched, title, headings, keywords, body, title_sub,"
            " body_sub) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, url, lang, fetched, segment(title), segment(headings), segment(keywords), segment(body),
             subwords(f"{title} {headings} {keywords}"), subwords(body)))

    def _row(self, key: str, url: str) -> tuple | None:
        row: tuple | None = self.db.execute(
            "SELECT rowid, title, headings, body, lang, fetched FROM pages WHERE key = ? AND url = ?",
            (key, url)).fetchone()
        return row

    def _service(self, key: str) -> Service | None:
        row = self.db.execute("SELECT key, host, hub, title, description, keywords, lang, seq FROM services"
                              " WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        key, host, hub, title, description, keywords, lang, seq = row
        return Service(key, host, hub, title, description, tuple(json.loads(keywords)), lang, seq)

    # -------------------------------------------------------------- search

    def search(self, query: str, limit: int = 10, offset: int = 0) -> list[Result]:
        """The best pages for `query`: online services first, then by bm25; [] for a query of no words."""
        words = query_words(query)
        words = [w for w in words if w not in STOP_WORDS] or words  # "RAW or JPEG" needs no "or"
        if not words:
            return []
        quoted = ['"' + w.replace('"', '""') + '"' for w in words]
        limit, offset = max(0, min(limit, LIMIT_MAX)), max(0, offset)
        rows = self._match(" AND ".join(quoted), limit, offset)
        if not rows and len(quoted) > 1:
            rows = self._match(" OR ".join(quoted), limit, offset)
        if not rows:
            return []
        best = max(-rank for *_, rank in rows) or 1.0
        return [Result(url, unsegment(title), *_marked(unsegment(snippet), words), max(-rank, 0.0) / best,
                       hub, bool(online), host)
                for url, title, snippet, hub, online, host, rank in rows]

    def _match(self, expression: str, limit: int, offset: int) -> list[tuple]:
        try:
            return self.db.execute(
                f"SELECT pages.url, pages.title, snippet(pages, {_BODY}, '{MARK_START}', '{MARK_END}', '…',"
                f" {SNIPPET_TOKENS}), s.hub, s.online, s.host, bm25(pages, 0, 0, 0, 0, {_WEIGHTS}) AS rank"
                " FROM pages JOIN services s ON s.key = pages.key"
                " WHERE pages MATCH ? AND s.host NOT IN (SELECT host FROM delisted)"
                " ORDER BY s.online DESC, rank LIMIT ? OFFSET ?", (expression, limit, offset)).fetchall()
        except sqlite3.OperationalError:  # a query FTS5 cannot read after all: nothing found, not a crash
            return []


def _unmarked(text: str) -> str:
    """Text without the snippet markers, so that no page can mark words of its own."""
    return text.replace(MARK_START, " ").replace(MARK_END, " ")


def _marked(snippet: str, words: list[str]) -> tuple[str, tuple[tuple[int, int], ...]]:
    """A snippet without its markers, and the spans they marked; and the Chinese query words it holds
    inside longer words (found by their subwords, which FTS5 cannot mark in the text)."""
    out: list[str] = []
    marks: list[tuple[int, int]] = []
    start = length = 0
    for char in snippet:
        if char == MARK_START:
            start = length
        elif char == MARK_END:
            marks.append((start, length))
        else:
            out.append(char)
            length += 1
    text = "".join(out)
    for word in (w for w in words if is_han(w)):
        at = text.find(word)
        while at >= 0:
            if not any(start < at + len(word) and at < end for start, end in marks):
                marks.append((at, at + len(word)))
            at = text.find(word, at + len(word))
    return text, tuple(sorted(marks))
