"""The hub's front door as a prober meets it: first bytes, nginx's timers, bounds, refused hellos.

What nginx does was measured with Debian's nginx 1.22 (tests/lab compares the
two live); these tests pin the hub's side: the sans-IO parts by feeding
bytes, the rest over loopback with the timeouts shrunk (module constants).
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import socket
import ssl
import time
from typing import ClassVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.config import HubConfig
from ladder.hub.hub import Hub
from ladder.link import server
from ladder.link.client import LinkRefused, dial
from ladder.link.server import Doorway, FrontDoor, is_tls_start, tls_refusal
from ladder.link.tls import generate_self_signed, server_context
from ladder.link.webface import PLAIN_ON_HTTPS_PORT
from ladder.protocol.hello import make_hello
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.mux import KEEPALIVE_INTERVAL, Mux
from ladder.runtime import run_async
from ladder.store.hubdb import HubStore

RECORD_OVERFLOW_ALERT = bytes.fromhex("15030300020216")  # what nginx's OpenSSL sent to 16 03 01 ff ff ...


@pytest.fixture
def material(tmp_path):
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    fingerprint = generate_self_signed(cert, key, "127.0.0.1", ["127.0.0.1"])
    return cert, key, fingerprint


@pytest.fixture
def context(material):
    return server_context(*material[:2])


def client_hello() -> bytes:
    """A browser-like client's first flight (one ClientHello record)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="www.example.org")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def never_admit(hello, binding, transport, rest) -> bool:
    return False


async def open_door(context, admit=never_admit, **kwargs) -> FrontDoor:
    return await server.listen(("127.0.0.1", 0), context, "sha256:x", admit, **kwargs)


async def until_closed(reader: asyncio.StreamReader, limit: float) -> tuple[bytes, str, float]:
    """Everything the door sends until it closes: (bytes, "FIN"/"RST"/"open", seconds)."""
    started, got = time.monotonic(), b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), limit - (time.monotonic() - started))
            if not chunk:
                return got, "FIN", time.monotonic() - started
            got += chunk
    except TimeoutError:
        return got, "open", time.monotonic() - started
    except ConnectionResetError:
        return got, "RST", time.monotonic() - started


def tls_client() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


# -- the first bytes, sans-IO ----------------------------------------------------------


def test_the_first_byte_decides_tls_as_nginx_does():
    assert [b for b in range(256) if is_tls_start(b)] == [0x16, *range(0x80, 0x100)]


def test_openssl_s_refusal_of_a_bad_first_flight_is_what_nginx_sends():
    assert tls_refusal(ssl_context_for_unit(), b"\x16\x03\x01\xff\xff" + bytes(50)) == RECORD_OVERFLOW_ALERT


def test_a_real_client_hello_whole_or_in_part_is_not_refused(context):
    hello = client_hello()
    assert tls_refusal(context, hello) is None
    assert tls_refusal(context, hello[:40]) is None
    assert tls_refusal(context, hello[:1]) is None


def test_a_hello_followed_by_garbage_gets_the_server_s_flight_and_an_alert(context):
    answer = tls_refusal(context, client_hello() + b"\x17\x03\x03\x00\x20" + os.urandom(32))
    assert answer and answer[0] == 0x16  # ServerHello first, then the (encrypted) alert


def ssl_context_for_unit() -> ssl.SSLContext:
    # record-layer errors come before any certificate is needed
    return ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)


# -- over loopback ------------------------------------------------------------------------


