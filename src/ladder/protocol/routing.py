"""Routing between hubs: which peer leads to each destination, as a sans-IO path-vector table.

Theory of operation. A `Router` sits in one hub. Each hub is the home of
some members; a member that shares an exit or publishes services is a
destination, and its home hub signs an announcement for it (records.py).
Announcements go in (`originate` for our own members, `receive` for what a
peer sends), events happen (`peer_up`, `peer_down`, `failed`, `expire`), and
the router answers with messages to send (`take_messages`) and the members
whose best route changed (`take_changes`). Time is passed in; nothing here
sends, sleeps or knows a socket, so the hub and benchmarks/federation_sim.py
run the same code. The router knows hubs, members and paths; it knows
nothing of links, streams or what an announcement says (its `body` is
opaque: the hub's verifier makes it, the hub's directory reads it).

Why path vectors. Each route carries the list of hubs it came through, the
home hub first, and each hub appends itself when it passes the route on
(BGP's AS_PATH, RFC 4271 §5.1.2). A hub that finds itself in a path refuses
it: that route would lead back to it. So a loop cannot form from what hubs
say, however the links change, and there is no counting to infinity as in
distance-vector protocols (RFC 1058 §2.2); the length of the path is the
metric, and the shortest wins. A path longer than `hop_limit` is refused
too, so a table that is still settling cannot grow a path without end; the
hub puts the same limit in each OPEN, so that a stream cannot circle while
routes move.

Which route. Every peer's route for a destination is kept, sorted: one that
an open has just failed through (`failed`, for ROUTE_FAILURE_MEMORY seconds)
comes last, then the shorter path, then the newer announcement (higher
seq), then the lower peer id, so that every hub decides the same way from
the same inputs. A route we originate is always first. When the first one
changes, peers hear it; when it fails, the next one is already known, so
rerouting needs no new message from anyone.

What peers are told. Each up peer is told our best route for each
destination (its path with our id appended), except a peer that is in
that path (split horizon, RFC 1058 §2.2.1: it would refuse it anyway, and
for the peer we learned it from it would mean "reach it through me",
which is false): if that peer had been told an earlier route, it gets a
withdrawal instead. Withdrawals are explicit: a member gone at its home,
or a peer link that is down, or a route that expired, removes the route,
and every hub that had passed it on passes the withdrawal or its own next
best on, so withdrawals spread as far as the route did. A peer offers
one route per member, so an entry from it that is refused (a loop, too
long, stale) withdraws the one it offered before. The router
remembers what each peer holds (the one entry it advertises per
destination, and which peers were told it), so nothing is said twice:
messages queued for a peer between two `take_messages()` calls are merged
into one `Routes` by comparing what the peer will hold with what it held at
the last call. A route changing and changing back in between says nothing.

Sequence numbers and expiry. The home hub numbers its announcements for a
member; a hub keeps the highest number it has seen for (member, home) and
drops anything lower ("stale"), so a peer cannot replay an old
announcement (an old exit key, a revoked member's last record) in place of
the current one. Each announcement also expires (the home re-announces
before); `expire(now)` drops routes whose announcement ran out, so a home
that vanishes without a word, or a peer that withholds its withdrawal, is
forgotten within one announcement lifetime. The number is remembered for
as long as the announcement it came with is valid, which is as long as a
replay of an older one could be accepted; only the number is kept then, not
what the announcement said (a flooding peer's 10,000 members, gone with its
link, kept 17 MiB of their records alive for those ten minutes; the numbers
alone are 4 MiB).

A lying or failing hub. It cannot forge an announcement or the records in
it (the verifier checks the home hub's signature, and the records their
members' signatures: "forged", counted per peer in `stats`), replay an
older one ("stale"), nor make another hub take a route through itself that
comes back to it ("loop"). It can lie about the path: claim a shorter one
to attract traffic, or drop what it should pass on. Drawn traffic is still
end-to-end encrypted to the member the signed records name, so the liar
can read nothing; it can only drop it, and a dropped open makes the hub
call `failed`, which moves that route last, so the next open goes the other
way. What it cannot hide is itself: it can shorten a path but must append
itself (the last hub of a path must be the peer that sent it, or the route
is "forged"), so a path always names the hub the traffic will enter.

Cost. Each entry a peer sends costs its verification (the hub's: two
signatures), so how many a peer may send is bounded where it is read (the
hub's peer links have a control budget). A peer holding its ROUTES_PER_PEER
destinations already, offering a new one, is refused before the check: the
member an entry names is read unchecked (`claims`), since the entry is
refused whatever its signatures prove, and it changes nothing but the count.

Size. A destination costs one small object, its routes (one per peer that
offers it), and the one entry we advertise, whose path tuple all peers'
messages share; the simulation holds 1,000 of these tables in one process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .control import RouteEntry, Routes
from .envelope import RecordError
from .errors import LocalProtocolError

HOP_LIMIT = 16  # longest path accepted (and the OPEN hop limit the hub uses)
ROUTE_FAILURE_MEMORY = 60.0  # a route whose opens failed is tried last for this long
# Destinations one peer may offer: a peer announcing ever new members, each validly signed by itself
# as their home, grew the table by every one of them until they expired (benchmarks/abuse.py, routes).
ROUTES_PER_PEER = 10_000


@dataclass(frozen=True, slots=True)
class Announcement:
    """What the verifier makes of a RouteEntry's envelope: whose route it is, from which home, how new."""

    member: str  # the destination's member id
    home: str  # the home hub's id (the signer)
    seq: int  # grows with every new announcement from that home for that member
    expires: float  # Unix seconds
    body: Any = None  # the verified content (records, names): opaque to the router


