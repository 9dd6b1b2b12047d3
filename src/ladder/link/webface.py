"""The web-site face: what anyone who is not a member sees, an ordinary nginx.

A censor's probe, a scanner or a curious browser that reaches a hub gets the
answers nginx 1.22 would give for a small static site, byte for byte where
it is cheap: same status lines and reason phrases, same header order, same
error pages, same choice of when to close.

Sans-IO: ``WebFace.receive_data(bytes) -> bytes`` answers whatever complete
requests the bytes hold (pipelined requests in order) and ``closing`` says
when the caller should close after sending; ``awaiting_request`` and
``reading_body`` tell the caller which of nginx's timers runs (keepalive
between requests, the header deadline once a request's first byte came, the
body timer while a body is read).

The hub's port speaks TLS, so a request that arrives without it is on
nginx's HTTPS port in plain text (``plain_on_https_port``): nginx parses it
like any other, answers the same 400s to a bad request line or header, and
answers a good one with its 400 page "The plain HTTP request was sent to
HTTPS port". HTTP/0.9 (a request line without a version) is answered as
nginx does: the body alone, no status line or headers.  No sockets, no clock unless
asked (``clock`` gives the Date header), no HTTP library.  One WebFace serves
one connection.

Limits are nginx's defaults: the request line and the header section each
fit in 8 KiB, request bodies of at most 1 MiB are read and thrown away.
Section numbers are RFC 9112 (HTTP/1.1) unless they name RFC 9110.
"""

from __future__ import annotations

import email.utils
import re
import struct
import time
import zlib
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from ladder.errors import LadderError

MAX_HEAD = 8 * 1024          # nginx large_client_header_buffers 8k
MAX_BODY = 1024 * 1024       # nginx client_max_body_size 1m
MAX_CHUNK_LINE = 4 * 1024    # a chunk-size line with extensions
SITE_LAST_MODIFIED = 1_684_148_130.0  # 2023-05-15 10:55:30 UTC

_REASONS = {
    200: "OK",
    206: "Partial Content",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    405: "Not Allowed",  # nginx's wording, not RFC 9110's "Method Not Allowed"
    413: "Request Entity Too Large",
    414: "Request-URI Too Large",
    416: "Requested Range Not Satisfiable",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}
# Statuses after which nginx drops keep-alive (ngx_http_special_response_handler).
_CLOSING = {400, 413, 414, 501, 505}
HEADER_TOO_LARGE = "Request Header Or Cookie Too Large"  # nginx's 494, sent as 400
PLAIN_ON_HTTPS_PORT = "The plain HTTP request was sent to HTTPS port"  # nginx's 497, sent as 400

# §2.2 and §3: a request line.  nginx allows several spaces between words and
# after the version; its methods are upper-case letters, '_' and '-'.
# Without a version it is HTTP/0.9.
_REQUEST_LINE = re.compile(rb"([A-Z_-]+) +([^\x00-\x20\x7f]+)(?: +HTTP/([0-9]{1,3})\.([0-9]{1,3}))? *")
# What an unfinished request line may look like; anything else is answered
# with 400 at once, as nginx's incremental parser does.
_REQUEST_LINE_PREFIX = re.compile(rb"[A-Z_-]*|[A-Z_-]+ [^\x00-\x1f\x7f]*\r?")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_ABSOLUTE_FORM = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*(.*)", re.DOTALL)
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# RFC 9110 §5.1 and §5.6.2: a field name is a token.
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# RFC 9110 §7.2 / RFC 3986 §3.2.2: Host is uri-host [":" port].
_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(:[0-9]*)?")
_BYTE_RANGE = re.compile(r"bytes=\s*([0-9]{0,18})\s*-\s*([0-9]{0,18})\s*", re.IGNORECASE)
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")


