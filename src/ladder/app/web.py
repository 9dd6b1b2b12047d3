"""A small HTTP/1.1 server for the app's pages: the member's dashboard and the hub's admin page.

Loopback pages that drive a proxy and a hub must not be usable by any web
site the user happens to visit, so every request passes the `Guard` before
a handler sees it:

- the Host header must name this listener (a DNS-rebinding page's Host is
  its own name): 421 otherwise;
- the secret must come with it: in the `ladder` cookie (set on the first
  visit, which carries it in the URL as ?k=), as a bearer token, or in the
  query (a Prometheus scrape): 401 otherwise;
- a request that changes anything (any method but GET and HEAD) must carry
  the page's CSRF token in the X-Ladder-CSRF header, and an Origin, if the
  browser sends one, of this listener: 403 otherwise;
- answers forbid framing, inline scripts and every source but this one
  (Content-Security-Policy), and are never cached.

Heads are read with protocol/http1.py, bounded; bodies up to MAX_BODY, by
Content-Length only. A handler returns a `Response`; one whose `events` is
an async iterator is a server-sent event stream (text/event-stream) that
lasts until the iterator ends or the browser goes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import socket
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from importlib import resources

from ladder.config import format_address
from ladder.errors import LadderError
from ladder.protocol.http1 import Fields, HeadReader, RequestError, body_framing, check_version, persists

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
MAX_BODY = 1024 * 1024
IDLE = 60.0  # seconds a kept-alive connection may wait for its next request
COOKIE = "ladder"
CSRF_HEADER = "x-ladder-csrf"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    fields: Fields
    body: bytes = b""

    def header(self, name: str) -> str:
        values = self.fields.get(name)
        return values[0] if values else ""

    def json(self) -> dict:
        """The body as a JSON object; a body that is not one is the client's error (400)."""
        try:
            value = json.loads(self.body or b"{}")
        except ValueError:
            raise HttpError(400, "the body is not JSON") from None
        if not isinstance(value, dict):
            raise HttpError(400, "the body is not a JSON object")
        return value


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    kind: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    events: AsyncIterator[bytes] | None = None  # a server-sent event stream instead of a body


class HttpError(LadderError):
    """A request a handler cannot serve: its status and one line for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def text(status: int, message: str) -> Response:
    return Response(status, f"{message}\n".encode(), "text/plain; charset=utf-8")


def as_json(value: object, status: int = 200) -> Response:
    return Response(status, json.dumps(value, ensure_ascii=False).encode(), "application/json; charset=utf-8")


def event(name: str, data: object) -> bytes:
    """One server-sent event (the data as one line of JSON)."""
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class Guard:
    """Who may ask: a request for this listener's hosts, with the secret, and for a change the CSRF token."""

    def __init__(self, secret: str, hosts: set[str]):
        self.secret = secret
        self.hosts = {h.lower() for h in hosts}
        self.csrf = hmac.new(secret.encode(), b"ladder csrf", hashlib.sha256).hexdigest()[:32]

    def refuse(self, request: Request) -> Response | None:
        host = request.header("host").lower()
        if host not in self.hosts:
            return text(421, "this page answers only at its own address")
        given = request.query.get("k") or _bearer(request.header("authorization")) or _cookie(
            request.header("cookie"))
        if not given or not hmac.compare_digest(given.encode(), self.secret.encode()):
            return text(401, "this page needs its secret: open the address `ladder app` or "
                             "`ladder hub admin-url` prints")
        if request.method in ("GET", "HEAD"):
            return None
        origin = request.header("origin")
        if origin and urllib.parse.urlsplit(origin).netloc.lower() not in self.hosts:
            return text(403, "a request from another site")
        if not hmac.compare_digest(request.header(CSRF_HEADER).encode(), self.csrf.encode()):
            return text(403, "a change needs the page's token")
        return None

    def welcome(self, request: Request) -> Response | None:
        """A first visit with ?k= in the URL: set the cookie and go to the same page without it."""
        if request.method != "GET" or "k" not in request.query or request.path.startswith("/metrics"):
            return None
        rest = urllib.parse.urlencode({k: v for k, v in request.query.items() if k != "k"})
        return Response(303, b"", "text/plain", [
            ("Location", request.path + (f"?{rest}" if rest else "")),
            ("Set-Cookie", f"{COOKIE}={self.secret}; Path=/; HttpOnly; SameSite=Strict")])


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _cookie(value: str) -> str:
    try:
        jar: SimpleCookie = SimpleCookie(value)
    except CookieError:
        return ""
    morsel = jar.get(COOKIE)
    return morsel.value if morsel else ""


Handler = Callable[[Request], Awaitable[Response]]


