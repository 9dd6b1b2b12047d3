"""Joining a hub with an invite: the member's key, the JOIN hello, the hub's answer, the member's folder.

The invite link carries the hub's address and the fingerprint of its key,
so the dial pins the hub as any member's dial does: a man in the middle
fails here, before the invite's token is sent. The hub answers `joined`
with the member's name, or `join-refused` with the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

from ladder.config import InviteLink, MemberConfig
from ladder.errors import UserError
from ladder.link.client import HubIdentityMismatch, LinkRefused, dial
from ladder.link.connection import Link
from ladder.protocol.control import ControlMessage, Joined, JoinRefused
from ladder.protocol.errors import RemoteProtocolError


class JoinFailed(UserError):
    """The hub could not be reached, was not the one the invite names, or refused the invite."""


async def join(invite: InviteLink, folder: Path) -> MemberConfig:
    """Join with `invite`, keeping the new member's key and config in `folder`; raises JoinFailed."""
    key = MemberConfig.load_or_create_key(folder)
    reply = await answer_to(dial(invite.address, invite.fingerprint, key, None, token=invite.token),
                            invite.address)
    if not isinstance(reply, Joined):
        why = reply.reason if isinstance(reply, JoinRefused) else reply
        raise JoinFailed(f"the hub refused the invite: {why}")
    config = MemberConfig(folder, key, invite.address, invite.fingerprint, reply.hub, reply.name)
    config.save()
    return config


async def answer_to(dialling: Awaitable[tuple[Link, ControlMessage]], address: tuple[str, int]
                    ) -> ControlMessage:
    """The hub's answer to an invite (a member's or a peer hub's) as the dial returns it; JoinFailed with
    one line for a person when there is none."""
    host, port = address
    try:
        _, reply = await dialling
    except HubIdentityMismatch as exc:
        raise JoinFailed(str(exc)) from None
    except LinkRefused:
        raise JoinFailed("the hub does not know this invite (mistyped, revoked or for another hub)") from None
    except RemoteProtocolError as exc:
        raise JoinFailed(f"the hub's answer to the invite makes no sense: {exc}") from None
    except (TimeoutError, OSError) as exc:
        raise JoinFailed(f"cannot reach the hub at {host}:{port}: {exc or 'timeout'}") from None
    return reply
