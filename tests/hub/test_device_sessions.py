"""The hub acting for devices (hub/devices.py): admission by secret, Trojan requests, rules, meters, cuts.

The pool is replaced by one that records what it is asked, and the TLS
transport by one that records what happens to it; the store is real.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import socket
import ssl
import weakref

import pytest

from ladder.hub import devices as devices_module
from ladder.hub.devices import DEVICE_IDLE, Devices, DeviceSession, TrojanConnection
from ladder.link.tls import generate_self_signed, server_context
from ladder.protocol import control
from ladder.protocol.trojan import CONNECT, UDP_ASSOCIATE, encode_packet, request
from ladder.runtime import run_async
from ladder.store.hubdb import HubStore, device_password
from ladder.tasks import Tasks

DEVICE_KEY = bytes(range(32))
RULES = "domain blocked.test -> block\ndomain home.test -> direct\ndefault -> exit:US\n"


class FakeTLS(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.written, self.aborted, self.paused, self.protocol = bytearray(), False, False, None

    def write(self, data):
        self.written += data

    def abort(self):
        self.aborted = True

    def close(self):
        self.aborted = True

    def is_closing(self):
        return self.aborted

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False

    def set_protocol(self, protocol):
        self.protocol = protocol

    def set_write_buffer_limits(self, high=None, low=None):
        pass

    def get_extra_info(self, name, default=None):
        return default


class FakeStream:
    def __init__(self):
        self.sent, self.reset_with, self.ended = bytearray(), None, False
        self.acknowledged: list[int] = []

    def send(self, data):
        self.sent += data

    def end(self):
        self.ended = True

    def reset(self, code, reason=""):
        self.reset_with = code

    def acknowledge(self, nbytes):
        self.acknowledged.append(nbytes)

    def pending(self):
        return 0


class FakePool:
    """Records each open; `answer` attaches a stream to the last taker as the real pool does."""

    def __init__(self):
        self.opens: list[tuple] = []
        self.done: list = []

    def open(self, host, port, taker, exit="auto"):
        self.opens.append(("tcp", host, port, exit, taker))

    def open_udp(self, taker, exit="auto"):
        self.opens.append(("udp", exit, taker))

    def stream_done(self, taker):
        self.done.append(taker)

    def close_idle(self): ...


class PortOwner:
    def __init__(self):
        self.closed = []

    def stream_opened(self, port, sid, payload, window): ...

    def control_received(self, port, message): ...

    def port_closed(self, port, reason):
        self.closed.append(port)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def store(tmp_path):
    with HubStore(tmp_path) as s:
        s.redeem_invite(s.create_invite("alice"), "m-alice", bytes(32))
        yield s


def run(coro):
    return asyncio.run(coro)


def session_for(store, tmp_path, clock=None, **options):
    device, _ = store.add_device("alice", f"d{len(store.devices())}", DEVICE_KEY, **options)
    session = DeviceSession(device, PortOwner(), tmp_path / "pins", Tasks(devices_module.log), "hub",
                            clock or Clock())
    session.pool = FakePool()  # type: ignore[assignment]
    session.control_received(session.link, control.Directory(()))  # the hub's first message came
    return session


def connect(session, data: bytes) -> tuple[TrojanConnection, FakeTLS]:
    transport, connection = FakeTLS(), TrojanConnection(session)
    connection.connection_made(transport)
    connection.data_received(data)
    return connection, transport


def test_a_connect_goes_through_the_exit_the_rules_name_with_its_bytes_as_early_data(store, tmp_path):
    async def main():
        session = session_for(store, tmp_path, rules=RULES, exit="auto")
        data = request(CONNECT, "site.test", 443)
        connection, transport = connect(session, data[:3])
        assert session.pool.opens == []  # the request comes in pieces
        connection.data_received(data[3:] + b"client hello")
        [(kind, host, port, exit_choice, taker)] = session.pool.opens
        assert (kind, host, port, exit_choice, taker) == ("tcp", "site.test", 443, "US", connection)
        stream = FakeStream()
        connection.attach(stream)
        connection.on_accepted(b"", 0)
        assert bytes(stream.sent) == b"client hello" and transport.written == b""  # Trojan answers nothing
        connection.on_data(b"server hello")
        assert bytes(transport.written) == b"server hello"
        assert session.unsaved == len(b"client hello") + len(b"server hello")

    run(main())


def test_a_blocked_host_and_a_malformed_request_are_cut(store, tmp_path):
    async def main():
        session = session_for(store, tmp_path, rules=RULES)
        _, blocked = connect(session, request(CONNECT, "blocked.test", 80))
        _, unknown_command = connect(session, b"\x02\x01\x7f\x00\x00\x01\x00\x50\r\n")
        _, no_crlf = connect(session, request(CONNECT, "site.test", 80)[:-2] + b"\n\n")
        _, port_zero = connect(session, bytes([UDP_ASSOCIATE, 1]) + bytes(6) + b"\r\n")  # 0.0.0.0:0
        assert (blocked.aborted, unknown_command.aborted, no_crlf.aborted) == (True, True, True)
        assert session.pool.opens == [("udp", "auto", session.pool.opens[0][2])]  # port 0 is fine for UDP
        assert not port_zero.aborted
        assert len(session.connections) == 1

    run(main())


def test_direct_means_the_owner_s_exit_when_the_owner_shares_else_the_device_s(store, tmp_path):
    async def main():
        session = session_for(store, tmp_path, rules=RULES, exit="JP")
        assert session.exit_for("home.test") == "JP"
        session.directory.candidates = lambda choice: ["a record"] if choice == "m-alice" else []  # type: ignore
        assert session.exit_for("home.test") == "m-alice"
        assert session.exit_for("elsewhere.test") == "US"
        assert session.exit_for("blog.bob.ladder") == "auto"  # a service: the pool finds its publisher

    run(main())


def test_udp_associate_opens_a_udp_stream_and_its_packets_pass_as_they_are(store, tmp_path):
    async def main():
        session = session_for(store, tmp_path, exit="DE")
        packets = encode_packet("9.9.9.9", 53, b"query") + encode_packet("1.1.1.1", 53, b"other")
        connection, transport = connect(session, request(UDP_ASSOCIATE, "0.0.0.0", 0) + packets)
        assert session.pool.opens == [("udp", "DE", connection)]
        stream = FakeStream()
        connection.attach(stream)
        assert bytes(stream.sent) == packets
        connection.on_data(encode_packet("9.9.9.9", 53, b"answer"))
        assert bytes(transport.written) == encode_packet("9.9.9.9", 53, b"answer")

    run(main())


def test_connections_wait_for_the_hub_s_directory(store, tmp_path):
    async def main():
        device, _ = store.add_device("alice", "early", DEVICE_KEY)
        session = DeviceSession(device, PortOwner(), tmp_path / "pins", Tasks(devices_module.log), "hub")
        session.pool = FakePool()  # type: ignore[assignment]
        connect(session, request(CONNECT, "site.test", 443))
        assert session.pool.opens == []
        session.control_received(session.link, control.Directory(()))
        assert [open_[:4] for open_ in session.pool.opens] == [("tcp", "site.test", 443, "auto")]

    run(main())


def test_a_daily_cap_refuses_new_connections_and_a_rate_says_how_long_to_wait(store, tmp_path):
    async def main():
        session = session_for(store, tmp_path, daily_cap=1000, rate=1000)
        assert session.carried(400) == 0.0  # within one second's burst
        assert session.carried(1100) == pytest.approx(0.5, abs=0.01)
        _, transport = connect(session, request(CONNECT, "site.test", 443))
        assert transport.aborted and session.pool.opens == []

    run(main())


def test_a_session_is_idle_a_minute_after_its_last_connection(store, tmp_path):
    async def main():
        clock = Clock()
        session = session_for(store, tmp_path, clock=clock)
        connection, _ = connect(session, request(CONNECT, "site.test", 443))
        clock.now += DEVICE_IDLE * 2
        assert not session.idle()
        connection.cut()
        assert not session.idle()
        clock.now += DEVICE_IDLE
        assert session.idle()

    run(main())


def test_devices_admit_only_a_usable_secret_and_revocation_cuts_every_connection(store, tmp_path):
    async def main():
        _, token = store.add_device("alice", "phone", DEVICE_KEY)
        digits = hashlib.sha224(device_password(DEVICE_KEY, token).encode()).hexdigest().encode()
        sessions = []
        devices = Devices(store, DEVICE_KEY, tmp_path / "pins", PortOwner(), sessions.append,
                          Tasks(devices_module.log), "hub")
        assert not devices.admit(b"0" * 56, FakeTLS(), b"")
        first, second = FakeTLS(), FakeTLS()
        assert devices.admit(digits, first, request(CONNECT, "site.test", 443))
        assert devices.admit(digits, second, b"")
        assert len(sessions) == 1 and isinstance(first.protocol, TrojanConnection)
        store.revoke_device("alice/phone")
        devices.cut(store.unusable_device_ids())
        assert first.aborted and second.aborted and devices.sessions == {}
        assert not devices.admit(digits, FakeTLS(), b"")

    run(main())


def test_the_target_s_end_closes_the_device_s_connection_after_what_was_written(store, tmp_path):
    async def main():
        session = session_for(store, tmp_path)
        connection, transport = connect(session, request(CONNECT, "site.test", 80) + b"GET / HTTP/1.0\r\n")
        stream = FakeStream()
        connection.attach(stream)
        connection.on_data(b"HTTP/1.0 200 OK\r\n\r\nbye")
        connection.on_end()
        assert bytes(transport.written).endswith(b"bye") and transport.aborted  # closed (FakeTLS: either)
        assert stream.ended and session.connections == set() and session.pool.done == [connection]

    run(main())


async def unread_download(store, tmp_path, session: DeviceSession):
    """A device's TLS connection through the hub's door to `session`, its download asked for and never
    read, as in the device scenario of benchmarks/abuse.py: (its connection at the hub, the device's
    writer, the door's server)."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    generate_self_signed(cert, key, "127.0.0.1", ["127.0.0.1"])
    _, token = store.add_device("alice", "phone", DEVICE_KEY)
    digits = hashlib.sha224(device_password(DEVICE_KEY, token).encode()).hexdigest().encode()
    devices = Devices(store, DEVICE_KEY, tmp_path / "pins", PortOwner(), lambda _: None,
                      Tasks(devices_module.log), "hub")
    device = store.device_by_door(DEVICE_KEY, digits)
    assert device is not None
    devices.sessions[device.id] = session

    class Door(asyncio.Protocol):  # what the Doorway does with a whole password line in the first read
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            assert devices.admit(data[:56], self.transport, data[58:])

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Door, "127.0.0.1", 0, ssl=server_context(cert, key))
    client_context = ssl.create_default_context()
    client_context.check_hostname, client_context.verify_mode = False, ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1],
                                              ssl=client_context, limit=1)
    writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.write(digits + b"\r\n" + request(CONNECT, "site.test", 80) + b"GET /big HTTP/1.1\r\n\r\n")
    writer.transport.pause_reading()  # never read
    for _ in range(500):  # until the hub has taken it (at most 5 s)
        if session.pool.opens:
            break
        await asyncio.sleep(0.01)
    [(_, _, _, _, connection)] = session.pool.opens
    session.pool.opens.clear()
    return connection, writer, server


