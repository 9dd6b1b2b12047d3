"""Tests for ladder.link.webface: a stranger must see an ordinary nginx."""

import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ladder.link.webface import WebFace, error_page
from ladder.link.website import DEFAULT_SITE, SITE_LAST_MODIFIED
from ladder.protocol.hello import make_hello

NOW = 1_700_000_000.0
DATE = "Tue, 14 Nov 2023 22:13:20 GMT"
LAST_MODIFIED = "Mon, 15 May 2023 10:55:30 GMT"
INDEX = DEFAULT_SITE["/index.html"][1]
ABOUT = DEFAULT_SITE["/about.html"][1]
ETAG = f'"{int(SITE_LAST_MODIFIED):x}-{len(INDEX):x}"'
IMF_FIXDATE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul"
                         r"|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT")
NGINX_404 = (b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
             b"<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n"
             b"</body>\r\n</html>\r\n")


def face(**kwargs) -> WebFace:
    return WebFace(clock=lambda: NOW, **kwargs)


def feed_whole(data: bytes, **kwargs) -> tuple[bytes, bool]:
    web = face(**kwargs)
    return web.receive_data(data), web.closing


def feed_bytewise(data: bytes, **kwargs) -> tuple[bytes, bool]:
    web = face(**kwargs)
    out = b"".join(web.receive_data(data[i:i + 1]) for i in range(len(data)))
    return out, web.closing


def parse_responses(data: bytes, head_only: set[int] = frozenset()):
    """Split output into [(status, reason, [(name, value)], body)]."""
    responses = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, f"unterminated head: {head!r}"
        lines = head.decode("latin-1").split("\r\n")
        version, status, reason = lines[0].split(" ", 2)
        assert version == "HTTP/1.1"
        fields = [tuple(line.split(": ", 1)) for line in lines[1:]]
        length = int(dict(fields).get("Content-Length", 0))
        if int(status) in (100, 304) or len(responses) in head_only:
            length = 0
        body, data = data[:length], data[length:]
        assert len(body) == length, "short body"
        responses.append((int(status), reason, fields, body))
    return responses


def req(line: str, *fields: str, body: bytes = b"") -> bytes:
    return ("\r\n".join([line, *fields]) + "\r\n\r\n").encode("latin-1") + body


def get(path: str, *fields: str) -> bytes:
    return req(f"GET {path} HTTP/1.1", "Host: example.org", *fields)


HOST = "Host: example.org"
GARBAGE_TLS = bytes.fromhex("160301020001000200fc0303") + bytes(range(32))

