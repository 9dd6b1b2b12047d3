#!/usr/bin/env python3
"""Ladder against other ways through a firewall, on one machine, against one origin.

    python benchmarks/compare.py [--rounds 4] [--systems direct,ladder,v2ray-local,...]
                                 [--size-mib 256] [--fetches 1000] [--rate-total 2000]
                                 [--rate-concurrency 100] [--idle-conns 1000] [--idle-seconds 30]
                                 [--cpu-hog] [--quick] [--keep] [--profile DIR [--native]]

Systems (every one on 127.0.0.1, each process started here and stopped by pid at the end):

* direct         client → origin
* ladder         client → user agent (SOCKS5) → hub → sharer's exit → origin, the real CLI
* ladder-device  client → Debian's trojan client (SOCKS5) → hub (Trojan + TLS; it runs the
                 device's agent) → sharer's exit → origin
* seed           client → sshd's -R port (HTTP CONNECT) → ssh → proxy.py 2.4.3 → origin
* v2ray-local    client → local v2ray (SOCKS5 in, VLESS + TLS out, the bridge's outbound
                 settings) → portal → bridge (VLESS + TLS, Mux.Cool) → origin: what a v2ray
                 user runs across a firewall, three processes like Ladder's
* v2ray-reverse  client → portal (SOCKS5) → bridge (VLESS + TLS, Mux.Cool) → origin: the same
                 reverse proxy with the client in plaintext at the portal, which no user across
                 a firewall runs; kept beside v2ray-local to show what the extra hop costs
* v2ray-trojan   client → Debian's trojan client (SOCKS5, ladder-device's config) → portal
                 (Trojan + TLS inbound) → bridge (VLESS + TLS, Mux.Cool) → origin: ladder-device's
                 shape, since v2ray's reverse proxy takes a Trojan inbound as its client side
                 (the portal stands where the hub does, the bridge where the sharer does)
* shadowsocks    client → ss-local (SOCKS5) → ss-server (chacha20-ietf-poly1305) → origin

Ladder runs at its shipped defaults only: `ladder hub init/run`, `ladder up` and `ladder hub
device add` get no setting beyond what a loopback run needs to work at all: the sharer's
`--share --country ZZ --allow-private --ports 1-65535` (the origin is on 127.0.0.1, which an
exit refuses by default, at a free port outside the default 80,443; ZZ is a label), the user's
`--proxy 127.0.0.1:PORT`, and `--dir`/`--listen`/`--public-address`/`--name` for folders,
ports and labels. No limit, buffer, worker or stream count is set (no `--user-streams`), and
any LADDER_* variable in the caller's environment (LADDER_RECEIPTS=off would turn credits off)
is dropped at start and named under params.ladder_env_dropped. If a user must change a setting
to get a figure, it is not Ladder's figure.

The origin is nginx (a Python server without it) serving /1k and /256m; an asyncio
echo server takes the idle connections. Each round measures every system in turn
(the order rotates from round to round), so all see the same machine state:

* bulk: one GET of /256m, 1 MiB reads, byte count and sha256 checked; MB/s (MB = 10**6),
  and the CPU every process of the system spent per MB (Ladder: hub, sharer, user apart).
* latency: FETCHES sequential fresh connections (proxy handshake, GET /1k, full read, close);
  p50/p99 ms.
* rate: RATE_TOTAL fetches as above, RATE_CONCURRENCY at a time, from an asyncio client in its
  own process; req/s and errors by kind.

Medians over the rounds are reported. After the rounds, once per system: IDLE_CONNS proxied
connections to the echo server, each carrying one echo; RSS and PSS (smaps_rollup) summed over
all the system's processes before and with them open; then, after IDLE_SECONDS idle, how many
still echo.

With --cpu-hog, after the rounds and before the memory test: ROUNDS more latency series per
system (the order rotating as before) while a busy loop holds one core, `stress-ng --cpu 1
--taskset N` (N: the last CPU this run may use) or, without stress-ng, a Python loop pinned
there. The hog ends by itself at an upper bound of the pass and is stopped by pid when the
pass ends. Each system gets cpu_hog: its hog p50/p99 and their growth (hog median ÷ quiet
median); the ratios compare growths too (p50_growth: this system's ÷ the reference's), and
params.cpu_hog says what ran and how much of its core it got (hog_core_share; the hog shares
its core with the systems measured, and with anything else the machine runs: on a quiet
machine a share far below 0.9 means the pass was gentler than it looks).

A table goes to stderr with the progress; stdout gets exactly one JSON line per system, with
its numbers and its ratios (this ÷ that) to v2ray-local (the first reference), v2ray-reverse
and the seed; ladder-device's also to v2ray-trojan, its like-for-like rival.

With --profile DIR, `py-spy record` is attached to Ladder's hub, sharer and user during the
first round's Ladder bulk transfer and, apart, during its rate test: DIR/bulk-hub.pyspy.txt,
DIR/rate-user.pyspy.txt, ... (raw: collapsed stacks) and DIR/*.top.txt, a summary of the
functions with the most samples (self and inclusive), also printed to stderr. --native adds C
frames (py-spy then pauses the process at each sample). Round 1's Ladder numbers carry py-spy's
overhead; the JSON says so under params.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from _common import (BIG_PATH, CHUNK, NGINX, BenchError, Holder, Processes, bulk, command_output, scheduler_counts,
                     cpu_seconds, descendants, first_line, latency, log, machine_info, memory_by_root, memory_kib,
                     percentile, pyspy_recording, run_rate, run_script, start_echo, start_origin, uvloop_version)
from _systems import SYSTEMS, Context, System, start_checked

# Ratio columns: this ÷ each of these. v2ray-local first: it is what a v2ray user runs.
REFERENCES = ("v2ray-local", "v2ray-reverse", "seed")
# A system's like-for-like rival besides the references: a device's stock Trojan client into
# the hub against the same client into v2ray's Trojan inbound.
PAIRS = {"ladder-device": "v2ray-trojan"}
QUICK = {"size_mib": 16, "fetches": 100, "rate_total": 300, "rate_concurrency": 50, "idle_conns": 200,
         "idle_seconds": 5, "rounds": 2}
DEFAULTS = {"size_mib": 256, "fetches": 1000, "rate_total": 2000, "rate_concurrency": 100, "idle_conns": 1000,
            "idle_seconds": 30, "rounds": 4}
LATENCY_LIMIT = 600.0  # seconds for one latency series
HOLD_BATCH = 100  # idle connections opened this many at a time
HOLD_TIMEOUT = 20.0  # one idle connection's open or echo
HOLD_LIMIT = 180.0  # opening (or checking) all idle connections of one system
# Before each weighing: time for every system to give back what the test before
# freed (Go's scavenger, glibc trims: Ladder trims its heap every 5 s).
SETTLE = 6.0
HOG_CPU = max(os.sched_getaffinity(0))  # --cpu-hog: the core the hog is pinned to, the last one we may use
HOG_SETTLE = 1.0  # seconds for the hog to take its core before the first series
HOG_MIN_SHARE = 0.9  # a hog that got less of its core than this is reported as weak
PROFILED_SYSTEM = "ladder"  # --profile: its processes, in round 1
PROFILED_ROUND = 1


class Record:
    """What was measured on one system, round by round."""

    def __init__(self, system: System, status: str = "ok", reason: str = ""):
        self.system = system
        self.status, self.reason = status, reason
        self.rounds: dict[str, list[float]] = {}
        self.rate_errors: Counter[str] = Counter()
        self.errors: list[str] = []
        self.bulk_ok = True
        self.memory: dict = {}
        self.startup_kib: tuple[int, int] | None = None  # (RSS, PSS) once started, before any test

    def add(self, key: str, value: float) -> None:
        self.rounds.setdefault(key, []).append(value)

    def median(self, key: str) -> float | None:
        values = self.rounds.get(key)
        return statistics.median(values) if values else None

    @property
    def active(self) -> bool:
        return self.status == "ok"


# ------------------------------------------------------------ measurement


def cpu_by_root(system: System) -> dict[str, float]:
    """CPU seconds so far of each process the system started, with its descendants'."""
    return {name: sum(cpu_seconds(p) for p in [pid, *descendants(pid)]) for name, pid in system.roots().items()}


