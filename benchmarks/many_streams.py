#!/usr/bin/env python3
"""Ten thousand streams through Ladder at once: do they all work, and what does each cost?

    python benchmarks/many_streams.py [--streams 4096] [--batch 500] [--payload-bytes 64]
                                      [--open-limit 300] [--timeout 30]
                                      [--ladder-user-streams N] [--ladder-nofile inherit] [--keep]

Starts a hub, a sharer and a user with the real CLI (as compare.py does) and an
asyncio echo server, then, from a client in its own process (RLIMIT_NOFILE raised to the
hard limit), opens STREAMS SOCKS5 connections through the user agent to the echo server,
BATCH at a time, and holds them all open at once. Then it sends a distinct payload on every
one and checks that the whole payload comes back. Every failure is counted by kind
(connect refused, SOCKS5 refusal, reset, timeout, EOF, wrong bytes, EMFILE, ...).

Reported: the time to open them all; RSS and PSS (/proc/PID/smaps_rollup) of the hub, the
user agent and the sharer before, with all streams open, after the echo on each, and after
they are closed; memory per stream in KiB; open file descriptors of each at every step (they
tell streams still open from memory the allocator keeps after closing); each Ladder process's
RLIMIT_NOFILE and any "Too many open files" in its log. Progress and a summary go to stderr,
one JSON line to stdout. Exit code 0 only if every stream opened and echoed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

from _common import (LADDER_ROLES, BenchError, Holder, Processes, Proxy, descendants, ladder_version, log,
                     machine_info, memory_by_root, nofile_limit, open_fds, open_tunnel, recv_exact, run_script,
                     start_echo, start_ladder, uvloop_version)


def echo_probe(proxy: Proxy, port: int, timeout: float = 30.0) -> None:
    """One echo through the proxy, retried until it works (the path is up end to end)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open_tunnel(proxy, port, 10) as sock:
                sock.sendall(b"ping")
                if recv_exact(sock, 4) == b"ping":
                    return
        except (OSError, BenchError) as exc:
            if time.monotonic() > deadline:
                raise BenchError(f"no echo through the Ladder user agent within {timeout:g} s: {exc}") from None
        time.sleep(0.2)


def weigh(procs: Processes, names: dict[str, str], fds: dict[str, dict[str, int]], phase: str
          ) -> dict[str, tuple[int, int]]:
    """(RSS, PSS) in KiB of the hub, sharer and user (each with its descendants, if any).

    Also notes in fds[phase] how many file descriptors each holds open (one per TCP connection,
    so it tells streams still open from memory an allocator keeps).
    """
    roots = {role: procs.get(name).pid for role, name in names.items()}
    fds[phase] = {role: open_fds([pid, *descendants(pid)]) for role, pid in roots.items()}
    return memory_by_root(roots)


def emfile_lines(procs: Processes, names: dict[str, str]) -> dict[str, list[str]]:
    """Lines of each Ladder process's log that speak of running out of file descriptors."""
    found = {}
    for role, name in names.items():
        try:
            text = (procs.tmp / f"{name}.log").read_text(errors="replace")
        except OSError:
            continue
        lines = [l for l in text.splitlines() if "Too many open files" in l or "EMFILE" in l]
        if lines:
            found[role] = lines[:5] + ([f"... {len(lines) - 5} more"] if len(lines) > 5 else [])
    return found


def per_stream(before: dict, after: dict, n: int) -> dict:
    return {role: {"rss_KiB": round((after[role][0] - before[role][0]) / max(1, n), 2),
                   "pss_KiB": round((after[role][1] - before[role][1]) / max(1, n), 2)} for role in before}


def mib(snapshot: dict) -> dict:
    return {role: {"rss_MiB": round(rss / 1024, 1), "pss_MiB": round(pss / 1024, 1)}
            for role, (rss, pss) in snapshot.items()}


