#!/usr/bin/env python3
"""A long run of a hub with hundreds of members and devices coming and going: does anything grow or get lost?

    python benchmarks/soak.py [--minutes 60] [--members 200] [--devices 50] [--users 3]
                              [--size-mib 4] [--keep]

Starts a hub, one real exit and USERS real user agents with the real CLI (`ladder hub run`,
`ladder up --share`, `ladder up --proxy`), and an origin serving a 1 KiB file and a SIZE MiB
file. Then, for MINUTES:

  * MEMBERS lightweight members (this process's asyncio links, as many_members.py holds
    them: joined with an invite, then AUTH links with their own keys) each stay online for a
    random 30 s to 5 min, leave, and come back after a random 1 to 30 s;
  * DEVICES devices (`ladder hub device add`, owned by those members), each a lightweight
    Trojan client over TLS here, fetch the 1 KiB file through the hub and the exit every
    5 to 30 s, on a new connection each time, body checked byte for byte;
  * each real user agent fetches the 1 KiB file every 0.5 s and the big file every 20 s
    through its SOCKS5 proxy, the big one checked against its SHA-256;
  * half-way through, the hub is stopped (SIGINT) and started again on the same folder and
    port; agents, members and devices come back by themselves (members and devices: ours
    dial again on their next turn).

Every 10 s the hub's RSS and open fds are sampled; a least-squares slope (MiB/hour, fds/hour)
is fitted for each hub process after WARMUP of its life. Every stream is counted: ok,
failed visibly (refused, reset, cut: what a client sees), or lost (it ended as if whole but
its bytes were wrong or short: must be 0). At the end every log is scanned for "Traceback".
Progress goes to stderr, one JSON line to stdout; exit code 0 only if nothing was lost, no
log holds a traceback, and the hub was up at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import random
import ssl
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

from _common import (
    BIG_PATH,
    SMALL_BODY,
    SMALL_PATH,
    BenchError,
    Processes,
    free_port,
    ladder_cli_ok,
    ladder_version,
    log,
    machine_info,
    memory_kib,
    open_fds,
    run_script,
    start_ladder,
    start_origin,
    wait_port,
)
from _loadclient import classify, open_tunnel
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from many_members import Member

from ladder.config import InviteLink
from ladder.link.client import dial
from ladder.protocol import control
from ladder.protocol.trojan import CONNECT, password_hash, request

MiB = 1024 * 1024
SAMPLE_EVERY = 10.0
WARMUP = 0.2  # the first fifth of each hub process's life is left out of its slope
ONLINE = (30.0, 300.0)  # seconds a lightweight member stays online
OFFLINE = (1.0, 30.0)  # and away
DEVICE_EVERY = (5.0, 30.0)  # seconds between a device's fetches
SMALL_EVERY = 0.5  # a real user's small fetch
BIG_EVERY = 20.0  # and its big one
FETCH_TIMEOUT = 30.0
BIG_TIMEOUT = 120.0
HUB_STOP_TIMEOUT = 30.0


class Tally:
    """Every stream's outcome, by kind of client: ok, failed (visibly, and why), lost (wrong bytes)."""

    def __init__(self) -> None:
        self.ok: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()
        self.bytes_checked = 0
        self.bytes_lost = 0
        self.why: Counter[str] = Counter()

    def outcome(self, kind: str, expected: bytes | str, got: bytes | None, exc: BaseException | None) -> None:
        if exc is not None:
            self.failed[kind] += 1
            self.why[f"{kind}: {classify(exc)}"] += 1
        elif got is not None and (got == expected or hashlib.sha256(got).hexdigest() == expected):
            self.ok[kind] += 1
            self.bytes_checked += len(got)
        else:
            self.lost[kind] += 1
            self.bytes_lost += len(got or b"")

    def json(self) -> dict:
        return {"ok": dict(self.ok), "failed": dict(self.failed), "lost": dict(self.lost),
                "bytes_checked": self.bytes_checked, "bytes_lost": self.bytes_lost,
                "failures_by_cause": dict(self.why.most_common(12))}


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """The body of an HTTP/1.1 answer with Content-Length, read to its end (IncompleteReadError if cut)."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        return head  # not the body: counted as lost if it ever happened
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return await reader.readexactly(length)


async def get(reader, writer, path: str, port: int) -> bytes:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
    return await read_answer(reader)


class Soak:
    def __init__(self, args: argparse.Namespace, tmp: Path, procs: Processes):
        self.args, self.tmp, self.procs = args, tmp, procs
        self.tally = Tally()
        self.events: Counter[str] = Counter()
        self.samples: list[tuple[float, int, int, int]] = []  # (seconds, hub pid, RSS KiB, fds)
        self.started = time.monotonic()
        self.deadline = self.started + args.minutes * 60
        self.restart: dict = {}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    # ------------------------------------------------------------ setup

    def setup(self) -> None:
        args = self.args
        self.origin = start_origin(self.procs, self.tmp, args.size_mib * MiB)
        proxy, self.names = start_ladder(self.procs, self.tmp, prefix="")
        self.hub_dir = self.tmp / "ladder-hub"
        self.proxies = [proxy]
        for i in range(1, args.users):
            link = ladder_cli_ok(["hub", "invite", "--dir", str(self.hub_dir), f"user{i}"]).strip()
            folder = self.tmp / f"user{i}"
            ladder_cli_ok(["join", link, "--dir", str(folder)])
            port = free_port()
            self.procs.start(f"user{i}", [sys.executable, "-m", "ladder", "up", "--dir", str(folder),
                                          "--proxy", f"127.0.0.1:{port}"])
            self.proxies.append(port)
        self.invite = InviteLink.parse(ladder_cli_ok(["hub", "invite", "--dir", str(self.hub_dir), "--uses",
                                                      str(args.members), "light"]).strip())
        self.hub_argv = [sys.executable, "-m", "ladder", "hub", "run", "--dir", str(self.hub_dir)]

    def add_devices(self, owners: list[str]) -> None:
        self.devices = []
        for i in range(self.args.devices):
            added = ladder_cli_ok(["hub", "device", "add", f"dev{i}", "--owner", owners[i % len(owners)],
                                   "--dir", str(self.hub_dir)])
            link = added.strip().splitlines()[-1]
            self.devices.append(unquote(link.removeprefix("trojan://").split("@")[0]))

    @property
    def hub_pid(self) -> int:
        return self.procs.get(self.names["hub"]).pid

    # ------------------------------------------------------------ clients

    async def member(self, key: Ed25519PrivateKey) -> None:
        """One lightweight member: online a while, away a while, until the end."""
        address, fingerprint = self.invite.address, self.invite.fingerprint
        while self.left() > 0:
            owner = Member()
            try:
                link, _ = await dial(address, fingerprint, key, owner, timeout=FETCH_TIMEOUT)
            except Exception as exc:  # counted: the hub restarting, or busy
                self.events[f"member dial failed: {classify(exc)}"] += 1
                await asyncio.sleep(min(self.left(), random.uniform(*OFFLINE)))
                continue
            self.events["member links"] += 1
            stay = random.uniform(*ONLINE)
            until = time.monotonic() + min(stay, max(0.0, self.left()))
            while time.monotonic() < until and owner.closed is None:
                await asyncio.sleep(1.0)
            if owner.closed is not None:
                self.events["member links cut by the hub"] += 1
            link.close()
            await asyncio.sleep(min(max(0.0, self.left()), random.uniform(*OFFLINE)))

    async def join(self) -> tuple[Ed25519PrivateKey, str]:
        key = Ed25519PrivateKey.generate()
        link, reply = await dial(self.invite.address, self.invite.fingerprint, key, None,
                                 token=self.invite.token, timeout=FETCH_TIMEOUT)
        link.close()
        if not isinstance(reply, control.Joined):
            raise BenchError(f"the hub refused the invite: {reply}")
        return key, reply.name

    async def device(self, password: str) -> None:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        host, port = self.invite.address
        first = password_hash(password) + b"\r\n" + request(CONNECT, "127.0.0.1", self.origin.port)
        await asyncio.sleep(random.uniform(*DEVICE_EVERY))
        while self.left() > 0:
            got, error = None, None
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    host, port, ssl=context, server_hostname=host), FETCH_TIMEOUT)
                try:
                    writer.write(first)
                    answer = get(reader, writer, SMALL_PATH, self.origin.port)
                    got = await asyncio.wait_for(answer, FETCH_TIMEOUT)
                finally:
                    writer.transport.abort()
            except Exception as exc:  # counted, never raised
                error = exc
            self.tally.outcome("device 1 KiB", SMALL_BODY, got, error)
            await asyncio.sleep(min(max(0.0, self.left()), random.uniform(*DEVICE_EVERY)))

    async def fetch(self, proxy: int, path: str, expected: bytes | str, kind: str, timeout: float) -> None:
        got, error = None, None
        try:
            tunnel = open_tunnel("socks5", proxy, self.origin.port)
            reader, writer = await asyncio.wait_for(tunnel, FETCH_TIMEOUT)
            try:
                got = await asyncio.wait_for(get(reader, writer, path, self.origin.port), timeout)
            finally:
                writer.transport.abort()
        except Exception as exc:  # counted, never raised
            error = exc
        self.tally.outcome(kind, expected, got, error)

    async def user(self, proxy: int) -> None:
        next_big = time.monotonic() + random.uniform(0, BIG_EVERY)
        while self.left() > 0:
            await self.fetch(proxy, SMALL_PATH, SMALL_BODY, "user 1 KiB", FETCH_TIMEOUT)
            if time.monotonic() >= next_big:
                await self.fetch(proxy, BIG_PATH, self.origin.sha256, f"user {self.args.size_mib} MiB",
                                 BIG_TIMEOUT)
                next_big = time.monotonic() + BIG_EVERY
            await asyncio.sleep(SMALL_EVERY)

    # ------------------------------------------------------ hub and clock

    async def sampler(self) -> None:
        while self.left() > 0:
            pid = self.hub_pid
            self.samples.append((round(time.monotonic() - self.started, 1), pid, memory_kib([pid])[0],
                                 open_fds([pid])))
            await asyncio.sleep(min(SAMPLE_EVERY, max(0.1, self.left())))

    async def restart_hub(self) -> None:
        """Half-way: stop the hub and start it again; how long until a real user's fetch works again."""
        await asyncio.sleep(self.args.minutes * 30)
        log("restarting the hub")
        stopped = time.monotonic()
        await asyncio.to_thread(self.procs.stop_one, self.names["hub"])
        hub = self.procs.start(self.names["hub"], self.hub_argv)
        await asyncio.to_thread(wait_port, self.invite.address[1], HUB_STOP_TIMEOUT, hub)
        up = time.monotonic()
        before = self.tally.ok["user 1 KiB"]
        while self.tally.ok["user 1 KiB"] == before and time.monotonic() - up < 120:
            await asyncio.sleep(0.2)
        self.restart = {"at_s": round(stopped - self.started), "down_s": round(up - stopped, 1),
                        "users_back_after_s": round(time.monotonic() - up, 1)}
        log(f"hub restarted: {self.restart}")

    async def run(self) -> None:
        joined = await asyncio.gather(*(self.join() for _ in range(self.args.members)))
        await asyncio.to_thread(self.add_devices, [name for _, name in joined[:max(1, self.args.devices)]])
        log(f"{len(joined)} members joined, {len(self.devices)} devices added; "
            f"soaking for {self.args.minutes} min")
        self.started = time.monotonic()
        self.deadline = self.started + self.args.minutes * 60
        tasks = [self.sampler(), self.restart_hub(), *(self.member(key) for key, _ in joined),
                 *(self.device(password) for password in self.devices), *(self.user(p) for p in self.proxies)]
        await asyncio.gather(*tasks)


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (x, y) points; None for fewer than 3."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else None


