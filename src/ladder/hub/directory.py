"""The hub's directory: the verified exit and service records it relays, and the member roster.

Every record here was checked against the key of the member who signed it
before it got in (hub.py for exits, services.py for services, peers.py for
another hub's), and keeps its `Origin`: the port it arrived on, a member of
this hub over its own link or the peer hub of the best route to a member of
another hub. The routes decide what is listed of other hubs' members
(`set_remote`), labelled `member.hub` with how many hubs away they are; a
member of this hub is always listed as its own link says.

An exit is listed while its origin is up: it is withdrawn when its link
goes. A publisher's services stay listed while it is offline, marked so,
until it publishes again or is revoked. What the hub adds of its own is
what only it knows: how many channels are spliced to each member (`users`)
and whether an exit said it takes new streams. The roster is every active
member's name, so that agents can turn names into member ids.

The `directory` message is made once per change of what it shows (an exit
listed, replaced, capped or gone, a count of channels) and kept until the
next: pushes and every member coming online read the same one. Change the
exits through the methods here, never the dicts, or the kept message is stale.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ladder.protocol.control import MAX_CONTROL, ExitEntry, encode
from ladder.protocol.control import Directory as DirectoryMessage


@dataclass(frozen=True)
class Origin:
    """Where a record came from: the kind of port it arrived on and that port's id."""

    kind: str
    port: str

    @classmethod
    def member(cls, member_id: str) -> Origin:
        """The member's own link: what it says of itself, signed by itself."""
        return cls("member", member_id)


@dataclass
class ExitListing:
    id: str
    name: str
    country: str  # from the verified record
    record: dict  # "record", "signature" and "pubkey" as relayed (base64)
    origin: Origin
    accepting: bool = True  # False while the exit's daily or monthly cap is reached
    hub: str = ""  # the name of the hub it is at; empty: this one
    hops: int = 0


@dataclass
class ServiceListing:
    entries: list[dict]  # one verified {"id", "record", "signature", "pubkey"} per service
    origin: Origin
    label: str | None = None  # the publisher's name, when it is another hub's member (`member.hub`)
    hub: str = ""
    hops: int = 0


