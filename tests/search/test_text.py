"""Tests for ladder.search.text: a fetched page's title, headings, visible text, links and robots meta."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladder.errors import LadderError
from ladder.search.text import NotIndexable, extract, normalise_url

URL = "http://blog.alice.ladder/notes/today?x=1"
HTML = "text/html; charset=utf-8"


def html(markup: str, content_type: str | None = HTML, url: str = URL):
    return extract(markup.encode(), url, content_type)


def test_title_headings_body_and_lang():
    page = html("""<!doctype html><html lang=" zh-CN "><head><title>  Alice's
        notes </title><style>h1 { color: red }</style></head>
        <body><h1>Tea <em>and</em> cake</h1><p>First para&amp;graph.</p><h3>Later</h3>
        <p>W<b>or</b>d</p></body>""")
    assert page.url == URL
    assert page.title == "Alice's notes"
    assert page.headings == "Tea and cake Later"
    assert page.body == "Tea and cake First para&graph. Later Word"
    assert page.lang == "zh-CN"
    assert (page.noindex, page.nofollow) == (False, False)


def test_title_falls_back_to_the_first_h1_then_nothing():
    assert html("<h2>Second</h2><h1>First</h1><h1>Other</h1>").title == "First"
    page = html("<p>just text</p>")
    assert (page.title, page.headings, page.lang) == ("", "", None)


def test_invisible_text_is_left_out():
    page = html("""<p>seen</p><script>var hidden = 1;</script><style>.x{}</style><template>tpl</template>
        <noscript>enable js</noscript><svg><text>drawn</text></svg><p>also seen</p>""")
    assert page.body == "seen also seen"


def test_block_edges_separate_words_inline_edges_do_not():
    page = html("<ul><li>one<li>two</ul><div>three</div>four<br>five <span>si</span>x")
    assert page.body == "one two three four five six"


def test_links_resolved_same_host_deduplicated_in_order():
    page = html("""<a href="b">b</a><a href="/c#part">c</a><a href="../d?q=1">d</a>
        <a href="http://other.ladder/">off host</a><a href="https://blog.alice.ladder/">https</a>
        <a href="mailto:a@b">mail</a><a href="javascript:void(0)">js</a><a href="/c">c again</a>
        <a href="HTTP://BLOG.alice.ladder:80/./e">e</a><a href="#top">this page</a>
        <area href="/f"><a rel="nofollow ugc" href="/g">g</a><a href="http://blog.alice.ladder:8080/">port</a>
        <a href="http://[bad/">bad</a><a href=" /sp ace ">space</a>""")
    assert page.links == (
        "http://blog.alice.ladder/notes/b", "http://blog.alice.ladder/c", "http://blog.alice.ladder/d?q=1",
        "http://blog.alice.ladder/e", "http://blog.alice.ladder/notes/today?x=1", "http://blog.alice.ladder/f",
        "http://blog.alice.ladder/sp%20ace",
    )


def test_base_href_is_honoured():
    page = html('<head><base href="/docs/v2/"><base href="/ignored/"></head><a href="intro">i</a>')
    assert page.links == ("http://blog.alice.ladder/docs/v2/intro",)
    page = html('<head><base href="http://elsewhere.ladder/"></head><a href="x">x</a><a href="/y">y</a>')
    assert page.links == ()  # every link now points off the host


@pytest.mark.parametrize(("meta", "noindex", "nofollow"), [
    ('<meta name="robots" content="noindex">', True, False),
    ('<meta name="ROBOTS" content="NoFollow, noarchive">', False, True),
    ('<meta name="LadderBot" content="none">', True, True),
    ('<meta name="googlebot" content="noindex, nofollow">', False, False),  # speaks to another crawler
    ('<meta name="robots" content="index, follow">', False, False),
])
def test_meta_robots(meta, noindex, nofollow):
    page = html(f"<head>{meta}</head><body><a href=/x>x</a></body>")
    assert (page.noindex, page.nofollow) == (noindex, nofollow)
    assert page.links == (() if nofollow else ("http://blog.alice.ladder/x",))


def test_charset_from_header_then_meta_then_utf8():
    latin = "<p>café</p>".encode("latin-1")
    assert extract(latin, URL, "text/html; charset=ISO-8859-1").body == "café"
    assert extract(b'<meta charset="windows-1252">' + latin, URL, "text/html").body == "café"
    meta = b'<meta http-equiv="Content-Type" content="text/html; charset=gbk">'
    assert extract(meta + "<p>中文</p>".encode("gbk"), URL, "text/html").body == "中文"
    assert extract("<p>café</p>".encode(), URL, "text/html").body == "café"
    assert extract(b"<p>caf\xe9</p>", URL, "text/html").body == "caf\ufffd"  # not UTF-8: replaced, no error
    assert extract("\ufeff<p>x</p>".encode(), URL, "text/html").body == "x"
    assert extract("<p>x</p>".encode("utf-16"), URL, "text/html").body == "x"  # by its byte-order mark
    assert extract("<p>é</p>".encode(), URL, "text/html; charset=no-such-thing").body == "é"


def test_plain_text():
    page = extract(b"Hello,\n\n  plain\tworld <b>not markup</b>", URL, "text/plain; charset=utf-8")
    assert page.body == "Hello, plain world <b>not markup</b>"
    assert (page.title, page.headings, page.links, page.lang) == ("", "", (), None)


@pytest.mark.parametrize("content_type", ["image/png", "application/json", "text/css", "application/pdf", ""])
def test_other_media_types_are_not_indexable(content_type):
    with pytest.raises(NotIndexable):
        extract(b"<html><p>x</p></html>" if content_type else b"\x89PNG", URL, content_type)


def test_no_content_type_is_sniffed_as_html_only_when_it_says_so():
    assert extract(b"  <!DOCTYPE html><title>t</title>", URL, None).title == "t"
    with pytest.raises(NotIndexable):
        extract(b"GIF89a...", URL, None)


def test_malformed_html_reads_as_a_browser_reads_it():
    page = html("<title>Shut</title></head></head><p>unclosed <b>bold <i>both</b> after</i><table><td>cell"
                "<h2>head<a href='/z'>z<div></p></span>&bogus; &amp \x00 <!-- never closed")
    assert (page.title, page.headings) == ("Shut", "headz &bogus; &")
    assert page.body == "unclosed bold both after cell headz &bogus; &"
    assert page.links == ("http://blog.alice.ladder/z",)
    assert html("<title>Never shut<p>the rest").title == "Never shut<p>the rest"  # as a browser has it


def test_a_page_cut_in_the_middle_still_reads():
    body = b"<html><title>Long</title><body><p>start " + "中".encode()[:2]
    page = extract(body, URL, HTML)
    assert (page.title, page.body) == ("Long", "start \ufffd")


def test_deep_nesting_is_refused_before_it_costs_seconds():
    assert html("<div>" * 1000 + "deep" + "</div>" * 1000).body == "deep"
    with pytest.raises(NotIndexable, match="open"):
        html("<div>" * 100_000)  # Lexbor would take about 12 s over it
    # Elements that close themselves, void ones and self-closed ones do not count.
    many = "<p>p<li>li<td>td<br><img src=x><svg><path d='M0'/></svg><div></div>" * 5000
    assert html(many).body.startswith("p li")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300),
       st.sampled_from(["text/html", "text/plain", None, "text/html; charset=utf-16"]))
def test_arbitrary_bytes_give_a_page_or_our_error(body, content_type):
    try:
        page = extract(body, URL, content_type)
    except LadderError:
        return
    assert all(link.startswith("http://blog.alice.ladder/") for link in page.links)


@pytest.mark.parametrize(("url", "normal"), [
    ("HTTP://Blog.Alice.LADDER:80", "http://blog.alice.ladder/"),
    ("http://h/a/./b/../c?Q=A#frag", "http://h/a/c?Q=A"),
    ("http://h/../../x", "http://h/x"),
    ("http://h/a/..", "http://h/"),
    ("http://h:8080/", "http://h:8080/"),
    ("http://h/x?", "http://h/x"),
    ("http://h/ü ?a=ü", "http://h/%C3%BC%20?a=%C3%BC"),
    ("http://h/already%2Fescaped", "http://h/already%2Fescaped"),
])
def test_normalise_url(url, normal):
    assert normalise_url(url) == normal


@pytest.mark.parametrize("url", ["https://h/", "ftp://h/", "http:///path", "http://u:p@h/", "http://h:99999/",
                                 "http://h:port/", "/relative", "", "http://[::1/"])
def test_normalise_url_refuses(url):
    assert normalise_url(url) is None
