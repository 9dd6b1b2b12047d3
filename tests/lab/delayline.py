"""A delay line for the border: packets routed through a TUN device wait a fixed time, and a few are lost.

This does what `tc qdisc add ... netem delay D loss L` does, for kernels
built without sch_netem (as the one this lab was written on). Run it inside
the border's namespace:

    python delayline.py DEVICE DELAY_MS LOSS_PERCENT SEED MAX_SECONDS

It creates the TUN device DEVICE (which vanishes when the process exits),
brings it up, prints "ready", then reads every packet the kernel routes
into DEVICE, drops each with probability LOSS_PERCENT/100 (a seeded random
generator, so runs repeat), and writes the rest back into DEVICE DELAY_MS
later, in order. A packet written back enters the kernel as if it arrived
on DEVICE and is routed on. On SIGTERM, or after MAX_SECONDS, it prints
how many packets it forwarded and dropped, and exits.
"""

from __future__ import annotations

import fcntl
import os
import random
import select
import signal
import struct
import subprocess
import sys
import time
from collections import deque

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
READ_BURST = 512


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def run(device: str, delay: float, loss: float, seed: int, max_seconds: float) -> tuple[int, int]:
    fd = open_tun(device)
    # A long queue: the delay line's own drops are the only ones wanted.
    subprocess.run(["ip", "link", "set", device, "up", "txqueuelen", "20000"], check=True)
    with open(f"/proc/sys/net/ipv4/conf/{device}/rp_filter", "w") as f:
        f.write("0")
    print("ready", flush=True)
    rng = random.Random(seed)
    waiting: deque[tuple[float, bytes]] = deque()
    forwarded = dropped = 0
    stop_at = time.monotonic() + max_seconds
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    while not stopping and time.monotonic() < stop_at:
        timeout = max(0.0, waiting[0][0] - time.monotonic()) if waiting else 0.5
        try:
            readable, _, _ = select.select([fd], [], [], min(timeout, 0.5))
        except InterruptedError:
            continue
        if readable:
            now = time.monotonic()
            for _ in range(READ_BURST):
                try:
                    packet = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if rng.random() < loss:
                    dropped += 1
                else:
                    waiting.append((now + delay, packet))
        now = time.monotonic()
        while waiting and waiting[0][0] <= now:
            try:
                os.write(fd, waiting[0][1])
            except BlockingIOError:
                break
            waiting.popleft()
            forwarded += 1
    os.close(fd)
    return forwarded, dropped


def main(argv: list[str]) -> int:
    device, delay_ms, loss_percent, seed, max_seconds = argv[1:6]
    forwarded, dropped = run(device, float(delay_ms) / 1000, float(loss_percent) / 100, int(seed),
                             float(max_seconds))
    print(f"forwarded {forwarded} dropped {dropped}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
