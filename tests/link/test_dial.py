"""The member's dial over loopback TLS against a scripted hub: welcome, refusal, silence, a wrong key.

The scripted hub reads the hello as the Doorway would, feeds what follows it
to a hub-side Mux and answers as each test says: frames (a welcome and what
follows it in the same write), a web server's 400, a close, or nothing.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.link.client import HubIdentityMismatch, LinkRefused, dial
from ladder.link.connection import Endpoint, Link
from ladder.link.tls import generate_self_signed, server_context
from ladder.protocol import control
from ladder.protocol import events as ev
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.hello import hello_size, parse_hello
from ladder.protocol.mux import Mux

WELCOME = control.Welcome("test", "alice", "a" * 24, "127.0.0.1")
REFUSAL = b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nConnection: close\r\n\r\n"


class ScriptedHub(asyncio.Protocol):
    """The hub's side of one connection: the hello, then `answer(self)` once it is whole."""

    def __init__(self, answer: Callable[[ScriptedHub], None], seen: list[ScriptedHub]):
        self.answer = answer
        self.mux = Mux(client=False, now=0.0)
        self.buffer = bytearray()
        self.hello = None
        self.events: list = []
        self.transport: asyncio.Transport | None = None
        seen.append(self)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.hello is not None:
            self.events += self.mux.receive_data(data, 0.0)
            return
        self.buffer += data
        size = hello_size(self.buffer)
        if size is None or len(self.buffer) < size:
            return
        self.hello = parse_hello(bytes(self.buffer[:size]))
        self.events += self.mux.receive_data(bytes(self.buffer[size:]), 0.0)
        self.answer(self)

    def send(self) -> None:
        self.transport.write(self.mux.data_to_send())


def welcome_then(*more: control.ControlMessage, stream: bytes | None = None) -> Callable[[ScriptedHub], None]:
    """Answer with the welcome and, in the same write, `more` control messages and maybe a stream."""
    def answer(hub: ScriptedHub) -> None:
        for message in (WELCOME, *more):
            hub.mux.send_control(control.encode(message))
        if stream is not None:
            hub.mux.open_stream(stream)
        hub.send()
    return answer


class Owner:
    def __init__(self) -> None:
        self.controls: list[control.ControlMessage] = []
        self.streams: list[bytes] = []
        self.closed: list[str] = []

    def stream_opened(self, link: Link, stream_id: int, payload: bytes, window: int) -> None:
        self.streams.append(payload)
        link.accept(stream_id, Endpoint())

    def control_received(self, link: Link, message: control.ControlMessage) -> None:
        self.controls.append(message)

    def link_closed(self, link: Link, reason: str) -> None:
        self.closed.append(reason)


@pytest.fixture
def material(tmp_path):
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    return cert, key, generate_self_signed(cert, key, "127.0.0.1", ["127.0.0.1"])


def run_dial(material, answer, *, owner=None, fingerprint=None, timeout=5.0, after=None):
    """Dial a scripted hub; return (what the dial returned or raised, the hub's connections)."""
    cert, key, pinned = material
    seen: list[ScriptedHub] = []

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: ScriptedHub(answer, seen), "127.0.0.1", 0,
                                          ssl=server_context(cert, key))
        port = server.sockets[0].getsockname()[1]
        try:
            result = await dial(("127.0.0.1", port), fingerprint or pinned, Ed25519PrivateKey.generate(),
                                owner, timeout=timeout)
        except Exception as exc:  # the test looks at what the dial raised
            result = exc
        if after is not None:
            await after(result, seen)
        if isinstance(result, tuple):
            result[0].close()
        await asyncio.sleep(0.05)
        gc.collect()  # a failed future nobody awaited says so when it is collected
        await asyncio.sleep(0)
        server.close()
        return result

    return asyncio.run(main()), seen