class _Reject(LadderError):
    """The request cannot be answered normally; answer `status` and close."""

    def __init__(self, status: int, title: str | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.title = title


def _http_date(seconds: float) -> str:
    # RFC 9110 §5.6.7: IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
    return email.utils.formatdate(seconds, usegmt=True)


def error_page(status: int, server: str, title: str | None = None) -> bytes:
    """nginx's built-in HTML page for an error status."""
    h1 = f"{status} {_REASONS[status]}"
    head = f"{status} {title}" if title else h1
    extra = f"<center>{title}</center>\r\n" if title else ""
    return (f"<html>\r\n<head><title>{head}</title></head>\r\n<body>\r\n"
            f"<center><h1>{h1}</h1></center>\r\n{extra}"
            f"<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n").encode("latin-1")


class WebFace:
    """An nginx-like static web server for one connection, sans-IO."""

    def __init__(self, site: dict[str, tuple[str, bytes]] | None = None,
                 server_header: str = "nginx", *,
                 last_modified: float = SITE_LAST_MODIFIED,
                 clock: Callable[[], float] = time.time,
                 plain_on_https_port: bool = False) -> None:
        self._site = DEFAULT_SITE if site is None else site
        self._server = server_header
        self._last_modified = int(last_modified)
        self._clock = clock
        self._plain_on_https_port = plain_on_https_port
        self._bare = False  # an HTTP/0.9 request: answer the body alone
        self._empty_lines = False  # only empty lines since the last answer: a request started
        self._lingers = False
        self._body_to_come = False
        self._declared = 0, False
        self._buffer = bytearray()
        self._closing = False
        # The request line at the front of the buffer, once judged:
        # (offset of its LF, method, site path, version).
        self._line: tuple[int, bytes, str, tuple[int, int]] | None = None
        self._scanned = 0  # where to resume looking for the end of the head
        self._body_left = 0                       # Content-Length bytes to discard
        self._chunked: _ChunkedBody | None = None  # chunked body to discard

    @property
    def closing(self) -> bool:
        """True when the connection should be closed after sending the output."""
        return self._closing

    @property
    def lingers(self) -> bool:
        """With closing: nginx would half-close and read on for a while, not close at once."""
        return self._lingers

    @property
    def body_to_come(self) -> bool:
        """With lingers: the body the head announced is still coming; nginx reads it before its FIN."""
        return self._body_to_come

    @property
    def awaiting_request(self) -> bool:
        """True between requests: every byte received so far has been answered."""
        return not (self._buffer or self._line or self.reading_body or self._empty_lines)

    @property
    def reading_body(self) -> bool:
        """True while a request's body is being read (and thrown away)."""
        return bool(self._body_left) or self._chunked is not None

    def receive_data(self, data: bytes) -> bytes:
        """Take bytes from the peer; return the bytes to send back (maybe b"")."""
        if self._closing:
            return b""
        self._buffer += data
        out: list[bytes] = []
        while not self._closing:
            if self._body_left:
                taken = min(self._body_left, len(self._buffer))
                del self._buffer[:taken]
                self._body_left -= taken
                if self._body_left:
                    break
            if self._chunked is not None:
                try:
                    if not self._chunked.feed(self._buffer):
                        break
                except _Reject:
                    # The answer is already sent; like nginx, just hang up.
                    self._closing = True
                    break
                self._chunked = None
            response = self._next_request()
            if response is None:
                break
            self._empty_lines = False
            out.append(response)
        return b"".join(out)

    # -- one request -----------------------------------------------------------

    def _next_request(self) -> bytes | None:
        buf = self._buffer
        method = b""
        parsed = False  # the request line and header fields are read and valid
        self._declared = 0, False  # the body the head announces
        try:
            if self._line is None:
                # §2.2: ignore empty lines received before the request line.
                skip = 0
                while skip < len(buf) and buf[skip] in b"\r\n":
                    skip += 1
                del buf[:skip]
                if not buf:
                    # nginx has started a request (and its header timer) all the same
                    self._empty_lines = self._empty_lines or skip > 0
                    return None
                line_end = buf.find(b"\n")
                if line_end < 0:
                    # §3: an invalid request line gets 400; say so as soon
                    # as the first bad octet arrives, as nginx does.
                    if not _REQUEST_LINE_PREFIX.fullmatch(buf):
                        raise _Reject(400)
                    # §3: a request line longer than we parse gets 414.
                    if len(buf) > MAX_HEAD:
                        raise _Reject(414)
                    return None
                if line_end > MAX_HEAD:
                    raise _Reject(414)
                # The request line is complete: judge it now, without
                # waiting for the header section.
                method, target, version = _parse_request_line(bytes(buf[:line_end]))
                if version == (0, 9):
                    # RFC 1945 §4.1: no header section follows; nginx
                    # takes GET only, and answers with the body alone.
                    self._bare = True
                    del buf[:line_end + 1]
                    if method != b"GET":
                        raise _Reject(400)
                    path = _site_path(target)
                    parsed = True
                    return self._answer(method, path, version, {})
                path = _site_path(target)
                self._line = (line_end, method, path, version)
                self._scanned = max(line_end - 1, 0)
            line_end, method, path, version = self._line
            # §2.1: the header section ends with an empty line.  Search only
            # what came since last time (a terminator is at most 4 octets).
            end = _HEAD_END.search(buf, self._scanned)
            if end is None or end.end() > MAX_HEAD:
                if len(buf) > MAX_HEAD:
                    raise _Reject(400, HEADER_TOO_LARGE)
                self._scanned = max(len(buf) - 3, self._scanned)
                return None
            head = bytes(buf[line_end + 1:end.start()])
            del buf[:end.end()]
            self._line = None
            fields = _parse_fields(head)
            parsed = True
            return self._answer(method, path, version, fields)
        except _Reject as reject:
            self._closing = True
            # nginx reads on for a while (a lingering close) after a request it
            # could not parse, or while bytes it never answered wait; not after
            # a head too long to read (its 414 and 494). Measured with 1.22.
            too_long = reject.status == 414 or reject.title == HEADER_TOO_LARGE
            self._lingers = not too_long and (not parsed or self._unanswered_bytes())
            return self._error(reject.status, method == b"HEAD" and not self._bare, reject.title)

    def _unanswered_bytes(self) -> bool:
        """Closing after a parsed head: do bytes beyond the announced body wait, or is body to come?

        nginx reads the announced body first (and throws it away): a body
        sent whole leaves nothing behind; one still to come, or a request
        after it, keeps nginx reading.
        """
        length, chunked = self._declared
        self._body_to_come = chunked or length > len(self._buffer)
        del self._buffer[:length]
        return self._body_to_come or bool(self._buffer)

    def _answer(self, method: bytes, path: str, version: tuple[int, int],
                fields: dict[str, list[str]]) -> bytes:
        http11 = version >= (1, 1)
        hosts = fields.get("host", [])
        # §3.2: exactly one valid Host in HTTP/1.1, at most one before.
        if len(hosts) > 1 or (http11 and not hosts):
            raise _Reject(400)
        if hosts and not _HOST.fullmatch(hosts[0].encode("latin-1")):
            raise _Reject(400)
        body_length, chunked = _framing(fields, http11)
        self._declared = body_length, chunked
        if self._plain_on_https_port:
            # nginx checks this once the head is read and valid, before the body's size.
            raise _Reject(400, PLAIN_ON_HTTPS_PORT)
        if body_length > MAX_BODY:
            raise _Reject(413)
        # §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only on "keep-alive".
        tokens = {t.strip().lower() for v in fields.get("connection", []) for t in v.split(",")}
        keep_alive = not self._bare and "close" not in tokens and (http11 or "keep-alive" in tokens)

        head_only = method == b"HEAD"
        entry = self._site.get(path)
        if method in (b"GET", b"HEAD"):
            if entry is None:
                response = self._error(404, head_only, keep_alive=keep_alive)
            else:
                response = self._file(entry, fields, head_only, keep_alive)
        elif method == b"POST" and entry is None:
            response = self._error(404, keep_alive=keep_alive)  # nginx looks first
        else:
            response = self._error(405, head_only, keep_alive=keep_alive)

        if not keep_alive:
            self._closing = True
            self._lingers = self._unanswered_bytes()
            return response
        # A body follows; read it and throw it away (RFC 9110 §9.3.1: a GET
        # body has no meaning).  RFC 9110 §10.1.1: promise to read it.
        if body_length or chunked:
            self._body_left = body_length
            self._chunked = _ChunkedBody() if chunked else None
            if http11 and any(v.strip().lower() == "100-continue"
                              for v in fields.get("expect", [])):
                response = b"HTTP/1.1 100 Continue\r\n\r\n" + response
        return response

    def _file(self, entry: tuple[str, bytes], fields: dict[str, list[str]],
              head_only: bool, keep_alive: bool) -> bytes:
        content_type, body = entry
        last_modified = _http_date(self._last_modified)
        # nginx's ETag: hex mtime "-" hex length.
        etag = f'"{self._last_modified:x}-{len(body):x}"'
        validators = [("Last-Modified", last_modified), ("Connection", _conn(keep_alive)),
                      ("ETag", etag)]
        if _not_modified(fields, etag, self._last_modified):
            return self._head(304, validators)

        ranges = fields.get("range", [])
        if_range = fields.get("if-range", [])
        if len(ranges) == 1 and (not if_range or if_range[0].strip() in (etag, last_modified)):
            span = _byte_range(ranges[0], len(body))
            if span == "unsatisfiable":
                page = error_page(416, self._server)
                return self._head(416, [
                    ("Content-Type", "text/html"), ("Content-Length", str(len(page))),
                    ("Connection", _conn(keep_alive)),
                    ("Content-Range", f"bytes */{len(body)}")]) + (b"" if head_only else page)
            if span is not None:
                first, last = span
                part = body[first:last + 1]
                return self._head(206, [
                    ("Content-Type", content_type), ("Content-Length", str(len(part))),
                    *validators, ("Content-Range", f"bytes {first}-{last}/{len(body)}"),
                ]) + (b"" if head_only else part)

        return self._head(200, [
            ("Content-Type", content_type), ("Content-Length", str(len(body))),
            *validators, ("Accept-Ranges", "bytes"),
        ]) + (b"" if head_only else body)

    def _error(self, status: int, head_only: bool = False, title: str | None = None,
               keep_alive: bool = False) -> bytes:
        page = error_page(status, self._server, title)
        return self._head(status, [
            ("Content-Type", "text/html"), ("Content-Length", str(len(page))),
            ("Connection", _conn(keep_alive and status not in _CLOSING)),
        ]) + (b"" if head_only else page)

    def _head(self, status: int, fields: list[tuple[str, str]]) -> bytes:
        if self._bare:
            return b""
        lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Server: {self._server}",
                 f"Date: {_http_date(self._clock())}"]
        lines += [f"{name}: {value}" for name, value in fields]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _conn(keep_alive: bool) -> str:
    return "keep-alive" if keep_alive else "close"


