"""The lab's network: namespaces, veth links, routes, firewalls, and processes run inside them.

Every namespace this module makes is named ``lad-*`` and every address comes
from 10.200.0.0/16; nothing touches the machine's own interfaces or routes
(veth pairs are created directly inside their namespaces). ``cleanup()``
removes exactly what the lab makes: the ``lad-*`` namespaces, the processes
still running in them, and /etc/netns/lad-*.

Addresses (``ADDR``), inside ("CN") in 10.200.0.0/17, outside ("US") in
10.200.128.0/17; docs/LAB.md has the drawing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

PREFIX = "lad-"
NETNS_ETC = Path("/etc/netns")
INSIDE, OUTSIDE = "10.200.0.0/17", "10.200.128.0/17"

# Every address the lab uses, by role.
ADDR = {
    # inside: the ISP router lad-cnisp and what hangs off it
    "cnisp-border": "10.200.0.1", "border-cn": "10.200.0.2",
    "cnisp-hub": "10.200.1.1", "hub": "10.200.1.10",
    "cnisp-cnweb": "10.200.2.1", "cnweb": "10.200.2.10",
    "cnisp-ref": "10.200.3.1", "ref": "10.200.3.10",
    "cnisp-cnhome": "10.200.4.1", "cnhome-wan": "10.200.4.10",
    "cnhome-lan0": "10.200.10.1", "phone": "10.200.10.10",
    "cnhome-lan1": "10.200.11.1", "cnsharer": "10.200.11.10",
    "cnhome-lan2": "10.200.12.1", "handset": "10.200.12.10",  # a phone with a stock app, no agent
    # outside: the ISP router lad-usisp and what hangs off it
    "usisp-border": "10.200.128.1", "border-us": "10.200.128.2",
    "usisp-usweb": "10.200.129.1", "usweb": "10.200.129.10", "usweb-mirror": "10.200.129.20",
    "usisp-ushome": "10.200.130.1", "ushome-wan": "10.200.130.10",
    "ushome-lan0": "10.200.140.1", "laptop": "10.200.140.10",
    "usisp-usvps": "10.200.131.1", "usvps": "10.200.131.10",  # a VPS abroad: a second hub (issue 14)
    # what a poisoned resolver answers inside for the blocked name: nobody is there
    "poisoned": "10.200.250.250",
}

NAMESPACES = ["cnisp", "border", "usisp", "hub", "cnweb", "ref", "cnhome", "phone", "cnsharer",
              "handset", "usweb", "ushome", "laptop", "usvps"]

# (namespace a, interface in a, address of a, namespace b, interface in b, address of b); all /24.
LINKS = [
    ("border", "cn", "border-cn", "cnisp", "border", "cnisp-border"),
    ("border", "us", "border-us", "usisp", "border", "usisp-border"),
    ("hub", "eth0", "hub", "cnisp", "hub", "cnisp-hub"),
    ("cnweb", "eth0", "cnweb", "cnisp", "cnweb", "cnisp-cnweb"),
    ("ref", "eth0", "ref", "cnisp", "ref", "cnisp-ref"),
    ("cnhome", "wan", "cnhome-wan", "cnisp", "cnhome", "cnisp-cnhome"),
    ("phone", "eth0", "phone", "cnhome", "lan0", "cnhome-lan0"),
    ("cnsharer", "eth0", "cnsharer", "cnhome", "lan1", "cnhome-lan1"),
    ("handset", "eth0", "handset", "cnhome", "lan2", "cnhome-lan2"),
    ("usweb", "eth0", "usweb", "usisp", "usweb", "usisp-usweb"),
    ("ushome", "wan", "ushome-wan", "usisp", "ushome", "usisp-ushome"),
    ("laptop", "eth0", "laptop", "ushome", "lan0", "ushome-lan0"),
    ("usvps", "eth0", "usvps", "usisp", "usvps", "usisp-usvps"),
]

# (namespace, destination, gateway role)
ROUTES = [
    ("hub", "default", "cnisp-hub"), ("cnweb", "default", "cnisp-cnweb"), ("ref", "default", "cnisp-ref"),
    ("cnhome", "default", "cnisp-cnhome"),
    ("phone", "default", "cnhome-lan0"), ("cnsharer", "default", "cnhome-lan1"),
    ("handset", "default", "cnhome-lan2"),
    ("cnisp", OUTSIDE, "border-cn"),
    # The ISPs route to the home LANs through the home routers, as a neighbour on the same
    # segment could: so an inbound probe really reaches each home router's firewall.
    ("cnisp", "10.200.10.0/24", "cnhome-wan"), ("cnisp", "10.200.11.0/24", "cnhome-wan"),
    ("cnisp", "10.200.12.0/24", "cnhome-wan"),
    ("border", INSIDE, "cnisp-border"), ("border", OUTSIDE, "usisp-border"),
    ("usisp", INSIDE, "border-us"), ("usisp", "10.200.140.0/24", "ushome-wan"),
    ("usweb", "default", "usisp-usweb"), ("ushome", "default", "usisp-ushome"),
    ("laptop", "default", "ushome-lan0"), ("usvps", "default", "usisp-usvps"),
]
ROUTERS = ["cnisp", "border", "usisp", "cnhome", "ushome"]
HOME_ROUTERS = {"cnhome": ["lan0", "lan1", "lan2"], "ushome": ["lan0"]}
INSIDE_NAMESPACES = ["cnisp", "hub", "cnweb", "ref", "cnhome", "phone", "cnsharer", "handset"]
OUTSIDE_NAMESPACES = ["usisp", "usweb", "ushome", "laptop", "usvps", "border"]
BORDER_IFACES = ["cn", "us"]
ADDRESS_RULE, KEYWORD_RULE = 0, 2  # positions in the border's LAD-BLOCK chain (see border_firewall)


def ns(name: str) -> str:
    """The real namespace name of a lab host."""
    return PREFIX + name


class CommandFailed(AssertionError):
    pass


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run one command to completion (bounded), raising with its output if it fails."""
    result = subprocess.run(list(args), capture_output=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise CommandFailed(f"{' '.join(args)} failed ({result.returncode}): "
                            f"{result.stderr.decode(errors='replace').strip()}")
    return result


def run_in(host: str, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a command inside lab host `host`'s namespace."""
    return sh("ip", "netns", "exec", ns(host), *args, check=check, timeout=timeout)


def lab_namespaces() -> list[str]:
    out = sh("ip", "netns", "list", check=False).stdout.decode()
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def cleanup() -> list[str]:
    """Remove every lad-* namespace (ending what still runs in it, by pid) and /etc/netns/lad-*.

    Safe to call at any point, also when setup failed half-way; returns what it removed.
    """
    removed = []
    for name in lab_namespaces():
        pids = [int(p) for p in sh("ip", "netns", "pids", name, check=False).stdout.split()]
        _end(pids)
        sh("ip", "netns", "del", name, check=False)
        removed.append(name)
    if NETNS_ETC.is_dir():
        for folder in NETNS_ETC.glob(PREFIX + "*"):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed


def _end(pids: list[int], grace: float = 5) -> None:
    """SIGTERM these pids, then SIGKILL whichever still lives after `grace` seconds."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for pid in pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def address_space_unused() -> str | None:
    """Why the lab cannot use 10.200.0.0/16 on this machine, or None."""
    out = sh("ip", "-o", "addr").stdout.decode() + sh("ip", "route").stdout.decode()
    if "10.200." in out:
        return "10.200.0.0/16 is already used on this machine's own interfaces or routes"
    return None


def write_hosts(host: str, names: dict[str, str]) -> None:
    """Give lab host `host` its own /etc/hosts (and a resolv.conf that fails fast)."""
    folder = NETNS_ETC / ns(host)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["127.0.0.1 localhost", "::1 localhost"] + [f"{ip} {name}" for name, ip in names.items()]
    (folder / "hosts").write_text("\n".join(lines) + "\n")
    # No DNS server exists in the lab: an unknown name fails at once instead of waiting.
    (folder / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")


def build_network(keyword: str, blocked: str) -> None:
    """Namespaces, links, routes, home NATs and the border firewall."""
    for name in NAMESPACES:
        sh("ip", "netns", "add", ns(name))
        run_in(name, "ip", "link", "set", "lo", "up")
    for a, a_if, a_addr, b, b_if, b_addr in LINKS:
        sh("ip", "link", "add", "name", a_if, "netns", ns(a), "type", "veth", "peer", "name", b_if,
           "netns", ns(b))
        for host, iface, role in ((a, a_if, a_addr), (b, b_if, b_addr)):
            # One packet per skb: the delay line's loss then hits single packets, as on a real path.
            run_in(host, "ip", "link", "set", iface, "gso_max_segs", "1")
            run_in(host, "ip", "addr", "add", ADDR[role] + "/24", "dev", iface)
            run_in(host, "ip", "link", "set", iface, "up")
    run_in("usweb", "ip", "addr", "add", ADDR["usweb-mirror"] + "/24", "dev", "eth0")
    for host, dest, via in ROUTES:
        run_in(host, "ip", "route", "add", dest, "via", ADDR[via])
    for host in ROUTERS:
        set_sysctl(host, "net/ipv4/ip_forward", "1")
    # The border's delay line (delayline.py) re-injects packets on its own device: no reverse-path check.
    set_sysctl("border", "net/ipv4/conf/all/rp_filter", "0")
    for host, lans in HOME_ROUTERS.items():
        home_nat(host, lans)
    border_firewall(keyword, blocked)


def set_sysctl(host: str, key: str, value: str) -> None:
    """Write /proc/sys/`key` inside `host` (net.* settings are per namespace)."""
    run_in(host, "sh", "-c", f"echo {value} > /proc/sys/{key}")


def home_nat(host: str, lans: list[str]) -> None:
    """A home router: masquerade out of wan, nothing in from wan that the LAN did not start."""
    rules = [
        ["-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"],
        ["-P", "FORWARD", "DROP"],
        ["-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        *[["-A", "FORWARD", "-i", lan, "-o", "wan", "-j", "ACCEPT"] for lan in lans],
        ["-P", "INPUT", "DROP"],
        ["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"],
        ["-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        *[["-A", "INPUT", "-i", lan, "-j", "ACCEPT"] for lan in lans],
    ]
    for rule in rules:
        run_in(host, "iptables", *rule)


def border_firewall(keyword: str, blocked: str) -> None:
    """The border: LAD-BAN (addresses the tests ban), then LAD-BLOCK (the blocked site, the keyword)."""
    rules = [
        ["-N", "LAD-BAN"],
        ["-N", "LAD-BLOCK"],
        ["-A", "FORWARD", "-j", "LAD-BAN"],
        ["-A", "FORWARD", "-j", "LAD-BLOCK"],
        ["-A", "LAD-BLOCK", "-d", blocked, "-j", "DROP"],
        ["-A", "LAD-BLOCK", "-s", blocked, "-j", "DROP"],
        ["-A", "LAD-BLOCK", "-p", "tcp", "-m", "string", "--algo", "bm", "--string", keyword, "-j", "DROP"],
    ]
    for rule in rules:
        run_in("border", "iptables", *rule)


def ban(address: str) -> None:
    for direction in ("-s", "-d"):
        run_in("border", "iptables", "-A", "LAD-BAN", direction, address, "-j", "DROP")


def unban(address: str) -> None:
    for direction in ("-s", "-d"):
        run_in("border", "iptables", "-D", "LAD-BAN", direction, address, "-j", "DROP")


def rule_packets(host: str, chain: str) -> list[int]:
    """Packet counters of each rule in `chain`, in order."""
    out = run_in(host, "iptables", "-L", chain, "-v", "-x", "-n").stdout.decode().splitlines()[2:]
    return [int(line.split()[0]) for line in out if line.strip()]


class Proc:
    """A long-running process inside a lab namespace; output goes to a log file."""

    def __init__(self, name: str, host: str, args: list[str], log_dir: Path):
        self.name = name
        self.host = host
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 -- open while the process runs
        # `ip netns exec` execs the command after entering the namespace: the pid is the command's.
        self.popen = subprocess.Popen(["ip", "netns", "exec", ns(host), *args], stdout=self._log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self, tail: int = 4000) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-tail:]

    def stop(self, sig: int = signal.SIGTERM, grace: float = 10) -> None:
        if self.alive():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll `predicate` until it returns something true; bounded by `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def listening(host: str, address: str, port: int) -> bool:
    """Whether something in `host` listens on TCP address:port (or on the wildcard address)."""
    out = run_in(host, "ss", "-Hltn", "sport", "=", f":{port}", check=False).stdout.decode()
    return any(line.split()[3].rsplit(":", 1)[0] in (address, "0.0.0.0", "*", "[::]")
               for line in out.splitlines() if line.strip())
