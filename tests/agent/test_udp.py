"""UDP associations in one process: a user's pool, an exit behind test_pool's switch, UDP echo servers.

The exit's side is the real `Sharer` and `ExitAssociation`; the user's side
is a bare taker that sends and reads Trojan UDP packets, as the hub's
device port does. The SOCKS5 side runs the real proxy front on loopback
with a `SocksAssociation` whose stream is a recording fake.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import pytest
from test_pool import ANY_PORT, Member, link_up

from ladder.agent import sharer, udp
from ladder.agent.front import ProxyConnection
from ladder.agent.sharing import MEMBERS_ONLY, SharePolicy
from ladder.config import ConfigError
from ladder.link.connection import Endpoint
from ladder.protocol.errors import ErrorCode
from ladder.protocol.trojan import Packet, PacketDecoder, encode_packet
from ladder.tasks import Tasks

WAIT = 5.0  # nothing within this long counts as never


class UserEnd(Endpoint):
    """The user's end of an association: sends packets, keeps those that come back, and how it ended."""

    def __init__(self, acknowledge: bool = True):
        self.stream = None
        self.done = False
        self.exit_id: str | None = None
        self.acknowledge = acknowledge  # False: never give credit back, so the exit's window closes
        self.packets: list[Packet] = []
        self.received = 0
        self.accepted = asyncio.Event()
        self.over: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self._decoder = PacketDecoder()

    def attach(self, stream) -> None:
        self.stream = stream

    def answered(self, stream) -> None:
        self.stream = stream

    def on_accepted(self, payload: bytes, window: int) -> None:
        self.accepted.set()

    def on_refused(self, code: int, reason: str) -> None:
        if not self.over.done():
            self.over.set_result((code, reason))

    on_reset = on_refused

    def on_data(self, data: bytes) -> None:
        self.received += len(data)
        self.packets += self._decoder.feed(data)
        if self.acknowledge:
            self.stream.acknowledge(len(data))

    def send(self, host: str, port: int, payload: bytes) -> None:
        self.stream.send(encode_packet(host, port, payload))


class Echo(asyncio.DatagramProtocol):
    """A UDP server that answers every datagram with itself, and remembers what it heard."""

    def __init__(self):
        self.heard: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.heard.append(data)
        self.transport.sendto(data, addr)


async def udp_echo() -> tuple[Echo, int]:
    loop = asyncio.get_running_loop()
    transport, echo = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    return echo, transport.get_extra_info("sockname")[1]


async def until(predicate, what: str) -> None:
    for _ in range(int(WAIT / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {what} within {WAIT} s")


def run(body) -> None:
    async def main():
        tasks = Tasks(logging.getLogger("test.udp"))
        try:
            await asyncio.wait_for(body(tasks), 30)
        finally:
            await tasks.stop()

    asyncio.run(main())


async def associate(tmp_path, tasks, policy: SharePolicy, *, acknowledge: bool = True,
                    allow_private: bool = True) -> tuple[UserEnd, Member, Member]:
    user = Member("user", tmp_path, tasks)
    exit_ = Member("exit", tmp_path, tasks).share(policy)
    exit_.sharer.guard = policy.guard(allow_private)
    link_up(user, [exit_])
    end = UserEnd(acknowledge)
    user.pool.open_udp(end)
    await asyncio.wait_for(end.accepted.wait(), WAIT)
    return end, user, exit_


@pytest.fixture
def exit_associations(monkeypatch) -> list[udp.ExitAssociation]:
    """Every association the exit makes, in order."""
    made = []

    class Recorded(udp.ExitAssociation):
        def __init__(self, *args):
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(sharer, "ExitAssociation", Recorded)
    return made


def test_datagrams_go_through_the_exit_and_answers_name_their_source(tmp_path):
    async def body(tasks):
        _echo, port = await udp_echo()
        end, user, exit_ = await associate(tmp_path, tasks, SharePolicy(udp_ports=((port, port),)))
        end.send("127.0.0.1", port, b"query one")
        end.send("localhost", port, b"query by name")  # resolved at the exit
        await until(lambda: len(end.packets) == 2, "two answers")
        assert {(p.host, p.port, p.payload) for p in end.packets} == {
            ("127.0.0.1", port, b"query one"), ("127.0.0.1", port, b"query by name")}
        usage = exit_.sharer.sharing.usage["users"][user.id]
        assert usage >= 2 * len(b"query one" + b"query by name"), "metered both ways"
        assert exit_.sharer.sharing.users[user.id].streams == 1, "the association holds a slot"
    run(body)


def test_each_datagram_passes_the_guard_and_refusals_are_logged_once(tmp_path, exit_associations, caplog):
    caplog.set_level(logging.INFO, "ladder.agent.udp")

    async def body(tasks):
        _allowed, allowed_port = await udp_echo()
        other, other_port = await udp_echo()
        only = SharePolicy(udp_ports=((allowed_port, allowed_port),))
        end, _, _ = await associate(tmp_path, tasks, only)
        for i in range(3):
            end.send("127.0.0.1", other_port, b"outside udp_ports %d" % i)
        end.send("127.0.0.1", allowed_port, b"inside")
        await until(lambda: end.packets, "the allowed answer")
        await asyncio.sleep(0.1)
        assert [p.payload for p in end.packets] == [b"inside"] and other.heard == []
        [association] = exit_associations
        assert association.refused == 3
        refusals = [r.message for r in caplog.records if "refused" in r.message]
        assert len(refusals) == 1 and f"allows UDP ports {allowed_port} only" in refusals[0], refusals
        assert str(other_port) not in refusals[0], "the reason names the rule, never the target"
    run(body)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "::ffff:127.0.0.1", "169.254.169.254",
                                  "10.1.2.3"])