@dataclass(frozen=True, slots=True)
class Route:
    """One way to a destination: its announcement, the entry as it came (with its path), the peer."""

    announcement: Announcement
    entry: RouteEntry  # as received (or originated); passed on with our id appended
    via: str | None  # the peer hub id it came from; None: originated here (we are home)

    @property
    def hops(self) -> int:
        """Hubs between us and the home hub (0 if we are it)."""
        return 0 if self.via is None else len(self.entry.path)


@dataclass(slots=True)
class PeerStats:
    """What a peer gave us: routes held from it now, and what we refused from it, by reason."""

    learned: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


class _Destination:
    """One member's routes (best first), the entry we advertise for it, and the peers told it."""

    __slots__ = ("routes", "out", "holders", "latest", "homes")

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.out: RouteEntry | None = None  # what up peers in `holders` were told
        self.holders: tuple[str, ...] = ()
        self.latest: Announcement | None = None  # the highest seq seen (from its home)
        self.homes: dict[str, Announcement] | None = None  # the same for other homes, if ever any

    def seen(self, home: str) -> Announcement | None:
        if self.latest is not None and self.latest.home == home:
            return self.latest
        return self.homes.get(home) if self.homes else None

    def remember(self, ann: Announcement) -> None:
        ann = Announcement(ann.member, ann.home, ann.seq, ann.expires)  # the number, not the records
        latest = self.latest
        if latest is None or latest.home == ann.home:
            if latest is None or ann.seq > latest.seq:
                self.latest = ann
            return
        if self.homes is None:
            self.homes = {}
        known = self.homes.get(ann.home)
        if known is None or ann.seq > known.seq:
            self.homes[ann.home] = ann

    def forget(self, now: float) -> None:
        """Let go of sequence numbers whose announcement expired: an older one cannot pass any more."""
        if self.homes:
            self.homes = {h: a for h, a in self.homes.items() if a.expires > now} or None
        if self.latest is not None and self.latest.expires <= now:
            self.latest = None
            if self.homes:
                self.latest = self.homes.pop(next(iter(self.homes)))
                self.homes = self.homes or None


def _first_of(routes: list[Route]) -> Route | None:
    return routes[0] if routes else None


