"""The hub's listing of published services, and the member names that label them.

A member's agent sends `publish` with the signed records of all the
services it publishes (in pieces when long; the last piece replaces the
whole set). The hub checks each record against the key it vouched for at
join time and lists it with the member's name and whether the member is
online; a publisher that goes offline stays listed as offline until it
comes back or is revoked (in memory: a restarted hub relists services as
their publishers reconnect). Every change is pushed to every session as
`services`; the names of all active members are pushed as `members`, so an
agent can turn the names a publisher types into member ids. A join is
pushed as one `member`: the whole list to everyone on each join made a
burst of N joins cost N³ list entries. Pushes of `services` are paced
(pacing.py), so a member publishing or reconnecting in a loop cannot make
the hub send a list to everyone for each of its messages.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ladder.protocol.control import ListAssembler, split_list_message
from ladder.protocol.records import RecordError, b64, verify_service_record
from ladder.store.hubdb import StoreError

from .pacing import Pacer

if TYPE_CHECKING:
    from .hub import Hub, Session

log = logging.getLogger(__name__)
MAX_SERVICES_PER_MEMBER = 64


class ServiceBoard:
    def __init__(self, hub: Hub):
        self.hub = hub
        self.listed: dict[str, list[dict]] = {}  # member id → its verified entries (without "online")
        self.names: dict[str, str] = {}  # active member id → name
        self._incoming: dict[str, ListAssembler] = {}  # member id → pieces of a publish in progress
        self.pacer = Pacer(self._send_services)

    # ------------------------------------------------------------- members

    def member_online(self, session: Session) -> None:
        """A member's link came up: it gets the listings; others see its services online again."""
        if session.member.id not in self.names:  # it just joined: the others hear of it
            self.members_changed()
        for message in self.members_messages():
            session.link.send_control(message)
        if session.member.id in self.listed:
            self.push()
        else:
            for message in self.services_messages():
                session.link.send_control(message)

    def member_offline(self, session: Session) -> None:
        self._incoming.pop(session.member.id, None)
        if session.member.id in self.listed:
            self.push()

    def members_changed(self) -> None:
        """Members joined or were revoked: relabel, drop the revoked members' services, push."""
        try:
            members = [m for m in self.hub.store.members() if not m.revoked]
        except StoreError as exc:
            log.warning("cannot read the member store: %s", exc)
            return
        old, self.names = self.names, {m.id: m.name for m in members}
        gone = self.listed.keys() - self.names.keys()
        for member_id in gone:
            del self.listed[member_id]
        if old.keys() <= self.names.keys() and all(self.names[mid] == name for mid, name in old.items()):
            messages = [{"type": "member", "id": mid, "name": name}  # only joins: say just those
                        for mid, name in self.names.items() if mid not in old]
        else:
            messages = self.members_messages()
        for session in self.hub.sessions.values():
            for message in messages:
                session.link.send_control(message)
        if gone:
            self.push()

    # ------------------------------------------------------------ services

    def publish(self, session: Session, message: dict) -> None:
        """A piece of a member's `publish`; the last piece replaces what it publishes."""
        member = session.member
        pieces = self._incoming.setdefault(member.id, ListAssembler("services", MAX_SERVICES_PER_MEMBER))
        records = pieces.add(message)
        if records is None:
            return
        del self._incoming[member.id]
        entries, names = [], set()
        for item in records:
            if not isinstance(item, dict):
                continue
            entry = {"id": member.id, "record": item.get("record"), "signature": item.get("signature"),
                     "pubkey": b64(member.pubkey)}  # the key this hub vouched for at join time
            try:
                record = verify_service_record(entry)
            except RecordError as exc:
                log.warning("%s sent a service record that does not verify: %s", member.name, exc)
                continue
            if record.name not in names:
                names.add(record.name)
                entries.append(entry)
        if entries:
            self.listed[member.id] = entries
        elif self.listed.pop(member.id, None) is None:
            return  # nothing was listed and nothing is: no news
        log.info("%s publishes %d service(s): %s", member.name, len(entries), ", ".join(sorted(names)))
        self.push()

    def publishes(self, member_id: str) -> bool:
        """True when streams may be spliced to this member for its services."""
        return member_id in self.listed and member_id in self.hub.sessions

    def entries(self) -> list[dict]:
        return [
            {**entry, "name": self.names.get(member_id, member_id), "online": member_id in self.hub.sessions}
            for member_id, entries in self.listed.items() for entry in entries
        ]

    def services_messages(self) -> list[dict]:
        return split_list_message({"type": "services"}, "services", self.entries())

    def members_messages(self) -> list[dict]:
        members = [{"id": member_id, "name": name} for member_id, name in self.names.items()]
        return split_list_message({"type": "members"}, "members", members)

    def push(self) -> None:
        """Every member gets the listing: soon, once however many changes come meanwhile."""
        self.pacer.request()

    def _send_services(self) -> None:
        messages = self.services_messages()
        for session in self.hub.sessions.values():
            for message in messages:
                session.link.send_control(message)
