"""HTTP/1.1 request heads read as nginx reads them: request line, header fields, limits, body framing.

One reading of HTTP/1.1 for all of Ladder: the hub's web face (link/webface.py)
answers strangers with it, and the agent's proxy front (agent/front.py) reads
its HTTP proxy requests with it. Sans-IO: it reads from the caller's buffer
and says what it found, or raises `RequestError` with the status to answer.

`HeadReader.read_line` takes a request line off the front of a buffer as
soon as its line end arrives, so a bad line is answered before any header
comes, and says so at the first byte no request line can hold, as nginx's
incremental parser does; `read_fields` then takes the header section, and
`read_head` does both. Empty lines before a request are skipped (§2.2).
`body_framing` and `persists` say what the fields mean for the body and the
connection; `ChunkedBody` reads a chunked body and throws it away.

Strict where nginx is: a method is upper-case letters, '_' and '-'; obs-fold,
whitespace before a colon, NUL or CR in a value, two Content-Lengths,
Transfer-Encoding with Content-Length or in HTTP/1.0 are refused. Lenient
where nginx is: bare LF line ends, several spaces between the words of the
request line. What a target may be (origin-form for a web site, authority
form for CONNECT) is the caller's to judge, and so is the version, once the
caller has judged the target (nginx judges the target first).

Section numbers are RFC 9112 (HTTP/1.1) unless they name RFC 9110.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterator
from dataclasses import dataclass

from ladder.errors import LadderError

MAX_CHUNK_LINE = 4 * 1024  # a chunk-size line with its extensions

# §3: method SP request-target SP HTTP-version.  nginx allows several spaces
# between words and after the version; its methods are upper-case letters,
# '_' and '-'.  Without a version it is HTTP/0.9.
_REQUEST_LINE = re.compile(rb"([A-Z_-]+) +([^\x00-\x20\x7f]+)(?: +HTTP/([0-9]{1,3})\.([0-9]{1,3}))? *")
# What an unfinished request line may look like; anything else is refused at once.
_REQUEST_LINE_PREFIX = re.compile(rb"[A-Z_-]*|[A-Z_-]+ [^\x00-\x1f\x7f]*\r?")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
# RFC 9110 §5.1 and §5.6.2: a field name is a token.
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")


class RequestError(LadderError):
    """A request that cannot be taken; `status` is the code to answer it with (RFC 9110 §15)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RequestLine:
    method: bytes
    target: bytes  # as sent: its form and meaning are the caller's to judge (§3.2)
    version: tuple[int, int] | None  # None: the line has none, it is HTTP/0.9 (RFC 1945 §4.1)


class Fields:
    """A head's field lines in order, as sent, values without the whitespace around them.

    Iterating gives (name, value) bytes as they came (a proxy passes them on);
    `get` finds every value of one field, its name compared case-insensitively
    (RFC 9110 §5.1).
    """

    __slots__ = ("_lines", "_by_name")

    def __init__(self, lines: list[tuple[bytes, bytes]]) -> None:
        self._lines = lines
        self._by_name: dict[str, list[str]] = {}
        for name, value in lines:
            self._by_name.setdefault(name.decode("ascii").lower(), []).append(value.decode("latin-1"))

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._lines)

    def get(self, name: str) -> list[str]:
        """Every value of the field `name` (lower case), in order; [] when it is absent."""
        return self._by_name.get(name, [])