def test_without_allow_private_no_datagram_reaches_a_local_address(tmp_path, exit_associations, host):
    async def body(tasks):
        echo, port = await udp_echo()
        end, _, _ = await associate(tmp_path, tasks, SharePolicy(udp_ports=((port, port),)),
                                        allow_private=False)
        end.send(host, port, b"let me in")
        [association] = exit_associations
        await until(lambda: association.refused, "the refusal")
        assert echo.heard == [] and end.packets == [] and not association.done
    run(body)


def test_an_idle_association_closes_and_gives_its_slot_back(tmp_path, monkeypatch):
    monkeypatch.setattr(udp, "UDP_IDLE", 0.3)

    async def body(tasks):
        _echo, port = await udp_echo()
        end, user, exit_ = await associate(tmp_path, tasks, SharePolicy(udp_ports=((port, port),)))
        for i in range(6):  # busy for twice UDP_IDLE: it stays
            end.send("127.0.0.1", port, b"%d" % i)
            await asyncio.sleep(0.1)
        assert not end.over.done() and len(end.packets) == 6
        code, reason = await asyncio.wait_for(end.over, WAIT)
        assert code == ErrorCode.CANCEL and "idle for 0.3 s" in reason
        assert exit_.sharer.sharing.users[user.id].streams == 0
    run(body)


def test_what_waits_for_the_user_s_credit_is_bounded_and_the_rest_is_dropped(tmp_path, exit_associations):
    async def body(tasks):
        echo, port = await udp_echo()
        end, _, _ = await associate(tmp_path, tasks, SharePolicy(udp_ports=((port, port),)),
                                        acknowledge=False)
        [association] = exit_associations
        payload = bytes(60_000)
        for _ in range(120):  # 7.2 MB of answers towards a user who gives no credit back
            end.send("127.0.0.1", port, payload)
            await asyncio.sleep(0.002)
        await until(lambda: association.dropped > 0, "dropped answers")
        stream = association.stream
        assert stream.pending() <= udp.UDP_QUEUE + len(encode_packet("127.0.0.1", port, payload))
        assert len(echo.heard) > 40 and end.received < len(echo.heard) * len(payload)
    run(body)


def test_a_malformed_packet_resets_the_stream_with_the_protocol_error(tmp_path, caplog):
    async def body(tasks):
        _echo, port = await udp_echo()
        end, user, exit_ = await associate(tmp_path, tasks, SharePolicy(udp_ports=((port, port),)))
        end.stream.send(b"\x09 is no address type")
        code, reason = await asyncio.wait_for(end.over, WAIT)
        assert code == ErrorCode.BAD_REQUEST and "malformed" in reason
        assert exit_.sharer.sharing.users[user.id].streams == 0
    run(body)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_associations_take_stream_slots_and_follow_the_member_policy(tmp_path):
    async def body(tasks):
        _echo, port = await udp_echo()
        first, user, _ = await associate(tmp_path, tasks,
                                             SharePolicy(udp_ports=((port, port),), user_streams=1))
        second = UserEnd()
        user.pool.open_udp(second)
        second.send("127.0.0.1", port, b"early")  # waits with its stream
        await asyncio.sleep(0.2)
        assert not second.accepted.is_set(), "the one slot is taken"
        first.stream.reset(ErrorCode.CANCEL, "done")
        await asyncio.wait_for(second.accepted.wait(), WAIT)
        await until(lambda: second.packets, "the early datagram's answer")

        only_alice = Member("strict", tmp_path, tasks).share(SharePolicy(members=frozenset({"alice"}),
                                                                         ports=ANY_PORT))
        link_up(user, [only_alice])
        refused = UserEnd()
        user.pool.open_udp(refused)
        assert await asyncio.wait_for(refused.over, WAIT) == (MEMBERS_ONLY.code, MEMBERS_ONLY.reason)
    run(body)


