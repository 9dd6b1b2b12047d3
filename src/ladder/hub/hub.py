"""The hub role: members' links, the directory of exits, the switch between them.

One `Hub` listens on one TLS port. The doorway hands it each valid hello:
an AUTH from a current member becomes a `Session` (that member's link), a
JOIN redeems an invite. Sessions that share announce it; the hub keeps the
directory of online exits and pushes it to every session when it changes.
A user's stream names an exit by member id; the switch splices it onto a
new stream on that exit's link. A member holds one such stream (a channel)
per exit or publisher it uses, a few while it reconnects: past
STREAMS_PER_DESTINATION to one member its opens are refused, so one member
cannot take the streams of an exit's link from the others. Revocations
made by the CLI in the store are noticed within a second and drop the
member's link.
"""

from __future__ import annotations

import asyncio
import logging

from ladder.config import HubConfig
from ladder.link.connection import Link
from ladder.link.server import FrontDoor, listen
from ladder.link.tls import fingerprint_of_cert_file, server_context
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.hello import JOIN, Hello
from ladder.protocol.identity import member_id
from ladder.protocol.messages import decode_route, encode_route
from ladder.protocol.records import RecordError, b64, verify_exit_record
from ladder.store.hubdb import HubStore, InviteError, InviteUnknown, Member, StoreError

from .pacing import Pacer
from .services import ServiceBoard
from .switch import splice

log = logging.getLogger(__name__)
REVOCATION_POLL = 1.0
DIRECTORY_PUSH = 2.0  # load figures are pushed at most this often
STREAMS_PER_DESTINATION = 8  # live streams one member may hold to one other member


class Session:
    """One member's link at the hub."""

    def __init__(self, hub: Hub, member: Member, link: Link):
        self.hub = hub
        self.member = member
        self.link = link
        self.record: dict | None = None  # the exit record it signed, while it shares
        self.accepting = True  # False while the exit's daily or monthly cap is reached
        self.country = ""
        self.streams = 0  # channels spliced to this member: one per member using it, idle or not
        self.held: dict[str, int] = {}  # destination member id → live streams this member opened to it

    @property
    def role(self) -> str:
        return "exit" if self.record is not None else "user"

    def entry(self) -> dict:
        """The directory entry: the member's own signed record, plus what the hub knows.

        `users` counts the channels to it: members using it, idle or not. The
        hub cannot count their connections inside (nor should it), so only
        each user knows its own load on an exit.
        """
        return {"id": self.member.id, "name": self.member.name, "country": self.country,
                "users": self.streams, **self.record}

    # LinkOwner

    def stream_opened(self, link: Link, sid: int, payload: bytes, window: int) -> None:
        try:
            target_id, inner = decode_route(payload)
        except RemoteProtocolError as exc:
            link.refuse(sid, exc.code, str(exc))
            return
        exit_session = self.hub.sessions.get(target_id)
        if exit_session is None or exit_session.record is None and not self.hub.services.publishes(target_id):
            link.refuse(sid, ErrorCode.NO_ROUTE, "that exit is not online")
            return
        held = self.held.get(target_id, 0)
        if held >= STREAMS_PER_DESTINATION:
            link.refuse(sid, ErrorCode.MEMBER_LIMIT, f"you already hold {held} streams to that member")
            return
        if not exit_session.link.can_open():
            link.refuse(sid, ErrorCode.BUSY, "that exit has too many streams")
            return
        self.held[target_id] = held + 1
        exit_session.streams += 1
        self.hub.directory_changed(urgent=False)

        def closed() -> None:
            exit_session.streams -= 1
            if self.held[target_id] == 1:
                del self.held[target_id]
            else:
                self.held[target_id] -= 1
            self.hub.directory_changed(urgent=False)

        splice(link, sid, window, exit_session.link, encode_route(self.member.id, inner), closed)

    def control_received(self, link: Link, message: dict) -> None:
        if message["type"] == "share-status":
            self.accepting = bool(message.get("accepting", True))
            log.info("%s %s new streams %s", self.member.name, "accepts" if self.accepting else "refuses",
                     str(message.get("reason", ""))[:200])
            self.hub.directory_changed(urgent=True)
        elif message["type"] == "publish":
            self.hub.services.publish(self, message)
        elif message["type"] == "share":
            record = {k: message.get(k) for k in ("record", "signature")}
            record["pubkey"] = b64(self.member.pubkey)  # the key this hub vouched for at join time
            try:
                verified = verify_exit_record({"id": self.member.id, **record})
            except RecordError as exc:
                log.warning("%s sent an exit record that does not verify: %s", self.member.name, exc)
                return
            if record == self.record:
                return  # said again: nothing for anyone to hear
            self.record, self.country = record, verified.country
            self.hub.store.set_online(self.member.id, self.role)
            log.info("%s shares as an exit in %s", self.member.name, self.country)
            self.hub.directory_changed(urgent=True)

    def link_closed(self, link: Link, reason: str) -> None:
        log.info("%s went offline: %s", self.member.name, reason)
        if self.hub.sessions.get(self.member.id) is self:
            del self.hub.sessions[self.member.id]
            self.hub.store.set_online(self.member.id, None)
            self.hub.services.member_offline(self)
            if self.record is not None:
                self.hub.directory_changed(urgent=True)