class Directory:
    """What the hub relays about the network's members, and the names that label them."""

    def __init__(self) -> None:
        self.exits: dict[str, ExitListing] = {}
        self.services: dict[str, ServiceListing] = {}  # publisher id → its services
        self.names: dict[str, str] = {}  # active member id → name
        self.users: Counter[str] = Counter()  # member id → channels spliced to it, idle or not
        self._up: set[Origin] = set()
        self._message: DirectoryMessage | None = None  # exits_message() until what it shows changes
        # exit id → (its listing, its users, its entry, the entry's bytes in the message and a comma)
        self._entries: dict[str, tuple[ExitListing, int, ExitEntry, int]] = {}

    # ------------------------------------------------------------- origins

    def origin_up(self, origin: Origin) -> None:
        self._up.add(origin)

    def origin_down(self, origin: Origin) -> bool:
        """Its port went: its exits are withdrawn, its services shown offline. True if an exit went."""
        self._up.discard(origin)
        gone = [exit_id for exit_id, listing in self.exits.items() if listing.origin == origin]
        for exit_id in gone:
            del self.exits[exit_id]
        if gone:
            self._message = None
        return bool(gone)

    def is_up(self, origin: Origin) -> bool:
        return origin in self._up

    # --------------------------------------------------------------- exits

    def list_exit(self, listing: ExitListing) -> bool:
        """List or replace an exit; False when it is the record already listed (nothing to tell)."""
        old = self.exits.get(listing.id)
        if old is not None:
            if old.record == listing.record and old.origin == listing.origin:
                return False
            listing.accepting = old.accepting  # a new record says nothing of the exit's caps
        self.exits[listing.id] = listing
        self._message = None
        return True

    def set_accepting(self, exit_id: str, accepting: bool) -> bool:
        """What a listed exit said of its caps (unlisted: nothing); True if that is news."""
        listing = self.exits.get(exit_id)
        if listing is None or listing.accepting == accepting:
            return False
        listing.accepting = accepting
        self._message = None
        return True

    def count_channel(self, member_id: str, change: int) -> None:
        """A channel to `member_id` was spliced (+1) or closed (-1)."""
        self.users[member_id] += change
        if not self.users[member_id]:
            del self.users[member_id]
        if member_id in self.exits:
            self._message = None

    def exits_message(self) -> DirectoryMessage:
        """The `directory` every member gets: each exit's own signed record, plus what the hub knows.

        `users` counts the channels to it: members using it, idle or not. The
        hub cannot count their connections inside (nor should it), so only
        each user knows its own load on an exit.
        """
        if self._message is None:
            self._message = DirectoryMessage(self._fitting())
        return self._message

    def _fitting(self) -> tuple[ExitEntry, ...]:
        """Every accepting exit's entry if one message holds them all, else the nearest that fit.

        Each entry is made and measured once and kept while its listing and count stay: with a peer
        offering 10,000 exits, encoding them all again (and each alone) for every push and every
        member coming online took the hub's loop for most of a second each time
        (benchmarks/abuse.py, routes).
        """
        old, kept = self._entries, {}
        entries, sizes = [], []
        for x in self.exits.values():
            users = self.users[x.id]
            known = old.get(x.id)
            if known is None or known[0] is not x or known[1] != users:
                entry = ExitEntry(x.id, x.name, x.country, users, **x.record, hub=x.hub, hops=x.hops)
                known = (x, users, entry, len(encode(DirectoryMessage((entry,)))) - _EMPTY + 1)
            kept[x.id] = known
            if x.accepting:
                entries.append(known[2])
                sizes.append(known[3])
        self._entries = kept
        if _EMPTY + sum(sizes) - 1 <= MAX_CONTROL:
            return tuple(entries)
        return _nearest_that_fit(entries, sizes)

    # ------------------------------------------------------- other hubs'

    def is_local(self, member_id: str) -> bool:
        """Whether what is listed of the member came over its own link to this hub."""
        listed = self.exits.get(member_id) or self.services.get(member_id)
        return listed is not None and listed.origin.kind == "member"

    def set_remote(self, member_id: str, exit: ExitListing | None, services: ServiceListing | None) -> None:
        """What the best route says of another hub's member now (None, None: no route is left). A
        member listed by its own link here keeps that listing."""
        if self.is_local(member_id):
            return
        if exit is None:
            if self.exits.pop(member_id, None) is not None:
                self._message = None
        else:
            self.list_exit(exit)
        if services is None:
            self.services.pop(member_id, None)
        else:
            self.services[member_id] = services

    # ------------------------------------------------------------ services

    def list_services(self, publisher_id: str, entries: list[dict], origin: Origin) -> bool:
        """Replace what a publisher lists (none: it withdraws).

        False when nothing was listed and nothing is.
        """
        if entries:
            self.services[publisher_id] = ServiceListing(entries, origin)
            return True
        return self.services.pop(publisher_id, None) is not None

    def publishes(self, member_id: str) -> bool:
        """True when streams may be spliced to this member for its services: it lists some and is up."""
        listing = self.services.get(member_id)
        return listing is not None and listing.origin in self._up

    # -------------------------------------------------------------- roster

    def set_roster(self, names: dict[str, str]) -> set[str]:
        """The active members now; the services of members no longer in it go. Returns those members' ids.
        (Other hubs' members are in no roster here: their routes list them.)"""
        self.names = dict(names)
        gone = {member_id for member_id, listing in self.services.items()
                if member_id not in self.names and listing.origin.kind == "member"}
        for member_id in gone:
            del self.services[member_id]
        return gone


_EMPTY = len(encode(DirectoryMessage(())))  # bytes of a directory without exits


def _nearest_that_fit(entries: list[ExitEntry], sizes: list[int]) -> tuple[ExitEntry, ...]:
    """The exits one `directory` can carry, nearest first (this hub's own, then by hops), in their order.

    The directory is one control message: a peer hub offering more exits than fit once made every push
    fail (LocalProtocolError), so members heard no directory at all any more (benchmarks/abuse.py, routes).
    """
    room = MAX_CONTROL - _EMPTY
    kept = set()
    for i in sorted(range(len(entries)), key=lambda i: entries[i].hops):
        size = sizes[i]  # its JSON and a comma
        if size <= room:
            room -= size
            kept.add(i)
    return tuple(entry for i, entry in enumerate(entries) if i in kept)