# -- parsing -------------------------------------------------------------------


def _parse_request_line(line: bytes) -> tuple[bytes, bytes, tuple[int, int]]:
    """(method, request-target, version) of a complete request line, or _Reject."""
    # §2.2: a bare LF ends a line too; drop the CR of a CRLF.
    if line.endswith(b"\r"):
        line = line[:-1]
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        raise _Reject(400)
    method, target, major, minor = match.groups()
    # nginx's parser refuses a target that is neither a path nor a URI as it
    # reads it, before the version; the rest of its checks come after.
    if not target.startswith(b"/") and _ABSOLUTE_FORM.fullmatch(target) is None:
        raise _Reject(400)
    if major is None:
        return method, target, (0, 9)
    # §2.3: HTTP/1.x is ours; HTTP/2.0 and later in a request line gets 505
    # (nginx), 0.x gets 400; both before the target is looked at, as nginx.
    version = (int(major), int(minor))
    if version[0] >= 2:
        raise _Reject(505)
    if version[0] != 1:
        raise _Reject(400)
    return method, target, version


def _site_path(target: bytes) -> str:
    """The site key a request-target names (§3.2), e.g. "/" -> "/index.html"."""
    if not target.startswith(b"/"):
        # §3.2.2 absolute-form; "*" (§3.2.4, also the HTTP/2 preface) and
        # authority-form (§3.2.3) are not for a static site: 400 like nginx.
        match = _ABSOLUTE_FORM.fullmatch(target)
        if match is None:
            raise _Reject(400)
        target = b"/" + match.group(1).lstrip(b"/")
    raw = target.split(b"?", 1)[0].split(b"#", 1)[0]  # the query never selects a file
    if _BAD_ESCAPE.search(raw):
        raise _Reject(400)
    decoded = unquote_to_bytes(raw)
    if b"\0" in decoded:
        raise _Reject(400)
    # RFC 3986 §5.2.4 dot segments, and nginx's merge_slashes; climbing
    # above the root is a 400 in nginx.
    segments: list[bytes] = []
    parts = decoded.split(b"/")
    for part in parts:
        if part == b"..":
            if not segments:
                raise _Reject(400)
            segments.pop()
        elif part not in (b"", b"."):
            segments.append(part)
    if parts[-1] in (b"", b".", b".."):
        segments.append(b"index.html")  # nginx's index directive
    return "/" + b"/".join(segments).decode("utf-8", "surrogateescape")