def test_a_device_s_tls_connection_that_went_away_is_freed_without_the_cyclic_gc(store, tmp_path):
    """A download the device never reads, then the device gone. uvloop's SSLProtocol keeps the bound
    methods of a buffered protocol after the connection is lost; if the connection also kept its
    transport, the pair (and every byte the device left unread in it) would live until the cyclic GC
    ran, which it is not allowed to here."""

    async def main() -> weakref.ref:
        session = session_for(store, tmp_path)  # with a pool that records opens
        connection, writer, server = await unread_download(store, tmp_path, session)
        connection.attach(FakeStream())
        connection.on_accepted(b"", 0)
        for _ in range(16):  # 4 MiB towards a device that reads nothing: most of it stays at the hub
            connection.on_data(bytes(256 * 1024))
        gone = weakref.ref(connection)
        del connection
        writer.transport.abort()  # the device's app goes away (a reset: it left bytes unread)
        for _ in range(500):  # until the hub has heard it (at most 5 s)
            if not session.connections:
                break
            await asyncio.sleep(0.01)
        assert not session.connections, "the hub never heard that the device's connection was lost"
        for _ in range(3):  # connection_lost is called soon after the transport's own
            await asyncio.sleep(0)
        session.pool.done.clear()  # the recording pool's reference
        server.close()
        return gone

    gc.disable()
    try:
        gone = run_async(main())
        assert gone() is None, ("a device's connection outlived its TLS connection: only the cyclic GC "
                                "would free it, with what the device left unread")
    finally:
        gc.enable()


