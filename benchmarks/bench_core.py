#!/usr/bin/env python3
"""Core Ladder benchmark on loopback: bulk throughput and per-connection latency.

    python benchmarks/bench_core.py [--size-mib 256] [--fetches 300] [--rounds 1]
                                    [--profile DIR]

It starts, as separate processes and with the real CLI, an origin web
server, a hub (`ladder hub init/run/invite`), a sharer (`ladder join`,
`ladder up --share --country ZZ --allow-private`) and a user
(`ladder join`, `ladder up --proxy 127.0.0.1:PORT`), waits until
`ladder status --json` of the user says "up" with an exit listed, then
measures from this process with blocking raw sockets:

* bulk: one GET of a SIZE MiB file, directly from the origin and through
  the user's SOCKS5 proxy (user agent → hub → sharer's exit → origin),
  read in 1 MiB chunks and checked with sha256. MB/s with MB = 10**6 bytes.
* latency: FETCHES sequential new connections, each fetching a 1 KiB file
  (directly; through the proxy with SOCKS5 CONNECT + GET; and through the
  proxy with an HTTP absolute-form GET). p50/p99 in ms, connect to close.

Progress goes to stderr, exactly one JSON line to stdout. Every process it
started is stopped by pid at the end, also on failure or Ctrl-C, and its
temporary folder is removed. This is a script, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import platform
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHUNK = 1024 * 1024
SMALL_SIZE = 1024
SMALL_BODY = bytes((i * 7 + 3) % 256 for i in range(SMALL_SIZE))
BIG_PATH = "/big.bin"
SMALL_PATH = "/small.bin"
READY_TIMEOUT = 30.0  # the agents must be up within this
CMD_TIMEOUT = 30.0  # any one short CLI command
FETCH_TIMEOUT = 10.0  # one small fetch, connect to close
IO_TIMEOUT = 30.0  # one recv during a bulk transfer
STOP_GRACE = 5.0  # SIGINT → wait → SIGTERM → wait → SIGKILL


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ------------------------------------------------------------------ origin


def origin_main(size: int, port: int) -> None:
    """The origin process: serves /big.bin (random, in memory) and /small.bin."""
    try:
        import uvloop
    except ImportError:
        uvloop = None
    big = os.urandom(size)
    digest = hashlib.sha256(big).hexdigest()
    files = {BIG_PATH.encode(): memoryview(big), SMALL_PATH.encode(): memoryview(SMALL_BODY)}
    write_slice = 4 * CHUNK

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                body = files.get(path)
                if body is None:
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body))
                for offset in range(0, len(body), write_slice):  # large writes, no 256 MiB copy
                    writer.write(body[offset : offset + write_slice])
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
        print(f"READY {server.sockets[0].getsockname()[1]} {digest}", flush=True)
        await server.serve_forever()

    try:
        if uvloop is not None:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main())
        else:
            asyncio.run(main())
    except KeyboardInterrupt:
        pass


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {www};
    }}
}}
"""


# ------------------------------------------------------------- processes


class Processes:
    """Every process this run started, stopped by pid in reverse order."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, argv: list[str], stdout=subprocess.DEVNULL) -> subprocess.Popen:
        logfile = self.tmp / f"{name}.log"
        with open(logfile, "ab") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=err,
                                    start_new_session=True,  # Ctrl-C reaches us only; we stop them
                                    preexec_fn=_default_sigint)
        self.procs.append((name, proc, logfile))
        log(f"started {name} (pid {proc.pid})")
        return proc

    def check_alive(self) -> None:
        for name, proc, logfile in self.procs:
            if proc.poll() is not None:
                raise BenchError(f"{name} (pid {proc.pid}) exited with code {proc.returncode}")

    def dump_logs(self, lines: int = 15) -> None:
        for name, _, logfile in self.procs:
            try:
                tail = logfile.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            if tail:
                log(f"last lines of {name}'s log:")
                for line in tail:
                    print(f"    {line}", file=sys.stderr)

    def get(self, name: str) -> subprocess.Popen:
        return next(proc for n, proc, _ in self.procs if n == name)

    def stop_one(self, name: str) -> None:
        for entry in list(self.procs):
            if entry[0] == name:
                stop(name, entry[1])
                self.procs.remove(entry)

    def stop_all(self) -> None:
        for name, proc, _ in reversed(self.procs):
            stop(name, proc)
        self.procs.clear()


def _default_sigint() -> None:
    """In a child: SIGINT stops it cleanly even if we were started with SIGINT ignored (`cmd &`)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop(name: str, proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, STOP_GRACE), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            log(f"stopped {name} (pid {proc.pid}) with {sig.name}, exit code {proc.returncode}")
            return
        except subprocess.TimeoutExpired:
            continue
    log(f"could not stop {name} (pid {proc.pid})")


