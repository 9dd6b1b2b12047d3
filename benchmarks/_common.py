"""Shared pieces of the benchmark scripts in this folder (compare.py, many_streams.py).

Process lifecycle (one `Processes` object per run), free ports, RLIMIT_NOFILE,
readers of /proc (memory, CPU, open files, process trees), py-spy recordings, the
origin (nginx, or a Python fallback) and the echo server, starting Ladder with the
real CLI, and the blocking client used for bulk and latency (SOCKS5, HTTP CONNECT
or direct).

Not a test and not part of Ladder: a helper for scripts run by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHUNK = 1024 * 1024
SMALL_PATH = "/1k"
BIG_PATH = "/256m"  # the name stays /256m whatever --size-mib says
STOP_GRACE = 5.0  # SIGINT → wait → SIGTERM → wait → SIGKILL
CMD_TIMEOUT = 30.0  # one short command (ladder CLI, --version, openssl)
READY_TIMEOUT = 30.0  # a system must carry a fetch within this after start
FETCH_TIMEOUT = 10.0  # one small fetch, connect to close
IO_TIMEOUT = 30.0  # one recv during a bulk transfer


def small_body() -> bytes:
    """The 1 KiB file, the same in every process that needs to check it."""
    return bytes((i * 7 + 3) % 256 for i in range(1024))


SMALL_BODY = small_body()


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def raise_nofile(soft: int | None = None) -> int:
    """Set RLIMIT_NOFILE's soft limit to `soft` (default: the hard limit); the new soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if soft is None else min(soft, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"pid {proc.pid} exited (code {proc.returncode}) before 127.0.0.1:{port} listened")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


def command_output(argv: list[str], timeout: float = CMD_TIMEOUT) -> str:
    """stdout + stderr of a short command, whatever its exit code ('' if it cannot run)."""
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


# ------------------------------------------------------------- processes