def _parse_fields(head: bytes) -> dict[str, list[str]]:
    """Header field lines (§5) -> {lower-case name: [values]}, or _Reject(400)."""
    fields: dict[str, list[str]] = {}
    for line in head.split(b"\n") if head else ():
        if line.endswith(b"\r"):
            line = line[:-1]
        # §5.2: obs-fold is rejected.  §5.1: no whitespace before the colon.
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise _Reject(400)
        value = value.strip(b" \t")
        # RFC 9110 §5.5: CR, LF or NUL inside a value must be rejected.
        if b"\0" in value or b"\r" in value:
            raise _Reject(400)
        fields.setdefault(name.decode("ascii").lower(), []).append(value.decode("latin-1"))
    return fields


def _framing(fields: dict[str, list[str]], http11: bool) -> tuple[int, bool]:
    """(Content-Length, chunked) of the request body per §6, or _Reject."""
    lengths = fields.get("content-length", [])
    codings = fields.get("transfer-encoding", [])
    if codings:
        # §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing; §6.3 (3):
        # with Content-Length too, reject (both as nginx 1.22 does).
        if not http11 or lengths or len(codings) > 1:
            raise _Reject(400)
        # §6.1: a coding we do not know gets 501; nginx knows only "chunked".
        if codings[0].strip().lower() != "chunked":
            raise _Reject(501)
        return 0, True
    if not lengths:
        return 0, False  # §6.3 (7): a request without either has no body
    # §6.3 (5) and §8.6 of RFC 9110: one Content-Length of digits only.
    if len(lengths) > 1 or not re.fullmatch(r"[0-9]{1,18}", lengths[0]):
        raise _Reject(400)
    return int(lengths[0]), False


