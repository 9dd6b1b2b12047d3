"""Dialling a hub: TLS, pinning the hub's key, a hello, and the hub's first word.

A dial opens TLS, checks the hub's certificate key against the pinned
fingerprint, sends a hello and waits for the hub's first CONTROL message
(its welcome, or the answer to a JOIN). Until then `_Greeting` stands
between the transport and the new `Link`: a hub that refuses the hello has
its web face answer it, so an answer that starts like a web server's
(`HTTP/`) is a refusal, not frames; and it stands in for the link's owner,
to take that first message. Then it steps aside, and the link is its
owner's alone: `Link` knows nothing of hellos or welcomes.

`dial` is a member's dial, `dial_peer` a hub's to a peer hub (its hello is
PEER, or PEER_JOIN with a peer invite; its link pings every second and is
given up after four silent ones, so that routes around a dead hub are
found at once). Every dial shares `_open` (TLS and the pin) and the
greeting.
"""

from __future__ import annotations

import asyncio

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.errors import LadderError
from ladder.protocol.control import ControlMessage
from ladder.protocol.errors import ErrorCode
from ladder.protocol.hello import make_hello

from .channel import CHANNEL_MAX_WINDOW
from .connection import Link, LinkOwner
from .tls import client_context, presented_key

DIAL_TIMEOUT = 15.0
PEER_KEEPALIVE = 1.0  # a peer link's ping interval, seconds
PEER_DEAD_AFTER = 4.0  # and the silence after which it is given up


class HubIdentityMismatch(LadderError):
    """The hub's certificate key is not the one pinned at join time."""


class LinkRefused(LadderError):
    """The hub answered like a web server: it did not accept this member."""


async def dial(
    address: tuple[str, int],
    fingerprint: str,
    key: Ed25519PrivateKey,
    owner: LinkOwner | None,
    *,
    token: bytes | None = None,
    request: ControlMessage | None = None,
    timeout: float = DIAL_TIMEOUT,
) -> tuple[Link, ControlMessage]:
    """Open a member's link to the hub and return it with the hub's first control message.

    With `token`, the hello is a JOIN with that invite instead of an AUTH;
    with `request`, a COMMAND whose one request it sends at once (the first
    message is then the hub's answer).
    `owner` gets the link's events from the first one after that message on.
    Raises HubIdentityMismatch, LinkRefused, RemoteProtocolError (the hub's answer is malformed),
    ConnectionError, OSError or asyncio.TimeoutError.
    """
    host, port = address
    link = Link(None, client=True, label=f"hub {host}:{port}", max_window=CHANNEL_MAX_WINDOW)
    greeting, binding = await _open(link, owner, address, fingerprint, timeout)
    # A PING rides with the hello. The hello is a request line nginx would wait on; the PING's
    # first byte (a frame's length, 0x00) is one no request line holds, so a hub that refuses the
    # hello has its web face answer a 400 at once, as nginx would, and we know without waiting
    # for a timeout. A hub that takes the hello reads the PING as the link's first frame.
    link.greet(make_hello(key, fingerprint, binding, token, command=request is not None))
    if request is not None:
        link.send_control(request)
    return link, await greeting.first_message(timeout)


async def dial_peer(
    address: tuple[str, int],
    fingerprint: str,
    hub_key: Ed25519PrivateKey,
    owner: LinkOwner | None,
    *,
    token: bytes | None = None,
    timeout: float = DIAL_TIMEOUT,
    control_rate: float | None = None,
) -> tuple[Link, ControlMessage]:
    """Open a peer link to the hub at `address` (PEER, or PEER_JOIN with `token`) and return it with the
    hub's first control message; `control_rate`: the link's control budget. Raises as `dial` does."""
    host, port = address
    link = Link(None, client=True, label=f"peer hub {host}:{port}", keepalive=PEER_KEEPALIVE,
                dead_after=PEER_DEAD_AFTER, control_rate=control_rate)
    greeting, binding = await _open(link, owner, address, fingerprint, timeout)
    link.greet(make_hello(hub_key, fingerprint, binding, token, peer=True))
    return link, await greeting.first_message(timeout)


async def _open(link: Link, owner: LinkOwner | None, address: tuple[str, int], fingerprint: str,
                timeout: float) -> tuple[_Greeting, bytes]:
    """TLS to `address` for `link`, the hub's key checked against `fingerprint`; the greeting and the
    connection's channel binding (what a hello signs)."""
    host, port = address
    greeting = _Greeting(link, owner)
    transport, _ = await asyncio.wait_for(
        asyncio.get_running_loop().create_connection(lambda: greeting, host, port, ssl=client_context(),
                                                     server_hostname=host),
        timeout,
    )
    ssl_object = transport.get_extra_info("ssl_object")
    seen = presented_key(ssl_object)
    if seen != fingerprint:
        greeting.give_up("hub identity mismatch")
        raise HubIdentityMismatch(
            f"the hub at {host}:{port} presented key {seen}, not the pinned {fingerprint}: "
            "refusing to connect (a man in the middle, or the hub changed its key)"
        )
    return greeting, ssl_object.get_channel_binding("tls-unique")


class _Greeting(asyncio.BufferedProtocol):
    """A dialled link until the hub's first control message: the transport's protocol and the link's owner."""

    def __init__(self, link: Link, owner: LinkOwner | None):
        self.link = link
        self.owner = owner
        self.transport: asyncio.BaseTransport | None = None
        self._first: asyncio.Future[ControlMessage] = link.loop.create_future()
        self._buffer = memoryview(b"")
        link.owner = self

    async def first_message(self, timeout: float) -> ControlMessage:
        try:
            return await asyncio.wait_for(self._first, timeout)  # a timeout cancels it: nobody waits on
        except TimeoutError:
            self.link.abort("no welcome from the hub")
            raise

    def give_up(self, reason: str) -> None:
        """Drop the link before anyone waits for its first message."""
        if not self._first.cancel():  # the connection was lost already: what it said is superseded
            self._first.exception()
        self.link.abort(reason)

    # -- in for the transport's protocol -----------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.link.connection_made(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        self._buffer = self.link.get_buffer(sizehint)
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        if not self._first.done() and bytes(self._buffer[:5]) == b"HTTP/":
            # A web server's answer where a member expected frames.
            self._first.set_exception(LinkRefused("the hub did not accept this member's key"))
            self.link.abort("refused by the hub")
            return
        self.link.buffer_updated(nbytes)

    def pause_writing(self) -> None:
        self.link.pause_writing()

    def resume_writing(self) -> None:
        self.link.resume_writing()

    def eof_received(self) -> bool | None:
        return self.link.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.connection_lost(exc)

    # -- in for the link's owner -------------------------------------------------

    def control_received(self, link: Link, message: ControlMessage) -> None:
        # The first message: the link is its owner's from the next event on (in this same read too).
        link.owner = self.owner
        assert self.transport is not None  # it came through the transport
        self.transport.set_protocol(link)
        self._first.set_result(message)

    def stream_opened(self, link: Link, stream_id: int, payload: bytes, window: int) -> None:
        link.refuse(stream_id, ErrorCode.FORBIDDEN, "no streams before the welcome")

    def link_closed(self, link: Link, reason: str) -> None:
        if not self._first.done():  # a malformed answer is the hub's protocol error, not a lost connection
            lost = ConnectionError(f"the hub closed the connection ({reason})")
            self._first.set_exception(link.error or lost)
