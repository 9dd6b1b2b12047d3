"""Tests for ladder.protocol.http1: request heads read as nginx reads them, by feeding bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladder.protocol.http1 import (
    MAX_CHUNK_LINE,
    ChunkedBody,
    Fields,
    HeadReader,
    RequestError,
    RequestLine,
    body_framing,
    check_version,
    persists,
)

LIMIT = 1024


def read_all(data: bytes, bytewise: bool = False, limit: int = LIMIT) -> tuple[list, bytearray]:
    """Every head `data` holds, fed whole or a byte at a time, and what is left unread."""
    reader, buf, heads = HeadReader(limit), bytearray(), []
    for chunk in ([data[i:i + 1] for i in range(len(data))] if bytewise else [data]):
        buf += chunk
        while (head := reader.read_head(buf)) is not None:
            heads.append(head)
    return heads, buf


def one_head(data: bytes) -> tuple[RequestLine, list[tuple[bytes, bytes]]]:
    for bytewise in (False, True):
        [(line, fields)], rest = read_all(data, bytewise)
        assert rest == b""
    return line, list(fields)


def refused(data: bytes, status: int, *, limit: int = LIMIT, at: int | None = None) -> None:
    """`data` is refused with `status` fed whole and fed bytewise; bytewise, at byte `at` (1-based) if
    given."""
    with pytest.raises(RequestError) as whole:
        read_all(data, limit=limit)
    assert whole.value.status == status
    reader, buf = HeadReader(limit), bytearray()
    for count, byte in enumerate(data, 1):
        buf.append(byte)
        try:
            reader.read_head(buf)
        except RequestError as exc:
            assert exc.status == status
            assert at is None or count == at, f"refused at byte {count}, not {at}"
            return
    pytest.fail("fed bytewise, it was never refused")


# -- the request line (§3) ---------------------------------------------------------


def test_a_head_gives_its_line_and_fields_as_sent():
    line, fields = one_head(b"GET http://a.example/x?y HTTP/1.1\r\nHost: a.example\r\nX-Case: Kept\r\n\r\n")
    assert line == RequestLine(b"GET", b"http://a.example/x?y", (1, 1))
    assert fields == [(b"Host", b"a.example"), (b"X-Case", b"Kept")]


def test_the_line_is_given_as_soon_as_its_line_end_is_there_and_stays_until_the_fields():
    reader, buf = HeadReader(LIMIT), bytearray(b"\r\n\nPOST /a HTTP/1.0\r\nHost")
    assert reader.read_line(buf) == RequestLine(b"POST", b"/a", (1, 0))
    assert buf == b"POST /a HTTP/1.0\r\nHost" and reader.in_head
    assert reader.read_fields(buf) is None
    buf += b": a\r\n\r\nnext"
    assert list(reader.read_fields(buf)) == [(b"Host", b"a")]
    assert buf == b"next" and not reader.in_head


def test_empty_lines_before_a_request_begin_it():
    reader, buf = HeadReader(LIMIT), bytearray(b"\r\n\r\n")
    assert not reader.in_head
    assert reader.read_line(buf) is None and buf == b"" and reader.in_head  # nginx's header timer runs


@pytest.mark.parametrize("data, line", [
    (b"GET  /a  HTTP/1.1 \r\n\r\n", RequestLine(b"GET", b"/a", (1, 1))),  # several spaces, as nginx
    (b"GET /a HTTP/1.1\n\n", RequestLine(b"GET", b"/a", (1, 1))),  # §2.2 bare LF
    (b"M-SEARCH * HTTP/1.1\r\n\r\n", RequestLine(b"M-SEARCH", b"*", (1, 1))),
    (b"CONNECT a.example:443 HTTP/1.1\r\n\r\n", RequestLine(b"CONNECT", b"a.example:443", (1, 1))),
    (b"GET / HTTP/2.0\r\n\r\n", RequestLine(b"GET", b"/", (2, 0))),  # the version is the caller's to judge
    (b"GET / HTTP/1.010\r\n\r\n", RequestLine(b"GET", b"/", (1, 10))),
])
def test_request_lines_nginx_reads(data, line):
    assert one_head(data)[0] == line


def test_a_line_without_a_version_is_http_0_9_and_has_no_fields():
    reader, buf = HeadReader(LIMIT), bytearray(b"GET /a\r\nHost: a\r\n\r\n")
    line, fields = reader.read_head(buf)
    assert line == RequestLine(b"GET", b"/a", None) and list(fields) == []
    assert buf == b"Host: a\r\n\r\n" and not reader.in_head  # what follows is the next request's


@pytest.mark.parametrize("data, at", [
    (b"get / HTTP/1.1\r\n\r\n", 1),  # nginx's methods are upper case
    (b" GET / HTTP/1.1\r\n\r\n", 1),
    (b"\x16\x03\x01", 1),
    (b"GET\t/ HTTP/1.1\r\n\r\n", 4),
    (b"GET /a\tb HTTP/1.1\r\n\r\n", 7),
    (b"GET /a\x01 HTTP/1.1\r\n\r\n", 7),
    (b"GET / HTTP/1.1\rHost: a\r\n\r\n", 16),  # a CR not before a LF
    (b"GET / HTTP/1.x\r\n\r\n", 16),  # judged at the line end
    (b"GET / HTTPS/1.1\r\n\r\n", 17),
    (b"GET\r\n\r\n", 4),
])
def test_a_malformed_request_line_is_refused_at_its_first_bad_byte(data, at):
    refused(data, 400, at=at)


def test_a_request_line_over_the_limit_is_a_414_ended_or_not():
    refused(b"GET /" + b"a" * LIMIT, 414, at=LIMIT + 1)
    refused(b"GET /" + b"a" * LIMIT + b" HTTP/1.1\r\n\r\n", 414)


# -- header fields (§5) --------------------------------------------------------------


def test_field_values_lose_the_whitespace_around_them_and_names_compare_case_insensitively():
    _, lines = one_head(b"GET / HTTP/1.1\r\nX-A: \t one \t\r\nx-a:two\r\nX-Empty:\r\n"
                        b"Cookie: a=b; c=d\r\n\r\n")
    assert lines == [(b"X-A", b"one"), (b"x-a", b"two"), (b"X-Empty", b""), (b"Cookie", b"a=b; c=d")]
    fields = Fields(lines)
    assert fields.get("x-a") == ["one", "two"] and fields.get("x-empty") == [""] and fields.get("host") == []


@pytest.mark.parametrize("field", [
    b"X-A: 1\r\n folded",  # §5.2 obs-fold
    b"X-A: 1\r\n\tfolded",
    b"Host : a",  # §5.1 whitespace before the colon
    b" Host: a",
    b"Nonsense",
    b": no name",
    b"X(A): 1",  # a name is a token
    b"X-A: a\x00b",  # RFC 9110 §5.5
    b"X-A: a\rb",
])
def test_malformed_field_lines_are_refused(field):
    refused(b"GET / HTTP/1.1\r\n" + field + b"\r\n\r\n", 400)


def test_a_head_of_exactly_the_limit_fits_and_one_byte_more_is_a_431():
    line = b"GET / HTTP/1.1\r\n"
    pad = b"X: " + b"p" * (LIMIT - len(line) - 3 - 4)
    assert len(line + pad + b"\r\n\r\n") == LIMIT
    one_head(line + pad + b"\r\n\r\n")
    refused(line + pad + b"p\r\n\r\n", 431)
    refused(line + b"X: " + b"p" * 2 * LIMIT, 431)  # unended, too


def test_pipelined_heads_are_read_in_order_and_a_body_stays_for_the_caller():
    reader = HeadReader(LIMIT)
    buf = bytearray(b"GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody")
    assert [reader.read_head(buf)[0].target for _ in range(2)] == [b"/1", b"/2"]
    assert buf == b"body"


# -- what the fields say (§6, §9.3) ------------------------------------------------------


def fields(*lines: bytes) -> Fields:
    _, read = one_head(b"POST / HTTP/1.1\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n")
    return Fields(read)


@pytest.mark.parametrize("lines, version, framing", [
    ((), (1, 1), (0, False)),
    ((b"Content-Length: 42",), (1, 1), (42, False)),
    ((b"Content-Length: 0",), (1, 0), (0, False)),
    ((b"Transfer-Encoding: chunked",), (1, 1), (0, True)),
    ((b"Transfer-Encoding: Chunked",), (1, 1), (0, True)),
])
def test_body_framing(lines, version, framing):
    assert body_framing(fields(*lines), version) == framing


@pytest.mark.parametrize("lines, version, status", [
    ((b"Content-Length: 1", b"Content-Length: 1"), (1, 1), 400),  # §6.3 (5): even when they agree
    ((b"Content-Length: 1, 1",), (1, 1), 400),
    ((b"Content-Length: 1x",), (1, 1), 400),
    ((b"Content-Length: -1",), (1, 1), 400),
    ((b"Content-Length: +1",), (1, 1), 400),
    ((b"Content-Length: 9999999999999999999",), (1, 1), 400),  # 19 digits
    ((b"Transfer-Encoding: chunked", b"Content-Length: 3"), (1, 1), 400),  # §6.3 (3)
    ((b"Transfer-Encoding: chunked",), (1, 0), 400),  # §6.1
    ((b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"), (1, 1), 400),
    ((b"Transfer-Encoding: gzip, chunked",), (1, 1), 501),  # nginx knows chunked alone
    ((b"Transfer-Encoding: identity",), (1, 1), 501),
])
def test_ambiguous_or_unknown_framing_is_refused(lines, version, status):
    with pytest.raises(RequestError) as refusal:
        body_framing(fields(*lines), version)
    assert refusal.value.status == status


@pytest.mark.parametrize("lines, version, persistent", [
    ((), (1, 1), True),
    ((b"Connection: close",), (1, 1), False),
    ((b"Connection: TE, Close",), (1, 1), False),
    ((), (1, 0), False),
    ((b"Connection: Keep-Alive",), (1, 0), True),
    ((b"Connection: keep-alive, close",), (1, 0), False),
])
def test_persistence(lines, version, persistent):
    assert persists(fields(*lines), version) is persistent


@pytest.mark.parametrize("version, status", [(None, 400), ((0, 9), 400), ((2, 0), 505), ((3, 1), 505)])
def test_versions_other_than_1_x_are_refused(version, status):
    with pytest.raises(RequestError) as refusal:
        check_version(version)
    assert refusal.value.status == status


def test_http_1_x_is_read():
    assert [check_version(v) for v in [(1, 0), (1, 1), (1, 2)]] == [(1, 0), (1, 1), (1, 2)]


# -- chunked bodies (§7.1) ----------------------------------------------------------------


def skip_chunked(data: bytes, max_trailer: int = LIMIT) -> tuple[bool, bytes]:
    """Whether the chunked body in `data` ends there, fed whole and bytewise alike, and what follows it."""
    results = []
    for pieces in ([data], [data[i:i + 1] for i in range(len(data))]):
        body, buf, done = ChunkedBody(max_trailer), bytearray(), False
        for piece in pieces:
            buf += piece
            done = done or body.feed(buf)
        results.append((done, bytes(buf)))
    assert results[0] == results[1] or not results[0][0]
    return results[0]


@pytest.mark.parametrize("data", [
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",  # extensions, a trailer
    b"3\nabc\n0\n\n",  # bare LF
    b"3 ;x\r\nabc\r\n0\r\n\r\n",  # BWS before ';'
])
def test_a_chunked_body_is_read_to_its_end_and_what_follows_stays(data):
    assert skip_chunked(data + b"GET") == (True, b"GET")


def test_an_unfinished_chunked_body_waits():
    assert skip_chunked(b"5\r\nhel")[0] is False
    assert skip_chunked(b"5\r\nhello\r\n0\r\nX: 1\r\n")[0] is False


@pytest.mark.parametrize("data", [
    b"zz\r\n",  # not hex
    b"\r\n",  # no size
    b"1234567890abcdef0\r\n",  # 17 hex digits
    b"1\r\nab\r\n",  # the data does not end where its size says
    b"1" * (MAX_CHUNK_LINE + 1),  # a size line that never ends
])
def test_a_malformed_chunked_body_is_refused(data):
    with pytest.raises(RequestError) as refusal:
        ChunkedBody(LIMIT).feed(bytearray(data))
    assert refusal.value.status == 400


def test_a_trailer_section_over_its_bound_is_refused():
    trailer = b"0\r\n" + b"X: " + b"t" * 40 + b"\r\n"
    with pytest.raises(RequestError):
        ChunkedBody(32).feed(bytearray(trailer + b"\r\n"))
    assert ChunkedBody(64).feed(bytearray(trailer + b"\r\n"))


# -- properties -------------------------------------------------------------------------------

_SNIPPETS = st.sampled_from([
    b"GET ", b"CONNECT ", b"/", b"http://a/", b"a:443", b"*", b" ", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0",
    b"\r\n", b"\n", b"\r", b"Host: a", b"Content-Length: 1", b":", b"\t", b"\x00", b"\xff", b"a",
])
_HTTPISH = st.lists(st.one_of(_SNIPPETS, st.binary(max_size=8)), max_size=40).map(b"".join)


def outcome(pieces: list[bytes]) -> tuple:
    """The heads read and the refusal (its status), if any, feeding `pieces` one after another."""
    reader, buf, heads = HeadReader(LIMIT), bytearray(), []
    try:
        for piece in pieces:
            buf += piece
            while (head := reader.read_head(buf)) is not None:
                heads.append((head[0], list(head[1])))
    except RequestError as exc:
        return heads, exc.status
    return heads, None


@settings(max_examples=300, deadline=None)
@given(st.one_of(_HTTPISH, st.binary(max_size=128)), st.data())
def test_any_bytes_are_heads_or_a_refusal_however_they_are_split(data, draw):
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=6)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    heads, status = outcome(pieces)
    assert status in (None, 400, 414, 431)
    assert outcome([data]) == (heads, status)