def test_plain_http_on_the_tls_port_gets_nginx_s_497_page_then_a_fin(context):
    async def main():
        door = await open_door(context)
        reader, writer = await asyncio.open_connection("127.0.0.1", door.sockets[0].getsockname()[1])
        writer.write(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
        got, end, _ = await until_closed(reader, 5)
        door.close()
        return got, end

    got, end = asyncio.run(main())
    assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n") and PLAIN_ON_HTTPS_PORT.encode() in got
    assert end == "FIN"


def test_after_a_request_it_cannot_parse_the_door_reads_on_as_nginx_does(context, monkeypatch):
    """nginx's lingering close: FIN after the 400, but later bytes are read, not reset; a 497 closes
    at once."""
    monkeypatch.setattr(server, "LINGERING_TIMEOUT", 0.5)

    async def main():
        door = await open_door(context)
        port = door.sockets[0].getsockname()[1]
        ends = {}
        for name, request in (("junk", b"\x01abc"), ("497", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            got, end, _ = await until_closed(reader, 5)
            assert got.startswith(b"HTTP/1.1 400 ") and end == "FIN"
            await asyncio.sleep(0.1)
            try:
                for _ in range(3):
                    writer.write(b"more bytes")
                    await writer.drain()
                    await asyncio.sleep(0.05)
                ends[name] = "read on"
            except ConnectionError:  # reset, or the broken pipe that follows one
                ends[name] = "RST"
            writer.close()
        door.close()
        return ends

    assert asyncio.run(main()) == {"junk": "read on", "497": "RST"}


def test_tls_garbage_gets_openssl_s_alert_then_a_fin(context):
    async def main():
        door = await open_door(context)
        reader, writer = await asyncio.open_connection("127.0.0.1", door.sockets[0].getsockname()[1])
        writer.write(b"\x16\x03\x01\xff\xff" + os.urandom(300))
        result = await until_closed(reader, 5)
        door.close()
        return result

    got, end, _ = asyncio.run(main())
    assert (got, end) == (RECORD_OVERFLOW_ALERT, "FIN")


def test_silence_is_closed_at_the_head_deadline_with_a_fin(context, monkeypatch):
    monkeypatch.setattr(server, "HEAD_TIMEOUT", 0.6)
    monkeypatch.setattr(server, "SWEEP_EVERY", 0.05)

    async def main():
        door = await open_door(context)
        reader, _ = await asyncio.open_connection("127.0.0.1", door.sockets[0].getsockname()[1])
        result = await until_closed(reader, 5)
        door.close()
        return result

    got, end, seconds = asyncio.run(main())
    assert (got, end) == (b"", "FIN") and 0.5 < seconds < 4


def test_a_dribbled_head_is_closed_at_its_deadline_however_often_bytes_come(context, monkeypatch):
    monkeypatch.setattr(server, "HEAD_TIMEOUT", 0.8)

    async def main():
        door = await open_door(context)
        port = door.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls_client())
        writer.write(b"GET / HTTP/1.1\r\n")

        async def dribble():
            for _ in range(60):  # 6 s at most: far past the deadline
                await asyncio.sleep(0.1)
                writer.write(b"X")

        dribbling = asyncio.ensure_future(dribble())
        result = await until_closed(reader, 5)
        dribbling.cancel()
        door.close()
        return result

    got, end, seconds = asyncio.run(main())
    assert got == b"" and end == "FIN" and seconds < 4


def test_keepalive_runs_between_requests_and_a_dribble_does_not_restart_it(context, monkeypatch):
    monkeypatch.setattr(server, "HEAD_TIMEOUT", 0.5)
    monkeypatch.setattr(server, "KEEPALIVE_TIMEOUT", 2.5)

    async def main():
        door = await open_door(context)
        port = door.sockets[0].getsockname()[1]
        results = []
        for dribbling in (False, True):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls_client())
            writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await reader.readuntil(b"</html>\n")).startswith(b"HTTP/1.1 200 OK")
            answered = time.monotonic()
            task = None
            if dribbling:
                await asyncio.sleep(0.3)

                async def dribble():  # cancelled before `writer` is the next connection's
                    for _ in range(60):
                        writer.write(b"G")  # noqa: B023
                        await asyncio.sleep(0.1)

                task = asyncio.ensure_future(dribble())
            _, end, _ = await until_closed(reader, 5)
            results.append((end, time.monotonic() - answered))
            if task:
                task.cancel()
        door.close()
        return results

    (idle_end, idle), (dribble_end, dribbled) = asyncio.run(main())
    assert idle_end == "FIN" and 2.3 < idle < 4.5  # the keepalive timer
    # 0.3 s idle, then the head deadline from the request's first byte (0.8 s), not the keepalive
    # timer (2.5 s), nor one the dribble restarts (never)
    assert dribble_end == "FIN" and 0.6 < dribbled < 2.0


