"""The short fault run (issue 18): 100 streams of known content while every fault strikes once.

The network, the client and the faults are faultnet.py's (benchmarks/faults.py
runs the full 1,000 streams), a quarter of them through the user's phone
(Debian's trojan, a device of hub A), and the faults include kill -9 of the
user's own agent. Nothing may be lost: every stream arrives
whole, or fails in a way the client sees and arrives whole when retried;
both hubs' stores pass SQLite's integrity check and the ledger's verify
after every fault; no process logs a traceback. The checker itself is
shown to tell a whole stream from a short, a wrong and a reset one.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from pathlib import Path

import pytest
from faultnet import (
    CORRUPTED,
    FAILED,
    FAULTS,
    HIDDEN,
    INTACT,
    TRUNCATED,
    MiB,
    Stream,
    fetch,
    fetch_trojan,
    run_faults,
)
from harness import HERE, Network, Proc, accepts, free_port, recv_exact, wait_for
from seed_origin import BLOCK, expected

from ladder.link.tls import generate_self_signed

STREAMS, CAP, SEED, WORKERS, TIME_LIMIT = 100, 8 * MiB, 18, 4, 150


def test_a_hundred_streams_through_every_fault_lose_nothing(tmp_path):
    report = run_faults(tmp_path, STREAMS, CAP, 1, SEED, WORKERS, TIME_LIMIT)
    totals = report["totals"]
    first = ("totals", "examples", "timeline", "faults")
    shown = json.dumps({key: report[key] for key in first}, indent=1)[:8000]
    print(json.dumps(report, indent=1))  # the figures, in the captured output
    assert totals["lost"] == 0, f"streams came out truncated or corrupted, as if whole:\n{shown}"
    assert sorted(report["faults"]) == sorted((*FAULTS, "calm")), shown
    assert all(report["faults"][f]["injected"] == 1 for f in FAULTS), shown
    assert totals["streams_run"] == STREAMS, f"the run ran out of time:\n{shown}"
    assert totals["retried_ok"] == totals["failed-visibly"] + totals[HIDDEN], \
        f"a failed stream failed on retry:\n{shown}"
    assert not totals["store_problems"], shown
    assert not totals["errors"], shown
    assert not totals["log_problems"], shown
    assert all(report["faults"][f]["store_checks_passed"] >= 2 for f in FAULTS), shown
    for path in ("device", "device-tls"):
        ran = totals["paths"][path]
        assert ran["streams"] >= 5 and ran["intact"] >= 3, f"too few {path} streams ran:\n{shown}"


class FakeProxy:
    """A SOCKS5 proxy that accepts and answers one stream as told: whole, short, wrong, or reset."""

    def __init__(self, how: str):
        self.how = how
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = self.server.getsockname()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.server.accept()
        with self.server, conn:
            conn.recv(3)
            conn.sendall(b"\x05\x00")
            conn.recv(10)
            conn.sendall(b"\x05\x00\x00\x01" + bytes(6))
            line = b""
            while not line.endswith(b"\n"):
                line += conn.recv(64)
            seed, size = (int(x) for x in line.split())
            body = expected(seed, 0, size)
            if self.how == "short":
                body = body[:-1]
            elif self.how == "wrong":
                body = body[:1000] + bytes([body[1000] ^ 1]) + body[1001:]
            elif self.how == "long":
                body += b"!"
            elif self.how == "reset":
                conn.sendall(body[:5000])
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            conn.sendall(body)


@pytest.mark.parametrize(("how", "outcome", "seen"), [
    ("whole", INTACT, ""), ("short", TRUNCATED, "clean EOF after 99999 of 100000"),
    ("wrong", CORRUPTED, "wrong byte at 1000"), ("long", CORRUPTED, "more than the 100000"),
    ("reset", FAILED, "ConnectionResetError after 5000")])
def test_the_checker_tells_whole_from_short_wrong_and_reset(how, outcome, seen):
    proxy = FakeProxy(how)
    got = fetch(proxy.address, 9, Stream(0, 1234, 100_000, "AA"))
    proxy.thread.join(5)
    assert got[0] == outcome and seen in got[1], got


class FakeTrojanHub:
    """A TLS server that reads one Trojan request and answers it as told: whole, short (both ended with
    close_notify), or cut part-way by a TCP FIN without close_notify, or by a reset."""

    def __init__(self, how: str, cert: Path, key: Path):
        self.how = how
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = self.server.getsockname()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.server.accept()
        with self.server, self.context.wrap_socket(conn, server_side=True) as tls:
            data = b""
            while data.count(b"\r\n") < 2 or not data.endswith(b"\n"):
                chunk = tls.recv(4096)
                if not chunk:  # the client left before its request was whole
                    return
                data += chunk
            seed, size = (int(x) for x in data.split(b"\r\n")[-1].split())
            body = expected(seed, 0, size)
            if self.how in ("fin", "reset"):
                tls.sendall(body[:5000])
                if self.how == "reset":
                    time.sleep(0.3)  # read before the reset comes, which would drop what is still unread
                    tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                tls.shutdown(socket.SHUT_RDWR)  # the TCP FIN alone: SSLSocket.shutdown sends no close_notify
                return
            tls.sendall(body[:-1] if self.how == "short" else body)
            with contextlib.suppress(OSError):  # the client may close without its own close_notify
                tls.unwrap()  # close_notify


@pytest.mark.parametrize(("how", "outcome", "seen"), [
    ("whole", INTACT, ""), ("short", TRUNCATED, "clean EOF after 99999 of 100000"),
    ("fin", FAILED, "SSLEOFError after 5000"), ("reset", FAILED, "Error after 5000")])
def test_the_trojan_checker_takes_only_close_notify_for_an_end(tmp_path, how, outcome, seen):
    cert, key = tmp_path / "hub.crt", tmp_path / "hub.key"
    generate_self_signed(cert, key, "hub", ["127.0.0.1"])
    hub = FakeTrojanHub(how, cert, key)
    got = fetch_trojan(hub.address, cert, "secret", 9, Stream(0, 1234, 100_000, "AA", "device-tls"))
    hub.thread.join(5)
    assert got[0] == outcome and seen in got[1], got


def test_a_download_through_the_user_s_agent_is_reset_when_the_agent_is_killed(tmp_path):
    """kill -9 of the agent mid-download: the kernel closes its sockets, and must reset the client's,
    not end it with a FIN after what was queued (a raw download would look whole)."""
    net = Network(tmp_path)
    port = free_port()
    origin = Proc("seed-origin", [sys.executable, str(HERE / "seed_origin.py"), str(port), "127.0.0.1"],
                  tmp_path)
    try:
        wait_for(lambda: accepts(port), 10, "the origin")
        net.exit("ex", "AA", "--allow-private")
        user = net.user("u")
        user.wait_exits(1)
        assert user.proxy is not None
        with socket.create_connection(user.proxy, timeout=10) as sock:
            sock.sendall(b"\x05\x01\x00")
            assert recv_exact(sock, 2) == b"\x05\x00"
            sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", port))
            assert recv_exact(sock, 10)[:2] == b"\x05\x00"
            sock.sendall(b"5 %d\n" % (64 * MiB))
            got = len(recv_exact(sock, MiB))  # then no more reads: the agent's socket holds what it sent
            user.proc.stop(signal.SIGKILL)
            seen = "clean EOF"
            try:
                for _ in range(64 * MiB // 1024):  # bounded: at most every byte, a KiB at a time
                    chunk = sock.recv(BLOCK)
                    if not chunk:
                        break
                    got += len(chunk)
            except ConnectionResetError:
                seen = "reset"
        assert seen == "reset", f"the client saw a clean EOF after {got} of {64 * MiB} bytes, as if whole"
    finally:
        net.close()
        origin.stop()
        origin.check_log(expected=("ConnectionResetError", "BrokenPipeError"))


def test_the_relay_passes_a_reset_on_at_once_while_the_other_side_is_silent(tmp_path):
    """A device's download through the relay, reset by the hub: the client, which sends nothing more
    while it waits for its bytes, must see the reset at once, as behind a router. (The relay held it
    until the client's side ended too: 30 s of silence, counted against the hub in the fault runs.)"""
    server = socket.create_server(("127.0.0.1", 0))
    relay_port = free_port()
    relay = Proc("relay", [sys.executable, str(HERE / "cutrelay.py"), "127.0.0.1", str(relay_port),
                           "127.0.0.1", str(server.getsockname()[1])], tmp_path)
    try:
        wait_for(lambda: "relaying" in relay.output() or not relay.alive(), 10, "the relay")
        with socket.create_connection(("127.0.0.1", relay_port), timeout=10) as client:
            client.sendall(b"GET")
            server.settimeout(10)
            conn, _ = server.accept()
            with conn:
                assert recv_exact(conn, 3) == b"GET"
                conn.sendall(b"x" * 5000)
                assert recv_exact(client, 5000) == b"x" * 5000
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.settimeout(5)  # what it waits for: well under the fault runs' 30 s
            with pytest.raises(ConnectionResetError):
                client.recv(BLOCK)
    finally:
        server.close()
        relay.stop()