def run(args: argparse.Namespace, tmp: Path, procs: Processes) -> dict:
    echo_port = start_echo(procs)
    nofile = None if args.ladder_nofile == "inherit" else int(args.ladder_nofile)
    proxy_port, names = start_ladder(procs, tmp, prefix="", nofile_soft=nofile, user_streams=args.ladder_user_streams)
    proxy = Proxy("socks5", proxy_port)
    echo_probe(proxy, echo_port)
    limits = {role: nofile_limit(procs.get(name).pid) for role, name in names.items()}
    log("RLIMIT_NOFILE (soft/hard) of " + ", ".join(f"{r} {v}" for r, v in limits.items()))
    time.sleep(1.0)
    fds: dict[str, dict[str, int]] = {}
    before = weigh(procs, names, fds, "before")
    holder = Holder(procs, "client", proxy, echo_port, args.streams, args.batch, args.timeout, probe=False,
                    payload_bytes=args.payload_bytes, limit=args.open_limit)
    log(f"opening {args.streams} streams, {args.batch} at a time")
    try:
        opened = holder.wait_open(args.open_limit + args.timeout + 60)
        log(f"{opened['ok']} of {args.streams} open in {opened['seconds']:.1f} s; errors: {opened['errors'] or 'none'}")
        procs.check_alive(list(names.values()))
        time.sleep(1.0)
        with_open = weigh(procs, names, fds, "all_open")
        log(f"sending {args.payload_bytes} bytes on each open stream and checking the echo")
        checked = holder.check(args.open_limit + args.timeout + 60)
        log(f"{checked['ok']} of {opened['ok']} echoed in {checked['seconds']:.1f} s; "
            f"errors: {checked['errors'] or 'none'}")
        procs.check_alive(list(names.values()))
        after_echo = weigh(procs, names, fds, "after_echo")
    finally:
        holder.close()
    time.sleep(3.0)
    closed = weigh(procs, names, fds, "after_close")
    failed = args.streams - checked["ok"]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "streams": args.streams, "batch": args.batch, "payload_bytes": args.payload_bytes,
        "opened": opened["ok"], "open_errors": opened["errors"], "open_seconds": opened["seconds"],
        "echoed": checked["ok"], "echo_errors": checked["errors"], "echo_seconds": checked["seconds"],
        "failed": failed,
        "memory_MiB": {"before": mib(before), "all_open": mib(with_open), "after_echo": mib(after_echo),
                       "after_close": mib(closed)},
        "open_fds": fds,
        "per_stream_open_KiB": per_stream(before, with_open, opened["ok"]),
        "per_stream_after_echo_KiB": per_stream(before, after_echo, checked["ok"]),
        "ladder_nofile": limits, "ladder_emfile_log_lines": emfile_lines(procs, names),
        "sharer_user_streams": args.ladder_user_streams or "Ladder's default",
        "versions": {"ladder": ladder_version(), "python": platform.python_version(), "uvloop": uvloop_version()},
        "machine": machine_info(),
    }


def summary(result: dict) -> str:
    rows = [f"{result['streams']} streams through Ladder (user → hub → sharer → echo): "
            f"{result['opened']} opened in {result['open_seconds']:.1f} s, {result['echoed']} echoed, "
            f"{result['failed']} failed",
            f"errors opening: {result['open_errors'] or 'none'}; errors echoing: {result['echo_errors'] or 'none'}",
            "",
            f"{'process':<8} {'RSS before':>10} {'all open':>9} {'echoed':>8} {'closed':>8} {'KiB/stream':>10}"
            f" {'PSS before':>10} {'all open':>9} {'KiB/stream':>10} {'nofile':>12} {'fds open→closed':>16}"]
    mem = result["memory_MiB"]
    fds = result["open_fds"]
    for role in LADDER_ROLES:
        fds_text = f"{fds['all_open'][role]}→{fds['after_close'][role]}"
        rows.append(f"{role:<8} {mem['before'][role]['rss_MiB']:>8.1f}Mi {mem['all_open'][role]['rss_MiB']:>7.1f}Mi"
                    f" {mem['after_echo'][role]['rss_MiB']:>6.1f}Mi {mem['after_close'][role]['rss_MiB']:>6.1f}Mi"
                    f" {result['per_stream_open_KiB'][role]['rss_KiB']:>10.2f}"
                    f" {mem['before'][role]['pss_MiB']:>8.1f}Mi {mem['all_open'][role]['pss_MiB']:>7.1f}Mi"
                    f" {result['per_stream_open_KiB'][role]['pss_KiB']:>10.2f} {result['ladder_nofile'][role]:>12}"
                    f" {fds_text:>16}")
    if result["ladder_emfile_log_lines"]:
        rows.append("")
        rows.append("EMFILE in Ladder's logs:")
        for role, lines in result["ladder_emfile_log_lines"].items():
            rows += [f"  {role}: {line}" for line in lines]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--streams", type=int, default=4096,
                        help="streams held open at once (default 4096: what a sharer allows one member by default)")
    parser.add_argument("--batch", type=int, default=500, help="streams opened at a time (default 500)")
    parser.add_argument("--payload-bytes", type=int, default=64, help="bytes echoed on each stream (default 64)")
    parser.add_argument("--open-limit", type=float, default=300.0,
                        help="seconds to open all streams, and again to echo on all (default 300)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for one open or one echo (default 30)")
    parser.add_argument("--ladder-user-streams", type=int, default=0,
                        help="the sharer's --user-streams (0, the default: Ladder's own default)")
    parser.add_argument("--ladder-nofile", default="inherit",
                        help="soft RLIMIT_NOFILE the Ladder processes start with: a number (e.g. 1024, a "
                             "common default), or 'inherit' (this shell's; default). Ladder raises its soft "
                             "limit to the hard one at start, so the 'nofile' reported is what it runs with")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args()
    if args.streams < 1 or args.batch < 1 or args.payload_bytes < 9:
        parser.error("--streams ≥ 1, --batch ≥ 1, --payload-bytes ≥ 9")
    if args.ladder_nofile != "inherit" and not args.ladder_nofile.isdigit():
        parser.error("--ladder-nofile: a number or 'inherit'")
    results: list[dict] = []

    def body(tmp: Path, procs: Processes) -> int:
        results.append(run(args, tmp, procs))
        return 0 if results[0]["failed"] == 0 else 1

    code = run_script("ladder-streams-", args.keep, body)
    if results:  # after the cleanup, so that the summary ends the output
        print("\n" + summary(results[0]) + "\n", file=sys.stderr, flush=True)
        print(json.dumps(results[0]), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
