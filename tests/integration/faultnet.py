"""Faults with nothing lost: a network of real processes, streams of known content, and the faults.

The network: hub A and hub B peered; an exit at each (countries AA and BB);
a user member at A whose agent runs in a network namespace of its own,
behind a router namespace, and reaches hub A through a TCP relay this
module controls (cutrelay.py); the user's phone, a device of A's (`ladder
hub device add`) whose stock client (Debian's `trojan`, SOCKS5 in, Trojan
over TLS out) runs in the same namespace and dials A through the same
relay; hub A's folder is a 20 MiB tmpfs. The origin (seed_origin.py)
answers on 127.0.0.2 and 127.0.0.3, and the user's rules (the device's
too) send each address through the exit at one hub, so both exits and the
peer link carry streams.

Each stream asks the origin for a size of seeded content through the user's
SOCKS5 port, or (a seeded one in four) the device's trojan, or (one in
eight) as the device itself, Trojan over TLS spoken by the checker, which
sees how the hub ends TLS (trojan ends its SOCKS5 side with a FIN whatever
ended it: a short clean EOF there is HIDDEN, retried, not LOST). It is
classified: intact (every byte right, then a clean
EOF); failed visibly (refused at open, a reset, an error the client sees,
or no byte for IO_TIMEOUT); truncated (a clean EOF too early) or corrupted
(a wrong byte, or more bytes than asked for). The last two are LOST: a user
would take them for a whole download. Failed streams are retried once when
the network has recovered.

The faults, one at a time, each at a seeded random moment while streams
run: kill -9 an exit, hub A, hub B, the user's agent; SIGTERM hub A and start it; cut the
member's link (resets) or pause it (silence past the mux's dead-link
time); 150 ms more round trip and 1 % loss on it; fill hub A's disk. Then
the script restarts what it killed (as systemd would), waits for the
agents to reconnect by themselves and a tiny fetch through each path to
work again, and checks both hubs' stores (SQLite's
integrity check in place, `ladder hub ledger verify`). Used by
tests/integration/test_faults.py (short) and benchmarks/faults.py (full).

Needs root: namespaces, veth, TUN (the delay line), a tmpfs mount.
"""

from __future__ import annotations

import dataclasses
import json
import random
import signal
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harness import HERE, Member, Network, Proc, accepts, free_port, ladder, peer, recv_exact, wait_for
from seed_origin import BLOCK, expected

from ladder.protocol.mux import DEAD_AFTER
from ladder.protocol.trojan import CONNECT as TROJAN_CONNECT
from ladder.protocol.trojan import password_hash
from ladder.protocol.trojan import request as trojan_request

LAB = HERE.parent / "lab"
KiB, MiB = 1024, 1024 * 1024

# The member's path: root <-> router namespace <-> member namespace. Names and addresses are this
# module's alone (the firewall lab uses lad-* and 10.200.0.0/16).
ROUTER_NS, MEMBER_NS = "flt-router", "flt-member"
ROOT_IF = "flt-root"
NET_PREFIX = "10.203."
ROOT_ADDR, RELAY_ADDR, ROUTER_UP, ROUTER_DOWN, MEMBER_ADDR = (
    "10.203.2.1", "10.203.3.1", "10.203.2.2", "10.203.1.1", "10.203.1.2")
DELAY_DEVICE, DELAY_TABLE = "delay", "100"
ORIGIN_ADDRS = {"AA": "127.0.0.2", "BB": "127.0.0.3"}  # the exit at A carries .2, the exit at B .3
HUB_STORE_MIB = 20

FAULTS = ("kill_exit", "kill_hub", "kill_peer_hub", "restart_hub", "kill_user", "cut_link", "pause_link",
          "delay_loss", "disk_full")
# Where a stream starts: the user's agent's SOCKS5 port; the device's stock Trojan client's SOCKS5 port;
# or Trojan over TLS spoken by the checker itself as the same device, which sees how the hub ends TLS.
PATHS = ("user", "device", "device-tls")
DEVICE_SHARE, DEVICE_TLS_SHARE = 0.25, 0.125  # seeded: one stream in four through trojan, one in eight direct
CUT_SECONDS, DELAY_SECONDS, DISK_FULL_SECONDS = 3.0, 8.0, 5.0
PAUSE_SECONDS = DEAD_AFTER + 3  # silent for longer than a link may be before it is declared dead
DELAY_MS_EACH_WAY, LOSS_PERCENT = 75, 1.0  # 150 ms more round trip, 1 % of packets lost each way
RECOVER_TIMEOUT = 60.0
CONNECT_TIMEOUT, IO_TIMEOUT = 10.0, 30.0
PROBE_TIMEOUT = 5.0  # a recovery probe's fetch (a few bytes through each path) gives up after this
FAILED_PAUSE = 0.5  # a client whose stream failed waits before its next, as a user would
MIDWAY_WAIT = 3.0  # at its moment, a fault waits this long at most for a stream to be part-way through


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def in_ns(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *args, check=check)