def run_cli(args: list[str], timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "ladder", *args]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"`ladder {' '.join(args)}` took more than {timeout:g} s") from None
    return done


def run_cli_ok(args: list[str]) -> str:
    done = run_cli(args)
    if done.returncode != 0:
        raise BenchError(f"`ladder {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_line(proc: subprocess.Popen, timeout: float) -> str:
    """The first line `proc` prints on stdout, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("the origin did not say READY in time")
            if sel.select(min(left, 1.0)):
                piece = os.read(fd, 4096)
                if not piece:
                    raise BenchError(f"the origin exited (code {proc.poll()}) before READY")
                buf += piece
    return buf.split(b"\n", 1)[0].decode()


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


def start_origin(procs: Processes, tmp: Path, size: int, kind: str) -> tuple[int, str, str]:
    """(port, sha256 of the big file, which server)."""
    nginx = shutil.which("nginx")
    if kind == "nginx" and not nginx:
        raise BenchError("--origin nginx: nginx is not installed")
    if kind in ("auto", "nginx") and nginx:
        www = tmp / "www"
        www.mkdir()
        digest = hashlib.sha256()
        with open(www / BIG_PATH.lstrip("/"), "wb") as f:
            left = size
            while left:
                piece = os.urandom(min(left, 16 * CHUNK))
                digest.update(piece)
                f.write(piece)
                left -= len(piece)
        (www / SMALL_PATH.lstrip("/")).write_bytes(SMALL_BODY)
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, www=www))
        procs.start("origin-nginx", [nginx, "-p", str(tmp), "-c", str(conf)])
        wait_port(port, 15)
        return port, digest.hexdigest(), "nginx"
    proc = procs.start("origin", [sys.executable, os.path.abspath(__file__), "--serve-origin", str(size)],
                       stdout=subprocess.PIPE)
    line = wait_line(proc, 60)
    word, port, digest = line.split()
    if word != "READY":
        raise BenchError(f"the origin said {line!r}")
    return int(port), digest, "python-asyncio" + ("+uvloop" if has_uvloop() else "")


def ladder_argv(argv: list[str], name: str, profile_dir: Path | None, tool: str | None) -> list[str]:
    """`python -m ladder ...`, under cProfile for the whole run if that is the profiler."""
    if profile_dir is not None and tool == "cProfile":
        return [sys.executable, "-m", "cProfile", "-o", str(profile_dir / f"{name}.pstats"),
                "-m", "ladder", *argv]
    return [sys.executable, "-m", "ladder", *argv]


def start_ladder(procs: Processes, tmp: Path, profile_dir: Path | None, tool: str | None) -> int:
    """Hub, sharer and user via the real CLI; the user's proxy port once ready."""
    hub_dir, sharer_dir, user_dir = tmp / "hub", tmp / "sharer", tmp / "user"
    hub_port, proxy_port = free_port(), free_port()
    address = f"127.0.0.1:{hub_port}"
    run_cli_ok(["hub", "init", "--dir", str(hub_dir), "--name", "bench", "--listen", address,
                "--public-address", address])
    procs.start("hub", ladder_argv(["hub", "run", "--dir", str(hub_dir)], "hub", profile_dir, tool))
    wait_port(hub_port, 15)
    for name, folder in (("sharer", sharer_dir), ("user", user_dir)):
        link = run_cli_ok(["hub", "invite", "--dir", str(hub_dir), name]).strip()
        run_cli_ok(["join", link, "--dir", str(folder)])
    procs.start("sharer", ladder_argv(["up", "--dir", str(sharer_dir), "--share", "--country", "ZZ",
                                    "--allow-private", "--ports", "1-65535"], "sharer", profile_dir, tool))
    procs.start("user", ladder_argv(["up", "--dir", str(user_dir), "--proxy", f"127.0.0.1:{proxy_port}"],
                                 "user", profile_dir, tool))
    deadline = time.monotonic() + READY_TIMEOUT
    state: dict = {}
    while time.monotonic() < deadline:
        procs.check_alive()
        done = run_cli(["status", "--dir", str(user_dir), "--json"])
        try:
            state = json.loads(done.stdout)
        except ValueError:
            state = {"state": f"unreadable status: {done.stdout[:200]!r} {done.stderr[:200]!r}"}
        if state.get("state") == "up" and state.get("exits"):
            log(f"user agent up, proxy {state.get('proxy')}, exits: "
                + ", ".join(f"{e.get('name')} ({e.get('country')})" for e in state["exits"]))
            return proxy_port
        time.sleep(0.2)
    raise BenchError(f"the user agent was not up with an exit within {READY_TIMEOUT:g} s: {state}")


PROFILED = ("hub", "user", "sharer")


def cpu_seconds(pid: int) -> tuple[float, float, float]:
    """(user, system) CPU seconds a process has used so far, and its minor page faults (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan"), float("nan"), float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick, float(fields[7])


def cpu_snapshot(procs: Processes) -> dict[str, tuple[float, float]]:
    snap = {name: cpu_seconds(proc.pid) for name, proc, _ in procs.procs if not name.startswith("py-spy")}
    t = os.times()
    snap["client"] = (t.user, t.system, float(resource.getrusage(resource.RUSAGE_SELF).ru_minflt))
    return snap


def start_pyspy(procs: Processes, profile_dir: Path, native: bool) -> list[str]:
    """Attach `py-spy record` to the hub and both agents; the names of the py-spy processes."""
    names = []
    for name in PROFILED:
        argv = [shutil.which("py-spy"), "record", "--pid", str(procs.get(name).pid), "--rate", "250",
                "--format", "raw", "-o", str(profile_dir / f"{name}.pyspy.txt")]
        argv += ["--native"] if native else ["--nonblocking"]
        procs.start(f"py-spy-{name}", argv)
        names.append(f"py-spy-{name}")
    time.sleep(1.5)  # attaching takes a moment
    procs.check_alive()
    return names


def summarize_pyspy(path: Path, top: int = 12) -> str:
    """Self and inclusive share of samples per function from py-spy's raw (collapsed) output."""
    selfs: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = []
        for frame in stack.split(";"):
            if frame.startswith(("process ", "thread ")):
                continue
            func, _, where = frame.partition(" (")
            where = where.rstrip(")").rsplit(":", 1)[0]
            frames.append(f"{func} ({os.path.basename(where)})" if where else func)
        if not frames:
            continue
        total += n
        selfs[frames[-1]] = selfs.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    if not total:
        return f"{path.name}: no samples"
    out = [f"{path.name}: {total} samples; top self time:"]
    for f, n in sorted(selfs.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"  {100 * n / total:5.1f}%  self  {f}")
    out.append("  top inclusive time:")
    for f, n in sorted(incl.items(), key=lambda kv: -kv[1])[: top + 8]:
        out.append(f"  {100 * n / total:5.1f}%  incl  {f}")
    return "\n".join(out)


# ----------------------------------------------------------------- client


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        piece = sock.recv(n - len(buf))
        if not piece:
            raise BenchError(f"connection closed after {len(buf)} of {n} bytes")
        buf += piece
    return bytes(buf)


def read_head(sock: socket.socket) -> tuple[int, bytes]:
    """Content-Length of a 200 answer and the body bytes that came with the head."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        piece = sock.recv(65536)
        if not piece:
            raise BenchError(f"connection closed before the answer's head ended: {buf[:200]!r}")
        buf += piece
        if len(buf) > 65536:
            raise BenchError("answer head too large")
    head, rest = buf.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 200"):
        raise BenchError(f"answer: {buf[:300]!r}")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value), rest
    raise BenchError("answer without Content-Length")


def open_connection(origin_port: int, proxy: int | None, mode: str, path: str,
                    timeout: float) -> socket.socket:
    """A socket on which the GET of `path` has been sent (directly, SOCKS5 or HTTP proxy)."""
    sock = socket.create_connection(("127.0.0.1", proxy or origin_port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        get = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n\r\n".encode()
        if proxy is None:
            sock.sendall(get)
        elif mode == "socks5":
            sock.sendall(b"\x05\x01\x00")
            if recv_exact(sock, 2) != b"\x05\x00":
                raise BenchError("SOCKS5 greeting refused")
            sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + origin_port.to_bytes(2, "big"))
            reply = recv_exact(sock, 10)
            if reply[1] != 0:
                raise BenchError(f"SOCKS5 CONNECT refused with code {reply[1]}")
            sock.sendall(get)
        else:
            sock.sendall(f"GET http://127.0.0.1:{origin_port}{path} HTTP/1.1\r\n"
                         f"Host: 127.0.0.1:{origin_port}\r\n\r\n".encode())
        return sock
    except BaseException:
        sock.close()
        raise


def bulk(origin_port: int, proxy: int | None, size: int, want: str) -> tuple[float, bool]:
    """(MB/s, sha256 matches) for one GET of the big file."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    digest = hashlib.sha256()
    limit = max(120.0, size / 1e6)  # ≥ 1 MB/s or give up
    deadline = time.monotonic() + limit
    started = time.perf_counter()
    sock = open_connection(origin_port, proxy, "socks5", BIG_PATH, IO_TIMEOUT)
    try:
        length, rest = read_head(sock)
        if length != size:
            raise BenchError(f"Content-Length {length}, expected {size}")
        digest.update(rest)
        got = len(rest)
        while got < length:
            n = sock.recv_into(view, min(CHUNK, length - got))
            if not n:
                raise BenchError(f"connection closed after {got} of {length} bytes")
            digest.update(view[:n])
            got += n
            if time.monotonic() > deadline:
                raise BenchError(f"bulk transfer too slow: {got} bytes in {limit:.0f} s")
    finally:
        sock.close()
    seconds = time.perf_counter() - started
    return length / seconds / 1e6, digest.hexdigest() == want


def small_fetch(origin_port: int, proxy: int | None, mode: str) -> float:
    """Seconds for one new connection fetching the 1 KiB file, connect to close."""
    started = time.perf_counter()
    sock = open_connection(origin_port, proxy, mode, SMALL_PATH, FETCH_TIMEOUT)
    try:
        length, body = read_head(sock)
        if length != SMALL_SIZE:
            raise BenchError(f"small file Content-Length {length}")
        if len(body) < length:
            body += recv_exact(sock, length - len(body))
        if body != SMALL_BODY:
            raise BenchError("small file arrived altered")
    finally:
        sock.close()
    return time.perf_counter() - started


def latency(origin_port: int, proxy: int | None, mode: str, count: int) -> tuple[float, float]:
    """(p50, p99) in ms over `count` sequential fetches (after 5 not counted)."""
    for _ in range(min(5, count)):
        small_fetch(origin_port, proxy, mode)
    times = sorted(small_fetch(origin_port, proxy, mode) * 1000 for _ in range(count))
    return percentile(times, 50), percentile(times, 99)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


# ------------------------------------------------------------------- main


def has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cpu, {model}, {platform.system()} {platform.release()}"


def hash_speed() -> float:
    """MB/s of hashlib.sha256 here, for context: it bounds the direct bulk figure."""
    data = os.urandom(64 * CHUNK)
    started = time.perf_counter()
    hashlib.sha256(data).digest()
    return len(data) / (time.perf_counter() - started) / 1e6


def rnd(x: float, digits: int = 2) -> float:
    return round(x, digits)


def bench(args: argparse.Namespace, tmp: Path, procs: Processes) -> dict:
    size = args.size_mib * CHUNK
    load_before = os.getloadavg()[0]
    profile_dir = Path(args.profile).resolve() if args.profile else None
    tool = None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        tool = "py-spy" if shutil.which("py-spy") and not args.cprofile else "cProfile"
        log(f"profiling hub, sharer and user with {tool} into {profile_dir}"
            + (" during the first bulk transfer through Ladder" if tool == "py-spy" else " (whole run)"))
    log(f"origin: generating {args.size_mib} MiB")
    origin_port, want, origin_kind = start_origin(procs, tmp, size, args.origin)
    log(f"origin ({origin_kind}) on 127.0.0.1:{origin_port}, sha256 {want[:16]}…")
    proxy = start_ladder(procs, tmp, profile_dir, tool)
    rows: dict[str, list[float]] = {}
    sha_ok = True
    for r in range(1, args.rounds + 1):
        procs.check_alive()
        measured: dict[str, float] = {}
        if not args.skip_direct:
            mbps, ok = bulk(origin_port, None, size, want)
            measured["bulk_direct_MBps"] = mbps
            sha_ok &= ok
            log(f"round {r}: bulk direct {mbps:.0f} MB/s, sha256 {'ok' if ok else 'MISMATCH'}")
        spies = start_pyspy(procs, profile_dir, args.native) if tool == "py-spy" and r == 1 else []
        cpu_before = cpu_snapshot(procs)
        mbps, ok = bulk(origin_port, proxy, size, want)
        cpu_after = cpu_snapshot(procs)
        mb = size / 1e6
        split = []
        for name in cpu_before:
            user_ms, sys_ms, faults = ((a - b) / mb for a, b in zip(cpu_after[name], cpu_before[name]))
            user_ms, sys_ms = 1000 * user_ms, 1000 * sys_ms
            rows.setdefault(f"cpu_ms_per_MB.{name}", []).append(user_ms + sys_ms)
            rows.setdefault(f"faults_per_MB.{name}", []).append(faults)
            split.append(f"{name} {user_ms:.2f}+{sys_ms:.2f} ({faults:.0f} page faults)")
        log(f"round {r}: CPU ms per MB through ladder, user+system: " + ", ".join(split))
        for name in spies:
            procs.stop_one(name)
        for name in PROFILED if spies else ():
            summary = summarize_pyspy(profile_dir / f"{name}.pyspy.txt")
            (profile_dir / f"{name}.top.txt").write_text(summary + "\n")
            print(summary, file=sys.stderr)
        measured["bulk_ladder_MBps"] = mbps
        sha_ok &= ok
        log(f"round {r}: bulk through ladder (SOCKS5) {mbps:.0f} MB/s, sha256 {'ok' if ok else 'MISMATCH'}")
        if args.fetches:
            for key, port, mode in (("direct", None, "direct"), ("", proxy, "socks5"), ("http", proxy, "http")):
                if key == "direct" and args.skip_direct:
                    continue
                p50, p99 = latency(origin_port, port, mode, args.fetches)
                suffix = f"_{key}" if key else ""
                measured[f"p50{suffix}_ms"], measured[f"p99{suffix}_ms"] = p50, p99
                log(f"round {r}: {args.fetches} fetches of 1 KiB, {mode}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        for key, value in measured.items():
            rows.setdefault(key, []).append(value)
    procs.check_alive()
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "python": platform.python_version(),
        "uvloop": has_uvloop(),
        "origin": origin_kind,
        "size_mib": args.size_mib,
        "fetches": args.fetches,
        "rounds": args.rounds,
        "proxy_mode_bulk": "socks5",
        "client_sha256_MBps": rnd(hash_speed(), 0),
        # other programs on this machine skew every figure: the 1-minute load before and after
        "loadavg_1m": [rnd(load_before), rnd(os.getloadavg()[0])],
    }
    for key in ("bulk_direct_MBps", "bulk_ladder_MBps", "p50_ms", "p99_ms", "p50_direct_ms", "p99_direct_ms",
                "p50_http_ms", "p99_http_ms"):
        if key in rows:
            result[key] = rnd(statistics.median(rows[key]), 1 if key.endswith("MBps") else 3)
    # CPU each process spent per MB of the bulk transfer through Ladder (the sum bounds MB/s)
    cpu = {k.split(".", 1)[1]: rnd(statistics.median(v), 3) for k, v in rows.items() if k.startswith("cpu_ms")}
    result["bulk_ladder_cpu_ms_per_MB"] = cpu
    result["bulk_ladder_cpu_ms_per_MB_total"] = rnd(sum(cpu.values()), 3)
    # minor page faults per MB: fresh memory touched per MB (large short-lived buffers)
    result["bulk_ladder_faults_per_MB"] = {k.split(".", 1)[1]: rnd(statistics.median(v), 0)
                                           for k, v in rows.items() if k.startswith("faults")}
    if args.rounds > 1:
        result["per_round"] = {k: [rnd(v, 3) for v in vs] for k, vs in rows.items()
                               if not k.startswith(("cpu_ms", "faults"))}
    result["sha256_ok"] = sha_ok
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256, help="bulk file size in MiB (default 256)")
    parser.add_argument("--fetches", type=int, default=300, help="small fetches per latency series (default 300)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat everything; the median is reported")
    parser.add_argument("--origin", choices=("auto", "python", "nginx"), default="auto",
                        help="origin server: nginx if installed (auto), else Python asyncio")
    parser.add_argument("--profile", metavar="DIR",
                        help="run hub, sharer and user under py-spy (if installed) or cProfile, output in DIR")
    parser.add_argument("--cprofile", action="store_true", help="with --profile: use cProfile even if py-spy is there")
    parser.add_argument("--native", action="store_true", help="with py-spy: also sample C frames (--native)")
    parser.add_argument("--skip-direct", action="store_true", help="only measure through Ladder")
    parser.add_argument("--serve-origin", type=int, metavar="BYTES", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_origin is not None:
        origin_main(args.serve_origin, 0)
        return 0
    if args.size_mib < 1 or args.fetches < 0 or not 1 <= args.rounds <= 50:
        parser.error("--size-mib ≥ 1, --fetches ≥ 0, 1 ≤ --rounds ≤ 50")

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix="ladder-bench-"))
    procs = Processes(tmp)
    result: dict | None = None
    code = 1
    try:
        result = bench(args, tmp, procs)
        code = 0 if result["sha256_ok"] else 1
    except KeyboardInterrupt:
        log("interrupted")
        code = 130
    except (BenchError, OSError, ValueError) as exc:
        log(f"FAILED: {type(exc).__name__}: {exc}")
        procs.dump_logs()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    if result is not None:
        print(json.dumps(result), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
