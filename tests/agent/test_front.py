"""The proxy front over real loopback sockets: SOCKS5, SOCKS4/4a and HTTP, answers and refusals.

The opener stands in for Agent.open: it encodes the target as the agent
does before choosing an exit, then refuses (as a block rule or a missing
exit does, before anything opens) or connects directly to a local echo
server with the agent's own `connect_direct`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import struct

import pytest

from ladder.agent import front
from ladder.agent.direct import connect_direct
from ladder.agent.front import MAX_HEAD, ProxyConnection
from ladder.config import ConfigError, ProxyAuth
from ladder.protocol.errors import ErrorCode
from ladder.protocol.messages import encode_target

WAIT = 5.0  # no answer in this long counts as a hang


class Opener:
    """Connects every target to `echo_port` on loopback; without one, to the port asked for there."""

    def __init__(self, refuse: ErrorCode | None = None, echo_port: int = 0):
        self.refuse, self.echo_port = refuse, echo_port
        self.asked: list[tuple[str, int]] = []
        self.tasks: set[asyncio.Task] = set()

    def __call__(self, host: str, port: int, relay: ProxyConnection) -> None:
        self.asked.append((host, port))
        encode_target(host, port)  # Agent.open does this before it picks an exit
        if self.refuse is not None:
            return relay.on_refused(self.refuse, "refused by the test")
        task = asyncio.get_running_loop().create_task(self._direct(relay, self.echo_port or port))
        self.tasks.add(task)

    async def _direct(self, relay: ProxyConnection, port: int) -> None:
        stream = await connect_direct("127.0.0.1", port, relay)
        relay.attach(stream)
        relay.on_accepted(b"", 0)


async def _echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
    writer.close()


async def exchange(opener: Opener, request: bytes, expect: int,
                   auth: ProxyAuth | None = None) -> tuple[bytes, bool]:
    """Send `request` to a front (asking for `auth` if given); return what it answered and whether it closed.

    Reads until the front closes, or for a moment once `expect` bytes are in
    (a connection that stays open); nothing within WAIT is a hang.
    """
    loop = asyncio.get_running_loop()
    def pac(reached: tuple[str, int]) -> str:
        return f"// pac for {reached[0]}:{reached[1]}\n"

    server = await loop.create_server(lambda: ProxyConnection(opener, pac=pac, auth=auth), "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
    try:
        writer.write(request)
        answer = b""
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), WAIT if len(answer) < expect else 0.5)
            except TimeoutError:
                return answer, False
            if not chunk:
                return answer, True
            answer += chunk
    finally:
        writer.close()
        server.close()


def run(opener: Opener, request: bytes, expect: int, auth: ProxyAuth | None = None) -> tuple[bytes, bool]:
    return asyncio.run(exchange(opener, request, expect, auth))


def socks5(name: bytes, port: int = 443) -> bytes:
    return b"\x05\x01\x00" + b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", port)


def socks4(address: bytes, port: int, user: bytes = b"", name: bytes | None = None,
           command: int = 1) -> bytes:
    return (bytes([4, command]) + struct.pack("!H", port) + address + user + b"\0"
            + (name + b"\0" if name is not None else b""))


@pytest.mark.parametrize("name", [
    b"\xff\xfe.example",                    # not UTF-8
    "caf\u00e9 \u2028.example".encode(),    # UTF-8, but no IDNA name
    b"",                                    # empty
    b"a" * 70 + "\u00e9".encode(),           # a label too long for IDNA
])
def test_a_socks5_name_that_cannot_be_a_target_gets_a_reply_code(name):
    opener = Opener(refuse=ErrorCode.FORBIDDEN)
    answer, closed = run(opener, socks5(name), 2 + 10)
    assert answer == b"\x05\x00" + b"\x05\x04\x00\x01" + bytes(6) and closed
    assert opener.asked == []


def test_an_international_socks5_name_goes_to_the_exit_as_a_name():
    opener = Opener(refuse=ErrorCode.FORBIDDEN)
    answer, closed = run(opener, socks5("bücher.example".encode()), 12)
    assert opener.asked == [("bücher.example", 443)]
    assert answer[2:4] == b"\x05\x02" and closed  # refused before opening: a real reply code


@pytest.mark.parametrize("code, reply", [(ErrorCode.FORBIDDEN, 0x02), (ErrorCode.NO_ROUTE, 0x03)])
def test_refusals_known_before_opening_get_a_socks5_reply_code(code, reply):
    answer, closed = run(Opener(refuse=code), socks5(b"example.com"), 12)
    assert answer == b"\x05\x00" + bytes([5, reply, 0, 1]) + bytes(6) and closed


def test_socks4_and_socks4a_are_answered_and_carry_the_address_or_the_name():
    opener = Opener(refuse=ErrorCode.NO_ROUTE)
    answer, closed = run(opener, socks4(bytes([93, 184, 216, 34]), 80, b"someone"), 8)
    assert answer == b"\x00\x5b" + bytes(6) and closed
    answer, closed = run(opener, socks4(b"\0\0\0\x01", 443, b"", b"example.com"), 8)
    assert answer == b"\x00\x5b" + bytes(6) and closed
    assert opener.asked == [("93.184.216.34", 80), ("example.com", 443)]  # never resolved here


def test_socks4_with_an_address_warns_once_that_the_client_resolved_the_name(caplog, monkeypatch):
    monkeypatch.setattr(front, "_hints_given", set())  # as in a fresh process
    opener = Opener(refuse=ErrorCode.NO_ROUTE)
    run(opener, socks4(b"\0\0\0\x01", 80, name=b"example.com"), 8)  # SOCKS4a carries the name: no hint
    assert not [r for r in caplog.records if "resolved names itself" in r.getMessage()]
    for _ in range(3):
        run(opener, socks4(bytes([93, 184, 216, 34]), 80), 8)
    assert len([r for r in caplog.records if "resolved names itself" in r.getMessage()]) == 1


def test_socks4_connect_relays_after_an_early_answer():
    async def attempt():
        echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
        port = echo.sockets[0].getsockname()[1]
        try:
            return await exchange(Opener(echo_port=port), socks4(b"\x7f\0\0\x01", port) + b"hello", 8 + 5)
        finally:
            echo.close()
    answer, closed = asyncio.run(attempt())
    assert answer == b"\x00\x5a" + bytes(6) + b"hello" and not closed


class Opening:
    """An open on its way, as the pool's `_Opening` is to the front until the exit answers: it keeps
    what the front sends it (early data)."""

    def __init__(self) -> None:
        self.sent = bytearray()

    def send(self, data: bytes | memoryview) -> None:
        self.sent += data

    def end(self) -> None:
        pass

    def reset(self, code: int, reason: str = "") -> None:
        pass

    def acknowledge(self, nbytes: int) -> None:
        pass

    def pending(self) -> int:
        return 0


class Unanswered:
    """An opener whose exit never answers by itself: the front gets an opening stream at once."""

    def __init__(self) -> None:
        self.relay: ProxyConnection | None = None
        self.opening = Opening()

    def __call__(self, host: str, port: int, relay: ProxyConnection) -> None:
        self.relay = relay
        relay.attach(self.opening)


CLIENT_HELLO = b"\x16\x03\x01\x00\x05hello"  # what a browser sends first in a tunnel
TUNNELS = {
    "socks5": (socks5(b"site.test"), b"\x05\x00" + b"\x05\x00\x00\x01" + bytes(6)),
    "http-connect": (b"CONNECT site.test:443 HTTP/1.1\r\nHost: site.test:443\r\n\r\n",
                     b"HTTP/1.1 200 Connection Established\r\n\r\n"),
}


@pytest.mark.parametrize("kind", TUNNELS)
def test_a_tunnel_is_answered_before_the_exit_and_a_later_refusal_resets_it(kind, caplog):
    caplog.set_level(logging.INFO, logger="ladder.agent.front")
    request, answer = TUNNELS[kind]

    async def attempt() -> tuple[bytes, bytes, bytes | None]:
        opener = Unanswered()
        server = await asyncio.get_running_loop().create_server(lambda: ProxyConnection(opener),
                                                                "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        try:
            writer.write(request)
            heard = await asyncio.wait_for(reader.readexactly(len(answer)), WAIT)
            writer.write(CLIENT_HELLO)
            for _ in range(100):  # until the opening stream has the client's first bytes, 5 s at most
                if len(opener.opening.sent) >= len(CLIENT_HELLO):
                    break
                await asyncio.sleep(0.05)
            early = bytes(opener.opening.sent)
            assert opener.relay is not None
            opener.relay.on_refused(ErrorCode.TARGET_REFUSED, "the site refused the connection")
            try:
                rest: bytes | None = await asyncio.wait_for(reader.read(), WAIT)
            except ConnectionResetError:
                rest = None
            return heard, early, rest
        finally:
            writer.close()
            server.close()

    heard, early, rest = asyncio.run(attempt())
    assert heard == answer, "the tunnel was not answered before the exit answered"
    assert early == CLIENT_HELLO, "the client's first bytes did not go out as early data"
    assert rest is None, f"a refusal after the answer must reset the connection, not end it: {rest!r}"
    assert "proxy: refused: the site refused the connection (site.test:443)" in caplog.text


@pytest.mark.parametrize("request_bytes", [
    socks4(b"\x7f\0\0\x01", 80, command=2),                      # BIND
    socks4(b"\x7f\0\0\x01", 80, user=b"u" * 300),               # a user id that never ends
    socks4(b"\0\0\0\x01", 80, name=b"n" * 300),                 # a SOCKS4a name that never ends
    socks4(b"\0\0\0\x01", 80, name=b"\xff.example"),            # an undecodable SOCKS4a name
])
def test_bad_socks4_requests_are_refused_at_once(request_bytes):
    opener = Opener(refuse=ErrorCode.FORBIDDEN)
    answer, closed = run(opener, request_bytes, 8)
    assert answer == b"\x00\x5b" + bytes(6) and closed and opener.asked == []


@pytest.mark.parametrize("first", [b"\x16\x03\x01\x02\x00\x01", b"\x00", b"\xff" * 7, b"{}", b"\r\n"])
def test_first_bytes_the_front_does_not_speak_get_400_and_a_close(first):
    answer, closed = run(Opener(), first, 12)
    assert answer.startswith(b"HTTP/1.1 400") and closed


def test_a_request_head_over_the_limit_is_refused_even_in_one_read():
    head = (b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nX-Big: " + b"a" * (70 * 1024)
            + b"\r\n\r\n")
    opener = Opener(refuse=ErrorCode.FORBIDDEN)
    answer, closed = run(opener, head, 12)
    assert answer.startswith(b"HTTP/1.1 431") and closed and opener.asked == []
    fits = b"GET http://example.com/ HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD - 64) + b"\r\n\r\n"
    run(opener, fits, 12)
    assert opener.asked == [("example.com", 80)]  # a head under the limit is served


def test_an_http_name_that_cannot_be_a_target_is_a_400():
    opener = Opener(refuse=ErrorCode.FORBIDDEN)
    answer, closed = run(opener, b"CONNECT \xff\xfe.example:443 HTTP/1.1\r\n\r\n", 12)
    assert answer.startswith(b"HTTP/1.1 400") and closed and opener.asked == []


def test_the_proxy_address_typed_into_a_browser_says_how_to_use_it():
    answer, closed = run(Opener(), b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 12)
    assert answer.startswith(b"HTTP/1.1 400") and closed
    assert re.search(rb"SOCKS5 proxy .* or HTTP proxy, or use the PAC file http://127\.0\.0\.1:\d+/proxy\.pac",
                     answer)


@pytest.mark.parametrize("stalled, answer_starts", [
    (b"", b"HTTP/1.1 408"),                                   # connected, said nothing
    (b"GET http://example.com/ HTTP/1.1\r\nHost: ex", b"HTTP/1.1 408"),  # half a head
    (b"\x05\x02\x00", b""),                                   # half a SOCKS5 greeting
    (b"\x05\x01\x00\x05\x01\x00\x03\x0bexample", b"\x05\x00"),  # half a SOCKS5 request
    (b"\x04\x01\x00\x50\x7f\x00\x00\x01user", b""),           # a SOCKS4 user id without its NUL
])
def test_a_client_that_stalls_before_its_first_request_is_closed(monkeypatch, stalled, answer_starts):
    monkeypatch.setattr(front, "REQUEST_TIMEOUT", 0.3)
    opener = Opener(refuse=ErrorCode.FORBIDDEN)
    answer, closed = run(opener, stalled, 1 << 20)
    assert closed and answer.startswith(answer_starts) and opener.asked == []
    if answer_starts.startswith(b"HTTP"):
        assert b"no complete request within 0.3 s" in answer


# ------------------------------------------------------------ a proxy with a password

AUTH = ProxyAuth(b"alice", b"s3cret")
ASKED = b"\x05\x02"  # RFC 1928: the server chose method 2, user name and password
CONNECT_EXAMPLE = b"\x05\x01\x00\x03\x0bexample.com\x01\xbb"


def password(user: bytes, secret: bytes, version: int = 1) -> bytes:
    """An RFC 1929 sub-negotiation request."""
    return bytes([version, len(user)]) + user + bytes([len(secret)]) + secret


def test_socks5_with_the_password_is_served_even_sent_all_at_once():
    opener = Opener(refuse=ErrorCode.FORBIDDEN)
    request = b"\x05\x02\x00\x02" + password(b"alice", b"s3cret") + CONNECT_EXAMPLE
    answer, closed = run(opener, request, 2 + 2 + 10, AUTH)
    assert answer == ASKED + b"\x01\x00" + b"\x05\x02\x00\x01" + bytes(6) and closed
    assert opener.asked == [("example.com", 443)]


def test_socks5_with_the_password_is_served_step_by_step_as_clients_wait_for_each_answer():
    async def attempt():
        opener = Opener(refuse=ErrorCode.FORBIDDEN)
        server = await asyncio.get_running_loop().create_server(lambda: ProxyConnection(opener, auth=AUTH),
                                                                "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        answers = []
        try:
            steps = ((b"\x05\x01\x02", 2), (password(b"alice", b"s3cret"), 2), (CONNECT_EXAMPLE, 10))
            for step, size in steps:
                writer.write(step)
                answers.append(await asyncio.wait_for(reader.readexactly(size), WAIT))
            return answers, opener.asked
        finally:
            writer.close()
            server.close()
    answers, asked = asyncio.run(attempt())
    assert answers == [ASKED, b"\x01\x00", b"\x05\x02\x00\x01" + bytes(6)] and asked == [("example.com", 443)]


@pytest.mark.parametrize("sub_negotiation", [
    password(b"alice", b"wrong"),
    password(b"bob", b"s3cret"),
    password(b"alice", b"s3cre"),                   # a prefix of the password
    password(b"alice", b"s3cretX"),
    password(b"", b""),                             # ULEN and PLEN 0: RFC 1929 allows 1-255
    password(b"alice", b"s3cret", version=5),       # the SOCKS version where RFC 1929's belongs
    password(b"alice", b"s3cret", version=0),
    b"\x01\x0balices3cret\x00",                     # ULEN over the password: fields shifted
])
def test_socks5_without_the_right_password_hears_failure_and_is_closed(sub_negotiation):
    opener = Opener(refuse=ErrorCode.FORBIDDEN)
    answer, closed = run(opener, b"\x05\x01\x02" + sub_negotiation + CONNECT_EXAMPLE, 4, AUTH)
    assert answer == ASKED + b"\x01\x01" and closed and opener.asked == []


def test_a_colon_inside_the_user_name_does_not_move_it_into_the_password():
    auth = ProxyAuth(b"a", b"b:c")
    answer, closed = run(Opener(), b"\x05\x01\x02" + password(b"a:b", b"c") + CONNECT_EXAMPLE, 4, auth)
    assert answer == ASKED + b"\x01\x01" and closed


@pytest.mark.parametrize("methods", [b"\x01\x00", b"\x02\x00\x01", b"\x00"])
def test_socks5_offering_no_password_method_gets_0xff(methods):
    opener = Opener()
    answer, closed = run(opener, b"\x05" + methods + CONNECT_EXAMPLE, 2, AUTH)
    assert answer == b"\x05\xff" and closed and opener.asked == []


def test_a_password_that_never_finishes_arriving_is_closed_unanswered(monkeypatch):
    monkeypatch.setattr(front, "REQUEST_TIMEOUT", 0.3)
    opener = Opener()
    answer, closed = run(opener, b"\x05\x01\x02" + b"\x01\x05alice\x40short", 1 << 20, AUTH)  # PLEN 64
    assert answer == ASKED and closed and opener.asked == []


def test_socks4_has_no_password_so_it_is_refused_when_one_is_asked():
    opener = Opener()
    answer, closed = run(opener, socks4(b"\0\0\0\x01", 443, b"alice", b"example.com"), 8, AUTH)
    assert answer == b"\x00\x5b" + bytes(6) and closed and opener.asked == []


def basic(user: bytes, secret: bytes, scheme: bytes = b"Basic") -> bytes:
    return b"Proxy-Authorization: " + scheme + b" " + base64.b64encode(user + b":" + secret) + b"\r\n"


@pytest.mark.parametrize("fields", [
    b"",
    basic(b"alice", b"wrong"),
    basic(b"alice", b"s3cret", scheme=b"Bearer"),
    b"Proxy-Authorization: Basic !!not-base64!!\r\n",
    b"Proxy-Authorization: Basic " + base64.b64encode(b"alices3cret") + b"\r\n",  # no colon
    b"Authorization: Basic " + base64.b64encode(b"alice:s3cret") + b"\r\n",  # for the origin, not us
])
@pytest.mark.parametrize("request_line", [b"CONNECT example.com:443 HTTP/1.1",
                                          b"GET http://example.com/ HTTP/1.1"])
def test_http_without_the_right_password_gets_407_with_a_basic_challenge(request_line, fields):
    opener = Opener()
    answer, closed = run(opener, request_line + b"\r\nHost: example.com\r\n" + fields + b"\r\n", 12, AUTH)
    head = answer.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 407 Proxy Authentication Required" and closed
    assert b'Proxy-Authenticate: Basic realm="ladder"' in head
    assert opener.asked == []


def test_http_with_the_password_is_served_and_the_password_never_reaches_the_origin():
    async def attempt():
        echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
        port = echo.sockets[0].getsockname()[1]
        request = (b"GET http://127.0.0.1:%d/page HTTP/1.1\r\nHost: 127.0.0.1\r\n" % port
                   + basic(b"alice", b"s3cret", scheme=b"basic") + b"\r\n")  # the scheme is case-insensitive
        try:
            return await exchange(Opener(echo_port=port), request, 30, AUTH)
        finally:
            echo.close()
    answer, closed = asyncio.run(attempt())
    assert answer.startswith(b"GET /page HTTP/1.1\r\n") and not closed  # what the origin got, echoed
    assert b"alice" not in answer and b"uthorization" not in answer


def test_the_pac_file_is_served_without_a_password_and_names_the_address_reached():
    answer, closed = run(Opener(), b"GET /proxy.pac HTTP/1.1\r\nHost: x\r\n\r\n", 12, AUTH)
    assert answer.startswith(b"HTTP/1.1 200 OK") and closed
    assert re.search(rb"\r\n\r\n// pac for 127\.0\.0\.1:\d+\n$", answer)


@pytest.mark.parametrize("text", ["alice", ":pw", "alice:", "", "a" * 256 + ":pw", "alice:" + "p" * 256])
def test_proxy_credentials_are_user_colon_password_and_the_error_never_shows_them(text):
    with pytest.raises(ConfigError, match="--proxy-auth must be USER:PASSWORD") as caught:
        ProxyAuth.parse(text, "--proxy-auth")
    assert not text or text not in str(caught.value)


def test_proxy_credentials_split_at_the_first_colon_and_never_show_the_password():
    auth = ProxyAuth.parse("alice:pa:ss wörd", "x")
    assert auth == ProxyAuth(b"alice", "pa:ss wörd".encode())
    assert "pa:ss" not in repr(auth) and "alice" in repr(auth)


def test_a_pipelined_request_for_another_host_never_reaches_the_first_host():
    # Found by fuzzing (fuzz/targets.py, front): the second request was parsed while the first
    # one's direct connection was still opening, held back with it, and sent to the first host.
    async def attempt():
        heard: dict[int, bytearray] = {}

        async def origin(reader, writer):
            port = writer.get_extra_info("sockname")[1]
            while data := await reader.read(65536):
                heard.setdefault(port, bytearray()).extend(data)
            writer.close()

        first, second = [await asyncio.start_server(origin, "127.0.0.1", 0) for _ in range(2)]
        a, b = (server.sockets[0].getsockname()[1] for server in (first, second))
        request = (b"GET http://127.0.0.1:%d/one HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (a, a)
                   + b"GET http://127.0.0.1:%d/two HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (b, b))
        loop = asyncio.get_running_loop()
        front = await loop.create_server(lambda: ProxyConnection(Opener()), "127.0.0.1", 0)
        _, writer = await asyncio.open_connection(*front.sockets[0].getsockname())
        writer.write(request)
        try:
            for _ in range(100):  # until the second origin has its request, 5 s at most
                if b"\r\n\r\n" in heard.get(b, b""):
                    break
                await asyncio.sleep(0.05)
        finally:
            writer.close()
            for server in (front, first, second):
                server.close()
        return bytes(heard.get(a, b"")), bytes(heard.get(b, b""))

    to_first, to_second = asyncio.run(attempt())
    assert b"/two" not in to_first, f"the first host got the second host's request: {to_first!r}"
    assert to_second.startswith(b"GET /two HTTP/1.1\r\n")