def _not_modified(fields: dict[str, list[str]], etag: str, mtime: int) -> bool:
    """RFC 9110 §13.1.2-3 as nginx applies them: every validator sent must match."""
    since = fields.get("if-modified-since")
    none_match = fields.get("if-none-match")
    if not since and not none_match:
        return False
    if since:
        try:
            parsed = email.utils.parsedate_to_datetime(since[0]).timestamp()
        except Exception:  # the email date parser fails in several ways on junk
            return False
        if int(parsed) != mtime:  # nginx's if_modified_since exact
            return False
    if none_match:
        tags = [t.strip() for v in none_match for t in v.split(",")]
        # RFC 9110 §8.8.3.2: weak comparison.
        if "*" not in tags and etag not in (t.removeprefix("W/") for t in tags):
            return False
    return True


def _byte_range(value: str, size: int) -> tuple[int, int] | str | None:
    """One RFC 9110 §14.1.2 byte range -> (first, last), "unsatisfiable", or None (send all).

    Several ranges are answered with the whole file (RFC 9110 §14.2 lets a
    server ignore Range); nginx would send multipart/byteranges.
    """
    if not value.strip().lower().startswith("bytes="):
        return None
    if "," in value:
        return None
    match = _BYTE_RANGE.fullmatch(value.strip())
    if match is None:
        return "unsatisfiable"
    first, last = match.groups()
    if first:
        start = int(first)
        end = int(last) if last else size - 1
        if start > end or start >= size:
            return "unsatisfiable"
        return start, min(end, size - 1)
    if not last or int(last) == 0 or size == 0:
        return "unsatisfiable"
    return max(size - int(last), 0), size - 1


