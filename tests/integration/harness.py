"""Real hubs, agents and an origin web server, started as processes on loopback (test helpers).

Logs must be clean: a `ladder` command whose stderr, or a process whose
log, holds a traceback or an exception nobody retrieved fails the test
(`ladder()` at once, a Network's processes when it closes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent
BIG = 64 * 1024 * 1024
MARKER = "ladder-marker-7f3a9c"
LOG_PROBLEMS = ("Traceback (most recent call last)", "exception was never retrieved")


def log_problem(text: str, expected: tuple[str, ...] = ()) -> str | None:
    """An excerpt of the first traceback or unretrieved exception in a log, or None if it is clean.

    With `expected`, a log whose every raised exception is one of those is
    clean: the origin, a plain threaded test web server, reports each
    client that hangs up on it (as an exit killed mid-download does), its
    threads' tracebacks interleaved.
    """
    lines = text.splitlines()
    if expected:
        raised = [line for line in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception)\b", line)]
        if all(line.startswith(expected) for line in raised) and LOG_PROBLEMS[1] not in text:
            return None
    for i, line in enumerate(lines):
        if any(mark in line for mark in LOG_PROBLEMS):
            return "\n".join(lines[max(0, i - 3):i + 30])[:3000]  # with the lines that say where
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LADDER = ("-m", "ladder")  # the Python arguments that run this release's `ladder`


def ladder(*args: str, check: bool = True, timeout: float = 60,
           launcher: tuple[str, ...] = LADDER) -> subprocess.CompletedProcess:
    """Run one `ladder` command to completion (with `launcher`, another release's)."""
    result = subprocess.run([sys.executable, *launcher, *args], capture_output=True, text=True,
                            timeout=timeout, check=False)
    problem = log_problem(result.stderr)
    if problem:
        raise AssertionError(f"ladder {' '.join(args)} logged:\n{problem}")
    if check and result.returncode != 0:
        raise AssertionError(f"ladder {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """`n` bytes from `sock`; EOFError if it ends first."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"{len(data)} of {n} bytes, then the end")
        data += chunk
    return data


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Proc:
    """A long-running process whose output goes to a log file."""

    def __init__(self, name: str, args: list[str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 -- open while the process runs
        self.popen = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.alive():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.log.close()

    def check_log(self, expected: tuple[str, ...] = ()) -> None:
        problem = log_problem(self.log_path.read_text(errors="replace"), expected)
        if problem:
            raise AssertionError(f"the {self.name} process logged:\n{problem}")


class Network:
    """One hub and any number of members, each in its own folder and process (the hub made, run and asked
    for invites by `launcher`'s release: this one unless a test says another)."""

    def __init__(self, root: Path, hub_command: list[str] | None = None, name: str = "testhub",
                 launcher: tuple[str, ...] = LADDER):
        self.root = root
        self.procs: list[Proc] = []
        self.hub_dir = root / "hub"
        self.hub_port = free_port()
        self.launcher = launcher
        address = f"127.0.0.1:{self.hub_port}"
        ladder("hub", "init", "--dir", str(self.hub_dir), "--name", name, "--listen", address,
               "--public-address", address, launcher=launcher)
        self.hub_command = hub_command or self.hub_run()
        self.hub = self.start_hub()

    def hub_run(self) -> list[str]:
        # The admin page on a free port of its own: tests run many hubs at once.
        return [*self.launcher, "hub", "run", "--dir", str(self.hub_dir), "--admin", "127.0.0.1:0"]

    def start(self, name: str, *args: str, python_args: tuple[str, ...] = LADDER) -> Proc:
        proc = Proc(name, [sys.executable, *python_args, *args], self.root)
        self.procs.append(proc)
        return proc

    def start_program(self, name: str, *argv: str) -> Proc:
        """Another program (a stock client, say), stopped and its log checked with the network."""
        proc = Proc(name, list(argv), self.root)
        self.procs.append(proc)
        return proc

    def start_hub(self, log_name: str = "hub") -> Proc:
        """The hub's process; a hub started again after a kill logs under a name of its own."""
        proc = self.start(log_name, python_args=tuple(self.hub_command))
        wait_for(lambda: accepts(self.hub_port) or not proc.alive(), 20, "the hub to listen")
        assert proc.alive(), f"hub died:\n{proc.output()}"
        return proc

    def invite(self, name: str, *args: str) -> str:
        return ladder("hub", "invite", "--dir", str(self.hub_dir), name, *args,
                      launcher=self.launcher).stdout.strip()

    def join(self, name: str, launcher: tuple[str, ...] = LADDER) -> Path:
        folder = self.root / name
        ladder("join", self.invite(name), "--dir", str(folder), launcher=launcher)
        return folder

    def member(self, name: str, *up_args: str, launcher: tuple[str, ...] = LADDER) -> Member:
        folder = self.join(name, launcher)
        proc = self.start(name, "up", "--dir", str(folder), *up_args, python_args=launcher)
        member = Member(name, folder, proc)
        member.wait_up()
        return member

    def exit(self, name: str, country: str, *extra: str, launcher: tuple[str, ...] = LADDER) -> Member:
        ports = () if "--ports" in extra else ("--ports", "1-65535")  # the test sites sit on high ports
        return self.member(name, "--share", "--country", country, *ports, *extra, launcher=launcher)

    def user(self, name: str, *extra: str) -> Member:
        port = free_port()
        member = self.member(name, "--proxy", f"127.0.0.1:{port}", *extra)
        member.proxy = ("127.0.0.1", port)
        return member

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        for proc in self.procs:
            proc.check_log()


def peer(inviter: Network, redeemer: Network, name: str) -> None:
    """Peer two hubs with the CLI as two operators would: `peer-invite` on one, `peer add` on the other."""
    link = ladder("hub", "peer-invite", name, "--dir", str(inviter.hub_dir)).stdout.strip().splitlines()[-1]
    assert link.startswith("ladder-peer://")
    ladder("hub", "peer", "add", link, "--dir", str(redeemer.hub_dir))


def peers(net: Network) -> dict[str, dict]:
    out = json.loads(ladder("hub", "peers", "--json", "--dir", str(net.hub_dir)).stdout)
    return {p["name"]: p for p in out["peers"]}


class Member:
    def __init__(self, name: str, folder: Path, proc: Proc):
        self.name = name
        self.folder = folder
        self.proc = proc
        self.proxy: tuple[str, int] | None = None

    def status(self) -> dict:
        try:
            return json.loads((self.folder / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait_up(self, timeout: float = 20) -> None:
        wait_for(lambda: self.status().get("state") == "up" or not self.proc.alive(), timeout,
                 f"{self.name}'s link to come up")
        assert self.proc.alive(), f"{self.name} died:\n{self.proc.output()}"

    def wait_exits(self, count: int, timeout: float = 20) -> None:
        wait_for(lambda: len(self.status().get("exits", [])) >= count, timeout,
                 f"{self.name} to see {count} exits")

    @property
    def socks(self) -> str:
        return f"socks5h://{self.proxy[0]}:{self.proxy[1]}"

    @property
    def http(self) -> str:
        return f"http://{self.proxy[0]}:{self.proxy[1]}"


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), 0.5).close()
        return True
    except OSError:
        return False


class Origin:
    """An ordinary web server holding a page with a marker and a 64 MiB file."""

    def __init__(self, root: Path):
        self.dir = root / "www"
        self.dir.mkdir()
        (self.dir / "index.html").write_text(f"<html><body>{MARKER}</body></html>\n")
        # Published as a service in some tests, where the hub's crawler asks first: it may read nothing.
        (self.dir / "robots.txt").write_text("User-agent: *\nDisallow: /\n")
        big = os.urandom(BIG)
        (self.dir / "big.bin").write_bytes(big)
        self.big_sha = hashlib.sha256(big).hexdigest()
        self.small = {}
        for i in range(50):
            data = os.urandom(1024 * 1024)
            (self.dir / f"s{i}.bin").write_bytes(data)
            self.small[f"s{i}.bin"] = hashlib.sha256(data).hexdigest()
        self.port = free_port()
        self.proc = Proc("origin", [sys.executable, str(HERE / "origin.py"), str(self.port), str(self.dir)],
                         root)
        wait_for(lambda: accepts(self.port), 10, "the origin web server")

    def url(self, path: str = "", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{path}"


class HttpsOrigin:
    """An HTTPS site on loopback (a self-signed certificate for `site.test`) with the marker page."""

    def __init__(self, root: Path):
        from ladder.link.tls import generate_self_signed

        self.dir = root / "www-tls"
        self.dir.mkdir()
        (self.dir / "index.html").write_text(f"<html><body>{MARKER}</body></html>\n")
        cert, key = root / "site.crt", root / "site.key"
        generate_self_signed(cert, key, "site.test", ["site.test", "127.0.0.1"])
        self.port = free_port()
        self.proc = Proc("https-origin", [sys.executable, str(HERE / "origin.py"), str(self.port),
                                          str(self.dir), str(cert), str(key)], root)
        wait_for(lambda: accepts(self.port), 10, "the HTTPS origin")

    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"


def snap(page, name: str) -> None:
    """A picture of a Playwright page for docs/, when $LADDER_SCREENSHOTS names a folder."""
    folder = os.environ.get("LADDER_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def curl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", str(int(timeout)), *args], capture_output=True,
                          timeout=timeout + 10, check=False)


# ------------------------------------------------------------------ UDP

TRIES = 10  # datagrams may be lost: ask again, a second apart, before calling it unanswered


class UdpAnswerer:
    """Answers every datagram on its ports with b"answer:" + it, as a DNS server answers a query."""

    def __init__(self, count: int):
        self.sockets = []
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            self.sockets.append(sock)
        self.ports = [s.getsockname()[1] for s in self.sockets]
        self.heard: list[tuple[int, bytes]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            readable, _, _ = select.select(self.sockets, [], [], 0.2)
            for sock in readable:
                data, address = sock.recvfrom(65535)
                self.heard.append((sock.getsockname()[1], data))
                sock.sendto(b"answer:" + data, address)

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()


def ask(port: int, query: bytes, tries: int = TRIES) -> bytes | None:
    """Send `query` to a client's UDP inbound on `port` until an answer comes, at most `tries` times."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        for _ in range(tries):
            sock.sendto(query, ("127.0.0.1", port))
            try:
                return sock.recv(65535)
            except TimeoutError:
                continue
    return None