def test_udp_ports_default_to_dns_and_quic_and_are_named_in_errors():
    assert SharePolicy().udp_ports == SharePolicy.from_table({}).udp_ports == ((53, 53), (443, 443))
    assert SharePolicy.from_table({"udp_ports": "53,3478-3479"}).udp_ports == ((53, 53), (3478, 3479))
    assert SharePolicy.from_table({"udp_ports": "53"}).guard(False).port_refusal(443, udp=True)
    with pytest.raises(ConfigError, match="udp_ports: '70000' is out of range"):
        SharePolicy.from_table({"udp_ports": "70000"})


# ------------------------------------------------------------ SOCKS5 front


class FakeStream:
    """The association's stream in a front test: records packets, can be made full."""

    def __init__(self):
        self.packets: list[Packet] = []
        self.decoder = PacketDecoder()
        self.full = False
        self.reset_with: str | None = None

    def send(self, data) -> None:
        self.packets += self.decoder.feed(bytes(data))

    def pending(self) -> int:
        return udp.UDP_QUEUE + 1 if self.full else 0

    def acknowledge(self, nbytes: int) -> None:
        pass

    def reset(self, code: int, reason: str = "") -> None:
        self.reset_with = reason


class Front:
    """A proxy front on loopback whose associations open `FakeStream`s, or are refused with `refuse`."""

    def __init__(self, refuse: ErrorCode | None = None):
        self.refuse = refuse
        self.streams: list[FakeStream] = []
        self.associations: list[udp.SocksAssociation] = []

    def associate(self, control, here: str, client: str) -> udp.SocksAssociation:
        association = udp.SocksAssociation(control, here, client, self._open, lambda taker: None,
                                           lambda host: host.endswith("blocked.example"))
        self.associations.append(association)
        return association

    def _open(self, taker) -> None:
        if self.refuse is not None:
            return taker.on_refused(self.refuse, "refused by the test")
        self.streams.append(FakeStream())
        taker.attach(self.streams[-1])

    async def start(self):
        server = await asyncio.get_running_loop().create_server(
            lambda: ProxyConnection(pytest.fail, associate=self.associate), "127.0.0.1", 0)
        return server, server.sockets[0].getsockname()[1]


SOCKS_ASSOCIATE = b"\x05\x01\x00" + b"\x05\x03\x00\x01" + bytes(6)


async def socks_associate(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(SOCKS_ASSOCIATE)
    reply = await asyncio.wait_for(reader.readexactly(2 + 10), WAIT)
    return reader, writer, reply[2:]


def socks_datagram(host: str, port: int, data: bytes, frag: int = 0) -> bytes:
    return b"\0\0" + bytes([frag, 1]) + socket.inet_aton(host) + struct.pack("!H", port) + data


def test_socks5_udp_associate_relays_the_client_s_datagrams_and_the_answers():
    async def body():
        front = Front()
        server, port = await front.start()
        _reader, writer, reply = await socks_associate(port)
        assert reply[:4] == b"\x05\x00\x00\x01" and reply[4:8] == socket.inet_aton("127.0.0.1")
        relay = ("127.0.0.1", struct.unpack("!H", reply[8:])[0])
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind(("127.0.0.1", 0))
        client.settimeout(WAIT)
        client.sendto(socks_datagram("192.0.2.7", 53, b"dns query"), relay)
        client.sendto(socks_datagram("192.0.2.7", 53, b"a fragment", frag=1), relay)
        client.sendto(b"\0\0\0\x03\x0fblocked.example\x00\x35no", relay)
        client.sendto(socks_datagram("192.0.2.7", 53, b"last"), relay)
        [stream] = front.streams
        await until(lambda: len(stream.packets) == 2, "the two datagrams to pass")
        assert [(p.host, p.port, p.payload) for p in stream.packets] == [
            ("192.0.2.7", 53, b"dns query"), ("192.0.2.7", 53, b"last")], "no fragment, nothing blocked"
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.sendto(socks_datagram("192.0.2.7", 53, b"not the client"), relay)
        stream.full = True
        client.sendto(socks_datagram("192.0.2.7", 53, b"window closed"), relay)
        await asyncio.sleep(0.1)
        assert len(stream.packets) == 2, "only the client's datagrams, and none past the bound"

        association = front.associations[0]
        association.on_data(encode_packet("192.0.2.7", 53, b"dns answer"))
        answer = client.recv(2048)  # sent already: on_data wrote it
        assert answer == socks_datagram("192.0.2.7", 53, b"dns answer")

        writer.close()
        await until(lambda: association.done, "the association to end with its connection")
        assert stream.reset_with and association._socket.closed
        client.close()
        stranger.close()
        server.close()
    asyncio.run(body())


def test_an_associate_without_a_hub_gets_a_socks_failure_not_a_hang():
    async def body():
        front = Front(refuse=ErrorCode.NO_ROUTE)
        server, port = await front.start()
        reader, writer, reply = await socks_associate(port)
        assert reply[:2] == b"\x05\x03", "network unreachable"
        assert await asyncio.wait_for(reader.read(), WAIT) == b"", "and the connection closes"
        await until(lambda: front.associations[0].done, "the association to end")
        writer.close()
        server.close()
    asyncio.run(body())