def measure_bulk(rec: Record, args: argparse.Namespace, ctx: Context, r: int) -> None:
    system = rec.system
    before, client_before = cpu_by_root(system), os.times()
    mbps, got, sha_ok = bulk(system.proxy, ctx.origin)
    after, client_after = cpu_by_root(system), os.times()
    megabytes = got / 1e6
    rec.bulk_ok &= sha_ok and got == ctx.origin.size
    rec.add("bulk_MBps", mbps)
    per_root = {name: 1000 * (after[name] - before[name]) / megabytes for name in before}
    if per_root:  # direct has no processes of its own
        rec.add("cpu_ms_per_MB", sum(per_root.values()))
    rec.add("client_cpu_ms_per_MB", 1000 * ((client_after.user + client_after.system)
                                            - (client_before.user + client_before.system)) / megabytes)
    for name, ms in per_root.items():
        rec.add(f"cpu_ms_per_MB.{name}", ms)
    split = ", ".join(f"{name} {ms:.2f}" for name, ms in per_root.items())
    log(f"round {r} {system.name}: bulk {mbps:.0f} MB/s, sha256 {'ok' if sha_ok else 'MISMATCH'}"
        + (f"; CPU ms per MB: {split}" if split else ""))


def measure_latency(rec: Record, args: argparse.Namespace, ctx: Context, r: int, key: str = "") -> None:
    """A latency series; its p50 and p99 go under `key`p50_ms and `key`p99_ms, and per fetch, of the
    system's processes (all threads): their wakeups under `key`wakeups_per_fetch, and how long they
    waited for a core once woken under `key`run_delay_ms_per_fetch."""
    pids = rec.system.pids()
    switches, waited = scheduler_counts(pids)
    times = latency(rec.system.proxy, ctx.origin.port, args.fetches, LATENCY_LIMIT)
    switches_after, waited_after = scheduler_counts(pids)
    wakeups = (switches_after - switches) / args.fetches
    run_delay = (waited_after - waited) / 1e6 / args.fetches
    p50, p99 = percentile(times, 50), percentile(times, 99)
    rec.add(f"{key}p50_ms", p50)
    rec.add(f"{key}p99_ms", p99)
    if pids:
        rec.add(f"{key}wakeups_per_fetch", wakeups)
        rec.add(f"{key}run_delay_ms_per_fetch", run_delay)
    log(f"round {r} {rec.system.name}{' (' + key.strip('_') + ')' if key else ''}: {args.fetches} fetches "
        f"of 1 KiB, p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        + (f", {wakeups:.1f} wakeups and {run_delay:.3f} ms waiting for a core each" if pids else ""))


def measure_rate(rec: Record, args: argparse.Namespace, ctx: Context, r: int) -> None:
    limit = max(120.0, args.rate_total * 0.2)
    result = run_rate(rec.system.proxy, ctx.origin.port, args.rate_total, args.rate_concurrency, limit)
    rec.add("rate_rps", result["rps"])
    rec.add("rate_errors", sum(result["errors"].values()))
    rec.rate_errors.update(result["errors"])
    errors = ", ".join(f"{k}: {v}" for k, v in result["errors"].items()) or "none"
    log(f"round {r} {rec.system.name}: {args.rate_total} fetches, {args.rate_concurrency} at a time: "
        f"{result['rps']:.0f} req/s, errors {errors}")


PROFILED_MEASURES = (measure_bulk, measure_latency, measure_rate)


def profiling(rec: Record, args: argparse.Namespace, ctx: Context, r: int, measure):
    """py-spy on the system's processes around `measure` if --profile asks for this one."""
    if args.profile is None or rec.system.name != PROFILED_SYSTEM or r != PROFILED_ROUND \
            or measure not in PROFILED_MEASURES:
        return contextlib.nullcontext()
    label = measure.__name__.removeprefix("measure_")
    log(f"round {r} {rec.system.name}: py-spy on {', '.join(rec.system.roots())} during {label}")
    return pyspy_recording(ctx.procs, rec.system.roots(), args.profile, label, args.native)


def run_round(records: list[Record], args: argparse.Namespace, ctx: Context, r: int) -> None:
    live = [rec for rec in records if rec.active]
    shift = (r - 1) % max(1, len(live))
    for rec in live[shift:] + live[:shift]:  # a different system goes first each round
        for measure in (measure_bulk, measure_latency, measure_rate):
            if not rec.active:
                break
            try:
                rec.system.check_alive()
                with profiling(rec, args, ctx, r, measure):
                    measure(rec, args, ctx, r)
            except (BenchError, OSError, ValueError) as exc:
                fail(rec, ctx, f"round {r} {measure.__name__.removeprefix('measure_')}: "
                               f"{type(exc).__name__}: {exc}")


def fail(rec: Record, ctx: Context, message: str) -> None:
    """Note an error; a system whose processes died takes no further part."""
    rec.errors.append(message)
    log(f"{rec.system.name}: {message}")
    try:
        rec.system.check_alive()
    except BenchError as exc:
        rec.status, rec.reason = "failed", str(exc)
        log(f"{rec.system.name} is out: {exc}")
        ctx.procs.dump_logs(rec.system.names)


def hog_argv(seconds: float) -> tuple[list[str], str]:
    """The CPU hog's command line, pinned to HOG_CPU and gone by itself after `seconds`; what it is."""
    stress = shutil.which("stress-ng")
    if stress:
        return ([stress, "--cpu", "1", "--taskset", str(HOG_CPU), "--timeout", f"{math.ceil(seconds)}s",
                 "--quiet"], f"stress-ng --cpu 1 --taskset {HOG_CPU}")
    loop = (f"import os, time\nos.sched_setaffinity(0, {{{HOG_CPU}}})\nend = time.monotonic() + {seconds}\n"
            "while time.monotonic() < end:\n    pass\n")
    return [sys.executable, "-c", loop], f"a Python busy loop pinned to CPU {HOG_CPU}"


def hog_pass(records: list[Record], args: argparse.Namespace, ctx: Context) -> dict | None:
    """--cpu-hog: ROUNDS more latency series per system while a busy loop holds one core.

    The p50s and p99s go under hog_p50_ms and hog_p99_ms. The hog is started here, ends by
    itself at an upper bound of the pass's length, and is stopped by pid when the pass ends.
    What ran and how much of its core it got is returned (for params in the JSON).
    """
    live = [rec for rec in records if rec.active]
    if not live:
        return None
    bound = args.rounds * len(live) * LATENCY_LIMIT + 60
    argv, tool = hog_argv(bound)
    log(f"CPU hog pass: {tool}, {args.rounds} latency series per system")
    hog = ctx.procs.start("cpu-hog", argv)
    started, note = time.monotonic(), ""
    try:
        time.sleep(HOG_SETTLE)
        for r in range(1, args.rounds + 1):
            live = [rec for rec in live if rec.active]
            shift = (r - 1) % max(1, len(live))
            for rec in live[shift:] + live[:shift]:
                ctx.procs.check_alive(["cpu-hog"])
                try:
                    rec.system.check_alive()
                    measure_latency(rec, args, ctx, r, key="hog_")
                except (BenchError, OSError, ValueError) as exc:
                    fail(rec, ctx, f"hog round {r} latency: {type(exc).__name__}: {exc}")
    except BenchError as exc:  # the hog itself died: what was measured after it is not a hog figure
        note = f"the hog stopped early: {exc}"
        log(note)
    finally:
        seconds = time.monotonic() - started
        busy = sum(cpu_seconds(pid) for pid in [hog.pid, *descendants(hog.pid)])
        ctx.procs.stop_one("cpu-hog")
    share = busy / seconds if seconds > 0 else 0.0
    log(f"CPU hog pass: {seconds:.0f} s, the hog used {100 * share:.0f}% of a core"
        + ("" if share >= HOG_MIN_SHARE else " (it shared its core with the systems measured or other work)"))
    info = {"tool": tool, "cpu": HOG_CPU, "seconds": round(seconds, 1), "hog_core_share": round(share, 3)}
    return info | ({"note": note} if note else {})


def mb(kib: int) -> float:
    return round(kib * 1024 / 1e6, 1)


def memory_test(records: list[Record], args: argparse.Namespace, ctx: Context) -> None:
    """Open IDLE_CONNS echo connections through each system, weigh its processes, then idle and recheck.

    The systems are loaded one after the other and then all idle together; each is checked
    IDLE_SECONDS after its own connections were open.
    """
    holds: list[tuple[Record, Holder, float]] = []
    time.sleep(SETTLE)  # after the rounds, before the first baseline
    for rec in records:
        if not rec.active or not rec.system.names:  # direct has no processes to weigh
            continue
        system = rec.system
        try:
            system.check_alive()
            pids = system.pids()
            base, base_by_root = memory_kib(pids), memory_by_root(system.roots())
            holder = Holder(ctx.procs, f"hold-{system.name}", system.proxy, ctx.echo_port, args.idle_conns,
                            HOLD_BATCH, HOLD_TIMEOUT, probe=True, limit=HOLD_LIMIT)
            opened = holder.wait_open(HOLD_LIMIT + 30)
            time.sleep(SETTLE)
            pids = system.pids()
            loaded, loaded_by_root = memory_kib(pids), memory_by_root(system.roots())
        except (BenchError, OSError, ValueError) as exc:
            fail(rec, ctx, f"memory: {type(exc).__name__}: {exc}")
            continue
        holds.append((rec, holder, time.monotonic()))
        n = max(1, opened["ok"])
        startup = rec.startup_kib or (None, None)
        rec.memory = {
            "conns": args.idle_conns, "opened": opened["ok"], "open_errors": opened["errors"],
            "open_seconds": opened["seconds"], "processes": len(pids),
            "startup_rss_MB": startup[0] and mb(startup[0]), "startup_pss_MB": startup[1] and mb(startup[1]),
            "baseline_rss_MB": mb(base[0]), "baseline_pss_MB": mb(base[1]),
            "rss_MB": mb(loaded[0]), "pss_MB": mb(loaded[1]),
            "rss_per_conn_KiB": round((loaded[0] - base[0]) / n, 2),
            "pss_per_conn_KiB": round((loaded[1] - base[1]) / n, 2),
            "by_process_MB": {name: {"baseline_rss": mb(base_by_root[name][0]), "rss": mb(rss),
                                     "baseline_pss": mb(base_by_root[name][1]), "pss": mb(pss)}
                              for name, (rss, pss) in loaded_by_root.items() if name in base_by_root},
        }
        log(f"{system.name}: {opened['ok']} of {args.idle_conns} connections open in {opened['seconds']:.1f} s"
            f" (errors: {opened['errors'] or 'none'}); {len(pids)} processes, RSS {base[0] / 1024:.1f} → "
            f"{loaded[0] / 1024:.1f} MiB, PSS {base[1] / 1024:.1f} → {loaded[1] / 1024:.1f} MiB")
    for rec, holder, opened_at in holds:
        time.sleep(max(0.0, opened_at + args.idle_seconds - time.monotonic()))
        try:
            checked = holder.check(HOLD_LIMIT + 30)
        except (BenchError, OSError) as exc:
            fail(rec, ctx, f"idle check: {type(exc).__name__}: {exc}")
            checked = {"ok": 0, "errors": {"check failed": rec.memory.get("opened", 0)}}
        finally:
            holder.close()
        rec.memory.update(idle_seconds=args.idle_seconds, still_open=checked["ok"], idle_errors=checked["errors"])
        log(f"{rec.system.name}: after {args.idle_seconds} s idle, {checked['ok']} of "
            f"{rec.memory['opened']} still echo (errors: {checked['errors'] or 'none'})")


# ---------------------------------------------------------------- report


def rnd(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(x, digits)


def summary(rec: Record) -> dict:
    """The numbers of one system (medians over the rounds)."""
    out: dict = {"bulk_MBps": rnd(rec.median("bulk_MBps"), 1), "p50_ms": rnd(rec.median("p50_ms"), 3),
                 "p99_ms": rnd(rec.median("p99_ms"), 3),
                 "wakeups_per_fetch": rnd(rec.median("wakeups_per_fetch"), 1),
                 "run_delay_ms_per_fetch": rnd(rec.median("run_delay_ms_per_fetch"), 3),
                 "rate_rps": rnd(rec.median("rate_rps"), 1),
                 "rate_errors": dict(rec.rate_errors), "cpu_ms_per_MB": rnd(rec.median("cpu_ms_per_MB"), 3),
                 "client_cpu_ms_per_MB": rnd(rec.median("client_cpu_ms_per_MB"), 3),
                 "bulk_bytes_and_sha256_ok": rec.bulk_ok if "bulk_MBps" in rec.rounds else None}
    out["cpu_ms_per_MB_by_process"] = {k.split(".", 1)[1]: rnd(statistics.median(v), 3)
                                       for k, v in rec.rounds.items() if k.startswith("cpu_ms_per_MB.")}
    if rec.system.name == "ladder" and "cpu_ms_per_MB.hub" in rec.rounds:
        # ms per 10**6 bytes is numerically the same as s per 10**9 bytes
        out["hub_cpu_s_per_GB"] = rnd(rec.median("cpu_ms_per_MB.hub"), 3)
    hog_p50, hog_p99 = rec.median("hog_p50_ms"), rec.median("hog_p99_ms")
    if hog_p50 is not None:
        quiet_p50, quiet_p99 = rec.median("p50_ms"), rec.median("p99_ms")
        out["cpu_hog"] = {"p50_ms": rnd(hog_p50, 3), "p99_ms": rnd(hog_p99, 3),
                          "wakeups_per_fetch": rnd(rec.median("hog_wakeups_per_fetch"), 1),
                          "run_delay_ms_per_fetch": rnd(rec.median("hog_run_delay_ms_per_fetch"), 3),
                          "p50_growth": rnd(hog_p50 / quiet_p50, 3) if quiet_p50 else None,
                          "p99_growth": rnd(hog_p99 / quiet_p99, 3) if quiet_p99 and hog_p99 else None}
    out["memory"] = rec.memory or None
    out["per_round"] = {k: [rnd(v, 3) for v in vs] for k, vs in rec.rounds.items()}
    return out


RATIO_KEYS = {"bulk_MBps": lambda s: s["bulk_MBps"], "p50_ms": lambda s: s["p50_ms"],
              "p99_ms": lambda s: s["p99_ms"], "rate_rps": lambda s: s["rate_rps"],
              "cpu_ms_per_MB": lambda s: s["cpu_ms_per_MB"],
              "rss_MB": lambda s: (s["memory"] or {}).get("rss_MB"),
              "pss_MB": lambda s: (s["memory"] or {}).get("pss_MB"),
              "rss_per_conn_KiB": lambda s: (s["memory"] or {}).get("rss_per_conn_KiB"),
              "still_open": lambda s: (s["memory"] or {}).get("still_open"),
              "p50_growth": lambda s: (s.get("cpu_hog") or {}).get("p50_growth")}


def ratios(mine: dict, ref: dict | None) -> dict | None:
    """this ÷ reference for each number both have (> 1: more; better for MB/s, req/s; worse for ms, MB).

    p50_growth is this system's p50 growth under the CPU hog ÷ the reference's (> 1: hurt more).
    """
    if ref is None:
        return None
    out = {}
    for key, get in RATIO_KEYS.items():
        a, b = get(mine), get(ref)
        out[key] = round(a / b, 3) if a is not None and b not in (None, 0) else None
    return out


def environment(records: list[Record], origin_kind: str, load_before: float) -> dict:
    versions = {"python": platform.python_version(), "uvloop": uvloop_version(), "origin": origin_kind,
                "nginx": first_line(command_output([NGINX, "-v"])) if os.access(NGINX, os.X_OK) else None}
    for rec in records:
        if rec.status != "not installed":
            try:
                versions.update(rec.system.versions())
            except OSError:
                pass
    machine = machine_info()
    machine["loadavg_1m"] = [round(load_before, 2), machine["loadavg_1m"]]  # before and after the run
    return {"versions": versions, "machine": machine}


def fmt(x, digits: int = 1, suffix: str = "") -> str:
    return "—" if x is None else f"{x:.{digits}f}{suffix}"


RATIO_COLUMNS = ("bulk_MBps", "p50_ms", "p99_ms", "rate_rps", "cpu_ms_per_MB", "rss_MB", "pss_MB")


def ratio_row(name: str, r: dict, hog: bool) -> str:
    keys = RATIO_COLUMNS + (("p50_growth",) if hog else ())
    return f"  {name:<14} " + "  ".join(f"{fmt(r[k], 2):>5}" for k in keys)


def table(lines: list[dict], hog: dict | None = None) -> str:
    head = (f"{'system':<14} {'bulk MB/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'req/s':>7} {'err':>4} "
            f"{'CPU ms/MB':>9} {'RSS MB base→conns':>18} {'PSS MB base→conns':>18} {'KiB/conn':>8} {'idle ok':>9}")
    rows = [head, "-" * len(head)]
    for line in lines:
        if line["status"] != "ok":
            reason = line.get("reason", "")
            if line["status"] == "not installed":
                reason = reason.rsplit(": ", 1)[-1]  # the apt-get command
            rows.append(f"{line['system']:<14} {line['status']} ({reason})"[:len(head) + 40])
            continue
        mem = line["memory"] or {}
        rss = f"{fmt(mem.get('baseline_rss_MB'))}→{fmt(mem.get('rss_MB'))}" if mem else "—"
        pss = f"{fmt(mem.get('baseline_pss_MB'))}→{fmt(mem.get('pss_MB'))}" if mem else "—"
        idle = f"{mem['still_open']}/{mem['opened']}" if "still_open" in mem else "—"
        errs = sum(line["rate_errors"].values())
        rows.append(f"{line['system']:<14} {fmt(line['bulk_MBps'], 0):>9} {fmt(line['p50_ms'], 2):>7} "
                    f"{fmt(line['p99_ms'], 2):>7} {fmt(line['rate_rps'], 0):>7} {errs:>4} "
                    f"{fmt(line['cpu_ms_per_MB'], 2):>9} {rss:>18} {pss:>18} "
                    f"{fmt(mem.get('rss_per_conn_KiB')):>8} {idle:>9}")
    for ref in REFERENCES:
        rows.append("")
        if ref not in {line["system"] for line in lines if line["status"] == "ok"}:
            rows.append(f"no ratios to {ref}: it was not measured")
            continue
        rows.append(f"ratio to {ref} (this ÷ {ref}): bulk, p50, p99, req/s, CPU/MB, RSS with conns, "
                    f"PSS with conns{', p50 growth with the hog' if hog else ''}")
        for line in lines:
            r = (line.get("ratios") or {}).get(f"vs_{ref}")
            if line["status"] == "ok" and r:
                rows.append(ratio_row(line["system"], r, bool(hog)))
    for mine, rival in PAIRS.items():
        pair = next((x for x in lines if x["system"] == mine and x["status"] == "ok"), None)
        r = ((pair or {}).get("ratios") or {}).get(f"vs_{rival}")
        if pair and r:
            rows += ["", f"{mine} ÷ {rival} (like for like), columns as above:",
                     ratio_row(mine, r, bool(hog))]
    if hog:
        rows += ["", f"CPU hog ({hog['tool']}, {100 * hog['hog_core_share']:.0f}% of a core over "
                     f"{hog['seconds']:.0f} s{'; ' + hog['note'] if 'note' in hog else ''}): "
                     "p50 quiet → hog, growth; p99 quiet → hog, growth"]
        for line in lines:
            h = line.get("cpu_hog")
            if line["status"] == "ok" and h:
                rows.append(f"  {line['system']:<14} {fmt(line['p50_ms'], 2):>6} → "
                            f"{fmt(h['p50_ms'], 2):<6} {fmt(h['p50_growth'], 2):>5}   "
                            f"{fmt(line['p99_ms'], 2):>6} → {fmt(h['p99_ms'], 2):<6} "
                            f"{fmt(h['p99_growth'], 2):>5}")
    ladder = next((l for l in lines if l["system"] == "ladder" and l["status"] == "ok"), None)
    if ladder and ladder.get("cpu_ms_per_MB_by_process"):
        rows.append("")
        rows.append("Ladder CPU ms per MB of bulk: " + ", ".join(
            f"{k} {v:.2f}" for k, v in ladder["cpu_ms_per_MB_by_process"].items())
            + f"; hub {fmt(ladder.get('hub_cpu_s_per_GB'), 2)} CPU s per GB")
    return "\n".join(rows)


def report(records: list[Record], args: argparse.Namespace, env: dict, hog: dict | None = None) -> None:
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    params = {k: getattr(args, k) for k in DEFAULTS} | {"quick": args.quick, "ss_cipher": "chacha20-ietf-poly1305",
                                                        "mb": "10**6 bytes"}
    params["cpu_hog"] = hog
    params["ladder_env_dropped"] = args.dropped_env
    if args.profile is not None:
        params["profile"] = {"dir": str(args.profile), "native": args.native, "round": PROFILED_ROUND,
                             "system": PROFILED_SYSTEM, "during": [m.__name__.removeprefix("measure_")
                                                                  for m in PROFILED_MEASURES]}
    lines = []
    for rec in records:
        line = {"system": rec.system.name, "status": rec.status, "path": rec.system.path}
        if rec.reason:
            line["reason"] = rec.reason
        if rec.status != "not installed":
            line.update(summary(rec))
            line["errors"] = rec.errors
            line["config"] = rec.system.config()
        lines.append(line)
    by_name = {line["system"]: line for line in lines if line["status"] == "ok"}
    for line in lines:
        if line["status"] == "ok":
            line["ratios"] = {f"vs_{ref}": ratios(line, by_name.get(ref)) for ref in REFERENCES}
            if line["system"] in PAIRS:
                rival = PAIRS[line["system"]]
                line["ratios"][f"vs_{rival}"] = ratios(line, by_name.get(rival))
    print("\n" + table(lines, hog) + "\n", file=sys.stderr, flush=True)
    for line in lines:
        line.update(date=date, params=params, **env)
        print(json.dumps(line), flush=True)


# ------------------------------------------------------------------ main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--rounds", type=int, help=f"rounds (default {DEFAULTS['rounds']}, quick {QUICK['rounds']})")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma list (default: all {len(SYSTEMS)})")
    parser.add_argument("--size-mib", type=int, help="bulk file size in MiB (default 256)")
    parser.add_argument("--fetches", type=int, help="sequential fetches per latency series (default 1000)")
    parser.add_argument("--rate-total", type=int, help="fetches per rate test (default 2000)")
    parser.add_argument("--rate-concurrency", type=int, help="fetches at a time in the rate test (default 100)")
    parser.add_argument("--idle-conns", type=int, help="connections for the memory and idle test (default 1000)")
    parser.add_argument("--idle-seconds", type=float, help="idle time before rechecking them (default 30)")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run: " + ", ".join(
        f"{k.replace('_', '-')} {v}" for k, v in QUICK.items()))
    parser.add_argument("--cpu-hog", action="store_true",
                        help=f"after the rounds, as many latency series per system again with a busy loop "
                             f"pinned to CPU {HOG_CPU} (stress-ng if installed); each system's p50 growth")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (configs, logs)")
    parser.add_argument("--profile", metavar="DIR", type=Path,
                        help="py-spy record on Ladder's hub, sharer and user during round 1's bulk, latency and rate "
                             "tests; raw output and a top-N summary per process into DIR")
    parser.add_argument("--native", action="store_true", help="with --profile: also sample C frames")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)}; known: {', '.join(SYSTEMS)}")
    if args.size_mib < 1 or args.fetches < 1 or args.rate_total < 1 or args.rate_concurrency < 1 \
            or args.idle_conns < 1 or args.idle_seconds < 0 or not 1 <= args.rounds <= 50:
        parser.error("sizes and counts ≥ 1, --idle-seconds ≥ 0, 1 ≤ --rounds ≤ 50")
    if args.native and args.profile is None:
        parser.error("--native goes with --profile")
    if args.profile is not None:
        if not shutil.which("py-spy"):
            parser.error("--profile needs py-spy (pip install py-spy)")
        if PROFILED_SYSTEM not in args.systems:
            parser.error(f"--profile profiles {PROFILED_SYSTEM}: add it to --systems")
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    return args


