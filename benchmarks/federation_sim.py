#!/usr/bin/env python3
"""Many hubs, one network, simulated: the real routing core (protocol/routing.py) on a random peering graph.

    PYTHONPATH=src python3 benchmarks/federation_sim.py [--hubs 1000] [--members 100000] [--exits 10000]
        [--degree 4] [--seed 1] [--entry-us 15] [--verify-us 0] [--tracemalloc] [--max-wall 1200]

A discrete-event simulation (a heap of (time, seq, event)) in which every hub
is a real `Router`. The peering graph is random and connected (a random
spanning tree, then random extra links up to the average degree), seeded.
The exits are members spread over the hubs at random: they are the
destinations. Plain members are not routed (a hub announces only members
that share an exit or publish services), so `--members` only says how many
of them there are. Links have a latency drawn from 5-80 ms. Each hub drains
`take_messages()` at most every 100 ms (pacing, like BGP's MRAI, RFC 4271
§9.2.1.1), and processes a message in a modelled time (`--msg-us` per
message, `--entry-us` per route entry or withdrawal, `--verify-us` more
per route entry for the signature check: 0 by default, since verification
here is a dictionary look-up and not Ed25519), one message at a time.

Scenarios, one after the other on the same network:
  cold        every hub starts with its own exits and all links come up at t=0;
              converged = every hub routes to every exit along a shortest path (checked by BFS)
  hub-dies    a hub with exits dies; its neighbours see peer_down after a 3 s keepalive timeout;
              converged = nobody routes through it, its exits are gone everywhere, and every
              other route is a shortest path in the graph without it
  link-flaps  a link (both ends stay up) breaks, both ends see peer_down 3 s later, and it is
              back 10 s after it broke; converged = the shortest paths of the whole graph again

For each: simulated time to the last change of any hub's best route, and to
silence; Routes batches, control messages (batches split at 60,000 bytes
with an estimated entry size), route entries and withdrawals sent. Routing
memory per hub is a walk of one hub's Router (sys.getsizeof of every object
reachable from it, each counted once) plus an estimate of what a real hub
holds on top (its own copy of each learned entry's envelope strings);
`--tracemalloc` measures what routing.py allocated instead (slow: small
scales only). One JSON object goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import heapq
import json
import math
import platform
import random
import resource
import sys
import time
import tracemalloc
from collections import deque
from dataclasses import dataclass, field

from _common import log, machine_info

from ladder.protocol.control import MAX_CONTROL, RouteEntry, Routes
from ladder.protocol.routing import Announcement, Router

KEEPALIVE_DEAD = 3.0  # a peer is seen down this long after it died
FLAP_UP_AFTER = 10.0
PACING = 0.1  # seconds between two drains of one hub
LATENCY = (0.005, 0.080)
LIFETIME = 24 * 3600.0  # announcements outlive every scenario: expiry is the unit tests' business
MAX_SIM_SECONDS = 3600.0  # a scenario that has not fallen silent after this is reported as not converged
# Wire sizes estimated for a real hub's announcement (JSON in a CONTROL frame): the hub's signed
# envelope around the exit's signed record (record ~800 base64 characters, signature 88, pubkey 44),
# and 56 bytes per hub id in the path (a 52-character id, quotes, comma); a withdrawal is one id.
RECORD_CHARS, SIGNATURE_CHARS, PUBKEY_CHARS, ID_BYTES = 800, 88, 44, 56
ENTRY_BYTES = RECORD_CHARS + SIGNATURE_CHARS + PUBKEY_CHARS + 60
START = 1_800_000_000.0  # Unix seconds at t=0

# Event kinds, in the heap as (time, seq, kind, hub, peer, payload).
DELIVER, DRAIN, PEER_DOWN, PEER_UP = range(4)


@dataclass
class Tally:
    batches: int = 0
    messages: int = 0
    entries: int = 0
    withdrawals: int = 0
    bytes: int = 0
    received_entries: int = 0
    last_change: float = 0.0
    last_event: float = 0.0
    events: int = 0

    def report(self, start: float) -> dict:
        return {"converged_s": round(self.last_change - start, 3),
                "silent_s": round(self.last_event - start, 3),
                "routes_batches": self.batches, "control_messages": self.messages,
                "route_entries_sent": self.entries, "withdrawals_sent": self.withdrawals,
                "bytes_sent_estimated": self.bytes, "events": self.events}


@dataclass
class Network:
    hubs: list[str]
    links: dict[str, dict[str, float]]  # hub → peer → latency (seconds)
    exits: dict[str, str]  # exit member id → home hub
    routers: dict[str, Router] = field(default_factory=dict)
    alive: set[str] = field(default_factory=set)
    up: set[tuple[str, str]] = field(default_factory=set)  # links up, both directions
    epoch: dict[tuple[str, str], int] = field(default_factory=dict)  # a message from an earlier link is lost


def build(args: argparse.Namespace) -> Network:
    rng = random.Random(args.seed)
    hubs = [f"hub{i:05d}" for i in range(args.hubs)]
    links: dict[str, dict[str, float]] = {h: {} for h in hubs}

    def link(a: str, b: str) -> None:
        links[a][b] = links[b][a] = rng.uniform(*LATENCY)

    for i in range(1, len(hubs)):  # a random tree keeps the graph connected
        link(hubs[i], hubs[rng.randrange(i)])
    want = round(args.hubs * args.degree / 2)
    count = len(hubs) - 1
    for _ in range(want * 20):  # bounded: a dense small graph may not have room for every link
        if count >= want:
            break
        a, b = rng.sample(hubs, 2)
        if b not in links[a]:
            link(a, b)
            count += 1
    exits = {f"exit{i:06d}": rng.choice(hubs) for i in range(args.exits)}
    return Network(hubs, links, exits)


class Simulation:
    def __init__(self, net: Network, args: argparse.Namespace) -> None:
        self.net = net
        self.args = args
        self.heap: list[tuple[float, int, int, str, str, object]] = []
        self.seq = 0
        self.busy: dict[str, float] = dict.fromkeys(net.hubs, 0.0)
        self.last_drain: dict[str, float] = dict.fromkeys(net.hubs, -PACING)
        self.drain_due: set[str] = set()
        self.announcements: dict[str, Announcement] = {}  # record → what it says: the cheap verify
        self.tally = Tally()
        self.wall_deadline = time.monotonic() + args.max_wall
        self.msg_s = args.msg_us / 1e6
        self.entry_s = (args.entry_us + args.verify_us) / 1e6
        self.withdrawal_s = args.entry_us / 1e6

    # ------------------------------------------------------------------ set up

    def verify(self, entry: RouteEntry) -> Announcement:
        return self.announcements[entry.record]

    def announcement(self, member: str, home: str, seq: int) -> RouteEntry:
        record = f"{member}/{seq}"
        self.announcements[record] = Announcement(member, home, seq, START + LIFETIME)
        return RouteEntry(record=record, signature="sig", pubkey=home, path=(home,))

    def start(self) -> None:
        net = self.net
        for hub in net.hubs:
            net.routers[hub] = Router(hub, self.verify)
            net.alive.add(hub)
        for member, home in net.exits.items():
            net.routers[home].originate(self.announcement(member, home, 1), START)
        for a in net.hubs:
            for b in net.links[a]:
                self.link_up(a, b, 0.0)

    # ------------------------------------------------------------------ events

    def push(self, t: float, kind: int, hub: str, peer: str, payload: object = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, hub, peer, payload))

    def link_up(self, a: str, b: str, t: float) -> None:
        """The link comes up on a's side at `t` (the PEER_UP event makes it a new connection)."""
        self.push(t, PEER_UP, a, b)

    def link_broken(self, a: str, b: str, t: float) -> None:
        """The connection a-b breaks at `t`: what is in flight is lost; each end notices later."""
        for x, y in ((a, b), (b, a)):
            self.net.up.discard((x, y))
            self.net.epoch[(x, y)] = self.net.epoch.get((x, y), 0) + 1
            if x in self.net.alive:
                self.push(t + KEEPALIVE_DEAD, PEER_DOWN, x, y)

    def dirty(self, hub: str, t: float) -> None:
        if hub not in self.drain_due:
            self.drain_due.add(hub)
            self.push(max(t, self.last_drain[hub] + PACING), DRAIN, hub, "")

    def run(self, limit: float) -> bool:
        """Process the events up to `limit` (simulated); False if the wall-clock limit came first."""
        heap, net, tally = self.heap, self.net, self.tally
        routers, alive, epoch = net.routers, net.alive, net.epoch
        while heap:
            t, _, kind, hub, peer, payload = heapq.heappop(heap)
            if t > limit:
                heapq.heappush(heap, (t, 0, kind, hub, peer, payload))
                return True
            tally.events += 1
            if tally.events % 20000 == 0 and time.monotonic() > self.wall_deadline:
                log(f"wall-clock limit reached at simulated t={t:.1f}")
                return False
            if hub not in alive:
                continue
            router = routers[hub]
            at = t
            if kind == DELIVER:
                message, sent_epoch = payload  # type: ignore[misc]
                if epoch.get((peer, hub)) != sent_epoch or (hub, peer) not in net.up:
                    continue  # the connection it was sent on is gone
                # One message at a time: it is taken when the hub is free, and done after its cost.
                done = max(t, self.busy[hub]) + self.msg_s + len(message.routes) * self.entry_s \
                    + len(message.withdrawn) * self.withdrawal_s
                self.busy[hub] = done
                router.receive(peer, message, done)
                tally.received_entries += len(message.routes)
                self.dirty(hub, done)
                at = done
            elif kind == DRAIN:
                self.drain_due.discard(hub)
                self.last_drain[hub] = t
                for to, message in router.take_messages():
                    self.send(hub, to, message, t)
            elif kind == PEER_DOWN:
                router.peer_down(peer, t)
                self.dirty(hub, t)
            elif kind == PEER_UP:
                net.up.add((hub, peer))
                epoch[(hub, peer)] = epoch.get((hub, peer), 0) + 1  # a new connection
                router.peer_up(peer, t)
                self.dirty(hub, t)
            if router.take_changes():
                tally.last_change = at
            tally.last_event = at
        return True

    def send(self, hub: str, to: str, message: Routes, t: float) -> None:
        tally = self.tally
        size = sum(ENTRY_BYTES + ID_BYTES * len(e.path) for e in message.routes) \
            + ID_BYTES * len(message.withdrawn)
        tally.batches += 1
        tally.messages += max(1, math.ceil(size / MAX_CONTROL))
        tally.entries += len(message.routes)
        tally.withdrawals += len(message.withdrawn)
        tally.bytes += size
        self.push(t + self.net.links[hub][to], DELIVER, to, hub, (message, self.net.epoch[(hub, to)]))

    def scenario(self, name: str, start: float, until: float | None = None) -> dict:
        """Run from `start` until silence, or `until` (the next scenario's first event), and report.

        Finished: silent before the limit (an hour, or `until`) and within the wall-clock limit.
        """
        self.tally = Tally(last_change=start, last_event=start)
        wall = time.monotonic()
        limit = start + MAX_SIM_SECONDS if until is None else until
        in_time = self.run(limit)
        silent = not self.heap or (until is not None and self.heap[0][0] >= until)
        report = {"scenario": name, "finished": in_time and silent, **self.tally.report(start),
                  "wall_s": round(time.monotonic() - wall, 1)}
        log(f"{name}: {report}")
        return report

    # ------------------------------------------------------------------ checks

    def check(self, dead: str | None = None, without: tuple[str, str] | None = None) -> dict:
        """Every live hub routes to every exit it can reach, along a shortest path, never through `dead`
        (nor over the link `without`)."""
        net = self.net
        homes = set(net.exits.values())
        dist = {home: bfs(net, home, dead, without) for home in homes if home != dead}
        wrong = missing = through_dead = 0
        for hub, router in net.routers.items():
            if hub == dead:
                continue
            for member, home in net.exits.items():
                best = router.best(member)
                if home == dead or hub not in dist[home]:
                    if best is not None:
                        wrong += 1
                    continue
                if best is None:
                    missing += 1
                elif best.hops != dist[home][hub]:
                    wrong += 1
                elif dead is not None and dead in best.entry.path:
                    through_dead += 1
        return {"missing": missing, "not_shortest_or_stale": wrong, "through_dead_hub": through_dead,
                "ok": missing == wrong == through_dead == 0}