# ------------------------------------------------------------------ the member's path


class MemberPath:
    """Two namespaces between the user's agent and the machine: the router can delay and lose packets.

    Only the relay's address (RELAY_ADDR) goes through the delay line, so
    the client's own hop to the proxy stays fast, as loopback is.
    """

    def __init__(self) -> None:
        self.delay_line: Proc | None = None

    @staticmethod
    def cleanup() -> None:
        """Remove what this class makes (an interrupted run's leftovers too), ending what runs inside."""
        for ns in (MEMBER_NS, ROUTER_NS):
            if sh("ip", "netns", "pids", ns, check=False).returncode == 0:
                for pid in sh("ip", "netns", "pids", ns).stdout.split():
                    subprocess.run(["kill", "-9", pid], check=False)
                sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", ROOT_IF, check=False)

    def build(self) -> None:
        self.cleanup()
        used = sh("ip", "-o", "addr").stdout + sh("ip", "route").stdout
        if NET_PREFIX in used:
            raise AssertionError(f"{NET_PREFIX}0.0/16 is in use here: the fault network needs it")
        for ns in (ROUTER_NS, MEMBER_NS):
            sh("ip", "netns", "add", ns)
            in_ns(ns, "ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", ROOT_IF, "type", "veth", "peer", "name", "uplink", "netns", ROUTER_NS)
        sh("ip", "link", "add", "name", "eth0", "netns", MEMBER_NS, "type", "veth",
           "peer", "name", "downlink", "netns", ROUTER_NS)
        # One packet per skb: the delay line's loss then hits single packets, as on a real path.
        router, member = ("ip", "netns", "exec", ROUTER_NS), ("ip", "netns", "exec", MEMBER_NS)
        ends = [((), ROOT_IF, ROOT_ADDR), (router, "uplink", ROUTER_UP), (router, "downlink", ROUTER_DOWN),
                (member, "eth0", MEMBER_ADDR)]
        for prefix, iface, address in ends:
            sh(*prefix, "ip", "link", "set", iface, "gso_max_segs", "1")
            sh(*prefix, "ip", "addr", "add", address + "/24", "dev", iface)
            sh(*prefix, "ip", "link", "set", iface, "up")
        sh("ip", "addr", "add", RELAY_ADDR + "/32", "dev", ROOT_IF)
        sh("ip", "route", "add", "10.203.1.0/24", "via", ROUTER_UP)
        in_ns(ROUTER_NS, "ip", "route", "add", "10.203.3.0/24", "via", ROOT_ADDR)
        in_ns(MEMBER_NS, "ip", "route", "add", "default", "via", ROUTER_DOWN)
        for key in ("net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter"):
            in_ns(ROUTER_NS, "sh", "-c", f"echo {1 if 'forward' in key else 0} > /proc/sys/{key}")

    def _rules(self) -> list[list[str]]:
        return [["iif", "downlink", "to", RELAY_ADDR, "lookup", DELAY_TABLE, "priority", "100"],
                ["iif", "uplink", "from", RELAY_ADDR, "lookup", DELAY_TABLE, "priority", "101"]]

    def prepare_delay(self, log_dir: Path, seed: int) -> None:
        """Start the delay line (it takes a moment), not yet in the path."""
        self.delay_line = Proc("delayline", ["ip", "netns", "exec", ROUTER_NS, sys.executable,
                                             str(LAB / "delayline.py"), DELAY_DEVICE, str(DELAY_MS_EACH_WAY),
                                             str(LOSS_PERCENT), str(seed), "600"], log_dir)
        line = self.delay_line
        wait_for(lambda: "ready" in line.output() or not line.alive(), 10, "the delay line to start")
        assert line.alive(), f"the delay line did not start:\n{line.output()}"

    def impair(self) -> None:
        """From now on the relay's packets wait DELAY_MS_EACH_WAY each way and LOSS_PERCENT are lost."""
        in_ns(ROUTER_NS, "ip", "route", "add", "default", "dev", DELAY_DEVICE, "table", DELAY_TABLE)
        for rule in self._rules():
            in_ns(ROUTER_NS, "ip", "rule", "add", *rule)

    def repair(self) -> str:
        """Back to a clean path; the delay line's count of what it forwarded and dropped."""
        for rule in self._rules():
            in_ns(ROUTER_NS, "ip", "rule", "del", *rule, check=False)
        line, self.delay_line = self.delay_line, None
        assert line is not None
        line.stop()
        return line.log_path.read_text().strip().splitlines()[-1]


# ------------------------------------------------------------------ the network


def restart(net: Network, proc: Proc, count: int) -> Proc:
    """The same command again (as systemd restarts a unit), logging beside the first."""
    again = Proc(f"{proc.name.split('~')[0]}~{count}", list(proc.popen.args), net.root)
    net.procs.append(again)
    return again