def start_systems(names: list[str], ctx: Context, records: list[Record]) -> None:
    """Start each system; its Record goes into `records` first, so the cleanup finds it whatever happens."""
    for name in names:
        system = SYSTEMS[name](ctx)
        missing = system.missing()
        if missing:
            log(missing)
            records.append(Record(system, "not installed", missing))
            continue
        rec = Record(system)
        records.append(rec)
        try:
            start_checked(system)
            rec.startup_kib = memory_kib(system.pids()) if system.names else None
            log(f"{name} ready: {system.proxy.kind}" + (f" on 127.0.0.1:{system.proxy.port}" if system.proxy.port
                                                        else ""))
        except (BenchError, OSError, ValueError) as exc:
            log(f"{name} did not start: {type(exc).__name__}: {exc}")
            ctx.procs.dump_logs(system.names)
            rec.status, rec.reason = "failed", f"start: {exc}"


def run(args: argparse.Namespace, tmp: Path, procs: Processes, records: list[Record]) -> None:
    load_before = os.getloadavg()[0]
    origin = start_origin(procs, tmp, args.size_mib * CHUNK)
    log(f"origin: {origin.kind} on 127.0.0.1:{origin.port}, sha256 of {BIG_PATH} {origin.sha256[:16]}…")
    ctx = Context(procs, tmp, origin, start_echo(procs))
    start_systems(args.systems, ctx, records)
    for r in range(1, args.rounds + 1):
        log(f"round {r} of {args.rounds}")
        run_round(records, args, ctx, r)
    hog = hog_pass(records, args, ctx) if args.cpu_hog else None
    log(f"memory and idle test: {args.idle_conns} connections per system, {args.idle_seconds:g} s idle")
    memory_test(records, args, ctx)
    report(records, args, environment(records, origin.kind, load_before), hog)


def drop_ladder_environment() -> list[str]:
    """Remove LADDER_* from our environment, so no Ladder process inherits a setting; their names."""
    names = sorted(name for name in os.environ if name.startswith("LADDER_"))
    for name in names:
        del os.environ[name]
    return names


def main() -> int:
    args = parse_args()
    args.dropped_env = drop_ladder_environment()
    if args.dropped_env:
        log(f"dropped {', '.join(args.dropped_env)} from the environment: Ladder runs at its defaults")
    records: list[Record] = []

    def body(tmp: Path, procs: Processes) -> int:
        run(args, tmp, procs, records)
        return 0 if all(rec.status != "failed" and rec.bulk_ok for rec in records) else 1

    def stop_systems() -> None:  # each system's own stop (the seed removes the folder it made)
        for rec in records:
            rec.system.stop()

    return run_script("ladder-compare-", args.keep, body, stop_systems)


if __name__ == "__main__":
    sys.exit(main())