def growth(samples: list[tuple[float, int, int, int]]) -> list[dict]:
    """Per hub process: its samples' span, RSS and fds first/last/max, slopes after WARMUP, the series
    (a slope alone cannot tell a working set still filling from a leak)."""
    out = []
    for pid in dict.fromkeys(s[1] for s in samples):
        mine = [s for s in samples if s[1] == pid]
        start, end = mine[0][0], mine[-1][0]
        kept = [s for s in mine if s[0] >= start + WARMUP * (end - start)]
        rss = slope([(s[0] / 3600, s[2] / 1024) for s in kept])
        fds = slope([(s[0] / 3600, s[3]) for s in kept])
        out.append({"pid": pid, "from_s": start, "to_s": end, "samples": len(mine),
                    "rss_MiB": {"first": round(mine[0][2] / 1024, 1), "last": round(mine[-1][2] / 1024, 1),
                                "max": round(max(s[2] for s in mine) / 1024, 1)},
                    "fds": {"first": mine[0][3], "last": mine[-1][3], "max": max(s[3] for s in mine)},
                    "slope_after_warmup": {"MiB_per_hour": None if rss is None else round(rss, 2),
                                           "fds_per_hour": None if fds is None else round(fds, 1)},
                    "series": [[s[0], round(s[2] / 1024, 1), s[3]] for s in mine]})  # s, RSS MiB, fds
    return out