def test_the_longest_idle_visitor_is_shed_first(context, monkeypatch):
    monkeypatch.setattr(server, "MAX_VISITORS", 3)

    async def main():
        door = await open_door(context)
        port = door.sockets[0].getsockname()[1]
        conns, writers = [], []
        for _ in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls_client())
            writer.write(b"GET / HTTP/1.1\r\n")  # a visitor inside its first request
            conns.append(reader)
            writers.append(writer)  # a collected writer would close its connection
            await asyncio.sleep(0.05)
        ends = [(await until_closed(reader, 0.5))[1] for reader in conns]
        visitors = len(door.visitors)
        door.close()
        return ends, visitors

    ends, visitors = asyncio.run(main())
    assert ends == ["FIN", "FIN", "open", "open", "open"] and visitors == 3


def test_a_doorway_receiving_a_hello_counts_as_active(context, monkeypatch):
    monkeypatch.setattr(server, "MAX_VISITORS", 3)

    async def main():
        door = await open_door(context)
        port = door.sockets[0].getsockname()[1]
        conns, writers = [], []

        async def visitor():
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls_client())
            writer.write(b"GET /a")  # a hello's first bytes
            conns.append(reader)
            writers.append(writer)
            await asyncio.sleep(0.05)

        for _ in range(3):
            await visitor()
        writers[0].write(b"AAAA")  # the first goes on with its hello: no longer the longest idle
        await asyncio.sleep(0.05)
        for _ in range(2):
            await visitor()
        ends = [(await until_closed(reader, 0.5))[1] for reader in conns]
        door.close()
        return ends

    assert asyncio.run(main()) == ["open", "FIN", "FIN", "open", "open"]


HELLO = make_hello(Ed25519PrivateKey.from_private_bytes(bytes(32)), "sha256:x", bytes(12))
JOIN_HELLO = make_hello(Ed25519PrivateKey.from_private_bytes(bytes(32)), "sha256:x", bytes(12), bytes(16))


def test_every_prefix_of_a_hello_inside_tls_is_waited_on_as_nginx_does(context):
    # nginx reads an unfinished request line on: no answer, no close (measured: every prefix of
    # both kinds, Debian's nginx 1.22, inside TLS).
    prefixes = [hello[:cut] for hello in (HELLO, JOIN_HELLO) for cut in range(1, len(hello) + 1)]

    async def main():
        door = await open_door(context)
        port = door.sockets[0].getsockname()[1]

        async def probe(prefix):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls_client())
            writer.write(prefix)
            result = await until_closed(reader, 1.0)
            writer.transport.abort()
            return result[:2]

        ends = []
        for start in range(0, len(prefixes), 50):  # 50 at once: within the handshake bound
            ends += await asyncio.gather(*(probe(p) for p in prefixes[start:start + 50]))
        door.close()
        return ends

    ends = asyncio.run(main())
    assert [i for i, end in enumerate(ends) if end != (b"", "open")] == []


@pytest.mark.parametrize("first", [b"\xa1", b"\xa2", b"GET /a.", HELLO[:60] + b"\x00"])
def test_bytes_that_part_from_the_hello_grammar_are_answered_at_once_as_nginx_does(context, first):
    async def main():
        door = await open_door(context)
        reader, writer = await asyncio.open_connection("127.0.0.1", door.sockets[0].getsockname()[1],
                                                       ssl=tls_client())
        writer.write(first)
        result = await until_closed(reader, 2.0)
        door.close()
        return result

    got, end, _ = asyncio.run(main())
    if first == b"GET /a.":  # an unfinished request line, not a hello's: nginx waits on it too
        assert (got, end) == (b"", "open")
    else:  # nginx's 400 for a byte no request line holds, then its close
        assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n") and end == "FIN"