def test_a_device_that_stops_reading_soon_stops_taking_what_the_hub_writes(store, tmp_path):
    """What the kernel takes towards a device at once counts as read: the stream's window grows for it,
    and the kernel holds it. With TCP_NOTSENT_LOWAT the socket stops taking bytes DEVICE_UNSENT past
    what is on the wire, so the TLS transport pauses (at DEVICE_WRITE_BUFFER) and the rest is held
    back as credit; left to autotune, the kernel took 1.25 MiB here, and 4 MiB windows of 500
    downloads put the whole machine into TCP memory pressure (docs/RELIABILITY.md, bug 11)."""

    async def main() -> tuple[int, int]:
        session = session_for(store, tmp_path)
        connection, writer, server = await unread_download(store, tmp_path, session)
        stream = FakeStream()
        connection.attach(stream)
        connection.on_accepted(b"", 0)
        for _ in range(64):  # 4 MiB in 64 KiB DATA, a loop turn apart, towards a device that reads nothing
            connection.on_data(bytes(64 * 1024))
            await asyncio.sleep(0)
        held = connection._unacked
        writer.transport.abort()
        server.close()
        return sum(stream.acknowledged), held

    taken, held = run_async(main())
    assert 0 < taken <= 512 * 1024, f"the socket took {taken} bytes towards a device that reads nothing"
    assert taken + held == 4 * 1024 * 1024  # the rest waits as credit not given back