class Hub:
    def __init__(self, config: HubConfig, store: HubStore):
        self.config = config
        self.store = store
        self.fingerprint = fingerprint_of_cert_file(config.cert)
        self.sessions: dict[str, Session] = {}
        self.server: FrontDoor | None = None
        self._directory_push = Pacer(self._push_directory)
        self._data_version = -1
        self._closed = False
        self.services = ServiceBoard(self)  # published services and member names

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.store.clear_online()
        self.server = await listen(self.config.listen, server_context(self.config.cert, self.config.key),
                                   self.fingerprint, self.admit, web_backend=self.config.web_backend,
                                   raw_backend=self.config.raw_backend)
        self._data_version = self.store.data_version()
        loop.call_later(REVOCATION_POLL, self._poll_store)

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    async def run(self) -> None:
        await self.start()
        try:
            await self.server.serve_forever()
        finally:
            self.close()

    def close(self) -> None:
        self._closed = True
        self._directory_push.cancel()
        self.services.pacer.cancel()
        for session in list(self.sessions.values()):
            session.link.close(ErrorCode.NO_ERROR, "the hub is shutting down")
        if self.server is not None:
            self.server.close()

    # ----------------------------------------------------------- admission

    def admit(self, hello: Hello, binding: bytes, transport: asyncio.Transport, rest: bytes) -> bool:
        """Called by the doorway for a correctly signed hello on this connection."""
        if hello.kind == JOIN:
            return self._join(hello, transport)
        member = self.store.member_by_pubkey(hello.pubkey)
        if member is None or member.revoked:
            return False  # looks like any stranger's bytes
        link = self._take(transport, f"member {member.name}")
        old = self.sessions.get(member.id)
        if old is not None:  # the old agent is told why, so that it stops instead of taking the link back
            log.info("%s connected again: replacing its previous link", member.name)
            old.link.send_control({"type": "replaced"})
            old.link.close(ErrorCode.NO_ERROR, "replaced by a new link from the same member")
        session = Session(self, member, link)
        link.owner = session
        self.sessions[member.id] = session
        self.store.set_online(member.id, session.role)
        peer = transport.get_extra_info("peername")
        link.send_control({"type": "welcome", "hub": self.config.name, "member": member.name, "id": member.id,
                           "address": peer[0] if peer else None})
        link.send_control(self.directory_message())
        self.services.member_online(session)  # member names go out from there: exits learn a new one
        log.info("%s is online", member.name)
        if rest:
            link.data_received(rest)
        return True

    def _join(self, hello: Hello, transport: asyncio.Transport) -> bool:
        try:
            member = self.store.redeem_invite(hello.token, member_id(hello.pubkey), hello.pubkey)
        except InviteUnknown:
            return False  # a stranger guessing tokens sees the web site
        except (InviteError, StoreError) as exc:
            reply = {"type": "join-refused", "reason": str(exc)}
        else:
            log.info("%s joined", member.name)
            reply = {"type": "joined", "hub": self.config.name, "name": member.name, "id": member.id}
        link = self._take(transport, "joining member")
        link.send_control(reply)
        link.close(ErrorCode.NO_ERROR, "join done")
        return True

    def _take(self, transport: asyncio.Transport, label: str) -> Link:
        link = Link(None, client=False, label=label)
        transport.set_protocol(link)
        link.connection_made(transport)
        return link

    # ----------------------------------------------------------- directory

    def directory_message(self) -> dict:
        exits = [s.entry() for s in self.sessions.values() if s.record is not None and s.accepting]
        return {"type": "directory", "exits": exits}

    def directory_changed(self, urgent: bool) -> None:
        """Push the directory now (exits came or went) or soon (only load changed), paced."""
        self._directory_push.request(0.0 if urgent else DIRECTORY_PUSH)

    def _push_directory(self) -> None:
        message = self.directory_message()
        for session in self.sessions.values():
            session.link.send_control(message)

    # --------------------------------------------------------- revocation

    def _poll_store(self) -> None:
        if self._closed:
            return
        try:
            version = self.store.data_version()
            if version != self._data_version:
                self._data_version = version
                revoked = self.store.active_revoked_ids()
                self.services.members_changed()
                for mid in revoked & self.sessions.keys():
                    log.info("%s was revoked: dropping its link", self.sessions[mid].member.name)
                    self.sessions[mid].link.close(ErrorCode.NO_ERROR, "membership revoked")
        except StoreError as exc:
            log.warning("cannot read the member store: %s", exc)
        asyncio.get_running_loop().call_later(REVOCATION_POLL, self._poll_store)
