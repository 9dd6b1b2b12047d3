#!/usr/bin/env python3
"""What each Ladder role costs at start: import time, memory, and who holds it.

    PYTHONPATH=src python3 benchmarks/startup.py [--runs 3] [--settle 3] [--top 8] [--tracemalloc] [--keep]

Starts a hub, a sharer and a user on loopback with the real CLI (as compare.py does) under
`-X importtime`, waits until the user is up with an exit and SETTLE s more, and prints a JSON
line per role: the imports' self times summed in ms (after `site`, i.e. the interpreter's start
and this machine's .pth files), modules imported, RSS and PSS in MB (smaps_rollup), medians of
RUNS starts, and the TOP packages by import time (ladder's by subpackage). Ladder's bytecode is
compiled first into a cache in the temporary folder, as an installed package's is. With
--tracemalloc the roles start once more, traced (that RSS is not reported): each dumps a
snapshot on SIGUSR1 (a sitecustomize.py installs the handler); the line adds the TOP files by
memory still held, in KiB. Every wait is bounded; every process is stopped by pid."""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

from _common import (BenchError, Processes, compiled_bytecode, ladder_version, log, machine_info, memory_kib,
                     run_script, start_ladder)

SNAPSHOT_HOOK = """\
import os, signal, tracemalloc
_out = os.environ.get("LADDER_BENCH_SNAPSHOT")
if _out and tracemalloc.is_tracing():
    signal.signal(signal.SIGUSR1, lambda *_: tracemalloc.take_snapshot().dump(f"{_out}.{os.getpid()}"))
"""
SNAPSHOT_WAIT = 15.0  # an idle role runs Python at least every 5 s (the heap trim), so the handler runs


def import_times(log_text: str, top: int) -> dict:
    """The imports' self times summed (ms) after `site`, their count and the top packages."""
    lines = [line.removeprefix("import time:").split("|") for line in log_text.splitlines()
             if line.startswith("import time:") and "self [us]" not in line]
    names = [line[2].strip() for line in lines]
    kept = lines[names.index("site") + 1 if "site" in names else 0:]
    by_package: Counter[str] = Counter()
    for self_us, _, name in kept:
        parts = name.strip().split(".")
        package = ".".join(parts[:2]) if parts[0] == "ladder" and len(parts) > 1 else parts[0]
        by_package[package] += int(self_us)
    return {"import_ms": round(sum(by_package.values()) / 1000, 1), "modules": len(kept),
            "top_imports_ms": {name: round(us / 1000, 1) for name, us in by_package.most_common(top)}}


def top_allocations(path: Path, top: int) -> dict:
    """The files whose allocations a tracemalloc snapshot still holds, most first, in KiB."""
    stats = tracemalloc.Snapshot.load(str(path)).statistics("filename")
    found: Counter[str] = Counter()
    for stat in stats[:top]:
        name = stat.traceback[0].filename
        name = "(bytecode and module objects)" if name.startswith("<frozen importlib") else name
        for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
            name = name.split(marker, 1)[-1]
        found[name] += stat.size
    return {"traced_kib": round(sum(stat.size for stat in stats) / 1024),
            "top_alloc_kib": {name: round(size / 1024) for name, size in found.items()}}


def start_roles(tmp: Path, procs: Processes, prefix: str, settle: float) -> dict[str, int]:
    """Hub, sharer and user up (the user with an exit), then `settle` s of idling: role → pid."""
    _, names = start_ladder(procs, tmp / prefix, prefix=prefix)
    time.sleep(settle)
    procs.check_alive(list(names.values()))
    return {role: procs.get(name).pid for role, name in names.items()}


def snapshots(tmp: Path, procs: Processes, settle: float, top: int) -> dict[str, dict]:
    """The three roles again under tracemalloc: each one's top allocations after start."""
    hook = tmp / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SNAPSHOT_HOOK)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    os.environ.update(PYTHONTRACEMALLOC="1", LADDER_BENCH_SNAPSHOT=str(tmp / "snap"))
    os.environ.pop("PYTHONPROFILEIMPORTTIME", None)
    found = {}
    for role, pid in start_roles(tmp, procs, "traced-", settle).items():
        os.kill(pid, signal.SIGUSR1)
        path = tmp / f"snap.{pid}"
        deadline = time.monotonic() + SNAPSHOT_WAIT
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the dump's end
        if not path.exists():
            raise BenchError(f"{role} (pid {pid}) wrote no tracemalloc snapshot within {SNAPSHOT_WAIT:g} s")
        found[role] = top_allocations(path, top)
    return found


def measure(tmp: Path, procs: Processes, args: argparse.Namespace) -> dict[str, dict]:
    """RUNS starts of the three roles with compiled bytecode: a line per role, medians."""
    compiled_bytecode(tmp)
    os.environ["PYTHONPROFILEIMPORTTIME"] = "1"
    runs: dict[str, list[dict]] = {}
    for run in range(args.runs):
        for role, pid in start_roles(tmp, procs, f"run{run}-", args.settle).items():
            rss, pss = memory_kib([pid])
            text = (tmp / f"run{run}-{role}.log").read_text(errors="replace")
            runs.setdefault(role, []).append({**import_times(text, args.top), "rss_mb": round(rss / 1024, 1),
                                              "pss_mb": round(pss / 1024, 1)})
        procs.stop_all()
    keys = ("import_ms", "rss_mb", "pss_mb")
    return {role: {"role": role, "runs": len(found), **found[-1],
                   **{key: statistics.median(one[key] for one in found) for key in keys}}
            for role, found in runs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="Starts of the three roles; medians (3).")
    parser.add_argument("--settle", type=float, default=3.0, help="Seconds of idling after start (3).")
    parser.add_argument("--top", type=int, default=8, help="How many packages and files to list (8).")
    parser.add_argument("--tracemalloc", action="store_true", help="Also a traced run for allocations.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folder (logs).")
    args = parser.parse_args()
    args.runs = max(1, min(args.runs, 20))  # bounded
    common = {"version": ladder_version(), "python": sys.version.split()[0], **machine_info()}

    def body(tmp: Path, procs: Processes) -> int:
        lines = measure(tmp, procs, args)
        if args.tracemalloc:
            for role, found in snapshots(tmp, procs, args.settle, args.top).items():
                lines[role].update(found)
        for line in lines.values():
            print(json.dumps({**line, **common}), flush=True)
        rss, pss = (sum(line[key] for line in lines.values()) for key in ("rss_mb", "pss_mb"))
        log(f"total RSS {rss:.1f} MB, PSS {pss:.1f} MB over {len(lines)} processes (medians)")
        return 0

    return run_script("ladder-startup-", args.keep, body)


if __name__ == "__main__":
    sys.exit(main())