def store_problems(hub_dir: Path) -> list[str]:
    """What is wrong with a hub's store: SQLite's integrity check (on the file itself, as the hub's next
    start would open it, WAL and all) and the ledger's own verify. Empty when intact."""
    if not (hub_dir / "hub.db").exists():
        return [f"{hub_dir} lost its hub.db"]
    problems = []
    db = sqlite3.connect(hub_dir / "hub.db", timeout=10)
    try:
        verdict = db.execute("PRAGMA integrity_check").fetchall()
    finally:
        db.close()
    if verdict != [("ok",)]:
        problems.append(f"integrity_check of {hub_dir}: {verdict[:5]}")
    verify = ladder("hub", "ledger", "verify", "--dir", str(hub_dir), check=False)
    if verify.returncode:
        problems.append(f"ledger verify of {hub_dir} ({verify.returncode}): {verify.stdout}{verify.stderr}")
    return problems


class FaultNet:
    """The hubs, exits, user, relay and origin of the fault runs (see the module docstring)."""

    def __init__(self, root: Path):
        self.root = root
        self.nets: list[Network] = []
        self.procs: list[Proc] = []  # the origin and the relay
        self.restarts = Counter[str]()
        self.path = MemberPath()
        self.store = root / "a" / "hub"
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        root = self.root
        self.path.build()
        self.store.mkdir(parents=True)
        sh("mount", "-t", "tmpfs", "-o", f"size={HUB_STORE_MIB}m,mode=0700", "tmpfs", str(self.store))
        self.origin_port = free_port()
        self.procs.append(Proc("origin", [sys.executable, str(HERE / "seed_origin.py"), str(self.origin_port),
                                          *ORIGIN_ADDRS.values()], root))
        wait_for(lambda: all(accepts(self.origin_port, a) for a in ORIGIN_ADDRS.values()), 10,
                 "the origin to listen")
        self.a = Network(root / "a", name="a")
        self.nets.append(self.a)
        self.b = Network(root / "b", name="b")
        self.nets.append(self.b)
        peer(self.a, self.b, "b")
        self.exits = {"AA": self.a.exit("exit-a", "AA", "--allow-private"),
                      "BB": self.b.exit("exit-b", "BB", "--allow-private")}
        relay_port = free_port()
        self.relay = Proc("relay", [sys.executable, str(HERE / "cutrelay.py"), RELAY_ADDR, str(relay_port),
                                    "127.0.0.1", str(self.a.hub_port)], root)
        self.procs.append(self.relay)
        wait_for(lambda: "relaying" in self.relay.output() or not self.relay.alive(), 10, "the relay")
        self.user = self._user(relay_port)
        self.device_hub = (RELAY_ADDR, relay_port)
        self.device_proxy = self._device(relay_port)
        self.settle()

    def _user(self, relay_port: int) -> Member:
        """A member of A whose agent lives in the member namespace and dials A through the relay."""
        folder = self.a.join("user")
        config = folder / "ladder.toml"
        hub = f"127.0.0.1:{self.a.hub_port}"
        config.write_text(config.read_text().replace(hub, f"{RELAY_ADDR}:{relay_port}"))
        rules = folder / "faults.rules"
        rules.write_text("".join(f"ip-cidr {address}/32 -> exit:{country}\n"
                                 for country, address in ORIGIN_ADDRS.items()) + "default -> block\n")
        port = free_port()
        proc = self.a.start_program("user", "ip", "netns", "exec", MEMBER_NS, sys.executable, "-m", "ladder",
                                    "up", "--dir", str(folder), "--proxy", f"{MEMBER_ADDR}:{port}",
                                    "--lan-open", "--rules", str(rules), "--exit", "auto")
        user = Member("user", folder, proc)
        user.proxy = (MEMBER_ADDR, port)
        user.wait_up(30)
        return user

    def _device(self, relay_port: int) -> tuple[str, int]:
        """The user's phone: `ladder hub device add` on A, and Debian's `trojan` with its profile in the
        member namespace, dialling A through the same relay as the user's agent (so cuts, pauses and the
        delay line hit it too), with the user's rules. Its SOCKS5 address."""
        rules = self.user.folder / "faults.rules"
        added = ladder("hub", "device", "add", "phone", "--owner", "user", "--rules", str(rules),
                       "--dir", str(self.a.hub_dir))
        password = added.stdout.strip().splitlines()[-1].removeprefix("trojan://").split("@")[0]
        self.device_password = password
        port = free_port()
        config = {"run_type": "client", "local_addr": MEMBER_ADDR, "local_port": port,
                  "remote_addr": RELAY_ADDR, "remote_port": relay_port, "password": [password],
                  "log_level": 1, "ssl": {"verify": True, "verify_hostname": False,
                                          "cert": str(self.a.hub_dir / "tls.crt"), "sni": ""}}
        path = self.root / "trojan-phone.json"
        path.write_text(json.dumps(config))
        proc = self.a.start_program("trojan-phone", "ip", "netns", "exec", MEMBER_NS, "trojan", "-c",
                                    str(path))
        wait_for(lambda: accepts(port, MEMBER_ADDR) or not proc.alive(), 15, "the device's trojan to listen")
        assert proc.alive(), f"the device's trojan died:\n{proc.output()}"
        return (MEMBER_ADDR, port)

    def fetch(self, stream: Stream, timeout: float = IO_TIMEOUT) -> tuple[str, str]:
        """`stream` through its path, classified. Debian's trojan ends its SOCKS5 side with a FIN
        whatever ended the TLS (its ClientSession::destroy: a reset from the hub too), so a short clean
        EOF there is HIDDEN, not TRUNCATED; the device-tls path sees the hub's own end."""
        if stream.path == "device-tls":
            return fetch_trojan(self.device_hub, self.a.hub_dir / "tls.crt", self.device_password,
                                self.origin_port, stream, timeout)
        assert self.user.proxy is not None
        outcome, detail = fetch(self.device_proxy if stream.path == "device" else self.user.proxy,
                                self.origin_port, stream, timeout)
        if stream.path == "device" and outcome == TRUNCATED:
            return HIDDEN, detail
        return outcome, detail

    def probe(self, path: str) -> bool:
        """A tiny fetch through `path` to each exit's origin arrives whole."""
        return all(self.fetch(Stream(0, 7, 100, country, path), PROBE_TIMEOUT)[0] == INTACT
                   for country in sorted(ORIGIN_ADDRS))

    def recovered(self) -> bool:
        """Everything is back: both hubs peered, both exits and the user up (each status written by the
        process running now, not one killed), the user sees both exits, and a tiny fetch through each path
        (the user's agent, the device) to each exit arrives whole."""
        linked = all(peers_up(net) for net in self.nets)
        members = [self.user, *self.exits.values()]
        up = all(m.status().get("state") == "up" and m.status().get("pid") == m.proc.pid for m in members)
        return (linked and up
                and {e.get("name") for e in self.user.status().get("exits", [])} >= {"exit-a", "exit-b.b"}
                and all(self.probe(path) for path in PATHS))

    def settle(self, timeout: float = RECOVER_TIMEOUT) -> float:
        """Wait for recovery, by the agents' own reconnects; the seconds it took."""
        start = time.monotonic()
        try:
            wait_for(self.recovered, timeout, "the network to recover", interval=0.2)
        except AssertionError as late:
            raise AssertionError(f"{late}: {self.states()}") from None
        return time.monotonic() - start

    def states(self) -> str:
        """How each member is, and a dead one's last line (what a stuck recovery waits on)."""
        said = []
        for member in (self.user, *self.exits.values()):
            lines = member.proc.output().strip().splitlines() if not member.proc.alive() else []
            said.append(f"{member.name} {member.status().get('state')}"
                        + (f", exited: {lines[-1] if lines else ''}" if not member.proc.alive() else ""))
        return "; ".join(said)

    def hub_net(self, which: str) -> Network:
        return self.a if which == "a" else self.b

    def kill_hub(self, which: str, sig: int) -> list[str]:
        """Kill (or stop) a hub, check its store as it was left, start it again."""
        net = self.hub_net(which)
        net.hub.stop(sig)
        problems = store_problems(net.hub_dir)
        self.restarts[f"hub-{which}"] += 1
        net.hub = net.start_hub(f"hub~{self.restarts[f'hub-{which}']}")
        return problems

    def kill_exit(self, country: str) -> None:
        member = self.exits[country]
        member.proc.stop(signal.SIGKILL)
        self.restarts[member.name] += 1
        net = self.a if country == "AA" else self.b
        member.proc = restart(net, member.proc, self.restarts[member.name])

    def kill_user(self) -> None:
        """kill -9 the user's agent and start it again, as systemd would."""
        self.user.proc.stop(signal.SIGKILL)
        self.restarts["user"] += 1
        self.user.proc = restart(self.a, self.user.proc, self.restarts["user"])

    def cut(self) -> None:
        self.relay.popen.send_signal(signal.SIGUSR1)

    def pause(self) -> None:
        self.relay.popen.send_signal(signal.SIGHUP)

    def restore(self) -> None:
        self.relay.popen.send_signal(signal.SIGUSR2)

    def fill_store(self) -> Path:
        """Fill hub A's tmpfs to the last byte with a file; the file."""
        filler = self.store / "filler"
        with open(filler, "wb") as f:
            chunk = b"\0" * MiB
            for _ in range(HUB_STORE_MIB + 1):
                try:
                    f.write(chunk)
                    f.flush()
                except OSError:
                    break
        return filler

    def close(self) -> list[str]:
        """Stop everything; the log problems found (tracebacks, unretrieved exceptions)."""
        found = []
        try:
            if self.path.delay_line is not None:
                self.path.repair()
            for net in reversed(self.nets):
                try:
                    net.close()
                except AssertionError as problem:
                    found.append(str(problem)[:3000])
            for proc in self.procs:
                proc.stop()
            for proc in self.procs:
                try:
                    proc.check_log()
                except AssertionError as problem:
                    found.append(str(problem)[:3000])
        finally:
            for proc in (p for net in self.nets for p in net.procs):
                proc.stop(signal.SIGKILL)  # what a failed stop left running
            sh("umount", str(self.store), check=False)
            self.path.cleanup()
        return found