def test_a_refused_hello_is_the_web_face_s_request_line(context):
    # A stranger who sent a hello's bytes and then ends the line gets what nginx gives that URI.
    async def main():
        door = await open_door(context)
        reader, writer = await asyncio.open_connection("127.0.0.1", door.sockets[0].getsockname()[1],
                                                       ssl=tls_client())
        writer.write(JOIN_HELLO)
        await asyncio.sleep(0.1)
        writer.write(b" HTTP/1.1\r\nHost: a\r\n\r\n")
        answer = await asyncio.wait_for(reader.readuntil(b"</html>\r\n"), 5)
        door.close()
        return answer

    answer = asyncio.run(main())
    assert answer.startswith(b"HTTP/1.1 404 Not Found\r\nServer: nginx\r\n")
    assert b"Connection: keep-alive\r\n" in answer


def test_stalled_handshakes_are_shed_oldest_first_and_a_new_one_completes(context, monkeypatch):
    monkeypatch.setattr(server, "MAX_HANDSHAKES", 2)
    partial = client_hello()[:20]

    async def main():
        door = await open_door(context)
        port = door.sockets[0].getsockname()[1]
        stalled, writers = [], []
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(partial)
            stalled.append(reader)
            writers.append(writer)
            await asyncio.sleep(0.1)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=tls_client()), 5)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        answer = await reader.readuntil(b"\r\n")
        ends = [(await until_closed(reader, 0.3))[1] for reader in stalled]
        door.close()
        return ends, answer

    ends, answer = asyncio.run(main())
    # The third's arrival shed the first; the TLS client the second.
    assert ends[:2] == ["FIN", "FIN"] and ends[2] == "open"
    assert answer == b"HTTP/1.1 200 OK\r\n"


def test_connections_that_send_nothing_hold_no_tls_object_nor_visitor(context):
    async def main():
        door = await open_door(context)
        port = door.sockets[0].getsockname()[1]
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
        for _ in range(50):
            await asyncio.sleep(0.02)
            if len(door.bare) == 200:
                break
        counts = len(door.bare), len(door.handshakes), len(door.visitors), len(door.tasks)
        for sock in socks:
            sock.close()
        door.close()
        return counts

    assert asyncio.run(main()) == (200, 0, 0, 1)  # the one task is the sweeper of silent sockets


def test_a_member_the_hub_refuses_learns_it_at_once_and_one_it_takes_gets_a_ping_first(material):
    # A hello is a request line nginx waits on; the PING that rides with it starts with a byte no
    # request line holds (a frame's length, 0x00), so a refusing hub's web face answers a 400 at
    # once, as nginx would, instead of leaving the member to its dial timeout.
    cert, key, fingerprint = material
    rests = []

    def take(hello, binding, transport, rest):
        rests.append(rest)
        return False

    async def main():
        door = await server.listen(("127.0.0.1", 0), server_context(cert, key), fingerprint, take)
        # Well before the link's first keepalive PING (mux.KEEPALIVE_INTERVAL), which would tell it too.
        with pytest.raises(LinkRefused):
            await dial(("127.0.0.1", door.sockets[0].getsockname()[1]), fingerprint,
                       Ed25519PrivateKey.generate(), None, timeout=KEEPALIVE_INTERVAL / 2)
        door.close()

    asyncio.run(main())
    hub_side = Mux(client=False, now=0.0)
    assert hub_side.receive_data(rests[0], 0.0) == [] and hub_side.data_to_send()  # a PING, answered


# -- refused hellos: the answer's timing does not say what was wrong ------------------------


class FakeTLS(asyncio.Transport):
    """Enough of a TLS transport for a Doorway: a channel binding, and when the answer came."""

    def __init__(self, binding: bytes):
        super().__init__()
        self.binding = binding
        self.answered = asyncio.get_running_loop().create_future()
        self.closing = False

    def get_extra_info(self, name, default=None):
        return {"ssl_object": self, "peername": ("192.0.2.1", 4000)}.get(name, default)

    def get_channel_binding(self, kind):
        return self.binding

    def write(self, data):
        if not self.answered.done():
            self.answered.set_result(time.perf_counter())

    def set_protocol(self, protocol):
        self.protocol = protocol

    def is_closing(self):
        return self.closing

    def close(self):
        self.closing = True


def _superiority(a: list[float], b: list[float]) -> float:
    """P(a sample of a < one of b), ties counting half: 0.5 when the two cannot be told apart."""
    wins = sum((x < y) + 0.5 * (x == y) for x in a for y in b)
    return wins / (len(a) * len(b))