def _child_setup(nofile_soft: int | None) -> None:
    """In a child, before exec: SIGINT stops it (even if we run as `cmd &`); RLIMIT_NOFILE set."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    raise_nofile(nofile_soft)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (tells a pid from a reused one)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid: int) -> list[int]:
    """All living descendants of `pid` (children, grandchildren, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Processes:
    """Every process this run started, stopped by pid in reverse order (and their descendants)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, argv: list[str], *, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
              env: dict | None = None, nofile_soft: int | None = None) -> subprocess.Popen:
        """Start `argv` in its own session, stderr (and stdout unless piped) to TMP/NAME.log."""
        logfile = self.tmp / f"{name}.log"
        with open(logfile, "ab") as err:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=err if stdout == "log" else stdout, stderr=err,
                                    env=env, start_new_session=True,  # Ctrl-C reaches us only; we stop them
                                    preexec_fn=lambda: _child_setup(nofile_soft))
        self.procs.append((name, proc, logfile))
        log(f"started {name} (pid {proc.pid})")
        return proc

    def get(self, name: str) -> subprocess.Popen:
        return next(proc for n, proc, _ in self.procs if n == name)

    def check_alive(self, names: list[str] | None = None) -> None:
        for name, proc, _ in self.procs:
            if (names is None or name in names) and proc.poll() is not None:
                raise BenchError(f"{name} (pid {proc.pid}) exited with code {proc.returncode}")

    def log_tail(self, name: str, lines: int = 15) -> list[str]:
        try:
            return (self.tmp / f"{name}.log").read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []

    def dump_logs(self, names: list[str] | None = None, lines: int = 15) -> None:
        for name, _, _ in self.procs:
            if names is not None and name not in names:
                continue
            tail = self.log_tail(name, lines)
            if tail:
                log(f"last lines of {name}'s log:")
                for line in tail:
                    print(f"    {line}", file=sys.stderr)

    def stop_one(self, name: str) -> None:
        for entry in [e for e in self.procs if e[0] == name]:
            stop(entry[0], entry[1])
            self.procs.remove(entry)

    def stop_all(self) -> None:
        for name, proc, _ in reversed(self.procs):
            stop(name, proc)
        self.procs.clear()


def stop(name: str, proc: subprocess.Popen) -> None:
    """Stop `proc` by pid (SIGINT, SIGTERM, SIGKILL), then any descendant it left behind."""
    left = [(pid, start_time(pid)) for pid in descendants(proc.pid)] if proc.poll() is None else []
    if proc.poll() is None:
        for sig, wait in ((signal.SIGINT, STOP_GRACE), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                log(f"stopped {name} (pid {proc.pid}) with {sig.name}, exit code {proc.returncode}")
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            log(f"could not stop {name} (pid {proc.pid})")
    for pid, started in left:
        if started is not None and start_time(pid) == started:  # still the same process
            try:
                os.kill(pid, signal.SIGKILL)
                log(f"killed pid {pid}, left behind by {name}")
            except ProcessLookupError:
                pass


def wait_line(proc: subprocess.Popen, timeout: float, what: str) -> str:
    """The next line `proc` prints on stdout (a pipe), within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{what}: no answer within {timeout:g} s")
            if sel.select(min(left, 1.0)):
                piece = os.read(fd, 1)  # one byte at a time: never read past the line
                if not piece:
                    raise BenchError(f"{what}: exited (code {proc.poll()}) before answering")
                buf += piece
    return buf.decode().strip()


def wait_json(proc: subprocess.Popen, timeout: float, what: str) -> dict:
    line = wait_line(proc, timeout, what)
    try:
        return json.loads(line)
    except ValueError:
        raise BenchError(f"{what}: said {line[:200]!r}") from None


# ------------------------------------------------------------------ /proc


def memory_kib(pids: list[int]) -> tuple[int, int]:
    """(RSS, PSS) summed over `pids`, in KiB, from /proc/PID/smaps_rollup."""
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss, pss


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds a process has used so far (nan if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scheduler_counts(pids: list[int]) -> tuple[int, int]:
    """Of `pids` and all their threads so far: voluntary context switches (each a sleep and a wakeup),
    and nanoseconds spent runnable but waiting for a core (schedstat's run_delay)."""
    switches = waited = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
                schedstat = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text()
            except OSError:
                continue
            switches += sum(int(line.split()[1]) for line in status.splitlines()
                            if line.startswith("voluntary_ctxt_switches:"))
            waited += int(schedstat.split()[1])
    return switches, waited


def nofile_limit(pid: int) -> str:
    """'soft/hard' of a process's RLIMIT_NOFILE, from /proc/PID/limits."""
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return f"{soft}/{hard}"
    except OSError:
        pass
    return "?"


def memory_by_root(roots: dict[str, int]) -> dict[str, tuple[int, int]]:
    """(RSS, PSS) in KiB of each named process (name → pid) with its descendants."""
    return {name: memory_kib([pid, *descendants(pid)]) for name, pid in roots.items()}


def open_fds(pids: list[int]) -> int:
    """How many file descriptors `pids` hold open, summed (those that can be read)."""
    count = 0
    for pid in pids:
        try:
            count += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return count


# --------------------------------------------------------------- profiling

PYSPY_RATE = 250  # samples per second
PYSPY_ATTACH = 1.5  # seconds py-spy needs to attach before the work to profile starts


@contextlib.contextmanager
def pyspy_recording(procs: Processes, targets: dict[str, int], out_dir: Path, label: str, native: bool,
                    top: int = 12):
    """`py-spy record` attached to each pid of `targets` for the duration of the `with` block.

    Per target NAME: LABEL-NAME.pyspy.txt in `out_dir` (py-spy's raw output: collapsed stacks,
    one "frame;frame;... count" a line, for flamegraph.pl or speedscope) and LABEL-NAME.top.txt,
    the summary of `summarize_pyspy`, which also goes to stderr. Without --native, py-spy samples
    with --nonblocking (the targets are not paused). If py-spy cannot attach, the block runs
    unprofiled and the reason is logged.
    """
    outputs = {}
    try:
        for name, pid in targets.items():
            out = out_dir / f"{label}-{name}.pyspy.txt"
            argv = [shutil.which("py-spy") or "py-spy", "record", "--pid", str(pid), "--format", "raw",
                    "--rate", str(PYSPY_RATE), "-o", str(out), "--native" if native else "--nonblocking"]
            outputs[f"py-spy-{label}-{name}"] = out
            procs.start(f"py-spy-{label}-{name}", argv)
        time.sleep(PYSPY_ATTACH)
        procs.check_alive(list(outputs))
    except (BenchError, OSError) as exc:
        log(f"py-spy ({label}): {exc}; this part runs without a profile")
        procs.dump_logs(list(outputs), lines=5)
    try:
        yield
    finally:
        for spy, out in outputs.items():
            procs.stop_one(spy)  # SIGINT: py-spy writes its file and exits
            text = summarize_pyspy(out, top) if out.exists() else f"{out.name}: not written"
            out.with_name(out.name.replace(".pyspy.txt", ".top.txt")).write_text(text + "\n")
            print(text, file=sys.stderr, flush=True)


def summarize_pyspy(path: Path, top: int = 12) -> str:
    """Self and inclusive share of samples per function, from py-spy's raw (collapsed) output.

    Inclusive time leaves out the frames that all samples starting in the same outermost frame
    share (the entry point down to the event loop), which would otherwise top the list; only
    for an outermost frame with a tenth of the samples or more (py-spy --nonblocking also
    yields a few cut-off stacks, whose frames are all counted).
    """
    samples: list[tuple[list[str], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = []
        for frame in stack.split(";"):
            if frame.startswith(("process ", "thread ")):
                continue
            func, _, where = frame.partition(" (")
            where = where.rstrip(")").rsplit(":", 1)[0]
            frames.append(f"{func} ({os.path.basename(where)})" if where else func)
        if frames:
            samples.append((frames, int(count)))
    total = sum(n for _, n in samples)
    if not total:
        return f"{path.name}: no samples"
    shared: dict[str, list[str]] = {}  # outermost frame → the frames all its samples start with
    weight: dict[str, int] = {}
    for frames, n in samples:
        prefix = shared.setdefault(frames[0], frames)
        k = 0
        while k < min(len(prefix), len(frames)) and prefix[k] == frames[k]:
            k += 1
        shared[frames[0]] = prefix[:k]
        weight[frames[0]] = weight.get(frames[0], 0) + n
    shared = {root: prefix for root, prefix in shared.items() if 10 * weight[root] >= total}
    selfs: dict[str, int] = {}
    incl: dict[str, int] = {}
    for frames, n in samples:
        selfs[frames[-1]] = selfs.get(frames[-1], 0) + n
        for f in set(frames[len(shared.get(frames[0], ())):]):
            incl[f] = incl.get(f, 0) + n
    out = [f"{path.name}: {total} samples; top self time:"]
    for f, n in sorted(selfs.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"  {100 * n / total:5.1f}%  self  {f}")
    below = "; ".join(prefix[-1] for prefix in shared.values() if prefix)
    out.append(f"  top inclusive time{', below ' + below if below else ''}:")
    for f, n in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"  {100 * n / total:5.1f}%  incl  {f}")
    return "\n".join(out)


# ---------------------------------------------------------------- context


def machine_info() -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": f"{platform.system()} {platform.release()}",
            "loadavg_1m": round(os.getloadavg()[0], 2)}


def uvloop_version() -> str | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.__version__


def ladder_version() -> str:
    """Ladder's version and the git commit of the work tree (+dirty if src/ has changes).

    If `python -m ladder` is not this work tree's (PYTHONPATH elsewhere), where it comes from instead.
    """
    version = command_output([sys.executable, "-m", "ladder", "--version"]).rsplit(" ", 1)[-1]
    root = HERE.parent
    where = command_output([sys.executable, "-c", "import ladder; print(ladder.__file__)"])
    if where and not Path(where).resolve().is_relative_to(root / "src"):
        return f"{version} (from {Path(where).parent})"
    commit = command_output(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    dirty = command_output(["git", "-C", str(root), "status", "--porcelain", "--", "src"])
    return f"{version} ({commit}{'+dirty' if dirty else ''})"


def first_line(text: str) -> str:
    return text.splitlines()[0].strip() if text else "?"


# ----------------------------------------------------------------- origins


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 3600s;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} backlog=4096{sndbuf};
        root {www};
    }}
}}
"""

NGINX = "/usr/sbin/nginx"


@dataclass
class Origin:
    port: int
    size: int  # bytes of BIG_PATH
    sha256: str  # of BIG_PATH
    kind: str  # "nginx 1.22.1" or "python asyncio"
    pids: list[int]


def write_big_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            piece = os.urandom(min(left, 16 * CHUNK))
            digest.update(piece)
            f.write(piece)
            left -= len(piece)
    return digest.hexdigest()


def start_origin(procs: Processes, tmp: Path, size: int, sndbuf: int = 0) -> Origin:
    """nginx serving /1k and /256m (SIZE bytes) on a free loopback port; a Python origin without nginx.

    `sndbuf` > 0 caps the send buffer of the origin's sockets (else the kernel autotunes it, to 4 MiB).
    """
    if not os.access(NGINX, os.X_OK):
        log(f"{NGINX} not found (apt-get install nginx-light); using the Python origin")
        return start_python_origin(procs, size, sndbuf)
    www = tmp / "www"
    www.mkdir()
    log(f"origin: writing {size / CHUNK:g} MiB of random bytes")
    digest = write_big_file(www / BIG_PATH.lstrip("/"), size)
    (www / SMALL_PATH.lstrip("/")).write_bytes(SMALL_BODY)
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, www=www, sndbuf=f" sndbuf={sndbuf}" if sndbuf else "",
                                      nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    proc = procs.start("origin-nginx", [NGINX, "-p", str(tmp), "-e", str(tmp / "nginx-error.log"),
                                        "-c", str(conf)])
    wait_port(port, 15, proc)
    version = first_line(command_output([NGINX, "-v"])).split("/")[-1]
    return Origin(port, size, digest, f"nginx {version}", [proc.pid])


def start_python_origin(procs: Processes, size: int, sndbuf: int = 0) -> Origin:
    proc = procs.start("origin-python", [sys.executable, str(HERE / "_servers.py"), "origin", str(size),
                                         str(sndbuf)], stdout=subprocess.PIPE)
    word, port, digest = wait_line(proc, 120, "the Python origin").split()
    if word != "READY":
        raise BenchError(f"the Python origin said {word} {port} {digest}")
    return Origin(int(port), size, digest, "python asyncio" + ("+uvloop" if uvloop_version() else ""), [proc.pid])


def start_echo(procs: Processes) -> int:
    """A TCP echo server (asyncio, its own process); its port."""
    proc = procs.start("echo", [sys.executable, str(HERE / "_servers.py"), "echo"], stdout=subprocess.PIPE)
    word, port = wait_line(proc, 30, "the echo server").split()
    if word != "READY":
        raise BenchError(f"the echo server said {word} {port}")
    return int(port)


# ------------------------------------------------------------------ Ladder


def ladder_cli(args: list[str], timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "ladder", *args]
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"`ladder {' '.join(args)}` took more than {timeout:g} s") from None


def ladder_cli_ok(args: list[str]) -> str:
    done = ladder_cli(args)
    if done.returncode != 0:
        raise BenchError(f"`ladder {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


LADDER_ROLES = ("hub", "sharer", "user")


def start_hub(procs: Processes, hub_dir: Path, name: str, nofile_soft: int | None = None) -> int:
    """`ladder hub init` in `hub_dir` and `ladder hub run` as process `name`; returns its port."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    ladder_cli_ok(["hub", "init", "--dir", str(hub_dir), "--name", "bench", "--listen", address,
                   "--public-address", address])
    hub = procs.start(name, [sys.executable, "-m", "ladder", "hub", "run", "--dir", str(hub_dir)],
                      nofile_soft=nofile_soft)
    wait_port(port, 15, hub)
    return port


