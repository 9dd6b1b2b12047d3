"""A member's one-off requests on a command link: its own devices, added, listed and removed; its credits;
a search.

A COMMAND hello (protocol/hello.py) from a current member opens a link
that is no port: it routes no stream and hears no pushes. Its first
control message is the request; the answer goes back and the link closes.
What a member may do here is what the operator's CLI does, for the
member's own devices only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ladder.config import HubConfig
from ladder.errors import LadderError
from ladder.link.connection import Link
from ladder.protocol import control
from ladder.protocol.errors import ErrorCode
from ladder.store.hubdb import HubStore, Member, utc_day

from .credits import Credits
from .devices import add_device

log = logging.getLogger(__name__)
COMMAND_TIMEOUT = 10.0  # a command link that asks nothing within this long is closed


class CommandLink:
    """Owner of one command link: answers its one request for `member`."""

    def __init__(self, member: Member, config: HubConfig, store: HubStore, is_online: Callable[[str], bool],
                 removed: Callable[[str], None], credits: Credits,
                 search: Callable[[str, int], Awaitable[control.SearchResults]]):
        """`is_online(device id)`: whether the device has connections now; `removed(device id)`: cut it
        (the hub's store poll does not see its own connection's writes); `credits` answers for the
        member's account; `search` for its queries (here and at peer hubs: it takes a moment)."""
        self.member = member
        self.config = config
        self.store = store
        self.is_online = is_online
        self.removed = removed
        self.credits = credits
        self.search = search
        self.answered = False
        self._searching: asyncio.Future[None] | None = None  # held, so that the task is not collected

    def control_received(self, link: Link, message: control.ControlMessage) -> None:
        if self.answered:
            return
        self.answered = True
        if isinstance(message, control.SearchRequest):
            self._searching = asyncio.ensure_future(self._search(link, message))
            return
        try:
            answer = self.answer(message)
        except (LadderError, OSError) as exc:  # the store's refusal, or the hub's own files
            answer = control.Done(False, str(exc))
        link.send_control(answer)
        link.close(ErrorCode.NO_ERROR, "answered")

    async def _search(self, link: Link, message: control.SearchRequest) -> None:
        try:
            answer: control.ControlMessage = await self.search(message.query, message.limit)
        except LadderError as exc:  # the index failed
            answer = control.Done(False, str(exc))
        if not link.closed:
            link.send_control(answer)
            link.close(ErrorCode.NO_ERROR, "answered")

    def answer(self, message: control.ControlMessage) -> control.ControlMessage:
        member = self.member
        if isinstance(message, control.DeviceAdd):
            now = time.time()
            if message.expires and message.expires <= now:
                return control.Done(False, "the device would expire before it is added")
            new = add_device(self.config, self.store, member.name, message.name, exit=message.exit,
                             rules=message.rules or None, rate=message.rate or None,
                             daily_cap=message.daily_cap or None,
                             expires_in=message.expires - now if message.expires else None)
            log.info("%s added its device %s", member.name, new.device.label)
            return control.DeviceAdded(new.device.name, new.link, new.subscription, new.note)
        if isinstance(message, control.DeviceList):
            today = utc_day(time.time())
            return control.Devices(tuple(
                control.DeviceEntry(d.name, self.is_online(d.id), d.bytes_on(today), int(d.last_seen or 0),
                                    int(d.expires_at or 0))
                for d in self.store.devices() if d.owner == member.id and not d.revoked))
        if isinstance(message, control.DeviceRemove):
            device = self.store.revoke_device(f"{member.name}/{message.name}")
            self.removed(device.id)
            log.info("%s removed its device %s", member.name, device.label)
            return control.Done(True)
        if isinstance(message, control.CreditsRequest):
            return self.credits.answer(member, message)
        return control.Done(False, "this hub does not know that request")

    def stream_opened(self, link: Link, sid: int, payload: bytes, window: int) -> None:
        link.refuse(sid, ErrorCode.FORBIDDEN, "a command link carries no streams")

    def link_closed(self, link: Link, reason: str) -> None:
        pass
