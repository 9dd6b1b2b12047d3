"""Attacks on the hub's front door, against a real hub process: slowloris and idle floods.

The hub's head deadline (nginx's client_header_timeout, 60 s) is shrunk for
the slowloris test by starting the hub through a two-line wrapper that sets
the module constant; nothing else about the hub changes.
"""

from __future__ import annotations

import hashlib
import resource
import socket
import ssl
import time

from harness import Network, curl, rss

HEAD_TIMEOUT = 4.0  # the slowloris test's head deadline
SLOWLORIS = 300
IDLE = 10_000
IDLE_RSS_BOUND = 64 * 2**20  # what 10,000 silent connections may add to the hub (was ~490 MiB)
SLOWLORIS_RSS_BOUND = 64 * 2**20
WRAPPER = """
import sys
import ladder.link.server as server
server.HEAD_TIMEOUT = float(sys.argv[1])
from ladder.cli import main
sys.argv = ["ladder", *sys.argv[2:]]
main()
"""


def tls_client() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


def test_slowloris_connections_are_closed_at_the_head_deadline(tmp_path):
    network = Network(tmp_path, hub_command=["-c", WRAPPER, str(HEAD_TIMEOUT), "hub", "run",
                                             "--dir", str(tmp_path / "hub")])
    try:
        port, hub = network.hub_port, network.hub
        before = rss(hub.pid)
        ctx = tls_client()
        conns, opened = [], []
        for _ in range(SLOWLORIS):
            sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
            sock.sendall(b"GET / HTTP/1.1\r\n")
            conns.append(sock)
            opened.append(time.monotonic())
        peak = rss(hub.pid)
        closed_after: list[float | None] = [None] * SLOWLORIS
        # A header byte from each every second (nginx: the deadline holds however often they
        # come), watching for the hub's close; bounded at three deadlines.
        stop = time.monotonic() + 3 * HEAD_TIMEOUT + 5
        for sock in conns:
            sock.setblocking(False)
        while time.monotonic() < stop and any(c is None for c in closed_after):
            for i, sock in enumerate(conns):
                if closed_after[i] is not None:
                    continue
                try:
                    if sock.recv(4096) == b"":
                        closed_after[i] = time.monotonic() - opened[i]
                        continue
                except (ssl.SSLWantReadError, BlockingIOError):
                    pass
                except OSError:
                    closed_after[i] = time.monotonic() - opened[i]
                    continue
                try:
                    sock.send(b"X")
                except (ssl.SSLWantWriteError, BlockingIOError):
                    pass
                except OSError:
                    closed_after[i] = time.monotonic() - opened[i]
            time.sleep(1.0)
        for sock in conns:
            sock.close()
        still_open = sum(c is None for c in closed_after)
        assert still_open == 0, \
            f"{still_open} of {SLOWLORIS} dribbling connections outlived the head deadline"
        latest = max(closed_after)
        assert min(closed_after) > HEAD_TIMEOUT - 1.5 and latest < HEAD_TIMEOUT + 4, closed_after
        print(f"slowloris: {SLOWLORIS} connections closed {min(closed_after):.1f}-{latest:.1f} s "
              f"after opening (deadline {HEAD_TIMEOUT} s); "
              f"hub RSS {before / 2**20:.1f} -> {peak / 2**20:.1f} MiB")
        assert peak - before < SLOWLORIS_RSS_BOUND
        hub.check_log()
    finally:
        network.close()


def test_ten_thousand_idle_connections_cost_little_and_members_keep_working(network, origin):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < IDLE + 1000:
        raise AssertionError(f"this test needs {IDLE + 1000} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, IDLE + 1000), hard))
    network.exit("sharer", "US", "--allow-private")
    user = network.user("user")
    user.wait_exits(1)
    hub = network.hub
    time.sleep(1)  # let the hub settle after the members' links came up
    before = rss(hub.pid)
    idle = []
    try:
        for _ in range(IDLE):
            idle.append(socket.create_connection(("127.0.0.1", network.hub_port), timeout=10))
        time.sleep(2)  # every connection accepted and parked
        after = rss(hub.pid)
        out = network.root / "big.bin"
        started = time.monotonic()
        result = curl("-x", user.socks, "-o", str(out), origin.url("big.bin"), timeout=120)
        seconds = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        assert hashlib.sha256(out.read_bytes()).hexdigest() == origin.big_sha
        during = rss(hub.pid)
        alive = sum(1 for s in idle[:200] if _still_open(s))
    finally:
        for sock in idle:
            sock.close()
    per_connection = (after - before) / IDLE
    print(f"{IDLE} idle connections: hub RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB "
          f"({per_connection:.0f} B each), {during / 2**20:.1f} MiB during a 64 MiB download at "
          f"{64 / seconds:.1f} MiB/s through an exit")
    assert after - before < IDLE_RSS_BOUND, \
        f"10,000 idle connections cost the hub {(after - before) / 2**20:.0f} MiB"
    assert alive == 200, "the hub dropped idle connections before their deadline"
    hub.check_log()


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