def tracebacks(tmp: Path) -> dict[str, int]:
    found = {}
    for path in sorted(tmp.rglob("*.log")):
        count = path.read_text(errors="replace").count("Traceback")
        if count:
            found[str(path.relative_to(tmp))] = count
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the soak (default 60)")
    parser.add_argument("--members", type=int, default=200, help="lightweight members (default 200)")
    parser.add_argument("--devices", type=int, default=50, help="lightweight Trojan devices (default 50)")
    parser.add_argument("--users", type=int, default=3, help="real user agents (default 3)")
    parser.add_argument("--size-mib", type=int, default=4, help="the big file's size in MiB (default 4)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args()
    if not (1 <= args.minutes <= 24 * 60 and 1 <= args.members <= 5000 and 0 <= args.devices <= args.members
            and 1 <= args.users <= 20 and args.size_mib >= 1):
        parser.error("1 <= --minutes <= 1440, 1 <= --members <= 5000, 0 <= --devices <= --members, "
                     "1 <= --users <= 20")
    results: list[dict] = []

    def body(tmp: Path, procs: Processes) -> int:
        soak = Soak(args, tmp, procs)
        soak.setup()
        asyncio.run(soak.run())
        hub_up = procs.get(soak.names["hub"]).poll() is None
        found = tracebacks(tmp)
        results.append({
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "minutes": args.minutes, "members": args.members, "devices": args.devices, "users": args.users,
            "real_agents": {"exit": 1, "users": args.users}, "size_MiB": args.size_mib,
            "streams": soak.tally.json(), "events": dict(soak.events), "restart": soak.restart,
            "hub": growth(soak.samples), "hub_up_at_end": hub_up, "tracebacks": found,
            "ladder": ladder_version(), "machine": machine_info(),
        })
        return 0 if hub_up and not found and not soak.tally.bytes_lost and not sum(soak.tally.lost.values()) \
            else 1

    code = run_script("ladder-soak-", args.keep, body)
    if results:
        print(json.dumps(results[0]), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
