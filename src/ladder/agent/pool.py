"""Channels to other members and the connections in them: what any role opens or answers through its hub link.

A member keeps one channel (link/channel.py) to each member it uses, an
exit or a publisher: a sealed stream of its hub link carrying a nested
link whose streams are its connections. `ChannelPool` holds them. It
opens a channel on first use and closes one that carried no stream for
CHANNEL_IDLE seconds (`close_idle`, which its owner calls every half of
that): the hub's count of members on an exit is then of members using it
lately, and opening again costs nothing extra, as a connection's first
message carries the handshake.

Each connection is opened by an `_Opening`, which moves on to the next
candidate exit when one is gone, busy, or refuses this member by policy,
sending again what the client sent meanwhile. `open` serves a taker that
has its own socket (the proxy front's connection; the hub's device ports
next); `connect` gives asyncio streams to code that has none (tests, the
crawler). Both take a `.ladder` name to its publisher the same way.

The pool also answers the channels other members open to this one, at
most CHANNELS_PER_MEMBER each, and hands every stream in them to the
role's `serve`; `answer_when_connected` accepts such a stream once the
role has connected it (the exit to a target, a service to its port).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.link.channel import STREAM_WINDOWS, Channel, StreamRef
from ladder.link.connection import Endpoint, Link
from ladder.protocol.channel import CHANNEL_REQUEST, Initiator, Responder
from ladder.protocol.control import ControlMessage, Receipt
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.messages import UDP_REQUEST, decode_route, encode_service_request, encode_target
from ladder.protocol.noise import public_key_of
from ladder.protocol.records import ExitRecord, ServiceRecord, sign_access
from ladder.tasks import Tasks

from .credits import Receipts
from .directory import Directory
from .exit import Refusal, TargetRefused
from .names import ServiceListing, ServiceUnknown, is_service_host
from .relay import Relay
from .sharing import MEMBERS_ONLY
from .stream import ChannelTransport

log = logging.getLogger(__name__)
OPEN_TIMEOUT = 30.0  # the exit gives up on a target after 10 s; this covers a silent hub
RETRYABLE = {ErrorCode.NO_ROUTE, ErrorCode.BUSY, ErrorCode.LINK_LOST, ErrorCode.TARGET_TIMEOUT}
# Channels one member may hold to this one at once: it needs one, a few
# while its link or ours comes back; more would let it take the streams of
# our hub link (and the memory of their channels) from the others.
CHANNELS_PER_MEMBER = 8
CHANNEL_IDLE = 30.0  # a channel without streams this long is closed (it costs nothing to open again)
STREAM_BUFFER = 64 * 1024  # `connect`'s reader limit (asyncio's default); past twice this, credit waits

# A stream in another member's channel to us: (nested link, stream id, its OPEN payload,
# the opener's member id, the opener's static Noise key from the handshake).
Serve = Callable[[Link, int, bytes, str, bytes], None]


class Taker(Protocol):
    """What a connection is opened for: the proxy front's client connection, or `connect`'s transport.

    Until the answer, `stream` is the opening stream (early data goes
    there); `answered` gives it the accepted one, and from then on it is
    the stream's Endpoint. `exit_id` is set while an exit carries it.
    """

    stream: Any
    done: bool
    exit_id: str | None

    def attach(self, stream: Any) -> None: ...

    def answered(self, stream: StreamRef) -> None: ...

    def on_accepted(self, payload: bytes, window: int) -> None: ...

    def on_refused(self, code: int, reason: str) -> None: ...


class ChannelPool:
    """One member's channels through its hub link: to the exits and publishers it uses, and from others."""

    def __init__(self, key: Ed25519PrivateKey, noise_private: bytes, directory: Directory,
                 listing: ServiceListing, tasks: Tasks, serve: Serve, receipts: Receipts | None = None,
                 windows: tuple[int, int] = STREAM_WINDOWS):
        """`key` signs proofs of membership and `noise_private` runs the channels' handshakes.

        Exits come from `directory`, publishers from `listing`; `tasks`
        owns the waits for connections being answered; `serve` takes the
        streams of channels others open to us; `receipts` signs and checks
        the channels' receipts (agent/credits.py); `windows` are what our
        channels' streams start with and may grow to (link/channel.py).
        """
        self.id = member_id(public_bytes(key))
        self.key = key
        self.noise_private = noise_private
        self.noise_public = public_key_of(noise_private)
        self.directory = directory
        self.listing = listing
        self.tasks = tasks
        self.serve = serve
        self.receipts = receipts or Receipts(key)
        self.windows = windows
        self._link: Link | None = None
        self.channels: dict[tuple[str, bytes], Channel] = {}  # (member id, Noise key) → our channel to it
        self.visiting: dict[str, int] = {}  # member id → channels it holds to us
        self._idle: set[Channel] = set()  # without streams at the last look
        self._proofs: dict[tuple[str, str], bytes] = {}  # (publisher id, service) → our proof of membership
        self.handshakes: dict[str, float] = {}  # member id → seconds our last channel's Noise handshake took

    @property
    def link(self) -> Link | None:
        """The hub link; its owner sets it on each reconnect."""
        return self._link

    @link.setter
    def link(self, link: Link | None) -> None:
        self._link = self.receipts.link = link

    # ---------------------------------------------------------- opening

    def open(self, host: str, port: int, taker: Taker, exit: str = "auto") -> None:
        """Open a connection to (host, port) for `taker`: a `.ladder` name's publisher, else through an exit.

        `exit` is auto, a country code, a member name or an id. The answer
        comes as `taker.on_accepted`, or `taker.on_refused` with the reason.
        """
        if self.link is None:
            return taker.on_refused(ErrorCode.NO_ROUTE, "not connected to the hub")
        if is_service_host(host):  # a network-only service: never DNS, never an exit
            return self._open_service(host, taker)
        try:
            request = encode_target(host, port)
        except ValueError as exc:
            return taker.on_refused(ErrorCode.BAD_REQUEST, str(exc))
        candidates = [record for _, record in self.directory.candidates(exit)]
        if not candidates:
            return taker.on_refused(ErrorCode.NO_ROUTE, self.directory.why_none(exit))
        _Opening(self, request, taker, candidates).try_next()

    def open_udp(self, taker: Taker, exit: str = "auto") -> None:
        """Open a UDP association through an exit for `taker`, chosen as `open` chooses one.

        The stream carries datagrams both ways in the Trojan packet form
        (protocol/trojan.py), each naming its own target; the exit's guard
        checks each one.
        """
        if self.link is None:
            return taker.on_refused(ErrorCode.NO_ROUTE, "not connected to the hub")
        candidates = [record for _, record in self.directory.candidates(exit)]
        if not candidates:
            return taker.on_refused(ErrorCode.NO_ROUTE, self.directory.why_none(exit))
        _Opening(self, bytes([UDP_REQUEST]), taker, candidates).try_next()

    def _open_service(self, host: str, taker: Taker) -> None:
        """A channel to the publisher of `host` (any port: a service has one)."""
        try:
            entry, record = self.listing.find(host)
        except ServiceUnknown as exc:
            return taker.on_refused(exc.code, str(exc))
        if not entry.online:
            return taker.on_refused(ErrorCode.NO_ROUTE, "the service's publisher is offline")
        _Opening(self, encode_service_request(record.name, self._proof(record)), taker, [record]).try_next()

    def _proof(self, record: ServiceRecord) -> bytes:
        """That our channel key is this member's, for the publisher's access list.

        Signed once per service.
        """
        proof = self._proofs.get((record.id, record.name))
        if proof is None:
            proof = self._proofs[(record.id, record.name)] = sign_access(
                self.key, self.noise_public, record.id, record.name)
        return proof

    async def connect(self, host: str, port: int, exit: str = "auto"
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to (host, port) as asyncio streams, once the far end accepted it.

        Takes what `open` takes; raises exit.TargetRefused with the code and
        the reason when it is refused.
        """
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(STREAM_BUFFER, loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport = ChannelTransport(protocol, (host, port), self.stream_done)
        self.open(host, port, transport, exit)
        try:
            await transport.opened
        except asyncio.CancelledError:
            transport.abandon()
            raise
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    def stream_done(self, taker: Taker) -> None:
        """A connection `open` served is over: the exit that carried it has one stream of ours less."""
        if taker.exit_id is not None:
            self.directory.opened(taker.exit_id, -1)
            taker.exit_id = None

    def channel_to(self, record: ExitRecord | ServiceRecord) -> Channel | None:
        """The channel to the member of `record` (an exit or a publisher): open, or opened now."""
        key = (record.id, record.noise_key)
        channel = self.channels.get(key)
        if channel is not None:
            return channel
        link = self.link
        if link is None or link.closed:
            return None
        initiator = Initiator(self.noise_private, record.noise_key, self.id, record.id)
        channel = self.channels[key] = Channel.dial(link, initiator, record.id, f"channel to {record.id}",
                                                                  self.windows)
        dialled = link.loop.time()

        def ready() -> None:
            self.handshakes[record.id] = link.loop.time() - dialled  # one round trip through the hub
            self.directory.pin(record)

        channel.on_ready = ready
        self.receipts.opened(channel)

        def forget(gone: Channel) -> None:
            if self.channels.get(key) is gone:
                del self.channels[key]

        channel.on_close = forget
        return channel

    def close_idle(self) -> None:
        """One look at our channels: close those that had no stream at this look and the last."""
        quiet = {channel for channel in self.channels.values() if channel.inner.stream_count == 0}
        for channel in quiet & self._idle:
            channel.inner.close(ErrorCode.NO_ERROR, "idle")
        self._idle = quiet - self._idle

    # -------------------------------------------------------- answering

    def stream_opened(self, link: Link, sid: int, payload: bytes, window: int) -> None:
        """Another member opens a channel to us through the hub (to this exit, or to a service)."""
        try:
            opener_id, message1 = decode_route(payload)
            if self.visiting.get(opener_id, 0) >= CHANNELS_PER_MEMBER:  # before any work for it
                link.refuse(sid, ErrorCode.MEMBER_LIMIT,
                            f"you already hold {CHANNELS_PER_MEMBER} channels to this member")
                return
            responder = Responder(self.noise_private, opener_id, self.id)
            request = responder.read_first(message1)
        except RemoteProtocolError as exc:  # ChannelError included
            link.refuse(sid, exc.code, str(exc))
            return
        if not request.startswith(CHANNEL_REQUEST):
            link.refuse(sid, ErrorCode.PROTOCOL_ERROR, "not a channel request")
            return
        message2, sealed = responder.answer()
        self.visiting[opener_id] = self.visiting.get(opener_id, 0) + 1  # until its nested link closes
        visitor = _Visitor(self, opener_id, responder.opener_key)
        channel = Channel.answer(link, sid, message1, message2, sealed, request[len(CHANNEL_REQUEST):],
                                 visitor, f"channel from {opener_id}")
        channel.peer = opener_id
        self.receipts.answered(channel, opener_id)

    def answer_when_connected(self, link: Link, sid: int, relay: Relay, connecting: Coroutine[Any, Any, Any],
                              withdrawn: str) -> None:
        """Accept stream `sid` for `relay` once `connecting` reached the target.

        `connecting` connects the relay and raises TargetRefused with a reason
        for the opener; `withdrawn` is the refusal if the opener withdrew while
        it connected. The exit and the services both answer so.
        """
        link.claim(sid, relay)  # a reset while we connect reaches the relay
        self.tasks.spawn(self._answer(link, sid, relay, connecting, withdrawn))

    async def _answer(self, link: Link, sid: int, relay: Relay, connecting: Coroutine[Any, Any, Any],
                      withdrawn: str) -> None:
        try:
            await connecting
        except TargetRefused as exc:
            if link.release(sid):
                link.refuse(sid, exc.code, str(exc))
            relay.stream_gone()
            return
        if relay.done or link.closed:
            relay.transport.abort()
            relay.stream_gone()
            if link.release(sid):
                link.refuse(sid, ErrorCode.NO_ROUTE, withdrawn)
            return
        link.accept(sid, relay)
        relay.attach(StreamRef(link, sid))


class _Visitor:
    """Owner of the nested link of a channel another member opened to us."""

    def __init__(self, pool: ChannelPool, member_id: str, noise_key: bytes):
        self.pool, self.member_id, self.noise_key = pool, member_id, noise_key

    def stream_opened(self, link: Link, sid: int, payload: bytes, window: int) -> None:
        self.pool.serve(link, sid, payload, self.member_id, self.noise_key)

    def control_received(self, link: Link, message: ControlMessage) -> None:
        if isinstance(message, Receipt) and isinstance(link.transport, Channel):
            self.pool.receipts.receipt(link.transport, message)

    def link_closed(self, link: Link, reason: str) -> None:
        visiting = self.pool.visiting
        visiting[self.member_id] -= 1
        if not visiting[self.member_id]:
            del visiting[self.member_id]


class _Opening(Endpoint):
    """A connection being opened, moving on to the next exit if one is gone.

    Until the answer it is also the taker's stream: what the client sends
    meanwhile leaves at once as early data (so a request travels with the
    OPEN), and a copy is kept to send again through the next exit.
    """

    def __init__(self, pool: ChannelPool, request: bytes, taker: Taker,
                 candidates: Iterable[ExitRecord | ServiceRecord]):
        """`request` opens the stream inside the channel; each candidate needs .id and .noise_key."""
        self.pool = pool
        self.request = request
        self.taker = taker
        self.candidates = list(candidates)
        # Set by try_next, which runs first: the candidate tried, then its stream once one opened.
        # Nothing else runs before that stream exists: the taker gets this opening as its stream
        # only then, and the answer and the timeout come from that stream.
        self.exit: ExitRecord | ServiceRecord
        self.link: Link
        self.sid = 0
        self.started = 0.0
        self.timer: asyncio.TimerHandle
        self.sent: list[bytes] = []  # early data, for the next exit
        self.ended = False

    def try_next(self) -> None:
        self.exit = self.candidates.pop(0)
        channel = self.pool.channel_to(self.exit)
        if channel is None:
            return self._give_up(ErrorCode.NO_ROUTE, "not connected to the hub")
        if not channel.inner.can_open():
            return self._give_up(ErrorCode.BUSY, "too many connections are opening to that exit at once")
        self.link = link = channel.inner
        self.sid = link.open_stream(self.request, self)
        for data in self.sent:
            link.send(self.sid, data)
        if self.ended:
            link.end(self.sid)
        self.started = link.loop.time()
        self.timer = link.loop.call_later(OPEN_TIMEOUT, self._timeout)
        if self.taker.stream is None:
            self.taker.attach(self)

    # The taker's stream until the answer:

    def send(self, data: bytes | memoryview) -> None:
        data = bytes(data)
        self.sent.append(data)
        self.link.send(self.sid, data)

    def end(self) -> None:
        self.ended = True
        self.link.end(self.sid)

    def reset(self, code: int, reason: str = "") -> None:
        self.timer.cancel()
        self.link.reset(self.sid, code, reason)

    def acknowledge(self, nbytes: int) -> None:
        pass  # nothing arrives before the answer

    def pending(self) -> int:
        return self.link.pending(self.sid)

    # The answer:

    def on_accepted(self, payload: bytes, window: int) -> None:
        self.timer.cancel()
        self.sent = []
        taker, link = self.taker, self.link
        if taker.done:
            link.reset(self.sid, ErrorCode.CANCEL, "the client went away")
            return
        directory = self.pool.directory
        directory.observe(self.exit.id, link.loop.time() - self.started)
        directory.opened(self.exit.id, +1)
        taker.exit_id = self.exit.id
        assert isinstance(taker, Endpoint)  # a taker is its stream's endpoint once answered (see Taker)
        link.claim(self.sid, taker)
        taker.answered(StreamRef(link, self.sid))
        taker.on_accepted(b"", window)

    def on_refused(self, code: int, reason: str) -> None:
        self.timer.cancel()
        directory = self.pool.directory
        refused_me = Refusal(code, reason) == MEMBERS_ONLY
        if refused_me:
            directory.refused(self.exit.id)
        elif code in RETRYABLE:
            directory.failed(self.exit.id)
        if (code in RETRYABLE or refused_me) and self.candidates and not self.taker.done:
            log.info("exit %s unavailable (%s); trying the next one", self.exit.id, reason)
            return self.try_next()
        self._give_up(code, reason)

    on_reset = on_refused  # a link lost while opening counts as a refusal

    def _timeout(self) -> None:
        self.link.reset(self.sid, ErrorCode.CANCEL, "open timed out")
        self._give_up(ErrorCode.TARGET_TIMEOUT, f"no answer from the exit within {OPEN_TIMEOUT:g} s")

    def _give_up(self, code: int, reason: str) -> None:
        if not self.taker.done:
            self.taker.on_refused(code, reason)