def compiled_bytecode(tmp: Path) -> None:
    """Let the Ladder processes started from here load compiled bytecode, as a pip-installed Ladder
    does: a machine that sets PYTHONDONTWRITEBYTECODE (this one does) made every process compile
    its source at start (1.3 MB more RSS each, 2-3x the import time). Cached under `tmp`."""
    import importlib.util

    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    spec = importlib.util.find_spec("ladder")  # found, not imported
    assert spec is not None and spec.submodule_search_locations is not None
    subprocess.run([sys.executable, "-m", "compileall", "-q", spec.submodule_search_locations[0]],
                   timeout=120, check=True, stdout=subprocess.DEVNULL)


def start_ladder(procs: Processes, tmp: Path, prefix: str = "ladder-", nofile_soft: int | None = None,
                 user_streams: int = 0, user_args: tuple[str, ...] = ()) -> tuple[int, dict[str, str]]:
    """Hub, sharer and user, each its own process via the real CLI.

    `user_streams` > 0 adds `--user-streams N` to the sharer (many_streams.py only: compare.py
    measures Ladder at its defaults); `user_args` go to the user's `ladder up` (abuse.py pins
    the sharer with `--exit sharer`, so that an attacker's exit is never the one measured).
    Returns the user's proxy port and the names in `procs` of the three processes by role.
    """
    compiled_bytecode(tmp)
    hub_dir, sharer_dir, user_dir = tmp / "ladder-hub", tmp / "ladder-sharer", tmp / "ladder-user"
    proxy_port = free_port()
    names = {role: prefix + role for role in LADDER_ROLES}
    start_hub(procs, hub_dir, names["hub"], nofile_soft)
    for name, folder in (("sharer", sharer_dir), ("user", user_dir)):
        link = ladder_cli_ok(["hub", "invite", "--dir", str(hub_dir), name]).strip()
        ladder_cli_ok(["join", link, "--dir", str(folder)])
    procs.start(names["sharer"], [sys.executable, "-m", "ladder", "up", "--dir", str(sharer_dir), "--share",
                                  "--country", "ZZ", "--allow-private", "--ports", "1-65535",
                                  *(["--user-streams", str(user_streams)] if user_streams > 0 else [])],
                nofile_soft=nofile_soft)
    procs.start(names["user"], [sys.executable, "-m", "ladder", "up", "--dir", str(user_dir),
                                "--proxy", f"127.0.0.1:{proxy_port}", *user_args], nofile_soft=nofile_soft)
    deadline = time.monotonic() + READY_TIMEOUT
    state: dict = {}
    while time.monotonic() < deadline:
        procs.check_alive(list(names.values()))
        done = ladder_cli(["status", "--dir", str(user_dir), "--json"])
        try:
            state = json.loads(done.stdout)
        except ValueError:
            state = {"state": f"unreadable status: {done.stdout[:200]!r} {done.stderr[:200]!r}"}
        if state.get("state") == "up" and state.get("exits"):
            log(f"Ladder user agent up, proxy 127.0.0.1:{proxy_port}, exits: "
                + ", ".join(f"{e.get('name')} ({e.get('country')})" for e in state["exits"]))
            return proxy_port, names
        time.sleep(0.2)
    raise BenchError(f"the Ladder user agent was not up with an exit within {READY_TIMEOUT:g} s: {state}")