# (id, request bytes, indices of HEAD responses, [(status, {field: value or None=absent}, body)],
#  closing).  body None = not checked.
CASES = [
    ("get-root", get("/"), set(),
     [(200, {"Content-Type": "text/html", "Content-Length": str(len(INDEX)),
             "Connection": "keep-alive", "ETag": ETAG, "Accept-Ranges": "bytes",
             "Last-Modified": LAST_MODIFIED, "Server": "nginx", "Date": DATE}, INDEX)], False),
    ("get-index-query", get("/index.html?utm=1&x=%zz"), set(), [(200, {}, INDEX)], False),
    ("get-about", get("/about.html"), set(), [(200, {"Content-Type": "text/html"}, ABOUT)], False),
    ("get-robots", get("/robots.txt"), set(),
     [(200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow:\n")], False),
    ("get-favicon", get("/favicon.ico"), set(),
     [(200, {"Content-Type": "image/x-icon"}, DEFAULT_SITE["/favicon.ico"][1])], False),
    ("head-about", req("HEAD /about.html HTTP/1.1", HOST), {0},
     [(200, {"Content-Length": str(len(ABOUT)),
             "ETag": f'"{int(SITE_LAST_MODIFIED):x}-{len(ABOUT):x}"'}, b"")], False),
    ("get-missing", get("/wp-login.php"), set(),
     [(404, {"Content-Type": "text/html", "Content-Length": "146",
             "Connection": "keep-alive", "ETag": None, "Last-Modified": None}, NGINX_404)],
     False),
    ("head-missing", req("HEAD /nope HTTP/1.1", HOST), {0},
     [(404, {"Content-Length": "146"}, b"")], False),
    ("get-dir-missing", get("/about.html/"), set(), [(404, {}, None)], False),
    # §3.2: target forms
    ("absolute-form", req("GET http://example.org/about.html HTTP/1.1", HOST), set(),
     [(200, {}, ABOUT)], False),
    ("absolute-form-root", req("GET https://example.org HTTP/1.1", HOST), set(),
     [(200, {}, INDEX)], False),
    ("asterisk-form", req("OPTIONS * HTTP/1.1", HOST), set(), [(400, {}, None)], True),
    ("authority-form", req("CONNECT example.org:443 HTTP/1.1", HOST), set(),
     [(400, {}, None)], True),
    # paths are decoded and normalised like nginx does
    ("percent-decoded", get("/%69ndex.html"), set(), [(200, {}, INDEX)], False),
    ("dot-segments", get("/a/./b/../../about.html"), set(), [(200, {}, ABOUT)], False),
    ("merged-slashes", get("//about.html"), set(), [(200, {}, ABOUT)], False),
    ("dot-dot-above-root", get("/../etc/passwd"), set(), [(400, {}, None)], True),
    ("encoded-dot-dot", get("/%2e%2e/x"), set(), [(400, {}, None)], True),
    ("bad-escape", get("/ab%zz"), set(), [(400, {}, None)], True),
    ("nul-in-path", get("/index.html%00.txt"), set(), [(400, {}, None)], True),
    # methods
    ("post-known", req("POST / HTTP/1.1", HOST, "Content-Length: 5", body=b"hello") + get("/"),
     set(),
     [(405, {"Content-Length": "150", "Connection": "keep-alive", "Allow": None},
       error_page(405, "nginx")), (200, {}, INDEX)], False),
    ("post-missing", req("POST /login HTTP/1.1", HOST, "Content-Length: 3", body=b"a=b"),
     set(), [(404, {}, NGINX_404)], False),
    ("put", req("PUT /index.html HTTP/1.1", HOST, "Content-Length: 0"), set(),
     [(405, {}, None)], False),
    ("delete-missing", req("DELETE /x HTTP/1.1", HOST), set(), [(405, {}, None)], False),
    ("trace", req("TRACE / HTTP/1.1", HOST), set(), [(405, {}, None)], False),
    ("unknown-method", req("BREW / HTTP/1.1", HOST), set(), [(405, {}, None)], False),
    ("lowercase-method", req("get / HTTP/1.1", HOST), set(),
     [(400, {"Connection": "close"}, error_page(400, "nginx"))], True),
    # garbage and other protocols
    ("tls-client-hello", GARBAGE_TLS, set(), [(400, {"Connection": "close"}, None)], True),
    ("nul-bytes", b"\0\0\0\0", set(), [(400, {}, None)], True),
    ("ssh-banner", b"SSH-2.0-OpenSSH_9.6\r\n", set(), [(400, {}, None)], True),
    ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", set(), [(400, {}, None)], True),
    ("http2-version", req("GET / HTTP/2.0", HOST), set(),
     [(505, {"Connection": "close"}, error_page(505, "nginx"))], True),
    ("http-0-9-version", req("GET / HTTP/0.9"), set(), [(400, {}, None)], True),
    ("tab-in-target", b"GET /a\tb HTTP/1.1\r\n", set(), [(400, {}, None)], True),
    ("leading-space", b" GET / HTTP/1.1\r\n\r\n", set(), [(400, {}, None)], True),
    ("cr-in-line", b"GET / HTTP/1.1\rHost: x\r\n\r\n", set(), [(400, {}, None)], True),
    # a complete request line is judged before the header section arrives
    ("early-bad-target", b"GET /%zz HTTP/1.1\r\n", set(), [(400, {}, None)], True),
    ("early-bad-version", b"GET / HTTP/3.0\r\nHost:", set(), [(505, {}, None)], True),
    # §3.2 Host
    ("missing-host-11", req("GET / HTTP/1.1"), set(), [(400, {}, None)], True),
    ("head-missing-host", req("HEAD / HTTP/1.1"), {0}, [(400, {}, b"")], True),
    ("two-hosts", get("/", "Host: other.org"), set(), [(400, {}, None)], True),
    ("invalid-host", req("GET / HTTP/1.1", "Host: a/b"), set(), [(400, {}, None)], True),
    ("ipv6-host", req("GET / HTTP/1.1", "Host: [::1]:8443"), set(), [(200, {}, INDEX)], False),
    ("empty-host", req("GET / HTTP/1.1", "Host:"), set(), [(200, {}, INDEX)], False),
    # §9.3 persistence
    ("http10-no-host", req("GET / HTTP/1.0"), set(),
     [(200, {"Connection": "close"}, INDEX)], True),
    ("http10-keep-alive", req("GET / HTTP/1.0", "Connection: Keep-Alive"), set(),
     [(200, {"Connection": "keep-alive"}, INDEX)], False),
    ("http11-close", get("/", "Connection: close"), set(),
     [(200, {"Connection": "close"}, INDEX)], True),
    ("http11-close-in-list", get("/", "Connection: TE, close"), set(),
     [(200, {"Connection": "close"}, INDEX)], True),
    ("http12-is-11", req("GET / HTTP/1.2", HOST), set(), [(200, {}, INDEX)], False),
    ("close-stops-pipeline", req("GET / HTTP/1.0") + get("/about.html"), set(),
     [(200, {}, INDEX)], True),
    ("error-stops-pipeline", b"GET / HTTP/1.1\r\nbad line\r\n\r\n" + get("/"), set(),
     [(400, {}, None)], True),
    # §2.2 line endings and leading empty lines
    ("leading-crlf", b"\r\n\r\n\n" + get("/"), set(), [(200, {}, INDEX)], False),
    ("bare-lf", b"GET /about.html HTTP/1.1\nHost: a\n\n", set(), [(200, {}, ABOUT)], False),
    ("extra-spaces", b"GET  /about.html  HTTP/1.1 \r\nHost: a\r\n\r\n", set(),
     [(200, {}, ABOUT)], False),
    ("pipelined", get("/") + get("/missing") + req("HEAD /about.html HTTP/1.1", HOST)
     + get("/robots.txt"), {2},
     [(200, {}, INDEX), (404, {}, NGINX_404), (200, {}, b""), (200, {}, None)], False),
    # §5 field syntax
    ("obs-fold", get("/", "X-A: 1", " folded"), set(), [(400, {}, None)], True),
    ("space-before-colon", req("GET / HTTP/1.1", "Host : a"), set(), [(400, {}, None)], True),
    ("no-colon", get("/", "Nonsense"), set(), [(400, {}, None)], True),
    ("nul-in-value", get("/", "X-A: a\0b"), set(), [(400, {}, None)], True),
    ("odd-but-valid-fields", get("/", "X-Empty:", "x-tab:\tv\t", "Cookie: a=b; c=d"), set(),
     [(200, {}, INDEX)], False),
    # §6 bodies
    ("body-consumed", req("GET /missing HTTP/1.1", HOST, "Content-Length: 11",
                          body=b"GET / HTTP/") + get("/about.html"), set(),
     [(404, {}, None), (200, {}, ABOUT)], False),
    ("bad-content-length", get("/", "Content-Length: 1x"), set(), [(400, {}, None)], True),
    ("negative-content-length", get("/", "Content-Length: -1"), set(),
     [(400, {}, None)], True),
    ("two-content-lengths", get("/", "Content-Length: 1", "Content-Length: 1"), set(),
     [(400, {}, None)], True),
    ("huge-content-length", get("/", "Content-Length: 99999999999999999999"), set(),
     [(400, {}, None)], True),
    ("too-large-body", req("POST / HTTP/1.1", HOST, "Content-Length: 1048577"), set(),
     [(413, {"Connection": "close"}, error_page(413, "nginx"))], True),
    ("chunked-body", req("POST /x HTTP/1.1", HOST, "Transfer-Encoding: chunked",
                         body=b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n")
     + get("/about.html"), set(), [(404, {}, None), (200, {}, ABOUT)], False),
    ("chunked-bare-lf", req("POST /x HTTP/1.1", HOST, "Transfer-Encoding: Chunked",
                            body=b"3\nabc\n0\n\n") + get("/"), set(),
     [(404, {}, None), (200, {}, INDEX)], False),
    ("chunked-malformed", req("POST /x HTTP/1.1", HOST, "Transfer-Encoding: chunked",
                              body=b"zz\r\n") + get("/"), set(), [(404, {}, None)], True),
    ("chunked-bad-data-end", req("POST /x HTTP/1.1", HOST, "Transfer-Encoding: chunked",
                                 body=b"1\r\nab\r\n") + get("/"), set(),
     [(404, {}, None)], True),
    ("gzip-coding", get("/", "Transfer-Encoding: gzip, chunked"), set(),
     [(501, {"Connection": "close"}, error_page(501, "nginx"))], True),
    ("te-and-cl", get("/", "Transfer-Encoding: chunked", "Content-Length: 3"), set(),
     [(400, {}, None)], True),
    ("te-in-http10", req("POST / HTTP/1.0", "Transfer-Encoding: chunked"), set(),
     [(400, {}, None)], True),
    ("expect-continue", req("POST /upload HTTP/1.1", HOST, "Expect: 100-continue",
                            "Content-Length: 4", body=b"data") + get("/"), set(),
     [(100, {"Server": None}, b""), (404, {}, None), (200, {}, INDEX)], False),
    ("expect-without-body", get("/", "Expect: 100-continue"), set(), [(200, {}, INDEX)], False),
    # sizes (nginx: 8k buffers)
    ("header-too-large", get("/", "Cookie: " + "a" * 9000), set(),
     [(400, {"Connection": "close"}, error_page(400, "nginx", "Request Header Or Cookie Too Large"))],
     True),
    ("line-too-long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n", set(),
     [(414, {"Connection": "close"}, error_page(414, "nginx"))], True),
    ("line-too-long-unfinished", b"GET /" + b"a" * 9000, set(), [(414, {}, None)], True),
    # request line 16 + Host line 19 + "X-Pad: " 7 + CRLFCRLF 4 = 46 bytes around the pad
    ("header-just-fits", get("/", "X-Pad: " + "p" * (8192 - 46)), set(),
     [(200, {}, INDEX)], False),
    ("header-one-too-many", get("/", "X-Pad: " + "p" * (8192 - 45)), set(),
     [(400, {}, None)], True),
    # RFC 9110 §13 conditional requests
    ("if-none-match", get("/", f"If-None-Match: {ETAG}"), set(),
     [(304, {"ETag": ETAG, "Last-Modified": LAST_MODIFIED, "Content-Length": None,
             "Content-Type": None, "Connection": "keep-alive"}, b"")], False),
    ("if-none-match-weak-list", get("/", f'If-None-Match: "x", W/{ETAG}'), set(),
     [(304, {}, b"")], False),
    ("if-none-match-star", get("/", "If-None-Match: *"), set(), [(304, {}, b"")], False),
    ("if-none-match-other", get("/", 'If-None-Match: "x"'), set(), [(200, {}, INDEX)], False),
    ("if-modified-since-same", get("/", f"If-Modified-Since: {LAST_MODIFIED}"), set(),
     [(304, {}, b"")], False),
    ("if-modified-since-other", get("/", f"If-Modified-Since: {DATE}"), set(),
     [(200, {}, INDEX)], False),
    ("if-modified-since-junk", get("/", "If-Modified-Since: yesterday"), set(),
     [(200, {}, INDEX)], False),
    ("both-validators-must-match", get("/", 'If-None-Match: "x"',
                                       f"If-Modified-Since: {LAST_MODIFIED}"), set(),
     [(200, {}, INDEX)], False),
    # RFC 9110 §14 ranges
    ("range-first-bytes", get("/", "Range: bytes=0-9"), set(),
     [(206, {"Content-Range": f"bytes 0-9/{len(INDEX)}", "Content-Length": "10",
             "Accept-Ranges": None}, INDEX[:10])], False),
    ("range-open", get("/", "Range: bytes=1290-"), set(),
     [(206, {"Content-Range": f"bytes 1290-{len(INDEX) - 1}/{len(INDEX)}"}, INDEX[1290:])],
     False),
    ("range-suffix", get("/", "Range: bytes=-5"), set(), [(206, {}, INDEX[-5:])], False),
    ("range-suffix-longer-than-file", get("/", "Range: bytes=-99999"), set(),
     [(206, {}, INDEX)], False),
    ("range-end-clipped", get("/", "Range: bytes=5-99999"), set(), [(206, {}, INDEX[5:])], False),
    ("range-unsatisfiable", get("/", "Range: bytes=99999-"), set(),
     [(416, {"Content-Range": f"bytes */{len(INDEX)}", "Connection": "keep-alive"},
       error_page(416, "nginx"))], False),
    ("range-reversed", get("/", "Range: bytes=9-1"), set(), [(416, {}, None)], False),
    ("range-junk", get("/", "Range: bytes=a-b"), set(), [(416, {}, None)], False),
    ("range-multiple", get("/", "Range: bytes=0-1,5-6"), set(), [(200, {}, INDEX)], False),
    ("range-other-unit", get("/", "Range: pages=1-2"), set(), [(200, {}, INDEX)], False),
    ("if-range-match", get("/", "Range: bytes=0-0", f"If-Range: {ETAG}"), set(),
     [(206, {}, INDEX[:1])], False),
    ("if-range-mismatch", get("/", "Range: bytes=0-0", 'If-Range: "old"'), set(),
     [(200, {}, INDEX)], False),
]


@pytest.mark.parametrize("feed", [feed_whole, feed_bytewise], ids=["whole", "bytewise"])
@pytest.mark.parametrize("name, data, head_only, expected, closing", CASES,
                         ids=[c[0] for c in CASES])
def test_requests(feed, name, data, head_only, expected, closing):
    out, did_close = feed(data)
    responses = parse_responses(out, head_only)
    assert [r[0] for r in responses] == [e[0] for e in expected], out[:300]
    for (status, _, fields, body), (_, want, want_body) in zip(responses, expected, strict=True):
        as_dict = dict(fields)
        assert len(as_dict) == len(fields), f"duplicate fields in {fields}"
        for field, value in want.items():
            assert as_dict.get(field) == value, (field, as_dict)
        if status != 100:
            assert [f for f, _ in fields[:2]] == ["Server", "Date"]
            assert IMF_FIXDATE.fullmatch(as_dict["Date"])
        if want_body is not None:
            assert body == want_body
    assert did_close is closing
    assert feed_whole(data) == feed_bytewise(data)


def test_nginx_header_order():
    out, _ = feed_whole(get("/"))
    names = [f for f, _ in parse_responses(out)[0][2]]
    assert names == ["Server", "Date", "Content-Type", "Content-Length", "Last-Modified",
                     "Connection", "ETag", "Accept-Ranges"]
    out, _ = feed_whole(get("/missing"))
    names = [f for f, _ in parse_responses(out)[0][2]]
    assert names == ["Server", "Date", "Content-Type", "Content-Length", "Connection"]


@pytest.mark.parametrize("status, reason, length", [
    (400, "Bad Request", 150), (404, "Not Found", 146), (405, "Not Allowed", 150),
    (413, "Request Entity Too Large", 176), (414, "Request-URI Too Large", 170),
    (416, "Requested Range Not Satisfiable", 190), (501, "Not Implemented", 158),
    (505, "HTTP Version Not Supported", 180),
])
def test_error_pages_are_nginx_pages(status, reason, length):
    page = error_page(status, "nginx")
    assert page == (f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
                    f"<center><h1>{status} {reason}</h1></center>\r\n"
                    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n").encode()
    assert len(page) == length


def test_partial_input_waits():
    data = get("/about.html")
    web = face()
    assert web.receive_data(data[:-1]) == b""
    assert not web.closing
    out = web.receive_data(data[-1:])
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(ABOUT)


def test_body_split_across_reads():
    web = face()
    first = web.receive_data(req("POST / HTTP/1.1", HOST, "Content-Length: 10") + b"12345")
    assert first.startswith(b"HTTP/1.1 405 Not Allowed\r\n")
    assert web.receive_data(b"678") == b""
    assert web.receive_data(b"90" + get("/robots.txt")).endswith(b"Disallow:\n")


def test_nothing_after_closing():
    web = face()
    assert web.receive_data(b"\x16\x03\x01").startswith(b"HTTP/1.1 400 ")
    assert web.closing
    assert web.receive_data(get("/")) == b""


def test_custom_site_server_and_times():
    site = {"/index.html": ("text/html; charset=utf-8", b"<p>hi</p>")}
    web = WebFace(site, "nginx/1.22.1", last_modified=0x10000, clock=lambda: 0.0)
    out = web.receive_data(get("/") + get("/about.html"))
    (s1, _, f1, b1), (s2, _, f2, b2) = parse_responses(out)
    f1, f2 = dict(f1), dict(f2)
    assert (s1, b1, f1["Content-Type"], f1["Server"]) == (200, b"<p>hi</p>",
                                                          "text/html; charset=utf-8",
                                                          "nginx/1.22.1")
    assert f1["ETag"] == '"10000-9"'
    assert f1["Last-Modified"] == "Thu, 01 Jan 1970 18:12:16 GMT"
    assert f1["Date"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert s2 == 404 and b"<hr><center>nginx/1.22.1</center>" in b2


# -- properties ------------------------------------------------------------------

_SNIPPETS = st.sampled_from([
    b"GET ", b"HEAD ", b"POST ", b"/", b"/index.html", b"?", b"%", b"%2e", b"..", b" ",
    b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"\r\n", b"\n", b"\r", b"Host: a",
    b"Content-Length: ", b"Transfer-Encoding: chunked", b"Connection: close",
    b"Expect: 100-continue", b"Range: bytes=", b"If-None-Match: ", b"If-Modified-Since: ",
    b"0", b"5", b"-", b",", b":", b"\x00", b"\xff", b"a",
])
_HTTPISH = st.lists(st.one_of(_SNIPPETS, st.binary(max_size=8)), max_size=40).map(b"".join)


def _check_output(chunks: list[bytes]) -> None:
    web = face()
    for chunk in chunks:
        out = web.receive_data(chunk)
        # HTTP/0.9 gets the page alone
        assert out == b"" or out.startswith((b"HTTP/1.1 ", b"<html>", b"<!DOCTYPE"))
        assert isinstance(web.closing, bool)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_arbitrary_bytes_never_raise(chunks):
    _check_output(chunks)


@settings(max_examples=500, deadline=None)
@given(st.lists(_HTTPISH, min_size=1, max_size=4))
def test_http_like_bytes_never_raise(chunks):
    _check_output(chunks)


@settings(max_examples=200, deadline=None)
@given(_HTTPISH, st.data())
def test_splitting_never_changes_the_answer(data, draw):
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=6)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    whole = face()
    split = face()
    assert whole.receive_data(data) == b"".join(split.receive_data(p) for p in pieces)
    assert whole.closing == split.closing


# -- as nginx answers on its HTTPS port, measured with Debian's nginx 1.22 -----------

TO_HTTPS_PAGE = (b"<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title>"
                 b"</head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n"
                 b"<center>The plain HTTP request was sent to HTTPS port</center>\r\n"
                 b"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
BAD_REQUEST_PAGE = error_page(400, "nginx")


@pytest.mark.parametrize("data", [get("/"), get("/nothere"), req("GET / HTTP/1.0"),
                                  req("POST / HTTP/1.1", HOST, "Content-Length: 5", body=b"hello"),
                                  req("POST / HTTP/1.1", HOST, "Content-Length: 99999999")])
def test_a_plain_request_on_the_https_port_gets_nginx_s_497_page(data):
    web = face(plain_on_https_port=True)
    [(status, reason, fields, body)] = parse_responses(web.receive_data(data))
    assert (status, reason, body) == (400, "Bad Request", TO_HTTPS_PAGE)
    assert fields == [("Server", "nginx"), ("Date", DATE), ("Content-Type", "text/html"),
                      ("Content-Length", str(len(TO_HTTPS_PAGE))), ("Connection", "close")]
    assert web.closing


def test_a_plain_head_request_on_the_https_port_gets_the_497_head_alone():
    web = face(plain_on_https_port=True)
    out = web.receive_data(req("HEAD / HTTP/1.1", HOST))
    assert out.endswith(f"Content-Length: {len(TO_HTTPS_PAGE)}\r\nConnection: close\r\n\r\n".encode())
    assert web.closing


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n\r\n", b"\x01", b"get / HTTP/1.1\r\n",
                                  b"PRI * HTTP/2.0\r\n"])
def test_a_bad_plain_request_on_the_https_port_gets_the_ordinary_400(data):
    web = face(plain_on_https_port=True)
    [(status, _, _, body)] = parse_responses(web.receive_data(data))
    assert (status, body) == (400, BAD_REQUEST_PAGE) and web.closing


@pytest.mark.parametrize("data, answer", [
    (b"GET /\r\n", INDEX), (b"GET / \r\n", INDEX), (b"GET /?a=b\r\n", INDEX),
    (b"GET /nothere\r\n", NGINX_404), (b"GET /%zz\r\n", BAD_REQUEST_PAGE),
    (b"GET /../\r\n", BAD_REQUEST_PAGE),
    (b"HEAD /\r\n", BAD_REQUEST_PAGE), (b"POST /\r\n", BAD_REQUEST_PAGE),
])
def test_http_0_9_gets_the_body_alone(data, answer):
    for feed in (feed_whole, feed_bytewise):
        assert feed(data) == (answer, True)


def test_http_0_9_on_the_https_port_gets_the_497_page_alone():
    assert feed_whole(b"GET /\r\n", plain_on_https_port=True) == (TO_HTTPS_PAGE, True)


@pytest.mark.parametrize("data", [b"GET GET \r\n", b"GET /a\x01b\r\n", b"GET * HTTP/2.0\r\n"])
def test_a_target_nginx_cannot_read_gets_400_with_headers_even_without_a_version(data):
    out, closing = feed_whole(data)
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n") and closing


def test_a_bad_version_is_judged_before_the_target_s_escapes():
    out, _ = feed_whole(b"GET /%zz HTTP/2.0\r\n")
    assert out.startswith(b"HTTP/1.1 505 ")


def test_which_timer_runs_follows_the_request():
    web = face()
    assert web.awaiting_request and not web.reading_body
    web.receive_data(b"\r\n")  # nginx starts a request on any byte, an empty line too
    assert not web.awaiting_request
    web.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n")
    assert not web.awaiting_request and not web.reading_body
    web.receive_data(b"\r\n")
    assert web.awaiting_request
    web.receive_data(req("POST /index.html HTTP/1.1", HOST, "Content-Length: 4", body=b"ab"))
    assert web.reading_body and not web.awaiting_request
    web.receive_data(b"cd")
    assert web.awaiting_request and not web.reading_body


@pytest.mark.parametrize("data, lingers, body_to_come", [
    (b"\x01", True, False),  # a request nginx could not parse: it reads on
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", True, False),
    (b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", True, False),
    (b"GET / HTTP/1.1\r\n\r\n", False, False),  # parsed, nothing left: it closes at once
    (b"GET /" + b"a" * 9000, False, False),  # 414: not after a head too long to read
    (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", False, False),
    (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /", True, False),  # bytes it never answered
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999\r\n\r\n", True, True),  # 413, its body to come
])
def test_when_nginx_reads_on_after_its_answer(data, lingers, body_to_come):
    web = face()
    web.receive_data(data)
    assert web.closing and (web.lingers, web.body_to_come) == (lingers, body_to_come)


def test_a_497_with_its_whole_body_closes_at_once_but_one_still_coming_is_read_first():
    whole = face(plain_on_https_port=True)
    whole.receive_data(req("POST / HTTP/1.1", HOST, "Content-Length: 5", body=b"hello"))
    assert whole.closing and not whole.lingers
    coming = face(plain_on_https_port=True)
    coming.receive_data(req("POST / HTTP/1.1", HOST, "Content-Length: 2000000"))
    assert coming.closing and coming.lingers and coming.body_to_come


# -- a member's hello is a request line in progress -----------------------------
# The hub waits on every prefix of a hello (protocol/hello.py), so the web face,
# like nginx, must wait on each too: say nothing, and stay open.

@given(st.binary(min_size=32, max_size=32), st.binary(min_size=16, max_size=16), st.binary(max_size=64),
       st.booleans())
def test_the_face_waits_on_every_prefix_of_a_hello(seed, token, binding, join):
    key = Ed25519PrivateKey.from_private_bytes(seed)
    data = make_hello(key, "sha256:x", binding, token if join else None)
    for cut in range(1, len(data) + 1):
        web = face()
        assert web.receive_data(data[:cut]) == b"" and not web.closing, f"answered {cut} bytes of a hello"
    web = face()
    assert b"".join(web.receive_data(data[i:i + 1]) for i in range(len(data))) == b"" and not web.closing
    # What follows a refused hello is what follows any URI: here nginx's 404.
    out = web.receive_data(b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 404 Not Found\r\n") and out.endswith(NGINX_404) and not web.closing


def test_a_head_request_whose_line_nginx_refuses_gets_the_page_but_one_with_a_bad_path_does_not():
    # nginx knows the method only once the request line is read whole: a 505 for the line comes with
    # its page, a 400 for the path after it (the escapes) without, as for any HEAD.
    out, _ = feed_whole(b"HEAD / HTTP/2.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 505 ") and out.endswith(error_page(505, "nginx"))
    out, _ = feed_whole(b"HEAD /%zz HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ") and out.endswith(b"Connection: close\r\n\r\n")
