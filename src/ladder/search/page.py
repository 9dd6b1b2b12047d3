"""The search page and its JSON API, served over one HTTP/1.1 connection (asyncio streams).

    GET /                      the search box
    GET /?q=words              results: title linked to the page, its host, the snippet with the
                               query's words marked, the hub it came from, "offline" when it is
    GET /api/search?q=&limit=  the same as JSON: a list of {url, title, snippet, marks, score, hub,
                               online, host}
    GET /robots.txt            Disallow: / (a crawler has nothing to find here)

Strings follow Accept-Language: Simplified Chinese for zh, English else.
Everything from a result or the query is HTML-escaped. Request heads are
read with protocol/http1.py (bounded); a connection serves at most
REQUESTS requests and closes when idle for IDLE seconds.
"""

from __future__ import annotations

import asyncio
import html
import json
import urllib.parse
from collections.abc import Awaitable, Callable

from ladder.protocol.http1 import HeadReader, RequestError, check_version, persists, preferred_language

from .index import Result

Search = Callable[[str, int], Awaitable[list[Result]]]
MAX_HEAD = 16 * 1024
IDLE = 30.0  # seconds a kept-alive connection may wait for its next request
REQUESTS = 100  # requests on one connection
PAGE_RESULTS = 20
API_LIMIT, API_LIMIT_MAX = 10, 50

