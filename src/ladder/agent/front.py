"""The local proxy front: SOCKS5, SOCKS4/4a and HTTP proxying on one port.

The first byte decides: 0x05 is SOCKS5 (RFC 1928: CONNECT, and UDP ASSOCIATE below), 0x04 is
SOCKS4 or SOCKS4a (CONNECT only), a letter starts an HTTP/1.1 proxy request (RFC 9110 section
9.3.6 CONNECT, or an absolute-form request of any method, RFC 9112 section
3.2.2); anything else is answered 400 and closed at once. Names are passed
to the exit as names: the member's own resolver, possibly poisoned, is
never asked (a SOCKS4 request without a name carries an address, used as
it is). HTTP requests are read with protocol/http1.py, as the hub's web face
reads them. A name that cannot be sent as a target (undecodable bytes, too
long) and a request head over MAX_HEAD are refused before anything opens,
and a client that has not finished its first request within REQUEST_TIMEOUT
is closed (HTTP hears 408).

With a user name and password (`ProxyAuth`: the port listens beyond
loopback, or the member asked), every client must give them, on loopback
too: SOCKS5 by RFC 1929 (a client offering no method 2 hears 0xFF), HTTP
by `Proxy-Authorization: Basic` (RFC 9110 section 11.7.2, RFC 7617; 407
otherwise, so browsers prompt) on each request. SOCKS4 carries no
password and is refused. Credentials are compared in constant time. The PAC file
is served to anyone (phones and browsers fetch it without credentials); it
names the address the client reached, and with a password only the HTTP
proxy, the one browsers can authenticate to.

A tunnel (SOCKS CONNECT, or HTTP CONNECT) is answered as soon as its
stream is on its way, so the client's first bytes (a TLS ClientHello) ride
with the OPEN as early data instead of waiting a round trip through the
hub and the exit; refusals known before that (a block rule, no exit, no
hub) still get a SOCKS reply code or an HTTP error page, while a refusal
from the exit, which comes after the answer, can only cut the connection
(with a reset, so it is not taken for a complete answer); the agent's log
says why and its Activity counts the reason. Absolute-form HTTP requests
are answered by the origin, so a refusal there is still an error page.

A connection becomes a `Relay` once its stream is open. Absolute-form
requests keep the client's connection alive across requests; each request
is rewritten to origin-form and sent on a stream to its host, opening a new
stream when the host changes. A request with a chunked body turns the rest
of the connection into a plain pipe to that host.

Once the agent opens a stream for a connection it lists it in its
Activity (activity.py); the connection counts the bytes that pass each way
on its `Tracked` there, and `cut` resets it for the dashboard's close
button.

Besides CONNECT, SOCKS5's UDP ASSOCIATE (RFC 1928 section 7) is served
where the agent passes `associate`: the connection then only lasts, and a
`SocksAssociation` (udp.py) relays the client's datagrams while it does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import struct
from collections.abc import Callable
from http import HTTPStatus

from ladder.config import ConfigError, ProxyAuth, format_address, parse_address
from ladder.errors import LadderError
from ladder.protocol.errors import ErrorCode
from ladder.protocol.http1 import Fields, HeadReader, RequestError, RequestLine, body_framing, check_version
from ladder.protocol.messages import encode_address, encode_target

from .activity import Tracked
from .relay import Relay, Stream, abort_with_rst, reset_if_dropped
from .udp import SocksAssociation

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024  # a request head, its request line and final empty line included
# A client has this long from connecting to finishing its first request (the
# SOCKS exchange or an HTTP head): one that stalls halfway is closed, not held.
REQUEST_TIMEOUT = 60.0  # as nginx's client_header_timeout; browsers may preconnect and wait
# Opener: (host, port, relay) -> None; it later calls relay.on_accepted/on_refused.
Opener = Callable[[str, int, "ProxyConnection"], None]
# Associate: (connection, the front's host it reached, the client's host) -> a UDP association (udp.py).
Associate = Callable[["ProxyConnection", str, str], SocksAssociation]

# RFC 1928 section 6 reply codes for each reason a stream was refused (keyed by wire code).
SOCKS_REPLY: dict[int, int] = {
    ErrorCode.NO_ROUTE: 0x03,  # network unreachable: no exit online
    ErrorCode.FORBIDDEN: 0x02,  # connection not allowed by ruleset
    ErrorCode.UNREACHABLE: 0x04,
    ErrorCode.BAD_REQUEST: 0x04,  # host unreachable: a name that cannot be sent
    ErrorCode.NAME_NOT_RESOLVED: 0x04,
    ErrorCode.TARGET_REFUSED: 0x05,
    ErrorCode.TARGET_TIMEOUT: 0x06,
}
SOCKS4_GRANTED, SOCKS4_REJECTED = 0x5A, 0x5B  # SOCKS4 has one code for every refusal
SOCKS4_MAX_FIELD = 255  # the user id and the SOCKS4a name, each up to its NUL
HTTP_STATUS: dict[int, str] = {
    ErrorCode.BAD_REQUEST: "400 Bad Request",
    ErrorCode.NO_ROUTE: "503 Service Unavailable",
    ErrorCode.BUSY: "503 Service Unavailable",
    ErrorCode.TARGET_TIMEOUT: "504 Gateway Timeout",
}
_HOP_BY_HOP = (b"proxy-connection", b"proxy-authorization", b"keep-alive")
SOCKS5_NO_AUTH, SOCKS5_PASSWORD, SOCKS5_NO_METHOD = 0x00, 0x02, 0xFF  # RFC 1928 section 3
PASSWORD_VERSION, PASSWORD_OK, PASSWORD_WRONG = 0x01, 0x00, 0x01  # RFC 1929 section 2


class FrontError(LadderError):
    """A client request this front cannot serve; the message goes to the client."""

    def __init__(self, message: str, status: str = "400 Bad Request"):
        super().__init__(message)
        self.status = status


def http_error(status: str, message: str, fields: str = "") -> bytes:
    """A complete error response; `fields` are extra header lines, each ending in CRLF."""
    body = f"ladder: {message}\n".encode("utf-8", "backslashreplace")  # a client's undecodable name, escaped
    return (
        f"HTTP/1.1 {status}\r\n{fields}Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def split_authority(authority: str, default_port: int) -> tuple[str, int]:
    try:
        return parse_address(authority, default_port)
    except ConfigError as exc:
        raise FrontError(str(exc)) from None


class ProxyConnection(Relay):
    """One client connection to the proxy port."""

    def __init__(self, opener: Opener, on_stream_done: Callable[[ProxyConnection], None] | None = None,
                 pac: Callable[[tuple[str, int]], str] | None = None, auth: ProxyAuth | None = None,
                 associate: Associate | None = None):
        super().__init__()
        self.opener = opener
        self.pac = pac  # the PAC file for a client that reached this address, served at /proxy.pac
        self.auth = auth  # the user name and password every client must give, if any
        self.associate = associate  # SOCKS5 UDP ASSOCIATE, where the agent serves UDP
        self.udp: SocksAssociation | None = None  # this connection's UDP association, once asked for
        self.on_stream_done = on_stream_done
        self._exit_id: str | None = None
        self.tracked: Tracked | None = None  # in the agent's Activity, once the agent opens a stream for it
        self.buffer = bytearray()
        self.heads = HeadReader(MAX_HEAD)
        self.mode = "new"  # new → socks-greeting/socks-auth/socks-request/socks4/http → tunnel/forward/pipe
        self.socks = 0  # the SOCKS version spoken, 0 for HTTP
        self.reply_ok = b""  # what the client hears when the stream opens
        self.target: tuple[str, int] | None = None
        self.body_left = 0  # bytes of the current forwarded request's body still to pass
        self._parsing = False  # in _parse: a stream attached meanwhile leaves the rest to it
        self._first_request: asyncio.TimerHandle  # the deadline for the first request, armed on connecting

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._first_request = asyncio.get_running_loop().call_later(REQUEST_TIMEOUT, self._too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._first_request.cancel()
        if self.udp is not None:
            self.udp.close()
        super().connection_lost(exc)
        if self.tracked is not None:
            self.tracked.closed()

    @property
    def exit_id(self) -> str | None:
        """The exit carrying this connection's stream: set by the pool while one is open."""
        return self._exit_id

    @exit_id.setter
    def exit_id(self, exit_id: str | None) -> None:
        self._exit_id = exit_id
        if exit_id is not None and self.tracked is not None:  # the list keeps the last exit after the end
            self.tracked.exit_id = exit_id

    def cut(self) -> None:
        """Reset this client's connection (the dashboard's close button): the client sees it cut."""
        if self.mode == "closed" or self.done:
            return
        if self.stream is not None:
            self.stream.reset(ErrorCode.CANCEL, "closed on the dashboard")
        self.mode = "closed"
        self.on_reset(ErrorCode.CANCEL, "closed on the dashboard")

    def _too_slow(self) -> None:
        if self.mode == "closed":
            return
        log.info("proxy: a client did not finish its request within %g s", REQUEST_TIMEOUT)
        if self.socks:
            self._close()
        else:
            self._fail_http("408 Request Timeout", f"no complete request within {REQUEST_TIMEOUT:g} s")

    # ---------------------------------------------------------------- input

    def data_received(self, data: bytes | memoryview) -> None:
        if self.tracked is not None:
            self.tracked.count(up=len(data))
        if self.mode in ("tunnel", "pipe"):
            return super().data_received(data)
        if self.mode == "udp":
            return  # nothing more is said on a UDP association's connection: it only lasts
        self.buffer += data
        self._parse()

    def _parse(self) -> None:
        """Act on the buffered bytes in the current mode; a FrontError is answered to the client."""
        self._parsing = True
        try:
            if self.mode == "new":
                self._choose_protocol(self.buffer[0])
            if self.mode == "socks-greeting":
                self._socks_greeting()
            if self.mode == "socks-auth":
                self._socks_password()
            if self.mode == "socks-request":
                self._socks_request()
            if self.mode == "socks4":
                self._socks4_request()
            if self.mode in ("http", "forward"):
                self._http()
        except FrontError as exc:
            log.info("proxy: bad request: %s", exc)
            self._socks_fail(0x01) if self.socks else self._fail_http(exc.status, str(exc))
        finally:
            self._parsing = False

    def eof_received(self) -> bool:
        if self.mode == "udp":
            return False  # the client hung up: the connection closes, and its association with it
        return super().eof_received()

    def _choose_protocol(self, first: int) -> None:
        if first == 5:
            self.mode, self.socks = "socks-greeting", 5
        elif first == 4:
            self.mode, self.socks = "socks4", 4
        elif chr(first).isascii() and chr(first).isalpha():  # an HTTP method is a token
            self.mode = "http"
        else:
            raise FrontError("this is a proxy: speak SOCKS5, SOCKS4 or HTTP to it, or load /proxy.pac")

    def _socks_greeting(self) -> None:
        buf = self.buffer
        if len(buf) < 2 or len(buf) < 2 + buf[1]:
            return
        methods = buf[2 : 2 + buf[1]]
        del buf[: 2 + len(methods)]
        method = SOCKS5_PASSWORD if self.auth else SOCKS5_NO_AUTH
        if method not in methods:
            if self.auth:
                log.info("proxy: a SOCKS5 client from %s offered no user name and password", self._peer())
            self.transport.write(bytes([5, SOCKS5_NO_METHOD]))
            return self._close()
        self.transport.write(bytes([5, method]))
        self.mode = "socks-auth" if self.auth else "socks-request"

    def _socks_password(self) -> None:
        """RFC 1929: version 1, ULEN, UNAME, PLEN, PASSWD; one status, and a close after a failure."""
        buf = self.buffer
        if not buf:
            return
        if buf[0] != PASSWORD_VERSION:
            log.info("proxy: a SOCKS5 client from %s sent no RFC 1929 user name and password", self._peer())
            return self._password_refused()
        if len(buf) < 2:
            return
        user_end = 2 + buf[1]
        if len(buf) <= user_end or len(buf) < user_end + 1 + buf[user_end]:
            return
        user, password = bytes(buf[2:user_end]), bytes(buf[user_end + 1 : user_end + 1 + buf[user_end]])
        del buf[: user_end + 1 + len(password)]
        if not self._authorized(user, password):
            return self._password_refused()
        self.transport.write(bytes([PASSWORD_VERSION, PASSWORD_OK]))
        self.mode = "socks-request"

    def _socks_request(self) -> None:
        buf = self.buffer
        if len(buf) < 5:
            return
        version, command, _, atyp = buf[:4]
        if atyp == 1:
            size = 4 + 4 + 2
        elif atyp == 4:
            size = 4 + 16 + 2
        elif atyp == 3:
            size = 4 + 1 + buf[4] + 2
        else:
            return self._socks_fail(0x08)  # address type not supported
        if len(buf) < size:
            return
        if version == 5 and command == 3 and self.associate is not None:
            del buf[:size]  # the address the client may send from: often zeros, so its first datagram says
            return self._udp_associate()
        if version != 5 or command != 1:
            return self._socks_fail(0x07)  # command not supported: CONNECT only
        if atyp == 3:
            host = _name(bytes(buf[5 : size - 2]))
        else:
            host = str(ipaddress.ip_address(bytes(buf[4 : size - 2])))
        (port,) = struct.unpack_from("!H", buf, size - 2)
        rest = bytes(buf[size:])
        buf.clear()
        self.reply_ok = b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        self._open(host, port, "tunnel", rest)

    def _socks4_request(self) -> None:
        """SOCKS4: version, command, port, IPv4 address, user id up to a NUL; SOCKS4a puts
        0.0.0.x (x > 0) in the address and the name, up to a NUL, after the user id."""
        if self.auth:
            log.info("proxy: a SOCKS4 client from %s was refused: SOCKS4 has no password, and this proxy "
                     "asks for one (set the client to SOCKS5 with a user name and password, or HTTP)",
                     self._peer())
            return self._socks_fail(SOCKS4_REJECTED)
        buf = self.buffer
        user_end = _field_end(buf, 8)
        if user_end < 0:
            return
        command, address = buf[1], bytes(buf[4:8])
        (port,) = struct.unpack_from("!H", buf, 2)
        if address[:3] == b"\0\0\0" and address[3]:
            name_end = _field_end(buf, user_end + 1)
            if name_end < 0:
                return
            host, size = _name(bytes(buf[user_end + 1 : name_end])), name_end + 1
        else:
            host, size = str(ipaddress.IPv4Address(address)), user_end + 1
            _hint_once("a client speaks SOCKS4 with addresses, so it resolved names itself with the local "
                       "DNS, which may be poisoned: set it to SOCKS5 with DNS through the proxy, or to the "
                       "HTTP proxy")
        if command != 1:
            return self._socks_fail(0x07)  # CONNECT only (BIND is refused)
        rest = bytes(buf[size:])
        buf.clear()
        self.reply_ok = bytes([0, SOCKS4_GRANTED]) + bytes(6)
        self._open(host, port, "tunnel", rest)

    def _http(self) -> None:
        try:
            while True:
                if self.mode == "forward" and self.body_left:
                    chunk = bytes(self.buffer[: self.body_left])
                    del self.buffer[: len(chunk)]
                    self.body_left -= len(chunk)
                    self._forward(chunk)
                if self.mode == "forward" and self.stream is None:
                    # The next request may be for another host, and all that is held back goes to
                    # this one's stream once it opens: it waits for that (attach parses on).
                    return
                head = self.heads.read_head(self.buffer)  # bounded however the bytes arrived
                if head is None:
                    return
                self._request(*head)
                if self.mode != "forward" or self.target is None:
                    return  # a tunnel, a pipe, or a refused open: no more requests to parse
        except RequestError as exc:
            raise FrontError(str(exc), f"{exc.status} {HTTPStatus(exc.status).phrase}") from None

    def _request(self, line: RequestLine, fields: Fields) -> None:
        version = check_version(line.version)
        method, target = line.method, line.target
        if method == b"CONNECT":
            if not self._http_authorized(fields):
                return self._ask_for_password()
            host, port = split_authority(_name(target), 443)
            self.reply_ok = b"HTTP/1.1 200 Connection Established\r\n\r\n"
            rest = bytes(self.buffer)
            self.buffer.clear()
            return self._open(host, port, "tunnel", rest)
        if not target.lower().startswith(b"http://"):
            if target.split(b"?")[0] == b"/proxy.pac" and method in (b"GET", b"HEAD") and self.pac:
                return self._serve_pac(method, self.pac(self.transport.get_extra_info("sockname")[:2]))
            if target.startswith(b"/"):  # someone typed the proxy's address into a browser
                here = format_address(*self.transport.get_extra_info("sockname")[:2])
                raise FrontError(f"this is Ladder's proxy, not a web site. Set {here} as your browser's "
                                 f"SOCKS5 proxy (with DNS through the proxy) or HTTP proxy, or use the PAC "
                                 f"file http://{here}/proxy.pac")
            raise FrontError("only http:// URLs can be proxied this way; use CONNECT for https")
        if not self._http_authorized(fields):
            return self._ask_for_password()
        authority, _, path = target[7:].partition(b"/")
        host, port = split_authority(_name(authority), 80)
        self.body_left, chunked = body_framing(fields, version)
        lines = [method + b" /" + path + b" HTTP/%d.%d" % version]
        lines += [name + b": " + value for name, value in fields if name.lower() not in _HOP_BY_HOP]
        if not fields.get("host"):
            lines.insert(1, b"Host: " + authority)
        data = b"\r\n".join(lines) + b"\r\n\r\n"
        if (host, port) != self.target or self.got_end:  # another host, or this one hung up
            self._switch_target(host, port)
        self._forward(data)
        if chunked:  # no more request parsing: the rest is a pipe to this host
            self.mode = "pipe"
            rest = bytes(self.buffer)
            self.buffer.clear()
            if rest:
                self._forward(rest)

    # ------------------------------------------------------------- streams

    def _open(self, host: str, port: int, mode: str, rest: bytes) -> None:
        self.mode = mode
        self.target = (host, port)
        if rest:
            self.backlog.append(rest)
        self._pause_reading()
        self._first_request.cancel()
        try:
            encode_target(host, port)  # what cannot reach an exit is refused here, with a reply
        except ValueError as exc:
            return self.on_refused(ErrorCode.BAD_REQUEST, str(exc))
        self.opener(host, port, self)

    def _switch_target(self, host: str, port: int) -> None:
        if self.stream is not None:  # the previous host's answer is complete: browsers wait for it
            self.stream.reset(ErrorCode.CANCEL, "client moved on to another host")
            self.stream = None
            self.stream_gone()
        self.got_end = self.sent_end = False
        self._open(host, port, "forward", b"")

    def _forward(self, data: bytes) -> None:
        if not data:
            return
        if self.stream is None:
            self.backlog.append(data)
        else:
            self.stream.send(data)
            self._check_pending()

    def attach(self, stream: Stream) -> None:
        super().attach(stream)
        if self.mode == "tunnel":
            # A tunnel (SOCKS, HTTP CONNECT) is answered as soon as the stream is
            # on its way, as ss-local and v2ray do: the client's first bytes then
            # travel with the OPEN as early data, a round trip through the exit
            # sooner. A refusal after this can only cut the connection (the agent
            # logs why, on_refused).
            self.transport.write(self.reply_ok)
            self.reply_ok = b""
            # From the answer on, a tunnel's bytes have no end of their own: if this process dies
            # (kill -9, OOM) before the stream's END, the kernel must reset the client, not end it.
            reset_if_dropped(self.transport)
        elif self.mode == "forward" and self.buffer and not self._parsing:
            self._parse()  # requests pipelined behind the one this stream was opened for

    def on_data(self, data: bytes) -> None:
        if self.tracked is not None:
            self.tracked.count(down=len(data))
        super().on_data(data)

    def on_end(self) -> None:
        reset_if_dropped(self.transport, reset=False)  # the end is clean: a FIN after the last byte
        super().on_end()

    def on_accepted(self, payload: bytes, window: int) -> None:
        """The opener calls this once the stream is attached."""
        if self.reply_ok:
            self.transport.write(self.reply_ok)
            self.reply_ok = b""

    def on_refused(self, code: int, reason: str) -> None:
        if self.target is not None:  # the exit never names the target: the hub would read it
            reason = f"{reason} ({self.target[0]}:{self.target[1]})"
            self.target = None
        log.info("proxy: refused: %s", reason)
        if self.tracked is not None:
            self.tracked.refused(_code_name(code))
        # Answered already: cut, so it is not taken for an end.
        if self.mode in ("tunnel", "udp") and not self.reply_ok:
            self.mode, self.done = "closed", True
            return abort_with_rst(self.transport)
        if self.socks:
            return self._socks_fail(SOCKS_REPLY.get(code, 0x01))
        self._fail_http(HTTP_STATUS.get(code, "502 Bad Gateway"), reason)

    def _udp_associate(self) -> None:
        """SOCKS5 UDP ASSOCIATE (RFC 1928 section 7): datagrams relayed as long as this connection lasts.

        Answered with the relay's address once its stream is on its way (`udp_ready`).
        """
        assert self.associate is not None  # asked only where the agent serves UDP
        self.mode = "udp"
        self._first_request.cancel()
        here = self.transport.get_extra_info("sockname")[0]
        try:
            self.udp = self.associate(self, here, self.transport.get_extra_info("peername")[0])
        except OSError as exc:
            log.warning("proxy: no UDP socket for an association: %s", exc)
            return self._socks_fail(0x01)
        self.reply_ok = b"\x05\x00\x00" + encode_address(*self.udp.address)
        self.udp.start()

    def udp_ready(self) -> None:
        self.transport.write(self.reply_ok)
        self.reply_ok = b""

    def stream_gone(self) -> None:
        if self.on_stream_done is not None:
            self.on_stream_done(self)

    def _serve_pac(self, method: bytes, pac: str) -> None:
        body = pac.encode()
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/x-ns-proxy-autoconfig\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n")
        self.transport.write(head.encode() + (body if method == b"GET" else b""))
        self._close()

    # ------------------------------------------------------- authentication

    def _authorized(self, user: bytes, password: bytes) -> bool:
        assert self.auth is not None
        if _same_credentials(user, password, self.auth):
            return True
        log.info("proxy: a client from %s gave a wrong user name or password", self._peer())
        return False

    def _password_refused(self) -> None:
        self.transport.write(bytes([PASSWORD_VERSION, PASSWORD_WRONG]))
        self._close()

    def _http_authorized(self, fields: Fields) -> bool:
        """Proxy-Authorization: Basic base64(user-id ":" password), RFC 7617 section 2."""
        if self.auth is None:
            return True
        for value in fields.get("proxy-authorization"):
            scheme, _, token = value.partition(" ")
            if scheme.lower() != "basic":
                continue
            try:
                user, colon, password = base64.b64decode(token.strip(), validate=True).partition(b":")
            except (binascii.Error, ValueError):
                continue
            return bool(colon) and self._authorized(user, password)
        log.debug("proxy: an HTTP client from %s gave no user name and password", self._peer())  # asked next
        return False

    def _ask_for_password(self) -> None:
        """RFC 9110 section 15.5.8: 407 with a challenge, so that a browser asks its user."""
        self.transport.write(http_error("407 Proxy Authentication Required",
                                        "this proxy asks for a user name and password",
                                        'Proxy-Authenticate: Basic realm="ladder"\r\n'))
        self._close()

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername")
        return format_address(*peer[:2]) if peer else "?"

    # ------------------------------------------------------------ failures

    def _socks_fail(self, code: int) -> None:
        """A SOCKS5 reply `code`, or SOCKS4's one refusal."""
        if self.socks == 4:
            self.transport.write(bytes([0, SOCKS4_REJECTED]) + bytes(6))
        else:
            self.transport.write(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
        self._close()

    def _fail_http(self, status: str, message: str) -> None:
        self.transport.write(http_error(status, message))
        self._close()

    def _close(self) -> None:
        self.mode = "closed"
        self.done = True
        self.transport.close()


_hints_given: set[str] = set()


def _hint_once(hint: str) -> None:
    """Tell the member about a client's setting once per process, not once per connection."""
    if hint not in _hints_given:
        _hints_given.add(hint)
        log.warning("proxy: %s", hint)


def _same_credentials(user: bytes, password: bytes, auth: ProxyAuth) -> bool:
    """In constant time: digests of one length, each length inside (so "a:b"+"c" is not "a"+"b:c")."""
    def digest(user: bytes, password: bytes) -> bytes:
        return hashlib.sha256(len(user).to_bytes(2, "big") + user + password).digest()
    return hmac.compare_digest(digest(user, password), digest(auth.user, auth.password))


def _code_name(code: int) -> str:
    """A refusal's reason for the counters: its ErrorCode's name, or the number a newer peer sent."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


def _name(raw: bytes) -> str:
    """A host name as the client sent it; bytes that are not UTF-8 stay undecodable (and are refused)."""
    return raw.decode("utf-8", "surrogateescape")


def _field_end(buf: bytearray, start: int) -> int:
    """Where the NUL ending the SOCKS4 field at `start` is, -1 while it has not arrived."""
    end = buf.find(b"\0", start, start + SOCKS4_MAX_FIELD + 1)
    if end < 0 and len(buf) > start + SOCKS4_MAX_FIELD:
        raise FrontError("SOCKS4 user id or name too long")
    return end
