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

Requests are read with protocol/http1.py (nginx's reading of HTTP/1.1);
this module is what nginx does with them: which status, which page, which
headers in which order, when to close. The pages are link/website.py's.
Limits are nginx's defaults: a request head fits in 8 KiB, request bodies of
at most 1 MiB are read and thrown away. Section numbers are RFC 9112
(HTTP/1.1) unless they name RFC 9110.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable
from typing import Literal
from urllib.parse import unquote_to_bytes

from ladder.protocol.http1 import (
    ChunkedBody,
    Fields,
    HeadReader,
    RequestError,
    body_framing,
    check_version,
    persists,
)

from .website import DEFAULT_SITE, SITE_LAST_MODIFIED, Site

MAX_HEAD = 8 * 1024          # nginx large_client_header_buffers 8k
MAX_BODY = 1024 * 1024       # nginx client_max_body_size 1m

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
HEADER_TOO_LARGE = "Request Header Or Cookie Too Large"
PLAIN_ON_HTTPS_PORT = "The plain HTTP request was sent to HTTPS port"
# nginx's own codes for a head too large (494, HTTP's 431) and plain HTTP on its
# HTTPS port (497): each is answered as a 400 whose page has a title of its own.
_PLAIN_ON_HTTPS_PORT = 497
_AS_400 = {431: HEADER_TOO_LARGE, _PLAIN_ON_HTTPS_PORT: PLAIN_ON_HTTPS_PORT}
_ABSOLUTE_FORM = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*(.*)", re.DOTALL)
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# RFC 9110 §7.2 / RFC 3986 §3.2.2: Host is uri-host [":" port].
_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(:[0-9]*)?")
_BYTE_RANGE = re.compile(r"bytes=\s*([0-9]{0,18})\s*-\s*([0-9]{0,18})\s*", re.IGNORECASE)


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

    def __init__(self, site: Site | None = None,
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
        self._lingers = False
        self._body_to_come = False
        self._declared = 0, False
        self._buffer = bytearray()
        self._closing = False
        self._heads = HeadReader(MAX_HEAD)
        # The request line read from the front of the buffer, once judged: (method, site path, version).
        self._line: tuple[bytes, str, tuple[int, int]] | None = None
        self._body_left = 0                       # Content-Length bytes to discard
        self._chunked: ChunkedBody | None = None  # chunked body to discard

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
        """True between requests: every byte received so far has been answered.

        An empty line counts as a request's start: nginx starts its header timer on any byte.
        """
        return not (self._buffer or self._heads.in_head or self.reading_body)

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
                except RequestError:
                    # The answer is already sent; like nginx, just hang up.
                    self._closing = True
                    break
                self._chunked = None
            response = self._next_request()
            if response is None:
                break
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
                line = self._heads.read_line(buf)
                if line is None:
                    return None
                # The request line is complete: judge it now, without
                # waiting for the header section; nginx judges the target's
                # form, then the version, then the target's escapes.
                _check_target(line.target)
                if line.version is None:
                    # RFC 1945 §4.1: no header section follows; nginx
                    # takes GET only, and answers with the body alone.
                    self._bare = True
                    if line.method != b"GET":
                        raise RequestError(400, "HTTP/0.9 knows GET only")
                    path = _site_path(line.target)
                    parsed = True
                    return self._answer(line.method, path, (0, 9), Fields([]))
                version = check_version(line.version)
                method = line.method  # a HEAD refused from here on gets no body, as nginx
                self._line = method, _site_path(line.target), version
            method, path, version = self._line
            fields = self._heads.read_fields(buf)
            if fields is None:
                return None
            self._line = None
            parsed = True
            return self._answer(method, path, version, fields)
        except RequestError as refusal:
            self._closing = True
            # nginx reads on for a while (a lingering close) after a request it
            # could not parse, or while bytes it never answered wait; not after
            # a head too long to read (its 414 and 494). Measured with 1.22.
            too_long = refusal.status in (414, 431)
            self._lingers = not too_long and (not parsed or self._unanswered_bytes())
            return self._error(refusal.status, method == b"HEAD" and not self._bare)

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

    def _answer(self, method: bytes, path: str, version: tuple[int, int], fields: Fields) -> bytes:
        http11 = version >= (1, 1)
        hosts = fields.get("host")
        # §3.2: exactly one valid Host in HTTP/1.1, at most one before.
        if len(hosts) > 1 or (http11 and not hosts):
            raise RequestError(400, "bad Host")
        if hosts and not _HOST.fullmatch(hosts[0].encode("latin-1")):
            raise RequestError(400, "bad Host")
        body_length, chunked = body_framing(fields, version)
        self._declared = body_length, chunked
        if self._plain_on_https_port:
            # nginx checks this once the head is read and valid, before the body's size.
            raise RequestError(_PLAIN_ON_HTTPS_PORT, PLAIN_ON_HTTPS_PORT)
        if body_length > MAX_BODY:
            raise RequestError(413, "body too large")
        keep_alive = not self._bare and persists(fields, version)

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
            self._chunked = ChunkedBody(MAX_HEAD) if chunked else None
            if http11 and any(v.strip().lower() == "100-continue" for v in fields.get("expect")):
                response = b"HTTP/1.1 100 Continue\r\n\r\n" + response
        return response

    def _file(self, entry: tuple[str, bytes], fields: Fields, head_only: bool, keep_alive: bool) -> bytes:
        content_type, body = entry
        last_modified = _http_date(self._last_modified)
        # nginx's ETag: hex mtime "-" hex length.
        etag = f'"{self._last_modified:x}-{len(body):x}"'
        validators = [("Last-Modified", last_modified), ("Connection", _conn(keep_alive)),
                      ("ETag", etag)]
        if _not_modified(fields, etag, self._last_modified):
            return self._head(304, validators)

        ranges = fields.get("range")
        if_range = fields.get("if-range")
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

    def _error(self, status: int, head_only: bool = False, keep_alive: bool = False) -> bytes:
        title = _AS_400.get(status)
        if title is not None:
            status = 400
        page = error_page(status, self._server, title)
        return self._head(status, [
            ("Content-Type", "text/html"), ("Content-Length", str(len(page))),
            ("Connection", _conn(keep_alive and status not in _CLOSING)),
        ]) + (b"" if head_only else page)

    def _head(self, status: int, fields: list[tuple[str, str]]) -> bytes:
        return b"" if self._bare else response_head(status, self._server, self._clock(), fields)


def response_head(status: int, server: str, now: float, fields: list[tuple[str, str]]) -> bytes:
    """A response's head as nginx writes it: status line, Server, Date, then `fields` in order."""
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Server: {server}", f"Date: {_http_date(now)}"]
    lines += [f"{name}: {value}" for name, value in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _conn(keep_alive: bool) -> str:
    return "keep-alive" if keep_alive else "close"


# -- what nginx makes of a target ----------------------------------------------


def _check_target(target: bytes) -> None:
    """nginx's parser refuses a target that is neither a path nor a URI as it reads it, before the version."""
    if not target.startswith(b"/") and _ABSOLUTE_FORM.fullmatch(target) is None:
        raise RequestError(400, "not a path nor a URI")


def _site_path(target: bytes) -> str:
    """The site key a request-target names (§3.2), e.g. "/" -> "/index.html"."""
    if not target.startswith(b"/"):
        # §3.2.2 absolute-form; "*" (§3.2.4, also the HTTP/2 preface) and
        # authority-form (§3.2.3) are not for a static site: 400 like nginx.
        match = _ABSOLUTE_FORM.fullmatch(target)
        if match is None:
            raise RequestError(400, "not a path nor a URI")
        target = b"/" + match.group(1).lstrip(b"/")
    raw = target.split(b"?", 1)[0].split(b"#", 1)[0]  # the query never selects a file
    if _BAD_ESCAPE.search(raw):
        raise RequestError(400, "bad escape in the path")
    decoded = unquote_to_bytes(raw)
    if b"\0" in decoded:
        raise RequestError(400, "NUL in the path")
    # RFC 3986 §5.2.4 dot segments, and nginx's merge_slashes; climbing
    # above the root is a 400 in nginx.
    segments: list[bytes] = []
    parts = decoded.split(b"/")
    for part in parts:
        if part == b"..":
            if not segments:
                raise RequestError(400, "the path climbs above the root")
            segments.pop()
        elif part not in (b"", b"."):
            segments.append(part)
    if parts[-1] in (b"", b".", b".."):
        segments.append(b"index.html")  # nginx's index directive
    return "/" + b"/".join(segments).decode("utf-8", "surrogateescape")


# -- conditional and range requests ----------------------------------------------


def _not_modified(fields: Fields, etag: str, mtime: int) -> bool:
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


def _byte_range(value: str, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
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