def test_refused_hellos_of_every_kind_are_answered_after_the_same_time(material, tmp_path):
    cert, key, fingerprint = material
    config = HubConfig(tmp_path, "t", ("127.0.0.1", 0), ("127.0.0.1", 0), cert, key)
    member_key = Ed25519PrivateKey.generate()
    binding = os.urandom(32)
    with HubStore(tmp_path / "hub.db") as store:
        token = store.create_invite("ryan")
        store.redeem_invite(token, member_id(public_bytes(member_key)), public_bytes(member_key))
        store.create_invite("someone")  # a live invite whose token the prober does not have
        stranger = Ed25519PrivateKey.generate()
        b64 = lambda fields: base64.urlsafe_b64encode(fields).rstrip(b"=")  # noqa: E731
        kinds = {
            "malformed": lambda: b"GET /a" + b64(os.urandom(96)),
            "bad signature": lambda: b"GET /a" + b64(public_bytes(member_key) + os.urandom(64)),
            "unknown member": lambda: make_hello(stranger, fingerprint, binding),
            "unknown invite": lambda: make_hello(stranger, fingerprint, binding, token=os.urandom(16)),
        }
        # The prober follows the hello with a byte a frame may start with, as a member's PING does:
        # the hello is checked, then the web face answers the byte with nginx's 400.
        request_end = b"\x00"

        async def main():
            hub = Hub(config, store)
            order = [kind for kind in kinds for _ in range(60)]
            random.Random(11).shuffle(order)
            times: dict[str, list[float]] = {kind: [] for kind in kinds}
            loop = asyncio.get_running_loop()
            for kind in order:
                hello = kinds[kind]()
                transport = FakeTLS(binding)
                doorway = Doorway(fingerprint, hub.admit, loop.time() + 60, server.Visitors())
                doorway.connection_made(transport)
                sent = time.perf_counter()
                doorway.data_received(hello + request_end)
                answered = await asyncio.wait_for(transport.answered, 5)
                times[kind].append(answered - sent)
                doorway.connection_lost(None)
            return times

        times = run_async(main())  # the loop a hub runs on (uvloop)
    medians = {kind: sorted(t)[len(t) // 2] * 1000 for kind, t in times.items()}
    print("refused hellos, median ms to the answer:", {k: round(v, 3) for k, v in medians.items()})
    names = list(times)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            p = _superiority(times[a], times[b])
            assert 0.2 < p < 0.8, f"a prober tells {a!r} from {b!r} by timing (P={p:.2f}; medians {medians})"


def test_a_hello_shaped_request_line_that_goes_on_is_answered_at_once_unverified(material):
    # nginx answers "GET /<a hello's shape> HTTP/1.1 ..." at once; so must the hub, and without
    # checking a signature, whose cost could tell what was wrong. A member's frames follow instead.
    _, _, fingerprint = material
    binding = os.urandom(32)
    member_hello = make_hello(Ed25519PrivateKey.generate(), fingerprint, binding)
    admitted = []

    def admit(hello, binding, transport, rest):
        admitted.append(rest)
        return False

    async def main():
        answers = {}
        for name, data in (("request", member_hello + b" HTTP/1.1\r\nHost: a\r\n\r\n"),
                           ("HTTP/0.9", member_hello + b"\r\n"),
                           ("frames", member_hello + bytes(9))):
            transport = FakeTLS(binding)
            doorway = Doorway(fingerprint, admit, asyncio.get_running_loop().time() + 60, server.Visitors())
            doorway.connection_made(transport)
            doorway.data_received(data)
            answers[name] = transport.answered.done()  # answered within data_received: no timer
            doorway.connection_lost(None)
        return answers

    answers = asyncio.run(main())
    assert answers == {"request": True, "HTTP/0.9": True, "frames": False}
    assert admitted == [bytes(9)]  # only the hello with frames behind it was checked


def test_out_of_descriptors_the_door_pauses_and_frees_the_oldest_silent_socket(context, monkeypatch):
    monkeypatch.setattr(server, "ACCEPT_PAUSE", 0.2)

    class Exhausted:
        """The listening socket in a process out of file descriptors: accept fails, twice."""

        def __init__(self, real):
            self.real, self.failures = real, 0

        def accept(self):
            if self.failures < 2:
                self.failures += 1
                raise OSError(24, "Too many open files")
            return self.real.accept()

        def __getattr__(self, name):
            return getattr(self.real, name)

    async def main():
        door = await open_door(context)
        port = door.sockets[0].getsockname()[1]
        silent = socket.create_connection(("127.0.0.1", port))
        for _ in range(50):
            await asyncio.sleep(0.02)
            if door.bare:
                break
        door.sockets[0] = exhausted = Exhausted(door.sockets[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        got, _, _ = await until_closed(reader, 5)
        waited = time.monotonic() - started
        silent.settimeout(1)
        dropped = silent.recv(1) == b""
        silent.close()
        door.sockets[0] = exhausted.real
        door.close()
        return exhausted.failures, waited, got, dropped

    failures, waited, got, dropped = asyncio.run(main())
    assert failures == 2 and got.startswith(b"HTTP/1.1 400 ") and dropped
    assert waited > 0.3  # two pauses, not a busy loop of failed accepts


# -- a device's password line ---------------------------------------------------------------

DIGITS = b"0123456789abcdef" * 3 + b"01234567"  # 56 hex digits
LINE = DIGITS + b"\r\n"
REQUEST = b"\x01\x03\x0bexample.org\x01\xbb\r\nGET / HTTP/1.1\r\n\r\n"  # CONNECT example.org:443, then bytes


class RecordingFace:
    """The web face, reduced to what it was given."""

    given: ClassVar[list[bytes]] = []

    def __init__(self, **_):
        self.closing = self.lingers = self.body_to_come = self.reading_body = False
        self.awaiting_request = False

    def receive_data(self, data):
        RecordingFace.given.append(bytes(data))
        return b""


def door_with_devices(monkeypatch, admit_device):
    monkeypatch.setattr(server, "WebFace", RecordingFace)
    RecordingFace.given = []
    transport = FakeTLS(os.urandom(32))
    doorway = Doorway("sha256:x", never_admit, asyncio.get_running_loop().time() + 60, server.Visitors(),
                      admit_device=admit_device)
    doorway.connection_made(transport)
    return doorway, transport


def offer(monkeypatch, data: bytes, admitted: bool):
    """`data` as a door's first read, with a hub that takes a device's line if `admitted`: what the hub
    was asked, what the web face was given within that read and after a refused hello's delay, the
    door and its transport."""
    asked = []

    def admit_device(digits, transport, rest):
        asked.append((digits, rest))
        return admitted

    async def main():
        doorway, transport = door_with_devices(monkeypatch, admit_device)
        doorway.data_received(data)
        at_once = b"".join(RecordingFace.given)
        await asyncio.sleep(server.HELLO_ANSWER_DELAY * 3)
        if not admitted:
            doorway.connection_lost(None)
        return asked, at_once, b"".join(RecordingFace.given), doorway, transport

    return asyncio.run(main())


def test_a_password_line_matching_no_device_goes_to_the_web_face_at_once_with_all_its_bytes(monkeypatch):
    asked, at_once, _, _, _ = offer(monkeypatch, LINE + REQUEST, admitted=False)
    assert at_once == LINE + REQUEST  # within data_received, as nginx answers such bytes at once
    assert asked == [(DIGITS, REQUEST)]


@pytest.mark.parametrize("first", [
    b"g", DIGITS[:55] + b"g", DIGITS + b"\n", DIGITS + b"\r\r", DIGITS + b" HTTP/1.1\r\n",
    DIGITS[:10] + b" ", DIGITS[:56] + b"0\r\n", b"\r\n",
])
def test_every_malformed_password_line_goes_to_the_web_face_at_once_with_all_its_bytes(monkeypatch, first):
    asked, at_once, _, _, _ = offer(monkeypatch, first, admitted=True)
    assert at_once == first and asked == []  # within data_received: no lookup, no timer


def test_a_part_of_a_password_line_goes_to_the_web_face_at_once_unlooked_up(monkeypatch):
    """nginx answers a line starting with a digit or a lower-case letter at its first byte: a device's
    line must come whole in its first read (every Trojan client writes it with its request)."""
    async def main():
        handed = []
        for cut in range(1, len(LINE)):
            doorway, _ = door_with_devices(monkeypatch, lambda *args: pytest.fail("looked up"))
            doorway.data_received(LINE[:cut])
            handed.append(b"".join(RecordingFace.given) == LINE[:cut])
            doorway.connection_lost(None)
        return handed

    assert all(asyncio.run(main()))


def test_a_device_s_line_hands_the_connection_over_with_the_bytes_after_it(monkeypatch):
    taken, _, given, doorway, transport = offer(monkeypatch, LINE + REQUEST, admitted=True)
    assert taken == [(DIGITS, REQUEST)] and given == b""
    assert len(doorway.visitors) == 0 and not transport.closing  # a device, not a visitor on a timer


def test_without_devices_a_password_line_is_a_stranger_s_request_line(monkeypatch):
    async def main():
        doorway, _ = door_with_devices(monkeypatch, None)
        doorway.data_received(LINE[:1])
        return list(RecordingFace.given)

    assert asyncio.run(main()) == [LINE[:1]]


class WrittenTLS(FakeTLS):
    """A FakeTLS that keeps what is written."""

    def __init__(self):
        super().__init__(os.urandom(32))
        self.written = b""

    def write(self, data):
        self.written += data


SUBSCRIPTION_REQUEST = b"GET /s/" + b"t" * 43 + b"?format=links HTTP/1.1\r\nHost: hub\r\n\r\n"


def door_with_subscriptions(monkeypatch, subscription):
    monkeypatch.setattr(server, "WebFace", RecordingFace)
    RecordingFace.given = []
    transport = WrittenTLS()
    doorway = Doorway("sha256:x", never_admit, asyncio.get_running_loop().time() + 60, server.Visitors(),
                      admit_device=lambda *args: False, subscription=subscription)
    doorway.connection_made(transport)
    return doorway, transport


def test_a_subscription_request_is_held_until_its_head_ends_then_answered(monkeypatch):
    asked = []

    def subscription(target):
        asked.append(target)
        return "text/plain", b"body", [("subscription-userinfo", "upload=0")]

    async def main():
        doorway, transport = door_with_subscriptions(monkeypatch, subscription)
        for i in range(len(SUBSCRIPTION_REQUEST) - 1):
            doorway.data_received(SUBSCRIPTION_REQUEST[i:i + 1])
        held = (list(asked), list(RecordingFace.given), transport.written)
        doorway.data_received(SUBSCRIPTION_REQUEST[-1:])
        return held, transport

    (asked_before, given, written), transport = asyncio.run(main())
    assert asked_before == [] and given == [] and written == b""
    assert asked == ["/s/" + "t" * 43 + "?format=links"]
    head, _, body = transport.written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\nServer: nginx\r\n") and body == b"body"
    assert b"\r\nsubscription-userinfo: upload=0" in head and b"\r\nContent-Length: 4\r\n" in head
    assert transport.closing and RecordingFace.given == []


@pytest.mark.parametrize("data", [
    SUBSCRIPTION_REQUEST,  # no such token: the hub says None
    b"GET /s/x HTTP/2.0\r\n\r\n",
    b"GET /x HTTP/1.1\r\n\r\n",
    b"GET /s/" + b"a" * 9000,  # a head past the bound
    b"GET /s/x\r\n",  # HTTP/0.9: nginx answers at its line end
    b"GET /s/\x01",  # a byte no request line holds: nginx answers at once
    b"GET /s/" + b"t" * 43 + b" HTTP/1.1\nHost: hub\n\n",  # bare line feeds end a head too
])
def test_anything_else_under_the_prefix_goes_to_the_web_face_whole(monkeypatch, data):
    async def main():
        doorway, transport = door_with_subscriptions(monkeypatch, lambda target: None)
        doorway.data_received(data)
        return transport

    transport = asyncio.run(main())
    assert b"".join(RecordingFace.given) == data and transport.written == b""
