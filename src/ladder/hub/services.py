"""The hub's listing of published services, and the member names that label them.

A member's agent sends `publish` with the signed records of all the
services it publishes (in pieces when long; the last piece replaces the
whole set). The board checks each record against the key the hub vouched
for at join time and lists it in the directory with the member's name and
whether the member is online; a publisher that goes offline stays listed as
offline until it comes back or is revoked (in memory: a restarted hub
relists services as their publishers reconnect). Every change is pushed to
every member as `services`; the names of all active members are pushed as
`members`, so an agent can turn the names a publisher types into member
ids. A join is pushed as one `member`: the whole list to everyone on each
join made a burst of N joins cost N³ list entries.

The board holds no link and no store: each input (a member online or
offline, a `publish`, the roster read from the store) returns an `Outbox`,
the messages the hub should send and to whom. A change of the listing is
only flagged there: the hub pushes `services` paced (pacing.py), so a member
publishing or reconnecting in a loop cannot make the hub send a list to
everyone for each of its messages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from ladder.protocol.control import (
    ControlMessage,
    ListAssembler,
    MemberJoined,
    MemberName,
    Members,
    Publish,
    ServiceEntry,
    Services,
    split_list_message,
)
from ladder.protocol.envelope import RecordError, b64
from ladder.protocol.records import verify_service_record
from ladder.store.hubdb import Member

from .directory import Directory, Origin

log = logging.getLogger(__name__)
MAX_SERVICES_PER_MEMBER = 64
EVERYONE = None  # an Outbox recipient: every member online


@dataclass
class Outbox:
    """What the hub should send after one input, in this order; and whether to push the listing."""

    # (member id or EVERYONE, message)
    sends: list[tuple[str | None, ControlMessage]] = field(default_factory=list)
    listing_changed: bool = False  # every member gets `services` soon, paced

    def to(self, recipient: str | None, messages: Iterable[ControlMessage]) -> None:
        self.sends.extend((recipient, message) for message in messages)


class ServiceBoard:
    def __init__(self, directory: Directory):
        self.directory = directory
        self._incoming: dict[str, ListAssembler] = {}  # member id → pieces of a publish in progress

    # ------------------------------------------------------------- members

    def member_online(self, member_id: str) -> Outbox:
        """A member's link came up: it gets the listings; others see its services online again."""
        outbox = Outbox()
        outbox.to(member_id, self.members_messages())
        if member_id in self.directory.services:
            outbox.listing_changed = True
        else:
            outbox.to(member_id, self.services_messages())
        return outbox

    def member_offline(self, member_id: str) -> Outbox:
        self._incoming.pop(member_id, None)
        return Outbox(listing_changed=member_id in self.directory.services)

    def roster_changed(self, names: dict[str, str]) -> Outbox:
        """The active members as the store has them now: relabel, drop revoked members' services."""
        old = self.directory.names
        gone = self.directory.set_roster(names)
        outbox = Outbox(listing_changed=bool(gone))
        if old.keys() <= names.keys() and all(names[mid] == name for mid, name in old.items()):
            outbox.to(EVERYONE, [MemberJoined(mid, name)  # only joins: say just those
                                 for mid, name in names.items() if mid not in old])
        else:
            outbox.to(EVERYONE, self.members_messages())
        return outbox

    # ------------------------------------------------------------ services

    def publish(self, member: Member, message: Publish, origin: Origin) -> Outbox:
        """A piece of a member's `publish`; the last piece replaces what it publishes."""
        pieces = self._incoming.setdefault(member.id, ListAssembler("services", MAX_SERVICES_PER_MEMBER))
        records = pieces.add(message)
        if records is None:
            return Outbox()
        del self._incoming[member.id]
        entries, names = [], set()
        for item in records:
            entry = {"id": member.id, "record": item.record, "signature": item.signature,
                     "pubkey": b64(member.pubkey)}  # the key this hub vouched for at join time
            try:
                record = verify_service_record(entry)
            except RecordError as exc:
                log.warning("%s sent a service record that does not verify: %s", member.name, exc)
                continue
            if record.name not in names:
                names.add(record.name)
                entries.append(entry)
        if not self.directory.list_services(member.id, entries, origin):
            return Outbox()  # nothing was listed and nothing is: no news
        log.info("%s publishes %d service(s): %s", member.name, len(entries), ", ".join(sorted(names)))
        return Outbox(listing_changed=True)

    def entries(self) -> list[dict]:
        directory = self.directory
        return [
            {**entry, "name": listing.label or directory.names.get(publisher_id, publisher_id),
             "online": directory.is_up(listing.origin), "hub": listing.hub, "hops": listing.hops}
            for publisher_id, listing in directory.services.items() for entry in listing.entries
        ]

    def services_messages(self) -> list[Services]:
        entries = [ServiceEntry(**entry) for entry in self.entries()]
        return split_list_message(Services(()), "services", entries)

    def members_messages(self) -> list[Members]:
        members = [MemberName(member_id, name) for member_id, name in self.directory.names.items()]
        return split_list_message(Members(()), "members", members)