# ------------------------------------------------------------------ client


@dataclass(frozen=True)
class Proxy:
    """How a client reaches the origin: kind "direct", "socks5" or "http-connect", and the proxy's port."""

    kind: str
    port: int | None = None


DIRECT = Proxy("direct")


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        piece = sock.recv(n - len(buf))
        if not piece:
            raise BenchError(f"connection closed after {len(buf)} of {n} bytes")
        buf += piece
    return bytes(buf)


SOCKS5_GREETING = b"\x05\x01\x00"  # version 5, one method: no authentication
SOCKS5_ACCEPTED = b"\x05\x00"


def socks5_connect(port: int) -> bytes:
    """A SOCKS5 CONNECT request to 127.0.0.1:`port`."""
    return b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + port.to_bytes(2, "big")


def http_connect(port: int) -> bytes:
    """An HTTP CONNECT request to 127.0.0.1:`port`."""
    return f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def socks5_reply_rest(first4: bytes) -> int:
    """How many bytes of a SOCKS5 reply follow its first four (by address type); -1 if a domain."""
    return {1: 4 + 2, 4: 16 + 2}.get(first4[3], -1)


def open_tunnel(proxy: Proxy, port: int, timeout: float) -> socket.socket:
    """A blocking socket connected to 127.0.0.1:`port` through `proxy`, ready for the application."""
    sock = socket.create_connection(("127.0.0.1", proxy.port if proxy.port else port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if proxy.kind == "socks5":
            sock.sendall(SOCKS5_GREETING)
            if recv_exact(sock, 2) != SOCKS5_ACCEPTED:
                raise BenchError("SOCKS5 greeting refused")
            sock.sendall(socks5_connect(port))
            head = recv_exact(sock, 4)
            if head[1] != 0:
                raise BenchError(f"SOCKS5 CONNECT refused with code {head[1]}")
            rest = socks5_reply_rest(head)
            recv_exact(sock, rest if rest >= 0 else recv_exact(sock, 1)[0] + 2)
        elif proxy.kind == "http-connect":
            sock.sendall(http_connect(port))
            head = b""
            while not head.endswith(b"\r\n\r\n"):  # byte by byte: nothing of the tunnel is read here
                head += recv_exact(sock, 1)
                if len(head) > 8192:
                    raise BenchError("HTTP CONNECT answer too long")
            if head.split(b" ", 2)[1:2] != [b"200"]:
                raise BenchError(f"HTTP CONNECT answered {head[:100]!r}")
        return sock
    except BaseException:
        sock.close()
        raise


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


def get_request(path: str, port: int) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def bulk(proxy: Proxy, origin: Origin) -> tuple[float, int, bool]:
    """(MB/s, bytes received, sha256 matches) for one GET of the big file, read 1 MiB at a time."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    digest = hashlib.sha256()
    limit = max(120.0, origin.size / 1e6)  # ≥ 1 MB/s or give up
    deadline = time.monotonic() + limit
    started = time.perf_counter()
    sock = open_tunnel(proxy, origin.port, IO_TIMEOUT)
    try:
        sock.sendall(get_request(BIG_PATH, origin.port))
        length, rest = read_head(sock)
        if length != origin.size:
            raise BenchError(f"Content-Length {length}, expected {origin.size}")
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
    return got / seconds / 1e6, got, digest.hexdigest() == origin.sha256


def small_fetch(proxy: Proxy, origin_port: int) -> float:
    """Seconds for one new connection fetching the 1 KiB file, connect to close."""
    started = time.perf_counter()
    sock = open_tunnel(proxy, origin_port, FETCH_TIMEOUT)
    try:
        sock.sendall(get_request(SMALL_PATH, origin_port))
        length, body = read_head(sock)
        if length != len(SMALL_BODY):
            raise BenchError(f"small file Content-Length {length}")
        if len(body) < length:
            body += recv_exact(sock, length - len(body))
        if body != SMALL_BODY:
            raise BenchError("small file arrived altered")
    finally:
        sock.close()
    return time.perf_counter() - started


def latency(proxy: Proxy, origin_port: int, count: int, limit: float) -> list[float]:
    """Milliseconds of `count` sequential fetches (after 5 not counted), sorted; at most `limit` seconds."""
    deadline = time.monotonic() + limit
    for _ in range(min(5, count)):
        small_fetch(proxy, origin_port)
    times = []
    for _ in range(count):
        times.append(small_fetch(proxy, origin_port) * 1000)
        if time.monotonic() > deadline:
            raise BenchError(f"latency series too slow: {len(times)} of {count} fetches in {limit:g} s")
    return sorted(times)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def wait_fetch(proxy: Proxy, origin_port: int, timeout: float = READY_TIMEOUT) -> None:
    """Retry a small fetch until one works (the path is up end to end)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            small_fetch(proxy, origin_port)
            return
        except (OSError, BenchError) as exc:
            if time.monotonic() > deadline:
                raise BenchError(f"no fetch through {proxy.kind} port {proxy.port} within {timeout:g} s: {exc}")
            time.sleep(0.2)


# ------------------------------------------------------------- load client


def loadclient_argv(mode: str, proxy: Proxy, target_port: int, **options) -> list[str]:
    """The command line of _loadclient.py (the asyncio client in its own process)."""
    argv = [sys.executable, str(HERE / "_loadclient.py"), mode, "--proxy-kind", proxy.kind,
            "--proxy-port", str(proxy.port or 0), "--target-port", str(target_port)]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value not in (None, False):
            argv += [flag, str(value)]
    return argv


class Holder:
    """A _loadclient.py `hold` child: opens N proxied connections to the echo server and keeps them.

    Its stdin takes one command a line ("check", "exit"); each answer is one JSON line on stdout.
    """

    def __init__(self, procs: Processes, name: str, proxy: Proxy, echo_port: int, count: int, batch: int,
                 timeout: float, probe: bool, payload_bytes: int = 64, limit: float = 300.0):
        self.procs, self.name = procs, name
        self.proc = procs.start(name, loadclient_argv("hold", proxy, echo_port, count=count, batch=batch,
                                                      timeout=timeout, probe_on_open=probe,
                                                      payload_bytes=payload_bytes, limit=limit),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def wait_open(self, timeout: float) -> dict:
        return wait_json(self.proc, timeout, f"{self.name} opening connections")

    def check(self, timeout: float) -> dict:
        self.proc.stdin.write(b"check\n")
        self.proc.stdin.flush()
        return wait_json(self.proc, timeout, f"{self.name} checking connections")

    def close(self) -> None:
        try:
            self.proc.stdin.write(b"exit\n")
            self.proc.stdin.flush()
            self.proc.wait(15)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.procs.stop_one(self.name)


def run_rate(proxy: Proxy, origin_port: int, total: int, concurrency: int, timeout: float) -> dict:
    """_loadclient.py `rate` in a child process: `total` fresh-connection fetches of /1k."""
    argv = loadclient_argv("rate", proxy, origin_port, total=total, concurrency=concurrency,
                           timeout=FETCH_TIMEOUT)
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=lambda: _child_setup(None))
    except subprocess.TimeoutExpired:
        raise BenchError(f"rate test took more than {timeout:g} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchError(f"rate client failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return json.loads(lines[-1])


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def run_script(prefix: str, keep: bool, body: Callable[[Path, Processes], int],
               cleanup: Callable[[], None] | None = None) -> int:
    """The frame of a benchmark's main: `body(tmp, procs)` gives the exit code.

    RLIMIT_NOFILE is raised and SIGTERM acts as Ctrl-C (exit code 130). Whatever happens,
    `cleanup` runs, then every process in `procs` is stopped by pid, and the temporary
    folder (prefix `prefix`) is removed unless `keep`. A BenchError, OSError or ValueError
    is logged with the tails of the processes' logs (exit code 1).
    """
    raise_nofile()

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    procs = Processes(tmp)
    code = 1
    try:
        code = body(tmp, procs)
    except KeyboardInterrupt:
        log("interrupted")
        code = 130
    except (BenchError, OSError, ValueError) as exc:
        log(f"FAILED: {type(exc).__name__}: {exc}")
        procs.dump_logs()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if cleanup is not None:
                cleanup()
        finally:
            procs.stop_all()
            if keep:
                log(f"kept {tmp}")
            else:
                remove_tree(tmp)
    return code