def bfs(net: Network, source: str, dead: str | None,
        without: tuple[str, str] | None = None) -> dict[str, int]:
    """Hops from `source` to each hub it reaches, without the hub `dead` and the link `without`."""
    dist = {source: 0}
    queue = deque([source])
    cut = {without, without[::-1]} if without else set()
    while queue:  # bounded: each hub enters the queue once
        hub = queue.popleft()
        for peer in net.links[hub]:
            if peer not in dist and peer != dead and (hub, peer) not in cut:
                dist[peer] = dist[hub] + 1
                queue.append(peer)
    return dist


def deep_size(root: object) -> tuple[int, dict[str, int]]:
    """Bytes of every object reachable from `root` (each once), and the count of each type."""
    seen: set[int] = set()
    total = 0
    counts: dict[str, int] = {}
    stack = [root]
    skip = (type, type(deep_size), type(sys), type(Router.best))
    while stack:  # bounded: each object is visited once
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip) or (callable(obj) and not isinstance(obj, Router)):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        name = type(obj).__name__
        counts[name] = counts.get(name, 0) + 1
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset, deque)):
            stack.extend(obj)
        elif isinstance(obj, (str, int, float, bool, bytes)) or obj is None:
            pass
        else:
            slots = [s for cls in type(obj).__mro__ for s in getattr(cls, "__slots__", ())]
            stack.extend(getattr(obj, s) for s in slots if hasattr(obj, s))
            if hasattr(obj, "__dict__"):
                stack.append(obj.__dict__)
    return total, counts


