#!/usr/bin/env python3
"""How a hub's cost grows with its members: memory and joining time for N links held at once.

    python benchmarks/many_members.py [--members 1000] [--steps 4] [--batch 50] [--keep]

Starts a hub with the real CLI (`ladder hub init/run`), makes one invite for all
(`ladder hub invite --uses N`), and then, from this process, joins and connects members
the way `ladder join` and `ladder up` do (a JOIN hello with the invite, then an AUTH
link with the member's own key) and keeps every link open. After each step (N/steps more
members online) it weighs the hub (RSS and PSS from /proc/PID/smaps_rollup, open file
descriptors) and its CPU time, so the cost per member and per join can be read off.
Every member receives the hub's member list whenever someone joins, so joining gets dearer
as the network grows; that is part of what is measured.

Progress and a table go to stderr, one JSON line to stdout. Exit code 0 only if every
member joined and every link was still up at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import time
from pathlib import Path

from _common import (BenchError, Processes, cpu_seconds, ladder_cli_ok, ladder_version, log, machine_info,
                     memory_kib, open_fds, run_script, start_hub)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.config import InviteLink
from ladder.link.client import dial
from ladder.link.connection import Link
from ladder.protocol import control

CONNECT_TIMEOUT = 30.0


class Member:
    """The member side of a link, as an idle `ladder up` holds it: it takes the hub's messages."""

    def __init__(self) -> None:
        self.closed: str | None = None

    def stream_opened(self, link: Link, sid: int, payload: bytes, window: int) -> None:
        link.refuse(sid, 3, "a benchmark member opens nothing")

    def control_received(self, link: Link, message: control.ControlMessage) -> None:
        pass

    def link_closed(self, link: Link, reason: str) -> None:
        self.closed = reason


async def connect(invite: InviteLink) -> tuple[Link, Member]:
    key = Ed25519PrivateKey.generate()
    joining, reply = await dial(invite.address, invite.fingerprint, key, None, token=invite.token,
                                timeout=CONNECT_TIMEOUT)
    joining.close()
    if not isinstance(reply, control.Joined):
        raise BenchError(f"the hub refused the invite: {reply}")
    member = Member()
    link, _ = await dial(invite.address, invite.fingerprint, key, member, timeout=CONNECT_TIMEOUT)
    return link, member


async def grow(args: argparse.Namespace, invite: InviteLink, hub_pid: int) -> dict:
    held: list[tuple[Link, Member]] = []
    steps = []
    targets = sorted({max(1, args.members * i // args.steps) for i in range(1, args.steps + 1)})

    def weigh(count: int, seconds: float, cpu: float) -> None:
        rss, pss = memory_kib([hub_pid])
        steps.append({"members": count, "rss_KiB": rss, "pss_KiB": pss, "fds": open_fds([hub_pid]),
                      "join_seconds": round(seconds, 3), "hub_cpu_seconds": round(cpu, 3)})
        log(f"{count} members online: hub RSS {rss / 1024:.1f} MiB, PSS {pss / 1024:.1f} MiB, "
            f"{steps[-1]['fds']} fds; the last {count - (steps[-2]['members'] if len(steps) > 1 else 0)} "
            f"joined in {seconds:.1f} s using {cpu:.2f} s of hub CPU")

    weigh(0, 0.0, 0.0)
    deadline = time.monotonic() + args.limit
    for target in targets:
        started, cpu_before = time.monotonic(), cpu_seconds(hub_pid)
        while len(held) < target:
            if time.monotonic() > deadline:
                raise BenchError(f"{len(held)} of {args.members} members online after {args.limit:g} s")
            batch = min(args.batch, target - len(held))
            held += await asyncio.gather(*(connect(invite) for _ in range(batch)))
        await asyncio.sleep(1.0)  # the member lists the joins sent out have settled
        weigh(len(held), time.monotonic() - started, cpu_seconds(hub_pid) - cpu_before)
    down = [member.closed for _, member in held if member.closed is not None]
    for link, _ in held:
        link.close()
    base, top = steps[0], steps[-1]
    per_member = {key: round((top[key] - base[key]) / top["members"], 2) for key in ("rss_KiB", "pss_KiB")}
    return {"members": args.members, "online_at_end": len(held) - len(down), "links_lost": down[:5],
            "steps": steps, "per_member_KiB": per_member}


def summary(result: dict) -> str:
    rows = [f"{result['online_at_end']} of {result['members']} members online at the end; hub memory per "
            f"member: RSS {result['per_member_KiB']['rss_KiB']} KiB, PSS {result['per_member_KiB']['pss_KiB']} KiB",
            f"{'members':>8} {'RSS MiB':>8} {'PSS MiB':>8} {'fds':>6} {'join s':>7} {'hub CPU s':>9}"]
    for step in result["steps"]:
        rows.append(f"{step['members']:>8} {step['rss_KiB'] / 1024:>8.1f} {step['pss_KiB'] / 1024:>8.1f} "
                    f"{step['fds']:>6} {step['join_seconds']:>7.1f} {step['hub_cpu_seconds']:>9.2f}")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--members", type=int, default=1000, help="members online at the end (default 1000)")
    parser.add_argument("--steps", type=int, default=4, help="weigh the hub this many times (default 4)")
    parser.add_argument("--batch", type=int, default=50, help="members joining at a time (default 50)")
    parser.add_argument("--limit", type=float, default=600.0, help="seconds for all to join (default 600)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args()
    if not 1 <= args.members <= 20000 or not 1 <= args.steps <= args.members or args.batch < 1:
        parser.error("1 ≤ --members ≤ 20000, 1 ≤ --steps ≤ --members, --batch ≥ 1")
    results: list[dict] = []

    def body(tmp: Path, procs: Processes) -> int:
        hub_dir = tmp / "hub"
        start_hub(procs, hub_dir, "hub")
        invite = InviteLink.parse(ladder_cli_ok(["hub", "invite", "--dir", str(hub_dir), "--uses",
                                                 str(args.members), "member"]))
        result = asyncio.run(grow(args, invite, procs.get("hub").pid))
        result.update(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      ladder=ladder_version(), machine=machine_info())
        results.append(result)
        return 0 if result["online_at_end"] == args.members else 1

    code = run_script("ladder-members-", args.keep, body)
    if results:
        print("\n" + summary(results[0]) + "\n", file=sys.stderr, flush=True)
        print(json.dumps(results[0]), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