class _ChunkedBody:
    """Reads and discards a chunked body (§7.1), trailers included."""

    def __init__(self) -> None:
        self._state = "size"  # size -> data -> data-end -> size ... -> trailer
        self._left = 0
        self._trailer = 0

    def feed(self, buf: bytearray) -> bool:
        """Consume from `buf`; True once the whole body is read.  _Reject if malformed."""
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
                elif buf in (b"", b"\r"):
                    return False
                else:
                    raise _Reject(400)
                self._state = "size"
            line = _take_line(buf)
            if line is None:
                return False
            if self._state == "size":
                # chunk-size [ chunk-ext ]; BWS before ';' is tolerated.
                size = line.split(b";", 1)[0].strip(b" \t")
                if not _HEX.fullmatch(size):
                    raise _Reject(400)
                self._left = int(size, 16)
                self._state = "data" if self._left else "trailer"
            else:
                if not line:
                    return True
                self._trailer += len(line)
                if self._trailer > MAX_HEAD:
                    raise _Reject(400)


def _take_line(buf: bytearray) -> bytes | None:
    end = buf.find(b"\n")
    if end < 0:
        if len(buf) > MAX_CHUNK_LINE:
            raise _Reject(400)
        return None
    line = bytes(buf[:end])
    del buf[:end + 1]
    return line[:-1] if line.endswith(b"\r") else line


# -- the default site ------------------------------------------------------------


def _icon(rgb: tuple[int, int, int]) -> bytes:
    """A 16x16 single-colour favicon: an ICO holding one PNG image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    rows = b"".join(b"\0" + bytes(rgb) * 16 for _ in range(16))
    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
    directory = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22)
    return struct.pack("<HHH", 0, 1, 1) + directory + png


_STYLE = (
    "body{font-family:Georgia,serif;max-width:40em;margin:2em auto;padding:0 1em;"
    "color:#2b2b2b;line-height:1.5}h1{font-weight:normal;color:#5a3e2b}"
    "a{color:#5a3e2b}footer{margin-top:3em;font-size:.85em;color:#777}"
)

_INDEX = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Linden Bindery - hand-bound books and repairs</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Linden Bindery</h1>
<p>We are a two-person workshop that binds, repairs and restores books by hand.
Family bibles with loose pages, a grandmother's recipe notebook, a thesis that
needs a proper cloth cover, a run of fifty guest books for a wedding: if it is
made of paper and thread, we are happy to look at it.</p>
<h2>What we do</h2>
<ul>
<li>Rebinding and spine repair for old and well-loved books</li>
<li>Custom journals and sketchbooks, sewn on tapes, lay-flat</li>
<li>Thesis and portfolio binding in cloth or leather</li>
<li>Small editions for poets, photographers and local societies</li>
</ul>
<p>Most repairs take two to four weeks. We do not do same-day work, and we
are closed in August.</p>
<p>Read a little more <a href="/about.html">about the workshop</a>.</p>
<footer>Linden Bindery &middot; workshop visits by appointment</footer>
</body>
</html>
"""

_ABOUT = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>About - Linden Bindery</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>About the workshop</h1>
<p>Linden Bindery started in 2014 at a kitchen table, with a bone folder, a
borrowed press and a box of offcuts from a printer who was closing down. It
now fills a small room behind a courtyard, with two presses, a board shear
older than both of us, and far too much marbled paper.</p>
<p>We learned the trade from an old bookbinder who repaired prayer books and
ledgers for forty years, and we still work the way he taught us: wheat-starch
paste, linen thread, and nothing that cannot be undone by the next binder.</p>
<p>We do not run an online shop. If you have a book that needs help, come by
with it, and we will tell you honestly whether it is worth repairing.</p>
<p><a href="/">Back to the start page</a></p>
<footer>Linden Bindery</footer>
</body>
</html>
"""

DEFAULT_SITE: dict[str, tuple[str, bytes]] = {
    "/index.html": ("text/html", _INDEX.encode("utf-8")),
    "/about.html": ("text/html", _ABOUT.encode("utf-8")),
    "/robots.txt": ("text/plain", b"User-agent: *\nDisallow:\n"),
    "/favicon.ico": ("image/x-icon", _icon((0x5a, 0x3e, 0x2b))),
}