class App:
    """Routes (method, path) → handler, behind a Guard."""

    def __init__(self, guard: Guard):
        self.guard = guard
        self.routes: dict[tuple[str, str], Handler] = {}

    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def add(handler: Handler) -> Handler:
            self.routes[method, path] = handler
            return handler
        return add

    async def answer(self, request: Request) -> Response:
        refusal = self.guard.refuse(request)
        if refusal is not None:
            return refusal
        welcome = self.guard.welcome(request)
        if welcome is not None:
            return welcome
        method = "GET" if request.method == "HEAD" else request.method
        handler = self.routes.get((method, request.path))
        if handler is None:
            known = any(path == request.path for _, path in self.routes)
            return text(405 if known else 404, "no such method here" if known else "no such page")
        try:
            return await handler(request)
        except HttpError as exc:
            return text(exc.status, str(exc))

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads, buf = HeadReader(MAX_HEAD), bytearray()
        try:
            while True:
                head = heads.read_head(buf)
                while head is None:
                    data = await asyncio.wait_for(reader.read(65536), IDLE)
                    if not data:
                        return
                    buf += data
                    head = heads.read_head(buf)
                line, fields = head
                version = check_version(line.version)
                length, chunked = body_framing(fields, version)
                if chunked:
                    raise RequestError(411, "a body needs a Content-Length here")
                if length > MAX_BODY:
                    raise RequestError(413, "body too large")
                while len(buf) < length:
                    data = await asyncio.wait_for(reader.read(65536), IDLE)
                    if not data:
                        return
                    buf += data
                body = bytes(buf[:length])
                del buf[:length]
                request = _request(line.method.decode("latin-1"), line.target.decode("latin-1"), fields, body)
                response = await self.answer(request)
                keep = persists(fields, version) and response.events is None
                _write(writer, response, keep, head_only=request.method == "HEAD")
                if response.events is not None:
                    await _stream(writer, response.events)
                    return
                await writer.drain()
                if not keep:
                    return
        except RequestError as exc:
            _write(writer, text(exc.status, str(exc)), False)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def listen(self, sock: socket.socket) -> asyncio.Server:
        """Serve on a bound socket (bound first, so that the Guard can name the port it got)."""
        return await asyncio.start_server(self.serve_connection, sock=sock, limit=MAX_HEAD)


def user_errors(handler: Handler) -> Handler:
    """A LadderError from what the request asked (a taken name, a hub that refused) is the client's 400,
    as JSON for the page's error line; an HttpError keeps its own status."""
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except HttpError:
            raise
        except LadderError as exc:
            return as_json({"error": str(exc)}, 400)
    return guarded


STATIC_KINDS = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}


def add_static(app: App, *names: str) -> None:
    """Serve these files of the package's static/ folder at /static/NAME (read once, here)."""
    for name in names:
        response = Response(body=resources.files(__package__).joinpath("static", name).read_bytes(),
                            kind=STATIC_KINDS[name.rpartition(".")[2]])

        async def serve(request: Request, response: Response = response) -> Response:
            return response
        app.route("GET", f"/static/{name}")(serve)


def bind(address: tuple[str, int]) -> socket.socket:
    """A listening socket for a page; OSError (in use, no such address) for the caller to say."""
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:  # said in the system's own words, without create_server's long wrapping
        raise OSError(exc.errno, os.strerror(exc.errno) if exc.errno else str(exc)) from None


def hosts_of(address: tuple[str, int]) -> set[str]:
    """What a browser puts in Host for this listener: its address, and `localhost` for loopback."""
    host, port = address
    hosts = {format_address(host, port)}
    if host in ("127.0.0.1", "::1"):
        hosts.add(f"localhost:{port}")
    return hosts


def _request(method: str, target: str, fields: Fields, body: bytes) -> Request:
    url = urllib.parse.urlsplit(target)
    query = dict(urllib.parse.parse_qsl(url.query, max_num_fields=50))
    return Request(method, url.path or "/", query, fields, body)


def _write(writer: asyncio.StreamWriter, response: Response, keep: bool, head_only: bool = False) -> None:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Error"
    lines = [f"HTTP/1.1 {response.status} {reason}", f"Content-Type: {response.kind}",
             "Cache-Control: no-store", "X-Content-Type-Options: nosniff", "Referrer-Policy: no-referrer",
             f"Content-Security-Policy: {CSP}", "X-Frame-Options: DENY", "Vary: Accept-Language, Cookie"]
    if response.events is None:
        lines.append(f"Content-Length: {len(response.body)}")
        lines.append(f"Connection: {'keep-alive' if keep else 'close'}")
    else:
        lines.append("Connection: close")
    lines += [f"{name}: {value}" for name, value in response.headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    writer.write(head if head_only or response.events is not None else head + response.body)


async def _stream(writer: asyncio.StreamWriter, events: AsyncIterator[bytes]) -> None:
    """Write each event as it comes, until the iterator ends or the browser is gone."""
    try:
        async for chunk in events:
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