def peers_up(net: Network) -> bool:
    """The hub says every peer link is up (`ladder hub peers`, which fails while the hub starts)."""
    listed = ladder("hub", "peers", "--json", "--dir", str(net.hub_dir), check=False)
    found = json.loads(listed.stdout)["peers"] if listed.returncode == 0 else []
    return bool(found) and all(p["up"] for p in found)


# ------------------------------------------------------------------ streams


INTACT, FAILED, TRUNCATED, CORRUPTED = "intact", "failed-visibly", "TRUNCATED", "CORRUPTED"
HIDDEN = "short-via-trojan"  # a clean EOF too early from trojan: it sends a FIN however its TLS ended
LOST = (TRUNCATED, CORRUPTED)
RETRIED = (FAILED, HIDDEN)


@dataclass
class Stream:
    index: int
    seed: int
    size: int
    country: str  # which exit's origin address it goes to
    path: str = "user"  # which proxy it starts at (PATHS)
    outcome: str = ""
    detail: str = ""
    received: int = 0  # bytes so far
    started: float = 0.0
    ended: float = 0.0
    retry: str = ""
    retry_detail: str = ""


def plan_streams(count: int, cap: int, rng: random.Random) -> list[Stream]:
    """Mixed sizes, most small: 70 % up to 64 KiB, 22 % up to 1 MiB, 6 % up to 8 MiB, 2 % up to `cap`
    (at least one of exactly `cap`)."""
    streams = []
    for index in range(count):
        r = rng.random()
        if r < 0.70:
            size = rng.randint(1, 64 * KiB)
        elif r < 0.92:
            size = rng.randint(64 * KiB, MiB)
        elif r < 0.98:
            size = rng.randint(MiB, min(8 * MiB, cap))
        else:
            size = rng.randint(min(8 * MiB, cap), cap)
        streams.append(Stream(index, rng.getrandbits(48), size, rng.choice(sorted(ORIGIN_ADDRS))))
    streams[rng.randrange(count)].size = cap
    for stream in streams:  # drawn after the sizes, so a seed's sizes are those of the runs before devices
        r = rng.random()
        stream.path = "device" if r < DEVICE_SHARE else "device-tls" if r < DEVICE_SHARE + DEVICE_TLS_SHARE \
            else "user"
    return streams


