"""A member's one-off requests to its hub (its devices), on a link of their own.

A COMMAND hello (protocol/hello.py) opens a link that carries one request
and its answer, then closes: the member's agent may be running on its own
link meanwhile, and a second AUTH link would take that one over.
"""

from __future__ import annotations

from ladder.config import MemberConfig
from ladder.errors import UserError
from ladder.link.client import HubIdentityMismatch, LinkRefused, dial
from ladder.protocol import control
from ladder.protocol.errors import ErrorCode, RemoteProtocolError


class RequestFailed(UserError):
    """The hub could not be reached, did not know this member, or refused the request."""


async def ask(config: MemberConfig, request: control.ControlMessage) -> control.ControlMessage:
    """Send `request` to the hub on a command link and return its answer; raises RequestFailed."""
    host, port = config.hub_address
    try:
        link, answer = await dial(config.hub_address, config.fingerprint, config.key, None,
                                  request=request)
    except HubIdentityMismatch as exc:
        raise RequestFailed(str(exc)) from None
    except LinkRefused:
        raise RequestFailed("the hub did not take this member's key (revoked, or a hub too old "
                            "for device requests)") from None
    except RemoteProtocolError as exc:
        raise RequestFailed(f"the hub's answer makes no sense: {exc}") from None
    except ConnectionError:  # it answered as a server that has had enough: a request it cannot take
        raise RequestFailed(f"the hub at {host}:{port} closed the connection without an answer "
                            "(a hub too old for device requests?)") from None
    except (TimeoutError, OSError) as exc:
        raise RequestFailed(f"cannot reach the hub at {host}:{port}: {exc or 'timeout'}") from None
    link.close(ErrorCode.NO_ERROR, "request answered")
    if isinstance(answer, control.Done) and not answer.ok:
        raise RequestFailed(f"the hub refused: {answer.reason}")
    return answer