class HeadReader:
    """Reads one request head after another off the front of a connection's buffer.

    `max_head` bounds a head, its request line and final empty line included,
    as nginx's large_client_header_buffers bound one: a longer request line
    gets 414, a longer head 431.
    """

    def __init__(self, max_head: int) -> None:
        self.max_head = max_head
        self._line: RequestLine | None = None  # read, its header section still to come
        self._line_end = 0  # where that line's LF is in the buffer
        self._scanned = 0  # where to resume looking for the end of the head
        self._begun = False  # empty lines before a request line were taken

    @property
    def in_head(self) -> bool:
        """A request has begun (an empty line before it counts) and its head is not whole yet.

        Bytes still unread in the caller's buffer are the caller's to count.
        """
        return self._begun or self._line is not None

    def read_line(self, buf: bytearray) -> RequestLine | None:
        """The request line at the front of `buf` once its line end is there; None until then.

        The line stays in `buf` until `read_fields` takes it with its header
        section, except a line without a version (HTTP/0.9): no header section
        follows one, so it leaves `buf` at once. Call only between heads.
        """
        skip = 0
        while skip < len(buf) and buf[skip] in b"\r\n":  # §2.2
            skip += 1
        if skip:
            del buf[:skip]
            self._begun = True
        if not buf:
            return None
        line_end = buf.find(b"\n")
        if line_end < 0:
            # §3: an invalid request line gets 400, as soon as its first bad octet is here.
            if not _REQUEST_LINE_PREFIX.fullmatch(buf):
                raise RequestError(400, "malformed request line")
            if len(buf) > self.max_head:
                raise RequestError(414, "request line too long")
            return None
        if line_end > self.max_head:
            raise RequestError(414, "request line too long")
        line = _parse_request_line(bytes(buf[:line_end]))
        if line.version is None:
            del buf[:line_end + 1]
            self._begun = False
        else:
            self._line, self._line_end = line, line_end
            self._scanned = max(line_end - 1, 0)
        return line

    def read_fields(self, buf: bytearray) -> Fields | None:
        """The header section after the line `read_line` gave, once it has ended; None until then.

        The line and the section (§5) leave `buf`; what follows stays.
        """
        # §2.1: the header section ends with an empty line.  Search only
        # what came since last time (a terminator is at most 4 octets).
        end = _HEAD_END.search(buf, self._scanned)
        if end is None or end.end() > self.max_head:
            if len(buf) > self.max_head:
                raise RequestError(431, "request head too large")
            self._scanned = max(len(buf) - 3, self._scanned)
            return None
        head = bytes(buf[self._line_end + 1:end.start()])
        del buf[:end.end()]
        self._line, self._begun = None, False
        return _parse_fields(head)

    def read_head(self, buf: bytearray) -> tuple[RequestLine, Fields] | None:
        """A whole request head off the front of `buf`, or None until all of it is there."""
        line = self._line or self.read_line(buf)
        if line is None:
            return None
        if line.version is None:
            return line, Fields([])
        fields = self.read_fields(buf)
        return None if fields is None else (line, fields)


def check_version(version: tuple[int, int] | None) -> tuple[int, int]:
    """The version if it is HTTP/1.x, the one read here (§2.3); a later major version gets 505
    (as nginx answers), an earlier one or none 400."""
    if version is not None and version[0] >= 2:
        raise RequestError(505, "HTTP version not supported")
    if version is None or version[0] != 1:
        raise RequestError(400, "malformed request line")
    return version


def body_framing(fields: Fields, version: tuple[int, int]) -> tuple[int, bool]:
    """(Content-Length, chunked) of a request's body per §6, or RequestError."""
    lengths = fields.get("content-length")
    codings = fields.get("transfer-encoding")
    if codings:
        # §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing; §6.3 (3):
        # with Content-Length too, reject (both as nginx 1.22 does).
        if version < (1, 1) or lengths or len(codings) > 1:
            raise RequestError(400, "bad Transfer-Encoding")
        # §6.1: a coding we do not know gets 501; nginx knows only "chunked".
        if codings[0].strip().lower() != "chunked":
            raise RequestError(501, "unknown transfer coding")
        return 0, True
    if not lengths:
        return 0, False  # §6.3 (7): a request without either has no body
    # §6.3 (5) and §8.6 of RFC 9110: one Content-Length of digits only.
    if len(lengths) > 1 or not _CONTENT_LENGTH.fullmatch(lengths[0]):
        raise RequestError(400, "bad Content-Length")
    return int(lengths[0]), False