def fetch(proxy: tuple[str, int], origin_port: int, stream: Stream, timeout: float = IO_TIMEOUT
          ) -> tuple[str, str]:
    """One stream through the SOCKS5 proxy, checked byte by byte: (outcome, what was seen).

    `stream.received` follows the bytes as they come (the faults look at it).
    """
    try:
        with socket.create_connection(proxy, timeout=min(CONNECT_TIMEOUT, timeout)) as sock:
            sock.settimeout(timeout)
            address = socket.inet_aton(ORIGIN_ADDRS[stream.country])
            # The greeting on its own first: Debian's trojan takes it only as one read by itself.
            sock.sendall(b"\x05\x01\x00")
            reply = recv_exact(sock, 2)
            if reply == b"\x05\x00":
                sock.sendall(b"\x05\x01\x00\x01" + address + struct.pack("!H", origin_port))
                reply += recv_exact(sock, 10)
            if reply[:2] != b"\x05\x00" or reply[2:4] != b"\x05\x00":
                return FAILED, f"refused at open: {reply.hex()}"
            sock.sendall(b"%d %d\n" % (stream.seed, stream.size))
            return _check(sock, stream)
    except TimeoutError:
        return FAILED, f"no byte for {timeout:.0f} s after {stream.received} of {stream.size}"
    except EOFError as cut:
        return FAILED, f"closed during the SOCKS5 reply: {cut}"
    except OSError as error:
        return FAILED, f"{type(error).__name__} after {stream.received} of {stream.size}: {error}"


def fetch_trojan(hub: tuple[str, int], cert: Path, password: str, origin_port: int, stream: Stream,
                 timeout: float = IO_TIMEOUT) -> tuple[str, str]:
    """One stream as a Trojan app's own network code sends it: TLS to the hub (its certificate pinned),
    the password line, the CONNECT request and the first bytes in one write; checked as `fetch` checks.

    Here the end of TLS is seen as it is: the hub's close_notify is the clean end (recv gives b""),
    a TCP FIN without it (SSLEOFError, ragged EOFs not suppressed) or a reset is a visible failure.
    """
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    try:
        with socket.create_connection(hub, timeout=min(CONNECT_TIMEOUT, timeout)) as raw, \
                context.wrap_socket(raw, suppress_ragged_eofs=False) as tls:
            tls.settimeout(timeout)
            tls.sendall(password_hash(password) + b"\r\n"
                        + trojan_request(TROJAN_CONNECT, ORIGIN_ADDRS[stream.country], origin_port)
                        + b"%d %d\n" % (stream.seed, stream.size))
            return _check(tls, stream)
    except TimeoutError:
        return FAILED, f"no byte for {timeout:.0f} s after {stream.received} of {stream.size}"
    except OSError as error:  # ssl.SSLError is one
        return FAILED, f"{type(error).__name__} after {stream.received} of {stream.size}: {error}"


