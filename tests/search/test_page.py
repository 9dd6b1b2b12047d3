"""The search page and its JSON API over a real loopback connection, with a search that is given."""

from __future__ import annotations

import asyncio
import json

import pytest

from ladder.search import page
from ladder.search.index import Result

RESULTS = [Result("http://blog.alice.ladder/a?x=1&y=2", "<script>alert(1)</script>", "a quick fox", ((2, 7),),
                  1.0, "tokyo", True, "blog.alice.ladder"),
           Result("http://old.bob.ladder/", "", "gone now", (), 0.4, "osaka", False, "old.bob.ladder")]


async def fake_search(query: str, limit: int) -> list[Result]:
    return RESULTS[:limit] if query == "fox" else []


async def exchange(*requests: bytes) -> bytes:
    server = await asyncio.start_server(lambda r, w: page.serve(r, w, fake_search, "tokyo"), "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
    writer.write(b"".join(requests))
    writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    server.close()
    return answer


def get(path: str, *headers: str, close: bool = True) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: search.tokyo.ladder", *headers]
    return ("\r\n".join(lines + (["Connection: close"] if close else [])) + "\r\n\r\n").encode()


def body_of(answer: bytes) -> tuple[str, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.decode(), body.decode()


def test_the_results_page_escapes_marks_and_says_offline():
    head, body = body_of(asyncio.run(exchange(get("/?q=fox"))))
    assert head.startswith("HTTP/1.1 200") and "text/html" in head
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;" in body
    assert 'href="http://blog.alice.ladder/a?x=1&amp;y=2"' in body
    assert "a <mark>quick</mark> fox" in body and 'value="fox"' in body
    assert "offline" in body and "at hub osaka" in body and 'name="viewport"' in body


def test_the_page_speaks_chinese_when_the_browser_asks_first():
    _, body = body_of(asyncio.run(exchange(get("/?q=nothing", "Accept-Language: zh-CN,zh;q=0.9,en;q=0.8"))))
    assert "没有找到" in body and 'lang="zh-CN"' in body
    _, english = body_of(asyncio.run(exchange(get("/", "Accept-Language: en-US,zh;q=0.5"))))
    assert "Search" in english and "搜索网络" not in english
    for key in page.STRINGS["en"]:
        assert page.STRINGS["zh"][key] != page.STRINGS["en"][key] or key == "missing"


def test_the_json_api_is_a_list_of_results():
    head, body = body_of(asyncio.run(exchange(get("/api/search?q=fox&limit=1"))))
    assert "application/json" in head
    assert json.loads(body) == [RESULTS[0].json()]
    junk = json.loads(body_of(asyncio.run(exchange(get("/api/search?q=fox&limit=junk"))))[1])
    assert len(junk) == 2 and junk[1]["online"] is False  # a limit that is no number: the default


@pytest.mark.parametrize(("path", "status"),
                         [("/robots.txt", "200"), ("/admin", "404"), ("/?q=" + "x" * 20000, "414")])
def test_robots_says_no_and_the_rest_is_not_found(path, status):
    head, body = body_of(asyncio.run(exchange(get(path))))
    assert head.startswith(f"HTTP/1.1 {status}")
    if path == "/robots.txt":
        assert body == "User-agent: *\nDisallow: /\n"
    if status == "404":
        assert "Not found here." in body and "<form" in body


def test_one_connection_answers_requests_one_after_another():
    answer = asyncio.run(exchange(get("/robots.txt", close=False), get("/api/search?q=fox", close=False),
                                  get("/", close=True)))
    assert answer.count(b"HTTP/1.1 200") == 3


def test_a_hit_whose_url_is_no_web_address_is_shown_but_not_linked():
    evil = Result("javascript:alert(1)", "click me", "", (), 1.0, "far", True, "x.ladder")
    body = page.render("q", [evil], "tokyo", "en").decode()
    assert "click me" in body and "href=\"javascript" not in body