class Router:
    """One hub's routing table: announcements and peer events in, messages and changes out."""

    def __init__(self, hub_id: str, verify: Callable[[RouteEntry], Announcement],
                 hop_limit: int = HOP_LIMIT, per_peer: int = ROUTES_PER_PEER,
                 claims: Callable[[RouteEntry], str | None] | None = None) -> None:
        """`verify` makes an entry's Announcement or raises RecordError; `claims`, if given, reads the
        member an entry names without checking it (None: unreadable), to refuse a full peer's new
        destinations without verifying them."""
        self.hub_id = hub_id
        self.hop_limit = hop_limit
        self.per_peer = per_peer
        self.stats: dict[str, PeerStats] = {}
        self._verify = verify  # raises RecordError for a forged or malformed entry
        self._claims = claims
        self._dests: dict[str, _Destination] = {}
        # Up peers → member → what that peer held at the last take_messages() (None: nothing).
        self._pending: dict[str, dict[str, RouteEntry | None]] = {}
        self._failed: dict[tuple[str, str], float] = {}  # (member, peer) → when an open via it failed
        self._changes: set[str] = set()

    # ------------------------------------------------ local destinations

    def originate(self, entry: RouteEntry, now: float) -> None:
        """Announce our own member (or re-announce it, with a higher seq): replaces our previous one."""
        if entry.path != (self.hub_id,):
            raise LocalProtocolError(f"an originated route's path must be ({self.hub_id!r},)")
        ann = self._verify(entry)
        if ann.home != self.hub_id:
            raise LocalProtocolError("an originated route must be signed by this hub")
        dest = self._dests.get(ann.member)
        if dest is None:
            dest = self._dests[ann.member] = _Destination()
        dest.remember(ann)
        before = _first_of(dest.routes)
        dest.routes = [r for r in dest.routes if r.via is not None]
        dest.routes.insert(0, Route(ann, entry, None))
        self._settle(ann.member, dest, before)

    def withdraw(self, member: str) -> None:
        """Our member is no longer a destination (offline, revoked, no records): peers hear it."""
        dest = self._dests.get(member)
        if dest is not None and dest.routes and dest.routes[0].via is None:
            before = dest.routes.pop(0)
            self._settle(member, dest, before)

    # ---------------------------------------------------------- peers

    def peer_up(self, peer: str, now: float) -> None:
        """A peer link is up: it is told our whole table. A peer already up is first taken down."""
        if peer in self._pending:
            self.peer_down(peer, now)
        queued: dict[str, RouteEntry | None] = {}
        self._pending[peer] = queued
        self.stats.setdefault(peer, PeerStats())
        for member, dest in self._dests.items():
            out = dest.out
            if out is not None and peer not in out.path:
                queued[member] = None
                dest.holders += (peer,)

    def peer_down(self, peer: str, now: float) -> None:
        """A peer link is gone: every route through it is withdrawn, and what it was told is forgotten."""
        if self._pending.pop(peer, None) is None:
            return
        stats = self.stats[peer]
        for member, dest in self._dests.items():
            if peer in dest.holders:
                dest.holders = tuple(p for p in dest.holders if p != peer)
            self._remove(member, dest, peer, stats)

    def receive(self, peer: str, message: Routes, now: float) -> None:
        """A peer's routes and withdrawals; what fails a check is dropped and counted in stats[peer]."""
        if peer not in self._pending:
            raise LocalProtocolError(f"routes from {peer!r}, which is not up (peer_up first)")
        stats = self.stats[peer]
        for member in message.withdrawn:
            dest = self._dests.get(member)
            if dest is not None:
                self._remove(member, dest, peer, stats)
        for entry in message.routes:
            reason = self._learn(peer, entry, now, stats)
            if reason is not None:
                stats.dropped[reason] += 1

    def _learn(self, peer: str, entry: RouteEntry, now: float, stats: PeerStats) -> str | None:
        """Take one entry from a peer; the reason it is dropped, or None.

        A peer offers one route per member, so a verified entry that is
        refused still replaces what that peer offered before: its earlier
        route is withdrawn (in BGP a new route replaces the peer's old one,
        RFC 4271 §3.1, and one with a looped AS_PATH is left out of the
        decision, §9.1.2: the old one is gone either way). Without this, a hub whose
        peer's path grew past the hop limit while a dead home's routes are
        explored would keep the shorter, dead path for good.
        """
        if stats.learned >= self.per_peer and self._claims is not None:
            claimed = self._claims(entry)
            if claimed is not None and not self._offers(peer, claimed):
                return "full"  # refused whatever it proves: not worth two signature checks
        try:
            ann = self._verify(entry)
        except RecordError:
            return "forged"
        reason = self._refusal(peer, entry.path, ann, now)
        member = ann.member
        dest = self._dests.get(member)
        if reason is None and stats.learned >= self.per_peer and not self._offers(peer, member):
            reason = "full"  # a new destination past what one peer may offer
        if reason is not None:
            if dest is not None:
                self._remove(member, dest, peer, stats)
            return reason
        if dest is None:
            dest = self._dests[member] = _Destination()
        else:
            seen = dest.seen(ann.home)
            if seen is not None and ann.seq < seen.seq:
                self._remove(member, dest, peer, stats)
                return "stale"
        dest.remember(ann)
        path = entry.path
        routes = dest.routes
        before = routes[0] if routes else None
        new = Route(ann, entry, peer)
        for i, route in enumerate(routes):
            if route.via == peer:
                old = route.announcement
                if old.seq == ann.seq and old.home == ann.home and route.entry.path == path:
                    return None  # the same again: nothing changes
                routes[i] = new
                break
        else:
            routes.append(new)
            stats.learned += 1
        self._settle(member, dest, before)
        return None

    def _offers(self, peer: str, member: str) -> bool:
        """Whether `peer` holds a route to `member` here."""
        dest = self._dests.get(member)
        return dest is not None and any(route.via == peer for route in dest.routes)

    def _refusal(self, peer: str, path: tuple[str, ...], ann: Announcement, now: float) -> str | None:
        if self.hub_id in path or len(set(path)) != len(path):
            return "loop"
        if len(path) > self.hop_limit:
            return "too long"
        if not path or path[0] != ann.home or path[-1] != peer:
            return "forged"  # the home must be the signer, and the sender must have appended itself
        if ann.expires <= now:
            return "expired"
        return None

    def _remove(self, member: str, dest: _Destination, peer: str, stats: PeerStats) -> None:
        for i, route in enumerate(dest.routes):
            if route.via == peer:
                del dest.routes[i]
                stats.learned -= 1
                if i == 0:
                    self._settle(member, dest, route)
                return

    def expire(self, now: float) -> None:
        """Drop routes whose announcement expired, and end the demotions `failed` set long enough ago.

        The hub calls it every second or so. Our own expired announcements go
        too: peers would refuse them.
        """
        lapsed = {member for (member, _), when in self._failed.items()
                  if when + ROUTE_FAILURE_MEMORY <= now}
        if lapsed:
            self._failed = {k: v for k, v in self._failed.items() if v + ROUTE_FAILURE_MEMORY > now}
        gone = []
        for member, dest in self._dests.items():
            routes = dest.routes
            if any(r.announcement.expires <= now for r in routes):
                for route in routes:
                    if route.announcement.expires <= now and route.via is not None:
                        self.stats[route.via].learned -= 1
                dest.routes = [r for r in routes if r.announcement.expires > now]
                self._settle(member, dest, _first_of(routes))
            elif member in lapsed:
                self._settle(member, dest, _first_of(dest.routes))
            dest.forget(now)
            if not dest.routes and dest.latest is None and not dest.holders:
                gone.append(member)
        for member in gone:
            del self._dests[member]

    def failed(self, member: str, peer: str, now: float) -> None:
        """An open to `member` via `peer` failed: that route goes last for ROUTE_FAILURE_MEMORY seconds."""
        dest = self._dests.get(member)
        if dest is None or not any(r.via == peer for r in dest.routes):
            return
        self._failed[(member, peer)] = now
        self._settle(member, dest, _first_of(dest.routes))

    # -------------------------------------------------------- results

    def best(self, member: str, now: float | None = None) -> Route | None:
        """The route to use for `member`, or None; with `now`, never one whose announcement expired."""
        routes = self.routes(member, now)
        return routes[0] if routes else None

    def routes(self, member: str, now: float | None = None) -> list[Route]:
        """Every route to `member`, best first; with `now`, those whose announcement expired are left out."""
        dest = self._dests.get(member)
        if dest is None:
            return []
        if now is None:
            return list(dest.routes)
        return [r for r in dest.routes if r.announcement.expires > now]

    def destinations(self) -> Iterator[str]:
        """The members we have a route to."""
        return (member for member, dest in self._dests.items() if dest.routes)

    def take_messages(self) -> list[tuple[str, Routes]]:
        """What to send to each peer since the last call: one `Routes` each (the caller splits by size)."""
        messages = []
        for peer, queued in self._pending.items():
            if not queued:
                continue
            routes: list[RouteEntry] = []
            withdrawn: list[str] = []
            for member, before in queued.items():
                dest = self._dests.get(member)
                holds = dest.out if dest is not None and peer in dest.holders else None
                if holds is before or holds == before:
                    continue
                if holds is None:
                    withdrawn.append(member)
                else:
                    routes.append(holds)
            self._pending[peer] = {}
            if routes or withdrawn:
                messages.append((peer, Routes(routes=tuple(routes), withdrawn=tuple(withdrawn))))
        return messages

    def take_changes(self) -> set[str]:
        """The members whose best route changed (or went) since the last call."""
        changes, self._changes = self._changes, set()
        return changes

    # -------------------------------------------------------- internal

    def _rank(self, member: str, route: Route) -> tuple[bool, bool, int, int, str]:
        failed = bool(self._failed) and (member, route.via) in self._failed
        return (route.via is not None, failed, len(route.entry.path), -route.announcement.seq,
                route.via or "")

    def _settle(self, member: str, dest: _Destination, before: Route | None) -> None:
        """Put the best route first; if it is not `before` (the best until now), queue for each up
        peer what it should hold now."""
        routes = dest.routes
        if len(routes) > 1:
            routes.sort(key=lambda r: self._rank(member, r))
        best = routes[0] if routes else None
        if best is before:
            return
        self._changes.add(member)
        old_out = dest.out
        if best is None:
            out = None
        elif best.via is None:
            out = best.entry
        else:
            e = best.entry
            out = RouteEntry(record=e.record, signature=e.signature, pubkey=e.pubkey,
                             path=e.path + (self.hub_id,))
        if out is not None and out == old_out:
            return
        old_holders = dest.holders
        holders = []
        for peer, queued in self._pending.items():
            held = peer in old_holders
            if out is not None and peer not in out.path:
                holders.append(peer)
                if member not in queued:
                    queued[member] = old_out if held else None
            elif held and member not in queued:
                queued[member] = old_out
        dest.out = out
        dest.holders = tuple(holders)