def no_lost_exceptions(caplog) -> None:
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def test_the_dial_returns_the_welcome_and_hands_everything_after_it_to_the_owner(material, caplog):
    owner = Owner()
    exits = control.Directory(())
    (_, welcome), [hub] = run_dial(material, welcome_then(exits, stream=b"channel"), owner=owner)
    assert welcome == WELCOME and hub.hello is not None and hub.hello.token == b""
    # What came in the welcome's read, after it, is the owner's: a control message and a stream.
    assert owner.controls == [exits] and owner.streams == [b"channel"]
    no_lost_exceptions(caplog)


def test_the_hello_carries_a_ping_the_hub_reads_as_the_link_s_first_frame(material):
    hub_events = []

    async def measured(result, seen):
        for _ in range(100):
            if result[0].rtt is not None:
                break
            await asyncio.sleep(0.01)
        hub_events.extend(seen[0].events)

    (link, _), _ = run_dial(material, welcome_then(), after=measured)
    assert hub_events == []  # a PING gives no event, and it was no protocol error either
    assert link.rtt is not None  # its ACK went out with the welcome


def test_a_web_server_s_answer_is_a_refusal(material, caplog):
    def refuse(hub: ScriptedHub) -> None:
        hub.transport.write(REFUSAL)

    refused, _ = run_dial(material, refuse, owner=Owner())
    assert isinstance(refused, LinkRefused) and str(refused) == "the hub did not accept this member's key"
    assert not [r for r in caplog.records if "protocol error" in r.getMessage()]  # not taken for frames
    no_lost_exceptions(caplog)


def test_a_hub_that_says_nothing_times_the_dial_out(material, caplog):
    owner = Owner()
    silent, [_] = run_dial(material, lambda hub: None, owner=owner, timeout=0.2)
    assert isinstance(silent, asyncio.TimeoutError)
    assert owner.closed == []  # the owner never had the link
    no_lost_exceptions(caplog)


def test_a_hub_that_hangs_up_before_its_welcome_is_a_connection_error(material, caplog):
    closed, _ = run_dial(material, lambda hub: hub.transport.close())
    assert isinstance(closed, ConnectionError) and str(closed).startswith("the hub closed the connection (")
    no_lost_exceptions(caplog)


def test_a_malformed_first_message_is_the_hub_s_protocol_error(material, caplog):
    def answer(hub: ScriptedHub) -> None:
        hub.mux.send_control(b'{"type":"joined","hub":"test","name":"alice","id":5}')
        hub.send()

    owner = Owner()
    malformed, _ = run_dial(material, answer, owner=owner)
    assert isinstance(malformed, RemoteProtocolError) and "joined.id is not a string" in str(malformed)
    assert owner.closed == [] and owner.controls == []  # the owner never had the link
    (logged,) = [r.getMessage() for r in caplog.records if "protocol error" in r.getMessage()]
    assert logged.endswith(f": protocol error from peer: {malformed}")
    no_lost_exceptions(caplog)


def test_a_hub_with_another_key_hears_no_hello(material, caplog):
    mismatch, seen = run_dial(material, welcome_then(), fingerprint="sha256:someone-else")
    assert isinstance(mismatch, HubIdentityMismatch) and "not the pinned sha256:someone-else" in str(mismatch)
    assert all(hub.hello is None and not hub.buffer for hub in seen)
    no_lost_exceptions(caplog)


def test_a_stream_opened_before_the_welcome_is_refused_and_the_welcome_still_counts(material):
    refusals = []

    def answer(hub: ScriptedHub) -> None:
        hub.mux.open_stream(b"too early")
        welcome_then()(hub)

    async def read_refusal(result, seen):
        for _ in range(100):
            refusals.extend(e for e in seen[0].events if isinstance(e, ev.StreamRefused))
            if refusals:
                return
            await asyncio.sleep(0.01)

    owner = Owner()
    (_, welcome), _ = run_dial(material, answer, owner=owner, after=read_refusal)
    assert welcome == WELCOME and owner.streams == []
    assert [(r.code, r.reason) for r in refusals] == [(ErrorCode.FORBIDDEN, "no streams before the welcome")]