STRINGS = {
    "en": {"title": "Search", "placeholder": "Search the sites inside the network", "button": "Search",
           "none": "Nothing found for “{q}”.", "offline": "offline", "at": "at hub {hub}",
           "intro": "Sites that exist only inside this network, found by the words on their pages.",
           "results": "{n} results for “{q}”", "missing": "Not found here."},
    "zh": {"title": "搜索", "placeholder": "搜索网络内的网站", "button": "搜索",
           "none": "没有找到与“{q}”相关的结果。", "offline": "离线", "at": "来自节点 {hub}",
           "intro": "只存在于本网络中的网站，按其网页上的文字查找。",  # noqa: RUF001 (Chinese punctuation)
           "results": "“{q}”的 {n} 个结果", "missing": "此处没有该页面。"},
}

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:46rem;margin:0 auto;padding:1rem;line-height:1.45;color:#222}
form{display:flex;gap:.5rem;margin:1rem 0}input[type=search]{flex:1;font-size:1.1rem;padding:.5rem;
min-width:0}button{font-size:1.1rem;padding:.5rem 1rem}ol{list-style:none;padding:0}li{margin:1.2rem 0}
a.t{font-size:1.15rem}.h{color:#070;font-size:.9rem;word-break:break-all}.s{margin:.2rem 0}
mark{background:#fe8}.o{background:#ccc;border-radius:.3rem;padding:0 .3rem;font-size:.8rem;margin-left:.4rem}
.m{color:#666;font-size:.85rem}
"""


def language(accept: str) -> str:
    """"zh" if the browser asks for Chinese before English, else "en"."""
    return preferred_language(accept, STRINGS)


def _snippet(result: Result) -> str:
    out, at = [], 0
    for start, end in result.marks:
        if start < at or end > len(result.snippet):
            continue
        out.append(html.escape(result.snippet[at:start]) + "<mark>" + html.escape(result.snippet[start:end])
                   + "</mark>")
        at = end
    return "".join(out) + html.escape(result.snippet[at:])


def render(query: str, results: list[Result] | None, hub: str, lang: str, note: str = "") -> bytes:
    """The search page: the box, a `note` under it if any, and the results when there was a query."""
    t = STRINGS[lang]
    q = html.escape(query)
    parts = [f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width,initial-scale=1">',
             f"<title>{html.escape(t['title'])} · {html.escape(hub)}</title>",
             f"<style>{_STYLE}</style></head><body>",
             f'<h1>{html.escape(t["title"])} · {html.escape(hub)}</h1>',
             f'<form action="/" method="get"><input type="search" name="q" value="{q}" '
             f'placeholder="{html.escape(t["placeholder"])}" autofocus>'
             f'<button type="submit">{html.escape(t["button"])}</button></form>']
    if note:
        parts.append(f"<p>{html.escape(note)}</p>")
    if results is None:
        parts.append(f'<p class="m">{html.escape(t["intro"])}</p>')
    elif not results:
        parts.append(f"<p>{html.escape(t['none'].format(q=query))}</p>")
    else:
        parts.append(f'<p class="m">{html.escape(t["results"].format(n=len(results), q=query))}</p><ol>')
        for r in results:
            offline = f'<span class="o">{html.escape(t["offline"])}</span>' if not r.online else ""
            name = html.escape(r.title or r.url)
            link = (f'<a class="t" href="{html.escape(r.url)}">{name}</a>'
                    if r.url.startswith(("http://", "https://")) else name)  # a peer's hit may say anything
            parts.append(f'<li>{link}'
                         f'{offline}<div class="h">{html.escape(r.url)}</div>'
                         f'<div class="s">{_snippet(r)}</div>'
                         f'<div class="m">{html.escape(t["at"].format(hub=r.hub))}</div></li>')
        parts.append("</ol>")
    parts.append("</body></html>")
    return "".join(parts).encode()


async def respond(method: str, target: str, accept_language: str, search: Search, hub: str
                  ) -> tuple[int, str, bytes]:
    """Status, content type and body for one request."""
    if method not in ("GET", "HEAD"):
        return 405, "text/plain; charset=utf-8", b"only GET here\n"
    url = urllib.parse.urlsplit(target)
    params = urllib.parse.parse_qs(url.query, max_num_fields=20)
    query = (params.get("q") or [""])[0][:500].strip()
    if url.path == "/robots.txt":
        return 200, "text/plain; charset=utf-8", b"User-agent: *\nDisallow: /\n"
    if url.path == "/api/search":
        try:
            limit = max(1, min(int((params.get("limit") or [str(API_LIMIT)])[0]), API_LIMIT_MAX))
        except ValueError:
            limit = API_LIMIT
        found = await search(query, limit) if query else []
        body = json.dumps([r.json() for r in found], ensure_ascii=False).encode()
        return 200, "application/json; charset=utf-8", body
    lang = language(accept_language)
    if url.path != "/":
        return 404, "text/html; charset=utf-8", render("", None, hub, lang, STRINGS[lang]["missing"])
    results = await search(query, PAGE_RESULTS) if query else None
    return 200, "text/html; charset=utf-8", render(query, results, hub, lang)


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, search: Search, hub: str) -> None:
    """Answer the requests of one connection, then close it."""
    heads, buf = HeadReader(MAX_HEAD), bytearray()
    try:
        for _ in range(REQUESTS):
            head = heads.read_head(buf)
            while head is None:
                data = await asyncio.wait_for(reader.read(65536), IDLE)
                if not data:
                    return
                buf += data
                head = heads.read_head(buf)
            line, fields = head
            version = check_version(line.version)
            status, kind, body = await respond(line.method.decode("latin-1"), line.target.decode("latin-1"),
                                               ",".join(fields.get("accept-language")), search, hub)
            keep = persists(fields, version) and not fields.get("content-length") and not fields.get(
                "transfer-encoding")  # a body here is not expected: close rather than read it
            _write(writer, status, kind, b"" if line.method == b"HEAD" else body, len(body), keep)
            await writer.drain()
            if not keep:
                return
    except RequestError as exc:
        _write(writer, exc.status, "text/plain; charset=utf-8", f"{exc}\n".encode(), None, False)
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            414: "URI Too Long", 431: "Request Header Fields Too Large", 505: "HTTP Version Not Supported"}


def _write(writer: asyncio.StreamWriter, status: int, kind: str, body: bytes, length: int | None,
           keep: bool) -> None:
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n"
            "Cache-Control: no-store\r\nVary: Accept-Language\r\n"
            "X-Content-Type-Options: nosniff\r\nContent-Security-Policy: default-src 'none'; "
            "style-src 'unsafe-inline'\r\nReferrer-Policy: no-referrer\r\n"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n")
    writer.write(head.encode() + body)
