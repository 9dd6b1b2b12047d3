"""The running lab: the web sites, the hub and three members in their namespaces, and helpers to drive them.

`Lab.start()` builds the network (netlab.py), the sites (sites.py), starts
the hub and the members, and waits until the phone sees an exit in the US
and the laptop one in CN. The fixture in conftest.py tears it all down.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import netlab
import pcap
import sites
from netlab import ADDR, Proc, run_in, wait_for

HERE = Path(__file__).parent
TOOLS = ["ip", "ss", "iptables", "tcpdump", "nginx", "curl", "getent"]
KEYWORD = "forbiddenword"
MARKER = "ladder-lab-marker-5c21e8"
MAINLAND_MARKER = "mainland-only-marker-92b4d0"
BLOCKED_NAME = "blocked.example"
MAINLAND_NAME = "mainland.example.cn"  # under .cn, so the inside-cn rules send it directly
PROXY = "127.0.0.1:1080"
WEB_BACKEND, RAW_BACKEND = "127.0.0.1:8080", "127.0.0.1:8443"
FACE_PORT = 4443  # a second hub beside the first, with the built-in web face (no backends)
DELAY_DEVICE = "delay"
LAN_SERVICE_PORT = 8000  # an ordinary service on the home LANs, which must stay unreachable from outside


def preconditions() -> str | None:
    """Why the lab cannot run here (one line), or None."""
    if sys.platform != "linux":
        return "the firewall lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the firewall lab needs root (network namespaces, iptables); run as root or in CI"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return (f"the firewall lab needs {', '.join(missing)} "
                "(apt-get install iproute2 iptables tcpdump nginx-light curl)")
    return None


class Member:
    def __init__(self, lab: Lab, name: str, host: str, up_args: list[str]):
        self.lab = lab
        self.name = name
        self.host = host
        self.folder = lab.root / name
        self.up_args = up_args
        self.proc: Proc | None = None

    def join(self) -> None:
        invite = self.lab.ladder("hub", "invite", "--dir", str(self.lab.hub_dir), self.name).stdout.strip()
        self.lab.ladder_in(self.host, "join", invite, "--dir", str(self.folder))

    def start(self) -> None:
        self.proc = Proc(self.name, self.host,
                         [sys.executable, "-m", "ladder", "up", "--dir", str(self.folder), *self.up_args],
                         self.lab.root)

    def restart(self) -> None:
        self.proc.stop()
        (self.folder / "status.json").unlink(missing_ok=True)
        self.start()

    def status(self) -> dict:
        try:
            return json.loads((self.folder / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait_ready(self, exit_country: str | None = None, timeout: float = 30) -> None:
        def ready():
            if not self.proc.alive():
                raise AssertionError(f"{self.name}'s agent died:\n{self.proc.output()}")
            status = self.status()
            if status.get("state") != "up":
                return False
            return exit_country is None or any(e.get("country") == exit_country
                                               for e in status.get("exits", []))

        what = f"{self.name}'s link to come up" + (f" and an exit in {exit_country} to show"
                                                   if exit_country else "")
        try:
            wait_for(ready, timeout, what, interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstatus: {self.status()}\nlog:\n{self.proc.output()}") from None


class Capture:
    """One capture on a border interface: the pcap's path, and (after the block) the bytes that
    crossed it either way, IP headers included, as the kernel counted them."""

    def __init__(self, path: Path, iface: str):
        self.path = path
        self.tag = path.stem
        self.rules = [[f"-{way}", iface, "-m", "comment", "--comment", self.tag] for way in ("i", "o")]
        self.crossed = 0


class Lab:
    """The running lab: hosts, sites, the hub and the members, and helpers to drive them."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[Proc] = []
        self.hub_dir = root / "hub"
        self.hub_proc: Proc | None = None
        self.face_hub_proc: Proc | None = None  # the hub with the built-in face, for check 6
        self.members: dict[str, Member] = {}
        self.nat_rules: dict[str, str] = {}
        self._handshake: list[bytes] | None = None

    # -- building ----------------------------------------------------------------

    def start(self) -> None:
        inside = {BLOCKED_NAME: ADDR["poisoned"], MAINLAND_NAME: ADDR["cnweb"]}
        outside = {BLOCKED_NAME: ADDR["usweb"], MAINLAND_NAME: ADDR["cnweb"]}
        for host in netlab.INSIDE_NAMESPACES:
            netlab.write_hosts(host, inside)
        for host in netlab.OUTSIDE_NAMESPACES:
            netlab.write_hosts(host, outside)
        netlab.build_network(KEYWORD, ADDR["usweb"])
        self.nat_rules = {host: self.nat_table(host) for host in netlab.HOME_ROUTERS}
        self.start_sites()
        self.start_hub()
        self.start_members()
        for host in ("phone", "laptop"):
            self.spawn(f"lan-service-{host}", host, sys.executable, "-m", "http.server", "--bind", "0.0.0.0",
                       "--directory", str(self.root / "plain"), str(LAN_SERVICE_PORT))
        for host in ("phone", "laptop"):  # wait_for calls its lambdas before the loop goes on
            wait_for(lambda: netlab.listening(host, "0.0.0.0", LAN_SERVICE_PORT),  # noqa: B023
                     10, f"the LAN service on {host}")

    def spawn(self, name: str, host: str, *args: str) -> Proc:
        proc = Proc(name, host, list(args), self.root)
        self.procs.append(proc)
        return proc

    def nginx(self, name: str, host: str, servers: str, listens: list[tuple[str, int]]) -> Proc:
        conf = sites.nginx_config(self.root / f"nginx-{name}", servers)
        proc = self.spawn(f"nginx-{name}", host, "nginx", "-c", str(conf))
        for address, port in listens:
            wait_for(lambda: netlab.listening(host, address, port) or not proc.alive(), 10,  # noqa: B023
                     f"nginx {name} to listen on {address}:{port}")
            assert proc.alive(), f"nginx {name} died:\n{proc.output()}"
        return proc

    def start_sites(self) -> None:
        self.ca = sites.LabCA(self.root)
        self.blocked = sites.make_blocked_site(self.root / "blocked", KEYWORD, MARKER)
        cert, key = self.ca.issue("blocked", [BLOCKED_NAME, ADDR["usweb"], ADDR["usweb-mirror"]])
        self.nginx("usweb", "usweb",
                   sites.server_block(["80", "443 ssl"], self.blocked.root, cert=cert, key=key),
                   [(ADDR["usweb"], 80), (ADDR["usweb"], 443)])
        sites.make_plain_site(self.root / "mainland", MAINLAND_MARKER)
        self.nginx("cnweb", "cnweb",
                   sites.server_block(["80"], self.root / "mainland", allow=[netlab.INSIDE]),
                   [(ADDR["cnweb"], 80)])
        sites.make_plain_site(self.root / "plain", "It works.")
        cert, key = sites.self_signed(self.root, "ref", "www.example.org")
        self.nginx("ref", "ref", sites.server_block(["443 ssl"], self.root / "plain", cert=cert, key=key),
                   [(ADDR["ref"], 443)])

    def start_hub(self) -> None:
        address = f"{ADDR['hub']}:443"
        init = ["hub", "init", "--dir", str(self.hub_dir), "--name", "cnhub", "--listen", address,
                "--public-address", address]
        self.ladder(*init, "--web-backend", WEB_BACKEND, "--raw-backend", RAW_BACKEND)
        # The real web server beside the hub: plain HTTP for what the hub decrypts, TLS (the hub's
        # own certificate) for what it hands over raw. The same small site as the reference nginx.
        plain = self.root / "plain"
        servers = (sites.server_block([WEB_BACKEND], plain)
                   + sites.server_block([f"{RAW_BACKEND} ssl"], plain, cert=self.hub_dir / "tls.crt",
                                        key=self.hub_dir / "tls.key"))
        self.nginx("hub-backend", "hub", servers, [("127.0.0.1", 8080), ("127.0.0.1", 8443)])
        self.hub_proc = self.spawn("hub", "hub", sys.executable, "-m", "ladder", "hub", "run", "--dir",
                                   str(self.hub_dir))
        wait_for(lambda: netlab.listening("hub", ADDR["hub"], 443) or not self.hub_proc.alive(), 20,
                 "the hub to listen")
        assert self.hub_proc.alive(), f"the hub died:\n{self.hub_proc.output()}"
        # The same hub as every default install runs it: the built-in web face answers strangers.
        face_dir, face_address = self.root / "hub-face", f"{ADDR['hub']}:{FACE_PORT}"
        self.ladder("hub", "init", "--dir", str(face_dir), "--name", "facehub", "--listen", face_address,
                    "--public-address", face_address)
        self.face_hub_proc = self.spawn("hub-face", "hub", sys.executable, "-m", "ladder", "hub", "run",
                                        "--dir", str(face_dir))
        wait_for(lambda: netlab.listening("hub", ADDR["hub"], FACE_PORT) or not self.face_hub_proc.alive(),
                 20, "the hub with the built-in face to listen")
        assert self.face_hub_proc.alive(), \
            f"the hub with the built-in face died:\n{self.face_hub_proc.output()}"

    def start_members(self) -> None:
        specs = [
            ("laptop", "laptop",
             ["--share", "--country", "US", "--allow-private", "--proxy", PROXY, "--exit", "CN"]),
            ("cnsharer", "cnsharer", ["--share", "--country", "CN", "--allow-private"]),
            ("phone", "phone", ["--proxy", PROXY, "--exit", "US", "--rules", "inside-cn"]),
        ]
        for name, host, args in specs:
            member = self.members[name] = Member(self, name, host, args)
            member.join()
            member.start()
            self.procs.append(member.proc)
        self.wait_members()

    def wait_members(self) -> None:
        self.members["cnsharer"].wait_ready()
        self.members["laptop"].wait_ready("CN")
        self.members["phone"].wait_ready("US")

    def restart_member(self, name: str) -> None:
        member = self.members[name]
        self.procs.remove(member.proc)
        member.restart()
        self.procs.append(member.proc)
        self.wait_members()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    # -- driving -------------------------------------------------------------------

    def ladder(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """A `ladder` command that only touches files (hub init, hub invite), run here."""
        return self._checked([sys.executable, "-m", "ladder", *args], timeout)

    def ladder_in(self, host: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return self._checked(["ip", "netns", "exec", netlab.ns(host), sys.executable, "-m", "ladder", *args],
                             timeout)

    @staticmethod
    def _checked(command: list[str], timeout: float) -> subprocess.CompletedProcess:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def curl(self, host: str, *args: str, timeout: float = 10) -> subprocess.CompletedProcess:
        """curl inside `host`; the result's stdout is bytes. Never raises on curl's own failure."""
        return run_in(host, "curl", "-sS", "--max-time", str(timeout), *args, check=False,
                      timeout=timeout + 15)

    def proxy(self, *args: str) -> list[str]:
        """curl options to go through the member's local Ladder proxy."""
        return ["-x", f"socks5h://{PROXY}", *args]

    def fetch_big(self, host: str, timeout: float) -> tuple[str, float, subprocess.CompletedProcess]:
        """Fetch the 64 MiB file over HTTPS through `host`'s Ladder proxy: (sha256, seconds, result)."""
        out = self.root / f"big-{host}-{time.monotonic_ns()}.bin"
        started = time.monotonic()
        result = self.curl(host, *self.proxy("--cacert", str(self.ca.cert_path), "-o", str(out),
                                             f"https://{BLOCKED_NAME}/big.bin"), timeout=timeout)
        seconds = time.monotonic() - started
        digest = hashlib.sha256(out.read_bytes()).hexdigest() if out.exists() else "(no file)"
        out.unlink(missing_ok=True)
        return digest, seconds, result

    def nat_table(self, host: str) -> str:
        return run_in(host, "iptables", "-t", "nat", "-S").stdout.decode()

    def ladder_logs(self) -> str:
        """The last lines of the hub's and the members' logs, for failure messages."""
        procs = [self.hub_proc, self.face_hub_proc] + [m.proc for m in self.members.values()]
        return "\n".join(f"--- {p.name} ---\n{p.output(1200)}" for p in procs)

    def probes(self, mode: str, host: str, spec: dict, timeout: float = 60) -> dict:
        path = self.root / f"probes-{mode}-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(spec))
        result = run_in(host, sys.executable, str(HERE / "probes.py"), mode, str(path), timeout=timeout)
        return json.loads(result.stdout)

    @contextmanager
    def capture(self, iface: str):
        """tcpdump on the border's `iface` for the duration of the block; yields a Capture.

        tcpdump may drop packets of a fast burst on a loaded machine, so how
        much crossed is counted by the kernel (an iptables rule that only
        counts), and the pcap serves for what the packets look like.
        """
        capture = Capture(self.root / f"border-{iface}-{time.monotonic_ns()}.pcap", iface)
        # --immediate-mode: libpcap hands over each packet as it comes, not in blocks
        # that a SIGINT discards unread (a fast transfer's last few hundred packets);
        # with a 32 MiB kernel buffer (-B, KiB), since a burst of MBs crosses the
        # border in milliseconds, faster than tcpdump takes packets one by one.
        proc = self.spawn(f"tcpdump-{iface}", "border", "tcpdump", "-i", iface, "-n", "-s", "0", "-U",
                          "--immediate-mode", "-B", "32768", "-w", str(capture.path))
        for rule in capture.rules:
            run_in("border", "iptables", "-t", "mangle", "-I", "FORWARD", *rule)
        try:
            wait_for(lambda: "listening on" in proc.output() or not proc.alive(), 10, "tcpdump to start")
            assert proc.alive(), f"tcpdump did not start:\n{proc.output()}"
            yield capture
        finally:
            time.sleep(0.5)  # the last packets
            proc.stop(signal.SIGINT)
            self.procs.remove(proc)
            listing = run_in("border", "iptables", "-t", "mangle", "-nvxL", "FORWARD").stdout.decode()
            capture.crossed = sum(int(line.split()[1]) for line in listing.splitlines()
                                  if f"/* {capture.tag} */" in line)
            print(f"border {iface}: {capture.crossed} bytes crossed, as the kernel counted")
            for rule in capture.rules:
                run_in("border", "iptables", "-t", "mangle", "-D", "FORWARD", *rule, check=False)

    @contextmanager
    def impaired_border(self, delay_ms: int, loss_percent: float, max_seconds: float):
        """Everything crossing the border waits `delay_ms` and loses `loss_percent` of its packets.

        Both directions pass through delayline.py (this kernel has no netem):
        policy routing sends what arrives on either border interface into its
        TUN device. Yields the delay line's process; its log ends with the
        counts of forwarded and dropped packets.
        """
        proc = self.spawn("delayline", "border", sys.executable, str(HERE / "delayline.py"), DELAY_DEVICE,
                          str(delay_ms), str(loss_percent), "4", str(max_seconds))
        rules = [["rule", "add", "iif", iface, "lookup", "100", "priority", str(100 + i)]
                 for i, iface in enumerate(netlab.BORDER_IFACES)]
        try:
            wait_for(lambda: "ready" in proc.output() or not proc.alive(), 10, "the delay line to start")
            assert proc.alive(), f"the delay line did not start:\n{proc.output()}"
            run_in("border", "ip", "route", "add", "default", "dev", DELAY_DEVICE, "table", "100")
            for rule in rules:
                run_in("border", "ip", *rule)
            yield proc
        finally:
            for rule in rules:
                run_in("border", "ip", *(["rule", "del"] + rule[2:]), check=False)
            proc.stop()
            self.procs.remove(proc)

    def remember_handshake(self, connections) -> None:
        """Keep what the laptop sent first on a new link to the hub (pcap.Connection list), for replays."""
        for conn in connections:
            if conn.saw_syn and conn.server == (ADDR["hub"], 443) and conn.client[0] == ADDR["ushome-wan"]:
                self._handshake = [p.payload for p in conn.sent_by(conn.client) if p.payload]
                return

    def member_handshake(self) -> list[bytes]:
        """The data packets the laptop's agent sends first on a new link across the border.

        Remembered from check 5's capture, or captured here while the laptop's agent starts again.
        """
        if self._handshake is None:
            with self.capture("cn") as capture:
                self.restart_member("laptop")
            self.remember_handshake(pcap.tcp_connections(pcap.read_pcap(capture.path)))
            assert self._handshake, "no new link from the laptop to the hub was captured on the border"
        return self._handshake
