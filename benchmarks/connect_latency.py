#!/usr/bin/env python3
"""A new connection + 1 KiB fetch through Ladder's HTTP proxy (CONNECT) and SOCKS5, one or more releases.

    python benchmarks/connect_latency.py [--src DIR ...] [--fetches 1000] [--rounds 3] [--keep]

For each --src (a Ladder source tree's src/ folder; default: this work tree's), a hub, a
sharer and a user start with the real CLI at their defaults, that tree on PYTHONPATH, all
against one nginx origin. Each round makes FETCHES sequential fresh connections (connect, proxy
handshake, GET /1k, full read, close, as compare.py's latency test) through each tree and proxy
kind, one fetch of each in turn (the order rotating), so that every way sees the same moment's
load on a shared machine. One JSON line per tree and kind goes to stdout: the median over the
rounds of each round's p50 and p99 (ms), and every round's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from _common import (HERE, BenchError, Processes, Proxy, ladder_version, log, percentile, run_script,
                     small_fetch, start_ladder, start_origin, wait_fetch)

KINDS = ("http-connect", "socks5")
LATENCY_LIMIT = 600.0  # seconds for one series of fetches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", action="append", type=Path, help="a Ladder src/ folder (repeatable)")
    parser.add_argument("--fetches", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    trees = [path.resolve() for path in args.src or [HERE.parent / "src"]]
    missing = [str(tree) for tree in trees if not (tree / "ladder" / "__init__.py").exists()]
    if missing:
        print(f"connect_latency: no Ladder source in {', '.join(missing)}", file=sys.stderr)
        return 2

    def body(tmp: Path, procs: Processes) -> int:
        origin = start_origin(procs, tmp, 1024 * 1024)
        ports, versions = {}, {}
        for i, tree in enumerate(trees):
            os.environ["PYTHONPATH"] = str(tree)  # what the CLI and the three processes run
            versions[tree] = ladder_version()
            folder = tmp / f"tree{i}"
            folder.mkdir()
            ports[tree], _ = start_ladder(procs, folder, prefix=f"t{i}-")
            for kind in KINDS:
                wait_fetch(Proxy(kind, ports[tree]), origin.port)
        results: dict[tuple[Path, str], list[tuple[float, float]]] = {
            (tree, kind): [] for tree in trees for kind in KINDS}
        ways = list(results)
        for round_ in range(args.rounds):
            for way in ways:  # not counted: the channel to the exit is open and warm
                for _ in range(5):
                    small_fetch(Proxy(way[1], ports[way[0]]), origin.port)
            times: dict[tuple[Path, str], list[float]] = {way: [] for way in ways}
            deadline = time.monotonic() + LATENCY_LIMIT
            for i in range(args.fetches):  # one fetch each in turn, so all see the same moment's load
                for way in ways[i % len(ways):] + ways[:i % len(ways)]:
                    times[way].append(small_fetch(Proxy(way[1], ports[way[0]]), origin.port) * 1000)
                if time.monotonic() > deadline:
                    raise BenchError(f"round {round_ + 1}: {i + 1} fetches each in {LATENCY_LIMIT:g} s")
            for way in ways:
                ordered = sorted(times[way])
                p50, p99 = percentile(ordered, 50), percentile(ordered, 99)
                results[way].append((p50, p99))
                log(f"round {round_ + 1}: {versions[way[0]]} {way[1]}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        for (tree, kind), rounds in results.items():
            print(json.dumps({"src": str(tree), "ladder": versions[tree], "kind": kind,
                              "fetches": args.fetches,
                              "p50_ms": round(statistics.median(p for p, _ in rounds), 3),
                              "p99_ms": round(statistics.median(p for _, p in rounds), 3),
                              "rounds": [[round(p50, 3), round(p99, 3)] for p50, p99 in rounds],
                              "origin": origin.kind}))
        return 0

    return run_script("ladder-connect-", args.keep, body)


if __name__ == "__main__":
    sys.exit(main())