def memory(sim: Simulation, hub: str) -> dict:
    router = sim.net.routers[hub]
    table, counts = deep_size(router)
    destinations = sum(1 for _ in router.destinations())
    learned = sum(s.learned for s in router.stats.values())
    # A real hub decodes each entry it receives into strings of its own, and its verifier makes an
    # Announcement (with its body) for each: the simulation shares those between hubs and peers.
    strings = sum(sys.getsizeof("x" * n) for n in (RECORD_CHARS, SIGNATURE_CHARS, PUBKEY_CHARS))
    announcement = sys.getsizeof(next(iter(sim.announcements.values())))
    real = table + learned * (strings + announcement)
    return {"hub": hub, "peers": len(sim.net.links[hub]), "destinations": destinations,
            "routes_held": learned, "table_bytes_walked": table,
            "bytes_per_destination": round(table / max(1, destinations)),
            "real_hub_estimate_bytes": real, "objects": counts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hubs", type=int, default=1000)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--exits", type=int, default=10_000)
    parser.add_argument("--degree", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--msg-us", type=float, default=50.0, help="modelled cost of one message")
    parser.add_argument("--entry-us", type=float, default=15.0, help="modelled cost of one entry")
    parser.add_argument("--verify-us", type=float, default=0.0, help="modelled Ed25519 check per entry")
    parser.add_argument("--scenarios", default="cold,hub-dies,link-flaps")
    parser.add_argument("--tracemalloc", action="store_true", help="measure routing.py's allocations")
    parser.add_argument("--max-wall", type=float, default=1200.0, help="seconds of wall clock at most")
    args = parser.parse_args()
    if args.hubs < 2 or args.degree < 1 or not 0 <= args.exits <= args.members:
        parser.error("need at least 2 hubs, a degree of at least 1, and no more exits than members")
    gc.disable()  # tens of millions of small objects and no cycles: the collector would only rescan them
    if args.tracemalloc:
        tracemalloc.start()
    wall = time.monotonic()
    cpu = time.process_time()
    net = build(args)
    sim = Simulation(net, args)
    rng = random.Random(args.seed + 1)
    degrees = sorted(len(p) for p in net.links.values())
    log(f"{args.hubs} hubs, {sum(degrees) // 2} links (degree {degrees[0]}-{degrees[-1]}), "
        f"{args.exits} exits")
    result: dict = {
        "benchmark": "federation_sim", "date": datetime.date.today().isoformat(),
        "python": platform.python_version(), "machine": machine_info(),
        "parameters": {k: v for k, v in vars(args).items() if k not in ("scenarios", "tracemalloc")},
        "graph": {"links": sum(degrees) // 2, "degree_min": degrees[0],
                  "degree_median": degrees[len(degrees) // 2], "degree_max": degrees[-1],
                  "eccentricity_of_hub0": max(bfs(net, net.hubs[0], None).values())},
        "scenarios": [],
    }
    scenarios = args.scenarios.split(",")
    sim.start()
    report = sim.scenario("cold", 0.0)
    report["check"] = sim.check()
    report["received_entries"] = sim.tally.received_entries
    result["scenarios"].append(report)
    median_hub = min(net.hubs, key=lambda h: (abs(len(net.links[h]) - degrees[len(degrees) // 2]), h))
    result["memory"] = memory(sim, median_hub)
    if args.tracemalloc:
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*routing.py")])
        allocated = sum(stat.size for stat in snapshot.statistics("filename"))
        result["memory"]["tracemalloc_routing_py_bytes_per_hub"] = round(allocated / args.hubs)
    now = sim.tally.last_event + 60.0
    if "hub-dies" in scenarios:
        homes = sorted(set(net.exits.values()))
        dead = rng.choice([h for h in homes if all(len(net.links[p]) > 1 for p in net.links[h])])
        log(f"{dead} dies at t={now:.1f} ({len(net.links[dead])} peers)")
        net.alive.discard(dead)
        for peer in net.links[dead]:
            sim.link_broken(dead, peer, now)
        report = sim.scenario("hub-dies", now)
        report.update(hub=dead, hub_peers=len(net.links[dead]), check=sim.check(dead))
        result["scenarios"].append(report)
        # Back to the whole network for the next scenario: the hub restarts with its exits.
        net.alive.add(dead)
        sim.net.routers[dead] = Router(dead, sim.verify)
        for member, home in net.exits.items():
            if home == dead:
                sim.net.routers[dead].originate(sim.announcement(member, home, 2), now)
        now = sim.tally.last_event + 60.0
        for peer in net.links[dead]:
            sim.link_up(dead, peer, now)
            sim.link_up(peer, dead, now)
        report = sim.scenario("hub-restarts", now)
        report["check"] = sim.check()
        result["scenarios"].append(report)
        now = sim.tally.last_event + 60.0
    if "link-flaps" in scenarios:
        a = rng.choice(net.hubs)
        b = rng.choice(sorted(net.links[a]))
        log(f"link {a}-{b} breaks at t={now:.1f}, back at t={now + FLAP_UP_AFTER:.1f}")
        sim.link_broken(a, b, now)
        sim.link_up(a, b, now + FLAP_UP_AFTER)
        sim.link_up(b, a, now + FLAP_UP_AFTER)
        report = sim.scenario("link-down", now, until=now + FLAP_UP_AFTER - 1e-6)
        report.update(link=[a, b], check=sim.check(without=(a, b)))
        result["scenarios"].append(report)
        report = sim.scenario("link-back", now + FLAP_UP_AFTER)
        report.update(link=[a, b], check=sim.check())
        result["scenarios"].append(report)
    result["wall_s"] = round(time.monotonic() - wall, 1)
    result["cpu_s"] = round(time.process_time() - cpu, 1)
    result["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    entries = sum(s.get("received_entries", 0) for s in result["scenarios"])
    result["cold_verify_cpu_s_per_hub_at_70us"] = round(entries * 70e-6 / args.hubs, 2)
    print(json.dumps(result))
    return 0 if all(s["check"]["ok"] and s["finished"] for s in result["scenarios"]) else 1


if __name__ == "__main__":
    sys.exit(main())
