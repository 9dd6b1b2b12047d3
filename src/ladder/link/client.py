"""Dialling the hub: TLS, pinning the hub's key, the member's hello, the welcome."""

from __future__ import annotations

import asyncio

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.errors import LadderError
from ladder.protocol.hello import make_hello

from .channel import CHANNEL_MAX_WINDOW
from .connection import Link, LinkOwner
from .tls import client_context, fingerprint_of_cert_der

DIAL_TIMEOUT = 15.0


class HubIdentityMismatch(LadderError):
    """The hub's certificate key is not the one pinned at join time."""


async def dial(
    address: tuple[str, int],
    fingerprint: str,
    key: Ed25519PrivateKey,
    owner: LinkOwner | None,
    *,
    token: bytes | None = None,
    timeout: float = DIAL_TIMEOUT,
) -> tuple[Link, dict]:
    """Open a link to the hub and return it with the hub's first control message.

    With `token`, the hello is a JOIN with that invite instead of an AUTH.
    Raises HubIdentityMismatch, connection.LinkRefused, OSError or asyncio.TimeoutError.
    """
    loop = asyncio.get_running_loop()
    host, port = address
    link = Link(owner, client=True, label=f"hub {host}:{port}", max_window=CHANNEL_MAX_WINDOW)
    # Every path below that does not await the welcome (a wrong key, a timeout)
    # closes the link, which fails the welcome; that failure is already told.
    link.welcome.add_done_callback(lambda welcome: welcome.cancelled() or welcome.exception())
    transport, _ = await asyncio.wait_for(
        loop.create_connection(lambda: link, host, port, ssl=client_context(), server_hostname=host),
        timeout,
    )
    ssl_object = transport.get_extra_info("ssl_object")
    seen = fingerprint_of_cert_der(ssl_object.getpeercert(binary_form=True))
    if seen != fingerprint:
        link.abort("hub identity mismatch")
        raise HubIdentityMismatch(
            f"the hub at {host}:{port} presented key {seen}, not the pinned {fingerprint}: "
            "refusing to connect (a man in the middle, or the hub changed its key)"
        )
    binding = ssl_object.get_channel_binding("tls-unique")
    # A PING rides with the hello. The hello is a request line nginx would wait on; the PING's
    # first byte (a frame's length, 0x00) is one no request line holds, so a hub that refuses the
    # hello has its web face answer a 400 at once, as nginx would, and we know without waiting
    # for a timeout. A hub that takes the hello reads the PING as the link's first frame.
    link.mux.ping(loop.time())
    transport.write(make_hello(key, fingerprint, binding, token) + link.mux.data_to_send())
    try:
        welcome = await asyncio.wait_for(asyncio.shield(link.welcome), timeout)
    except asyncio.TimeoutError:
        link.abort("no welcome from the hub")
        raise
    return link, welcome