def persists(fields: Fields, version: tuple[int, int]) -> bool:
    """§9.3: whether the connection stays open after this request.

    HTTP/1.1 unless "close", HTTP/1.0 only on "keep-alive".
    """
    tokens = {t.strip().lower() for v in fields.get("connection") for t in v.split(",")}
    return "close" not in tokens and (version >= (1, 1) or "keep-alive" in tokens)


def preferred_language(accept: str, offered: Container[str], fallback: str = "en") -> str:
    """The first of `offered` (primary tags: "en", "zh") that Accept-Language ranks highest.

    RFC 9110 §12.5.4, roughly: q-values order the tags, ties go to the
    earlier one; a region ("zh-CN") counts for its language.
    """
    best, best_q = fallback, -1.0
    for i, part in enumerate(accept.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in offered and q - i * 1e-6 > best_q:
            best, best_q = primary, q - i * 1e-6
    return best


class ChunkedBody:
    """Reads a chunked body (§7.1), trailers included, and throws it away.

    `max_trailer` bounds the trailer section as a head is bounded.
    """

    def __init__(self, max_trailer: int) -> None:
        self._max_trailer = max_trailer
        self._state = "size"  # size -> data -> data-end -> size ... -> trailer
        self._left = 0
        self._trailer = 0

    def feed(self, buf: bytearray) -> bool:
        """Consume from `buf`; True once the whole body is read.  RequestError if malformed."""
        while True:
            if self._state == "data":
                taken = min(self._left, len(buf))
                del buf[:taken]
                self._left -= taken
                if self._left:
                    return False
                self._state = "data-end"
            if self._state == "data-end":
                if buf[:2] == b"\r\n":
                    del buf[:2]
                elif buf[:1] == b"\n":
                    del buf[:1]
                elif not buf or buf == b"\r":
                    return False
                else:
                    raise RequestError(400, "malformed chunk")
                self._state = "size"
            line = _take_line(buf)
            if line is None:
                return False
            if self._state == "size":
                # chunk-size [ chunk-ext ]; BWS before ';' is tolerated.
                size = line.split(b";", 1)[0].strip(b" \t")
                if not _HEX.fullmatch(size):
                    raise RequestError(400, "malformed chunk size")
                self._left = int(size, 16)
                self._state = "data" if self._left else "trailer"
            else:
                if not line:
                    return True
                self._trailer += len(line)
                if self._trailer > self._max_trailer:
                    raise RequestError(400, "trailer section too large")


def _parse_request_line(line: bytes) -> RequestLine:
    """A complete request line (§3), its line end gone; RequestError(400) unless it is one."""
    # §2.2: a bare LF ends a line too; drop the CR of a CRLF.
    if line.endswith(b"\r"):
        line = line[:-1]
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        raise RequestError(400, "malformed request line")
    method, target, major, minor = match.groups()
    return RequestLine(method, target, None if major is None else (int(major), int(minor)))


def _parse_fields(head: bytes) -> Fields:
    """Header field lines (§5), or RequestError(400)."""
    lines: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\n") if head else ():
        # §5.2: obs-fold is rejected.  §5.1: no whitespace before the colon.
        name, colon, value = line.removesuffix(b"\r").partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise RequestError(400, "malformed header field")
        value = value.strip(b" \t")
        # RFC 9110 §5.5: CR, LF or NUL inside a value must be rejected.
        if b"\0" in value or b"\r" in value:
            raise RequestError(400, "malformed header field")
        lines.append((name, value))
    return Fields(lines)


def _take_line(buf: bytearray) -> bytes | None:
    end = buf.find(b"\n")
    if end < 0:
        if len(buf) > MAX_CHUNK_LINE:
            raise RequestError(400, "chunk line too long")
        return None
    line = bytes(buf[:end])
    del buf[:end + 1]
    return line[:-1] if line.endswith(b"\r") else line