def _check(sock: socket.socket, stream: Stream) -> tuple[str, str]:
    """Read the answer to its end, byte by byte against the seeded content (OSError passes up)."""
    got = 0
    while True:
        chunk = sock.recv(BLOCK)
        if not chunk:
            break
        if got + len(chunk) > stream.size:
            return CORRUPTED, f"{got + len(chunk)} bytes, more than the {stream.size} asked for"
        if chunk != expected(stream.seed, got, len(chunk)):
            want = expected(stream.seed, got, len(chunk))
            first = next(i for i, (x, y) in enumerate(zip(chunk, want, strict=True)) if x != y)
            return CORRUPTED, f"wrong byte at {got + first} of {stream.size}"
        got += len(chunk)
        stream.received = got
    if got < stream.size:
        return TRUNCATED, f"clean EOF after {got} of {stream.size} bytes"
    return INTACT, ""


# ------------------------------------------------------------------ the run


@dataclass
class Injected:
    fault: str
    started: float
    midway: bool  # a stream was part-way through when it struck
    ended: float = 0.0
    detail: str = ""
    reconnect_s: float | None = None
    store_checks: int = 0
    store_problems: list[str] = field(default_factory=list)


class Run:
    """Streams by a few clients at once while the faults come one by one, each at a seeded random moment.

    The streams are cut into one share per fault and a last one. Fault j
    fires once a seeded big stream of the first half of share j has started
    (or a seeded 10-50 % of the share), as soon as a stream in flight is
    part-way through (MIDWAY_WAIT at most; the rest of the share waits for
    it); share j+1 waits until fault j has recovered. So every fault meets
    streams in flight, some of them half done, and leaves streams for the
    next.
    """

    def __init__(self, net: FaultNet, streams: list[Stream], faults: list[str], rng: random.Random,
                 workers: int, deadline: float):
        self.net, self.streams, self.faults, self.rng = net, streams, faults, rng
        self.workers, self.deadline = workers, deadline
        share = len(streams) / (len(faults) + 1)
        self.triggers = [self._trigger(int(j * share), int((j + 1) * share)) for j in range(len(faults))]
        self.boundaries = [int((j + 1) * share) for j in range(len(faults))]
        self.injected: list[Injected] = []
        self.errors: list[str] = []
        self.lock = threading.Condition()
        self.next_index = 0
        self.faults_done = 0
        self.faults_over = False  # a fault failed: no more of them
        self.in_flight: dict[int, Stream] = {}

    def _trigger(self, first: int, end: int) -> int:
        """The fault of the share [first, end) strikes once this many streams have started: just after
        a seeded one of its big streams (2 MiB or more), in the first half, else at a seeded 10-50 %."""
        half = range(first, first + max(1, (end - first) // 2))
        big = [i for i in half if self.streams[i].size >= 2 * MiB]
        if big:
            return self.rng.choice(big) + 1
        return first + int(self.rng.uniform(0.1, 0.5) * (end - first))

    # --- clients

    def _may_start(self, index: int) -> bool:
        if self.faults_over:
            return True
        coming = len(self.injected)  # the next fault: while it waits for its moment, the share waits too
        if coming < len(self.triggers) and index >= self.triggers[coming] + self.workers:
            return False
        return self.faults_done >= sum(boundary <= index for boundary in self.boundaries)

    def _client(self) -> None:
        while time.monotonic() < self.deadline:
            with self.lock:
                if self.next_index >= len(self.streams):
                    return
                if not self._may_start(self.next_index):
                    self.lock.wait(0.2)
                    continue
                stream = self.streams[self.next_index]
                self.next_index += 1
                self.lock.notify_all()
            stream.started = time.monotonic()
            with self.lock:
                self.in_flight[stream.index] = stream
            stream.outcome, stream.detail = self.net.fetch(stream)
            with self.lock:
                del self.in_flight[stream.index]
            stream.ended = time.monotonic()
            if stream.outcome != INTACT:
                time.sleep(FAILED_PAUSE)

    # --- faults

    def _faults(self) -> None:
        self._prepare(0)
        for j, fault in enumerate(self.faults):
            with self.lock:
                while self.next_index < self.triggers[j] and time.monotonic() < self.deadline:
                    self.lock.wait(0.2)
                moment = time.monotonic() + MIDWAY_WAIT
                while not self._midway() and time.monotonic() < min(moment, self.deadline):
                    self.lock.wait(0.01)
                midway = self._midway()
            if time.monotonic() >= self.deadline:
                return
            record = Injected(fault, time.monotonic(), midway=midway)
            with self.lock:
                self.injected.append(record)
                self.lock.notify_all()
            try:
                self._inject(record)
            except Exception as error:  # reported in the JSON, and the run then fails
                self.errors.append(f"{fault}: {type(error).__name__}: {str(error)[:2000]}")
                record.ended = time.monotonic()
                with self.lock:  # no more faults: the streams left run, to be counted
                    self.faults_over = True
                    self.lock.notify_all()
                return
            self._prepare(j + 1)  # before the next share of streams is let go
            with self.lock:
                self.faults_done = j + 1
                self.lock.notify_all()

    def _midway(self) -> bool:
        """A stream in flight is part-way through, a MiB or more still to come: the moment to strike
        (the lock is held)."""
        return any(0 < s.received <= s.size - MiB for s in self.in_flight.values())

    def _prepare(self, j: int) -> None:
        """What fault j needs ready beforehand, so that it strikes at once when its moment comes."""
        if j < len(self.faults) and self.faults[j] == "delay_loss":
            self.net.path.prepare_delay(self.net.root, self.rng.randrange(1 << 16))

    def _inject(self, record: Injected) -> None:
        net, problems = self.net, record.store_problems
        if record.fault == "kill_exit":
            country = self.rng.choice(sorted(net.exits))
            record.detail = f"exit {net.exits[country].name}"
            net.kill_exit(country)
        elif record.fault in ("kill_hub", "kill_peer_hub", "restart_hub"):
            which = "b" if record.fault == "kill_peer_hub" else "a"
            sig = signal.SIGTERM if record.fault == "restart_hub" else signal.SIGKILL
            problems += net.kill_hub(which, sig)
            record.store_checks += 1
        elif record.fault == "kill_user":
            net.kill_user()
        elif record.fault == "cut_link":
            net.cut()
            time.sleep(CUT_SECONDS)
            net.restore()
        elif record.fault == "pause_link":
            net.pause()
            time.sleep(PAUSE_SECONDS)
            net.restore()
        elif record.fault == "delay_loss":
            net.path.impair()
            time.sleep(DELAY_SECONDS)
            record.detail = net.path.repair()
        elif record.fault == "disk_full":
            filler = net.fill_store()
            time.sleep(DISK_FULL_SECONDS)
            filler.unlink()
            if not net.a.hub.alive():
                lines = net.a.hub.output().strip().splitlines()
                record.detail = f"hub A exited: {lines[-1] if lines else ''}"
                problems += net.kill_hub("a", signal.SIGKILL)
                record.store_checks += 1
            else:
                record.detail = "hub A kept running"
        else:
            raise AssertionError(f"no such fault: {record.fault}")
        record.reconnect_s = round(net.settle(), 2)
        for hub in net.nets:
            problems += store_problems(hub.hub_dir)
            record.store_checks += 1
        record.ended = time.monotonic()

    # --- the whole

    def run(self) -> None:
        clients = [threading.Thread(target=self._client, daemon=True) for _ in range(self.workers)]
        faults = threading.Thread(target=self._faults, daemon=True)
        for thread in (*clients, faults):
            thread.start()
        for thread in (*clients, faults):
            thread.join(max(0.0, self.deadline - time.monotonic()) + IO_TIMEOUT + RECOVER_TIMEOUT)
        try:
            self.net.settle()
        except AssertionError as error:
            self.errors.append(f"final recovery: {error}")
        for stream in self.streams:
            if stream.outcome in RETRIED and time.monotonic() < self.deadline + RECOVER_TIMEOUT:
                again = dataclasses.replace(stream, received=0)
                stream.retry, stream.retry_detail = self.net.fetch(again)

    def fault_of(self, stream: Stream) -> str:
        """The fault whose window (injection to recovery, and a second after) the stream failed in, or
        for a stream that did not fail, the first window it overlapped."""
        windows = [(r.started, r.ended + 1.0, r.fault) for r in self.injected]
        if stream.outcome != INTACT:
            failed_in = [fault for start, end, fault in windows if start <= stream.ended <= end]
            if failed_in:
                return failed_in[-1]
        overlapped = [fault for start, end, fault in windows
                      if stream.started <= end and stream.ended >= start]
        return overlapped[0] if overlapped else "calm"

    def report(self) -> dict:
        per: dict[str, dict] = {}
        for name in (*FAULTS, "calm"):
            records = [r for r in self.injected if r.fault == name]
            per[name] = {"injected": len(records), **_counts(),
                         "struck_midway": sum(r.midway for r in records),
                         "store_checks": sum(r.store_checks for r in records),
                         "store_checks_passed": sum(r.store_checks for r in records if not r.store_problems),
                         "reconnect_s": [r.reconnect_s for r in records],
                         "details": [r.detail for r in records if r.detail],
                         "paths": {path: _counts() for path in PATHS}}
        ran = [s for s in self.streams if s.outcome]
        for stream in ran:
            entry = per[self.fault_of(stream)]
            for counts in (entry, entry["paths"][stream.path]):
                counts["streams"] += 1
                counts[stream.outcome] += 1
                counts["lost"] += stream.outcome in LOST
                counts["retried_ok"] += stream.retry == INTACT
                counts["failed_mid_stream"] += stream.outcome == FAILED and stream.received > 0
        for name in list(per):
            if name != "calm" and per[name]["injected"] == 0:
                del per[name]
        failed = [s for s in ran if s.outcome == FAILED]
        retried = [s for s in ran if s.outcome in RETRIED]
        totals = {"streams_planned": len(self.streams), "streams_run": len(ran),
                  "bytes_planned": sum(s.size for s in self.streams),
                  INTACT: sum(s.outcome == INTACT for s in ran), FAILED: len(failed),
                  HIDDEN: sum(s.outcome == HIDDEN for s in ran),
                  "failed_mid_stream": sum(s.received > 0 for s in failed),
                  "bytes_before_failing": sum(s.received for s in failed),
                  "retried_ok": sum(s.retry == INTACT for s in retried),
                  "retry_failed": sum(s.retry not in ("", INTACT) for s in retried),
                  "not_retried": sum(s.retry == "" for s in retried),
                  "lost": sum(s.outcome in LOST for s in ran),
                  "faults_injected": len(self.injected), "faults_planned": len(self.faults),
                  "store_problems": [p for r in self.injected for p in r.store_problems],
                  "errors": self.errors,
                  "paths": {path: {"streams": sum(s.path == path for s in ran),
                                   INTACT: sum(s.path == path and s.outcome == INTACT for s in ran),
                                   FAILED: sum(s.path == path for s in failed),
                                   HIDDEN: sum(s.path == path and s.outcome == HIDDEN for s in ran),
                                   "retried_ok": sum(s.path == path and s.retry == INTACT for s in retried),
                                   "lost": sum(s.path == path and s.outcome in LOST for s in ran)}
                            for path in PATHS}}
        examples = {
            "lost": [f"#{s.index} {s.path} {s.outcome} (seed {s.seed}, size {s.size}): {s.detail}"
                     for s in ran if s.outcome in LOST][:20],
            "failed_visibly": {name: [f"#{s.index} {s.path}: {s.detail}" for s in failed
                                      if self.fault_of(s) == name][:5] for name in per},
            HIDDEN: [f"#{s.index} (seed {s.seed}, size {s.size}): {s.detail}" for s in ran
                     if s.outcome == HIDDEN][:20],
            "retry_failed": [f"#{s.index} {s.path}: {s.retry} {s.retry_detail}" for s in retried
                             if s.retry not in ("", INTACT)][:20]}
        began = min((s.started for s in ran), default=0.0)
        timeline = [{"fault": r.fault, "at_s": round(r.started - began, 1),
                     "for_s": round(r.ended - r.started, 1)} for r in self.injected]
        return {"faults": per, "totals": totals, "examples": examples, "timeline": timeline}


def _counts() -> dict[str, int]:
    """A fault's (or a path's within it) stream counts, all zero."""
    return {"streams": 0, INTACT: 0, FAILED: 0, "failed_mid_stream": 0, HIDDEN: 0, "retried_ok": 0,
            "lost": 0, TRUNCATED: 0, CORRUPTED: 0}


def run_faults(root: Path, streams: int, cap: int, repeats: int, seed: int, workers: int,
               time_limit: float, only: tuple[str, ...] = FAULTS) -> dict:
    """Build the network, run `streams` streams through `repeats` rounds of every fault (or of those in
    `only`), tear it down."""
    rng = random.Random(seed)
    started = time.monotonic()
    deadline = started + time_limit
    plan = plan_streams(streams, cap, rng)
    faults = [fault for _ in range(repeats) for fault in FAULTS if fault in only]
    rng.shuffle(faults)
    net = FaultNet(root)
    log_problems: list[str] = []
    try:
        run = Run(net, plan, faults, rng, workers, deadline)
        run.run()
        report = run.report()
    finally:
        log_problems = net.close()
    report["totals"]["log_problems"] = log_problems
    report["totals"]["seconds"] = round(time.monotonic() - started, 1)
    report["settings"] = {"streams": streams, "cap_bytes": cap, "repeats": repeats, "seed": seed,
                          "workers": workers, "time_limit_s": time_limit, "device_share": DEVICE_SHARE,
                          "device_tls_share": DEVICE_TLS_SHARE,
                          "delay_ms_each_way": DELAY_MS_EACH_WAY, "loss_percent": LOSS_PERCENT,
                          "cut_s": CUT_SECONDS, "pause_s": PAUSE_SECONDS, "delay_s": DELAY_SECONDS,
                          "disk_full_s": DISK_FULL_SECONDS,
                          "hub_store_mib": HUB_STORE_MIB}
    return report


def clean(report: dict) -> bool:
    """Nothing lost, every failed stream whole on retry, every fault injected, every store and log intact."""
    totals = report["totals"]
    return (totals["lost"] == 0 and totals["retry_failed"] == 0 and totals["not_retried"] == 0
            and totals["streams_run"] == totals["streams_planned"]
            and totals["faults_injected"] == totals["faults_planned"]
            and not totals["store_problems"] and not totals["errors"] and not totals["log_problems"])

